/* compute/cpu/gemm.c — activation conversion, the scalar reference kernels, and dispatch.
 *
 * The reference dot products follow ggml's generic vec_dot functions step for step: integer sums
 * per block (sub-block scales applied in integers), then one float scale per block, with the
 * same float accumulation structure (the K-quants' eight partial sums, the Q8_K bsums trick for
 * the K-quant mins). They are the ground truth every fast path is tested against.
 *
 * Dispatch: the best implementation the CPU supports is picked on first use (cpu_features);
 * ar_gemm_force overrides it for tests and benchmarks. A type without a fast path in the chosen
 * implementation uses the scalar reference. */
#include "compute/cpu/gemm.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "compute/cpu/cpu_features.h"
#include "format/quant.h"

/* ---- activation types and conversion ----------------------------------------------------- */

int ar_gemm_act_type(int wtype)
{
    switch (wtype) {
    case AR_F32:  return AR_F32;
    case AR_F16:  return AR_F16;
    case AR_BF16: return AR_BF16;
    case AR_Q4_0: case AR_Q5_0: case AR_Q8_0: case AR_IQ4_NL: return AR_Q8_0;
    case AR_Q4_1: case AR_Q5_1: return AR_Q8_1;
    case AR_Q2_K: case AR_Q3_K: case AR_Q4_K: case AR_Q5_K: case AR_Q6_K: case AR_IQ4_XS:
        return AR_Q8_K;
    default: return -1;
    }
}

size_t ar_gemm_act_row_bytes(int wtype, int64_t n_in)
{
    const int at = ar_gemm_act_type(wtype);
    if (at < 0) return 0;
    const ar_dtype_info *wi = ar_dtype_get(wtype);
    if (!wi || n_in % wi->block_elems) return 0;
    if (at == AR_Q8_K) return ar_row_bytes(at, n_in) + (size_t)(n_in / AR_QK_K) * AR_GEMM_Q8K_PAIRS;
    if (at == AR_Q8_0) return ar_row_bytes(at, n_in) + (size_t)(n_in / 32) * AR_GEMM_Q8_0_REC;
    return ar_row_bytes(at, n_in);
}

/* The pair-sum records after a row's nb Q8_K blocks (gemm.h). */
static void q8k_pairs(void *xq, int64_t nb)
{
    const ar_block_q8_K *blk = xq;
    int16_t *out = (int16_t *)(void *)((uint8_t *)xq + (size_t)nb * sizeof(ar_block_q8_K));
    for (int64_t b = 0; b < nb; b++)
        for (int j = 0; j < 8; j++) {
            int16_t v;
            const int sum = blk[b].bsums[2 * j] + blk[b].bsums[2 * j + 1];   /* |sum| <= 32 * 128 */
            v = (int16_t)sum;
            memcpy(out + 8 * b + j, &v, sizeof v);
        }
}

static float max_abs(const float *x, int n)
{
    float amax = 0.0f;
    for (int j = 0; j < n; j++) {
        const float a = fabsf(x[j]);
        amax = a > amax ? a : amax;
    }
    return amax;
}

/* ggml-cpu x86 rounding of x*id to int8: nearest-even, saturated to [-128, 127]. */
static int8_t round_q8(float v)
{
    const float r = nearbyintf(v);
    if (!(r > -128.0f)) return (int8_t)-128; /* also NaN, as cvtps + packs give */
    if (r > 127.0f) return 127;
    return (int8_t)(int)r;
}

/* Q8_0 blocks, then one record per block (gemm.h): d as float, -128 x the quant sum as int32 */
static void act_q8_0(const float *x, void *xq, int64_t nb)
{
    ar_block_q8_0 *y = xq;
    uint8_t *rec = (uint8_t *)xq + (size_t)nb * sizeof(ar_block_q8_0);
    for (int64_t i = 0; i < nb; i++, x += 32, y++, rec += AR_GEMM_Q8_0_REC) {
        const float amax = max_abs(x, 32);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t sum = 0;
        y->d = ar_f32_to_f16(d);
        for (int j = 0; j < 32; j++) {
            y->qs[j] = round_q8(x[j] * id);
            sum += y->qs[j];
        }
        const float df = ar_f16_to_f32(y->d);
        const int32_t corr = -128 * sum;   /* |sum| <= 32 * 128 */
        memcpy(rec, &df, sizeof df);
        memcpy(rec + 4, &corr, sizeof corr);
    }
}

