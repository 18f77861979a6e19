/* server/openai.c — OpenAI-compatible endpoints (see openai.h): request handlers that translate and
 * prepare on the connection's thread (client errors answered there), and the response writer that
 * turns generation events (gen_sink) into chat.completion / chat.completion.chunk / text_completion
 * JSON on the worker thread.
 *
 * Stream shape (chat): a first chunk with delta {role:"assistant", content:""} is written when the
 * request is queued, so the client sees the response start at once; then one chunk per event
 * (delta.reasoning_content, delta.content, delta.tool_calls[i] with id/type/name first and argument
 * fragments after); then a chunk with an empty delta and finish_reason (and llama.cpp-style timings);
 * then, with stream_options.include_usage, a chunk with empty choices and the usage (every earlier
 * chunk carries "usage": null); then "data: [DONE]". An engine failure mid-stream is one
 * data: {"error": ...} frame. */
#include "server/openai.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "engine/generate.h"
#include "server/gen.h"
#include "server/request.h"

void oai_new_id(char *out, size_t cap, const char *prefix)
{
    static const char ALNUM[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    unsigned char rnd[24];
    if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) {
        unsigned long long x = (unsigned long long)time(NULL) ^ (unsigned long long)(uintptr_t)out;
        for (size_t i = 0; i < sizeof rnd; i++) { x = x * 6364136223846793005ULL + 1442695040888963407ULL; rnd[i] = (unsigned char)(x >> 56); }
    }
    size_t n = (size_t)snprintf(out, cap, "%s", prefix);
    for (size_t i = 0; i < sizeof rnd && n + 1 < cap; i++) out[n++] = ALNUM[rnd[i] % (sizeof ALNUM - 1)];
    if (cap) out[n < cap ? n : cap - 1] = 0;
}

/* ---- per-request state -------------------------------------------------------------------------- */

typedef struct oai_call {
    char  id[64];
    char *name;
    sbuf  args;
} oai_call;

typedef struct oai_job {
    srv        *s;
    srv_job    *job;
    srv_request req;
    gen_prompt  prompt;
    bool        chat;
    char        id[64];
    long long   created;
    char       *model;
    /* non-streamed answer */
    sbuf        content, reasoning;
    oai_call   *calls;
    int         n_calls;
    json_t     *logprobs;      /* chat: array of entries; completion: the legacy object */
    size_t      text_offset;   /* completion logprobs: bytes of text so far */
    /* streamed: logprob entries not sent yet */
    json_t     *pending_lp;
} oai_job;

static void oai_job_free(void *p)
{
    oai_job *o = p;
    if (!o) return;
    req_free(&o->req);
    gen_prompt_free(&o->prompt);
    free(o->model);
    sb_free(&o->content);
    sb_free(&o->reasoning);
    for (int i = 0; i < o->n_calls; i++) { free(o->calls[i].name); sb_free(&o->calls[i].args); }
    free(o->calls);
    json_decref(o->logprobs);
    json_decref(o->pending_lp);
    free(o);
}

/* ---- JSON pieces -------------------------------------------------------------------------------- */

static json_t *usage_json(const oai_job *o, const gen_result *res)
{
    json_t *u = json_object();
    js_set(u, "prompt_tokens", json_integer(res->n_prompt));
    js_set(u, "completion_tokens", json_integer(res->n_gen));
    js_set(u, "total_tokens", json_integer(res->n_prompt + res->n_gen));
    if (o->chat) {
        json_t *pd = json_object(), *cd = json_object();
        js_set(pd, "cached_tokens", json_integer(res->n_cached));
        js_set(cd, "reasoning_tokens", json_integer(res->n_reasoning));
        js_set(u, "prompt_tokens_details", pd);
        js_set(u, "completion_tokens_details", cd);
    }
    return u;
}

