/* compute/cpu/gdn_avx512.c — AVX-512 Gated DeltaNet recurrence steps (see ar_gdn_step and ar_gdn_steps
 * in ops.c, the scalar reference they are tested against in tests/test_gdn.c).
 *
 * Per value column c (a row of St, d_k floats): decay, dot with k, rank-1 update, dot with q — fused
 * into two passes over the row instead of four. Needs d_k % 16 == 0 (every qwen35 head dim is).
 *
 * Several steps on one state (a prompt chunk, a chain of verified nodes) go row by row instead: the
 * rows of St are independent of each other (row c sees only its own values, k, q and v[c]), so two
 * or three rows at a time stay in registers for every token of the run, and the 64 KB state of a head is
 * read and written once per run instead of twice per token. Three rows (24 of the 32 registers at d_k =
 * 128) give each token's two horizontal sums per row more independent work to hide behind (bench/gdn_bench.c,
 * 16 heads: 512 tokens 9.42 -> 7.67 ms); a run of one token keeps two, which measured faster there.
 * Every row goes through the same operations in the same order as in ar_gdn_step_avx512, so the bits are
 * the same as that many single steps. */
#include "compute/cpu/gdn.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

int ar_gdn_step_avx512(float *St, const float *q, const float *k, const float *v, float g, float beta,
                       float *o, int d_k, int d_v, float scale)
{
    if (d_k % 16) return 0;
    const __m512 decay = _mm512_set1_ps(expf(g));
    for (int c = 0; c < d_v; c++) {
        float *row = St + (size_t)c * (size_t)d_k;
        __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
        int i = 0;
        for (; i + 32 <= d_k; i += 32) {
            __m512 r0 = _mm512_mul_ps(_mm512_loadu_ps(row + i), decay);
            __m512 r1 = _mm512_mul_ps(_mm512_loadu_ps(row + i + 16), decay);
            _mm512_storeu_ps(row + i, r0);
            _mm512_storeu_ps(row + i + 16, r1);
            acc0 = _mm512_fmadd_ps(r0, _mm512_loadu_ps(k + i), acc0);
            acc1 = _mm512_fmadd_ps(r1, _mm512_loadu_ps(k + i + 16), acc1);
        }
        for (; i < d_k; i += 16) {
            __m512 r0 = _mm512_mul_ps(_mm512_loadu_ps(row + i), decay);
            _mm512_storeu_ps(row + i, r0);
            acc0 = _mm512_fmadd_ps(r0, _mm512_loadu_ps(k + i), acc0);
        }
        const float delta = (v[c] - _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))) * beta;
        const __m512 dv = _mm512_set1_ps(delta);
        __m512 o0 = _mm512_setzero_ps(), o1 = _mm512_setzero_ps();
        for (i = 0; i + 32 <= d_k; i += 32) {
            __m512 r0 = _mm512_fmadd_ps(_mm512_loadu_ps(k + i), dv, _mm512_loadu_ps(row + i));
            __m512 r1 = _mm512_fmadd_ps(_mm512_loadu_ps(k + i + 16), dv, _mm512_loadu_ps(row + i + 16));
            _mm512_storeu_ps(row + i, r0);
            _mm512_storeu_ps(row + i + 16, r1);
            if (o) {
                o0 = _mm512_fmadd_ps(r0, _mm512_loadu_ps(q + i), o0);
                o1 = _mm512_fmadd_ps(r1, _mm512_loadu_ps(q + i + 16), o1);
            }
        }
        for (; i < d_k; i += 16) {
            __m512 r0 = _mm512_fmadd_ps(_mm512_loadu_ps(k + i), dv, _mm512_loadu_ps(row + i));
            _mm512_storeu_ps(row + i, r0);
            if (o) o0 = _mm512_fmadd_ps(r0, _mm512_loadu_ps(q + i), o0);
        }
        if (o) o[c] = _mm512_reduce_add_ps(_mm512_add_ps(o0, o1)) * scale;
    }
    return 1;
}

/* Up to 64 tokens at a time (their decays computed once), rows in registers: NV vectors of 16 */
enum { STEPS_BLOCK = 64 };

#define INLINE static inline __attribute__((always_inline))

/* NR (1 to 3) rows c0.. of St through T <= STEPS_BLOCK steps; the same operations per row and token as
 * ar_gdn_step_avx512 (for an even NV: chunks alternate between two accumulators). */
