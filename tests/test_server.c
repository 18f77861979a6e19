/* tests/test_server.c — the HTTP server in-process on an ephemeral loopback port, driven with raw
 * HTTP over sockets: the bad-input matrix (malformed JSON, wrong types, missing fields, oversize
 * bodies, prompts over the context, invalid UTF-8, unknown routes and methods, wrong API keys),
 * each answered in its dialect's error shape — OpenAI's {"error":{"message","type","param","code"}}
 * for chat / completions / responses, Anthropic's {"type":"error","error":{"type","message"}} for
 * /v1/messages — and each followed by a check that the server still answers; then real
 * completions, streamed and not, in all three dialects (SSE frames typed and in order), a client
 * that disconnects mid-stream (its generation must stop), SSE keep-alives while a stream waits in
 * the queue ("event: ping" for Anthropic), and dialect-shaped error frames for streams queued when
 * the server stops. Model: the tiny-f32 fixture (random weights: only shapes and counts are
 * checked). A second server whose "model" outputs a fixed script (srv_options.script) drives
 * reasoning, text and a tool call through chat completions, messages and responses, streamed and
 * not, and checks the reassembled streams equal the non-streamed answers. Traffic goes to
 * 127.0.0.1 only. */
#include "tests/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "arbor.h"
#include "base/log.h"
#include "base/timer.h"
#include "model/mkmodel.h"
#include "server/serve.h"
#include "tok/chat.h"

#define KEY "test-key-123"
#define MAX_BODY (256 * 1024)
#define N_CTX 4096   /* long enough that the "tell me" stream holds the one slot for seconds */

static int g_port;

/* ---- raw HTTP client ---------------------------------------------------------------------------- */

static int dial(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)g_port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = { .tv_sec = 60 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&a, sizeof a)) { close(fd); return -1; }
    return fd;
}

static bool send_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0) return false;
        p += k;
        n -= (size_t)k;
    }
    return true;
}

typedef struct resp {
    int    status;
    char  *head;      /* status line + headers */
    char  *body;      /* de-chunked */
    size_t len;
} resp;

static void resp_free(resp *r) { free(r->head); free(r->body); *r = (resp){ 0 }; }

static void dechunk(resp *r)
{
    if (!strcasestr(r->head, "transfer-encoding: chunked")) return;
    char *out = malloc(r->len + 1), *p = r->body, *end = r->body + r->len;
    size_t n = 0;
    while (p < end) {
        char *e;
        unsigned long sz = strtoul(p, &e, 16);
        char *nl = strstr(p, "\r\n");
        if (!nl || e == p) break;
        p = nl + 2;
        if (sz == 0 || p + sz > end) break;
        memcpy(out + n, p, sz);
        n += sz;
        p += sz + 2;
    }
    out[n] = 0;
    free(r->body);
    r->body = out;
    r->len = n;
}

/* Read a whole response (the request asked for Connection: close). */
static void read_resp(int fd, resp *r)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (n + 1024 > cap) buf = realloc(buf, cap *= 2);
        ssize_t k = recv(fd, buf + n, cap - n - 1, 0);
        if (k <= 0) break;
        n += (size_t)k;
    }
    buf[n] = 0;
    *r = (resp){ 0 };
    char *sep = strstr(buf, "\r\n\r\n");
    if (!sep) { r->head = buf; r->body = calloc(1, 1); return; }
    r->head = strndup(buf, (size_t)(sep - buf));
    r->len = n - (size_t)(sep + 4 - buf);
    r->body = malloc(r->len + 1);
    memcpy(r->body, sep + 4, r->len);
    r->body[r->len] = 0;
    free(buf);
    sscanf(r->head, "HTTP/1.%*d %d", &r->status);
    dechunk(r);
}

static void request(const char *method, const char *path, const char *headers, const char *body, size_t len, resp *r)
{
    *r = (resp){ 0 };
    int fd = dial();
    if (fd < 0) { r->head = strdup("connect failed"); r->body = calloc(1, 1); return; }
    char head[2048];
    int hn = snprintf(head, sizeof head,
                      "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n%s%s%s",
                      method, path, headers ? headers : "Authorization: Bearer " KEY "\r\n",
                      body ? "Content-Type: application/json\r\n" : "", "");
    if (body) hn += snprintf(head + hn, sizeof head - (size_t)hn, "Content-Length: %zu\r\n", len);
    hn += snprintf(head + hn, sizeof head - (size_t)hn, "\r\n");
    send_all(fd, head, (size_t)hn);
    if (body) send_all(fd, body, len);
    read_resp(fd, r);
    close(fd);
}

static void post(const char *path, const char *body, resp *r) { request("POST", path, NULL, body, strlen(body), r); }

static bool server_alive(void)
{
    resp r;
    request("GET", "/health", "", NULL, 0, &r);
    bool ok = r.status == 200 && strstr(r.body, "\"ok\"");
    resp_free(&r);
    return ok;
}

/* The response is an OpenAI error with this status (and param / code when given), and the server
 * still answers afterwards. */
static void expect_error(const char *name, resp *r, int status, const char *param, const char *code)
{
    CHECK(r->status == status, "%s: status %d, want %d (body %.200s)", name, r->status, status, r->body);
    json_error_t je;
    json_t *root = json_loads(r->body, 0, &je);
    json_t *err = root ? json_object_get(root, "error") : NULL;
    json_t *msg = err ? json_object_get(err, "message") : NULL, *type = err ? json_object_get(err, "type") : NULL;
    json_t *prm = err ? json_object_get(err, "param") : NULL, *cod = err ? json_object_get(err, "code") : NULL;
    CHECK(json_is_string(msg) && json_string_length(msg) > 0 && json_is_string(type) &&
              (json_is_string(prm) || json_is_null(prm)) && (json_is_string(cod) || json_is_null(cod)),
          "%s: not the OpenAI error shape: %.300s", name, r->body);
    CHECK(strstr(r->head, "application/json") != NULL, "%s: content type is not JSON", name);
    if (param)
        CHECK(json_is_string(prm) && !strcmp(json_string_value(prm), param), "%s: param %s, want %s", name,
              json_is_string(prm) ? json_string_value(prm) : "null", param);
    if (code)
        CHECK(json_is_string(cod) && !strcmp(json_string_value(cod), code), "%s: code %s, want %s", name,
              json_is_string(cod) ? json_string_value(cod) : "null", code);
    json_decref(root);
    CHECK(server_alive(), "%s: the server stopped answering afterwards", name);
    resp_free(r);
}

static void bad_chat(const char *name, const char *body, const char *param)
{
    resp r;
    post("/v1/chat/completions", body, &r);
    expect_error(name, &r, 400, param, NULL);
}

/* A history whose assistant tool call has `args` (as they appear inside the JSON string, escaped) is accepted. */
static void args_sent_back(const char *args, const char *what)
{
    char body[1024];
    snprintf(body, sizeof body,
             "{\"max_tokens\": 1, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"tool_calls\": "
             "[{\"id\": \"c\", \"type\": \"function\", \"function\": {\"name\": \"f\", \"arguments\": \"%s\"}}]}, "
             "{\"role\": \"tool\", \"tool_call_id\": \"c\", \"content\": \"ok\"}]}", args);
    resp r;
    post("/v1/chat/completions", body, &r);
    CHECK(r.status == 200, "tool call arguments %s sent back: %d %s", what, r.status, r.body ? r.body : "");
    resp_free(&r);
}

/* ---- the matrix --------------------------------------------------------------------------------- */

static void test_bad_inputs(void)
{
    resp r;
    post("/v1/chat/completions", "{\"messages\": [", &r);
    expect_error("malformed JSON", &r, 400, NULL, "invalid_json");
    post("/v1/chat/completions", "", &r);
    expect_error("empty body", &r, 400, NULL, NULL);
    post("/v1/chat/completions", "[1, 2]", &r);
    expect_error("body is an array", &r, 400, NULL, NULL);
    post("/v1/chat/completions", "{\"a\": 1, \"a\": 2, \"messages\": []}", &r);
    expect_error("duplicate keys", &r, 400, NULL, NULL);

    bad_chat("missing messages", "{\"model\": \"x\"}", "messages");
    bad_chat("empty messages", "{\"messages\": []}", "messages");
    bad_chat("messages is a string", "{\"messages\": \"hi\"}", "messages");
    bad_chat("message is a number", "{\"messages\": [5]}", "messages[0]");
    bad_chat("missing role", "{\"messages\": [{\"content\": \"hi\"}]}", "messages[0].role");
    bad_chat("unknown role", "{\"messages\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", "messages[0].role");
    bad_chat("content is a number", "{\"messages\": [{\"role\": \"user\", \"content\": 5}]}", "messages[0].content");
    bad_chat("content part without text", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}",
             "messages[0].content[0].text");
    bad_chat("image part", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image_url\", \"image_url\": {\"url\": \"x\"}}]}]}",
             "messages[0].content[0].type");
    bad_chat("temperature is a string", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"temperature\": \"hot\"}",
             "temperature");
    bad_chat("top_p out of range", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_p\": 1.5}", "top_p");
    bad_chat("max_tokens negative", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": -1}",
             "max_tokens");
    bad_chat("max_tokens fractional", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 2.5}",
             "max_tokens");
    bad_chat("stream is a string", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stream\": \"yes\"}", "stream");
    bad_chat("stop is a number", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": 5}", "stop");
    bad_chat("stop array holds a number", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"stop\": [\"a\", 1]}",
             "stop[1]");
    bad_chat("tools is an object", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": {}}", "tools");
    bad_chat("tool without a name", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{\"type\": \"function\", \"function\": {}}]}",
             "tools[0].function.name");
    bad_chat("tool_choice names an unknown tool",
             "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"f\"}}], "
             "\"tool_choice\": {\"type\": \"function\", \"function\": {\"name\": \"g\"}}}",
             "tool_choice.function.name");
    bad_chat("tool call arguments are not JSON",
             "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"tool_calls\": [{\"id\": \"c\", \"type\": \"function\", "
             "\"function\": {\"name\": \"f\", \"arguments\": \"{oops\"}}]}]}",
             "messages[1].tool_calls[0].function.arguments");
    /* what a model may write in its arguments (valid JSON that tok/toolcall.c passes through) comes back */
    args_sent_back("{\\\"n\\\": 123456789012345678901234567890}", "with an integer past 64 bits");
    args_sent_back("{\\\"s\\\": \\\"a\\\\u0000b\\\"}", "with a string holding \\u0000");
    bad_chat("n is 2", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"n\": 2}", "n");
    bad_chat("top_logprobs without logprobs", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"top_logprobs\": 3}",
             "top_logprobs");
    bad_chat("seed is a string", "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"seed\": \"x\"}", "seed");
    bad_chat("no user message (template)", "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}]}", "messages");

    post("/v1/completions", "{\"max_tokens\": 4}", &r);
    expect_error("completions without a prompt", &r, 400, "prompt", NULL);
    post("/v1/completions", "{\"prompt\": [1, 99999999]}", &r);
    expect_error("completions token id outside the vocabulary", &r, 400, "prompt[1]", NULL);

    /* invalid UTF-8: raw bytes, and an escaped lone surrogate */
    const char bad_utf8[] = "{\"messages\": [{\"role\": \"user\", \"content\": \"caf\xC3\x28 \xFF\"}]}";
    post("/v1/chat/completions", bad_utf8, &r);
    expect_error("invalid UTF-8 in content", &r, 400, NULL, NULL);
    post("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"\\ud800x\"}]}", &r);
    expect_error("lone surrogate in content", &r, 400, NULL, NULL);
    post("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"a\\u0000b\"}]}", &r);
    expect_error("NUL in content", &r, 400, NULL, NULL);

    /* routes and methods */
    request("GET", "/v1/nothing", NULL, NULL, 0, &r);
    expect_error("unknown route", &r, 404, NULL, "unknown_url");
    request("POST", "/v1/chat/completions/extra", NULL, "{}", 2, &r);
    expect_error("unknown sub-route", &r, 404, NULL, "unknown_url");
    request("GET", "/v1/chat/completions", NULL, NULL, 0, &r);
    expect_error("wrong method", &r, 405, NULL, NULL);

    /* API keys */
    request("GET", "/v1/models", "", NULL, 0, &r);
    expect_error("missing API key", &r, 401, NULL, "invalid_api_key");
    request("GET", "/v1/models", "Authorization: Bearer wrong\r\n", NULL, 0, &r);
    expect_error("wrong bearer key", &r, 401, NULL, "invalid_api_key");
    request("GET", "/v1/models", "x-api-key: " KEY "x\r\n", NULL, 0, &r);
    expect_error("wrong x-api-key", &r, 401, NULL, "invalid_api_key");
    post("/v1/chat/completions", "{\"messages\": [", &r);   /* sanity: the key in post() is right */
    CHECK(r.status == 400, "right key: status %d", r.status);
    resp_free(&r);
    request("GET", "/v1/models", "x-api-key: " KEY "\r\n", NULL, 0, &r);
    CHECK(r.status == 200, "x-api-key accepted: status %d", r.status);
    resp_free(&r);
    request("GET", "/v1/models", "authorization: bearer " KEY "\r\n", NULL, 0, &r);
    CHECK(r.status == 200, "lower-case bearer accepted: status %d", r.status);
    resp_free(&r);
    request("GET", "/metrics", "", NULL, 0, &r);
    expect_error("metrics need the key", &r, 401, NULL, NULL);
}

