/* tests/test_toolcall.c — the incremental tool-call parser (tok/toolcall.c).
 *
 * Recorded model outputs (reasoning, content, single and parallel calls, typed arguments, unicode,
 * malformed variants) are parsed whole and checked against the expected reasoning / content / calls;
 * where llama.cpp parses the same output (common_chat_parse of the pinned 0.5.0, Qwen3.5 template, the
 * tools below), the expected arguments are its output byte for byte. Then every output is split at
 * every byte position into 2 pieces, at every pair of positions into 3 pieces, and fed byte by byte:
 * the event stream, after merging adjacent pieces of the same kind, must be identical, every piece
 * must be valid UTF-8 and every call's arguments one JSON object. */
#include "tok/toolcall.h"
#include "tests/test.h"

#include <jansson.h>
#include <string.h>

static const char *TOOLS =
    "[{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"description\": \"w\", \"parameters\": "
    "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}, "
    "\"scale\": {\"type\": \"number\"}, \"metric\": {\"type\": \"boolean\"}, \"opts\": {\"type\": \"object\"}, "
    "\"list\": {\"type\": \"array\"}, \"either\": {\"type\": [\"string\", \"integer\"]}, \"any\": {}}, "
    "\"required\": [\"city\"]}}}, "
    "{\"type\": \"function\", \"function\": {\"name\": \"ping\", \"parameters\": {\"type\": \"object\", "
    "\"properties\": {}}}}, "
    "{\"name\": \"anthropic_tool\", \"input_schema\": {\"type\": \"object\", \"properties\": {\"n\": {\"anyOf\": "
    "[{\"type\": \"integer\"}, {\"type\": \"null\"}]}, \"mode\": {\"enum\": [\"fast\", \"slow\"]}}}}]";

/* ---- event recording --------------------------------------------------------------------------- */

typedef struct rec_event {
    ar_tc_event_kind kind;
    int   call;
    char  name[64], id[40];
    char *data;
    size_t len;
} rec_event;

typedef struct rec {
    rec_event *ev;
    int   n, cap;
    bool  bad_utf8;
    int   abort_after;   /* return 7 from the callback at this event (0: never) */
    int   seen;
} rec;

static bool valid_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        unsigned c = u[i];
        size_t len = c < 0x80 ? 1 : c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (!len || i + len > n) return false;
        for (size_t k = 1; k < len; k++)
            if ((u[i + k] & 0xC0) != 0x80) return false;
        if (len == 3 && ((c == 0xE0 && u[i + 1] < 0xA0) || (c == 0xED && u[i + 1] > 0x9F))) return false;
        if (len == 4 && ((c == 0xF0 && u[i + 1] < 0x90) || (c == 0xF4 && u[i + 1] > 0x8F))) return false;
        i += len;
    }
    return true;
}

/* Records events, merging a delta into the previous one of the same kind and call. */
static int record(void *ctx, const ar_tc_event *e)
{
    rec *r = ctx;
    r->seen++;
    if (r->abort_after && r->seen >= r->abort_after) return 7;
    if (e->data && !valid_utf8(e->data, e->len)) r->bad_utf8 = true;
    bool delta = e->kind == AR_TC_TEXT || e->kind == AR_TC_REASONING || e->kind == AR_TC_CALL_ARGS;
    if (delta && e->len == 0) return 0;
    rec_event *last = r->n ? &r->ev[r->n - 1] : NULL;
    if (delta && last && last->kind == e->kind && last->call == e->call_index) {
        char *d = realloc(last->data, last->len + e->len + 1);
        if (!d) return 1;
        memcpy(d + last->len, e->data, e->len);
        last->len += e->len;
        d[last->len] = 0;
        last->data = d;
        return 0;
    }
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 16;
        rec_event *ne = realloc(r->ev, (size_t)cap * sizeof *ne);
        if (!ne) return 1;
        r->ev = ne;
        r->cap = cap;
    }
    rec_event *x = &r->ev[r->n++];
    memset(x, 0, sizeof *x);
    x->kind = e->kind;
    x->call = e->call_index;
    if (e->name) snprintf(x->name, sizeof x->name, "%s", e->name);
    if (e->id) snprintf(x->id, sizeof x->id, "%s", e->id);
    x->data = malloc(e->len + 1);
    if (!x->data) return 1;
    if (e->len) memcpy(x->data, e->data, e->len);
    x->data[e->len] = 0;
    x->len = e->len;
    return 0;
}

