/* server/request_responses.c — an OpenAI Responses body (POST /v1/responses) -> srv_request.
 *
 * The server is stateless, as Codex expects: every request carries the whole history in "input"
 * (previous_response_id, conversation and item_reference are refused with a 400 that says so).
 *
 * Mapping (Responses -> the internal chat request the Qwen template renders):
 *   instructions, system / developer messages -> one system message at the front (in that order)
 *   input: a string                           -> one user message
 *   message items (type "message" or absent)  -> user / assistant messages; content a string or
 *                                                input_text / output_text parts (images -> 400)
 *   reasoning items (content reasoning_text,
 *     else summary summary_text)              -> the reasoning of the assistant turn they open
 *   function_call {call_id, name, arguments}  -> a tool call of the current assistant turn
 *   custom_tool_call {call_id, name, input}   -> a tool call with arguments {"input": input}
 *   function_call_output / custom_tool_call_output {call_id, output} -> a tool message
 *   other item types (local_shell_call, web_search_call, ...) -> ignored (nothing here runs them)
 * Consecutive assistant-side items (reasoning, assistant message, calls) form one assistant turn, as
 * one response's output does; a reasoning item after content or calls starts the next turn.
 *   tools: function {name, description, parameters, strict} -> function tools; custom {name,
 *          description} -> a function tool taking {"input": string} (Codex's own function form of
 *          freeform tools); other tool types are skipped
 *   tool_choice: auto | none | required | {type: function|custom, name} | {type: allowed_tools, mode}
 *   reasoning.effort "none" / "minimal" -> thinking off; max_output_tokens, temperature, top_p, stream,
 *   parallel_tool_calls; store, include, metadata, text, prompt_cache_key, ... accepted and ignored. */
#include "server/request.h"

#include <stdlib.h>
#include <string.h>

#define P_MAX 160

static int oom(api_error *e) { return api_fail(e, 500, "server_error", NULL, NULL, "out of memory"); }

typedef struct resp_parse {
    srv_request *r;
    sbuf system;
    bool have_system;
    bool assistant_open;   /* the last message is an assistant turn still taking items */
} resp_parse;

static int required_string(json_t *obj, const char *p, const char *key, const char **out, api_error *e)
{
    *out = NULL;
    if (js_string(obj, key, p, out, e) < 0) return -1;
    if (!*out) {
        char kp[P_MAX];
        js_path(kp, sizeof kp, p, key);
        return api_bad(e, kp, "'%s' is required", kp);
    }
    return 0;
}

static void add_system(resp_parse *ps, const char *text)
{
    if (!text || !*text) return;
    if (ps->have_system) sb_puts(&ps->system, "\n\n");
    sb_puts(&ps->system, text);
    ps->have_system = true;
}

/* The assistant turn the next assistant-side item belongs to. fresh: start a new one unless the
 * open turn is still empty. */
static req_msg *assistant(resp_parse *ps, bool fresh, api_error *e)
{
    srv_request *r = ps->r;
    if (ps->assistant_open && r->n_msgs > 0) {
        req_msg *m = &r->msgs[r->n_msgs - 1];
        if (!fresh || (!m->content && !m->n_tool_calls)) return m;
    }
    req_msg *m = req_add_msg(r, "assistant", NULL, e);
    ps->assistant_open = m != NULL;
    return m;
}

static int append(char **dst, const char *text, api_error *e)
{
    if (!*dst) return (*dst = strdup(text)) ? 0 : oom(e);
    size_t a = strlen(*dst), b = strlen(text);
    char *s = realloc(*dst, a + b + 3);
    if (!s) return oom(e);
    memcpy(s + a, "\n\n", 2);
    memcpy(s + a + 2, text, b + 1);
    *dst = s;
    return 0;
}