static json_t *timings_json(const gen_result *res)
{
    json_t *t = json_object();
    js_set(t, "prompt_n", json_integer(res->n_prompt));
    js_set(t, "prompt_ms", json_real(res->prompt_s * 1e3));
    js_set(t, "prompt_per_second", json_real(res->prompt_s > 0 ? res->n_prompt / res->prompt_s : 0));
    js_set(t, "predicted_n", json_integer(res->n_gen));
    js_set(t, "predicted_ms", json_real(res->gen_s * 1e3));
    js_set(t, "predicted_per_second", json_real(res->gen_s > 0 ? res->n_gen / res->gen_s : 0));
    return t;
}

static const char *finish_name(int finish)
{
    switch (finish) {
    case GEN_FINISH_LENGTH: return "length";
    case GEN_FINISH_TOOL_CALLS: return "tool_calls";
    default: return "stop";
    }
}

static json_t *bytes_json(const char *s, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer((unsigned char)s[i]));
    return a;
}

static json_t *top_entry(const gen_top *t, bool with_top)
{
    json_t *e = json_object();
    js_set(e, "token", js_strn(t->text, t->len));
    js_set(e, "logprob", json_real(t->logprob));
    js_set(e, "bytes", bytes_json(t->text, t->len));
    if (with_top) js_set(e, "top_logprobs", json_array());
    return e;
}

/* The envelope shared by every chunk / response. */
static json_t *envelope(const oai_job *o, const char *object)
{
    json_t *c = json_object();
    js_set(c, "id", json_string(o->id));
    js_set(c, "object", json_string(object));
    js_set(c, "created", json_integer(o->created));
    js_set(c, "model", js_str(o->model));
    js_set(c, "system_fingerprint", json_string("arbor"));
    return c;
}

static void write_json_frame(oai_job *o, json_t *v)
{
    char *s = js_dump(v);
    if (!s) return;
    srv_job_write(o->job, "data: ", 6);
    srv_job_write(o->job, s, strlen(s));
    srv_job_write(o->job, "\n\n", 2);
    free(s);
}

/* One stream chunk. delta (taken) is the chat delta or, for completions, the text (a JSON string). */
static void send_chunk(oai_job *o, json_t *delta, const char *finish, const gen_result *res)
{
    json_t *c = envelope(o, o->chat ? "chat.completion.chunk" : "text_completion");
    json_t *choice = json_object();
    js_set(choice, "index", json_integer(0));
    if (o->chat) js_set(choice, "delta", delta);
    else js_set(choice, "text", delta);
    json_t *lp = json_null();
    if (o->pending_lp && json_array_size(o->pending_lp)) {
        if (o->chat) {
            lp = json_object();
            js_set(lp, "content", o->pending_lp);
            o->pending_lp = json_array();
        }
    }
    js_set(choice, "logprobs", lp);
    js_set(choice, "finish_reason", finish ? json_string(finish) : json_null());
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    js_set(c, "choices", choices);
    if (o->req.include_usage) js_set(c, "usage", json_null());
    if (res) js_set(c, "timings", timings_json(res));
    write_json_frame(o, c);
    json_decref(c);
}

/* ---- generation events -------------------------------------------------------------------------- */

static void ev_text(oai_job *o, const char *key, sbuf *acc, const char *text, size_t len)
{
    if (!o->req.stream) { sb_put(acc, text, len); return; }
    if (!o->chat) { send_chunk(o, js_strn(text, len), NULL, NULL); return; }
    json_t *d = json_object();
    js_set(d, key, js_strn(text, len));
    send_chunk(o, d, NULL, NULL);
}

static void ev_reasoning(void *user, const char *text, size_t len)
{
    oai_job *o = user;
    ev_text(o, "reasoning_content", &o->reasoning, text, len);
}

static void ev_content(void *user, const char *text, size_t len)
{
    oai_job *o = user;
    ev_text(o, "content", &o->content, text, len);
}