static void rec_free(rec *r)
{
    for (int i = 0; i < r->n; i++) free(r->ev[i].data);
    free(r->ev);
    memset(r, 0, sizeof *r);
}

/* Parse text fed in pieces cut at cuts[0..n_cuts) (ascending). */
/* text[0..len) in pieces ending at cuts[] (the last piece to len) */
static int parse_n(const char *tools, bool in_reasoning, const char *text, size_t len, const size_t *cuts, int n_cuts,
                   rec *out)
{
    memset(out, 0, sizeof *out);
    ar_error err = {0};
    ar_toolcall_parser *p = ar_tc_create(tools, in_reasoning, &err);
    if (!p) return -1;
    ar_tc_set_id_seed(p, 42);
    size_t at = 0;
    int rc = 0;
    for (int c = 0; c <= n_cuts && !rc; c++) {
        size_t end = c < n_cuts ? cuts[c] : len;
        rc = ar_tc_feed(p, text + at, end - at, record, out);
        at = end;
    }
    if (!rc) rc = ar_tc_finish(p, record, out);
    ar_tc_free(p);
    return rc;
}

static int parse(const char *tools, bool in_reasoning, const char *text, const size_t *cuts, int n_cuts, rec *out)
{
    return parse_n(tools, in_reasoning, text, strlen(text), cuts, n_cuts, out);
}

static bool same_events(const rec *a, const rec *b)
{
    if (a->n != b->n) return false;
    for (int i = 0; i < a->n; i++) {
        const rec_event *x = &a->ev[i], *y = &b->ev[i];
        if (x->kind != y->kind || x->call != y->call || strcmp(x->name, y->name) || strcmp(x->id, y->id) ||
            x->len != y->len || memcmp(x->data, y->data, x->len))
            return false;
    }
    return true;
}

static void print_events(const char *label, const rec *r)
{
    static const char *kinds[] = { "TEXT", "REASONING", "CALL_START", "CALL_ARGS", "CALL_END" };
    printf("  %s:\n", label);
    for (int i = 0; i < r->n; i++)
        printf("    %s call=%d name=%s id=%s data=\"%s\"\n", kinds[r->ev[i].kind], r->ev[i].call, r->ev[i].name,
               r->ev[i].id, r->ev[i].data);
}

/* ---- expected results -------------------------------------------------------------------------- */

typedef struct expect_call {
    const char *name, *args;
} expect_call;

typedef struct tc_case {
    const char *name;
    const char *tools;
    bool in_reasoning;
    const char *output;
    const char *reasoning, *text;   /* all reasoning / text pieces concatenated */
    expect_call calls[3];
} tc_case;

