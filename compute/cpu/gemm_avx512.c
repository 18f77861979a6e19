/* compute/cpu/gemm_avx512.c — AVX-512 (VNNI, BF16) kernels behind ar_gemm.
 *
 * Quantized types work on tiles of 16 weight rows: for one block column the 16 rows' quants are
 * unpacked to bytes and transposed so that 32-bit lane i of a vector holds 4 consecutive quants of
 * weight row i. One vpdpbusd with a broadcast 4-byte group of an activation row then advances the
 * dot products of all 16 weight rows, the sub-block scales are one vector multiply per sub-block,
 * and the float scale d_w*d_a is one FMA per block for 16 outputs. The tile is built once per
 * block and reused for every activation row (register-blocked 4 or 8 rows at a time), so M rows cost
 * M times the arithmetic but one weight read. Lanes are output rows, so no horizontal sums.
 * Later tiles are prefetched a few tiles ahead, in slices spread over the row groups, so the
 * weight stream from DRAM overlaps the arithmetic.
 *
 * K-quant weights in gemm.h's 16-row tile layout (packed at load) are already transposed: a tile's
 * dword columns are loaded as they lie (tsrc), one sequential stream per thread, and M = 1 dots them
 * straight from memory (m1_q4_K, m1_q6_K). The row layout keeps the transposing path and, at M = 1,
 * the row-dot path; all give the same bits.
 *
 * Unsigned x signed: vpdpbusd multiplies unsigned bytes (first operand) by signed bytes. Q4_K and
 * Q5_K quants are unsigned already (their mins use the Q8_K bsums); Q6_K and IQ4_XS store their
 * quants offset to unsigned and subtract offset * scale * bsums exactly in integers; the 32-element
 * types (Q8_0, Q4_0, IQ4_NL) keep signed weights and flip the activation instead (a + 128, one
 * xor per broadcast), subtracting the 128 * sum(w) that adds, computed once per tile.
 *
 * Float types use plain FMA (F32, F16) or vdpbf16ps (BF16) over 4 activation rows x 4 weight
 * rows with per-(row, row) vector accumulators and one horizontal sum at the end. */
#include "compute/cpu/gemm.h"

#if defined(__x86_64__) && defined(__AVX512F__) && defined(__AVX512BW__) && \
    defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__AVX512VNNI__) && \
    defined(__AVX512BF16__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "base/half.h"
#include "format/quant.h"

#define INLINE static inline __attribute__((always_inline))

enum { TW = 16,        /* weight rows per tile (lanes) */
       MCHUNK = 64,    /* activation rows per accumulator pass */
       MR = 4,         /* activation rows per register block (two-tile K-quant passes; the remainders) */
       MRK = 8,        /* activation rows per register block (one-tile K-quant passes, 32-element types) */
       PF_TILES = 3 }; /* software prefetch distance in tiles */

INLINE int32_t load_i32(const void *p) { int32_t v; memcpy(&v, p, 4); return v; }
INLINE float load_f32(const void *p) { float v; memcpy(&v, p, 4); return v; }
INLINE __m512i bcast4(const void *p) { return _mm512_set1_epi32(load_i32(p)); }

/* In-place transpose of a 16x16 matrix of 32-bit elements (r[i] = row i). */
INLINE void transpose16(__m512i r[16])
{
    __m512i a[16], b[16];
#pragma GCC unroll 16
    for (int i = 0; i < 16; i += 2) {
        a[i] = _mm512_unpacklo_epi32(r[i], r[i + 1]);
        a[i + 1] = _mm512_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 16
    for (int g = 0; g < 16; g += 4) {
        b[g + 0] = _mm512_unpacklo_epi64(a[g + 0], a[g + 2]);
        b[g + 1] = _mm512_unpackhi_epi64(a[g + 0], a[g + 2]);
        b[g + 2] = _mm512_unpacklo_epi64(a[g + 1], a[g + 3]);
        b[g + 3] = _mm512_unpackhi_epi64(a[g + 1], a[g + 3]);
    }
    /* b[4g + c] 128-bit lane k = column 4k + c of rows 4g..4g+3 */
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++) {
        const __m512i c0 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0x88);
        const __m512i c1 = _mm512_shuffle_i32x4(b[c], b[4 + c], 0xDD);
        const __m512i e0 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0x88);
        const __m512i e1 = _mm512_shuffle_i32x4(b[8 + c], b[12 + c], 0xDD);
        r[0 + c] = _mm512_shuffle_i32x4(c0, e0, 0x88);
        r[8 + c] = _mm512_shuffle_i32x4(c0, e0, 0xDD);
        r[4 + c] = _mm512_shuffle_i32x4(c1, e1, 0x88);
        r[12 + c] = _mm512_shuffle_i32x4(c1, e1, 0xDD);
    }
}

/* Load 16 bytes at p[i] + off for the 16 rows and transpose: out[c] lane i = dword c of row i. */
INLINE void load_headers16(const uint8_t *const p[TW], size_t off, __m512i out[4])
{
    __m512i z[4];
#pragma GCC unroll 16
    for (int g = 0; g < 4; g++) { /* z[g] 128-bit lane k = row g + 4k */
        __m512i v = _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(p[g] + off)));
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[g + 4] + off)), 1);
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[g + 8] + off)), 2);
        z[g] = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[g + 12] + off)), 3);
    }
    const __m512i a0 = _mm512_unpacklo_epi32(z[0], z[1]), a1 = _mm512_unpackhi_epi32(z[0], z[1]);
    const __m512i a2 = _mm512_unpacklo_epi32(z[2], z[3]), a3 = _mm512_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm512_unpacklo_epi64(a0, a2);
    out[1] = _mm512_unpackhi_epi64(a0, a2);
    out[2] = _mm512_unpacklo_epi64(a1, a3);
    out[3] = _mm512_unpackhi_epi64(a1, a3);
}

/* F16 in the low (hi=0) or high (hi=1) half of each 32-bit lane -> 16 floats. */
INLINE __m512 half_lanes_to_f32(__m512i v, int hi)
{
    if (hi) v = _mm512_srli_epi32(v, 16);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(v));
}

/* Per-lane F16 scales at byte offset off of each row as floats. */
INLINE __m512 gather_f16(const uint8_t *const p[TW], size_t off)
{
    uint16_t h[TW];
#pragma GCC unroll 16
    for (int i = 0; i < TW; i++) memcpy(&h[i], p[i] + off, 2);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)h));
}

/* Prefetch into L1 the bytes [p[i], p[i] + bytes) of rows i in [lo, hi). */
INLINE void prefetch_rows(const uint8_t *const p[TW], int lo, int hi, size_t bytes)
{
    for (int i = lo; i < hi; i++) {
        const uintptr_t end = (uintptr_t)(p[i] + bytes - 1);
        for (uintptr_t q = (uintptr_t)p[i] & ~(uintptr_t)63; q <= end; q += 64)
            _mm_prefetch((const char *)q, _MM_HINT_T0);
    }
}

/* Weight tiles are visited block column by block column (tb of ntb, tbytes per row), 16 rows at
 * a time. Sets out[] to the rows of the tile `ahead` visits after (o0, tb); 0 past the range.
 * Prefetching 3 tiles ahead, spread over the activation row groups, lets the DRAM stream overlap
 * the arithmetic (measured: M=1 x1.7 faster than a burst 1 tile ahead, M=16 x1.25). */
INLINE int tile_ahead(const uint8_t *wb, size_t wrb, int64_t o0, int64_t o_hi, int64_t tb, int64_t ntb,
                      size_t tbytes, int ahead, const uint8_t *out[TW])
{
    int64_t og = o0, b = tb + ahead;
    while (b >= ntb) { b -= ntb; og += TW; }
    if (og >= o_hi) return 0;
#pragma GCC unroll 16
    for (int i = 0; i < TW; i++) out[i] = wb + (size_t)(og + i < o_hi ? og + i : o_hi - 1) * wrb + (size_t)b * tbytes;
    return 1;
}

/* Store the 16 lanes of acc to y[0..nv). */
INLINE void store_rows(float *y, __m512 acc, int nv)
{
    if (nv == TW) _mm512_storeu_ps(y, acc);
    else _mm512_mask_storeu_ps(y, (__mmask16)((1u << nv) - 1), acc);
}

/* Store lanes [lo, hi) of acc to y[lo..hi) (y = lane 0; the other lanes are not touched). */
INLINE void store_lanes(float *y, __m512 acc, int lo, int hi)
{
    if (lo == 0) store_rows(y, acc, hi);
    else _mm512_mask_storeu_ps(y, (__mmask16)(((1u << hi) - 1) & ~((1u << lo) - 1)), acc);
}

/* Prefetch into L1 the bytes [p + lo, p + hi). */
INLINE void prefetch_span(const uint8_t *p, size_t lo, size_t hi)
{
    for (size_t q = lo & ~(size_t)63; q < hi; q += 64) _mm_prefetch((const char *)(p + q), _MM_HINT_T0);
}

/* Where a tile's bytes come from: 16 row pointers (row layout: transposed here, on every call) or
 * one pointer to a tile of the 16-row tile layout (gemm.h: stored transposed at load). */
typedef struct {
    const uint8_t *const *p;   /* row layout: p[i] = block of row i */
    const uint8_t *t;          /* tile layout: the tile; NULL for row layout */
} tsrc;

/* out[c] lane i = dword off/4 + c of row i's block, c < n (n = 4, 8 or 16; off a multiple of 4). */
INLINE void src_cols(tsrc s, size_t off, int n, __m512i *out)
{
    if (s.t) {
#pragma GCC unroll 16
        for (int c = 0; c < n; c++) out[c] = _mm512_loadu_si512(s.t + (off / 4 + (size_t)c) * 64);
        return;
    }
    if (n == 4) {
        load_headers16(s.p, off, out);
        return;
    }
    __m512i r[16];
#pragma GCC unroll 16
    for (int i = 0; i < TW; i++)
        r[i] = n == 16 ? _mm512_loadu_si512(s.p[i] + off)
                       : _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)(s.p[i] + off)));
    transpose16(r);
#pragma GCC unroll 16
    for (int c = 0; c < n; c++) out[c] = r[c];
}

/* The F16 at byte off of each row's block, as floats. In the tile layout off is the block's
 * 2-byte tail (Q6_K's d), stored after the dword columns as 16 consecutive halves. */
INLINE __m512 src_f16_tail(tsrc s, size_t off)
{
    if (s.t) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s.t + off / 4 * 64)));
    return gather_f16(s.p, off);
}

/* ---- K-quant tiles (Q4_K, Q5_K, Q6_K) -------------------------------------------------------- */

/* One 256-column block of 16 weight rows. q[k] lane i = quants 4k..4k+3 of row i (unsigned).
 * Q4_K/Q5_K: sc[j] = sub-block scale (32 each), mn[i] = mins of sub-blocks 2i, 2i+1 (16-bit pair).
 * Q6_K: sc[j] = scale of sub-block j (16 each), mn[j/2] = 32*scale pairs for the bsums. */
typedef struct {
    __m512i q[64];
    __m512i sc[16];
    __m512i mn[8];
    __m512 d, dmin;
    const uint8_t *qs;   /* Q4_K in the tile layout: the tile itself, whose quant columns are read in place */
} ktile;

/* Q4_K/Q5_K scales and mins for sub-blocks 0..7 from the 12 packed bytes (s0, s1, s2 = bytes
 * 0-3, 4-7, 8-11 of each lane's row); mn[i] = the mins of sub-blocks 2i, 2i+1 as 16-bit pair. */
INLINE void k4_scales16(ktile *t, __m512i s0, __m512i s1, __m512i s2)
{
    const __m512i m6 = _mm512_set1_epi32(63), m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3);
    __m512i mins[8];
#pragma GCC unroll 16
    for (int j = 0; j < 4; j++) {
        const __m512i sc = _mm512_and_si512(_mm512_srli_epi32(s0, 8 * j), m6);
        const __m512i mn = _mm512_and_si512(_mm512_srli_epi32(s1, 8 * j), m6);
        const __m512i sch = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi32(s2, 8 * j), m4),
            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(s0, 8 * j + 6), m2), 4));
        const __m512i mnh = _mm512_or_si512(
            _mm512_and_si512(_mm512_srli_epi32(s2, 8 * j + 4), m4),
            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(s1, 8 * j + 6), m2), 4));
        t->sc[j] = sc;
        t->sc[j + 4] = sch;
        mins[j] = mn;
        mins[j + 4] = mnh;
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) t->mn[i] = _mm512_or_si512(mins[2 * i], _mm512_slli_epi32(mins[2 * i + 1], 16));
}

/* Q4_K/Q5_K d, dmin, scales and mins from the block's first 4 dword columns. */
INLINE void k4_header(ktile *t, const __m512i h[4])
{
    t->d = half_lanes_to_f32(h[0], 0);
    t->dmin = half_lanes_to_f32(h[0], 1);
    k4_scales16(t, h[1], h[2], h[3]);
}

/* Q4_K: 144-byte blocks: d, dmin (4 bytes), scales (12), qs (128). */
INLINE void build_q4_K(ktile *t, tsrc src)
{
    __m512i h[4];
    src_cols(src, 0, 4, h);
    k4_header(t, h);
    t->qs = src.t;   /* tile layout: the quants are already where k4_chunk reads them */
    for (int half = 0; half < 2 && !src.t; half++) {
        __m512i r[16];
        src_cols(src, 16 + 64 * (size_t)half, 16, r);
        /* packed dword 16*half + u: chunk c = 2*half + u/8, t = u%8; its low nibbles are elements
         * 64c + 4t.. (quad 16c + t), its high nibbles 64c + 32 + 4t.. (quad 16c + 8 + t). Stored
         * packed at q[16c + t]; run_k4 splits the nibbles (cheaper than storing twice the tile). The tile
         * layout holds these columns already: they are read in place (k4_chunk), not copied. */
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) t->q[16 * (2 * half + u / 8) + u % 8] = r[u];
    }
}

/* Q5_K: 176-byte blocks: d, dmin, scales (12), qh (32), qs (128). Bit 2c (2c+1) of qh[l] is the
 * fifth bit of element l of the low (high) nibble half of chunk c. */
