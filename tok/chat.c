/* tok/chat.c — the Qwen3.5/3.6 chat templates (llama.cpp models/templates/Qwen3.5-4B.jinja) in C.
 *
 * The render follows the template statement by statement (spec qwen35.md §6); comments quote the
 * Jinja where a rule is subtle. Strings are handled as (pointer, length) slices of the caller's text;
 * the output grows in one malloc'd buffer. A small JSON reader re-serialises tool definitions and
 * tool-call arguments the way llama.cpp's Jinja does: `tojson` with ", " / ": " separators, key order
 * kept, non-ASCII left as is, floats like C++ ostream (%g), integers through int64_t; Qwen3.5 prints
 * scalar arguments with `string` (True/False/None), Qwen3.6 with `tojson` (true/false/null).
 * ar_chat_render_json turns an OpenAI request into ar_chat_msg the way llama.cpp's server does (jansson
 * reads it); ar_chat_family picks the renderer from a model's template text. tests/test_template.c
 * checks all of it byte for byte against the real template. */
#include "tok/chat.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- output buffer ----------------------------------------------------------------------------- */

typedef struct sbuf {
    char  *p;
    size_t n, cap;
    bool   oom;
} sbuf;

static void put(sbuf *b, const char *s, size_t n)
{
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p) { b->oom = true; return; }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

static void puts_(sbuf *b, const char *s) { put(b, s, strlen(s)); }

/* ---- slices ------------------------------------------------------------------------------------ */

typedef struct slice {
    const char *p;
    size_t      n;
} slice;

static slice mk(const char *s) { return (slice){ s ? s : "", s ? strlen(s) : 0 }; }
static void  put_slice(sbuf *b, slice s) { put(b, s.p, s.n); }

/* Jinja `trim` in llama.cpp strips C isspace() characters. */
static bool is_ws(char c) { return isspace((unsigned char)c) != 0; }

static slice trim(slice s)
{
    while (s.n && is_ws(s.p[0])) { s.p++; s.n--; }
    while (s.n && is_ws(s.p[s.n - 1])) s.n--;
    return s;
}

static slice lstrip_nl(slice s)
{
    while (s.n && s.p[0] == '\n') { s.p++; s.n--; }
    return s;
}

static slice rstrip_nl(slice s)
{
    while (s.n && s.p[s.n - 1] == '\n') s.n--;
    return s;
}

static bool starts_with(slice s, const char *pre) { size_t k = strlen(pre); return s.n >= k && !memcmp(s.p, pre, k); }
static bool ends_with(slice s, const char *suf) { size_t k = strlen(suf); return s.n >= k && !memcmp(s.p + s.n - k, suf, k); }

/* First / last occurrence of needle in s, or NULL. */
static const char *find_first(slice s, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= s.n; i++)
        if (!memcmp(s.p + i, needle, k)) return s.p + i;
    return NULL;
}

static const char *find_last(slice s, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = s.n; i-- > 0;)
        if (i + k <= s.n && !memcmp(s.p + i, needle, k)) return s.p + i;
    return NULL;
}

/* ---- JSON (reader that re-serialises) ---------------------------------------------------------- */

typedef struct jreader {
    const char *start, *s, *end;
    const char *what;   /* "tool 2", "tool call 'f' arguments" */
    ar_error   *err;
} jreader;

enum { JSON_MAX_DEPTH = 128 };

static int jfail(jreader *j, const char *msg)
{
    return ar_fail(j->err, AR_EFORMAT, "chat template: %s is not valid JSON: %s at byte %zu", j->what, msg,
                   (size_t)(j->s - j->start));
}

static void jws(jreader *j)
{
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r')) j->s++;
}

