/* compute/cpu/gemm_avx2.c — AVX2/FMA kernels behind ar_gemm (CPUs without AVX-512).
 *
 * Same scheme as gemm_avx512.c with 8 weight rows per tile: one block column of 8 rows is unpacked
 * and transposed so that 32-bit lane i holds 4 consecutive quants of weight row i, then each
 * activation row runs against the tile with broadcast 4-byte activation groups. Without VNNI the
 * int8 dot is vpmaddubsw (unsigned weights x signed activations -> int16 pairs): the int16 sums of
 * a few groups are accumulated before one vpmaddwd applies the sub-block scale and widens to
 * int32, with group sizes chosen so no int16 sum can overflow:
 *   Q4_K (0..15): 8 groups  2*15*128*8 = 30720     Q5_K (0..31): 4 groups  2*31*128*4 = 31744
 *   Q6_K (0..63): 2 groups  2*63*128*2 = 32256
 * Signed weights (Q8_0, Q4_0, IQ4_NL, IQ4_XS) use |w| x sign(w)*a, widened every group. Later
 * tiles are prefetched a few tiles ahead, spread over the row groups (as in gemm_avx512.c).
 * Float weights use FMA over 4 weight rows x 2 activation rows (BF16 widened by a shift). */
#include "compute/cpu/gemm.h"

#if defined(__x86_64__) && defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)

#include <immintrin.h>
#include <string.h>

#include "format/quant.h"

#define INLINE static inline __attribute__((always_inline))

enum { TW = 8,         /* weight rows per tile (lanes) */
       MCHUNK = 64,    /* activation rows per accumulator pass */
       MR = 4,         /* activation rows per register block */
       PF_TILES = 3 }; /* software prefetch distance in tiles */

INLINE int32_t load_i32(const void *p) { int32_t v; memcpy(&v, p, 4); return v; }
INLINE float load_f32(const void *p) { float v; memcpy(&v, p, 4); return v; }
INLINE __m256i bcast4(const void *p) { return _mm256_set1_epi32(load_i32(p)); }

/* v, through an empty asm that GCC must assume changes it: a running integer sum stays a chain of adds in
 * program order. Without it GCC reassociated a group's eight products into a tree whose partial sums spilled
 * (Q4_K M = 16 16 % slower; the Q8_0 and IQ4_XS int32 sums 7 % and 4 %); vpaddsw, which it cannot reassociate,
 * issues on the multiply pipes here and capped the vpmaddubsw + add pairs at 3.5 per ns against 5.0 with
 * vpaddw (Zen 3 class EPYC). */
INLINE __m256i keep_order(__m256i v)
{
    __asm__("" : "+x"(v));
    return v;
}

/* In-place transpose of an 8x8 matrix of 32-bit elements (r[i] = row i). */
INLINE void transpose8(__m256i r[8])
{
    __m256i a[8], b[8];
#pragma GCC unroll 8
    for (int i = 0; i < 8; i += 2) {
        a[i] = _mm256_unpacklo_epi32(r[i], r[i + 1]);
        a[i + 1] = _mm256_unpackhi_epi32(r[i], r[i + 1]);
    }
#pragma GCC unroll 2
    for (int g = 0; g < 8; g += 4) {
        b[g + 0] = _mm256_unpacklo_epi64(a[g + 0], a[g + 2]);
        b[g + 1] = _mm256_unpackhi_epi64(a[g + 0], a[g + 2]);
        b[g + 2] = _mm256_unpacklo_epi64(a[g + 1], a[g + 3]);
        b[g + 3] = _mm256_unpackhi_epi64(a[g + 1], a[g + 3]);
    }
    /* b[4g + c] 128-bit lane k = column 4k + c of rows 4g..4g+3 */
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2x128_si256(b[c], b[4 + c], 0x20);
        r[4 + c] = _mm256_permute2x128_si256(b[c], b[4 + c], 0x31);
    }
}

/* Load 16 bytes at p[i] + off for the 8 rows and transpose: out[c] lane i = dword c of row i. */
INLINE void load_headers8(const uint8_t *const p[TW], size_t off, __m256i out[4])
{
    __m256i z[4];
#pragma GCC unroll 4
    for (int g = 0; g < 4; g++) /* z[g] 128-bit lane k = row g + 4k */
        z[g] = _mm256_inserti128_si256(
            _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p[g] + off))),
            _mm_loadu_si128((const __m128i *)(p[g + 4] + off)), 1);
    const __m256i a0 = _mm256_unpacklo_epi32(z[0], z[1]), a1 = _mm256_unpackhi_epi32(z[0], z[1]);
    const __m256i a2 = _mm256_unpacklo_epi32(z[2], z[3]), a3 = _mm256_unpackhi_epi32(z[2], z[3]);
    out[0] = _mm256_unpacklo_epi64(a0, a2);
    out[1] = _mm256_unpackhi_epi64(a0, a2);
    out[2] = _mm256_unpacklo_epi64(a1, a3);
    out[3] = _mm256_unpackhi_epi64(a1, a3);
}

/* F16 in the low (hi=0) or high (hi=1) half of each 32-bit lane -> 8 floats. */
INLINE __m256 half_lanes_to_f32(__m256i v, int hi)
{
    v = hi ? _mm256_srli_epi32(v, 16) : _mm256_and_si256(v, _mm256_set1_epi32(0xFFFF));
    return _mm256_cvtph_ps(_mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

/* Per-lane F16 at byte offset off of each row, as floats. */
INLINE __m256 gather_f16(const uint8_t *const p[TW], size_t off)
{
    uint16_t h[TW];
#pragma GCC unroll 8
    for (int i = 0; i < TW; i++) memcpy(&h[i], p[i] + off, 2);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
}

/* Where a tile's 8 weight rows come from: the row layout (the 8 rows' blocks; the builds transpose them) or
 * an 8-row half of a tile of gemm.h's 16-row tile layout, where dword column k of rows 8 half .. 8 half + 7
 * is the 32 bytes at t + 64 k + 32 half, already transposed. */
typedef struct {
    const uint8_t *const *p;   /* row layout */
    const uint8_t *t;          /* tile layout: the 16-row tile */
    int half;
} tsrc;

/* n (4 or 8) dword columns from byte off (a multiple of 4) of the block: out[u] lane i = dword off / 4 + u
 * of row i. */
INLINE void tile_cols(const uint8_t *tile, int half, size_t off, int n, __m256i *out)
{
    for (int u = 0; u < n; u++) out[u] = _mm256_loadu_si256((const __m256i *)(tile + (off / 4 + (size_t)u) * 64 + 32 * (size_t)half));
}

INLINE void src_cols(tsrc s, size_t off, int n, __m256i *out)
{
    if (s.t) {
        tile_cols(s.t, s.half, off, n, out);
    } else if (n == 4) {
        load_headers8(s.p, off, out);
    } else {
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) out[i] = _mm256_loadu_si256((const __m256i *)(s.p[i] + off));
        transpose8(out);
    }
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

/* Prefetch into L1 the bytes [p + lo, p + hi). */
INLINE void prefetch_span(const uint8_t *p, size_t lo, size_t hi)
{
    for (size_t q = lo; q < hi; q += 64) _mm_prefetch((const char *)p + q, _MM_HINT_T0);
}

/* The rows of the tile `ahead` visits after (o0, tb) (see gemm_avx512.c); 0 past the range. */
INLINE int tile_ahead(const uint8_t *wb, size_t wrb, int64_t o0, int64_t o_hi, int64_t tb, int64_t ntb,
                      size_t tbytes, int ahead, const uint8_t *out[TW])
{
    int64_t og = o0, b = tb + ahead;
    while (b >= ntb) { b -= ntb; og += TW; }
    if (og >= o_hi) return 0;
#pragma GCC unroll 8
    for (int i = 0; i < TW; i++) out[i] = wb + (size_t)(og + i < o_hi ? og + i : o_hi - 1) * wrb + (size_t)b * tbytes;
    return 1;
}

/* Prefetch slice g (of `slices`) of a later tile: called before the build (g = 0) and after each
 * activation row group, so the loads spread over the tile's arithmetic. */
INLINE void prefetch_slice(int have, const uint8_t *const nx[TW], int g, int slices, size_t bytes)
{
    if (have && g < slices) prefetch_rows(nx, g * (TW / slices), (g + 1) * (TW / slices), bytes);
}

/* Lanes [lo, nv) of acc to y[lo..nv). */
INLINE void store_lanes(float *y, __m256 acc, int lo, int nv)
{
    if (lo == 0 && nv == TW) {
        _mm256_storeu_ps(y, acc);
        return;
    }
    float tmp[TW];
    _mm256_storeu_ps(tmp, acc);
    for (int i = lo; i < nv; i++) y[i] = tmp[i];
}

/* The low 16 bits of each lane in both halves (int16 pairs for vpmaddwd). */
INLINE __m256i pair16(__m256i v)
{
    return _mm256_or_si256(_mm256_and_si256(v, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(v, 16));
}

/* ---- K-quant tiles (Q4_K, Q5_K, Q6_K) -------------------------------------------------------- */

/* One 256-column block of 8 weight rows. q[k] lane i = quants 4k..4k+3 of row i (unsigned).
 * Q4_K/Q5_K: sc[j] = sub-block scale in both int16 halves, mn[j] = min likewise.
 * Q6_K: sc[j] = scale of sub-block j (16 each) in both halves, mn[j] = (32 sc_2j, 32 sc_2j+1). */
typedef struct {
    __m256i q[64];
    __m256i sc[16];
    __m256i mn[8];
    __m256 d, dmin;
} ktile;

INLINE void k4_scales8(__m256i scs[8], __m256i mns[8], __m256i s0, __m256i s1, __m256i s2)
{
    const __m256i m6 = _mm256_set1_epi32(63), m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3);
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        const __m256i sc = _mm256_and_si256(_mm256_srli_epi32(s0, 8 * j), m6);
        const __m256i mn = _mm256_and_si256(_mm256_srli_epi32(s1, 8 * j), m6);
        const __m256i sch = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi32(s2, 8 * j), m4),
            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(s0, 8 * j + 6), m2), 4));
        const __m256i mnh = _mm256_or_si256(
            _mm256_and_si256(_mm256_srli_epi32(s2, 8 * j + 4), m4),
            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(s1, 8 * j + 6), m2), 4));
        scs[j] = pair16(sc);
        scs[j + 4] = pair16(sch);
        mns[j] = pair16(mn);
        mns[j + 4] = pair16(mnh);
    }
}