static void test_oversize(void)
{
    /* Content-Length over the limit: answered from the headers alone */
    int fd = dial();
    char head[512];
    int n = snprintf(head, sizeof head,
                     "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                     "Authorization: Bearer " KEY "\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                     MAX_BODY * 4);
    send_all(fd, head, (size_t)n);
    resp r;
    read_resp(fd, &r);
    close(fd);
    expect_error("Content-Length over the limit", &r, 413, NULL, "request_too_large");

    /* a chunked body that passes the limit while it is read */
    fd = dial();
    n = snprintf(head, sizeof head,
                 "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                 "Authorization: Bearer " KEY "\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_all(fd, head, (size_t)n);
    static char chunk[65536 + 32];
    int len = snprintf(chunk, sizeof chunk, "%x\r\n", 65536);
    memset(chunk + len, 'a', 65536);
    memcpy(chunk + len + 65536, "\r\n", 2);
    for (int i = 0; i < MAX_BODY / 65536 + 2; i++) send_all(fd, chunk, (size_t)len + 65536 + 2);
    send_all(fd, "0\r\n\r\n", 5);
    read_resp(fd, &r);
    close(fd);
    expect_error("chunked body over the limit", &r, 413, NULL, "request_too_large");
}

static void test_context(void)
{
    /* a prompt longer than the context: 400 with the numbers */
    sbuf b = { 0 };
    sb_puts(&b, "{\"messages\": [{\"role\": \"user\", \"content\": \"");
    for (int i = 0; i < 3 * N_CTX; i++) sb_printf(&b, "w%d ", i);
    sb_puts(&b, "\"}]}");
    resp r;
    post("/v1/chat/completions", b.p, &r);
    sb_free(&b);
    char want[64];
    snprintf(want, sizeof want, "context length is %d tokens", N_CTX);
    int n_tokens = 0;
    const char *at = strstr(r.body, "resulted in ");
    if (at) n_tokens = atoi(at + 12);
    CHECK(strstr(r.body, want) != NULL, "context: the message lacks '%s': %.300s", want, r.body);
    CHECK(n_tokens > N_CTX, "context: the message does not give the prompt's token count (%d): %.300s", n_tokens, r.body);
    expect_error("prompt over the context", &r, 400, "messages", "context_length_exceeded");
}

/* ---- working requests --------------------------------------------------------------------------- */

static void test_completion(void)
{
    resp r;
    post("/v1/chat/completions",
         "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"hi\"}], "
         "\"max_tokens\": 7, \"temperature\": 0, \"logprobs\": true, \"top_logprobs\": 2}",
         &r);
    CHECK(r.status == 200, "chat: status %d: %.300s", r.status, r.body);
    json_t *root = json_loads(r.body, 0, NULL);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *usage = json_object_get(root, "usage");
    CHECK(json_is_string(json_object_get(root, "id")) && !strcmp(json_string_value(json_object_get(root, "object")), "chat.completion"),
          "chat: envelope: %.200s", r.body);
    CHECK(choice && !strcmp(json_string_value(json_object_get(choice, "finish_reason")), "length"), "chat: finish_reason: %.300s", r.body);
    CHECK(json_integer_value(json_object_get(usage, "completion_tokens")) == 7, "chat: completion_tokens %lld",
          (long long)json_integer_value(json_object_get(usage, "completion_tokens")));
    CHECK(json_integer_value(json_object_get(usage, "total_tokens")) ==
              json_integer_value(json_object_get(usage, "prompt_tokens")) + 7, "chat: total_tokens");
    json_t *lp = json_object_get(json_object_get(choice, "logprobs"), "content");
    CHECK(json_array_size(lp) == 7, "chat: %zu logprob entries, want 7", json_array_size(lp));
    json_t *e0 = json_array_get(lp, 0);
    double l0 = json_number_value(json_object_get(e0, "logprob"));
    CHECK(l0 <= 0 && json_array_size(json_object_get(e0, "top_logprobs")) == 2, "chat: logprob entry %.200s", r.body);
    /* greedy: the chosen token is the most likely one */
    double t0 = json_number_value(json_object_get(json_array_get(json_object_get(e0, "top_logprobs"), 0), "logprob"));
    CHECK(l0 == t0, "chat: greedy token logprob %g is not the top one %g", l0, t0);
    json_decref(root);
    resp_free(&r);

    /* prompt_tokens agrees with the tokenizer on the rendered template */
    post("/apply-template", "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"hi\"}]}", &r);
    root = json_loads(r.body, 0, NULL);
    const char *prompt = json_string_value(json_object_get(root, "prompt"));
    CHECK(prompt && strstr(prompt, "<|im_start|>user\nhi<|im_end|>"), "apply-template: %.200s", r.body);
    json_t *tq = json_object();
    json_object_set_new(tq, "content", json_string(prompt ? prompt : ""));
    char *tqs = json_dumps(tq, 0);
    resp t;
    post("/tokenize", tqs, &t);
    json_t *troot = json_loads(t.body, 0, NULL);
    size_t n_tok = json_array_size(json_object_get(troot, "tokens"));
    resp_free(&r);
    post("/v1/chat/completions",
         "{\"messages\": [{\"role\": \"system\", \"content\": \"s\"}, {\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 1}",
         &r);
    json_t *c2 = json_loads(r.body, 0, NULL);
    long long pt = json_integer_value(json_object_get(json_object_get(c2, "usage"), "prompt_tokens"));
    CHECK(n_tok > 0 && pt == (long long)n_tok, "usage.prompt_tokens %lld != tokenize(apply-template) %zu", pt, n_tok);
    json_decref(c2);
    json_decref(troot);
    json_decref(tq);
    json_decref(root);
    free(tqs);
    resp_free(&t);
    resp_free(&r);

    /* raw completions */
    post("/v1/completions", "{\"prompt\": \"Once upon\", \"max_tokens\": 5, \"temperature\": 0}", &r);
    root = json_loads(r.body, 0, NULL);
    choice = json_array_get(json_object_get(root, "choices"), 0);
    CHECK(r.status == 200 && json_is_string(json_object_get(choice, "text")) &&
              !strcmp(json_string_value(json_object_get(root, "object")), "text_completion"),
          "completions: %.300s", r.body);
    json_decref(root);
    resp_free(&r);
}

static void test_stream(void)
{
    resp r;
    post("/v1/chat/completions",
         "{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 6, \"stream\": true, "
         "\"stream_options\": {\"include_usage\": true}}",
         &r);
    CHECK(r.status == 200 && strstr(r.head, "text/event-stream"), "stream: status %d, head %.200s", r.status, r.head);
    int frames = 0, usage_frames = 0, finish = 0, bad_frames = 0;
    const char *first_bad = NULL;
    bool done = false, role = false;
    /* one check over all frames: their number depends on the sampled text (pieces held back while a
     * character or a stop string is incomplete), and the suite's count of checks should not */
    for (char *p = r.body; (p = strstr(p, "data: ")); p += 6) {
        if (!strncmp(p + 6, "[DONE]", 6)) { done = true; continue; }
        char *end = strstr(p, "\n\n");
        if (!end) break;
        json_t *c = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        if (!c && !bad_frames++) first_bad = p;
        frames++;
        json_t *ch = json_object_get(c, "choices");
        if (json_array_size(ch) == 0) {
            usage_frames++;
            CHECK(json_integer_value(json_object_get(json_object_get(c, "usage"), "completion_tokens")) == 6, "stream: usage");
        } else {
            json_t *d = json_object_get(json_array_get(ch, 0), "delta");
            if (json_object_get(d, "role")) role = true;
            json_t *fr = json_object_get(json_array_get(ch, 0), "finish_reason");
            if (json_is_string(fr)) finish++;
        }
        json_decref(c);
    }
    CHECK(bad_frames == 0, "stream: %d of %d frames are not JSON, the first: %.100s", bad_frames, frames,
          first_bad ? first_bad : "");
    CHECK(done && role && finish == 1 && usage_frames == 1 && frames >= 3,
          "stream: frames %d, role %d, finish %d, usage %d, done %d", frames, role, finish, usage_frames, done);
    resp_free(&r);
}

static long long metric(const char *name)
{
    resp r;
    request("GET", "/metrics", NULL, NULL, 0, &r);
    long long v = -1;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(r.body, key);
    if (at) v = atoll(at + strlen(key));
    resp_free(&r);
    return v;
}

/* Open a streamed request and read until its first bytes arrive. */
static int open_stream(int max_tokens)
{
    int fd = dial();
    char body[256], head[512];
    int bn = snprintf(body, sizeof body,
                      "{\"messages\": [{\"role\": \"user\", \"content\": \"tell me\"}], \"max_tokens\": %d, \"stream\": true, "
                      "\"temperature\": 0}", max_tokens);
    int hn = snprintf(head, sizeof head,
                      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " KEY "\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n", bn);
    send_all(fd, head, (size_t)hn);
    send_all(fd, body, (size_t)bn);
    char buf[4096];
    recv(fd, buf, sizeof buf, 0);
    return fd;
}

static void test_disconnect_and_keepalive(void)
{
    long long gen0 = metric("arbor_generated_tokens_total"), cancelled0 = metric("arbor_cancelled_total");
    /* A: a long generation holding the worker */
    int a = open_stream(N_CTX - 64);
    /* B: queued behind A; its idle stream gets keep-alive comments (ping 0.2 s) */
    int b = open_stream(4);
    char buf[8192];
    size_t got = 0;
    bool keepalive = false;
    double t0 = ar_now();
    while (!keepalive && ar_now() - t0 < 5) {
        struct pollfd p = { .fd = b, .events = POLLIN };
        if (poll(&p, 1, 200) <= 0) continue;
        ssize_t k = recv(b, buf + got, sizeof buf - 1 - got, 0);
        if (k <= 0) break;
        got += (size_t)k;
        buf[got] = 0;
        keepalive = strstr(buf, ": keep-alive\n\n") != NULL;
        if (got > sizeof buf / 2) got = 0;
    }
    CHECK(keepalive, "keep-alive: no ': keep-alive' comment on a queued stream within 5 s");
    /* both clients leave; A's generation must stop (B is dropped from the queue) */
    close(b);
    close(a);
    double t1 = ar_now();
    long long cancelled = cancelled0;
    while (ar_now() - t1 < 10 && cancelled < cancelled0 + 1) {
        usleep(20000);
        cancelled = metric("arbor_cancelled_total");
    }
    long long gen = metric("arbor_generated_tokens_total");
    printf("disconnect: the generation stopped after %lld of %d tokens, %.3f s after the client left\n", gen - gen0,
           N_CTX - 64, ar_now() - t1);
    CHECK(cancelled >= cancelled0 + 1, "disconnect: cancelled_total %lld, want > %lld", cancelled, cancelled0);
    CHECK(gen - gen0 < N_CTX - 64, "disconnect: the generation ran to the end (%lld tokens)", gen - gen0);
    CHECK(metric("arbor_queue_depth") == 0, "disconnect: queue not empty");
    CHECK(server_alive(), "disconnect: the server stopped answering");

    /* the next request is served normally */
    resp r;
    post("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"again\"}], \"max_tokens\": 2}", &r);
    CHECK(r.status == 200, "after disconnect: status %d", r.status);
    resp_free(&r);
}

static void test_metrics(void)
{
    resp r;
    request("GET", "/metrics", NULL, NULL, 0, &r);
    CHECK(r.status == 200 && strstr(r.head, "text/plain"), "metrics: status %d", r.status);
    CHECK(strstr(r.body, "arbor_requests_total{endpoint=\"/v1/chat/completions\",status=\"400\"}") != NULL,
          "metrics: no 400 count for chat completions");
    CHECK(strstr(r.body, "arbor_requests_total{endpoint=\"other\",status=\"404\"}") != NULL, "metrics: no 404 count");
    CHECK(strstr(r.body, "# TYPE arbor_queue_depth gauge") != NULL, "metrics: no queue depth");
    resp_free(&r);
}

/* ---- scripted output: tool calls, reasoning and stop strings end to end ------------------------- */

static const char SCRIPT[] =
    "I should call the tool.\n</think>\n\nLet me check.\n\n<tool_call>\n<function=get_weather>\n"
    "<parameter=city>\nParis\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>";

#define TOOLS_JSON                                                                                          \
    "\"tools\": [{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": "        \
    "{\"type\": \"object\", \"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}, " \
    "\"required\": [\"city\"]}}}]"

static json_t *chat_json(const char *body, resp *r)
{
    post("/v1/chat/completions", body, r);
    CHECK(r->status == 200, "scripted: status %d: %.300s", r->status, r->body);
    return json_loads(r->body, 0, NULL);
}

static const char *str_at(json_t *obj, const char *k1, const char *k2)
{
    json_t *v = json_object_get(obj, k1);
    if (k2) v = json_object_get(v, k2);
    return json_is_string(v) ? json_string_value(v) : "(none)";
}

static void test_scripted(void)
{
    resp r;
    /* tools offered: reasoning, content and one tool call */
    json_t *root = chat_json("{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}], " TOOLS_JSON "}", &r);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *msg = json_object_get(choice, "message");
    CHECK(!strcmp(str_at(choice, "finish_reason", NULL), "tool_calls"), "scripted: finish %s", str_at(choice, "finish_reason", NULL));
    CHECK(!strcmp(str_at(msg, "content", NULL), "Let me check."), "scripted: content '%s'", str_at(msg, "content", NULL));
    CHECK(!strcmp(str_at(msg, "reasoning_content", NULL), "I should call the tool."), "scripted: reasoning '%s'",
          str_at(msg, "reasoning_content", NULL));
    json_t *call = json_array_get(json_object_get(msg, "tool_calls"), 0);
    CHECK(json_array_size(json_object_get(msg, "tool_calls")) == 1, "scripted: %zu tool calls",
          json_array_size(json_object_get(msg, "tool_calls")));
    CHECK(!strncmp(str_at(call, "id", NULL), "call_", 5) && !strcmp(str_at(call, "type", NULL), "function") &&
              !strcmp(str_at(call, "function", "name"), "get_weather"),
          "scripted: tool call %.300s", r.body);
    json_t *args = json_loads(str_at(call, "function", "arguments"), 0, NULL);
    CHECK(args && !strcmp(str_at(args, "city", NULL), "Paris") && json_integer_value(json_object_get(args, "days")) == 3,
          "scripted: arguments %s", str_at(call, "function", "arguments"));
    json_t *usage = json_object_get(root, "usage");
    CHECK(json_integer_value(json_object_get(usage, "completion_tokens")) == (json_int_t)((sizeof SCRIPT - 1 + 2) / 3),
          "scripted: completion_tokens %lld", (long long)json_integer_value(json_object_get(usage, "completion_tokens")));
    long long rt = json_integer_value(json_object_get(json_object_get(usage, "completion_tokens_details"), "reasoning_tokens"));
    CHECK(rt >= 8 && rt <= 12, "scripted: reasoning_tokens %lld (the reasoning is 33 bytes = 11 pieces)", rt);
    json_decref(args);
    json_decref(root);
    resp_free(&r);

    /* the same, streamed: deltas reassemble to the same message */
    post("/v1/chat/completions", "{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}], \"stream\": true, " TOOLS_JSON "}", &r);
    sbuf content = { 0 }, reasoning = { 0 }, arguments = { 0 };
    char id[64] = "", name[64] = "", finish[32] = "";
    int n_id = 0, n_name = 0;
    for (char *p = r.body; (p = strstr(p, "data: {")); p += 6) {
        char *end = strstr(p, "\n\n");
        if (!end) break;
        json_t *c = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        json_t *ch = json_array_get(json_object_get(c, "choices"), 0);
        json_t *d = json_object_get(ch, "delta");
        if (json_is_string(json_object_get(d, "content"))) sb_puts(&content, json_string_value(json_object_get(d, "content")));
        if (json_is_string(json_object_get(d, "reasoning_content")))
            sb_puts(&reasoning, json_string_value(json_object_get(d, "reasoning_content")));
        json_t *tc = json_array_get(json_object_get(d, "tool_calls"), 0);
        if (tc) {
            CHECK(json_integer_value(json_object_get(tc, "index")) == 0, "scripted stream: tool call index");
            if (json_object_get(tc, "id")) { snprintf(id, sizeof id, "%s", str_at(tc, "id", NULL)); n_id++; }
            if (json_object_get(json_object_get(tc, "function"), "name")) {
                snprintf(name, sizeof name, "%s", str_at(tc, "function", "name"));
                n_name++;
            }
            if (json_is_string(json_object_get(json_object_get(tc, "function"), "arguments")))
                sb_puts(&arguments, str_at(tc, "function", "arguments"));
        }
        if (json_is_string(json_object_get(ch, "finish_reason"))) snprintf(finish, sizeof finish, "%s", str_at(ch, "finish_reason", NULL));
        json_decref(c);
    }
    CHECK(content.p && !strcmp(content.p, "Let me check."), "scripted stream: content '%s'", content.p ? content.p : "");
    CHECK(reasoning.p && !strcmp(reasoning.p, "I should call the tool."), "scripted stream: reasoning '%s'",
          reasoning.p ? reasoning.p : "");
    CHECK(n_id == 1 && n_name == 1 && !strncmp(id, "call_", 5) && !strcmp(name, "get_weather"),
          "scripted stream: id '%s' x%d, name '%s' x%d", id, n_id, name, n_name);
    args = arguments.p ? json_loads(arguments.p, 0, NULL) : NULL;
    CHECK(args && !strcmp(str_at(args, "city", NULL), "Paris") && json_integer_value(json_object_get(args, "days")) == 3,
          "scripted stream: arguments '%s'", arguments.p ? arguments.p : "");
    CHECK(!strcmp(finish, "tool_calls"), "scripted stream: finish '%s'", finish);
    CHECK(strstr(r.body, "data: [DONE]\n\n") != NULL, "scripted stream: no [DONE]");
    json_decref(args);
    sb_free(&content);
    sb_free(&reasoning);
    sb_free(&arguments);
    resp_free(&r);

    /* no tools (or tool_choice none): the call stays text */
    const char *no_tools[] = {
        "{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}]}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}], \"tool_choice\": \"none\", " TOOLS_JSON "}",
    };
    for (int i = 0; i < 2; i++) {
        root = chat_json(no_tools[i], &r);
        choice = json_array_get(json_object_get(root, "choices"), 0);
        msg = json_object_get(choice, "message");
        CHECK(!strcmp(str_at(choice, "finish_reason", NULL), "stop") && !json_object_get(msg, "tool_calls") &&
                  strstr(str_at(msg, "content", NULL), "<function=get_weather>"),
              "scripted without tools %d: %.300s", i, r.body);
        json_decref(root);
        resp_free(&r);
    }

    /* a stop string split across pieces ends the text before it; no tool call follows */
    root = chat_json("{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}], \"stop\": [\"zzz\", \"check\"], " TOOLS_JSON "}", &r);
    choice = json_array_get(json_object_get(root, "choices"), 0);
    msg = json_object_get(choice, "message");
    CHECK(!strcmp(str_at(choice, "finish_reason", NULL), "stop") && !strcmp(str_at(msg, "content", NULL), "Let me ") &&
              !json_object_get(msg, "tool_calls"),
          "scripted stop: %.300s", r.body);
    json_decref(root);
    resp_free(&r);

    /* max_tokens cuts inside the reasoning */
    root = chat_json("{\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}], \"max_tokens\": 4, " TOOLS_JSON "}", &r);
    choice = json_array_get(json_object_get(root, "choices"), 0);
    msg = json_object_get(choice, "message");
    CHECK(!strcmp(str_at(choice, "finish_reason", NULL), "length") &&
              json_integer_value(json_object_get(json_object_get(root, "usage"), "completion_tokens")) == 4 &&
              !strcmp(str_at(msg, "reasoning_content", NULL), "I should cal"),
          "scripted length: %.300s", r.body);
    json_decref(root);
    resp_free(&r);
}

/* ---- Anthropic messages and OpenAI responses: errors in their own shapes ------------------------ */

/* The response is an Anthropic error {"type":"error","error":{"type","message"}} with this status and
 * error type, whose message mentions `mention` (the field) when given; the server still answers. */
static void expect_anthropic_error(const char *name, resp *r, int status, const char *type, const char *mention)
{
    CHECK(r->status == status, "%s: status %d, want %d (body %.200s)", name, r->status, status, r->body);
    json_t *root = json_loads(r->body, 0, NULL);
    json_t *err = json_object_get(root, "error");
    const char *t = json_string_value(json_object_get(root, "type"));
    const char *et = json_string_value(json_object_get(err, "type"));
    const char *msg = json_string_value(json_object_get(err, "message"));
    CHECK(t && !strcmp(t, "error") && et && msg && *msg && json_object_size(root) == 2,
          "%s: not Anthropic's error shape: %.300s", name, r->body);
    CHECK(et && !strcmp(et, type), "%s: error type %s, want %s", name, et ? et : "(none)", type);
    if (mention) CHECK(msg && strstr(msg, mention), "%s: the message does not name '%s': %s", name, mention, msg ? msg : "");
    CHECK(strstr(r->head, "application/json") != NULL, "%s: content type is not JSON", name);
    json_decref(root);
    CHECK(server_alive(), "%s: the server stopped answering afterwards", name);
    resp_free(r);
}

#define HI "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]"

static void bad_messages(const char *name, const char *body, const char *mention)
{
    resp r;
    post("/v1/messages", body, &r);
    expect_anthropic_error(name, &r, 400, "invalid_request_error", mention);
}

static void test_bad_messages(void)
{
    resp r;
    post("/v1/messages", "{\"max_tokens\": 5, \"messages\": [", &r);
    expect_anthropic_error("messages: malformed JSON", &r, 400, "invalid_request_error", "not valid JSON");
    const char bad_utf8[] = "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"caf\xC3\x28\"}]}";
    post("/v1/messages", bad_utf8, &r);
    expect_anthropic_error("messages: invalid UTF-8", &r, 400, "invalid_request_error", "UTF-8");

    bad_messages("messages: no max_tokens", "{" HI "}", "'max_tokens' is required");
    bad_messages("messages: max_tokens 0", "{\"max_tokens\": 0, " HI "}", "'max_tokens'");
    bad_messages("messages: max_tokens a string", "{\"max_tokens\": \"5\", " HI "}", "'max_tokens'");
    bad_messages("messages: no messages", "{\"max_tokens\": 5}", "'messages' is required");
    bad_messages("messages: empty messages", "{\"max_tokens\": 5, \"messages\": []}", "'messages'");
    bad_messages("messages: messages a string", "{\"max_tokens\": 5, \"messages\": \"hi\"}", "'messages'");
    bad_messages("messages: system role in messages",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"system\", \"content\": \"x\"}]}", "messages[0].role");
    bad_messages("messages: no content", "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\"}]}", "messages[0].content");
    bad_messages("messages: content a number", "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": 5}]}",
                 "messages[0].content");
    bad_messages("messages: block without type",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"text\": \"x\"}]}]}",
                 "messages[0].content[0].type");
    bad_messages("messages: text block without text",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\"}]}]}",
                 "messages[0].content[0].text");
    bad_messages("messages: unknown block type",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"video\"}]}]}",
                 "messages[0].content[0].type");
    bad_messages("messages: image block",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\", \"source\": "
                 "{\"type\": \"base64\", \"media_type\": \"image/png\", \"data\": \"AAAA\"}}]}]}",
                 "image and document content is not supported");
    bad_messages("messages: tool_result without tool_use_id",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"tool_result\", \"content\": \"x\"}]}]}",
                 "messages[0].content[0].tool_use_id");
    bad_messages("messages: image inside a tool_result",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"tool_result\", \"tool_use_id\": \"t\", "
                 "\"content\": [{\"type\": \"image\", \"source\": {}}]}]}]}",
                 "messages[0].content[0].content[0].type");
    bad_messages("messages: is_error a string",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"tool_result\", \"tool_use_id\": \"t\", "
                 "\"is_error\": \"yes\"}]}]}",
                 "messages[0].content[0].is_error");
    bad_messages("messages: tool_use input a string",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": "
                 "[{\"type\": \"tool_use\", \"id\": \"t\", \"name\": \"f\", \"input\": \"{}\"}]}]}",
                 "messages[1].content[0].input");
    bad_messages("messages: tool_use without a name",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": "
                 "[{\"type\": \"tool_use\", \"id\": \"t\", \"input\": {}}]}]}",
                 "messages[1].content[0].name");
    bad_messages("messages: tool_use in a user message",
                 "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"tool_use\", \"id\": \"t\", "
                 "\"name\": \"f\", \"input\": {}}]}]}",
                 "messages[0].content[0].type");
    bad_messages("messages: system a number", "{\"max_tokens\": 5, \"system\": 5, " HI "}", "'system'");
    bad_messages("messages: system block not text",
                 "{\"max_tokens\": 5, \"system\": [{\"type\": \"image\"}], " HI "}", "system[0].type");
    bad_messages("messages: tools an object", "{\"max_tokens\": 5, \"tools\": {}, " HI "}", "'tools'");
    bad_messages("messages: tool without a name", "{\"max_tokens\": 5, \"tools\": [{\"input_schema\": {}}], " HI "}",
                 "tools[0].name");
    bad_messages("messages: input_schema a string",
                 "{\"max_tokens\": 5, \"tools\": [{\"name\": \"f\", \"input_schema\": \"x\"}], " HI "}", "tools[0].input_schema");
    bad_messages("messages: tool_choice a string", "{\"max_tokens\": 5, \"tool_choice\": \"auto\", " HI "}", "'tool_choice'");
    bad_messages("messages: tool_choice of an unknown type", "{\"max_tokens\": 5, \"tool_choice\": {\"type\": \"some\"}, " HI "}",
                 "tool_choice.type");
    bad_messages("messages: tool_choice names an unknown tool",
                 "{\"max_tokens\": 5, \"tools\": [{\"name\": \"f\", \"input_schema\": {\"type\": \"object\"}}], "
                 "\"tool_choice\": {\"type\": \"tool\", \"name\": \"g\"}, " HI "}",
                 "tool_choice names 'g'");
    bad_messages("messages: tool_choice any without tools", "{\"max_tokens\": 5, \"tool_choice\": {\"type\": \"any\"}, " HI "}",
                 "'tools' is empty");
    bad_messages("messages: thinking of an unknown type", "{\"max_tokens\": 5, \"thinking\": {\"type\": \"maybe\"}, " HI "}",
                 "thinking.type");
    bad_messages("messages: thinking budget negative",
                 "{\"max_tokens\": 5, \"thinking\": {\"type\": \"enabled\", \"budget_tokens\": -1}, " HI "}",
                 "thinking.budget_tokens");
    bad_messages("messages: stop_sequences a number", "{\"max_tokens\": 5, \"stop_sequences\": 5, " HI "}", "stop_sequences");
    bad_messages("messages: temperature a string", "{\"max_tokens\": 5, \"temperature\": \"hot\", " HI "}", "'temperature'");
    bad_messages("messages: top_k a string", "{\"max_tokens\": 5, \"top_k\": \"x\", " HI "}", "'top_k'");
    bad_messages("messages: stream a string", "{\"max_tokens\": 5, \"stream\": \"yes\", " HI "}", "'stream'");
    bad_messages("messages: metadata a string", "{\"max_tokens\": 5, \"metadata\": \"x\", " HI "}", "'metadata'");

    /* over the context */
    sbuf b = { 0 };
    sb_puts(&b, "{\"max_tokens\": 5, \"messages\": [{\"role\": \"user\", \"content\": \"");
    for (int i = 0; i < 3 * N_CTX; i++) sb_printf(&b, "w%d ", i);
    sb_puts(&b, "\"}]}");
    post("/v1/messages", b.p, &r);
    sb_free(&b);
    expect_anthropic_error("messages: prompt over the context", &r, 400, "invalid_request_error", "maximum context length");

    /* routes, methods and keys answer in Anthropic's shape under /v1/messages */
    request("GET", "/v1/messages", NULL, NULL, 0, &r);
    expect_anthropic_error("messages: wrong method", &r, 405, "invalid_request_error", NULL);
    request("POST", "/v1/messages/batches", NULL, "{}", 2, &r);
    expect_anthropic_error("messages: unknown sub-route", &r, 404, "not_found_error", NULL);
    request("POST", "/v1/messages", "x-api-key: wrong\r\nanthropic-version: 2023-06-01\r\n", "{}", 2, &r);
    expect_anthropic_error("messages: wrong x-api-key", &r, 401, "authentication_error", NULL);
    request("POST", "/v1/messages/count_tokens", "", "{}", 2, &r);
    expect_anthropic_error("count_tokens: no key", &r, 401, "authentication_error", NULL);
    post("/v1/messages/count_tokens", "{\"model\": \"m\"}", &r);
    expect_anthropic_error("count_tokens: no messages", &r, 400, "invalid_request_error", "'messages' is required");
    post("/v1/messages/count_tokens", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"image\"}]}]}", &r);
    expect_anthropic_error("count_tokens: image", &r, 400, "invalid_request_error", "messages[0].content[0].type");
}

