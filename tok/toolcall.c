/* tok/toolcall.c — incremental parser of reasoning, content and Qwen3-Coder XML tool calls.
 *
 * Data flow: ar_tc_feed appends the piece to `pend` (the input not yet consumed) and runs the state
 * machine until it cannot decide anything more; ar_tc_finish runs it once more with `final` set, when
 * every undecided byte is decided (held-back tag prefixes become text, an open call is closed).
 *
 *   START ──"<think>"──► REASON ──"</think>"──► TEXT ◄───────────────────────────┐
 *     └──────other──────────────────────────────► │ "<tool_call>" + known function  │
 *                        REASON ──"<tool_call>"──►│                                 │
 *                                                 ▼                                 │
 *                              BODY ◄──"</parameter>"── PARAM                       │
 *                               │ "<parameter=P>" ──────►                           │
 *                               └ "</function>" ► TAIL ─(optional "</tool_call>")───┘
 *
 * Invariants: a byte of pend is consumed only once its meaning is decided, so the events do not depend
 * on how the text was split (tests/test_toolcall.c splits at every position); every emitted piece ends
 * on a UTF-8 boundary and is sanitised (invalid bytes -> U+FFFD); the arguments of a started call are
 * always closed into one JSON object. */
#include "tok/toolcall.h"

#include <jansson.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { S_START, S_REASON, S_TEXT, S_BODY, S_PARAM, S_TAIL };

/* JSON-schema types a parameter accepts. */
enum { T_STRING = 1, T_INTEGER = 2, T_NUMBER = 4, T_BOOLEAN = 8, T_NULL = 16, T_OBJECT = 32, T_ARRAY = 64, T_ANY = 127 };

enum { MAX_NAME = 256 };   /* longest function / parameter name looked at before calling it garbage */

typedef struct tc_param {
    char    *name;
    unsigned types;
} tc_param;

typedef struct tc_func {
    char     *name;
    tc_param *params;
    int       n_params;
} tc_func;

typedef struct buf {
    char  *p;
    size_t n, cap;
} buf;

struct ar_toolcall_parser {
    tc_func *funcs;
    int      n_funcs;

    int  state;
    bool seg_start;       /* drop leading whitespace of the current text / reasoning segment */
    buf  pend;            /* undecided input */
    size_t off;           /* pend.p[off..n) is what is left */
    buf  scratch;         /* sanitised / escaped output pieces */

    /* the open call */
    int      n_calls;
    const tc_func *fn;
    char     id[32];
    int      n_args;
    buf     *arg_names;   /* parameters seen, for duplicates: the names as written (a NUL byte included) */
    int      n_arg_names, cap_arg_names;

    /* the open parameter */
    unsigned ptypes;
    bool     pstream;     /* a string parameter, streamed as it arrives */
    bool     pskip;       /* a duplicate: value consumed, not emitted */
    bool     pvalue;      /* the optional "\n" after "<parameter=P>" has been dealt with */
    size_t   pscan;       /* a typed value: bytes already searched for a closer (avoids rescanning) */

    uint64_t id_seed;
    bool     oom;
    int      abort_rc;
};

/* ---- small helpers ----------------------------------------------------------------------------- */

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

static bool buf_put(buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *np = realloc(b->p, cap);
        if (!np) return false;
        b->p = np;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
    return true;
}

static bool starts(const char *s, size_t n, const char *tag)
{
    size_t k = strlen(tag);
    return n >= k && !memcmp(s, tag, k);
}

/* s[0..n) is a non-empty proper prefix of tag */
static bool is_prefix_of(const char *s, size_t n, const char *tag)
{
    size_t k = strlen(tag);
    return n > 0 && n < k && !memcmp(s, tag, n);
}

/* The earliest complete occurrence of one of tags in s[0..n); *which is its index. */
static const char *find_tag(const char *s, size_t n, const char *const *tags, int n_tags, int *which)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '<') continue;
        for (int t = 0; t < n_tags; t++)
            if (starts(s + i, n - i, tags[t])) { *which = t; return s + i; }
    }
    return NULL;
}

