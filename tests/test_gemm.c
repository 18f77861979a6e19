/* tests/test_gemm.c — the matrix kernels behind ar_gemm.
 *
 * 1. Activation conversion: Q8_K bit-identical to format/quant.c's reference quantizer; Q8_0/Q8_1
 *    follow ggml-cpu's x86 quantizer (127/amax, ties to even), checked on crafted ties and
 *    against the reference (same d, quants within one step); F16/BF16 equal ar_quantize_row.
 * 2. The scalar reference vs a float64 dot of dequantized weights and dequantized activations.
 * 3. Every fast path available here (avx2, avx512, neon) vs the scalar reference, for every
 *    weight type, odd block counts, n_out not a multiple of the tile width, an output range that
 *    starts inside a tile, padded strides and M in 1..100 (past the kernels' 64-row passes).
 *    Weights are ar_quantize_row output (realistic) and random valid blocks (extreme quants and
 *    scales).
 *    A row's result is bit-identical whatever M, its place in the batch and the output range.
 * 4. The 16-row tile layout: packing keeps every byte (each row comes back out exactly), is refused
 *    where it does not fit, and ar_gemm_tiled gives the row layout's results bit for bit under every
 *    implementation (its own kernel on AVX-512, the row kernels elsewhere), for any output range;
 *    ar_weight_pack'd weights give the same ar_get_row and ar_matmul results.
 * 5. ar_compute_for (the parallel loop the models' row ops use): every item once, a slowed thread's part
 *    finished by the other, one range on the caller for n == 1 or one thread.
 * Errors are relative to sum |w_i a_i| (the dot's natural scale); the worst is printed. */
