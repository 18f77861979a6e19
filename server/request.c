/* server/request.c — the internal request's builders and shared field rules, and the OpenAI request
 * bodies (chat completions, completions) -> srv_request (see request.h). The Anthropic and Responses
 * translators live in request_anthropic.c and request_responses.c and build on the same helpers.
 *
 * Rules: unknown fields are ignored (clients send many); JSON null means "absent"; a field of the
 * wrong type or out of range is a 400 whose param names it ("messages[1].content[0].type").
 * System and developer messages are gathered, in order, into one system message at the front: the
 * Qwen template accepts a system message only first, and agent clients send several. */
#include "server/request.h"

#include <stdlib.h>
#include <string.h>

#define P_MAX 160

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int oom(api_error *e) { return api_fail(e, 500, "server_error", NULL, NULL, "out of memory"); }

ar_sampler_params req_default_sampling(void)
{
    ar_sampler_params p = ar_sampler_defaults();
    p.temp = 1.0f;
    p.top_p = 0.95f;
    p.top_k = 20;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.presence_penalty = 0.0f;
    p.frequency_penalty = 0.0f;
    p.seed = AR_SEED_RANDOM;
    return p;
}

void req_init(srv_request *r)
{
    *r = (srv_request){ 0 };
    r->max_tokens = -1;
    r->sampling = req_default_sampling();
    r->enable_thinking = true;
    r->parallel_tool_calls = true;
}

static void free_msg(req_msg *m)
{
    free(m->role);
    free(m->content);
    free(m->reasoning);
    free(m->tool_call_id);
    for (int i = 0; i < m->n_tool_calls; i++) {
        free(m->tool_calls[i].id);
        free(m->tool_calls[i].name);
        free(m->tool_calls[i].arguments);
    }
    free(m->tool_calls);
}

void req_free(srv_request *r)
{
    if (!r) return;
    for (int i = 0; i < r->n_msgs; i++) free_msg(&r->msgs[i]);
    free(r->msgs);
    for (int i = 0; i < r->n_tools; i++) { free(r->tools[i].name); free(r->tools[i].json); }
    free(r->tools);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    free(r->model);
    free(r->tool_choice_name);
    free(r->prompt);
    free(r->prompt_ids);
    *r = (srv_request){ 0 };
}

/* ---- builders ----------------------------------------------------------------------------------- */

req_msg *req_add_msg(srv_request *r, const char *role, const char *content, api_error *e)
{
    if (r->n_msgs == r->cap_msgs) {
        int cap = r->cap_msgs ? 2 * r->cap_msgs : 8;
        req_msg *m = realloc(r->msgs, (size_t)cap * sizeof *m);
        if (!m) { oom(e); return NULL; }
        r->msgs = m;
        r->cap_msgs = cap;
    }
    req_msg *m = &r->msgs[r->n_msgs];
    *m = (req_msg){ .role = strdup(role), .content = dup_or_null(content) };
    if (!m->role || (content && !m->content)) { free_msg(m); oom(e); return NULL; }
    r->n_msgs++;
    return m;
}

req_tool_call *req_msg_add_call(req_msg *m, const char *id, const char *name, const char *arguments, api_error *e)
{
    req_tool_call *c = realloc(m->tool_calls, (size_t)(m->n_tool_calls + 1) * sizeof *c);
    if (!c) { oom(e); return NULL; }
    m->tool_calls = c;
    c = &c[m->n_tool_calls];
    *c = (req_tool_call){ .id = dup_or_null(id), .name = strdup(name), .arguments = dup_or_null(arguments) };
    if (!c->name || (id && !c->id) || (arguments && !c->arguments)) {
        free(c->id); free(c->name); free(c->arguments);
        oom(e);
        return NULL;
    }
    m->n_tool_calls++;
    return c;
}