/* The start of the longest suffix of s[0..n) that is a proper prefix of one of tags (n if none). */
static size_t tag_prefix_start(const char *s, size_t n, const char *const *tags, int n_tags)
{
    size_t longest = 0;
    for (int t = 0; t < n_tags; t++) {
        size_t k = strlen(tags[t]);
        if (k > longest) longest = k;
    }
    for (size_t j = n > longest ? n - longest : 0; j < n; j++) {
        if (s[j] != '<') continue;
        for (int t = 0; t < n_tags; t++)
            if (is_prefix_of(s + j, n - j, tags[t])) return j;
    }
    return n;
}

/* Length of a valid UTF-8 sequence at s (1..4), 0 if invalid, -1 if s[0..n) is a valid but incomplete
 * start of one. */
static int utf8_seq(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        unsigned b = s[i];
        if (b < (i == 1 ? lo : 0x80) || b > (i == 1 ? hi : 0xBF)) return 0;
    }
    return len;
}

/* The longest prefix of s[0..n) that does not end inside an incomplete UTF-8 sequence. */
static size_t utf8_safe_len(const char *s, size_t n)
{
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        unsigned char c = (unsigned char)s[n - back];
        if (c < 0x80) return n;
        if (c >= 0xC0) return utf8_seq((const unsigned char *)s + n - back, back) == -1 ? n - back : n;
    }
    return n;
}

/* Append s as valid UTF-8 (invalid sequences -> U+FFFD), JSON-escaped when json is set. */
static bool put_clean(buf *b, const char *s, size_t n, bool json)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;   /* bytes [run, i) are copied as they are */
    bool ok = true;
    while (i < n) {
        unsigned char c = u[i];
        const char *rep = NULL;
        char esc[8];
        int len = 1;
        if (c >= 0x80) {
            len = utf8_seq(u + i, n - i);
            if (len <= 0) { rep = "\xEF\xBF\xBD"; len = 1; }
        } else if (json && (c < 0x20 || c == '"' || c == '\\')) {
            switch (c) {
            case '"': rep = "\\\""; break;
            case '\\': rep = "\\\\"; break;
            case '\n': rep = "\\n"; break;
            case '\r': rep = "\\r"; break;
            case '\t': rep = "\\t"; break;
            case '\b': rep = "\\b"; break;
            case '\f': rep = "\\f"; break;
            default:
                esc[0] = '\\'; esc[1] = 'u'; esc[2] = '0'; esc[3] = '0';
                esc[4] = "0123456789abcdef"[c >> 4]; esc[5] = "0123456789abcdef"[c & 15]; esc[6] = 0;
                rep = esc;
            }
        }
        if (rep) {
            ok &= buf_put(b, s + run, i - run);
            ok &= buf_put(b, rep, strlen(rep));
            i += (size_t)len;
            run = i;
        } else {
            i += (size_t)len;
        }
    }
    ok &= buf_put(b, s + run, n - run);
    return ok;
}

/* ---- tools ------------------------------------------------------------------------------------- */

static unsigned type_bit(const char *t)
{
    if (!t) return 0;
    if (!strcmp(t, "string")) return T_STRING;
    if (!strcmp(t, "integer")) return T_INTEGER;
    if (!strcmp(t, "number")) return T_NUMBER;
    if (!strcmp(t, "boolean")) return T_BOOLEAN;
    if (!strcmp(t, "null")) return T_NULL;
    if (!strcmp(t, "object")) return T_OBJECT;
    if (!strcmp(t, "array")) return T_ARRAY;
    return 0;
}

static unsigned value_bit(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING: return T_STRING;
    case JSON_INTEGER: return T_INTEGER | T_NUMBER;
    case JSON_REAL: return T_NUMBER;
    case JSON_TRUE: case JSON_FALSE: return T_BOOLEAN;
    case JSON_NULL: return T_NULL;
    case JSON_OBJECT: return T_OBJECT;
    case JSON_ARRAY: return T_ARRAY;
    }
    return 0;
}

