/* tests/test_quant.c — the type table, scalar (de)quantization and the model quantizer's plan.
 *
 * Layout facts (block sizes == sizeof the structs, names, row sizes), dequantization of
 * hand-built blocks with known values, F16/BF16 edge cases, round-trip error bounds per type on
 * several distributions (worst figures printed even on success), Q8_0 requantization stability,
 * argument errors, and ar_quantize_plan / ar_quantize_model on a small qwen35-shaped GGUF built
 * here (llama.cpp's Q4_K_M mix on 8 layers, fallbacks for odd row lengths, metadata rewrite,
 * converted tensor bytes == ar_quantize_row of the source rows). Bit identity with llama.cpp is
 * tests/test_quant_oracle's job. */
#include "base/half.h"
#include "base/log.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "format/quantize_model.h"
#include "tests/test.h"

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ---- random data ---------------------------------------------------------------------------- */

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next_u64(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }
static float uniform(void) { return (float)((next_u64() >> 40) * (1.0 / 16777216.0)); }
static float gaussian(void)
{
    float u = uniform() + 1e-7f, v = uniform();
    return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

enum { D_GAUSS, D_UNIFORM, D_OUTLIERS, D_POSITIVE, D_SCALES, D_COUNT };
static const char *const dist_name[D_COUNT] = { "gauss", "uniform", "outliers", "positive", "mixed-scale" };

static void fill(float *x, int64_t n, int dist)
{
    for (int64_t i = 0; i < n; i++) {
        switch (dist) {
        case D_GAUSS: x[i] = gaussian(); break;
        case D_UNIFORM: x[i] = uniform() * 2 - 1; break;
        case D_OUTLIERS: x[i] = 0.02f * gaussian() + (uniform() < 0.01f ? 3.0f * gaussian() : 0.0f); break;
        case D_POSITIVE: x[i] = uniform() * 3.0f; break;
        default: x[i] = gaussian() * powf(10.0f, (float)((i / 256) % 7) - 3.0f); break; /* 1e-3 .. 1e3 per 256 */
        }
    }
}

/* ---- table ---------------------------------------------------------------------------------- */

static void test_table(void)
{
    static const struct { int type; size_t size; int64_t elems; } blocks[] = {
        { AR_Q4_0, sizeof(ar_block_q4_0), 32 },   { AR_Q4_1, sizeof(ar_block_q4_1), 32 },
        { AR_Q5_0, sizeof(ar_block_q5_0), 32 },   { AR_Q5_1, sizeof(ar_block_q5_1), 32 },
        { AR_Q8_0, sizeof(ar_block_q8_0), 32 },   { AR_Q8_1, sizeof(ar_block_q8_1), 32 },
        { AR_Q2_K, sizeof(ar_block_q2_K), 256 },  { AR_Q3_K, sizeof(ar_block_q3_K), 256 },
        { AR_Q4_K, sizeof(ar_block_q4_K), 256 },  { AR_Q5_K, sizeof(ar_block_q5_K), 256 },
        { AR_Q6_K, sizeof(ar_block_q6_K), 256 },  { AR_Q8_K, sizeof(ar_block_q8_K), 256 },
        { AR_IQ4_NL, sizeof(ar_block_iq4_nl), 32 }, { AR_IQ4_XS, sizeof(ar_block_iq4_xs), 256 },
        { AR_MXFP4, sizeof(ar_block_mxfp4), 32 }, { AR_Q1_0, sizeof(ar_block_q1_0), 128 },
        { AR_Q2_0, sizeof(ar_block_q2_0), 64 },
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        const ar_dtype_info *t = ar_dtype_get(blocks[i].type);
        CHECK(t && t->block_bytes == blocks[i].size && t->block_elems == blocks[i].elems,
              "type %d: table says %zu bytes / %lld elems, struct is %zu / %lld", blocks[i].type, t ? t->block_bytes : 0,
              t ? (long long)t->block_elems : 0LL, blocks[i].size, (long long)blocks[i].elems);
    }
    /* ggml's own numbers for the types without a struct here (ggml-common.h) */
    static const struct { int type; const char *name; int64_t elems; size_t bytes; } facts[] = {
        { AR_F32, "f32", 1, 4 }, { AR_F16, "f16", 1, 2 }, { AR_BF16, "bf16", 1, 2 }, { AR_IQ2_XXS, "iq2_xxs", 256, 66 },
        { AR_IQ2_XS, "iq2_xs", 256, 74 }, { AR_IQ3_XXS, "iq3_xxs", 256, 98 }, { AR_IQ1_S, "iq1_s", 256, 50 },
        { AR_IQ3_S, "iq3_s", 256, 110 }, { AR_IQ2_S, "iq2_s", 256, 82 }, { AR_I8, "i8", 1, 1 }, { AR_I16, "i16", 1, 2 },
        { AR_I32, "i32", 1, 4 }, { AR_I64, "i64", 1, 8 }, { AR_F64, "f64", 1, 8 }, { AR_IQ1_M, "iq1_m", 256, 56 },
        { AR_TQ1_0, "tq1_0", 256, 54 }, { AR_TQ2_0, "tq2_0", 256, 66 }, { AR_NVFP4, "nvfp4", 64, 36 },
        { AR_Q4_K, "q4_K", 256, 144 }, { AR_Q6_K, "q6_K", 256, 210 }, { AR_Q8_0, "q8_0", 32, 34 },
        { AR_Q1_0, "q1_0", 128, 18 }, { AR_Q2_0, "q2_0", 64, 18 }, { AR_MXFP4, "mxfp4", 32, 17 },
    };
    for (size_t i = 0; i < sizeof facts / sizeof facts[0]; i++) {
        const ar_dtype_info *t = ar_dtype_get(facts[i].type);
        CHECK(t && !strcmp(t->name, facts[i].name) && t->block_elems == facts[i].elems && t->block_bytes == facts[i].bytes,
              "type %d (%s): table has %s %lld %zu", facts[i].type, facts[i].name, t ? t->name : "NULL",
              t ? (long long)t->block_elems : 0LL, t ? t->block_bytes : 0);
    }
    static const int undefined[] = { -1, 4, 5, 31, 32, 33, 36, 37, 38, 43, 1000 };
    for (size_t i = 0; i < sizeof undefined / sizeof undefined[0]; i++)
        CHECK(ar_dtype_get(undefined[i]) == NULL, "ar_dtype_get(%d) should be NULL", undefined[i]);
    int n_defined = 0;
    for (int i = 0; i < AR_DTYPE_COUNT; i++) {
        const ar_dtype_info *t = ar_dtype_get(i);
        if (!t) continue;
        n_defined++;
        CHECK(ar_dtype_from_name(t->name) == i, "from_name(%s) != %d", t->name, i);
        CHECK(t->block_elems >= 1 && t->block_bytes >= 1, "type %s has an empty block", t->name);
    }
    CHECK(n_defined == 35, "%d types defined, ggml defines 35", n_defined);
    CHECK(ar_dtype_from_name("Q4_K") == AR_Q4_K && ar_dtype_from_name("BF16") == AR_BF16, "case-insensitive names");
    CHECK(ar_dtype_from_name("q4_k_m") == -1 && ar_dtype_from_name(NULL) == -1, "non-type names give -1");
    CHECK(!strcmp(ar_dtype_name(AR_IQ4_XS), "iq4_xs"), "name of iq4_xs");
    CHECK(!strcmp(ar_dtype_name(77), "unknown(77)"), "name of 77: %s", ar_dtype_name(77));
    CHECK(ar_row_bytes(AR_Q4_K, 5120) == 20 * 144, "row bytes q4_K");
    CHECK(ar_row_bytes(AR_Q4_K, 100) == 0 && ar_row_bytes(99, 32) == 0 && ar_row_bytes(AR_F32, -1) == 0,
          "row bytes of bad rows must be 0");
    CHECK(ar_row_bytes(AR_BF16, 7) == 14, "row bytes bf16");
    const char *list = ar_dtype_supported_list();
    CHECK(strstr(list, "q4_K") && strstr(list, "bf16") && strstr(list, "iq4_xs") && !strstr(list, "iq2_xxs") &&
          !strstr(list, "q8_1"), "supported list: %s", list);
    CHECK(ar_dtype_supported_list() == list, "supported list is built once");
}

/* ---- hand-built blocks ---------------------------------------------------------------------- */

static void test_known_blocks(void)
{
    float y[256];
    {   /* q8_0: d = 0.5, q = j - 16 */
        ar_block_q8_0 b = { .d = 0x3800 };
        for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j - 16);
        ar_dequantize_row(AR_Q8_0, &b, y, 32);
        int bad = 0;
        for (int j = 0; j < 32; j++) bad += y[j] != 0.5f * (float)(j - 16);
        CHECK(!bad, "q8_0 known block: %d wrong", bad);
    }
    {   /* q4_0: d = 2, low nibble of byte j = element j, high nibble = element j + 16 */
        ar_block_q4_0 b = { .d = 0x4000 };
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | ((15 - j) << 4));
        ar_dequantize_row(AR_Q4_0, &b, y, 32);
        int bad = 0;
        for (int j = 0; j < 16; j++) bad += y[j] != 2.0f * (float)(j - 8) || y[j + 16] != 2.0f * (float)(7 - j);
        CHECK(!bad, "q4_0 known block: %d wrong", bad);
    }
    {   /* q5_0: fifth bits from qh */
        ar_block_q5_0 b = { .d = 0x3C00 };
        uint32_t qh = 0x80000001u;   /* element 0 and element 31 have the high bit */
        memcpy(b.qh, &qh, 4);
        memset(b.qs, 0x00, 16);
        ar_dequantize_row(AR_Q5_0, &b, y, 32);
        CHECK(y[0] == 0.0f && y[1] == -16.0f && y[31] == 0.0f && y[16] == -16.0f, "q5_0 known block: %g %g %g %g", y[0], y[1],
              y[31], y[16]);
    }
    {   /* q4_K: d = 1, dmin = 0.5, sub-block j scale j+1, min 2 -> y = (j+1)*q - 1 */
        ar_block_q4_K b = { .d = 0x3C00, .dmin = 0x3800 };
        uint8_t sc[8], mn[8];
        for (int j = 0; j < 8; j++) { sc[j] = (uint8_t)(j + 1); mn[j] = 2; }
        memset(b.scales, 0, 12);
        for (int j = 0; j < 8; j++) {
            if (j < 4) { b.scales[j] = sc[j]; b.scales[j + 4] = mn[j]; }
            else { b.scales[j + 4] = (uint8_t)((sc[j] & 0xF) | ((mn[j] & 0xF) << 4)); b.scales[j - 4] |= (uint8_t)((sc[j] >> 4) << 6); b.scales[j] |= (uint8_t)((mn[j] >> 4) << 6); }
        }
        for (int j = 0; j < 8; j++) {
            uint8_t d, m;
            ar_get_scale_min_k4(j, b.scales, &d, &m);
            CHECK(d == sc[j] && m == mn[j], "q4_K scale %d: %u/%u", j, d, m);
        }
        for (int k = 0; k < 128; k++) b.qs[k] = (uint8_t)((k % 16) | ((15 - k % 16) << 4));
        ar_dequantize_row(AR_Q4_K, &b, y, 256);
        int bad = 0;
        for (int e = 0; e < 256; e++) {
            int sub = e / 32, byte = (e / 64) * 32 + e % 32;
            int q = (sub % 2 == 0) ? b.qs[byte] & 0xF : b.qs[byte] >> 4;
            bad += y[e] != (float)(sub + 1) * (float)q - 1.0f;
        }
        CHECK(!bad, "q4_K known block: %d wrong", bad);
    }
    {   /* q6_K: d = 1, scale of sub-block s = s - 8, quant of element e = e % 64 */
        ar_block_q6_K b = { .d = 0x3C00 };
        for (int s = 0; s < 16; s++) b.scales[s] = (int8_t)(s - 8);
        memset(b.ql, 0, sizeof b.ql);
        memset(b.qh, 0, sizeof b.qh);
        for (int e = 0; e < 256; e++) {
            int q = e % 64, half = e / 128, r = e % 128, l = r % 32, part = r / 32;
            uint8_t *ql = b.ql + 64 * half, *qh = b.qh + 32 * half;
            int byte = l + (part % 2) * 32;
            ql[byte] |= (uint8_t)((q & 0xF) << (part >= 2 ? 4 : 0));
            qh[l] |= (uint8_t)((q >> 4) << (2 * part));
        }
        ar_dequantize_row(AR_Q6_K, &b, y, 256);
        int bad = 0;
        for (int e = 0; e < 256; e++) bad += y[e] != (float)(e / 16 - 8) * (float)(e % 64 - 32);
        CHECK(!bad, "q6_K known block: %d wrong", bad);
    }
    {   /* iq4_nl: d = 1 gives the level table */
        ar_block_iq4_nl b = { .d = 0x3C00 };
        for (int j = 0; j < 16; j++) b.qs[j] = (uint8_t)(j | (j << 4));
        ar_dequantize_row(AR_IQ4_NL, &b, y, 32);
        int bad = 0;
        for (int j = 0; j < 16; j++) bad += y[j] != ar_iq4nl_values[j] || y[j + 16] != ar_iq4nl_values[j];
        CHECK(!bad && y[0] == -127.0f && y[15] == 113.0f, "iq4_nl known block: %d wrong", bad);
    }
    {   /* q8_K: float scale */
        ar_block_q8_K b = { .d = 0.25f };
        for (int j = 0; j < 256; j++) b.qs[j] = (int8_t)(j - 128);
        ar_dequantize_row(AR_Q8_K, &b, y, 256);
        CHECK(y[0] == -32.0f && y[255] == 31.75f, "q8_K known block: %g %g", y[0], y[255]);
    }
}