int req_add_tool(srv_request *r, const char *name, const char *description, json_t *parameters, api_error *e)
{
    if (r->n_tools == r->cap_tools) {
        int cap = r->cap_tools ? 2 * r->cap_tools : 8;
        req_tool *t = realloc(r->tools, (size_t)cap * sizeof *t);
        if (!t) return oom(e);
        r->tools = t;
        r->cap_tools = cap;
    }
    json_t *fn = json_object();
    js_set(fn, "name", js_str(name));
    if (description) js_set(fn, "description", js_str(description));
    if (parameters) json_object_set(fn, "parameters", parameters);
    json_t *tool = json_object();
    js_set(tool, "type", json_string("function"));
    js_set(tool, "function", fn);
    char *text = js_dump(tool);
    json_decref(tool);
    char *nm = strdup(name);
    if (!text || !nm) { free(text); free(nm); return oom(e); }
    r->tools[r->n_tools++] = (req_tool){ .name = nm, .json = text };
    return 0;
}

int req_add_stop(srv_request *r, const char *s, api_error *e)
{
    if (!*s) return 0;
    char **st = realloc(r->stop, (size_t)(r->n_stop + 1) * sizeof *st);
    if (!st) return oom(e);
    r->stop = st;
    if (!(st[r->n_stop] = strdup(s))) return oom(e);
    r->n_stop++;
    return 0;
}

int req_args_text(json_t *args, const char *param, char **out, api_error *e)
{
    *out = NULL;
    if (!args || json_is_null(args)) return 0;
    if (json_is_string(args)) {
        /* the template re-serialises arguments, so they must be JSON; any JSON number, also one past 64-bit
         * integers, and strings holding \u0000 (a model may write either: tok/toolcall.c passes them through),
         * which the text keeps as written */
        json_error_t je;
        json_t *parsed = json_loads(json_string_value(args), JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL | JSON_ALLOW_NUL, &je);
        if (!parsed || !json_is_object(parsed)) {
            json_decref(parsed);
            return api_bad(e, param, "'%s' must hold a JSON object%s%s", param, parsed ? "" : ": ", parsed ? "" : je.text);
        }
        json_decref(parsed);
        *out = strdup(json_string_value(args));
    } else if (json_is_object(args)) {
        *out = js_dump(args);
    } else {
        return api_bad(e, param, "'%s' must be a string holding a JSON object", param);
    }
    return *out ? 0 : oom(e);
}

int req_insert_system(srv_request *r, const char *text, api_error *e)
{
    req_msg *s = req_add_msg(r, "system", text, e);
    if (!s) return -1;
    req_msg tmp = *s;
    memmove(&r->msgs[1], &r->msgs[0], (size_t)(r->n_msgs - 1) * sizeof *r->msgs);
    r->msgs[0] = tmp;
    return 0;
}

/* ---- shared fields ------------------------------------------------------------------------------ */

int req_parse_sampling(json_t *root, srv_request *r, api_error *e)
{
    ar_sampler_params *s = &r->sampling;
    double d;
    long long l;
    int rc;
    if ((rc = js_number(root, "temperature", NULL, 0, 1e4, &d, e)) < 0) return -1;
    if (rc) s->temp = (float)d;
    if ((rc = js_number(root, "top_p", NULL, 0, 1, &d, e)) < 0) return -1;
    if (rc) s->top_p = (float)d;
    if ((rc = js_int(root, "top_k", NULL, -1, 1 << 30, &l, e)) < 0) return -1;
    if (rc) s->top_k = l < 0 ? 0 : (int)l;
    if ((rc = js_number(root, "min_p", NULL, 0, 1, &d, e)) < 0) return -1;
    if (rc) s->min_p = (float)d;
    if ((rc = js_number(root, "presence_penalty", NULL, -2, 2, &d, e)) < 0) return -1;
    if (rc) s->presence_penalty = (float)d;
    if ((rc = js_number(root, "frequency_penalty", NULL, -2, 2, &d, e)) < 0) return -1;
    if (rc) s->frequency_penalty = (float)d;
    if ((rc = js_number(root, "repetition_penalty", NULL, 1e-3, 100, &d, e)) < 0) return -1;
    if (rc) s->repeat_penalty = (float)d;
    if ((rc = js_int(root, "repeat_last_n", NULL, -1, 1 << 24, &l, e)) < 0) return -1;
    if (rc) s->repeat_last_n = (int)l;
    if ((rc = js_int(root, "seed", NULL, -1, INT64_MAX, &l, e)) < 0) return -1;
    if (rc) s->seed = l < 0 ? AR_SEED_RANDOM : (uint64_t)l;
    return 0;
}

