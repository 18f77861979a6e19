/* bench/vnni_peak.c — what one core issues of vpdpbusd (AVX-512 VNNI): the ceiling the int8 GEMM
 * kernels (compute/cpu/gemm_avx512.c) are measured against in docs/BENCHMARKS.md.
 *
 * Not a test. Build by hand on an AVX-512 VNNI machine:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -mavx512f -mavx512bw -mavx512vnni bench/vnni_peak.c -o /tmp/vnni_peak
 *   /tmp/vnni_peak
 * Prints, for K independent accumulator chains, vpdpbusd per ns from registers (K = 1 gives the
 * latency, large K the throughput), then with a broadcast 4-byte activation load per instruction and a
 * 64-byte weight load per 8 (the shape of a GEMM inner loop). One thread. The chains start from
 * different values so that the compiler cannot merge them. */
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

/* K independent chains, written out so that every accumulator stays in a register */
#define D(a) a = _mm512_dpbusd_epi32(a, w, x)
#define SUM(a) (*sink += _mm512_reduce_add_epi32(a))

static double reg_1(__m512i w, __m512i x, long n, int *sink)
{
    __m512i a0 = _mm512_set1_epi32(1);
    const double t0 = now();
    for (long it = 0; it < n; it++) { D(a0); D(a0); D(a0); D(a0); }
    const double t = now() - t0;
    SUM(a0);
    return (double)n * 4 / t * 1e-9;
}

static double reg_4(__m512i w, __m512i x, long n, int *sink)
{
    __m512i a0 = _mm512_set1_epi32(1), a1 = _mm512_set1_epi32(2), a2 = _mm512_set1_epi32(3),
            a3 = _mm512_set1_epi32(4);
    const double t0 = now();
    for (long it = 0; it < n; it++) { D(a0); D(a1); D(a2); D(a3); }
    const double t = now() - t0;
    SUM(a0); SUM(a1); SUM(a2); SUM(a3);
    return (double)n * 4 / t * 1e-9;
}

static double reg_8(__m512i w, __m512i x, long n, int *sink)
{
    __m512i a0 = _mm512_set1_epi32(1), a1 = _mm512_set1_epi32(2), a2 = _mm512_set1_epi32(3), a3 = _mm512_set1_epi32(4),
            a4 = _mm512_set1_epi32(5), a5 = _mm512_set1_epi32(6), a6 = _mm512_set1_epi32(7), a7 = _mm512_set1_epi32(8);
    const double t0 = now();
    for (long it = 0; it < n; it++) { D(a0); D(a1); D(a2); D(a3); D(a4); D(a5); D(a6); D(a7); }
    const double t = now() - t0;
    SUM(a0); SUM(a1); SUM(a2); SUM(a3); SUM(a4); SUM(a5); SUM(a6); SUM(a7);
    return (double)n * 8 / t * 1e-9;
}

static double reg_12(__m512i w, __m512i x, long n, int *sink)
{
    __m512i a0 = _mm512_set1_epi32(1), a1 = _mm512_set1_epi32(2), a2 = _mm512_set1_epi32(3), a3 = _mm512_set1_epi32(4),
            a4 = _mm512_set1_epi32(5), a5 = _mm512_set1_epi32(6), a6 = _mm512_set1_epi32(7), a7 = _mm512_set1_epi32(8),
            a8 = _mm512_set1_epi32(9), a9 = _mm512_set1_epi32(10), a10 = _mm512_set1_epi32(11),
            a11 = _mm512_set1_epi32(12);
    const double t0 = now();
    for (long it = 0; it < n; it++) {
        D(a0); D(a1); D(a2); D(a3); D(a4); D(a5); D(a6); D(a7); D(a8); D(a9); D(a10); D(a11);
    }
    const double t = now() - t0;
    SUM(a0); SUM(a1); SUM(a2); SUM(a3); SUM(a4); SUM(a5); SUM(a6); SUM(a7); SUM(a8); SUM(a9); SUM(a10); SUM(a11);
    return (double)n * 12 / t * 1e-9;
}

static int32_t act[8][4096];
static __m512i wts[64];

/* 8 chains; per vpdpbusd one broadcast 4-byte activation load, per 8 one 64-byte weight load */
#define L(a, r) a = _mm512_dpbusd_epi32(a, wk, _mm512_set1_epi32(act[r][base + k]))
static double loads_8(long n, int *sink)
{
    __m512i a0 = _mm512_set1_epi32(1), a1 = _mm512_set1_epi32(2), a2 = _mm512_set1_epi32(3), a3 = _mm512_set1_epi32(4),
            a4 = _mm512_set1_epi32(5), a5 = _mm512_set1_epi32(6), a6 = _mm512_set1_epi32(7), a7 = _mm512_set1_epi32(8);
    const double t0 = now();
    for (long it = 0; it < n; it++) {
        const int base = (int)(it & 63) * 16;
        for (int k = 0; k < 16; k++) {
            const __m512i wk = wts[k + ((it & 3) << 4)];
            L(a0, 0); L(a1, 1); L(a2, 2); L(a3, 3);
            L(a4, 4); L(a5, 5); L(a6, 6); L(a7, 7);
        }
    }
    const double t = now() - t0;
    SUM(a0); SUM(a1); SUM(a2); SUM(a3); SUM(a4); SUM(a5); SUM(a6); SUM(a7);
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
    printf("vpdpbusd zmm from registers, per ns: 1 chain %.2f (the latency), 4 chains %.2f, 8 %.2f, 12 %.2f\n",
           reg_1(w, x, n / 4, &sink), reg_4(w, x, n / 4, &sink), reg_8(w, x, n / 8, &sink),
           reg_12(w, x, n / 12, &sink));
    printf("with a broadcast activation load each and a weight load per 8 (8 chains): %.2f per ns\n",
           loads_8(n / 128, &sink));
    printf("(checksum %d)\n", sink);
    return 0;
}
