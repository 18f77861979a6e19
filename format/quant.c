/* format/quant.c — the ggml type table and the scalar dequantization reference.
 *
 * Owns: the per-type facts (name, block size, bytes, what arbor can do with it) and row
 * dequantization (blocks -> float). Quantization (float -> blocks) is format/quant_encode.c.
 *
 * Invariant: every result is bit-identical to ggml's reference dequantize_row_* (ggml-quants.c):
 * the same float operations in the same order, e.g. Q6_K is `(d * scale) * q`, not `d * (scale * q)`,
 * and Q4_1 is `q * d + m` with no FMA contraction (ISO C mode, -std=c11, implies
 * -ffp-contract=off). tests/test_quant_oracle compares with ggml's own to_float bit for bit.
 *
 * Data flow: ar_dequantize_row checks the type and length and runs one block loop per type;
 * everything is reentrant (no state besides constant tables and the lazily built type list). */
#include "format/quant.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/half.h"

#define QK 32                   /* elements per block of the 32-wide types */

_Static_assert(sizeof(ar_block_q4_0) == 18, "q4_0 block");
_Static_assert(sizeof(ar_block_q4_1) == 20, "q4_1 block");
_Static_assert(sizeof(ar_block_q5_0) == 22, "q5_0 block");
_Static_assert(sizeof(ar_block_q5_1) == 24, "q5_1 block");
_Static_assert(sizeof(ar_block_q8_0) == 34, "q8_0 block");
_Static_assert(sizeof(ar_block_q8_1) == 36, "q8_1 block");
_Static_assert(sizeof(ar_block_q2_K) == 84, "q2_K block");
_Static_assert(sizeof(ar_block_q3_K) == 110, "q3_K block");
_Static_assert(sizeof(ar_block_q4_K) == 144, "q4_K block");
_Static_assert(sizeof(ar_block_q5_K) == 176, "q5_K block");
_Static_assert(sizeof(ar_block_q6_K) == 210, "q6_K block");
_Static_assert(sizeof(ar_block_q8_K) == 292, "q8_K block");
_Static_assert(sizeof(ar_block_iq4_nl) == 18, "iq4_nl block");
_Static_assert(sizeof(ar_block_iq4_xs) == 136, "iq4_xs block");
_Static_assert(sizeof(ar_block_q1_0) == 18, "q1_0 block");
_Static_assert(sizeof(ar_block_q2_0) == 18, "q2_0 block");
_Static_assert(sizeof(ar_block_mxfp4) == 17, "mxfp4 block");

const int8_t ar_iq4nl_values[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };
const int8_t ar_mxfp4_values[16] = { 0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12 };

/* ---- type table ------------------------------------------------------------------------- */

#define T(id, nm, be, bb, dq, q) [id] = { nm, be, bb, dq, q }
static const ar_dtype_info types[AR_DTYPE_COUNT] = {
    T(AR_F32,     "f32",     1,       4,   true,  true),
    T(AR_F16,     "f16",     1,       2,   true,  true),
    T(AR_Q4_0,    "q4_0",    32,      18,  true,  true),
    T(AR_Q4_1,    "q4_1",    32,      20,  true,  true),
    T(AR_Q5_0,    "q5_0",    32,      22,  true,  true),
    T(AR_Q5_1,    "q5_1",    32,      24,  true,  true),
    T(AR_Q8_0,    "q8_0",    32,      34,  true,  true),
    T(AR_Q8_1,    "q8_1",    32,      36,  false, true),  /* activation type: ggml has no to_float */
    T(AR_Q2_K,    "q2_K",    AR_QK_K, 84,  true,  true),
    T(AR_Q3_K,    "q3_K",    AR_QK_K, 110, true,  true),
    T(AR_Q4_K,    "q4_K",    AR_QK_K, 144, true,  true),
    T(AR_Q5_K,    "q5_K",    AR_QK_K, 176, true,  true),
    T(AR_Q6_K,    "q6_K",    AR_QK_K, 210, true,  true),
    T(AR_Q8_K,    "q8_K",    AR_QK_K, 292, true,  true),
    T(AR_IQ2_XXS, "iq2_xxs", AR_QK_K, 66,  false, false),
    T(AR_IQ2_XS,  "iq2_xs",  AR_QK_K, 74,  false, false),
    T(AR_IQ3_XXS, "iq3_xxs", AR_QK_K, 98,  false, false),
    T(AR_IQ1_S,   "iq1_s",   AR_QK_K, 50,  false, false),
    T(AR_IQ4_NL,  "iq4_nl",  32,      18,  true,  true),
    T(AR_IQ3_S,   "iq3_s",   AR_QK_K, 110, false, false),
    T(AR_IQ2_S,   "iq2_s",   AR_QK_K, 82,  false, false),
    T(AR_IQ4_XS,  "iq4_xs",  AR_QK_K, 136, true,  true),
    T(AR_I8,      "i8",      1,       1,   false, false),
    T(AR_I16,     "i16",     1,       2,   false, false),
    T(AR_I32,     "i32",     1,       4,   false, false),
    T(AR_I64,     "i64",     1,       8,   false, false),
    T(AR_F64,     "f64",     1,       8,   false, false),
    T(AR_IQ1_M,   "iq1_m",   AR_QK_K, 56,  false, false),
    T(AR_BF16,    "bf16",    1,       2,   true,  true),
    T(AR_TQ1_0,   "tq1_0",   AR_QK_K, 54,  false, false),
    T(AR_TQ2_0,   "tq2_0",   AR_QK_K, 66,  false, false),
    T(AR_MXFP4,   "mxfp4",   32,      17,  true,  true),
    T(AR_NVFP4,   "nvfp4",   64,      36,  false, false),
    T(AR_Q1_0,    "q1_0",    128,     18,  true,  true),
    T(AR_Q2_0,    "q2_0",    64,      18,  true,  true),
};
#undef T