static json_t *tool_delta(int index, const char *id, const char *name, const char *args, size_t args_len)
{
    json_t *fn = json_object();
    if (name) js_set(fn, "name", js_str(name));
    js_set(fn, "arguments", js_strn(args, args_len));
    json_t *call = json_object();
    js_set(call, "index", json_integer(index));
    if (id) {
        js_set(call, "id", js_str(id));
        js_set(call, "type", json_string("function"));
    }
    js_set(call, "function", fn);
    json_t *calls = json_array();
    json_array_append_new(calls, call);
    json_t *d = json_object();
    js_set(d, "tool_calls", calls);
    return d;
}

static void ev_tool_begin(void *user, int index, const char *id, const char *name)
{
    oai_job *o = user;
    if (o->req.stream) { send_chunk(o, tool_delta(index, id, name, "", 0), NULL, NULL); return; }
    oai_call *c = realloc(o->calls, (size_t)(o->n_calls + 1) * sizeof *c);
    if (!c) return;
    o->calls = c;
    c = &c[o->n_calls++];
    *c = (oai_call){ .name = strdup(name ? name : "") };
    snprintf(c->id, sizeof c->id, "%s", id ? id : "");
}

static void ev_tool_args(void *user, int index, const char *json, size_t len)
{
    oai_job *o = user;
    if (o->req.stream) { send_chunk(o, tool_delta(index, NULL, NULL, json, len), NULL, NULL); return; }
    if (index >= 0 && index < o->n_calls) sb_put(&o->calls[index].args, json, len);
}

static void ev_logprob(void *user, const gen_logprob *lp)
{
    oai_job *o = user;
    if (o->chat) {
        json_t *e = top_entry(&lp->chosen, false);
        json_t *tops = json_array();
        for (int i = 0; i < lp->n_top; i++) json_array_append_new(tops, top_entry(&lp->top[i], false));
        js_set(e, "top_logprobs", tops);
        if (o->req.stream) {
            if (!o->pending_lp) o->pending_lp = json_array();
            json_array_append_new(o->pending_lp, e);
        } else {
            if (!o->logprobs) o->logprobs = json_array();
            json_array_append_new(o->logprobs, e);
        }
        return;
    }
    /* legacy completions: {tokens, token_logprobs, top_logprobs: [{token: logprob}], text_offset} */
    if (o->req.stream) return;   /* not streamed for completions */
    if (!o->logprobs) {
        o->logprobs = json_object();
        js_set(o->logprobs, "tokens", json_array());
        js_set(o->logprobs, "token_logprobs", json_array());
        js_set(o->logprobs, "top_logprobs", json_array());
        js_set(o->logprobs, "text_offset", json_array());
    }
    json_array_append_new(json_object_get(o->logprobs, "tokens"), js_strn(lp->chosen.text, lp->chosen.len));
    json_array_append_new(json_object_get(o->logprobs, "token_logprobs"), json_real(lp->chosen.logprob));
    json_t *top = json_object();
    for (int i = 0; i < lp->n_top; i++) {
        json_t *k = js_strn(lp->top[i].text, lp->top[i].len);
        json_object_set_new(top, json_string_value(k), json_real(lp->top[i].logprob));
        json_decref(k);
    }
    json_array_append_new(json_object_get(o->logprobs, "top_logprobs"), top);
    json_array_append_new(json_object_get(o->logprobs, "text_offset"), json_integer((json_int_t)o->text_offset));
    o->text_offset += lp->chosen.len;
}


/* ---- answers ------------------------------------------------------------------------------------ */

