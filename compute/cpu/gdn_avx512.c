/* compute/cpu/gdn_avx512.c — AVX-512 Gated DeltaNet recurrence step (see ar_gdn_step in ops.c, the
 * scalar reference it is tested against in tests/test_gdn.c).
 *
 * Per value column c (a row of St, d_k floats): decay, dot with k, rank-1 update, dot with q — fused
 * into two passes over the row instead of four. Needs d_k % 16 == 0 (every qwen35 head dim is). */
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

#else

int ar_gdn_step_avx512(float *St, const float *q, const float *k, const float *v, float g, float beta,
                       float *o, int d_k, int d_v, float scale)
{
    (void)St; (void)q; (void)k; (void)v; (void)g; (void)beta; (void)o; (void)d_k; (void)d_v; (void)scale;
    return 0;
}

#endif