const ar_dtype_info *ar_dtype_get(int type)
{
    if (type < 0 || type >= AR_DTYPE_COUNT || !types[type].name) return NULL;
    return &types[type];
}

const char *ar_dtype_name(int type)
{
    static _Thread_local char buf[32];
    const ar_dtype_info *t = ar_dtype_get(type);
    if (t) return t->name;
    snprintf(buf, sizeof buf, "unknown(%d)", type);
    return buf;
}

int ar_dtype_from_name(const char *name)
{
    if (!name) return -1;
    for (int i = 0; i < AR_DTYPE_COUNT; i++)
        if (types[i].name && !strcasecmp(types[i].name, name)) return i;
    return -1;
}

size_t ar_row_bytes(int type, int64_t n)
{
    const ar_dtype_info *t = ar_dtype_get(type);
    if (!t || n < 0 || n % t->block_elems) return 0;
    return (size_t)(n / t->block_elems) * t->block_bytes;
}

static char supported[512];
static pthread_once_t supported_once = PTHREAD_ONCE_INIT;

static void build_supported(void)
{
    size_t len = 0;
    for (int i = 0; i < AR_DTYPE_COUNT; i++) {
        if (!types[i].name || !types[i].dequant) continue;
        len += (size_t)snprintf(supported + len, sizeof supported - len, "%s%s", len ? ", " : "", types[i].name);
    }
}

const char *ar_dtype_supported_list(void)
{
    pthread_once(&supported_once, build_supported);
    return supported;
}

static inline float h2f(uint16_t h) { return ar_f16_to_f32(h); }

/* ---- dequantization ----------------------------------------------------------------------- */

static void dq_q4_0(const ar_block_q4_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += QK) {
        const float d = h2f(b->d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)((b->qs[j] & 0x0F) - 8) * d;
            y[j + QK / 2] = (float)((b->qs[j] >> 4) - 8) * d;
        }
    }
}

static void dq_q4_1(const ar_block_q4_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += QK) {
        const float d = h2f(b->d), m = h2f(b->m);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)(b->qs[j] & 0x0F) * d + m;
            y[j + QK / 2] = (float)(b->qs[j] >> 4) * d + m;
        }
    }
}

/* Q5: bit j of the 32-bit qh word is the fifth bit of element j. */
static void dq_q5_0(const ar_block_q5_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += QK) {
        const float d = h2f(b->d);
        uint32_t qh;
        memcpy(&qh, b->qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            int lo = (b->qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)(lo - 16) * d;
            y[j + QK / 2] = (float)(hi - 16) * d;
        }
    }
}