INLINE void build_q4_K(ktile *t, tsrc src)
{
    __m256i h[4];
    src_cols(src, 0, 4, h);
    t->d = half_lanes_to_f32(h[0], 0);
    t->dmin = half_lanes_to_f32(h[0], 1);
    k4_scales8(t->sc, t->mn, h[1], h[2], h[3]);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int c = 0; c < 4; c++) {
        __m256i r[8];
        src_cols(src, 16 + 32 * (size_t)c, 8, r);
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            t->q[16 * c + u] = _mm256_and_si256(r[u], m4);
            t->q[16 * c + 8 + u] = _mm256_and_si256(_mm256_srli_epi32(r[u], 4), m4);
        }
    }
}

INLINE void build_q5_K(ktile *t, const uint8_t *const p[TW])
{
    __m256i h[4];
    load_headers8(p, 0, h);
    t->d = half_lanes_to_f32(h[0], 0);
    t->dmin = half_lanes_to_f32(h[0], 1);
    k4_scales8(t->sc, t->mn, h[1], h[2], h[3]);
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    __m256i qh[8];
#pragma GCC unroll 8
    for (int i = 0; i < TW; i++) qh[i] = _mm256_loadu_si256((const __m256i *)(p[i] + 16));
    transpose8(qh);
    for (int c = 0; c < 4; c++) {
        __m256i r[8];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) r[i] = _mm256_loadu_si256((const __m256i *)(p[i] + 48 + 32 * c));
        transpose8(r);
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            const __m256i lo5 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(qh[u], 2 * c), one), 4);
            const __m256i hi5 = _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(qh[u], 2 * c + 1), one), 4);
            t->q[16 * c + u] = _mm256_or_si256(_mm256_and_si256(r[u], m4), lo5);
            t->q[16 * c + 8 + u] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(r[u], 4), m4), hi5);
        }
    }
}

/* The four 6-bit quant vectors of A (low bits, elements l and l + 64), B (l + 32, l + 96) and H (their top
 * bits, 2 per element: bits 0-1, 2-3, 4-5, 6-7 for l, l + 32, l + 64, l + 96): the top bits are moved to bits
 * 4-5 of their byte (16-bit shifts carry bits across bytes only where the 0x30 mask drops them). */
INLINE void q6_quads(__m256i A, __m256i B, __m256i H, __m256i m4, __m256i m30, __m256i w[4])
{
    w[0] = _mm256_or_si256(_mm256_and_si256(A, m4), _mm256_and_si256(_mm256_slli_epi16(H, 4), m30));
    w[1] = _mm256_or_si256(_mm256_and_si256(B, m4), _mm256_and_si256(_mm256_slli_epi16(H, 2), m30));
    w[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(A, 4), m4), _mm256_and_si256(H, m30));
    w[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(B, 4), m4), _mm256_and_si256(_mm256_srli_epi16(H, 2), m30));
}

INLINE void build_q6_K(ktile *t, const uint8_t *const p[TW])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    __m256i h[4];
    load_headers8(p, 192, h); /* scales[0..15] */
    __m256i sc[16];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) sc[4 * c + k] = _mm256_srai_epi32(_mm256_slli_epi32(h[c], 24 - 8 * k), 24);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) t->sc[j] = pair16(sc[j]);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const __m256i s0 = _mm256_slli_epi32(sc[2 * j], 5), s1 = _mm256_slli_epi32(sc[2 * j + 1], 5);
        t->mn[j] = _mm256_or_si256(_mm256_and_si256(s0, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(s1, 16));
    }
    t->d = gather_f16(p, 208);
    for (int half = 0; half < 2; half++) {
        __m256i a[8], b[8], qh[8];
        const tsrc src = { p, NULL, 0 };
        src_cols(src, 64 * (size_t)half, 8, a);
        src_cols(src, 64 * (size_t)half + 32, 8, b);
        src_cols(src, 128 + 32 * (size_t)half, 8, qh);
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt++) {
            __m256i w[4];
            q6_quads(a[tt], b[tt], qh[tt], m4, m30, w);
            const int k0 = 32 * half + tt;
#pragma GCC unroll 4
            for (int f = 0; f < 4; f++) t->q[k0 + 8 * f] = w[f];
        }
    }
}

/* Q3_K (110-byte blocks: hmask 32, qs 64, scales 12, d): element 128n + 32s + l (l < 32) is
 * (qs[32n + l] >> 2s & 3) | (hmask[l] >> (4n + s) & 1) << 2, minus 4 (gemm_avx512.c's build_q3_K): quad
 * 32n + 8s + tt from qs dword 8n + tt and hmask dword tt. sc[j] = the 6-bit scale j - 32 in both halves,
 * mn[p] = (4 sc_2p, 4 sc_2p+1) for the - 4 through the bsums. */
INLINE void build_q3_K(ktile *t, const uint8_t *const p[TW])
{
    __m256i h[4];
    load_headers8(p, 92, h);   /* h[1..3] = scale bytes 0-3, 4-7, 8-11 (16 bytes ending inside the block) */
    const __m256i m4 = _mm256_set1_epi32(0x0F0F0F0F), m2 = _mm256_set1_epi32(0x03030303);
    __m256i pk[4];   /* pk[c] byte k = the 6-bit scale 4c + k */
    pk[0] = _mm256_or_si256(_mm256_and_si256(h[1], m4), _mm256_slli_epi32(_mm256_and_si256(h[3], m2), 4));
    pk[1] = _mm256_or_si256(_mm256_and_si256(h[2], m4), _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h[3], 2), m2), 4));
    pk[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(h[1], 4), m4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h[3], 4), m2), 4));
    pk[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(h[2], 4), m4),
                            _mm256_slli_epi32(_mm256_and_si256(_mm256_srli_epi32(h[3], 6), m2), 4));
    __m256i sc[16];
    const __m256i b32 = _mm256_set1_epi32(32), ff = _mm256_set1_epi32(0xFF);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            sc[4 * c + k] = _mm256_sub_epi32(_mm256_and_si256(_mm256_srli_epi32(pk[c], 8 * k), ff), b32);
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) t->sc[j] = pair16(sc[j]);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const __m256i s0 = _mm256_slli_epi32(sc[2 * j], 2), s1 = _mm256_slli_epi32(sc[2 * j + 1], 2);
        t->mn[j] = _mm256_or_si256(_mm256_and_si256(s0, _mm256_set1_epi32(0xFFFF)), _mm256_slli_epi32(s1, 16));
    }
    t->d = gather_f16(p, 108);
    __m256i hm[8];
#pragma GCC unroll 8
    for (int i = 0; i < TW; i++) hm[i] = _mm256_loadu_si256((const __m256i *)p[i]);
    transpose8(hm);
    const __m256i q2 = _mm256_set1_epi8(3), b2 = _mm256_set1_epi8(4);
    for (int n = 0; n < 2; n++) {
        __m256i qs[8];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) qs[i] = _mm256_loadu_si256((const __m256i *)(p[i] + 32 + 32 * n));
        transpose8(qs);
#pragma GCC unroll 4
        for (int sh = 0; sh < 4; sh++) {
            const int hb = 4 * n + sh;   /* the hmask bit, moved to bit 2 */
#pragma GCC unroll 8
            for (int tt = 0; tt < 8; tt++) {
                const __m256i hi = hb >= 2 ? _mm256_srli_epi32(hm[tt], hb - 2) : _mm256_slli_epi32(hm[tt], 2 - hb);
                t->q[32 * n + 8 * sh + tt] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi32(qs[tt], 2 * sh), q2),
                                                             _mm256_and_si256(hi, b2));
            }
        }
    }
}

