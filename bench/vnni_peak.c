/* bench/vnni_peak.c — what one core issues of vpdpbusd (AVX-512 VNNI): the ceiling the int8 GEMM
 * kernels (compute/cpu/gemm_avx512.c) are measured against in docs/BENCHMARKS.md.
 *
 * Not a test. Build by hand on an AVX-512 VNNI machine:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -mavx512f -mavx512bw -mavx512vnni bench/vnni_peak.c -o /tmp/vnni_peak
 *   /tmp/vnni_peak
 * Prints, for K independent accumulator chains, vpdpbusd per ns from registers (K = 1 gives the
 * latency, large K the throughput), then with a broadcast 4-byte activation load per instruction and a
 * 64-byte weight load per 8 (the shape of a GEMM inner loop). One thread. */
#include <immintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define REG_CHAINS(K)                                                                                    \
    static double reg_##K(__m512i w, __m512i x, long n, int *sink)                                       \
    {                                                                                                    \
        __m512i acc[K];                                                                                  \
        for (int i = 0; i < K; i++) acc[i] = _mm512_set1_epi32(i);                                      \
        const double t0 = now();                                                                         \
        for (long it = 0; it < n; it++)                                                                  \
            for (int i = 0; i < K; i++) acc[i] = _mm512_dpbusd_epi32(acc[i], w, x);                      \
        const double t = now() - t0;                                                                     \
        for (int i = 0; i < K; i++) *sink += _mm512_reduce_add_epi32(acc[i]);                            \
        return (double)n * K / t * 1e-9;                                                                 \
    }
REG_CHAINS(1)
REG_CHAINS(2)
REG_CHAINS(4)
REG_CHAINS(8)
REG_CHAINS(12)

static int32_t act[8][4096];
static __m512i wts[64];

/* 8 chains; per 8 vpdpbusd one 64-byte weight load, per vpdpbusd one broadcast activation load */
static double loads_8(long n, int *sink)
{
    __m512i s[8];
    for (int r = 0; r < 8; r++) s[r] = _mm512_setzero_si512();
    const double t0 = now();
    for (long it = 0; it < n; it++) {
        const int base = (int)(it & 63) * 16;
        for (int k = 0; k < 16; k++) {
            const __m512i w = wts[k + ((it & 3) << 4)];
            for (int r = 0; r < 8; r++) s[r] = _mm512_dpbusd_epi32(s[r], w, _mm512_set1_epi32(act[r][base + k]));
        }
    }
    const double t = now() - t0;
    for (int r = 0; r < 8; r++) *sink += _mm512_reduce_add_epi32(s[r]);
    return (double)n * 128 / t * 1e-9;
}

int main(void)
{
    int sink = 0;
    volatile int seed = 3;
    const __m512i w = _mm512_set1_epi8((char)seed), x = _mm512_set1_epi8((char)(seed + 2));
    for (int r = 0; r < 8; r++)
        for (int k = 0; k < 4096; k++) act[r][k] = k * r + seed;
    for (int i = 0; i < 64; i++) wts[i] = _mm512_set1_epi32(i + seed);
    const long n = 100000000;
    printf("vpdpbusd zmm from registers, per ns: 1 chain %.2f, 2 %.2f, 4 %.2f, 8 %.2f, 12 %.2f\n",
           reg_1(w, x, n, &sink), reg_2(w, x, n / 2, &sink), reg_4(w, x, n / 4, &sink), reg_8(w, x, n / 8, &sink),
           reg_12(w, x, n / 12, &sink));
    printf("with a broadcast activation load each and a weight load per 8 (8 chains): %.2f per ns\n",
           loads_8(n / 128, &sink));
    printf("(checksum %d)\n", sink);
    return 0;
}