/* ---- half / bfloat16 edge cases ------------------------------------------------------------- */

static void test_halves(void)
{
    uint16_t h[8];
    float y[8];
    h[0] = 0x0001; h[1] = 0x03FF; h[2] = 0x7BFF; h[3] = 0x7C00; h[4] = 0xFC00; h[5] = 0x7E00; h[6] = 0x8000; h[7] = 0x3C01;
    ar_dequantize_row(AR_F16, h, y, 8);
    CHECK(y[0] == ldexpf(1, -24) && y[1] == 1023 * ldexpf(1, -24) && y[2] == 65504.0f, "f16 subnormal/max: %g %g %g", y[0], y[1], y[2]);
    CHECK(isinf(y[3]) && y[3] > 0 && isinf(y[4]) && y[4] < 0 && isnan(y[5]), "f16 inf/nan");
    CHECK(y[6] == 0.0f && signbit(y[6]) && y[7] == 1.0f + ldexpf(1, -10), "f16 -0 / 1+ulp");

    float x[10] = {
        1.0f + ldexpf(1, -11),      /* tie between 1 and 1+2^-10: to even (1) */
        1.0f + 3 * ldexpf(1, -11),  /* tie: to even (1 + 2^-9) */
        65504.0f, 65519.0f, 65520.0f,  /* max, rounds down to max, rounds to inf */
        ldexpf(1, -25),             /* tie between 0 and the smallest subnormal: to even (0) */
        3 * ldexpf(1, -25),         /* tie between 1 and 2 subnormal units: to 2 */
        ldexpf(1, -14),             /* smallest normal */
        NAN, -INFINITY,
    };
    uint16_t q[10];
    ar_quantize_row(AR_F16, x, q, 10);
    CHECK(q[0] == 0x3C00 && q[1] == 0x3C02, "f16 ties: %04x %04x", q[0], q[1]);
    CHECK(q[2] == 0x7BFF && q[3] == 0x7BFF && q[4] == 0x7C00, "f16 overflow: %04x %04x %04x", q[2], q[3], q[4]);
    CHECK(q[5] == 0x0000 && q[6] == 0x0002 && q[7] == 0x0400, "f16 subnormal rounding: %04x %04x %04x", q[5], q[6], q[7]);
    CHECK((q[8] & 0x7C00) == 0x7C00 && (q[8] & 0x03FF) && q[9] == 0xFC00, "f16 nan/-inf: %04x %04x", q[8], q[9]);

    float b[6] = { 1.0f + ldexpf(1, -8), 1.0f + 3 * ldexpf(1, -8), INFINITY, NAN, ldexpf(1, -130), -0.0f };
    uint16_t qb[6];
    float yb[6];
    ar_quantize_row(AR_BF16, b, qb, 6);
    CHECK(qb[0] == 0x3F80 && qb[1] == 0x3F82, "bf16 ties: %04x %04x", qb[0], qb[1]);
    CHECK(qb[2] == 0x7F80 && (qb[3] & 0x7FC0) == 0x7FC0 && qb[5] == 0x8000, "bf16 inf/nan/-0: %04x %04x %04x", qb[2], qb[3], qb[5]);
    ar_dequantize_row(AR_BF16, qb, yb, 6);
    CHECK(yb[4] == ldexpf(1, -130) && isnan(yb[3]), "bf16 subnormal kept exactly: %g", yb[4]);
    /* every half converts to float and back to itself (NaNs stay NaNs) */
    int bad = 0;
    for (uint32_t i = 0; i < 65536; i++) {
        uint16_t hi = (uint16_t)i, back;
        float f;
        ar_dequantize_row(AR_F16, &hi, &f, 1);
        ar_quantize_row(AR_F16, &f, &back, 1);
        bad += isnan(f) ? !((back & 0x7C00) == 0x7C00 && (back & 0x3FF)) : back != hi;
    }
    CHECK(!bad, "f16 -> f32 -> f16 changed %d of 65536 halves", bad);
}