/* The types a JSON schema accepts (T_ANY when it does not say). */
static unsigned schema_types(const json_t *s, int depth)
{
    if (!json_is_object(s) || depth > 16) return T_ANY;
    unsigned m = 0;
    const json_t *type = json_object_get(s, "type");
    if (json_is_string(type)) {
        m = type_bit(json_string_value(type));
    } else if (json_is_array(type)) {
        size_t i;
        const json_t *t;
        json_array_foreach(type, i, t) m |= type_bit(json_string_value(t));
    } else if (json_is_array(json_object_get(s, "enum"))) {
        size_t i;
        const json_t *v;
        json_array_foreach(json_object_get(s, "enum"), i, v) m |= value_bit(v);
    } else if (json_object_get(s, "const")) {
        m = value_bit(json_object_get(s, "const"));
    } else {
        static const char *const unions[] = { "anyOf", "oneOf" };
        for (int u = 0; u < 2; u++) {
            const json_t *arr = json_object_get(s, unions[u]);
            size_t i;
            const json_t *sub;
            if (json_is_array(arr)) json_array_foreach(arr, i, sub) m |= schema_types(sub, depth + 1);
        }
        if (!m && json_object_get(s, "properties")) m = T_OBJECT;
        if (!m && json_object_get(s, "items")) m = T_ARRAY;
    }
    if (m & T_INTEGER) m |= T_NUMBER;
    return m ? m : T_ANY;
}

static void free_funcs(ar_toolcall_parser *p)
{
    for (int f = 0; f < p->n_funcs; f++) {
        for (int k = 0; k < p->funcs[f].n_params; k++) free(p->funcs[f].params[k].name);
        free(p->funcs[f].params);
        free(p->funcs[f].name);
    }
    free(p->funcs);
    p->funcs = NULL;
    p->n_funcs = 0;
}

static int load_tools(ar_toolcall_parser *p, const char *tools_json, ar_error *err)
{
    if (!tools_json) return 0;
    json_error_t je;
    json_t *tools = json_loads(tools_json, JSON_DECODE_ANY, &je);
    if (!tools) return ar_fail(err, AR_EFORMAT, "tool-call parser: tools are not valid JSON: %s (at byte %d)", je.text, je.position);
    if (json_is_null(tools)) { json_decref(tools); return 0; }
    if (!json_is_array(tools)) { json_decref(tools); return ar_fail(err, AR_EFORMAT, "tool-call parser: tools must be an array"); }
    size_t n = json_array_size(tools);
    p->funcs = calloc(n ? n : 1, sizeof *p->funcs);
    if (!p->funcs) { json_decref(tools); return ar_fail(err, AR_ENOMEM, "tool-call parser: out of memory"); }
    size_t i;
    const json_t *t;
    json_array_foreach(tools, i, t) {
        const json_t *fn = json_object_get(t, "function");
        if (!json_is_object(fn)) fn = t;   /* Anthropic: {"name", "input_schema"} */
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name) continue;
        const json_t *params = json_object_get(fn, "parameters");
        if (!params) params = json_object_get(fn, "input_schema");
        const json_t *props = json_object_get(params, "properties");
        tc_func *f = &p->funcs[p->n_funcs++];
        f->name = strdup(name);
        size_t np = json_is_object(props) ? json_object_size(props) : 0;
        f->params = calloc(np ? np : 1, sizeof *f->params);
        if (!f->name || !f->params) { json_decref(tools); return ar_fail(err, AR_ENOMEM, "tool-call parser: out of memory"); }
        const char *key;
        const json_t *schema;
        if (np) json_object_foreach((json_t *)props, key, schema) {
            tc_param *q = &f->params[f->n_params++];
            q->name = strdup(key);
            q->types = schema_types(schema, 0);
            if (!q->name) { json_decref(tools); return ar_fail(err, AR_ENOMEM, "tool-call parser: out of memory"); }
        }
    }
    json_decref(tools);
    return 0;
}

static const tc_func *find_func(const ar_toolcall_parser *p, const char *name, size_t n)
{
    for (int f = 0; f < p->n_funcs; f++)
        if (strlen(p->funcs[f].name) == n && !memcmp(p->funcs[f].name, name, n)) return &p->funcs[f];
    return NULL;
}

