/* tok/vocab.c — vocabulary from GGUF metadata, special tokens, tokenize driver, detokenization.
 *
 * Owns: token attributes (type from tokenizer.ggml.token_type, plus the CONTROL / UNUSED / EOG marks
 * llama.cpp adds by token text, src/llama-vocab.cpp load), special ids, the special-token partition
 * (llama.cpp tokenizer_st_partition: CONTROL/UNKNOWN/USER_DEFINED texts, longest first, each found
 * leftmost-first in what earlier ones left as text), and a piece cache for detokenization.
 * The pre-tokenizer and merges live in tok/bpe.c. Everything is immutable after load.
 *
 * Where arbor knowingly differs from llama.cpp (none of it reachable with a Qwen GGUF):
 *  - special texts of equal length are tried in id order (llama.cpp's std::sort leaves their order open);
 *  - a role found by text among several candidates takes the first of the list, not hash-map order;
 *  - no bos/eos key means none (-1); llama.cpp falls back to id 11 for gpt2 vocabularies;
 *  - the LSTRIP/RSTRIP attributes llama.cpp sets by model name (phi-3, jina, modern-bert) are not set. */
#include "tok/vocab.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "tok/bpe.h"

/* Token attributes: llama.cpp's llama_token_attr bits (include/llama.h). */
enum {
    ATTR_UNKNOWN = 1 << 0, ATTR_UNUSED = 1 << 1, ATTR_NORMAL = 1 << 2, ATTR_CONTROL = 1 << 3,
    ATTR_USER_DEFINED = 1 << 4, ATTR_BYTE = 1 << 5,
    ATTR_EOG = 1 << 15,   /* arbor's own: end of generation */
};

struct ar_vocab {
    bpe_model *bpe;
    int32_t n_vocab;
    uint8_t *type;                  /* ar_token_type per id */
    uint16_t *attr;
    int32_t bos, eos, eot, eom, unk, pad;
    bool add_bos, add_eos;
    int32_t *special; size_t n_special;   /* partition order: longest text first */
    uint32_t lens_off[257], *lens;        /* distinct lengths (descending) of special texts by first byte */
    uint8_t pair_bits[8192];              /* first two bytes of the special texts (length >= 2) */
    char *piece; uint64_t *piece_off;     /* detok pieces (special = true), piece_off[n_vocab] = end */
    size_t max_piece;
};

int32_t ar_vocab_size(const ar_vocab *v) { return v->n_vocab; }
int32_t ar_vocab_eos(const ar_vocab *v) { return v->eos; }
int32_t ar_vocab_bos(const ar_vocab *v) { return v->bos; }
int32_t ar_vocab_eot(const ar_vocab *v) { return v->eot; }
int32_t ar_vocab_pad(const ar_vocab *v) { return v->pad; }
bool ar_vocab_add_bos(const ar_vocab *v) { return v->add_bos; }
bool ar_vocab_add_eos(const ar_vocab *v) { return v->add_eos; }
const char *ar_vocab_pre(const ar_vocab *v) { return bpe_pre_name(v->bpe); }
size_t ar_vocab_max_piece(const ar_vocab *v) { return v->max_piece; }

static bool valid_id(const ar_vocab *v, int32_t id) { return id >= 0 && id < v->n_vocab; }

const char *ar_token_text(const ar_vocab *v, int32_t id, size_t *len)
{
    if (!valid_id(v, id)) { if (len) *len = 0; return NULL; }
    return bpe_text(v->bpe, id, len);
}

int32_t ar_token_find(const ar_vocab *v, const char *text) { return bpe_find(v->bpe, text, strlen(text)); }

enum ar_token_type ar_token_type(const ar_vocab *v, int32_t id)
{
    return valid_id(v, id) ? (enum ar_token_type)v->type[id] : AR_TOKEN_UNDEFINED;
}

bool ar_token_is_eog(const ar_vocab *v, int32_t id) { return valid_id(v, id) && (v->attr[id] & ATTR_EOG); }

void ar_vocab_free(ar_vocab *v)
{
    if (!v) return;
    bpe_model_free(v->bpe);
    free(v->type); free(v->attr); free(v->special); free(v->lens); free(v->piece); free(v->piece_off);
    free(v);
}

/* ---- load ----------------------------------------------------------------------------------- */