static const tc_case CASES[] = {
    { "reasoning then answer", NULL, true, "I think… 日本\n</think>\n\nHéllo 🎉 there.", "I think… 日本", "Héllo 🎉 there.",
      {{0}} },
    { "one call after prose (llama.cpp)", "T", true,
      "I think.\n</think>\n\nLet me check ü.\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n"
      "</parameter>\n</function>\n</tool_call>",
      "I think.", "Let me check ü.", { { "get_weather", "{\"city\":\"Paris\"}" } } },
    { "parallel calls, typed arguments (llama.cpp)", "T", true,
      "r\n</think>\n\n<tool_call>\n<function=get_weather>\n<parameter=city>\nParis\n</parameter>\n<parameter=days>\n5\n"
      "</parameter>\n<parameter=scale>\n2.50\n</parameter>\n<parameter=metric>\ntrue\n</parameter>\n<parameter=opts>\n"
      "{\"a\": [1, 2]}\n</parameter>\n<parameter=list>\n[1, \"x\"]\n</parameter>\n<parameter=either>\n42\n</parameter>\n"
      "<parameter=any>\nhello\n</parameter>\n</function>\n</tool_call>\n<tool_call>\n<function=ping>\n</function>\n"
      "</tool_call>",
      "r", "",
      { { "get_weather", "{\"city\":\"Paris\",\"days\":5,\"scale\":2.50,\"metric\":true,\"opts\":{\"a\": [1, 2]},"
                         "\"list\":[1, \"x\"],\"either\":42,\"any\":\"hello\"}" },
        { "ping", "{}" } } },
    { "typed values: JSON when they parse, else strings", "T", true,
      "r</think><tool_call>\n<function=get_weather>\n<parameter=city>\n42\n</parameter>\n<parameter=days>\nfive\n"
      "</parameter>\n<parameter=metric>\n1\n</parameter>\n<parameter=either>\n\"quoted\"\n</parameter>\n<parameter=opts>"
      "\n[1]\n</parameter>\n<parameter=scale>\n 7.5 \n</parameter>\n</function>\n</tool_call>",
      "r", "",
      { { "get_weather", "{\"city\":\"42\",\"days\":\"five\",\"metric\":1,\"either\":\"\\\"quoted\\\"\","
                         "\"opts\":[1],\"scale\":7.5}" } } },
    { "multi-line and unicode string values", "T", false,
      "<tool_call>\n<function=get_weather>\n<parameter=city>\nline1\n\tZürich 日本 🎉 \"q\" \\ \x01\n\n</parameter>\n"
      "</function>\n</tool_call>",
      "", "", { { "get_weather", "{\"city\":\"line1\\n\\tZürich 日本 🎉 \\\"q\\\" \\\\ \\u0001\\n\"}" } } },
    { "unknown and schema-less parameters, duplicates", "T", true,
      "</think>\n<tool_call>\n<function=get_weather>\n<parameter=city>\nA\n</parameter>\n<parameter=city>\nB\n"
      "</parameter>\n<parameter=extra>\n{\"k\": null}\n</parameter>\n<parameter=note>\nplain words\n</parameter>\n"
      "<parameter=n>\n-3e2\n</parameter>\n</function>\n</tool_call>",
      "", "",
      { { "get_weather", "{\"city\":\"A\",\"extra\":{\"k\": null},\"note\":\"plain words\",\"n\":-3e2}" } } },
    { "anthropic tool, anyOf and enum", "T", true,
      "</think><tool_call><function=anthropic_tool><parameter=n>\nnull\n</parameter><parameter=mode>\nfast\n"
      "</parameter></function></tool_call>",
      "", "", { { "anthropic_tool", "{\"n\":null,\"mode\":\"fast\"}" } } },
    { "unknown function stays text", "T", true,
      "r\n</think>\n\n<tool_call>\n<function=nope>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>",
      "r", "<tool_call>\n<function=nope>\n<parameter=city>\nParis\n</parameter>\n</function>\n</tool_call>", {{0}} },
    { "no tools: markup is text", NULL, true,
      "r\n</think>\n\n<tool_call>\n<function=ping>\n</function>\n</tool_call>",
      "r", "<tool_call>\n<function=ping>\n</function>\n</tool_call>", {{0}} },
    { "not a function after <tool_call>", "T", false, "Use <tool_call> tags. <tool_call>x",
      "", "Use <tool_call> tags. <tool_call>x", {{0}} },
    { "unterminated head is text", "T", false, "text <tool_call>\n<funct", "", "text <tool_call>\n<funct", {{0}} },
    { "unterminated call is closed (llama.cpp: partial)", "T", true,
      "r\n</think>\n\ntext <tool_call>\n<function=get_weather>\n<parameter=city>\nParis",
      "r", "text", { { "get_weather", "{\"city\":\"Paris\"}" } } },
    { "unterminated typed value", "T", true, "</think><tool_call>\n<function=get_weather>\n<parameter=days>\n12\n",
      "", "", { { "get_weather", "{\"days\":12}" } } },
    { "<tool_call> ends reasoning (llama.cpp)", "T", true,
      "no close think but <tool_call>\n<function=ping>\n</function>\n</tool_call>",
      "no close think but", "", { { "ping", "{}" } } },
    { "thinking off: content first (llama.cpp)", "T", false,
      "Direct answer.<tool_call>\n<function=ping>\n</function>\n</tool_call>",
      "", "Direct answer.", { { "ping", "{}" } } },
    { "<think> opening the output", NULL, false, "\n<think>\nhmm\n</think>\n\nok", "hmm", "ok", {{0}} },
    { "<think> later is text", NULL, false, "a <think> b </think> c", "", "a <think> b </think> c", {{0}} },
    { "reasoning only (cut off)", NULL, true, "  still thinking \n", "still thinking", "", {{0}} },
    { "garbage inside a call ends it", "T", true,
      "</think><tool_call>\n<function=ping>\nhello world\n</function>\n</tool_call> after",
      "", "hello world\n</function>\n</tool_call> after", { { "ping", "{}" } } },
    { "missing </parameter> and </function>", "T", true,
      "</think><tool_call>\n<function=get_weather>\n<parameter=city>\nRome\n</tool_call>\nThanks.",
      "", "Thanks.", { { "get_weather", "{\"city\":\"Rome\"}" } } },
    { "text between and after calls", "T", true,
      "</think>A\n\n<tool_call>\n<function=ping>\n</function>\n</tool_call>\nB <tool_call>\n<function=ping>\n"
      "</function>\n</tool_call> C  ",
      "", "ABC  ", { { "ping", "{}" }, { "ping", "{}" } } },
    { "invalid UTF-8 becomes U+FFFD", "T", true,
      "r\xff</think>x\xe2\x82<tool_call>\n<function=get_weather>\n<parameter=city>\n\xc3(\n</parameter>\n</function>"
      "\n</tool_call>\xf0\x9f",
      "r\xEF\xBF\xBD", "x\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD",
      { { "get_weather", "{\"city\":\"\xEF\xBF\xBD(\"}" } } },
};

