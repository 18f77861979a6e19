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
 * Also: the bytes of weights a decode step reads (for a roofline figure), and this machine's memory
 * read bandwidth (a multi-threaded streaming read of a buffer much larger than the last-level cache). */
#ifndef AR_ENGINE_BENCH_H
#define AR_ENGINE_BENCH_H

#include <stddef.h>
#include <stdint.h>

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

#endif
