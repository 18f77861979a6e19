/* tok/chat.h — the Qwen3.5/3.6 chat templates (spec qwen35.md §6), rendered in C.
 *
 * Not a Jinja engine: this is the one template of llama.cpp models/templates/Qwen3.5-4B.jinja (= Hugging
 * Face Qwen/Qwen3.5-* chat_template.jinja) written out by hand, byte for byte, including its trimming
 * rules, the reasoning ("<think>") handling of assistant history, tool definitions, tool calls and tool
 * results; plus the two lines Qwen/Qwen3.6-27B changed (AR_CHAT_QWEN36), and plain ChatML for any other
 * template (AR_CHAT_CHATML). Values inside JSON (tool definitions, tool-call arguments) are rendered the
 * way llama.cpp's Jinja `tojson` / `string` do; tests/test_template.c compares hundreds of generated
 * conversations byte for byte with the real template.
 *
 * Usage: fill an array of ar_chat_msg (only role and content are needed for plain chat) and call
 * ar_chat_render; or hand an OpenAI-style request's "messages" and "tools" JSON to ar_chat_render_json.
 * The result is the prompt text, to be tokenized with special tokens parsed. */
#ifndef AR_TOK_CHAT_H
#define AR_TOK_CHAT_H

#include <stdbool.h>

#include "base/error.h"

/* Template families (ar_chat_family). */
enum {
    AR_CHAT_QWEN35 = 0,   /* Qwen3.5 template (the default, also for a model without a template) */
    AR_CHAT_QWEN36 = 1,   /* Qwen3.6: + preserve_thinking; non-string scalar arguments as JSON (true, null) */
    AR_CHAT_CHATML = 2,   /* any other template: "<|im_start|>ROLE\nCONTENT<|im_end|>\n", no tools, no
                             thinking; the caller should warn that the model's own template is not used */
};

/* The family of a model's tokenizer.chat_template text, decided by its content: the Qwen3.5 XML
 * tool-call format ("<|im_start|>", "<tool_call>", "<function=", "<parameter=", "<think>") is
 * AR_CHAT_QWEN35, or AR_CHAT_QWEN36 when the template also reads `preserve_thinking`; NULL or "" is
 * AR_CHAT_QWEN35; anything else AR_CHAT_CHATML. */
int ar_chat_family(const char *template_text);

/* "qwen3.5", "qwen3.6", "chatml" */
const char *ar_chat_family_name(int family);

/* True when template_text is byte for byte one of the templates this file implements (Qwen3.5 or
 * Qwen3.6 as published); a template of the Qwen family with other edits is rendered as its family and
 * deserves a warning. */
bool ar_chat_template_is_known(const char *template_text);

typedef struct ar_chat_tool_call {
    const char *name;        /* function name */
    const char *arguments;   /* a JSON object as text (OpenAI's function.arguments); NULL or "": none */
} ar_chat_tool_call;

typedef struct ar_chat_msg {
    const char *role;        /* "system" (first only), "user", "assistant" or "tool" */
    const char *content;     /* NULL renders as empty */
    /* Optional, assistant messages only (zero-initialise when unused): */
    const char *reasoning_content;          /* NULL: taken from a "<think>...</think>" in content */
    const ar_chat_tool_call *tool_calls;
    int n_tool_calls;
} ar_chat_msg;

/* Render options; zero-initialised means: Qwen3.5, no generation prompt, thinking on. */
typedef struct ar_chat_opts {
    int  family;                 /* AR_CHAT_QWEN35, AR_CHAT_QWEN36 or AR_CHAT_CHATML */
    bool add_generation_prompt;  /* append "<|im_start|>assistant\n<think>\n" (or the empty think block) */
    bool disable_thinking;       /* the template's enable_thinking = false: pre-fill an empty think block */
    bool preserve_thinking;      /* Qwen3.6 only: keep <think> blocks of every assistant turn */
} ar_chat_opts;

/* Render msgs as one prompt. tools[i] is one tool as JSON object text (for OpenAI tools:
 * {"type": "function", "function": {"name", "description", "parameters"}} in that key order, as
 * llama.cpp passes them; ar_chat_render_json does that rebuild). *out is malloc'd (caller frees).
 * Errors (AR_EINVAL) follow the template: no messages, no user query, system message not first,
 * unknown role; AR_EFORMAT for tool-call arguments or tools that are not valid JSON. */
int ar_chat_render_opts(const ar_chat_msg *msgs, int n_msgs, const char *const *tools, int n_tools,
                        const ar_chat_opts *opts, char **out, ar_error *err);

/* The same from an OpenAI chat-completions request's "messages" array and "tools" array (JSON text;
 * tools_json may be NULL), normalised the way llama.cpp's server does before its template runs:
 * role "developer" is "system"; content may be a string, null or an array of {"type": "text"} parts
 * (concatenated; image/audio parts are AR_EUNSUPPORTED); an empty reasoning_content counts as absent;
 * tool-call arguments may be a JSON string or an object; tools are rebuilt as above ("description"
 * defaults to "", "parameters" to {}). Integers beyond 64 bits are an AR_EFORMAT error. */
int ar_chat_render_json(const char *messages_json, const char *tools_json, const ar_chat_opts *opts, char **out,
                        ar_error *err);

/* Qwen3.5 shortcuts (the original API). */
int ar_chat_render(const ar_chat_msg *msgs, int n_msgs, bool add_generation_prompt, bool enable_thinking,
                   char **out, ar_error *err);
int ar_chat_render_tools(const ar_chat_msg *msgs, int n_msgs, const char *const *tools, int n_tools,
                         bool add_generation_prompt, bool enable_thinking, char **out, ar_error *err);

#endif