static void dq_q5_1(const ar_block_q5_1 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += QK) {
        const float d = h2f(b->d), m = h2f(b->m);
        uint32_t qh;
        memcpy(&qh, b->qh, 4);
        for (int j = 0; j < QK / 2; j++) {
            int lo = (b->qs[j] & 0x0F) | (int)(((qh >> j) & 1) << 4);
            int hi = (b->qs[j] >> 4) | (int)(((qh >> (j + 16)) & 1) << 4);
            y[j] = (float)lo * d + m;
            y[j + QK / 2] = (float)hi * d + m;
        }
    }
}

static void dq_q8_0(const ar_block_q8_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += QK) {
        const float d = h2f(b->d);
        for (int j = 0; j < QK; j++) y[j] = (float)b->qs[j] * d;
    }
}

/* Q2_K: 16 sub-blocks of 16; scales byte = scale (low nibble) | min (high nibble). The 2-bit
 * quants of 128 elements share 32 bytes: element 32*s + l sits at bits 2s of byte l. */
static void dq_q2_K(const ar_block_q2_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d), dmin = h2f(b->dmin);
        for (int half = 0; half < 2; half++) {
            const uint8_t *q = b->qs + 32 * half;
            for (int s = 0; s < 4; s++) {
                for (int k = 0; k < 2; k++) {
                    uint8_t sc = b->scales[8 * half + 2 * s + k];
                    const float dl = d * (float)(sc & 0xF), ml = dmin * (float)(sc >> 4);
                    for (int l = 0; l < 16; l++) *y++ = dl * (float)((q[16 * k + l] >> (2 * s)) & 3) - ml;
                }
            }
        }
    }
}
static void dq_q3_K(const ar_block_q3_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d);
        int is = 0;
        uint8_t m = 1;
        for (int half = 0; half < 2; half++) {
            const uint8_t *q = b->qs + 32 * half;
            for (int s = 0; s < 4; s++, m <<= 1) {
                for (int k = 0; k < 2; k++) {
                    const float dl = d * (float)ar_q3k_scale(b->scales, is++);
                    for (int l = 16 * k; l < 16 * k + 16; l++) {
                        int v = ((q[l] >> (2 * s)) & 3) - ((b->hmask[l] & m) ? 0 : 4);
                        *y++ = dl * (float)v;
                    }
                }
            }
        }
    }
}

/* Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins; 64 elements share 32 bytes
 * (low nibbles first, then high nibbles). */
static void dq_q4_K(const ar_block_q4_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d), dmin = h2f(b->dmin);
        const uint8_t *q = b->qs;
        for (int j = 0; j < 8; j += 2, q += 32) {
            uint8_t sc, m;
            ar_get_scale_min_k4(j, b->scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            ar_get_scale_min_k4(j + 1, b->scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

/* Q5_K: as Q4_K plus a fifth bit; qh[l] bit 2p (2p+1) is the high bit of element l of the
 * low (high) nibble half of pair p. */
static void dq_q5_K(const ar_block_q5_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d), dmin = h2f(b->dmin);
        const uint8_t *ql = b->qs;
        for (int j = 0; j < 8; j += 2, ql += 32) {
            uint8_t sc, m;
            ar_get_scale_min_k4(j, b->scales, &sc, &m);
            const float d1 = d * (float)sc, m1 = dmin * (float)m;
            ar_get_scale_min_k4(j + 1, b->scales, &sc, &m);
            const float d2 = d * (float)sc, m2 = dmin * (float)m;
            const uint8_t u1 = (uint8_t)(1u << j), u2 = (uint8_t)(2u << j);
            for (int l = 0; l < 32; l++) *y++ = d1 * (float)((ql[l] & 0xF) + (b->qh[l] & u1 ? 16 : 0)) - m1;
            for (int l = 0; l < 32; l++) *y++ = d2 * (float)((ql[l] >> 4) + (b->qh[l] & u2 ? 16 : 0)) - m2;
        }
    }
}

/* Q6_K: 16 sub-blocks of 16 with int8 scales; per 128 elements, ql holds 64 bytes of low
 * nibbles (elements l and l+64 in byte l, l+32 and l+96 in byte l+32) and qh 32 bytes of the
 * 2-bit tops (element l + 32*s at bits 2s of qh[l]). */
static void dq_q6_K(const ar_block_q6_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d);
        for (int half = 0; half < 2; half++, y += 128) {
            const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
            const int8_t *sc = b->scales + 8 * half;
            for (int l = 0; l < 32; l++) {
                int is = l / 16;
                int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                y[l] = d * (float)sc[is] * (float)q1;
                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
            }
        }
    }
}