/* ---- round trips ---------------------------------------------------------------------------- */

typedef struct bound { int type; float max_rel, rms_rel; } bound;

/* Bounds set from measurement (see the printed figures) with 10-20% headroom: max_rel is the largest
 * |error| over the largest |x| of the same block, rms_rel the RMS error over the RMS of x. */
static const bound bounds[] = {
    { AR_F16, 0.0006f, 0.0003f },  { AR_BF16, 0.0045f, 0.0025f }, { AR_Q8_0, 0.0065f, 0.015f },
    { AR_Q4_0, 0.13f, 0.10f },     { AR_Q4_1, 0.075f, 0.095f },   { AR_Q5_0, 0.066f, 0.052f },
    { AR_Q5_1, 0.037f, 0.062f },   { AR_Q2_K, 0.42f, 0.36f },     { AR_Q3_K, 0.28f, 0.18f },
    { AR_Q4_K, 0.115f, 0.085f },   { AR_Q5_K, 0.06f, 0.047f },    { AR_Q6_K, 0.05f, 0.024f },
    { AR_Q8_K, 0.0045f, 0.035f },  { AR_IQ4_NL, 0.14f, 0.09f },   { AR_IQ4_XS, 0.15f, 0.09f },
    { AR_MXFP4, 0.26f, 0.17f },    { AR_Q2_0, 0.51f, 0.80f },
};