int req_parse_stop(json_t *root, const char *key, srv_request *r, api_error *e)
{
    json_t *v;
    if (!js_value(root, key, &v)) return 0;
    if (json_is_string(v)) return req_add_stop(r, json_string_value(v), e);
    if (!json_is_array(v)) return api_bad(e, key, "'%s' must be a string or an array of strings", key);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        char p[P_MAX];
        js_path_index(p, sizeof p, key, i);
        if (!json_is_string(s)) return api_bad(e, p, "'%s' must be a string", p);
        if (req_add_stop(r, json_string_value(s), e)) return -1;
    }
    return 0;
}

int req_content_text(json_t *value, const char *param, char **out, api_error *e)
{
    *out = NULL;
    if (!value || json_is_null(value)) return 0;
    if (json_is_string(value)) {
        if (!(*out = strdup(json_string_value(value)))) return oom(e);
        return 0;
    }
    if (!json_is_array(value)) return api_bad(e, param, "'%s' must be a string or an array of content parts", param);
    sbuf b = { 0 };
    sb_put(&b, "", 0);
    size_t i;
    json_t *part;
    json_array_foreach(value, i, part) {
        char p[P_MAX];
        js_path_index(p, sizeof p, param, i);
        if (json_is_string(part)) { sb_puts(&b, json_string_value(part)); continue; }
        if (!json_is_object(part)) { sb_free(&b); return api_bad(e, p, "'%s' must be a content part object", p); }
        const char *type = "text", *text = NULL;
        if (js_string(part, "type", p, &type, e) < 0 || js_string(part, "text", p, &text, e) < 0) {
            sb_free(&b);
            return -1;
        }
        if (!strcmp(type, "text") || !strcmp(type, "input_text") || !strcmp(type, "output_text")) {
            char tp[P_MAX];
            js_path(tp, sizeof tp, p, "text");
            if (!text) { sb_free(&b); return api_bad(e, tp, "'%s' is required for a text part", tp); }
            sb_puts(&b, text);
        } else {
            char tp[P_MAX];
            js_path(tp, sizeof tp, p, "type");
            sb_free(&b);
            return api_bad(e, tp, "content part type '%s' is not supported (this model reads text only)", type);
        }
    }
    if (b.oom) { sb_free(&b); return oom(e); }
    *out = b.p ? b.p : strdup("");
    if (!*out) return oom(e);
    return 0;
}

/* Generation limits and flags shared by chat and completions. */
static int parse_common(json_t *root, srv_request *r, api_error *e)
{
    const char *model = NULL;
    long long l;
    int rc;
    if (js_string(root, "model", NULL, &model, e) < 0) return -1;
    if (model && !(r->model = strdup(model))) return oom(e);
    if (js_bool(root, "stream", NULL, &r->stream, e) < 0) return -1;
    json_t *so;
    if (js_value(root, "stream_options", &so)) {
        if (!json_is_object(so)) return api_bad(e, "stream_options", "'stream_options' must be an object");
        if (js_bool(so, "include_usage", "stream_options", &r->include_usage, e) < 0) return -1;
    }
    if ((rc = js_int(root, "max_tokens", NULL, 1, 1 << 30, &l, e)) < 0) return -1;
    if (rc) r->max_tokens = (int)l;
    if ((rc = js_int(root, "max_completion_tokens", NULL, 1, 1 << 30, &l, e)) < 0) return -1;
    if (rc) r->max_tokens = (int)l;
    if ((rc = js_int(root, "n", NULL, 1, 1 << 30, &l, e)) < 0) return -1;
    if (rc && l != 1) return api_bad(e, "n", "'n' must be 1 (one choice per request)");
    if (req_parse_sampling(root, r, e)) return -1;
    if (req_parse_stop(root, "stop", r, e)) return -1;
    return 0;
}

/* ---- chat --------------------------------------------------------------------------------------- */

