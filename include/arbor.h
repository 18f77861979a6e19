/* include/arbor.h — arbor's public C API: load a model, open a session (one sequence with its
 * sampler), generate tokens from a prompt with streaming text.
 *
 *     ar_model *m;  ar_session *s;  ar_error err;
 *     ar_model_load(&m, "model.gguf", NULL, &err);
 *     ar_session_params sp = ar_session_defaults();   sp.sampling.temp = 0;
 *     ar_session_create(&s, m, &sp, &err);
 *     ar_model_tokenize(m, text, strlen(text), true, &ids, &n, &err);
 *     ar_generate(s, ids, n, 128, on_token, user, &stats, &err);    // on_token streams the text
 *
 * A session's context is every prompt and every generated token, in order: a second ar_generate
 * continues the conversation where the first stopped (the last generated token is evaluated at the
 * start of the next call). ar_session_reset empties it.
 *
 * Threads: a model runs one forward at a time; ar_generate calls on sessions of the same model must
 * not overlap. Functions that can fail return 0 or a negative AR_E* code and fill the ar_error. */
#ifndef ARBOR_H
#define ARBOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "spec/sample.h"   /* ar_sampler_params, ar_sampler_defaults */
#include "tok/chat.h"      /* ar_chat_msg, ar_chat_render */

/* ---- model ---------------------------------------------------------------------------------- */

typedef struct ar_model ar_model;

typedef struct ar_model_params {
    int  n_threads;   /* <= 0: one per core */
    int  max_batch;   /* most nodes per forward (prompt chunk size); <= 0: 512 */
    bool prefault;    /* read every weight page at load, with a progress line, so the first forward
                         does not pay for page faults (like llama.cpp's MAP_POPULATE) */
    bool draft_swa_lucebox; /* drafters with sliding-window layers: Lucebox's window rule (block causal,
                               context window [P-W, P)) instead of llama.cpp's (the default) */
    bool kv_f32;      /* attention KV cache in F32 instead of F16 (F16: llama.cpp's default cache type,
                         half the memory; F32: what the parity tests compare with llama.cpp's F32 cache) */
} ar_model_params;

ar_model_params ar_model_defaults(void);

/* Load a qwen35 GGUF: weights (mmap'd), tokenizer, compute context. p NULL: defaults. */
int  ar_model_load(ar_model **out, const char *path, const ar_model_params *p, ar_error *err);
void ar_model_free(ar_model *m);

/* Attach a DFlash drafter (a GGUF of arch `dflash`, llama.cpp's layout, or Lucebox's
 * `qwen35-dflash-draft` / `dflash-draft`) made for this model: sessions created afterwards decode
 * speculatively (ar_session_params: draft_block for chain verification, draft_budget for DDTree).
 * Speculative decoding is lossless: at temperature 0 the tokens are those of plain decoding, at
 * temperature > 0 every token is a sample of the model's own distribution (same sampler, same seed
 * stream). Fails when the drafter does not fit the model (hidden size, tap layers, vocabulary) or a
 * drafter is already attached. */
int  ar_model_load_draft(ar_model *m, const char *path, ar_error *err);
bool ar_model_has_draft(const ar_model *m);

/* The instruction set of the compute kernels on this CPU: "avx512", "avx2", "neon" or "scalar" (the
 * best it has; the environment variable ARBOR_CPU_ISA=avx2|neon|scalar caps it, to see how arbor runs
 * on a CPU without AVX-512 or dotprod; any other value is ignored with a warning at model load). */
const char *ar_cpu_kernels(void);

int32_t ar_model_n_vocab(const ar_model *m);
int     ar_model_n_ctx_train(const ar_model *m);

/* Text -> token ids (BOS prepended only when the vocabulary asks for it; Qwen's does not).
 * parse_special: control-token texts like "<|im_start|>" become their tokens (needed for chat
 * prompts). *ids is malloc'd (NULL when empty). */
int  ar_model_tokenize(const ar_model *m, const char *text, size_t len, bool parse_special,
                       int32_t **ids, size_t *n_ids, ar_error *err);
bool ar_model_token_is_eog(const ar_model *m, int32_t id);

/* ---- session -------------------------------------------------------------------------------- */

typedef struct ar_session ar_session;