#include "base/half.h"
#include "compute/cpu/gemm.h"
#include "compute/ops.h"
#include "format/quant.h"
#include "tests/test.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t next_u64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static float uniform(void) { return (float)((next_u64() >> 40) * (1.0 / 16777216.0)); }
static float gaussian(void)
{
    float u = uniform() + 1e-7f, v = uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static const int wtypes[] = { AR_F32, AR_F16, AR_BF16, AR_Q4_0, AR_Q4_1, AR_Q5_0, AR_Q5_1, AR_Q8_0,
                              AR_IQ4_NL, AR_Q2_K, AR_Q3_K, AR_Q4_K, AR_Q5_K, AR_Q6_K, AR_IQ4_XS };
#define N_WTYPES ((int)(sizeof wtypes / sizeof wtypes[0]))
static const int m_list[] = { 1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 33, 64, 65, 100 };
#define N_M ((int)(sizeof m_list / sizeof m_list[0]))
enum { MAX_M = 100, N_OUT = 37 };

static void fill_floats(float *x, int64_t n, float scale)
{
    for (int64_t i = 0; i < n; i++) x[i] = scale * gaussian();
}

/* ---- activation conversion -------------------------------------------------------------- */

static void dequant_act(int at, const void *xq, float *x, int64_t n)
{
    if (at == AR_Q8_0 || at == AR_Q8_1) {
        const uint8_t *p = xq;
        const size_t bs = at == AR_Q8_0 ? sizeof(ar_block_q8_0) : sizeof(ar_block_q8_1);
        for (int64_t b = 0; b < n / 32; b++) {
            uint16_t d;
            memcpy(&d, p + b * bs, 2);
            const int8_t *qs = (const int8_t *)(p + b * bs + (at == AR_Q8_0 ? 2 : 4));
            for (int j = 0; j < 32; j++) x[32 * b + j] = ar_f16_to_f32(d) * (float)qs[j];
        }
        return;
    }
    ar_dequantize_row(at, xq, x, n);
}

static void test_act_conversion(void)
{
    const int64_t n = 3 * AR_QK_K;
    float x[3 * AR_QK_K];
    uint8_t a[4096], b[4096];
    for (int trial = 0; trial < 200; trial++) {
        fill_floats(x, n, trial % 5 == 0 ? 1e-3f : 3.0f);
        if (trial == 3) memset(x + AR_QK_K, 0, AR_QK_K * sizeof(float)); /* an all-zero block */
        if (trial == 7) { x[10] = -9.0f; x[200] = 9.0f; x[AR_QK_K + 5] = 9.0f; x[AR_QK_K + 6] = -9.0f; }   /* the first max decides */
        if (trial == 8)   /* quants on exact halves: ties to even */
            for (int64_t j = 0; j < n; j++) x[j] = (j % AR_QK_K == 0) ? -127.0f : (float)((j * 7) % 254 - 127) + 0.5f;
        /* Q8_K: bit-identical to the reference quantizer */
        ar_gemm_quantize_act(AR_Q4_K, x, a, n);
        ar_quantize_row(AR_Q8_K, x, b, n);
        CHECK(!memcmp(a, b, ar_row_bytes(AR_Q8_K, n)), "Q8_K activation differs from ar_quantize_row (trial %d)", trial);
        {   /* then one pair-sum record per block: bsums[2j] + bsums[2j+1] as int16 (gemm.h) */
            const ar_block_q8_K *blk = (const ar_block_q8_K *)(const void *)b;
            int bad = 0;
            for (int64_t k = 0; k < n / AR_QK_K; k++)
                for (int j = 0; j < 8; j++) {
                    int16_t v;
                    memcpy(&v, a + ar_row_bytes(AR_Q8_K, n) + (size_t)k * AR_GEMM_Q8K_PAIRS + 2 * (size_t)j, sizeof v);
                    bad += v != blk[k].bsums[2 * j] + blk[k].bsums[2 * j + 1];
                }
            CHECK(!bad, "Q8_K pair sums: %d of %d wrong (trial %d)", bad, (int)(8 * (n / AR_QK_K)), trial);
        }
        /* F16 / BF16 */
        ar_gemm_quantize_act(AR_F16, x, a, n);
        ar_quantize_row(AR_F16, x, b, n);
        CHECK(!memcmp(a, b, 2 * (size_t)n), "F16 activation differs (trial %d)", trial);
        ar_gemm_quantize_act(AR_BF16, x, a, n);
        ar_quantize_row(AR_BF16, x, b, n);
        CHECK(!memcmp(a, b, 2 * (size_t)n), "BF16 activation differs (trial %d)", trial);
        /* Q8_0: same d as the reference, quants within one step (ties/rounding of 127/amax) */
        ar_gemm_quantize_act(AR_Q8_0, x, a, n);
        ar_quantize_row(AR_Q8_0, x, b, n);
        int bad = 0;
        for (int64_t blk = 0; blk < n / 32; blk++) {
            const ar_block_q8_0 *p = (const ar_block_q8_0 *)a + blk, *q = (const ar_block_q8_0 *)b + blk;
            if (p->d != q->d) bad++;
            for (int j = 0; j < 32; j++) if (abs(p->qs[j] - q->qs[j]) > 1) bad++;
        }
        CHECK(bad == 0, "Q8_0 activation: %d values beyond one step of the reference (trial %d)", bad, trial);
        bad = 0;   /* then one record per block: d as float, -128 x the sum of its quants as int32 (gemm.h) */
        for (int64_t blk = 0; blk < n / 32; blk++) {
            const ar_block_q8_0 *p = (const ar_block_q8_0 *)a + blk;
            int32_t sum = 0, corr;
            float d;
            for (int j = 0; j < 32; j++) sum += p->qs[j];
            memcpy(&d, a + ar_row_bytes(AR_Q8_0, n) + (size_t)blk * AR_GEMM_Q8_0_REC, sizeof d);
            memcpy(&corr, a + ar_row_bytes(AR_Q8_0, n) + (size_t)blk * AR_GEMM_Q8_0_REC + 4, sizeof corr);
            bad += corr != -128 * sum || d != ar_f16_to_f32(p->d);
        }
        CHECK(bad == 0, "Q8_0 activation records: %d of %d wrong (trial %d)", bad, (int)(n / 32), trial);
        /* Q8_1: s = d * sum(qs) */
        ar_gemm_quantize_act(AR_Q4_1, x, a, n);
        bad = 0;
        for (int64_t blk = 0; blk < n / 32; blk++) {
            const ar_block_q8_1 *p = (const ar_block_q8_1 *)a + blk;
            const ar_block_q8_0 *q = (const ar_block_q8_0 *)(void *)b + blk;
            int sum = 0;
            for (int j = 0; j < 32; j++) sum += p->qs[j];
            if (p->d != q->d) bad++;
            float amax = 0;
            for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * blk + j]));
            if (p->s != ar_f32_to_f16((amax / 127.0f) * (float)sum)) bad++;
        }
        CHECK(bad == 0, "Q8_1 activation sums wrong in %d blocks (trial %d)", bad, trial);
    }
    /* the AVX-512 Q8_0 activation path: the scalar path's bytes, records included, also for NaN / inf /
     * zero blocks and ties (the kernels rely on the record; llama.cpp parity on the quants) */
    if (ar_gemm_force("avx512") == 0) {
        int bad = 0;
        for (int trial = 0; trial < 60; trial++) {
            const int64_t n = 3 * AR_QK_K;
            fill_floats(x, n, trial % 5 == 0 ? 1e-3f : 3.0f);
            if (trial % 6 == 1) memset(x + 64, 0, 32 * sizeof(float));
            if (trial % 6 == 2) { x[3] = NAN; x[100] = INFINITY; x[200] = -INFINITY; x[201] = NAN; }
            if (trial % 6 == 3) for (int64_t j = 0; j < n; j++) x[j] = (float)((j * 7) % 254 - 127) + 0.5f;
            if (trial % 6 == 4) for (int64_t j = 0; j < n; j++) x[j] *= 1e-41f;   /* subnormal d */
            const size_t rb = ar_gemm_act_row_bytes(AR_Q8_0, n);
            ar_gemm_force("avx512");
            ar_gemm_quantize_act(AR_Q8_0, x, a, n);
            ar_gemm_force("scalar");
            ar_gemm_quantize_act(AR_Q8_0, x, b, n);
            bad += memcmp(a, b, rb) != 0;
        }
        ar_gemm_force(NULL);
        CHECK(bad == 0, "AVX-512 Q8_0 activation differs from the scalar path in %d of 60 rows", bad);
    }
    /* ggml-cpu x86 rounding: amax = 127 gives id = 1, so x.5 rounds to even */
    float t[32] = { 127.0f, 2.5f, 3.5f, -2.5f, -0.5f, 0.5f, 1.5f, -126.5f };
    union { ar_block_q8_0 b; uint8_t bytes[sizeof(ar_block_q8_0) + AR_GEMM_Q8_0_REC]; } qa;   /* block + record */
    ar_block_q8_0 q;
    ar_gemm_quantize_act(AR_Q8_0, t, &qa, 32);
    q = qa.b;
    CHECK(q.qs[0] == 127 && q.qs[1] == 2 && q.qs[2] == 4 && q.qs[3] == -2 && q.qs[4] == 0 &&
          q.qs[5] == 0 && q.qs[6] == 2 && q.qs[7] == -126,
          "Q8_0 ties: got %d %d %d %d %d %d %d %d", q.qs[0], q.qs[1], q.qs[2], q.qs[3], q.qs[4],
          q.qs[5], q.qs[6], q.qs[7]);
    CHECK(ar_f16_to_f32(q.d) == ar_f16_to_f32(ar_f32_to_f16(1.0f)), "Q8_0 d for amax 127: %g", ar_f16_to_f32(q.d));
    /* all-zero block: d = 0, quants 0 */
    memset(t, 0, sizeof t);
    ar_gemm_quantize_act(AR_Q8_0, t, &qa, 32);
    q = qa.b;
    int nz = q.d != 0;
    for (int j = 0; j < 32; j++) nz |= q.qs[j] != 0;
    CHECK(!nz, "Q8_0 of a zero block is not zero");
    /* act types and sizes */
    CHECK(ar_gemm_act_type(AR_Q4_K) == AR_Q8_K && ar_gemm_act_type(AR_IQ4_XS) == AR_Q8_K &&
          ar_gemm_act_type(AR_Q4_0) == AR_Q8_0 && ar_gemm_act_type(AR_IQ4_NL) == AR_Q8_0 &&
          ar_gemm_act_type(AR_Q5_1) == AR_Q8_1 && ar_gemm_act_type(AR_BF16) == AR_BF16 &&
          ar_gemm_act_type(AR_F16) == AR_F16 && ar_gemm_act_type(AR_F32) == AR_F32 &&
          ar_gemm_act_type(AR_IQ2_XXS) == -1, "act type table");
    CHECK(ar_gemm_act_row_bytes(AR_Q6_K, 512) == 2 * (sizeof(ar_block_q8_K) + AR_GEMM_Q8K_PAIRS) &&
          ar_gemm_act_row_bytes(AR_Q8_0, 64) == 2 * (sizeof(ar_block_q8_0) + AR_GEMM_Q8_0_REC) &&
          ar_gemm_act_row_bytes(AR_Q4_K, 100) == 0, "act row bytes");
}