static void put_utf8(sbuf *b, uint32_t cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | cp >> 6); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | cp >> 12); u[1] = (char)(0x80 | (cp >> 6 & 0x3F)); u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        u[0] = (char)(0xF0 | cp >> 18); u[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        u[2] = (char)(0x80 | (cp >> 6 & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    put(b, u, n);
}

static int hex4(jreader *j, uint32_t *out)
{
    if (j->end - j->s < 4) return jfail(j, "short \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = j->s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return jfail(j, "bad hex digit in \\u escape");
    }
    j->s += 4;
    *out = v;
    return 0;
}

/* Decode a JSON string (at the opening quote) into raw UTF-8 bytes. */
static int jstring(jreader *j, sbuf *raw)
{
    j->s++;   /* opening quote */
    for (;;) {
        if (j->s >= j->end) return jfail(j, "unterminated string");
        unsigned char c = (unsigned char)*j->s;
        if (c == '"') { j->s++; return 0; }
        if (c < 0x20) return jfail(j, "control character in string");
        if (c != '\\') {
            const char *q = j->s;
            while (q < j->end && *q != '"' && *q != '\\' && (unsigned char)*q >= 0x20) q++;
            put(raw, j->s, (size_t)(q - j->s));
            j->s = q;
            continue;
        }
        j->s++;
        if (j->s >= j->end) return jfail(j, "unterminated escape");
        char e = *j->s++;
        switch (e) {
        case '"': put(raw, "\"", 1); break;
        case '\\': put(raw, "\\", 1); break;
        case '/': put(raw, "/", 1); break;
        case 'b': put(raw, "\b", 1); break;
        case 'f': put(raw, "\f", 1); break;
        case 'n': put(raw, "\n", 1); break;
        case 'r': put(raw, "\r", 1); break;
        case 't': put(raw, "\t", 1); break;
        case 'u': {
            uint32_t cp, lo;
            int rc = hex4(j, &cp);
            if (rc) return rc;
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j->end - j->s < 2 || j->s[0] != '\\' || j->s[1] != 'u') return jfail(j, "lone high surrogate");
                j->s += 2;
                if ((rc = hex4(j, &lo))) return rc;
                if (lo < 0xDC00 || lo > 0xDFFF) return jfail(j, "bad low surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return jfail(j, "lone low surrogate");
            }
            put_utf8(raw, cp);
            break;
        }
        default: return jfail(j, "unknown escape");
        }
    }
}

/* Jinja tojson of a string: escape ", \, \b \f \n \r \t and other bytes < 0x20; everything else raw. */
static void put_json_string(sbuf *b, const char *s, size_t n)
{
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': put(b, "\\\"", 2); break;
        case '\\': put(b, "\\\\", 2); break;
        case '\b': put(b, "\\b", 2); break;
        case '\f': put(b, "\\f", 2); break;
        case '\n': put(b, "\\n", 2); break;
        case '\r': put(b, "\\r", 2); break;
        case '\t': put(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char u[8];
                snprintf(u, sizeof u, "\\u%04x", c);
                put(b, u, 6);
            } else {
                put(b, (const char *)&s[i], 1);
            }
        }
    }
    put(b, "\"", 1);
}

/* A JSON number, re-printed as llama.cpp does: integers as integers, floats like C++ ostream (%g). */
static int jnumber(jreader *j, sbuf *out)
{
    const char *q = j->s;
    bool is_float = false;
    if (q < j->end && *q == '-') q++;
    if (q >= j->end || !isdigit((unsigned char)*q)) return jfail(j, "bad number");
    if (*q == '0') q++;
    else while (q < j->end && isdigit((unsigned char)*q)) q++;
    if (q < j->end && *q == '.') {
        is_float = true;
        q++;
        if (q >= j->end || !isdigit((unsigned char)*q)) return jfail(j, "bad fraction");
        while (q < j->end && isdigit((unsigned char)*q)) q++;
    }
    if (q < j->end && (*q == 'e' || *q == 'E')) {
        is_float = true;
        q++;
        if (q < j->end && (*q == '+' || *q == '-')) q++;
        if (q >= j->end || !isdigit((unsigned char)*q)) return jfail(j, "bad exponent");
        while (q < j->end && isdigit((unsigned char)*q)) q++;
    }
    char tmp[512];
    size_t len = (size_t)(q - j->s);
    if (len >= sizeof tmp) return jfail(j, "number too long");
    memcpy(tmp, j->s, len);
    tmp[len] = 0;
    j->s = q;
    char txt[64];
    if (!is_float) {
        errno = 0;
        long long v = strtoll(tmp, NULL, 10);
        if (errno != ERANGE) { snprintf(txt, sizeof txt, "%lld", v); puts_(out, txt); return 0; }
        if (tmp[0] != '-') {
            /* llama.cpp keeps 2^63..2^64-1 as unsigned but prints every integer through int64_t, so
             * these wrap to negative numbers; mirrored for byte identity */
            errno = 0;
            unsigned long long u = strtoull(tmp, NULL, 10);
            if (errno != ERANGE) {
                long long wrapped = (long long)(u - (unsigned long long)LLONG_MAX - 1ULL) + LLONG_MIN;
                snprintf(txt, sizeof txt, "%lld", wrapped);
                puts_(out, txt);
                return 0;
            }
        }
    }
    snprintf(txt, sizeof txt, "%g", strtod(tmp, NULL));
    puts_(out, txt);
    return 0;
}

