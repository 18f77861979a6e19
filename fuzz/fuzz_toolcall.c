/* fuzz/fuzz_toolcall.c — libFuzzer target for the incremental tool-call parser (tok/toolcall.c), which
 * reads whatever the model writes (built by scripts/fuzz.sh).
 *
 * Input: one flags byte (bit 0: the generation prompt opened <think>; the other bits seed the split),
 * then the model's output. The output is parsed twice, whole and in pieces of 1 to 16 bytes (a split
 * can fall inside a tag or a UTF-8 sequence), with the same call-id seed. The target aborts when the
 * parser breaks a promise of tok/toolcall.h:
 *   - a text, reasoning or argument piece is not valid UTF-8;
 *   - call events out of order (an ARGS or END outside a call, a START inside one, indexes not 0, 1, ...),
 *     a call of a function that is not among the tools, an id that is not "call_" + 24 letters/digits;
 *   - a call's arguments are not one JSON object; a call still open after ar_tc_finish;
 *   - the two parses differ, once adjacent pieces of the same kind are joined (what a streaming client
 *     shows must not depend on how the tokens fell).
 * ASan/UBSan (and LeakSanitizer at exit) see the rest. */
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/json.h"
#include "tok/toolcall.h"

/* The shapes agents send: typed parameters (OpenAI function and Anthropic input_schema elements). */
static const char TOOLS[] =
    "[{\"type\":\"function\",\"function\":{\"name\":\"read_file\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"path\":{\"type\":\"string\"},\"offset\":{\"type\":\"integer\"},\"limit\":{\"type\":[\"integer\",\"null\"]},"
    "\"binary\":{\"type\":\"boolean\"},\"opts\":{\"type\":\"object\"},\"lines\":{\"type\":\"array\"},"
    "\"scale\":{\"type\":\"number\"},\"either\":{\"type\":[\"string\",\"integer\"]},\"any\":{}}}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"bash\",\"parameters\":{\"type\":\"object\",\"properties\":"
    "{\"command\":{\"type\":\"string\"}}}}},"
    "{\"name\":\"Edit\",\"input_schema\":{\"type\":\"object\",\"properties\":{\"old\":{\"type\":\"string\"},"
    "\"n\":{\"anyOf\":[{\"type\":\"integer\"},{\"type\":\"null\"}]},\"mode\":{\"enum\":[\"fast\",\"slow\"]}}}}]";
static const char *const NAMES[] = { "read_file", "bash", "Edit" };

/* One parse: the events with adjacent pieces of one kind (and call) joined. */
typedef struct {
    ar_tc_event_kind kind;
    int call;
    char *data;   /* TEXT, REASONING, CALL_ARGS: the joined pieces; CALL_START: name + '\n' + id */
    size_t len;
} ev;

typedef struct {
    ev *e;
    int n, cap;
    int open;      /* index of the open call, -1 when none */
    int n_calls;
} rec;

static bool valid_utf8(const char *s, size_t n) { return utf8_valid_prefix(s, n) == n; }

static void append(ev *x, const char *d, size_t n)
{
    char *p = realloc(x->data, x->len + n + 1);
    if (!p) abort();
    memcpy(p + x->len, d, n);
    x->len += n;
    p[x->len] = 0;
    x->data = p;
}

static bool args_are_object(const ev *x)
{
    json_error_t je;
    json_t *j = json_loadb(x->data ? x->data : "", x->len, JSON_DECODE_ANY | JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &je);   /* "\u0000" and 1e30 written as an integer are JSON */
    const bool ok = j && json_is_object(j);
    json_decref(j);
    return ok;
}