/* Q2_K (84-byte blocks: scales 16 (scale | min << 4), qs 64, d, dmin): element 128n + 32s + l is
 * qs[32n + l] >> 2s & 3 (quad 32n + 8s + tt from qs dword 8n + tt), of sub-block 8n + 2s + l / 16.
 * sc[j] = scale j in both halves, mn[p] = (min 2p, min 2p+1) against the bsums, scaled by dmin. */
INLINE void build_q2_K(ktile *t, const uint8_t *const p[TW])
{
    __m256i h[4], dd[4];
    load_headers8(p, 0, h);
    load_headers8(p, 68, dd);   /* dd[3] = d | dmin << 16 */
    t->d = half_lanes_to_f32(dd[3], 0);
    t->dmin = half_lanes_to_f32(dd[3], 1);
    const __m256i m4 = _mm256_set1_epi32(0x0F);
    __m256i mins[16];
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++)
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            t->sc[4 * c + k] = pair16(_mm256_and_si256(_mm256_srli_epi32(h[c], 8 * k), m4));
            mins[4 * c + k] = _mm256_and_si256(_mm256_srli_epi32(h[c], 8 * k + 4), m4);
        }
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) t->mn[j] = _mm256_or_si256(mins[2 * j], _mm256_slli_epi32(mins[2 * j + 1], 16));
    const __m256i q2 = _mm256_set1_epi8(3);
    for (int n = 0; n < 2; n++) {
        __m256i qs[8];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) qs[i] = _mm256_loadu_si256((const __m256i *)(p[i] + 16 + 32 * n));
        transpose8(qs);
#pragma GCC unroll 4
        for (int sh = 0; sh < 4; sh++)
#pragma GCC unroll 8
            for (int tt = 0; tt < 8; tt++)
                t->q[32 * n + 8 * sh + tt] = _mm256_and_si256(_mm256_srli_epi32(qs[tt], 2 * sh), q2);
    }
}

enum { Q8K_QS = 4, Q8K_BSUMS = 260, Q8K_BYTES = 292 };

/* Q4_K/Q5_K tile x R rows; G = quads per int16 group (8 for Q4_K, 4 for Q5_K). The mins' sums come after
 * the quants' loop, so that only isum and the group sums are live in it (with imin there too, R = 4 spilled
 * to the stack). */
INLINE void run_k4(const ktile *t, const uint8_t *const a[MR], int R, int G, __m256 *acc)
{
    __m256i isum[MR];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 8; j++) {
        const __m256i sc = t->sc[j];
#pragma GCC unroll 2
        for (int g = 0; g < 8; g += G) {
            __m256i s[MR];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) s[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
            for (int tt = g; tt < g + G; tt++) {
                const __m256i w = t->q[8 * j + tt];
#pragma GCC unroll 4
                for (int r = 0; r < R; r++)
                    s[r] = keep_order(_mm256_add_epi16(s[r], _mm256_maddubs_epi16(w, bcast4(a[r] + Q8K_QS + 32 * j + 4 * tt))));
            }
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(s[r], sc));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256i imin = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) imin = _mm256_add_epi32(imin, _mm256_madd_epi16(t->mn[j], bcast4(a[r] + Q8K_BSUMS + 4 * j)));
        const __m256 f = _mm256_fmsub_ps(_mm256_cvtepi32_ps(isum[r]), t->d, _mm256_mul_ps(_mm256_cvtepi32_ps(imin), t->dmin));
        acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(load_f32(a[r])), acc[r]);
    }
}

/* Q6_K tile x R rows: groups of 2 quads (one sub-block of 16 = 2 groups). */
INLINE void run_q6(const ktile *t, const uint8_t *const a[MR], int R, __m256 *acc)
{
    __m256i isum[MR];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 16; j++) {
        const __m256i sc = t->sc[j];
        const __m256i *q = t->q + 4 * j;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *x = a[r] + Q8K_QS + 16 * j;
            const __m256i s0 = _mm256_add_epi16(_mm256_maddubs_epi16(q[0], bcast4(x)),
                                                _mm256_maddubs_epi16(q[1], bcast4(x + 4)));
            const __m256i s1 = _mm256_add_epi16(_mm256_maddubs_epi16(q[2], bcast4(x + 8)),
                                                _mm256_maddubs_epi16(q[3], bcast4(x + 12)));
            isum[r] = _mm256_add_epi32(isum[r], _mm256_add_epi32(_mm256_madd_epi16(s0, sc), _mm256_madd_epi16(s1, sc)));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256i off = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            off = _mm256_add_epi32(off, _mm256_madd_epi16(t->mn[j], bcast4(a[r] + Q8K_BSUMS + 4 * j)));
        const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[r], off)), t->d);
        acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(load_f32(a[r])), acc[r]);
    }
}

/* Q3_K / Q2_K tile x R rows: quants of at most 3 bits, so a sub-block's 4 quads sum in int16 (|sum| <=
 * 4 * 2 * 7 * 128) before one vpmaddwd by its scale. Q3_K: the - 4 through the bsums as Q6_K's - 32; Q2_K
 * (mins16): the mins' sum over the bsums, scaled by dmin, as Q4_K's. */
INLINE void run_q3(const ktile *t, const uint8_t *const a[MR], int R, int mins16, __m256 *acc)
{
    __m256i isum[MR];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 16; j++) {
        const __m256i sc = t->sc[j];
        const __m256i *q = t->q + 4 * j;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            const uint8_t *x = a[r] + Q8K_QS + 16 * j;
            const __m256i s01 = _mm256_add_epi16(_mm256_maddubs_epi16(q[0], bcast4(x)), _mm256_maddubs_epi16(q[1], bcast4(x + 4)));
            const __m256i s23 = _mm256_add_epi16(_mm256_maddubs_epi16(q[2], bcast4(x + 8)), _mm256_maddubs_epi16(q[3], bcast4(x + 12)));
            isum[r] = _mm256_add_epi32(isum[r], _mm256_madd_epi16(_mm256_add_epi16(s01, s23), sc));
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) {
        __m256i off = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++)
            off = _mm256_add_epi32(off, _mm256_madd_epi16(t->mn[j], bcast4(a[r] + Q8K_BSUMS + 4 * j)));
        const __m256 f = mins16 ? _mm256_fmsub_ps(_mm256_cvtepi32_ps(isum[r]), t->d, _mm256_mul_ps(_mm256_cvtepi32_ps(off), t->dmin))
                                : _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(isum[r], off)), t->d);
        acc[r] = _mm256_fmadd_ps(f, _mm256_set1_ps(load_f32(a[r])), acc[r]);
    }
}

enum { KT_Q4_K, KT_Q5_K, KT_Q6_K, KT_Q3_K, KT_Q2_K };

INLINE void run_ktile(const ktile *t, const uint8_t *const a[MR], int R, int kind, __m256 *acc)
{
    if (kind == KT_Q6_K) run_q6(t, a, R, acc);
    else if (kind == KT_Q3_K || kind == KT_Q2_K) run_q3(t, a, R, kind == KT_Q2_K, acc);
    else run_k4(t, a, R, kind == KT_Q4_K ? 8 : 4, acc);
}

/* ---- row-dot path for M = 1 (decode): Q4_K, Q5_K, Q6_K ---------------------------------------
 * One activation row uses a tile once, so the tile's transposition (8 row streams, 4-5 transposes per
 * block) costs more than it saves: the kernel must stream the weights at DRAM speed, and with the tile
 * path it ran at a third of it. Here each weight row is one sequential stream and its blocks are dotted
 * with the activation row in their natural order: vpmaddubsw (unsigned quants x signed Q8_K bytes ->
 * int16 pairs, exact: |pair| <= 2 * 63 * 128), vpmaddwd by the sub-block scale (a vpshufb of the
 * block's scales) into int32, one horizontal sum per block. The block's integers are the tile path's
 * exactly and its float steps are the tile path's in the same order, so an output is the same bits
 * whichever path computed it (batch invariance, tests/test_gemm). */

/* The int32 sums of a and b: (sum a, sum b) in lanes 0 and 1. */
INLINE __m128i hsum2_epi32(__m256i a, __m256i b)
{
    const __m256i t = _mm256_hadd_epi32(a, b);   /* a01 a23 b01 b23 | a45 a67 b45 b67 */
    const __m128i u = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    return _mm_hadd_epi32(u, u);
}

/* vpshufb control: every int16 of the low 128-bit lane takes 16-bit element lo, of the high lane hi. */
INLINE __m256i pick16(int lo, int hi)
{
    int8_t idx[32];
    for (int k = 0; k < 32; k++) idx[k] = (int8_t)(2 * (k < 16 ? lo : hi) + (k & 1));
    return _mm256_loadu_si256((const __m256i *)idx);
}

