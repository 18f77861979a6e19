/* compute/cpu/act_avx512.c — AVX-512 SiLU-and-multiply (see ar_silu_mul in compute/ops.h; tested against
 * the scalar reference ar_silu_mul_ref in tests/test_act.c): silu(g) = g / (1 + e^-g) with the vector
 * exp of exp_avx512.h, 16 elements at a time, a masked tail. Elementwise, so a row's result does not
 * depend on how rows are batched. */
#include "compute/cpu/act.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>

#include "compute/cpu/exp_avx512.h"

int ar_silu_mul_avx512(float *y, const float *g, const float *u, int64_t n)
{
    const __m512 one = _mm512_set1_ps(1.0f);
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);
        const __m512 x = _mm512_maskz_loadu_ps(m, g + i);
        __m512 s = _mm512_div_ps(x, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), x))));
        if (u) s = _mm512_mul_ps(s, _mm512_maskz_loadu_ps(m, u + i));
        _mm512_mask_storeu_ps(y + i, m, s);
    }
    return 1;
}

#else
int ar_silu_mul_avx512(float *y, const float *g, const float *u, int64_t n)
{
    (void)y;
    (void)g;
    (void)u;
    (void)n;
    return 0;
}
#endif
