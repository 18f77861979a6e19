/* format/quant_encode.c — float -> blocks: the scalar reference quantizers.
 *
 * Owns: ar_quantize_row and the scale searches of every type arbor writes (ggml's
 * quantize_row_*_ref, and for IQ4_NL/IQ4_XS the no-imatrix path of quantize_iq4_nl/_xs, i.e. what
 * ggml_quantize_chunk runs for llama-quantize).
 *
 * Invariant: bit-identical to ggml. The float expressions below keep ggml's evaluation order on
 * purpose (`w * x * l` is `(w * x) * l`, sums accumulate left to right, nearest_int is the
 * 1.5*2^23 trick); reordering one changes rounding somewhere and breaks tests/test_quant_oracle.
 * ISO C mode (-std=c11) keeps the compiler from contracting a*b+c into an FMA.
 *
 * Data flow: ar_quantize_row switches on the type; each q_* loops over blocks; K-quant blocks
 * first search per-sub-block scales (and mins) in float, then quantize those to 6/8 bits against
 * a half-precision super-scale, then requantize every element against the rounded scales. */
#include "format/quant.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "base/half.h"

#define QK 32                   /* elements per block of the 32-wide types */
#define GROUP_MAX_EPS 1e-15f    /* below this a group counts as all zero (ggml's threshold) */

/* Round to nearest with ties to even via the 1.5*2^23 trick (ggml's nearest_int; valid for
 * |x| < 2^22, and deterministic garbage beyond, exactly like ggml). */
static inline int nearest_int(float x)
{
    float v = x + 12582912.f;
    int32_t i;
    memcpy(&i, &v, sizeof i);
    return (i & 0x007fffff) - 0x00400000;
}

static inline int imin(int a, int b) { return a < b ? a : b; }
static inline int imax(int a, int b) { return a > b ? a : b; }
static inline uint16_t f2h(float f) { return ar_f32_to_f16(f); }
static inline float h2f(uint16_t h) { return ar_f16_to_f32(h); }

/* ---- quantization: 32-wide types ---------------------------------------------------------- */

static void q_q4_0(const float *x, ar_block_q4_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) {
        float amax = 0.0f, max = 0.0f;     /* max = the signed value of largest magnitude */
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -8;
        const float id = d ? 1.0f / d : 0.0f;
        y->d = f2h(d);
        for (int j = 0; j < QK / 2; j++) {
            int lo = imin(15, (int8_t)(int)(x[j] * id + 8.5f));
            int hi = imin(15, (int8_t)(int)(x[j + QK / 2] * id + 8.5f));
            y->qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void q_q4_1(const float *x, ar_block_q4_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 15;
        const float id = d ? 1.0f / d : 0.0f;
        y->d = f2h(d);
        y->m = f2h(min);
        for (int j = 0; j < QK / 2; j++) {
            int lo = imin(15, (int8_t)(int)((x[j] - min) * id + 0.5f));
            int hi = imin(15, (int8_t)(int)((x[j + QK / 2] - min) * id + 0.5f));
            y->qs[j] = (uint8_t)(lo | (hi << 4));
        }
    }
}

static void q_q5_0(const float *x, ar_block_q5_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) {
        float amax = 0.0f, max = 0.0f;
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        const float d = max / -16;
        const float id = d ? 1.0f / d : 0.0f;
        y->d = f2h(d);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int lo = imin(31, (int8_t)(int)(x[j] * id + 16.5f));
            int hi = imin(31, (int8_t)(int)(x[j + QK / 2] * id + 16.5f));
            y->qs[j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh |= (uint32_t)((lo >> 4) & 1) << j;
            qh |= (uint32_t)((hi >> 4) & 1) << (j + QK / 2);
        }
        memcpy(y->qh, &qh, 4);
    }
}

static void q_q5_1(const float *x, ar_block_q5_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) {
        float min = FLT_MAX, max = -FLT_MAX;
        for (int j = 0; j < QK; j++) {
            if (x[j] < min) min = x[j];
            if (x[j] > max) max = x[j];
        }
        const float d = (max - min) / 31;
        const float id = d ? 1.0f / d : 0.0f;
        y->d = f2h(d);
        y->m = f2h(min);
        uint32_t qh = 0;
        for (int j = 0; j < QK / 2; j++) {
            int lo = (uint8_t)(int)((x[j] - min) * id + 0.5f);
            int hi = (uint8_t)(int)((x[j + QK / 2] - min) * id + 0.5f);
            y->qs[j] = (uint8_t)((lo & 0xF) | ((hi & 0xF) << 4));
            qh |= (uint32_t)((lo >> 4) & 1) << j;
            qh |= (uint32_t)((hi >> 4) & 1) << (j + QK / 2);
        }
        memcpy(y->qh, &qh, 4);
    }
}

