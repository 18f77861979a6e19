/* server/anthropic.c — Anthropic Messages endpoints (see anthropic.h): handlers that translate
 * (request_anthropic.c) and prepare on the connection's thread, answering client errors there in
 * Anthropic's error shape, and the writer that turns generation events (gen_sink) into content
 * blocks on the worker thread.
 *
 * Blocks: generation events open blocks in output order — reasoning -> a thinking block, content ->
 * a text block, a tool call -> a tool_use block (id "toolu_" + the call's random part, input the
 * call's JSON arguments). A block stays open while events of its kind continue; any other event
 * closes it. The same block list is the non-streamed answer's content and the stream's events.
 *
 * Stream: "event: NAME\ndata: JSON\n\n" frames, as the Anthropic API sends them. message_start (with
 * usage.input_tokens, the prompt's tokens, as the cache hit is not known yet) and one ping are
 * written when the request is queued, so the client sees the response begin at once; then per block
 * content_block_start, deltas (thinking_delta, text_delta, input_json_delta) and content_block_stop;
 * then message_delta (stop_reason, stop_sequence and the final usage: input_tokens without the
 * cache_read_input_tokens, output_tokens) and message_stop. An idle stream gets
 * "event: ping" frames (srv keep-alive). An engine failure mid-stream is an "event: error" frame.
 * Thinking blocks carry an empty signature: nothing here signs them, and a signature sent back in
 * the history is ignored. */
#include "server/anthropic.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/gen.h"
#include "server/openai.h"
#include "server/request.h"

#define PING_FRAME "event: ping\ndata: {\"type\": \"ping\"}\n\n"

char *api_error_anthropic(const api_error *e)
{
    const char *type;
    switch (e->status) {
    case 400: case 405: case 422: type = "invalid_request_error"; break;
    case 401: type = "authentication_error"; break;
    case 403: type = "permission_error"; break;
    case 404: type = "not_found_error"; break;
    case 413: type = "request_too_large"; break;
    case 429: type = "rate_limit_error"; break;
    case 503: case 529: type = "overloaded_error"; break;
    default: type = e->status >= 500 ? "api_error" : "invalid_request_error"; break;
    }
    json_t *err = json_object();
    js_set(err, "type", json_string(type));
    js_set(err, "message", js_str(e->message));
    json_t *root = json_object();
    js_set(root, "type", json_string("error"));
    js_set(root, "error", err);
    char *s = js_dump(root);
    json_decref(root);
    return s;
}

/* ---- per-request state -------------------------------------------------------------------------- */

enum { BLK_THINKING, BLK_TEXT, BLK_TOOL };

typedef struct ant_block {
    int   kind;
    char  id[64];    /* tool_use */
    char *name;      /* tool_use */
    sbuf  text;      /* thinking / text / the tool's argument JSON */
} ant_block;

typedef struct ant_job {
    srv        *s;
    srv_job    *job;
    srv_request req;
    gen_prompt  prompt;
    char        id[64];
    char       *model;
    ant_block  *blocks;
    int         n_blocks;
    bool        open;    /* the last block is open */
} ant_job;

static void ant_job_free(void *p)
{
    ant_job *o = p;
    if (!o) return;
    req_free(&o->req);
    gen_prompt_free(&o->prompt);
    free(o->model);
    for (int i = 0; i < o->n_blocks; i++) { free(o->blocks[i].name); sb_free(&o->blocks[i].text); }
    free(o->blocks);
    free(o);
}

/* ---- stream frames ------------------------------------------------------------------------------ */

/* "event: <type>\ndata: <v>\n\n"; v (taken) gets "type" first. */
static void send_event(ant_job *o, const char *type, json_t *v)
{
    json_t *f = json_object();
    js_set(f, "type", json_string(type));
    json_object_update(f, v);
    json_decref(v);
    char *s = js_dump(f);
    json_decref(f);
    if (!s) return;
    srv_job_write(o->job, "event: ", 7);
    srv_job_write(o->job, type, strlen(type));
    srv_job_write(o->job, "\ndata: ", 7);
    srv_job_write(o->job, s, strlen(s));
    srv_job_write(o->job, "\n\n", 2);
    free(s);
}