static void bad_responses(const char *name, const char *body, const char *param)
{
    resp r;
    post("/v1/responses", body, &r);
    expect_error(name, &r, 400, param, NULL);
}

#define IN "\"input\": \"hi\""

static void test_bad_responses(void)
{
    resp r;
    post("/v1/responses", "{\"input\": [", &r);
    expect_error("responses: malformed JSON", &r, 400, NULL, "invalid_json");
    bad_responses("responses: no input", "{\"model\": \"m\"}", "input");
    bad_responses("responses: input a number", "{\"input\": 5}", "input");
    bad_responses("responses: input empty", "{\"input\": []}", "input");
    bad_responses("responses: input of ignored items only", "{\"input\": [{\"type\": \"web_search_call\", \"id\": \"w\"}]}", "input");
    bad_responses("responses: item a string", "{\"input\": [\"hi\"]}", "input[0]");
    bad_responses("responses: message without a role", "{\"input\": [{\"type\": \"message\", \"content\": \"hi\"}]}", "input[0].role");
    bad_responses("responses: unknown role", "{\"input\": [{\"role\": \"wizard\", \"content\": \"hi\"}]}", "input[0].role");
    bad_responses("responses: content a number", "{\"input\": [{\"role\": \"user\", \"content\": 5}]}", "input[0].content");
    bad_responses("responses: input_image", "{\"input\": [{\"role\": \"user\", \"content\": [{\"type\": \"input_image\", \"image_url\": \"x\"}]}]}",
                  "input[0].content[0].type");
    bad_responses("responses: input_text without text", "{\"input\": [{\"role\": \"user\", \"content\": [{\"type\": \"input_text\"}]}]}",
                  "input[0].content[0].text");
    bad_responses("responses: function_call without a name",
                  "{\"input\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"type\": \"function_call\", \"call_id\": \"c\", \"arguments\": \"{}\"}]}",
                  "input[1].name");
    bad_responses("responses: function_call arguments not JSON",
                  "{\"input\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"type\": \"function_call\", \"call_id\": \"c\", \"name\": \"f\", "
                  "\"arguments\": \"{oops\"}]}",
                  "input[1].arguments");
    bad_responses("responses: function_call_output without call_id",
                  "{\"input\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"type\": \"function_call_output\", \"output\": \"x\"}]}",
                  "input[1].call_id");
    bad_responses("responses: function_call_output output a number",
                  "{\"input\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"type\": \"function_call_output\", \"call_id\": \"c\", \"output\": 5}]}",
                  "input[1].output");
    bad_responses("responses: reasoning summary a string",
                  "{\"input\": [{\"role\": \"user\", \"content\": \"hi\"}, {\"type\": \"reasoning\", \"summary\": \"x\"}]}", "input[1].summary");
    bad_responses("responses: item_reference", "{\"input\": [{\"type\": \"item_reference\", \"id\": \"msg_1\"}]}", "input[0].type");
    bad_responses("responses: previous_response_id", "{\"previous_response_id\": \"resp_1\", " IN "}", "previous_response_id");
    bad_responses("responses: conversation", "{\"conversation\": \"conv_1\", " IN "}", "conversation");
    bad_responses("responses: instructions a number", "{\"instructions\": 5, " IN "}", "instructions");
    bad_responses("responses: max_output_tokens 0", "{\"max_output_tokens\": 0, " IN "}", "max_output_tokens");
    bad_responses("responses: temperature a string", "{\"temperature\": \"hot\", " IN "}", "temperature");
    bad_responses("responses: top_p out of range", "{\"top_p\": 2, " IN "}", "top_p");
    bad_responses("responses: stream a string", "{\"stream\": \"yes\", " IN "}", "stream");
    bad_responses("responses: reasoning a string", "{\"reasoning\": \"high\", " IN "}", "reasoning");
    bad_responses("responses: text a string", "{\"text\": \"x\", " IN "}", "text");
    bad_responses("responses: tools an object", "{\"tools\": {}, " IN "}", "tools");
    bad_responses("responses: tool without a type", "{\"tools\": [{\"name\": \"f\"}], " IN "}", "tools[0].type");
    bad_responses("responses: function tool without a name", "{\"tools\": [{\"type\": \"function\"}], " IN "}", "tools[0].name");
    bad_responses("responses: parameters a string", "{\"tools\": [{\"type\": \"function\", \"name\": \"f\", \"parameters\": \"x\"}], " IN "}",
                  "tools[0].parameters");
    bad_responses("responses: tool_choice a number", "{\"tool_choice\": 5, " IN "}", "tool_choice");
    bad_responses("responses: tool_choice unknown string", "{\"tool_choice\": \"sometimes\", " IN "}", "tool_choice");
    bad_responses("responses: tool_choice required without tools", "{\"tool_choice\": \"required\", " IN "}", "tool_choice");
    bad_responses("responses: tool_choice names an unknown function",
                  "{\"tools\": [{\"type\": \"function\", \"name\": \"f\"}], \"tool_choice\": {\"type\": \"function\", \"name\": \"g\"}, " IN "}",
                  "tool_choice.name");

    sbuf b = { 0 };
    sb_puts(&b, "{\"input\": \"");
    for (int i = 0; i < 3 * N_CTX; i++) sb_printf(&b, "w%d ", i);
    sb_puts(&b, "\"}");
    post("/v1/responses", b.p, &r);
    sb_free(&b);
    expect_error("responses: prompt over the context", &r, 400, "messages", "context_length_exceeded");
    post("/v1/responses/input_tokens", "{\"input\": 5}", &r);
    expect_error("responses input_tokens: input a number", &r, 400, "input", NULL);
    request("POST", "/v1/responses/abc", NULL, "{}", 2, &r);
    expect_error("responses: unknown sub-route", &r, 404, NULL, "unknown_url");
}