/* Q4_K block (d, dmin, scales[12], qs[128]) x one Q8_K block a: qs bytes 32c .. 32c + 31 hold elements
 * 64c + l (low nibble, sub-block 2c) and 64c + 32 + l (high nibble, sub-block 2c + 1). q5: a Q5_K block
 * (d, dmin, scales[12], qh[32], qs[128]), the same with a fifth bit per element from qh. */
INLINE float rowdot_q4_K_block(const uint8_t *blk, const uint8_t *a, float acc, int q5)
{
    static const int8_t dup[16] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    uint32_t u[3];
    memcpy(u, blk + 4, 12);
    const uint32_t sc_lo = u[0] & 0x3f3f3f3fu, mn_lo = u[1] & 0x3f3f3f3fu;
    const uint32_t sc_hi = (u[2] & 0x0f0f0f0fu) | ((u[0] >> 6) & 0x03030303u) << 4;
    const uint32_t mn_hi = ((u[2] >> 4) & 0x0f0f0f0fu) | ((u[1] >> 6) & 0x03030303u) << 4;
    const __m128i sc8 = _mm_setr_epi32((int)sc_lo, (int)sc_hi, 0, 0), mn8 = _mm_setr_epi32((int)mn_lo, (int)mn_hi, 0, 0);
    const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sc8));   /* the 8 scales, both lanes */
    const __m256i m16 = _mm256_cvtepu8_epi16(_mm_shuffle_epi8(mn8, _mm_loadu_si128((const __m128i *)dup)));
    const uint8_t *x = a + Q8K_QS;
    __m256i isum = _mm256_setzero_si256();
    /* Q5_K: the fifth bits, qh[l] bit 2c (2c + 1) for element l of chunk c's low (high) nibbles */
    const __m256i qh = q5 ? _mm256_loadu_si256((const __m256i *)(blk + 16)) : _mm256_setzero_si256();
    const uint8_t *qs = blk + (q5 ? 48 : 16);
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
        __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
        if (q5) {
            const __m256i b16 = _mm256_set1_epi8(16);
            lo = _mm256_or_si256(lo, _mm256_and_si256(c < 3 ? _mm256_slli_epi16(qh, 4 - 2 * c) : _mm256_srli_epi16(qh, 2), b16));
            hi = _mm256_or_si256(hi, _mm256_and_si256(c < 2 ? _mm256_slli_epi16(qh, 3 - 2 * c) : _mm256_srli_epi16(qh, 2 * c - 3), b16));
        }
        const __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(x + 64 * c)));
        const __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(x + 64 * c + 32)));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_shuffle_epi8(s16, pick16(2 * c, 2 * c))));
        isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_shuffle_epi8(s16, pick16(2 * c + 1, 2 * c + 1))));
    }
    const __m256i imin = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(a + Q8K_BSUMS)), m16);
    const __m128i sums = hsum2_epi32(isum, imin);
    uint16_t dh[2];
    memcpy(dh, blk, 4);
    const __m128 d = _mm_set_ss(_cvtsh_ss(dh[0])), dmin = _mm_set_ss(_cvtsh_ss(dh[1]));
    /* the tile path's float steps, bit for bit: f = is * d - im * dmin, acc += f * d8 */
    const __m128 f = _mm_fmsub_ss(_mm_cvtepi32_ps(sums), d, _mm_mul_ss(_mm_cvtepi32_ps(_mm_srli_si128(sums, 4)), dmin));
    return _mm_cvtss_f32(_mm_fmadd_ss(f, _mm_set_ss(load_f32(a)), _mm_set_ss(acc)));
}

/* Q6_K block (ql[128], qh[64], scales[16] int8, d) x one Q8_K block a. For half h and l < 32, with
 * A = ql[64h + l], B = ql[64h + 32 + l], H = qh[32h + l], the elements 128h + l, + 32, + 64, + 96 are
 * (A & 15 | (H & 3) << 4), (B & 15 | (H >> 2 & 3) << 4), (A >> 4 | (H >> 4 & 3) << 4), (B >> 4 | (H >> 6
 * & 3) << 4), stored + 32; a 32-element vector holds two 16-element sub-blocks, one per 128-bit lane.
 * The + 32 comes off as 32 * sum_g sc_g * bsum_g. */
INLINE float rowdot_q6_K_block(const uint8_t *blk, const uint8_t *a, float acc)
{
    const __m256i m4 = _mm256_set1_epi8(0x0F), m30 = _mm256_set1_epi8(0x30);
    const __m128i sc8 = _mm_loadu_si128((const __m128i *)(blk + 192));
    const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
    const uint8_t *x = a + Q8K_QS;
    __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        /* the half's 8 scales as int16 in both 128-bit lanes */
        const __m256i s16 = _mm256_broadcastsi128_si256(_mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(blk + 192 + 8 * h))));
        const __m256i A = _mm256_loadu_si256((const __m256i *)(blk + 64 * h));
        const __m256i B = _mm256_loadu_si256((const __m256i *)(blk + 64 * h + 32));
        const __m256i H = _mm256_loadu_si256((const __m256i *)(blk + 128 + 32 * h));
        __m256i w[4];
        q6_quads(A, B, H, m4, m30, w);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            const __m256i p = _mm256_maddubs_epi16(w[k], _mm256_loadu_si256((const __m256i *)(x + 128 * h + 32 * k)));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(s16, pick16(2 * k, 2 * k + 1))));
        }
    }
    const __m256i off = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(a + Q8K_BSUMS)), sc16);
    const __m128i sums = hsum2_epi32(isum, off);
    const int32_t tot = _mm_cvtsi128_si32(sums) - 32 * _mm_extract_epi32(sums, 1);
    uint16_t dh;
    memcpy(&dh, blk + 208, 2);
    /* the tile path's float steps: acc += (tot * d) * d8 */
    const __m128 f = _mm_mul_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), tot), _mm_set_ss(_cvtsh_ss(dh)));
    return _mm_cvtss_f32(_mm_fmadd_ss(f, _mm_set_ss(load_f32(a)), _mm_set_ss(acc)));
}

/* Q3_K (q3) or Q2_K block x one Q8_K block a, in natural order: for half n and shift s the 32 elements
 * 128n + 32s + l are one vector (sub-blocks 8n + 2s and 8n + 2s + 1 in its two 128-bit lanes), vpmaddubsw
 * against the activation, vpmaddwd by the two scales. Q3_K's quants take their third bit from hmask and the
 * - 4 comes off as 4 * sum_g sc_g bsum_g; Q2_K's mins' sum over the bsums is scaled by dmin. The tile path's
 * integers and float steps (run_q3). */
INLINE float rowdot_q32_block(const uint8_t *blk, const uint8_t *a, float acc, int q3)
{
    __m128i sc8;     /* the 16 sub-block scales (Q3_K: less 32) */
    __m256i mn16;    /* what the bsums are dotted with: Q3_K the scales, Q2_K the mins */
    if (q3) {
        /* the scale bytes a0, a1, a2 (dwords 1..3 of the 16 bytes ending at the scales' end); byte k of dword c
         * of pk = the 6-bit scale 4c + k: (a0, a1, a0 >> 4, a1 >> 4) & 0x0f | (a2 >> 0, 2, 4, 6 & 3) << 4. In
         * registers: scalar stores read back as a vector stall on store forwarding (4.8 GB/s -> see BENCHMARKS) */
        const __m128i v = _mm_loadu_si128((const __m128i *)(blk + 92));
        const __m128i lo = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, 0x99), _mm_setr_epi32(0, 0, 4, 4)),
                                         _mm_set1_epi8(0x0F));
        const __m128i hi = _mm_and_si128(_mm_srlv_epi32(_mm_shuffle_epi32(v, 0xFF), _mm_setr_epi32(0, 2, 4, 6)),
                                         _mm_set1_epi8(3));
        sc8 = _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi32(hi, 4)), _mm_set1_epi8(32));
        mn16 = _mm256_cvtepi8_epi16(sc8);
    } else {
        const __m128i sc = _mm_loadu_si128((const __m128i *)blk), m4 = _mm_set1_epi8(0x0F);
        sc8 = _mm_and_si128(sc, m4);
        mn16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), m4));
    }
    const __m256i q2 = _mm256_set1_epi8(3), b2 = _mm256_set1_epi8(4);
    const __m256i H = q3 ? _mm256_loadu_si256((const __m256i *)blk) : _mm256_setzero_si256();
    const uint8_t *x = a + Q8K_QS;
    __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int n = 0; n < 2; n++) {
        const __m128i sch = n ? _mm_unpackhi_epi64(sc8, sc8) : sc8;
        const __m256i s16 = _mm256_broadcastsi128_si256(q3 ? _mm_cvtepi8_epi16(sch) : _mm_cvtepu8_epi16(sch));
        const __m256i Q = _mm256_loadu_si256((const __m256i *)(blk + (q3 ? 32 : 16) + 32 * n));
#pragma GCC unroll 4
        for (int sh = 0; sh < 4; sh++) {
            __m256i w = _mm256_and_si256(_mm256_srli_epi16(Q, 2 * sh), q2);
            if (q3) {
                const int hb = 4 * n + sh;
                const __m256i hi = hb >= 2 ? _mm256_srli_epi16(H, hb - 2) : _mm256_slli_epi16(H, 2 - hb);
                w = _mm256_or_si256(w, _mm256_and_si256(hi, b2));
            }
            const __m256i p = _mm256_maddubs_epi16(w, _mm256_loadu_si256((const __m256i *)(x + 128 * n + 32 * sh)));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, _mm256_shuffle_epi8(s16, pick16(2 * sh, 2 * sh + 1))));
        }
    }
    const __m256i im = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)(a + Q8K_BSUMS)), mn16);
    const __m128i sums = hsum2_epi32(isum, im);
    if (q3) {   /* acc += ((is - 4 off) * d) * d8 */
        uint16_t dh;
        memcpy(&dh, blk + 108, 2);
        const int32_t tot = _mm_cvtsi128_si32(sums) - 4 * _mm_extract_epi32(sums, 1);
        const __m128 f = _mm_mul_ss(_mm_cvtsi32_ss(_mm_setzero_ps(), tot), _mm_set_ss(_cvtsh_ss(dh)));
        return _mm_cvtss_f32(_mm_fmadd_ss(f, _mm_set_ss(load_f32(a)), _mm_set_ss(acc)));
    }
    uint16_t dh[2];   /* f = is * d - im * dmin, acc += f * d8 */
    memcpy(dh, blk + 80, 4);
    const __m128 d = _mm_set_ss(_cvtsh_ss(dh[0])), dmin = _mm_set_ss(_cvtsh_ss(dh[1]));
    const __m128 f = _mm_fmsub_ss(_mm_cvtepi32_ps(sums), d, _mm_mul_ss(_mm_cvtepi32_ps(_mm_srli_si128(sums, 4)), dmin));
    return _mm_cvtss_f32(_mm_fmadd_ss(f, _mm_set_ss(load_f32(a)), _mm_set_ss(acc)));
}

