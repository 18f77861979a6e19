/* compute/cpu/attn_avx2.c — AVX2/FMA online-softmax attention over one block of keys for several query
 * rows at once (CPUs without AVX-512; the scheme of attn_avx512.c on 8-float vectors and 16 registers).
 *
 * Rows that see the same keys share every key and value load: the scores run 2 rows x 4 keys per pass
 * (8 FMA chains over the head dim, each score one chain in order, then one fixed reduction network
 * for all 8), the value accumulation 2 rows x 32 dims per pass with the keys in order per lane, so a
 * row's result is the same bits whichever rows share its call. exp(s - max) is exp_avx2.h's vector exp
 * (inputs below -87 give e^-87 instead of a subnormal or 0, which no softmax sum can notice). Needs d % 32 == 0 (every
 * qwen35 / DFlash head dim is). */
#include "compute/cpu/attn.h"

#include <stdint.h>

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#include <math.h>

#include "compute/cpu/exp_avx2.h"

enum { TR = 2, TK = 4, TD = 4 };   /* rows, keys per score pass; 8-float vectors per value pass */

#define INLINE static inline __attribute__((always_inline))

/* 8 K or V elements at element offset off of row p: F32, or F16 widened (the KV cache's type) */
INLINE __m256 ld(const void *p, int off, int f16)
{
    if (f16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)p + off)));
    return _mm256_loadu_ps((const float *)p + off);
}