/* ---- weights ------------------------------------------------------------------------------ */

static int64_t block_elems(int t) { return ar_dtype_get(t)->block_elems; }

/* Overwrite the F16 scale fields of random blocks with sane values (finite, modest). */
static void sane_scales(int type, uint8_t *row, int64_t nb)
{
    const size_t bs = ar_dtype_get(type)->block_bytes;
    for (int64_t b = 0; b < nb; b++) {
        uint8_t *p = row + b * bs;
        const uint16_t d = ar_f32_to_f16(0.001f + 0.01f * uniform());
        const uint16_t m = ar_f32_to_f16(0.001f + 0.01f * uniform());
        switch (type) {
        case AR_Q4_0: case AR_Q5_0: case AR_Q8_0: case AR_IQ4_NL: case AR_IQ4_XS: memcpy(p, &d, 2); break;
        case AR_Q4_1: case AR_Q5_1: case AR_Q4_K: case AR_Q5_K: memcpy(p, &d, 2); memcpy(p + 2, &m, 2); break;
        case AR_Q2_K: memcpy(p + 80, &d, 2); memcpy(p + 82, &m, 2); break;
        case AR_Q3_K: memcpy(p + 108, &d, 2); break;
        case AR_Q6_K: memcpy(p + 208, &d, 2); break;
        default: break;
        }
    }
}

