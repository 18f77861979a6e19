/* tok/chat.h — the Qwen3.5/3.6 chat template (spec qwen35.md §6), rendered in C.
 *
 * Not a Jinja engine: this is the one template of llama.cpp models/templates/Qwen3.5-4B.jinja written
 * out by hand, byte for byte, including its trimming rules, the reasoning ("<think>") handling of
 * assistant history, tool definitions, tool calls and tool results. Values inside JSON (tool
 * definitions, tool-call arguments) are rendered the way llama.cpp's Jinja `tojson` / `string` do.
 *
 * Usage: fill an array of ar_chat_msg (only role and content are needed for plain chat) and call
 * ar_chat_render; the result is the prompt text, to be tokenized with special tokens parsed. */
#ifndef AR_TOK_CHAT_H
#define AR_TOK_CHAT_H

#include <stdbool.h>

#include "base/error.h"

typedef struct ar_chat_tool_call {
    const char *name;        /* function name */
    const char *arguments;   /* a JSON object as text (OpenAI's function.arguments); NULL: no arguments */
} ar_chat_tool_call;

typedef struct ar_chat_msg {
    const char *role;        /* "system" (first only), "user", "assistant" or "tool" */
    const char *content;     /* NULL renders as empty */
    /* Optional, assistant messages only (zero-initialise when unused): */
    const char *reasoning_content;          /* NULL: taken from a "<think>...</think>" in content */
    const ar_chat_tool_call *tool_calls;
    int n_tool_calls;
} ar_chat_msg;

/* Render msgs as one prompt. add_generation_prompt appends the assistant header; thinking is on unless
 * enable_thinking is false (then an empty think block is pre-filled). *out is malloc'd (caller frees).
 * Errors (AR_EINVAL) follow the template: no messages, no user query, system message not first,
 * unknown role; AR_EFORMAT for tool-call arguments or tools that are not valid JSON. */
int ar_chat_render(const ar_chat_msg *msgs, int n_msgs, bool add_generation_prompt, bool enable_thinking,
                   char **out, ar_error *err);

/* Same, with tool definitions: tools[i] is one tool as JSON object text (for OpenAI tools, the server
 * passes {"type": "function", "function": {"name", "description", "parameters"}} in that key order). */
int ar_chat_render_tools(const ar_chat_msg *msgs, int n_msgs, const char *const *tools, int n_tools,
                         bool add_generation_prompt, bool enable_thinking, char **out, ar_error *err);

#endif
