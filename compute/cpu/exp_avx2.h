/* compute/cpu/exp_avx2.h — e^x on 8 floats, shared by the AVX2 kernel files (include it only from files
 * built with AVX2 + FMA). Range reduction by ln 2 in two parts (Cody-Waite), Taylor to r^7 on |r| <= ln2/2,
 * 2^n built in the exponent field. Inputs are clamped to [-87, 88] so that n stays in [-126, 127]: below,
 * e^-87 instead of a subnormal or 0 (no softmax sum or SiLU denominator can notice); above, e^88 (1.65e38)
 * instead of overflow, so x / (1 + e^-x) gives a value within 1e-36 of the -0 that +inf would give. */
#ifndef AR_COMPUTE_CPU_EXP_AVX2_H
#define AR_COMPUTE_CPU_EXP_AVX2_H

#include <immintrin.h>

static inline __m256 exp256(__m256 x)
{
    const __m256 log2e = _mm256_set1_ps(1.44269504088896341f);
    const __m256 ln2_hi = _mm256_set1_ps(0.693359375f), ln2_lo = _mm256_set1_ps(-2.12194440e-4f);
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, ln2_hi, x);
    r = _mm256_fnmadd_ps(n, ln2_lo, r);
    __m256 p = _mm256_set1_ps(1.0f / 5040.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    /* 2^n for n in [-126, 127] */
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

#endif