/* n_out rows of weights of type t: quantized gaussians (mode 0) or random valid blocks (mode 1). */
static void make_weights(int t, int mode, int64_t n_in, int n_out, uint8_t *w, size_t wrb)
{
    float *row = malloc((size_t)n_in * sizeof(float));
    for (int o = 0; o < n_out; o++) {
        uint8_t *dst = w + (size_t)o * wrb;
        if (mode == 0 || t == AR_F32 || t == AR_F16 || t == AR_BF16) {
            fill_floats(row, n_in, o % 7 == 3 ? 40.0f : 1.0f);
            if (mode == 1) for (int64_t i = 0; i < n_in; i++) row[i] *= (i % 5 == 0) ? 100.0f : 0.01f;
            ar_quantize_row(t, row, dst, n_in);
        } else {
            for (size_t i = 0; i < wrb; i++) dst[i] = (uint8_t)next_u64();
            sane_scales(t, dst, n_in / block_elems(t));
        }
    }
    free(row);
}

/* ---- reference and fast paths ------------------------------------------------------------- */

typedef struct {
    int t, at;
    int64_t n_in;
    size_t wrb, xrb;
    uint8_t *w, *xq;
    float *wd, *xd;       /* dequantized weights [N_OUT][n_in] and activations [MAX_M][n_in] */
    float *ref;           /* scalar reference [MAX_M][N_OUT] */
    double *mag;          /* sum |w a| per output [MAX_M][N_OUT] */
} problem;

static void problem_init(problem *p, int t, int mode, int64_t n_in)
{
    p->t = t;
    p->at = ar_gemm_act_type(t);
    p->n_in = n_in;
    p->wrb = ar_row_bytes(t, n_in);
    p->xrb = ar_gemm_act_row_bytes(t, n_in) + 40; /* padded stride */
    p->w = malloc(p->wrb * N_OUT);
    p->xq = calloc(MAX_M, p->xrb);
    p->wd = malloc(sizeof(float) * (size_t)n_in * N_OUT);
    p->xd = malloc(sizeof(float) * (size_t)n_in * MAX_M);
    p->ref = malloc(sizeof(float) * MAX_M * N_OUT);
    p->mag = malloc(sizeof(double) * MAX_M * N_OUT);
    make_weights(t, mode, n_in, N_OUT, p->w, p->wrb);
    float *x = malloc(sizeof(float) * (size_t)n_in);
    for (int m = 0; m < MAX_M; m++) {
        fill_floats(x, n_in, m % 4 == 1 ? 0.05f : 2.0f);
        if (m == 5) memset(x, 0, sizeof(float) * (size_t)n_in); /* zero row */
        if (m == 6) for (int64_t i = 0; i < n_in; i++) x[i] = fabsf(x[i]); /* one-signed row */
        ar_gemm_quantize_act(t, x, p->xq + (size_t)m * p->xrb, n_in);
        dequant_act(p->at, p->xq + (size_t)m * p->xrb, p->xd + (size_t)m * n_in, n_in);
    }
    free(x);
    for (int o = 0; o < N_OUT; o++) ar_dequantize_row(t, p->w + (size_t)o * p->wrb, p->wd + (size_t)o * n_in, n_in);
    for (int m = 0; m < MAX_M; m++)
        for (int o = 0; o < N_OUT; o++) {
            double s = 0;
            for (int64_t i = 0; i < n_in; i++) s += fabs((double)p->wd[(size_t)o * n_in + i] * p->xd[(size_t)m * n_in + i]);
            p->mag[m * N_OUT + o] = s;
        }
}

static void problem_free(problem *p)
{
    free(p->w); free(p->xq); free(p->wd); free(p->xd); free(p->ref); free(p->mag);
}

static double rel_err(double got, double want, double mag)
{
    const double e = fabs(got - want);
    return mag > 0 ? e / mag : e;
}

/* Q4_1/Q5_1 take the min term from Q8_1's block sum s, which ggml stores rounded to F16: the
 * exact dot differs from ggml's by sum_b m_b * (s_b - d_b * sum(qs_b)). */
static double q8_1_min_term(const problem *p, int o, int m)
{
    const uint8_t *w = p->w + (size_t)o * p->wrb;
    const ar_block_q8_1 *x = (const ar_block_q8_1 *)(const void *)(p->xq + (size_t)m * p->xrb);
    const size_t bs = ar_dtype_get(p->t)->block_bytes;
    double c = 0;
    for (int64_t b = 0; b < p->n_in / 32; b++) {
        uint16_t mh;
        memcpy(&mh, w + b * bs + 2, 2); /* Q4_1 and Q5_1 both store d, m first */
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += x[b].qs[j];
        c += (double)ar_f16_to_f32(mh) * ((double)ar_f16_to_f32(x[b].s) - (double)ar_f16_to_f32(x[b].d) * sum);
    }
    return c;
}

