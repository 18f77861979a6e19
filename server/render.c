/* server/render.c — an srv_request's chat messages and tools -> the prompt text, through
 * tok/chat.h's template (gen_render_chat, declared in gen.h). Kept apart from gen.c so that the
 * request fuzzer (fuzz/fuzz_request.c) can run every dialect's translation through the template
 * without the engine. Tools are hidden from the model when tool_choice is "none"; the generation
 * prompt is always added and thinking follows the request's enable_thinking. */
#include "server/gen.h"

#include <stdlib.h>

#include "tok/chat.h"

int gen_render_chat(const srv_request *r, char **out, api_error *e)
{
    *out = NULL;
    ar_chat_msg *cm = calloc((size_t)(r->n_msgs ? r->n_msgs : 1), sizeof *cm);
    const char **tools = calloc((size_t)(r->n_tools ? r->n_tools : 1), sizeof *tools);
    ar_chat_tool_call **calls = calloc((size_t)(r->n_msgs ? r->n_msgs : 1), sizeof *calls);
    int rc = 0;
    if (!cm || !tools || !calls) { rc = api_fail(e, 500, "server_error", NULL, NULL, "out of memory"); goto done; }
    for (int i = 0; i < r->n_msgs; i++) {
        const req_msg *m = &r->msgs[i];
        cm[i] = (ar_chat_msg){ .role = m->role, .content = m->content, .reasoning_content = m->reasoning };
        if (m->n_tool_calls) {
            calls[i] = calloc((size_t)m->n_tool_calls, sizeof **calls);
            if (!calls[i]) { rc = api_fail(e, 500, "server_error", NULL, NULL, "out of memory"); goto done; }
            for (int j = 0; j < m->n_tool_calls; j++)
                calls[i][j] = (ar_chat_tool_call){ .name = m->tool_calls[j].name, .arguments = m->tool_calls[j].arguments };
            cm[i].tool_calls = calls[i];
            cm[i].n_tool_calls = m->n_tool_calls;
        }
    }
    int n_tools = r->tool_choice == REQ_TOOLS_NONE ? 0 : r->n_tools;
    for (int i = 0; i < n_tools; i++) tools[i] = r->tools[i].json;
    ar_error err = { 0 };
    if (ar_chat_render_tools(cm, r->n_msgs, tools, n_tools, true, r->enable_thinking, out, &err))
        rc = api_bad(e, "messages", "%s", err.msg);
done:
    if (calls)
        for (int i = 0; i < r->n_msgs; i++) free(calls[i]);
    free(calls);
    free(cm);
    free(tools);
    return rc;
}
