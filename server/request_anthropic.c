/* server/request_anthropic.c — an Anthropic Messages body (POST /v1/messages, and
 * /v1/messages/count_tokens) -> srv_request.
 *
 * Mapping (Anthropic -> the internal chat request the Qwen template renders):
 *   system (string, or text blocks)           -> one system message at the front; a block that is
 *                                                Claude Code's "x-anthropic-billing-header: ..." line
 *                                                (different on every request) is dropped, so the
 *                                                prompt stays byte-stable across turns
 *   user message: text blocks                 -> a user message (blocks joined by a blank line)
 *                 tool_result blocks          -> one tool message each, in order (content: a string or
 *                                                text blocks; is_error prefixes "Error: ")
 *                 image / document            -> 400 (the model reads text only)
 *   assistant message: text blocks            -> content; thinking blocks -> its reasoning;
 *                 redacted_thinking           -> ignored; tool_use {id,name,input} -> a tool call
 *   tools [{name, description, input_schema}] -> function tools (typed server tools such as
 *                                                web_search_20250305 are skipped: nothing runs them)
 *   tool_choice {type: auto|any|tool|none}    -> auto / required / named / none;
 *                                                disable_parallel_tool_use -> parallel_tool_calls off
 *   thinking {type: enabled|adaptive}         -> enable_thinking on; disabled or absent -> off (as the
 *                                                Anthropic API: no thinking blocks unless asked);
 *                                                budget_tokens is checked, not enforced
 *   stop_sequences, max_tokens (required), temperature, top_p, top_k, stream; metadata,
 *   cache_control, service_tier and other fields are accepted and ignored.
 * Errors are api_errors naming the field ("messages[1].content[0].tool_use_id"); anthropic.c
 * formats them in Anthropic's shape. */
#include "server/request.h"

#include <stdlib.h>
#include <string.h>

#define P_MAX 160

static int oom(api_error *e) { return api_fail(e, 500, "server_error", NULL, NULL, "out of memory"); }

static void join(sbuf *b, bool *have, const char *text)
{
    if (*have) sb_puts(b, "\n\n");
    sb_puts(b, text);
    *have = true;
}

/* Blocks that Anthropic's own servers execute (server_tool_use, web_search_tool_result, ...): they
 * may sit in a history that came from the real API; nothing here can use them. */
static bool server_block(const char *type)
{
    size_t n = strlen(type);
    if (!strcmp(type, "server_tool_use") || !strncmp(type, "mcp_", 4) || !strcmp(type, "container_upload")) return true;
    return n > 12 && !strcmp(type + n - 12, "_tool_result") && strcmp(type, "tool_result");
}

static int media_refused(const char *p, const char *type, api_error *e)
{
    char tp[P_MAX];
    js_path(tp, sizeof tp, p, "type");
    return api_bad(e, tp, "'%s' is '%s': image and document content is not supported (this model reads text only)",
                   tp, type);
}

/* The text of a required "text" string field of block p. */
static int block_text(json_t *blk, const char *p, const char *key, const char **out, api_error *e)
{
    *out = NULL;
    if (js_string(blk, key, p, out, e) < 0) return -1;
    if (!*out) {
        char tp[P_MAX];
        js_path(tp, sizeof tp, p, key);
        return api_bad(e, tp, "'%s' is required", tp);
    }
    return 0;
}

static int add_user_text(srv_request *r, sbuf *text, bool *have, api_error *e)
{
    if (!*have) return 0;
    if (text->oom) return oom(e);
    req_msg *m = req_add_msg(r, "user", text->p ? text->p : "", e);
    sb_clear(text);
    *have = false;
    return m ? 0 : -1;
}

static int tool_result(json_t *blk, const char *p, srv_request *r, api_error *e)
{
    const char *id = NULL;
    bool is_error = false;
    char cp[P_MAX];
    if (block_text(blk, p, "tool_use_id", &id, e) || js_bool(blk, "is_error", p, &is_error, e) < 0) return -1;
    json_t *cv = NULL;
    js_value(blk, "content", &cv);
    js_path(cp, sizeof cp, p, "content");
    char *content = NULL;
    if (cv && json_is_array(cv)) {
        /* text blocks; images are refused with the block's own path */
        size_t i;
        json_t *part;
        json_array_foreach(cv, i, part) {
            char pp[P_MAX];
            const char *type = NULL;
            js_path_index(pp, sizeof pp, cp, i);
            if (json_is_object(part) && js_string(part, "type", pp, &type, e) < 0) return -1;
            if (type && (!strcmp(type, "image") || !strcmp(type, "document"))) return media_refused(pp, type, e);
        }
    }
    if (req_content_text(cv, cp, &content, e)) return -1;
    req_msg *m = req_add_msg(r, "tool", NULL, e);
    if (!m) { free(content); return -1; }
    if (is_error) {
        sbuf b = { 0 };
        sb_puts(&b, "Error: ");
        sb_puts(&b, content ? content : "");
        free(content);
        if (b.oom) { sb_free(&b); return oom(e); }
        content = sb_take(&b);
    }
    m->content = content ? content : strdup("");
    m->tool_call_id = strdup(id);
    if (!m->content || !m->tool_call_id) return oom(e);
    return 0;
}

