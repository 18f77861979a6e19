/* compute/cpu/norm_avx512.c — AVX-512 RMS norm, L2 norm and the Gated DeltaNet short convolution (see
 * ar_rmsnorm, ar_l2norm and ar_conv_step in compute/ops.h; tested against the scalar references in
 * tests/test_norm.c).
 *
 * RMS norm: the squares are formed in float and summed in double, as the reference (and ggml) does, but
 * in 32 partial sums (4 vectors of 8 doubles) instead of one chain, so a row costs its loads rather than
 * n add latencies; the scale and the gain are the reference's float multiplies, in the same order.
 * Only the order of the double additions differs, which moves the float result by at most one
 * rounding in rare cases (tests/test_norm.c measures it).
 *
 * Short convolution: lanes are channels. The weights are [channel][tap], so 16 channels' taps (one
 * 64-float run for the 4 taps of qwen35) are transposed in registers to one vector per tap; each
 * channel then sums its taps in tap order with a multiply and an add, as the reference: the same bits. */
#include "compute/cpu/norm.h"

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

static inline __mmask16 tail_mask(int left) { return left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1); }

/* sum over i < n of (double)(x[i] * x[i]) */
static double sum_squares(const float *x, int n)
{
    __m512d s[4] = { _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd() };
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
        const __m512 a2 = _mm512_mul_ps(a, a), b2 = _mm512_mul_ps(b, b);
        s[0] = _mm512_add_pd(s[0], _mm512_cvtps_pd(_mm512_castps512_ps256(a2)));
        s[1] = _mm512_add_pd(s[1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(a2, 1)));
        s[2] = _mm512_add_pd(s[2], _mm512_cvtps_pd(_mm512_castps512_ps256(b2)));
        s[3] = _mm512_add_pd(s[3], _mm512_cvtps_pd(_mm512_extractf32x8_ps(b2, 1)));
    }
    for (; i < n; i += 16) {   /* masked lanes load as 0 and add 0 */
        const __m512 a = _mm512_maskz_loadu_ps(tail_mask(n - i), x + i);
        const __m512 a2 = _mm512_mul_ps(a, a);
        s[0] = _mm512_add_pd(s[0], _mm512_cvtps_pd(_mm512_castps512_ps256(a2)));
        s[1] = _mm512_add_pd(s[1], _mm512_cvtps_pd(_mm512_extractf32x8_ps(a2, 1)));
    }
    return _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(s[0], s[1]), _mm512_add_pd(s[2], s[3])));
}

/* y = x * scale (* w) */
static void scale_row(float *y, const float *x, const float *w, int n, float scale)
{
    const __m512 sv = _mm512_set1_ps(scale);
    for (int i = 0; i < n; i += 16) {
        const __mmask16 m = tail_mask(n - i);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, x + i), sv);
        if (w) v = _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, w + i));
        _mm512_mask_storeu_ps(y + i, m, v);
    }
}

int ar_rmsnorm_avx512(float *y, const float *x, const float *w, int n, float eps)
{
    const float mean = (float)(sum_squares(x, n) / n);
    scale_row(y, x, w, n, 1.0f / sqrtf(mean + eps));
    return 1;
}

int ar_l2norm_avx512(float *x, int n, float eps)
{
    ar_rmsnorm_avx512(x, x, NULL, n, eps / (float)n);
    scale_row(x, x, NULL, n, 1.0f / sqrtf((float)n));
    return 1;
}

int ar_conv_step_avx512(float *out, const float *const *rows, const float *w, int channels, int taps)
{
    if (taps != 4) return 0;
    /* after the 4x4 transposes within 128-bit lanes, lane l of tap vector k holds channels l, 4 + l,
     * 8 + l, 12 + l: this index puts channel c back at position c */
    const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3];
    int ch = 0;
    for (; ch + 16 <= channels; ch += 16) {
        const float *wc = w + (size_t)ch * 4;
        const __m512 a = _mm512_loadu_ps(wc), b = _mm512_loadu_ps(wc + 16), c = _mm512_loadu_ps(wc + 32),
                     d = _mm512_loadu_ps(wc + 48);
        const __m512 t0 = _mm512_unpacklo_ps(a, b), t1 = _mm512_unpackhi_ps(a, b);
        const __m512 t2 = _mm512_unpacklo_ps(c, d), t3 = _mm512_unpackhi_ps(c, d);
        const __m512 w0 = _mm512_permutexvar_ps(order, _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2))));
        const __m512 w1 = _mm512_permutexvar_ps(order, _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t2))));
        const __m512 w2 = _mm512_permutexvar_ps(order, _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3))));
        const __m512 w3 = _mm512_permutexvar_ps(order, _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t1), _mm512_castps_pd(t3))));
        __m512 acc = _mm512_add_ps(_mm512_setzero_ps(), _mm512_mul_ps(_mm512_loadu_ps(r0 + ch), w0));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(r1 + ch), w1));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(r2 + ch), w2));
        acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(r3 + ch), w3));
        _mm512_storeu_ps(out + ch, acc);
    }
    if (ch < channels) {   /* a channel count that is not a multiple of 16: the reference for the rest */
        const float *tail[4] = { r0 + ch, r1 + ch, r2 + ch, r3 + ch };
        ar_conv_step_ref(out + ch, tail, w + (size_t)ch * 4, channels - ch, 4);
    }
    return 1;
}

#else
int ar_rmsnorm_avx512(float *y, const float *x, const float *w, int n, float eps)
{
    (void)y;
    (void)x;
    (void)w;
    (void)n;
    (void)eps;
    return 0;
}
int ar_l2norm_avx512(float *x, int n, float eps)
{
    (void)x;
    (void)n;
    (void)eps;
    return 0;
}
int ar_conv_step_avx512(float *out, const float *const *rows, const float *w, int channels, int taps)
{
    (void)out;
    (void)rows;
    (void)w;
    (void)channels;
    (void)taps;
    return 0;
}
#endif
