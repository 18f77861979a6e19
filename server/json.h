/* server/json.h — thin helpers over jansson for the HTTP server: typed field getters that name the
 * offending field in their error, the API error object every endpoint answers with, and a growable
 * byte buffer for response bodies and SSE frames.
 *
 * Getters take the parent object, the key and the parent's path ("messages[2]") so an error can name
 * "messages[2].content". They return 0 when the field is absent or JSON null (the output is left as
 * it was: callers set defaults first), 1 when it was read, and -1 after filling the api_error with a
 * 400 when it has the wrong type or is out of range. */
#ifndef AR_SERVER_JSON_H
#define AR_SERVER_JSON_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* An error as the client sees it. OpenAI shape: {"error":{"message","type","param","code"}}; other
 * dialects (Anthropic) format the same fields their own way. */
typedef struct api_error {
    int         status;        /* HTTP status: 400, 401, 404, 405, 413, 500, 503 */
    const char *type;          /* static: "invalid_request_error", "authentication_error", "server_error", ... */
    const char *code;          /* static or NULL */
    char        param[160];    /* "" = null */
    char        message[1024];
} api_error;

/* Fill e and return -1. param may be NULL. */
int api_fail(api_error *e, int status, const char *type, const char *code, const char *param, const char *fmt, ...)
   ;
/* Shorthand for the common 400 invalid_request_error naming a field. */
int api_bad(api_error *e, const char *param, const char *fmt, ...);

/* {"error":{"message":...,"type":...,"param":...,"code":...}} (malloc'd, never NULL on success). */
char *api_error_openai(const api_error *e);

/* ---- typed getters ------------------------------------------------------------------------------ */

/* Writes "parent.key" (or "key" when parent is NULL/empty) into out. */
void js_path(char *out, size_t cap, const char *parent, const char *key);
void js_path_index(char *out, size_t cap, const char *parent, size_t index);   /* "parent[index]" */

int js_string(json_t *obj, const char *key, const char *parent, const char **out, api_error *e);
int js_bool(json_t *obj, const char *key, const char *parent, bool *out, api_error *e);
int js_int(json_t *obj, const char *key, const char *parent, long long lo, long long hi, long long *out,
           api_error *e);
int js_number(json_t *obj, const char *key, const char *parent, double lo, double hi, double *out, api_error *e);
/* Any JSON type except null: the value itself (borrowed). */
int js_value(json_t *obj, const char *key, json_t **out);

/* Parse a request body. Returns NULL and fills e (400, naming line/column) when it is not a JSON
 * object, is not valid UTF-8 or holds a NUL character. */
json_t *js_parse_body(const char *body, size_t len, api_error *e);

/* json_dumps with the server's flags (compact, UTF-8 kept as is); malloc'd. */
char *js_dump(const json_t *v);

/* json_object_set_new that ignores NULL values (jansson would leak nothing either way). */
void js_set(json_t *obj, const char *key, json_t *value);
/* A JSON string from len bytes (invalid UTF-8 is replaced by U+FFFD so output is always valid). */
json_t *js_strn(const char *s, size_t len);
json_t *js_str(const char *s);   /* NULL -> JSON null */

/* ---- byte buffer -------------------------------------------------------------------------------- */

typedef struct sbuf {
    char  *p;
    size_t n, cap;
    bool   oom;    /* an append failed: the content is incomplete */
} sbuf;

void sb_put(sbuf *b, const char *s, size_t n);
void sb_puts(sbuf *b, const char *s);
void sb_printf(sbuf *b, const char *fmt, ...);
void sb_clear(sbuf *b);                 /* keeps the memory */
void sb_free(sbuf *b);
char *sb_take(sbuf *b);                 /* NUL-terminated contents (malloc'd), buffer emptied; NULL on oom */

/* Length of the longest prefix of s[0..n) that is valid UTF-8 and does not end inside a character. */
size_t utf8_valid_prefix(const char *s, size_t n);

#endif