/* Scalar reference vs float64 over dequantized values. */
static void check_reference(problem *p, const char *what, double *worst_out)
{
    const double tol = 2e-5;
    ar_gemm_force("scalar");
    ar_gemm(p->t, p->w, p->wrb, p->n_in, 0, N_OUT, p->xq, p->xrb, MAX_M, p->ref, N_OUT);
    double worst = 0;
    int bad = 0;
    for (int m = 0; m < MAX_M; m++)
        for (int o = 0; o < N_OUT; o++) {
            double s = 0;
            for (int64_t i = 0; i < p->n_in; i++)
                s += (double)p->wd[(size_t)o * p->n_in + i] * p->xd[(size_t)m * p->n_in + i];
            if (p->at == AR_Q8_1) s += q8_1_min_term(p, o, m);
            const double e = rel_err(p->ref[m * N_OUT + o], s, p->mag[m * N_OUT + o]);
            if (!(e <= tol)) bad++;
            if (e > worst || e != e) worst = e;
        }
    CHECK(bad == 0, "%s scalar vs float64: %d outputs off, worst rel %.3g", what, bad, worst);
    if (worst > *worst_out) *worst_out = worst;
}

/* One fast implementation vs the scalar reference, every M, plus an offset output range. */
static void check_fast(problem *p, const char *isa, const char *what, double *worst_out)
{
    if (ar_gemm_force(isa) != 0) return;
    const int64_t ldy = N_OUT + 3;
    float *y = malloc(sizeof(float) * MAX_M * (size_t)ldy);
    double worst = 0;
    for (int mi = 0; mi < N_M; mi++) {
        const int M = m_list[mi];
        for (size_t i = 0; i < (size_t)MAX_M * ldy; i++) y[i] = -12345.0f;
        const int64_t o_lo = mi % 3 == 1 ? 5 : 0, o_hi = mi % 3 == 2 ? N_OUT - 2 : N_OUT;
        ar_gemm(p->t, p->w, p->wrb, p->n_in, o_lo, o_hi, p->xq, p->xrb, M, y, ldy);
        int bad = 0, clobber = 0;
        for (int m = 0; m < MAX_M; m++)
            for (int64_t o = 0; o < ldy; o++) {
                const float v = y[m * ldy + o];
                if (m >= M || o < o_lo || o >= o_hi) {
                    clobber += v != -12345.0f;
                    continue;
                }
                const double e = rel_err(v, p->ref[m * N_OUT + o], p->mag[m * N_OUT + o]);
                if (!(e <= 1e-5)) bad++;
                if (e > worst || e != e) worst = e;
            }
        CHECK(bad == 0, "%s %s M=%d: %d outputs off the scalar reference, worst rel %.3g", what, isa, M, bad, worst);
        CHECK(clobber == 0, "%s %s M=%d [%lld,%lld): %d values written outside the output", what, isa, M,
              (long long)o_lo, (long long)o_hi, clobber);
    }
    if (worst > *worst_out) *worst_out = worst;
    /* Batched == unbatched, bit for bit: a row's result must not depend on M, on its position in
     * the batch or on the output range (tree verification relies on it). */
    float *batch = malloc(sizeof(float) * 17 * N_OUT), one[N_OUT];
    ar_gemm(p->t, p->w, p->wrb, p->n_in, 0, N_OUT, p->xq, p->xrb, 17, batch, N_OUT);
    int differ = 0;
    for (int m = 0; m < 17; m += 4) {
        ar_gemm(p->t, p->w, p->wrb, p->n_in, 0, N_OUT, p->xq + (size_t)m * p->xrb, p->xrb, 1, one, N_OUT);
        differ += memcmp(one, batch + m * N_OUT, sizeof one) != 0;
        ar_gemm(p->t, p->w, p->wrb, p->n_in, 3, 29, p->xq + (size_t)m * p->xrb, p->xrb, 1, one, N_OUT);
        differ += memcmp(one + 3, batch + m * N_OUT + 3, sizeof(float) * 26) != 0;
    }
    CHECK(differ == 0, "%s %s: %d rows differ between M=17 and M=1 / a sub-range", what, isa, differ);
    free(batch);
    free(y);
}

/* Whether an implementation has its own kernel for t (otherwise ar_gemm uses the reference). */
static int has_fast_path(const char *isa, int t)
{
#if defined(__x86_64__)
    if (!strcmp(isa, "avx2")) return ar_gemm_avx2_kernel(t) != NULL;
    if (!strcmp(isa, "avx512")) return ar_gemm_avx512_kernel(t) != NULL;
#elif defined(__aarch64__)
    if (!strcmp(isa, "neon")) return ar_gemm_neon_kernel(t) != NULL;
#endif
    (void)isa;
    (void)t;
    return 0;
}

