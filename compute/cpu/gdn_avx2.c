/* compute/cpu/gdn_avx2.c — AVX2/FMA Gated DeltaNet recurrence step (CPUs without AVX-512; see
 * ar_gdn_step in ops.c and the scalar reference it is tested against in tests/test_gdn.c).
 *
 * Per value column c (a row of St, d_k floats): decay, dot with k, rank-1 update, dot with q, fused
 * into two passes over the row instead of four, as in gdn_avx512.c on 8-float vectors. Runs of several
 * steps (ar_gdn_steps) call it once per token, so they are the same bits as single steps. Needs
 * d_k % 16 == 0 (every qwen35 head dim is). */
#include "compute/cpu/gdn.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

static inline float hsum(__m256 a, __m256 b)
{
    const __m256 s = _mm256_add_ps(a, b);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

int ar_gdn_step_avx2(float *St, const float *q, const float *k, const float *v, float g, float beta,
                     float *o, int d_k, int d_v, float scale)
{
    if (d_k % 16 || d_k <= 0) return 0;
    const __m256 decay = _mm256_set1_ps(expf(g));
    for (int c = 0; c < d_v; c++) {
        float *row = St + (size_t)c * (size_t)d_k;
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        for (int i = 0; i < d_k; i += 16) {
            const __m256 r0 = _mm256_mul_ps(_mm256_loadu_ps(row + i), decay);
            const __m256 r1 = _mm256_mul_ps(_mm256_loadu_ps(row + i + 8), decay);
            _mm256_storeu_ps(row + i, r0);
            _mm256_storeu_ps(row + i + 8, r1);
            acc0 = _mm256_fmadd_ps(r0, _mm256_loadu_ps(k + i), acc0);
            acc1 = _mm256_fmadd_ps(r1, _mm256_loadu_ps(k + i + 8), acc1);
        }
        const __m256 dv = _mm256_set1_ps((v[c] - hsum(acc0, acc1)) * beta);
        __m256 o0 = _mm256_setzero_ps(), o1 = _mm256_setzero_ps();
        for (int i = 0; i < d_k; i += 16) {
            const __m256 r0 = _mm256_fmadd_ps(_mm256_loadu_ps(k + i), dv, _mm256_loadu_ps(row + i));
            const __m256 r1 = _mm256_fmadd_ps(_mm256_loadu_ps(k + i + 8), dv, _mm256_loadu_ps(row + i + 8));
            _mm256_storeu_ps(row + i, r0);
            _mm256_storeu_ps(row + i + 8, r1);
            if (o) {
                o0 = _mm256_fmadd_ps(r0, _mm256_loadu_ps(q + i), o0);
                o1 = _mm256_fmadd_ps(r1, _mm256_loadu_ps(q + i + 8), o1);
            }
        }
        if (o) o[c] = hsum(o0, o1) * scale;
    }
    return 1;
}

#else

int ar_gdn_step_avx2(float *St, const float *q, const float *k, const float *v, float g, float beta,
                     float *o, int d_k, int d_v, float scale)
{
    (void)St; (void)q; (void)k; (void)v; (void)g; (void)beta; (void)o; (void)d_k; (void)d_v; (void)scale;
    return 0;
}

#endif
