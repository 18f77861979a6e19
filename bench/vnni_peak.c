/* bench/vnni_peak.c — this machine's vpdpbusd (AVX-512 VNNI) throughput: the ceiling the integer
 * weight-product kernels of compute/cpu/gemm_avx512.c are measured against (docs/BENCHMARKS.md).
 *
 * Not a test, x86-64 with AVX-512 VNNI only. Build and run by hand:
 *   cc -O2 -mavx512f -mavx512bw -mavx512vnni bench/vnni_peak.c -o /tmp/vnni_peak -pthread
 *   /tmp/vnni_peak [threads=1]
 * Each thread runs 16 independent vpdpbusd chains (enough to cover the instruction's latency) on
 * register operands; one vpdpbusd = 64 multiply-adds of u8 x s8. Prints GMAC/s over all threads. */
#include <immintrin.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ITERS = 25000000, MAX_THREADS = 64 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

#define DP4(i) a##i = _mm512_dpbusd_epi32(a##i, x, y)

static void *run(void *arg)
{
    /* different starting values: identical chains would be merged by the compiler */
    __m512i a0 = _mm512_set1_epi32(0), a1 = _mm512_set1_epi32(1), a2 = _mm512_set1_epi32(2),
            a3 = _mm512_set1_epi32(3), a4 = _mm512_set1_epi32(4), a5 = _mm512_set1_epi32(5),
            a6 = _mm512_set1_epi32(6), a7 = _mm512_set1_epi32(7), a8 = _mm512_set1_epi32(8),
            a9 = _mm512_set1_epi32(9), a10 = _mm512_set1_epi32(10), a11 = _mm512_set1_epi32(11),
            a12 = _mm512_set1_epi32(12), a13 = _mm512_set1_epi32(13), a14 = _mm512_set1_epi32(14),
            a15 = _mm512_set1_epi32(15);
    __m512i x = _mm512_set1_epi8(3), y = _mm512_set1_epi8(5);
    for (long k = 0; k < ITERS; k++) {
        DP4(0); DP4(1); DP4(2); DP4(3); DP4(4); DP4(5); DP4(6); DP4(7);
        DP4(8); DP4(9); DP4(10); DP4(11); DP4(12); DP4(13); DP4(14); DP4(15);
        __asm__ volatile("" : "+v"(x));   /* keeps the loop from being folded */
    }
    __m512i s = _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a0, a1), _mm512_add_epi32(a2, a3)),
                                 _mm512_add_epi32(_mm512_add_epi32(a4, a5), _mm512_add_epi32(a6, a7)));
    s = _mm512_add_epi32(s, _mm512_add_epi32(_mm512_add_epi32(_mm512_add_epi32(a8, a9), _mm512_add_epi32(a10, a11)),
                                             _mm512_add_epi32(_mm512_add_epi32(a12, a13), _mm512_add_epi32(a14, a15))));
    *(int *)arg = _mm512_reduce_add_epi32(s);
    return NULL;
}

int main(int argc, char **argv)
{
    const int n = argc > 1 ? atoi(argv[1]) : 1;
    if (n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "usage: %s [threads 1..%d]\n", argv[0], MAX_THREADS);
        return 2;
    }
    pthread_t th[MAX_THREADS];
    int sink[MAX_THREADS];
    const double t0 = now();
    for (int i = 0; i < n; i++) pthread_create(&th[i], NULL, run, &sink[i]);
    for (int i = 0; i < n; i++) pthread_join(th[i], NULL);
    const double dt = now() - t0;
    const double macs = (double)n * ITERS * 16.0 * 64.0;
    printf("%d thread(s): %.1f GMAC/s (%.2f G vpdpbusd/s per thread)\n", n, macs / dt * 1e-9, macs / 64.0 / n / dt * 1e-9);
    return 0;
}