/* y[o] for o in [o_lo, o_hi), one activation row: one weight row at a time, blocks in order. */
/* Each block's bytes of the row ROWDOT_PF rows ahead are prefetched as the block is dotted: the hardware
 * prefetcher alone left one thread at 12.6-13.1 GB/s on a Q6_K matrix from DRAM, and 24-25 GB/s on two
 * (`gemm_bench q6_K 2048 16384 avx2 3 cold rows`); with it 17.3-17.7 and 33 GB/s. */
enum { ROWDOT_PF = 2 };
INLINE void rowdot_k(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi, const void *xq,
                     float *y, int kind)
{
    const int64_t nb = n_in / AR_QK_K;
    const size_t bbytes = kind == KT_Q4_K ? sizeof(ar_block_q4_K) : kind == KT_Q5_K ? sizeof(ar_block_q5_K)
                        : kind == KT_Q6_K ? sizeof(ar_block_q6_K) : kind == KT_Q3_K ? sizeof(ar_block_q3_K)
                        : sizeof(ar_block_q2_K);
    const uint8_t *x = xq;
    for (int64_t o = o_lo; o < o_hi; o++) {
        const uint8_t *row = (const uint8_t *)w + (size_t)o * wrb;
        float acc = 0.0f;
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *blk = row + (size_t)b * bbytes, *a = x + (size_t)b * Q8K_BYTES;
            if (o + ROWDOT_PF < o_hi) prefetch_span(blk + ROWDOT_PF * wrb, 0, bbytes);
            acc = kind == KT_Q6_K   ? rowdot_q6_K_block(blk, a, acc)
                : kind == KT_Q3_K || kind == KT_Q2_K ? rowdot_q32_block(blk, a, acc, kind == KT_Q3_K)
                                  : rowdot_q4_K_block(blk, a, acc, kind == KT_Q5_K);
        }
        y[o] = acc;
    }
}

/* ---- Q4_K at M = 1 on the tile layout (decode) ---------------------------------------------------
 * A tile is used once, so staging it in a ktile (64 stores, reloaded by the run) would only cost issue
 * slots: this takes the quants straight from the dword columns, both 8-row halves of a 16-row tile at
 * once so that each broadcast activation group feeds two vpmaddubsw. One sequential weight stream per
 * thread, no transposes and no horizontal sums. The integer sums are exact and the float steps run_k4's,
 * so the results are the row-dot and tile paths' bits (tests/test_gemm.c). */

/* Q4_K tile (both halves) x one Q8_K block a. */
INLINE void m1_q4_K(const uint8_t *tile, const uint8_t *a, __m256 acc[2])
{
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    __m256i sc[2][8], mn[2][8];
    __m256 d[2], dmin[2];
#pragma GCC unroll 2
    for (int hf = 0; hf < 2; hf++) {
        __m256i h[4];
        tile_cols(tile, hf, 0, 4, h);
        d[hf] = half_lanes_to_f32(h[0], 0);
        dmin[hf] = half_lanes_to_f32(h[0], 1);
        k4_scales8(sc[hf], mn[hf], h[1], h[2], h[3]);
    }
    __m256i isum[2] = { _mm256_setzero_si256(), _mm256_setzero_si256() };
    const uint8_t *x = a + Q8K_QS;
#pragma GCC unroll 1
    for (int c = 0; c < 4; c++) {
        __m256i lo[2] = { _mm256_setzero_si256(), _mm256_setzero_si256() }, hi[2] = { lo[0], lo[0] };
        const uint8_t *col = tile + (size_t)(4 + 8 * c) * 64;
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt++) {
            const __m256i xl = bcast4(x + 64 * c + 4 * tt), xh = bcast4(x + 64 * c + 32 + 4 * tt);
#pragma GCC unroll 2
            for (int hf = 0; hf < 2; hf++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(col + 64 * tt + 32 * hf));
                lo[hf] = keep_order(_mm256_add_epi16(lo[hf], _mm256_maddubs_epi16(_mm256_and_si256(v, m4), xl)));
                hi[hf] = keep_order(_mm256_add_epi16(hi[hf], _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi32(v, 4), m4), xh)));
            }
        }
#pragma GCC unroll 2
        for (int hf = 0; hf < 2; hf++)
            isum[hf] = _mm256_add_epi32(isum[hf], _mm256_add_epi32(_mm256_madd_epi16(lo[hf], sc[hf][2 * c]),
                                                                   _mm256_madd_epi16(hi[hf], sc[hf][2 * c + 1])));
    }
    __m256i imin[2] = { _mm256_setzero_si256(), _mm256_setzero_si256() };
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const __m256i bs = bcast4(a + Q8K_BSUMS + 4 * j);
#pragma GCC unroll 2
        for (int hf = 0; hf < 2; hf++) imin[hf] = _mm256_add_epi32(imin[hf], _mm256_madd_epi16(mn[hf][j], bs));
    }
    const __m256 d8 = _mm256_set1_ps(load_f32(a));
#pragma GCC unroll 2
    for (int hf = 0; hf < 2; hf++) {
        const __m256 f = _mm256_fmsub_ps(_mm256_cvtepi32_ps(isum[hf]), d[hf], _mm256_mul_ps(_mm256_cvtepi32_ps(imin[hf]), dmin[hf]));
        acc[hf] = _mm256_fmadd_ps(f, d8, acc[hf]);
    }
}

/* M = 1 over the 16-row tiles holding [o_lo, o_hi): one sequential stream. */
INLINE void m1_tiles(const uint8_t *wb, size_t wrb, int64_t nb, size_t bbytes, int64_t o_lo, int64_t o_hi,
                     const uint8_t *xb, float *y)
{
    const size_t tb = 2 * TW * bbytes;
    for (int64_t g0 = o_lo - o_lo % (2 * TW); g0 < o_hi; g0 += 2 * TW) {
        const uint8_t *tg = wb + (size_t)g0 * wrb;
        __m256 acc[2] = { _mm256_setzero_ps(), _mm256_setzero_ps() };
        for (int64_t b = 0; b < nb; b++) {
            const uint8_t *tile = tg + (size_t)b * tb, *a = xb + (size_t)b * Q8K_BYTES;
            m1_q4_K(tile, a, acc);
        }
#pragma GCC unroll 2
        for (int hf = 0; hf < 2; hf++) {
            const int64_t o = g0 + TW * hf;
            const int lo = o < o_lo ? (int)(o_lo - o) : 0, hi = o_hi - o < TW ? (int)(o_hi - o) : TW;
            if (lo < hi) store_lanes(y + o, acc[hf], lo, hi);
        }
    }
}

/* The K-quant driver: 8-row tiles, activation rows in chunks of MCHUNK with float accumulators in L1, MR rows
 * per register block. tiled: the weights are in gemm.h's 16-row tile layout (Q4_K), read as 8-row halves
 * without transposes (both halves of a tile in one pass measured 5-10 % slower at M = 2..16 than one half per
 * pass, the other half's lines then coming from L1/L2); tiles start at multiples of 8 rows, and lanes outside
 * [o_lo, o_hi) are computed but not stored. M = 1 takes the row-dot path (row layout) or m1_tiles. */
