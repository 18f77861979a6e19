/* compute/ops.h — the compute backend interface the models are written against.
 *
 * Everything here works on host F32 activations; weights are ar_weight views of (possibly
 * quantized) matrices, used in place. compute/cpu/ops.c is the portable reference backend:
 * plain C loops the compiler can vectorise. Faster backends (SIMD kernels, later CUDA) replace
 * the bodies behind the same calls and are tested against this reference.
 *
 * Threading: an ar_compute owns the persistent thread pool and per-thread scratch. Ops that take
 * an ar_compute split their work over the pool (matmul by output rows); row-wise helpers without
 * one are single-row kernels the caller parallelises (e.g. over nodes or heads) with
 * ar_compute_for. Nothing here allocates after ar_compute_create.
 *
 * Numerics follow ggml's CPU reference where it matters for parity with llama.cpp
 * (specs/qwen35.md §3.1, §8): RMSNorm sums squares in double, GDN L2 norm = rmsnorm(eps/n)/sqrt(n),
 * softplus is the identity above 20, F16/BF16 weights see activations rounded to F16/BF16 (as
 * ggml's vec_dot_type does). */
#ifndef AR_COMPUTE_OPS_H
#define AR_COMPUTE_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "base/pool.h"

/* A weight matrix W[n_out][n_in] in any type ar_dequantize_row handles; rows are row_bytes apart
 * (layout AR_LAYOUT_ROWS, as in a GGUF file) or rearranged for the backend's kernels by
 * ar_weight_pack (same bytes, same size). */
enum { AR_LAYOUT_ROWS = 0, AR_LAYOUT_TILES = 1 /* compute/cpu/gemm.h's 16-row tiles */ };
typedef struct ar_weight {
    int type;                 /* ar_dtype */
    int64_t n_in, n_out;
    size_t row_bytes;
    const void *data;
    float scale;              /* result multiplier (GGUF "<name>.scale" tensors); 1 when absent */
    int layout;               /* AR_LAYOUT_*; 0 (rows) for a zeroed struct */
} ar_weight;

typedef struct ar_compute ar_compute;

/* n_threads <= 0: one per core. max_in = the longest matmul input row, max_rows = the largest M
 * it will see (scratch for activations rounded to a weight's dot type). */
int  ar_compute_create(ar_compute **out, int n_threads, int64_t max_in, int max_rows, ar_error *err);
void ar_compute_free(ar_compute *c);
int  ar_compute_n_threads(const ar_compute *c);
/* The instruction set the matmul kernels run on here ("avx512", "avx2", "neon" or "scalar": the best
 * the CPU has, capped by ARBOR_CPU_ISA), and NULL or why ARBOR_CPU_ISA was ignored. */
const char *ar_compute_isa(void);
const char *ar_compute_isa_note(void);
/* fn(ctx, lo, hi, ith) over the items [0, n) on the pool, shared as the matmul rows are (ar_steal: each
 * thread its own part front to back, then the end of a slower one's), so fn may get several ranges on
 * one thread; ith names that thread's scratch. n == 1 runs on the calling thread (a pool wake-up costs
 * more than one node's row op). */
typedef void (*ar_range_fn)(void *ctx, int lo, int hi, int ith);
void ar_compute_for(ar_compute *c, int n, ar_range_fn fn, void *ctx);

/* y[m][o] = sum_i x[m][i] * W[o][i] for m < M, o < n_out. x rows are ldx floats apart, y rows ldy.
 * Each weight row is dequantized once and used for all M rows while in cache. */
void ar_matmul(ar_compute *c, const ar_weight *w, const float *x, int64_t ldx, float *y, int64_t ldy, int M);

/* y[i] = x W[i]^T for n weights that read the same x (say q, k and v): x is converted once per dot
 * type and all n run in one pool dispatch, their output rows split over the threads together.
 * Results are bit-identical to n ar_matmul calls. y[i] must not alias x. */
void ar_matmul_n(ar_compute *c, int n, const ar_weight *const *w, const float *x, int64_t ldx, float *const *y,
                 const int64_t *ldy, int M);

/* Whether the backend reads w faster in another layout (then ar_weight_pack it once, at load). */
int  ar_weight_wants_pack(const ar_weight *w);
/* Rearrange w in place into the backend's layout: data is a writable alias of w->data. Sets
 * w->layout; 0, or -1 (w unchanged) when w does not take it or memory runs out. Every op reads a
 * packed weight with the same results, bit for bit. */
int  ar_weight_pack(ar_weight *w, void *data);

/* Embedding lookup: y = W[row] dequantized (n_in floats). */
void ar_get_row(const ar_weight *w, int64_t row, float *y);

/* ---- row kernels ----------------------------------------------------------------------- */
/* y = (x * 1/sqrt(mean(x^2) + eps)) * w   (w may be NULL: no gain). y may alias x. */
void ar_rmsnorm(float *y, const float *x, const float *w, int n, float eps);
/* x = x / sqrt(sum(x^2) + eps), computed as ggml does: rmsnorm(x, eps/n) * 1/sqrt(n). */
void ar_l2norm(float *x, int n, float eps);