static const gguf_kv *str_array(const gguf_file *f, const char *key, bool required, ar_error *err, int *rc)
{
    const gguf_kv *kv = gguf_find(f, key);
    *rc = AR_OK;
    if (!kv) {
        if (required) *rc = ar_fail(err, AR_EFORMAT, "%s: no '%s' (not a tokenizer-carrying GGUF?)", gguf_path(f), key);
        return NULL;
    }
    if (kv->type != GGUF_T_ARRAY || kv->arr_type != GGUF_T_STRING || (!kv->arr_str && kv->arr_n)) {
        *rc = ar_fail(err, AR_EFORMAT, "%s: '%s' is not a string array", gguf_path(f), key);
        return NULL;
    }
    return kv;
}

/* Optional token id key: -1 when absent, negative or out of range (llama.cpp warns and ignores it). */
static int32_t id_key(const gguf_file *f, const char *key, int32_t def, int32_t n_vocab)
{
    if (!gguf_find(f, key)) return def;
    int32_t sid;
    uint32_t id;
    ar_error e;
    if (!gguf_get_i32(f, key, &sid, &e) && sid < 0) return def;   /* -1: explicitly none */
    if (gguf_get_u32(f, key, &id, &e) || id >= (uint32_t)n_vocab) {
        ar_log(AR_LOG_WARN, "%s: ignoring '%s' (not a token id of this %d-token vocab)", gguf_path(f), key, n_vocab);
        return def;
    }
    return (int32_t)id;
}

static bool bool_key(const gguf_file *f, const char *key, bool def)
{
    bool b;
    ar_error e;
    return gguf_find(f, key) && !gguf_get_bool(f, key, &b, &e) ? b : def;
}

static int32_t find_any(const ar_vocab *v, const char *const *texts)
{
    for (; *texts; texts++) {
        int32_t id = ar_token_find(v, *texts);
        if (id >= 0) return id;
    }
    return -1;
}

/* Roles llama.cpp recognises by token text when no metadata key names them; the token found becomes
 * CONTROL. Lists from llama.cpp src/llama-vocab.cpp (llama_vocab::impl::load). */
static const char *const eot_texts[] = { "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
    "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>",
    "<end_of_utterance>", NULL };
static const char *const eom_texts[] = { "<|eom_id|>", NULL };
static const char *const fim_pre_texts[] = { "<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>",
    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "begin\xef\xbd\x9c>", "<PRE>", "\xe2\x96\x81<PRE>", "<|code_prefix|>", "<|prefix|>", NULL };
static const char *const fim_suf_texts[] = { "<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>",
    "<\xef\xbd\x9c" "fim\xe2\x96\x81hole\xef\xbd\x9c>", "<SUF>", "\xe2\x96\x81<SUF>", "<|code_suffix|>", "<|suffix|>", NULL };
static const char *const fim_mid_texts[] = { "<|fim_middle|>", "<fim-middle>", "<fim_middle>",
    "<\xef\xbd\x9c" "fim\xe2\x96\x81" "end\xef\xbd\x9c>", "<MID>", "\xe2\x96\x81<MID>", "<|code_middle|>", "<|middle|>", NULL };
static const char *const fim_pad_texts[] = { "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]", NULL };
static const char *const fim_rep_texts[] = { "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", NULL };
static const char *const fim_sep_texts[] = { "<|file_sep|>", NULL };
/* Every token with one of these texts ends generation (and becomes CONTROL). */
static const char *const eog_texts[] = { "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
    "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<\xef\xbd\x9c" "end\xe2\x96\x81of\xe2\x96\x81sentence\xef\xbd\x9c>", "[e~[", NULL };

static int32_t role(ar_vocab *v, const gguf_file *f, const char *key, const char *key_old, const char *const *texts)
{
    int32_t id = id_key(f, key, -1, v->n_vocab);
    if (id < 0 && key_old) id = id_key(f, key_old, -1, v->n_vocab);
    if (id < 0 && texts && (id = find_any(v, texts)) >= 0) v->attr[id] |= ATTR_CONTROL;
    return id;
}

