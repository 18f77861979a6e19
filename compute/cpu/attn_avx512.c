/* compute/cpu/attn_avx512.c — AVX-512 online-softmax attention over one block of keys for several
 * query rows at once (see ar_attn_rows in compute/ops.h and the scalar reference ar_attn_rows_ref it
 * is tested against in tests/test_attn.c).
 *
 * Rows that see the same keys (the query heads of one KV head, the nodes of one prompt chunk) share
 * every key and value load: the scores run 4 rows x 4 keys per pass (16 FMA chains, 8 loads per 16
 * FMAs), the value accumulation 4 rows x 64 dims per pass, so a block of K/V is read from memory once
 * per tile instead of once per row. Each score is one FMA chain over the head dim in order, then one
 * horizontal sum; each output lane accumulates its keys in order: a row's result is the same bits
 * whichever rows share its call. exp(s - max) is a vector exp (range reduction by ln 2 in two parts,
 * degree-7 polynomial, 2^n by vscalefps; < 2 ulp on the softmax range). Needs d % 16 == 0 (every
 * qwen35 / DFlash head dim is). */
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

enum { TR = 4, TK = 4, TD = 4 };   /* rows, keys per score pass; 16-float vectors per value pass */

/* s[r][j] = scale * q_r . k_j for 4 rows x 4 keys (the common case, all in registers) */
static inline void scores_4x4(const float *const *q, const float *const *k, int nv, float scale, float *s0,
                              size_t ld)
{
    __m512 a00 = _mm512_setzero_ps(), a01 = a00, a02 = a00, a03 = a00, a10 = a00, a11 = a00, a12 = a00, a13 = a00,
           a20 = a00, a21 = a00, a22 = a00, a23 = a00, a30 = a00, a31 = a00, a32 = a00, a33 = a00;
    for (int c = 0; c < nv; c++) {
        const __m512 k0 = _mm512_loadu_ps(k[0] + 16 * c), k1 = _mm512_loadu_ps(k[1] + 16 * c),
                     k2 = _mm512_loadu_ps(k[2] + 16 * c), k3 = _mm512_loadu_ps(k[3] + 16 * c);
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
    float *s1 = s0 + ld, *s2 = s1 + ld, *s3 = s2 + ld;
    s0[0] = _mm512_reduce_add_ps(a00) * scale; s0[1] = _mm512_reduce_add_ps(a01) * scale;
    s0[2] = _mm512_reduce_add_ps(a02) * scale; s0[3] = _mm512_reduce_add_ps(a03) * scale;
    s1[0] = _mm512_reduce_add_ps(a10) * scale; s1[1] = _mm512_reduce_add_ps(a11) * scale;
    s1[2] = _mm512_reduce_add_ps(a12) * scale; s1[3] = _mm512_reduce_add_ps(a13) * scale;
    s2[0] = _mm512_reduce_add_ps(a20) * scale; s2[1] = _mm512_reduce_add_ps(a21) * scale;
    s2[2] = _mm512_reduce_add_ps(a22) * scale; s2[3] = _mm512_reduce_add_ps(a23) * scale;
    s3[0] = _mm512_reduce_add_ps(a30) * scale; s3[1] = _mm512_reduce_add_ps(a31) * scale;
    s3[2] = _mm512_reduce_add_ps(a32) * scale; s3[3] = _mm512_reduce_add_ps(a33) * scale;
}

/* the same arithmetic for the ragged edges (fewer rows or keys) */
static void scores_edge(const float *const *q, int nr, const float *const *k, int nk, int nv, float scale, float *s0,
                        size_t ld)
{
    __m512 a[TR][TK];
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nk; t++) a[r][t] = _mm512_setzero_ps();
    for (int c = 0; c < nv; c++)
        for (int r = 0; r < nr; r++) {
            const __m512 x = _mm512_loadu_ps(q[r] + 16 * c);
            for (int t = 0; t < nk; t++) a[r][t] = _mm512_fmadd_ps(x, _mm512_loadu_ps(k[t] + 16 * c), a[r][t]);
        }
    for (int r = 0; r < nr; r++)
        for (int t = 0; t < nk; t++) s0[(size_t)r * ld + t] = _mm512_reduce_add_ps(a[r][t]) * scale;
}