static bool jliteral(jreader *j, const char *lit)
{
    size_t k = strlen(lit);
    if ((size_t)(j->end - j->s) < k || memcmp(j->s, lit, k)) return false;
    j->s += k;
    return true;
}

/* Parse one value and write it to out in tojson form. */
static int jvalue(jreader *j, sbuf *out, int depth)
{
    int rc;
    if (depth > JSON_MAX_DEPTH) return jfail(j, "nested too deeply");
    jws(j);
    if (j->s >= j->end) return jfail(j, "unexpected end");
    char c = *j->s;
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        j->s++;
        put(out, obj ? "{" : "[", 1);
        jws(j);
        if (j->s < j->end && *j->s == (obj ? '}' : ']')) { j->s++; put(out, obj ? "}" : "]", 1); return 0; }
        for (bool first = true;; first = false) {
            if (!first) put(out, ", ", 2);
            if (obj) {
                jws(j);
                if (j->s >= j->end || *j->s != '"') return jfail(j, "expected a key");
                sbuf key = {0};
                rc = jstring(j, &key);
                if (!rc) put_json_string(out, key.p ? key.p : "", key.n);
                free(key.p);
                if (rc) return rc;
                jws(j);
                if (j->s >= j->end || *j->s != ':') return jfail(j, "expected ':'");
                j->s++;
                put(out, ": ", 2);
            }
            if ((rc = jvalue(j, out, depth + 1))) return rc;
            jws(j);
            if (j->s < j->end && *j->s == ',') { j->s++; continue; }
            if (j->s < j->end && *j->s == (obj ? '}' : ']')) { j->s++; put(out, obj ? "}" : "]", 1); return 0; }
            return jfail(j, obj ? "expected ',' or '}'" : "expected ',' or ']'");
        }
    }
    if (c == '"') {
        sbuf raw = {0};
        rc = jstring(j, &raw);
        if (!rc) put_json_string(out, raw.p ? raw.p : "", raw.n);
        free(raw.p);
        return rc;
    }
    if (jliteral(j, "true")) { puts_(out, "true"); return 0; }
    if (jliteral(j, "false")) { puts_(out, "false"); return 0; }
    if (jliteral(j, "null")) { puts_(out, "null"); return 0; }
    return jnumber(j, out);
}

static int jend(jreader *j)
{
    jws(j);
    return j->s == j->end ? 0 : jfail(j, "trailing characters");
}

/* A tool definition, as `tool | tojson`. */
static int put_tool(sbuf *b, const char *tool, int index, ar_error *err)
{
    char what[32];
    snprintf(what, sizeof what, "tool %d", index);
    jreader j = { tool, tool, tool + strlen(tool), what, err };
    int rc = jvalue(&j, b, 0);
    return rc ? rc : jend(&j);
}

/* The parameters of a tool call: for each key of the arguments object, "<parameter=KEY>\n" + value +
 * "\n</parameter>\n". Strings are written raw. Qwen3.5 (`args_value | string` for scalars): true/false/null
 * as True/False/None; Qwen3.6 (`args_value | tojson` for every non-string): true/false/null. Numbers,
 * objects and arrays are written as tojson in both. */
