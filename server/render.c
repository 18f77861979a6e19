/* server/render.c — an srv_request's chat messages and tools -> the prompt text, through
 * tok/chat.h's template of the request's family (gen_render_chat, gen_render_msgs, declared in
 * gen.h). Kept apart from gen.c so that the request fuzzer (fuzz/fuzz_request.c) can run every
 * dialect's translation through the template without the engine. Tools are hidden from the model
 * when tool_choice is "none"; thinking follows the request's enable_thinking. The family
 * (r->chat_family) is the model's (srv_chat_family: decided from the GGUF's tokenizer.chat_template;
 * ChatML for templates of other families, with a warning at load). */
#include "server/gen.h"

#include <stdlib.h>

#include "tok/chat.h"

int gen_render_msgs(const srv_request *r, int n_msgs, bool add_generation_prompt, char **out, ar_error *err)
{
    *out = NULL;
    if (n_msgs < 0 || n_msgs > r->n_msgs) return ar_fail(err, AR_EINVAL, "gen_render_msgs: %d messages of %d", n_msgs, r->n_msgs);
    ar_chat_msg *cm = calloc((size_t)(n_msgs ? n_msgs : 1), sizeof *cm);
    const char **tools = calloc((size_t)(r->n_tools ? r->n_tools : 1), sizeof *tools);
    ar_chat_tool_call **calls = calloc((size_t)(n_msgs ? n_msgs : 1), sizeof *calls);
    int rc = 0;
    if (!cm || !tools || !calls) { rc = ar_fail(err, AR_ENOMEM, "out of memory"); goto done; }
    for (int i = 0; i < n_msgs; i++) {
        const req_msg *m = &r->msgs[i];
        cm[i] = (ar_chat_msg){ .role = m->role, .content = m->content, .reasoning_content = m->reasoning };
        if (m->n_tool_calls) {
            calls[i] = calloc((size_t)m->n_tool_calls, sizeof **calls);
            if (!calls[i]) { rc = ar_fail(err, AR_ENOMEM, "out of memory"); goto done; }
            for (int j = 0; j < m->n_tool_calls; j++)
                calls[i][j] = (ar_chat_tool_call){ .name = m->tool_calls[j].name, .arguments = m->tool_calls[j].arguments };
            cm[i].tool_calls = calls[i];
            cm[i].n_tool_calls = m->n_tool_calls;
        }
    }
    int n_tools = r->tool_choice == REQ_TOOLS_NONE ? 0 : r->n_tools;
    for (int i = 0; i < n_tools; i++) tools[i] = r->tools[i].json;
    ar_chat_opts opts = { .family = r->chat_family, .add_generation_prompt = add_generation_prompt,
                          .disable_thinking = !r->enable_thinking };
    if (opts.family < AR_CHAT_QWEN35 || opts.family > AR_CHAT_CHATML) opts.family = AR_CHAT_QWEN35;
    rc = ar_chat_render_opts(cm, n_msgs, tools, n_tools, &opts, out, err);
done:
    if (calls)
        for (int i = 0; i < n_msgs; i++) free(calls[i]);
    free(calls);
    free(cm);
    free(tools);
    return rc;
}

int gen_render_chat(const srv_request *r, char **out, api_error *e)
{
    ar_error err = { 0 };
    int rc = gen_render_msgs(r, r->n_msgs, true, out, &err);
    if (rc == AR_ENOMEM) return api_fail(e, 500, "server_error", NULL, NULL, "out of memory");
    if (rc) return api_bad(e, "messages", "%s", err.msg);
    return 0;
}