/* ---- SSE frames --------------------------------------------------------------------------------- */

typedef struct sse_frame {
    char   event[64];   /* "" when the frame has no event line */
    json_t *data;       /* NULL when there is none or it is not JSON */
} sse_frame;

/* Split a stream body into frames (comments skipped). Returns the count; *out malloc'd. */
static int sse_parse(const char *body, sse_frame **out)
{
    int n = 0, cap = 16;
    sse_frame *f = malloc((size_t)cap * sizeof *f);
    const char *p = body;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char *frame = strndup(p, len);
        p += len + (end ? 2 : 0);
        sse_frame fr = { .event = "" };
        bool any = false;
        for (char *line = strtok(frame, "\n"); line; line = strtok(NULL, "\n")) {
            if (!strncmp(line, "event: ", 7)) { snprintf(fr.event, sizeof fr.event, "%s", line + 7); any = true; }
            else if (!strncmp(line, "data: ", 6)) { fr.data = json_loads(line + 6, 0, NULL); any = true; }
        }
        free(frame);
        if (!any) continue;
        if (n == cap) f = realloc(f, (size_t)(cap *= 2) * sizeof *f);
        f[n++] = fr;
    }
    *out = f;
    return n;
}

static void sse_free(sse_frame *f, int n)
{
    for (int i = 0; i < n; i++) json_decref(f[i].data);
    free(f);
}

static const char *jstr(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : "";
}

static long long jint(json_t *obj, const char *key) { return json_integer_value(json_object_get(obj, key)); }

/* Every frame's event line equals its data's "type" (both dialects send typed frames). */
static bool typed_frames(const sse_frame *f, int n, const char *name)
{
    bool ok = n > 0;
    for (int i = 0; i < n; i++) {
        if (!f[i].data || strcmp(f[i].event, jstr(f[i].data, "type"))) {
            CHECK(0, "%s: frame %d: event '%s' with data type '%s'", name, i, f[i].event, jstr(f[i].data, "type"));
            ok = false;
        }
    }
    return ok;
}

/* ---- Anthropic stream reassembly ---------------------------------------------------------------- */

typedef struct ant_msg {
    json_t *start;       /* message_start's message */
    json_t *content;     /* blocks rebuilt from the deltas */
    char stop_reason[32], stop_sequence[64];
    long long output_tokens, input_tokens, cache_read;   /* message_delta's final usage */
    int pings, errors;
    bool ordered;        /* start, blocks (start, deltas, stop), message_delta, message_stop */
} ant_msg;

static void ant_reassemble(const char *name, const char *body, ant_msg *m)
{
    *m = (ant_msg){ .content = json_array(), .ordered = true };
    sse_frame *f;
    int n = sse_parse(body, &f);
    typed_frames(f, n, name);
    int open = -1, phase = 0;   /* 0 before message_start, 1 blocks, 2 after message_delta, 3 stopped */
    sbuf json_buf = { 0 };
    for (int i = 0; i < n; i++) {
        const char *t = f[i].event;
        json_t *d = f[i].data;
        if (!strcmp(t, "ping")) { m->pings++; continue; }
        if (!strcmp(t, "error")) { m->errors++; continue; }
        if (!strcmp(t, "message_start")) {
            if (phase != 0) m->ordered = false;
            phase = 1;
            m->start = json_incref(json_object_get(d, "message"));
        } else if (!strcmp(t, "content_block_start")) {
            if (phase != 1 || open != -1 || jint(d, "index") != (long long)json_array_size(m->content)) m->ordered = false;
            open = (int)jint(d, "index");
            json_array_append(m->content, json_object_get(d, "content_block"));
            sb_clear(&json_buf);
        } else if (!strcmp(t, "content_block_delta")) {
            json_t *blk = json_array_get(m->content, (size_t)jint(d, "index")), *delta = json_object_get(d, "delta");
            if (phase != 1 || jint(d, "index") != open || !blk) { m->ordered = false; continue; }
            const char *dt = jstr(delta, "type");
            const char *key = !strcmp(dt, "text_delta") ? "text" : !strcmp(dt, "thinking_delta") ? "thinking" : NULL;
            if (key) {
                sbuf s = { 0 };
                sb_puts(&s, jstr(blk, key));
                sb_puts(&s, jstr(delta, key));
                json_object_set_new(blk, key, json_string(s.p ? s.p : ""));
                sb_free(&s);
            } else if (!strcmp(dt, "input_json_delta")) {
                sb_puts(&json_buf, jstr(delta, "partial_json"));
            } else {
                m->ordered = false;
            }
        } else if (!strcmp(t, "content_block_stop")) {
            if (phase != 1 || jint(d, "index") != open) m->ordered = false;
            json_t *blk = json_array_get(m->content, (size_t)open);
            if (blk && !strcmp(jstr(blk, "type"), "tool_use"))
                json_object_set_new(blk, "input", json_buf.p ? json_loads(json_buf.p, 0, NULL) : json_object());
            open = -1;
        } else if (!strcmp(t, "message_delta")) {
            if (phase != 1 || open != -1) m->ordered = false;
            phase = 2;
            json_t *delta = json_object_get(d, "delta");
            snprintf(m->stop_reason, sizeof m->stop_reason, "%s", jstr(delta, "stop_reason"));
            snprintf(m->stop_sequence, sizeof m->stop_sequence, "%s", jstr(delta, "stop_sequence"));
            json_t *u = json_object_get(d, "usage");
            m->output_tokens = jint(u, "output_tokens");
            m->input_tokens = jint(u, "input_tokens");
            m->cache_read = jint(u, "cache_read_input_tokens");
        } else if (!strcmp(t, "message_stop")) {
            if (phase != 2) m->ordered = false;
            phase = 3;
        } else {
            m->ordered = false;
        }
    }
    if (phase != 3) m->ordered = false;
    sb_free(&json_buf);
    sse_free(f, n);
}

static void ant_free(ant_msg *m) { json_decref(m->start); json_decref(m->content); }

/* ---- Responses stream reassembly ---------------------------------------------------------------- */

typedef struct rs_stream {
    json_t *completed;   /* the terminal event's response (response.completed or response.incomplete) */
    char terminal[64];   /* which of the two */
    json_t *items;       /* output_item.done items, by output_index */
    sbuf text, reasoning, args;
    char args_done[256];
    int n_events;
    bool seq_ok, ids_ok, ordered;
} rs_stream;

static void rs_reassemble(const char *name, const char *body, rs_stream *s)
{
    *s = (rs_stream){ .items = json_array(), .seq_ok = true, .ids_ok = true, .ordered = true };
    sse_frame *f;
    int n = sse_parse(body, &f);
    typed_frames(f, n, name);
    s->n_events = n;
    char open_id[64] = "";
    for (int i = 0; i < n; i++) {
        json_t *d = f[i].data;
        const char *t = f[i].event;
        if (jint(d, "sequence_number") != i) s->seq_ok = false;
        if ((i == 0) != !strcmp(t, "response.created") || (i == 1) != !strcmp(t, "response.in_progress") ||
            (i == n - 1) != (!strcmp(t, "response.completed") || !strcmp(t, "response.incomplete")))
            s->ordered = false;
        const char *item_id = jstr(d, "item_id");
        if (*item_id && strcmp(item_id, open_id)) s->ids_ok = false;
        if (!strcmp(t, "response.output_item.added")) {
            if (*open_id || jint(d, "output_index") != (long long)json_array_size(s->items)) s->ordered = false;
            snprintf(open_id, sizeof open_id, "%s", jstr(json_object_get(d, "item"), "id"));
        } else if (!strcmp(t, "response.output_item.done")) {
            if (strcmp(jstr(json_object_get(d, "item"), "id"), open_id)) s->ids_ok = false;
            json_array_append(s->items, json_object_get(d, "item"));
            open_id[0] = 0;
        } else if (!strcmp(t, "response.output_text.delta")) {
            sb_puts(&s->text, jstr(d, "delta"));
        } else if (!strcmp(t, "response.reasoning_text.delta")) {
            sb_puts(&s->reasoning, jstr(d, "delta"));
        } else if (!strcmp(t, "response.function_call_arguments.delta")) {
            sb_puts(&s->args, jstr(d, "delta"));
        } else if (!strcmp(t, "response.function_call_arguments.done")) {
            snprintf(s->args_done, sizeof s->args_done, "%s", jstr(d, "arguments"));
        } else if (!strcmp(t, "response.completed") || !strcmp(t, "response.incomplete")) {
            s->completed = json_incref(json_object_get(d, "response"));
            snprintf(s->terminal, sizeof s->terminal, "%s", t);
        }
    }
    if (*open_id) s->ordered = false;
    sse_free(f, n);
}

static void rs_free(rs_stream *s)
{
    json_decref(s->completed);
    json_decref(s->items);
    sb_free(&s->text);
    sb_free(&s->reasoning);
    sb_free(&s->args);
}

/* ---- Anthropic and Responses on the random-weight model ----------------------------------------- */