static void test_round_trips(void)
{
    const int64_t n = test_sanitized() ? 4096 : 65536;
    float *x = malloc((size_t)n * sizeof(float)), *y = malloc((size_t)n * sizeof(float)), *y2 = malloc((size_t)n * sizeof(float));
    uint8_t *q = malloc((size_t)n * 4), *q2 = malloc((size_t)n * 4);
    if (!x || !y || !y2 || !q || !q2) abort();
    for (size_t bi = 0; bi < sizeof bounds / sizeof bounds[0]; bi++) {
        const bound *b = &bounds[bi];
        const ar_dtype_info *t = ar_dtype_get(b->type);
        const int64_t blk = t->block_elems > 1 ? t->block_elems : 32;
        float worst_max = 0, worst_rms = 0;
        const char *worst_dist = "";
        for (int d = 0; d < D_COUNT; d++) {
            fill(x, n, d);
            int rq = ar_quantize_row(b->type, x, q, n), rd = ar_dequantize_row(b->type, q, y, n);
            CHECK(rq == AR_OK && rd == AR_OK, "%s: quantize %d dequantize %d", t->name, rq, rd);
            double se = 0, sx = 0;
            float max_rel = 0;
            int finite = 1;
            for (int64_t i0 = 0; i0 < n; i0 += blk) {
                float bmax = 0, emax = 0;
                for (int64_t i = i0; i < i0 + blk; i++) {
                    float e = fabsf(y[i] - x[i]);
                    finite &= isfinite(y[i]);
                    if (fabsf(x[i]) > bmax) bmax = fabsf(x[i]);
                    if (e > emax) emax = e;
                    se += (double)e * e;
                    sx += (double)x[i] * x[i];
                }
                if (bmax > 0 && emax / bmax > max_rel) max_rel = emax / bmax;
            }
            float rms_rel = (float)sqrt(se / sx);
            CHECK(finite, "%s %s: non-finite output", t->name, dist_name[d]);
            CHECK(max_rel <= b->max_rel && rms_rel <= b->rms_rel, "%s %s: max err/block max %.4f (bound %.4f), rms rel %.4f (bound %.4f)",
                  t->name, dist_name[d], max_rel, b->max_rel, rms_rel, b->rms_rel);
            if (max_rel > worst_max) { worst_max = max_rel; worst_dist = dist_name[d]; }
            if (rms_rel > worst_rms) worst_rms = rms_rel;
        }
        printf("ok %-7s worst max err/block max %.5f (%s), worst rms rel %.5f\n", t->name, worst_max, worst_dist, worst_rms);
        /* zeros stay zeros */
        memset(x, 0, 1024 * sizeof(float));
        ar_quantize_row(b->type, x, q, 1024);
        ar_dequantize_row(b->type, q, y, 1024);
        int nz = 0;
        for (int i = 0; i < 1024; i++) nz += y[i] != 0.0f;
        CHECK(!nz, "%s: %d of 1024 zeros came back non-zero", t->name, nz);
    }
    /* Q8_0 is a fixed point: quantize(dequantize(q)) == q */
    for (int d = 0; d < D_COUNT; d++) {
        fill(x, n, d);
        ar_quantize_row(AR_Q8_0, x, q, n);
        ar_dequantize_row(AR_Q8_0, q, y, n);
        ar_quantize_row(AR_Q8_0, y, q2, n);
        ar_dequantize_row(AR_Q8_0, q2, y2, n);
        CHECK(!memcmp(q, q2, ar_row_bytes(AR_Q8_0, n)) && !memcmp(y, y2, (size_t)n * sizeof(float)),
              "q8_0 requantization changed the blocks (%s)", dist_name[d]);
    }
    /* Q8_K block sums */
    fill(x, 256, D_GAUSS);
    ar_block_q8_K k8;
    ar_quantize_row(AR_Q8_K, x, &k8, 256);
    int bad = 0;
    for (int g = 0; g < 16; g++) {
        int s = 0;
        for (int i = 0; i < 16; i++) s += k8.qs[16 * g + i];
        bad += s != k8.bsums[g];
    }
    CHECK(!bad, "q8_K bsums wrong in %d groups", bad);
    free(x); free(y); free(y2); free(q); free(q2);
}