static void q_q8_0(const float *x, ar_block_q8_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y->d = f2h(d);
        for (int j = 0; j < QK; j++) y->qs[j] = (int8_t)(int)roundf(x[j] * id);
    }
}

static void q_q8_1(const float *x, ar_block_q8_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++) amax = amax > fabsf(x[j]) ? amax : fabsf(x[j]);
        const float d = amax / 127;
        const float id = d ? 1.0f / d : 0.0f;
        y->d = f2h(d);
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            y->qs[j] = (int8_t)(int)roundf(x[j] * id);
            sum += y->qs[j];
        }
        y->s = f2h((float)sum * d);
    }
}

/* Index of the level nearest to x in an ascending table (ties go up). */
static inline int best_index(int n, const int8_t *val, float x)
{
    if (x <= val[0]) return 0;
    if (x >= val[n - 1]) return n - 1;
    int lo = 0, hi = n - 1;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < val[mid]) hi = mid; else lo = mid;
    }
    return x - val[hi - 1] < val[hi] - x ? hi - 1 : hi;
}

static int best_index_fp4(float x, float e)
{
    int best = 0;
    float best_err = fabsf((float)ar_mxfp4_values[0] * e - x);
    for (int i = 1; i < 16; i++) {
        float err = fabsf((float)ar_mxfp4_values[i] * e - x);
        if (err < best_err) { best = i; best_err = err; }
    }
    return best;
}

static void q_mxfp4(const float *x, ar_block_mxfp4 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) {
        float amax = 0.0f;
        for (int j = 0; j < QK; j++)
            if (amax < fabsf(x[j])) amax = fabsf(x[j]);
        const uint8_t e = amax > 0.0f ? (uint8_t)(int)(floorf(log2f(amax)) - 2 + 127) : 0;
        const float d = ar_e8m0_half(e);
        y->e = e;
        for (int j = 0; j < QK / 2; j++)
            y->qs[j] = (uint8_t)(best_index_fp4(x[j], d) | (best_index_fp4(x[j + QK / 2], d) << 4));
    }
}

static void q_q1_0(const float *x, ar_block_q1_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 128, y++) {
        float sum_abs = 0.0f;
        for (int j = 0; j < 128; j++) sum_abs += fabsf(x[j]);
        y->d = f2h(sum_abs / 128);
        memset(y->qs, 0, sizeof y->qs);
        for (int j = 0; j < 128; j++)
            if (x[j] >= 0.0f) y->qs[j / 8] |= (uint8_t)(1 << (j % 8));
    }
}

static void q_q2_0(const float *x, ar_block_q2_0 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 64, y++) {
        float amax = 0.0f;
        for (int j = 0; j < 64; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]);
        const float id = amax > 0.0f ? 1.0f / amax : 0.0f;
        y->d = f2h(amax);
        memset(y->qs, 0, sizeof y->qs);
        for (int j = 0; j < 64; j++) {
            int q = imax(0, imin(3, (int)roundf(x[j] * id) + 1));
            y->qs[j / 4] |= (uint8_t)(q << (2 * (j % 4)));
        }
    }
}

/* ---- quantization: K-quants --------------------------------------------------------------- */

/* Symmetric scale search for n values into [-nmax, nmax-1], weighted by x^2 (ggml's
 * make_qx_quants with rmse_type 1 and no importance weights): start from the scale that maps
 * the largest magnitude to -nmax, then try 18 nearby scales and keep the least weighted error.
 * L receives l + nmax; returns the scale. */
static float qx_scale_search(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0) continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = suml2 = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
            float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0 && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++)
                L[i] = (int8_t)(nmax + imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i]))));
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

/* Q3_K's sub-block search (ggml's make_q3_quants with do_rmse): initial symmetric scale, then up
 * to 5 passes of coordinate descent on single quants while the weighted fit improves. */
