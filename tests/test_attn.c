/* tests/test_attn.c — online-softmax attention: the dispatched fast path (ar_attn_block) against the
 * scalar reference (ar_attn_block_ref) on random queries, keys and values of several head dims, with
 * the keys fed in runs of several lengths (as KV pages and in-batch ancestors feed them), including
 * score ranges that make the running maximum move and values far in the exp's tail. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compute/cpu/attn.h"
#include "compute/cpu/cpu_features.h"
#include "compute/ops.h"

static uint64_t rng = 0x2545f4914f6cdd1dull;
static float frand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

int main(void)
{
    static const int dims[] = { 16, 64, 128, 256, 80, 48, 200 /* not a multiple of 16: reference */ };
    static const int runs[][4] = { { 1, 0, 0, 0 }, { 7, 0, 0, 0 }, { 64, 0, 0, 0 }, { 65, 3, 0, 0 },
                                   { 256, 256, 31, 1 }, { 300, 17, 64, 5 } };
    static const float spreads[] = { 0.1f, 3.0f, 40.0f };   /* score magnitudes: flat, peaked, extreme */
    printf("attn: avx512 %s\n", ar_cpu_has_avx512_set() ? "available" : "not available (reference vs itself)");
    double worst = 0;
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
                    ar_attn_block_ref(&ar, q, k + off * stride, v + off * stride, stride, n, scale);
                    ar_attn_block(&af, q, k + off * stride, v + off * stride, stride, n, scale);
                    off += n;
                }
                ar_attn_finish(&ar, out_ref);
                ar_attn_finish(&af, out_fast);
                double m = 0, e = 0;
                for (int i = 0; i < d; i++) {
                    m = fmax(m, fabs((double)out_ref[i]));
                    e = fmax(e, fabs((double)out_ref[i] - out_fast[i]));
                }
                const double rel = m > 0 ? e / m : e;
                if (rel > worst) worst = rel;
                CHECK(rel <= 2e-6, "d=%d runs %d+%d+%d+%d spread %g: fast path off the reference by %.3g (rel)", d,
                      runs[ri][0], runs[ri][1], runs[ri][2], runs[ri][3], spreads[si], rel);
                CHECK(fabs(ar.max - af.max) <= 1e-5 * fmax(1.0, fabs(ar.max)), "d=%d: running max %.9g vs %.9g", d, ar.max, af.max);
                CHECK(fabs(ar.sum - af.sum) <= 2e-6 * fabs(ar.sum), "d=%d: softmax sum %g vs %g", d, ar.sum, af.sum);
                free(q); free(k); free(v); free(o_ref); free(o_fast); free(out_ref); free(out_fast);
            }
        }
    }
    printf("attn: worst relative difference fast vs reference %.3g\n", worst);
    TEST_END();
}