/* Concatenate the recorded pieces per kind and calls, and check them against the case. */
static void check_case(const tc_case *c, const rec *r)
{
    char reasoning[512] = "", text[512] = "";
    char args[3][512] = { "", "", "" };
    char names[3][64] = { "", "", "" };
    int n_calls = 0, n_ends = 0;
    for (int i = 0; i < r->n; i++) {
        const rec_event *e = &r->ev[i];
        switch (e->kind) {
        case AR_TC_REASONING: strncat(reasoning, e->data, sizeof reasoning - strlen(reasoning) - 1); break;
        case AR_TC_TEXT: strncat(text, e->data, sizeof text - strlen(text) - 1); break;
        case AR_TC_CALL_START:
            CHECK(e->call == n_calls, "%s: call index %d, want %d", c->name, e->call, n_calls);
            if (n_calls < 3) snprintf(names[n_calls], sizeof names[0], "%s", e->name);
            n_calls++;
            break;
        case AR_TC_CALL_ARGS:
            if (e->call >= 0 && e->call < 3) strncat(args[e->call], e->data, sizeof args[0] - strlen(args[e->call]) - 1);
            break;
        case AR_TC_CALL_END: n_ends++; break;
        }
    }
    CHECK(!strcmp(reasoning, c->reasoning), "%s: reasoning \"%s\", want \"%s\"", c->name, reasoning, c->reasoning);
    CHECK(!strcmp(text, c->text), "%s: text \"%s\", want \"%s\"", c->name, text, c->text);
    int want_calls = 0;
    while (want_calls < 3 && c->calls[want_calls].name) want_calls++;
    CHECK(n_calls == want_calls && n_ends == want_calls, "%s: %d calls / %d ends, want %d", c->name, n_calls, n_ends,
          want_calls);
    for (int k = 0; k < want_calls && k < n_calls; k++) {
        CHECK(!strcmp(names[k], c->calls[k].name), "%s: call %d is '%s', want '%s'", c->name, k, names[k], c->calls[k].name);
        CHECK(!strcmp(args[k], c->calls[k].args), "%s: call %d arguments %s, want %s", c->name, k, args[k], c->calls[k].args);
        json_error_t je;
        json_t *j = json_loads(args[k], 0, &je);
        CHECK(json_is_object(j), "%s: call %d arguments are not a JSON object: %s", c->name, k, je.text);
        json_decref(j);
    }
}