static void dq_q8_K(const ar_block_q8_K *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++)
        for (int j = 0; j < AR_QK_K; j++) *y++ = b->d * (float)b->qs[j];
}

static void dq_iq4_nl(const ar_block_iq4_nl *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += QK) {
        const float d = h2f(b->d);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = d * (float)ar_iq4nl_values[b->qs[j] & 0xF];
            y[j + QK / 2] = d * (float)ar_iq4nl_values[b->qs[j] >> 4];
        }
    }
}

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (4 low bits in scales_l nibbles, 2 high bits in
 * scales_h), offset by 32. */
static void dq_iq4_xs(const ar_block_iq4_xs *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++) {
        const float d = h2f(b->d);
        const uint8_t *qs = b->qs;
        for (int ib = 0; ib < AR_QK_K / 32; ib++, qs += 16, y += 32) {
            int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | (((b->scales_h >> (2 * ib)) & 3) << 4);
            const float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                y[j] = dl * (float)ar_iq4nl_values[qs[j] & 0xF];
                y[j + 16] = dl * (float)ar_iq4nl_values[qs[j] >> 4];
            }
        }
    }
}

static void dq_mxfp4(const ar_block_mxfp4 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += QK) {
        const float d = ar_e8m0_half(b->e);
        for (int j = 0; j < QK / 2; j++) {
            y[j] = (float)ar_mxfp4_values[b->qs[j] & 0xF] * d;
            y[j + QK / 2] = (float)ar_mxfp4_values[b->qs[j] >> 4] * d;
        }
    }
}

static void dq_q1_0(const ar_block_q1_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += 128) {
        const float d = h2f(b->d), nd = -d;
        for (int j = 0; j < 128; j++) y[j] = (b->qs[j / 8] >> (j % 8)) & 1 ? d : nd;
    }
}

static void dq_q2_0(const ar_block_q2_0 *b, float *y, int64_t nb)
{
    for (int64_t i = 0; i < nb; i++, b++, y += 64) {
        const float d = h2f(b->d);
        for (int j = 0; j < 64; j++) y[j] = (float)(((b->qs[j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
    }
}

int ar_dequantize_row(int type, const void *src, float *dst, int64_t n)
{
    const ar_dtype_info *t = ar_dtype_get(type);
    if (!t || !t->dequant) return AR_EUNSUPPORTED;
    if (n < 0 || n % t->block_elems) return AR_EINVAL;
    const int64_t nb = n / t->block_elems;
    switch (type) {
    case AR_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case AR_F16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = ar_f16_to_f32(h); }
        break;
    }
    case AR_BF16: {
        const uint8_t *p = src;
        for (int64_t i = 0; i < n; i++) { uint16_t h; memcpy(&h, p + 2 * i, 2); dst[i] = ar_bf16_to_f32(h); }
        break;
    }
    case AR_Q4_0:   dq_q4_0(src, dst, nb); break;
    case AR_Q4_1:   dq_q4_1(src, dst, nb); break;
    case AR_Q5_0:   dq_q5_0(src, dst, nb); break;
    case AR_Q5_1:   dq_q5_1(src, dst, nb); break;
    case AR_Q8_0:   dq_q8_0(src, dst, nb); break;
    case AR_Q2_K:   dq_q2_K(src, dst, nb); break;
    case AR_Q3_K:   dq_q3_K(src, dst, nb); break;
    case AR_Q4_K:   dq_q4_K(src, dst, nb); break;
    case AR_Q5_K:   dq_q5_K(src, dst, nb); break;
    case AR_Q6_K:   dq_q6_K(src, dst, nb); break;
    case AR_Q8_K:   dq_q8_K(src, dst, nb); break;
    case AR_IQ4_NL: dq_iq4_nl(src, dst, nb); break;
    case AR_IQ4_XS: dq_iq4_xs(src, dst, nb); break;
    case AR_MXFP4:  dq_mxfp4(src, dst, nb); break;
    case AR_Q1_0:   dq_q1_0(src, dst, nb); break;
    case AR_Q2_0:   dq_q2_0(src, dst, nb); break;
    default: return AR_EUNSUPPORTED;
    }
    return AR_OK;
}
