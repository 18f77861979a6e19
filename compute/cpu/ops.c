/* compute/cpu/ops.c — portable reference CPU backend for compute/ops.h.
 *
 * Plain C loops written so that GCC can vectorise them at -O2 (fixed-width partial sums, no
 * intrinsics). The matmul dequantizes a small group of weight rows into a per-thread buffer and
 * dots them with every activation row while they are in cache, so a forward over M nodes reads
 * each weight once; work is split by output rows over the persistent pool. Faster kernels (SIMD,
 * quantized activations) will live next to this file and be tested against it. */
#include "compute/ops.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "compute/cpu/act.h"
#include "compute/cpu/attn.h"
#include "compute/cpu/cpu_features.h"
#include "compute/cpu/gdn.h"
#include "compute/cpu/gemm.h"
#include "compute/cpu/norm.h"
#include "format/quant.h"

enum { MM_ROWS = 4, LANES = 8 };

struct ar_compute {
    ar_pool *pool;
    int n_threads;
    int64_t max_in;
    int max_rows;
    float **wbuf;       /* per thread: MM_ROWS dequantized weight rows */
    float *xround;      /* max_rows * max_in: activations rounded to F16/BF16 */
    uint8_t *xq;        /* max_rows * 2 * max_in bytes: activations in the GEMM kernels' dot type */
    uint8_t *xq2;       /* the same, for ar_matmul_n's second dot type */
};

int ar_compute_create(ar_compute **out, int n_threads, int64_t max_in, int max_rows, ar_error *err)
{
    *out = NULL;
    ar_compute *c = calloc(1, sizeof *c);
    if (!c) return ar_fail(err, AR_ENOMEM, "out of memory creating the compute context");
    c->pool = ar_pool_create(n_threads);
    if (!c->pool) { free(c); return ar_fail(err, AR_ENOMEM, "cannot create the thread pool"); }
    c->n_threads = ar_pool_size(c->pool);
    c->max_in = max_in < 1 ? 1 : max_in;
    c->max_rows = max_rows < 1 ? 1 : max_rows;
    c->wbuf = calloc((size_t)c->n_threads, sizeof *c->wbuf);
    c->xround = malloc((size_t)c->max_rows * (size_t)c->max_in * sizeof(float));
    c->xq = malloc((size_t)c->max_rows * (size_t)c->max_in * 2 + 64);
    c->xq2 = malloc((size_t)c->max_rows * (size_t)c->max_in * 2 + 64);
    int ok = c->wbuf && c->xround && c->xq && c->xq2;
    for (int i = 0; ok && i < c->n_threads; i++) {
        c->wbuf[i] = malloc((size_t)MM_ROWS * (size_t)c->max_in * sizeof(float));
        ok = c->wbuf[i] != NULL;
    }
    if (!ok) {
        ar_compute_free(c);
        return ar_fail(err, AR_ENOMEM, "out of memory for matmul scratch (%d threads, rows of %lld)",
                       n_threads, (long long)max_in);
    }
    *out = c;
    return AR_OK;
}

void ar_compute_free(ar_compute *c)
{
    if (!c) return;
    if (c->wbuf)
        for (int i = 0; i < c->n_threads; i++) free(c->wbuf[i]);
    free(c->wbuf);
    free(c->xround);
    free(c->xq);
    free(c->xq2);
    ar_pool_free(c->pool);
    free(c);
}

int ar_compute_n_threads(const ar_compute *c) { return c->n_threads; }

typedef struct { ar_range_fn fn; void *ctx; ar_steal steal; } for_task;

static void for_worker(void *p, int ith, int nth)
{
    (void)nth;
    for_task *t = p;
    long lo, hi;
    while (ar_steal_next(&t->steal, ith, &lo, &hi)) t->fn(t->ctx, (int)lo, (int)hi, ith);
}

void ar_compute_for(ar_compute *c, int n, ar_range_fn fn, void *ctx)
{
    if (n <= 0) return;
    if (n == 1 || c->n_threads == 1) {
        fn(ctx, 0, n, 0);
        return;
    }
    for_task t = { .fn = fn, .ctx = ctx };
    ar_steal_init(&t.steal, n, 1, 1, c->n_threads);
    ar_pool_run(c->pool, for_worker, &t);
}

