/* bench/vnni_peak.c — what one core issues of vpdpbusd (AVX-512 VNNI): the ceiling the int8 GEMM
 * kernels (compute/cpu/gemm_avx512.c) are measured against in docs/BENCHMARKS.md.
 *
 * Not a test. Build by hand on an AVX-512 VNNI machine:
 *   cc -O2 -std=c11 -D_GNU_SOURCE -mavx512f -mavx512bw -mavx512vnni bench/vnni_peak.c -o /tmp/vnni_peak
 *   /tmp/vnni_peak
 * Prints, for K independent accumulator chains, vpdpbusd per ns from registers (K = 1 gives the
 * latency, large K the throughput), then with a broadcast 4-byte activation load per instruction and a
 * 64-byte weight load per 8 (the shape of a GEMM inner loop). Then what else takes a vpdpbusd issue
 * slot: 12 chains with 3 other instructions of one kind beside them (an instruction that shares the
 * multiply pipes costs ~1/12 of the rate; one that does not costs nothing), and 12 chains fed by 3
 * weight-vector loads and 12 broadcast loads (the one-tile K-quant kernel's load mix). One thread.
 * The chains start from different values so that the compiler cannot merge them. */
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
/* 12 accumulator chains a0..a11 from different values, and their checksum */
#define CHAINS12                                                                                               \
    __m512i a0 = _mm512_set1_epi32(1), a1 = _mm512_set1_epi32(2), a2 = _mm512_set1_epi32(3), a3 = _mm512_set1_epi32(4), \
            a4 = _mm512_set1_epi32(5), a5 = _mm512_set1_epi32(6), a6 = _mm512_set1_epi32(7), a7 = _mm512_set1_epi32(8), \
            a8 = _mm512_set1_epi32(9), a9 = _mm512_set1_epi32(10), a10 = _mm512_set1_epi32(11), a11 = _mm512_set1_epi32(12)
#define SUM12                                                                                                  \
    do {                                                                                                       \
        SUM(a0); SUM(a1); SUM(a2); SUM(a3); SUM(a4); SUM(a5); SUM(a6); SUM(a7); SUM(a8); SUM(a9); SUM(a10);     \
        SUM(a11);                                                                                              \
    } while (0)

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
    CHAINS12;
    const double t0 = now();
    for (long it = 0; it < n; it++) {
        D(a0); D(a1); D(a2); D(a3); D(a4); D(a5); D(a6); D(a7); D(a8); D(a9); D(a10); D(a11);
    }
    const double t = now() - t0;
    SUM12;
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

/* 12 chains plus 3 instructions of the kind OP(b) (each on its own chain), registers only */
#define MIX(name, OP)                                                                                     \
    static double mix_##name(__m512i w, __m512i x, long n, int *sink)                                    \
    {                                                                                                     \
        CHAINS12;                                                                                         \
        __m512i b0 = _mm512_set1_epi32(21), b1 = _mm512_set1_epi32(22), b2 = _mm512_set1_epi32(23);       \
        const double t0 = now();                                                                          \
        for (long it = 0; it < n; it++) {                                                                 \
            D(a0); D(a1); D(a2); D(a3); b0 = OP(b0);                                                      \
            D(a4); D(a5); D(a6); D(a7); b1 = OP(b1);                                                      \
            D(a8); D(a9); D(a10); D(a11); b2 = OP(b2);                                                    \
        }                                                                                                 \
        const double t = now() - t0;                                                                      \
        SUM12;                                                                                            \
        SUM(b0); SUM(b1); SUM(b2);                                                                        \
        return (double)n * 12 / t * 1e-9;                                                                 \
    }
#define OP_ADD(b) _mm512_add_epi32(b, x)
#define OP_MULLO(b) _mm512_mullo_epi32(b, x)
#define OP_DPWSSD(b) _mm512_dpwssd_epi32(b, w, x)
#define OP_FMA(b) _mm512_castps_si512(_mm512_fmadd_ps(_mm512_castsi512_ps(b), _mm512_castsi512_ps(x), _mm512_castsi512_ps(w)))
#define OP_CVT(b) _mm512_castps_si512(_mm512_add_ps(_mm512_cvtepi32_ps(b), _mm512_castsi512_ps(x)))
#define OP_SHUF(b) _mm512_xor_si512(_mm512_shuffle_epi32(b, _MM_PERM_BADC), x)
MIX(add, OP_ADD)
MIX(mullo, OP_MULLO)
MIX(dpwssd, OP_DPWSSD)
MIX(fma, OP_FMA)
MIX(cvt, OP_CVT)
MIX(pshufd, OP_SHUF)

/* 12 chains; per pass 3 weight vectors loaded, each used by 4 rows with a broadcast activation load */
#define LW(a, k, r) a = _mm512_dpbusd_epi32(a, w##k, _mm512_set1_epi32(act[r][base + 4 * k]))
static double loads_w3_b12(long n, int *sink)
{
    CHAINS12;
    const double t0 = now();
    for (long it = 0; it < n; it++) {
        const int base = (int)(it & 63) * 16;
        const __m512i w0 = wts[(it & 15) * 3], w1 = wts[(it & 15) * 3 + 1], w2 = wts[(it & 15) * 3 + 2];
        LW(a0, 0, 0); LW(a1, 0, 1); LW(a2, 0, 2); LW(a3, 0, 3);
        LW(a4, 1, 0); LW(a5, 1, 1); LW(a6, 1, 2); LW(a7, 1, 3);
        LW(a8, 2, 0); LW(a9, 2, 1); LW(a10, 2, 2); LW(a11, 2, 3);
    }
    const double t = now() - t0;
    SUM12;
    return (double)n * 12 / t * 1e-9;
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
    /* every loop is called through a volatile pointer so that it is compiled alone: inlined into main,
     * the compiler adds register copies to the loops, and those take issue slots */
    double (*volatile reg[])(__m512i, __m512i, long, int *) = { reg_1, reg_4, reg_8, reg_12 };
    double (*volatile mixes[])(__m512i, __m512i, long, int *) = { mix_add, mix_mullo, mix_dpwssd, mix_fma, mix_cvt,
                                                                  mix_pshufd };
    double (*volatile loads[])(long, int *) = { loads_8, loads_w3_b12 };
    const double r1 = reg[0](w, x, n / 4, &sink), r4 = reg[1](w, x, n / 4, &sink), r8 = reg[2](w, x, n / 8, &sink),
                 r12 = reg[3](w, x, n / 12, &sink);
    printf("vpdpbusd zmm from registers, per ns: 1 chain %.2f (the latency), 4 chains %.2f, 8 %.2f, 12 %.2f\n", r1, r4,
           r8, r12);
    printf("with a broadcast activation load each and a weight load per 8 (8 chains): %.2f per ns\n",
           loads[0](n / 128, &sink));
    const long m = n / 12;
    double r[6];
    for (int i = 0; i < 6; i++) r[i] = mixes[i](w, x, m, &sink);
    printf("12 chains + 3 of another instruction, vpdpbusd per ns: vpaddd %.2f, vpmulld %.2f, vpdpwssd %.2f, "
           "vfmadd %.2f, vcvtdq2ps+vaddps %.2f, vpshufd+vpxord %.2f\n", r[0], r[1], r[2], r[3], r[4], r[5]);
    printf("12 chains fed by 3 weight loads and 12 broadcast loads (1.25 loads per vpdpbusd): %.2f per ns\n",
           loads[1](m, &sink));
    printf("(checksum %d)\n", sink);
    return 0;
}