/* ---- parser lifecycle -------------------------------------------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

ar_toolcall_parser *ar_tc_create(const char *tools_json, bool starts_in_reasoning, ar_error *err)
{
    static atomic_uint_fast64_t parsers;
    ar_toolcall_parser *p = calloc(1, sizeof *p);
    if (!p) { ar_fail(err, AR_ENOMEM, "tool-call parser: out of memory"); return NULL; }
    if (load_tools(p, tools_json, err)) { ar_tc_free(p); return NULL; }
    p->state = starts_in_reasoning ? S_REASON : S_START;
    p->seg_start = true;
    uint64_t s = (uint64_t)time(NULL) ^ ((uint64_t)clock() << 32) ^ (uint64_t)(uintptr_t)p;
    s += atomic_fetch_add(&parsers, 1) * 0x9E3779B97F4A7C15ULL;
    p->id_seed = splitmix64(&s);
    return p;
}

void ar_tc_free(ar_toolcall_parser *p)
{
    if (!p) return;
    free_funcs(p);
    for (int i = 0; i < p->n_arg_names; i++) free(p->arg_names[i].p);
    free(p->arg_names);
    free(p->pend.p);
    free(p->scratch.p);
    free(p);
}

void ar_tc_set_id_seed(ar_toolcall_parser *p, uint64_t seed) { p->id_seed = seed; }

int ar_tc_n_calls(const ar_toolcall_parser *p) { return p->n_calls; }

/* ---- events ------------------------------------------------------------------------------------ */

typedef struct run {
    ar_toolcall_parser *p;
    ar_tc_cb cb;
    void    *ctx;
    bool     final;
} run;

static int fire(run *r, ar_tc_event_kind kind, const char *data, size_t len)
{
    ar_toolcall_parser *p = r->p;
    bool call = kind == AR_TC_CALL_START || kind == AR_TC_CALL_ARGS || kind == AR_TC_CALL_END;
    ar_tc_event ev = { kind, call ? p->n_calls - 1 : -1, call ? p->fn->name : NULL, call ? p->id : NULL, data, len };
    int rc = r->cb(r->ctx, &ev);
    if (rc) p->abort_rc = rc;
    return rc;
}

/* Emit s[0..n) as text or reasoning, sanitised. */
static int emit(run *r, ar_tc_event_kind kind, const char *s, size_t n)
{
    if (!n) return 0;
    buf *b = &r->p->scratch;
    b->n = 0;
    if (!put_clean(b, s, n, false)) { r->p->oom = true; return AR_ENOMEM; }
    return fire(r, kind, b->p, b->n);
}

static int emit_args(run *r, const char *s, size_t n)
{
    return n ? fire(r, AR_TC_CALL_ARGS, s, n) : 0;
}

static void consume(ar_toolcall_parser *p, size_t n) { p->off += n; }