static float q3_scale_search(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0, amax = 0;
    for (int i = 0; i < n; i++) {
        float ax = fabsf(x[i]);
        if (ax > amax) { amax = ax; max = x[i]; }
    }
    if (amax < GROUP_MAX_EPS) {
        memset(L, 0, (size_t)n);
        return 0.f;
    }
    const float iscale = -nmax / max;
    float sumlx = 0, suml2 = 0;
    for (int i = 0; i < n; i++) {
        int l = imax(-nmax, imin(nmax - 1, nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    for (int itry = 0; itry < 5; itry++) {
        int n_changed = 0;
        for (int i = 0; i < n; i++) {
            float w = x[i] * x[i];
            float slx = sumlx - w * x[i] * (float)L[i];
            if (slx > 0) {
                float sl2 = suml2 - w * (float)L[i] * (float)L[i];
                int new_l = imax(-nmax, imin(nmax - 1, nearest_int(x[i] * sl2 / slx)));
                if (new_l != L[i]) {
                    slx += w * x[i] * (float)new_l;
                    sl2 += w * (float)new_l * (float)new_l;
                    if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
                        L[i] = (int8_t)new_l;
                        sumlx = slx;
                        suml2 = sl2;
                        n_changed++;
                    }
                }
            }
        }
        if (!n_changed) break;
    }
    for (int i = 0; i < n; i++) L[i] = (int8_t)(L[i] + nmax);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Asymmetric scale+min search (ggml's make_qkx2_quants): x ~ scale * L + min with L in
 * [0, nmax], min <= 0. Tries nstep+1 scales (rmin + rdelta*is + nmax)/(max - min), each with
 * the weighted least-squares scale and min for its rounding, and keeps the least error (squared,
 * or absolute when use_mad). Returns the scale; *neg_min receives -min (>= 0). */
static float qkx_scale_min_search(int n, int nmax, const float *x, const float *weights, uint8_t *L,
                                  float *neg_min, uint8_t *Laux, float rmin, float rdelta, int nstep,
                                  int use_mad)
{
    float min = x[0], max = x[0];
    float sum_w = weights[0], sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        if (x[i] < min) min = x[i];
        if (x[i] > max) max = x[i];
        sum_w += weights[i];
        sum_x += weights[i] * x[i];
    }
    if (min > 0) min = 0;
    if (max == min) {
        memset(L, 0, (size_t)n);
        *neg_min = -min;
        return 0.f;
    }
    float iscale = nmax / (max - min);
    float scale = 1 / iscale;
    float best_error = 0;
    for (int i = 0; i < n; i++) {
        L[i] = (uint8_t)imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
        float diff = scale * (float)L[i] + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_error += weights[i] * diff;
    }
    for (int is = 0; is <= nstep; is++) {
        iscale = (rmin + rdelta * (float)is + (float)nmax) / (max - min);
        float sum_l = 0, sum_l2 = 0, sum_xl = 0;
        for (int i = 0; i < n; i++) {
            int l = imax(0, imin(nmax, nearest_int(iscale * (x[i] - min))));
            Laux[i] = (uint8_t)l;
            float w = weights[i];
            sum_l += w * (float)l;
            sum_l2 += w * (float)l * (float)l;
            sum_xl += w * (float)l * x[i];
        }
        float D = sum_w * sum_l2 - sum_l * sum_l;
        if (D > 0) {
            float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
            float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
            if (this_min > 0) {
                this_min = 0;
                this_scale = sum_xl / sum_l2;
            }
            float cur_error = 0;
            for (int i = 0; i < n; i++) {
                float diff = this_scale * (float)Laux[i] + this_min - x[i];
                diff = use_mad ? fabsf(diff) : diff * diff;
                cur_error += weights[i] * diff;
            }
            if (cur_error < best_error) {
                memcpy(L, Laux, (size_t)n);
                best_error = cur_error;
                scale = this_scale;
                min = this_min;
            }
        }
    }
    *neg_min = -min;
    return scale;
}

static void q_q2_K(const float *x, ar_block_q2_K *y, int64_t nb)
{
    uint8_t L[AR_QK_K], Laux[16];
    float weights[16], mins[AR_QK_K / 16], scales[AR_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, y++) {
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < AR_QK_K / 16; j++) {
            for (int l = 0; l < 16; l++) weights[l] = fabsf(x[16 * j + l]);
            scales[j] = qkx_scale_min_search(16, 3, x + 16 * j, weights, L + 16 * j, &mins[j], Laux, -0.5f, 0.1f, 15, 1);
            if (scales[j] > max_scale) max_scale = scales[j];
            if (mins[j] > max_min) max_min = mins[j];
        }
        if (max_scale > 0) {
            float iscale = 15.f / max_scale;
            for (int j = 0; j < AR_QK_K / 16; j++) y->scales[j] = (uint8_t)nearest_int(iscale * scales[j]);
            y->d = f2h(max_scale / 15.f);
        } else {
            memset(y->scales, 0, sizeof y->scales);
            y->d = f2h(0.f);
        }
        if (max_min > 0) {
            float iscale = 15.f / max_min;
            for (int j = 0; j < AR_QK_K / 16; j++) y->scales[j] |= (uint8_t)(nearest_int(iscale * mins[j]) << 4);
            y->dmin = f2h(max_min / 15.f);
        } else {
            y->dmin = f2h(0.f);
        }
        for (int j = 0; j < AR_QK_K / 16; j++) {
            const float d = h2f(y->d) * (float)(y->scales[j] & 0xF);
            if (!d) continue;
            const float dm = h2f(y->dmin) * (float)(y->scales[j] >> 4);
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (uint8_t)imax(0, imin(3, nearest_int((x[16 * j + ii] + dm) / d)));
        }
        for (int j = 0; j < AR_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

static void q_q3_K(const float *x, ar_block_q3_K *y, int64_t nb)
{
    int8_t L[AR_QK_K];
    float scales[AR_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, y++) {
        float max_scale = 0, amax = 0;
        for (int j = 0; j < AR_QK_K / 16; j++) {
            scales[j] = q3_scale_search(16, 4, x + 16 * j, L + 16 * j);
            if (fabsf(scales[j]) > amax) { amax = fabsf(scales[j]); max_scale = scales[j]; }
        }
        memset(y->scales, 0, sizeof y->scales);
        if (max_scale) {
            float iscale = -32.f / max_scale;
            for (int j = 0; j < AR_QK_K / 16; j++) {
                int8_t l8 = (int8_t)nearest_int(iscale * scales[j]);
                int l = imax(-32, imin(31, l8)) + 32;
                if (j < 8) y->scales[j] = (uint8_t)(l & 0xF);
                else y->scales[j - 8] |= (uint8_t)((l & 0xF) << 4);
                y->scales[j % 4 + 8] |= (uint8_t)((l >> 4) << (2 * (j / 4)));
            }
            y->d = f2h(1 / iscale);
        } else {
            y->d = f2h(0.f);
        }
        for (int j = 0; j < AR_QK_K / 16; j++) {
            const float d = h2f(y->d) * (float)(int8_t)ar_q3k_scale(y->scales, j);
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-4, imin(3, nearest_int(x[16 * j + ii] / d))) + 4);
        }
        /* high bit of element j goes to hmask[j % 32] bit j / 32 */
        memset(y->hmask, 0, sizeof y->hmask);
        for (int j = 0; j < AR_QK_K; j++) {
            if (L[j] > 3) {
                y->hmask[j % 32] |= (uint8_t)(1 << (j / 32));
                L[j] = (int8_t)(L[j] - 4);
            }
        }
        for (int j = 0; j < AR_QK_K; j += 128)
            for (int l = 0; l < 32; l++)
                y->qs[j / 4 + l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 2) | (L[j + l + 64] << 4) | (L[j + l + 96] << 6));
    }
}

/* Pack 6-bit scale ls and min lm of sub-block j into the 12-byte Q4_K/Q5_K layout (inverse of
 * ar_get_scale_min_k4); bytes 0..11 must start zeroed for j >= 4 to OR into. */
static inline void pack_scale_min_k4(uint8_t *s, int j, uint8_t ls, uint8_t lm)
{
    if (j < 4) {
        s[j] = ls;
        s[j + 4] = lm;
    } else {
        s[j + 4] = (uint8_t)((ls & 0xF) | ((lm & 0xF) << 4));
        s[j - 4] |= (uint8_t)((ls >> 4) << 6);
        s[j] |= (uint8_t)((lm >> 4) << 6);
    }
}

/* Shared front half of Q4_K and Q5_K: per sub-block of 32, weights av_x + |x| and the scale/min
 * search; then 6-bit scales and mins relative to the block maxima; then requantization of every
 * element against the rounded scale/min. L receives quants in [0, nmax]. */
static void kquant_scales_mins(const float *x, int nmax, float rmin, int nstep, uint8_t *L,
                               uint8_t scales6[12], uint16_t *d_out, uint16_t *dmin_out)
{
    uint8_t Laux[32];
    float weights[32], mins[AR_QK_K / 32], scales[AR_QK_K / 32];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < AR_QK_K / 32; j++) {
        float sum_x2 = 0;
        for (int l = 0; l < 32; l++) sum_x2 += x[32 * j + l] * x[32 * j + l];
        float av_x = sqrtf(sum_x2 / 32);
        for (int l = 0; l < 32; l++) weights[l] = av_x + fabsf(x[32 * j + l]);
        scales[j] = qkx_scale_min_search(32, nmax, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale) max_scale = scales[j];
        if (mins[j] > max_min) max_min = mins[j];
    }
    float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
    float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
    memset(scales6, 0, 12);
    for (int j = 0; j < AR_QK_K / 32; j++) {
        uint8_t ls = (uint8_t)nearest_int(inv_scale * scales[j]);
        uint8_t lm = (uint8_t)nearest_int(inv_min * mins[j]);
        pack_scale_min_k4(scales6, j, ls < 63 ? ls : 63, lm < 63 ? lm : 63);
    }
    *d_out = f2h(max_scale / 63.f);
    *dmin_out = f2h(max_min / 63.f);
    for (int j = 0; j < AR_QK_K / 32; j++) {
        uint8_t sc, m;
        ar_get_scale_min_k4(j, scales6, &sc, &m);
        const float d = h2f(*d_out) * (float)sc;
        if (!d) continue;
        const float dm = h2f(*dmin_out) * (float)m;
        for (int ii = 0; ii < 32; ii++)
            L[32 * j + ii] = (uint8_t)imax(0, imin(nmax, nearest_int((x[32 * j + ii] + dm) / d)));
    }
}

static void q_q4_K(const float *x, ar_block_q4_K *y, int64_t nb)
{
    uint8_t L[AR_QK_K];
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, y++) {
        kquant_scales_mins(x, 15, -1.f, 20, L, y->scales, &y->d, &y->dmin);
        uint8_t *q = y->qs;
        for (int j = 0; j < AR_QK_K; j += 64, q += 32)
            for (int l = 0; l < 32; l++) q[l] = (uint8_t)(L[j + l] | (L[j + l + 32] << 4));
    }
}

