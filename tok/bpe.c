/* tok/bpe.c — pre-tokenizer and byte-level BPE (spec qwen35.md §5.2 steps 2-4).
 *
 * Data flow for one text fragment (the special-token partition already happened in vocab.c):
 *   1. Decode UTF-8 with llama.cpp's rules (unicode.cpp unicode_cpts_from_utf8): an invalid byte becomes
 *      U+FFFD and decoding resumes at the next byte; overlong forms are accepted and decode to their
 *      code point. Two strings are built, byte for byte the same length:
 *        canon — the code points re-encoded as shortest UTF-8 (what llama.cpp byte-encodes and merges);
 *        coll  — each code point replaced by a representative of its llama.cpp Unicode class with the
 *                same UTF-8 length (ASCII stays itself). PCRE2 runs on coll, so its own Unicode tables
 *                (Unicode 14 in PCRE2 10.42) never decide anything: llama.cpp's classes do (Unicode
 *                15.1, from UnicodeData.txt: L, N, M, P, S, C, Cn and the White_Space set), taken from
 *                utf8proc plus the few code points utf8proc 2.8 (Unicode 15.0) does not know yet.
 *   2. Split coll with the pre-tokenizer regex (PCRE2, UTF + UCP, JIT); every match (and any unmatched
 *      gap) is one piece; piece offsets in coll are offsets in canon.
 *   3. Each piece: bytes -> GPT-2 byte symbols -> merges by rank (lowest first, leftmost on ties) ->
 *      ids. Results are cached per session (piece bytes -> ids), which is most of the speed on text.
 * Normalisation: none. gpt2-style BPE vocabularies (qwen2, qwen35) ask for none; a tokenizer that needs
 * NFC/NFD or lowercasing would add it before step 1.
 * Where llama.cpp aborts (a 4-byte sequence above U+10FFFF makes its unicode_cpt_to_utf8 throw), each
 * byte of the sequence is taken as invalid instead. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tok/bpe.h"

#include <limits.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "base/log.h"

/* ---- pre-tokenizers ------------------------------------------------------------------------
 * The regexes are llama.cpp's (src/llama-vocab.cpp), i.e. HF's with (?i:'s|...) expanded. */
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
static const struct { const char *name, *regex; } pre_types[] = {
    { "qwen35", RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*"
                "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
    { "qwen2", RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*"
               "|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" },
    { "deepseek-r1-qwen", NULL },  /* same as qwen2 in llama.cpp */
};
const char bpe_supported_pre[] = "qwen35, qwen2, deepseek-r1-qwen";

/* ---- hashing -------------------------------------------------------------------------------- */
static uint64_t mix64(uint64_t h)
{
    h ^= h >> 33; h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint64_t hash_bytes(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ (n * 0x100000001b3ULL);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ mix64(k)) * 0x9e3779b97f4a7c15ULL;
        s += 8; n -= 8;
    }
    uint64_t k = 0;
    memcpy(&k, s, n);
    return mix64(h ^ k ^ ((uint64_t)n << 56));
}

/* ---- model ---------------------------------------------------------------------------------- */
typedef struct pair_slot { uint64_t key; int32_t rank, result; } pair_slot;   /* key = l << 32 | r */
#define PAIR_EMPTY UINT64_MAX

struct bpe_model {
    int32_t n_vocab, n_sym;          /* symbols [0, n_vocab) are vocab ids, the rest virtual */
    int32_t cap_sym;
    uint32_t *sym_off, *sym_len;     /* into blob */
    uint32_t *sym_hash;
    char *blob; size_t blob_len, blob_cap;
    int32_t *slots; uint32_t slot_mask;   /* string hash -> symbol id, -1 empty */
    pair_slot *pairs; uint64_t pair_mask;
    int32_t byte_sym[256];           /* symbol of the GPT-2 character of each byte, -1 if none */
    int32_t byte_tok[256];           /* vocab id of the 1-byte string, -1 if none (unmergeable fallback) */
    unsigned char enc[256][2]; unsigned char enc_len[256];
    const char *pre_name;
    pcre2_code *re;
    bool jit;
};

static int32_t sym_lookup(const bpe_model *m, const char *s, size_t len, uint32_t h)
{
    for (uint32_t i = h & m->slot_mask;; i = (i + 1) & m->slot_mask) {
        int32_t id = m->slots[i];
        if (id < 0) return -1;
        if (m->sym_hash[id] == h && m->sym_len[id] == len && !memcmp(m->blob + m->sym_off[id], s, len))
            return id;
    }
}

static void slot_insert(bpe_model *m, int32_t id)
{
    uint32_t i = m->sym_hash[id] & m->slot_mask;
    while (m->slots[i] >= 0) i = (i + 1) & m->slot_mask;
    m->slots[i] = id;
}