static int start_call(run *r, const tc_func *fn)
{
    ar_toolcall_parser *p = r->p;
    static const char ALNUM[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    uint64_t x = p->id_seed ^ (0xD1B54A32D192ED03ULL * (uint64_t)(p->n_calls + 1));
    memcpy(p->id, "call_", 5);
    for (int i = 0; i < 24; i += 8) {
        uint64_t v = splitmix64(&x);
        for (int k = 0; k < 8; k++, v >>= 8) p->id[5 + i + k] = ALNUM[(v & 0xFF) % 62];
    }
    p->id[29] = 0;
    p->fn = fn;
    p->n_calls++;
    p->n_args = 0;
    for (int i = 0; i < p->n_arg_names; i++) free(p->arg_names[i].p);
    p->n_arg_names = 0;
    return fire(r, AR_TC_CALL_START, NULL, 0);
}

static int end_call(run *r)
{
    ar_toolcall_parser *p = r->p;
    int rc = p->n_args ? emit_args(r, "}", 1) : emit_args(r, "{}", 2);
    if (!rc) rc = fire(r, AR_TC_CALL_END, NULL, 0);
    p->fn = NULL;
    return rc;
}

/* "{" or "," then the key, as JSON. */
static bool put_key(ar_toolcall_parser *p, buf *b, const char *name, size_t n)
{
    bool ok = buf_put(b, p->n_args ? "," : "{", 1) && buf_put(b, "\"", 1) && put_clean(b, name, n, true) &&
              buf_put(b, "\":", 2);
    p->n_args++;
    return ok;
}

/* A parameter name as the arguments' key: invalid UTF-8 and NUL bytes replaced by U+FFFD (jansson, which the
 * server reads a call sent back with, cannot hold a NUL in a key; and two names that differ only in such bytes
 * would give one key twice). Keys are compared and written in this form. */
static bool clean_name(buf *out, const char *name, size_t n)
{
    out->n = 0;
    bool ok = buf_put(out, "", 0);   /* a buffer even for an empty name: put_key never takes NULL + 0 */
    for (size_t i = 0; ok && i <= n;) {
        const char *nul = memchr(name + i, 0, n - i);
        const size_t end = nul ? (size_t)(nul - name) : n;
        ok = put_clean(out, name + i, end - i, false) && (!nul || buf_put(out, "\xEF\xBF\xBD", 3));
        i = end + 1;
    }
    return ok;
}

/* A parameter opens: look up its types, skip duplicates; a string one starts streaming at once. */
static int open_param(run *r, const char *raw, size_t raw_n)
{
    ar_toolcall_parser *p = r->p;
    buf key = { 0 };
    if (!clean_name(&key, raw, raw_n)) { free(key.p); p->oom = true; return AR_ENOMEM; }
    const char *name = key.p;
    const size_t n = key.n;
    p->ptypes = T_ANY;
    for (int k = 0; k < p->fn->n_params; k++)
        if (strlen(p->fn->params[k].name) == n && !memcmp(p->fn->params[k].name, name, n)) p->ptypes = p->fn->params[k].types;
    p->pskip = false;
    for (int i = 0; i < p->n_arg_names; i++)
        if (p->arg_names[i].n == n && !memcmp(p->arg_names[i].p, name, n)) p->pskip = true;
    p->pstream = p->ptypes == T_STRING;
    p->pvalue = false;
    p->pscan = 0;
    if (p->pskip) { free(key.p); return 0; }
    if (p->n_arg_names == p->cap_arg_names) {
        int cap = p->cap_arg_names ? 2 * p->cap_arg_names : 8;
        buf *np = realloc(p->arg_names, (size_t)cap * sizeof *np);
        if (!np) { free(key.p); p->oom = true; return AR_ENOMEM; }
        p->arg_names = np;
        p->cap_arg_names = cap;
    }
    p->arg_names[p->n_arg_names++] = key;   /* owned from here */
    if (!p->pstream) {
        /* remember the key for later: emitted with the value */
        return 0;
    }
    buf *b = &p->scratch;
    b->n = 0;
    if (!put_key(p, b, name, n) || !buf_put(b, "\"", 1)) { p->oom = true; return AR_ENOMEM; }
    return emit_args(r, b->p, b->n);
}

/* Part of a streamed string value. */
static int stream_value(run *r, const char *s, size_t n)
{
    ar_toolcall_parser *p = r->p;
    if (p->pskip || !n) return 0;
    buf *b = &p->scratch;
    b->n = 0;
    if (!put_clean(b, s, n, true)) { p->oom = true; return AR_ENOMEM; }
    return emit_args(r, b->p, b->n);
}

/* The value is complete: s[0..n) is its (rest of the) text. */
static int close_param(run *r, const char *s, size_t n)
{
    ar_toolcall_parser *p = r->p;
    if (p->pskip) return 0;
    if (p->pstream) {
        int rc = stream_value(r, s, n);
        return rc ? rc : emit_args(r, "\"", 1);
    }
    /* typed: JSON when the trimmed text parses as a non-string value of an accepted type */
    const char *v = s;
    size_t vn = n;
    while (vn && is_ws(*v)) { v++; vn--; }
    while (vn && is_ws(v[vn - 1])) vn--;
    bool as_json = false;
    if (vn && (p->ptypes & ~(unsigned)T_STRING)) {
        json_error_t je;
        json_t *j = json_loadb(v, vn, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
        if (j) {
            unsigned bit = value_bit(j);
            if (json_is_real(j)) bit |= T_INTEGER;   /* ints were decoded as reals */
            /* a type without "string": any JSON (llama.cpp leaves the schema to the grammar); a union with
             * "string": only a non-string value of one of its types, else the text is the string */
            as_json = !(p->ptypes & T_STRING) || (!json_is_string(j) && (bit & p->ptypes));
            json_decref(j);
        }
    }
    const buf *name = &p->arg_names[p->n_arg_names - 1];
    buf *b = &p->scratch;
    b->n = 0;
    bool ok = put_key(p, b, name->p, name->n);
    if (as_json) ok &= buf_put(b, v, vn);
    else ok &= buf_put(b, "\"", 1) && put_clean(b, s, n, true) && buf_put(b, "\"", 1);
    if (!ok) { p->oom = true; return AR_ENOMEM; }
    return emit_args(r, b->p, b->n);
}

/* ---- the states -------------------------------------------------------------------------------- */

enum { NEED_MORE = 0, PROGRESS = 1, STOP = 2 };

#define TRY(x) do { if (x) return STOP; } while (0)

/* The NAME of a "<function=NAME>" or "<parameter=NAME>" head, from s[from]: up to '>', at most MAX_NAME bytes,
 * no '<' or newline. Returns 1 with [*a, *b) the name trimmed of whitespace and *end the index of the '>',
 * 0 when more input is needed, -1 when it is not a name. Decided by the bytes alone, not by how many have
 * come: a 257-byte name was taken when its '>' came in the same piece (fuzz_toolcall). */
static int head_name(const char *s, size_t n, size_t from, size_t *a, size_t *b, size_t *end)
{
    size_t k = from;
    while (k < n && s[k] != '>' && s[k] != '<' && s[k] != '\n' && k - from <= MAX_NAME) k++;
    if (k - from > MAX_NAME) return -1;
    if (k == n) return 0;
    if (s[k] != '>') return -1;
    size_t x = from, y = k;
    while (x < y && is_ws(s[x])) x++;
    while (y > x && is_ws(s[y - 1])) y--;
    *a = x;
    *b = y;
    *end = k;
    return 1;
}

/* After "<tool_call>" at s: whitespace, "<function=NAME>". Returns 1 and the function and the length
 * of the head when it names a known tool, 0 when more input is needed, -1 when it does not. */
static int call_head(ar_toolcall_parser *p, const char *s, size_t n, const tc_func **fn, size_t *head)
{
    size_t k = 11;   /* "<tool_call>" */
    while (k < n && is_ws(s[k]) && k - 11 <= MAX_NAME) k++;
    if (k - 11 > MAX_NAME) return -1;   /* decided by the bytes, not by how many have come */
    if (k == n) return 0;
    if (n - k < 10) return is_prefix_of(s + k, n - k, "<function=") ? 0 : -1;
    if (memcmp(s + k, "<function=", 10)) return -1;
    size_t a, b, end;
    const int h = head_name(s, n, k + 10, &a, &b, &end);
    if (h <= 0) return h;
    *fn = find_func(p, s + a, b - a);
    *head = end + 1;
    return *fn ? 1 : -1;
}

/* What is left to read (before any input the buffer is still NULL, and NULL + 0 is undefined). */
static const char *pending(const ar_toolcall_parser *p) { return p->pend.p ? p->pend.p + p->off : ""; }

/* TEXT and REASON: emit up to the next tag, holding back what might still become one. */
static int step_segment(run *r)
{
    ar_toolcall_parser *p = r->p;
    const bool reason = p->state == S_REASON;
    const ar_tc_event_kind kind = reason ? AR_TC_REASONING : AR_TC_TEXT;
    const char *tags[2];
    int n_tags = 0;
    if (reason) tags[n_tags++] = "</think>";
    if (p->n_funcs) tags[n_tags++] = "<tool_call>";

    const char *s = pending(p);
    size_t n = p->pend.n - p->off;
    if (p->seg_start) {
        size_t k = 0;
        while (k < n && is_ws(s[k])) k++;
        consume(p, k);
        s += k;
        n -= k;
        if (!n) return k ? PROGRESS : NEED_MORE;
        p->seg_start = false;
    }
    if (!n) return NEED_MORE;

    int which = -1;
    const char *tag = n_tags ? find_tag(s, n, tags, n_tags, &which) : NULL;
    if (tag) {
        size_t i = (size_t)(tag - s), ws = i;
        while (ws > 0 && is_ws(s[ws - 1])) ws--;
        TRY(emit(r, kind, s, ws));
        consume(p, ws);
        s += ws;
        i -= ws;
        if (!strcmp(tags[which], "</think>")) {
            consume(p, i + 8);
            p->state = S_TEXT;
            p->seg_start = true;
            return PROGRESS;
        }
        const tc_func *fn = NULL;
        size_t head = 0;
        int h = call_head(p, s + i, n - ws - i, &fn, &head);
        if (h == 0 && !r->final) return ws ? PROGRESS : NEED_MORE;
        if (h == 1) {
            consume(p, i + head);
            p->state = S_BODY;
            TRY(start_call(r, fn));
            return PROGRESS;
        }
        /* not a call: "<tool_call>" (and the whitespace before it) stays text */
        TRY(emit(r, kind, s, i + 11));
        consume(p, i + 11);
        return PROGRESS;
    }
    if (r->final) {
        size_t end = n;
        if (reason) while (end && is_ws(s[end - 1])) end--;
        TRY(emit(r, kind, s, end));
        consume(p, n);
        return n ? PROGRESS : NEED_MORE;
    }
    size_t hold = n_tags ? tag_prefix_start(s, n, tags, n_tags) : n;
    while (hold > 0 && is_ws(s[hold - 1])) hold--;   /* whitespace before a tag is dropped */
    hold = utf8_safe_len(s, hold);
    TRY(emit(r, kind, s, hold));
    consume(p, hold);
    return hold ? PROGRESS : NEED_MORE;
}

/* START: a "<think>" opening the output starts reasoning. */
static int step_start(run *r)
{
    ar_toolcall_parser *p = r->p;
    const char *s = pending(p);
    size_t n = p->pend.n - p->off, k = 0;
    while (k < n && is_ws(s[k])) k++;
    if (k == n && !r->final) return NEED_MORE;
    if (starts(s + k, n - k, "<think>")) {
        consume(p, k + 7);
        p->state = S_REASON;
        p->seg_start = true;
        return PROGRESS;
    }
    if (is_prefix_of(s + k, n - k, "<think>") && !r->final) return NEED_MORE;
    p->state = S_TEXT;
    p->seg_start = true;
    return PROGRESS;
}

/* Garbage inside a call: close it; the rest is text again. */
static int malformed(run *r)
{
    r->p->state = S_TEXT;
    r->p->seg_start = false;
    TRY(end_call(r));
    return PROGRESS;
}

/* BODY: between the parameters of a call. */
static int step_body(run *r)
{
    ar_toolcall_parser *p = r->p;
    const char *s = pending(p);
    size_t n = p->pend.n - p->off, k = 0;
    while (k < n && is_ws(s[k])) k++;
    consume(p, k);
    s += k;
    n -= k;
    if (!n) {
        if (!r->final) return k ? PROGRESS : NEED_MORE;
        p->state = S_TEXT;
        TRY(end_call(r));
        return PROGRESS;
    }
    if (starts(s, n, "<parameter=")) {
        size_t a, b, e;
        const int h = head_name(s, n, 11, &a, &b, &e);
        if (h == 0 && !r->final) return NEED_MORE;
        if (h <= 0 || a == b) return malformed(r);
        int rc = open_param(r, s + a, b - a);
        if (rc) return STOP;
        consume(p, e + 1);
        p->state = S_PARAM;
        return PROGRESS;
    }
    if (starts(s, n, "</function>")) {
        consume(p, 11);
        p->state = S_TAIL;
        TRY(end_call(r));
        return PROGRESS;
    }
    if (starts(s, n, "</tool_call>")) {
        consume(p, 12);
        p->state = S_TEXT;
        p->seg_start = true;
        TRY(end_call(r));
        return PROGRESS;
    }
    if (!r->final && (is_prefix_of(s, n, "<parameter=") || is_prefix_of(s, n, "</function>") ||
                      is_prefix_of(s, n, "</tool_call>")))
        return NEED_MORE;
    return malformed(r);
}

/* PARAM: a value, up to "</parameter>" (or a "</function>" / "</tool_call>" that closes it too). */
static int step_param(run *r)
{
    static const char *const closers[] = { "</parameter>", "</function>", "</tool_call>" };
    ar_toolcall_parser *p = r->p;
    const char *s = pending(p);
    size_t n = p->pend.n - p->off;
    if (!p->pvalue) {
        if (!n && !r->final) return NEED_MORE;
        if (n && s[0] == '\n') { consume(p, 1); s++; n--; }
        p->pvalue = true;
    }
    int which = -1;
    size_t from = p->pscan < n ? p->pscan : 0;
    const char *c = find_tag(s + from, n - from, closers, 3, &which);
    if (c || r->final) {
        size_t end = c ? (size_t)(c - s) : n;
        size_t vend = end > 0 && s[end - 1] == '\n' ? end - 1 : end;
        TRY(close_param(r, s, vend));
        if (!c) {
            consume(p, n);
            p->state = S_TEXT;
            TRY(end_call(r));
            return PROGRESS;
        }
        consume(p, end + strlen(closers[which]));
        if (which == 0) {
            p->state = S_BODY;
        } else {
            p->state = which == 1 ? S_TAIL : S_TEXT;
            p->seg_start = true;
            TRY(end_call(r));
        }
        return PROGRESS;
    }
    if (!p->pstream) {
        p->pscan = n > 12 ? n - 12 : 0;   /* a closer may start in the last 11 bytes */
        return NEED_MORE;
    }
    size_t hold = tag_prefix_start(s, n, closers, 3);
    if (hold > 0 && s[hold - 1] == '\n') hold--;   /* the newline before a closer is not part of the value */
    hold = utf8_safe_len(s, hold);
    TRY(stream_value(r, s, hold));
    consume(p, hold);
    return hold ? PROGRESS : NEED_MORE;
}

/* TAIL: after "</function>", an optional "</tool_call>". */
static int step_tail(run *r)
{
    ar_toolcall_parser *p = r->p;
    const char *s = pending(p);
    size_t n = p->pend.n - p->off, k = 0;
    while (k < n && is_ws(s[k])) k++;
    if (k == n && !r->final) return NEED_MORE;
    if (is_prefix_of(s + k, n - k, "</tool_call>") && !r->final) return NEED_MORE;
    if (starts(s + k, n - k, "</tool_call>")) consume(p, k + 12);
    p->state = S_TEXT;
    p->seg_start = true;
    return PROGRESS;
}

static int advance(run *r)
{
    ar_toolcall_parser *p = r->p;
    if (p->abort_rc) return p->abort_rc;
    for (;;) {
        int st;
        switch (p->state) {
        case S_START: st = step_start(r); break;
        case S_REASON:
        case S_TEXT: st = step_segment(r); break;
        case S_BODY: st = step_body(r); break;
        case S_PARAM: st = step_param(r); break;
        default: st = step_tail(r); break;
        }
        if (p->oom) return p->abort_rc = AR_ENOMEM;
        if (st == STOP) return p->abort_rc ? p->abort_rc : AR_ENOMEM;
        if (st == NEED_MORE) break;
    }
    /* drop the consumed prefix */
    if (p->off) {
        memmove(p->pend.p, p->pend.p + p->off, p->pend.n - p->off);
        p->pend.n -= p->off;
        p->off = 0;
    }
    return 0;
}

int ar_tc_feed(ar_toolcall_parser *p, const char *text, size_t len, ar_tc_cb cb, void *ctx)
{
    if (p->abort_rc) return p->abort_rc;
    if (!buf_put(&p->pend, text, len)) return p->abort_rc = AR_ENOMEM;
    run r = { p, cb, ctx, false };
    return advance(&r);
}

int ar_tc_finish(ar_toolcall_parser *p, ar_tc_cb cb, void *ctx)
{
    run r = { p, cb, ctx, true };
    int rc = advance(&r);
    if (rc) return rc;
    if (p->fn) {   /* a call still open with nothing left to read */
        if (p->state == S_PARAM && (rc = close_param(&r, "", 0))) return rc;
        if ((rc = end_call(&r))) return rc;
    }
    return 0;
}