static void act_q8_1(const float *x, ar_block_q8_1 *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, x += 32, y++) {
        const float amax = max_abs(x, 32);
        const float d = amax / 127.0f;
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < 32; j++) {
            y->qs[j] = round_q8(x[j] * id);
            sum += y->qs[j];
        }
        y->d = ar_f32_to_f16(d);
        y->s = ar_f32_to_f16(d * (float)sum);
    }
}

enum { ISA_UNSET = 0, ISA_SCALAR, ISA_AVX2, ISA_AVX512, ISA_NEON };
static int isa_now(void);

void ar_gemm_quantize_act(int wtype, const float *x, void *xq, int64_t n_in)
{
    switch (ar_gemm_act_type(wtype)) {
    case AR_Q8_0:
#if defined(__x86_64__)
        if (isa_now() == ISA_AVX512 && ar_gemm_avx512_q8_0(x, xq, n_in / 32)) break;
#endif
        act_q8_0(x, xq, n_in / 32);
        break;
    case AR_Q8_1: act_q8_1(x, xq, n_in / 32); break;
    case AR_Q8_K:
#if defined(__x86_64__)
        if ((isa_now() == ISA_AVX512 && ar_gemm_avx512_q8_K(x, xq, n_in / AR_QK_K)) ||
            (isa_now() == ISA_AVX2 && ar_gemm_avx2_q8_K(x, xq, n_in / AR_QK_K))) {
            q8k_pairs(xq, n_in / AR_QK_K);
            break;
        }
#endif
        ar_quantize_row(AR_Q8_K, x, xq, n_in);
        q8k_pairs(xq, n_in / AR_QK_K);
        break;
    case AR_F32:  memcpy(xq, x, (size_t)n_in * sizeof(float)); break;
    case AR_F16: {
        uint16_t *h = xq;
        for (int64_t i = 0; i < n_in; i++) h[i] = ar_f32_to_f16(x[i]);
        break;
    }
    case AR_BF16: {
        uint16_t *h = xq;
        for (int64_t i = 0; i < n_in; i++) h[i] = ar_f32_to_bf16(x[i]);
        break;
    }
    default: break;
    }
}

/* ---- scalar reference dot products (one weight row . one activation row) ------------------ */

typedef float (*dot_fn)(const void *w, const void *a, int64_t n);

static inline float f16(uint16_t h) { return ar_f16_to_f32(h); }

static float dot_f32(const void *w, const void *a, int64_t n)
{
    const float *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(x[i] * y[i]);
    return (float)sum;
}

static float dot_f16(const void *w, const void *a, int64_t n)
{
    const uint16_t *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(f16(x[i]) * f16(y[i]));
    return (float)sum;
}

static float dot_bf16(const void *w, const void *a, int64_t n)
{
    const uint16_t *x = w, *y = a;
    double sum = 0.0;
    for (int64_t i = 0; i < n; i++) sum += (double)(ar_bf16_to_f32(x[i]) * ar_bf16_to_f32(y[i]));
    return (float)sum;
}

static float dot_q4_0(const void *w, const void *a, int64_t n)
{
    const ar_block_q4_0 *x = w;
    const ar_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        int lo = 0, hi = 0;
        for (int j = 0; j < 16; j++) {
            lo += ((x[b].qs[j] & 0xF) - 8) * y[b].qs[j];
            hi += ((x[b].qs[j] >> 4) - 8) * y[b].qs[j + 16];
        }
        sum += (float)(lo + hi) * f16(x[b].d) * f16(y[b].d);
    }
    return sum;
}