/* The 8 horizontal sums of a0..a7 in one vector (lane i = sum of ai's lanes), one network for all. */
INLINE __m256 hsum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5, __m256 a6, __m256 a7)
{
    const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
    return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* acc[r][t] += x[r] * y[t], 2 x 4 vectors: the step of both passes (score: rows x keys over one slice of the
 * head dim; value: rows' weights x 4 slices of one value row). Each accumulator is one FMA chain. */
INLINE void fma2x4(const __m256 x[TR], const __m256 y[4], __m256 acc[TR][4])
{
#pragma GCC unroll 2
    for (int r = 0; r < TR; r++)
#pragma GCC unroll 4
        for (int t = 0; t < 4; t++) acc[r][t] = _mm256_fmadd_ps(x[r], y[t], acc[r][t]);
}

/* s[r][j0 + t] = scale * q_r . k_(j0+t) for up to 2 rows x 4 keys; missing rows / keys run as copies
 * of the first (their sums are not stored), so every score goes through the same chain and network. */
INLINE void scores_2x4(const float *const *q, int nr, const void *const *k, int nk, int nv, float scale,
                       float s[][AR_ATTN_BLOCK], int j0, int f16)
{
    const float *qr[TR] = { q[0], nr > 1 ? q[1] : q[0] };
    const void *kt[TK] = { k[0], nk > 1 ? k[1] : k[0], nk > 2 ? k[2] : k[0], nk > 3 ? k[3] : k[0] };
    __m256 a[TR][TK];
#pragma GCC unroll 2
    for (int r = 0; r < TR; r++)
#pragma GCC unroll 4
        for (int t = 0; t < TK; t++) a[r][t] = _mm256_setzero_ps();
    for (int c = 0; c < nv; c++) {
        const __m256 x[TR] = { _mm256_loadu_ps(qr[0] + 8 * c), _mm256_loadu_ps(qr[1] + 8 * c) };
        const __m256 y[TK] = { ld(kt[0], 8 * c, f16), ld(kt[1], 8 * c, f16), ld(kt[2], 8 * c, f16), ld(kt[3], 8 * c, f16) };
        fma2x4(x, y, a);
    }
    float t[8];
    _mm256_storeu_ps(t, _mm256_mul_ps(hsum8(a[0][0], a[0][1], a[0][2], a[0][3], a[1][0], a[1][1], a[1][2], a[1][3]),
                                      _mm256_set1_ps(scale)));
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nk; j++) s[r][j0 + j] = t[4 * r + j];
}

static int attn_rows(ar_attn_acc *const *acc, const float *const *q, int R, const void *const *k,
                     const void *const *v, int n, float scale, int f16)
{
    const int d = acc[0]->d;
    if (d % 32 || d <= 0 || n < 1 || n > AR_ATTN_BLOCK) return 0;
    const int nv = d / 8;
    float s[TR][AR_ATTN_BLOCK];
    for (int r0 = 0; r0 < R; r0 += TR) {
        const int nr = R - r0 < TR ? R - r0 : TR;
        ar_attn_acc *const *ar = acc + r0;
        for (int j = 0; j < n; j += TK) scores_2x4(q + r0, nr, k + j, n - j < TK ? n - j : TK, nv, scale, s, j, f16);
        /* online softmax: new maximum, rescale, p = exp(s - max) (lanes past n count 0) */
        for (int r = 0; r < nr; r++) {
            ar_attn_acc *a = ar[r];
            float mx = a->max;
            for (int j = 0; j < n; j++) mx = s[r][j] > mx ? s[r][j] : mx;
            if (mx > a->max) {
                const float f = expf(a->max - mx);   /* 0 on the first block (max = -inf) */
                a->sum *= f;
                const __m256 fv = _mm256_set1_ps(f);
                for (int i = 0; i < nv; i++) _mm256_storeu_ps(a->o + 8 * i, _mm256_mul_ps(_mm256_loadu_ps(a->o + 8 * i), fv));
                a->max = mx;
            }
            const __m256 mxv = _mm256_set1_ps(mx);
            const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            __m256 sv = _mm256_setzero_ps();
            for (int j = 0; j < n; j += 8) {
                const __m256 live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n - j), lane));
                const __m256 x = _mm256_blendv_ps(mxv, _mm256_loadu_ps(s[r] + j), live);   /* past n: exp(0) */
                const __m256 p = _mm256_and_ps(exp256(_mm256_sub_ps(x, mxv)), live);
                _mm256_storeu_ps(s[r] + j, p);
                sv = _mm256_add_ps(sv, p);
            }
            __m128 h = _mm_add_ps(_mm256_castps256_ps128(sv), _mm256_extractf128_ps(sv, 1));
            h = _mm_add_ps(h, _mm_movehl_ps(h, h));
            h = _mm_add_ss(h, _mm_movehdup_ps(h));
            a->sum += _mm_cvtss_f32(h);
        }
        /* o_r += sum_j p_rj v_j, 2 rows x 32 dims per pass, keys in order */
        for (int c0 = 0; c0 < nv; c0 += TD) {
            float *o[TR] = { ar[0]->o + 8 * c0, ar[nr > 1 ? 1 : 0]->o + 8 * c0 };
            const float *p[TR] = { s[0], s[nr > 1 ? 1 : 0] };
            __m256 a[TR][TD];
#pragma GCC unroll 2
            for (int r = 0; r < TR; r++)
#pragma GCC unroll 4
                for (int i = 0; i < TD; i++) a[r][i] = _mm256_loadu_ps(o[r] + 8 * i);
            for (int j = 0; j < n; j++) {
                const __m256 y[TD] = { ld(v[j], 8 * c0, f16), ld(v[j], 8 * c0 + 8, f16), ld(v[j], 8 * c0 + 16, f16),
                                       ld(v[j], 8 * c0 + 24, f16) };
                const __m256 x[TR] = { _mm256_set1_ps(p[0][j]), _mm256_set1_ps(p[1][j]) };
                fma2x4(x, y, a);
            }
            for (int r = 0; r < nr; r++)
#pragma GCC unroll 4
                for (int i = 0; i < TD; i++) _mm256_storeu_ps(o[r] + 8 * i, a[r][i]);
        }
    }
    return 1;
}

int ar_attn_rows_avx2(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                      const float *const *v, int n, float scale)
{
    return attn_rows(acc, q, R, (const void *const *)k, (const void *const *)v, n, scale, 0);
}

int ar_attn_rows_f16_avx2(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                          const uint16_t *const *v, int n, float scale)
{
    return attn_rows(acc, q, R, (const void *const *)k, (const void *const *)v, n, scale, 1);
}

#else
int ar_attn_rows_avx2(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                      const float *const *v, int n, float scale)
{
    (void)acc; (void)q; (void)R; (void)k; (void)v; (void)n; (void)scale;
    return 0;
}

int ar_attn_rows_f16_avx2(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                          const uint16_t *const *v, int n, float scale)
{
    (void)acc; (void)q; (void)R; (void)k; (void)v; (void)n; (void)scale;
    return 0;
}
#endif
