/* fuzz/fuzz_request.c — libFuzzer target for the request translation of every HTTP dialect (built by
 * scripts/fuzz.sh).
 *
 * Each input is a request body. It goes through js_parse_body (what the server does with every
 * body), then through each translator into a fresh srv_request — OpenAI chat completions and
 * completions, Anthropic messages (and its count_tokens form), OpenAI Responses — and, when a chat
 * translation is accepted, through the chat template (gen_render_chat), as a real request would
 * before tokenization. ASan/UBSan (and LeakSanitizer at exit) see any broken promise; the target
 * itself aborts when a refusal does not say why, or an accepted request breaks the invariants the
 * rest of the server relies on (roles are known, tools and calls have names, stop strings are not
 * empty, max_tokens is -1 or positive). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "server/gen.h"
#include "server/json.h"
#include "server/request.h"

static void check_error(const api_error *e)
{
    if (!e->message[0] || (e->status != 400 && e->status != 500)) abort();
}

static void check_request(const srv_request *r)
{
    if (r->max_tokens == 0 || r->max_tokens < -1) abort();
    for (int i = 0; i < r->n_stop; i++)
        if (!r->stop[i] || !r->stop[i][0]) abort();
    for (int i = 0; i < r->n_tools; i++)
        if (!r->tools[i].name || !r->tools[i].json) abort();
    if ((r->tool_choice == REQ_TOOLS_NAMED) != (r->tool_choice_name != NULL)) abort();
    for (int i = 0; i < r->n_msgs; i++) {
        const req_msg *m = &r->msgs[i];
        if (!m->role) abort();
        if (strcmp(m->role, "system") && strcmp(m->role, "user") && strcmp(m->role, "assistant") && strcmp(m->role, "tool"))
            abort();
        if (!strcmp(m->role, "system") && i != 0) abort();   /* gathered at the front */
        for (int j = 0; j < m->n_tool_calls; j++)
            if (!m->tool_calls[j].name) abort();
    }
}

enum { D_CHAT, D_COMPLETION, D_MESSAGES, D_COUNT_TOKENS, D_RESPONSES, D_COUNT };

static void translate(json_t *root, int dialect)
{
    srv_request r;
    api_error e = { 0 };
    req_init(&r);
    int rc;
    switch (dialect) {
    case D_CHAT: rc = req_parse_chat(root, &r, &e); break;
    case D_COMPLETION: rc = req_parse_completion(root, &r, &e); break;
    case D_MESSAGES: rc = req_parse_anthropic(root, &r, false, &e); break;
    case D_COUNT_TOKENS: rc = req_parse_anthropic(root, &r, true, &e); break;
    default: rc = req_parse_responses(root, &r, &e); break;
    }
    if (rc) {
        check_error(&e);
    } else {
        check_request(&r);
        if (r.kind == REQ_CHAT) {
            char *text = NULL;
            api_error re = { 0 };
            if (gen_render_chat(&r, &text, &re)) check_error(&re);
            else if (!text) abort();
            free(text);
        }
    }
    req_free(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    api_error e = { 0 };
    json_t *root = js_parse_body((const char *)data, size, &e);
    if (!root) {
        check_error(&e);
        return 0;
    }
    for (int d = 0; d < D_COUNT; d++) translate(root, d);
    json_decref(root);
    return 0;
}