static float dot_q4_1(const void *w, const void *a, int64_t n)
{
    const ar_block_q4_1 *x = w;
    const ar_block_q8_1 *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        int lo = 0, hi = 0;
        for (int j = 0; j < 16; j++) {
            lo += (x[b].qs[j] & 0xF) * y[b].qs[j];
            hi += (x[b].qs[j] >> 4) * y[b].qs[j + 16];
        }
        sum += (f16(x[b].d) * f16(y[b].d)) * (float)(lo + hi) + f16(x[b].m) * f16(y[b].s);
    }
    return sum;
}

static float dot_q5_0(const void *w, const void *a, int64_t n)
{
    const ar_block_q5_0 *x = w;
    const ar_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        uint32_t qh;
        memcpy(&qh, x[b].qh, 4);
        int lo = 0, hi = 0;
        for (int j = 0; j < 16; j++) {
            const int v0 = ((x[b].qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4)) - 16;
            const int v1 = ((x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4)) - 16;
            lo += v0 * y[b].qs[j];
            hi += v1 * y[b].qs[j + 16];
        }
        sum += (f16(x[b].d) * f16(y[b].d)) * (float)(lo + hi);
    }
    return sum;
}

static float dot_q5_1(const void *w, const void *a, int64_t n)
{
    const ar_block_q5_1 *x = w;
    const ar_block_q8_1 *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        uint32_t qh;
        memcpy(&qh, x[b].qh, 4);
        int lo = 0, hi = 0;
        for (int j = 0; j < 16; j++) {
            const int v0 = (x[b].qs[j] & 0xF) | (int)(((qh >> j) & 1) << 4);
            const int v1 = (x[b].qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            lo += v0 * y[b].qs[j];
            hi += v1 * y[b].qs[j + 16];
        }
        sum += (f16(x[b].d) * f16(y[b].d)) * (float)(lo + hi) + f16(x[b].m) * f16(y[b].s);
    }
    return sum;
}

static float dot_q8_0(const void *w, const void *a, int64_t n)
{
    const ar_block_q8_0 *x = w;
    const ar_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        int s = 0;
        for (int j = 0; j < 32; j++) s += x[b].qs[j] * y[b].qs[j];
        sum += (float)s * (f16(x[b].d) * f16(y[b].d));
    }
    return sum;
}

static float dot_iq4_nl(const void *w, const void *a, int64_t n)
{
    const ar_block_iq4_nl *x = w;
    const ar_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / 32; b++) {
        const float d = f16(y[b].d) * f16(x[b].d);
        int lo = 0, hi = 0;
        for (int j = 0; j < 16; j++) {
            lo += y[b].qs[j] * ar_iq4nl_values[x[b].qs[j] & 0xF];
            hi += y[b].qs[j + 16] * ar_iq4nl_values[x[b].qs[j] >> 4];
        }
        sum += d * (float)(lo + hi);
    }
    return sum;
}

/* K-quants: 256 weights expanded to int8, then ggml's eight running partial sums: lane l of
 * part[] collects the scaled products of positions l mod 8, scaled per block by d*d8. */
static float finish_parts(const float parts[8], float sum)
{
    for (int l = 0; l < 8; l++) sum += parts[l];
    return sum;
}

/* Add scale * q[0..n) . a[0..n) into the 8 lanes (n a multiple of 8). */
static void parts_add(int32_t lanes[8], const int8_t *q, const int8_t *a, int n, int scale)
{
    for (int i = 0; i < n; i += 8)
        for (int l = 0; l < 8; l++) lanes[l] += scale * (int16_t)(q[i + l] * a[i + l]);
}

/* The 6-bit scales and mins of Q4_K/Q5_K, sub-block j (0..7). */
static void k4_scales(const uint8_t s[12], uint8_t sc[8], uint8_t mn[8])
{
    for (int j = 0; j < 8; j++) ar_get_scale_min_k4(j, s, &sc[j], &mn[j]);
}

