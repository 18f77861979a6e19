/* compute/cpu/norm_avx2.c — AVX2 RMS norm, L2 norm and the Gated DeltaNet short convolution (CPUs without
 * AVX-512; see norm_avx512.c for the scheme, tested against the scalar references in tests/test_norm.c).
 *
 * RMS norm: squares formed in float and summed in double in 16 partial sums (4 vectors of 4 doubles), then
 * the reference's float scale and gain in the same order: at most one rounding from the reference in rare
 * cases (the order of the double additions). Short convolution: 8 channels per vector, the 4 taps of each
 * transposed from the [channel][tap] weights in registers, each channel's taps summed in tap order with a
 * multiply and an add, as the reference: the same bits. */
#include "compute/cpu/norm.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#include <math.h>
#include <stddef.h>

/* lanes < left (left in 1..8) */
static inline __m256i tail_mask8(int left)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* sum over i < n of (double)(x[i] * x[i]) */
static double sum_squares(const float *x, int n)
{
    __m256d s[4] = { _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd() };
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 a = _mm256_loadu_ps(x + i), b = _mm256_loadu_ps(x + i + 8);
        const __m256 a2 = _mm256_mul_ps(a, a), b2 = _mm256_mul_ps(b, b);
        s[0] = _mm256_add_pd(s[0], _mm256_cvtps_pd(_mm256_castps256_ps128(a2)));
        s[1] = _mm256_add_pd(s[1], _mm256_cvtps_pd(_mm256_extractf128_ps(a2, 1)));
        s[2] = _mm256_add_pd(s[2], _mm256_cvtps_pd(_mm256_castps256_ps128(b2)));
        s[3] = _mm256_add_pd(s[3], _mm256_cvtps_pd(_mm256_extractf128_ps(b2, 1)));
    }
    for (; i < n; i += 8) {   /* masked lanes load as 0 and add 0 */
        const __m256 a = _mm256_maskload_ps(x + i, tail_mask8(n - i >= 8 ? 8 : n - i));
        const __m256 a2 = _mm256_mul_ps(a, a);
        s[0] = _mm256_add_pd(s[0], _mm256_cvtps_pd(_mm256_castps256_ps128(a2)));
        s[1] = _mm256_add_pd(s[1], _mm256_cvtps_pd(_mm256_extractf128_ps(a2, 1)));
    }
    const __m256d t = _mm256_add_pd(_mm256_add_pd(s[0], s[1]), _mm256_add_pd(s[2], s[3]));
    const __m128d u = _mm_add_pd(_mm256_castpd256_pd128(t), _mm256_extractf128_pd(t, 1));
    return _mm_cvtsd_f64(_mm_add_sd(u, _mm_unpackhi_pd(u, u)));
}

/* y = x * scale (* w) */
static void scale_row(float *y, const float *x, const float *w, int n, float scale)
{
    const __m256 sv = _mm256_set1_ps(scale);
    for (int i = 0; i < n; i += 8) {
        const __m256i m = tail_mask8(n - i >= 8 ? 8 : n - i);
        __m256 v = _mm256_mul_ps(_mm256_maskload_ps(x + i, m), sv);
        if (w) v = _mm256_mul_ps(v, _mm256_maskload_ps(w + i, m));
        _mm256_maskstore_ps(y + i, m, v);
    }
}

int ar_rmsnorm_avx2(float *y, const float *x, const float *w, int n, float eps)
{
    const float mean = (float)(sum_squares(x, n) / n);
    scale_row(y, x, w, n, 1.0f / sqrtf(mean + eps));
    return 1;
}

int ar_l2norm_avx2(float *x, int n, float eps)
{
    ar_rmsnorm_avx2(x, x, NULL, n, eps / (float)n);
    scale_row(x, x, NULL, n, 1.0f / sqrtf((float)n));
    return 1;
}

int ar_conv_step_avx2(float *out, const float *const *rows, const float *w, int channels, int taps)
{
    if (taps != 4) return 0;
    const float *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3];
    int ch = 0;
    for (; ch + 8 <= channels; ch += 8) {
        const float *wc = w + (size_t)ch * 4;
        /* a = taps of channels ch..ch+1, b = +2..3, c = +4..5, d = +6..7 (4 floats per channel) */
        const __m256 a = _mm256_loadu_ps(wc), b = _mm256_loadu_ps(wc + 8), c = _mm256_loadu_ps(wc + 16),
                     d = _mm256_loadu_ps(wc + 24);
        /* per 128-bit lane a 4x4 transpose of channels x taps, then the lanes put channels in order */
        const __m256 t0 = _mm256_unpacklo_ps(a, b), t1 = _mm256_unpackhi_ps(a, b);
        const __m256 t2 = _mm256_unpacklo_ps(c, d), t3 = _mm256_unpackhi_ps(c, d);
        /* lane 0 of u_k: tap k of channels 0, 2, 4, 6; lane 1: of channels 1, 3, 5, 7 */
        const __m256 u0 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
        const __m256 u1 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
        const __m256 u2 = _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
        const __m256 u3 = _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
        const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        const __m256 w0 = _mm256_permutevar8x32_ps(u0, order), w1 = _mm256_permutevar8x32_ps(u1, order);
        const __m256 w2 = _mm256_permutevar8x32_ps(u2, order), w3 = _mm256_permutevar8x32_ps(u3, order);
        __m256 acc = _mm256_add_ps(_mm256_setzero_ps(), _mm256_mul_ps(_mm256_loadu_ps(r0 + ch), w0));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(r1 + ch), w1));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(r2 + ch), w2));
        acc = _mm256_add_ps(acc, _mm256_mul_ps(_mm256_loadu_ps(r3 + ch), w3));
        _mm256_storeu_ps(out + ch, acc);
    }
    if (ch < channels) {   /* a channel count that is not a multiple of 8: the reference for the rest */
        const float *tail[4] = { r0 + ch, r1 + ch, r2 + ch, r3 + ch };
        ar_conv_step_ref(out + ch, tail, w + (size_t)ch * 4, channels - ch, 4);
    }
    return 1;
}

#else
int ar_rmsnorm_avx2(float *y, const float *x, const float *w, int n, float eps)
{
    (void)y;
    (void)x;
    (void)w;
    (void)n;
    (void)eps;
    return 0;
}
int ar_l2norm_avx2(float *x, int n, float eps)
{
    (void)x;
    (void)n;
    (void)eps;
    return 0;
}
int ar_conv_step_avx2(float *out, const float *const *rows, const float *w, int channels, int taps)
{
    (void)out;
    (void)rows;
    (void)w;
    (void)channels;
    (void)taps;
    return 0;
}
#endif