typedef struct ar_session_params {
    int  n_ctx;                   /* context size in tokens; <= 0: 4096 (at most the training context) */
    ar_sampler_params sampling;   /* repeat_last_n < 0 means the whole context */
    bool special;                 /* streamed text includes control tokens ("<|im_end|>") */
    int  draft_block;             /* speculative decoding with the model's drafter: tokens verified per step
                                     (the anchor + up to draft_block-1 drafts), 2..64; 0: the drafter's trained
                                     block (16); 1: off. Ignored when the model has no drafter. */
    int  kv_page;                 /* attention KV page size in tokens; <= 0: the default */
    /* DDTree (with the model's drafter; ignored without one): instead of one chain of drafts per step,
     * verify a TREE of draft tokens in one forward (best-first over the drafter's top-K per depth) and
     * walk it with the session's sampler; still lossless, as the chain. The tree's depth is the block's
     * (draft_block - 1). */
    int  draft_budget;            /* 0: chain verification; N >= 1: a tree of N draft nodes per step (N + 1
                                     nodes per forward: at most the model's max_batch); -1: auto, the budget
                                     that maximises tokens per second, re-chosen every step from the measured
                                     forward times and acceptance (at most min(256, max_batch - 1)) */
    int  draft_top_k;             /* DDTree: candidates per depth, 1..64; 0: min(budget, 64) */
    bool draft_chain_seed;        /* DDTree: select the drafter's whole top-1 chain first, then fill best-first */
} ar_session_params;

ar_session_params ar_session_defaults(void);

int  ar_session_create(ar_session **out, ar_model *m, const ar_session_params *p, ar_error *err);
void ar_session_free(ar_session *s);
void ar_session_reset(ar_session *s);          /* empty context, sampler history and seed reset */
int  ar_session_n_past(const ar_session *s);   /* tokens in the context */
int  ar_session_n_ctx(const ar_session *s);
uint64_t ar_session_seed(const ar_session *s); /* the sampler's seed (the chosen one for AR_SEED_RANDOM) */
/* How the session decodes: the speculative block (anchor + up to block-1 drafts; 0 = plain decoding) and the
 * DDTree budget (0: chain verification or plain, N >= 1: trees of N draft nodes, -1: auto). */
int  ar_session_draft_block(const ar_session *s);
int  ar_session_draft_budget(const ar_session *s);
/* Turn the drafter off (on = false) or back on for the session's next generations. Only on an empty
 * session (new or just reset): the drafter's context must see every committed position. The tokens
 * are the same either way (speculation is lossless); plain decoding is what per-token logits need
 * (the server's logprobs). AR_EINVAL on a non-empty session; a no-op without a drafter. */
int  ar_session_set_speculative(ar_session *s, bool on, ar_error *err);

/* ---- generation ----------------------------------------------------------------------------- */

/* Called once per generated token with the text it completes (UTF-8, never half a character; may
 * be empty, e.g. for a control token). Return true to stop. At the end of a call, bytes still held
 * back (an incomplete character) are flushed with token = -1. */
typedef bool (*ar_on_token)(void *user, int32_t token, const char *piece, size_t len);

enum ar_stop {
    AR_STOP_NONE = 0,
    AR_STOP_EOG,        /* the model ended its turn (the end token is part of the context) */
    AR_STOP_LENGTH,     /* n_predict tokens generated */
    AR_STOP_CALLBACK,   /* on_token returned true */
    AR_STOP_CONTEXT,    /* the context is full */
};

typedef struct ar_gen_stats {
    int    n_prompt;    /* tokens evaluated before the first sample (the prompt, plus the previous
                           call's last generated token when continuing) */
    double prompt_s;    /* seconds for those */
    int    n_gen;       /* tokens generated */
    double gen_s;       /* seconds from the first sample to the last */
    int    stop;        /* enum ar_stop */
    /* speculative decoding (all 0 without a drafter): the first token comes from the prompt's logits,
     * every later one from a draft/verify step */
    int    n_steps;        /* draft/verify steps (chain or DDTree rounds) */
    int    n_step_tokens;  /* tokens those steps emitted (acceptance length = n_step_tokens / n_steps) */
    int    n_drafted;      /* draft tokens verified (DDTree: tree nodes; n_drafted / n_steps = mean budget) */
    int    n_accepted;     /* of those, accepted */
    double draft_s;        /* drafter block forwards (and top-K lists) */
    double verify_s;       /* target verification forwards */
    double commit_s;       /* sampling the verified rows, committing, the drafter's context update; DDTree:
                              also building the tree and choosing its budget */
} ar_gen_stats;

/* Append prompt to the session's context, then sample up to n_predict tokens (< 0: until the end of
 * generation or of the context; 0: only evaluate the prompt), streaming each through on_token (may
 * be NULL). Fails before any work when the prompt does not fit the context (AR_ERANGE), is empty
 * with nothing pending (AR_EINVAL) or holds ids outside the vocabulary (AR_EINVAL). stats may be
 * NULL. */
int ar_generate(ar_session *s, const int32_t *prompt, int n_prompt, int n_predict, ar_on_token on_token,
                void *user, ar_gen_stats *stats, ar_error *err);

#endif