static void test_messages_model(void)
{
    resp r;
    const char *body = "{\"model\": \"claude-x\", \"max_tokens\": 6, \"temperature\": 0, \"system\": [{\"type\": \"text\", "
                       "\"text\": \"x-anthropic-billing-header: cc_version=1; cch=abc\"}, {\"type\": \"text\", \"text\": \"Be brief.\"}], "
                       "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}";
    post("/v1/messages", body, &r);
    CHECK(r.status == 200, "messages: status %d: %.300s", r.status, r.body);
    json_t *m = json_loads(r.body, 0, NULL);
    json_t *usage = json_object_get(m, "usage");
    CHECK(!strncmp(jstr(m, "id"), "msg_", 4) && !strcmp(jstr(m, "type"), "message") && !strcmp(jstr(m, "role"), "assistant") &&
              !strcmp(jstr(m, "model"), "claude-x") && !strcmp(jstr(m, "stop_reason"), "max_tokens") &&
              json_is_null(json_object_get(m, "stop_sequence")) && jint(usage, "output_tokens") == 6,
          "messages: %.400s", r.body);
    /* the prompt = input_tokens + cache_read_input_tokens (a request before may have cached part of it) */
    long long in = jint(usage, "input_tokens") + jint(usage, "cache_read_input_tokens");
    CHECK(jint(usage, "cache_creation_input_tokens") == 0 && in > 0, "messages usage: %.300s", r.body);
    json_decref(m);
    resp_free(&r);

    /* count_tokens: same body without max_tokens; the billing-header block is not in the prompt */
    post("/v1/messages/count_tokens", "{\"system\": \"Be brief.\", \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &r);
    json_t *c = json_loads(r.body, 0, NULL);
    CHECK(r.status == 200 && jint(c, "input_tokens") == in && json_object_size(c) == 1,
          "count_tokens: %d %.200s (want input_tokens %lld)", r.status, r.body, in);
    json_decref(c);
    resp_free(&r);
    /* empty text and thinking blocks (the fuzzer's first find: strdup of an empty buffer) */
    post("/v1/messages/count_tokens", "{\"messages\": [{\"role\": \"user\", \"content\": [{\"type\": \"text\", \"text\": \"\"}]}, "
                                      "{\"role\": \"assistant\", \"content\": [{\"type\": \"thinking\", \"thinking\": \"\"}, "
                                      "{\"type\": \"text\", \"text\": \"\"}]}, {\"role\": \"user\", \"content\": \"x\"}], "
                                      "\"system\": [{\"type\": \"text\", \"text\": \"\"}]}", &r);
    CHECK(r.status == 200 && strstr(r.body, "\"input_tokens\":"), "count_tokens with empty blocks: %d %.200s", r.status, r.body);
    resp_free(&r);

    /* streamed: the same message, event by event */
    post("/v1/messages", "{\"model\": \"claude-x\", \"max_tokens\": 6, \"temperature\": 0, \"stream\": true, \"system\": \"Be brief.\", "
                         "\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}", &r);
    CHECK(r.status == 200 && strstr(r.head, "text/event-stream"), "messages stream: %d %.200s", r.status, r.head);
    ant_msg am;
    ant_reassemble("messages stream", r.body, &am);
    CHECK(am.ordered && am.pings >= 1 && am.errors == 0, "messages stream: ordered %d, pings %d, errors %d", am.ordered, am.pings,
          am.errors);
    CHECK(am.start && jint(json_object_get(am.start, "usage"), "input_tokens") == in &&
              json_array_size(json_object_get(am.start, "content")) == 0,
          "messages stream: message_start usage");
    CHECK(!strcmp(am.stop_reason, "max_tokens") && am.output_tokens == 6, "messages stream: stop %s, output_tokens %lld",
          am.stop_reason, am.output_tokens);
    CHECK(am.input_tokens + am.cache_read == in, "messages stream: final usage input %lld + cache read %lld, want %lld",
          am.input_tokens, am.cache_read, in);
    ant_free(&am);
    resp_free(&r);
}

static void test_responses_model(void)
{
    resp r;
    post("/v1/responses", "{\"model\": \"gpt-x\", \"input\": \"hi\", \"instructions\": \"Be brief.\", \"max_output_tokens\": 5, "
                          "\"temperature\": 0, \"store\": false, \"include\": [], \"prompt_cache_key\": \"k\"}", &r);
    CHECK(r.status == 200, "responses: status %d: %.300s", r.status, r.body);
    json_t *o = json_loads(r.body, 0, NULL);
    json_t *usage = json_object_get(o, "usage");
    CHECK(!strncmp(jstr(o, "id"), "resp_", 5) && !strcmp(jstr(o, "object"), "response") && !strcmp(jstr(o, "model"), "gpt-x") &&
              !strcmp(jstr(o, "status"), "incomplete") &&
              !strcmp(jstr(json_object_get(o, "incomplete_details"), "reason"), "max_output_tokens") &&
              !strcmp(jstr(o, "instructions"), "Be brief.") && jint(usage, "output_tokens") == 5 &&
              jint(usage, "total_tokens") == jint(usage, "input_tokens") + 5 && json_array_size(json_object_get(o, "output")) >= 1,
          "responses: %.400s", r.body);
    long long in = jint(usage, "input_tokens");
    json_decref(o);
    resp_free(&r);

    post("/v1/responses/input_tokens", "{\"input\": \"hi\", \"instructions\": \"Be brief.\"}", &r);
    o = json_loads(r.body, 0, NULL);
    CHECK(r.status == 200 && jint(o, "input_tokens") == in && !strcmp(jstr(o, "object"), "response.input_tokens"),
          "responses input_tokens: %d %.200s (want %lld)", r.status, r.body, in);
    json_decref(o);
    resp_free(&r);

    /* greedy: a sampled end-of-generation token at the fifth step would rightly end the stream
     * "completed" (it did once in CI, at the default temperature) */
    post("/v1/responses",
         "{\"input\": \"hi\", \"max_output_tokens\": 5, \"temperature\": 0, \"stream\": true, \"reasoning\": {\"effort\": \"none\"}}",
         &r);
    CHECK(r.status == 200 && strstr(r.head, "text/event-stream"), "responses stream: %d", r.status);
    rs_stream s;
    rs_reassemble("responses stream", r.body, &s);
    json_t *out0 = json_array_get(json_object_get(s.completed, "output"), 0);
    json_t *part = json_array_get(json_object_get(out0, "content"), 0);
    CHECK(s.seq_ok && s.ids_ok && s.ordered && s.completed, "responses stream: seq %d, ids %d, ordered %d", s.seq_ok, s.ids_ok,
          s.ordered);
    CHECK(!strcmp(jstr(out0, "type"), "message") && !strcmp(jstr(part, "text"), s.text.p ? s.text.p : "") &&
              jint(json_object_get(s.completed, "usage"), "output_tokens") == 5,
          "responses stream: final output %.300s", r.body);
    CHECK(!strcmp(s.terminal, "response.incomplete") && !strcmp(jstr(s.completed, "status"), "incomplete") &&
              !strcmp(jstr(json_object_get(s.completed, "incomplete_details"), "reason"), "max_output_tokens"),
          "responses stream cut by max_output_tokens: ends with %s, status %s", s.terminal, jstr(s.completed, "status"));
    rs_free(&s);
    resp_free(&r);
}

/* ---- tool_choice enforced (constrained decoding) on the random-weight model ---------------------- *
 * The model never writes a tool call by itself; with tool_choice required / named the constraint
 * (server/toolchoice.h) makes it. Tools without parameters make the whole call forced text, so the
 * answer must end with the call (finish_reason tool_calls / stop_reason tool_use) when parallel calls
 * are off; a tool with parameters gets random text as its value, which may run to max_tokens. */

#define TC_PING "{\"type\": \"function\", \"function\": {\"name\": \"ping\", \"description\": \"Is the server up?\", " \
                "\"parameters\": {\"type\": \"object\", \"properties\": {}}}}"
#define TC_TIME "{\"type\": \"function\", \"function\": {\"name\": \"get_time\", \"parameters\": {\"type\": \"object\", " \
                "\"properties\": {}}}}"
#define TC_WEATHER "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"parameters\": {\"type\": " \
                   "\"object\", \"properties\": {\"city\": {\"type\": \"string\"}}, \"required\": [\"city\"]}}}"
#define TC_TOOLS "\"tools\": [" TC_PING ", " TC_TIME "]"
#define TC_USER "\"messages\": [{\"role\": \"user\", \"content\": \"What time is it?\"}]"
#define NO_THINK "\"chat_template_kwargs\": {\"enable_thinking\": false}"

/* A chat answer with tool calls: each named one of names ("a|b|"), with a JSON object as arguments.
 * Returns the number of calls (-1: not an answer); finish and the first call's name are copied out. */
static int chat_calls(const char *label, const char *body, const char *names, char *finish, char *first, json_t **reasoning)
{
    resp r;
    post("/v1/chat/completions", body, &r);
    CHECK(r.status == 200, "%s: status %d: %.300s", label, r.status, r.body);
    json_t *root = json_loads(r.body, 0, NULL);
    json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
    json_t *calls = json_object_get(json_object_get(choice, "message"), "tool_calls");
    snprintf(finish, 32, "%s", jstr(choice, "finish_reason"));
    first[0] = 0;
    if (reasoning) *reasoning = json_incref(json_object_get(json_object_get(choice, "message"), "reasoning_content"));
    int n = root ? (int)json_array_size(calls) : -1;
    for (int i = 0; i < n; i++) {
        json_t *fn = json_object_get(json_array_get(calls, (size_t)i), "function");
        char want[80];
        snprintf(want, sizeof want, "%s|", jstr(fn, "name"));
        json_t *args = json_loads(jstr(fn, "arguments"), 0, NULL);
        CHECK(*jstr(fn, "name") && strstr(names, want) && json_is_object(args), "%s: call %d: %.400s", label, i, r.body);
        json_decref(args);
        if (i == 0) snprintf(first, 64, "%s", jstr(fn, "name"));
    }
    if (n < 1) CHECK(0, "%s: no tool call: %.400s", label, r.body);
    json_decref(root);
    resp_free(&r);
    return n;
}

static void test_tool_choice(void)
{
    char finish[32], first[64];
    /* required, parallel calls off, thinking off: exactly one call, then the end */
    const char *required[] = {
        "{" TC_USER ", " TC_TOOLS ", \"tool_choice\": \"required\", \"parallel_tool_calls\": false, " NO_THINK
        ", \"max_tokens\": 64, \"temperature\": 0}",
        "{" TC_USER ", " TC_TOOLS ", \"tool_choice\": \"required\", \"parallel_tool_calls\": false, " NO_THINK
        ", \"max_tokens\": 64, \"temperature\": 1.0, \"seed\": 11}",
    };
    for (int i = 0; i < 2; i++) {
        int n = chat_calls(i ? "required, sampled" : "required, greedy", required[i], "ping|get_time|", finish, first, NULL);
        CHECK(n == 1 && !strcmp(finish, "tool_calls"), "required %d: %d calls, finish %s", i, n, finish);
    }
    /* thinking on: the reasoning runs, is closed for the call's sake (a quarter of max_tokens, at least
     * 64 tokens, is kept for it), then the call */
    json_t *reasoning = NULL;
    int n = chat_calls("required, thinking", "{" TC_USER ", " TC_TOOLS ", \"tool_choice\": \"required\", "
                       "\"parallel_tool_calls\": false, \"max_tokens\": 120, \"temperature\": 0}", "ping|get_time|",
                       finish, first, &reasoning);
    CHECK(n == 1 && !strcmp(finish, "tool_calls") && json_string_length(reasoning) > 0,
          "required, thinking: %d calls, finish %s, reasoning %zu bytes", n, finish, json_string_length(reasoning));
    json_decref(reasoning);
    /* named: only that function, even among tools that take parameters; parallel calls on: more calls
     * may follow, all of it */
    n = chat_calls("named get_time", "{" TC_USER ", \"tools\": [" TC_WEATHER ", " TC_PING ", " TC_TIME "], \"tool_choice\": "
                   "{\"type\": \"function\", \"function\": {\"name\": \"get_time\"}}, " NO_THINK ", \"max_tokens\": 100, "
                   "\"temperature\": 0}", "get_time|", finish, first, NULL);
    CHECK(n >= 1 && (!strcmp(finish, "tool_calls") || !strcmp(finish, "length")), "named get_time: %d calls, finish %s",
          n, finish);
    /* a named tool with a required parameter: its name, and the parameter's value as JSON (random text:
     * it may be cut by max_tokens, the arguments stay one JSON object) */
    n = chat_calls("named get_weather", "{" TC_USER ", \"tools\": [" TC_WEATHER ", " TC_PING "], \"tool_choice\": "
                   "{\"type\": \"function\", \"function\": {\"name\": \"get_weather\"}}, " NO_THINK ", \"max_tokens\": 40, "
                   "\"temperature\": 0}", "get_weather|", finish, first, NULL);
    CHECK(n == 1 && !strcmp(first, "get_weather"), "named get_weather: %d calls, first %s", n, first);

    /* streamed: the call in delta.tool_calls, then finish_reason tool_calls */
    resp r;
    post("/v1/chat/completions", "{" TC_USER ", " TC_TOOLS ", \"tool_choice\": {\"type\": \"function\", \"function\": "
         "{\"name\": \"ping\"}}, \"parallel_tool_calls\": false, " NO_THINK ", \"max_tokens\": 64, \"temperature\": 0, "
         "\"stream\": true}", &r);
    CHECK(r.status == 200 && strstr(r.body, "\"tool_calls\":[{\"index\":0,\"id\":\"call_") &&
              strstr(r.body, "\"name\":\"ping\"") && strstr(r.body, "\"finish_reason\":\"tool_calls\"") &&
              strstr(r.body, "data: [DONE]"),
          "required, streamed: %.600s", r.body);
    resp_free(&r);

    /* Anthropic: tool_choice any / tool, disable_parallel_tool_use */
    static const char *const ant[] = { "{\"type\": \"any\", \"disable_parallel_tool_use\": true}",
                                       "{\"type\": \"tool\", \"name\": \"get_time\", \"disable_parallel_tool_use\": true}" };
    for (int k = 0; k < 2; k++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "{\"max_tokens\": 64, \"temperature\": 0, %s\"messages\": [{\"role\": \"user\", \"content\": \"time?\"}], "
                 "\"tools\": [{\"name\": \"ping\", \"input_schema\": {\"type\": \"object\", \"properties\": {}}}, {\"name\": "
                 "\"get_time\", \"input_schema\": {\"type\": \"object\", \"properties\": {}}}], \"tool_choice\": %s}",
                 k ? "\"stream\": true, " : "", ant[k]);
        post("/v1/messages", body, &r);
        json_t *content = NULL, *m = NULL;
        char stop[32] = "";
        ant_msg am = { 0 };
        if (k) {
            ant_reassemble("tool_choice tool, streamed", r.body, &am);
            content = am.content;
            snprintf(stop, sizeof stop, "%s", am.stop_reason);
        } else {
            m = json_loads(r.body, 0, NULL);
            content = json_object_get(m, "content");
            snprintf(stop, sizeof stop, "%s", jstr(m, "stop_reason"));
        }
        json_t *last = json_array_get(content, json_array_size(content) - 1);
        int n_use = 0;
        for (size_t i = 0; i < json_array_size(content); i++) n_use += !strcmp(jstr(json_array_get(content, i), "type"), "tool_use");
        const char *name = jstr(last, "name");
        CHECK(r.status == 200 && !strcmp(stop, "tool_use") && n_use == 1 && !strcmp(jstr(last, "type"), "tool_use") &&
                  (k ? !strcmp(name, "get_time") : !strcmp(name, "ping") || !strcmp(name, "get_time")) &&
                  json_is_object(json_object_get(last, "input")) && !strncmp(jstr(last, "id"), "toolu_", 6),
              "messages, tool_choice %s: stop %s, %d tool_use: %.500s", ant[k], stop, n_use, r.body);
        if (k) ant_free(&am);
        json_decref(m);
        resp_free(&r);
    }

    /* Responses: required and a named function, streamed */
    post("/v1/responses", "{\"input\": \"time?\", \"tools\": [{\"type\": \"function\", \"name\": \"ping\", \"parameters\": "
         "{\"type\": \"object\", \"properties\": {}}}, {\"type\": \"function\", \"name\": \"get_time\", \"parameters\": "
         "{\"type\": \"object\", \"properties\": {}}}], \"tool_choice\": \"required\", \"parallel_tool_calls\": false, "
         "\"reasoning\": {\"effort\": \"none\"}, \"max_output_tokens\": 64, \"temperature\": 0}", &r);
    json_t *o = json_loads(r.body, 0, NULL);
    json_t *out = json_object_get(o, "output");
    json_t *fc = json_array_get(out, json_array_size(out) - 1);
    CHECK(r.status == 200 && !strcmp(jstr(o, "status"), "completed") && json_array_size(out) == 1 &&
              !strcmp(jstr(fc, "type"), "function_call") && !strcmp(jstr(fc, "status"), "completed") &&
              (!strcmp(jstr(fc, "name"), "ping") || !strcmp(jstr(fc, "name"), "get_time")) && !strcmp(jstr(fc, "arguments"), "{}"),
          "responses, tool_choice required: %.500s", r.body);
    json_decref(o);
    resp_free(&r);
    post("/v1/responses", "{\"input\": \"time?\", \"stream\": true, \"tools\": [{\"type\": \"function\", \"name\": \"ping\", "
         "\"parameters\": {\"type\": \"object\", \"properties\": {}}}, {\"type\": \"function\", \"name\": \"get_time\", "
         "\"parameters\": {\"type\": \"object\", \"properties\": {}}}], \"tool_choice\": {\"type\": \"function\", \"name\": "
         "\"get_time\"}, \"parallel_tool_calls\": false, \"max_output_tokens\": 120, \"temperature\": 0}", &r);
    rs_stream s;
    rs_reassemble("responses, named, streamed", r.body, &s);
    out = json_object_get(s.completed, "output");
    fc = json_array_get(out, json_array_size(out) - 1);
    CHECK(s.seq_ok && s.ids_ok && s.ordered && !strcmp(s.terminal, "response.completed") &&
              !strcmp(jstr(json_array_get(out, 0), "type"), "reasoning") && !strcmp(jstr(fc, "type"), "function_call") &&
              !strcmp(jstr(fc, "name"), "get_time") && !strcmp(s.args_done, "{}"),
          "responses, named, streamed: %s: %.600s", s.terminal, r.body);
    rs_free(&s);
    resp_free(&r);
}

