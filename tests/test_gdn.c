/* tests/test_gdn.c — the Gated DeltaNet recurrence step: the dispatched fast path (ar_gdn_step)
 * against the scalar reference (ar_gdn_step_ref) on random states and inputs of several head
 * shapes, over many consecutive steps (errors would compound), with and without the output. */
#include "test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "compute/cpu/cpu_features.h"
#include "compute/cpu/gdn.h"
#include "compute/ops.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (float)((rng >> 11) * (1.0 / 9007199254740992.0)) * 2.0f - 1.0f;
}

static void l2(float *x, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)x[i] * x[i];
    for (int i = 0; i < n; i++) x[i] /= (float)sqrt(s + 1e-6);
}

int main(void)
{
    static const int shapes[][2] = { { 16, 16 }, { 64, 64 }, { 128, 128 }, { 48, 33 }, { 256, 7 }, { 32, 1 } };
    printf("gdn: avx512 %s\n", ar_cpu_has_avx512_set() ? "available" : "not available (reference vs itself)");
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        const int dk = shapes[si][0], dv = shapes[si][1];
        float *s_ref = malloc(sizeof(float) * (size_t)dk * dv), *s_fast = malloc(sizeof(float) * (size_t)dk * dv);
        float *q = malloc(sizeof(float) * dk), *k = malloc(sizeof(float) * dk), *v = malloc(sizeof(float) * dv);
        float *o_ref = malloc(sizeof(float) * dv), *o_fast = malloc(sizeof(float) * dv);
        for (int i = 0; i < dk * dv; i++) s_ref[i] = s_fast[i] = 0.1f * frand();
        double worst_o = 0, worst_s = 0;
        for (int step = 0; step < 50; step++) {
            for (int i = 0; i < dk; i++) { q[i] = frand(); k[i] = frand(); }
            l2(q, dk); l2(k, dk);
            for (int i = 0; i < dv; i++) v[i] = frand();
            const float g = -0.5f * (frand() + 1.0f), beta = 0.5f * (frand() + 1.0f);
            const int with_o = step % 5 != 4;   /* commit replays run without the output */
            ar_gdn_step_ref(s_ref, q, k, v, g, beta, with_o ? o_ref : NULL, dk, dv, 1.0f / sqrtf((float)dk));
            ar_gdn_step(s_fast, q, k, v, g, beta, with_o ? o_fast : NULL, dk, dv, 1.0f / sqrtf((float)dk));
            if (with_o)
                for (int c = 0; c < dv; c++) {
                    double d = fabs((double)o_ref[c] - o_fast[c]) / (fabs((double)o_ref[c]) + 1e-3);
                    if (d > worst_o) worst_o = d;
                }
        }
        for (int i = 0; i < dk * dv; i++) {
            double d = fabs((double)s_ref[i] - s_fast[i]) / (fabs((double)s_ref[i]) + 1e-3);
            if (d > worst_s) worst_s = d;
        }
        printf("gdn d_k %3d d_v %3d, 50 steps: worst rel diff output %.2e, state %.2e\n", dk, dv, worst_o, worst_s);
        CHECK(worst_o < 1e-4 && worst_s < 1e-4, "d_k %d d_v %d: fast vs reference output %.3e state %.3e", dk, dv,
              worst_o, worst_s);
        free(s_ref); free(s_fast); free(q); free(k); free(v); free(o_ref); free(o_fast);
    }
    TEST_END();
}