static int user_blocks(json_t *blocks, const char *p, srv_request *r, api_error *e)
{
    sbuf text = { 0 };
    bool have = false;
    size_t i;
    json_t *blk;
    json_array_foreach(blocks, i, blk) {
        char bp[P_MAX], tp[P_MAX];
        js_path_index(bp, sizeof bp, p, i);
        js_path(tp, sizeof tp, bp, "type");
        const char *type = NULL, *t = NULL;
        if (json_is_string(blk)) { join(&text, &have, json_string_value(blk)); continue; }
        if (!json_is_object(blk)) { sb_free(&text); return api_bad(e, bp, "'%s' must be a content block object", bp); }
        if (js_string(blk, "type", bp, &type, e) < 0) { sb_free(&text); return -1; }
        if (!type) { sb_free(&text); return api_bad(e, tp, "'%s' is required", tp); }
        int rc = 0;
        if (!strcmp(type, "text")) {
            if (!(rc = block_text(blk, bp, "text", &t, e))) join(&text, &have, t);
        } else if (!strcmp(type, "tool_result")) {
            /* text before a result stays before it */
            if (!(rc = add_user_text(r, &text, &have, e))) rc = tool_result(blk, bp, r, e);
        } else if (!strcmp(type, "image") || !strcmp(type, "document")) {
            rc = media_refused(bp, type, e);
        } else if (!strcmp(type, "thinking") || !strcmp(type, "redacted_thinking") || server_block(type)) {
            continue;
        } else {
            rc = api_bad(e, tp, "'%s' is '%s'; a user message takes text, tool_result, image or document blocks", tp, type);
        }
        if (rc) { sb_free(&text); return -1; }
    }
    int rc = add_user_text(r, &text, &have, e);
    sb_free(&text);
    return rc;
}

static int tool_use(json_t *blk, const char *p, req_msg *m, api_error *e)
{
    const char *id = NULL, *name = NULL;
    char ip[P_MAX];
    if (block_text(blk, p, "id", &id, e) || block_text(blk, p, "name", &name, e)) return -1;
    json_t *input = NULL;
    js_value(blk, "input", &input);
    js_path(ip, sizeof ip, p, "input");
    if (input && !json_is_object(input)) return api_bad(e, ip, "'%s' must be an object", ip);
    char *args = NULL;
    if (input && req_args_text(input, ip, &args, e)) return -1;
    req_tool_call *c = req_msg_add_call(m, id, name, args ? args : "{}", e);
    free(args);
    return c ? 0 : -1;
}

static int assistant_blocks(json_t *blocks, const char *p, req_msg *m, api_error *e)
{
    sbuf text = { 0 }, thinking = { 0 };
    bool have_text = false, have_thinking = false;
    int rc = 0;
    size_t i;
    json_t *blk;
    json_array_foreach(blocks, i, blk) {
        char bp[P_MAX], tp[P_MAX];
        js_path_index(bp, sizeof bp, p, i);
        js_path(tp, sizeof tp, bp, "type");
        const char *type = NULL, *t = NULL;
        if (json_is_string(blk)) { join(&text, &have_text, json_string_value(blk)); continue; }
        if (!json_is_object(blk)) { rc = api_bad(e, bp, "'%s' must be a content block object", bp); break; }
        if (js_string(blk, "type", bp, &type, e) < 0) { rc = -1; break; }
        if (!type) { rc = api_bad(e, tp, "'%s' is required", tp); break; }
        if (!strcmp(type, "text")) {
            if ((rc = block_text(blk, bp, "text", &t, e))) break;
            join(&text, &have_text, t);
        } else if (!strcmp(type, "thinking")) {
            if ((rc = block_text(blk, bp, "thinking", &t, e))) break;
            join(&thinking, &have_thinking, t);
        } else if (!strcmp(type, "tool_use")) {
            if ((rc = tool_use(blk, bp, m, e))) break;
        } else if (!strcmp(type, "redacted_thinking") || server_block(type)) {
            continue;
        } else {
            rc = api_bad(e, tp, "'%s' is '%s'; an assistant message takes text, thinking, redacted_thinking or tool_use blocks",
                         tp, type);
            break;
        }
    }
    if (!rc && (text.oom || thinking.oom)) rc = oom(e);
    if (!rc && have_text && !(m->content = strdup(text.p ? text.p : ""))) rc = oom(e);
    if (!rc && have_thinking && !(m->reasoning = strdup(thinking.p ? thinking.p : ""))) rc = oom(e);
    sb_free(&text);
    sb_free(&thinking);
    return rc;
}