static char *full_response(oai_job *o, const gen_result *res)
{
    json_t *c = envelope(o, o->chat ? "chat.completion" : "text_completion");
    json_t *choice = json_object();
    js_set(choice, "index", json_integer(0));
    const char *text = o->content.p ? o->content.p : "";
    if (o->chat) {
        json_t *msg = json_object();
        js_set(msg, "role", json_string("assistant"));
        js_set(msg, "content", o->n_calls && !o->content.n ? json_null() : js_strn(text, o->content.n));
        if (o->reasoning.n) js_set(msg, "reasoning_content", js_strn(o->reasoning.p, o->reasoning.n));
        if (o->n_calls) {
            json_t *calls = json_array();
            for (int i = 0; i < o->n_calls; i++) {
                json_t *fn = json_object(), *call = json_object();
                js_set(fn, "name", js_str(o->calls[i].name));
                js_set(fn, "arguments", js_strn(o->calls[i].args.p ? o->calls[i].args.p : "{}",
                                                 o->calls[i].args.p ? o->calls[i].args.n : 2));
                js_set(call, "id", js_str(o->calls[i].id));
                js_set(call, "type", json_string("function"));
                js_set(call, "function", fn);
                json_array_append_new(calls, call);
            }
            js_set(msg, "tool_calls", calls);
        }
        js_set(choice, "message", msg);
        json_t *lp = json_null();
        if (o->req.logprobs) {
            lp = json_object();
            js_set(lp, "content", o->logprobs ? json_incref(o->logprobs) : json_array());
        }
        js_set(choice, "logprobs", lp);
    } else {
        js_set(choice, "text", js_strn(text, o->content.n));
        js_set(choice, "logprobs", o->req.logprobs && o->logprobs ? json_incref(o->logprobs) : json_null());
    }
    js_set(choice, "finish_reason", json_string(finish_name(res->finish)));
    json_t *choices = json_array();
    json_array_append_new(choices, choice);
    js_set(c, "choices", choices);
    js_set(c, "usage", usage_json(o, res));
    js_set(c, "timings", timings_json(res));
    char *s = js_dump(c);
    json_decref(c);
    return s;
}

static void job_done(srv_job *j, void *user, int rc, const gen_result *gres, const ar_error *errp)
{
    gen_result res = *gres;
    ar_error err = *errp;
    oai_job *o = user;
    o->job = j;
    if (rc) {
        srv_job_failed(j);
        api_error e;
        api_fail(&e, 500, "server_error", NULL, NULL, "generation failed: %s", err.msg);
        char *body = api_error_openai(&e);
        if (o->req.stream) {
            if (body) {
                srv_job_write(j, "data: ", 6);
                srv_job_write(j, body, strlen(body));
                srv_job_write(j, "\n\n", 2);
            }
            free(body);
        } else {
            srv_job_reply(j, 500, body);
        }
        return;
    }
    srv_job_account(j, &res);
    if (res.finish == GEN_FINISH_CANCELLED) return;
    if (!o->req.stream) {
        char *body = full_response(o, &res);
        srv_job_reply(j, body ? 200 : 500, body);
        return;
    }
    send_chunk(o, o->chat ? json_object() : json_string(""), finish_name(res.finish), &res);
    if (o->req.include_usage) {
        json_t *c = envelope(o, o->chat ? "chat.completion.chunk" : "text_completion");
        js_set(c, "choices", json_array());
        js_set(c, "usage", usage_json(o, &res));
        write_json_frame(o, c);
        json_decref(c);
    }
    srv_job_write(j, "data: [DONE]\n\n", 14);
}

/* ---- handlers ----------------------------------------------------------------------------------- */