INLINE void gemm_ktiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                        const void *xq, size_t xrb, int M, float *y, int64_t ldy, int kind, int tiled)
{
    const int64_t nb = n_in / AR_QK_K;
    const size_t bbytes = kind == KT_Q4_K ? sizeof(ar_block_q4_K)
                        : kind == KT_Q5_K ? sizeof(ar_block_q5_K) : kind == KT_Q6_K ? sizeof(ar_block_q6_K)
                        : kind == KT_Q3_K ? sizeof(ar_block_q3_K) : sizeof(ar_block_q2_K);
    const uint8_t *wb = w, *xb = xq;
    if (M == 1) {
        if (tiled) m1_tiles(wb, wrb, nb, bbytes, o_lo, o_hi, xb, y);
        else rowdot_k(w, wrb, n_in, o_lo, o_hi, xq, y, kind);
        return;
    }
    const size_t tb = 2 * TW * bbytes;   /* one 16-row tile of the tile layout */
    const uint8_t *tend = wb + (size_t)((o_hi + 2 * TW - 1) / (2 * TW) * (2 * TW)) * wrb;   /* end of the range's tiles */
    ktile t;
    __m256 acc[MCHUNK];
    for (int64_t o0 = tiled ? o_lo - o_lo % TW : o_lo; o0 < o_hi; o0 += TW) {
        const int nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW, lo_lane = o0 < o_lo ? (int)(o_lo - o0) : 0;
        const uint8_t *rows[TW];
        const uint8_t *tg = wb + (size_t)(o0 - o0 % (2 * TW)) * wrb;   /* tile layout: the row group's tiles */
        const int half = (int)(o0 / TW % 2);
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) rows[i] = wb + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int r = 0; r < mc; r++) acc[r] = _mm256_setzero_ps();
            const int slices = (mc + MR - 1) / MR < 4 ? (mc + MR - 1) / MR : 4;
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *p[TW], *nx[TW], *ahead = NULL;
#pragma GCC unroll 8
                for (int i = 0; i < TW; i++) p[i] = rows[i] + (size_t)b * bbytes;   /* row layout (set in both, so never unset) */
                const tsrc src = { p, tiled ? tg + (size_t)b * tb : NULL, half };
                int have_next;
                if (tiled) {   /* a later tile: the group's, then the next group's (contiguous) */
                    ahead = src.t + PF_TILES * tb;
                    have_next = ahead + tb <= tend;
                    if (have_next) prefetch_span(ahead, 0, tb / (size_t)slices);
                } else {
                    have_next = tile_ahead(wb, wrb, o0, o_hi, b, nb, bbytes, PF_TILES, nx);
                    prefetch_slice(have_next, nx, 0, slices, bbytes);
                }
                if (kind == KT_Q4_K) build_q4_K(&t, src);
                else if (kind == KT_Q5_K) build_q5_K(&t, p);
                else if (kind == KT_Q6_K) build_q6_K(&t, p);
                else if (kind == KT_Q3_K) build_q3_K(&t, p);
                else build_q2_K(&t, p);
                for (int r0 = 0, g = 1; r0 < mc; r0 += MR, g++) {
                    const int R = mc - r0 < MR ? mc - r0 : MR;
                    const uint8_t *a[MR];
#pragma GCC unroll 4
                    for (int r = 0; r < MR; r++)
                        a[r] = xb + (size_t)(m0 + r0 + (r < R ? r : 0)) * xrb + (size_t)b * Q8K_BYTES;
                    if (R == 4) run_ktile(&t, a, 4, kind, acc + r0);
                    else if (R == 3) run_ktile(&t, a, 3, kind, acc + r0);
                    else if (R == 2) run_ktile(&t, a, 2, kind, acc + r0);
                    else run_ktile(&t, a, 1, kind, acc + r0);
                    if (!tiled) prefetch_slice(have_next, nx, g, slices, bbytes);
                    else if (have_next && g < slices)
                        prefetch_span(ahead, tb * (size_t)g / (size_t)slices, tb * (size_t)(g + 1) / (size_t)slices);
                }
            }
            for (int r = 0; r < mc; r++) store_lanes(y + (int64_t)(m0 + r) * ldy + o0, acc[r], lo_lane, nv);
        }
    }
}

#define KQUANT_KERNELS(name, kind)                                                                  \
    static void gemm_##name(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,     \
                            const void *xq, size_t xrb, int M, float *y, int64_t ldy)                \
    {                                                                                                \
        gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, kind, 0);                           \
    }
KQUANT_KERNELS(q4_K, KT_Q4_K)
KQUANT_KERNELS(q5_K, KT_Q5_K)
KQUANT_KERNELS(q6_K, KT_Q6_K)
KQUANT_KERNELS(q3_K, KT_Q3_K)
KQUANT_KERNELS(q2_K, KT_Q2_K)

/* The tile-layout entry points (gemm.h): Q4_K and Q6_K, the types of a Q4_K_M file. */
static void gemm_q4_K_tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi, const void *xq,
                            size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, KT_Q4_K, 1);
}


/* ---- IQ4_XS: signed non-linear values, 8 sub-blocks of 32 with signed 6-bit scales ------------ */

/* vpmaddubsw needs an unsigned operand and value+128 would overflow its int16 pairs, so the tile
 * keeps |v| and v: |v| x sign(v)*a, scaled per quad group by vpmaddwd. */
typedef struct {
    __m256i q[64], aq[64];
    __m256i sc[8];   /* ls_j - 32 in both int16 halves */
    __m256 d;
} xstile;

INLINE void build_iq4_xs(xstile *t, const uint8_t *const p[TW])
{
    __m256i h[4];
    load_headers8(p, 0, h); /* h[0] = d | scales_h << 16, h[1] = scales_l */
    t->d = half_lanes_to_f32(h[0], 0);
    const __m256i m4 = _mm256_set1_epi32(15), m2 = _mm256_set1_epi32(3), b32 = _mm256_set1_epi32(32);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++) {
        const __m256i lo = _mm256_and_si256(_mm256_srli_epi32(h[1], 4 * j), m4);
        const __m256i hi = _mm256_and_si256(_mm256_srli_epi32(h[0], 16 + 2 * j), m2);
        t->sc[j] = pair16(_mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), b32));
    }
    const __m256i n4 = _mm256_set1_epi8(0x0F);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ar_iq4nl_values));
    for (int c = 0; c < 4; c++) { /* qs bytes 32c..32c+31 = sub-blocks 2c, 2c+1 */
        __m256i r[8];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) r[i] = _mm256_loadu_si256((const __m256i *)(p[i] + 8 + 32 * c));
        transpose8(r);
#pragma GCC unroll 8
        for (int u = 0; u < 8; u++) {
            const int k = 8 * (2 * c + u / 4) + u % 4;
            const __m256i lo = _mm256_shuffle_epi8(lut, _mm256_and_si256(r[u], n4));
            const __m256i hi = _mm256_shuffle_epi8(lut, _mm256_and_si256(_mm256_srli_epi32(r[u], 4), n4));
            t->q[k] = lo;
            t->q[k + 4] = hi;
            t->aq[k] = _mm256_abs_epi8(lo);
            t->aq[k + 4] = _mm256_abs_epi8(hi);
        }
    }
}

INLINE void run_iq4_xs(const xstile *t, const uint8_t *const a[MR], int R, __m256 *acc)
{
    __m256i isum[MR];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) isum[r] = _mm256_setzero_si256();
#pragma GCC unroll 1
    for (int j = 0; j < 8; j++) {
        const __m256i sc = t->sc[j];
#pragma GCC unroll 8
        for (int tt = 0; tt < 8; tt++) {
            const __m256i w = t->q[8 * j + tt], aw = t->aq[8 * j + tt];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256i x = _mm256_sign_epi8(bcast4(a[r] + Q8K_QS + 32 * j + 4 * tt), w);
                isum[r] = keep_order(_mm256_add_epi32(isum[r], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, x), sc)));
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++)
        acc[r] = _mm256_fmadd_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(isum[r]), t->d),
                                 _mm256_set1_ps(load_f32(a[r])), acc[r]);
}

