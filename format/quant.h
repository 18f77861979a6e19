/* format/quant.h — ggml tensor types: block layouts, scalar dequantization and quantization.
 *
 * Type ids are ggml's (they are what GGUF files store). Every block layout matches ggml's
 * ggml-common.h byte for byte; the scalar routines here are the reference every fast kernel in
 * compute/ is tested against, and their results are bit-identical to ggml's reference code. */
#ifndef AR_FORMAT_QUANT_H
#define AR_FORMAT_QUANT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/error.h"

typedef enum ar_dtype {
    AR_F32 = 0, AR_F16 = 1, AR_Q4_0 = 2, AR_Q4_1 = 3, AR_Q5_0 = 6, AR_Q5_1 = 7, AR_Q8_0 = 8,
    AR_Q8_1 = 9, AR_Q2_K = 10, AR_Q3_K = 11, AR_Q4_K = 12, AR_Q5_K = 13, AR_Q6_K = 14,
    AR_Q8_K = 15, AR_IQ2_XXS = 16, AR_IQ2_XS = 17, AR_IQ3_XXS = 18, AR_IQ1_S = 19, AR_IQ4_NL = 20,
    AR_IQ3_S = 21, AR_IQ2_S = 22, AR_IQ4_XS = 23, AR_I8 = 24, AR_I16 = 25, AR_I32 = 26,
    AR_I64 = 27, AR_F64 = 28, AR_IQ1_M = 29, AR_BF16 = 30, AR_TQ1_0 = 34, AR_TQ2_0 = 35,
    AR_MXFP4 = 39, AR_NVFP4 = 40, AR_Q1_0 = 41, AR_Q2_0 = 42,
    AR_DTYPE_COUNT = 43
} ar_dtype;

#define AR_QK_K 256

typedef struct ar_dtype_info {
    const char *name;      /* ggml's name: "f32", "q4_K", ... */
    int64_t block_elems;   /* elements per block (1 for plain floats) */
    size_t block_bytes;    /* bytes per block */
    bool dequant;          /* arbor can dequantize (and so compute with) this type */
    bool quant;            /* arbor can quantize float -> this type */
} ar_dtype_info;

/* Info for a type id; NULL for an id ggml does not define (or that GGUF never stores). */
const ar_dtype_info *ar_dtype_get(int type);
const char *ar_dtype_name(int type);          /* "unknown(N)" style for bad ids, never NULL */
int ar_dtype_from_name(const char *name);     /* case-insensitive ("Q4_K", "q4_k"); -1 if none */

/* Bytes of a row of n elements; 0 when n is not a multiple of the block size or the type is unknown. */
size_t ar_row_bytes(int type, int64_t n);

/* Comma-separated list of the types arbor computes with, for error messages. */
const char *ar_dtype_supported_list(void);

/* Scalar reference: n must be a multiple of the type's block size. Return AR_OK or AR_EUNSUPPORTED. */
int ar_dequantize_row(int type, const void *src, float *dst, int64_t n);
int ar_quantize_row(int type, const float *src, void *dst, int64_t n);

/* Block structs (packed exactly as ggml's; sizes asserted in quant.c). */
typedef struct { uint16_t d; int8_t qs[32]; } ar_block_q8_0;
typedef struct { uint16_t d; uint8_t qs[16]; } ar_block_q4_0;
typedef struct { uint16_t d, m; uint8_t qs[16]; } ar_block_q4_1;
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } ar_block_q5_0;
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } ar_block_q5_1;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[AR_QK_K / 2]; } ar_block_q4_K;
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[AR_QK_K / 8]; uint8_t qs[AR_QK_K / 2]; } ar_block_q5_K;
typedef struct { uint8_t ql[AR_QK_K / 2]; uint8_t qh[AR_QK_K / 4]; int8_t scales[AR_QK_K / 16]; uint16_t d; } ar_block_q6_K;
typedef struct { float d; int8_t qs[AR_QK_K]; int16_t bsums[AR_QK_K / 16]; } ar_block_q8_K;
typedef struct { uint16_t d; uint8_t qs[16]; } ar_block_iq4_nl;
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[AR_QK_K / 64]; uint8_t qs[AR_QK_K / 2]; } ar_block_iq4_xs;

/* Further layouts arbor reads (ggml-common.h), added with the quant implementation. */
typedef struct { uint16_t d, s; int8_t qs[32]; } ar_block_q8_1;
typedef struct { uint8_t scales[AR_QK_K / 16]; uint8_t qs[AR_QK_K / 4]; uint16_t d, dmin; } ar_block_q2_K;
typedef struct { uint8_t hmask[AR_QK_K / 8]; uint8_t qs[AR_QK_K / 4]; uint8_t scales[12]; uint16_t d; } ar_block_q3_K;
typedef struct { uint16_t d; uint8_t qs[128 / 8]; } ar_block_q1_0;
typedef struct { uint16_t d; uint8_t qs[64 / 4]; } ar_block_q2_0;
typedef struct { uint8_t e; uint8_t qs[16]; } ar_block_mxfp4;

/* The 16 non-linear IQ4 levels (ggml's kvalues_iq4nl). */
extern const int8_t ar_iq4nl_values[16];
/* The 16 FP4 (E2M1) levels doubled, as MXFP4 stores them (ggml's kvalues_mxfp4). */
extern const int8_t ar_mxfp4_values[16];

/* ar_quantize_row gives, row for row, what ggml_quantize_chunk (llama-quantize without an
 * importance matrix) writes: quantize_row_*_ref for every type except IQ4_NL, where the file
 * quantizer also tries 15 scales per block (quantize_iq4_nl) and so does arbor. */

/* Q4_K / Q5_K 6-bit scale+min unpacking for sub-block j (0..7). */
static inline void ar_get_scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m)
{
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
    }
}

/* Q3_K signed 6-bit scale of sub-block j (0..15): low nibble in scales[j % 8] (the high nibble
 * for j >= 8), top two bits in scales[8 + j % 4] at bit 2 * (j / 4); stored offset by 32. */
static inline int ar_q3k_scale(const uint8_t *scales, int j)
{
    int lo = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
    int hi = (scales[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* MXFP4's E8M0 exponent e as 2^(e - 128): half the block scale, because ar_mxfp4_values are
 * doubled (ggml's GGML_E8M0_TO_FP32_HALF). */
static inline float ar_e8m0_half(uint8_t e)
{
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#endif