static void handle_generate(srv *s, http_req *r, bool chat)
{
    api_error e;
    if (srv_check_ready(s, &e)) { http_reply_error(r, &e); return; }
    size_t len;
    const char *body = http_body(r, &len);
    json_t *root = js_parse_body(body, len, &e);
    if (!root) { http_reply_error(r, &e); return; }
    oai_job *o = calloc(1, sizeof *o);
    if (!o) {
        json_decref(root);
        api_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
        http_reply_error(r, &e);
        return;
    }
    o->s = s;
    o->chat = chat;
    req_init(&o->req);
    int rc = chat ? req_parse_chat(root, &o->req, &e) : req_parse_completion(root, &o->req, &e);
    json_decref(root);
    o->req.chat_family = srv_chat_family(s);
    if (!rc) rc = gen_prepare(srv_model(s), srv_n_ctx(s), &o->req, &o->prompt, &e);
    o->req.script = srv_script(s);
    if (rc) { oai_job_free(o); http_reply_error(r, &e); return; }
    oai_new_id(o->id, sizeof o->id, chat ? "chatcmpl-" : "cmpl-");
    o->created = (long long)time(NULL);
    o->model = strdup(o->req.model ? o->req.model : srv_model_name(s));
    gen_sink sink = {
        .user = o, .reasoning = ev_reasoning, .content = ev_content, .tool_call_begin = ev_tool_begin,
        .tool_call_args = ev_tool_args, .logprob = o->req.logprobs ? ev_logprob : NULL,
    };
    srv_job *j = srv_job_new(s, &o->req, &o->prompt, &sink, job_done, o, oai_job_free);
    if (!j || !o->model) {
        if (j) srv_job_free_unsubmitted(j);
        else oai_job_free(o);
        api_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
        http_reply_error(r, &e);
        return;
    }
    o->job = j;
    if (o->req.stream && chat) {
        /* the response starts now, even if the job waits in the queue */
        json_t *d = json_object();
        js_set(d, "role", json_string("assistant"));
        js_set(d, "content", json_string(""));
        send_chunk(o, d, NULL, NULL);
    }
    srv_submit(s, r, j, o->req.stream);
}

static void handle_chat(void *user, http_req *r) { handle_generate(user, r, true); }
static void handle_completions(void *user, http_req *r) { handle_generate(user, r, false); }

static void reply_json_value(http_req *r, int status, json_t *v)
{
    char *s = js_dump(v);
    json_decref(v);
    if (!s) {
        api_error e;
        api_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
        http_reply_error(r, &e);
        return;
    }
    http_reply_json(r, status, s);
    free(s);
}

static void handle_models(void *user, http_req *r)
{
    srv *s = user;
    api_error e;
    if (srv_check_ready(s, &e)) { http_reply_error(r, &e); return; }
    const ar_model *m = srv_model(s);
    json_t *model = json_object();
    js_set(model, "id", js_str(srv_model_name(s)));
    js_set(model, "object", json_string("model"));
    js_set(model, "created", json_integer((json_int_t)time(NULL)));
    js_set(model, "owned_by", json_string("arbor"));
    js_set(model, "context_length", json_integer(srv_n_ctx(s)));
    js_set(model, "max_context_length", json_integer(srv_n_ctx(s)));
    json_t *meta = json_object();
    js_set(meta, "n_ctx", json_integer(srv_n_ctx(s)));
    js_set(meta, "n_ctx_train", json_integer(srv_n_ctx_train(s)));
    js_set(meta, "n_vocab", json_integer(ar_model_n_vocab(m)));
    js_set(model, "meta", meta);
    json_t *data = json_array();
    json_array_append_new(data, model);
    json_t *root = json_object();
    js_set(root, "object", json_string("list"));
    js_set(root, "data", data);
    reply_json_value(r, 200, root);
}

/* Parse the body, or answer the error and return NULL. */
static json_t *body_json(srv *s, http_req *r)
{
    api_error e;
    if (srv_check_ready(s, &e)) { http_reply_error(r, &e); return NULL; }
    size_t len;
    const char *body = http_body(r, &len);
    json_t *root = js_parse_body(body, len, &e);
    if (!root) http_reply_error(r, &e);
    return root;
}