const char *ar_compute_isa(void) { return ar_gemm_isa(); }

const char *ar_compute_isa_note(void) { return ar_cpu_isa_cap_error(); }

/* ---- matmul ---------------------------------------------------------------------------- */

static float dot(const float *a, const float *b, int64_t n)
{
    float acc[LANES] = { 0 };
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += a[i + j] * b[i + j];
    float s = 0.0f;
    for (int j = 0; j < LANES; j++) s += acc[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* Four weight rows against one activation row: x is read once for four outputs. */
static void dot4(const float *x, const float *w0, const float *w1, const float *w2, const float *w3,
                 int64_t n, float out[4])
{
    float a0[LANES] = { 0 }, a1[LANES] = { 0 }, a2[LANES] = { 0 }, a3[LANES] = { 0 };
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            float xv = x[i + j];
            a0[j] += xv * w0[i + j];
            a1[j] += xv * w1[i + j];
            a2[j] += xv * w2[i + j];
            a3[j] += xv * w3[i + j];
        }
    float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    for (int j = 0; j < LANES; j++) { s0 += a0[j]; s1 += a1[j]; s2 += a2[j]; s3 += a3[j]; }
    for (; i < n; i++) { s0 += x[i] * w0[i]; s1 += x[i] * w1[i]; s2 += x[i] * w2[i]; s3 += x[i] * w3[i]; }
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}

typedef struct {
    ar_compute *c;
    const ar_weight *w;
    const float *x;
    int64_t ldx;
    float *y;
    int64_t ldy;
    int M;
} mm_task;

/* Row o of w dequantized into y (n_in floats). */
static void dequant_weight_row(const ar_weight *w, int64_t o, float *y)
{
    if (w->layout == AR_LAYOUT_TILES) {
        uint8_t row[AR_GEMM_TILE_ROW_MAX];   /* ar_weight_pack takes no longer rows */
        ar_gemm_tile_row(w->type, w->data, w->row_bytes, o, row);
        ar_dequantize_row(w->type, row, y, w->n_in);
        return;
    }
    const uint8_t *src = (const uint8_t *)w->data + (size_t)o * w->row_bytes;
    if (w->type == AR_F32) memcpy(y, src, (size_t)w->n_in * sizeof(float));
    else ar_dequantize_row(w->type, src, y, w->n_in);   /* type validated when the model was loaded */
}

static const float *weight_row(const ar_weight *w, int64_t o, float *buf)
{
    if (w->type == AR_F32 && w->layout == AR_LAYOUT_ROWS)
        return (const float *)(const void *)((const uint8_t *)w->data + (size_t)o * w->row_bytes);
    dequant_weight_row(w, o, buf);
    return buf;
}

static void mm_worker(void *p, int ith, int nth)
{
    const mm_task *t = p;
    const ar_weight *w = t->w;
    const int64_t n = w->n_in;
    long lo, hi;
    ar_split_range((long)w->n_out, MM_ROWS, ith, nth, &lo, &hi);
    float *buf = t->c->wbuf[ith];
    const float *rows[MM_ROWS];
    for (long o = lo; o < hi; o += MM_ROWS) {
        int r = (int)(hi - o < MM_ROWS ? hi - o : MM_ROWS);
        for (int k = 0; k < r; k++) rows[k] = weight_row(w, o + k, buf + (size_t)k * (size_t)n);
        for (int m = 0; m < t->M; m++) {
            const float *xm = t->x + (size_t)m * (size_t)t->ldx;
            float *ym = t->y + (size_t)m * (size_t)t->ldy + o;
            if (r == MM_ROWS) {
                float s[4];
                dot4(xm, rows[0], rows[1], rows[2], rows[3], n, s);
                for (int k = 0; k < 4; k++) ym[k] = s[k];
            } else {
                for (int k = 0; k < r; k++) ym[k] = dot(xm, rows[k], n);
            }
            if (w->scale != 1.0f)
                for (int k = 0; k < r; k++) ym[k] *= w->scale;
        }
    }
}

/* ---- activations as ggml's matmul sees them ----------------------------------------------
 * ggml converts the activation row to the weight type's "vec_dot_type" before the dot product
 * (specs/qwen35.md §8.11): F16 / BF16 rounding for F16 / BF16 weights, 8-bit block quantization
 * (Q8_0 / Q8_1 blocks of 32, Q8_K blocks of 256) for quantized weights. We reproduce the rounded
 * values (x' = q * d) and keep a float dot product: the result then differs from llama.cpp only by
 * summation order, instead of by the (much larger, and discontinuous) activation rounding. */

enum { ACT_F32, ACT_F16, ACT_BF16, ACT_Q8_0, ACT_Q8_K };

static int act_kind(int wtype)
{
    switch (wtype) {
    case AR_F16: return ACT_F16;
    case AR_BF16: return ACT_BF16;
    case AR_Q4_0: case AR_Q4_1: case AR_Q5_0: case AR_Q5_1: case AR_Q8_0: case AR_Q8_1:
    case AR_IQ4_NL: case AR_MXFP4: case AR_NVFP4:
        return ACT_Q8_0;   /* Q8_1 blocks hold the same rounded values as Q8_0 */
    case AR_F32: case AR_F64: case AR_I8: case AR_I16: case AR_I32: case AR_I64:
        return ACT_F32;
    default:
        return ACT_Q8_K;   /* k-quants, IQ types, TQ types */
    }
}

/* ggml's x86 quantize_row_q8_0 / q8_1: d = amax/127 stored as F16, q = round_even(x * 127/amax). */
static void act_q8_0(const float *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n; b += 32) {
        float amax = 0.0f;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[b + j]));
        const float d = ar_f16_to_f32(ar_f32_to_f16(amax / 127.f));
        const float id = amax != 0.0f ? 127.f / amax : 0.0f;
        for (int j = 0; j < 32; j++) y[b + j] = nearbyintf(x[b + j] * id) * d;
    }
}