static int grow_slots(bpe_model *m, uint32_t n_slots)
{
    int32_t *s = malloc(sizeof *s * n_slots);
    if (!s) return -1;
    memset(s, 0xff, sizeof *s * n_slots);
    free(m->slots);
    m->slots = s;
    m->slot_mask = n_slots - 1;
    for (int32_t id = 0; id < m->n_sym; id++) {
        /* a later duplicate of a vocab string wins (llama.cpp: token_to_id[word] = i) */
        int32_t old = sym_lookup(m, m->blob + m->sym_off[id], m->sym_len[id], m->sym_hash[id]);
        if (old < 0) { slot_insert(m, id); continue; }
        for (uint32_t i = m->sym_hash[old] & m->slot_mask;; i = (i + 1) & m->slot_mask)
            if (m->slots[i] == old) { m->slots[i] = id; break; }
    }
    return 0;
}

/* Add a string as a new symbol (vocab entry when id < n_vocab). Returns its id or -1 (no memory / too big). */
static int32_t sym_add(bpe_model *m, const char *s, size_t len)
{
    if (len > UINT32_MAX || m->blob_len + len > UINT32_MAX) return -1;
    if (m->n_sym == m->cap_sym) {
        int32_t cap = m->cap_sym ? m->cap_sym * 2 : 1024;
        uint32_t *a = realloc(m->sym_off, sizeof *a * cap);
        if (!a) return -1;
        m->sym_off = a;
        if (!(a = realloc(m->sym_len, sizeof *a * cap))) return -1;
        m->sym_len = a;
        if (!(a = realloc(m->sym_hash, sizeof *a * cap))) return -1;
        m->sym_hash = a;
        m->cap_sym = cap;
    }
    if (m->blob_len + len > m->blob_cap) {
        size_t cap = m->blob_cap ? m->blob_cap * 2 : 1 << 16;
        while (cap < m->blob_len + len) cap *= 2;
        char *b = realloc(m->blob, cap);
        if (!b) return -1;
        m->blob = b;
        m->blob_cap = cap;
    }
    int32_t id = m->n_sym++;
    memcpy(m->blob + m->blob_len, s, len);
    m->sym_off[id] = (uint32_t)m->blob_len;
    m->sym_len[id] = (uint32_t)len;
    m->sym_hash[id] = (uint32_t)hash_bytes(s, len);
    m->blob_len += len;
    if ((uint64_t)m->n_sym * 2 > (uint64_t)m->slot_mask + 1) {
        if ((m->slot_mask + 1) > (1u << 30) || grow_slots(m, (m->slot_mask + 1) * 2)) return -1;
        return id;   /* grow_slots inserted it */
    }
    int32_t old = sym_lookup(m, s, len, m->sym_hash[id]);
    if (old >= 0) {   /* duplicate vocab string: the later id wins */
        for (uint32_t i = m->sym_hash[old] & m->slot_mask;; i = (i + 1) & m->slot_mask)
            if (m->slots[i] == old) { m->slots[i] = id; break; }
    } else {
        slot_insert(m, id);
    }
    return id;
}

/* Symbol id of a string, adding it as a virtual symbol when absent. */
static int32_t sym_intern(bpe_model *m, const char *s, size_t len)
{
    int32_t id = sym_lookup(m, s, len, (uint32_t)hash_bytes(s, len));
    return id >= 0 ? id : sym_add(m, s, len);
}

static inline uint64_t pair_hash(uint64_t key) { return mix64(key); }

static inline const pair_slot *pair_find(const bpe_model *m, int32_t l, int32_t r)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint64_t i = pair_hash(key) & m->pair_mask;; i = (i + 1) & m->pair_mask) {
        const pair_slot *p = &m->pairs[i];
        if (p->key == key) return p;
        if (p->key == PAIR_EMPTY) return NULL;
    }
}

int32_t bpe_find(const bpe_model *m, const char *s, size_t len)
{
    int32_t id = sym_lookup(m, s, len, (uint32_t)hash_bytes(s, len));
    return id < m->n_vocab ? id : -1;
}

const char *bpe_text(const bpe_model *m, int32_t id, size_t *len)
{
    if (id < 0 || id >= m->n_sym) { if (len) *len = 0; return NULL; }
    if (len) *len = m->sym_len[id];
    return m->blob + m->sym_off[id];
}

const char *bpe_pre_name(const bpe_model *m) { return m->pre_name; }

/* GPT-2 byte <-> unicode map (spec §5.2 step 3): printable Latin-1 bytes map to themselves, the other
 * 68 bytes to U+0100.. in increasing byte order. */
