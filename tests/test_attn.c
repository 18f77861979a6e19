/* tests/test_attn.c — online-softmax attention: the dispatched fast path (ar_attn_rows, ar_attn_block)
 * against the scalar reference (ar_attn_rows_ref) on random queries, keys and values of several head
 * dims: keys fed in runs of several lengths (as KV pages and in-batch ancestors feed them), score
 * ranges that make the running maximum move and values far in the exp's tail; and several rows per
 * call (the query heads of one KV head, the nodes of a prompt chunk) with keys gathered from scattered
 * rows, F32 and F16 (the KV cache's type): every row's result is bit-identical to the same row
 * computed alone. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "compute/cpu/attn.h"
#include "compute/cpu/cpu_features.h"
#include "compute/ops.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

/* The reference over contiguous rows, cut into blocks as ar_attn_block cuts them. */
static void block_ref(ar_attn_acc *a, const float *q, const float *k, const float *v, size_t stride, int n,
                      float scale)
{
    const float *kp[AR_ATTN_BLOCK], *vp[AR_ATTN_BLOCK];
    for (int j0 = 0; j0 < n; j0 += AR_ATTN_BLOCK) {
        const int nb = n - j0 < AR_ATTN_BLOCK ? n - j0 : AR_ATTN_BLOCK;
        for (int j = 0; j < nb; j++) kp[j] = k + (size_t)(j0 + j) * stride, vp[j] = v + (size_t)(j0 + j) * stride;
        ar_attn_rows_ref(&a, &q, 1, kp, vp, nb, scale);
    }
}

static double rel_diff(const float *ref, const float *x, int d)
{
    double m = 0, e = 0;
    for (int i = 0; i < d; i++) {
        m = fmax(m, fabs((double)ref[i]));
        e = fmax(e, fabs((double)ref[i] - x[i]));
    }
    return m > 0 ? e / m : e;
}

static double worst = 0;

static void test_runs(void)
{
    static const int dims[] = { 16, 64, 128, 256, 80, 48, 200 /* not a multiple of 16: reference */ };
    static const int runs[][4] = { { 1, 0, 0, 0 }, { 7, 0, 0, 0 }, { 64, 0, 0, 0 }, { 65, 3, 0, 0 },
                                   { 256, 256, 31, 1 }, { 300, 17, 64, 5 } };
    static const float spreads[] = { 0.1f, 3.0f, 40.0f };   /* score magnitudes: flat, peaked, extreme */
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        const int d = dims[di];
        const size_t stride = (size_t)d + 16;   /* rows apart, as in a KV page with several heads */
        for (size_t ri = 0; ri < sizeof runs / sizeof *runs; ri++) {
            int total = 0;
            for (int r = 0; r < 4; r++) total += runs[ri][r];
            for (size_t si = 0; si < sizeof spreads / sizeof *spreads; si++) {
                float *q = malloc(sizeof(float) * d), *k = malloc(sizeof(float) * stride * total),
                      *v = malloc(sizeof(float) * stride * total);
                float *o_ref = malloc(sizeof(float) * d), *o_fast = malloc(sizeof(float) * d);
                float *out_ref = malloc(sizeof(float) * d), *out_fast = malloc(sizeof(float) * d);
                for (int i = 0; i < d; i++) q[i] = frand() * spreads[si] / sqrtf((float)d) * 4.0f;
                for (size_t i = 0; i < stride * (size_t)total; i++) { k[i] = frand(); v[i] = frand(); }
                ar_attn_acc ar, af;
                ar_attn_begin(&ar, o_ref, d);
                ar_attn_begin(&af, o_fast, d);
                const float scale = 1.0f / sqrtf((float)d);
                int off = 0;
                for (int r = 0; r < 4 && runs[ri][r]; r++) {
                    const int n = runs[ri][r];
                    block_ref(&ar, q, k + off * stride, v + off * stride, stride, n, scale);
                    ar_attn_acc *afp = &af;
                    const float *qp = q;
                    ar_attn_block(&afp, &qp, 1, k + off * stride, v + off * stride, stride, n, scale);
                    off += n;
                }
                ar_attn_finish(&ar, out_ref);
                ar_attn_finish(&af, out_fast);
                const double rel = rel_diff(out_ref, out_fast, d);
                if (rel > worst) worst = rel;
                /* scores of magnitude ~40 carry ~40 x 2^-24 x sqrt(d) of summation-order noise, which exp
                 * turns into that much relative error in the weights */
                const double tol = spreads[si] >= 40.0f ? 1e-5 : 2e-6;
                CHECK(rel <= tol, "d=%d runs %d+%d+%d+%d spread %g: fast path off the reference by %.3g (rel)", d,
                      runs[ri][0], runs[ri][1], runs[ri][2], runs[ri][3], spreads[si], rel);
                CHECK(fabs(ar.max - af.max) <= 1e-5 * fmax(1.0, fabs(ar.max)), "d=%d: running max %.9g vs %.9g", d, ar.max, af.max);
                CHECK(fabs(ar.sum - af.sum) <= tol * fabs(ar.sum), "d=%d: softmax sum %g vs %g", d, ar.sum, af.sum);
                free(q); free(k); free(v); free(o_ref); free(o_fast); free(out_ref); free(out_fast);
            }
        }
    }
}