INLINE void build_q5_K(ktile *t, tsrc src)
{
    __m512i h[4];
    src_cols(src, 0, 4, h);
    k4_header(t, h);
    const __m512i m4 = _mm512_set1_epi8(0x0F), one = _mm512_set1_epi8(1);
    __m512i qh[8]; /* qh[u] lane i = qh bytes 4u..4u+3 of row i */
    src_cols(src, 16, 8, qh);
    for (int half = 0; half < 2; half++) {
        __m512i r[16];
        src_cols(src, 48 + 64 * (size_t)half, 16, r);
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) {
            const int c = 2 * half + u / 8, tt = u % 8;
            const __m512i hb = qh[tt];
            const __m512i lo5 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 2 * c), one), 4);
            const __m512i hi5 = _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(hb, 2 * c + 1), one), 4);
            t->q[16 * c + tt] = _mm512_or_si512(_mm512_and_si512(r[u], m4), lo5);
            t->q[16 * c + 8 + tt] =
                _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(r[u], 4), m4), hi5);
        }
    }
}

/* Q6_K scales from the 4 dword columns of scales[0..15] (h), and the offset terms for the bsums. */
INLINE void q6_scales(ktile *t, const __m512i h[4])
{
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++)
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) /* int8 -> int32, sign-extended */
            t->sc[4 * c + k] = _mm512_srai_epi32(_mm512_slli_epi32(h[c], 24 - 8 * k), 24);
#pragma GCC unroll 16
    for (int j = 0; j < 8; j++) {
        const __m512i s0 = _mm512_slli_epi32(t->sc[2 * j], 5), s1 = _mm512_slli_epi32(t->sc[2 * j + 1], 5);
        t->mn[j] = _mm512_or_si512(_mm512_and_si512(s0, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(s1, 16));
    }
}

/* The 6-bit quants of quads k0, k0 + 8, k0 + 16, k0 + 24 (k0 = 32 half + tt) from ql columns a = tt,
 * b = 8 + tt of the half and qh column h; for l in 0..31 (dword tt = l/4 of a 32-byte run):
 * e[l]    = ql[l] & 15        | (qh[l] >> 0 & 3) << 4
 * e[l+32] = ql[l+32] & 15     | (qh[l] >> 2 & 3) << 4
 * e[l+64] = ql[l] >> 4        | (qh[l] >> 4 & 3) << 4
 * e[l+96] = ql[l+32] >> 4     | (qh[l] >> 6 & 3) << 4 */
INLINE void q6_quads(__m512i a, __m512i b, __m512i h, __m512i q[4])
{
    /* bits 0-3 from the nibble, 4-5 from h, 6-7 zero: h's fields are masked to bits 0-1 and 4-5 of each
     * byte (hl: fields 0 and 2, hh: fields 1 and 3) and a bit select (vpternlogd, mask ? nibble : h) joins
     * them; the 32-bit shifts carry bits across bytes only into positions the select or mask drops */
    const __m512i m4 = _mm512_set1_epi8(0x0F), m33 = _mm512_set1_epi8(0x33);
    const __m512i hl = _mm512_and_si512(h, m33), hh = _mm512_and_si512(_mm512_srli_epi32(h, 2), m33);
    q[0] = _mm512_ternarylogic_epi32(a, _mm512_slli_epi32(hl, 4), m4, 0xE4);
    q[1] = _mm512_ternarylogic_epi32(b, _mm512_slli_epi32(hh, 4), m4, 0xE4);
    q[2] = _mm512_ternarylogic_epi32(_mm512_srli_epi32(a, 4), hl, m4, 0xE4);
    q[3] = _mm512_ternarylogic_epi32(_mm512_srli_epi32(b, 4), hh, m4, 0xE4);
}

/* Q6_K: 210-byte blocks: ql (128), qh (64), scales (16 x int8), d. Quants stored +32 (0..63). */
INLINE void build_q6_K(ktile *t, tsrc src)
{
    {
        __m512i h[4];
        src_cols(src, 192, 4, h); /* scales[0..15] */
        q6_scales(t, h);
        t->d = src_f16_tail(src, 208);
    }
    /* qh of both halves in one transpose: qh[8 * half + tt] lane i = qh bytes 32 half + 4tt.. of row i */
    __m512i qh[16];
    src_cols(src, 128, 16, qh);
    for (int half = 0; half < 2; half++) {
        __m512i ql[16];
        src_cols(src, 64 * (size_t)half, 16, ql);
#pragma GCC unroll 16
        for (int tt = 0; tt < 8; tt++) {
            const int k0 = 32 * half + tt; /* quad index of element 128*half + 4tt */
            __m512i q[4];
            q6_quads(ql[tt], ql[8 + tt], qh[8 * half + tt], q);
            t->q[k0] = q[0];
            t->q[k0 + 8] = q[1];
            t->q[k0 + 16] = q[2];
            t->q[k0 + 24] = q[3];
        }
    }
}

/* Q3_K: 110-byte blocks: hmask (32), qs (64), scales (12, 16 x 6 bits), d. Element 128n + 32s + l (l < 32)
 * is (qs[32n + l] >> 2s & 3) | (hmask[l] >> (4n + s) & 1) << 2, minus 4; stored unsigned (0..7) with the
 * - 4 taken off as 4 * sum_j sc_j bsums_j (the Q6_K scheme). Quad 32n + 8s + tt is dword tt of qs's half n
 * (column 8 + 8n + tt) against hmask column tt. The scales: 4 low bits from bytes 0-7 (j < 8: the low
 * nibble of byte j, else the high nibble of byte j - 8), 2 high bits from byte 8 + j % 4 at bit 2 (j / 4),
 * minus 32. */
/* Q3_K's scales from the dword columns of scale bytes 0-3, 4-7, 8-11 (h[1..3]): sc[j] = the 6-bit scale j
 * - 32; mn[p] = (4 sc_2p, 4 sc_2p+1) as 16-bit pairs, for the - 4 through the bsums. */
INLINE void q3_scales(ktile *t, const __m512i h[4])
{
    const __m512i m4 = _mm512_set1_epi32(0x0F0F0F0F), m2 = _mm512_set1_epi32(0x03030303);
    __m512i pk[4];   /* pk[c] byte k = the 6-bit scale 4c + k */
    pk[0] = _mm512_or_si512(_mm512_and_si512(h[1], m4), _mm512_slli_epi32(_mm512_and_si512(h[3], m2), 4));
    pk[1] = _mm512_or_si512(_mm512_and_si512(h[2], m4), _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h[3], 2), m2), 4));
    pk[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(h[1], 4), m4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h[3], 4), m2), 4));
    pk[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(h[2], 4), m4),
                            _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(h[3], 6), m2), 4));
    const __m512i b32 = _mm512_set1_epi32(32), ff = _mm512_set1_epi32(0xFF);
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++)
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++)
            t->sc[4 * c + k] = _mm512_sub_epi32(_mm512_and_si512(_mm512_srli_epi32(pk[c], 8 * k), ff), b32);
#pragma GCC unroll 16
    for (int j = 0; j < 8; j++) {   /* the offset terms: 4 sc as 16-bit pairs */
        const __m512i s0 = _mm512_slli_epi32(t->sc[2 * j], 2), s1 = _mm512_slli_epi32(t->sc[2 * j + 1], 2);
        t->mn[j] = _mm512_or_si512(_mm512_and_si512(s0, _mm512_set1_epi32(0xFFFF)), _mm512_slli_epi32(s1, 16));
    }
}

INLINE void build_q3_K(ktile *t, tsrc src)
{
    {
        __m512i h[4];
        src_cols(src, 92, 4, h);   /* h[1..3] = scale bytes 0-3, 4-7, 8-11 (h[0]: the last qs dword; reading
                                      from 96 would run 2 bytes past the block) */
        q3_scales(t, h);
        t->d = src_f16_tail(src, 108);
    }
    __m512i hm[8], qs[16];
    src_cols(src, 0, 8, hm);
    src_cols(src, 32, 16, qs);
    const __m512i m2 = _mm512_set1_epi8(3), b2 = _mm512_set1_epi8(4);
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++)
#pragma GCC unroll 4
        for (int sh = 0; sh < 4; sh++) {
            const int hb = 4 * n + sh;   /* the hmask bit of these elements, moved to bit 2 */
#pragma GCC unroll 8
            for (int tt = 0; tt < 8; tt++) {
                const __m512i lo = _mm512_srli_epi32(qs[8 * n + tt], 2 * sh);
                const __m512i hi = hb >= 2 ? _mm512_srli_epi32(hm[tt], hb - 2) : _mm512_slli_epi32(hm[tt], 2 - hb);
                /* (lo & 3) | (hi & 4): bit select of two pre-shifted fields */
                t->q[32 * n + 8 * sh + tt] = _mm512_ternarylogic_epi32(lo, _mm512_and_si512(hi, b2), m2, 0xE4);
            }
        }
}

/* Q2_K: 84-byte blocks: scales (16: scale in the low nibble, min in the high), qs (64), d, dmin. Element
 * 128n + 32s + l (l < 32) is qs[32n + l] >> 2s & 3 (quad 32n + 8s + tt from qs column 4 + 8n + tt), of
 * sub-block 8n + 2s + l / 16; its value d sc u - dmin m. sc[j] = scale j; mn[p] = the mins of sub-blocks
 * 2p, 2p+1 as a 16-bit pair, summed against the bsums and scaled by dmin (off_finish, mins16). */
/* Q2_K's scales and mins from the 4 dword columns of scale bytes (h): sc[j] = scale j, mn[p] = the mins of
 * sub-blocks 2p, 2p+1 as a 16-bit pair. */
INLINE void q2_scales(ktile *t, const __m512i h[4])
{
    const __m512i m4 = _mm512_set1_epi32(0x0F);
    __m512i mins[16];
#pragma GCC unroll 16
    for (int c = 0; c < 4; c++)
#pragma GCC unroll 16
        for (int k = 0; k < 4; k++) {
            t->sc[4 * c + k] = _mm512_and_si512(_mm512_srli_epi32(h[c], 8 * k), m4);
            mins[4 * c + k] = _mm512_and_si512(_mm512_srli_epi32(h[c], 8 * k + 4), m4);
        }
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++) t->mn[p] = _mm512_or_si512(mins[2 * p], _mm512_slli_epi32(mins[2 * p + 1], 16));
}

INLINE void build_q2_K(ktile *t, tsrc src)
{
    __m512i h[4];
    src_cols(src, 0, 4, h);   /* scales bytes 4c..4c+3 */
    q2_scales(t, h);
    {
        __m512i dd[4];
        src_cols(src, 68, 4, dd);   /* dd[3] = d | dmin << 16 (16 bytes ending at the block's end) */
        t->d = half_lanes_to_f32(dd[3], 0);
        t->dmin = half_lanes_to_f32(dd[3], 1);
    }
    __m512i qs[16];
    src_cols(src, 16, 16, qs);
    const __m512i m2 = _mm512_set1_epi8(3);
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++)
#pragma GCC unroll 4
        for (int sh = 0; sh < 4; sh++)
#pragma GCC unroll 8
            for (int tt = 0; tt < 8; tt++)
                t->q[32 * n + 8 * sh + tt] = _mm512_and_si512(_mm512_srli_epi32(qs[8 * n + tt], 2 * sh), m2);
}

/* IQ4_XS: 136-byte blocks: d, scales_h (2), scales_l (4), qs (128). Sub-block j (32) has the
 * 6-bit scale ls_j - 32 and its nibbles in qs[16j..16j+15] (low: elements 0..15, high: 16..31);
 * values are ar_iq4nl_values, stored +128 so they are unsigned. */
/* IQ4_XS's d, scales (ls_j - 32) and offset terms (128 ls_j for both bsums of sub-block j) from dword columns 0
 * (d | scales_h << 16) and 1 (scales_l). */
INLINE void iq4xs_scales(ktile *t, __m512i h0, __m512i h1)
{
    t->d = half_lanes_to_f32(h0, 0);
    const __m512i m4 = _mm512_set1_epi32(15), m2 = _mm512_set1_epi32(3), b32 = _mm512_set1_epi32(32);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const __m512i lo = _mm512_and_si512(_mm512_srli_epi32(h1, 4 * j), m4);
        const __m512i hi = _mm512_and_si512(_mm512_srli_epi32(h0, 16 + 2 * j), m2);
        const __m512i ls = _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), b32);
        t->sc[j] = ls;
        const __m512i o = _mm512_and_si512(_mm512_slli_epi32(ls, 7), _mm512_set1_epi32(0xFFFF));
        t->mn[j] = _mm512_or_si512(o, _mm512_slli_epi32(o, 16));
    }
}

INLINE void build_iq4_xs(ktile *t, tsrc src)
{
    __m512i h[4];
    src_cols(src, 0, 4, h); /* h[0] = d | scales_h << 16, h[1] = scales_l */
    iq4xs_scales(t, h[0], h[1]);
    const __m512i n4 = _mm512_set1_epi8(0x0F);
    const __m512i lut = _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)ar_iq4nl_values)),
                                         _mm512_set1_epi8((char)0x80));
#pragma GCC unroll 1
    for (int half = 0; half < 2; half++) {
        __m512i r[16];
        src_cols(src, 8 + 64 * (size_t)half, 16, r);
#pragma GCC unroll 16
        for (int u = 0; u < 16; u++) { /* qs bytes 64 half + 4u..: sub-block 4 half + u/4 */
            const int k = 8 * (4 * half + u / 4) + u % 4;
            t->q[k] = _mm512_shuffle_epi8(lut, _mm512_and_si512(r[u], n4));
            t->q[k + 4] = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi32(r[u], 4), n4));
        }
    }
}

/* Q8_K activation block: d (float), qs[256] at +4, bsums[16] at +260. */
enum { Q8K_QS = 4, Q8K_BSUMS = 260, Q8K_BYTES = 292 };

/* The per-row ends of the tile runs, shared by the one- and two-tile passes: fold the mins (Q4_K /
 * Q5_K: dmin * sum_j m_j bsums) or the quant offset (Q6_K, IQ4_XS) into the exact integer sum, scale by
 * d and the activation row's d8, add to acc. */