static int put_arguments(sbuf *b, const ar_chat_tool_call *tc, bool json_scalars, ar_error *err)
{
    char what[160];
    snprintf(what, sizeof what, "tool call '%.100s' arguments", tc->name ? tc->name : "");
    jreader j = { tc->arguments, tc->arguments, tc->arguments + strlen(tc->arguments), what, err };
    jws(&j);
    if (j.s == j.end) return 0;   /* "" is taken as no arguments */
    if (*j.s != '{') return jfail(&j, "arguments must be an object");
    j.s++;
    jws(&j);
    if (j.s < j.end && *j.s == '}') { j.s++; return jend(&j); }
    int rc = 0;
    sbuf key = {0}, raw = {0};
    for (;;) {
        jws(&j);
        if (j.s >= j.end || *j.s != '"') { rc = jfail(&j, "expected a key"); break; }
        key.n = 0;
        if ((rc = jstring(&j, &key))) break;
        jws(&j);
        if (j.s >= j.end || *j.s != ':') { rc = jfail(&j, "expected ':'"); break; }
        j.s++;
        jws(&j);
        put(b, "<parameter=", 11);
        put(b, key.p ? key.p : "", key.n);
        put(b, ">\n", 2);
        if (j.s < j.end && *j.s == '"') {
            raw.n = 0;
            if ((rc = jstring(&j, &raw))) break;
            put(b, raw.p ? raw.p : "", raw.n);
        } else if (jliteral(&j, "true")) {
            puts_(b, json_scalars ? "true" : "True");
        } else if (jliteral(&j, "false")) {
            puts_(b, json_scalars ? "false" : "False");
        } else if (jliteral(&j, "null")) {
            puts_(b, json_scalars ? "null" : "None");
        } else if ((rc = jvalue(&j, b, 1))) {
            break;
        }
        put(b, "\n</parameter>\n", 14);
        jws(&j);
        if (j.s < j.end && *j.s == ',') { j.s++; continue; }
        if (j.s < j.end && *j.s == '}') { j.s++; rc = jend(&j); break; }
        rc = jfail(&j, "expected ',' or '}'");
        break;
    }
    free(key.p);
    free(raw.p);
    return rc;
}

/* ---- the template ------------------------------------------------------------------------------ */

static const char TOOLS_HEAD[] = "# Tools\n\nYou have access to the following functions:\n\n<tools>";
static const char TOOLS_TAIL[] =
    "\n\nIf you choose to call a function ONLY reply in the following format with NO suffix:\n\n"
    "<tool_call>\n<function=example_function_name>\n<parameter=example_parameter_1>\nvalue_1\n</parameter>\n"
    "<parameter=example_parameter_2>\nThis is the value for the second parameter\nthat can span\nmultiple lines\n"
    "</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n"
    "- Function calls MUST follow the specified format: an inner <function=...></function> block must be nested "
    "within <tool_call></tool_call> XML tags\n"
    "- Required parameters MUST be specified\n"
    "- You may provide optional reasoning for your function call in natural language BEFORE the function call, "
    "but NOT after\n"
    "- If there is no function call available, answer the question like normal with your current knowledge and do "
    "not tell the user about function calls\n</IMPORTANT>";

static bool role_is(const ar_chat_msg *m, const char *r) { return m->role && !strcmp(m->role, r); }

/* show_think: the message belongs to the current agentic turn (index > last_query_index), or Qwen3.6 with
 * preserve_thinking: its reasoning is rendered in a <think> block. */
static int render_assistant(sbuf *b, const ar_chat_msg *m, bool show_think, bool json_scalars, ar_error *err)
{
    slice content = trim(mk(m->content));
    slice reasoning = { "", 0 };
    if (m->reasoning_content) {
        reasoning = mk(m->reasoning_content);
    } else if (find_first(content, "</think>")) {
        /* content.split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n') */
        const char *close = find_first(content, "</think>");
        slice before = rstrip_nl((slice){ content.p, (size_t)(close - content.p) });
        const char *open = find_last(before, "<think>");
        if (open) before = (slice){ open + 7, (size_t)(before.p + before.n - (open + 7)) };
        reasoning = lstrip_nl(before);
        /* content.split('</think>')[-1].lstrip('\n') */
        const char *last = find_last(content, "</think>") + 8;
        content = lstrip_nl((slice){ last, (size_t)(content.p + content.n - last) });
    }
    reasoning = trim(reasoning);
    puts_(b, "<|im_start|>assistant\n");
    if (show_think) {
        puts_(b, "<think>\n");
        put_slice(b, reasoning);
        puts_(b, "\n</think>\n\n");
    }
    put_slice(b, content);
    for (int k = 0; k < m->n_tool_calls && m->tool_calls; k++) {
        const ar_chat_tool_call *tc = &m->tool_calls[k];
        if (k == 0) puts_(b, trim(content).n ? "\n\n<tool_call>\n<function=" : "<tool_call>\n<function=");
        else puts_(b, "\n<tool_call>\n<function=");
        puts_(b, tc->name ? tc->name : "");
        puts_(b, ">\n");
        if (tc->arguments) {
            int rc = put_arguments(b, tc, json_scalars, err);
            if (rc) return rc;
        }
        puts_(b, "</function>\n</tool_call>");
    }
    puts_(b, "<|im_end|>\n");
    return 0;
}

