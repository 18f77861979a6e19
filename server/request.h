/* server/request.h — the internal request every HTTP dialect is translated into, and the
 * translators: OpenAI chat completions and completions (request.c), Anthropic messages
 * (request_anthropic.c), OpenAI Responses (request_responses.c).
 *
 * Layering: http.c hands a body to an endpoint (openai.c, anthropic.c, responses.c); the
 * endpoint's translator fills an srv_request (this file: JSON -> messages, tools, sampling, stop,
 * limits, stream flags); server/gen.c turns it into a prompt and generates; the endpoint's writer
 * turns generation events into its own response shape. A translator for another dialect builds the
 * same struct with req_add_msg / req_add_tool / req_add_stop and req_parse_sampling's shared field
 * rules, so nothing below it knows which API the client spoke.
 *
 * Ownership: every string in an srv_request is its own (malloc'd); req_free releases them. */
#ifndef AR_SERVER_REQUEST_H
#define AR_SERVER_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "server/json.h"
#include "spec/sample.h"

enum req_kind { REQ_CHAT = 0, REQ_COMPLETION };

enum req_tool_choice {
    REQ_TOOLS_AUTO = 0,   /* the model decides */
    REQ_TOOLS_NONE,       /* tools are not shown to the model */
    REQ_TOOLS_REQUIRED,   /* the model must call one (enforced: server/toolchoice.h) */
    REQ_TOOLS_NAMED,      /* the model must call tool_choice_name (enforced likewise) */
};

typedef struct req_tool_call {
    char *id;          /* "call_..." (may be NULL in history) */
    char *name;
    char *arguments;   /* JSON object text; NULL: no arguments */
} req_tool_call;

typedef struct req_msg {
    char *role;                  /* "system", "user", "assistant" or "tool" (developer -> system) */
    char *content;               /* NULL: none */
    char *reasoning;             /* assistant: its reasoning ("reasoning_content"); NULL: none */
    req_tool_call *tool_calls;   /* assistant */
    int   n_tool_calls;
    char *tool_call_id;          /* tool: the call it answers */
} req_msg;

typedef struct req_tool {
    char *name;
    char *json;   /* {"type":"function","function":{"name","description","parameters"}} in that order,
                     what tok/chat.h's template shows the model */
} req_tool;

typedef struct srv_request {
    int   kind;                  /* enum req_kind */
    char *model;                 /* as the client named it (echoed back); NULL: the server's */

    /* chat */
    req_msg *msgs;
    int      n_msgs, cap_msgs;
    req_tool *tools;
    int      n_tools, cap_tools;
    int      tool_choice;        /* enum req_tool_choice */
    char    *tool_choice_name;
    bool     parallel_tool_calls;  /* default true; false: one call at most (enforced with required / named) */
    bool     enable_thinking;    /* default true; chat_template_kwargs.enable_thinking / reasoning_effort "none" */
    int      chat_family;        /* tok/chat.h AR_CHAT_*: the model's template family (set by the server from the
                                    GGUF before rendering, never by the client); 0: Qwen3.5 */

    /* completion: the prompt as text, or as token ids when the client sent ids */
    char    *prompt;
    int32_t *prompt_ids;
    size_t   n_prompt_ids;

    /* generation */
    char   **stop;               /* stop strings (never empty strings) */
    int      n_stop;
    int      max_tokens;         /* < 0: until the model stops or the context is full */
    ar_sampler_params sampling;
    bool     stream;
    bool     include_usage;      /* stream_options.include_usage */
    bool     logprobs;
    int      top_logprobs;       /* 0..20 */

    /* Tests only (srv_options.script): this text stands in for the model's output, 3 bytes per
     * token, through the same stop / reasoning / tool-call pipeline. Borrowed; NULL normally. */
    const char *script;
} srv_request;

/* Server-side sampling defaults when the client omits a field: the Qwen3.5/3.6 model card's
 * (temperature 1.0, top_p 0.95, top_k 20, min_p 0), penalties off, random seed. */
ar_sampler_params req_default_sampling(void);

void req_init(srv_request *r);           /* empty request with the defaults above */
void req_free(srv_request *r);           /* r may be zeroed or half-built */

/* Builders (return NULL / -1 only when out of memory, after filling e with a 500). */
req_msg *req_add_msg(srv_request *r, const char *role, const char *content, api_error *e);
req_tool_call *req_msg_add_call(req_msg *m, const char *id, const char *name, const char *arguments, api_error *e);
/* description may be NULL; parameters (borrowed) may be NULL. */
int req_add_tool(srv_request *r, const char *name, const char *description, json_t *parameters, api_error *e);
int req_add_stop(srv_request *r, const char *s, api_error *e);
/* Insert a system message at the front (the Qwen template takes one, first). */
int req_insert_system(srv_request *r, const char *text, api_error *e);
/* Tool-call arguments from a client (a string holding a JSON object, or an object) -> JSON object
 * text (*out malloc'd; NULL when args is NULL/null). Anything else is a 400 naming param. */
int req_args_text(json_t *args, const char *param, char **out, api_error *e);

/* Shared field rules (OpenAI names): temperature, top_p, top_k, min_p, presence_penalty,
 * frequency_penalty, repetition_penalty, repeat_last_n, seed. Range or type errors -> 400. */
int req_parse_sampling(json_t *root, srv_request *r, api_error *e);
/* "stop": a string or an array of strings (param names the field for errors). */
int req_parse_stop(json_t *root, const char *key, srv_request *r, api_error *e);
/* Text of a content value: a string, or an array of parts whose "text" parts are joined (images and
 * other media -> 400 naming the part). NULL value -> *out NULL. *out is malloc'd. */
int req_content_text(json_t *value, const char *param, char **out, api_error *e);

/* POST /v1/chat/completions body -> r. */
int req_parse_chat(json_t *root, srv_request *r, api_error *e);
/* POST /v1/completions body -> r. */
int req_parse_completion(json_t *root, srv_request *r, api_error *e);
/* POST /v1/messages body -> r (Anthropic). count_only: the body of /v1/messages/count_tokens
 * (max_tokens is not required). */
int req_parse_anthropic(json_t *root, srv_request *r, bool count_only, api_error *e);
/* POST /v1/responses body -> r (OpenAI Responses; stateless: the whole history is in "input"). */
int req_parse_responses(json_t *root, srv_request *r, api_error *e);

#endif