/* ggml's quantize_row_q8_K_ref: iscale = -127/max (signed max-abs element), q = min(127,
 * round_even(iscale x)), d = 1/iscale (F32). */
static void act_q8_k(const float *x, float *y, int64_t n)
{
    for (int64_t b = 0; b < n; b += AR_QK_K) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < AR_QK_K; j++) {
            float ax = fabsf(x[b + j]);
            if (ax > amax) { amax = ax; max = x[b + j]; }
        }
        if (amax == 0.0f) {
            for (int j = 0; j < AR_QK_K; j++) y[b + j] = 0.0f;
            continue;
        }
        const float iscale = -127.f / max, d = 1 / iscale;
        for (int j = 0; j < AR_QK_K; j++) {
            float q = nearbyintf(iscale * x[b + j]);
            y[b + j] = (q > 127.f ? 127.f : q) * d;
        }
    }
}

typedef struct { const float *x; int64_t ldx; float *dst; int64_t n; int M; int kind; } round_task;

static void round_worker(void *p, int ith, int nth)
{
    const round_task *t = p;
    long lo, hi;
    ar_split_range(t->M, 1, ith, nth, &lo, &hi);
    for (long m = lo; m < hi; m++) {
        const float *x = t->x + (size_t)m * (size_t)t->ldx;
        float *d = t->dst + (size_t)m * (size_t)t->n;
        switch (t->kind) {
        case ACT_F16: for (int64_t i = 0; i < t->n; i++) d[i] = ar_f16_to_f32(ar_f32_to_f16(x[i])); break;
        case ACT_BF16: for (int64_t i = 0; i < t->n; i++) d[i] = ar_bf16_to_f32(ar_f32_to_bf16(x[i])); break;
        case ACT_Q8_0: act_q8_0(x, d, t->n); break;
        default: act_q8_k(x, d, t->n); break;
        }
    }
}

/* ---- the fast path: compute/cpu/gemm.h kernels ------------------------------------------
 * Activations are converted once to the weight type's dot type (Q8_K, Q8_0, F16, BF16, or F32 in
 * place) exactly as ggml does, then each thread runs the register-blocked kernel over its own
 * range of output rows: every weight block is read once for all M rows. */