INLINE __m512 k4_finish(const ktile *t, const uint8_t *a, const uint8_t *pairs, __m512i isum, __m512 acc)
{
    /* sum_j m_j (bsums 2j + 2j+1): the activation row's pair sums (gemm.h) against the mins in pairs */
    const __m512i i0 = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(_mm512_setzero_si512(), t->mn[0], bcast4(pairs)),
                                           t->mn[2], bcast4(pairs + 8));
    const __m512i i1 = _mm512_dpwssd_epi32(_mm512_dpwssd_epi32(_mm512_setzero_si512(), t->mn[1], bcast4(pairs + 4)),
                                           t->mn[3], bcast4(pairs + 12));
    const __m512i imin = _mm512_add_epi32(i0, i1);
    const __m512 f = _mm512_fmsub_ps(_mm512_cvtepi32_ps(isum), t->d, _mm512_mul_ps(_mm512_cvtepi32_ps(imin), t->dmin));
    return _mm512_fmadd_ps(f, _mm512_set1_ps(load_f32(a)), acc);
}

/* mins16: Q2_K, whose mn[p] are the mins of sub-blocks 2p, 2p+1 (16 elements each): the same integer sum over
 * the bsums is the mins' term, scaled by dmin: f = is * d - im * dmin (as k4_finish). */
INLINE __m512 off_finish(const ktile *t, const uint8_t *a, __m512i isum, __m512 acc, int mins16)
{
    __m512i o0 = _mm512_setzero_si512(), o1 = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int j = 0; j < 8; j += 2) {
        o0 = _mm512_dpwssd_epi32(o0, t->mn[j], bcast4(a + Q8K_BSUMS + 4 * j));
        o1 = _mm512_dpwssd_epi32(o1, t->mn[j + 1], bcast4(a + Q8K_BSUMS + 4 * j + 4));
    }
    const __m512i off = _mm512_add_epi32(o0, o1);
    const __m512 f = mins16 ? _mm512_fmsub_ps(_mm512_cvtepi32_ps(isum), t->d, _mm512_mul_ps(_mm512_cvtepi32_ps(off), t->dmin))
                            : _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(isum, off)), t->d);
    return _mm512_fmadd_ps(f, _mm512_set1_ps(load_f32(a)), acc);
}

/* The 8 packed quant vectors of Q4_K chunk c (elements 64c..64c+63, see build_q4_K): in the tile
 * layout the tile's dword columns 4 + 16 (c / 2) + 8 (c % 2) + 0..7, read in place; from the row layout
 * the copies at q[16c..]. */
INLINE const uint8_t *k4_chunk(const ktile *t, int c)
{
    if (t->qs) return t->qs + (size_t)(4 + 16 * (c / 2) + 8 * (c % 2)) * 64;
    return (const uint8_t *)(t->q + 16 * c);
}

/* A tile's quant vector (64 bytes at p) for sub-block j: Q5_K's as stored; Q4_K's (packed nibble pairs,
 * see build_q4_K) the low nibbles for even j, the high ones for odd j. */
INLINE __m512i k4_quants(const uint8_t *p, int j, int packed, __m512i m4)
{
    __m512i w = _mm512_loadu_si512(p);
    if (!packed) return w;
    if (j & 1) w = _mm512_srli_epi32(w, 4);
    return _mm512_and_si512(w, m4);
}

/* Q4_K/Q5_K tile x R activation rows: acc[r] += d8_r * (d * sum_j sc_j q.a - dmin * sum_j m_j bsums).
 * Two dpbusd chains per row (even/odd quads) keep 2R independent chains in flight; the mins are
 * folded in at the end (k4_finish). packed: the
 * tile holds Q4_K nibble pairs (see build_q4_K), split here per sub-block. */
INLINE void run_k4(const ktile *t, const uint8_t *const a[MRK], int R, int packed, size_t poff, __m512 *acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i isum[MRK];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) isum[r] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int j = 0; j < 8; j++) {
        __m512i s0[MRK], s1[MRK];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) s0[r] = s1[r] = _mm512_setzero_si512();
        const uint8_t *q = packed ? k4_chunk(t, j / 2) : (const uint8_t *)(t->q + 8 * j);
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt += 2) {
            const __m512i w0 = k4_quants(q + 64 * tt, j, packed, m4), w1 = k4_quants(q + 64 * (tt + 1), j, packed, m4);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const uint8_t *x = a[r] + Q8K_QS + 32 * j + 4 * tt;
                s0[r] = _mm512_dpbusd_epi32(s0[r], w0, bcast4(x));
                s1[r] = _mm512_dpbusd_epi32(s1[r], w1, bcast4(x + 4));
            }
        }
        const __m512i sc = t->sc[j];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(_mm512_add_epi32(s0[r], s1[r]), sc));
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r] = k4_finish(t, a[r], a[r] + poff, isum[r], acc[r]);
}

/* Tiles with offset quants (Q6_K: q+32, IQ4_XS: value+128) x R rows, QS quads per sub-block:
 * acc[r] += d8_r * d * (sum_j sc_j q.a - sum_p mn_p . bsums pair p), the offset removed exactly in
 * integers (mn[p] = offset * scale of the two 16-element groups of bsums pair p). */
INLINE void run_off(const ktile *t, const uint8_t *const a[MRK], int R, int QS, int mins16, __m512 *acc)
{
    __m512i isum[MRK];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) isum[r] = _mm512_setzero_si512();
    for (int j = 0; j < 64 / QS; j++) {
        __m512i s0[MRK], s1[MRK];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) s0[r] = s1[r] = _mm512_setzero_si512();
        const __m512i *q = t->q + QS * j;
#pragma GCC unroll 8
        for (int tt = 0; tt < QS; tt += 2) {
            const __m512i w0 = q[tt], w1 = q[tt + 1];
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const uint8_t *x = a[r] + Q8K_QS + 4 * QS * j + 4 * tt;
                s0[r] = _mm512_dpbusd_epi32(s0[r], w0, bcast4(x));
                s1[r] = _mm512_dpbusd_epi32(s1[r], w1, bcast4(x + 4));
            }
        }
        const __m512i sc = t->sc[j];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
            isum[r] = _mm512_add_epi32(isum[r], _mm512_mullo_epi32(_mm512_add_epi32(s0[r], s1[r]), sc));
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r] = off_finish(t, a[r], isum[r], acc[r], mins16);
}

/* Two tiles (32 weight rows) x R activation rows: each broadcast activation group feeds a
 * vpdpbusd per tile, so the activation loads per vpdpbusd halve (prompt chunks; at M = 16 with the weights in
 * L1 halving them did not shorten a tile: `tile_bench TYPE 32 16` with PAIR_M 16, docs/BENCHMARKS.md, 21:20
 * UTC section). Two chains per (tile, row), even
 * and odd quads, so 4R vpdpbusd chains are in flight (with one per (tile, row) the kernel waited on their
 * latency: Q4_K M = 64 2.5-3 % slower, docs/BENCHMARKS.md); the integer sums are exact, so every output is
 * the same bits as the one-tile path's. */
INLINE void run2_k4(const ktile *t0, const ktile *t1, const uint8_t *const a[MR], int R, int packed, size_t poff, __m512 *acc0,
                    __m512 *acc1)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i isum0[MR], isum1[MR];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) isum0[r] = isum1[r] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int j = 0; j < 8; j++) {
        __m512i s0[MR], s1[MR], u0[MR], u1[MR];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) s0[r] = s1[r] = u0[r] = u1[r] = _mm512_setzero_si512();
        const uint8_t *q0 = packed ? k4_chunk(t0, j / 2) : (const uint8_t *)(t0->q + 8 * j);
        const uint8_t *q1 = packed ? k4_chunk(t1, j / 2) : (const uint8_t *)(t1->q + 8 * j);
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt += 2) {
            const __m512i w0 = k4_quants(q0 + 64 * tt, j, packed, m4), w1 = k4_quants(q1 + 64 * tt, j, packed, m4);
            const __m512i v0 = k4_quants(q0 + 64 * (tt + 1), j, packed, m4), v1 = k4_quants(q1 + 64 * (tt + 1), j, packed, m4);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const __m512i x = bcast4(a[r] + Q8K_QS + 32 * j + 4 * tt);
                const __m512i y = bcast4(a[r] + Q8K_QS + 32 * j + 4 * tt + 4);
                s0[r] = _mm512_dpbusd_epi32(s0[r], w0, x);
                s1[r] = _mm512_dpbusd_epi32(s1[r], w1, x);
                u0[r] = _mm512_dpbusd_epi32(u0[r], v0, y);
                u1[r] = _mm512_dpbusd_epi32(u1[r], v1, y);
            }
        }
        const __m512i sc0 = t0->sc[j], sc1 = t1->sc[j];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            isum0[r] = _mm512_add_epi32(isum0[r], _mm512_mullo_epi32(_mm512_add_epi32(s0[r], u0[r]), sc0));
            isum1[r] = _mm512_add_epi32(isum1[r], _mm512_mullo_epi32(_mm512_add_epi32(s1[r], u1[r]), sc1));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        acc0[r] = k4_finish(t0, a[r], a[r] + poff, isum0[r], acc0[r]);
        acc1[r] = k4_finish(t1, a[r], a[r] + poff, isum1[r], acc1[r]);
    }
}

INLINE void run2_off(const ktile *t0, const ktile *t1, const uint8_t *const a[MR], int R, int QS, int mins16, __m512 *acc0,
                     __m512 *acc1)
{
    __m512i isum0[MR], isum1[MR];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) isum0[r] = isum1[r] = _mm512_setzero_si512();
    for (int j = 0; j < 64 / QS; j++) {
        __m512i s0[MR], s1[MR];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) s0[r] = s1[r] = _mm512_setzero_si512();
        const __m512i *q0 = t0->q + QS * j, *q1 = t1->q + QS * j;
#pragma GCC unroll 8
        for (int tt = 0; tt < QS; tt++) {
            const __m512i w0 = q0[tt], w1 = q1[tt];
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const __m512i x = bcast4(a[r] + Q8K_QS + 4 * QS * j + 4 * tt);
                s0[r] = _mm512_dpbusd_epi32(s0[r], w0, x);
                s1[r] = _mm512_dpbusd_epi32(s1[r], w1, x);
            }
        }
        const __m512i sc0 = t0->sc[j], sc1 = t1->sc[j];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            isum0[r] = _mm512_add_epi32(isum0[r], _mm512_mullo_epi32(s0[r], sc0));
            isum1[r] = _mm512_add_epi32(isum1[r], _mm512_mullo_epi32(s1[r], sc1));
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) {
        acc0[r] = off_finish(t0, a[r], isum0[r], acc0[r], mins16);
        acc1[r] = off_finish(t1, a[r], isum1[r], acc1[r], mins16);
    }
}

enum { KT_Q4_K, KT_Q5_K, KT_Q6_K, KT_IQ4_XS, KT_Q3_K, KT_Q2_K };

INLINE void run_ktile(const ktile *t, const uint8_t *const a[MRK], int R, int kind, size_t poff, __m512 *acc)
{
    if (kind == KT_Q6_K || kind == KT_Q3_K || kind == KT_Q2_K) run_off(t, a, R, 4, kind == KT_Q2_K, acc);
    else if (kind == KT_IQ4_XS) run_off(t, a, R, 8, 0, acc);
    else run_k4(t, a, R, kind == KT_Q4_K, poff, acc);
}

INLINE void run_ktile2(const ktile *t0, const ktile *t1, const uint8_t *const a[MR], int R, int kind, size_t poff,
                       __m512 *acc0, __m512 *acc1)
{
    if (kind == KT_Q6_K || kind == KT_Q3_K || kind == KT_Q2_K) run2_off(t0, t1, a, R, 4, kind == KT_Q2_K, acc0, acc1);
    else if (kind == KT_IQ4_XS) run2_off(t0, t1, a, R, 8, 0, acc0, acc1);
    else run2_k4(t0, t1, a, R, kind == KT_Q4_K, poff, acc0, acc1);
}

/* ---- one activation row on the tile layout (decode) --------------------------------------------
 * At M = 1 a tile is used once, so staging it in a ktile (64 vector stores, reloaded by the run) only
 * costs issue slots, and at M = 1 the kernel has few to spare: one thread streams ~35 GB/s, less than
 * its share of DRAM. These take the quants straight from the tile's dword columns into vpdpbusd. The
 * integer sums are exact and the float steps (k4_finish, off_finish) the same, so the results are the
 * general tile path's bits (tests/test_gemm.c). */

/* Q4_K tile (layout of build_q4_K) x one Q8_K block a. */
INLINE __m512 m1_q4_K(const uint8_t *tile, const uint8_t *a, const uint8_t *pairs, __m512 acc)
{
    ktile t;   /* only the scales, mins, d and dmin are filled */
    __m512i h[4];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) h[c] = _mm512_loadu_si512(tile + 64 * c);   /* dword columns 0..3 */
    k4_header(&t, h);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const uint8_t *x = a + Q8K_QS;
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int c = 0; c < 4; c++) {   /* chunk c: elements 64c.. (sub-block 2c low nibbles, 2c+1 high) */
        const uint8_t *col = tile + (size_t)(4 + 16 * (c / 2) + 8 * (c % 2)) * 64;
        __m512i lo0 = _mm512_setzero_si512(), lo1 = lo0, hi0 = lo0, hi1 = lo0;
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt += 2) {
            const __m512i v0 = _mm512_loadu_si512(col + 64 * tt), v1 = _mm512_loadu_si512(col + 64 * (tt + 1));
            lo0 = _mm512_dpbusd_epi32(lo0, _mm512_and_si512(v0, m4), bcast4(x + 64 * c + 4 * tt));
            lo1 = _mm512_dpbusd_epi32(lo1, _mm512_and_si512(v1, m4), bcast4(x + 64 * c + 4 * tt + 4));
            hi0 = _mm512_dpbusd_epi32(hi0, _mm512_and_si512(_mm512_srli_epi32(v0, 4), m4), bcast4(x + 64 * c + 32 + 4 * tt));
            hi1 = _mm512_dpbusd_epi32(hi1, _mm512_and_si512(_mm512_srli_epi32(v1, 4), m4), bcast4(x + 64 * c + 36 + 4 * tt));
        }
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(lo0, lo1), t.sc[2 * c]));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(hi0, hi1), t.sc[2 * c + 1]));
    }
    return k4_finish(&t, a, pairs, isum, acc);
}

/* Q6_K tile (layout of build_q6_K) x one Q8_K block a. Quad k (elements 4k..4k+3) is in sub-block
 * k / 4; the quads of column tt of half h are 32h + tt + {0, 8, 16, 24}. */