static void test_errors(void)
{
    float x[64] = { 0 };
    uint8_t q[256];
    CHECK(ar_quantize_row(AR_Q4_K, x, q, 64) == AR_EINVAL, "q4_K of 64 elements must fail");
    CHECK(ar_dequantize_row(AR_Q8_0, q, x, 33) == AR_EINVAL, "q8_0 of 33 elements must fail");
    CHECK(ar_quantize_row(AR_IQ2_XXS, x, q, 256) == AR_EUNSUPPORTED, "iq2_xxs quantization is unsupported");
    CHECK(ar_dequantize_row(AR_IQ2_XXS, q, x, 256) == AR_EUNSUPPORTED, "iq2_xxs dequantization is unsupported");
    CHECK(ar_dequantize_row(4, q, x, 32) == AR_EUNSUPPORTED && ar_quantize_row(-3, x, q, 32) == AR_EUNSUPPORTED, "bad ids");
}

/* ---- the model quantizer on a small qwen35-shaped file --------------------------------------- */

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char p[4][512];
    static int k;
    char *s = p[k++ % 4];
    snprintf(s, 512, "%s/%s", tmpdir, name);
    return s;
}

typedef struct spec { const char *name; int n_dims; int64_t ne0, ne1; int type; } spec;

/* Fill a tensor with a deterministic function of its name and position. */
static int fill_fn(void *ctx, const gguf_tensor *t, void *dst, uint64_t nbytes, ar_error *err)
{
    (void)ctx; (void)err;
    uint64_t h = 1469598103934665603ull;
    for (const char *c = t->name; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    const int64_t n = t->n_elements;
    float *x = malloc((size_t)n * sizeof(float));
    if (!x) return AR_ENOMEM;
    uint64_t save = rng;
    rng = h | 1;
    for (int64_t i = 0; i < n; i++) x[i] = 0.05f * gaussian();
    rng = save;
    int rc = ar_quantize_row(t->type, x, dst, n);
    free(x);
    return rc || nbytes != ar_row_bytes(t->type, n) ? AR_EINVAL : AR_OK;
}

static int n_specs;
static spec specs[128];

static char spec_names[128][64];

static void add(const char *name, int n_dims, int64_t ne0, int64_t ne1, int type)
{
    snprintf(spec_names[n_specs], sizeof spec_names[0], "%s", name);
    specs[n_specs] = (spec){ spec_names[n_specs], n_dims, ne0, ne1, type };
    n_specs++;
}

/* 8 layers like the tiny preset: 3 and 7 full attention, the rest GDN; tied embeddings. */
static void make_specs(int weight_type)
{
    char nm[64];
    n_specs = 0;
    add("token_embd.weight", 2, 256, 64, weight_type);
    add("output_norm.weight", 1, 256, 1, AR_F32);
    for (int il = 0; il < 8; il++) {
#define L(s) (snprintf(nm, sizeof nm, "blk.%d." s, il), nm)
        add(L("attn_norm.weight"), 1, 256, 1, AR_F32);
        add(L("post_attention_norm.weight"), 1, 256, 1, AR_F32);
        add(L("ffn_gate.weight"), 2, 256, 512, weight_type);
        add(L("ffn_up.weight"), 2, 256, 512, weight_type);
        add(L("ffn_down.weight"), 2, 512, 256, weight_type);
        if (il % 4 == 3) {
            add(L("attn_q.weight"), 2, 256, 512, weight_type);
            add(L("attn_k.weight"), 2, 256, 64, weight_type);
            add(L("attn_v.weight"), 2, 256, 64, weight_type);
            add(L("attn_output.weight"), 2, 256, 256, weight_type);
            add(L("attn_q_norm.weight"), 1, 64, 1, AR_F32);
            add(L("attn_k_norm.weight"), 1, 64, 1, AR_F32);
        } else {
            add(L("attn_qkv.weight"), 2, 256, 512, weight_type);
            add(L("attn_gate.weight"), 2, 256, 256, weight_type);
            add(L("ssm_conv1d.weight"), 2, 4, 512, AR_F32);
            add(L("ssm_dt.bias"), 1, 4, 1, AR_F32);
            add(L("ssm_a"), 1, 4, 1, AR_F32);
            add(L("ssm_beta.weight"), 2, 256, 4, weight_type);
            add(L("ssm_alpha.weight"), 2, 256, 4, weight_type);
            add(L("ssm_norm.weight"), 1, 64, 1, AR_F32);
            add(L("ssm_out.weight"), 2, 256, 256, weight_type);
        }
#undef L
    }
    add("blk.0.odd_rows.weight", 2, 96, 8, AR_F32);    /* 96 % 256 != 0: Q4_K falls back to Q5_0 */
    add("blk.0.odder_rows.weight", 2, 48, 8, AR_F32);  /* 48 % 32 != 0: falls back to F16 */
}

static int write_model(const char *path, int weight_type)
{
    make_specs(weight_type);
    gguf_writer *w = gguf_writer_create();
    gguf_set_str(w, "general.architecture", "qwen35");
    gguf_set_u32(w, "general.file_type", 0);
    gguf_set_str(w, "general.name", "quant-test");
    gguf_set_u32(w, "qwen35.block_count", 8);
    gguf_set_u32(w, "qwen35.attention.head_count", 4);
    gguf_set_u32(w, "qwen35.attention.head_count_kv", 1);
    gguf_set_u32(w, "split.count", 1);   /* dropped by the quantizer, as llama.cpp does */
    /* tensors in the converter's order (token_embd first, output_norm second), not llama.cpp's */
    for (int i = 0; i < n_specs; i++) {
        int64_t ne[2] = { specs[i].ne0, specs[i].ne1 };
        gguf_add_tensor(w, specs[i].name, specs[i].type, specs[i].n_dims, ne, NULL, fill_fn, NULL);
    }
    ar_error err = { 0 };
    int rc = gguf_writer_write(w, path, &err);
    CHECK(rc == AR_OK, "writing %s: %s", path, err.msg);
    gguf_writer_free(w);
    return rc;
}

static int type_of(const gguf_file *f, const char *name)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    return t ? t->type : -1;
}

