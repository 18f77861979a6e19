/* compute/cpu/act_avx2.c — AVX2 SiLU-and-multiply (CPUs without AVX-512; see ar_silu_mul in compute/ops.h,
 * tested against the scalar reference ar_silu_mul_ref in tests/test_act.c): silu(g) = g / (1 + e^-g) with
 * exp_avx2.h's vector exp, 8 elements at a time, a masked tail. Elementwise, so a row's result does not
 * depend on how rows are batched. */
#include "compute/cpu/act.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include "compute/cpu/exp_avx2.h"

int ar_silu_mul_avx2(float *y, const float *g, const float *u, int64_t n)
{
    const __m256 one = _mm256_set1_ps(1.0f);
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int64_t i = 0; i < n; i += 8) {
        const int left = n - i >= 8 ? 8 : (int)(n - i);
        const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(left), lane);   /* lanes < left */
        const __m256 x = _mm256_maskload_ps(g + i, m);
        __m256 s = _mm256_div_ps(x, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), x))));
        if (u) s = _mm256_mul_ps(s, _mm256_maskload_ps(u + i, m));
        _mm256_maskstore_ps(y + i, m, s);
    }
    return 1;
}

#else
int ar_silu_mul_avx2(float *y, const float *g, const float *u, int64_t n)
{
    (void)y;
    (void)g;
    (void)u;
    (void)n;
    return 0;
}
#endif