static void test_kernels(void)
{
    static const char *const isas[] = { "avx2", "avx512", "neon" };
    int have[3];
    for (int i = 0; i < 3; i++) {
        have[i] = ar_gemm_force(isas[i]) == 0;
        printf("gemm: %s %s\n", isas[i], have[i] ? "available, tested" : "not available here");
    }
    ar_gemm_force(NULL);
    printf("gemm: best = %s\n", ar_gemm_isa());
    for (int ti = 0; ti < N_WTYPES; ti++) {
        const int t = wtypes[ti];
        const int64_t be = block_elems(t);
        const int64_t sizes[3] = { be == 1 ? 37 : be, be == 1 ? 264 : 3 * be, be == 1 ? 1000 : (be == 32 ? 9 * be : 5 * be) };
        double worst_ref = 0, worst_fast[3] = { 0, 0, 0 };
        for (int si = 0; si < 3; si++)
            for (int mode = 0; mode < 2; mode++) {
                if (test_sanitized() && si == 2) continue;
                problem p;
                problem_init(&p, t, mode, sizes[si]);
                char what[64];
                snprintf(what, sizeof what, "%s n_in=%lld %s", ar_dtype_name(t), (long long)sizes[si],
                         mode ? "random-blocks" : "quantized");
                check_reference(&p, what, &worst_ref);
                for (int i = 0; i < 3; i++)
                    if (have[i]) check_fast(&p, isas[i], what, &worst_fast[i]);
                problem_free(&p);
            }
        printf("gemm: %-7s scalar-vs-f64 worst %.2e", ar_dtype_name(t), worst_ref);
        for (int i = 0; i < 3; i++)
            if (have[i]) {
                if (has_fast_path(isas[i], t)) printf("  %s-vs-scalar worst %.2e", isas[i], worst_fast[i]);
                else printf("  %s: scalar fallback", isas[i]);
            }
        printf("\n");
    }
    ar_gemm_force(NULL);
}

static void test_force(void)
{
    CHECK(ar_gemm_force("scalar") == 0 && !strcmp(ar_gemm_isa(), "scalar"), "force scalar");
    CHECK(ar_gemm_force("no-such-isa") == -1, "unknown ISA accepted");
    CHECK(!strcmp(ar_gemm_isa(), "scalar"), "failed force changed the ISA");
    CHECK(ar_gemm_force(NULL) == 0, "force NULL");
}

/* ---- the 16-row tile layout -------------------------------------------------------------- */

/* Which implementations have tile-layout kernels: AVX-512 for every tile type, AVX2 for Q4_K. */
static int tiles_expected(const char *isa, int t)
{
    return !strcmp(isa, "avx512") || (!strcmp(isa, "avx2") && t == AR_Q4_K);
}