/* y[i] = silu(g[i]) * u[i] (u NULL: silu(g[i])), n elements; y may alias g or u. The fast path's exp
 * differs from libm's by a few ulp (tests/test_act.c bounds it). */
void ar_silu_mul(float *y, const float *g, const float *u, int64_t n);

static inline float ar_sigmoid(float x);
static inline float ar_silu(float x);
static inline float ar_softplus(float x);

/* Rotary embedding, NeoX pairing on the first n_rot dims of each of n_heads heads of head_dim
 * (pair (i, i + n_rot/2)); dims >= n_rot pass through. Angles as ggml's multi-section (IMROPE)
 * rope for text positions: pair i belongs to sector i % sum(sections); sectors mapped to the
 * t/h/w streams rotate by pos * theta_base^(-2i/n_rot) (built by repeated multiplication, as
 * ggml), sectors mapped to the e stream do not rotate (its position is 0 for text). */
typedef struct ar_rope {
    int n_rot;
    float theta_base;
    int sections[4];
    int imrope;               /* 1: interleaved sector->stream mapping (qwen35), 0: contiguous */
} ar_rope;
/* cs = [n_rot/2][2] (cos, sin) for position pos */
void ar_rope_cache(const ar_rope *r, int pos, float *cs);
void ar_rope_apply(float *x, int n_heads, int head_stride, int n_rot, const float *cs);

/* Causal depthwise conv, one token: out[ch] = sum_k w[ch][k] * rows[k][ch] for k < taps (summed in
 * tap order), rows oldest first: rows[taps-1] is the current token's conv input. */
void ar_conv_step(float *out, const float *const *rows, const float *w, int channels, int taps);

/* Gated DeltaNet recurrence for one head and one token (specs/qwen35.md §3.4). The state is stored
 * transposed, St[c][i] = S[i][c] (d_v rows of d_k), as llama.cpp:
 *   St *= exp(g); delta[c] = beta (v[c] - St[c]·k); St[c] += delta[c] k; o[c] = scale St[c]·q.
 * q and o may be NULL (state update only, as commit needs). */
void ar_gdn_step(float *St, const float *q, const float *k, const float *v, float g, float beta,
                 float *o, int d_k, int d_v, float scale);
/* T steps of one head on one state, token t's q, k, v at + t * ld_u, its g and beta at + t * ld_gb,
 * its output at o + t * ld_o (q and o may be NULL as above): the same bits as T calls of ar_gdn_step,
 * faster (the state stays in registers row by row instead of streaming through the cache per token). */
void ar_gdn_steps(float *St, int T, const float *q, const float *k, const float *v, size_t ld_u, const float *g,
                  const float *beta, size_t ld_gb, float *o, size_t ld_o, int d_k, int d_v, float scale);

/* Online-softmax attention for one query row: ar_attn_begin, then blocks of keys/values, then
 * ar_attn_finish writes o = sum softmax(s) v, s_j = scale * q·k_j. The accumulator is rescaled once
 * per block, so the result depends on where the blocks are cut: callers that want a row's result
 * independent of how its keys were split (KV pages, prompt chunks, tree verification) cut the blocks
 * at key positions that are multiples of AR_ATTN_BLOCK. */
enum { AR_ATTN_BLOCK = 64 };
typedef struct ar_attn_acc {
    float max, sum;
    float *o;                 /* [d] accumulator, caller-provided */
    int d;
} ar_attn_acc;
void ar_attn_begin(ar_attn_acc *a, float *o, int d);
/* One block of n <= AR_ATTN_BLOCK keys (k[j], v[j]: d floats each) for R query rows that all see
 * them (q[r] and acc[r], same d): the rows share every key and value load. A row's result is the
 * same bits whichever other rows share the call. */
void ar_attn_rows(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                  const float *const *v, int n, float scale);
/* The same with K and V rows as IEEE half floats (the KV cache's type), widened exactly. */
void ar_attn_rows_f16(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                      const uint16_t *const *v, int n, float scale);
/* n keys in rows stride floats apart, cut into blocks of AR_ATTN_BLOCK from the first, for the R rows
 * that all see them (ar_attn_rows per block). */
void ar_attn_block(ar_attn_acc *const *acc, const float *const *q, int R, const float *k, const float *v,
                   size_t stride, int n, float scale);
void ar_attn_finish(ar_attn_acc *a, float *out);

/* ---- inline scalar activations (expf as ggml's scalar reference) ---------------------------- */
#include <math.h>
static inline float ar_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
static inline float ar_silu(float x) { return x / (1.0f + expf(-x)); }
static inline float ar_softplus(float x) { return x > 20.0f ? x : logf(1.0f + expf(x)); }

#endif