INLINE __m512 m1_q6_K(const uint8_t *tile, const uint8_t *a, __m512 acc)
{
    ktile t;   /* only the scales (sc), the offset terms (mn) and d are filled */
    {
        __m512i h[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) h[c] = _mm512_loadu_si512(tile + 64 * (48 + c));   /* scales: columns 48..51 */
        q6_scales(&t, h);
        t.d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(tile + 52 * 64)));   /* the d tail */
    }
    const uint8_t *x = a + Q8K_QS;
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int half = 0; half < 2; half++)
#pragma GCC unroll 1
        for (int g = 0; g < 2; g++) {   /* columns tt = 4g..4g+3: sub-blocks 8 half + g + {0, 2, 4, 6} */
            __m512i s[4] = { _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                             _mm512_setzero_si512() };
#pragma GCC unroll 4
            for (int tt = 4 * g; tt < 4 * g + 4; tt++) {
                const __m512i av = _mm512_loadu_si512(tile + (size_t)(16 * half + tt) * 64);
                const __m512i bv = _mm512_loadu_si512(tile + (size_t)(16 * half + 8 + tt) * 64);
                const __m512i hv = _mm512_loadu_si512(tile + (size_t)(32 + 8 * half + tt) * 64);
                const int k0 = 32 * half + tt;
                __m512i q[4];
                q6_quads(av, bv, hv, q);
                s[0] = _mm512_dpbusd_epi32(s[0], q[0], bcast4(x + 4 * k0));
                s[1] = _mm512_dpbusd_epi32(s[1], q[1], bcast4(x + 4 * (k0 + 8)));
                s[2] = _mm512_dpbusd_epi32(s[2], q[2], bcast4(x + 4 * (k0 + 16)));
                s[3] = _mm512_dpbusd_epi32(s[3], q[3], bcast4(x + 4 * (k0 + 24)));
            }
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++)
                isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(s[q], t.sc[8 * half + g + 2 * q]));
        }
    return off_finish(&t, a, isum, acc, 0);
}

/* ---- row-dot path for M <= 2 (decode) ---------------------------------------------------------
 * At M = 1 the tile path's transposition (16 row streams, a transpose per block) costs more than
 * it saves: the arithmetic per weight byte is tiny and the kernel must simply stream the weights at
 * DRAM speed. Here each weight row is one sequential stream (what the hardware prefetcher follows
 * best) and its blocks are dotted with the activation row(s) in their natural order: vpmaddubsw
 * (unsigned quants x signed Q8_K bytes -> 16-bit pairs) then vpdpwssd by the 16-bit sub-block
 * scales into 32-bit sums, one float FMA per block, one horizontal sum per output. The integer sums
 * are exact (|pair| <= 63 * 128 * 2 < 2^15), so results match the reference to float rounding. */

enum { ROWDOT_MAX_BLOCKS = 96 };   /* n_in <= 24576 (the 27B FFN is 17408) */

INLINE int32_t hsum256_epi32(__m256i v)
{
    __m128i x = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    x = _mm_add_epi32(x, _mm_unpackhi_epi64(x, x));
    return _mm_cvtsi128_si32(_mm_add_epi32(x, _mm_shuffle_epi32(x, 1)));
}

/* Lane k of a 32 x 16-bit vector -> the index of its scale (constants of the layouts below). */
INLINE __m512i scale_index(int base, int per, int second)
{
    int16_t idx[32];
    for (int k = 0; k < 32; k++) idx[k] = (int16_t)(k < 16 ? base + k / per : second + (k - 16) / per);
    return _mm512_loadu_si512(idx);
}

/* vpshufb control: int16 lanes 0..15 (128-bit lanes 0, 1) take 16-bit element lo of each 128-bit
 * lane, lanes 16..31 take element hi. */
INLINE __m512i scale_pick(int lo, int hi)
{
    int8_t idx[64];
    for (int k = 0; k < 64; k++) {
        const int e = k < 32 ? lo : hi;
        idx[k] = (int8_t)(2 * e + (k & 1));
    }
    return _mm512_loadu_si512(idx);
}

/* Q4_K: the 6-bit scales and mins of sub-blocks 0..7 from the 12 packed bytes, as bytes. */
INLINE void k4_unpack(const uint8_t *s, uint64_t *sc, uint64_t *mn)
{
    uint32_t u0, u1, u2;
    memcpy(&u0, s, 4);
    memcpy(&u1, s + 4, 4);
    memcpy(&u2, s + 8, 4);
    const uint32_t sc_lo = u0 & 0x3f3f3f3fu, mn_lo = u1 & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 6) & 0x03030303u) << 4;
    const uint32_t mn_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 6) & 0x03030303u) << 4;
    *sc = sc_lo | (uint64_t)sc_hi << 32;
    *mn = mn_lo | (uint64_t)mn_hi << 32;
}

/* Q4_K block (144 bytes: d, dmin, scales[12], qs[128]) x R Q8_K rows. qs byte 32c + l holds
 * element 64c + l (low nibble) and 64c + 32 + l (high nibble); sub-block j = elements 32j.. has
 * scale sc[j] and min mn[j]. A 64-byte load covers chunks 2h, 2h+1: its low nibbles are elements
 * 128h + [0, 32) and 128h + [64, 96) (sub-blocks 4h, 4h+2), its high nibbles 128h + [32, 64) and
 * 128h + [96, 128) (sub-blocks 4h+1, 4h+3). */
INLINE float rowdot_q4_K_block(const uint8_t *blk, const uint8_t *a, const uint8_t *xa, float acc)
{
    static const int8_t dup[16] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    uint64_t sc, mn;
    k4_unpack(blk + 4, &sc, &mn);
    /* the 8 scales as 16-bit values in every 128-bit lane; vpshufb picks one per lane pair */
    const __m512i s16 = _mm512_broadcast_i32x4(_mm_cvtepu8_epi16(_mm_cvtsi64_si128((long long)sc)));
    const __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(_mm_cvtsi64_si128((long long)mn), _mm_loadu_si128((const __m128i *)dup)));
    __m512i w[4], s[4];
    for (int h = 0; h < 2; h++) {
        const __m512i q = _mm512_loadu_si512(blk + 16 + 64 * h);
        w[2 * h] = _mm512_and_si512(q, m4);
        w[2 * h + 1] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        s[2 * h] = _mm512_shuffle_epi8(s16, scale_pick(4 * h, 4 * h + 2));
        s[2 * h + 1] = _mm512_shuffle_epi8(s16, scale_pick(4 * h + 1, 4 * h + 3));
    }
    uint16_t dh[2];
    memcpy(dh, blk, 4);
    const __m128 d = _mm_set_ss(_cvtsh_ss(dh[0])), dmin = _mm_set_ss(_cvtsh_ss(dh[1]));
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++)
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(w[k], _mm512_load_si512(xa + 64 * k)), s[k]);
    const __m256i bs = _mm256_loadu_si256((const __m256i *)(a + Q8K_BSUMS));
    const int32_t is = _mm512_reduce_add_epi32(isum), im = hsum256_epi32(_mm256_madd_epi16(bs, m16));
    /* the tile path's float steps, bit for bit: f = is * d - im * dmin, acc += f * d8 */
    const __m128 f = _mm_fmsub_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), is), d,
                                  _mm_mul_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), im), dmin));
    return _mm_cvtss_f32(_mm_fmadd_ss(f, _mm_set_ss(load_f32(a)), _mm_set_ss(acc)));
}

/* Q6_K block (210 bytes: ql[128], qh[64], scales[16] int8, d) x R Q8_K rows. For half h and
 * l < 32, with A = ql[64h + l], B = ql[64h + 32 + l], H = qh[32h + l], the elements 128h + l,
 * + 32 + l, + 64 + l, + 96 + l are (A & 15 | (H & 3) << 4), (B & 15 | (H >> 2 & 3) << 4),
 * (A >> 4 | (H >> 4 & 3) << 4), (B >> 4 | (H >> 6 & 3) << 4), each stored + 32; scale group g
 * = 16 elements. So a 64-byte ql load gives elements 128h + [0, 64) from its low nibbles and
 * 128h + [64, 128) from its high nibbles, with the 2-bit tops from qh duplicated in both halves and
 * shifted per half. The + 32 offset comes off as 32 * sum_g sc_g * bsum_g. */
INLINE float rowdot_q6_K_block(const uint8_t *blk, const uint8_t *a, float acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(3);
    const __m512i cnt_lo = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
    const __m512i cnt_hi = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(6), 1);
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(blk + 192)));
    const __m512i s16 = _mm512_castsi256_si512(sc16);
    __m512i w[4], s[4];
    for (int h = 0; h < 2; h++) {
        const __m512i ql = _mm512_loadu_si512(blk + 64 * h);
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h)));
        w[2 * h] = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                   _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, cnt_lo), m2), 4));
        w[2 * h + 1] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                       _mm512_slli_epi16(_mm512_and_si512(_mm512_srlv_epi16(qh, cnt_hi), m2), 4));
        s[2 * h] = _mm512_permutexvar_epi16(scale_index(8 * h, 8, 8 * h + 2), s16);
        s[2 * h + 1] = _mm512_permutexvar_epi16(scale_index(8 * h + 4, 8, 8 * h + 6), s16);
    }
    uint16_t dh;
    memcpy(&dh, blk + 208, 2);
    const __m128 d = _mm_set_ss(_cvtsh_ss(dh));
    const uint8_t *x = a + Q8K_QS;
    __m512i isum = _mm512_setzero_si512();
    for (int k = 0; k < 4; k++)
        isum = _mm512_dpwssd_epi32(isum, _mm512_maddubs_epi16(w[k], _mm512_loadu_si512(x + 64 * k)), s[k]);
    const __m256i bs = _mm256_loadu_si256((const __m256i *)(a + Q8K_BSUMS));
    const int32_t tot = _mm512_reduce_add_epi32(isum) - 32 * hsum256_epi32(_mm256_madd_epi16(bs, sc16));
    /* the tile path's float steps: acc += (tot * d) * d8 */
    const __m128 f = _mm_mul_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), tot), d);
    return _mm_cvtss_f32(_mm_fmadd_ss(f, _mm_set_ss(load_f32(a)), _mm_set_ss(acc)));
}

/* y[o] for o in [o_lo, o_hi), one activation row: one weight row at a time, blocks in order. Each
 * block's integer sums are exact and the float steps per block are the tile path's, in the same order,
 * so an output does not depend on M or on which path computed it (batch invariance, tests/test_gemm). */
INLINE void rowdot_k(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi, const void *xq,
                     float *y, int kind)
{
    const int64_t nb = n_in / AR_QK_K;
    const size_t bbytes = kind == KT_Q4_K ? sizeof(ar_block_q4_K) : sizeof(ar_block_q6_K);
    const uint8_t *x = xq;
    /* Q4_K: the activation quants reordered once per call to match the nibble order of a 64-byte
     * weight load (see rowdot_q4_K_block): [0,32)+[64,96), [32,64)+[96,128), then +128 */
    _Alignas(64) uint8_t xa[ROWDOT_MAX_BLOCKS * AR_QK_K];
    for (int64_t b = 0; b < nb && kind == KT_Q4_K; b++) {
        const uint8_t *src = x + (size_t)b * Q8K_BYTES + Q8K_QS;
        uint8_t *dst = xa + (size_t)b * AR_QK_K;
        for (int h = 0; h < 2; h++)
            for (int hi = 0; hi < 2; hi++) {
                memcpy(dst + 128 * h + 64 * hi, src + 128 * h + 32 * hi, 32);
                memcpy(dst + 128 * h + 64 * hi + 32, src + 128 * h + 32 * hi + 64, 32);
            }
    }
    for (int64_t o = o_lo; o < o_hi; o++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)o * wrb;
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * bbytes, *a = x + (size_t)b * Q8K_BYTES;
            acc = kind == KT_Q4_K ? rowdot_q4_K_block(blk, a, xa + (size_t)b * AR_QK_K, acc)
                                  : rowdot_q6_K_block(blk, a, acc);
        }
        y[o] = acc;
    }
}

INLINE void build_ktile(ktile *t, tsrc src, int kind)
{
    if (kind == KT_Q4_K) build_q4_K(t, src);
    else if (kind == KT_Q5_K) build_q5_K(t, src);
    else if (kind == KT_Q6_K) build_q6_K(t, src);
    else if (kind == KT_Q3_K) build_q3_K(t, src);
    else if (kind == KT_Q2_K) build_q2_K(t, src);
    else build_iq4_xs(t, src);
}

/* The driver shared by the K-quants: tiles of 16 weight rows, activation rows in chunks of MCHUNK
 * with float accumulators in L1, mr rows per register block (krows). From PAIR_M activation rows on (prompt
 * chunks) two tiles at a time (32 rows, run_ktile2), which halves the activation loads; below it the
 * 32 concurrent weight-row streams cost more than that saves (gemm_bench q4_K 2048x6144 from DRAM,
 * 2 threads: M = 4 0.233 -> 0.299 ms, M = 16 0.420 -> 0.511, M = 64 1.473 -> 1.424).
 * tiled: the weights are in the 16-row tile layout (gemm.h). Each tile is then one contiguous read
 * that needs no transpose, so M = 1 takes the same path (one sequential stream per thread); tiles
 * start at multiples of 16 rows, and lanes outside [o_lo, o_hi) are computed but not stored. */
enum { PAIR_M = 64 };

/* Rows of the next register block with `left` rows to go: two tiles, 4 (their 2 x 8 accumulators would
 * not fit); one tile, up to mr (then 4, 3, 2, 1). mr = 8 from M = 8 on (measured: the Q4_K / Q6_K tile time
 * at M = 16 -7 / -4 %, the tile's quant vectors being read twice instead of four times) up to PAIR_M; below
 * and from PAIR_M on (prompt chunks, two tiles per pass), mr = 4 in a driver compiled apart: the 8-row blocks
 * inlined next to them cost M = 2..7 2-5 % and the two-tile passes 4-7 %. */
INLINE int krows(int left, int nt, int mr)
{
    if (nt == 2) return left < MR ? left : MR;
    return left >= mr ? mr : left >= MR ? MR : left;
}
enum { M1_Q4_K, M1_Q6_K, M1_Q8_0, M1_Q4_0, M1_IQ4_NL, M1_Q3_K, M1_Q2_K, M1_Q5_K, M1_IQ4_XS };   /* the decode kernels of m1_tiles */
INLINE void m1_tiles(const uint8_t *wb, size_t wrb, int64_t nb, size_t tb, int64_t o_lo, int64_t o_hi,
                     const uint8_t *xb, float *y, int m1);