static int parse_system(json_t *root, srv_request *r, api_error *e)
{
    json_t *sys;
    if (!js_value(root, "system", &sys)) return 0;
    if (json_is_string(sys)) return *json_string_value(sys) ? req_insert_system(r, json_string_value(sys), e) : 0;
    if (!json_is_array(sys)) return api_bad(e, "system", "'system' must be a string or an array of text blocks");
    sbuf b = { 0 };
    bool have = false;
    size_t i;
    json_t *blk;
    json_array_foreach(sys, i, blk) {
        char bp[P_MAX], tp[P_MAX];
        js_path_index(bp, sizeof bp, "system", i);
        js_path(tp, sizeof tp, bp, "type");
        const char *type = "text", *t = NULL;
        if (!json_is_object(blk)) { sb_free(&b); return api_bad(e, bp, "'%s' must be a text block", bp); }
        if (js_string(blk, "type", bp, &type, e) < 0) { sb_free(&b); return -1; }
        if (strcmp(type, "text")) { sb_free(&b); return api_bad(e, tp, "'%s' is '%s'; system blocks must be text", tp, type); }
        if (block_text(blk, bp, "text", &t, e)) { sb_free(&b); return -1; }
        if (!strncmp(t, "x-anthropic-billing-header:", 27) || !*t) continue;
        join(&b, &have, t);
    }
    if (b.oom) { sb_free(&b); return oom(e); }
    int rc = have ? req_insert_system(r, b.p ? b.p : "", e) : 0;
    sb_free(&b);
    return rc;
}

static int parse_messages(json_t *root, srv_request *r, api_error *e)
{
    json_t *msgs;
    if (!js_value(root, "messages", &msgs)) return api_bad(e, "messages", "'messages' is required");
    if (!json_is_array(msgs)) return api_bad(e, "messages", "'messages' must be an array");
    if (json_array_size(msgs) == 0) return api_bad(e, "messages", "'messages' must not be empty");
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        char p[P_MAX], rp[P_MAX], cp[P_MAX];
        js_path_index(p, sizeof p, "messages", i);
        js_path(rp, sizeof rp, p, "role");
        js_path(cp, sizeof cp, p, "content");
        if (!json_is_object(m)) return api_bad(e, p, "'%s' must be an object", p);
        const char *role = NULL;
        if (js_string(m, "role", p, &role, e) < 0) return -1;
        if (!role) return api_bad(e, rp, "'%s' is required", rp);
        bool user = !strcmp(role, "user");
        if (!user && strcmp(role, "assistant"))
            return api_bad(e, rp, "'%s' is '%s'; expected user or assistant (the system prompt goes in 'system')", rp, role);
        json_t *cv;
        if (!js_value(m, "content", &cv)) return api_bad(e, cp, "'%s' is required", cp);
        if (!json_is_string(cv) && !json_is_array(cv))
            return api_bad(e, cp, "'%s' must be a string or an array of content blocks", cp);
        if (user) {
            if (json_is_string(cv)) {
                if (!req_add_msg(r, "user", json_string_value(cv), e)) return -1;
            } else if (user_blocks(cv, cp, r, e)) {
                return -1;
            }
        } else {
            req_msg *a = req_add_msg(r, "assistant", json_is_string(cv) ? json_string_value(cv) : NULL, e);
            if (!a) return -1;
            if (json_is_array(cv) && assistant_blocks(cv, cp, a, e)) return -1;
        }
    }
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
        if (js_string(t, "type", p, &type, e) < 0) return -1;
        if (type && strcmp(type, "custom")) continue;   /* a server tool: nothing here runs it */
        if (js_string(t, "name", p, &name, e) < 0 || js_string(t, "description", p, &desc, e) < 0) return -1;
        js_path(q, sizeof q, p, "name");
        if (!name || !*name) return api_bad(e, q, "'%s' is required", q);
        json_t *schema = NULL;
        js_path(q, sizeof q, p, "input_schema");
        if (js_value(t, "input_schema", &schema) && !json_is_object(schema))
            return api_bad(e, q, "'%s' must be a JSON schema object", q);
        if (req_add_tool(r, name, desc, schema, e)) return -1;
    }
    return 0;
}