/* Plain ChatML (llama.cpp's built-in "chatml"): contents as given, tools and tool calls not rendered. */
static int render_chatml(sbuf *b, const ar_chat_msg *msgs, int n_msgs, bool add_generation_prompt)
{
    for (int i = 0; i < n_msgs; i++) {
        puts_(b, "<|im_start|>");
        puts_(b, msgs[i].role);
        puts_(b, "\n");
        puts_(b, msgs[i].content ? msgs[i].content : "");
        puts_(b, "<|im_end|>\n");
    }
    if (add_generation_prompt) puts_(b, "<|im_start|>assistant\n");
    return 0;
}

int ar_chat_render_opts(const ar_chat_msg *msgs, int n_msgs, const char *const *tools, int n_tools,
                        const ar_chat_opts *opts, char **out, ar_error *err)
{
    static const ar_chat_opts defaults = {0};
    if (!opts) opts = &defaults;
    *out = NULL;
    if (!msgs || n_msgs <= 0) return ar_fail(err, AR_EINVAL, "chat template: No messages provided.");
    for (int i = 0; i < n_msgs; i++)
        if (!msgs[i].role) return ar_fail(err, AR_EINVAL, "chat template: message %d has no role", i);
    if (opts->family < AR_CHAT_QWEN35 || opts->family > AR_CHAT_CHATML)
        return ar_fail(err, AR_EINVAL, "chat template: unknown family %d", opts->family);

    sbuf b = {0};
    int rc = 0;
    if (opts->family == AR_CHAT_CHATML) {
        render_chatml(&b, msgs, n_msgs, opts->add_generation_prompt);
        goto done;
    }
    const bool qwen36 = opts->family == AR_CHAT_QWEN36;
    const bool first_is_system = role_is(&msgs[0], "system");

    if (tools && n_tools > 0) {
        puts_(&b, "<|im_start|>system\n");
        puts_(&b, TOOLS_HEAD);
        for (int t = 0; t < n_tools; t++) {
            puts_(&b, "\n");
            if ((rc = put_tool(&b, tools[t] ? tools[t] : "", t, err))) goto fail;
        }
        puts_(&b, "\n</tools>");
        puts_(&b, TOOLS_TAIL);
        if (first_is_system) {
            slice sys = trim(mk(msgs[0].content));
            if (sys.n) { puts_(&b, "\n\n"); put_slice(&b, sys); }
        }
        puts_(&b, "<|im_end|>\n");
    } else if (first_is_system) {
        puts_(&b, "<|im_start|>system\n");
        put_slice(&b, trim(mk(msgs[0].content)));
        puts_(&b, "<|im_end|>\n");
    }

    /* last_query_index: the last user message that is not just a <tool_response> block. */
    int last_query = -1;
    for (int i = n_msgs - 1; i >= 0; i--) {
        if (!role_is(&msgs[i], "user")) continue;
        slice c = trim(mk(msgs[i].content));
        if (!(starts_with(c, "<tool_response>") && ends_with(c, "</tool_response>"))) { last_query = i; break; }
    }
    if (last_query < 0) { rc = ar_fail(err, AR_EINVAL, "chat template: No user query found in messages."); goto fail; }

    for (int i = 0; i < n_msgs; i++) {
        const ar_chat_msg *m = &msgs[i];
        slice content = trim(mk(m->content));
        if (role_is(m, "system")) {
            if (i != 0) {
                rc = ar_fail(err, AR_EINVAL, "chat template: System message must be at the beginning (message %d).", i);
                goto fail;
            }
        } else if (role_is(m, "user")) {
            puts_(&b, "<|im_start|>user\n");
            put_slice(&b, content);
            puts_(&b, "<|im_end|>\n");
        } else if (role_is(m, "assistant")) {
            bool show_think = i > last_query || (qwen36 && opts->preserve_thinking);
            if ((rc = render_assistant(&b, m, show_think, qwen36, err))) goto fail;
        } else if (role_is(m, "tool")) {
            /* consecutive tool results share one user turn */
            if (i > 0 && !role_is(&msgs[i - 1], "tool")) puts_(&b, "<|im_start|>user");
            puts_(&b, "\n<tool_response>\n");
            put_slice(&b, content);
            puts_(&b, "\n</tool_response>");
            if (i == n_msgs - 1 || !role_is(&msgs[i + 1], "tool")) puts_(&b, "<|im_end|>\n");
        } else {
            rc = ar_fail(err, AR_EINVAL, "chat template: Unexpected message role '%.64s' (message %d).", m->role, i);
            goto fail;
        }
    }

    if (opts->add_generation_prompt) {
        puts_(&b, "<|im_start|>assistant\n");
        puts_(&b, opts->disable_thinking ? "<think>\n\n</think>\n\n" : "<think>\n");
    }
done:
    if (!b.p) puts_(&b, "");
    if (b.oom) { rc = ar_fail(err, AR_ENOMEM, "chat template: out of memory"); goto fail; }
    *out = b.p;
    return 0;

fail:
    free(b.p);
    return rc;
}

