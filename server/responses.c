/* server/responses.c — OpenAI Responses endpoints (see responses.h): handlers that translate
 * (request_responses.c) and prepare on the connection's thread, answering client errors there, and
 * the writer that turns generation events (gen_sink) into output items on the worker thread.
 *
 * Items: generation events open output items in order — reasoning -> a reasoning item (id "rs_...",
 * content [{type reasoning_text}], summary []), content -> a message item (id "msg_...", content
 * [{type output_text, annotations []}]), a tool call -> a function_call item (id "fc_" and call_id
 * "call_" + the same random part, so the ids seen while streaming are the ids in the final
 * response). An item stays open while events of its kind continue; any other event closes it. The
 * same item list is the non-streamed answer's output and the stream's events. When generation
 * produced nothing, the output is one empty message.
 *
 * Stream: "event: TYPE\ndata: {"type":TYPE,...,"sequence_number":n}\n\n" frames, n counting from 0.
 * response.created and response.in_progress are written when the request is queued (the client sees
 * the response begin at once); then per item: response.output_item.added, for reasoning and
 * messages response.content_part.added, deltas (response.reasoning_text.delta,
 * response.output_text.delta, response.function_call_arguments.delta), the matching .done events,
 * response.content_part.done and response.output_item.done; and last response.completed with the
 * whole response (output and usage). A response cut by max_output_tokens (or a full context) ends
 * instead with response.incomplete, as the OpenAI API sends it: the whole response with status
 * "incomplete" and incomplete_details.reason "max_output_tokens", as in the non-streamed answer. Clients
 * treat it as they do with the OpenAI API: the OpenAI SDKs end the stream with that response, Codex
 * reports "Incomplete response returned, reason: max_output_tokens". An engine failure mid-stream
 * ends with response.failed (status "failed", error.code "server_error"). */
#include "server/responses.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "server/gen.h"
#include "server/openai.h"
#include "server/request.h"

/* ---- per-request state -------------------------------------------------------------------------- */

enum { ITEM_REASONING, ITEM_MESSAGE, ITEM_CALL };

typedef struct rs_item {
    int   kind;
    char  id[64];
    char  call_id[64];   /* function_call */
    char *name;          /* function_call */
    sbuf  text;          /* reasoning / message text, or the call's arguments */
    bool  complete;      /* closed by the model (a call's end, or an item followed by another) */
} rs_item;

typedef struct rs_job {
    srv        *s;
    srv_job    *job;
    srv_request req;
    gen_prompt  prompt;
    char        id[64];
    long long   created;
    char       *model;
    json_t     *echo;     /* request fields the response object repeats (instructions, tools, ...) */
    rs_item    *items;
    int         n_items;
    bool        open;     /* the last item is open */
    long long   seq;      /* next sequence_number */
} rs_job;

static void rs_job_free(void *p)
{
    rs_job *o = p;
    if (!o) return;
    req_free(&o->req);
    gen_prompt_free(&o->prompt);
    free(o->model);
    json_decref(o->echo);
    for (int i = 0; i < o->n_items; i++) { free(o->items[i].name); sb_free(&o->items[i].text); }
    free(o->items);
    free(o);
}

/* ---- JSON pieces -------------------------------------------------------------------------------- */

static json_t *text_of(const rs_item *it, bool full)
{
    return full && it->text.p ? js_strn(it->text.p, it->text.n) : json_string("");
}

static json_t *part_json(const rs_item *it, bool full)
{
    json_t *p = json_object();
    if (it->kind == ITEM_REASONING) {
        js_set(p, "type", json_string("reasoning_text"));
        js_set(p, "text", text_of(it, full));
    } else {
        js_set(p, "type", json_string("output_text"));
        js_set(p, "text", text_of(it, full));
        js_set(p, "annotations", json_array());
        js_set(p, "logprobs", json_array());
    }
    return p;
}

/* The item as output_item.added shows it (full false: empty, in progress) or as it ends. */
static json_t *item_json(const rs_item *it, bool full)
{
    const char *status = !full ? "in_progress" : it->complete ? "completed" : "incomplete";
    json_t *j = json_object();
    js_set(j, "id", json_string(it->id));
    switch (it->kind) {
    case ITEM_REASONING: {
        js_set(j, "type", json_string("reasoning"));
        js_set(j, "summary", json_array());
        json_t *content = json_array();
        if (full) json_array_append_new(content, part_json(it, true));
        js_set(j, "content", content);
        js_set(j, "encrypted_content", json_null());
        js_set(j, "status", json_string(status));
        break;
    }
    case ITEM_MESSAGE: {
        js_set(j, "type", json_string("message"));
        js_set(j, "role", json_string("assistant"));
        js_set(j, "status", json_string(status));
        json_t *content = json_array();
        if (full) json_array_append_new(content, part_json(it, true));
        js_set(j, "content", content);
        break;
    }
    default:
        js_set(j, "type", json_string("function_call"));
        js_set(j, "status", json_string(status));
        js_set(j, "call_id", json_string(it->call_id));
        js_set(j, "name", js_str(it->name));
        js_set(j, "arguments", full && it->text.n ? js_strn(it->text.p, it->text.n) : json_string(full ? "{}" : ""));
        break;
    }
    return j;
}