INLINE void gemm_ktiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                        const void *xq, size_t xrb, int M, float *y, int64_t ldy, int kind, int tiled, int mr)
{
    const int64_t nb = n_in / AR_QK_K;
    if (!tiled && M == 1 && (kind == KT_Q4_K || kind == KT_Q6_K) && nb <= ROWDOT_MAX_BLOCKS) {
        rowdot_k(w, wrb, n_in, o_lo, o_hi, xq, y, kind);
        return;
    }
    const size_t bbytes = kind == KT_Q4_K ? sizeof(ar_block_q4_K) : kind == KT_Q5_K ? sizeof(ar_block_q5_K)
                        : kind == KT_Q6_K ? sizeof(ar_block_q6_K) : kind == KT_Q3_K ? sizeof(ar_block_q3_K)
                        : kind == KT_Q2_K ? sizeof(ar_block_q2_K) : sizeof(ar_block_iq4_xs);
    const size_t tbytes = TW * bbytes;   /* one tile of the tile layout */
    const uint8_t *wb = w, *xb = xq;
    const uint8_t *tend = wb + (size_t)((o_hi + TW - 1) / TW * TW) * wrb;   /* tile layout: end of the range's tiles */
    if (tiled && M == 1) {   /* decode: tiles straight from memory */
        m1_tiles(wb, wrb, nb, tbytes, o_lo, o_hi, xb, y,
                 kind == KT_Q4_K ? M1_Q4_K : kind == KT_Q5_K ? M1_Q5_K : kind == KT_Q6_K ? M1_Q6_K
                 : kind == KT_Q3_K ? M1_Q3_K : kind == KT_Q2_K ? M1_Q2_K : M1_IQ4_XS);
        return;
    }
    ktile t[2];
    __m512 acc[2][MCHUNK];
    for (int64_t o0 = tiled ? o_lo - o_lo % TW : o_lo; o0 < o_hi;) {
        const int nt = M >= PAIR_M && o_hi - o0 >= 2 * TW ? 2 : 1;   /* tiles in this pass */
        int nv[2], lo_lane[2];
        const uint8_t *rows[2][TW], *tg[2];
        for (int k = 0; k < nt; k++) {
            const int64_t ok = o0 + k * TW;
            nv[k] = o_hi - ok < TW ? (int)(o_hi - ok) : TW;
            lo_lane[k] = ok < o_lo ? (int)(o_lo - ok) : 0;
            tg[k] = wb + (size_t)ok * wrb;
            if (!tiled)
#pragma GCC unroll 16
                for (int i = 0; i < TW; i++) rows[k][i] = wb + (size_t)(ok + (i < nv[k] ? i : nv[k] - 1)) * wrb;
        }
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int k = 0; k < nt; k++)
#pragma GCC unroll 16
                for (int r = 0; r < mc; r++) acc[k][r] = _mm512_setzero_ps();
            int ngroups = 0;   /* register blocks of this chunk; the prefetch is cut in as many slices (up to 4) */
            for (int r0 = 0; r0 < mc; r0 += krows(mc - r0, nt, mr)) ngroups++;
            const int slices = ngroups < 4 ? ngroups : 4;
            const int per_slice = TW / slices;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *p[2][TW];
                tsrc src[2];
                for (int k = 0; k < nt; k++) {
                    if (tiled) {
                        src[k] = (tsrc){ NULL, tg[k] + (size_t)b * tbytes };
                    } else {
#pragma GCC unroll 16
                        for (int i = 0; i < TW; i++) p[k][i] = rows[k][i] + (size_t)b * bbytes;
                        src[k] = (tsrc){ p[k], NULL };
                    }
                }
                /* prefetch a later tile of each row group in up to 4 slices: before the build, then
                 * after each of the first activation row groups, so the loads spread over the arithmetic */
                const uint8_t *nx[2][TW], *nt_ptr[2];
                int have_next[2] = { 0, 0 };
                for (int k = 0; k < nt; k++) {
                    if (tiled) {   /* the tiles of a row group, then of the next, are contiguous */
                        nt_ptr[k] = src[k].t + PF_TILES * tbytes;
                        have_next[k] = nt_ptr[k] + tbytes <= tend;
                    } else {
                        have_next[k] = tile_ahead(wb, wrb, o0 + k * TW, o_hi, b, nb, bbytes, PF_TILES, nx[k]);
                    }
                }
                for (int k = 0; k < nt; k++)
                    if (have_next[k]) {
                        if (tiled) prefetch_span(nt_ptr[k], 0, tbytes / (size_t)slices);
                        else prefetch_rows(nx[k], 0, per_slice, bbytes);
                    }
                for (int k = 0; k < nt; k++) build_ktile(&t[k], src[k], kind);
                /* from a row's block b to its pair-sum record (gemm.h: after the row's nb blocks) */
                const size_t poff = (size_t)nb * Q8K_BYTES - (size_t)b * (Q8K_BYTES - AR_GEMM_Q8K_PAIRS);
                for (int r0 = 0, g = 0, R; r0 < mc; r0 += R, g++) {
                    R = krows(mc - r0, nt, mr);
                    const uint8_t *a[MRK];
#pragma GCC unroll 16
                    for (int r = 0; r < MRK; r++)
                        a[r] = xb + (size_t)(m0 + r0 + (r < R ? r : 0)) * xrb + (size_t)b * Q8K_BYTES;
                    if (nt == 2) {
                        if (R == MR) run_ktile2(&t[0], &t[1], a, MR, kind, poff, acc[0] + r0, acc[1] + r0);
                        else if (R == 3) run_ktile2(&t[0], &t[1], a, 3, kind, poff, acc[0] + r0, acc[1] + r0);
                        else if (R == 2) run_ktile2(&t[0], &t[1], a, 2, kind, poff, acc[0] + r0, acc[1] + r0);
                        else run_ktile2(&t[0], &t[1], a, 1, kind, poff, acc[0] + r0, acc[1] + r0);
                    } else if (mr == MRK && R == MRK) run_ktile(&t[0], a, MRK, kind, poff, acc[0] + r0);
                    else if (R == MR) run_ktile(&t[0], a, MR, kind, poff, acc[0] + r0);
                    else if (R == 3) run_ktile(&t[0], a, 3, kind, poff, acc[0] + r0);
                    else if (R == 2) run_ktile(&t[0], a, 2, kind, poff, acc[0] + r0);
                    else run_ktile(&t[0], a, 1, kind, poff, acc[0] + r0);
                    if (g + 1 < slices)
                        for (int k = 0; k < nt; k++)
                            if (have_next[k]) {
                                if (tiled)
                                    prefetch_span(nt_ptr[k], tbytes * (size_t)(g + 1) / (size_t)slices,
                                                  tbytes * (size_t)(g + 2) / (size_t)slices);
                                else
                                    prefetch_rows(nx[k], (g + 1) * per_slice, (g + 2) * per_slice, bbytes);
                            }
                }
            }
            for (int k = 0; k < nt; k++)
#pragma GCC unroll 16
                for (int r = 0; r < mc; r++)
                    store_lanes(y + (int64_t)(m0 + r) * ldy + o0 + k * TW, acc[k][r], lo_lane[k], nv[k]);
        }
        o0 += nt * TW;
    }
}

/* The entry points of one K-quant type: weights in the row layout, and in the 16-row tile layout (gemm.h). */
#define KQUANT_KERNELS(name, kind)                                                                        \
    static void gemm_##name(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,           \
                            const void *xq, size_t xrb, int M, float *y, int64_t ldy)                      \
    {                                                                                                      \
        if (M >= MRK && M < PAIR_M) gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, kind, 0, MRK); \
        else gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, kind, 0, MR);                       \
    }                                                                                                      \
    static void gemm_##name##_tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,   \
                                    const void *xq, size_t xrb, int M, float *y, int64_t ldy)              \
    {                                                                                                      \
        if (M >= MRK && M < PAIR_M) gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, kind, 1, MRK); \
        else gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, kind, 1, MR);                       \
    }
KQUANT_KERNELS(q4_K, KT_Q4_K)
KQUANT_KERNELS(q5_K, KT_Q5_K)
KQUANT_KERNELS(q6_K, KT_Q6_K)
KQUANT_KERNELS(iq4_xs, KT_IQ4_XS)
KQUANT_KERNELS(q3_K, KT_Q3_K)
KQUANT_KERNELS(q2_K, KT_Q2_K)
#undef KQUANT_KERNELS

/* ---- 32-element block types with signed weights (Q8_0, Q4_0, IQ4_NL) x Q8_0 ------------------ */

/* Up to QB blocks of 16 weight rows with the quants made unsigned: q[8b + k] lane i = quants
 * 4k..4k+3 of block b of row i, + 128; d[b] = block scales. vpdpbusd takes them against the signed
 * activation as it lies; each block's sum starts at the activation block's record (gemm.h: -128 x its
 * quant sum), which takes the 128 x sum(a) off exactly. */
enum { QB = 4 };
typedef struct {
    __m512i q[8 * QB];
    __m512 d[QB];
    int nblk;
    const uint8_t *qs;   /* Q8_0 in the tile layout: the tiles themselves (quants at qs + b * 544 + 64k), not q */
} q8tile;

/* Quant vector k of block b */
INLINE __m512i q8_quants(const q8tile *t, int b, int k)
{
    if (t->qs) return _mm512_loadu_si512(t->qs + (size_t)b * (TW * 34) + 64 * (size_t)k);
    return t->q[8 * b + k];
}

/* Q8_0: 34-byte blocks (d, qs[32]); two blocks per transpose. */
INLINE void build_q8_0(q8tile *t, const uint8_t *const p[TW], int nblk)
{
    t->nblk = nblk;
    t->qs = NULL;
    for (int b0 = 0; b0 < nblk; b0 += 2) {
        const int two = b0 + 1 < nblk;
        __m512i r[16];
#pragma GCC unroll 16
        for (int i = 0; i < TW; i++) {
            const uint8_t *blk = p[i] + (size_t)b0 * 34;
            const __m256i lo = _mm256_loadu_si256((const __m256i *)(blk + 2));
            const __m256i hi = two ? _mm256_loadu_si256((const __m256i *)(blk + 36)) : _mm256_setzero_si256();
            r[i] = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
        }
        transpose16(r);
        const __m512i flip = _mm512_set1_epi8((char)0x80);
#pragma GCC unroll 16
        for (int k = 0; k < 16; k++) t->q[8 * b0 + k] = _mm512_xor_si512(r[k], flip);   /* + 128 */
        t->d[b0] = gather_f16(p, (size_t)b0 * 34);
        if (two) t->d[b0 + 1] = gather_f16(p, (size_t)(b0 + 1) * 34);
    }
}

/* ar_iq4nl_values + 128 (unsigned) in every 16-byte lane: the vpshufb table of the IQ4_NL kernels */
INLINE __m512i iq4nl_lut_u8(void)
{
    return _mm512_xor_si512(_mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)ar_iq4nl_values)),
                            _mm512_set1_epi8((char)0x80));
}

/* Block b of a q8tile from its 4 dword columns of packed nibbles (v[u] lane i = qs bytes 4u..4u+3 of
 * row i): low nibbles are elements 4u.., high ones 16 + 4u..; Q4_0 values are nibble - 8, so + 128 is
 * nibble + 120; IQ4_NL's are ar_iq4nl_values[nibble], + 128 by the table. */
INLINE void nibbles32_block(q8tile *t, int b, const __m512i v[4], int iq4)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F), k120 = _mm512_set1_epi8(120);
    const __m512i lut = iq4nl_lut_u8();
    t->qs = NULL;
#pragma GCC unroll 4
    for (int u = 0; u < 4; u++) {
        __m512i lo = _mm512_and_si512(v[u], m4), hi = _mm512_and_si512(_mm512_srli_epi32(v[u], 4), m4);
        if (iq4) {
            lo = _mm512_shuffle_epi8(lut, lo);
            hi = _mm512_shuffle_epi8(lut, hi);
        } else {
            lo = _mm512_add_epi8(lo, k120);
            hi = _mm512_add_epi8(hi, k120);
        }
        t->q[8 * b + u] = lo;
        t->q[8 * b + 4 + u] = hi;
    }
}

/* 16 packed nibble bytes per block (Q4_0: 18-byte blocks, IQ4_NL: same layout): element j is the
 * low nibble of qs[j], element j + 16 the high nibble. Four blocks per transpose. */
INLINE void build_nibbles32(q8tile *t, const uint8_t *const p[TW], int nblk, int iq4)
{
    t->nblk = nblk;
    __m512i r[16];
    const __mmask16 m = (__mmask16)((1u << (4 * nblk)) - 1);
#pragma GCC unroll 16
    for (int i = 0; i < TW; i++) {
        /* gather qs of the nblk blocks (18 bytes apart) into 16-byte lanes */
        __m512i v = _mm512_setzero_si512();
        v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[i] + 2)), 0);
        if (nblk > 1) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[i] + 20)), 1);
        if (nblk > 2) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[i] + 38)), 2);
        if (nblk > 3) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p[i] + 56)), 3);
        r[i] = _mm512_maskz_mov_epi32(m, v);
    }
    transpose16(r);
    for (int b = 0; b < nblk; b++) {
        nibbles32_block(t, b, r + 4 * b, iq4);
        t->d[b] = gather_f16(p, (size_t)b * 18);
    }
}

/* A Q8_0 activation row's record of block b (gemm.h), from a row with nb blocks */
INLINE const uint8_t *act_rec(const uint8_t *row, int64_t nb, int64_t b)
{
    return row + (size_t)nb * 34 + (size_t)b * AR_GEMM_Q8_0_REC;
}

/* q8tile x R activation rows (a[r] = the tile's first Q8_0 block of row r, a[r] + roff its record): per
 * block and row, the exact integer sum (two dpbusd chains per row, 2R in flight; one starts at the
 * record's -128 sum(a)), then acc += sum * (d_w * d_a), ggml's float steps. One offset for the records
 * of all rows keeps the row pointers in registers. */