INLINE void rows_steps(float *St, int c0, int NR, int NV, int T, const float *q, const float *k, const float *v,
                       size_t ld_u, const float *beta, size_t ld_gb, const float *decay, float *o, size_t ld_o,
                       int d_k, float scale)
{
    __m512 r[3][8];
#pragma GCC unroll 3
    for (int n = 0; n < NR; n++)
#pragma GCC unroll 8
        for (int x = 0; x < NV; x++) r[n][x] = _mm512_loadu_ps(St + (size_t)(c0 + n) * (size_t)d_k + 16 * x);
    for (int t = 0; t < T; t++) {
        const float *kt = k + (size_t)t * ld_u, *vt = v + (size_t)t * ld_u;
        const __m512 dc = _mm512_set1_ps(decay[t]);
        const float bt = beta[(size_t)t * ld_gb];
        __m512 a[3][2];
#pragma GCC unroll 3
        for (int n = 0; n < NR; n++) {
            a[n][0] = a[n][1] = _mm512_setzero_ps();
#pragma GCC unroll 8
            for (int x = 0; x < NV; x++) {
                r[n][x] = _mm512_mul_ps(r[n][x], dc);
                a[n][x & 1] = _mm512_fmadd_ps(r[n][x], _mm512_loadu_ps(kt + 16 * x), a[n][x & 1]);
            }
        }
        __m512 dv[3];
#pragma GCC unroll 3
        for (int n = 0; n < NR; n++)
            dv[n] = _mm512_set1_ps((vt[c0 + n] - _mm512_reduce_add_ps(_mm512_add_ps(a[n][0], a[n][1]))) * bt);
        if (o) {
            const float *qt = q + (size_t)t * ld_u;
#pragma GCC unroll 3
            for (int n = 0; n < NR; n++) {
                a[n][0] = a[n][1] = _mm512_setzero_ps();
#pragma GCC unroll 8
                for (int x = 0; x < NV; x++) {
                    r[n][x] = _mm512_fmadd_ps(_mm512_loadu_ps(kt + 16 * x), dv[n], r[n][x]);
                    a[n][x & 1] = _mm512_fmadd_ps(r[n][x], _mm512_loadu_ps(qt + 16 * x), a[n][x & 1]);
                }
            }
            float *ot = o + (size_t)t * ld_o;
#pragma GCC unroll 3
            for (int n = 0; n < NR; n++) ot[c0 + n] = _mm512_reduce_add_ps(_mm512_add_ps(a[n][0], a[n][1])) * scale;
        } else {
#pragma GCC unroll 3
            for (int n = 0; n < NR; n++)
#pragma GCC unroll 8
                for (int x = 0; x < NV; x++) r[n][x] = _mm512_fmadd_ps(_mm512_loadu_ps(kt + 16 * x), dv[n], r[n][x]);
        }
    }
#pragma GCC unroll 3
    for (int n = 0; n < NR; n++)
#pragma GCC unroll 8
        for (int x = 0; x < NV; x++) _mm512_storeu_ps(St + (size_t)(c0 + n) * (size_t)d_k + 16 * x, r[n][x]);
}

INLINE void steps_nv(float *St, int NV, int T, const float *q, const float *k, const float *v, size_t ld_u,
                     const float *beta, size_t ld_gb, const float *decay, float *o, size_t ld_o, int d_v, float scale)
{
    int c = 0;
    if (T > 1)
        for (; c + 3 <= d_v; c += 3) rows_steps(St, c, 3, NV, T, q, k, v, ld_u, beta, ld_gb, decay, o, ld_o, 16 * NV, scale);
    for (; c + 2 <= d_v; c += 2) rows_steps(St, c, 2, NV, T, q, k, v, ld_u, beta, ld_gb, decay, o, ld_o, 16 * NV, scale);
    if (c < d_v) rows_steps(St, c, 1, NV, T, q, k, v, ld_u, beta, ld_gb, decay, o, ld_o, 16 * NV, scale);
}

int ar_gdn_steps_avx512(float *St, int T, const float *q, const float *k, const float *v, size_t ld_u,
                        const float *g, const float *beta, size_t ld_gb, float *o, size_t ld_o, int d_k, int d_v,
                        float scale)
{
    if (d_k != 64 && d_k != 128) return 0;   /* rows in registers: 4 or 8 vectors (an even count) */
    for (int t0 = 0; t0 < T; t0 += STEPS_BLOCK) {
        const int n = T - t0 < STEPS_BLOCK ? T - t0 : STEPS_BLOCK;
        float decay[STEPS_BLOCK];
        for (int t = 0; t < n; t++) decay[t] = expf(g[(size_t)(t0 + t) * ld_gb]);
        const size_t u0 = (size_t)t0 * ld_u;
        const float *qb = o ? q + u0 : NULL;
        float *ob = o ? o + (size_t)t0 * ld_o : NULL;
        if (d_k == 128)
            steps_nv(St, 8, n, qb, k + u0, v + u0, ld_u, beta + (size_t)t0 * ld_gb, ld_gb, decay, ob, ld_o, d_v, scale);
        else
            steps_nv(St, 4, n, qb, k + u0, v + u0, ld_u, beta + (size_t)t0 * ld_gb, ld_gb, decay, ob, ld_o, d_v, scale);
    }
    return 1;
}

#else

int ar_gdn_steps_avx512(float *St, int T, const float *q, const float *k, const float *v, size_t ld_u,
                        const float *g, const float *beta, size_t ld_gb, float *o, size_t ld_o, int d_k, int d_v,
                        float scale)
{
    (void)St; (void)T; (void)q; (void)k; (void)v; (void)ld_u; (void)g; (void)beta; (void)ld_gb; (void)o; (void)ld_o;
    (void)d_k; (void)d_v; (void)scale;
    return 0;
}

int ar_gdn_step_avx512(float *St, const float *q, const float *k, const float *v, float g, float beta,
                       float *o, int d_k, int d_v, float scale)
{
    (void)St; (void)q; (void)k; (void)v; (void)g; (void)beta; (void)o; (void)d_k; (void)d_v; (void)scale;
    return 0;
}

#endif
