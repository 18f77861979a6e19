/* bench/gemm_bench.c — ar_gemm microbenchmark: time vs M for one weight shape.
 *
 * Not a test. Build by hand against a library build, e.g.
 *   make BUILD=build-kern build-kern/libarbor.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. bench/gemm_bench.c build-kern/libarbor.a -lm -pthread \
 *      -o build-kern/gemm_bench
 *   build-kern/gemm_bench [type=q4_K] [n_in=2048] [n_out=6144] [isa=best] [reps=7] [hot|cold] [tiles]
 * ("hot": one copy, to time the arithmetic alone; "tiles": weights in gemm.h's 16-row tile layout,
 * as the model loader packs them for the tile kernels: AVX-512, and AVX2 Q4_K).
 * Several copies of the matrix (more bytes than the L3 cache) are used in turn, as the layers of
 * a model are, so M = 1 reads weights from DRAM. Reports ms per matrix, GB/s of weight bytes and
 * the time relative to M = 1, on 1 and 2 threads (output rows split over the base/pool.h pool in
 * multiples of AR_GEMM_ROW_ALIGN). */
#include "base/bigmem.h"
#include "base/pool.h"
#include "base/timer.h"
#include "compute/cpu/gemm.h"
#include "format/quant.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { MAX_M = 64, N_COPIES_MIN = 2 };

typedef struct {
    int type;
    int64_t n_in, n_out;
    size_t wrb, xrb;
    const uint8_t *w;
    const uint8_t *xq;
    float *y;
    int M;
    int tiles;
    double cpu[2];   /* thread CPU seconds of the last run, per thread */
} job;

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void run_part(void *ctx, int ith, int nth)
{
    job *j = ctx;
    const double c0 = thread_cpu();
    long lo, hi;
    ar_split_range((long)j->n_out, AR_GEMM_ROW_ALIGN, ith, nth, &lo, &hi);
    if (hi > lo && j->tiles) ar_gemm_tiled(j->type, j->w, j->wrb, j->n_in, lo, hi, j->xq, j->xrb, j->M, j->y, j->n_out);
    else if (hi > lo) ar_gemm(j->type, j->w, j->wrb, j->n_in, lo, hi, j->xq, j->xrb, j->M, j->y, j->n_out);
    if (ith < 2) j->cpu[ith] = thread_cpu() - c0;
}

static uint64_t rng = 88172645463325252ull;
static float gauss(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    float u = (float)((rng >> 40) * (1.0 / 16777216.0)) + 1e-7f;
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    float v = (float)((rng >> 40) * (1.0 / 16777216.0));
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

int main(int argc, char **argv)
{
    const char *tname = argc > 1 ? argv[1] : "q4_K";
    const int type = ar_dtype_from_name(tname);
    const int64_t n_in = argc > 2 ? atoll(argv[2]) : 2048;
    const int64_t n_out = argc > 3 ? atoll(argv[3]) : 6144;
    const char *isa = argc > 4 && strcmp(argv[4], "best") ? argv[4] : NULL;
    const int reps = argc > 5 ? atoi(argv[5]) : 7;
    const int hot = argc > 6 && !strcmp(argv[6], "hot"); /* one copy: weights stay in cache */
    const int tiles = argc > 7 && !strcmp(argv[7], "tiles");
    if (type < 0 || ar_gemm_act_type(type) < 0) { fprintf(stderr, "unsupported type %s\n", tname); return 1; }
    if (ar_gemm_force(isa) != 0) { fprintf(stderr, "isa %s not available\n", isa); return 1; }

    const size_t wrb = ar_row_bytes(type, n_in), xrb = ar_gemm_act_row_bytes(type, n_in);
    const size_t wbytes = wrb * (size_t)n_out;
    int copies = (int)((96u << 20) / wbytes) + 1; /* > 96 MiB in all: well past any L3 */
    if (copies < N_COPIES_MIN) copies = N_COPIES_MIN;
    if (hot) copies = 1;
    uint8_t *w = ar_bigmem_alloc(wbytes * (size_t)copies, 0);   /* huge pages, as the model's weights */
    float *row = malloc(sizeof(float) * (size_t)n_in);
    for (int64_t o = 0; o < n_out; o++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = gauss();
        ar_quantize_row(type, row, w + (size_t)o * wrb, n_in);
    }
    if (tiles && ar_gemm_pack_tiles(type, w, wrb, n_out) != 0) { fprintf(stderr, "%s has no tile layout\n", tname); return 1; }
    for (int c = 1; c < copies; c++) memcpy(w + (size_t)c * wbytes, w, wbytes);
    uint8_t *xq = malloc(xrb * MAX_M);
    for (int m = 0; m < MAX_M; m++) {
        for (int64_t i = 0; i < n_in; i++) row[i] = gauss();
        ar_gemm_quantize_act(type, row, xq + (size_t)m * xrb, n_in);
    }
    float *y = malloc(sizeof(float) * (size_t)n_out * MAX_M);

    printf("ar_gemm %s %lldx%lld (n_in x n_out), %.2f MB per matrix, %d copies, isa %s, %s layout\n", tname,
           (long long)n_in, (long long)n_out, wbytes / 1e6, copies, ar_gemm_isa(), tiles ? "tile" : "row");
    static const int ms[] = { 1, 2, 4, 8, 16, 32, 64 };
    for (int nth = 1; nth <= 2; nth++) {
        ar_pool *pool = ar_pool_create(nth);
        double t1 = 0, c1 = 0;
        printf("threads %d    (wall: best of %d; cpu: busiest thread's CPU time, robust to a shared machine)\n"
               "   M   wall ms   GB/s   x M=1    cpu ms   GB/s   x M=1\n", nth, reps);
        for (size_t k = 0; k < sizeof ms / sizeof ms[0]; k++) {
            job j = { type, n_in, n_out, wrb, xrb, w, xq, y, ms[k], tiles, { 0, 0 } };
            double best = 1e30, best_cpu = 1e30;
            for (int r = 0; r < reps; r++) {
                const double t0 = ar_now();
                double cpu = 0;
                for (int c = 0; c < copies; c++) {
                    j.w = w + (size_t)c * wbytes;
                    j.cpu[0] = j.cpu[1] = 0;
                    ar_pool_run(pool, run_part, &j);
                    cpu += j.cpu[0] > j.cpu[1] ? j.cpu[0] : j.cpu[1];
                }
                const double t = (ar_now() - t0) / copies;
                if (t < best) best = t;
                if (cpu / copies < best_cpu) best_cpu = cpu / copies;
            }
            if (k == 0) { t1 = best; c1 = best_cpu; }
            printf("%4d  %8.3f  %5.1f  %6.2f  %8.3f  %5.1f  %6.2f\n", ms[k], best * 1e3, wbytes / best / 1e9,
                   best / t1, best_cpu * 1e3, wbytes / best_cpu / 1e9, best_cpu / c1);
        }
        ar_pool_free(pool);
    }
    ar_bigmem_free(w, wbytes * (size_t)copies);
    free(row); free(xq); free(y);
    return 0;
}