/* R rows per call over gathered keys, three blocks in a row: == each row alone (bits), ~= the reference. */
static void test_rows(int f16)
{
    static const int dims[] = { 256, 128, 80, 48 };
    static const int Rs[] = { 1, 2, 3, 4, 5, 7, 12, 16, 24 };
    static const int ns[] = { 1, 3, 4, 5, 16, 17, 63, 64 };
    enum { POOL = 200, MAXR = 24 };
    int n_cases = 0;
    for (size_t di = 0; di < sizeof dims / sizeof *dims; di++) {
        const int d = dims[di];
        float *kv = malloc(sizeof(float) * 2 * POOL * d);   /* key/value rows the blocks pick from */
        uint16_t *kvh = malloc(sizeof(uint16_t) * 2 * POOL * d);   /* the same as half floats */
        float *q = malloc(sizeof(float) * MAXR * d), *o = malloc(sizeof(float) * 3 * MAXR * d);
        float *out = malloc(sizeof(float) * 3 * MAXR * d);
        for (int i = 0; i < 2 * POOL * d; i++) kvh[i] = ar_f32_to_f16(kv[i] = frand());
        for (size_t ri = 0; ri < sizeof Rs / sizeof *Rs; ri++)
            for (size_t ni = 0; ni < sizeof ns / sizeof *ns; ni++) {
                const int R = Rs[ri], n = ns[ni];
                for (int i = 0; i < R * d; i++) q[i] = frand() * (ni % 3 ? 6.0f : 0.5f) / sqrtf((float)d) * 4.0f;
                ar_attn_acc acc[3][MAXR], *ap[3][MAXR];
                const float *qp[MAXR];
                for (int r = 0; r < R; r++) {
                    qp[r] = q + (size_t)r * d;
                    for (int w = 0; w < 3; w++) {   /* 0: all rows at once, 1: each row alone, 2: reference */
                        ar_attn_begin(&acc[w][r], o + ((size_t)w * MAXR + r) * d, d);
                        ap[w][r] = &acc[w][r];
                    }
                }
                const float scale = 1.0f / sqrtf((float)d);
                for (int b = 0; b < 3; b++) {
                    const float *kp[AR_ATTN_BLOCK], *vp[AR_ATTN_BLOCK];
                    const uint16_t *kh[AR_ATTN_BLOCK], *vh[AR_ATTN_BLOCK];
                    for (int j = 0; j < n; j++) {
                        const int row = (int)((uint32_t)(frand() * 1e6f + 1e6f) % POOL);
                        kp[j] = kv + (size_t)row * 2 * d;
                        vp[j] = kv + (size_t)row * 2 * d + d;
                        kh[j] = kvh + (size_t)row * 2 * d;
                        vh[j] = kvh + (size_t)row * 2 * d + d;
                    }
                    if (f16) {
                        ar_attn_rows_f16(ap[0], qp, R, kh, vh, n, scale);
                        for (int r = 0; r < R; r++) ar_attn_rows_f16(&ap[1][r], &qp[r], 1, kh, vh, n, scale);
                        ar_attn_rows_f16_ref(ap[2], qp, R, kh, vh, n, scale);
                    } else {
                        ar_attn_rows(ap[0], qp, R, kp, vp, n, scale);
                        for (int r = 0; r < R; r++) ar_attn_rows(&ap[1][r], &qp[r], 1, kp, vp, n, scale);
                        ar_attn_rows_ref(ap[2], qp, R, kp, vp, n, scale);
                    }
                }
                for (int r = 0; r < R; r++) {
                    float *f[3];
                    for (int w = 0; w < 3; w++) {
                        f[w] = out + ((size_t)w * MAXR + r) * d;
                        ar_attn_finish(&acc[w][r], f[w]);
                    }
                    CHECK(!memcmp(f[0], f[1], sizeof(float) * d) && acc[0][r].max == acc[1][r].max &&
                              acc[0][r].sum == acc[1][r].sum,
                          "%s d=%d R=%d n=%d row %d: the result depends on the other rows of the call",
                          f16 ? "f16" : "f32", d, R, n, r);
                    const double rel = rel_diff(f[2], f[0], d);
                    if (rel > worst) worst = rel;
                    CHECK(rel <= 2e-6, "%s d=%d R=%d n=%d row %d: off the reference by %.3g (rel)", f16 ? "f16" : "f32",
                          d, R, n, r, rel);
                }
                n_cases++;
            }
        free(kv); free(kvh); free(q); free(o); free(out);
    }
    printf("attn: %d multi-row cases (up to 24 rows, gathered %s keys)\n", n_cases, f16 ? "F16" : "F32");
}

int main(void)
{
    printf("attn: fast path %s\n", ar_cpu_has_avx512_set() ? "avx512" : ar_cpu_has_avx2_set() ? "avx2"
                                   : "none (reference vs itself)");
    test_runs();
    test_rows(0);
    test_rows(1);
    printf("attn: worst relative difference fast vs reference %.3g\n", worst);
    TEST_END();
}
