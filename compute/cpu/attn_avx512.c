/* compute/cpu/attn_avx512.c — AVX-512 online-softmax attention over one block of keys for several
 * query rows at once (see ar_attn_rows in compute/ops.h and the scalar reference ar_attn_rows_ref it
 * is tested against in tests/test_attn.c).
 *
 * Rows that see the same keys (the query heads of one KV head, the nodes of one prompt chunk) share
 * every key and value load: the scores run 4 rows x 4 keys per pass (16 FMA chains, 8 loads per 16
 * FMAs, the 16 horizontal sums by one transpose network), the value accumulation 4 rows x 64 dims per
 * pass, so a block of K/V is read from memory once per tile instead of once per row. Each score is one
 * FMA chain over the head dim in order, then the same sum network; each output lane accumulates its
 * keys in order: a row's result is the same bits whichever rows share its call. The block's running
 * maximum and the sum of its exponentials are vector reductions (the maximum was a scalar scan of
 * every score: 8-20 % of the kernel's time at 16 rows). exp(s - max) is a vector exp (range reduction by ln 2 in two parts,
 * degree-7 polynomial, 2^n by vscalefps; < 2 ulp on the softmax range). Needs d % 16 == 0 (every
 * qwen35 / DFlash head dim is). */
#include "compute/cpu/attn.h"

#include <stdint.h>

#if defined(__x86_64__) && defined(__AVX512F__)
#include <immintrin.h>
#include <math.h>

#include "compute/cpu/exp_avx512.h"


enum { TR = 4, TK = 4, TD = 4 };   /* rows, keys per score pass; 16-float vectors per value pass */

#define INLINE static inline __attribute__((always_inline))

/* 16 K or V elements at element offset off of row p: F32, or F16 widened (the KV cache's type) */
INLINE __m512 ld(const void *p, int off, int f16)
{
    if (f16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + off)));
    return _mm512_loadu_ps((const float *)p + off);
}

/* The 16 horizontal sums of a0..a15 in one vector (lane i = sum of ai's lanes) by a transpose-and-add
 * network: 45 shuffles and adds instead of 16 separate reductions. Every score goes through this same
 * network (missing rows / keys are zero vectors), so its bits do not depend on its neighbours. */
static inline __m512 pair_ps(__m512 a, __m512 b)
{
    return _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));
}
static inline __m512 pair_pd(__m512 a, __m512 b)
{
    const __m512d x = _mm512_castps_pd(a), y = _mm512_castps_pd(b);
    return _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
}
static inline __m512 pair_lanes(__m512 a, __m512 b)
{
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
}
static inline __m512 hsum16(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 a4, __m512 a5, __m512 a6, __m512 a7,
                            __m512 a8, __m512 a9, __m512 a10, __m512 a11, __m512 a12, __m512 a13, __m512 a14,
                            __m512 a15)
{
    const __m512 w0 = pair_pd(pair_ps(a0, a1), pair_ps(a2, a3)), w1 = pair_pd(pair_ps(a4, a5), pair_ps(a6, a7));
    const __m512 w2 = pair_pd(pair_ps(a8, a9), pair_ps(a10, a11)), w3 = pair_pd(pair_ps(a12, a13), pair_ps(a14, a15));
    return pair_lanes(pair_lanes(w0, w1), pair_lanes(w2, w3));
}

/* lanes 4r..4r+3 of sum (scaled) -> s[r][0..nk), r < nr */
static inline void store_scores(__m512 sum, int nr, int nk, float scale, float *s, size_t ld)
{
    sum = _mm512_mul_ps(sum, _mm512_set1_ps(scale));
    float t[16];
    _mm512_storeu_ps(t, sum);
    for (int r = 0; r < nr; r++)
        for (int j = 0; j < nk; j++) s[(size_t)r * ld + j] = t[4 * r + j];
}

/* s[r][t] = scale * q_r . k_t for 4 rows x 4 keys (the common case, all in registers): one FMA chain
 * per score over the head dim, then hsum16. */