static void test_tiles(void)
{
    static const int ttypes[] = { AR_Q4_K, AR_Q5_K, AR_Q6_K, AR_IQ4_XS, AR_Q8_0, AR_Q4_0, AR_IQ4_NL };
    static const char *const isas[] = { "avx512", "avx2", "scalar", "neon" };
    enum { NO = 48, TM = 65 };
    const int have512 = ar_gemm_force("avx512") == 0;
    ar_gemm_force(NULL);
    /* row lengths: 1 and 3 K-quant blocks; for the 32-element types also 27 blocks, so the tile drivers'
     * groups of 4 blocks end with a short one */
    static const int64_t n_ins[] = { 256, 768, 864 };
    for (size_t ti = 0; ti < sizeof ttypes / sizeof ttypes[0]; ti++)
        for (size_t ni = 0; ni < sizeof n_ins / sizeof n_ins[0]; ni++)
            for (int mode = 0; mode < 2; mode++) {
                const int t = ttypes[ti];
                const int64_t n_in = n_ins[ni];
                if (n_in % ar_dtype_get(t)->block_elems) continue;
                const size_t wrb = ar_row_bytes(t, n_in), xrb = ar_gemm_act_row_bytes(t, n_in);
                uint8_t *rows = malloc(wrb * NO), *tiles = malloc(wrb * NO), *back = malloc(wrb);
                make_weights(t, mode, n_in, NO, rows, wrb);
                memcpy(tiles, rows, wrb * NO);
                const char *tn = ar_dtype_name(t);
                CHECK(ar_gemm_pack_tiles(t, tiles, wrb, 37) == -1 && !memcmp(tiles, rows, wrb * NO),
                      "%s: 37 rows (not whole tiles) packed", tn);
                CHECK(ar_gemm_pack_tiles(t, tiles, wrb, NO) == 0, "%s: pack refused", tn);
                CHECK(memcmp(tiles, rows, wrb * NO) != 0, "%s: packing changed nothing", tn);
                int lost = 0;
                for (int r = 0; r < NO; r++) {
                    ar_gemm_tile_row(t, tiles, wrb, r, back);
                    lost += memcmp(back, rows + (size_t)r * wrb, wrb) != 0;
                }
                CHECK(lost == 0, "%s n_in=%lld: %d rows do not come back out of the tiles", tn, (long long)n_in, lost);

                /* activations */
                uint8_t *xq = malloc(xrb * TM);
                float *x = malloc(sizeof(float) * (size_t)n_in * TM);
                for (int m = 0; m < TM; m++) {
                    fill_floats(x + (size_t)m * n_in, n_in, m % 3 ? 1.0f : 30.0f);
                    ar_gemm_quantize_act(t, x + (size_t)m * n_in, xq + (size_t)m * xrb, n_in);
                }
                float *yr = malloc(sizeof(float) * TM * NO), *yt = malloc(sizeof(float) * TM * NO);
                for (size_t ii = 0; ii < sizeof isas / sizeof isas[0]; ii++) {
                    if (ar_gemm_force(isas[ii]) != 0) continue;
                    CHECK(ar_gemm_tiles_wanted(t, n_in, NO) == tiles_expected(isas[ii], t),
                          "%s %s: tiles wanted %d", tn, isas[ii], ar_gemm_tiles_wanted(t, n_in, NO));
                    CHECK(!ar_gemm_tiles_wanted(t, n_in, 37), "%s %s: tiles wanted for 37 rows", tn, isas[ii]);
                    /* 64 and 65: the two-tile passes of prompt chunks (PAIR_M), 17: one 8-row block and a rest */
                    static const int ms[] = { 1, 2, 4, 5, 16, 17, 64, 65 };
                    static const int64_t ranges[][2] = { { 0, NO }, { 5, NO }, { 3, 29 }, { 16, 32 }, { 47, 48 } };
                    int differ = 0, clobber = 0;
                    for (size_t mi = 0; mi < sizeof ms / sizeof ms[0]; mi++)
                        for (size_t ri = 0; ri < sizeof ranges / sizeof ranges[0]; ri++) {
                            const int M = ms[mi];
                            const int64_t lo = ranges[ri][0], hi = ranges[ri][1];
                            for (int i = 0; i < TM * NO; i++) yr[i] = yt[i] = -777.0f;
                            ar_gemm(t, rows, wrb, n_in, lo, hi, xq, xrb, M, yr, NO);
                            ar_gemm_tiled(t, tiles, wrb, n_in, lo, hi, xq, xrb, M, yt, NO);
                            differ += memcmp(yr, yt, sizeof(float) * TM * NO) != 0;
                            for (int m = 0; m < TM; m++)
                                for (int o = 0; o < NO; o++)
                                    if ((m >= M || o < lo || o >= hi) && yt[m * NO + o] != -777.0f) clobber++;
                        }
                    CHECK(differ == 0, "%s n_in=%lld %s: %d tiled products differ from the row layout's", tn,
                          (long long)n_in, isas[ii], differ);
                    CHECK(clobber == 0, "%s %s: %d values written outside the output range", tn, isas[ii], clobber);
                }
                ar_gemm_force(NULL);

                /* through compute/ops.h: a packed ar_weight reads the same */
                ar_weight wr = { .type = t, .n_in = n_in, .n_out = NO, .row_bytes = wrb, .data = rows, .scale = 1.0f };
                uint8_t *own = malloc(wrb * NO);
                memcpy(own, rows, wrb * NO);
                ar_weight wp = wr;
                wp.data = own;
                CHECK(ar_weight_wants_pack(&wp) == tiles_expected(ar_gemm_isa(), t), "%s: wants_pack %d", tn,
                      ar_weight_wants_pack(&wp));
                if (ar_weight_wants_pack(&wp)) {
                    CHECK(ar_weight_pack(&wp, own) == 0 && wp.layout == AR_LAYOUT_TILES, "%s: ar_weight_pack", tn);
                    CHECK(!ar_weight_wants_pack(&wp) && ar_weight_pack(&wp, own) == -1, "%s: packed twice", tn);
                    float *g0 = malloc(sizeof(float) * (size_t)n_in), *g1 = malloc(sizeof(float) * (size_t)n_in);
                    int rows_differ = 0;
                    for (int r = 0; r < NO; r += 7) {
                        ar_get_row(&wr, r, g0);
                        ar_get_row(&wp, r, g1);
                        rows_differ += memcmp(g0, g1, sizeof(float) * (size_t)n_in) != 0;
                    }
                    CHECK(rows_differ == 0, "%s: ar_get_row of a packed weight differs on %d rows", tn, rows_differ);
                    ar_compute *c = NULL;
                    ar_error err;
                    if (ar_compute_create(&c, 2, n_in, TM, &err) == 0) {
                        for (int M = 1; M <= TM; M += 8) {
                            ar_matmul(c, &wr, x, n_in, yr, NO, M);
                            ar_matmul(c, &wp, x, n_in, yt, NO, M);
                            CHECK(!memcmp(yr, yt, sizeof(float) * (size_t)M * NO), "%s M=%d: ar_matmul of a packed weight differs", tn, M);
                        }
                        ar_compute_free(c);
                    }
                    free(g0);
                    free(g1);
                }
                free(own);
                free(yr);
                free(yt);
                free(xq);
                free(x);
                free(rows);
                free(tiles);
                free(back);
            }
    /* types without a tile layout are refused */
    uint8_t buf[22 * 16];
    memset(buf, 0, sizeof buf);
    CHECK(ar_gemm_pack_tiles(AR_Q5_0, buf, 22, 16) == -1, "Q5_0 packed");
    CHECK(!ar_gemm_tiles_wanted(AR_Q5_0, 32, 16), "Q5_0 tiles wanted");
    ar_gemm_force("avx2");
    const int have2 = !strcmp(ar_gemm_isa(), "avx2");
    ar_gemm_force(NULL);
    printf("gemm: 16-row tile layout checked (%s%s)\n", have512 ? "avx512 tile kernels, " : "",
           have2 ? "avx2 Q4_K tile kernel, fallbacks" : "fallbacks");
}