static uint32_t byte_to_cp(int b, int *n_other)
{
    if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)) return (uint32_t)b;
    return 0x100 + (uint32_t)(*n_other)++;
}

static int compile_pre(bpe_model *m, gguf_str pre, ar_error *err)
{
    const char *regex = NULL;
    for (size_t i = 0; i < sizeof pre_types / sizeof pre_types[0]; i++) {
        if (gguf_str_eq(pre, pre_types[i].name)) {
            m->pre_name = pre_types[i].name;
            regex = pre_types[i].regex ? pre_types[i].regex : pre_types[1].regex;
        }
    }
    if (!regex)
        return ar_fail(err, AR_EUNSUPPORTED, "tokenizer.ggml.pre '%.*s' is not supported (supported: %s)",
                       (int)(pre.len > 64 ? 64 : pre.len), pre.ptr, bpe_supported_pre);
    int code;
    PCRE2_SIZE at;
    m->re = pcre2_compile((PCRE2_SPTR)regex, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP | PCRE2_NEVER_BACKSLASH_C,
                          &code, &at, NULL);
    if (!m->re) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return ar_fail(err, AR_EUNSUPPORTED, "pre-tokenizer '%s': PCRE2 rejects its regex at %zu: %s", m->pre_name,
                       (size_t)at, (const char *)msg);
    }
    m->jit = pcre2_jit_compile(m->re, PCRE2_JIT_COMPLETE) == 0;
    return AR_OK;
}

int bpe_model_create(bpe_model **out, const gguf_str *tokens, int32_t n_vocab, const gguf_str *merges,
                     size_t n_merges, gguf_str pre, ar_error *err)
{
    *out = NULL;
    bpe_model *m = calloc(1, sizeof *m);
    if (!m) return ar_fail(err, AR_ENOMEM, "tokenizer: out of memory");
    int rc = compile_pre(m, pre, err);
    if (rc) { bpe_model_free(m); return rc; }
    const char *uv = utf8proc_unicode_version();
    if (strncmp(uv, "15.0.", 5) && strncmp(uv, "15.1.", 5))
        ar_log(AR_LOG_WARN, "tokenizer: utf8proc has Unicode %s, llama.cpp's tables are Unicode 15.1: characters "
               "assigned in other versions may split differently from llama.cpp", uv);

    uint32_t n_slots = 1024;
    while (n_slots < (uint64_t)n_vocab * 2 + (uint64_t)n_merges / 8 + 1024 && n_slots < (1u << 30)) n_slots *= 2;
    if (grow_slots(m, n_slots)) goto oom;
    m->n_vocab = n_vocab;
    for (int32_t i = 0; i < n_vocab; i++)
        if (sym_add(m, tokens[i].ptr, tokens[i].len) != i) goto oom;

    uint64_t n_pairs = 16;
    while (n_pairs < (uint64_t)n_merges * 2) n_pairs *= 2;
    m->pairs = malloc(sizeof *m->pairs * n_pairs);
    if (!m->pairs) goto oom;
    for (uint64_t i = 0; i < n_pairs; i++) m->pairs[i].key = PAIR_EMPTY;
    m->pair_mask = n_pairs - 1;

    char *cat = NULL;
    size_t cat_cap = 0;
    for (size_t i = 0; i < n_merges && i < INT32_MAX; i++) {
        const char *s = merges[i].ptr;
        size_t len = merges[i].len, sp = 1;
        while (sp < len && s[sp] != ' ') sp++;
        if (sp >= len) continue;   /* llama.cpp keeps ("", "") for it, which never matches */
        if (len > cat_cap) {
            char *c = realloc(cat, len);
            if (!c) { free(cat); goto oom; }
            cat = c;
            cat_cap = len;
        }
        memcpy(cat, s, sp);
        memcpy(cat + sp, s + sp + 1, len - sp - 1);
        int32_t l = sym_intern(m, s, sp), r = sym_intern(m, s + sp + 1, len - sp - 1);
        int32_t res = sym_intern(m, cat, len - 1);
        if (l < 0 || r < 0 || res < 0) { free(cat); goto oom; }
        uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
        uint64_t j = pair_hash(key) & m->pair_mask;
        while (m->pairs[j].key != PAIR_EMPTY && m->pairs[j].key != key) j = (j + 1) & m->pair_mask;
        if (m->pairs[j].key == key) continue;   /* the first (lowest) rank wins, as in llama.cpp */
        m->pairs[j] = (pair_slot){ key, (int32_t)i, res };
    }
    free(cat);

    int n_other = 0;
    for (int b = 0; b < 256; b++) {
        uint32_t cp = byte_to_cp(b, &n_other);
        unsigned char u[4];
        m->enc_len[b] = (unsigned char)utf8proc_encode_char((utf8proc_int32_t)cp, u);
        memcpy(m->enc[b], u, m->enc_len[b]);
        m->byte_sym[b] = sym_lookup(m, (const char *)u, m->enc_len[b], (uint32_t)hash_bytes(u, m->enc_len[b]));
        char c = (char)b;
        m->byte_tok[b] = bpe_find(m, &c, 1);
    }
    *out = m;
    return AR_OK;
oom:
    bpe_model_free(m);
    return ar_fail(err, AR_ENOMEM, "tokenizer: out of memory building the symbol and merge tables");
}