static void mark_attrs(ar_vocab *v, const gguf_file *f)
{
    v->eot = role(v, f, "tokenizer.ggml.eot_token_id", NULL, eot_texts);
    v->eom = role(v, f, "tokenizer.ggml.eom_token_id", NULL, eom_texts);
    role(v, f, "tokenizer.ggml.fim_pre_token_id", "tokenizer.ggml.prefix_token_id", fim_pre_texts);
    role(v, f, "tokenizer.ggml.fim_suf_token_id", "tokenizer.ggml.suffix_token_id", fim_suf_texts);
    role(v, f, "tokenizer.ggml.fim_mid_token_id", "tokenizer.ggml.middle_token_id", fim_mid_texts);
    int32_t fim_pad = role(v, f, "tokenizer.ggml.fim_pad_token_id", NULL, fim_pad_texts);
    int32_t fim_rep = role(v, f, "tokenizer.ggml.fim_rep_token_id", NULL, fim_rep_texts);
    int32_t fim_sep = role(v, f, "tokenizer.ggml.fim_sep_token_id", NULL, fim_sep_texts);

    for (int32_t id = 0; id < v->n_vocab; id++) {   /* control tokens named "unused" are unused */
        size_t len;
        const char *t = ar_token_text(v, id, &len);
        if ((v->attr[id] & ATTR_CONTROL) && memmem(t, len, "unused", 6)) v->attr[id] |= ATTR_UNUSED;
    }
    int32_t eog_ids[] = { fim_pad, fim_rep, fim_sep, v->eos, v->eot, v->eom };
    for (size_t i = 0; i < sizeof eog_ids / sizeof eog_ids[0]; i++)
        if (eog_ids[i] >= 0) v->attr[eog_ids[i]] |= ATTR_EOG;
    for (const char *const *t = eog_texts; *t; t++) {
        int32_t id = ar_token_find(v, *t);
        if (id >= 0) v->attr[id] |= ATTR_EOG | ATTR_CONTROL;
    }
    /* llama.cpp's gpt-oss rule: these always render as text */
    static const char *const always_text[] = { "<|channel|>", "<|message|>", "<|start|>", "<|constrain|>", NULL };
    for (const char *const *t = always_text; *t; t++) {
        int32_t id = ar_token_find(v, *t);
        if (id >= 0) v->attr[id] = (uint16_t)(ATTR_USER_DEFINED | (v->attr[id] & ATTR_EOG));
    }
    /* o200k_harmony / solar-open: <|end|> does not end generation when <|return|>+<|call|> or <|calls|>+<|flush|> do */
    int32_t end = ar_token_find(v, "<|end|>");
    bool eog_has[4];
    const char *const pair_texts[4] = { "<|return|>", "<|call|>", "<|calls|>", "<|flush|>" };
    for (int i = 0; i < 4; i++) {
        int32_t id = ar_token_find(v, pair_texts[i]);
        eog_has[i] = id >= 0 && (v->attr[id] & ATTR_EOG);
    }
    if (end >= 0 && (v->attr[end] & ATTR_EOG) &&
        ((eog_has[0] && (eog_has[1] || eog_has[2])) || ((eog_has[1] || eog_has[2]) && eog_has[3])))
        v->attr[end] = ATTR_USER_DEFINED;
    /* gemma4 / paddleocr: </s> is not an end marker when <|tool_response> is one */
    int32_t s_id = ar_token_find(v, "</s>"), tr = ar_token_find(v, "<|tool_response>");
    if (s_id >= 0 && tr >= 0 && (v->attr[s_id] & ATTR_EOG) && (v->attr[tr] & ATTR_EOG)) v->attr[s_id] = ATTR_NORMAL;
}

typedef struct special_key { uint64_t len; int32_t id; } special_key;
static int by_length_desc(const void *a, const void *b)   /* llama.cpp sorts by length only; ties by id here */
{
    const special_key *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->id < y->id ? -1 : x->id > y->id;
}

/* Index of the special texts for the one-pass scan in partition(). */
static int build_special_index(ar_vocab *v, ar_error *err)
{
    v->lens = malloc(sizeof *v->lens * (v->n_special + 1));
    if (!v->lens) return ar_fail(err, AR_ENOMEM, "tokenizer: out of memory");
    uint32_t n = 0;
    for (int b = 0; b < 256; b++) {
        v->lens_off[b] = n;
        for (size_t k = 0; k < v->n_special; k++) {   /* v->special is sorted by length, descending */
            size_t len;
            const char *t = ar_token_text(v, v->special[k], &len);
            if ((unsigned char)t[0] != b) continue;
            if (len >= 2) {
                unsigned pair = (unsigned)(unsigned char)t[0] << 8 | (unsigned char)t[1];
                v->pair_bits[pair >> 3] |= (uint8_t)(1u << (pair & 7));
            }
            if (n == v->lens_off[b] || v->lens[n - 1] != len) v->lens[n++] = (uint32_t)len;
        }
    }
    v->lens_off[256] = n;
    return AR_OK;
}