int ar_attn_rows_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                        const float *const *v, int n, float scale)
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
            if (nr == TR && nk == TK) scores_4x4(qr, k + j, nv, scale, &s[0][j], AR_ATTN_BLOCK);
            else scores_edge(qr, nr, k + j, nk, nv, scale, &s[0][j], AR_ATTN_BLOCK);
        }
        /* online softmax: new maximum, rescale, p = exp(s - max) */
        for (int r = 0; r < nr; r++) {
            ar_attn_acc *a = ar[r];
            float mx = a->max;
            for (int j = 0; j < n; j++)
                if (s[r][j] > mx) mx = s[r][j];
            if (mx > a->max) {
                const float f = expf(a->max - mx);   /* 0 on the first block (max = -inf) */
                a->sum *= f;
                const __m512 fv = _mm512_set1_ps(f);
                for (int i = 0; i < nv; i++) _mm512_storeu_ps(a->o + 16 * i, _mm512_mul_ps(_mm512_loadu_ps(a->o + 16 * i), fv));
                a->max = mx;
            }
            const __m512 mxv = _mm512_set1_ps(mx);
            for (int j = 0; j < n; j += 16) {
                const __mmask16 m = n - j >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - j)) - 1);
                const __m512 p = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(m, s[r] + j), mxv));
                _mm512_mask_storeu_ps(s[r] + j, m, p);
                a->sum += _mm512_mask_reduce_add_ps(m, p);
            }
        }
        /* o_r += sum_j p_rj v_j, 4 rows x 64 dims per pass, keys in order */
        for (int c0 = 0; c0 < nv; c0 += TD) {
            const int nc = nv - c0 < TD ? nv - c0 : TD;
            if (nr == TR && nc == TD) {
                __m512 o[TR][TD];
                for (int r = 0; r < TR; r++)
                    for (int i = 0; i < TD; i++) o[r][i] = _mm512_loadu_ps(ar[r]->o + 16 * (c0 + i));
                for (int j = 0; j < n; j++) {
                    const float *vr = v[j] + 16 * c0;
                    const __m512 v0 = _mm512_loadu_ps(vr), v1 = _mm512_loadu_ps(vr + 16), v2 = _mm512_loadu_ps(vr + 32),
                                 v3 = _mm512_loadu_ps(vr + 48);
                    for (int r = 0; r < TR; r++) {
                        const __m512 p = _mm512_set1_ps(s[r][j]);
                        o[r][0] = _mm512_fmadd_ps(p, v0, o[r][0]);
                        o[r][1] = _mm512_fmadd_ps(p, v1, o[r][1]);
                        o[r][2] = _mm512_fmadd_ps(p, v2, o[r][2]);
                        o[r][3] = _mm512_fmadd_ps(p, v3, o[r][3]);
                    }
                }
                for (int r = 0; r < TR; r++)
                    for (int i = 0; i < TD; i++) _mm512_storeu_ps(ar[r]->o + 16 * (c0 + i), o[r][i]);
            } else {
                for (int r = 0; r < nr; r++) {
                    __m512 o[TD];
                    for (int i = 0; i < nc; i++) o[i] = _mm512_loadu_ps(ar[r]->o + 16 * (c0 + i));
                    for (int j = 0; j < n; j++) {
                        const __m512 p = _mm512_set1_ps(s[r][j]);
                        for (int i = 0; i < nc; i++)
                            o[i] = _mm512_fmadd_ps(p, _mm512_loadu_ps(v[j] + 16 * (c0 + i)), o[i]);
                    }
                    for (int i = 0; i < nc; i++) _mm512_storeu_ps(ar[r]->o + 16 * (c0 + i), o[i]);
                }
            }
        }
    }
    return 1;
}

#else
int ar_attn_rows_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                        const float *const *v, int n, float scale)
{
    (void)acc; (void)q; (void)R; (void)k; (void)v; (void)n; (void)scale;
    return 0;
}
#endif