/* Anthropic's usage: input_tokens are the prompt tokens not read from the cache, so input_tokens +
 * cache_read_input_tokens is the prompt (what count_tokens answers). The prefix cache is automatic:
 * nothing is written on request, so cache_creation_input_tokens is 0. */
static json_t *usage_json(int n_prompt, int n_cached, int n_gen)
{
    json_t *u = json_object();
    js_set(u, "input_tokens", json_integer(n_prompt - n_cached));
    js_set(u, "cache_creation_input_tokens", json_integer(0));
    js_set(u, "cache_read_input_tokens", json_integer(n_cached));
    js_set(u, "output_tokens", json_integer(n_gen));
    return u;
}

/* The message object: content is filled only for the non-streamed answer. */
static json_t *message_json(const ant_job *o, json_t *content, const char *stop_reason, const char *stop_seq,
                            json_t *usage)
{
    json_t *m = json_object();
    js_set(m, "id", json_string(o->id));
    js_set(m, "type", json_string("message"));
    js_set(m, "role", json_string("assistant"));
    js_set(m, "model", js_str(o->model));
    js_set(m, "content", content);
    js_set(m, "stop_reason", stop_reason ? json_string(stop_reason) : json_null());
    js_set(m, "stop_sequence", stop_seq ? js_str(stop_seq) : json_null());
    js_set(m, "usage", usage);
    return m;
}

/* The block as it is at content_block_start (empty) or in the final answer (full). */
static json_t *block_json(const ant_block *b, bool full)
{
    json_t *j = json_object();
    const char *text = full && b->text.p ? b->text.p : "";
    size_t len = full ? b->text.n : 0;
    switch (b->kind) {
    case BLK_THINKING:
        js_set(j, "type", json_string("thinking"));
        js_set(j, "thinking", js_strn(text, len));
        js_set(j, "signature", json_string(""));
        break;
    case BLK_TEXT:
        js_set(j, "type", json_string("text"));
        js_set(j, "text", js_strn(text, len));
        break;
    default: {
        js_set(j, "type", json_string("tool_use"));
        js_set(j, "id", json_string(b->id));
        js_set(j, "name", js_str(b->name));
        /* strings holding \u0000 kept; an integer past 64 bits (valid JSON the parser passes through) as a float
         * rather than no input */
        json_t *input = full && b->text.n ? json_loadb(b->text.p, b->text.n, JSON_ALLOW_NUL, NULL) : NULL;
        if (!input && full && b->text.n) input = json_loadb(b->text.p, b->text.n, JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, NULL);
        if (!json_is_object(input)) { json_decref(input); input = json_object(); }
        js_set(j, "input", input);
        break;
    }
    }
    return j;
}

/* ---- generation events -------------------------------------------------------------------------- */

static void close_block(ant_job *o)
{
    if (!o->open) return;
    o->open = false;
    if (o->req.stream) send_event(o, "content_block_stop", json_pack("{s:i}", "index", o->n_blocks - 1));
}

/* The open block of this kind, or a new one. */
static ant_block *block_for(ant_job *o, int kind, bool fresh)
{
    if (o->open && !fresh && o->blocks[o->n_blocks - 1].kind == kind) return &o->blocks[o->n_blocks - 1];
    close_block(o);
    ant_block *b = realloc(o->blocks, (size_t)(o->n_blocks + 1) * sizeof *b);
    if (!b) return NULL;
    o->blocks = b;
    b = &b[o->n_blocks++];
    *b = (ant_block){ .kind = kind };
    o->open = true;
    return b;
}

static void start_block(ant_job *o, const ant_block *b)
{
    if (!o->req.stream) return;
    json_t *v = json_object();
    js_set(v, "index", json_integer(o->n_blocks - 1));
    js_set(v, "content_block", block_json(b, false));
    send_event(o, "content_block_start", v);
}

static void delta(ant_job *o, const char *type, const char *key, const char *text, size_t len)
{
    json_t *d = json_object();
    js_set(d, "type", json_string(type));
    js_set(d, key, js_strn(text, len));
    json_t *v = json_object();
    js_set(v, "index", json_integer(o->n_blocks - 1));
    js_set(v, "delta", d);
    send_event(o, "content_block_delta", v);
}