typedef struct {
    ar_compute *c;
    const ar_weight *w;
    const float *x;
    int64_t ldx;
    const void *xq;     /* x in the dot type (x itself for F32 weights) */
    uint8_t *dst;       /* where gemm_quant_worker writes it */
    size_t xrb;
    float *y;
    int64_t ldy;
    int M;
} gemm_task;

/* A batch of activation rows this small is converted on the calling thread: waking the pool
 * costs more than the conversion (decode converts one row of a few thousand floats). */
enum { QUANT_INLINE_ROWS = 4 };

static void gemm_quant_worker(void *p, int ith, int nth)
{
    const gemm_task *t = p;
    long lo, hi;
    ar_split_range(t->M, 1, ith, nth, &lo, &hi);
    for (long m = lo; m < hi; m++)
        ar_gemm_quantize_act(t->w->type, t->x + (size_t)m * (size_t)t->ldx, t->dst + (size_t)m * t->xrb, t->w->n_in);
}

/* Converts x to w's dot type into buf (or points at x for F32 weights). 0: no fast path. */
static int gemm_prepare(ar_compute *c, gemm_task *t, uint8_t *buf)
{
    const ar_weight *w = t->w;
    if (ar_gemm_act_type(w->type) < 0) return 0;
    if (w->type == AR_F32) {
        t->xq = t->x;
        t->xrb = (size_t)t->ldx * sizeof(float);
        return 1;
    }
    if (t->M > c->max_rows || w->n_in > c->max_in) return 0;
    t->xrb = ar_gemm_act_row_bytes(w->type, w->n_in);
    if (t->xrb == 0) return 0;
    t->xq = t->dst = buf;
    if (t->M <= QUANT_INLINE_ROWS) gemm_quant_worker(t, 0, 1);
    else ar_pool_run(c->pool, gemm_quant_worker, t);
    return 1;
}

/* Rows [lo, hi) of one weight. */
static void gemm_rows(const gemm_task *t, long lo, long hi)
{
    const ar_weight *w = t->w;
    if (w->layout == AR_LAYOUT_TILES)
        ar_gemm_tiled(w->type, w->data, w->row_bytes, w->n_in, lo, hi, t->xq, t->xrb, t->M, t->y, t->ldy);
    else
        ar_gemm(w->type, w->data, w->row_bytes, w->n_in, lo, hi, t->xq, t->xrb, t->M, t->y, t->ldy);
    if (w->scale != 1.0f)
        for (int m = 0; m < t->M; m++)
            for (long o = lo; o < hi; o++) t->y[(size_t)m * (size_t)t->ldy + (size_t)o] *= w->scale;
}

/* Several weights in one pool run: their output rows are laid end to end (each weight's rows
 * rounded up to AR_GEMM_ROW_ALIGN), so small matrices share a thread's time.
 *
 * How the rows are shared: through ar_steal (each thread's own part front to back in halving chunks,
 * then the others' from the back), in units of two tiles so the two-tile passes keep their pairs. A
 * core that runs slower (a busy neighbour on the host, a slower core type, a memory stream that gets
 * less of the bus) would otherwise leave the other waiting at the end of every matmul. That holds for
 * decode too (one activation row, the weights streamed at DRAM speed): each thread's own part is still
 * one sequential stream, cut only where the other takes over its end, and against fixed halves
 * decode ran 5-11 % faster (docs/BENCHMARKS.md, 2026-11-28 22:10 section). Every output row is the
 * same bits whichever thread and chunk computes it (the kernels are batch-invariant), so the split
 * changes timing only. */
enum { GEMM_STEAL_ALIGN = 2 * AR_GEMM_ROW_ALIGN, GEMM_STEAL_MIN = 2 };

typedef struct {
    const gemm_task *t;
    int n;
    long total;          /* rows laid end to end */
    ar_steal *steal;     /* NULL: fixed parts */
} gemm_multi;

static long gemm_span(const ar_weight *w)
{
    return (long)((w->n_out + AR_GEMM_ROW_ALIGN - 1) / AR_GEMM_ROW_ALIGN) * AR_GEMM_ROW_ALIGN;
}