static float dot_q4_K(const void *w, const void *a, int64_t n)
{
    const ar_block_q4_K *x = w;
    const ar_block_q8_K *y = a;
    float parts[8] = {0}, sum = 0.0f;
    for (int64_t b = 0; b < n / AR_QK_K; b++) {
        int8_t q[AR_QK_K];
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                q[64 * c + l] = (int8_t)(x[b].qs[32 * c + l] & 0xF);
                q[64 * c + 32 + l] = (int8_t)(x[b].qs[32 * c + l] >> 4);
            }
        uint8_t sc[8], mn[8];
        k4_scales(x[b].scales, sc, mn);
        int mins = 0;
        for (int j = 0; j < 16; j++) mins += y[b].bsums[j] * mn[j / 2];
        int32_t lanes[8] = {0};
        for (int j = 0; j < 8; j++) parts_add(lanes, q + 32 * j, y[b].qs + 32 * j, 32, sc[j]);
        const float d = f16(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) parts[l] += d * (float)lanes[l];
        sum -= f16(x[b].dmin) * y[b].d * (float)mins;
    }
    return finish_parts(parts, sum);
}

static float dot_q5_K(const void *w, const void *a, int64_t n)
{
    const ar_block_q5_K *x = w;
    const ar_block_q8_K *y = a;
    float parts[8] = {0}, sum = 0.0f;
    for (int64_t b = 0; b < n / AR_QK_K; b++) {
        int8_t q[AR_QK_K];
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++) {
                const uint8_t h = x[b].qh[l];
                q[64 * c + l] = (int8_t)((x[b].qs[32 * c + l] & 0xF) | (((h >> (2 * c)) & 1) << 4));
                q[64 * c + 32 + l] = (int8_t)((x[b].qs[32 * c + l] >> 4) | (((h >> (2 * c + 1)) & 1) << 4));
            }
        uint8_t sc[8], mn[8];
        k4_scales(x[b].scales, sc, mn);
        int mins = 0;
        for (int j = 0; j < 16; j++) mins += y[b].bsums[j] * mn[j / 2];
        int32_t lanes[8] = {0};
        for (int j = 0; j < 8; j++) parts_add(lanes, q + 32 * j, y[b].qs + 32 * j, 32, sc[j]);
        const float d = f16(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) parts[l] += d * (float)lanes[l];
        sum -= f16(x[b].dmin) * y[b].d * (float)mins;
    }
    return finish_parts(parts, sum);
}