static int parse_tool_choice(json_t *root, srv_request *r, api_error *e)
{
    json_t *tc;
    if (!js_value(root, "tool_choice", &tc)) return 0;
    if (!json_is_object(tc)) return api_bad(e, "tool_choice", "'tool_choice' must be an object such as {\"type\": \"auto\"}");
    const char *type = NULL, *name = NULL;
    bool no_parallel = false;
    if (js_string(tc, "type", "tool_choice", &type, e) < 0 || js_string(tc, "name", "tool_choice", &name, e) < 0 ||
        js_bool(tc, "disable_parallel_tool_use", "tool_choice", &no_parallel, e) < 0)
        return -1;
    if (!type) return api_bad(e, "tool_choice.type", "'tool_choice.type' is required");
    if (!strcmp(type, "auto")) r->tool_choice = REQ_TOOLS_AUTO;
    else if (!strcmp(type, "any")) r->tool_choice = REQ_TOOLS_REQUIRED;
    else if (!strcmp(type, "none")) r->tool_choice = REQ_TOOLS_NONE;
    else if (!strcmp(type, "tool")) {
        if (!name) return api_bad(e, "tool_choice.name", "'tool_choice.name' is required when the type is 'tool'");
        bool known = false;
        for (int i = 0; i < r->n_tools; i++) known |= !strcmp(r->tools[i].name, name);
        if (!known) return api_bad(e, "tool_choice.name", "tool_choice names '%s', which is not in 'tools'", name);
        r->tool_choice = REQ_TOOLS_NAMED;
        if (!(r->tool_choice_name = strdup(name))) return oom(e);
    } else {
        return api_bad(e, "tool_choice.type", "'tool_choice.type' is '%s'; expected auto, any, tool or none", type);
    }
    if ((r->tool_choice == REQ_TOOLS_REQUIRED || r->tool_choice == REQ_TOOLS_NAMED) && r->n_tools == 0)
        return api_bad(e, "tool_choice", "'tool_choice' asks for a tool call but 'tools' is empty");
    if (no_parallel) r->parallel_tool_calls = false;
    return 0;
}

static int parse_thinking(json_t *root, srv_request *r, api_error *e)
{
    r->enable_thinking = false;
    json_t *th;
    if (!js_value(root, "thinking", &th)) return 0;
    if (!json_is_object(th)) return api_bad(e, "thinking", "'thinking' must be an object such as {\"type\": \"enabled\"}");
    const char *type = NULL;
    long long budget;
    if (js_string(th, "type", "thinking", &type, e) < 0) return -1;
    if (js_int(th, "budget_tokens", "thinking", 1, 1 << 30, &budget, e) < 0) return -1;
    if (!type) return api_bad(e, "thinking.type", "'thinking.type' is required");
    if (!strcmp(type, "enabled") || !strcmp(type, "adaptive")) r->enable_thinking = true;
    else if (strcmp(type, "disabled"))
        return api_bad(e, "thinking.type", "'thinking.type' is '%s'; expected enabled, adaptive or disabled", type);
    return 0;
}

int req_parse_anthropic(json_t *root, srv_request *r, bool count_only, api_error *e)
{
    r->kind = REQ_CHAT;
    const char *model = NULL;
    long long l;
    int rc;
    if (js_string(root, "model", NULL, &model, e) < 0) return -1;
    if (model && !(r->model = strdup(model))) return oom(e);
    if ((rc = js_int(root, "max_tokens", NULL, 1, 1 << 30, &l, e)) < 0) return -1;
    if (rc) r->max_tokens = (int)l;
    else if (!count_only) return api_bad(e, "max_tokens", "'max_tokens' is required");
    if (js_bool(root, "stream", NULL, &r->stream, e) < 0) return -1;
    json_t *meta;
    if (js_value(root, "metadata", &meta) && !json_is_object(meta))
        return api_bad(e, "metadata", "'metadata' must be an object");
    if (req_parse_sampling(root, r, e)) return -1;
    if (req_parse_stop(root, "stop_sequences", r, e)) return -1;
    if (parse_thinking(root, r, e)) return -1;
    /* messages first, then the system prompt goes in front of them */
    if (parse_messages(root, r, e) || parse_system(root, r, e)) return -1;
    if (parse_tools(root, r, e) || parse_tool_choice(root, r, e)) return -1;
    return 0;
}