/* Bytes of a token for detokenization with special = true (llama.cpp token_to_piece, BPE branch). */
static size_t piece_of(const ar_vocab *v, int32_t id, char *out, size_t cap)
{
    size_t len;
    const char *t = ar_token_text(v, id, &len);
    uint16_t a = v->attr[id];
    if (a & (ATTR_UNKNOWN | ATTR_CONTROL | ATTR_USER_DEFINED)) {
        if (cap) memcpy(out, t, len < cap ? len : cap);
        return len;
    }
    if (a & ATTR_NORMAL) return bpe_decode_text(t, len, out, cap);
    if (a & ATTR_BYTE) {   /* "<0xXX>" */
        char hex[3] = { len > 3 ? t[3] : 0, len > 4 ? t[4] : 0, 0 };
        if (cap) out[0] = (char)strtol(hex, NULL, 16);
        return 1;
    }
    return 0;
}

static int build_pieces(ar_vocab *v, ar_error *err)
{
    uint64_t total = 0;
    v->piece_off = malloc(sizeof *v->piece_off * ((size_t)v->n_vocab + 1));
    if (!v->piece_off) goto oom;
    for (int32_t id = 0; id < v->n_vocab; id++) {   /* sizes first (piece_of counts like snprintf) */
        size_t n = piece_of(v, id, NULL, 0);
        v->piece_off[id] = total;
        total += n;
        if (n > v->max_piece) v->max_piece = n;
    }
    v->piece_off[v->n_vocab] = total;
    if (total > SIZE_MAX / 2 || !(v->piece = malloc(total ? (size_t)total : 1))) goto oom;
    for (int32_t id = 0; id < v->n_vocab; id++)
        piece_of(v, id, v->piece + v->piece_off[id], (size_t)(v->piece_off[id + 1] - v->piece_off[id]));
    return AR_OK;
oom:
    return ar_fail(err, AR_ENOMEM, "tokenizer: out of memory building the detokenizer cache");
}