static int message_item(resp_parse *ps, json_t *it, const char *p, api_error *e)
{
    const char *role = NULL;
    char cp[P_MAX], rp[P_MAX];
    if (required_string(it, p, "role", &role, e)) return -1;
    js_path(cp, sizeof cp, p, "content");
    js_path(rp, sizeof rp, p, "role");
    json_t *cv = NULL;
    js_value(it, "content", &cv);
    char *text = NULL;
    if (req_content_text(cv, cp, &text, e)) return -1;
    int rc = 0;
    if (!strcmp(role, "system") || !strcmp(role, "developer")) {
        add_system(ps, text);
    } else if (!strcmp(role, "user")) {
        req_msg *m = req_add_msg(ps->r, "user", NULL, e);
        if (!m) rc = -1;
        else { m->content = text ? text : strdup(""); text = NULL; if (!m->content) rc = oom(e); }
        ps->assistant_open = false;
    } else if (!strcmp(role, "assistant")) {
        req_msg *m = assistant(ps, false, e);
        if (!m) rc = -1;
        else if (text && *text) rc = append(&m->content, text, e);
    } else {
        rc = api_bad(e, rp, "'%s' is '%s'; expected user, assistant, system or developer", rp, role);
    }
    free(text);
    return rc;
}

/* Text of a reasoning item: its reasoning_text content, else its summary. */
static int reasoning_item(resp_parse *ps, json_t *it, const char *p, api_error *e)
{
    sbuf b = { 0 };
    const char *keys[2] = { "content", "summary" };
    for (int k = 0; k < 2 && !b.n; k++) {
        json_t *arr;
        if (!js_value(it, keys[k], &arr)) continue;
        char ap[P_MAX];
        js_path(ap, sizeof ap, p, keys[k]);
        if (!json_is_array(arr)) { sb_free(&b); return api_bad(e, ap, "'%s' must be an array", ap); }
        size_t i;
        json_t *part;
        json_array_foreach(arr, i, part) {
            char pp[P_MAX];
            const char *t = NULL;
            js_path_index(pp, sizeof pp, ap, i);
            if (!json_is_object(part)) { sb_free(&b); return api_bad(e, pp, "'%s' must be an object", pp); }
            if (js_string(part, "text", pp, &t, e) < 0) { sb_free(&b); return -1; }
            if (!t || !*t) continue;
            if (b.n) sb_puts(&b, "\n\n");
            sb_puts(&b, t);
        }
    }
    if (b.oom) { sb_free(&b); return oom(e); }
    int rc = 0;
    if (b.n) {
        req_msg *m = assistant(ps, true, e);
        if (!m) rc = -1;
        else rc = append(&m->reasoning, b.p, e);
    }
    sb_free(&b);
    return rc;
}

static int call_item(resp_parse *ps, json_t *it, const char *p, bool custom, api_error *e)
{
    const char *call_id = NULL, *name = NULL;
    char ap[P_MAX];
    if (js_string(it, "call_id", p, &call_id, e) < 0) return -1;
    if (!call_id && js_string(it, "id", p, &call_id, e) < 0) return -1;
    if (required_string(it, p, "name", &name, e)) return -1;
    char *args = NULL;
    if (custom) {
        const char *input = NULL;
        if (js_string(it, "input", p, &input, e) < 0) return -1;
        json_t *o = json_object();
        js_set(o, "input", js_str(input ? input : ""));
        args = js_dump(o);
        json_decref(o);
        if (!args) return oom(e);
    } else {
        json_t *av = NULL;
        js_path(ap, sizeof ap, p, "arguments");
        js_value(it, "arguments", &av);
        if (av && json_is_string(av) && !*json_string_value(av)) av = NULL;   /* "" = no arguments */
        if (req_args_text(av, ap, &args, e)) return -1;
    }
    req_msg *m = assistant(ps, false, e);
    req_tool_call *c = m ? req_msg_add_call(m, call_id, name, args ? args : "{}", e) : NULL;
    free(args);
    return c ? 0 : -1;
}

static int output_item(resp_parse *ps, json_t *it, const char *p, api_error *e)
{
    const char *call_id = NULL;
    char op[P_MAX];
    if (required_string(it, p, "call_id", &call_id, e)) return -1;
    js_path(op, sizeof op, p, "output");
    json_t *ov = NULL;
    js_value(it, "output", &ov);
    char *text = NULL;
    if (req_content_text(ov, op, &text, e)) return -1;
    req_msg *m = req_add_msg(ps->r, "tool", NULL, e);
    if (!m) { free(text); return -1; }
    m->content = text ? text : strdup("");
    m->tool_call_id = strdup(call_id);
    ps->assistant_open = false;
    return m->content && m->tool_call_id ? 0 : oom(e);
}