INLINE void run_q8(const q8tile *t, const uint8_t *const a[MRK], size_t roff, int R, __m512 *acc)
{
    __m512 f[MRK];   /* the row sums in registers over the tile's blocks (a store to acc could alias t) */
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) f[r] = acc[r];
    for (int b = 0; b < t->nblk; b++) {
        __m512i s0[MRK], s1[MRK];
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            s0[r] = _mm512_set1_epi32(load_i32(a[r] + roff + AR_GEMM_Q8_0_REC * b + 4));
            s1[r] = _mm512_setzero_si512();
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k += 2) {
            const __m512i w0 = q8_quants(t, b, k), w1 = q8_quants(t, b, k + 1);
#pragma GCC unroll 8
            for (int r = 0; r < R; r++) {
                const uint8_t *x = a[r] + 34 * b + 2 + 4 * k;
                s0[r] = _mm512_dpbusd_epi32(s0[r], w0, bcast4(x));
                s1[r] = _mm512_dpbusd_epi32(s1[r], w1, bcast4(x + 4));
            }
        }
#pragma GCC unroll 8
        for (int r = 0; r < R; r++) {
            const __m512 dd = _mm512_mul_ps(t->d[b], _mm512_set1_ps(load_f32(a[r] + roff + AR_GEMM_Q8_0_REC * b)));
            f[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0[r], s1[r])), dd, f[r]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; r++) acc[r] = f[r];
}

/* Two q8tiles (32 weight rows) x R <= MR activation rows: run_q8's steps for each, with every activation
 * broadcast feeding both tiles (half the loads per dpbusd of the one-tile pass). */
INLINE void run2_q8(const q8tile *t0, const q8tile *t1, const uint8_t *const a[MR], size_t roff, int R, __m512 *acc0,
                    __m512 *acc1)
{
    __m512 f0[MR], f1[MR];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) { f0[r] = acc0[r]; f1[r] = acc1[r]; }
    for (int b = 0; b < t0->nblk; b++) {
        __m512i s0[MR], s1[MR], u0[MR], u1[MR];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            s0[r] = u0[r] = _mm512_set1_epi32(load_i32(a[r] + roff + AR_GEMM_Q8_0_REC * b + 4));
            s1[r] = u1[r] = _mm512_setzero_si512();
        }
#pragma GCC unroll 8
        for (int k = 0; k < 8; k += 2) {
            const __m512i w0 = q8_quants(t0, b, k), w1 = q8_quants(t0, b, k + 1);
            const __m512i v0 = q8_quants(t1, b, k), v1 = q8_quants(t1, b, k + 1);
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const uint8_t *x = a[r] + 34 * b + 2 + 4 * k;
                const __m512i x0 = bcast4(x), x1 = bcast4(x + 4);
                s0[r] = _mm512_dpbusd_epi32(s0[r], w0, x0);
                s1[r] = _mm512_dpbusd_epi32(s1[r], w1, x1);
                u0[r] = _mm512_dpbusd_epi32(u0[r], v0, x0);
                u1[r] = _mm512_dpbusd_epi32(u1[r], v1, x1);
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512 da = _mm512_set1_ps(load_f32(a[r] + roff + AR_GEMM_Q8_0_REC * b));
            f0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0[r], s1[r])), _mm512_mul_ps(t0->d[b], da), f0[r]);
            f1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(u0[r], u1[r])), _mm512_mul_ps(t1->d[b], da), f1[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) { acc0[r] = f0[r]; acc1[r] = f1[r]; }
}

/* Rows of the next q8tile register block with `left` rows to go: 8, then 4, 3, 2, 1. */
INLINE int q8rows(int left) { return left >= MRK ? MRK : left >= MR ? MR : left; }

/* One pass of a q8tile over the activation rows m .. m + R - 1 (R = q8rows(...)) at block column b of nb. */
INLINE void run_q8_rows(const q8tile *t, const uint8_t *xb, size_t xrb, int m, int R, int64_t nb, int64_t b,
                        __m512 *acc)
{
    const uint8_t *a[MRK];
#pragma GCC unroll 16
    for (int r = 0; r < MRK; r++) a[r] = xb + (size_t)(m + (r < R ? r : 0)) * xrb + (size_t)b * 34;
    const size_t roff = (size_t)(act_rec(xb, nb, b) - (xb + (size_t)b * 34));
    if (R == MRK) run_q8(t, a, roff, MRK, acc);
    else if (R == MR) run_q8(t, a, roff, MR, acc);
    else if (R == 3) run_q8(t, a, roff, 3, acc);
    else if (R == 2) run_q8(t, a, roff, 2, acc);
    else run_q8(t, a, roff, 1, acc);
}

enum { Q8T_Q8_0, Q8T_Q4_0, Q8T_IQ4_NL };
enum { Q8_PAIR_M = 2 };   /* from this many activation rows on, tile-layout passes take two tiles (measured: faster from M = 2) */

/* Q8_0 x one activation row (decode), 8 weight rows at a time without the tile transposition: each
 * row's block is dotted with the activation block as it lies (|w| x sign(a, w) by vpdpbusd: exact, as
 * the activation quantizer never writes -128 for a finite block), the 8 rows' partial sums are reduced
 * together, and the per-block float steps are the tile path's lane for lane (dd = d_w * d_a,
 * acc = fma(sum, dd, acc), blocks in order), so an output is the same bits as the tile path's. 8 row
 * streams instead of 16, and no transposition: the kernel keeps up with DRAM. */
INLINE void rowdot_q8_0(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi, const void *xq,
                        float *y)
{
    enum { RW = 8 };   /* rows per group */
    const int64_t nb = n_in / 32;
    const uint8_t *x = xq;
    /* the group's rows are one contiguous stretch read column by column: while it runs, the next
     * group's stretch is prefetched in order, a slice per block (so no group starts cold) */
    const size_t slice = ((size_t)RW * wrb + (size_t)nb - 1) / (size_t)nb;
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += RW) {
        const int nv = o_hi - o0 < RW ? (int)(o_hi - o0) : RW;
        const uint8_t *rows[RW];
#pragma GCC unroll 8
        for (int i = 0; i < RW; i++) rows[i] = (const uint8_t *)w + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        const int64_t n_next = o_hi - (o0 + RW) < RW ? o_hi - (o0 + RW) : RW;
        const uint8_t *next = (const uint8_t *)w + (size_t)(o0 + RW) * wrb;
        const size_t next_bytes = n_next > 0 ? (size_t)n_next * wrb : 0;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            for (size_t q = (size_t)b * slice & ~(size_t)63; q < (size_t)(b + 1) * slice && q < next_bytes; q += 64)
                _mm_prefetch((const char *)(next + q), _MM_HINT_T0);
            const uint8_t *xb = x + 34 * b;
            const __m256i av = _mm256_loadu_si256((const __m256i *)(xb + 2));
            __m256i sv[RW];
            uint16_t h[RW];
#pragma GCC unroll 8
            for (int i = 0; i < RW; i++) {
                const uint8_t *blk = rows[i] + 34 * b;
                const __m256i wv = _mm256_loadu_si256((const __m256i *)(blk + 2));
                sv[i] = _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
                memcpy(&h[i], blk, 2);
            }
            /* the rows' F16 scales, built in registers (a store + vector load of h would stall) */
            const __m128i dh = _mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], (short)h[4],
                                              (short)h[5], (short)h[6], (short)h[7]);
            /* lane i of the sum = the 8 partials of row i */
            __m512i z[4];
#pragma GCC unroll 4
            for (int j = 0; j < 4; j++) z[j] = _mm512_inserti64x4(_mm512_castsi256_si512(sv[j]), sv[j + 4], 1);
            const __m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpackhi_epi32(z[0], z[1]));
            const __m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[2], z[3]), _mm512_unpackhi_epi32(z[2], z[3]));
            const __m512i u = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1), _mm512_unpackhi_epi64(t0, t1));
            /* 128-bit lane L of u: rows 0..3 (L = 0, 1) or 4..7 (L = 2, 3), a partial each */
            const __m256i lo = _mm512_castsi512_si256(u), hi = _mm512_extracti64x4_epi64(u, 1);
            const __m256i si = _mm256_add_epi32(_mm256_permute2x128_si256(lo, hi, 0x20),
                                                _mm256_permute2x128_si256(lo, hi, 0x31));
            uint16_t ha;
            memcpy(&ha, xb, 2);
            const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(dh), _mm256_set1_ps(_cvtsh_ss(ha)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), dd, acc);
        }
        if (nv == RW) _mm256_storeu_ps(y + o0, acc);
        else _mm256_mask_storeu_ps(y + o0, (__mmask8)((1u << nv) - 1), acc);
    }
}

INLINE void gemm_q8tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                         const void *xq, size_t xrb, int M, float *y, int64_t ldy, int kind)
{
    const int64_t nb = n_in / 32;
    if (M == 1 && kind == Q8T_Q8_0) {
        rowdot_q8_0(w, wrb, n_in, o_lo, o_hi, xq, y);
        return;
    }
    const size_t bbytes = kind == Q8T_Q8_0 ? 34 : 18;
    const uint8_t *wb = w, *xb = xq;
    q8tile t;
    __m512 acc[MCHUNK];
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += TW) {
        const int nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW;
        const uint8_t *rows[TW];
#pragma GCC unroll 16
        for (int i = 0; i < TW; i++) rows[i] = wb + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int r = 0; r < mc; r++) acc[r] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b += QB) {
                const int nblk = nb - b < QB ? (int)(nb - b) : QB;
                const uint8_t *p[TW];
#pragma GCC unroll 16
                for (int i = 0; i < TW; i++) p[i] = rows[i] + (size_t)b * bbytes;
                const uint8_t *nx[TW];
                const int have_next = tile_ahead(wb, wrb, o0, o_hi, b / QB, (nb + QB - 1) / QB, QB * bbytes, PF_TILES, nx);
                int ngroups = 0;
                for (int r0 = 0; r0 < mc; r0 += q8rows(mc - r0)) ngroups++;
                const int slices = ngroups < 4 ? ngroups : 4;
                const int per_slice = TW / slices;
                if (have_next) prefetch_rows(nx, 0, per_slice, QB * bbytes);
                if (kind == Q8T_Q8_0) build_q8_0(&t, p, nblk);
                else build_nibbles32(&t, p, nblk, kind == Q8T_IQ4_NL);
                for (int r0 = 0, g = 0, R; r0 < mc; r0 += R, g++) {
                    R = q8rows(mc - r0);
                    run_q8_rows(&t, xb, xrb, m0 + r0, R, nb, b, acc + r0);
                    if (have_next && g + 1 < slices) prefetch_rows(nx, (g + 1) * per_slice, (g + 2) * per_slice, QB * bbytes);
                }
            }
            for (int r = 0; r < mc; r++) store_rows(y + (int64_t)(m0 + r) * ldy + o0, acc[r], nv);
        }
    }
}

static void gemm_q8_0(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_q8tiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, Q8T_Q8_0);
}

/* ---- 32-element block types in the tile layout ------------------------------------------------
 * gemm.h: a block is taken with its d last, so a tile is the dword columns of the 16 rows' quants
 * (Q8_0: 8 columns, lane i = quants 4k..4k+3 of row i, stored + 128; Q4_0 / IQ4_NL: 4 columns of packed
 * nibbles, lane i = qs bytes 4u..4u+3 of row i) and then their 16 d as halves. Nothing is transposed:
 * Q8_0's quants are read in place (decode and prompt passes alike: one sequential stream per thread,
 * no horizontal sums, the 16 scales in one load), Q4_0's and IQ4_NL's unpacked as they lie. The
 * integer sums and the float steps per block are run_q8's, lane for lane, so every output is the same
 * bits as from the row layout (and rowdot_q8_0). */
INLINE size_t q8t_block_bytes(int kind) { return kind == Q8T_Q8_0 ? 34 : 18; }

INLINE void build_q8t_tiled(q8tile *t, const uint8_t *tile, int nblk, int kind)
{
    const size_t tb = TW * q8t_block_bytes(kind), qb = kind == Q8T_Q8_0 ? 512 : 256;
    t->nblk = nblk;
    for (int b = 0; b < nblk; b++) {
        const uint8_t *p = tile + (size_t)b * tb;
        if (kind != Q8T_Q8_0) {   /* Q8_0's quants are read in place: stored + 128 already */
            __m512i v[4];
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) v[u] = _mm512_loadu_si512(p + 64 * u);
            nibbles32_block(t, b, v, kind == Q8T_IQ4_NL);
        }
        t->d[b] = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + qb)));
    }
    t->qs = kind == Q8T_Q8_0 ? tile : NULL;
}

/* One Q8_0 tile x one activation block a (d, qs[32]) with its record rec: acc += (sum_j a_j w_j) * (d_w *
 * d_a) per lane, run_q8's steps (the stored w + 128 against a, from the record's -128 sum(a)). */
INLINE __m512 m1_q8_0(const uint8_t *tile, const uint8_t *a, const uint8_t *rec, __m512 acc)
{
    __m512i s0 = _mm512_set1_epi32(load_i32(rec + 4)), s1 = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k += 2) {
        s0 = _mm512_dpbusd_epi32(s0, _mm512_loadu_si512(tile + 64 * k), bcast4(a + 2 + 4 * k));
        s1 = _mm512_dpbusd_epi32(s1, _mm512_loadu_si512(tile + 64 * (k + 1)), bcast4(a + 6 + 4 * k));
    }
    const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(tile + 512))),
                                    _mm512_set1_ps(load_f32(rec)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), dd, acc);
}

/* One Q4_0 tile x one activation block a (d, qs[32]) whose record holds -128 sa (sa: its quant sum): the
 * unsigned nibbles u against the signed activation, less 8 * sa, is the block's exact sum of (u - 8) a,
 * as run_q8 forms it. */
INLINE __m512 m1_q4_0(const uint8_t *tile, const uint8_t *a, const uint8_t *rec, __m512 acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i s0 = _mm512_setzero_si512(), s1 = s0;
#pragma GCC unroll 4
    for (int u = 0; u < 4; u++) {
        const __m512i v = _mm512_loadu_si512(tile + 64 * u);
        s0 = _mm512_dpbusd_epi32(s0, _mm512_and_si512(v, m4), bcast4(a + 2 + 4 * u));
        s1 = _mm512_dpbusd_epi32(s1, _mm512_and_si512(_mm512_srli_epi32(v, 4), m4), bcast4(a + 18 + 4 * u));
    }
    uint16_t h;
    memcpy(&h, a, 2);
    const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(tile + 256))),
                                    _mm512_set1_ps(_cvtsh_ss(h)));
    const __m512i si = _mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(load_i32(rec + 4) / 16));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(si), dd, acc);
}