static void q_q5_K(const float *x, ar_block_q5_K *y, int64_t nb)
{
    uint8_t L[AR_QK_K];
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, y++) {
        kquant_scales_mins(x, 31, -0.5f, 15, L, y->scales, &y->d, &y->dmin);
        memset(y->qh, 0, sizeof y->qh);
        uint8_t *ql = y->qs;
        uint8_t m1 = 1, m2 = 2;
        for (int n = 0; n < AR_QK_K; n += 64, ql += 32, m1 <<= 2, m2 <<= 2) {
            for (int j = 0; j < 32; j++) {
                int l1 = L[n + j], l2 = L[n + j + 32];
                if (l1 > 15) { l1 -= 16; y->qh[j] |= m1; }
                if (l2 > 15) { l2 -= 16; y->qh[j] |= m2; }
                ql[j] = (uint8_t)(l1 | (l2 << 4));
            }
        }
    }
}

static void q_q6_K(const float *x, ar_block_q6_K *y, int64_t nb)
{
    int8_t L[AR_QK_K];
    float scales[AR_QK_K / 16];
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, y++) {
        float max_scale = 0, max_abs_scale = 0;
        for (int ib = 0; ib < AR_QK_K / 16; ib++) {
            scales[ib] = qx_scale_search(16, 32, x + 16 * ib, L + 16 * ib);
            if (fabsf(scales[ib]) > max_abs_scale) { max_abs_scale = fabsf(scales[ib]); max_scale = scales[ib]; }
        }
        if (max_abs_scale < GROUP_MAX_EPS) {
            memset(y, 0, sizeof *y);
            continue;
        }
        float iscale = -128.f / max_scale;
        y->d = f2h(1 / iscale);
        for (int ib = 0; ib < AR_QK_K / 16; ib++) y->scales[ib] = (int8_t)imin(127, nearest_int(iscale * scales[ib]));
        for (int j = 0; j < AR_QK_K / 16; j++) {
            float d = h2f(y->d) * (float)y->scales[j];
            if (!d) continue;
            for (int ii = 0; ii < 16; ii++)
                L[16 * j + ii] = (int8_t)(imax(-32, imin(31, nearest_int(x[16 * j + ii] / d))) + 32);
        }
        uint8_t *ql = y->ql, *qh = y->qh;
        for (int j = 0; j < AR_QK_K; j += 128, ql += 64, qh += 32) {
            for (int l = 0; l < 32; l++) {
                int q1 = L[j + l], q2 = L[j + l + 32], q3 = L[j + l + 64], q4 = L[j + l + 96];
                ql[l] = (uint8_t)((q1 & 0xF) | ((q3 & 0xF) << 4));
                ql[l + 32] = (uint8_t)((q2 & 0xF) | ((q4 & 0xF) << 4));
                qh[l] = (uint8_t)((q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6));
            }
        }
    }
}