INLINE void scores_4x4(const float *const *q, const void *const *k, int nv, float scale, float *s, size_t lds, int f16)
{
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
           a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    for (int c = 0; c < nv; c++) {
        const __m512 k0 = ld(k[0], 16 * c, f16), k1 = ld(k[1], 16 * c, f16), k2 = ld(k[2], 16 * c, f16),
                     k3 = ld(k[3], 16 * c, f16);
        __m512 x = _mm512_loadu_ps(q[0] + 16 * c);
        a00 = _mm512_fmadd_ps(x, k0, a00); a01 = _mm512_fmadd_ps(x, k1, a01);
        a02 = _mm512_fmadd_ps(x, k2, a02); a03 = _mm512_fmadd_ps(x, k3, a03);
        x = _mm512_loadu_ps(q[1] + 16 * c);
        a10 = _mm512_fmadd_ps(x, k0, a10); a11 = _mm512_fmadd_ps(x, k1, a11);
        a12 = _mm512_fmadd_ps(x, k2, a12); a13 = _mm512_fmadd_ps(x, k3, a13);
        x = _mm512_loadu_ps(q[2] + 16 * c);
        a20 = _mm512_fmadd_ps(x, k0, a20); a21 = _mm512_fmadd_ps(x, k1, a21);
        a22 = _mm512_fmadd_ps(x, k2, a22); a23 = _mm512_fmadd_ps(x, k3, a23);
        x = _mm512_loadu_ps(q[3] + 16 * c);
        a30 = _mm512_fmadd_ps(x, k0, a30); a31 = _mm512_fmadd_ps(x, k1, a31);
        a32 = _mm512_fmadd_ps(x, k2, a32); a33 = _mm512_fmadd_ps(x, k3, a33);
    }
    const __m512 sum = _mm512_mul_ps(hsum16(a00, a01, a02, a03, a10, a11, a12, a13, a20, a21, a22, a23, a30, a31,
                                            a32, a33), _mm512_set1_ps(scale));
    _mm_storeu_ps(s, _mm512_castps512_ps128(sum));
    _mm_storeu_ps(s + lds, _mm512_extractf32x4_ps(sum, 1));
    _mm_storeu_ps(s + 2 * lds, _mm512_extractf32x4_ps(sum, 2));
    _mm_storeu_ps(s + 3 * lds, _mm512_extractf32x4_ps(sum, 3));
}

/* the same arithmetic for the ragged edges (fewer rows or keys: zero chains) */
INLINE void scores_edge(const float *const *q, int nr, const void *const *k, int nk, int nv, float scale, float *s,
                        size_t lds, int f16)
{
    __m512 a[TR * TK];
    for (int i = 0; i < TR * TK; i++) a[i] = _mm512_setzero_ps();
    for (int c = 0; c < nv; c++)
        for (int r = 0; r < nr; r++) {
            const __m512 x = _mm512_loadu_ps(q[r] + 16 * c);
            for (int t = 0; t < nk; t++) a[4 * r + t] = _mm512_fmadd_ps(x, ld(k[t], 16 * c, f16), a[4 * r + t]);
        }
    store_scores(hsum16(a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14],
                        a[15]), nr, nk, scale, s, lds);
}