/* Every 2- and 3-piece split and byte-by-byte feeding give the same merged events. */
static void check_splits(const tc_case *c, const char *tools, const rec *whole, long *n_runs)
{
    size_t len = strlen(c->output);
    int failures = 0;
    rec r;
    size_t cuts[2];
    const size_t step3 = test_sanitized() ? 7 : 1;   /* every 3-piece split, or every 7th under ASan */
    for (size_t i = 1; i < len && failures < 3; i++) {
        cuts[0] = i;
        parse(tools, c->in_reasoning, c->output, cuts, 1, &r);
        (*n_runs)++;
        if (!same_events(&r, whole) || r.bad_utf8) {
            failures++;
            CHECK(0, "%s: split at %zu gives other events%s", c->name, i, r.bad_utf8 ? " (invalid UTF-8 piece)" : "");
            print_events("whole", whole);
            print_events("split", &r);
        }
        rec_free(&r);
        for (size_t j = i + 1; j < len && failures < 3; j += step3) {
            cuts[1] = j;
            parse(tools, c->in_reasoning, c->output, cuts, 2, &r);
            (*n_runs)++;
            if (!same_events(&r, whole) || r.bad_utf8) {
                failures++;
                CHECK(0, "%s: split at %zu, %zu gives other events%s", c->name, i, j, r.bad_utf8 ? " (invalid UTF-8 piece)" : "");
                print_events("whole", whole);
                print_events("split", &r);
            }
            rec_free(&r);
        }
    }
    size_t *every = malloc(len * sizeof *every);
    if (every && len > 1) {
        for (size_t i = 0; i + 1 < len; i++) every[i] = i + 1;
        parse(tools, c->in_reasoning, c->output, every, (int)len - 1, &r);
        (*n_runs)++;
        CHECK(same_events(&r, whole) && !r.bad_utf8, "%s: byte-by-byte feeding gives other events", c->name);
        rec_free(&r);
    }
    free(every);
    if (!failures) CHECK(1, "splits");
}

/* Random soups of tag fragments, text and bad bytes: never a failure, the same events however the text
 * is split, valid UTF-8 pieces, and every call's arguments one JSON object. */
static void random_soups(void)
{
    static const char *const frags[] = {
        "<tool_call>", "<tool_call>\n", "<tool_call>\n<function=get_weather>\n", "<tool_call><function=ping>",
        "<parameter=days>\n7\n</parameter>\n", "<function=get_weather>", "<function=ping>", "<function=nope>", "<function=",
        "<parameter=city>", "<parameter=days>", "<parameter=opts>", "<parameter=x>", "<parameter=", "<parameter=>",
        "</parameter>", "</function>", "</tool_call>", "<think>", "</think>", "\n", "\n\n", " ", "abc", "日本",
        "\xff", "\xe2\x82", "\xf0\x9f\x8e", "42", "{\"a\": 1}", "[1,", "<", "</", "<tool", "<param", ">", "\"",
        "\\", "true", "\t",
    };
    const int n_frags = (int)(sizeof frags / sizeof frags[0]);
    const int rounds = test_sanitized() ? 300 : 2000;
    uint64_t x = 0x1234567;
    int bad = 0;
    long calls = 0;
    for (int round = 0; round < rounds && bad < 3; round++) {
        char text[1024] = "";
        int n = 1 + (int)((x = x * 6364136223846793005ULL + 1442695040888963407ULL) >> 59);
        for (int k = 0; k < n * 2; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            strncat(text, frags[(x >> 33) % (uint64_t)n_frags], sizeof text - strlen(text) - 1);
        }
        bool in_reasoning = (x >> 20) & 1;
        size_t len = strlen(text);
        rec whole, split, bytes;
        int rc = parse(TOOLS, in_reasoning, text, NULL, 0, &whole);
        size_t cuts[2] = { len / 3, 2 * len / 3 + 1 > len ? len : 2 * len / 3 + 1 };
        if (cuts[0] == 0) cuts[0] = cuts[1];
        rc |= parse(TOOLS, in_reasoning, text, cuts, 2, &split);
        size_t *every = malloc((len + 1) * sizeof *every);
        for (size_t i = 0; every && i + 1 < len; i++) every[i] = i + 1;
        rc |= parse(TOOLS, in_reasoning, text, every, len > 1 ? (int)len - 1 : 0, &bytes);
        free(every);
        bool ok = rc == 0 && same_events(&whole, &split) && same_events(&whole, &bytes) && !whole.bad_utf8 &&
                  !split.bad_utf8 && !bytes.bad_utf8;
        /* each call: START, ARGS that make one JSON object, END */
        char args[4096];
        int open = -1;
        for (int i = 0; ok && i < whole.n; i++) {
            const rec_event *e = &whole.ev[i];
            if (e->kind == AR_TC_CALL_START) { ok = open < 0; open = e->call; args[0] = 0; calls++; }
            else if (e->kind == AR_TC_CALL_ARGS) { ok = open == e->call; strncat(args, e->data, sizeof args - strlen(args) - 1); }
            else if (e->kind == AR_TC_CALL_END) {
                json_t *j = json_loads(args, 0, NULL);
                ok = open == e->call && json_is_object(j);
                json_decref(j);
                open = -1;
            } else ok = open < 0;
        }
        ok = ok && open < 0;
        if (!ok) {
            bad++;
            CHECK(0, "random soup %d breaks an invariant (rc %d): \"%s\"", round, rc, text);
            print_events("whole", &whole);
            print_events("split", &split);
        }
        rec_free(&whole);
        rec_free(&split);
        rec_free(&bytes);
    }
    CHECK(bad == 0, "random soups");
    printf("toolcall: %d random soups, %ld calls among them\n", rounds, calls);
}