/* Q8_K (the activation type of K-quant dot products): one float scale per 256 and the sums of
 * every 16 quants. An all-zero block gets d = 0, zero quants and zero sums. */
static void q_q8_K(const float *x, ar_block_q8_K *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, y++) {
        float max = 0, amax = 0;
        for (int j = 0; j < AR_QK_K; j++)
            if (fabsf(x[j]) > amax) { amax = fabsf(x[j]); max = x[j]; }
        if (!amax) {
            memset(y, 0, sizeof *y);
            continue;
        }
        const float iscale = -127.f / max;
        for (int j = 0; j < AR_QK_K; j++) y->qs[j] = (int8_t)imin(127, nearest_int(iscale * x[j]));
        for (int j = 0; j < AR_QK_K / 16; j++) {
            int sum = 0;
            for (int ii = 0; ii < 16; ii++) sum += y->qs[16 * j + ii];
            y->bsums[j] = (int16_t)sum;
        }
        y->d = 1 / iscale;
    }
}

/* ---- quantization: non-linear IQ4 --------------------------------------------------------- */

/* One super-block of IQ4 (ggml's quantize_row_iq4_nl_impl with ntry 7 and no importance
 * weights): per sub-block of 32, search 16 scales for the best x^2-weighted fit to the
 * non-linear levels; with several sub-blocks, store 6-bit sub-scales against a common d and
 * requantize. n_sub == 1 is IQ4_NL (d is the sub-block scale itself). */