static void gemm_iq4_xs(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                        const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    const int64_t nb = n_in / AR_QK_K;
    const size_t bbytes = sizeof(ar_block_iq4_xs);
    const uint8_t *wb = w, *xb = xq;
    xstile t;
    __m256 acc[MCHUNK];
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += TW) {
        const int nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW;
        const uint8_t *rows[TW];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) rows[i] = wb + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int r = 0; r < mc; r++) acc[r] = _mm256_setzero_ps();
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *p[TW];
#pragma GCC unroll 8
                for (int i = 0; i < TW; i++) p[i] = rows[i] + (size_t)b * bbytes;
                const uint8_t *nx[TW];
                const int have_next = tile_ahead(wb, wrb, o0, o_hi, b, nb, bbytes, PF_TILES, nx);
                const int slices = (mc + MR - 1) / MR < 4 ? (mc + MR - 1) / MR : 4;
                prefetch_slice(have_next, nx, 0, slices, bbytes);
                build_iq4_xs(&t, p);
                for (int r0 = 0, g = 1; r0 < mc; r0 += MR, g++) {
                    const int R = mc - r0 < MR ? mc - r0 : MR;
                    const uint8_t *a[MR];
#pragma GCC unroll 4
                    for (int r = 0; r < MR; r++)
                        a[r] = xb + (size_t)(m0 + r0 + (r < R ? r : 0)) * xrb + (size_t)b * Q8K_BYTES;
                    if (R == 4) run_iq4_xs(&t, a, 4, acc + r0);
                    else if (R == 3) run_iq4_xs(&t, a, 3, acc + r0);
                    else if (R == 2) run_iq4_xs(&t, a, 2, acc + r0);
                    else run_iq4_xs(&t, a, 1, acc + r0);
                    prefetch_slice(have_next, nx, g, slices, bbytes);
                }
            }
            for (int r = 0; r < mc; r++) store_lanes(y + (int64_t)(m0 + r) * ldy + o0, acc[r], 0, nv);
        }
    }
}

/* ---- 32-element block types with signed weights (Q8_0, Q4_0, IQ4_NL) x Q8_0 ------------------ */

/* Up to QB blocks of 8 weight rows: q[8b + k] lane i = signed quants 4k..4k+3 of block b of row
 * i, aq the same as magnitudes (unsigned), d[b] = block scales. */
enum { QB = 4 };
typedef struct {
    __m256i q[8 * QB], aq[8 * QB];
    __m256 d[QB];
    int nblk;
} q8tile;

INLINE void build_q8_0(q8tile *t, const uint8_t *const p[TW], int nblk)
{
    t->nblk = nblk;
    for (int b = 0; b < nblk; b++) {
        __m256i r[8];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) r[i] = _mm256_loadu_si256((const __m256i *)(p[i] + (size_t)b * 34 + 2));
        transpose8(r);
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            t->q[8 * b + k] = r[k];
            t->aq[8 * b + k] = _mm256_abs_epi8(r[k]);
        }
        t->d[b] = gather_f16(p, (size_t)b * 34);
    }
}

/* Q4_0 / IQ4_NL: 18-byte blocks (d, qs[16]); two blocks per transpose. */
INLINE void build_nibbles32(q8tile *t, const uint8_t *const p[TW], int nblk, int iq4)
{
    t->nblk = nblk;
    const __m256i m4 = _mm256_set1_epi8(0x0F), eight = _mm256_set1_epi8(8);
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ar_iq4nl_values));
    for (int b0 = 0; b0 < nblk; b0 += 2) {
        const int two = b0 + 1 < nblk;
        __m256i r[8];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) {
            const uint8_t *blk = p[i] + (size_t)b0 * 18;
            const __m128i lo = _mm_loadu_si128((const __m128i *)(blk + 2));
            const __m128i hi = two ? _mm_loadu_si128((const __m128i *)(blk + 20)) : _mm_setzero_si128();
            r[i] = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
        }
        transpose8(r);
        for (int bb = 0; bb < 1 + two; bb++) {
#pragma GCC unroll 4
            for (int u = 0; u < 4; u++) {
                const __m256i v = r[4 * bb + u];
                __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi32(v, 4), m4);
                if (iq4) {
                    lo = _mm256_shuffle_epi8(lut, lo);
                    hi = _mm256_shuffle_epi8(lut, hi);
                } else {
                    lo = _mm256_sub_epi8(lo, eight);
                    hi = _mm256_sub_epi8(hi, eight);
                }
                const int b = b0 + bb;
                t->q[8 * b + u] = lo;
                t->q[8 * b + 4 + u] = hi;
                t->aq[8 * b + u] = _mm256_abs_epi8(lo);
                t->aq[8 * b + 4 + u] = _mm256_abs_epi8(hi);
            }
            t->d[b0 + bb] = gather_f16(p, (size_t)(b0 + bb) * 18);
        }
    }
}

INLINE void run_q8(const q8tile *t, const uint8_t *const a[MR], int R, __m256 *acc)
{
    const __m256i ones = _mm256_set1_epi16(1);
    for (int b = 0; b < t->nblk; b++) {
        __m256i s[MR];
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) s[r] = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) {
            const __m256i w = t->q[8 * b + k], aw = t->aq[8 * b + k];
#pragma GCC unroll 4
            for (int r = 0; r < R; r++) {
                const __m256i x = _mm256_sign_epi8(bcast4(a[r] + 34 * b + 2 + 4 * k), w);
                s[r] = keep_order(_mm256_add_epi32(s[r], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, x), ones)));
            }
        }
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            uint16_t h;
            memcpy(&h, a[r] + 34 * b, 2);
            const __m256 dd = _mm256_mul_ps(t->d[b], _mm256_set1_ps(_cvtsh_ss(h)));
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s[r]), dd, acc[r]);
        }
    }
}

enum { Q8T_Q8_0, Q8T_Q4_0, Q8T_IQ4_NL };

/* Q8_0, Q4_0 and IQ4_NL x one activation row (decode), 8 weight rows at a time without the tile
 * transposition: each row's block is dotted with the activation block as it lies, the 8 rows' partial
 * sums are reduced together, and the per-block float steps are run_q8's lane for lane (dd = d_w * d_a,
 * acc = fma(sum, dd, acc), blocks in order): the same bits as the tile path. The block sums are the
 * tile path's integers: Q8_0 and IQ4_NL as |w| x sign(a, w) by vpmaddubsw (exact, as the activation
 * quantizer never writes -128 for a finite block), Q4_0 as the unsigned nibbles u against a less
 * 8 x sum(a) (sum (u - 8) a, the correction from the activation block's record), no sign flips. */
INLINE void rowdot_q8(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi, const void *xq,
                      float *y, int kind)
{
    const int64_t nb = n_in / 32;
    const size_t bbytes = kind == Q8T_Q8_0 ? 34 : 18;
    const uint8_t *x = xq;
    const __m256i ones = _mm256_set1_epi16(1), m4 = _mm256_set1_epi8(0x0F);
    const uint8_t *rec = x + 34 * (size_t)nb;   /* the row's per-block records, after its blocks */
    const __m256i lut = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)ar_iq4nl_values));
    /* the group's rows are one contiguous stretch read column by column: while it runs, the next
     * group's stretch is prefetched in order, a slice per block (so no group starts cold) */
    const size_t slice = ((size_t)TW * wrb + (size_t)nb - 1) / (size_t)nb;
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += TW) {
        const int nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW;
        const uint8_t *rows[TW];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) rows[i] = (const uint8_t *)w + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        const int64_t n_next = o_hi - (o0 + TW) < TW ? o_hi - (o0 + TW) : TW;
        const uint8_t *next = (const uint8_t *)w + (size_t)(o0 + TW) * wrb;
        const size_t next_bytes = n_next > 0 ? (size_t)n_next * wrb : 0;
        __m256 acc = _mm256_setzero_ps();
        for (int64_t b = 0; b < nb; b++) {
            for (size_t q = (size_t)b * slice & ~(size_t)63; q < (size_t)(b + 1) * slice && q < next_bytes; q += 64)
                _mm_prefetch((const char *)(next + q), _MM_HINT_T0);
            const uint8_t *xb = x + 34 * b;
            const __m256i av = _mm256_loadu_si256((const __m256i *)(xb + 2));
            __m256i sv[TW];
            uint16_t h[TW];
#pragma GCC unroll 8
            for (int i = 0; i < TW; i++) {
                const uint8_t *blk = rows[i] + bbytes * b;
                if (kind == Q8T_Q8_0) {
                    const __m256i wv = _mm256_loadu_si256((const __m256i *)(blk + 2));
                    sv[i] = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
                } else {
                    /* elements 0..15: low nibbles of qs, 16..31: high nibbles */
                    const __m128i qs = _mm_loadu_si128((const __m128i *)(blk + 2));
                    const __m256i u = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(qs, 4), qs), m4);
                    if (kind == Q8T_Q4_0) {
                        sv[i] = _mm256_maddubs_epi16(u, av);
                    } else {
                        const __m256i wv = _mm256_shuffle_epi8(lut, u);
                        sv[i] = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(av, wv));
                    }
                }
                sv[i] = _mm256_madd_epi16(sv[i], ones);
                memcpy(&h[i], blk, 2);
            }
            /* lane i of si = the 8 partials of row i */
            const __m256i t0 = _mm256_hadd_epi32(sv[0], sv[1]), t1 = _mm256_hadd_epi32(sv[2], sv[3]);
            const __m256i t2 = _mm256_hadd_epi32(sv[4], sv[5]), t3 = _mm256_hadd_epi32(sv[6], sv[7]);
            const __m256i u0 = _mm256_hadd_epi32(t0, t1), u1 = _mm256_hadd_epi32(t2, t3);
            __m256i si = _mm256_add_epi32(_mm256_permute2x128_si256(u0, u1, 0x20), _mm256_permute2x128_si256(u0, u1, 0x31));
            if (kind == Q8T_Q4_0) {   /* less 8 x sum(a): the block's record holds -128 x sum(a) (gemm.h) */
                int32_t c;
                memcpy(&c, rec + AR_GEMM_Q8_0_REC * (size_t)b + 4, 4);
                si = _mm256_add_epi32(si, _mm256_set1_epi32(c / 16));
            }
            const __m128i dh = _mm_setr_epi16((short)h[0], (short)h[1], (short)h[2], (short)h[3], (short)h[4],
                                              (short)h[5], (short)h[6], (short)h[7]);
            uint16_t ha;
            memcpy(&ha, xb, 2);
            const __m256 dd = _mm256_mul_ps(_mm256_cvtph_ps(dh), _mm256_set1_ps(_cvtsh_ss(ha)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(si), dd, acc);
        }
        store_lanes(y + o0, acc, 0, nv);
    }
}