/* A long typed value and a long string value fed in small pieces: linear time, exact result. */
static void long_values(void)
{
    const int n_items = test_sanitized() ? 5000 : 50000;
    size_t cap = (size_t)n_items * 8 + 512;
    char *text = malloc(cap), *want = malloc(cap);
    if (!text || !want) { free(text); free(want); CHECK(0, "out of memory"); return; }
    size_t t = (size_t)snprintf(text, cap, "</think><tool_call>\n<function=get_weather>\n<parameter=list>\n[");
    size_t w = (size_t)snprintf(want, cap, "{\"list\":[");
    for (int i = 0; i < n_items; i++) {
        t += (size_t)snprintf(text + t, cap - t, i ? ",%d" : "%d", i % 1000);
        w += (size_t)snprintf(want + w, cap - w, i ? ",%d" : "%d", i % 1000);
    }
    t += (size_t)snprintf(text + t, cap - t, "]\n</parameter>\n<parameter=city>\n");
    w += (size_t)snprintf(want + w, cap - w, "],\"city\":\"");
    for (int i = 0; i < n_items; i++) { text[t++] = "ab\n"[i % 3]; memcpy(want + w, i % 3 == 2 ? "\\n" : i % 3 ? "b" : "a", i % 3 == 2 ? 2 : 1); w += i % 3 == 2 ? 2 : 1; }
    t += (size_t)snprintf(text + t, cap - t, "\n</parameter>\n</function>\n</tool_call>");
    w += (size_t)snprintf(want + w, cap - w, "\"}");
    ar_error err = {0};
    ar_toolcall_parser *p = ar_tc_create(TOOLS, true, &err);
    rec r = {0};
    int rc = 0;
    for (size_t at = 0; at < t && !rc; at += 3) rc = ar_tc_feed(p, text + at, t - at < 3 ? t - at : 3, record, &r);
    if (!rc) rc = ar_tc_finish(p, record, &r);
    CHECK(rc == 0 && r.n == 3 && r.ev[1].kind == AR_TC_CALL_ARGS && r.ev[1].len == w && !memcmp(r.ev[1].data, want, w),
          "long values: rc %d, %d events, arguments of %zu bytes (want %zu)", rc, r.n, r.n > 1 ? r.ev[1].len : 0, w);
    rec_free(&r);
    ar_tc_free(p);
    free(text);
    free(want);
}

/* Names and the whitespace after "<tool_call>" at the MAX_NAME (256) boundary, parsed whole and fed byte by
 * byte: the same events (a 257-byte parameter name was taken whole when its '>' was already there, refused
 * when fed: fuzz_toolcall's find). */
