/* tests/test_gdn.c — the Gated DeltaNet recurrence step: the dispatched fast path (ar_gdn_step)
 * against the scalar reference (ar_gdn_step_ref) on random states and inputs of several head
 * shapes, over many consecutive steps (errors would compound), with and without the output; and
 * runs of steps on one state (ar_gdn_steps), which must give the bits of that many single steps. */
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

/* ar_gdn_steps over T tokens laid out as the model lays them out (token rows ld_u floats apart, g and
 * beta ld_gb apart, outputs ld_o apart) against T calls of ar_gdn_step: same bits, state and outputs */
static void test_steps(void)
{
    static const int shapes[][2] = { { 128, 128 }, { 64, 33 }, { 128, 1 }, { 48, 20 }, { 16, 5 } };
    static const int Ts[] = { 1, 2, 7, 64, 65, 150 };
    int n_cases = 0;
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++)
        for (size_t ti = 0; ti < sizeof Ts / sizeof Ts[0]; ti++)
            for (int with_o = 0; with_o < 2; with_o++) {
                const int dk = shapes[si][0], dv = shapes[si][1], T = Ts[ti];
                const size_t ld_u = (size_t)2 * dk + dv + 3, ld_gb = 3, ld_o = (size_t)dv + 5;
                float *u = malloc(sizeof(float) * ld_u * T), *gb = malloc(sizeof(float) * 2 * ld_gb * T);
                float *sa = malloc(sizeof(float) * (size_t)dk * dv), *sb = malloc(sizeof(float) * (size_t)dk * dv);
                float *oa = calloc(ld_o * T, sizeof(float)), *ob = calloc(ld_o * T, sizeof(float));
                for (int t = 0; t < T; t++) {
                    float *r = u + (size_t)t * ld_u;
                    for (size_t i = 0; i < ld_u; i++) r[i] = frand();
                    l2(r, dk); l2(r + dk, dk);   /* q, k; v follows */
                    gb[(size_t)t * ld_gb] = -0.5f * (frand() + 1.0f);
                    gb[(size_t)(T + t) * ld_gb] = 0.5f * (frand() + 1.0f);
                }
                for (int i = 0; i < dk * dv; i++) sa[i] = sb[i] = 0.1f * frand();
                const float scale = 1.0f / sqrtf((float)dk);
                const float *g = gb, *beta = gb + (size_t)T * ld_gb;
                ar_gdn_steps(sa, T, with_o ? u : NULL, u + dk, u + 2 * dk, ld_u, g, beta, ld_gb, with_o ? oa : NULL,
                             ld_o, dk, dv, scale);
                for (int t = 0; t < T; t++) {
                    const float *r = u + (size_t)t * ld_u;
                    ar_gdn_step(sb, with_o ? r : NULL, r + dk, r + 2 * dk, g[(size_t)t * ld_gb], beta[(size_t)t * ld_gb],
                                with_o ? ob + (size_t)t * ld_o : NULL, dk, dv, scale);
                }
                CHECK(!memcmp(sa, sb, sizeof(float) * (size_t)dk * dv) && !memcmp(oa, ob, sizeof(float) * ld_o * T),
                      "d_k %d d_v %d, %d steps%s: a run differs from single steps", dk, dv, T, with_o ? "" : " (no output)");
                n_cases++;
                free(u); free(gb); free(sa); free(sb); free(oa); free(ob);
            }
    printf("gdn: %d runs of steps bit-identical to single steps\n", n_cases);
}

int main(void)
{
    static const int shapes[][2] = { { 16, 16 }, { 64, 64 }, { 128, 128 }, { 48, 33 }, { 256, 7 }, { 32, 1 } };
    printf("gdn: fast path %s\n", ar_cpu_has_avx512_set() ? "avx512" : ar_cpu_has_avx2_set() ? "avx2"
                                  : "none (reference vs itself)");
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
    test_steps();
    TEST_END();
}
