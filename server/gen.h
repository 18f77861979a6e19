/* server/gen.h — one request's generation, independent of the HTTP dialect.
 *
 *   gen_prepare  (any thread)      srv_request -> prompt text (chat template) -> token ids, and the
 *                                  admission check against the context (400 with the numbers);
 *   gen_submit   (any thread)      queue the request on the scheduler (engine/sched.h: batched with
 *                                  the other requests, resumed from the prefix cache at the longest
 *                                  cached message boundary); events arrive on the scheduler's thread;
 *                                  With a drafter on the model, each request brings its own
 *                                  speculative hook (engine/spec_hook.h: chain, DDTree or auto), at
 *                                  any --parallel; the scheduler verifies the drafts in the shared
 *                                  forward;
 *   gen_run      (one thread)      the tests' script mode: the request's script stands in for the
 *                                  model's output. In both, the
 *                                  raw text goes through stop strings, then the reasoning splitter
 *                                  ("<think>...</think>" -> reasoning events), then — when the
 *                                  request offers tools — the tool-call parser, and reaches the
 *                                  response writer as events (gen_sink).
 *   tool_choice "required" / named (and parallel_tool_calls off with them) is enforced in both by
 *   constrained decoding: server/toolchoice.h's constraint rides on the request's sampler
 *   (ar_sampler_params.constraint), so plain, batched and speculative decoding all honour it.
 *
 * Response writers (openai.c now; anthropic.c and responses.c later) implement a gen_sink; they never
 * see tokens or template text, only these events, so each dialect is a formatter. */
#ifndef AR_SERVER_GEN_H
#define AR_SERVER_GEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arbor.h"
#include "engine/sched.h"
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
    int    n_cached;         /* of those, restored from the prefix cache */
    int    n_gen;            /* generated tokens (including the end-of-turn token) */
    int    n_reasoning;      /* of those, tokens generated inside the reasoning block */
    int    n_tool_calls;
    double queue_s;          /* waiting for a sequence slot */
    int    n_spec_steps;     /* speculative steps (a drafter), the tokens they emitted and the draft */
    int    n_spec_tokens;    /*   nodes they verified (acceptance length = n_spec_tokens / n_spec_steps) */
    int    n_spec_nodes;
    double prompt_s, gen_s;
    const char *stop_word;   /* the stop string that ended generation (the request's), or NULL */
} gen_result;

typedef struct gen_prompt {
    int32_t *ids;
    int      n;
    bool     reasoning_open;   /* the prompt ends inside an open "<think>" block (thinking on) */
    int      n_ctx;            /* the context it was checked against (gen_prepare's n_ctx) */
    char    *text;             /* the rendered prompt (NULL when the client sent token ids) */
    int     *bounds;           /* chat: prompt lengths at message ends (prefix cache snapshot points) */
    int      n_bounds;
} gen_prompt;

/* Render (chat) or take (completion) the prompt, tokenize it and check it fits n_ctx with room for
 * at least one generated token. Errors are the client's: 400 naming the field. */
int  gen_prepare(const ar_model *m, int n_ctx, const srv_request *r, gen_prompt *out, api_error *e);
void gen_prompt_free(gen_prompt *p);

/* The chat prompt text alone (for /apply-template and count_tokens). *out malloc'd. */
int  gen_render_chat(const srv_request *r, char **out, api_error *e);
/* The first n_msgs messages of r (and its tools) in r->chat_family's template, with or without the
 * generation prompt. 0 or an AR_E* code (the template's refusal in err). *out malloc'd. */
int  gen_render_msgs(const srv_request *r, int n_msgs, bool add_generation_prompt, char **out, ar_error *err);

/* Polled between prefill chunks and after every token; true stops the generation. */
typedef bool (*gen_cancel_fn)(void *user);

/* Tests: run r->script (required) through the text pipeline as if the model had generated it, streaming
 * events to sink. Returns 0, or a negative AR_E* code with err filled when the
 * engine failed. */
int gen_run(const srv_request *r, const gen_prompt *p, const gen_sink *sink, gen_cancel_fn cancelled,
            void *cancel_user, gen_result *res, ar_error *err);

/* The end of a submitted generation: rc 0 and res, or an engine failure (rc, err). Called once, on
 * the scheduler's thread (or from ar_sched_free, as cancelled). */
typedef void (*gen_done_fn)(void *user, int rc, const gen_result *res, const ar_error *err);

/* Queue the generation on the scheduler (of model m); r, p and sink's user must stay valid until done runs
 * (sink itself is copied). Returns 0 (then done is called exactly once; *id names the request for
 * ar_sched_cancel), or an AR_E* code with nothing called: AR_ERANGE "queue is full" when the
 * scheduler's queue is full. */
/* Serve's options for each generation: speculative decoding with the model's drafter (--block /
 * --budget) and the history fill. */
typedef struct gen_spec {
    int block;    /* tokens per step (anchor + drafts), 2..64; 0: the drafter's trained block; 1: no speculation */
    int budget;   /* 0: chain; N >= 1: DDTree of N draft nodes; -1: DDTree, auto */
    bool fill;    /* history fill after chat answers without tool calls (gen.c history_fill; needs the
                     scheduler's prefix cache) */
} gen_spec;

int gen_submit(ar_sched *sched, const ar_model *m, const gen_spec *spec, const srv_request *r, const gen_prompt *p,
               const gen_sink *sink, gen_cancel_fn cancelled, void *cancel_user, gen_done_fn done, void *done_user,
               uint64_t *id, ar_error *err);

#endif