INLINE void gemm_q8tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                         const void *xq, size_t xrb, int M, float *y, int64_t ldy, int kind)
{
    const int64_t nb = n_in / 32;
    if (M == 1) {
        rowdot_q8(w, wrb, n_in, o_lo, o_hi, xq, y, kind);
        return;
    }
    const size_t bbytes = kind == Q8T_Q8_0 ? 34 : 18;
    const uint8_t *wb = w, *xb = xq;
    q8tile t;
    __m256 acc[MCHUNK];
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += TW) {
        const int nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW;
        const uint8_t *rows[TW];
#pragma GCC unroll 8
        for (int i = 0; i < TW; i++) rows[i] = wb + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int r = 0; r < mc; r++) acc[r] = _mm256_setzero_ps();
            for (int64_t b = 0; b < nb; b += QB) {
                const int nblk = nb - b < QB ? (int)(nb - b) : QB;
                const uint8_t *p[TW];
#pragma GCC unroll 8
                for (int i = 0; i < TW; i++) p[i] = rows[i] + (size_t)b * bbytes;
                const uint8_t *nx[TW];
                const int have_next = tile_ahead(wb, wrb, o0, o_hi, b / QB, (nb + QB - 1) / QB, QB * bbytes, PF_TILES, nx);
                const int slices = (mc + MR - 1) / MR < 4 ? (mc + MR - 1) / MR : 4;
                prefetch_slice(have_next, nx, 0, slices, QB * bbytes);
                if (kind == Q8T_Q8_0) build_q8_0(&t, p, nblk);
                else build_nibbles32(&t, p, nblk, kind == Q8T_IQ4_NL);
                for (int r0 = 0, g = 1; r0 < mc; r0 += MR, g++) {
                    const int R = mc - r0 < MR ? mc - r0 : MR;
                    const uint8_t *a[MR];
#pragma GCC unroll 4
                    for (int r = 0; r < MR; r++)
                        a[r] = xb + (size_t)(m0 + r0 + (r < R ? r : 0)) * xrb + (size_t)b * 34;
                    if (R == 4) run_q8(&t, a, 4, acc + r0);
                    else if (R == 3) run_q8(&t, a, 3, acc + r0);
                    else if (R == 2) run_q8(&t, a, 2, acc + r0);
                    else run_q8(&t, a, 1, acc + r0);
                    prefetch_slice(have_next, nx, g, slices, QB * bbytes);
                }
            }
            for (int r = 0; r < mc; r++) store_lanes(y + (int64_t)(m0 + r) * ldy + o0, acc[r], 0, nv);
        }
    }
}

static void gemm_q8_0(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_q8tiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, Q8T_Q8_0);
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

enum { FW = 4, FR = 2 }; /* weight rows x activation rows per register block */
enum { FK_F32, FK_F16, FK_BF16 };

/* 8 elements of a row of the given kind at element i (n - i >= 8), as floats. */
INLINE __m256 load8(int kind, const uint8_t *row, int64_t i)
{
    if (kind == FK_F32) return _mm256_loadu_ps((const float *)row + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (kind == FK_F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INLINE float elem(int kind, const uint8_t *row, int64_t i)
{
    if (kind == FK_F32) return ((const float *)row)[i];
    uint16_t h;
    memcpy(&h, row + 2 * i, 2);
    if (kind == FK_F16) return _cvtsh_ss(h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

INLINE float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

INLINE void float_block(int kind, const uint8_t *const w[FW], const uint8_t *const x[FR], int R,
                        int64_t n, float out[FW][FR])
{
    __m256 acc[FW][FR];
#pragma GCC unroll 4
    for (int k = 0; k < FW; k++)
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) acc[k][r] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 xv[FR];
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) xv[r] = load8(kind, x[r], i);
#pragma GCC unroll 4
        for (int k = 0; k < FW; k++) {
            const __m256 wv = load8(kind, w[k], i);
#pragma GCC unroll 2
            for (int r = 0; r < R; r++) acc[k][r] = _mm256_fmadd_ps(wv, xv[r], acc[k][r]);
        }
    }
#pragma GCC unroll 4
    for (int k = 0; k < FW; k++)
#pragma GCC unroll 2
        for (int r = 0; r < R; r++) {
            float s = hsum8(acc[k][r]);
            for (int64_t j = i; j < n; j++) s += elem(kind, w[k], j) * elem(kind, x[r], j);
            out[k][r] = s;
        }
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
        for (int r0 = 0; r0 < M; r0 += FR) {
            const int R = M - r0 < FR ? M - r0 : FR;
            const uint8_t *x[FR];
#pragma GCC unroll 2
            for (int r = 0; r < FR; r++) x[r] = xb + (size_t)(r0 + (r < R ? r : 0)) * xrb;
            float out[FW][FR];
            if (R == 2) float_block(kind, wr, x, 2, n_in, out);
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

/* Q8_K activation rows, bit-identical to ar_quantize_row (gemm.h): the first element of largest magnitude
 * sets iscale = -127 / max, quants round half to even (the reference's nearest_int) and clamp at 127. */
int ar_gemm_avx2_q8_K(const float *x, void *y, int64_t nb)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    uint8_t *out = y;
    for (int64_t i = 0; i < nb; i++, x += AR_QK_K, out += Q8K_BYTES) {
        __m256 m = _mm256_setzero_ps();
        for (int c = 0; c < AR_QK_K / 8; c++) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * c)));
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
        const float amax = _mm_cvtss_f32(h);
        if (!(amax > 0.0f)) {   /* zero (or NaN) block: as the reference does for zero */
            memset(out, 0, Q8K_BYTES);
            continue;
        }
        float max = 0.0f;
        for (int c = 0; c < AR_QK_K / 8; c++) {
            const int k = _mm256_movemask_ps(_mm256_cmp_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + 8 * c)),
                                                           _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (k) { max = x[8 * c + __builtin_ctz((unsigned)k)]; break; }
        }
        const float iscale = -127.f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        int16_t bsums[AR_QK_K / 16];
        for (int c = 0; c < AR_QK_K / 16; c++) {
            __m256i q[2];
            for (int h2 = 0; h2 < 2; h2++) {
                const __m256 v = _mm256_round_ps(_mm256_mul_ps(is, _mm256_loadu_ps(x + 16 * c + 8 * h2)),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[h2] = _mm256_min_epi32(_mm256_cvtps_epi32(v), _mm256_set1_epi32(127));
            }
            /* 16 int32 -> 16 int8 in order (the packs interleave the 128-bit lanes; the permute undoes it) */
            const __m256i w16 = _mm256_permute4x64_epi64(_mm256_packs_epi32(q[0], q[1]), 0xD8);
            const __m128i b8 = _mm_packs_epi16(_mm256_castsi256_si128(w16), _mm256_extracti128_si256(w16, 1));
            _mm_storeu_si128((__m128i *)(out + Q8K_QS + 16 * c), b8);
            const __m256i s = _mm256_add_epi32(q[0], q[1]);
            __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4E));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xB1));
            bsums[c] = (int16_t)_mm_cvtsi128_si32(t);
        }
        memcpy(out + Q8K_BSUMS, bsums, sizeof bsums);
        const float d = 1 / iscale;
        memcpy(out, &d, sizeof d);
    }
    return 1;
}

ar_gemm_kernel ar_gemm_avx2_kernel(int wtype)
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

ar_gemm_kernel ar_gemm_avx2_tile_kernel(int wtype)
{
    switch (wtype) {
    case AR_Q4_K: return gemm_q4_K_tiles;
    default:      return NULL;
    }
}

#elif defined(__x86_64__)

ar_gemm_kernel ar_gemm_avx2_tile_kernel(int wtype)
{
    (void)wtype;
    return NULL;
}

int ar_gemm_avx2_q8_K(const float *x, void *y, int64_t nb)
{
    (void)x;
    (void)y;
    (void)nb;
    return 0;
}

ar_gemm_kernel ar_gemm_avx2_kernel(int wtype)
{
    (void)wtype;
    return NULL;
}

#else
typedef int ar_gemm_avx2_unused;
#endif
