/* tests/test_norm.c — ar_rmsnorm, ar_l2norm and ar_conv_step (compute/ops.h): the dispatched fast paths
 * against the scalar references on random inputs. Lengths cover the model's rows (128-wide heads,
 * 256-wide attention heads, 2048 and 5120 hidden, 6144 and 10240 conv channels) and odd ones (masked
 * tails, channel counts that are not a multiple of 16), with and without a gain, y aliasing x, and
 * inputs from tiny to large magnitudes.
 *
 * The norms sum the squares in double in another order than the reference, so an output may differ
 * by one float rounding; the test asserts at most one ulp and that such differences stay rare. The
 * convolution keeps the reference's order and must give the same bits. */
#include "tests/test.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "compute/cpu/cpu_features.h"
#include "compute/cpu/norm.h"
#include "compute/ops.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float uni(void) { return test_uniform(&rng); }

/* distance in units in the last place between two finite floats of the same sign (else a large value) */
static int64_t ulps(float a, float b)
{
    if (a == b) return 0;
    if (isnan(a) || isnan(b) || (a < 0) != (b < 0)) return INT32_MAX;
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

/* the largest ulp distance of fast[i] from ref[i]; counts the outputs compared and those that differ */
static int64_t row_ulps(const float *fast, const float *ref, int n, long *n_diff, long *n_all)
{
    int64_t worst = 0;
    for (int i = 0; i < n; i++) {
        const int64_t u = ulps(fast[i], ref[i]);
        if (u > worst) worst = u;
        *n_diff += u != 0;
    }
    *n_all += n;
    return worst;
}

static void test_rmsnorm(void)
{
    static const int lens[] = { 1, 7, 16, 17, 31, 128, 129, 256, 2048, 2051, 5120 };
    int64_t worst = 0;
    long n_diff = 0, n_all = 0;
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const int n = lens[li];
        float *x = malloc((size_t)n * sizeof *x), *w = malloc((size_t)n * sizeof *w);
        float *yr = malloc((size_t)n * sizeof *yr), *yf = malloc((size_t)n * sizeof *yf);
        for (int t = 0; t < 12; t++) {
            const float mag = t % 4 == 0 ? 1e-3f : t % 4 == 1 ? 1.0f : t % 4 == 2 ? 30.0f : 1e3f;
            for (int i = 0; i < n; i++) {
                x[i] = (2.0f * uni() - 1.0f) * mag;
                w[i] = 0.5f + uni();
            }
            const int with_w = t & 1, alias = (t >> 1) & 1;
            ar_rmsnorm_ref(yr, x, with_w ? w : NULL, n, 1e-6f);
            if (alias) {
                memcpy(yf, x, (size_t)n * sizeof *yf);
                ar_rmsnorm(yf, yf, with_w ? w : NULL, n, 1e-6f);
            } else {
                ar_rmsnorm(yf, x, with_w ? w : NULL, n, 1e-6f);
            }
            const int64_t row_worst = row_ulps(yf, yr, n, &n_diff, &n_all);
            if (row_worst > worst) worst = row_worst;
            CHECK(row_worst <= 1, "rmsnorm n %d trial %d (w %d, alias %d): %lld ulps from the reference", n, t,
                  with_w, alias, (long long)row_worst);
        }
        /* l2norm: q and k heads of the delta rule, eps 1e-6 as qwen35 */
        for (int t = 0; t < 4; t++) {
            const float mag = t == 0 ? 1e-4f : t == 1 ? 0.1f : t == 2 ? 3.0f : 200.0f;
            for (int i = 0; i < n; i++) yr[i] = yf[i] = (2.0f * uni() - 1.0f) * mag;
            ar_l2norm_ref(yr, n, 1e-6f);
            ar_l2norm(yf, n, 1e-6f);
            const int64_t row_worst = row_ulps(yf, yr, n, &n_diff, &n_all);
            if (row_worst > worst) worst = row_worst;
            CHECK(row_worst <= 1, "l2norm n %d trial %d: %lld ulps from the reference", n, t, (long long)row_worst);
        }
        free(x);
        free(w);
        free(yr);
        free(yf);
    }
    /* the double sums differ only in their last bits: a float result that moves is a rounding tie-break */
    CHECK(n_diff * 100 <= n_all, "norms: %ld of %ld outputs differ from the reference (more than 1 %%)", n_diff,
          n_all);
    printf("rmsnorm/l2norm: fast path vs reference: worst %lld ulp, %ld of %ld outputs differ\n", (long long)worst,
           n_diff, n_all);
}