static void name_limits(void)
{
    static const struct { const char *before; int n; char fill; const char *after; } shapes[] = {
        { "</think><tool_call>\n<function=get_weather>\n<parameter=", 0, 'a', ">\nParis\n</parameter>\n</function>\n</tool_call>" },
        { "</think><tool_call>\n<function=", 0, 'a', ">\n</function>\n</tool_call>" },
        { "</think><tool_call>", 0, ' ', "<function=ping>\n</function>\n</tool_call> after" },
    };
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int len = 254; len <= 259; len++) {
            char text[1024];
            size_t t = (size_t)snprintf(text, sizeof text, "%s", shapes[i].before);
            memset(text + t, shapes[i].fill, (size_t)len);
            snprintf(text + t + (size_t)len, sizeof text - t - (size_t)len, "%s", shapes[i].after);
            const size_t n = strlen(text);
            size_t *cuts = malloc(n * sizeof *cuts);
            for (size_t k = 0; k < n; k++) cuts[k] = k + 1;
            rec whole, bytes;
            int r1 = parse(TOOLS, true, text, NULL, 0, &whole), r2 = parse(TOOLS, true, text, cuts, (int)n - 1, &bytes);
            CHECK(r1 == 0 && r2 == 0 && same_events(&whole, &bytes), "shape %zu, %d bytes of '%c': whole and byte by byte differ",
                  i, len, shapes[i].fill);
            rec_free(&whole);
            rec_free(&bytes);
            free(cuts);
        }
}

/* Parameter names with a NUL byte or invalid UTF-8: the key has U+FFFD for each such byte (a NUL in a key is
 * something jansson, which reads a call sent back, cannot hold), names are compared in that form (two that
 * differ only there are one parameter: the later is dropped), and whole and byte-by-byte parses agree. */
static void name_bytes(void)
{
    static const char text[] = "</think><tool_call>\n<function=get_weather>\n<parameter=a\0b>\n1\n</parameter>\n"
                               "<parameter=a\0c>\n2\n</parameter>\n<parameter=a\xEF\xBF\xBD" "b>\n3\n</parameter>\n"
                               "<parameter=x\xFFy>\nv\n</parameter>\n<parameter=city>\nP\0ris\n</parameter>\n</function>\n</tool_call>";
    const size_t n = sizeof text - 1;
    size_t cuts[sizeof text];
    for (size_t k = 0; k + 1 < n; k++) cuts[k] = k + 1;
    rec whole, bytes;
    const int r1 = parse_n(TOOLS, true, text, n, NULL, 0, &whole), r2 = parse_n(TOOLS, true, text, n, cuts, (int)n - 1, &bytes);
    CHECK(r1 == 0 && r2 == 0 && same_events(&whole, &bytes) && !whole.bad_utf8, "names with NUL / invalid bytes: %d %d", r1, r2);
    const rec_event *args = NULL;
    for (int i = 0; i < whole.n; i++)
        if (whole.ev[i].kind == AR_TC_CALL_ARGS) args = &whole.ev[i];
    json_error_t je;
    json_t *j = args ? json_loadb(args->data, args->len, JSON_ALLOW_NUL, &je) : NULL;
    const char *city = json_string_value(json_object_get(j, "city")), *xy = json_string_value(json_object_get(j, "x\xEF\xBF\xBD" "y"));
    CHECK(j && json_object_size(j) == 4 && json_integer_value(json_object_get(j, "a\xEF\xBF\xBD" "b")) == 1 &&
              json_integer_value(json_object_get(j, "a\xEF\xBF\xBD" "c")) == 2 &&
              xy && !strcmp(xy, "v") && city &&
              json_string_length(json_object_get(j, "city")) == 5 && !memcmp(city, "P\0ris", 5),
          "names with NUL / invalid bytes: arguments %s (%s)", args ? args->data : "(none)", j ? "" : je.text);
    json_decref(j);
    rec_free(&whole);
    rec_free(&bytes);
}