static json_t *usage_json(const gen_result *res)
{
    json_t *u = json_object();
    js_set(u, "input_tokens", json_integer(res->n_prompt));
    js_set(u, "input_tokens_details", json_pack("{s:i}", "cached_tokens", 0));
    js_set(u, "output_tokens", json_integer(res->n_gen));
    js_set(u, "output_tokens_details", json_pack("{s:i}", "reasoning_tokens", res->n_reasoning));
    js_set(u, "total_tokens", json_integer(res->n_prompt + res->n_gen));
    return u;
}

/* The response object. status: "in_progress", "completed", "incomplete" or "failed"; res (the
 * usage) NULL while in progress; error (taken) for "failed". */
static json_t *response_json(const rs_job *o, const char *status, const gen_result *res, json_t *error)
{
    json_t *r = json_object();
    js_set(r, "id", json_string(o->id));
    js_set(r, "object", json_string("response"));
    js_set(r, "created_at", json_integer(o->created));
    js_set(r, "status", json_string(status));
    js_set(r, "background", json_false());
    js_set(r, "error", error ? error : json_null());
    js_set(r, "incomplete_details",
           strcmp(status, "incomplete") ? json_null() : json_pack("{s:s}", "reason", "max_output_tokens"));
    if (res) js_set(r, "completed_at", json_integer((json_int_t)time(NULL)));
    js_set(r, "model", js_str(o->model));
    json_t *output = json_array();
    if (res || error)
        for (int i = 0; i < o->n_items; i++) json_array_append_new(output, item_json(&o->items[i], true));
    js_set(r, "output", output);
    json_object_update(r, o->echo);
    js_set(r, "usage", res ? usage_json(res) : json_null());
    return r;
}

/* ---- stream events ------------------------------------------------------------------------------ */