static float dot_q6_K(const void *w, const void *a, int64_t n)
{
    const ar_block_q6_K *x = w;
    const ar_block_q8_K *y = a;
    float parts[8] = {0};
    for (int64_t b = 0; b < n / AR_QK_K; b++) {
        int8_t q[AR_QK_K];
        for (int half = 0; half < 2; half++) {
            const uint8_t *ql = x[b].ql + 64 * half, *qh = x[b].qh + 32 * half;
            int8_t *o = q + 128 * half;
            for (int l = 0; l < 32; l++) {
                o[l] = (int8_t)(((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32);
                o[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32);
                o[l + 64] = (int8_t)(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
                o[l + 96] = (int8_t)(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
            }
        }
        int32_t lanes[8] = {0};
        for (int j = 0; j < 16; j++) parts_add(lanes, q + 16 * j, y[b].qs + 16 * j, 16, x[b].scales[j]);
        const float d = f16(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) parts[l] += d * (float)lanes[l];
    }
    return finish_parts(parts, 0.0f);
}

static float dot_q2_K(const void *w, const void *a, int64_t n)
{
    const ar_block_q2_K *x = w;
    const ar_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / AR_QK_K; b++) {
        const uint8_t *sc = x[b].scales;
        int mins = 0;
        for (int j = 0; j < 16; j++) mins += y[b].bsums[j] * (sc[j] >> 4);
        const float dall = y[b].d * f16(x[b].d);
        const float dmin = y[b].d * f16(x[b].dmin);
        int isum = 0;
        const int8_t *q8 = y[b].qs;
        for (int half = 0; half < 2; half++) {
            const uint8_t *q2 = x[b].qs + 32 * half;
            for (int shift = 0; shift < 8; shift += 2, q8 += 32) {
                const int is = 8 * half + shift; /* two scales per 32 */
                int s0 = 0, s1 = 0;
                for (int l = 0; l < 16; l++) s0 += q8[l] * ((q2[l] >> shift) & 3);
                for (int l = 16; l < 32; l++) s1 += q8[l] * ((q2[l] >> shift) & 3);
                isum += (sc[is] & 0xF) * s0 + (sc[is + 1] & 0xF) * s1;
            }
        }
        sum += dall * (float)isum - dmin * (float)mins;
    }
    return sum;
}

/* Q3_K's 16 6-bit scales (stored offset by 32). */
static void q3k_scales(const uint8_t s[12], int sc[16])
{
    for (int j = 0; j < 16; j++) {
        const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
        const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
        sc[j] = (lo | (hi << 4)) - 32;
    }
}

static float dot_q3_K(const void *w, const void *a, int64_t n)
{
    const ar_block_q3_K *x = w;
    const ar_block_q8_K *y = a;
    float parts[8] = {0};
    for (int64_t b = 0; b < n / AR_QK_K; b++) {
        int8_t q[AR_QK_K];
        for (int half = 0; half < 2; half++) {
            const uint8_t *q3 = x[b].qs + 32 * half;
            for (int s = 0; s < 4; s++) {
                const uint8_t m = (uint8_t)(1u << (4 * half + s));
                int8_t *o = q + 128 * half + 32 * s;
                for (int l = 0; l < 32; l++)
                    o[l] = (int8_t)(((q3[l] >> (2 * s)) & 3) - ((x[b].hmask[l] & m) ? 0 : 4));
            }
        }
        int sc[16];
        q3k_scales(x[b].scales, sc);
        int32_t lanes[8] = {0};
        for (int j = 0; j < 16; j++) parts_add(lanes, q + 16 * j, y[b].qs + 16 * j, 16, sc[j]);
        const float d = f16(x[b].d) * y[b].d;
        for (int l = 0; l < 8; l++) parts[l] += d * (float)lanes[l];
    }
    return finish_parts(parts, 0.0f);
}

static float dot_iq4_xs(const void *w, const void *a, int64_t n)
{
    const ar_block_iq4_xs *x = w;
    const ar_block_q8_K *y = a;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / AR_QK_K; b++) {
        const float d4d8 = f16(x[b].d) * y[b].d;
        for (int j = 0; j < 8; j++) {
            const int ls = ((x[b].scales_l[j / 2] >> (4 * (j % 2))) & 0xF) |
                           (((x[b].scales_h >> (2 * j)) & 3) << 4);
            const uint8_t *qs = x[b].qs + 16 * j;
            const int8_t *q8 = y[b].qs + 32 * j;
            int lo = 0, hi = 0;
            for (int l = 0; l < 16; l++) {
                lo += q8[l] * ar_iq4nl_values[qs[l] & 0xF];
                hi += q8[l + 16] * ar_iq4nl_values[qs[l] >> 4];
            }
            sum += d4d8 * (float)(ls - 32) * (float)(lo + hi);
        }
    }
    return sum;
}

static void gemm_scalar(dot_fn dot, const void *w, size_t w_row_bytes, int64_t n_in, int64_t o_lo,
                        int64_t o_hi, const void *xq, size_t xq_row_bytes, int M, float *y,
                        int64_t ldy)
{
    const uint8_t *wb = w, *xb = xq;
    for (int64_t o = o_lo; o < o_hi; o++)
        for (int m = 0; m < M; m++)
            y[(int64_t)m * ldy + o] = dot(wb + (size_t)o * w_row_bytes, xb + (size_t)m * xq_row_bytes, n_in);
}

#define SCALAR_KERNEL(name, dotf)                                                                \
    static void name(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,       \
                     const void *xq, size_t xrb, int M, float *y, int64_t ldy)                   \
    {                                                                                            \
        gemm_scalar(dotf, w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy);                         \
    }
SCALAR_KERNEL(scalar_f32, dot_f32)
SCALAR_KERNEL(scalar_f16, dot_f16)
SCALAR_KERNEL(scalar_bf16, dot_bf16)
SCALAR_KERNEL(scalar_q4_0, dot_q4_0)
SCALAR_KERNEL(scalar_q4_1, dot_q4_1)
SCALAR_KERNEL(scalar_q5_0, dot_q5_0)
SCALAR_KERNEL(scalar_q5_1, dot_q5_1)
SCALAR_KERNEL(scalar_q8_0, dot_q8_0)
SCALAR_KERNEL(scalar_iq4_nl, dot_iq4_nl)
SCALAR_KERNEL(scalar_q2_K, dot_q2_K)
SCALAR_KERNEL(scalar_q3_K, dot_q3_K)
SCALAR_KERNEL(scalar_q4_K, dot_q4_K)
SCALAR_KERNEL(scalar_q5_K, dot_q5_K)
SCALAR_KERNEL(scalar_q6_K, dot_q6_K)
SCALAR_KERNEL(scalar_iq4_xs, dot_iq4_xs)

ar_gemm_kernel ar_gemm_scalar_kernel(int wtype)
{
    switch (wtype) {
    case AR_F32:    return scalar_f32;
    case AR_F16:    return scalar_f16;
    case AR_BF16:   return scalar_bf16;
    case AR_Q4_0:   return scalar_q4_0;
    case AR_Q4_1:   return scalar_q4_1;
    case AR_Q5_0:   return scalar_q5_0;
    case AR_Q5_1:   return scalar_q5_1;
    case AR_Q8_0:   return scalar_q8_0;
    case AR_IQ4_NL: return scalar_iq4_nl;
    case AR_Q2_K:   return scalar_q2_K;
    case AR_Q3_K:   return scalar_q3_K;
    case AR_Q4_K:   return scalar_q4_K;
    case AR_Q5_K:   return scalar_q5_K;
    case AR_Q6_K:   return scalar_q6_K;
    case AR_IQ4_XS: return scalar_iq4_xs;
    default:        return NULL;
    }
}

/* ---- dispatch ---------------------------------------------------------------------------- */

static const char *const isa_names[] = {"unset", "scalar", "avx2", "avx512", "neon"};

/* The implementation in use; chosen on first use, changed only by ar_gemm_force. */
static atomic_int current_isa = ISA_UNSET;

static int isa_available(int isa)
{
    switch (isa) {
    case ISA_SCALAR: return 1;
#if defined(__x86_64__)
    case ISA_AVX2:   return ar_cpu_has_avx2_set() && ar_gemm_avx2_kernel(AR_Q4_K) != NULL;
    case ISA_AVX512: return ar_cpu_has_avx512_set() && ar_gemm_avx512_kernel(AR_Q4_K) != NULL;
#endif
#if defined(__aarch64__)
    case ISA_NEON:   return ar_cpu_has_neon_dot() && ar_gemm_neon_kernel(AR_Q4_K) != NULL;
#endif
    default:         return 0;
    }
}

static int best_isa(void)
{
    if (isa_available(ISA_AVX512)) return ISA_AVX512;
    if (isa_available(ISA_AVX2)) return ISA_AVX2;
    if (isa_available(ISA_NEON)) return ISA_NEON;
    return ISA_SCALAR;
}

static int isa_now(void)
{
    int isa = atomic_load_explicit(&current_isa, memory_order_relaxed);
    if (isa == ISA_UNSET) {
        isa = best_isa();
        atomic_store_explicit(&current_isa, isa, memory_order_relaxed);
    }
    return isa;
}

int ar_gemm_force(const char *isa)
{
    int want = ISA_UNSET;
    if (!isa) {
        want = best_isa();
    } else {
        for (int i = ISA_SCALAR; i <= ISA_NEON; i++)
            if (!strcmp(isa, isa_names[i])) want = i;
        if (want == ISA_UNSET || !isa_available(want)) return -1;
    }
    atomic_store_explicit(&current_isa, want, memory_order_relaxed);
    return 0;
}

const char *ar_gemm_isa(void) { return isa_names[isa_now()]; }

static ar_gemm_kernel kernel_for(int isa, int wtype)
{
    ar_gemm_kernel k = NULL;
    switch (isa) {
#if defined(__x86_64__)
    case ISA_AVX512:
        /* AVX-512 VNNI without BF16 (Ice Lake, Tiger Lake): only the BF16 kernel needs
         * vdpbf16ps, so only BF16 drops to AVX2 there. */
        if (wtype == AR_BF16 && !ar_cpu_features_get()->avx512bf16) k = ar_gemm_avx2_kernel(wtype);
        else k = ar_gemm_avx512_kernel(wtype);
        break;
    case ISA_AVX2:   k = ar_gemm_avx2_kernel(wtype); break;
#endif
#if defined(__aarch64__)
    case ISA_NEON:   k = ar_gemm_neon_kernel(wtype); break;
#endif
    default: break;
    }
    return k ? k : ar_gemm_scalar_kernel(wtype);
}

void ar_gemm(int wtype, const void *w, size_t w_row_bytes, int64_t n_in, int64_t o_lo, int64_t o_hi,
             const void *xq, size_t xq_row_bytes, int M, float *y, int64_t ldy)
{
    if (o_hi <= o_lo || M <= 0) return;
    ar_gemm_kernel k = kernel_for(isa_now(), wtype);
    if (k) k(w, w_row_bytes, n_in, o_lo, o_hi, xq, xq_row_bytes, M, y, ldy);
}

/* ---- the 16-row tile layout (gemm.h) ---------------------------------------------------- */

enum { TILE_ROWS = 16 };

static ar_gemm_kernel tile_kernel_for(int isa, int wtype)
{
#if defined(__x86_64__)
    if (isa == ISA_AVX512) return ar_gemm_avx512_tile_kernel(wtype);
    if (isa == ISA_AVX2) return ar_gemm_avx2_tile_kernel(wtype);
#endif
    (void)isa;
    (void)wtype;
    return NULL;
}

static int tile_type(int wtype)
{
    return wtype == AR_Q2_K || wtype == AR_Q3_K || wtype == AR_Q4_K || wtype == AR_Q5_K || wtype == AR_Q6_K || wtype == AR_IQ4_XS || wtype == AR_Q8_0 ||
           wtype == AR_Q4_0 || wtype == AR_IQ4_NL;
}

/* Bytes at the head of a block that the tile layout takes after the rest (gemm.h): the d of the
 * 32-element types, so that their quants fill the dword columns. */
static size_t tile_rot(int wtype) { return wtype == AR_Q8_0 || wtype == AR_Q4_0 || wtype == AR_IQ4_NL ? 2 : 0; }

/* What the tile layout xors into each quant byte (the block's bytes before its rotated head): Q8_0's
 * are stored + 128 (gemm.h). */
static uint32_t tile_flip(int wtype) { return wtype == AR_Q8_0 ? 0x80808080u : 0; }

/* 4 bytes from s to d, xored with x */
static void copy4_xor(uint8_t *d, const uint8_t *s, uint32_t x)
{
    uint32_t v;
    memcpy(&v, s, 4);
    v ^= x;
    memcpy(d, &v, 4);
}

int ar_gemm_tiles_wanted(int wtype, int64_t n_in, int64_t n_out)
{
    const ar_dtype_info *info = ar_dtype_get(wtype);
    return tile_type(wtype) && n_in % info->block_elems == 0 &&
           (size_t)(n_in / info->block_elems) * info->block_bytes <= AR_GEMM_TILE_ROW_MAX &&
           n_out > 0 && n_out % TILE_ROWS == 0 && tile_kernel_for(isa_now(), wtype) != NULL;
}

/* Offset in a tile of byte j of row i's block (block_bytes bb). */
static size_t tile_offset(size_t bb, int i, size_t j)
{
    const size_t body = bb / 4 * 4;
    if (j < body) return (j / 4) * 64 + 4 * (size_t)i + j % 4;
    return body * TILE_ROWS + (size_t)i * (bb - body) + (j - body);
}

int ar_gemm_pack_tiles(int wtype, void *data, size_t row_bytes, int64_t n_out)
{
    if (!tile_type(wtype) || n_out <= 0 || n_out % TILE_ROWS) return -1;
    const size_t bb = ar_dtype_get(wtype)->block_bytes, nb = row_bytes / bb, tb = TILE_ROWS * bb, rot = tile_rot(wtype);
    const uint32_t flip = tile_flip(wtype);
    uint8_t *tmp = malloc(TILE_ROWS * row_bytes);
    if (!tmp) return -1;
    for (int64_t g = 0; g < n_out / TILE_ROWS; g++) {
        uint8_t *grp = (uint8_t *)data + (size_t)g * TILE_ROWS * row_bytes;
        memcpy(tmp, grp, TILE_ROWS * row_bytes);
        for (size_t b = 0; b < nb; b++)
            for (int i = 0; i < TILE_ROWS; i++) {
                /* byte j of the block as the tile takes it is byte (j + rot) % bb of the stored block */
                const uint8_t *src = tmp + (size_t)i * row_bytes + b * bb;
                uint8_t *tile = grp + b * tb;
                size_t j = 0;
                for (; j + 4 <= bb - rot; j += 4) copy4_xor(tile + tile_offset(bb, i, j), src + rot + j, flip);
                for (; j < bb; j++) tile[tile_offset(bb, i, j)] = src[j + rot < bb ? j + rot : j + rot - bb];
            }
    }
    free(tmp);
    return 0;
}

void ar_gemm_tile_row(int wtype, const void *data, size_t row_bytes, int64_t row, void *out)
{
    const size_t bb = ar_dtype_get(wtype)->block_bytes, nb = row_bytes / bb, tb = TILE_ROWS * bb, rot = tile_rot(wtype);
    const uint32_t flip = tile_flip(wtype);
    const uint8_t *grp = (const uint8_t *)data + (size_t)(row / TILE_ROWS) * TILE_ROWS * row_bytes;
    const int i = (int)(row % TILE_ROWS);
    uint8_t *dst = out;
    for (size_t b = 0; b < nb; b++) {
        const uint8_t *tile = grp + b * tb;
        uint8_t *blk = dst + b * bb;
        size_t j = 0;
        for (; j + 4 <= bb - rot; j += 4) copy4_xor(blk + rot + j, tile + tile_offset(bb, i, j), flip);
        for (; j < bb; j++) blk[j + rot < bb ? j + rot : j + rot - bb] = tile[tile_offset(bb, i, j)];
    }
}

void ar_gemm_tiled(int wtype, const void *w, size_t w_row_bytes, int64_t n_in, int64_t o_lo, int64_t o_hi,
                   const void *xq, size_t xq_row_bytes, int M, float *y, int64_t ldy)
{
    if (o_hi <= o_lo || M <= 0) return;
    const int isa = isa_now();
    ar_gemm_kernel k = tile_kernel_for(isa, wtype);
    if (k) {
        k(w, w_row_bytes, n_in, o_lo, o_hi, xq, xq_row_bytes, M, y, ldy);
        return;
    }
    /* no tile kernel here (another ISA was forced after the weights were packed): row by row */
    k = kernel_for(isa, wtype);
    if (!k) return;
    uint8_t stack[AR_GEMM_TILE_ROW_MAX], *row = w_row_bytes <= sizeof stack ? stack : malloc(w_row_bytes);
    if (!row) {   /* never leave garbage */
        for (int m = 0; m < M; m++)
            for (int64_t o = o_lo; o < o_hi; o++) y[(size_t)m * (size_t)ldy + (size_t)o] = NAN;
        return;
    }
    for (int64_t o = o_lo; o < o_hi; o++) {
        ar_gemm_tile_row(wtype, w, w_row_bytes, o, row);
        k(row, w_row_bytes, n_in, 0, 1, xq, xq_row_bytes, M, y + o, ldy);
    }
    if (row != stack) free(row);
}