static int parse_tool_calls(json_t *arr, const char *parent, req_msg *m, api_error *e)
{
    char p[P_MAX];
    js_path(p, sizeof p, parent, "tool_calls");
    if (!json_is_array(arr)) return api_bad(e, p, "'%s' must be an array", p);
    size_t i;
    json_t *call;
    json_array_foreach(arr, i, call) {
        char cp[P_MAX], fp[P_MAX], ap[P_MAX];
        js_path_index(cp, sizeof cp, p, i);
        if (!json_is_object(call)) return api_bad(e, cp, "'%s' must be an object", cp);
        const char *id = NULL, *type = "function", *name = NULL;
        if (js_string(call, "id", cp, &id, e) < 0 || js_string(call, "type", cp, &type, e) < 0) return -1;
        json_t *fn;
        js_path(fp, sizeof fp, cp, "function");
        if (!js_value(call, "function", &fn) || !json_is_object(fn))
            return api_bad(e, fp, "'%s' must be an object with a name and arguments", fp);
        if (js_string(fn, "name", fp, &name, e) < 0) return -1;
        if (!name) {
            js_path(ap, sizeof ap, fp, "name");
            return api_bad(e, ap, "'%s' is required", ap);
        }
        json_t *args = NULL;
        char *args_text = NULL;
        js_path(ap, sizeof ap, fp, "arguments");
        if (js_value(fn, "arguments", &args) && req_args_text(args, ap, &args_text, e)) return -1;
        req_tool_call *c = req_msg_add_call(m, id, name, args_text, e);
        free(args_text);
        if (!c) return -1;
    }
    return 0;
}

static int parse_messages(json_t *root, srv_request *r, api_error *e)
{
    json_t *msgs;
    if (!js_value(root, "messages", &msgs)) return api_bad(e, "messages", "'messages' is required");
    if (!json_is_array(msgs)) return api_bad(e, "messages", "'messages' must be an array");
    if (json_array_size(msgs) == 0) return api_bad(e, "messages", "'messages' must not be empty");

    sbuf system = { 0 };
    bool have_system = false;
    /* slot 0 is reserved for the gathered system message, filled at the end */
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char p[P_MAX], fp[P_MAX];
        js_path_index(p, sizeof p, "messages", i);
        if (!json_is_object(m)) { sb_free(&system); return api_bad(e, p, "'%s' must be an object", p); }
        const char *role = NULL;
        if (js_string(m, "role", p, &role, e) < 0) { sb_free(&system); return -1; }
        js_path(fp, sizeof fp, p, "role");
        if (!role) { sb_free(&system); return api_bad(e, fp, "'%s' is required", fp); }
        char *content = NULL;
        json_t *cv = NULL;
        js_value(m, "content", &cv);
        js_path(fp, sizeof fp, p, "content");
        if (req_content_text(cv, fp, &content, e)) { sb_free(&system); return -1; }

        if (!strcmp(role, "system") || !strcmp(role, "developer")) {
            if (content && *content) {
                if (have_system) sb_puts(&system, "\n\n");
                sb_puts(&system, content);
                have_system = true;
            }
            free(content);
            continue;
        }
        if (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "tool") && strcmp(role, "function")) {
            free(content);
            sb_free(&system);
            js_path(fp, sizeof fp, p, "role");
            return api_bad(e, fp, "'%s' is '%s'; expected system, developer, user, assistant or tool", fp, role);
        }
        const char *r_role = !strcmp(role, "function") ? "tool" : role;
        req_msg *msg = req_add_msg(r, r_role, NULL, e);
        if (!msg) { free(content); sb_free(&system); return -1; }
        msg->content = content;
        if (!strcmp(r_role, "assistant")) {
            const char *reasoning = NULL;
            if (js_string(m, "reasoning_content", p, &reasoning, e) < 0) { sb_free(&system); return -1; }
            if (!reasoning && js_string(m, "reasoning", p, &reasoning, e) < 0) { sb_free(&system); return -1; }
            if (reasoning && !(msg->reasoning = strdup(reasoning))) { sb_free(&system); return oom(e); }
            json_t *calls;
            if (js_value(m, "tool_calls", &calls) && parse_tool_calls(calls, p, msg, e)) { sb_free(&system); return -1; }
        } else if (!strcmp(r_role, "tool")) {
            const char *id = NULL;
            if (js_string(m, "tool_call_id", p, &id, e) < 0) { sb_free(&system); return -1; }
            if (id && !(msg->tool_call_id = strdup(id))) { sb_free(&system); return oom(e); }
        }
    }
    if (system.oom) { sb_free(&system); return oom(e); }
    if (have_system && req_insert_system(r, system.p, e)) { sb_free(&system); return -1; }
    sb_free(&system);
    return 0;
}