void bpe_model_free(bpe_model *m)
{
    if (!m) return;
    free(m->sym_off); free(m->sym_len); free(m->sym_hash); free(m->blob);
    free(m->slots); free(m->pairs);
    pcre2_code_free(m->re);
    free(m);
}

/* ---- Unicode classes as llama.cpp sees them --------------------------------------------------- */
enum { UC_WS, UC_L, UC_N, UC_M, UC_P, UC_S, UC_C, UC_UNDEF, UC_COUNT };

static bool is_white_space(uint32_t cp)   /* Unicode White_Space (PropList.txt), the set llama.cpp uses */
{
    if (cp <= 0x20) return cp == 0x20 || (cp >= 0x09 && cp <= 0x0d);
    switch (cp) {
    case 0x85: case 0xa0: case 0x1680: case 0x2028: case 0x2029: case 0x202f: case 0x205f: case 0x3000: return true;
    default: return cp >= 0x2000 && cp <= 0x200a;
    }
}

static int uclass(uint32_t cp)
{
    if (is_white_space(cp)) return UC_WS;
    /* Unicode 15.1 additions (llama.cpp's tables are 15.1, utf8proc 2.8 is 15.0): IDC symbols, CJK Ext. I */
    if ((cp >= 0x2ffc && cp <= 0x2fff) || cp == 0x31ef) return UC_S;
    if (cp >= 0x2ebf0 && cp <= 0x2ee5d) return UC_L;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT: case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return UC_L;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: return UC_M;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO: return UC_N;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO: return UC_P;
    case UTF8PROC_CATEGORY_SM: case UTF8PROC_CATEGORY_SC: case UTF8PROC_CATEGORY_SK: case UTF8PROC_CATEGORY_SO:
        return UC_S;
    case UTF8PROC_CATEGORY_CN: return UC_UNDEF;
    case UTF8PROC_CATEGORY_ZS: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: return UC_WS; /* all are White_Space */
    default: return UC_C;   /* Cc Cf Co Cs */
    }
}

/* Representative code point of each class for UTF-8 lengths 2, 3, 4: PCRE2 puts each in the same class
 * (\s, \p{L}, \p{N}, \p{M}, \p{P}, \p{S}, \p{C}, \p{Cn}) in every Unicode version it has shipped. */
static const uint32_t class_rep[UC_COUNT][3] = {
    [UC_WS]    = { 0xa0, 0x2000, 0x2000 },    /* no 4-byte White_Space exists */
    [UC_L]     = { 0xe0, 0x4e00, 0x20000 },
    [UC_N]     = { 0xb2, 0x966, 0x1d7ce },
    [UC_M]     = { 0x300, 0x20d0, 0x1d167 },
    [UC_P]     = { 0xa1, 0x2010, 0x10100 },
    [UC_S]     = { 0xa6, 0x2190, 0x1f300 },
    [UC_C]     = { 0x80, 0xe000, 0xf0000 },
    [UC_UNDEF] = { 0x378, 0xfdd0, 0x1fffe },
};

static int put_utf8(uint32_t cp, unsigned char *o)   /* also encodes surrogates, as llama.cpp does */
{
    if (cp < 0x80) { o[0] = (unsigned char)cp; return 1; }
    if (cp < 0x800) { o[0] = (unsigned char)(0xc0 | cp >> 6); o[1] = (unsigned char)(0x80 | (cp & 0x3f)); return 2; }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xe0 | cp >> 12); o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f));
        o[2] = (unsigned char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (unsigned char)(0xf0 | cp >> 18); o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3f));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (unsigned char)(0x80 | (cp & 0x3f));
    return 4;
}