/* Rows [lo, hi) of the rows laid end to end. */
static void gemm_multi_rows(const gemm_multi *g, long lo, long hi)
{
    long base = 0;
    for (int i = 0; i < g->n && base < hi; i++) {
        const long n_out = (long)g->t[i].w->n_out, span = gemm_span(g->t[i].w);
        long a = lo - base, b = hi - base;
        if (a < 0) a = 0;
        if (b > n_out) b = n_out;
        if (a < b) gemm_rows(&g->t[i], a, b);
        base += span;
    }
}

static void gemm_multi_worker(void *p, int ith, int nth)
{
    const gemm_multi *g = p;
    long lo, hi;
    if (!g->steal) {
        ar_split_range(g->total, AR_GEMM_ROW_ALIGN, ith, nth, &lo, &hi);
        gemm_multi_rows(g, lo, hi);
        return;
    }
    while (ar_steal_next(g->steal, ith, &lo, &hi)) gemm_multi_rows(g, lo, hi);
}

/* Runs the tasks t[0..n) (same M) over the pool. */
static void gemm_run(ar_compute *c, const gemm_task *t, int n)
{
    gemm_multi g = { t, n, 0, NULL };
    for (int i = 0; i < n; i++) g.total += gemm_span(t[i].w);
    ar_steal steal;
    if (c->n_threads > 1 && c->n_threads <= AR_STEAL_MAX) {
        ar_steal_init(&steal, g.total, GEMM_STEAL_ALIGN, GEMM_STEAL_MIN, c->n_threads);
        g.steal = &steal;
    }
    ar_pool_run(c->pool, gemm_multi_worker, &g);
}

static int matmul_gemm(ar_compute *c, const ar_weight *w, const float *x, int64_t ldx, float *y, int64_t ldy, int M)
{
    gemm_task t = { c, w, x, ldx, NULL, NULL, 0, y, ldy, M };
    if (!gemm_prepare(c, &t, c->xq)) return 0;
    gemm_run(c, &t, 1);
    return 1;
}

void ar_matmul(ar_compute *c, const ar_weight *w, const float *x, int64_t ldx, float *y, int64_t ldy, int M)
{
    if (M <= 0) return;
    if (matmul_gemm(c, w, x, ldx, y, ldy, M)) return;
    const int kind = act_kind(w->type);
    const int64_t blk = kind == ACT_Q8_0 ? 32 : kind == ACT_Q8_K ? AR_QK_K : 1;
    if (kind != ACT_F32 && M <= c->max_rows && w->n_in <= c->max_in && w->n_in % blk == 0) {
        round_task rt = { x, ldx, c->xround, w->n_in, M, kind };
        ar_pool_run(c->pool, round_worker, &rt);
        x = c->xround;
        ldx = w->n_in;
    }
    mm_task t = { c, w, x, ldx, y, ldy, M };
    ar_pool_run(c->pool, mm_worker, &t);
}

/* One converted copy of x for ar_matmul_n. */
typedef struct { int type; int64_t n_in; const void *xq; size_t xrb; } act_buf;