static void test_conv(void)
{
    static const int chans[] = { 1, 15, 16, 17, 48, 6144, 6150, 10240 };
    static const int tapss[] = { 4, 3 };
    for (size_t ci = 0; ci < sizeof chans / sizeof chans[0]; ci++)
        for (size_t ti = 0; ti < sizeof tapss / sizeof tapss[0]; ti++) {
            const int C = chans[ci], taps = tapss[ti];
            float *w = malloc((size_t)C * (size_t)taps * sizeof *w), *in = malloc((size_t)C * 4 * sizeof *in);
            float *yr = malloc((size_t)C * sizeof *yr), *yf = malloc((size_t)C * sizeof *yf);
            for (size_t i = 0; i < (size_t)C * (size_t)taps; i++) w[i] = 2.0f * uni() - 1.0f;
            for (size_t i = 0; i < (size_t)C * 4; i++) in[i] = (2.0f * uni() - 1.0f) * 8.0f;
            /* rows out of order in memory, as the forward's window (committed rows, then nodes) */
            const float *rows[4] = { in + 2 * (size_t)C, in, in + 3 * (size_t)C, in + (size_t)C };
            ar_conv_step_ref(yr, rows, w, C, taps);
            ar_conv_step(yf, rows, w, C, taps);
            int bad = 0;
            for (int i = 0; i < C; i++) bad += memcmp(&yr[i], &yf[i], sizeof(float)) != 0;
            CHECK(bad == 0, "conv_step channels %d taps %d: %d outputs differ from the reference bits", C, taps,
                  bad);
            free(w);
            free(in);
            free(yr);
            free(yf);
        }
}

/* The best ISA's three fast paths must each take a call (else the dispatched calls below would compare the
 * reference with itself). */
static void check_handled(const char *isa, int (*rms)(float *, const float *, const float *, int, float),
                          int (*l2)(float *, int, float),
                          int (*conv)(float *, const float *const *, const float *, int, int))
{
    float x[20], y[20], out[16], w[64];
    for (int i = 0; i < 20; i++) x[i] = (float)i - 7.5f;
    for (int i = 0; i < 64; i++) w[i] = (float)i * 0.01f;
    const float *rows[4] = { x, x + 1, x + 2, x + 3 };
    const int handled = rms(y, x, NULL, 20, 1e-6f) + l2(y, 20, 1e-6f) + conv(out, rows, w, 16, 4);
    CHECK(handled == 3, "%s CPU: %d of the 3 fast paths handled their call (not built with it?)", isa, handled);
    printf("norm: %s fast paths under test\n", isa);
}

int main(void)
{
    if (ar_cpu_has_avx512_set())
        check_handled("AVX-512", ar_rmsnorm_avx512, ar_l2norm_avx512, ar_conv_step_avx512);
    else if (ar_cpu_has_avx2_set())   /* a CPU without AVX-512, or ARBOR_CPU_ISA=avx2 */
        check_handled("AVX2", ar_rmsnorm_avx2, ar_l2norm_avx2, ar_conv_step_avx2);
    else
        printf("norm: no AVX-512 or AVX2 here: the dispatched calls run the references\n");
    test_rmsnorm();
    test_conv();
    TEST_END();
}