/* One code point at s[0..n) with llama.cpp's rules; *used = bytes consumed. Invalid -> U+FFFD, 1 byte. */
static uint32_t get_cp(const unsigned char *s, size_t n, size_t *used)
{
    unsigned b = s[0];
    *used = 1;
    if (b < 0x80) return b;
#define CONT(i) (n > (i) && (s[i] & 0xc0) == 0x80)
    if ((b & 0xe0) == 0xc0 && b >= 0xc0) {
        if (CONT(1)) { *used = 2; return (b & 0x1fu) << 6 | (s[1] & 0x3fu); }
    } else if ((b & 0xf0) == 0xe0) {
        if (CONT(1) && CONT(2)) { *used = 3; return (b & 0x0fu) << 12 | (s[1] & 0x3fu) << 6 | (s[2] & 0x3fu); }
    } else if ((b & 0xf8) == 0xf0) {
        if (CONT(1) && CONT(2) && CONT(3)) {
            uint32_t cp = (b & 0x07u) << 18 | (s[1] & 0x3fu) << 12 | (s[2] & 0x3fu) << 6 | (s[3] & 0x3fu);
            if (cp <= 0x10ffff) { *used = 4; return cp; }
        }
    }
#undef CONT
    return 0xfffd;
}

size_t bpe_decode_text(const char *text, size_t len, char *out, size_t cap)
{
    /* reverse GPT-2 map: code point -> byte, for the 256 code points in use */
    static const uint32_t none = UINT32_MAX;
    size_t o = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (size_t i = 0; i < len;) {
        size_t used;
        uint32_t cp = get_cp(s + i, len - i, &used);
        uint32_t byte = none;
        if ((cp >= 0x21 && cp <= 0x7e) || (cp >= 0xa1 && cp <= 0xac) || (cp >= 0xae && cp <= 0xff)) byte = cp;
        else if (cp >= 0x100 && cp < 0x100 + 68) {
            /* the k-th byte outside the printable ranges: 0x00-0x20, 0x7f-0xa0, 0xad */
            uint32_t k = cp - 0x100;
            byte = k < 33 ? k : k < 67 ? 0x7f + (k - 33) : 0xad;
        }
        if (byte != none) {
            if (o < cap) out[o] = (char)byte;
            o++;
        } else {
            unsigned char u[4];
            int n = put_utf8(cp, u);
            char head[32] = "[UNK_BYTE_0x";
            size_t h = strlen(head);
            for (int k = 0; k < n; k++) {
                static const char hex[] = "0123456789abcdef";
                head[h++] = hex[u[k] >> 4];
                head[h++] = hex[u[k] & 15];
            }
            for (size_t k = 0; k < h; k++, o++) if (o < cap) out[o] = head[k];
            for (size_t k = 0; k < len; k++, o++) if (o < cap) out[o] = text[k];
            if (o < cap) out[o] = ']';
            o++;
        }
        i += used;
    }
    return o;
}

/* ---- session -------------------------------------------------------------------------------- */
typedef struct cache_slot { uint64_t hash; uint32_t key_off, key_len, ids_off, n_ids; } cache_slot;
#define CACHE_MAX_PIECE 96            /* longer pieces are rare; not worth caching */
#define CACHE_MAX_ENTRIES (1u << 20)
#define SMALL_PIECE 48                /* up to this many bytes the O(n^2) merge loop beats a heap */


struct bpe_session {
    const bpe_model *m;
    pcre2_match_data *md;
    pcre2_match_context *mc;         /* no match limit: the pre-tokenizer regexes are linear in practice */
    pcre2_jit_stack *jit_stack;      /* made only if the default JIT stack runs out */
    unsigned char *canon, *coll; size_t text_cap;
    /* merge scratch */
    int32_t *sym, *start, *rank, *res, *prev, *next; size_t sym_cap;
    uint64_t *heap; size_t heap_n, heap_cap;  /* long pieces: min-heap of (rank, node) keys */
    /* piece cache */
    cache_slot *cache; uint32_t cache_mask, cache_n;
    char *keys; size_t keys_n, keys_cap;
    int32_t *cids; size_t cids_n, cids_cap;
};

bpe_session *bpe_session_create(const bpe_model *m)
{
    bpe_session *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->m = m;
    s->md = pcre2_match_data_create_from_pattern(m->re, NULL);
    s->mc = pcre2_match_context_create(NULL);
    if (!s->md || !s->mc) { bpe_session_free(s); return NULL; }
    pcre2_set_match_limit(s->mc, UINT32_MAX);
    pcre2_set_depth_limit(s->mc, UINT32_MAX);
    pcre2_set_heap_limit(s->mc, UINT32_MAX);
    return s;
}

void bpe_session_free(bpe_session *s)
{
    if (!s) return;
    pcre2_match_data_free(s->md);
    pcre2_match_context_free(s->mc);
    if (s->jit_stack) pcre2_jit_stack_free(s->jit_stack);
    free(s->canon); free(s->coll);
    free(s->sym); free(s->start); free(s->rank); free(s->res); free(s->prev); free(s->next);
    free(s->heap); free(s->cache); free(s->keys); free(s->cids);
    free(s);
}