int ar_vocab_load(ar_vocab **out, const gguf_file *f, ar_error *err)
{
    *out = NULL;
    gguf_str model, pre;
    int rc;
    if (gguf_get_str(f, "tokenizer.ggml.model", &model, err)) return err->code;
    if (!gguf_str_eq(model, "gpt2"))
        return ar_fail(err, AR_EUNSUPPORTED, "%s: tokenizer.ggml.model '%.*s' is not supported (supported: gpt2)",
                       gguf_path(f), (int)(model.len > 64 ? 64 : model.len), model.ptr);
    if (gguf_get_str(f, "tokenizer.ggml.pre", &pre, err))
        return ar_error_prefix(err, "pre-tokenizer unknown (supported: %s): ", bpe_supported_pre);
    const gguf_kv *tokens = str_array(f, "tokenizer.ggml.tokens", true, err, &rc);
    if (rc) return rc;
    const gguf_kv *merges = str_array(f, "tokenizer.ggml.merges", true, err, &rc);
    if (rc) return rc;
    if (tokens->arr_n == 0 || tokens->arr_n > INT32_MAX / 2)
        return ar_fail(err, AR_EFORMAT, "%s: tokenizer.ggml.tokens has %llu entries", gguf_path(f),
                       (unsigned long long)tokens->arr_n);
    int32_t n = (int32_t)tokens->arr_n;
    const gguf_kv *types = gguf_find(f, "tokenizer.ggml.token_type");
    if (types && (types->type != GGUF_T_ARRAY || types->arr_type != GGUF_T_INT32 || types->arr_n < (uint64_t)n))
        return ar_fail(err, AR_EFORMAT, "%s: tokenizer.ggml.token_type is not an i32 array of %d entries", gguf_path(f), n);

    ar_vocab *v = calloc(1, sizeof *v);
    gguf_str *names = malloc(sizeof *names * (size_t)n);
    char *empty_names = NULL;
    if (!v || !names) { free(v); free(names); return ar_fail(err, AR_ENOMEM, "tokenizer: out of memory"); }
    v->n_vocab = n;
    size_t n_empty = 0;
    for (int32_t i = 0; i < n; i++) n_empty += tokens->arr_str[i].len == 0;
    if (n_empty && !(empty_names = malloc(n_empty * 24))) { rc = ar_fail(err, AR_ENOMEM, "tokenizer: out of memory"); goto fail; }
    for (int32_t i = 0, e = 0; i < n; i++) {
        names[i] = tokens->arr_str[i];
        if (!names[i].len) {   /* llama.cpp renames empty tokens */
            char *s = empty_names + 24 * e++;
            names[i] = (gguf_str){ (uint64_t)snprintf(s, 24, "[EMPTY_%d]", (int)i), s };
        }
    }
    rc = bpe_model_create(&v->bpe, names, n, merges->arr_str, merges->arr_n, pre, err);
    free(names); names = NULL;
    free(empty_names); empty_names = NULL;
    if (rc) { ar_error_prefix(err, "%s: ", gguf_path(f)); goto fail; }

    v->type = malloc((size_t)n);
    v->attr = malloc(sizeof *v->attr * (size_t)n);
    if (!v->type || !v->attr) { rc = ar_fail(err, AR_ENOMEM, "tokenizer: out of memory"); goto fail; }
    for (int32_t i = 0; i < n; i++) {
        int32_t t = AR_TOKEN_NORMAL;
        if (types) memcpy(&t, (const char *)types->arr_data + 4 * (size_t)i, 4);
        static const uint16_t attr_of[7] = { 0, ATTR_NORMAL, ATTR_UNKNOWN, ATTR_CONTROL, ATTR_USER_DEFINED,
                                             ATTR_UNUSED, ATTR_BYTE };
        v->type[i] = (uint8_t)(t >= 0 && t <= 6 ? t : 0);
        v->attr[i] = attr_of[v->type[i]];
    }
    v->bos = id_key(f, "tokenizer.ggml.bos_token_id", -1, n);
    v->eos = id_key(f, "tokenizer.ggml.eos_token_id", -1, n);
    v->unk = id_key(f, "tokenizer.ggml.unknown_token_id", -1, n);
    v->pad = id_key(f, "tokenizer.ggml.padding_token_id", -1, n);
    v->add_bos = bool_key(f, "tokenizer.ggml.add_bos_token", false);
    v->add_eos = bool_key(f, "tokenizer.ggml.add_eos_token", false);
    mark_attrs(v, f);

    for (int32_t i = 0; i < n; i++) v->n_special += (v->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)) != 0;
    v->special = malloc(sizeof *v->special * (v->n_special + 1));
    special_key *keys = malloc(sizeof *keys * (v->n_special + 1));
    if (!v->special || !keys) { free(keys); rc = ar_fail(err, AR_ENOMEM, "tokenizer: out of memory"); goto fail; }
    for (int32_t i = 0, k = 0; i < n; i++) {
        if (!(v->attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))) continue;
        size_t len;
        ar_token_text(v, i, &len);
        keys[k++] = (special_key){ len, i };
    }
    qsort(keys, v->n_special, sizeof *keys, by_length_desc);
    for (size_t k = 0; k < v->n_special; k++) v->special[k] = keys[k].id;
    free(keys);
    if ((rc = build_special_index(v, err))) goto fail;
    if ((rc = build_pieces(v, err))) goto fail;
    *out = v;
    return AR_OK;
fail:
    free(names);
    free(empty_names);
    ar_vocab_free(v);
    return rc;
}

/* ---- tokenize ------------------------------------------------------------------------------- */

typedef struct fragment { size_t off, len; int32_t token; } fragment;   /* token < 0: raw text */

typedef struct frag_list { fragment *f; size_t n, cap; } frag_list;

static bool frag_push(frag_list *l, fragment f)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        fragment *p = realloc(l->f, sizeof *p * cap);
        if (!p) return false;
        l->f = p;
        l->cap = cap;
    }
    l->f[l->n++] = f;
    return true;
}

typedef struct occurrence { size_t pos; uint32_t len; int32_t id; } occurrence;

