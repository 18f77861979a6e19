/* bench/attn_bench.c — ar_attn_rows microbenchmark: GFLOPS of one key block after another for R
 * query rows that share the keys (the query heads of one KV head x the nodes of a tile), one thread.
 *
 * Not a test. Build by hand against a library build, e.g.
 *   make BUILD=build-kern build-kern/libarbor.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. -Iinclude bench/attn_bench.c build-kern/libarbor.a -lm -pthread \
 *      -o build-kern/attn_bench
 *   build-kern/attn_bench [rows=16] [keys=4096] [f16|f32] [reps=20]
 * Keys and values are rows of 256 elements, 512 apart (two KV heads per row, as the mid model's KV
 * pages), so 4096 keys are 8 MiB (F32) of K and of V: more than a core's L2. FLOPs counted: 4 per
 * (row, key, dim) (q.k and p.v, multiply and add); the softmax is not counted. */
#include "base/half.h"
#include "base/timer.h"
#include "compute/ops.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { D = 256, STRIDE = 512, MAX_R = 64 };

int main(int argc, char **argv)
{
    const int R = argc > 1 ? atoi(argv[1]) : 16, NK = argc > 2 ? atoi(argv[2]) : 4096;
    const int f16 = argc > 3 ? !strcmp(argv[3], "f16") : 0, reps = argc > 4 ? atoi(argv[4]) : 20;
    if (R < 1 || R > MAX_R || NK < AR_ATTN_BLOCK || reps < 1) {
        fprintf(stderr, "usage: attn_bench [rows 1..%d] [keys >= %d] [f16|f32] [reps]\n", MAX_R, AR_ATTN_BLOCK);
        return 2;
    }
    float *K = malloc(sizeof(float) * (size_t)NK * STRIDE), *V = malloc(sizeof(float) * (size_t)NK * STRIDE);
    uint16_t *Kh = malloc(sizeof(uint16_t) * (size_t)NK * STRIDE), *Vh = malloc(sizeof(uint16_t) * (size_t)NK * STRIDE);
    float *q = malloc(sizeof(float) * (size_t)R * D), *o = malloc(sizeof(float) * (size_t)R * D);
    if (!K || !V || !Kh || !Vh || !q || !o) { fprintf(stderr, "attn_bench: out of memory\n"); return 1; }
    uint32_t x = 12345;
    for (size_t i = 0; i < (size_t)NK * STRIDE; i++) {
        x = x * 1664525u + 1013904223u;
        K[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
        x = x * 1664525u + 1013904223u;
        V[i] = (float)(x >> 8) / 16777216.0f - 0.5f;
        Kh[i] = ar_f32_to_f16(K[i]);
        Vh[i] = ar_f32_to_f16(V[i]);
    }
    for (int i = 0; i < R * D; i++) q[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
    ar_attn_acc acc[MAX_R], *ap[MAX_R];
    const float *qp[MAX_R];
    double best = 1e30;
    for (int rep = 0; rep < reps; rep++) {
        const double t0 = ar_now();
        for (int r = 0; r < R; r++) {
            ar_attn_begin(&acc[r], o + (size_t)r * D, D);
            ap[r] = &acc[r];
            qp[r] = q + (size_t)r * D;
        }
        for (int b = 0; b + AR_ATTN_BLOCK <= NK; b += AR_ATTN_BLOCK) {
            const float *kp[AR_ATTN_BLOCK], *vp[AR_ATTN_BLOCK];
            const uint16_t *kh[AR_ATTN_BLOCK], *vh[AR_ATTN_BLOCK];
            for (int j = 0; j < AR_ATTN_BLOCK; j++) {
                kp[j] = K + (size_t)(b + j) * STRIDE;
                vp[j] = V + (size_t)(b + j) * STRIDE;
                kh[j] = Kh + (size_t)(b + j) * STRIDE;
                vh[j] = Vh + (size_t)(b + j) * STRIDE;
            }
            if (f16) ar_attn_rows_f16(ap, qp, R, kh, vh, AR_ATTN_BLOCK, 0.0625f);
            else ar_attn_rows(ap, qp, R, kp, vp, AR_ATTN_BLOCK, 0.0625f);
        }
        const double t = ar_now() - t0;
        if (t < best) best = t;
    }
    const double flop = 4.0 * R * (double)(NK / AR_ATTN_BLOCK * AR_ATTN_BLOCK) * D;
    printf("attn_bench: %s keys, %d rows x %d keys x %d dims: %.3f ms per pass, %.1f GFLOPS (best of %d)\n",
           f16 ? "F16" : "F32", R, NK, D, best * 1e3, flop / best * 1e-9, reps);
    free(K); free(V); free(Kh); free(Vh); free(q); free(o);
    return 0;
}