/* Speculative serving (a drafter, a hook per request in the scheduler): the constraint rides on the
 * request's sampler through the chain walk, losslessly — with and without logprobs (their rows are the
 * verified nodes' target logits), and (main) the same as plain decoding (draft_block 1) at T = 0.
 * out: the answer. */
static void test_tool_choice_spec(char *out, size_t cap)
{
    const char *bodies[2] = {
        "{" TC_USER ", \"tools\": [" TC_WEATHER ", " TC_PING ", " TC_TIME "], \"tool_choice\": \"required\", "
        "\"parallel_tool_calls\": false, \"max_tokens\": 160, \"temperature\": 0}",
        "{" TC_USER ", \"tools\": [" TC_WEATHER ", " TC_PING ", " TC_TIME "], \"tool_choice\": \"required\", "
        "\"parallel_tool_calls\": false, \"max_tokens\": 160, \"temperature\": 0, \"logprobs\": true}",
    };
    char calls[2][2048];
    for (int k = 0; k < 2; k++) {
        resp r;
        post("/v1/chat/completions", bodies[k], &r);
        json_t *root = json_loads(r.body, 0, NULL);
        json_t *choice = json_array_get(json_object_get(root, "choices"), 0);
        json_t *msg = json_object_get(choice, "message");
        json_t *call = json_object_get(json_array_get(json_object_get(msg, "tool_calls"), 0), "function");
        const char *name = jstr(call, "name");
        json_t *args = json_loads(jstr(call, "arguments"), 0, NULL);
        CHECK(r.status == 200 && json_array_size(json_object_get(msg, "tool_calls")) == 1 &&
                  (!strcmp(name, "get_weather") || !strcmp(name, "ping") || !strcmp(name, "get_time")) && json_is_object(args),
              "speculative, tool_choice required (%s): %.600s", k ? "logprobs" : "plain", r.body);
        snprintf(calls[k], sizeof calls[k], "%s %s %s | %s | %lld", jstr(choice, "finish_reason"), name,
                 jstr(call, "arguments"), jstr(msg, "reasoning_content"),
                 jint(json_object_get(root, "usage"), "completion_tokens"));
        json_decref(args);
        json_decref(root);
        resp_free(&r);
    }
    CHECK(!strcmp(calls[0], calls[1]), "with and without logprobs, answers differ under the constraint:\n  %s\n  %s", calls[0],
          calls[1]);
    snprintf(out, cap, "%s", calls[0]);
    printf("speculative tool_choice: %.200s\n", calls[0]);
}

/* A queued Anthropic stream gets "event: ping" keep-alives; a queued Responses stream gets comments.
 * Both are dropped when their clients leave. */
static void test_dialect_keepalive(void)
{
    int a = open_stream(N_CTX - 64);   /* holds the worker */
    const char *bodies[2] = {
        "{\"max_tokens\": 4, \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
        "{\"max_output_tokens\": 4, \"stream\": true, \"input\": \"hi\"}",
    };
    const char *paths[2] = { "/v1/messages", "/v1/responses" };
    const char *want[2] = { "event: ping\ndata: {\"type\": \"ping\"}\n\n", ": keep-alive\n\n" };
    for (int k = 0; k < 2; k++) {
        int fd = dial();
        char head[512];
        int hn = snprintf(head, sizeof head,
                          "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nx-api-key: " KEY "\r\nContent-Type: application/json\r\n"
                          "Content-Length: %zu\r\n\r\n", paths[k], strlen(bodies[k]));
        send_all(fd, head, (size_t)hn);
        send_all(fd, bodies[k], strlen(bodies[k]));
        static char buf[16384];
        size_t got = 0;
        int seen = 0;
        double t0 = ar_now();
        /* the first Anthropic ping is sent with message_start: wait for a second one */
        int need = k == 0 ? 2 : 1;
        while (seen < need && ar_now() - t0 < 5) {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            if (poll(&p, 1, 200) <= 0) continue;
            ssize_t n = recv(fd, buf + got, sizeof buf - 1 - got, 0);
            if (n <= 0) break;
            got += (size_t)n;
            buf[got] = 0;
            seen = 0;
            for (const char *q = buf; (q = strstr(q, want[k])); q++) seen++;
        }
        CHECK(seen >= need, "%s keep-alive: %d of %d '%.12s' frames on a queued stream within 5 s", paths[k], seen, need, want[k]);
        CHECK(k != 0 || strstr(buf, "event: message_start\n"), "messages: no message_start before the job ran");
        CHECK(k != 1 || strstr(buf, "event: response.created\n"), "responses: no response.created before the job ran");
        close(fd);
    }
    close(a);
    double t0 = ar_now();
    while (ar_now() - t0 < 10 && (metric("arbor_queue_depth") != 0 || metric("arbor_requests_running") != 0)) usleep(20000);
    CHECK(metric("arbor_queue_depth") == 0 && metric("arbor_requests_running") == 0, "keep-alive: jobs left behind");
}

/* ---- scripted output through /v1/messages and /v1/responses ------------------------------------- */

#define ANT_TOOLS                                                                                            \
    "\"tools\": [{\"name\": \"get_weather\", \"description\": \"Weather\", \"input_schema\": {\"type\": \"object\", " \
    "\"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}]"
#define ANT_Q "\"max_tokens\": 200, \"thinking\": {\"type\": \"enabled\", \"budget_tokens\": 1024}, " \
              "\"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}]"

static bool weather_input(json_t *input)
{
    return json_is_object(input) && !strcmp(jstr(input, "city"), "Paris") && jint(input, "days") == 3 && json_object_size(input) == 2;
}

static void test_scripted_messages(void)
{
    const long long n_script = (long long)(sizeof SCRIPT - 1 + 2) / 3;
    resp r;
    post("/v1/messages", "{" ANT_Q ", " ANT_TOOLS "}", &r);
    json_t *m = json_loads(r.body, 0, NULL);
    json_t *content = json_object_get(m, "content");
    json_t *b0 = json_array_get(content, 0), *b1 = json_array_get(content, 1), *b2 = json_array_get(content, 2);
    CHECK(r.status == 200 && json_array_size(content) == 3, "scripted messages: %d %.400s", r.status, r.body);
    CHECK(!strcmp(jstr(b0, "type"), "thinking") && !strcmp(jstr(b0, "thinking"), "I should call the tool.") &&
              json_is_string(json_object_get(b0, "signature")),
          "scripted messages: thinking block %.300s", r.body);
    CHECK(!strcmp(jstr(b1, "type"), "text") && !strcmp(jstr(b1, "text"), "Let me check."), "scripted messages: text block %.300s", r.body);
    CHECK(!strcmp(jstr(b2, "type"), "tool_use") && !strncmp(jstr(b2, "id"), "toolu_", 6) && strlen(jstr(b2, "id")) == 30 &&
              !strcmp(jstr(b2, "name"), "get_weather") && weather_input(json_object_get(b2, "input")),
          "scripted messages: tool_use block %.300s", r.body);
    CHECK(!strcmp(jstr(m, "stop_reason"), "tool_use") && json_is_null(json_object_get(m, "stop_sequence")) &&
              jint(json_object_get(m, "usage"), "output_tokens") == n_script,
          "scripted messages: stop %s, usage %.200s", jstr(m, "stop_reason"), r.body);

    /* streamed: the same blocks */
    resp s;
    post("/v1/messages", "{\"stream\": true, " ANT_Q ", " ANT_TOOLS "}", &s);
    ant_msg am;
    ant_reassemble("scripted messages stream", s.body, &am);
    json_t *t2 = json_array_get(am.content, 2);
    CHECK(am.ordered && am.errors == 0 && json_array_size(am.content) == 3, "scripted messages stream: ordered %d, %zu blocks: %.500s",
          am.ordered, json_array_size(am.content), s.body);
    for (int i = 0; i < 2; i++) {
        json_t *a = json_array_get(am.content, (size_t)i), *b = json_array_get(content, (size_t)i);
        CHECK(json_equal(a, b), "scripted messages stream: block %d differs from the non-streamed one", i);
    }
    CHECK(!strcmp(jstr(t2, "type"), "tool_use") && !strncmp(jstr(t2, "id"), "toolu_", 6) && !strcmp(jstr(t2, "name"), "get_weather") &&
              weather_input(json_object_get(t2, "input")),
          "scripted messages stream: tool_use %.500s", s.body);
    CHECK(!strcmp(am.stop_reason, "tool_use") && am.output_tokens == n_script, "scripted messages stream: stop %s, tokens %lld",
          am.stop_reason, am.output_tokens);
    ant_free(&am);
    resp_free(&s);
    json_decref(m);
    resp_free(&r);

    /* a tool round trip: the call and its result go back in the history */
    post("/v1/messages", "{\"max_tokens\": 200, " ANT_TOOLS ", \"messages\": [{\"role\": \"user\", \"content\": \"weather?\"}, "
                         "{\"role\": \"assistant\", \"content\": [{\"type\": \"tool_use\", \"id\": \"toolu_1\", \"name\": \"get_weather\", "
                         "\"input\": {\"city\": \"Paris\"}}]}, {\"role\": \"user\", \"content\": [{\"type\": \"tool_result\", "
                         "\"tool_use_id\": \"toolu_1\", \"content\": \"sunny\"}, {\"type\": \"text\", \"text\": \"and tomorrow?\"}]}]}", &r);
    CHECK(r.status == 200, "scripted messages round trip: %d %.300s", r.status, r.body);
    resp_free(&r);

    /* a stop sequence split across pieces */
    post("/v1/messages", "{" ANT_Q ", \"stop_sequences\": [\"zzz\", \"check\"], " ANT_TOOLS "}", &r);
    m = json_loads(r.body, 0, NULL);
    content = json_object_get(m, "content");
    CHECK(!strcmp(jstr(m, "stop_reason"), "stop_sequence") && !strcmp(jstr(m, "stop_sequence"), "check") &&
              json_array_size(content) == 2 && !strcmp(jstr(json_array_get(content, 1), "text"), "Let me "),
          "scripted messages stop: %.400s", r.body);
    json_decref(m);
    resp_free(&r);
    post("/v1/messages", "{\"stream\": true, " ANT_Q ", \"stop_sequences\": [\"check\"], " ANT_TOOLS "}", &r);
    ant_reassemble("scripted messages stop stream", r.body, &am);
    CHECK(am.ordered && !strcmp(am.stop_reason, "stop_sequence") && !strcmp(am.stop_sequence, "check") &&
              !strcmp(jstr(json_array_get(am.content, 1), "text"), "Let me "),
          "scripted messages stop stream: %.500s", r.body);
    ant_free(&am);
    resp_free(&r);

    /* max_tokens inside the thinking */
    post("/v1/messages", "{\"max_tokens\": 4, \"thinking\": {\"type\": \"enabled\"}, \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}", &r);
    m = json_loads(r.body, 0, NULL);
    content = json_object_get(m, "content");
    CHECK(!strcmp(jstr(m, "stop_reason"), "max_tokens") && json_array_size(content) == 1 &&
              !strcmp(jstr(json_array_get(content, 0), "thinking"), "I should cal"),
          "scripted messages max_tokens: %.300s", r.body);
    json_decref(m);
    resp_free(&r);

    /* tool_choice none: the call stays text, end_turn */
    post("/v1/messages", "{" ANT_Q ", \"tool_choice\": {\"type\": \"none\"}, " ANT_TOOLS "}", &r);
    m = json_loads(r.body, 0, NULL);
    content = json_object_get(m, "content");
    json_t *last = json_array_get(content, json_array_size(content) - 1);
    CHECK(!strcmp(jstr(m, "stop_reason"), "end_turn") && !strcmp(jstr(last, "type"), "text") &&
              strstr(jstr(last, "text"), "<function=get_weather>"),
          "scripted messages tool_choice none: %.400s", r.body);
    json_decref(m);
    resp_free(&r);
}

#define RS_TOOLS                                                                                            \
    "\"tools\": [{\"type\": \"function\", \"name\": \"get_weather\", \"parameters\": {\"type\": \"object\", " \
    "\"properties\": {\"city\": {\"type\": \"string\"}, \"days\": {\"type\": \"integer\"}}, \"required\": [\"city\"]}}]"