void ar_matmul_n(ar_compute *c, int n, const ar_weight *const *w, const float *x, int64_t ldx, float *const *y,
                 const int64_t *ldy, int M)
{
    enum { MAX_N = 8 };
    if (M <= 0 || n <= 0) return;
    if (n > MAX_N) {
        ar_matmul_n(c, MAX_N, w, x, ldx, y, ldy, M);
        ar_matmul_n(c, n - MAX_N, w + MAX_N, x, ldx, y + MAX_N, ldy + MAX_N, M);
        return;
    }
    gemm_task t[MAX_N];
    int n_fast = 0, later[MAX_N], n_later = 0;
    /* x converted once per (dot type, n_in), into one of two buffers */
    act_buf buf[2] = { { -1, 0, NULL, 0 }, { -1, 0, NULL, 0 } };
    for (int i = 0; i < n; i++) {
        gemm_task ti = { c, w[i], x, ldx, NULL, NULL, 0, y[i], ldy[i], M };
        const int at = ar_gemm_act_type(w[i]->type);
        int ok = 0;
        if (at >= 0 && w[i]->type == AR_F32) {
            ok = gemm_prepare(c, &ti, NULL);
        } else if (at >= 0) {
            for (int b = 0; b < 2 && !ok; b++) {
                if (buf[b].type == at && buf[b].n_in == w[i]->n_in) {
                    ti.xq = buf[b].xq;
                    ti.xrb = buf[b].xrb;
                    ok = 1;
                } else if (buf[b].type < 0) {
                    if ((ok = gemm_prepare(c, &ti, b ? c->xq2 : c->xq)))
                        buf[b] = (act_buf){ at, w[i]->n_in, ti.xq, ti.xrb };
                    break;
                }
            }
        }
        if (ok) t[n_fast++] = ti;
        else later[n_later++] = i;
    }
    if (n_fast) gemm_run(c, t, n_fast);
    /* the rest one by one, after the batch (they reuse the conversion buffers) */
    for (int k = 0; k < n_later; k++) ar_matmul(c, w[later[k]], x, ldx, y[later[k]], ldy[later[k]], M);
}

void ar_get_row(const ar_weight *w, int64_t row, float *y) { dequant_weight_row(w, row, y); }

int ar_weight_wants_pack(const ar_weight *w)
{
    return w->layout == AR_LAYOUT_ROWS && ar_gemm_tiles_wanted(w->type, w->n_in, w->n_out) &&
           w->row_bytes == ar_row_bytes(w->type, w->n_in);
}

int ar_weight_pack(ar_weight *w, void *data)
{
    if (!ar_weight_wants_pack(w) || data != w->data) return -1;
    if (ar_gemm_pack_tiles(w->type, data, w->row_bytes, w->n_out) != 0) return -1;
    w->layout = AR_LAYOUT_TILES;
    return 0;
}

/* ---- row kernels ----------------------------------------------------------------------- */

void ar_rmsnorm(float *y, const float *x, const float *w, int n, float eps)
{
    if (ar_cpu_has_avx512_set() && ar_rmsnorm_avx512(y, x, w, n, eps)) return;
    if (ar_cpu_has_avx2_set() && ar_rmsnorm_avx2(y, x, w, n, eps)) return;
    ar_rmsnorm_ref(y, x, w, n, eps);
}

void ar_rmsnorm_ref(float *y, const float *x, const float *w, int n, float eps)
{
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += (double)(x[i] * x[i]);
    const float mean = (float)(sum / n);
    const float scale = 1.0f / sqrtf(mean + eps);
    if (w)
        for (int i = 0; i < n; i++) y[i] = (x[i] * scale) * w[i];
    else
        for (int i = 0; i < n; i++) y[i] = x[i] * scale;
}

void ar_l2norm(float *x, int n, float eps)
{
    if (ar_cpu_has_avx512_set() && ar_l2norm_avx512(x, n, eps)) return;
    if (ar_cpu_has_avx2_set() && ar_l2norm_avx2(x, n, eps)) return;
    ar_l2norm_ref(x, n, eps);
}

void ar_l2norm_ref(float *x, int n, float eps)
{
    ar_rmsnorm_ref(x, x, NULL, n, eps / (float)n);
    const float s = 1.0f / sqrtf((float)n);
    for (int i = 0; i < n; i++) x[i] *= s;
}

void ar_rope_cache(const ar_rope *r, int pos, float *cs)
{
    const int half = r->n_rot / 2;
    const float theta_scale = powf(r->theta_base, -2.0f / (float)r->n_rot);
    const int *s = r->sections;
    int sect_dims = s[0] + s[1] + s[2] + s[3];
    float theta = (float)pos;
    for (int i = 0; i < half; i++) {
        int e_stream;   /* 1 when this frequency follows the "e" position stream (0 for text) */
        if (sect_dims <= 0) {
            e_stream = 0;
        } else {
            int sector = i % sect_dims;
            if (r->imrope)
                e_stream = !((sector % 3 == 1 && sector < 3 * s[1]) || (sector % 3 == 2 && sector < 3 * s[2]) ||
                             (sector % 3 == 0 && sector < 3 * s[0]));
            else
                e_stream = sector >= s[0] + s[1] + s[2];
        }
        float th = e_stream ? 0.0f : theta;
        cs[2 * i] = cosf(th);
        cs[2 * i + 1] = sinf(th);
        theta *= theta_scale;
    }
}