static void ids_and_errors(void)
{
    /* ids: one per call, the same on all its events, distinct, "call_" + 24 alphanumerics, seeded */
    const char *two = "</think><tool_call>\n<function=ping>\n</function>\n</tool_call><tool_call>\n<function=ping>\n"
                      "</function>\n</tool_call>";
    rec a, b;
    parse(TOOLS, true, two, NULL, 0, &a);
    parse(TOOLS, true, two, NULL, 0, &b);
    CHECK(a.n == 6 && same_events(&a, &b), "seeded ids are reproducible (%d events)", a.n);
    if (a.n == 6) {
        CHECK(!strcmp(a.ev[0].id, a.ev[1].id) && !strcmp(a.ev[1].id, a.ev[2].id), "one id per call");
        CHECK(strcmp(a.ev[0].id, a.ev[3].id) != 0, "calls get distinct ids");
        bool shape = strlen(a.ev[0].id) == 29 && !strncmp(a.ev[0].id, "call_", 5);
        for (int i = 5; shape && i < 29; i++) {
            char ch = a.ev[0].id[i];
            shape = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        }
        CHECK(shape, "id shape: %s", a.ev[0].id);
    }
    rec_free(&a);
    rec_free(&b);

    ar_error err = {0};
    ar_toolcall_parser *p1 = ar_tc_create(TOOLS, true, &err), *p2 = ar_tc_create(TOOLS, true, &err);
    rec r1 = {0}, r2 = {0};
    ar_tc_feed(p1, two, strlen(two), record, &r1);
    ar_tc_feed(p2, two, strlen(two), record, &r2);
    CHECK(r1.n && r2.n && strcmp(r1.ev[0].id, r2.ev[0].id) != 0, "parsers get distinct ids by default");
    CHECK(ar_tc_n_calls(p1) == 2, "ar_tc_n_calls %d", ar_tc_n_calls(p1));
    rec_free(&r1);
    rec_free(&r2);
    ar_tc_free(p1);
    ar_tc_free(p2);

    /* a non-zero callback result stops the parser and is returned */
    ar_toolcall_parser *p = ar_tc_create(TOOLS, true, &err);
    rec stop = { .abort_after = 2 };
    int rc = ar_tc_feed(p, two, strlen(two), record, &stop);
    CHECK(rc == 7, "callback abort returns its value (%d)", rc);
    CHECK(ar_tc_feed(p, "x", 1, record, &stop) == 7 && ar_tc_finish(p, record, &stop) == 7, "stays stopped");
    rec_free(&stop);
    ar_tc_free(p);

    CHECK(ar_tc_create("[{", true, &err) == NULL && err.code == AR_EFORMAT, "bad tools JSON: %s", err.msg);
    CHECK(ar_tc_create("{\"a\": 1}", true, &err) == NULL && err.code == AR_EFORMAT, "tools not an array: %s", err.msg);
    ar_toolcall_parser *none = ar_tc_create("[]", false, &err);
    CHECK(none != NULL, "empty tools");
    ar_tc_free(none);
    ar_tc_free(NULL);

    /* an answer of no text at all (the first token was the end): nothing fed, or empty pieces, then the
     * finish; no event. The parser's buffer is still unallocated then, where it formed NULL + 0 (fuzz_toolcall's
     * first find: clang's UBSan reports it, gcc's, which make test uses, does not) */
    for (int in_reasoning = 0; in_reasoning < 2; in_reasoning++)
        for (int fed = 0; fed < 2; fed++) {
            ar_toolcall_parser *e = ar_tc_create(TOOLS, in_reasoning, &err);
            rec r = {0};
            int rc = fed ? ar_tc_feed(e, "", 0, record, &r) : 0;
            if (!rc) rc = ar_tc_finish(e, record, &r);
            CHECK(rc == 0 && r.n == 0 && ar_tc_n_calls(e) == 0, "empty output (reasoning %d, fed %d): rc %d, %d events",
                  in_reasoning, fed, rc, r.n);
            rec_free(&r);
            ar_tc_free(e);
        }
}

int main(void)
{
    long n_runs = 0;
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        const tc_case *c = &CASES[i];
        const char *tools = c->tools ? TOOLS : NULL;
        rec whole;
        int rc = parse(tools, c->in_reasoning, c->output, NULL, 0, &whole);
        CHECK(rc == 0, "%s: parse returned %d", c->name, rc);
        CHECK(!whole.bad_utf8, "%s: an event piece is not valid UTF-8", c->name);
        check_case(c, &whole);
        check_splits(c, tools, &whole, &n_runs);
        rec_free(&whole);
    }
    random_soups();
    long_values();
    name_limits();
    name_bytes();
    ids_and_errors();
    printf("toolcall: %zu recorded outputs, %ld split parses compared\n", sizeof CASES / sizeof CASES[0], n_runs);
    TEST_END();
}