int bpe_ids_push(bpe_ids *o, int32_t id)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 256;
        int32_t *p = realloc(o->ids, sizeof *p * cap);
        if (!p) return AR_ENOMEM;
        o->ids = p;
        o->cap = cap;
    }
    o->ids[o->n++] = id;
    return AR_OK;
}

static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

/* Emit the ids of a final symbol; a symbol that is not a vocab string falls back to the vocab ids of
 * its single bytes, skipping bytes that have none (llama.cpp does the same). */
static int emit_sym(const bpe_model *m, int32_t sym, unsigned char byte, bpe_ids *out)
{
    if (sym >= 0 && sym < m->n_vocab) return bpe_ids_push(out, sym);
    const unsigned char *t = m->enc[byte];
    size_t n = m->enc_len[byte];
    if (sym >= 0) { t = (const unsigned char *)m->blob + m->sym_off[sym]; n = m->sym_len[sym]; }
    for (size_t i = 0; i < n; i++)
        if (m->byte_tok[t[i]] >= 0 && bpe_ids_push(out, m->byte_tok[t[i]])) return AR_ENOMEM;
    return AR_OK;
}

static inline int32_t rank_of(const bpe_model *m, int32_t l, int32_t r, int32_t *res)
{
    if (l < 0 || r < 0) return -1;
    const pair_slot *p = pair_find(m, l, r);
    if (!p) return -1;
    *res = p->result;
    return p->rank;
}

/* Indexed min-heap for long pieces: node i is in the heap while the pair (i, next[i]) has a merge; its
 * key is rank << 32 | i (lowest rank first, leftmost on ties), pos[i] its heap slot or -1. */
#define HKEY(rank, i) ((uint64_t)(uint32_t)(rank) << 32 | (uint32_t)(i))

static void heap_up(uint64_t *heap, int32_t *pos, size_t i)
{
    uint64_t x = heap[i];
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (heap[up] <= x) break;
        heap[i] = heap[up];
        pos[(uint32_t)heap[i]] = (int32_t)i;
        i = up;
    }
    heap[i] = x;
    pos[(uint32_t)x] = (int32_t)i;
}

static void heap_down(uint64_t *heap, int32_t *pos, size_t n, size_t i)
{
    uint64_t x = heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && heap[c + 1] < heap[c]) c++;
        if (heap[c] >= x) break;
        heap[i] = heap[c];
        pos[(uint32_t)heap[i]] = (int32_t)i;
        i = c;
    }
    heap[i] = x;
    pos[(uint32_t)x] = (int32_t)i;
}

/* Give node i the pair rank r (r < 0: the pair has no merge, leave the heap). */
static void heap_set(bpe_session *s, int32_t *pos, int32_t i, int32_t r)
{
    uint64_t *heap = s->heap;
    int32_t at = pos[i];
    if (r < 0) {
        if (at < 0) return;
        uint64_t last = heap[--s->heap_n];
        pos[i] = -1;
        if ((size_t)at == s->heap_n) return;
        heap[at] = last;
        heap_up(heap, pos, (size_t)at);
        heap_down(heap, pos, s->heap_n, (size_t)pos[(uint32_t)last]);
        return;
    }
    if (at < 0) {
        heap[s->heap_n] = HKEY(r, i);
        heap_up(heap, pos, s->heap_n++);
    } else {
        heap[at] = HKEY(r, i);
        heap_up(heap, pos, (size_t)at);
        heap_down(heap, pos, s->heap_n, (size_t)pos[i]);
    }
}

static bool grow_scratch(bpe_session *s, size_t n)
{
    if (n <= s->sym_cap) return true;
    size_t cap = s->sym_cap ? s->sym_cap : 64;
    while (cap < n) cap *= 2;
    int32_t **arrays[] = { &s->sym, &s->start, &s->rank, &s->res, &s->prev, &s->next };
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) {
        int32_t *p = realloc(*arrays[k], cap * sizeof *p);
        if (!p) return false;
        *arrays[k] = p;
    }
    s->sym_cap = cap;
    return true;
}

