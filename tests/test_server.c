/* tests/test_server.c — the HTTP server in-process on an ephemeral loopback port, driven with raw
 * HTTP over sockets: the bad-input matrix (malformed JSON, wrong types, missing fields, oversize
 * bodies, prompts over the context, invalid UTF-8, unknown routes and methods, wrong API keys),
 * each answered in OpenAI's error shape {"error":{"message","type","param","code"}} and each followed
 * by a check that the server still answers; then a real completion, a streamed one, a client that
 * disconnects mid-stream (its generation must stop), and SSE keep-alives while a stream waits in
 * the queue. Model: the tiny-f32 fixture (random weights: only shapes and counts are checked).
 * Traffic goes to 127.0.0.1 only. */
#include "tests/test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
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
#include "server/serve.h"

#define KEY "test-key-123"
#define MAX_BODY (256 * 1024)
#define N_CTX 1024

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
    int frames = 0, usage_frames = 0, finish = 0;
    bool done = false, role = false;
    for (char *p = r.body; (p = strstr(p, "data: ")); p += 6) {
        if (!strncmp(p + 6, "[DONE]", 6)) { done = true; continue; }
        char *end = strstr(p, "\n\n");
        if (!end) break;
        json_t *c = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
        CHECK(c != NULL, "stream: frame is not JSON: %.100s", p);
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
    o.port = 0;
    o.api_key = KEY;
    o.max_body = MAX_BODY;
    o.n_ctx = N_CTX;
    o.ping_s = 0.2;
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
    }
    srv_free(s);

    /* a second server whose "model" outputs a fixed script: tool calls end to end */
    o = srv_defaults();
    o.port = 0;
    o.script = SCRIPT;
    rc = srv_create(&s, &o, &err);
    if (!rc) rc = srv_attach_model(s, m, path, &err);
    CHECK(rc == 0, "scripted server: %s", err.msg);
    if (!rc) {
        g_port = srv_port(s);
        test_scripted();
    }
    srv_free(s);
    ar_model_free(m);
    TEST_END();
}