static int on_event(void *ctx, const ar_tc_event *e)
{
    rec *r = ctx;
    const bool piece = e->kind == AR_TC_TEXT || e->kind == AR_TC_REASONING || e->kind == AR_TC_CALL_ARGS;
    if (piece && e->len && (!e->data || !valid_utf8(e->data, e->len))) abort();
    switch (e->kind) {
    case AR_TC_TEXT:
    case AR_TC_REASONING:
        if (e->call_index != -1 || r->open >= 0) abort();
        break;
    case AR_TC_CALL_START: {
        if (r->open >= 0 || e->call_index != r->n_calls || !e->name || !e->id) abort();
        bool known = false;
        for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) known |= !strcmp(e->name, NAMES[i]);
        if (!known || strlen(e->id) != 29 || strncmp(e->id, "call_", 5)) abort();
        for (const char *c = e->id + 5; *c; c++)
            if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9'))) abort();
        r->open = r->n_calls++;
        break;
    }
    case AR_TC_CALL_ARGS:
        if (r->open < 0 || e->call_index != r->open) abort();
        break;
    case AR_TC_CALL_END:
        if (r->open < 0 || e->call_index != r->open) abort();
        break;
    default:
        abort();
    }
    if (piece && e->len == 0) return 0;
    ev *last = r->n ? &r->e[r->n - 1] : NULL;
    if (piece && last && last->kind == e->kind && last->call == e->call_index) {
        append(last, e->data, e->len);
        return 0;
    }
    if (e->kind == AR_TC_CALL_END) {   /* the call's arguments are complete: one JSON object */
        const ev *args = NULL;
        for (int i = r->n - 1; i >= 0 && r->e[i].call == r->open; i--)
            if (r->e[i].kind == AR_TC_CALL_ARGS) args = &r->e[i];
        if (!args || !args_are_object(args)) abort();
        r->open = -1;
    }
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 16;
        r->e = realloc(r->e, (size_t)r->cap * sizeof *r->e);
        if (!r->e) abort();
    }
    ev *x = &r->e[r->n++];
    *x = (ev){ e->kind, e->call_index, NULL, 0 };
    if (piece) append(x, e->data, e->len);
    if (e->kind == AR_TC_CALL_START) {
        append(x, e->name, strlen(e->name));
        append(x, "\n", 1);
        append(x, e->id, strlen(e->id));
    }
    return 0;
}

/* Parse text in pieces (seed 0: whole); returns the record. */
static rec parse(const char *text, size_t n, bool in_reasoning, unsigned seed)
{
    rec r = { NULL, 0, 0, -1, 0 };
    ar_error err;
    ar_toolcall_parser *p = ar_tc_create(TOOLS, in_reasoning, &err);
    if (!p) abort();
    ar_tc_set_id_seed(p, 42);
    uint32_t s = seed * 2654435761u + 1;
    for (size_t i = 0; i < n;) {
        size_t k = n - i;
        if (seed) {
            s = s * 1664525u + 1013904223u;
            k = 1 + (s >> 24) % 16;
            if (k > n - i) k = n - i;
        }
        if (ar_tc_feed(p, text + i, k, on_event, &r)) abort();
        i += k;
    }
    if (ar_tc_finish(p, on_event, &r) || r.open >= 0 || ar_tc_n_calls(p) != r.n_calls) abort();
    ar_tc_free(p);
    return r;
}

static void rec_free(rec *r)
{
    for (int i = 0; i < r->n; i++) free(r->e[i].data);
    free(r->e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    const bool in_reasoning = data[0] & 1;
    const unsigned seed = 1 + (data[0] >> 1);
    const char *text = (const char *)data + 1;
    rec whole = parse(text, size - 1, in_reasoning, 0), split = parse(text, size - 1, in_reasoning, seed);
    if (whole.n != split.n) abort();
    for (int i = 0; i < whole.n; i++) {
        const ev *a = &whole.e[i], *b = &split.e[i];
        if (a->kind != b->kind || a->call != b->call || a->len != b->len || (a->len && memcmp(a->data, b->data, a->len)))
            abort();
    }
    rec_free(&whole);
    rec_free(&split);
    return 0;
}