static int parse_tools(json_t *root, srv_request *r, api_error *e)
{
    json_t *tools;
    if (!js_value(root, "tools", &tools)) return 0;
    if (!json_is_array(tools)) return api_bad(e, "tools", "'tools' must be an array");
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        char p[P_MAX], fp[P_MAX], q[P_MAX];
        js_path_index(p, sizeof p, "tools", i);
        if (!json_is_object(t)) return api_bad(e, p, "'%s' must be an object", p);
        const char *type = "function", *name = NULL, *desc = NULL;
        if (js_string(t, "type", p, &type, e) < 0) return -1;
        if (strcmp(type, "function")) {
            js_path(q, sizeof q, p, "type");
            return api_bad(e, q, "'%s' is '%s'; only function tools are supported", q, type);
        }
        json_t *fn, *params = NULL;
        js_path(fp, sizeof fp, p, "function");
        if (!js_value(t, "function", &fn) || !json_is_object(fn))
            return api_bad(e, fp, "'%s' must be an object with a name", fp);
        if (js_string(fn, "name", fp, &name, e) < 0 || js_string(fn, "description", fp, &desc, e) < 0) return -1;
        js_path(q, sizeof q, fp, "name");
        if (!name || !*name) return api_bad(e, q, "'%s' is required", q);
        if (js_value(fn, "parameters", &params) && !json_is_object(params)) {
            js_path(q, sizeof q, fp, "parameters");
            return api_bad(e, q, "'%s' must be a JSON schema object", q);
        }
        if (req_add_tool(r, name, desc, params, e)) return -1;
    }
    return 0;
}

static int parse_tool_choice(json_t *root, srv_request *r, api_error *e)
{
    json_t *tc;
    if (!js_value(root, "tool_choice", &tc)) return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "auto")) r->tool_choice = REQ_TOOLS_AUTO;
        else if (!strcmp(s, "none")) r->tool_choice = REQ_TOOLS_NONE;
        else if (!strcmp(s, "required")) r->tool_choice = REQ_TOOLS_REQUIRED;
        else return api_bad(e, "tool_choice", "'tool_choice' is '%s'; expected auto, none, required or an object", s);
    } else if (json_is_object(tc)) {
        json_t *fn;
        const char *name = NULL;
        if (!js_value(tc, "function", &fn) || !json_is_object(fn))
            return api_bad(e, "tool_choice.function", "'tool_choice.function' must be an object with a name");
        if (js_string(fn, "name", "tool_choice.function", &name, e) < 0) return -1;
        if (!name) return api_bad(e, "tool_choice.function.name", "'tool_choice.function.name' is required");
        bool known = false;
        for (int i = 0; i < r->n_tools; i++) known |= !strcmp(r->tools[i].name, name);
        if (!known)
            return api_bad(e, "tool_choice.function.name", "tool_choice names '%s', which is not in 'tools'", name);
        r->tool_choice = REQ_TOOLS_NAMED;
        if (!(r->tool_choice_name = strdup(name))) return oom(e);
    } else {
        return api_bad(e, "tool_choice", "'tool_choice' must be a string or an object");
    }
    if (r->tool_choice != REQ_TOOLS_NONE && r->tool_choice != REQ_TOOLS_AUTO && r->n_tools == 0)
        return api_bad(e, "tool_choice", "'tool_choice' asks for a tool call but 'tools' is empty");
    return 0;
}