/* ar_compute_for: every item once, whatever ranges each thread ends up with (thread 0 waits until thread 1 has
 * started, then is slowed, so thread 1 takes the end of its part); ith is a thread of the pool; n == 1 and a
 * one-thread context run on the caller. */
enum { FOR_N = 257 };
typedef struct {
    _Atomic int hits[FOR_N];
    _Atomic int ranges, bad, by_other, ranges_1;
    int two;   /* two threads: slow thread 0 down */
} for_job;

static void for_range(void *p, int lo, int hi, int ith)
{
    for_job *j = p;
    atomic_fetch_add(&j->ranges, 1);
    if (lo < 0 || hi > FOR_N || lo >= hi || ith < 0 || ith > 1) atomic_fetch_add(&j->bad, 1);
    for (int i = lo; i < hi && i >= 0 && i < FOR_N; i++) atomic_fetch_add(&j->hits[i], 1);
    if (ith == 1) atomic_fetch_add(&j->by_other, hi - lo);
    if (ith == 0 && j->two) {
        struct timespec ts = { 0, 1000000 };   /* 1 ms per range, once thread 1 runs (or 2 s have passed) */
        for (int w = 0; w < 2000 && !atomic_load(&j->ranges_1); w++) nanosleep(&ts, NULL);
        nanosleep(&ts, NULL);
    }
    if (ith == 1) atomic_fetch_add(&j->ranges_1, 1);
}

static void test_compute_for(void)
{
    ar_error err;
    for (int nth = 1; nth <= 2; nth++) {
        ar_compute *c = NULL;
        if (ar_compute_create(&c, nth, 256, 1, &err)) { CHECK(0, "ar_compute_create: %s", err.msg); return; }
        for (int n = 0; n <= FOR_N; n += n < 4 ? 1 : 51) {
            static for_job j;
            memset(&j, 0, sizeof j);
            j.two = nth == 2 && n >= 2;
            ar_compute_for(c, n, for_range, &j);
            int once = 0;
            for (int i = 0; i < FOR_N; i++) once += atomic_load(&j.hits[i]) == (i < n);
            CHECK(once == FOR_N && !atomic_load(&j.bad), "ar_compute_for nth %d n %d: items not covered exactly once", nth, n);
            if (n <= 1 || nth == 1)
                CHECK(atomic_load(&j.ranges) == (n > 0) && !atomic_load(&j.by_other),
                      "ar_compute_for nth %d n %d: not one range on the caller", nth, n);
            else if (n >= 100)   /* thread 1 finished its half and took some of thread 0's */
                CHECK(atomic_load(&j.by_other) > n / 2, "ar_compute_for n %d: the fast thread did %d items", n,
                      atomic_load(&j.by_other));
        }
        ar_compute_free(c);
    }
}

int main(void)
{
    /* the activation conversions of every implementation here (each ISA has its own Q8_K / Q8_0 paths) */
    static const char *const act_isas[] = { "avx512", "avx2", "neon", "scalar" };
    for (size_t i = 0; i < sizeof act_isas / sizeof act_isas[0]; i++)
        if (ar_gemm_force(act_isas[i]) == 0) test_act_conversion();
    CHECK(ar_gemm_force(NULL) == 0, "back to the best implementation");
    test_force();
    test_kernels();
    test_tiles();
    test_compute_for();
    TEST_END();
}