static int parse_input(resp_parse *ps, json_t *root, api_error *e)
{
    json_t *in;
    if (!js_value(root, "input", &in)) return api_bad(e, "input", "'input' is required");
    if (json_is_string(in)) return req_add_msg(ps->r, "user", json_string_value(in), e) ? 0 : -1;
    if (!json_is_array(in)) return api_bad(e, "input", "'input' must be a string or an array of items");
    if (json_array_size(in) == 0) return api_bad(e, "input", "'input' must not be empty");
    size_t i;
    json_t *it;
    json_array_foreach(in, i, it) {
        char p[P_MAX], tp[P_MAX];
        js_path_index(p, sizeof p, "input", i);
        js_path(tp, sizeof tp, p, "type");
        if (!json_is_object(it)) return api_bad(e, p, "'%s' must be an object", p);
        const char *type = "message";
        if (js_string(it, "type", p, &type, e) < 0) return -1;
        int rc = 0;
        if (!strcmp(type, "message")) rc = message_item(ps, it, p, e);
        else if (!strcmp(type, "reasoning")) rc = reasoning_item(ps, it, p, e);
        else if (!strcmp(type, "function_call")) rc = call_item(ps, it, p, false, e);
        else if (!strcmp(type, "custom_tool_call")) rc = call_item(ps, it, p, true, e);
        else if (!strcmp(type, "function_call_output") || !strcmp(type, "custom_tool_call_output"))
            rc = output_item(ps, it, p, e);
        else if (!strcmp(type, "item_reference"))
            rc = api_bad(e, tp, "'%s' is 'item_reference': this server keeps no responses; send the items themselves", tp);
        /* other types: calls of tools nothing here runs (local_shell_call, web_search_call, ...) */
        if (rc) return -1;
    }
    if (ps->r->n_msgs == 0) return api_bad(e, "input", "'input' holds no message");
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
        char p[P_MAX], q[P_MAX];
        js_path_index(p, sizeof p, "tools", i);
        if (!json_is_object(t)) return api_bad(e, p, "'%s' must be an object", p);
        const char *type = NULL, *name = NULL, *desc = NULL;
        js_path(q, sizeof q, p, "type");
        if (js_string(t, "type", p, &type, e) < 0) return -1;
        if (!type) return api_bad(e, q, "'%s' is required", q);
        bool custom = !strcmp(type, "custom");
        if (strcmp(type, "function") && !custom) continue;   /* a hosted tool: nothing here runs it */
        if (js_string(t, "name", p, &name, e) < 0 || js_string(t, "description", p, &desc, e) < 0) return -1;
        js_path(q, sizeof q, p, "name");
        if (!name || !*name) return api_bad(e, q, "'%s' is required", q);
        json_t *params = NULL;
        js_path(q, sizeof q, p, "parameters");
        if (!custom && js_value(t, "parameters", &params) && !json_is_object(params))
            return api_bad(e, q, "'%s' must be a JSON schema object", q);
        bool strict;
        if (js_bool(t, "strict", p, &strict, e) < 0) return -1;
        int rc;
        if (custom) {
            json_t *schema = json_pack("{s:s, s:{s:{s:s}}, s:[s], s:b}", "type", "object", "properties", "input",
                                       "type", "string", "required", "input", "additionalProperties", 0);
            rc = schema ? req_add_tool(r, name, desc, schema, e) : oom(e);
            json_decref(schema);
        } else {
            rc = req_add_tool(r, name, desc, params, e);
        }
        if (rc) return -1;
    }
    return 0;
}