/* One IQ4_NL tile x one activation block a with its record rec: the nibbles looked up in lut (the values
 * + 128, unsigned) against the signed activation, from the record's -128 sum(a): run_q8's integer and float
 * steps. */
INLINE __m512 m1_iq4_nl(const uint8_t *tile, const uint8_t *a, const uint8_t *rec, __m512i lut, __m512 acc)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    __m512i s0 = _mm512_set1_epi32(load_i32(rec + 4)), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int u = 0; u < 4; u++) {
        const __m512i v = _mm512_loadu_si512(tile + 64 * u);
        s0 = _mm512_dpbusd_epi32(s0, _mm512_shuffle_epi8(lut, _mm512_and_si512(v, m4)), bcast4(a + 2 + 4 * u));
        s1 = _mm512_dpbusd_epi32(s1, _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi32(v, 4), m4)),
                                 bcast4(a + 18 + 4 * u));
    }
    const __m512 dd = _mm512_mul_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(tile + 256))),
                                    _mm512_set1_ps(load_f32(rec)));
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(s0, s1)), dd, acc);
}

/* Q5_K tile (layout of build_q5_K: d | dmin, scales in columns 0..3, qh 4..11, qs 12..43) x one Q8_K block a:
 * chunk c's low nibbles (sub-block 2c) take qh bit 2c as their fifth bit, its high nibbles (2c + 1) bit 2c + 1,
 * joined in registers by a bit select; then m1_q4_K's chains and finish. */
INLINE __m512 m1_q5_K(const uint8_t *tile, const uint8_t *a, const uint8_t *pairs, __m512 acc)
{
    ktile t;   /* only the scales, mins, d and dmin are filled */
    __m512i h[4], qh[8];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) h[c] = _mm512_loadu_si512(tile + 64 * c);
    k4_header(&t, h);
#pragma GCC unroll 8
    for (int tt = 0; tt < 8; tt++) qh[tt] = _mm512_loadu_si512(tile + 64 * (4 + tt));
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    const uint8_t *x = a + Q8K_QS;
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {   /* chunk c: elements 64c.. (sub-block 2c low nibbles, 2c + 1 high) */
        const uint8_t *col = tile + (size_t)(12 + 16 * (c / 2) + 8 * (c % 2)) * 64;
        __m512i lo0 = _mm512_setzero_si512(), lo1 = lo0, hi0 = lo0, hi1 = lo0;
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt++) {
            const __m512i v = _mm512_loadu_si512(col + 64 * tt);
            /* qh bits 2c and 2c + 1 moved to bit 4 of each byte */
            const __m512i bl = 2 * c <= 4 ? _mm512_slli_epi32(qh[tt], 4 - 2 * c) : _mm512_srli_epi32(qh[tt], 2 * c - 4);
            const __m512i bh = 2 * c + 1 <= 4 ? _mm512_slli_epi32(qh[tt], 3 - 2 * c) : _mm512_srli_epi32(qh[tt], 2 * c - 3);
            const __m512i wl = _mm512_ternarylogic_epi32(v, _mm512_and_si512(bl, b4), m4, 0xE4);
            const __m512i wh = _mm512_ternarylogic_epi32(_mm512_srli_epi32(v, 4), _mm512_and_si512(bh, b4), m4, 0xE4);
            if (tt & 1) {
                lo1 = _mm512_dpbusd_epi32(lo1, wl, bcast4(x + 64 * c + 4 * tt));
                hi1 = _mm512_dpbusd_epi32(hi1, wh, bcast4(x + 64 * c + 32 + 4 * tt));
            } else {
                lo0 = _mm512_dpbusd_epi32(lo0, wl, bcast4(x + 64 * c + 4 * tt));
                hi0 = _mm512_dpbusd_epi32(hi0, wh, bcast4(x + 64 * c + 32 + 4 * tt));
            }
        }
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(lo0, lo1), t.sc[2 * c]));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(hi0, hi1), t.sc[2 * c + 1]));
    }
    return k4_finish(&t, a, pairs, isum, acc);
}

/* IQ4_XS tile (layout of build_iq4_xs: d | scales_h, scales_l, then qs in columns 2..33) x one Q8_K block a:
 * sub-block j's quads are the low (elements 0..15) and high (16..31) nibbles of columns 2 + 4j .. 5 + 4j,
 * looked up (values + 128) in registers. */
INLINE __m512 m1_iq4_xs(const uint8_t *tile, const uint8_t *a, __m512 acc)
{
    ktile t;   /* only the scales, the offset terms and d are filled */
    iq4xs_scales(&t, _mm512_loadu_si512(tile), _mm512_loadu_si512(tile + 64));
    const __m512i n4 = _mm512_set1_epi8(0x0F), lut = iq4nl_lut_u8();
    const uint8_t *x = a + Q8K_QS;
    __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 2
    for (int j = 0; j < 8; j++) {
        __m512i s0 = _mm512_setzero_si512(), s1 = s0, s2 = s0, s3 = s0;
#pragma GCC unroll 4
        for (int i = 0; i < 4; i += 2) {
            const __m512i v0 = _mm512_loadu_si512(tile + 64 * (2 + 4 * j + i));
            const __m512i v1 = _mm512_loadu_si512(tile + 64 * (3 + 4 * j + i));
            s0 = _mm512_dpbusd_epi32(s0, _mm512_shuffle_epi8(lut, _mm512_and_si512(v0, n4)), bcast4(x + 32 * j + 4 * i));
            s1 = _mm512_dpbusd_epi32(s1, _mm512_shuffle_epi8(lut, _mm512_and_si512(v1, n4)), bcast4(x + 32 * j + 4 * i + 4));
            s2 = _mm512_dpbusd_epi32(s2, _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi32(v0, 4), n4)),
                                     bcast4(x + 32 * j + 16 + 4 * i));
            s3 = _mm512_dpbusd_epi32(s3, _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi32(v1, 4), n4)),
                                     bcast4(x + 32 * j + 20 + 4 * i));
        }
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(_mm512_add_epi32(s0, s1), _mm512_add_epi32(s2, s3)), t.sc[j]));
    }
    return off_finish(&t, a, isum, acc, 0);
}

/* Q3_K / Q2_K tile (layout of build_q3_K / build_q2_K) x one Q8_K block a, the quants formed from the tile's
 * columns in registers: for half n and shift sh the 8 quads 32n + 8sh + tt are sub-blocks 8n + 2sh (tt < 4)
 * and 8n + 2sh + 1, two chains each. q3: Q3_K (qs columns 8.., hmask 0..7, scales 23..26, d tail 27), else
 * Q2_K (qs columns 4.., scales 0..3, d | dmin column 20). */
INLINE __m512 m1_q3q2(const uint8_t *tile, const uint8_t *a, __m512 acc, int q3)
{
    ktile t;   /* only the scales, the offset or min terms, d (and dmin) are filled */
    __m512i hm[8];
    if (q3) {
        __m512i h[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) h[c] = _mm512_loadu_si512(tile + 64 * (23 + c));
        q3_scales(&t, h);
        t.d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(tile + 27 * 64)));
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt++) hm[tt] = _mm512_loadu_si512(tile + 64 * tt);
    } else {
        __m512i h[4];
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) h[c] = _mm512_loadu_si512(tile + 64 * c);
        q2_scales(&t, h);
        const __m512i dd = _mm512_loadu_si512(tile + 64 * 20);
        t.d = half_lanes_to_f32(dd, 0);
        t.dmin = half_lanes_to_f32(dd, 1);
    }
    const __m512i m2 = _mm512_set1_epi8(3), b2 = _mm512_set1_epi8(4);
    const uint8_t *x = a + Q8K_QS, *qcol = tile + 64 * (q3 ? 8 : 4);
    __m512i isum = _mm512_setzero_si512();
    /* the (n, sh) loops stay rolled: unrolled, the constants, hmask vectors and chains of all eight passes spilled
     * (`gemm_bench q3_K 5120 17408 best 5 cold tiles`, two threads, M = 1: 34.5-38.1 -> 45.0-64.7 GB/s) */
#pragma GCC unroll 1
    for (int n = 0; n < 2; n++)
#pragma GCC unroll 1
        for (int sh = 0; sh < 4; sh++) {
            const int hb = 4 * n + sh;
            __m512i s[4] = { _mm512_setzero_si512(), _mm512_setzero_si512(), _mm512_setzero_si512(),
                             _mm512_setzero_si512() };
#pragma GCC unroll 8
            for (int tt = 0; tt < 8; tt++) {
                const __m512i lo = _mm512_srli_epi32(_mm512_loadu_si512(qcol + 64 * (8 * n + tt)), 2 * sh);
                __m512i u;
                if (q3) {
                    const __m512i hi = hb >= 2 ? _mm512_srli_epi32(hm[tt], hb - 2) : _mm512_slli_epi32(hm[tt], 2 - hb);
                    u = _mm512_ternarylogic_epi32(lo, _mm512_and_si512(hi, b2), m2, 0xE4);
                } else {
                    u = _mm512_and_si512(lo, m2);
                }
                s[2 * (tt / 4) + (tt & 1)] = _mm512_dpbusd_epi32(s[2 * (tt / 4) + (tt & 1)], u, bcast4(x + 4 * (32 * n + 8 * sh + tt)));
            }
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s[0], s[1]), t.sc[8 * n + 2 * sh]));
            isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(_mm512_add_epi32(s[2], s[3]), t.sc[8 * n + 2 * sh + 1]));
        }
    return off_finish(&t, a, isum, acc, !q3);
}

/* One tile x the activation's block b with decode kernel m1 (a constant after inlining). */
INLINE __m512 m1_block(int m1, const uint8_t *tile, const uint8_t *xb, int64_t nb, int64_t b, __m512i lut, __m512 acc)
{
    switch (m1) {
    case M1_Q4_K:
        return m1_q4_K(tile, xb + (size_t)b * Q8K_BYTES, xb + (size_t)nb * Q8K_BYTES + (size_t)b * AR_GEMM_Q8K_PAIRS, acc);
    case M1_Q6_K:  return m1_q6_K(tile, xb + (size_t)b * Q8K_BYTES, acc);
    case M1_Q5_K:
        return m1_q5_K(tile, xb + (size_t)b * Q8K_BYTES, xb + (size_t)nb * Q8K_BYTES + (size_t)b * AR_GEMM_Q8K_PAIRS, acc);
    case M1_IQ4_XS: return m1_iq4_xs(tile, xb + (size_t)b * Q8K_BYTES, acc);
    case M1_Q3_K:  return m1_q3q2(tile, xb + (size_t)b * Q8K_BYTES, acc, 1);
    case M1_Q2_K:  return m1_q3q2(tile, xb + (size_t)b * Q8K_BYTES, acc, 0);
    case M1_Q8_0:  return m1_q8_0(tile, xb + (size_t)b * 34, act_rec(xb, nb, b), acc);
    case M1_Q4_0:  return m1_q4_0(tile, xb + (size_t)b * 34, act_rec(xb, nb, b), acc);
    default:       return m1_iq4_nl(tile, xb + (size_t)b * 34, act_rec(xb, nb, b), lut, acc);
    }
}

/* Decode on the tile layout, every tile type: a 16-row group's tiles (tb bytes each, nb of them) are one
 * sequential stream, prefetched PF_TILES ahead, dotted straight from memory by the type's m1 kernel. */
INLINE void m1_tiles(const uint8_t *wb, size_t wrb, int64_t nb, size_t tb, int64_t o_lo, int64_t o_hi,
                     const uint8_t *xb, float *y, int m1)
{
    const uint8_t *tend = wb + (size_t)((o_hi + TW - 1) / TW * TW) * wrb;   /* end of the range's tiles */
    const __m512i lut = iq4nl_lut_u8();
    for (int64_t o0 = o_lo - o_lo % TW; o0 < o_hi; o0 += TW) {
        const uint8_t *tg = wb + (size_t)o0 * wrb;
        __m512 acc = _mm512_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *tile = tg + (size_t)b * tb, *next = tile + PF_TILES * tb;
            if (next + tb <= tend) prefetch_span(next, 0, tb);
            acc = m1_block(m1, tile, xb, nb, b, lut, acc);
        }
        store_lanes(y + o0, acc, o0 < o_lo ? (int)(o_lo - o0) : 0, o_hi - o0 < TW ? (int)(o_hi - o0) : TW);
    }
}