/* o_r[c0 .. c0 + 64) += sum_j p_rj v_j[c0 .. c0 + 64) for 4 rows (all 16 accumulators in registers) */
INLINE void pv_4x4(ar_attn_acc *const *ar, const float (*p)[AR_ATTN_BLOCK], const void *const *v, int n, int c0, int f16)
{
    float *o0 = ar[0]->o + 16 * c0, *o1 = ar[1]->o + 16 * c0, *o2 = ar[2]->o + 16 * c0, *o3 = ar[3]->o + 16 * c0;
    __m512 a00 = _mm512_loadu_ps(o0), a01 = _mm512_loadu_ps(o0 + 16), a02 = _mm512_loadu_ps(o0 + 32),
           a03 = _mm512_loadu_ps(o0 + 48), a10 = _mm512_loadu_ps(o1), a11 = _mm512_loadu_ps(o1 + 16),
           a12 = _mm512_loadu_ps(o1 + 32), a13 = _mm512_loadu_ps(o1 + 48), a20 = _mm512_loadu_ps(o2),
           a21 = _mm512_loadu_ps(o2 + 16), a22 = _mm512_loadu_ps(o2 + 32), a23 = _mm512_loadu_ps(o2 + 48),
           a30 = _mm512_loadu_ps(o3), a31 = _mm512_loadu_ps(o3 + 16), a32 = _mm512_loadu_ps(o3 + 32),
           a33 = _mm512_loadu_ps(o3 + 48);
    for (int j = 0; j < n; j++) {
        const __m512 v0 = ld(v[j], 16 * c0, f16), v1 = ld(v[j], 16 * c0 + 16, f16), v2 = ld(v[j], 16 * c0 + 32, f16),
                     v3 = ld(v[j], 16 * c0 + 48, f16);
        __m512 x = _mm512_set1_ps(p[0][j]);
        a00 = _mm512_fmadd_ps(x, v0, a00); a01 = _mm512_fmadd_ps(x, v1, a01);
        a02 = _mm512_fmadd_ps(x, v2, a02); a03 = _mm512_fmadd_ps(x, v3, a03);
        x = _mm512_set1_ps(p[1][j]);
        a10 = _mm512_fmadd_ps(x, v0, a10); a11 = _mm512_fmadd_ps(x, v1, a11);
        a12 = _mm512_fmadd_ps(x, v2, a12); a13 = _mm512_fmadd_ps(x, v3, a13);
        x = _mm512_set1_ps(p[2][j]);
        a20 = _mm512_fmadd_ps(x, v0, a20); a21 = _mm512_fmadd_ps(x, v1, a21);
        a22 = _mm512_fmadd_ps(x, v2, a22); a23 = _mm512_fmadd_ps(x, v3, a23);
        x = _mm512_set1_ps(p[3][j]);
        a30 = _mm512_fmadd_ps(x, v0, a30); a31 = _mm512_fmadd_ps(x, v1, a31);
        a32 = _mm512_fmadd_ps(x, v2, a32); a33 = _mm512_fmadd_ps(x, v3, a33);
    }
    _mm512_storeu_ps(o0, a00); _mm512_storeu_ps(o0 + 16, a01); _mm512_storeu_ps(o0 + 32, a02); _mm512_storeu_ps(o0 + 48, a03);
    _mm512_storeu_ps(o1, a10); _mm512_storeu_ps(o1 + 16, a11); _mm512_storeu_ps(o1 + 32, a12); _mm512_storeu_ps(o1 + 48, a13);
    _mm512_storeu_ps(o2, a20); _mm512_storeu_ps(o2 + 16, a21); _mm512_storeu_ps(o2 + 32, a22); _mm512_storeu_ps(o2 + 48, a23);
    _mm512_storeu_ps(o3, a30); _mm512_storeu_ps(o3 + 16, a31); _mm512_storeu_ps(o3 + 32, a32); _mm512_storeu_ps(o3 + 48, a33);
}

