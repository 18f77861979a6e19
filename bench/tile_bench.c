/* bench/tile_bench.c — an AVX-512 tile kernel alone: ns per 16 rows x 256 elements with the weights hot in L1.
 *
 * Not a test. Build by hand against a library build, e.g.
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. -Iinclude bench/tile_bench.c build-lead/libarbor.a -lm -pthread \
 *      -o build-lead/tile_bench
 *   build-lead/tile_bench [q4_K|q6_K|q5_K|iq4_xs|q8_0|q4_0|iq4_nl] [n_out=16] [M=16] [n_in=2048] [calls=20000]
 * Quantizes n_out random weight rows, packs them in the 16-row tile layout (gemm.h), and times
 * ar_gemm_tiled over all of them for M activation rows on one thread, best of 5 runs of `calls` calls.
 * With the default 16 x 2048 (8 tiles, 18-27 KB) the weights stay in L1, so this measures the arithmetic
 * of the kernel (tile build, row blocks, finish) without DRAM; bench/gemm_bench.c measures whole
 * matrices from DRAM on 1 and 2 threads. */
#include "base/timer.h"
#include "compute/cpu/gemm.h"
#include "format/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    static const struct { const char *name; int type; } types[] = {
        { "q4_K", AR_Q4_K }, { "q5_K", AR_Q5_K }, { "q6_K", AR_Q6_K }, { "iq4_xs", AR_IQ4_XS },
        { "q8_0", AR_Q8_0 }, { "q4_0", AR_Q4_0 }, { "iq4_nl", AR_IQ4_NL }, { "q3_K", AR_Q3_K }, { "q2_K", AR_Q2_K },
    };
    int ti = 0;
    while (argc > 1 && ti < (int)(sizeof types / sizeof types[0]) && strcmp(argv[1], types[ti].name)) ti++;
    if (ti == (int)(sizeof types / sizeof types[0])) {
        fprintf(stderr, "%s: unknown type '%s'\n", argv[0], argv[1]);
        return 1;
    }
    const int type = types[ti].type;
    const int n_out = argc > 2 ? atoi(argv[2]) : 16, M = argc > 3 ? atoi(argv[3]) : 16;
    const int n_in = argc > 4 ? atoi(argv[4]) : 2048, calls = argc > 5 ? atoi(argv[5]) : 20000;
    if (n_out < 16 || n_out % 16 || M < 1 || n_in < 256 || n_in % 256 || calls < 1) {
        fprintf(stderr, "usage: %s [type] [n_out (multiple of 16)] [M] [n_in (multiple of 256)] [calls]\n", argv[0]);
        return 1;
    }
    const size_t rb = ar_row_bytes(type, n_in), xrb = ar_gemm_act_row_bytes(type, n_in);
    float *wf = malloc(sizeof(float) * (size_t)n_in * (size_t)n_out), *x = malloc(sizeof(float) * (size_t)n_in * (size_t)M);
    float *y = malloc(sizeof(float) * (size_t)n_out * (size_t)M);
    uint8_t *w = aligned_alloc(64, (rb * (size_t)n_out + 63) / 64 * 64), *xq = malloc(xrb * (size_t)M);
    if (!wf || !x || !y || !w || !xq) { fprintf(stderr, "out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < (size_t)n_in * (size_t)n_out; i++) wf[i] = rand() / (float)RAND_MAX - 0.5f;
    for (size_t i = 0; i < (size_t)n_in * (size_t)M; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int o = 0; o < n_out; o++) ar_quantize_row(type, wf + (size_t)o * n_in, w + (size_t)o * rb, n_in);
    if (!ar_gemm_tiles_wanted(type, n_in, n_out) || ar_gemm_pack_tiles(type, w, rb, n_out)) {
        fprintf(stderr, "no tile layout for this shape on this machine (the tile kernels need AVX-512)\n");
        return 1;
    }
    for (int m = 0; m < M; m++) ar_gemm_quantize_act(type, x + (size_t)m * n_in, xq + (size_t)m * xrb, n_in);
    double best = 1e30;
    for (int r = 0; r < 5; r++) {
        const double t0 = ar_now();
        for (int i = 0; i < calls; i++) ar_gemm_tiled(type, w, rb, n_in, 0, n_out, xq, xrb, M, y, n_out);
        const double t = ar_now() - t0;
        if (t < best) best = t;
    }
    const double tiles = (double)n_out / 16 * (n_in / 256), ns = best / calls * 1e9 / tiles;
    printf("%s n_out %d M %d n_in %d: %.1f ns per tile (%.2f vpdpbusd per ns) [y0 %g]\n", types[ti].name,
           n_out, M, n_in, ns, M * 64 / ns, (double)y[0]);
    free(wf); free(x); free(y); free(w); free(xq);
    return 0;
}