INLINE void gemm_q8t_tiled(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                           const void *xq, size_t xrb, int M, float *y, int64_t ldy, int kind)
{
    const int64_t nb = n_in / 32;
    const size_t tb = TW * q8t_block_bytes(kind);
    const uint8_t *wb = w, *xb = xq;
    const uint8_t *tend = wb + (size_t)((o_hi + TW - 1) / TW * TW) * wrb;   /* end of the range's tiles */
    if (M == 1) {   /* decode: the tiles straight from memory */
        m1_tiles(wb, wrb, nb, tb, o_lo, o_hi, xb, y, kind == Q8T_Q8_0 ? M1_Q8_0 : kind == Q8T_Q4_0 ? M1_Q4_0 : M1_IQ4_NL);
        return;
    }
    q8tile t, t2;
    __m512 acc[MCHUNK], acc2[MCHUNK];
    for (int64_t o0 = o_lo - o_lo % TW; o0 < o_hi;) {
        const int lo_lane = o0 < o_lo ? (int)(o_lo - o0) : 0, nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW;
        const uint8_t *tg = wb + (size_t)o0 * wrb;
        if (M >= Q8_PAIR_M && o_hi - o0 >= 2 * TW) {   /* two tiles per pass; the second is whole */
            const uint8_t *tg2 = tg + (size_t)TW * wrb;
            for (int m0 = 0; m0 < M; m0 += MCHUNK) {
                const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
                for (int r = 0; r < mc; r++) acc[r] = acc2[r] = _mm512_setzero_ps();
                for (int64_t b = 0; b < nb; b += QB) {
                    const int nblk = nb - b < QB ? (int)(nb - b) : QB;
                    const uint8_t *tile = tg + (size_t)b * tb, *tile2 = tg2 + (size_t)b * tb;
                    /* a later group of both tiles, in as many slices as row blocks (up to 4): a burst of
                     * 2 x QB x 9 lines stalls on the fill buffers (measured: 18 % of verify16's kernel time) */
                    const uint8_t *nx = tile + (size_t)PF_TILES * QB * tb, *nx2 = tile2 + (size_t)PF_TILES * QB * tb;
                    const int have_next = nx2 + QB * tb <= tend, groups = (mc + MR - 1) / MR;
                    const int slices = groups < 4 ? groups : 4;
                    const size_t span = QB * tb;
                    if (have_next) {
                        prefetch_span(nx, 0, span / (size_t)slices);
                        prefetch_span(nx2, 0, span / (size_t)slices);
                    }
                    build_q8t_tiled(&t, tile, nblk, kind);
                    build_q8t_tiled(&t2, tile2, nblk, kind);
                    const size_t roff = (size_t)(act_rec(xb, nb, b) - (xb + (size_t)b * 34));
                    for (int r0 = 0, g = 0; r0 < mc; r0 += MR, g++) {
                        if (have_next && g > 0 && g < slices) {
                            prefetch_span(nx, span * (size_t)g / (size_t)slices, span * (size_t)(g + 1) / (size_t)slices);
                            prefetch_span(nx2, span * (size_t)g / (size_t)slices, span * (size_t)(g + 1) / (size_t)slices);
                        }
                        const int R = mc - r0 < MR ? mc - r0 : MR;
                        const uint8_t *a[MR];
#pragma GCC unroll 4
                        for (int r = 0; r < MR; r++) a[r] = xb + (size_t)(m0 + r0 + (r < R ? r : 0)) * xrb + (size_t)b * 34;
                        if (R == MR) run2_q8(&t, &t2, a, roff, MR, acc + r0, acc2 + r0);
                        else if (R == 3) run2_q8(&t, &t2, a, roff, 3, acc + r0, acc2 + r0);
                        else if (R == 2) run2_q8(&t, &t2, a, roff, 2, acc + r0, acc2 + r0);
                        else run2_q8(&t, &t2, a, roff, 1, acc + r0, acc2 + r0);
                    }
                }
                for (int r = 0; r < mc; r++) {
                    store_lanes(y + (int64_t)(m0 + r) * ldy + o0, acc[r], lo_lane, TW);
                    store_lanes(y + (int64_t)(m0 + r) * ldy + o0 + TW, acc2[r], 0, TW);
                }
            }
            o0 += 2 * TW;
            continue;
        }
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int r = 0; r < mc; r++) acc[r] = _mm512_setzero_ps();
            for (int64_t b = 0; b < nb; b += QB) {
                const int nblk = nb - b < QB ? (int)(nb - b) : QB;
                const uint8_t *tile = tg + (size_t)b * tb, *next = tile + (size_t)PF_TILES * QB * tb;
                if (next + QB * tb <= tend) prefetch_span(next, 0, QB * tb);
                build_q8t_tiled(&t, tile, nblk, kind);
                for (int r0 = 0, R; r0 < mc; r0 += R) {
                    R = q8rows(mc - r0);
                    run_q8_rows(&t, xb, xrb, m0 + r0, R, nb, b, acc + r0);
                }
            }
            for (int r = 0; r < mc; r++) store_lanes(y + (int64_t)(m0 + r) * ldy + o0, acc[r], lo_lane, nv);
        }
        o0 += TW;
    }
}

static void gemm_q8_0_tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                            const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_q8t_tiled(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, Q8T_Q8_0);
}

static void gemm_q4_0_tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                            const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_q8t_tiled(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, Q8T_Q4_0);
}

static void gemm_iq4_nl_tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                              const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_q8t_tiled(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, Q8T_IQ4_NL);
}

static void gemm_q4_0(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_q8tiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, Q8T_Q4_0);
}

static void gemm_iq4_nl(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                        const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_q8tiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, Q8T_IQ4_NL);
}

/* ---- float weights: F32, F16, BF16 ------------------------------------------------------------ */

enum { FW = 4 }; /* weight rows per register block (x MR activation rows) */
enum { FK_F32, FK_F16, FK_BF16 };

/* One step (16 elements, 32 for BF16) of FW weight rows x R activation rows at element i; m masks
 * the elements that exist (all of them except in the last step). */
INLINE void float_step(int kind, const uint8_t *const w[FW], const uint8_t *const x[MR], int R, int64_t i,
                       __mmask32 m, __m512 acc[FW][MR])
{
    if (kind == FK_BF16) {
        __m512bh wv[FW];
#pragma GCC unroll 4
        for (int k = 0; k < FW; k++) {
            wv[k] = (__m512bh)_mm512_maskz_loadu_epi16(m, (const uint16_t *)w[k] + i);
            __asm__("" : "+v"(wv[k])); /* keep in a register: GCC would reload it per row */
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const __m512bh xv = (__m512bh)_mm512_maskz_loadu_epi16(m, (const uint16_t *)x[r] + i);
#pragma GCC unroll 4
            for (int k = 0; k < FW; k++) acc[k][r] = _mm512_dpbf16_ps(acc[k][r], wv[k], xv);
        }
        return;
    }
    const __mmask16 m16 = (__mmask16)m;
    __m512 wv[FW];
#pragma GCC unroll 4
    for (int k = 0; k < FW; k++)
    {
        wv[k] = kind == FK_F32 ? _mm512_maskz_loadu_ps(m16, (const float *)w[k] + i)
                               : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m16, (const uint16_t *)w[k] + i));
        __asm__("" : "+v"(wv[k]));
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        const __m512 xv = kind == FK_F32 ? _mm512_maskz_loadu_ps(m16, (const float *)x[r] + i)
                                         : _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m16, (const uint16_t *)x[r] + i));
#pragma GCC unroll 4
        for (int k = 0; k < FW; k++) acc[k][r] = _mm512_fmadd_ps(wv[k], xv, acc[k][r]);
    }
}

/* Dot products of FW weight rows with R activation rows over n elements -> out[k][r]. */
INLINE void float_block(int kind, const uint8_t *const w[FW], const uint8_t *const x[MR], int R,
                        int64_t n, float out[FW][MR])
{
    __m512 acc[FW][MR];
#pragma GCC unroll 4
    for (int k = 0; k < FW; k++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) acc[k][r] = _mm512_setzero_ps();
    const int64_t step = kind == FK_BF16 ? 32 : 16;
    int64_t i = 0;
    for (; i + step <= n; i += step) float_step(kind, w, x, R, i, (__mmask32)0xFFFFFFFFu, acc);
    if (i < n) float_step(kind, w, x, R, i, (__mmask32)((1u << (n - i)) - 1), acc);
#pragma GCC unroll 4
    for (int k = 0; k < FW; k++)
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) out[k][r] = _mm512_reduce_add_ps(acc[k][r]);
}

INLINE void gemm_float(int kind, const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                       const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    const uint8_t *wb = w, *xb = xq;
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += FW) {
        const int nv = o_hi - o0 < FW ? (int)(o_hi - o0) : FW;
        const uint8_t *wr[FW];
#pragma GCC unroll 4
        for (int k = 0; k < FW; k++) wr[k] = wb + (size_t)(o0 + (k < nv ? k : nv - 1)) * wrb;
        for (int r0 = 0; r0 < M; r0 += MR) {
            const int R = M - r0 < MR ? M - r0 : MR;
            const uint8_t *x[MR];
#pragma GCC unroll 4
            for (int r = 0; r < MR; r++) x[r] = xb + (size_t)(r0 + (r < R ? r : 0)) * xrb;
            float out[FW][MR];
            if (R == 4) float_block(kind, wr, x, 4, n_in, out);
            else if (R == 3) float_block(kind, wr, x, 3, n_in, out);
            else if (R == 2) float_block(kind, wr, x, 2, n_in, out);
            else float_block(kind, wr, x, 1, n_in, out);
            for (int k = 0; k < nv; k++)
                for (int r = 0; r < R; r++) y[(int64_t)(r0 + r) * ldy + o0 + k] = out[k][r];
        }
    }
}

static void gemm_f32(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                     const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_float(FK_F32, w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy);
}

static void gemm_f16(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                     const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_float(FK_F16, w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy);
}

static void gemm_bf16(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_float(FK_BF16, w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy);
}

/* Q8_K activation rows (ggml's quantize_row_q8_K, bit for bit: the first element of largest magnitude
 * sets the scale, iscale = -127 / max, q = min(127, round-half-even(iscale * x)), 16-element sums,
 * d = 1 / iscale; an all-zero block is all zeros). */
int ar_gemm_avx512_q8_K(const float *x, void *y, int64_t nb)
{
    uint8_t *out = y;
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, out += Q8K_BYTES) {
        __m512 m = _mm512_setzero_ps();
        for (int c = 0; c < AR_QK_K / 16; c++) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + 16 * c)));
        const float amax = _mm512_reduce_max_ps(m);
        if (!(amax > 0.0f)) {   /* zero (or NaN) block: as the reference does for zero */
            memset(out, 0, Q8K_BYTES);
            continue;
        }
        float max = 0.0f;
        for (int c = 0; c < AR_QK_K / 16; c++) {
            const __mmask16 k = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * c)), _mm512_set1_ps(amax),
                                                   _CMP_EQ_OQ);
            if (k) { max = x[16 * c + __builtin_ctz(k)]; break; }
        }
        const float iscale = -127.f / max;
        const __m512 is = _mm512_set1_ps(iscale);
        int16_t bsums[AR_QK_K / 16];
        for (int c = 0; c < AR_QK_K / 16; c++) {
            const __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(is, _mm512_loadu_ps(x + 16 * c)),
                                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
            const __m512i q = _mm512_min_epi32(_mm512_cvtps_epi32(v), _mm512_set1_epi32(127));
            _mm_storeu_si128((__m128i *)(out + Q8K_QS + 16 * c), _mm512_cvtsepi32_epi8(q));
            bsums[c] = (int16_t)_mm512_reduce_add_epi32(q);
        }
        memcpy(out + Q8K_BSUMS, bsums, sizeof bsums);
        const float d = 1 / iscale;
        memcpy(out, &d, sizeof d);
    }
    return 1;
}

/* Q8_0 activation rows with their records (gemm.h), bit for bit gemm.c's act_q8_0 (ggml-cpu's x86
 * quantize_row_q8_0): amax over the block (NaN elements skipped, as the scalar scan does: vmaxps returns
 * its second operand), d = amax / 127 as F16, q = round-half-even(x * (127 / amax)) saturated to
 * [-128, 127] (NaN -> -128, as cvtps + packs give). */
int ar_gemm_avx512_q8_0(const float *x, void *y, int64_t nb)
{
    uint8_t *blk = y, *rec = (uint8_t *)y + (size_t)nb * 34;
    for (int64_t i = 0; i < nb; i++, x += 32, blk += 34, rec += AR_GEMM_Q8_0_REC) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        const __m512 m = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
        const float amax = _mm512_reduce_max_ps(m);
        const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
        const uint16_t h = ar_f32_to_f16(amax / 127.0f);
        /* min(127, .) first: a subnormal amax makes id infinite, and x * id = +inf must give 127 as
         * round_q8 does (cvtps alone gives INT_MIN); NaN stays NaN (min returns its second operand) */
        const __m512 is = _mm512_set1_ps(id), k127 = _mm512_set1_ps(127.0f);
        const __m512i q0 = _mm512_cvtps_epi32(_mm512_min_ps(k127, _mm512_mul_ps(v0, is)));
        const __m512i q1 = _mm512_cvtps_epi32(_mm512_min_ps(k127, _mm512_mul_ps(v1, is)));
        const __m128i b0 = _mm512_cvtsepi32_epi8(q0), b1 = _mm512_cvtsepi32_epi8(q1);
        memcpy(blk, &h, 2);
        _mm_storeu_si128((__m128i *)(blk + 2), b0);
        _mm_storeu_si128((__m128i *)(blk + 18), b1);
        const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(_mm512_cvtepi8_epi32(b0), _mm512_cvtepi8_epi32(b1)));
        const float df = ar_f16_to_f32(h);
        const int32_t corr = -128 * sum;
        memcpy(rec, &df, sizeof df);
        memcpy(rec + 4, &corr, sizeof corr);
    }
    return 1;
}

ar_gemm_kernel ar_gemm_avx512_kernel(int wtype)
{
    switch (wtype) {
    case AR_F32:    return gemm_f32;
    case AR_F16:    return gemm_f16;
    case AR_BF16:   return gemm_bf16;
    case AR_Q8_0:   return gemm_q8_0;
    case AR_Q4_0:   return gemm_q4_0;
    case AR_IQ4_NL: return gemm_iq4_nl;
    case AR_Q4_K:   return gemm_q4_K;
    case AR_Q5_K:   return gemm_q5_K;
    case AR_Q6_K:   return gemm_q6_K;
    case AR_Q3_K:   return gemm_q3_K;
    case AR_Q2_K:   return gemm_q2_K;
    case AR_IQ4_XS: return gemm_iq4_xs;
    default:        return NULL;
    }
}

ar_gemm_kernel ar_gemm_avx512_tile_kernel(int wtype)
{
    switch (wtype) {
    case AR_Q4_K:   return gemm_q4_K_tiles;
    case AR_Q5_K:   return gemm_q5_K_tiles;
    case AR_Q6_K:   return gemm_q6_K_tiles;
    case AR_Q3_K:   return gemm_q3_K_tiles;
    case AR_Q2_K:   return gemm_q2_K_tiles;
    case AR_IQ4_XS: return gemm_iq4_xs_tiles;
    case AR_Q8_0:   return gemm_q8_0_tiles;
    case AR_Q4_0:   return gemm_q4_0_tiles;
    case AR_IQ4_NL: return gemm_iq4_nl_tiles;
    default:        return NULL;
    }
}

#elif defined(__x86_64__)

ar_gemm_kernel ar_gemm_avx512_kernel(int wtype)
{
    (void)wtype;
    return NULL;
}

ar_gemm_kernel ar_gemm_avx512_tile_kernel(int wtype)
{
    (void)wtype;
    return NULL;
}

int ar_gemm_avx512_q8_K(const float *x, void *y, int64_t nb)
{
    (void)x;
    (void)y;
    (void)nb;
    return 0;
}

int ar_gemm_avx512_q8_0(const float *x, void *y, int64_t nb)
{
    (void)x;
    (void)y;
    (void)nb;
    return 0;
}

#else
typedef int ar_gemm_avx512_unused;
#endif