static void test_scripted_responses(void)
{
    const long long n_script = (long long)(sizeof SCRIPT - 1 + 2) / 3;
    resp r;
    post("/v1/responses", "{\"input\": \"weather?\", " RS_TOOLS "}", &r);
    json_t *o = json_loads(r.body, 0, NULL);
    json_t *out = json_object_get(o, "output");
    json_t *i0 = json_array_get(out, 0), *i1 = json_array_get(out, 1), *i2 = json_array_get(out, 2);
    CHECK(r.status == 200 && json_array_size(out) == 3 && !strcmp(jstr(o, "status"), "completed"), "scripted responses: %d %.400s",
          r.status, r.body);
    CHECK(!strcmp(jstr(i0, "type"), "reasoning") && !strncmp(jstr(i0, "id"), "rs_", 3) &&
              !strcmp(jstr(json_array_get(json_object_get(i0, "content"), 0), "text"), "I should call the tool."),
          "scripted responses: reasoning %.300s", r.body);
    json_t *part = json_array_get(json_object_get(i1, "content"), 0);
    CHECK(!strcmp(jstr(i1, "type"), "message") && !strncmp(jstr(i1, "id"), "msg_", 4) && !strcmp(jstr(i1, "status"), "completed") &&
              !strcmp(jstr(part, "type"), "output_text") && !strcmp(jstr(part, "text"), "Let me check.") &&
              json_array_size(json_object_get(part, "annotations")) == 0,
          "scripted responses: message %.300s", r.body);
    json_t *args = json_loads(jstr(i2, "arguments"), 0, NULL);
    CHECK(!strcmp(jstr(i2, "type"), "function_call") && !strncmp(jstr(i2, "call_id"), "call_", 5) &&
              !strncmp(jstr(i2, "id"), "fc_", 3) && !strcmp(jstr(i2, "id") + 3, jstr(i2, "call_id") + 5) &&
              !strcmp(jstr(i2, "name"), "get_weather") && !strcmp(jstr(i2, "status"), "completed") && weather_input(args),
          "scripted responses: function_call %.300s", r.body);
    json_decref(args);
    json_t *usage = json_object_get(o, "usage");
    CHECK(jint(usage, "output_tokens") == n_script && jint(json_object_get(usage, "output_tokens_details"), "reasoning_tokens") >= 8,
          "scripted responses: usage %.300s", r.body);
    json_decref(o);
    resp_free(&r);

    /* streamed: events reassemble to the same output; ids agree everywhere */
    post("/v1/responses", "{\"input\": \"weather?\", \"stream\": true, " RS_TOOLS "}", &r);
    rs_stream s;
    rs_reassemble("scripted responses stream", r.body, &s);
    out = json_object_get(s.completed, "output");
    CHECK(s.seq_ok && s.ids_ok && s.ordered && s.completed && json_array_size(out) == 3,
          "scripted responses stream: seq %d, ids %d, ordered %d: %.600s", s.seq_ok, s.ids_ok, s.ordered, r.body);
    CHECK(json_equal(out, s.items), "scripted responses stream: output_item.done items differ from response.completed's output");
    i2 = json_array_get(out, 2);
    args = json_loads(s.args.p ? s.args.p : "", 0, NULL);
    CHECK(s.text.p && !strcmp(s.text.p, "Let me check.") && s.reasoning.p && !strcmp(s.reasoning.p, "I should call the tool.") &&
              weather_input(args) && !strcmp(s.args_done, jstr(i2, "arguments")) && !strcmp(s.args.p ? s.args.p : "", s.args_done),
          "scripted responses stream: text '%s', reasoning '%s', args '%s' / '%s'", s.text.p ? s.text.p : "",
          s.reasoning.p ? s.reasoning.p : "", s.args.p ? s.args.p : "", s.args_done);
    CHECK(!strcmp(jstr(s.completed, "status"), "completed") && !strcmp(s.terminal, "response.completed") &&
              jint(json_object_get(s.completed, "usage"), "output_tokens") == n_script,
          "scripted responses stream: %s %.300s", s.terminal, jstr(s.completed, "status"));
    json_decref(args);

    /* the call and its output go back as input items */
    char call_id[64];
    snprintf(call_id, sizeof call_id, "%s", jstr(i2, "call_id"));
    rs_free(&s);
    resp_free(&r);
    char body[2048];
    snprintf(body, sizeof body,
             "{\"input\": [{\"role\": \"user\", \"content\": \"weather?\"}, {\"type\": \"reasoning\", \"id\": \"rs_1\", \"summary\": [], "
             "\"content\": [{\"type\": \"reasoning_text\", \"text\": \"I should call the tool.\"}]}, {\"type\": \"message\", \"role\": "
             "\"assistant\", \"content\": [{\"type\": \"output_text\", \"text\": \"Let me check.\"}]}, {\"type\": \"function_call\", "
             "\"call_id\": \"%s\", \"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\":\\\"Paris\\\",\\\"days\\\":3}\"}, "
             "{\"type\": \"function_call_output\", \"call_id\": \"%s\", \"output\": \"sunny\"}], " RS_TOOLS "}",
             call_id, call_id);
    post("/v1/responses", body, &r);
    CHECK(r.status == 200, "scripted responses round trip: %d %.300s", r.status, r.body);
    resp_free(&r);

    /* max_output_tokens inside the reasoning: response.incomplete, status incomplete */
    post("/v1/responses", "{\"input\": \"x\", \"stream\": true, \"max_output_tokens\": 4}", &r);
    rs_reassemble("scripted responses length", r.body, &s);
    out = json_object_get(s.completed, "output");
    CHECK(s.ordered && s.seq_ok && !strcmp(s.terminal, "response.incomplete") && !strcmp(jstr(s.completed, "status"), "incomplete") &&
              !strcmp(jstr(json_object_get(s.completed, "incomplete_details"), "reason"), "max_output_tokens") &&
              json_array_size(out) == 1 && !strcmp(jstr(json_array_get(out, 0), "status"), "incomplete") &&
              !strcmp(s.reasoning.p ? s.reasoning.p : "", "I should cal"),
          "scripted responses length: %.600s", r.body);
    rs_free(&s);
    resp_free(&r);
}

/* The server stops while a Messages and a Responses stream wait in the queue: each ends with an
 * error frame of its own dialect. */
static void test_shutdown_frames(srv *s, int *fds)
{
    (void)s;
    int a = open_stream(N_CTX - 64);
    const char *bodies[2] = {
        "{\"max_tokens\": 4, \"stream\": true, \"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}",
        "{\"max_output_tokens\": 4, \"stream\": true, \"input\": \"hi\"}",
    };
    const char *paths[2] = { "/v1/messages", "/v1/responses" };
    for (int k = 0; k < 2; k++) {
        fds[k] = dial();
        char head[512];
        int hn = snprintf(head, sizeof head,
                          "POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nx-api-key: " KEY "\r\n"
                          "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n", paths[k], strlen(bodies[k]));
        send_all(fds[k], head, (size_t)hn);
        send_all(fds[k], bodies[k], strlen(bodies[k]));
    }
    double t0 = ar_now();
    while (ar_now() - t0 < 5 && metric("arbor_queue_depth") < 2) usleep(10000);
    CHECK(metric("arbor_queue_depth") == 2, "shutdown: the two streams are not queued");
    fds[2] = a;
}

static void check_shutdown_frames(int *fds)
{
    for (int k = 0; k < 2; k++) {
        resp r;
        read_resp(fds[k], &r);
        close(fds[k]);
        if (k == 0) {
            ant_msg am;
            ant_reassemble("shutdown messages", r.body, &am);
            CHECK(am.errors == 1 && strstr(r.body, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\""),
                  "shutdown: no Anthropic error frame: %.400s", r.body);
            ant_free(&am);
        } else {
            rs_stream s;
            rs_reassemble("shutdown responses", r.body, &s);
            CHECK(strstr(r.body, "event: response.failed\n") && strstr(r.body, "\"status\":\"failed\"") && s.seq_ok,
                  "shutdown: no response.failed frame: %.400s", r.body);
            rs_free(&s);
        }
        resp_free(&r);
    }
    close(fds[2]);
}

/* ---- many agents at once: the scheduler ---------------------------------------------------------- */

typedef struct conc_arg {
    const char *body;
    resp r;
} conc_arg;

static void *conc_main(void *arg)
{
    conc_arg *a = arg;
    post("/v1/chat/completions", a->body, &a->r);
    return NULL;
}

static char *content_of(const resp *r)
{
    json_t *root = r->body ? json_loads(r->body, 0, NULL) : NULL;
    json_t *msg = json_object_get(json_array_get(json_object_get(root, "choices"), 0), "message");
    const char *c = json_string_value(json_object_get(msg, "content"));
    const char *rc = json_string_value(json_object_get(msg, "reasoning_content"));
    char *out = NULL;
    if (root && asprintf(&out, "%s|%s", c ? c : "", rc ? rc : "") < 0) out = NULL;
    json_decref(root);
    return out;
}

/* At T = 0, 4 requests at once give what each gives alone. */
static void test_concurrent(void)
{
    static const char *bodies[4] = {
        "{\"messages\": [{\"role\": \"user\", \"content\": \"one\"}], \"max_tokens\": 24, \"temperature\": 0}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"second question\"}], \"max_tokens\": 17, \"temperature\": 0}",
        "{\"messages\": [{\"role\": \"system\", \"content\": \"be brief\"}, {\"role\": \"user\", \"content\": \"three\"}], "
        "\"max_tokens\": 30, \"temperature\": 0}",
        "{\"messages\": [{\"role\": \"user\", \"content\": \"a fourth, longer prompt for the batch\"}], \"max_tokens\": 9, "
        "\"temperature\": 0}",
    };
    char *alone[4];
    for (int i = 0; i < 4; i++) {
        resp r;
        post("/v1/chat/completions", bodies[i], &r);
        CHECK(r.status == 200, "concurrent: alone %d: %d %.200s", i, r.status, r.body);
        alone[i] = content_of(&r);
        resp_free(&r);
    }
    conc_arg a[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        a[i] = (conc_arg){ .body = bodies[i] };
        pthread_create(&t[i], NULL, conc_main, &a[i]);
    }
    int same = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        char *c = content_of(&a[i].r);
        CHECK(a[i].r.status == 200, "concurrent: %d: %d %.200s", i, a[i].r.status, a[i].r.body);
        bool eq = c && alone[i] && !strcmp(c, alone[i]);
        same += eq;
        CHECK(eq, "concurrent: request %d differs: alone '%s', together '%s'", i, alone[i] ? alone[i] : "",
              c ? c : "");
        free(c);
        free(alone[i]);
        resp_free(&a[i].r);
    }
    printf("concurrent: %d of 4 answers identical to the one-at-a-time ones\n", same);
}

/* A second turn of a conversation resumes from the prefix cache. Turn 1's answer ended without tool
 * calls, so the server prefilled its history form (the conversation up to the end of that answer as the
 * next turn renders it: server/gen.c history_fill) right after it: turn 2 evaluates only its new user
 * message, and its answer is the one a server without a cache gives (test_prefix_cache_off). */
static const char *const CACHE_SYS = "You are a helpful agent with many tools.";
static char *g_turn1_answer, *g_turn2_answer;

static char *turn2_body(const char *answer)
{
    json_t *body = json_pack("{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}],s:i,s:i,s:{s:b}}",
                             "messages", "role", "system", "content", CACHE_SYS,
                             "role", "user", "content", "list the files",
                             "role", "assistant", "content", answer,
                             "role", "user", "content", "now read the first one",
                             "max_tokens", 4, "temperature", 0, "chat_template_kwargs", "enable_thinking", 0);
    char *text = json_dumps(body, 0);
    json_decref(body);
    return text;
}

/* The tokens turn 2 adds after the end of turn 1's answer: a conversation whose last user message is
 * empty, minus the same with that message's text ("now read the first one": counted by the server). */
static long long prompt_tokens_of(const char *answer, const char *last_user)
{
    json_t *body = json_pack("{s:[{s:s,s:s},{s:s,s:s},{s:s,s:s},{s:s,s:s}],s:i,s:{s:b}}",
                             "messages", "role", "system", "content", CACHE_SYS,
                             "role", "user", "content", "list the files",
                             "role", "assistant", "content", answer,
                             "role", "user", "content", last_user, "max_tokens", 1,
                             "chat_template_kwargs", "enable_thinking", 0);
    char *text = json_dumps(body, 0);
    resp r;
    post("/v1/chat/completions", text, &r);
    json_t *root = json_loads(r.body ? r.body : "", 0, NULL);
    long long n = json_integer_value(json_object_get(json_object_get(root, "usage"), "prompt_tokens"));
    json_decref(root);
    json_decref(body);
    free(text);
    resp_free(&r);
    return n;
}

static void test_prefix_cache(void)
{
    long long cached0 = metric("arbor_prompt_cached_tokens_total");
    resp r;
    json_t *b1 = json_pack("{s:[{s:s,s:s},{s:s,s:s}],s:i,s:i,s:{s:b}}", "messages", "role", "system", "content",
                           CACHE_SYS, "role", "user", "content", "list the files", "max_tokens", 40, "temperature", 0,
                           "chat_template_kwargs", "enable_thinking", 0);
    char *t1 = json_dumps(b1, 0);
    post("/v1/chat/completions", t1, &r);
    CHECK(r.status == 200, "cache: turn 1: %d %.200s", r.status, r.body);
    free(g_turn1_answer);
    g_turn1_answer = content_of(&r);   /* "content|reasoning": the client sends the content back */
    char *bar = g_turn1_answer ? strchr(g_turn1_answer, '|') : NULL;
    if (bar) *bar = 0;
    CHECK(g_turn1_answer && *g_turn1_answer, "cache: turn 1 answered nothing: %.200s", r.body);
    resp_free(&r);
    /* turn 2: same system + user, the assistant's answer, a new user message (at once: if the fill is
     * still running, turn 2 waits for it) */
    char *text = turn2_body(g_turn1_answer ? g_turn1_answer : "");
    post("/v1/chat/completions", text, &r);
    json_t *root = json_loads(r.body ? r.body : "", 0, NULL);
    long long cached = json_integer_value(
        json_object_get(json_object_get(json_object_get(root, "usage"), "prompt_tokens_details"), "cached_tokens"));
    long long prompt = json_integer_value(json_object_get(json_object_get(root, "usage"), "prompt_tokens"));
    free(g_turn2_answer);
    g_turn2_answer = content_of(&r);
    /* the new message's tokens: everything after the history form of turn 1 */
    const long long with = prompt_tokens_of(g_turn1_answer ? g_turn1_answer : "", "now read the first one");
    const long long without = prompt_tokens_of(g_turn1_answer ? g_turn1_answer : "", "");
    const long long fresh = prompt - cached;
    printf("cache: turn 2 reused %lld of %lld prompt tokens (evaluated %lld; the new user message adds %lld to an "
           "empty one)\n", cached, prompt, fresh, with - without);
    /* evaluated: the new message's text and its frame + the generation prompt (under 20 tokens); without
     * the fill, also turn 1's ~40-token answer */
    CHECK(r.status == 200 && with == prompt && cached > 0 && fresh > 0 && fresh <= with - without + 20,
          "cache: turn 2 cached_tokens %lld of %lld: it evaluated %lld, the new message is %lld: %.300s", cached, prompt,
          fresh, with - without, r.body);
    long long cached1 = metric("arbor_prompt_cached_tokens_total");
    CHECK(cached1 >= cached0 + cached && cached1 > 0, "cache: /metrics cached tokens %lld -> %lld", cached0, cached1);
    CHECK(metric("arbor_cache_hits_total") > 0, "cache: /metrics cache hits %lld", metric("arbor_cache_hits_total"));
    json_decref(root);
    json_decref(b1);
    free(t1);
    free(text);
    resp_free(&r);
}

/* Post body to a server without a prefix cache: its answer must be want (the same request's answer with
 * the cache, at T = 0). */
static void expect_answer_without_cache(const char *label, const char *body, const char *want)
{
    resp r;
    post("/v1/chat/completions", body, &r);
    char *ans = content_of(&r);
    CHECK(r.status == 200 && ans && want && !strcmp(ans, want), "%s: with the cache '%s', without '%s'", label,
          want ? want : "(none)", ans ? ans : "(none)");
    printf("%s (cache on = off): %.80s\n", label, ans ? ans : "");
    free(ans);
    resp_free(&r);
}

/* Turn 2 of test_prefix_cache on a server without a prefix cache (so without fills): the same answer. */
static void test_prefix_cache_off(void)
{
    char *text = turn2_body(g_turn1_answer ? g_turn1_answer : "");
    expect_answer_without_cache("cache: turn 2 after a fill", text, g_turn2_answer);
    free(text);
    free(g_turn1_answer);
    free(g_turn2_answer);
    g_turn1_answer = g_turn2_answer = NULL;
}