void ar_rope_apply(float *x, int n_heads, int head_stride, int n_rot, const float *cs)
{
    const int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * (size_t)head_stride;
        for (int i = 0; i < half; i++) {
            const float c = cs[2 * i], s = cs[2 * i + 1];
            const float x0 = v[i], x1 = v[i + half];
            v[i] = x0 * c - x1 * s;
            v[i + half] = x0 * s + x1 * c;
        }
    }
}

void ar_conv_step(float *out, const float *const *rows, const float *w, int channels, int taps)
{
    if (ar_cpu_has_avx512_set() && ar_conv_step_avx512(out, rows, w, channels, taps)) return;
    if (ar_cpu_has_avx2_set() && ar_conv_step_avx2(out, rows, w, channels, taps)) return;
    ar_conv_step_ref(out, rows, w, channels, taps);
}

void ar_conv_step_ref(float *out, const float *const *rows, const float *w, int channels, int taps)
{
    for (int ch = 0; ch < channels; ch++) out[ch] = 0.0f;
    for (int k = 0; k < taps; k++) {
        const float *r = rows[k];
        for (int ch = 0; ch < channels; ch++) out[ch] += r[ch] * w[(size_t)ch * (size_t)taps + k];
    }
}

void ar_silu_mul(float *y, const float *g, const float *u, int64_t n)
{
    if (ar_cpu_has_avx512_set() && ar_silu_mul_avx512(y, g, u, n)) return;
    if (ar_cpu_has_avx2_set() && ar_silu_mul_avx2(y, g, u, n)) return;
    ar_silu_mul_ref(y, g, u, n);
}

void ar_silu_mul_ref(float *y, const float *g, const float *u, int64_t n)
{
    for (int64_t i = 0; i < n; i++) y[i] = ar_silu(g[i]) * (u ? u[i] : 1.0f);
}

void ar_gdn_step(float *St, const float *q, const float *k, const float *v, float g, float beta,
                 float *o, int d_k, int d_v, float scale)
{
    if (ar_cpu_has_avx512_set() && ar_gdn_step_avx512(St, q, k, v, g, beta, o, d_k, d_v, scale)) return;
    if (ar_cpu_has_avx2_set() && ar_gdn_step_avx2(St, q, k, v, g, beta, o, d_k, d_v, scale)) return;
    ar_gdn_step_ref(St, q, k, v, g, beta, o, d_k, d_v, scale);
}

void ar_gdn_steps(float *St, int T, const float *q, const float *k, const float *v, size_t ld_u, const float *g,
                  const float *beta, size_t ld_gb, float *o, size_t ld_o, int d_k, int d_v, float scale)
{
    if (T < 1) return;
    if (ar_cpu_has_avx512_set() && ar_gdn_steps_avx512(St, T, q, k, v, ld_u, g, beta, ld_gb, o, ld_o, d_k, d_v, scale))
        return;
    for (int t = 0; t < T; t++)
        ar_gdn_step(St, q ? q + (size_t)t * ld_u : NULL, k + (size_t)t * ld_u, v + (size_t)t * ld_u,
                    g[(size_t)t * ld_gb], beta[(size_t)t * ld_gb], o ? o + (size_t)t * ld_o : NULL, d_k, d_v, scale);
}

void ar_gdn_step_ref(float *St, const float *q, const float *k, const float *v, float g, float beta,
                     float *o, int d_k, int d_v, float scale)
{
    const float decay = expf(g);
    for (int c = 0; c < d_v; c++) {
        float *row = St + (size_t)c * (size_t)d_k;
        for (int i = 0; i < d_k; i++) row[i] *= decay;
        const float delta = (v[c] - dot(row, k, d_k)) * beta;
        for (int i = 0; i < d_k; i++) row[i] += k[i] * delta;
        if (o) o[c] = dot(row, q, d_k) * scale;
    }
}