/* BPE of one piece (canonical bytes), appending ids. */
static int merge_piece(bpe_session *s, const unsigned char *b, size_t n, bpe_ids *out)
{
    const bpe_model *m = s->m;
    if (n == 1) return emit_sym(m, m->byte_sym[b[0]], b[0], out);
    if (n >= INT32_MAX) return AR_ERANGE;
    if (!grow_scratch(s, n)) return AR_ENOMEM;
    int32_t *sym = s->sym, *start = s->start;
    for (size_t i = 0; i < n; i++) { sym[i] = m->byte_sym[b[i]]; start[i] = (int32_t)i; }

    if (n <= SMALL_PIECE) {
        int32_t *rank = s->rank, *res = s->res;
        size_t k = n;
        for (size_t i = 0; i + 1 < k; i++) rank[i] = rank_of(m, sym[i], sym[i + 1], &res[i]);
        for (;;) {
            size_t best = SIZE_MAX;
            int32_t best_rank = INT32_MAX;
            for (size_t i = 0; i + 1 < k; i++)
                if (rank[i] >= 0 && rank[i] < best_rank) { best_rank = rank[i]; best = i; }
            if (best == SIZE_MAX) break;
            sym[best] = res[best];
            k--;
            memmove(sym + best + 1, sym + best + 2, (k - best - 1) * sizeof *sym);
            memmove(start + best + 1, start + best + 2, (k - best - 1) * sizeof *start);
            if (best + 1 < k) {
                memmove(rank + best + 1, rank + best + 2, (k - best - 2) * sizeof *rank);
                memmove(res + best + 1, res + best + 2, (k - best - 2) * sizeof *res);
                rank[best] = rank_of(m, sym[best], sym[best + 1], &res[best]);
            }
            if (best > 0) rank[best - 1] = rank_of(m, sym[best - 1], sym[best], &res[best - 1]);
        }
        for (size_t i = 0; i < k; i++)
            if (emit_sym(m, sym[i], b[start[i]], out)) return AR_ENOMEM;
        return AR_OK;
    }

    /* long piece: linked list of symbols + indexed heap of the mergeable pairs (O(n log n), no stale entries) */
    int32_t *prev = s->prev, *next = s->next, *res = s->res, *pos = start;
    if (!grow((void **)&s->heap, &s->heap_cap, n, sizeof *s->heap)) return AR_ENOMEM;
    s->heap_n = 0;
    for (size_t i = 0; i < n; i++) {
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
        pos[i] = -1;
        int32_t r = i + 1 < n ? rank_of(m, sym[i], sym[i + 1], &res[i]) : -1;
        if (r >= 0) { pos[i] = (int32_t)s->heap_n; s->heap[s->heap_n++] = HKEY(r, i); }
    }
    for (size_t i = s->heap_n / 2; i-- > 0;) heap_down(s->heap, pos, s->heap_n, i);
    while (s->heap_n) {
        int32_t i = (int32_t)(uint32_t)s->heap[0], j = next[i];
        sym[i] = res[i];
        heap_set(s, pos, j, -1);
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        heap_set(s, pos, i, next[i] >= 0 ? rank_of(m, sym[i], sym[next[i]], &res[i]) : -1);
        if (prev[i] >= 0) heap_set(s, pos, prev[i], rank_of(m, sym[prev[i]], sym[i], &res[prev[i]]));
    }
    for (int32_t i = 0; i >= 0; i = next[i])
        if (emit_sym(m, sym[i], b[i], out)) return AR_ENOMEM;
    return AR_OK;
}

static int cache_grow(bpe_session *s)
{
    uint32_t n_slots = s->cache ? (s->cache_mask + 1) * 2 : 4096;
    cache_slot *c = calloc(n_slots, sizeof *c);
    if (!c) return AR_ENOMEM;
    for (uint32_t i = 0; s->cache && i <= s->cache_mask; i++) {
        if (!s->cache[i].key_len) continue;
        uint32_t j = (uint32_t)s->cache[i].hash & (n_slots - 1);
        while (c[j].key_len) j = (j + 1) & (n_slots - 1);
        c[j] = s->cache[i];
    }
    free(s->cache);
    s->cache = c;
    s->cache_mask = n_slots - 1;
    return AR_OK;
}