static void iq4_superblock(const float *x, int n_sub, uint16_t *dh, uint8_t *q4, uint16_t *scales_h,
                           uint8_t *scales_l)
{
    const int8_t *values = ar_iq4nl_values;
    const int ntry = 7;
    uint8_t L[AR_QK_K];
    float scales[AR_QK_K / 32], weight[32];
    memset(q4, 0, (size_t)n_sub * 16);
    *dh = f2h(0.f);
    float max_scale = 0, amax_scale = 0;
    for (int ib = 0; ib < n_sub; ib++) {
        const float *xb = x + 32 * ib;
        uint8_t *Lb = L + 32 * ib;
        for (int j = 0; j < 32; j++) weight[j] = xb[j] * xb[j];
        float amax = 0, max = 0;
        for (int j = 0; j < 32; j++)
            if (fabsf(xb[j]) > amax) { amax = fabsf(xb[j]); max = xb[j]; }
        if (amax < GROUP_MAX_EPS) {
            scales[ib] = 0;
            continue;
        }
        float d = -max / (float)values[0];
        float id = 1 / d;
        float sumqx = 0, sumq2 = 0;
        for (int j = 0; j < 32; j++) {
            int l = best_index(16, values, id * xb[j]);
            Lb[j] = (uint8_t)l;
            float q = values[l], w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
        float best = d * sumqx;
        for (int itry = -ntry; itry <= ntry; itry++) {
            id = (float)(itry + values[0]) / max;
            sumqx = sumq2 = 0;
            for (int j = 0; j < 32; j++) {
                float q = values[best_index(16, values, id * xb[j])], w = weight[j];
                sumqx += w * q * xb[j];
                sumq2 += w * q * q;
            }
            if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
                d = sumqx / sumq2;
                best = d * sumqx;
            }
        }
        scales[ib] = d;
        if (fabsf(d) > amax_scale) { amax_scale = fabsf(d); max_scale = d; }
    }
    if (n_sub > 1) {
        *scales_h = 0;
        float d = -max_scale / 32;
        *dh = f2h(d);
        float id = d ? 1 / d : 0.f;
        for (int ib = 0; ib < n_sub; ib++) {
            int l = imax(-32, imin(31, nearest_int(id * scales[ib])));
            float dl = d * (float)l;
            float idl = dl ? 1 / dl : 0.f;
            for (int j = 0; j < 32; j++) L[32 * ib + j] = (uint8_t)best_index(16, values, idl * x[32 * ib + j]);
            l += 32;
            if (ib % 2 == 0) scales_l[ib / 2] = (uint8_t)(l & 0xF);
            else scales_l[ib / 2] |= (uint8_t)((l & 0xF) << 4);
            *scales_h |= (uint16_t)((l >> 4) << (2 * ib));
        }
    } else {
        *dh = f2h(scales[0]);
        float id = scales[0] ? 1 / scales[0] : 0;
        for (int j = 0; j < 32; j++) L[j] = (uint8_t)best_index(16, values, id * x[j]);
    }
    for (int i = 0; i < n_sub; i++)
        for (int j = 0; j < 16; j++) q4[16 * i + j] = (uint8_t)(L[32 * i + j] | (L[32 * i + 16 + j] << 4));
}