int ar_chat_render_tools(const ar_chat_msg *msgs, int n_msgs, const char *const *tools, int n_tools,
                         bool add_generation_prompt, bool enable_thinking, char **out, ar_error *err)
{
    ar_chat_opts o = { .family = AR_CHAT_QWEN35, .add_generation_prompt = add_generation_prompt,
                       .disable_thinking = !enable_thinking };
    return ar_chat_render_opts(msgs, n_msgs, tools, n_tools, &o, out, err);
}

int ar_chat_render(const ar_chat_msg *msgs, int n_msgs, bool add_generation_prompt, bool enable_thinking,
                   char **out, ar_error *err)
{
    return ar_chat_render_tools(msgs, n_msgs, NULL, 0, add_generation_prompt, enable_thinking, out, err);
}


/* ---- OpenAI-style request JSON ------------------------------------------------------------------ */

/* Everything ar_chat_render_json allocates, freed together. */
typedef struct req_arena {
    char  **ptrs;
    size_t  n, cap;
    bool    oom;
} req_arena;

static void *arena_keep(req_arena *a, void *p)
{
    if (!p) { a->oom = true; return NULL; }
    if (a->n == a->cap) {
        size_t cap = a->cap ? 2 * a->cap : 16;
        char **np = realloc(a->ptrs, cap * sizeof *np);
        if (!np) { free(p); a->oom = true; return NULL; }
        a->ptrs = np;
        a->cap = cap;
    }
    a->ptrs[a->n++] = p;
    return p;
}

static void arena_free(req_arena *a)
{
    for (size_t i = 0; i < a->n; i++) free(a->ptrs[i]);
    free(a->ptrs);
}

/* Compact JSON text of v with reals at full precision (the renderer re-prints them like llama.cpp). */
static char *dump_json(req_arena *a, const json_t *v)
{
    return arena_keep(a, json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(17)));
}

/* A message's content: a string, null, or an array of {"type": "text", "text": ...} parts (the template
 * concatenates the parts' texts). */
static int req_content(req_arena *a, const json_t *c, int i, const char **out, ar_error *err)
{
    *out = NULL;
    if (!c || json_is_null(c)) return 0;
    if (json_is_string(c)) { *out = json_string_value(c); return 0; }
    if (!json_is_array(c))
        return ar_fail(err, AR_EINVAL, "messages[%d].content: expected a string, null or an array of parts", i);
    sbuf b = {0};
    size_t k;
    const json_t *part;
    json_array_foreach(c, k, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!type) { free(b.p); return ar_fail(err, AR_EINVAL, "messages[%d].content[%zu]: no \"type\"", i, k); }
        if (strcmp(type, "text")) {
            free(b.p);
            return ar_fail(err, AR_EUNSUPPORTED, "messages[%d].content[%zu]: content part type '%.40s' is not "
                           "supported (this model takes text only)", i, k, type);
        }
        const json_t *text = json_object_get(part, "text");
        if (!json_is_string(text)) {
            free(b.p);
            return ar_fail(err, AR_EINVAL, "messages[%d].content[%zu].text: expected a string", i, k);
        }
        put(&b, json_string_value(text), json_string_length(text));
    }
    if (!b.p) puts_(&b, "");
    *out = arena_keep(a, b.oom ? (free(b.p), NULL) : b.p);
    return a->oom ? ar_fail(err, AR_ENOMEM, "chat request: out of memory") : 0;
}