INLINE int attn_rows(ar_attn_acc *const *acc, const float *const *q, int R, const void *const *k,
                     const void *const *v, int n, float scale, int f16)
{
    const int d = acc[0]->d;
    if (d % 16 || d <= 0 || n < 1 || n > AR_ATTN_BLOCK) return 0;
    const int nv = d / 16;
    float s[TR][AR_ATTN_BLOCK];
    for (int r0 = 0; r0 < R; r0 += TR) {
        const int nr = R - r0 < TR ? R - r0 : TR;
        const float *const *qr = q + r0;
        ar_attn_acc *const *ar = acc + r0;
        /* scores */
        for (int j = 0; j < n; j += TK) {
            const int nk = n - j < TK ? n - j : TK;
            if (nr == TR && nk == TK) scores_4x4(qr, k + j, nv, scale, &s[0][j], AR_ATTN_BLOCK, f16);
            else scores_edge(qr, nr, k + j, nk, nv, scale, &s[0][j], AR_ATTN_BLOCK, f16);
        }
        /* online softmax: new maximum, rescale, p = exp(s - max) */
        for (int r = 0; r < nr; r++) {
            ar_attn_acc *a = ar[r];
            __m512 mv = _mm512_set1_ps(a->max);
            for (int j = 0; j < n; j += 16) {
                const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
                mv = _mm512_mask_max_ps(mv, m, mv, _mm512_maskz_loadu_ps(m, s[r] + j));
            }
            const float mx = _mm512_reduce_max_ps(mv);
            if (mx > a->max) {
                const float f = expf(a->max - mx);   /* 0 on the first block (max = -inf) */
                a->sum *= f;
                const __m512 fv = _mm512_set1_ps(f);
                for (int i = 0; i < nv; i++) _mm512_storeu_ps(a->o + 16 * i, _mm512_mul_ps(_mm512_loadu_ps(a->o + 16 * i), fv));
                a->max = mx;
            }
            const __m512 mxv = _mm512_set1_ps(mx);
            __m512 sv = _mm512_setzero_ps();
            for (int j = 0; j < n; j += 16) {
                const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
                const __m512 p = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s[r] + j), mxv));
                _mm512_mask_storeu_ps(s[r] + j, m, p);
                sv = _mm512_mask_add_ps(sv, m, sv, p);
            }
            a->sum += _mm512_reduce_add_ps(sv);
        }
        /* o_r += sum_j p_rj v_j, 4 rows x 64 dims per pass, keys in order */
        for (int c0 = 0; c0 < nv; c0 += TD) {
            const int nc = nv - c0 < TD ? nv - c0 : TD;
            if (nr == TR && nc == TD) {
                pv_4x4(ar, s, v, n, c0, f16);
            } else {
                for (int r = 0; r < nr; r++) {
                    if (nc == TD) {   /* one row, 64 dims: 4 chains in registers */
                        float *o = ar[r]->o + 16 * c0;
                        __m512 a0 = _mm512_loadu_ps(o), a1 = _mm512_loadu_ps(o + 16), a2 = _mm512_loadu_ps(o + 32),
                               a3 = _mm512_loadu_ps(o + 48);
                        for (int j = 0; j < n; j++) {
                            const __m512 x = _mm512_set1_ps(s[r][j]);
                            a0 = _mm512_fmadd_ps(x, ld(v[j], 16 * c0, f16), a0);
                            a1 = _mm512_fmadd_ps(x, ld(v[j], 16 * c0 + 16, f16), a1);
                            a2 = _mm512_fmadd_ps(x, ld(v[j], 16 * c0 + 32, f16), a2);
                            a3 = _mm512_fmadd_ps(x, ld(v[j], 16 * c0 + 48, f16), a3);
                        }
                        _mm512_storeu_ps(o, a0); _mm512_storeu_ps(o + 16, a1);
                        _mm512_storeu_ps(o + 32, a2); _mm512_storeu_ps(o + 48, a3);
                        continue;
                    }
                    __m512 o[TD];
                    for (int i = 0; i < nc; i++) o[i] = _mm512_loadu_ps(ar[r]->o + 16 * (c0 + i));
                    for (int j = 0; j < n; j++) {
                        const __m512 p = _mm512_set1_ps(s[r][j]);
                        for (int i = 0; i < nc; i++)
                            o[i] = _mm512_fmadd_ps(p, ld(v[j], 16 * (c0 + i), f16), o[i]);
                    }
                    for (int i = 0; i < nc; i++) _mm512_storeu_ps(ar[r]->o + 16 * (c0 + i), o[i]);
                }
            }
        }
    }
    return 1;
}

int ar_attn_rows_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                        const float *const *v, int n, float scale)
{
    return attn_rows(acc, q, R, (const void *const *)k, (const void *const *)v, n, scale, 0);
}

int ar_attn_rows_f16_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                            const uint16_t *const *v, int n, float scale)
{
    return attn_rows(acc, q, R, (const void *const *)k, (const void *const *)v, n, scale, 1);
}

#else
int ar_attn_rows_f16_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                            const uint16_t *const *v, int n, float scale)
{
    (void)acc; (void)q; (void)R; (void)k; (void)v; (void)n; (void)scale;
    return 0;
}

int ar_attn_rows_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                        const float *const *v, int n, float scale)
{
    (void)acc; (void)q; (void)R; (void)k; (void)v; (void)n; (void)scale;
    return 0;
}
#endif