/* "event: <type>\ndata: <v>\n\n": v (taken) gets "type" first and "sequence_number" last. */
static void send_event(rs_job *o, const char *type, json_t *v)
{
    json_t *f = json_object();
    js_set(f, "type", json_string(type));
    json_object_update(f, v);
    json_decref(v);
    js_set(f, "sequence_number", json_integer(o->seq++));
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

/* An event about the last item: {item_id, output_index, [content_index 0], ...more}. */
static json_t *at_item(const rs_job *o, bool content_index)
{
    json_t *v = json_object();
    js_set(v, "item_id", json_string(o->items[o->n_items - 1].id));
    js_set(v, "output_index", json_integer(o->n_items - 1));
    if (content_index) js_set(v, "content_index", json_integer(0));
    return v;
}

static void item_event(rs_job *o, const char *type, const rs_item *it, bool full)
{
    json_t *v = json_object();
    js_set(v, "output_index", json_integer(o->n_items - 1));
    js_set(v, "item", item_json(it, full));
    send_event(o, type, v);
}

static void part_event(rs_job *o, const char *type, const rs_item *it, bool full)
{
    json_t *v = at_item(o, true);
    js_set(v, "part", part_json(it, full));
    send_event(o, type, v);
}

/* complete: the model finished the item (false when generation stopped inside it). */
static void close_item(rs_job *o, bool complete)
{
    if (!o->open) return;
    o->open = false;
    rs_item *it = &o->items[o->n_items - 1];
    it->complete = complete;
    if (!o->req.stream) return;
    json_t *v;
    switch (it->kind) {
    case ITEM_REASONING:
    case ITEM_MESSAGE:
        v = at_item(o, true);
        js_set(v, "text", text_of(it, true));
        if (it->kind == ITEM_MESSAGE) js_set(v, "logprobs", json_array());
        send_event(o, it->kind == ITEM_MESSAGE ? "response.output_text.done" : "response.reasoning_text.done", v);
        part_event(o, "response.content_part.done", it, true);
        break;
    default:
        v = at_item(o, false);
        js_set(v, "name", js_str(it->name));
        js_set(v, "arguments", it->text.n ? js_strn(it->text.p, it->text.n) : json_string("{}"));
        send_event(o, "response.function_call_arguments.done", v);
        break;
    }
    item_event(o, "response.output_item.done", it, true);
}

static rs_item *new_item(rs_job *o, int kind)
{
    close_item(o, true);
    rs_item *it = realloc(o->items, (size_t)(o->n_items + 1) * sizeof *it);
    if (!it) return NULL;
    o->items = it;
    it = &it[o->n_items++];
    *it = (rs_item){ .kind = kind };
    o->open = true;
    return it;
}

static void open_text_item(rs_job *o, rs_item *it)
{
    oai_new_id(it->id, sizeof it->id, it->kind == ITEM_MESSAGE ? "msg_" : "rs_");
    if (!o->req.stream) return;
    item_event(o, "response.output_item.added", it, false);
    part_event(o, "response.content_part.added", it, false);
}

/* ---- generation events -------------------------------------------------------------------------- */

static void ev_text(rs_job *o, int kind, const char *text, size_t len)
{
    rs_item *it = o->open && o->items[o->n_items - 1].kind == kind ? &o->items[o->n_items - 1] : NULL;
    if (!it) {
        if (!(it = new_item(o, kind))) return;
        open_text_item(o, it);
    }
    sb_put(&it->text, text, len);
    if (!o->req.stream) return;
    json_t *v = at_item(o, true);
    js_set(v, "delta", js_strn(text, len));
    if (kind == ITEM_MESSAGE) js_set(v, "logprobs", json_array());
    send_event(o, kind == ITEM_MESSAGE ? "response.output_text.delta" : "response.reasoning_text.delta", v);
}

static void ev_reasoning(void *user, const char *text, size_t len) { ev_text(user, ITEM_REASONING, text, len); }
static void ev_content(void *user, const char *text, size_t len) { ev_text(user, ITEM_MESSAGE, text, len); }

static void ev_tool_begin(void *user, int index, const char *id, const char *name)
{
    rs_job *o = user;
    (void)index;
    rs_item *it = new_item(o, ITEM_CALL);
    if (!it) return;
    const char *rnd = id && !strncmp(id, "call_", 5) && id[5] ? id + 5 : NULL;
    if (rnd) {
        snprintf(it->call_id, sizeof it->call_id, "call_%s", rnd);
        snprintf(it->id, sizeof it->id, "fc_%s", rnd);
    } else {
        oai_new_id(it->call_id, sizeof it->call_id, "call_");
        snprintf(it->id, sizeof it->id, "fc_%s", it->call_id + 5);
    }
    it->name = strdup(name ? name : "");
    if (o->req.stream) item_event(o, "response.output_item.added", it, false);
}

static void ev_tool_args(void *user, int index, const char *json, size_t len)
{
    rs_job *o = user;
    (void)index;
    if (!o->open || o->items[o->n_items - 1].kind != ITEM_CALL) return;
    sb_put(&o->items[o->n_items - 1].text, json, len);
    if (!o->req.stream) return;
    json_t *v = at_item(o, false);
    js_set(v, "delta", js_strn(json, len));
    send_event(o, "response.function_call_arguments.delta", v);
}

static void ev_tool_end(void *user, int index)
{
    rs_job *o = user;
    (void)index;
    if (o->open && o->items[o->n_items - 1].kind == ITEM_CALL) close_item(o, true);
}


/* ---- answers ------------------------------------------------------------------------------------ */

static void on_job_error(srv_job *j, void *user, const api_error *e)
{
    rs_job *o = user;
    if (!o->req.stream) { srv_job_reply(j, e->status, api_error_openai(e)); return; }
    json_t *err = json_object();
    js_set(err, "code", json_string("server_error"));
    js_set(err, "message", js_str(e->message));
    json_t *v = json_object();
    js_set(v, "response", response_json(o, "failed", NULL, err));
    send_event(o, "response.failed", v);
}

static void job_done(srv_job *j, void *user, int rc, const gen_result *gres, const ar_error *errp)
{
    gen_result res = *gres;
    ar_error err = *errp;
    rs_job *o = user;
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
    bool cut = res.finish == GEN_FINISH_LENGTH;
    close_item(o, !cut);
    if (o->n_items == 0) {   /* nothing generated: one empty message */
        rs_item *it = new_item(o, ITEM_MESSAGE);
        if (it) {
            open_text_item(o, it);
            close_item(o, !cut);
        }
    }
    json_t *resp = response_json(o, cut ? "incomplete" : "completed", &res, NULL);
    if (!o->req.stream) {
        char *body = js_dump(resp);
        json_decref(resp);
        srv_job_reply(j, body ? 200 : 500, body);
        return;
    }
    json_t *v = json_object();
    js_set(v, "response", resp);
    send_event(o, cut ? "response.incomplete" : "response.completed", v);
}

/* ---- handlers ----------------------------------------------------------------------------------- */

static void reply_oom(http_req *r)
{
    api_error e;
    api_fail(&e, 500, "server_error", NULL, NULL, "out of memory");
    http_reply_error(r, &e);
}

/* A float parameter as the client wrote it (0.95, not 0.949999988). */
static json_t *param_real(float x)
{
    char buf[32];
    snprintf(buf, sizeof buf, "%.6g", (double)x);
    return json_real(strtod(buf, NULL));
}

/* Request fields the response object repeats, as the Responses API does. */
static json_t *echo_fields(json_t *root, const srv_request *r)
{
    json_t *v, *e = json_object();
    js_set(e, "instructions", js_value(root, "instructions", &v) && json_is_string(v) ? json_incref(v) : json_null());
    js_set(e, "max_output_tokens", r->max_tokens > 0 ? json_integer(r->max_tokens) : json_null());
    js_set(e, "metadata", js_value(root, "metadata", &v) ? json_incref(v) : json_object());
    js_set(e, "parallel_tool_calls", json_boolean(r->parallel_tool_calls));
    js_set(e, "previous_response_id", json_null());
    js_set(e, "reasoning", js_value(root, "reasoning", &v) ? json_incref(v)
                                                           : json_pack("{s:n, s:n}", "effort", "summary"));
    js_set(e, "store", json_false());
    js_set(e, "temperature", param_real(r->sampling.temp));
    js_set(e, "text", js_value(root, "text", &v) ? json_incref(v) : json_pack("{s:{s:s}}", "format", "type", "text"));
    js_set(e, "tool_choice", js_value(root, "tool_choice", &v) ? json_incref(v) : json_string("auto"));
    js_set(e, "tools", js_value(root, "tools", &v) ? json_incref(v) : json_array());
    js_set(e, "top_p", param_real(r->sampling.top_p));
    js_set(e, "truncation", json_string("disabled"));
    return e;
}

static void handle_responses(void *user, http_req *r)
{
    srv *s = user;
    api_error e;
    if (srv_check_ready(s, &e)) { http_reply_error(r, &e); return; }
    size_t len;
    const char *body = http_body(r, &len);
    json_t *root = js_parse_body(body, len, &e);
    if (!root) { http_reply_error(r, &e); return; }
    rs_job *o = calloc(1, sizeof *o);
    if (!o) { json_decref(root); reply_oom(r); return; }
    o->s = s;
    req_init(&o->req);
    int rc = req_parse_responses(root, &o->req, &e);
    if (!rc) o->echo = echo_fields(root, &o->req);
    json_decref(root);
    o->req.chat_family = srv_chat_family(s);
    if (!rc) rc = gen_prepare(srv_model(s), srv_n_ctx(s), &o->req, &o->prompt, &e);
    o->req.script = srv_script(s);
    if (rc) { rs_job_free(o); http_reply_error(r, &e); return; }
    oai_new_id(o->id, sizeof o->id, "resp_");
    o->created = (long long)time(NULL);
    o->model = strdup(o->req.model ? o->req.model : srv_model_name(s));
    gen_sink sink = {
        .user = o, .reasoning = ev_reasoning, .content = ev_content, .tool_call_begin = ev_tool_begin,
        .tool_call_args = ev_tool_args, .tool_call_end = ev_tool_end,
    };
    srv_job *j = srv_job_new(s, &o->req, &o->prompt, &sink, job_done, o, rs_job_free);
    if (!j || !o->model || !o->echo) {
        if (j) srv_job_free_unsubmitted(j);
        else rs_job_free(o);
        reply_oom(r);
        return;
    }
    o->job = j;
    srv_job_set_error(j, on_job_error);
    if (o->req.stream) {
        /* the response starts now, even if the job waits in the queue */
        json_t *v = json_object();
        js_set(v, "response", response_json(o, "in_progress", NULL, NULL));
        send_event(o, "response.created", v);
        v = json_object();
        js_set(v, "response", response_json(o, "in_progress", NULL, NULL));
        send_event(o, "response.in_progress", v);
    }
    srv_submit(s, r, j, o->req.stream);
}

static void handle_input_tokens(void *user, http_req *r)
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
    int rc = req_parse_responses(root, &req, &e);
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
        api_bad(&e, "input", "cannot tokenize the prompt: %s", err.msg);
        http_reply_error(r, &e);
        return;
    }
    char out[96];
    snprintf(out, sizeof out, "{\"object\":\"response.input_tokens\",\"input_tokens\":%zu}", n);
    http_reply_json(r, 200, out);
}

int responses_register(srv *s, http_server *h)
{
    static const struct { const char *path; http_handler fn; } routes[] = {
        { "/v1/responses", handle_responses },
        { "/responses", handle_responses },
        { "/v1/responses/input_tokens", handle_input_tokens },
        { "/responses/input_tokens", handle_input_tokens },
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        int rc = http_route(h, "POST", routes[i].path, routes[i].fn, s, NULL, false);
        if (rc) return rc;
    }
    return 0;
}