static int req_tool_calls(req_arena *a, const json_t *tcs, int i, ar_chat_msg *m, ar_error *err)
{
    if (!tcs || json_is_null(tcs)) return 0;
    if (!json_is_array(tcs)) return ar_fail(err, AR_EINVAL, "messages[%d].tool_calls: expected an array", i);
    size_t n = json_array_size(tcs);
    if (!n) return 0;
    ar_chat_tool_call *calls = arena_keep(a, calloc(n, sizeof *calls));
    if (!calls) return ar_fail(err, AR_ENOMEM, "chat request: out of memory");
    size_t k;
    const json_t *tc;
    json_array_foreach(tcs, k, tc) {
        const json_t *type = json_object_get(tc, "type");
        if (type && !(json_is_string(type) && !strcmp(json_string_value(type), "function")))
            return ar_fail(err, AR_EINVAL, "messages[%d].tool_calls[%zu].type: only \"function\" is supported", i, k);
        const json_t *fn = json_object_get(tc, "function");
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (!name) return ar_fail(err, AR_EINVAL, "messages[%d].tool_calls[%zu].function.name: expected a string", i, k);
        const json_t *args = json_object_get(fn, "arguments");
        if (!args) return ar_fail(err, AR_EINVAL, "messages[%d].tool_calls[%zu].function.arguments: missing", i, k);
        calls[k].name = name;
        if (json_is_string(args)) calls[k].arguments = json_string_value(args);
        else if (!(calls[k].arguments = dump_json(a, args))) return ar_fail(err, AR_ENOMEM, "chat request: out of memory");
    }
    m->tool_calls = calls;
    m->n_tool_calls = (int)n;
    return 0;
}

static int req_messages(req_arena *a, const json_t *arr, ar_chat_msg **out, int *n_out, ar_error *err)
{
    if (!json_is_array(arr)) return ar_fail(err, AR_EINVAL, "chat request: \"messages\" must be an array");
    size_t n = json_array_size(arr);
    if (n > (size_t)INT32_MAX / 2) return ar_fail(err, AR_EINVAL, "chat request: too many messages");
    ar_chat_msg *msgs = arena_keep(a, calloc(n ? n : 1, sizeof *msgs));
    if (!msgs) return ar_fail(err, AR_ENOMEM, "chat request: out of memory");
    size_t i;
    const json_t *m;
    int rc;
    json_array_foreach(arr, i, m) {
        int ii = (int)i;
        if (!json_is_object(m)) return ar_fail(err, AR_EINVAL, "messages[%d]: expected an object", ii);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!role) return ar_fail(err, AR_EINVAL, "messages[%d].role: expected a string", ii);
        msgs[i].role = !strcmp(role, "developer") ? "system" : role;
        const json_t *content = json_object_get(m, "content");
        const json_t *tcs = json_object_get(m, "tool_calls");
        if (!content && (strcmp(role, "assistant") || !tcs))
            return ar_fail(err, AR_EINVAL, "messages[%d] (%.20s) has no \"content\"", ii, role);
        if ((rc = req_content(a, content, ii, &msgs[i].content, err))) return rc;
        const json_t *rcj = json_object_get(m, "reasoning_content");
        if (rcj && !json_is_null(rcj)) {
            if (!json_is_string(rcj)) return ar_fail(err, AR_EINVAL, "messages[%d].reasoning_content: expected a string", ii);
            /* llama.cpp passes reasoning_content to the template only when it is not empty */
            if (json_string_length(rcj)) msgs[i].reasoning_content = json_string_value(rcj);
        }
        if ((rc = req_tool_calls(a, tcs, ii, &msgs[i], err))) return rc;
    }
    *out = msgs;
    *n_out = (int)n;
    return 0;
}

/* Each OpenAI tool rebuilt as {"type": "function", "function": {"name", "description", "parameters"}}. */
static int req_tools(req_arena *a, const json_t *arr, const char ***out, int *n_out, ar_error *err)
{
    *out = NULL;
    *n_out = 0;
    if (!arr || json_is_null(arr)) return 0;
    if (!json_is_array(arr)) return ar_fail(err, AR_EINVAL, "chat request: \"tools\" must be an array");
    size_t n = json_array_size(arr);
    if (!n) return 0;
    if (n > (size_t)INT32_MAX / 2) return ar_fail(err, AR_EINVAL, "chat request: too many tools");
    const char **tools = arena_keep(a, calloc(n, sizeof *tools));
    if (!tools) return ar_fail(err, AR_ENOMEM, "chat request: out of memory");
    size_t k;
    const json_t *t;
    json_array_foreach(arr, k, t) {
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!type || strcmp(type, "function"))
            return ar_fail(err, AR_EINVAL, "tools[%zu].type: only \"function\" tools are supported", k);
        const json_t *fn = json_object_get(t, "function");
        const json_t *name = json_object_get(fn, "name");
        if (!json_is_string(name)) return ar_fail(err, AR_EINVAL, "tools[%zu].function.name: expected a string", k);
        const json_t *desc = json_object_get(fn, "description");
        if (desc && !json_is_string(desc) && !json_is_null(desc))
            return ar_fail(err, AR_EINVAL, "tools[%zu].function.description: expected a string", k);
        const json_t *params = json_object_get(fn, "parameters");
        json_t *f = json_object();
        json_t *tool = json_object();
        int bad = !f || !tool;
        bad |= json_object_set_new(tool, "type", json_string("function"));
        bad |= json_object_set(f, "name", (json_t *)name);
        bad |= json_is_string(desc) ? json_object_set(f, "description", (json_t *)desc)
                                     : json_object_set_new(f, "description", json_string(""));
        bad |= params ? json_object_set(f, "parameters", (json_t *)params)
                      : json_object_set_new(f, "parameters", json_object());
        bad |= json_object_set(tool, "function", f);
        if (!bad) tools[k] = dump_json(a, tool);
        json_decref(f);
        json_decref(tool);
        if (bad || !tools[k]) return ar_fail(err, AR_ENOMEM, "chat request: out of memory");
    }
    *out = tools;
    *n_out = (int)n;
    return 0;
}

