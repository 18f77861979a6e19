/* server/gen.h — one request's generation, independent of the HTTP dialect.
 *
 *   gen_prepare  (any thread)      srv_request -> prompt text (chat template) -> token ids, and the
 *                                  admission check against the context (400 with the numbers);
 *   gen_run      (the worker)      prefill in chunks (cancellable between chunks), then sample; the
 *                                  raw text goes through stop strings, then the reasoning splitter
 *                                  ("<think>...</think>" -> reasoning events), then — when the
 *                                  request offers tools — the tool-call parser, and reaches the
 *                                  response writer as events (gen_sink).
 *
 * Response writers (openai.c now; anthropic.c and responses.c later) implement a gen_sink; they never
 * see tokens or template text, only these events, so each dialect is a formatter. */
#ifndef AR_SERVER_GEN_H
#define AR_SERVER_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arbor.h"
#include "server/json.h"
#include "server/request.h"

#define GEN_MAX_TOP_LOGPROBS 20

typedef struct gen_top {
    int32_t     token;
    float       logprob;
    const char *text;   /* the token's bytes (may be part of a UTF-8 character) */
    size_t      len;
} gen_top;

/* One generated token's log-probability under the model (softmax of the raw logits), with the most
 * likely alternatives when the request asked for top_logprobs. Valid during the callback only. */
typedef struct gen_logprob {
    gen_top chosen;
    int     n_top;
    gen_top top[GEN_MAX_TOP_LOGPROBS];
} gen_logprob;

/* Events of one generation, in output order. Any callback may be NULL. */
typedef struct gen_sink {
    void *user;
    void (*reasoning)(void *user, const char *text, size_t len);
    void (*content)(void *user, const char *text, size_t len);
    /* A tool call: begin (its id and function name), argument JSON text in fragments whose
     * concatenation is one JSON object, end. index counts calls from 0 within the response. */
    void (*tool_call_begin)(void *user, int index, const char *id, const char *name);
    void (*tool_call_args)(void *user, int index, const char *json, size_t len);
    void (*tool_call_end)(void *user, int index);
    /* Only when the request asked for logprobs; comes before the token's text events. */
    void (*logprob)(void *user, const gen_logprob *lp);
} gen_sink;

enum gen_finish {
    GEN_FINISH_STOP = 0,     /* end of turn, or a stop string */
    GEN_FINISH_LENGTH,       /* max_tokens, or the context is full */
    GEN_FINISH_TOOL_CALLS,   /* the turn ended with tool calls */
    GEN_FINISH_CANCELLED,    /* the client went away */
};

typedef struct gen_result {
    int    finish;           /* enum gen_finish */
    int    n_prompt;         /* prompt tokens */
    int    n_gen;            /* generated tokens (including the end-of-turn token) */
    int    n_reasoning;      /* of those, tokens generated inside the reasoning block */
    int    n_tool_calls;
    double prompt_s, gen_s;
    const char *stop_word;   /* the stop string that ended generation (the request's), or NULL */
} gen_result;

typedef struct gen_prompt {
    int32_t *ids;
    int      n;
    bool     reasoning_open;   /* the prompt ends inside an open "<think>" block (thinking on) */
    char    *text;             /* the rendered prompt (NULL when the client sent token ids) */
} gen_prompt;

/* Render (chat) or take (completion) the prompt, tokenize it and check it fits n_ctx with room for
 * at least one generated token. Errors are the client's: 400 naming the field. */
int  gen_prepare(const ar_model *m, int n_ctx, const srv_request *r, gen_prompt *out, api_error *e);
void gen_prompt_free(gen_prompt *p);

/* The chat prompt text alone (for /apply-template and count_tokens). *out malloc'd. */
int  gen_render_chat(const srv_request *r, char **out, api_error *e);

/* Polled between prefill chunks and after every token; true stops the generation. */
typedef bool (*gen_cancel_fn)(void *user);

/* Generate on session s (reset first: one request = one fresh context), streaming events to sink.
 * Returns 0, or a negative AR_E* code with err filled when the engine failed. */
int gen_run(ar_session *s, const srv_request *r, const gen_prompt *p, const gen_sink *sink, gen_cancel_fn cancelled,
            void *cancel_user, gen_result *res, ar_error *err);

#endif