/* One client leaves mid-generation: its request stops, the others run to their end. */
static void test_disconnect_one(void)
{
    long long cancelled0 = metric("arbor_cancelled_total");
    int a = open_stream(N_CTX - 64);
    conc_arg o[2];
    pthread_t t[2];
    for (int i = 0; i < 2; i++) {
        o[i] = (conc_arg){ .body = "{\"messages\": [{\"role\": \"user\", \"content\": \"others\"}], \"max_tokens\": 200, "
                                   "\"temperature\": 0}" };
        pthread_create(&t[i], NULL, conc_main, &o[i]);
    }
    usleep(50000);
    close(a);
    double t1 = ar_now();
    long long cancelled = cancelled0;
    while (ar_now() - t1 < 10 && cancelled < cancelled0 + 1) {
        usleep(20000);
        cancelled = metric("arbor_cancelled_total");
    }
    CHECK(cancelled == cancelled0 + 1, "disconnect one: cancelled_total %lld, want %lld", cancelled, cancelled0 + 1);
    for (int i = 0; i < 2; i++) {
        pthread_join(t[i], NULL);
        json_t *root = json_loads(o[i].r.body ? o[i].r.body : "", 0, NULL);
        long long n = json_integer_value(json_object_get(json_object_get(root, "usage"), "completion_tokens"));
        const char *fin = json_string_value(json_object_get(json_array_get(json_object_get(root, "choices"), 0), "finish_reason"));
        CHECK(o[i].r.status == 200 && fin && (!strcmp(fin, "length") ? n == 200 : !strcmp(fin, "stop")),
              "disconnect one: the other request %d: %d, %lld tokens, finish %s", i, o[i].r.status, n, fin ? fin : "-");
        json_decref(root);
        resp_free(&o[i].r);
    }
    double t0 = ar_now();
    while (ar_now() - t0 < 10 && metric("arbor_requests_running") != 0) usleep(20000);
    CHECK(metric("arbor_requests_running") == 0 && metric("arbor_queue_depth") == 0, "disconnect one: jobs left behind");
    CHECK(server_alive(), "disconnect one: the server stopped answering");
}


/* ---- prefix cache across conversations ---------------------------------------------------------- */

/* A long system prompt shared by conversations (a coding agent's), and a body with it and user text u. */
static void shared_system_text(sbuf *sys)
{
    sb_puts(sys, "You are a coding agent. Rules:");
    for (int i = 0; i < 60; i++) sb_printf(sys, " rule %d: keep the build green and the diff small.", i);
}

static char *shared_system_body(const char *u)
{
    sbuf sys = { 0 };
    shared_system_text(&sys);
    json_t *body = json_pack("{s:[{s:s,s:s},{s:s,s:s}],s:i,s:i}", "messages", "role", "system", "content", sys.p,
                             "role", "user", "content", u, "max_tokens", 8, "temperature", 0);
    char *text = json_dumps(body, 0);
    json_decref(body);
    sb_free(&sys);
    return text;
}

static char *g_shared_answer;   /* the second conversation's answer with the cache on */

/* Two conversations with the same system prompt and different user messages: the second resumes from
 * the first's snapshot at the end of the system message (the Qwen3.5 template renders no system
 * message alone: the boundary is cut from the first two messages' text). */
static void test_prefix_cache_shared_system(void)
{
    char *a = shared_system_body("what does main.c do?"), *b = shared_system_body("fix the failing test");
    resp r;
    post("/v1/chat/completions", a, &r);
    CHECK(r.status == 200, "shared system: conversation 1: %d %.200s", r.status, r.body);
    resp_free(&r);
    post("/v1/chat/completions", b, &r);
    json_t *root = json_loads(r.body ? r.body : "", 0, NULL);
    json_t *usage = json_object_get(root, "usage");
    long long cached = json_integer_value(json_object_get(json_object_get(usage, "prompt_tokens_details"), "cached_tokens"));
    long long prompt = json_integer_value(json_object_get(usage, "prompt_tokens"));
    printf("shared system prompt: conversation 2 reused %lld of %lld prompt tokens\n", cached, prompt);
    CHECK(r.status == 200 && cached > 400 && cached < prompt, "shared system: cached_tokens %lld of %lld: %.300s",
          cached, prompt, r.body);
    free(g_shared_answer);
    g_shared_answer = content_of(&r);
    json_decref(root);
    resp_free(&r);
    free(a);
    free(b);

    /* a third conversation over the Anthropic API: its usage says what came from the cache, and
     * input_tokens + cache_read_input_tokens is the prompt count_tokens gives */
    sbuf sys = { 0 };
    shared_system_text(&sys);
    json_t *ab = json_pack("{s:s,s:[{s:s,s:s}]}", "system", sys.p, "messages", "role", "user", "content", "run the tests");
    char *count_body = json_dumps(ab, 0);
    json_object_set_new(ab, "max_tokens", json_integer(4));
    json_object_set_new(ab, "temperature", json_integer(0));
    char *msg_body = json_dumps(ab, 0);
    post("/v1/messages/count_tokens", count_body, &r);
    const long long want = r.status == 200 ? jint(root = json_loads(r.body, 0, NULL), "input_tokens") : -1;
    if (r.status == 200) json_decref(root);
    resp_free(&r);
    post("/v1/messages", msg_body, &r);
    root = json_loads(r.body ? r.body : "", 0, NULL);
    usage = json_object_get(root, "usage");
    const long long in = jint(usage, "input_tokens"), read = jint(usage, "cache_read_input_tokens");
    printf("shared system prompt: Anthropic conversation: input_tokens %lld, cache_read_input_tokens %lld\n", in, read);
    CHECK(r.status == 200 && read > 400 && in > 0 && in + read == want && jint(usage, "cache_creation_input_tokens") == 0,
          "shared system, Anthropic usage: input %lld + cache read %lld, count_tokens %lld: %.300s", in, read, want, r.body);
    json_decref(root);
    json_decref(ab);
    resp_free(&r);
    free(count_body);
    free(msg_body);
    sb_free(&sys);
}

/* The same second conversation on a server without a prefix cache: the same answer (T = 0). */
static void test_prefix_cache_shared_system_off(void)
{
    char *b = shared_system_body("fix the failing test");
    expect_answer_without_cache("shared system answer", b, g_shared_answer);
    free(b);
}

/* ---- a model whose chat template is of another family ------------------------------------------- */

static const char CHATML_TEMPLATE[] =
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + "
    "'\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/* The server renders ChatML (and warns at load) for it; generation works. */
static void test_chatml_model(void)
{
    char path[1024];
    snprintf(path, sizeof path, "/tmp/arbor-test-server-chatml-%d.gguf", (int)getpid());
    mkmodel_params p;
    ar_error err = { 0 };
    int rc = mkmodel_preset(&p, "tiny", &err);
    char vsrc[1024];
    snprintf(vsrc, sizeof vsrc, "%s/vocab-qwen35.gguf", test_fixtures());
    p.vocab = "small:4096";
    p.vocab_src = vsrc;
    p.seed = 1;
    p.chat_template = CHATML_TEMPLATE;
    p.quiet = true;
    if (!rc) rc = mkmodel_write(&p, path, NULL, &err);
    CHECK(rc == 0, "chatml model: %s", err.msg);
    ar_model *m = NULL;
    ar_model_params mp = ar_model_defaults();
    mp.n_threads = 1;
    mp.prefault = false;
    if (!rc) rc = ar_model_load(&m, path, &mp, &err);
    CHECK(rc == 0, "chatml model load: %s", err.msg);
    srv *s = NULL;
    srv_options o = srv_defaults();
    o.port = 0;
    o.api_key = KEY;
    o.n_ctx = 512;
    o.n_parallel = 1;
    o.cache_bytes = 16u << 20;
    if (!rc) rc = srv_create(&s, &o, &err);
    if (!rc) rc = srv_attach_model(s, m, path, &err);
    CHECK(rc == 0, "chatml server: %s", err.msg);
    if (!rc) {
        g_port = srv_port(s);
        const char *msgs = "{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, "
                           "{\"role\": \"user\", \"content\": \"hi\"}], \"max_tokens\": 4, \"temperature\": 0}";
        resp r;
        post("/apply-template", msgs, &r);
        json_t *root = json_loads(r.body ? r.body : "", 0, NULL);
        const char *prompt = jstr(root, "prompt");
        const char *want = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n"
                           "<|im_start|>assistant\n";
        CHECK(r.status == 200 && prompt && !strcmp(prompt, want), "chatml: apply-template %d: %.300s", r.status, r.body);
        json_decref(root);
        resp_free(&r);
        post("/v1/chat/completions", msgs, &r);
        CHECK(r.status == 200 && r.body && strstr(r.body, "\"completion_tokens\""), "chatml: chat %d: %.300s", r.status,
              r.body);
        resp_free(&r);
    }
    srv_free(s);
    ar_model_free(m);
    unlink(path);
}

int main(void)
{
    ar_log_level = AR_LOG_WARN;
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-f32.gguf", test_fixtures());
    ar_model *m = NULL;
    ar_error err = { 0 };
    ar_model_params mp = ar_model_defaults();
    mp.n_threads = 1;
    mp.prefault = false;
    if (ar_model_load(&m, path, &mp, &err)) {
        CHECK(0, "fixture %s: %s (run scripts/fixtures.sh)", path, err.msg);
        TEST_END();
    }
    srv_options o = srv_defaults();
    o.chat_family = AR_CHAT_QWEN35;   /* the fixture carries a ChatML template: the tests want Qwen3.5 prompts */
    o.port = 0;
    o.api_key = KEY;
    o.max_body = MAX_BODY;
    o.n_ctx = N_CTX;
    o.ping_s = 0.2;
    o.n_parallel = 1;   /* one slot: the queueing, keep-alive and shutdown tests need a request to wait */
    o.cache_bytes = 0;  /* every request from a fresh context: the long "tell me" stream is the same each time */
    srv *s = NULL;
    int rc = srv_create(&s, &o, &err);
    CHECK(rc == 0, "srv_create: %s", err.msg);
    if (rc) { ar_model_free(m); TEST_END(); }
    g_port = srv_port(s);
    CHECK(g_port > 0, "port %d", g_port);

    /* before the model is attached: 503 in the error shape */
    resp r;
    request("GET", "/health", "", NULL, 0, &r);
    CHECK(r.status == 503 && strstr(r.body, "\"error\""), "health before load: %d %.200s", r.status, r.body);
    resp_free(&r);
    rc = srv_attach_model(s, m, path, &err);
    CHECK(rc == 0, "srv_attach_model: %s", err.msg);
    if (!rc) {
        CHECK(server_alive(), "health after load");
        test_bad_inputs();
        test_oversize();
        test_context();
        test_completion();
        test_stream();
        test_disconnect_and_keepalive();
        test_metrics();
        test_bad_messages();
        test_bad_responses();
        test_messages_model();
        test_responses_model();
        test_tool_choice();
        test_dialect_keepalive();
    }
    int fds[3] = { -1, -1, -1 };
    if (!rc) test_shutdown_frames(s, fds);
    srv_free(s);
    if (!rc) check_shutdown_frames(fds);

    /* a second server whose "model" outputs a fixed script: tool calls end to end */
    o = srv_defaults();
    o.chat_family = AR_CHAT_QWEN35;
    o.port = 0;
    o.script = SCRIPT;
    rc = srv_create(&s, &o, &err);
    if (!rc) rc = srv_attach_model(s, m, path, &err);
    CHECK(rc == 0, "scripted server: %s", err.msg);
    if (!rc) {
        g_port = srv_port(s);
        test_scripted();
        test_scripted_messages();
        test_scripted_responses();
    }
    srv_free(s);

    /* a third: 4 sequences batched, prefix cache on */
    o = srv_defaults();
    o.chat_family = AR_CHAT_QWEN35;   /* the fixture carries a ChatML template: the tests want Qwen3.5 prompts */
    o.port = 0;
    o.api_key = KEY;
    o.n_ctx = N_CTX;
    o.n_parallel = 4;
    o.cache_bytes = 64u << 20;
    rc = srv_create(&s, &o, &err);
    if (!rc) rc = srv_attach_model(s, m, path, &err);
    CHECK(rc == 0, "batched server: %s", err.msg);
    if (!rc) {
        g_port = srv_port(s);
        test_concurrent();
        test_prefix_cache();
        test_prefix_cache_shared_system();
        test_disconnect_one();
        resp r2;
        request("GET", "/metrics", NULL, NULL, 0, &r2);
        CHECK(r2.body && strstr(r2.body, "# TYPE arbor_batch_nodes histogram") && strstr(r2.body, "arbor_kv_pages ") &&
                  strstr(r2.body, "arbor_sched_parallel 4"), "batched metrics: %.300s", r2.body);
        resp_free(&r2);
    }
    srv_free(s);

    /* the shared-system conversation again, without a prefix cache: the same answer */
    o.cache_bytes = 0;
    s = NULL;
    rc = srv_create(&s, &o, &err);
    if (!rc) rc = srv_attach_model(s, m, path, &err);
    CHECK(rc == 0, "server without a cache: %s", err.msg);
    if (!rc) {
        g_port = srv_port(s);
        test_prefix_cache_shared_system_off();
        test_prefix_cache_off();
    }
    srv_free(s);
    ar_model_free(m);
    free(g_shared_answer);

    /* a model whose template is ChatML */
    test_chatml_model();

    /* a fourth: speculative serving (the bundled target and its drafter: a hook per request in the
     * scheduler, 2 slots), then the same model decoding plainly (draft_block 1): the same answers */
    m = NULL;
    mp.n_threads = 2;
    rc = ar_model_load(&m, "models/arbor-tiny-target.gguf", &mp, &err);
    if (!rc) rc = ar_model_load_draft(m, "models/arbor-tiny-dflash.gguf", &err);
    CHECK(rc == 0, "the bundled pair models/arbor-tiny-target.gguf + arbor-tiny-dflash.gguf: %s", err.msg);
    char answer[2][2048] = { "", "" };
    long long spec_steps[2] = { 0, 0 }, spec_tokens[2] = { 0, 0 };
    for (int k = 0; k < 2 && !rc; k++) {
        o = srv_defaults();   /* the template's family from the model (Qwen3.5) */
        o.port = 0;
        o.api_key = KEY;
        o.n_ctx = 2048;
        o.n_parallel = 2;
        o.cache_bytes = 16u << 20;
        o.draft_block = k ? 1 : 0;
        s = NULL;
        rc = srv_create(&s, &o, &err);
        if (!rc) rc = srv_attach_model(s, m, "models/arbor-tiny-target.gguf", &err);
        CHECK(rc == 0, "%s server: %s", k ? "plain" : "speculative", err.msg);
        if (!rc) {
            g_port = srv_port(s);
            CHECK(srv_chat_family(s) == AR_CHAT_QWEN35, "bundled target: chat family %d, want Qwen3.5", srv_chat_family(s));
            test_tool_choice_spec(answer[k], sizeof answer[k]);
            spec_steps[k] = metric("arbor_spec_steps_total");
            spec_tokens[k] = metric("arbor_spec_tokens_total");
        }
        srv_free(s);
    }
    CHECK(!strcmp(answer[0], answer[1]), "speculative and plain serving differ:\n  %s\n  %s", answer[0], answer[1]);
    CHECK(spec_steps[0] > 0 && spec_tokens[0] >= spec_steps[0] && spec_steps[1] == 0,
          "/metrics: speculative %lld steps %lld tokens, plain %lld steps", spec_steps[0], spec_tokens[0], spec_steps[1]);
    printf("speculative serving: acceptance length %.2f (%lld tokens / %lld steps)\n",
           spec_steps[0] ? (double)spec_tokens[0] / (double)spec_steps[0] : 0.0, spec_tokens[0], spec_steps[0]);
    ar_model_free(m);
    TEST_END();
}