static int encode_piece(bpe_session *s, const unsigned char *b, size_t n, bpe_ids *out)
{
    if (n > CACHE_MAX_PIECE || n == 1) return merge_piece(s, b, n, out);
    uint64_t h = hash_bytes(b, n);
    if (s->cache) {
        for (uint32_t i = (uint32_t)h & s->cache_mask; s->cache[i].key_len; i = (i + 1) & s->cache_mask) {
            cache_slot *c = &s->cache[i];
            if (c->hash == h && c->key_len == n && !memcmp(s->keys + c->key_off, b, n)) {
                for (uint32_t k = 0; k < c->n_ids; k++)
                    if (bpe_ids_push(out, s->cids[c->ids_off + k])) return AR_ENOMEM;
                return AR_OK;
            }
        }
    }
    size_t first = out->n;
    int rc = merge_piece(s, b, n, out);
    if (rc || s->cache_n >= CACHE_MAX_ENTRIES) return rc;
    size_t n_ids = out->n - first;
    if ((!s->cache || (uint64_t)(s->cache_n + 1) * 2 > (uint64_t)s->cache_mask + 1) && cache_grow(s)) return AR_OK;
    if (!grow((void **)&s->keys, &s->keys_cap, s->keys_n + n, 1) ||
        !grow((void **)&s->cids, &s->cids_cap, s->cids_n + n_ids, sizeof *s->cids))
        return AR_OK;   /* caching is optional */
    uint32_t i = (uint32_t)h & s->cache_mask;
    while (s->cache[i].key_len) i = (i + 1) & s->cache_mask;
    s->cache[i] = (cache_slot){ h, (uint32_t)s->keys_n, (uint32_t)n, (uint32_t)s->cids_n, (uint32_t)n_ids };
    memcpy(s->keys + s->keys_n, b, n);
    memcpy(s->cids + s->cids_n, out->ids + first, n_ids * sizeof *s->cids);
    s->keys_n += n;
    s->cids_n += n_ids;
    s->cache_n++;
    return AR_OK;
}

/* Build canon and coll for text (see the top of the file). Returns false when out of memory. */
static bool collapse(bpe_session *s, const unsigned char *t, size_t len, size_t *out_len)
{
    /* canonical UTF-8 is at most 3 bytes per input byte (one invalid byte -> U+FFFD) */
    if (len > SIZE_MAX / 3) return false;
    size_t cap = s->text_cap;
    if (!grow((void **)&s->canon, &cap, 3 * len + 4, 1)) return false;
    cap = s->text_cap;
    if (!grow((void **)&s->coll, &cap, 3 * len + 4, 1)) return false;
    s->text_cap = cap;
    unsigned char *c = s->canon, *k = s->coll;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        if (t[i] < 0x80) { c[o] = k[o] = t[i]; o++; i++; continue; }
        size_t used;
        uint32_t cp = get_cp(t + i, len - i, &used);
        i += used;
        int n = put_utf8(cp, c + o);
        if (n == 1) k[o] = c[o];
        else put_utf8(class_rep[uclass(cp)][n - 2], k + o);
        o += (size_t)n;
    }
    *out_len = o;
    return true;
}

int bpe_encode(bpe_session *s, const char *text, size_t len, bpe_ids *out, ar_error *err)
{
    const bpe_model *m = s->m;
    const unsigned char *t = (const unsigned char *)text;
    bool ascii = true;
    for (size_t i = 0; i < len; i++) if (t[i] >= 0x80) { ascii = false; break; }
    const unsigned char *canon = t, *coll = t;
    size_t n = len;
    if (!ascii) {
        if (!collapse(s, t, len, &n)) return ar_fail(err, AR_ENOMEM, "tokenizer: out of memory (%zu bytes of text)", len);
        canon = s->canon;
        coll = s->coll;
    }
    size_t off = 0;
    while (off < n) {
        int rc = m->jit ? pcre2_jit_match(m->re, coll, n, off, PCRE2_NO_UTF_CHECK, s->md, s->mc)
                        : pcre2_match(m->re, coll, n, off, PCRE2_NO_UTF_CHECK, s->md, s->mc);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !s->jit_stack) {
            if (!(s->jit_stack = pcre2_jit_stack_create(64 * 1024, 256 * 1024 * 1024, NULL))) goto oom;
            pcre2_jit_stack_assign(s->mc, NULL, s->jit_stack);
            continue;   /* retry with the big stack */
        }
        size_t ms = n, me = n;
        if (rc >= 0) {
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(s->md);
            ms = ov[0];
            me = ov[1];
        } else if (rc != PCRE2_ERROR_NOMATCH) {
            PCRE2_UCHAR msg[256];
            pcre2_get_error_message(rc, msg, sizeof msg);
            return ar_fail(err, AR_EINVAL, "tokenizer: pre-tokenizer regex failed at byte %zu: %s", off, (const char *)msg);
        }
        int prc = AR_OK;
        if (ms > off) prc = encode_piece(s, canon + off, ms - off, out);   /* unmatched gap */
        if (me == ms && ms < n) {   /* empty match: take one character as a piece */
            me = ms + 1;
            while (me < n && (coll[me] & 0xc0) == 0x80) me++;
        }
        if (!prc && me > ms) prc = encode_piece(s, canon + ms, me - ms, out);
        if (prc == AR_ERANGE) return ar_fail(err, AR_ERANGE, "tokenizer: a pre-token of over 2 GiB at byte %zu", off);
        if (prc) goto oom;
        off = me;
    }
    return AR_OK;
oom:
    return ar_fail(err, AR_ENOMEM, "tokenizer: out of memory");
}