void ar_attn_begin(ar_attn_acc *a, float *o, int d)
{
    a->max = -INFINITY;
    a->sum = 0.0f;
    a->o = o;
    a->d = d;
    for (int i = 0; i < d; i++) o[i] = 0.0f;
}

void ar_attn_rows(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                  const float *const *v, int n, float scale)
{
    if (R < 1 || n < 1) return;
    if (ar_cpu_has_avx512_set() && ar_attn_rows_avx512(acc, q, R, k, v, n, scale)) return;
    if (ar_cpu_has_avx2_set() && ar_attn_rows_avx2(acc, q, R, k, v, n, scale)) return;
    ar_attn_rows_ref(acc, q, R, k, v, n, scale);
}

void ar_attn_rows_f16(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                      const uint16_t *const *v, int n, float scale)
{
    if (R < 1 || n < 1) return;
    if (ar_cpu_has_avx512_set() && ar_attn_rows_f16_avx512(acc, q, R, k, v, n, scale)) return;
    if (ar_cpu_has_avx2_set() && ar_attn_rows_f16_avx2(acc, q, R, k, v, n, scale)) return;
    ar_attn_rows_f16_ref(acc, q, R, k, v, n, scale);
}

/* The scalar reference over rows of either type (f16: k, v are uint16_t half rows). */
static void attn_rows_ref(ar_attn_acc *const *acc, const float *const *q, int R, const void *const *k,
                          const void *const *v, int n, float scale, bool f16)
{
    float s[AR_ATTN_BLOCK];
    for (int r = 0; r < R; r++) {
        ar_attn_acc *a = acc[r];
        const int d = a->d;
        float mx = a->max;
        for (int j = 0; j < n; j++) {
            float dot_ = 0.0f;
            for (int i = 0; i < d; i++)
                dot_ += q[r][i] * (f16 ? ar_f16_to_f32(((const uint16_t *)k[j])[i]) : ((const float *)k[j])[i]);
            s[j] = dot_ * scale;
            if (s[j] > mx) mx = s[j];
        }
        if (mx > a->max) {
            const float f = expf(a->max - mx);   /* 0 on the first block (max = -inf) */
            a->sum *= f;
            for (int i = 0; i < d; i++) a->o[i] *= f;
            a->max = mx;
        }
        for (int j = 0; j < n; j++) {
            const float p = expf(s[j] - mx);
            a->sum += p;
            for (int i = 0; i < d; i++)
                a->o[i] += p * (f16 ? ar_f16_to_f32(((const uint16_t *)v[j])[i]) : ((const float *)v[j])[i]);
        }
    }
}

void ar_attn_rows_ref(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                      const float *const *v, int n, float scale)
{
    attn_rows_ref(acc, q, R, (const void *const *)k, (const void *const *)v, n, scale, false);
}

void ar_attn_rows_f16_ref(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                          const uint16_t *const *v, int n, float scale)
{
    attn_rows_ref(acc, q, R, (const void *const *)k, (const void *const *)v, n, scale, true);
}

void ar_attn_block(ar_attn_acc *const *acc, const float *const *q, int R, const float *k, const float *v,
                   size_t stride, int n, float scale)
{
    const float *kp[AR_ATTN_BLOCK], *vp[AR_ATTN_BLOCK];
    for (int j0 = 0; j0 < n; j0 += AR_ATTN_BLOCK) {
        const int nb = n - j0 < AR_ATTN_BLOCK ? n - j0 : AR_ATTN_BLOCK;
        for (int j = 0; j < nb; j++) {
            kp[j] = k + (size_t)(j0 + j) * stride;
            vp[j] = v + (size_t)(j0 + j) * stride;
        }
        ar_attn_rows(acc, q, R, kp, vp, nb, scale);
    }
}

void ar_attn_finish(ar_attn_acc *a, float *out)
{
    const float inv = a->sum > 0.0f ? 1.0f / a->sum : 0.0f;
    for (int i = 0; i < a->d; i++) out[i] = a->o[i] * inv;
}