static void q_iq4_nl(const float *x, ar_block_iq4_nl *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += QK, y++) iq4_superblock(x, 1, &y->d, y->qs, NULL, NULL);
}

static void q_iq4_xs(const float *x, ar_block_iq4_xs *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, y++)
        iq4_superblock(x, AR_QK_K / 32, &y->d, y->qs, &y->scales_h, y->scales_l);
}

int ar_quantize_row(int type, const float *src, void *dst, int64_t n)
{
    const ar_dtype_info *t = ar_dtype_get(type);
    if (!t || !t->quant) return AR_EUNSUPPORTED;
    if (n < 0 || n % t->block_elems) return AR_EINVAL;
    const int64_t nb = n / t->block_elems;
    switch (type) {
    case AR_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case AR_F16: {
        uint8_t *p = dst;
        for (int64_t i = 0; i < n; i++) { uint16_t h = ar_f32_to_f16(src[i]); memcpy(p + 2 * i, &h, 2); }
        break;
    }
    case AR_BF16: {
        uint8_t *p = dst;
        for (int64_t i = 0; i < n; i++) { uint16_t h = ar_f32_to_bf16(src[i]); memcpy(p + 2 * i, &h, 2); }
        break;
    }
    case AR_Q4_0:   q_q4_0(src, dst, nb); break;
    case AR_Q4_1:   q_q4_1(src, dst, nb); break;
    case AR_Q5_0:   q_q5_0(src, dst, nb); break;
    case AR_Q5_1:   q_q5_1(src, dst, nb); break;
    case AR_Q8_0:   q_q8_0(src, dst, nb); break;
    case AR_Q8_1:   q_q8_1(src, dst, nb); break;
    case AR_Q2_K:   q_q2_K(src, dst, nb); break;
    case AR_Q3_K:   q_q3_K(src, dst, nb); break;
    case AR_Q4_K:   q_q4_K(src, dst, nb); break;
    case AR_Q5_K:   q_q5_K(src, dst, nb); break;
    case AR_Q6_K:   q_q6_K(src, dst, nb); break;
    case AR_Q8_K:   q_q8_K(src, dst, nb); break;
    case AR_IQ4_NL: q_iq4_nl(src, dst, nb); break;
    case AR_IQ4_XS: q_iq4_xs(src, dst, nb); break;
    case AR_MXFP4:  q_mxfp4(src, dst, nb); break;
    case AR_Q1_0:   q_q1_0(src, dst, nb); break;
    case AR_Q2_0:   q_q2_0(src, dst, nb); break;
    default: return AR_EUNSUPPORTED;
    }
    return AR_OK;
}