static void handle_tokenize(void *user, http_req *r)
{
    srv *s = user;
    json_t *root = body_json(s, r);
    if (!root) return;
    api_error e;
    const char *content = NULL;
    bool parse_special = true, with_pieces = false;
    if (js_string(root, "content", NULL, &content, &e) < 0 || js_bool(root, "parse_special", NULL, &parse_special, &e) < 0 ||
        js_bool(root, "with_pieces", NULL, &with_pieces, &e) < 0) {
        json_decref(root);
        http_reply_error(r, &e);
        return;
    }
    if (!content) {
        json_decref(root);
        api_bad(&e, "content", "'content' is required");
        http_reply_error(r, &e);
        return;
    }
    const ar_model *m = srv_model(s);
    int32_t *ids = NULL;
    size_t n = 0;
    ar_error err = { 0 };
    if (ar_model_tokenize(m, content, strlen(content), parse_special, &ids, &n, &err)) {
        json_decref(root);
        api_bad(&e, "content", "%s", err.msg);
        http_reply_error(r, &e);
        return;
    }
    json_decref(root);
    json_t *tokens = json_array();
    char piece[1024];
    for (size_t i = 0; i < n; i++) {
        if (!with_pieces) { json_array_append_new(tokens, json_integer(ids[i])); continue; }
        size_t k = ar_token_to_bytes(ar_model_vocab(m), ids[i], true, piece, sizeof piece);
        json_t *t = json_object();
        js_set(t, "id", json_integer(ids[i]));
        js_set(t, "piece", js_strn(piece, k < sizeof piece ? k : sizeof piece));
        json_array_append_new(tokens, t);
    }
    free(ids);
    json_t *out = json_object();
    js_set(out, "tokens", tokens);
    reply_json_value(r, 200, out);
}

static void handle_detokenize(void *user, http_req *r)
{
    srv *s = user;
    json_t *root = body_json(s, r);
    if (!root) return;
    api_error e;
    json_t *tokens;
    if (!js_value(root, "tokens", &tokens) || !json_is_array(tokens)) {
        json_decref(root);
        api_bad(&e, "tokens", "'tokens' must be an array of token ids");
        http_reply_error(r, &e);
        return;
    }
    const ar_model *m = srv_model(s);
    const ar_vocab *v = ar_model_vocab(m);
    sbuf text = { 0 };
    ar_detok dt = { 0 };
    size_t cap = 3 * ar_vocab_max_piece(v) + 16;
    char *piece = malloc(cap);
    size_t i;
    json_t *t;
    bool bad = false;
    json_array_foreach(tokens, i, t) {
        if (!json_is_integer(t) || json_integer_value(t) < 0 || json_integer_value(t) >= ar_model_n_vocab(m)) {
            char p[64];
            js_path_index(p, sizeof p, "tokens", i);
            api_bad(&e, p, "'%s' is not a token id of this model", p);
            bad = true;
            break;
        }
        if (piece) sb_put(&text, piece, ar_detok_push(&dt, v, (int32_t)json_integer_value(t), true, piece, cap));
    }
    if (piece && !bad) sb_put(&text, piece, ar_detok_flush(&dt, piece, cap));
    free(piece);
    json_decref(root);
    if (bad) { sb_free(&text); http_reply_error(r, &e); return; }
    json_t *out = json_object();
    js_set(out, "content", js_strn(text.p ? text.p : "", text.n));
    sb_free(&text);
    reply_json_value(r, 200, out);
}

static void handle_apply_template(void *user, http_req *r)
{
    srv *s = user;
    json_t *root = body_json(s, r);
    if (!root) return;
    api_error e;
    srv_request req;
    req_init(&req);
    char *text = NULL;
    int rc = req_parse_chat(root, &req, &e);
    json_decref(root);
    req.chat_family = srv_chat_family(s);
    if (!rc) rc = gen_render_chat(&req, &text, &e);
    req_free(&req);
    if (rc) { http_reply_error(r, &e); return; }
    json_t *out = json_object();
    js_set(out, "prompt", js_str(text));
    free(text);
    reply_json_value(r, 200, out);
}

int openai_register(srv *s, http_server *h)
{
    static const struct { const char *method, *path; http_handler fn; } routes[] = {
        { "POST", "/v1/chat/completions", handle_chat },
        { "POST", "/chat/completions", handle_chat },
        { "POST", "/v1/completions", handle_completions },
        { "POST", "/completions", handle_completions },
        { "GET", "/v1/models", handle_models },
        { "GET", "/models", handle_models },
        { "POST", "/tokenize", handle_tokenize },
        { "POST", "/detokenize", handle_detokenize },
        { "POST", "/apply-template", handle_apply_template },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = http_route(h, routes[i].method, routes[i].path, routes[i].fn, s, NULL, false);
        if (rc) return rc;
    }
    return 0;
}