static int parse_tool_choice(json_t *root, srv_request *r, api_error *e)
{
    json_t *tc;
    if (!js_value(root, "tool_choice", &tc)) return 0;
    const char *mode = NULL;
    if (json_is_string(tc)) {
        mode = json_string_value(tc);
    } else if (json_is_object(tc)) {
        const char *type = NULL, *name = NULL;
        if (js_string(tc, "type", "tool_choice", &type, e) < 0) return -1;
        if (!type) return api_bad(e, "tool_choice.type", "'tool_choice.type' is required");
        if (!strcmp(type, "function") || !strcmp(type, "custom")) {
            if (js_string(tc, "name", "tool_choice", &name, e) < 0) return -1;
            if (!name) return api_bad(e, "tool_choice.name", "'tool_choice.name' is required");
            bool known = false;
            for (int i = 0; i < r->n_tools; i++) known |= !strcmp(r->tools[i].name, name);
            if (!known) return api_bad(e, "tool_choice.name", "tool_choice names '%s', which is not in 'tools'", name);
            r->tool_choice = REQ_TOOLS_NAMED;
            return (r->tool_choice_name = strdup(name)) ? 0 : oom(e);
        }
        if (!strcmp(type, "allowed_tools")) {
            if (js_string(tc, "mode", "tool_choice", &mode, e) < 0) return -1;
            if (!mode) mode = "auto";
        } else {
            return 0;   /* a hosted tool type: the model decides */
        }
    } else {
        return api_bad(e, "tool_choice", "'tool_choice' must be a string or an object");
    }
    if (!strcmp(mode, "auto")) r->tool_choice = REQ_TOOLS_AUTO;
    else if (!strcmp(mode, "none")) r->tool_choice = REQ_TOOLS_NONE;
    else if (!strcmp(mode, "required")) r->tool_choice = REQ_TOOLS_REQUIRED;
    else return api_bad(e, "tool_choice", "'tool_choice' is '%s'; expected auto, none, required or an object", mode);
    if (r->tool_choice == REQ_TOOLS_REQUIRED && r->n_tools == 0)
        return api_bad(e, "tool_choice", "'tool_choice' asks for a tool call but 'tools' is empty");
    return 0;
}

int req_parse_responses(json_t *root, srv_request *r, api_error *e)
{
    r->kind = REQ_CHAT;
    const char *model = NULL, *instructions = NULL, *prev = NULL;
    long long l;
    int rc;
    if (js_string(root, "model", NULL, &model, e) < 0) return -1;
    if (model && !(r->model = strdup(model))) return oom(e);
    if (js_bool(root, "stream", NULL, &r->stream, e) < 0) return -1;
    if ((rc = js_int(root, "max_output_tokens", NULL, 1, 1 << 30, &l, e)) < 0) return -1;
    if (rc) r->max_tokens = (int)l;
    if (req_parse_sampling(root, r, e)) return -1;
    if (js_bool(root, "parallel_tool_calls", NULL, &r->parallel_tool_calls, e) < 0) return -1;
    if (js_string(root, "previous_response_id", NULL, &prev, e) < 0) return -1;
    if (prev) return api_bad(e, "previous_response_id", "'previous_response_id' is not supported: this server keeps no "
                                                        "responses; send the whole conversation in 'input'");
    json_t *v;
    if (js_value(root, "conversation", &v))
        return api_bad(e, "conversation", "'conversation' is not supported: this server keeps no conversations; send the "
                                          "whole conversation in 'input'");
    if (js_value(root, "reasoning", &v)) {
        if (!json_is_object(v)) return api_bad(e, "reasoning", "'reasoning' must be an object");
        const char *effort = NULL;
        if (js_string(v, "effort", "reasoning", &effort, e) < 0) return -1;
        if (effort && (!strcmp(effort, "none") || !strcmp(effort, "minimal"))) r->enable_thinking = false;
    }
    if (js_value(root, "text", &v) && !json_is_object(v)) return api_bad(e, "text", "'text' must be an object");
    if (js_value(root, "metadata", &v) && !json_is_object(v)) return api_bad(e, "metadata", "'metadata' must be an object");

    resp_parse ps = { .r = r };
    if (js_string(root, "instructions", NULL, &instructions, e) < 0) return -1;
    add_system(&ps, instructions);
    rc = parse_input(&ps, root, e);
    if (!rc && ps.system.oom) rc = oom(e);
    if (!rc && ps.have_system) rc = req_insert_system(r, ps.system.p, e);
    sb_free(&ps.system);
    if (rc) return -1;
    if (parse_tools(root, r, e) || parse_tool_choice(root, r, e)) return -1;
    return 0;
}