static void ev_text(ant_job *o, int kind, const char *text, size_t len)
{
    bool was_open = o->open && o->blocks[o->n_blocks - 1].kind == kind;
    ant_block *b = block_for(o, kind, false);
    if (!b) return;
    if (!was_open) start_block(o, b);
    sb_put(&b->text, text, len);
    if (o->req.stream) {
        if (kind == BLK_THINKING) delta(o, "thinking_delta", "thinking", text, len);
        else delta(o, "text_delta", "text", text, len);
    }
}

static void ev_reasoning(void *user, const char *text, size_t len) { ev_text(user, BLK_THINKING, text, len); }
static void ev_content(void *user, const char *text, size_t len) { ev_text(user, BLK_TEXT, text, len); }

static void ev_tool_begin(void *user, int index, const char *id, const char *name)
{
    ant_job *o = user;
    (void)index;
    ant_block *b = block_for(o, BLK_TOOL, true);
    if (!b) return;
    const char *rnd = id && !strncmp(id, "call_", 5) ? id + 5 : NULL;
    if (rnd && *rnd) snprintf(b->id, sizeof b->id, "toolu_%s", rnd);
    else oai_new_id(b->id, sizeof b->id, "toolu_");
    b->name = strdup(name ? name : "");
    start_block(o, b);
}

static void ev_tool_args(void *user, int index, const char *json, size_t len)
{
    ant_job *o = user;
    (void)index;
    if (!o->open || o->blocks[o->n_blocks - 1].kind != BLK_TOOL) return;
    sb_put(&o->blocks[o->n_blocks - 1].text, json, len);
    if (o->req.stream) delta(o, "input_json_delta", "partial_json", json, len);
}

static void ev_tool_end(void *user, int index)
{
    ant_job *o = user;
    (void)index;
    if (o->open && o->blocks[o->n_blocks - 1].kind == BLK_TOOL) close_block(o);
}


/* ---- answers ------------------------------------------------------------------------------------ */

static const char *stop_reason(const gen_result *res)
{
    switch (res->finish) {
    case GEN_FINISH_LENGTH: return "max_tokens";
    case GEN_FINISH_TOOL_CALLS: return "tool_use";
    default: return res->stop_word ? "stop_sequence" : "end_turn";
    }
}

static void on_job_error(srv_job *j, void *user, const api_error *e)
{
    ant_job *o = user;
    char *body = api_error_anthropic(e);
    if (!o->req.stream) { srv_job_reply(j, e->status, body); return; }
    if (body) {
        srv_job_write(j, "event: error\ndata: ", 19);
        srv_job_write(j, body, strlen(body));
        srv_job_write(j, "\n\n", 2);
    }
    free(body);
}

static void job_done(srv_job *j, void *user, int rc, const gen_result *gres, const ar_error *errp)
{
    gen_result res = *gres;
    ar_error err = *errp;
    ant_job *o = user;
    o->job = j;
    if (rc) {
        srv_job_failed(j);
        api_error e;
        api_fail(&e, 500, "server_error", NULL, NULL, "generation failed: %s", err.msg);
        on_job_error(j, o, &e);
        return;
    }
    srv_job_account(j, &res);
    if (res.finish == GEN_FINISH_CANCELLED) return;
    const char *stop_seq = res.finish == GEN_FINISH_STOP ? res.stop_word : NULL;
    if (!o->req.stream) {
        json_t *content = json_array();
        for (int i = 0; i < o->n_blocks; i++) json_array_append_new(content, block_json(&o->blocks[i], true));
        json_t *usage = usage_json(res.n_prompt, res.n_cached, res.n_gen);
        json_t *m = message_json(o, content, stop_reason(&res), stop_seq, usage);
        char *body = js_dump(m);
        json_decref(m);
        srv_job_reply(j, body ? 200 : 500, body);
        return;
    }
    close_block(o);
    json_t *d = json_object();
    js_set(d, "stop_reason", json_string(stop_reason(&res)));
    js_set(d, "stop_sequence", stop_seq ? js_str(stop_seq) : json_null());
    json_t *v = json_object();
    js_set(v, "delta", d);
    js_set(v, "usage", usage_json(res.n_prompt, res.n_cached, res.n_gen));
    send_event(o, "message_delta", v);
    send_event(o, "message_stop", json_object());
}

