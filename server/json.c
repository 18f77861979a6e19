/* server/json.c — typed JSON field access with field-naming errors, the OpenAI error body, and the
 * byte buffer used for bodies and SSE frames. See json.h for the contracts. */
#include "server/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- errors ------------------------------------------------------------------------------------- */

static int vfail(api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt,
                 va_list ap)
{
    if (!e) return -1;
    e->status = status;
    e->type = type;
    e->code = code;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    return -1;
}

int api_fail(api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(e, status, type, code, param, fmt, ap);
    va_end(ap);
    return -1;
}

int api_bad(api_error *e, const char *param, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(e, 400, "invalid_request_error", NULL, param, fmt, ap);
    va_end(ap);
    return -1;
}

char *api_error_openai(const api_error *e)
{
    json_t *err = json_object();
    js_set(err, "message", js_str(e->message));
    js_set(err, "type", js_str(e->type ? e->type : "server_error"));
    js_set(err, "param", e->param[0] ? js_str(e->param) : json_null());
    js_set(err, "code", e->code ? js_str(e->code) : json_null());
    json_t *root = json_object();
    js_set(root, "error", err);
    char *s = js_dump(root);
    json_decref(root);
    return s;
}

/* ---- getters ------------------------------------------------------------------------------------ */

void js_path(char *out, size_t cap, const char *parent, const char *key)
{
    if (parent && *parent) snprintf(out, cap, "%s.%s", parent, key);
    else snprintf(out, cap, "%s", key);
}

void js_path_index(char *out, size_t cap, const char *parent, size_t index)
{
    snprintf(out, cap, "%s[%zu]", parent ? parent : "", index);
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE: case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

static json_t *field(json_t *obj, const char *key)
{
    json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
    return v && !json_is_null(v) ? v : NULL;
}

int js_value(json_t *obj, const char *key, json_t **out)
{
    json_t *v = field(obj, key);
    if (!v) return 0;
    *out = v;
    return 1;
}

int js_string(json_t *obj, const char *key, const char *parent, const char **out, api_error *e)
{
    json_t *v = field(obj, key);
    if (!v) return 0;
    char p[160];
    js_path(p, sizeof p, parent, key);
    if (!json_is_string(v)) return api_bad(e, p, "'%s' must be a string, not %s", p, type_name(v));
    *out = json_string_value(v);
    return 1;
}

int js_bool(json_t *obj, const char *key, const char *parent, bool *out, api_error *e)
{
    json_t *v = field(obj, key);
    if (!v) return 0;
    char p[160];
    js_path(p, sizeof p, parent, key);
    if (!json_is_boolean(v)) return api_bad(e, p, "'%s' must be a boolean, not %s", p, type_name(v));
    *out = json_is_true(v);
    return 1;
}

int js_int(json_t *obj, const char *key, const char *parent, long long lo, long long hi, long long *out,
           api_error *e)
{
    json_t *v = field(obj, key);
    if (!v) return 0;
    char p[160];
    js_path(p, sizeof p, parent, key);
    long long x;
    if (json_is_integer(v)) x = json_integer_value(v);
    else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 9e15)
        x = (long long)json_real_value(v);          /* 5.0 is an integer to JavaScript clients */
    else return api_bad(e, p, "'%s' must be an integer, not %s", p, type_name(v));
    if (x < lo || x > hi) return api_bad(e, p, "'%s' is %lld; it must be in [%lld, %lld]", p, x, lo, hi);
    *out = x;
    return 1;
}

int js_number(json_t *obj, const char *key, const char *parent, double lo, double hi, double *out, api_error *e)
{
    json_t *v = field(obj, key);
    if (!v) return 0;
    char p[160];
    js_path(p, sizeof p, parent, key);
    if (!json_is_number(v)) return api_bad(e, p, "'%s' must be a number, not %s", p, type_name(v));
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return api_bad(e, p, "'%s' is %g; it must be in [%g, %g]", p, x, lo, hi);
    *out = x;
    return 1;
}

json_t *js_parse_body(const char *body, size_t len, api_error *e)
{
    if (!body || len == 0) {
        api_bad(e, NULL, "the request body is empty; expected a JSON object");
        return NULL;
    }
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        const char *what = json_error_code(&je) == json_error_invalid_utf8 ? "the body is not valid UTF-8"
                                                                            : "the body is not valid JSON";
        api_fail(e, 400, "invalid_request_error", "invalid_json", NULL, "%s: %s (line %d, column %d)", what,
                 je.text, je.line, je.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        api_bad(e, NULL, "the body must be a JSON object, not %s", type_name(root));
        json_decref(root);
        return NULL;
    }
    return root;
}

char *js_dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_REAL_PRECISION(9));
}

void js_set(json_t *obj, const char *key, json_t *value)
{
    if (value) json_object_set_new(obj, key, value);
}

size_t utf8_valid_prefix(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        unsigned c = u[i];
        size_t k;
        unsigned lo = 0x80, hi = 0xBF;
        if (c < 0x80) { i++; continue; }
        else if (c >= 0xC2 && c <= 0xDF) k = 1;
        else if (c >= 0xE0 && c <= 0xEF) { k = 2; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
        else if (c >= 0xF0 && c <= 0xF4) { k = 3; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
        else return i;
        if (i + k >= n) return i;   /* truncated character */
        for (size_t j = 1; j <= k; j++) {
            unsigned d = u[i + j];
            if (d < (j == 1 ? lo : 0x80) || d > (j == 1 ? hi : 0xBF)) return i;
        }
        i += k + 1;
    }
    return i;
}

json_t *js_strn(const char *s, size_t len)
{
    if (!s) return json_null();
    size_t ok = utf8_valid_prefix(s, len);
    bool has_nul = memchr(s, 0, ok) != NULL;
    if (ok == len && !has_nul) return json_stringn(s, len);
    /* Replace each invalid byte (and NULs) with U+FFFD; rare, so the slow path is fine. */
    sbuf b = { 0 };
    size_t i = 0;
    while (i < len) {
        size_t k = utf8_valid_prefix(s + i, len - i);
        for (size_t j = 0; j < k; j++) {
            if (s[i + j]) sb_put(&b, s + i + j, 1);
            else sb_put(&b, "\xEF\xBF\xBD", 3);
        }
        i += k;
        if (i < len) { sb_put(&b, "\xEF\xBF\xBD", 3); i++; }
    }
    json_t *v = b.oom ? NULL : json_stringn(b.p ? b.p : "", b.n);
    sb_free(&b);
    return v;
}

json_t *js_str(const char *s) { return s ? js_strn(s, strlen(s)) : json_null(); }

/* ---- buffer ------------------------------------------------------------------------------------- */

static bool grow(sbuf *b, size_t need)
{
    if (b->oom) return false;
    if (b->n + need + 1 <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + need + 1) cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) { b->oom = true; return false; }
    b->p = p;
    b->cap = cap;
    return true;
}

void sb_put(sbuf *b, const char *s, size_t n)
{
    if (!n || !grow(b, n)) return;
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0 || !grow(b, (size_t)n)) return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)n;
}

void sb_clear(sbuf *b)
{
    b->n = 0;
    if (b->p) b->p[0] = 0;
}

void sb_free(sbuf *b)
{
    free(b->p);
    *b = (sbuf){ 0 };
}

char *sb_take(sbuf *b)
{
    if (b->oom) { sb_free(b); return NULL; }
    char *p = b->p ? b->p : calloc(1, 1);
    *b = (sbuf){ 0 };
    return p;
}