int ar_chat_render_json(const char *messages_json, const char *tools_json, const ar_chat_opts *opts, char **out,
                        ar_error *err)
{
    *out = NULL;
    json_error_t je;
    json_t *messages = json_loads(messages_json ? messages_json : "", JSON_DECODE_ANY, &je);
    if (!messages)
        return ar_fail(err, AR_EFORMAT, "chat request: \"messages\" is not valid JSON: %s (at byte %d)", je.text,
                       je.position);
    json_t *tools = NULL;
    if (tools_json && !(tools = json_loads(tools_json, JSON_DECODE_ANY, &je))) {
        json_decref(messages);
        return ar_fail(err, AR_EFORMAT, "chat request: \"tools\" is not valid JSON: %s (at byte %d)", je.text,
                       je.position);
    }
    req_arena a = {0};
    ar_chat_msg *msgs = NULL;
    const char **tool_texts = NULL;
    int n_msgs = 0, n_tools = 0;
    int rc = req_messages(&a, messages, &msgs, &n_msgs, err);
    if (!rc) rc = req_tools(&a, tools, &tool_texts, &n_tools, err);
    if (!rc) rc = ar_chat_render_opts(msgs, n_msgs, tool_texts, n_tools, opts, out, err);
    arena_free(&a);
    json_decref(messages);
    json_decref(tools);
    return rc;
}

/* ---- families ---------------------------------------------------------------------------------- */

int ar_chat_family(const char *t)
{
    if (!t || !*t) return AR_CHAT_QWEN35;
    static const char *const markers[] = { "<|im_start|>", "<tool_call>", "<function=", "<parameter=", "<think>" };
    for (size_t i = 0; i < sizeof markers / sizeof markers[0]; i++)
        if (!strstr(t, markers[i])) return AR_CHAT_CHATML;
    return strstr(t, "preserve_thinking") ? AR_CHAT_QWEN36 : AR_CHAT_QWEN35;
}

const char *ar_chat_family_name(int family)
{
    switch (family) {
    case AR_CHAT_QWEN35: return "qwen3.5";
    case AR_CHAT_QWEN36: return "qwen3.6";
    case AR_CHAT_CHATML: return "chatml";
    default: return "unknown";
    }
}

/* FNV-1a 64 and length of the published templates (trailing whitespace ignored, as GGUF converters may
 * add a newline): Hugging Face Qwen/Qwen3.5-* chat_template.jinja (sha256 a4aee8af...), which is
 * llama.cpp models/templates/Qwen3.5-4B.jinja, and Qwen/Qwen3.6-27B's (sha256 e84f32a2...). */
static const struct { size_t len; uint64_t fnv; } KNOWN_TEMPLATES[] = {
    { 7756, 0xf07c510f47fbaca0ULL },
    { 7764, 0x8ae3a8bc6e68f114ULL },
};

bool ar_chat_template_is_known(const char *t)
{
    if (!t) return false;
    size_t n = strlen(t);
    while (n && is_ws(t[n - 1])) n--;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)t[i];
        h *= 0x100000001b3ULL;
    }
    for (size_t k = 0; k < sizeof KNOWN_TEMPLATES / sizeof KNOWN_TEMPLATES[0]; k++)
        if (KNOWN_TEMPLATES[k].len == n && KNOWN_TEMPLATES[k].fnv == h) return true;
    return false;
}