static int by_partition_order(const void *a, const void *b)   /* as v->special: length desc, id; then position */
{
    const occurrence *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    if (x->id != y->id) return x->id < y->id ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int by_position(const void *a, const void *b)
{
    const occurrence *x = a, *y = b;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Split the text at special-token texts with the result of llama.cpp's tokenizer_st_partition: for each
 * special token, longest first, every leftmost non-overlapping occurrence that lies in text not already
 * taken by a longer one. Done in one scan: find all occurrences of all special texts, then accept them in
 * that order. */
static int partition(const ar_vocab *v, const char *text, size_t len, bool parse_special, frag_list *out)
{
    const unsigned char *t = (const unsigned char *)text;
    occurrence *occ = NULL;
    size_t n_occ = 0, cap = 0;
    unsigned char *taken = NULL;
    *out = (frag_list){ 0 };
    for (size_t i = 0; i < len; i++) {
        uint32_t lo = v->lens_off[t[i]], hi = v->lens_off[t[i] + 1];
        if (lo == hi) continue;
        unsigned pair = i + 1 < len ? (unsigned)t[i] << 8 | t[i + 1] : 0;
        bool pair_ok = i + 1 < len && (v->pair_bits[pair >> 3] >> (pair & 7) & 1);
        for (uint32_t k = lo; k < hi; k++) {
            uint32_t l = v->lens[k];
            if (l > len - i || (l >= 2 && !pair_ok)) continue;
            int32_t id = bpe_find(v->bpe, text + i, l);
            if (id < 0 || !(v->attr[id] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN))) continue;
            if (!parse_special && (v->attr[id] & (ATTR_CONTROL | ATTR_UNKNOWN))) continue;
            if (n_occ == cap) {
                occurrence *p = realloc(occ, sizeof *p * (cap = cap ? 2 * cap : 64));
                if (!p) goto oom;
                occ = p;
            }
            occ[n_occ++] = (occurrence){ i, l, id };
        }
    }
    size_t n_acc = 0;
    if (n_occ) {
        if (!(taken = calloc(len, 1))) goto oom;
        qsort(occ, n_occ, sizeof *occ, by_partition_order);
        int32_t cur = -1;
        size_t cur_end = 0;
        for (size_t k = 0; k < n_occ; k++) {
            occurrence o = occ[k];
            if (o.id != cur) { cur = o.id; cur_end = 0; }
            if (o.pos < cur_end || memchr(taken + o.pos, 1, o.len)) continue;
            memset(taken + o.pos, 1, o.len);
            cur_end = o.pos + o.len;
            occ[n_acc++] = o;
        }
        qsort(occ, n_acc, sizeof *occ, by_position);
    }
    size_t at = 0;
    for (size_t k = 0; k < n_acc; k++) {
        if (occ[k].pos > at && !frag_push(out, (fragment){ at, occ[k].pos - at, -1 })) goto oom;
        if (!frag_push(out, (fragment){ occ[k].pos, occ[k].len, occ[k].id })) goto oom;
        at = occ[k].pos + occ[k].len;
    }
    if (at < len && !frag_push(out, (fragment){ at, len - at, -1 })) goto oom;
    free(occ);
    free(taken);
    return AR_OK;
oom:
    free(occ);
    free(taken);
    free(out->f);
    return AR_ENOMEM;
}

int ar_tokenize(const ar_vocab *v, const char *text, size_t len, bool parse_special,
                int32_t **ids, size_t *n_ids, ar_error *err)
{
    *ids = NULL;
    *n_ids = 0;
    if (!len) return AR_OK;
    if (!text) return ar_fail(err, AR_EINVAL, "tokenize: text is NULL");
    frag_list frags;
    if (partition(v, text, len, parse_special, &frags)) return ar_fail(err, AR_ENOMEM, "tokenize: out of memory");
    bpe_ids out = { 0 };
    bpe_session *s = bpe_session_create(v->bpe);
    int rc = s ? AR_OK : ar_fail(err, AR_ENOMEM, "tokenize: out of memory");
    for (size_t i = 0; !rc && i < frags.n; i++) {
        fragment fr = frags.f[i];
        if (fr.token >= 0) {
            if (bpe_ids_push(&out, fr.token)) rc = ar_fail(err, AR_ENOMEM, "tokenize: out of memory");
        } else {
            rc = bpe_encode(s, text + fr.off, fr.len, &out, err);
        }
    }
    bpe_session_free(s);
    free(frags.f);
    if (rc) { free(out.ids); return rc; }
    *ids = out.ids;
    *n_ids = out.n;
    return AR_OK;
}

/* ---- detokenize ----------------------------------------------------------------------------- */

static const char *piece(const ar_vocab *v, int32_t id, bool special, size_t *len)
{
    *len = 0;
    if (!valid_id(v, id) || (!special && (v->attr[id] & (ATTR_UNKNOWN | ATTR_CONTROL)))) return "";
    *len = (size_t)(v->piece_off[id + 1] - v->piece_off[id]);
    return v->piece + v->piece_off[id];
}

size_t ar_token_to_bytes(const ar_vocab *v, int32_t id, bool special, char *out, size_t cap)
{
    size_t len;
    const char *p = piece(v, id, special, &len);
    if (cap && len) memcpy(out, p, len < cap ? len : cap);
    return len;
}

/* Length of the UTF-8 sequence a lead byte starts (0: cannot start one), and the range its second byte
 * must be in (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF). */
static int seq_len(unsigned char b, unsigned char *lo, unsigned char *hi)
{
    *lo = 0x80; *hi = 0xbf;
    if (b < 0x80) return 1;
    if (b >= 0xc2 && b <= 0xdf) return 2;
    if (b >= 0xe0 && b <= 0xef) {
        if (b == 0xe0) *lo = 0xa0;
        if (b == 0xed) *hi = 0x9f;
        return 3;
    }
    if (b >= 0xf0 && b <= 0xf4) {
        if (b == 0xf0) *lo = 0x90;
        if (b == 0xf4) *hi = 0x8f;
        return 4;
    }
    return 0;
}

typedef struct sink { char *out; size_t cap, n; bool full; } sink;

static void emit(sink *s, const unsigned char *p, size_t n)
{
    if (s->full || s->n + n > s->cap) { s->full = true; return; }   /* never a partial character */
    memcpy(s->out + s->n, p, n);
    s->n += n;
}

static const unsigned char replacement[3] = { 0xef, 0xbf, 0xbd };

size_t ar_detok_push_bytes(ar_detok *d, const char *bytes, size_t len, char *out, size_t cap)
{
    sink s = { out, cap, 0, false };
    const unsigned char *in = (const unsigned char *)bytes;
    /* bytes i.. of the virtual stream pend[0..n) + in[0..len) */
#define AT(k) ((k) < (size_t)d->n ? d->pend[k] : in[(k) - (size_t)d->n])
    size_t total = (size_t)d->n + len, pos = 0;
    unsigned char cur[4];
    while (pos < total) {
        unsigned char b = AT(pos), lo, hi;
        int need = seq_len(b, &lo, &hi);
        if (need == 1) {
            /* copy a run of ASCII straight from the input */
            size_t run = pos;
            while (run < total && AT(run) < 0x80) run++;
            if (pos >= (size_t)d->n) emit(&s, in + (pos - (size_t)d->n), run - pos);
            else for (size_t k = pos; k < run; k++) { cur[0] = AT(k); emit(&s, cur, 1); }
            pos = run;
            continue;
        }
        if (need == 0) { emit(&s, replacement, 3); pos++; continue; }
        int k = 1;
        cur[0] = b;
        for (; k < need && pos + (size_t)k < total; k++) {
            unsigned char c = AT(pos + (size_t)k);
            if (c < (k == 1 ? lo : 0x80) || c > (k == 1 ? hi : 0xbf)) break;
            cur[k] = c;
        }
        if (k == need) { emit(&s, cur, (size_t)need); pos += (size_t)need; continue; }
        if (pos + (size_t)k == total) {   /* valid so far, incomplete: keep for the next push */
            unsigned char keep[4];
            for (int j = 0; j < k; j++) keep[j] = AT(pos + (size_t)j);
            memcpy(d->pend, keep, (size_t)k);
            d->n = k;
            return s.n;
        }
        emit(&s, replacement, 3);   /* maximal invalid subpart */
        pos += (size_t)k;
    }
#undef AT
    d->n = 0;
    return s.n;
}

size_t ar_detok_push(ar_detok *d, const ar_vocab *v, int32_t id, bool special, char *out, size_t cap)
{
    size_t len;
    const char *p = piece(v, id, special, &len);
    return ar_detok_push_bytes(d, p, len, out, cap);
}

size_t ar_detok_flush(ar_detok *d, char *out, size_t cap)
{
    if (!d->n) return 0;
    d->n = 0;
    if (cap < 3) return 0;
    memcpy(out, replacement, 3);
    return 3;
}
