/* bench/gdn_bench.c — the AVX-512 Gated DeltaNet run kernel alone: ms for H heads of one layer.
 *
 * Not a test. Build by hand against a library build, e.g.
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. -Iinclude bench/gdn_bench.c build-lead/libarbor.a -lm -pthread \
 *      -o build-lead/gdn_bench
 *   build-lead/gdn_bench [T=512] [d=128] [heads=16]
 * Times ar_gdn_steps_avx512 (compute/cpu/gdn.h) over a run of T tokens on each of `heads` d x d states, one
 * thread, inputs laid out as the model lays them out (q, k, v of a token in one row), best of 5. T = 1 is a
 * decode step, 16 a verify chain, 512 a prompt chunk. */
#include "base/timer.h"
#include "compute/cpu/gdn.h"

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    const int T = argc > 1 ? atoi(argv[1]) : 512, d = argc > 2 ? atoi(argv[2]) : 128, H = argc > 3 ? atoi(argv[3]) : 16;
    if (T < 1 || (d != 64 && d != 128) || H < 1) {
        fprintf(stderr, "usage: %s [T >= 1] [d: 64 or 128] [heads >= 1]\n", argv[0]);
        return 1;
    }
    const size_t ld_u = 3 * (size_t)d;
    float *St = calloc((size_t)H * d * d, sizeof(float)), *u = malloc((size_t)T * ld_u * sizeof(float));
    float *g = malloc((size_t)T * sizeof(float)), *beta = malloc((size_t)T * sizeof(float));
    float *o = malloc((size_t)T * d * sizeof(float));
    if (!St || !u || !g || !beta || !o) { fprintf(stderr, "out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < (size_t)T * ld_u; i++) u[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int t = 0; t < T; t++) { g[t] = -0.1f; beta[t] = 0.5f; }
    double best = 1e30;
    int ok = 1;
    for (int r = 0; r < 5; r++) {
        const double t0 = ar_now();
        for (int h = 0; h < H; h++)
            ok &= ar_gdn_steps_avx512(St + (size_t)h * d * d, T, u, u + d, u + 2 * d, ld_u, g, beta, 1, o, (size_t)d,
                                      d, d, 0.088f);
        const double t = ar_now() - t0;
        if (t < best) best = t;
    }
    if (!ok) { fprintf(stderr, "this build has no AVX-512 GDN kernel\n"); return 1; }
    printf("gdn_bench: T %d, d %d, %d heads: %.3f ms (%.2f us per token and head) [o0 %g]\n", T, d, H, best * 1e3,
           best * 1e6 / T / H, o[0]);
    free(St); free(u); free(g); free(beta); free(o);
    return 0;
}
