/* engine/bench.h — benchmark routines over the model API (model/qwen35.h), llama-bench style.
 *
 * One bench object = one model context (scratch for up to max_nodes nodes, its thread pool), one
 * sequence and the buffers a run needs, all made once; a timed run allocates nothing. Tokens are
 * random (weight values and token ids do not change the cost). Each routine times one run and
 * returns its wall time in seconds; the caller repeats, warms up and averages (bench_stats).
 *
 *   pp      one chain of n random tokens (in chunks of max_nodes, like llama.cpp's ubatch), logits for
 *           the last node only (as llama-bench), each chunk committed; the sequence starts empty.
 *   tg      n single-node decode steps, each with logits, each committed; the sequence starts empty.
 *   verify  after bench_verify_prefix (depth committed tokens): one forward of a chain of m nodes that
 *           all want logits (what speculative verification evaluates), never committed, so it can
 *           be repeated on the same prefix.
 *
 * Also: the bytes of weights a decode step reads (for a roofline figure), this machine's memory read
 * bandwidth (a multi-threaded streaming read of a buffer much larger than the last-level cache), and
 * bench_spec_compare: plain decoding vs DFlash chain vs DDTree speculation, end to end through
 * ar_generate, with the check that every mode produced the same tokens. */
#ifndef AR_ENGINE_BENCH_H
#define AR_ENGINE_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arbor.h"
#include "base/error.h"
#include "model/qwen35.h"

typedef struct bench bench;

/* max_nodes: largest batch (pp chunk size and the largest verify m); n_ctx: most tokens a sequence
 * holds (>= pp, tg and depth + m); max_logits: most logit rows of one forward (the largest verify m);
 * n_threads <= 0: one per core. */
int  bench_create(bench **out, const qwen35_model *m, int max_nodes, int n_ctx, int max_logits,
                  int n_threads, uint64_t seed, ar_error *err);
void bench_free(bench *b);

int bench_pp(bench *b, int n_tokens, double *seconds, ar_error *err);
int bench_tg(bench *b, int n_tokens, double *seconds, ar_error *err);
int bench_verify_prefix(bench *b, int depth, ar_error *err);   /* resets the sequence, commits depth tokens */
int bench_verify(bench *b, int m, double *seconds, ar_error *err);

/* ---- model figures --------------------------------------------------------------------------- */
typedef struct bench_model_info {
    uint64_t file_bytes;        /* sum of every tensor's bytes (llama-bench's "size") */
    int64_t  n_params;          /* sum of every tensor's elements (llama-bench's "params") */
    uint64_t bytes_per_token;   /* weights one decode step reads: every trunk layer's tensors, the
                                   output norm and LM head, one token_embd row (MTP blocks excluded) */
    int      main_type;         /* ar_dtype with the most bytes among the trunk layers' 2-D weights */
} bench_model_info;

void bench_model_describe(const qwen35_model *m, bench_model_info *out);

/* ---- machine ------------------------------------------------------------------------------------
 * Best of `runs` multi-threaded streaming reads of a `bytes` buffer (touched once before timing),
 * in GB/s (1e9 bytes/s). n_threads <= 0: one per core. Returns a negative value when the buffer
 * cannot be allocated. */
double bench_mem_bandwidth(int n_threads, size_t bytes, int runs);

/* ---- statistics ---------------------------------------------------------------------------------- */
typedef struct bench_stat { double mean, sd, min, max; int n; } bench_stat;
/* sd is the sample standard deviation (n - 1), 0 for n < 2, as llama-bench. */
void bench_stats(const double *v, int n, bench_stat *out);


/* ---- speculative decoding: plain vs chain vs DDTree ---------------------------------------------
 * Through the public API (include/arbor.h), on a model with a drafter attached: every mode decodes the
 * SAME prompt (n_prompt seeded random token ids, end-of-generation ids excluded) greedily (T = 0) for
 * n_gen tokens in a fresh session: one untimed warm-up generation, then reps timed ones, the session
 * reset before each. Lossless speculation must give plain decoding's tokens at T = 0: every run of every
 * mode is compared with plain's (modes[0] must be plain) and the row says whether all matched. */
enum bench_spec_kind { BENCH_SPEC_PLAIN, BENCH_SPEC_CHAIN, BENCH_SPEC_TREE };

typedef struct bench_spec_mode {
    int kind;         /* enum bench_spec_kind */
    int budget;       /* BENCH_SPEC_TREE: draft nodes per step, or -1 (auto) */
} bench_spec_mode;

typedef struct bench_spec_params {
    int      n_prompt;      /* >= 1 */
    int      n_gen;         /* >= 1 */
    int      reps;          /* timed runs per mode, >= 1 */
    int      draft_block;   /* chain / tree: tokens per step (anchor + drafts), 2..64; 0: the drafter's */
    uint64_t seed;          /* of the prompt's token ids */
} bench_spec_params;

typedef struct bench_spec_row {
    bench_spec_mode mode;
    int        block;          /* the session's speculative block (0 for plain) */
    int        n_gen;          /* tokens each run generated (fewer than asked when the model ended its turn) */
    double     steps;          /* per run (mean): draft/verify steps; plain: decode forwards after the first token */
    double     accept_len;     /* tokens committed per step (plain: 1) */
    double     drafted_per_step;  /* draft tokens verified per step (DDTree: tree nodes; auto: the mean budget) */
    double     accepted_frac;  /* of the drafted tokens, accepted */
    double     draft_ms, verify_ms, commit_ms;   /* per step, over all timed runs (plain: all 0) */
    double     step_ms;        /* generation time per step (plain: one decode forward + sampling) */
    bench_stat tps;            /* generated tokens / generation seconds, over the timed runs */
    bool       identical;      /* every run's tokens equal plain's */
    int        first_diff;     /* identical: -1; else the first differing token index (of the first bad run) */
} bench_spec_row;

/* Called before each generation (run -1: the warm-up) and after each mode's row is complete; may be NULL. */
typedef struct bench_spec_hooks {
    void (*on_run)(void *user, int mode, int run);
    void (*on_row)(void *user, int mode, const bench_spec_row *row);
    void *user;
} bench_spec_hooks;

/* Fills rows[0..n_modes). Fails (AR_EINVAL) when the model has no drafter, modes[0] is not plain or a
 * parameter is out of range; errors of session creation and generation name the mode. Different tokens
 * are not an error: see rows[i].identical. */
int bench_spec_compare(ar_model *m, const bench_spec_params *p, const bench_spec_mode *modes, int n_modes,
                       bench_spec_row *rows, const bench_spec_hooks *hooks, ar_error *err);

#endif
