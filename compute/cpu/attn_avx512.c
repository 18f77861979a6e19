/* compute/cpu/attn_avx512.c — AVX-512 online-softmax attention block (see ar_attn_block in ops.c and
 * the scalar reference it is tested against in tests/test_attn.c).
 *
 * Same blocking as the reference (AR_ATTN_BLOCK keys per rescale), vectorised three ways: the q·k
 * dots run 16 dims per FMA with four accumulators, exp(s - max) is a vector exp (range reduction by
 * ln 2 in two parts, degree-7 polynomial, 2^n by vscalefps; < 2 ulp on the softmax range), and the
 * value accumulation keeps the output row in registers for the whole block (d <= 256). Needs
 * d % 16 == 0 (every qwen35 / DFlash head dim is). Decode at a 4K context and long prefills spend most
 * of their attention time here. */
#include "compute/cpu/attn.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>

/* exp(x) for x <= 0 (x >= -104 gives a normal or subnormal result, below that 0). */
static inline __m512 exp512(__m512 x)
{
    const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
    x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, ln2_hi, x);
    r = _mm512_fnmadd_ps(n, ln2_lo, r);
    /* e^r on |r| <= ln2/2: Taylor to r^7 (truncation < 2e-8 relative) */
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}

static inline float dot512(const float *a, const float *b, int d)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps(), s2 = _mm512_setzero_ps(), s3 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 64 <= d; i += 64) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
        s2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), _mm512_loadu_ps(b + i + 32), s2);
        s3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), _mm512_loadu_ps(b + i + 48), s3);
    }
    for (; i < d; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    return _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(s0, s1), _mm512_add_ps(s2, s3)));
}

int ar_attn_block_avx512(ar_attn_acc *a, const float *q, const float *k, const float *v, size_t stride, int n,
                         float scale)
{
    const int d = a->d;
    if (d % 16 || d > 256 || d <= 0) return 0;
    const int nv = d / 16;
    float s[AR_ATTN_BLOCK];
    for (int j0 = 0; j0 < n; j0 += AR_ATTN_BLOCK) {
        const int nb = n - j0 < AR_ATTN_BLOCK ? n - j0 : AR_ATTN_BLOCK;
        float mx = a->max;
        for (int j = 0; j < nb; j++) {
            s[j] = dot512(q, k + (size_t)(j0 + j) * stride, d) * scale;
            if (s[j] > mx) mx = s[j];
        }
        __m512 o[16];
        for (int i = 0; i < nv; i++) o[i] = _mm512_loadu_ps(a->o + 16 * i);
        if (mx > a->max) {
            const float f = expf(a->max - mx);   /* 0 on the first block (max = -inf) */
            a->sum *= f;
            const __m512 fv = _mm512_set1_ps(f);
            for (int i = 0; i < nv; i++) o[i] = _mm512_mul_ps(o[i], fv);
            a->max = mx;
        }
        const __m512 mxv = _mm512_set1_ps(mx);
        for (int j = 0; j < nb; j += 16) {
            const __mmask16 m = nb - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (nb - j)) - 1);
            const __m512 p = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s + j), mxv));
            _mm512_mask_storeu_ps(s + j, m, p);
            a->sum += _mm512_mask_reduce_add_ps(m, p);
        }
        for (int j = 0; j < nb; j++) {
            const __m512 p = _mm512_set1_ps(s[j]);
            const float *vr = v + (size_t)(j0 + j) * stride;
            for (int i = 0; i < nv; i++) o[i] = _mm512_fmadd_ps(p, _mm512_loadu_ps(vr + 16 * i), o[i]);
        }
        for (int i = 0; i < nv; i++) _mm512_storeu_ps(a->o + 16 * i, o[i]);
    }
    return 1;
}

#else
int ar_attn_block_avx512(ar_attn_acc *a, const float *q, const float *k, const float *v, size_t stride, int n,
                         float scale)
{
    (void)a; (void)q; (void)k; (void)v; (void)stride; (void)n; (void)scale;
    return 0;
}
#endif