/* ---- handlers ----------------------------------------------------------------------------------- */

static void reply_oom(http_req *r)
{
    api_error e;
    api_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    http_reply_error(r, &e);
}

static void handle_messages(void *user, http_req *r)
{
    srv *s = user;
    api_error e;
    if (srv_check_ready(s, &e)) { http_reply_error(r, &e); return; }
    size_t len;
    const char *body = http_body(r, &len);
    json_t *root = js_parse_body(body, len, &e);
    if (!root) { http_reply_error(r, &e); return; }
    ant_job *o = calloc(1, sizeof *o);
    if (!o) { json_decref(root); reply_oom(r); return; }
    o->s = s;
    req_init(&o->req);
    int rc = req_parse_anthropic(root, &o->req, false, &e);
    json_decref(root);
    o->req.chat_family = srv_chat_family(s);
    if (!rc) rc = gen_prepare(srv_model(s), srv_n_ctx(s), &o->req, &o->prompt, &e);
    o->req.script = srv_script(s);
    if (rc) { ant_job_free(o); http_reply_error(r, &e); return; }
    oai_new_id(o->id, sizeof o->id, "msg_");
    o->model = strdup(o->req.model ? o->req.model : srv_model_name(s));
    gen_sink sink = {
        .user = o, .reasoning = ev_reasoning, .content = ev_content, .tool_call_begin = ev_tool_begin,
        .tool_call_args = ev_tool_args, .tool_call_end = ev_tool_end,
    };
    srv_job *j = srv_job_new(s, &o->req, &o->prompt, &sink, job_done, o, ant_job_free);
    if (!j || !o->model) {
        if (j) srv_job_free_unsubmitted(j);
        else ant_job_free(o);
        reply_oom(r);
        return;
    }
    o->job = j;
    srv_job_set_error(j, on_job_error);
    if (o->req.stream) {
        srv_job_set_keepalive(j, PING_FRAME);
        /* the response starts now, even if the job waits in the queue */
        json_t *v = json_object();
        js_set(v, "message", message_json(o, json_array(), NULL, NULL, usage_json(o->prompt.n, 0, 0)));
        send_event(o, "message_start", v);
        srv_job_write(j, PING_FRAME, strlen(PING_FRAME));
    }
    srv_submit(s, r, j, o->req.stream);
}

static void handle_count_tokens(void *user, http_req *r)
{
    srv *s = user;
    api_error e;
    if (srv_check_ready(s, &e)) { http_reply_error(r, &e); return; }
    size_t len;
    const char *body = http_body(r, &len);
    json_t *root = js_parse_body(body, len, &e);
    if (!root) { http_reply_error(r, &e); return; }
    srv_request req;
    req_init(&req);
    char *text = NULL;
    int rc = req_parse_anthropic(root, &req, true, &e);
    json_decref(root);
    req.chat_family = srv_chat_family(s);
    if (!rc) rc = gen_render_chat(&req, &text, &e);
    req_free(&req);
    if (rc) { http_reply_error(r, &e); return; }
    int32_t *ids = NULL;
    size_t n = 0;
    ar_error err = { 0 };
    rc = ar_model_tokenize(srv_model(s), text, strlen(text), true, &ids, &n, &err);
    free(text);
    free(ids);
    if (rc) {
        api_bad(&e, "messages", "cannot tokenize the prompt: %s", err.msg);
        http_reply_error(r, &e);
        return;
    }
    char out[64];
    snprintf(out, sizeof out, "{\"input_tokens\":%zu}", n);
    http_reply_json(r, 200, out);
}

int anthropic_register(srv *s, http_server *h)
{
    int rc = http_route(h, "POST", "/v1/messages", handle_messages, s, api_error_anthropic, false);
    if (!rc) rc = http_route(h, "POST", "/v1/messages/count_tokens", handle_count_tokens, s, api_error_anthropic, false);
    return rc;
}