static void test_plan(void)
{
    const char *src = tmp_path("in-f32.gguf");
    if (write_model(src, AR_F32)) return;
    gguf_file *f = NULL;
    ar_error err = { 0 };
    CHECK(gguf_open(&f, src, &err) == AR_OK, "open %s: %s", src, err.msg);
    if (!f) return;
    int *types = malloc((size_t)gguf_n_tensors(f) * sizeof(int));
    CHECK(ar_quantize_plan(f, ar_ftype_find("Q4_K_M"), types, &err) == AR_OK, "plan: %s", err.msg);
    /* expected Q4_K_M mix for 8 layers: ffn_down Q6_K where use_more_bits(i, 8): i = 0, 3, 6, 7;
     * attn_qkv/attn_v share one counter over layers 0..7 in order, same rule */
    int bad = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        int il = -1, expect;
        sscanf(t->name, "blk.%d.", &il);
        bool more = il == 0 || il == 3 || il == 6 || il == 7;
        if (t->n_dims == 1 || strstr(t->name, "ssm_conv1d")) expect = AR_F32;
        else if (!strcmp(t->name, "token_embd.weight")) expect = AR_Q6_K;   /* tied: the output's type */
        else if (strstr(t->name, "odd_rows")) expect = AR_Q5_0;
        else if (strstr(t->name, "odder_rows")) expect = AR_F16;
        else if (strstr(t->name, "ffn_down") || strstr(t->name, "attn_qkv") || strstr(t->name, "attn_v.")) expect = more ? AR_Q6_K : AR_Q4_K;
        else expect = AR_Q4_K;
        if (types[i] != expect) {
            bad++;
            printf("FAIL plan q4_k_m: %s -> %s, expected %s\n", t->name, ar_dtype_name(types[i]), ar_dtype_name(expect));
        }
    }
    CHECK(!bad, "q4_k_m plan: %d tensors with the wrong type", bad);
    CHECK(ar_quantize_plan(f, ar_ftype_find("q8_0"), types, &err) == AR_OK, "plan q8_0");
    CHECK(types[0] == AR_Q8_0, "q8_0: token_embd %s", ar_dtype_name(types[0]));
    CHECK(ar_quantize_plan(f, ar_ftype_find("q5_k_s"), types, &err) == AR_OK, "plan q5_k_s");
    CHECK(types[0] == AR_Q6_K, "q5_k_s: token_embd %s", ar_dtype_name(types[0]));
    CHECK(ar_quantize_plan(f, ar_ftype_find("f16"), types, &err) == AR_OK, "plan f16");
    CHECK(types[0] == AR_F16 && types[1] == AR_F32, "f16: token_embd %s, output_norm %s", ar_dtype_name(types[0]), ar_dtype_name(types[1]));
    free(types);
    gguf_close(f);

    /* the whole file through ar_quantize_model */
    const char *dst = tmp_path("out-q4_k_m.gguf");
    CHECK(ar_quantize_model(src, dst, "q4_k_m", 2, &err) == AR_OK, "quantize: %s", err.msg);
    gguf_file *in = NULL, *out = NULL;
    if (gguf_open(&in, src, &err) || gguf_open(&out, dst, &err)) {
        CHECK(0, "reopen: %s", err.msg);
        gguf_close(in);
        return;
    }
    uint32_t ft = 0, qv = 0;
    CHECK(gguf_get_u32(out, "general.file_type", &ft, &err) == AR_OK && ft == 15, "general.file_type %u", ft);
    CHECK(gguf_get_u32(out, "general.quantization_version", &qv, &err) == AR_OK && qv == 2, "quantization_version %u", qv);
    CHECK(!gguf_find(out, "split.count"), "split.count must be dropped");
    gguf_str name;
    CHECK(gguf_get_str(out, "general.name", &name, &err) == AR_OK && gguf_str_eq(name, "quant-test"), "general.name copied");
    CHECK(gguf_n_tensors(out) == gguf_n_tensors(in), "tensor count %lld vs %lld", (long long)gguf_n_tensors(out),
          (long long)gguf_n_tensors(in));
    CHECK(!strcmp(gguf_tensor_at(out, 0)->name, "output_norm.weight") && !strcmp(gguf_tensor_at(out, 2)->name, "blk.0.attn_gate.weight"),
          "llama.cpp's order: %s, %s", gguf_tensor_at(out, 0)->name, gguf_tensor_at(out, 2)->name);
    CHECK(type_of(out, "blk.1.ffn_down.weight") == AR_Q4_K && type_of(out, "blk.3.attn_v.weight") == AR_Q6_K, "types in the file");
    int mismatched = 0;
    for (int64_t i = 0; i < gguf_n_tensors(out); i++) {
        const gguf_tensor *o = gguf_tensor_at(out, i), *s = gguf_find_tensor(in, o->name);
        if (!s) { mismatched++; continue; }
        size_t rb = ar_row_bytes(o->type, o->ne[0]);
        uint8_t *ref = malloc(o->nbytes ? o->nbytes : 1);
        for (int64_t r = 0; r < o->n_elements / o->ne[0]; r++)
            ar_quantize_row(o->type, (const float *)s->data + r * s->ne[0], ref + r * rb, o->ne[0]);
        mismatched += o->nbytes != (uint64_t)(o->n_elements / o->ne[0]) * rb || memcmp(ref, o->data, o->nbytes) != 0;
        free(ref);
    }
    CHECK(!mismatched, "%d tensors differ from ar_quantize_row of their source", mismatched);
    gguf_close(in);
    gguf_close(out);

    /* requantizing a quantized file works through F32; an unreadable type is named */
    const char *dst2 = tmp_path("out-q8_0.gguf");
    CHECK(ar_quantize_model(dst, dst2, "q8_0", 1, &err) == AR_OK, "requantize q4_k_m -> q8_0: %s", err.msg);
    CHECK(ar_quantize_model(src, dst2, "q4_k_x", 1, &err) == AR_EINVAL && strstr(err.msg, "q4_k_m"),
          "unknown type lists the valid ones: %s", err.msg);
    const char *bad_src = tmp_path("in-iq2.gguf");
    {
        /* rewrite one tensor as IQ2_XXS (random bytes are fine: it is never read) */
        gguf_writer *w = gguf_writer_create();
        gguf_set_str(w, "general.architecture", "qwen35");
        gguf_set_u32(w, "qwen35.block_count", 1);
        int64_t ne[2] = { 256, 4 };
        static uint8_t blob[4 * 66];
        gguf_add_tensor(w, "blk.0.ffn_up.weight", AR_IQ2_XXS, 2, ne, blob, NULL, NULL);
        CHECK(gguf_writer_write(w, bad_src, &err) == AR_OK, "write iq2 file: %s", err.msg);
        gguf_writer_free(w);
        int rc = ar_quantize_model(bad_src, dst2, "q4_k_m", 1, &err);
        CHECK(rc == AR_EUNSUPPORTED && strstr(err.msg, "blk.0.ffn_up.weight") && strstr(err.msg, "iq2_xxs") && strstr(err.msg, "q4_K"),
              "unsupported input type: rc %d, %s", rc, err.msg);
    }
    unlink(src); unlink(dst); unlink(dst2); unlink(bad_src);
}

int main(void)
{
    ar_log_level = AR_LOG_WARN;   /* no progress lines from the quantizer */
    snprintf(tmpdir, sizeof tmpdir, "%s", "/tmp/arbor-test-quant-XXXXXX");
    if (!mkdtemp(tmpdir)) { perror("mkdtemp"); return 1; }
    test_table();
    test_known_blocks();
    test_halves();
    test_round_trips();
    test_errors();
    test_plan();
    rmdir(tmpdir);
    TEST_END();
}