int req_parse_chat(json_t *root, srv_request *r, api_error *e)
{
    r->kind = REQ_CHAT;
    if (parse_common(root, r, e)) return -1;
    if (parse_messages(root, r, e)) return -1;
    if (parse_tools(root, r, e)) return -1;
    if (parse_tool_choice(root, r, e)) return -1;
    if (js_bool(root, "parallel_tool_calls", NULL, &r->parallel_tool_calls, e) < 0) return -1;

    json_t *kw;
    if (js_value(root, "chat_template_kwargs", &kw)) {
        if (!json_is_object(kw))
            return api_bad(e, "chat_template_kwargs", "'chat_template_kwargs' must be an object");
        if (js_bool(kw, "enable_thinking", "chat_template_kwargs", &r->enable_thinking, e) < 0) return -1;
    }
    const char *effort = NULL;
    if (js_string(root, "reasoning_effort", NULL, &effort, e) < 0) return -1;
    if (effort && !strcmp(effort, "none")) r->enable_thinking = false;

    json_t *rf;
    if (js_value(root, "response_format", &rf) && !json_is_object(rf))
        return api_bad(e, "response_format", "'response_format' must be an object");

    bool lp = false;
    long long tl = 0;
    int rc;
    if (js_bool(root, "logprobs", NULL, &lp, e) < 0) return -1;
    if ((rc = js_int(root, "top_logprobs", NULL, 0, 20, &tl, e)) < 0) return -1;
    if (rc && tl > 0 && !lp) return api_bad(e, "top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
    r->logprobs = lp;
    r->top_logprobs = (int)tl;
    return 0;
}

/* ---- completions -------------------------------------------------------------------------------- */

static int parse_ids(json_t *arr, const char *param, srv_request *r, api_error *e)
{
    size_t n = json_array_size(arr);
    if (n == 0) return api_bad(e, param, "'%s' must not be empty", param);
    r->prompt_ids = malloc(n * sizeof *r->prompt_ids);
    if (!r->prompt_ids) return oom(e);
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v) {
        char p[P_MAX];
        js_path_index(p, sizeof p, param, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
            return api_bad(e, p, "'%s' must be a token id (a non-negative integer)", p);
        r->prompt_ids[i] = (int32_t)json_integer_value(v);
    }
    r->n_prompt_ids = n;
    return 0;
}

int req_parse_completion(json_t *root, srv_request *r, api_error *e)
{
    r->kind = REQ_COMPLETION;
    if (parse_common(root, r, e)) return -1;
    json_t *p;
    if (!js_value(root, "prompt", &p)) return api_bad(e, "prompt", "'prompt' is required");
    if (json_is_string(p)) {
        if (!(r->prompt = strdup(json_string_value(p)))) return oom(e);
    } else if (json_is_array(p)) {
        json_t *first = json_array_get(p, 0);
        if (json_array_size(p) == 0) return api_bad(e, "prompt", "'prompt' must not be empty");
        if (json_is_integer(first)) {
            if (parse_ids(p, "prompt", r, e)) return -1;
        } else {
            if (json_array_size(p) > 1) return api_bad(e, "prompt", "'prompt' holds several prompts; send one per request");
            if (json_is_string(first)) {
                if (!(r->prompt = strdup(json_string_value(first)))) return oom(e);
            } else if (json_is_array(first)) {
                if (parse_ids(first, "prompt[0]", r, e)) return -1;
            } else {
                return api_bad(e, "prompt[0]", "'prompt[0]' must be a string or an array of token ids");
            }
        }
    } else {
        return api_bad(e, "prompt", "'prompt' must be a string, an array of strings or an array of token ids");
    }
    bool echo = false;
    long long l;
    int rc;
    if (js_bool(root, "echo", NULL, &echo, e) < 0) return -1;
    if (echo) return api_bad(e, "echo", "'echo' is not supported");
    if ((rc = js_int(root, "best_of", NULL, 1, 1 << 30, &l, e)) < 0) return -1;
    if (rc && l != 1) return api_bad(e, "best_of", "'best_of' must be 1");
    if ((rc = js_int(root, "logprobs", NULL, 0, 5, &l, e)) < 0) return -1;
    if (rc) { r->logprobs = true; r->top_logprobs = (int)l; }
    const char *suffix = NULL;
    if (js_string(root, "suffix", NULL, &suffix, e) < 0) return -1;
    if (suffix && *suffix) return api_bad(e, "suffix", "'suffix' is not supported");
    return 0;
}
