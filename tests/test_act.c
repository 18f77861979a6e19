/* tests/test_act.c — ar_silu_mul (compute/ops.h): the dispatched fast path against the scalar reference
 * (libm expf) on random inputs over the range activations take and beyond (|x| up to 120: the exp under
 * and overflows), odd lengths (masked tails), u present or not, and y aliasing g or u. */
#include "tests/test.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "compute/cpu/act.h"
#include "compute/cpu/cpu_features.h"
#include "compute/ops.h"

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static float uni(void) { return test_uniform(&rng); }

int main(void)
{
    /* the best ISA's fast path must take the calls (else the checks below compare the reference with itself) */
    {
        float g[3] = { -1.0f, 0.5f, 2.0f }, y[3];
        if (ar_cpu_has_avx512_set()) CHECK(ar_silu_mul_avx512(y, g, NULL, 3), "AVX-512 CPU: silu_mul fast path not built");
        else if (ar_cpu_has_avx2_set()) CHECK(ar_silu_mul_avx2(y, g, NULL, 3), "AVX2 CPU: silu_mul fast path not built");
    }
    static const int lens[] = { 1, 7, 15, 16, 17, 100, 6144, 6151 };
    double worst = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int n = lens[li];
        for (int t = 0; t < 12; t++) {
            const float range = t % 3 == 0 ? 120.0f : t % 3 == 1 ? 12.0f : 1.0f;
            float *g = malloc((size_t)n * sizeof *g), *u = malloc((size_t)n * sizeof *u);
            float *yr = malloc((size_t)n * sizeof *yr), *yf = malloc((size_t)n * sizeof *yf);
            for (int i = 0; i < n; i++) {
                g[i] = (2.0f * uni() - 1.0f) * range;
                u[i] = 2.0f * uni() - 1.0f;
            }
            const bool with_u = t & 1, alias = t & 2;
            ar_silu_mul_ref(yr, g, with_u ? u : NULL, n);
            if (alias) {
                memcpy(yf, g, (size_t)n * sizeof *yf);
                ar_silu_mul(yf, yf, with_u ? u : NULL, n);
            } else {
                ar_silu_mul(yf, g, with_u ? u : NULL, n);
            }
            int bad = 0;
            for (int i = 0; i < n; i++) {
                const double scale = fabs(g[i]) * (with_u ? fabs(u[i]) : 1.0) + 1e-30;
                const double e = fabs((double)yf[i] - (double)yr[i]) / scale;
                if (e > worst) worst = e;
                if (!(e <= 1e-6) || isnan(yf[i]) != isnan(yr[i])) bad++;
            }
            CHECK(bad == 0, "silu_mul n %d trial %d: %d elements off by more than 1e-6 of |g u|", n, t, bad);
            free(g);
            free(u);
            free(yr);
            free(yf);
        }
    }
    printf("silu_mul: fast path vs reference worst %.3g (relative to |g u|)\n", worst);
    TEST_END();
}
