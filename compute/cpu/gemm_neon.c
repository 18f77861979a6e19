/* compute/cpu/gemm_neon.c — AArch64 NEON (+dotprod) kernels behind ar_gemm.
 *
 * Same scheme as gemm_avx512.c with 4 weight rows per tile: one block column of 4 rows is
 * unpacked to signed bytes and transposed so that 32-bit lane i holds 4 consecutive quants of
 * weight row i; sdot by element (vdotq_laneq_s32) multiplies it with one 4-byte group of a
 * 16-byte activation load, so 4 instructions cover 16 activations x 4 weight rows. sdot is
 * signed x signed, so Q6_K and the 32-element types need no offset corrections. Float weights
 * use FMA over 4 weight rows x 4 activation rows.
 *
 * Built only for AArch64; the kernels need the dot-product extension at compile time
 * (-march=armv8.2-a+dotprod) and dispatch checks HWCAP_ASIMDDP at run time. */
#if defined(__aarch64__)

#include "compute/cpu/gemm.h"

#if defined(__ARM_NEON) && defined(__ARM_FEATURE_DOTPROD)

#include <arm_neon.h>
#include <string.h>

#include "format/quant.h"

#define INLINE static inline __attribute__((always_inline))

enum { TW = 4,         /* weight rows per tile (lanes) */
       MCHUNK = 64,    /* activation rows per accumulator pass */
       MR = 4 };       /* activation rows per register block */

INLINE float load_f32(const void *p) { float v; memcpy(&v, p, 4); return v; }

/* 4x4 transpose of 32-bit elements: r[i] = row i in, column i out. */
INLINE void transpose4(int32x4_t r[4])
{
    const int32x4_t t0 = vtrn1q_s32(r[0], r[1]), t1 = vtrn2q_s32(r[0], r[1]);
    const int32x4_t t2 = vtrn1q_s32(r[2], r[3]), t3 = vtrn2q_s32(r[2], r[3]);
    r[0] = vreinterpretq_s32_s64(vtrn1q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2)));
    r[1] = vreinterpretq_s32_s64(vtrn1q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)));
    r[2] = vreinterpretq_s32_s64(vtrn2q_s64(vreinterpretq_s64_s32(t0), vreinterpretq_s64_s32(t2)));
    r[3] = vreinterpretq_s32_s64(vtrn2q_s64(vreinterpretq_s64_s32(t1), vreinterpretq_s64_s32(t3)));
}

/* 16 bytes at p[i] + off of the 4 rows, transposed: out[c] lane i = dword c of row i. */
INLINE void load4x16(const uint8_t *const p[TW], size_t off, int32x4_t out[4])
{
    for (int i = 0; i < TW; i++) out[i] = vreinterpretq_s32_u8(vld1q_u8(p[i] + off));
    transpose4(out);
}

/* F16 in the low (hi=0) or high (hi=1) half of each 32-bit lane -> 4 floats. */
INLINE float32x4_t half_lanes_to_f32(int32x4_t v, int hi)
{
    uint32x4_t u = vreinterpretq_u32_s32(v);
    if (hi) u = vshrq_n_u32(u, 16);
    return vcvt_f32_f16(vreinterpret_f16_u16(vmovn_u32(u)));
}

INLINE float32x4_t gather_f16(const uint8_t *const p[TW], size_t off)
{
    uint16_t h[TW];
    for (int i = 0; i < TW; i++) memcpy(&h[i], p[i] + off, 2);
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}

/* An F16 scalar at p, broadcast to 4 floats. */
INLINE float32x4_t dup_f16(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h)));
}

INLINE void store_rows(float *y, float32x4_t acc, int nv)
{
    if (nv == TW) {
        vst1q_f32(y, acc);
    } else {
        float tmp[TW];
        vst1q_f32(tmp, acc);
        for (int i = 0; i < nv; i++) y[i] = tmp[i];
    }
}

/* ---- K-quant tiles (Q4_K, Q5_K, Q6_K) -------------------------------------------------------- */

/* q[k] lane i = signed quants 4k..4k+3 of row i; sc[j] sub-block scales; mn[j] Q4_K/Q5_K mins. */
typedef struct {
    int8x16_t q[64];
    int32x4_t sc[16];
    int32x4_t mn[8];
    int32x4_t mins[16];   /* Q2_K: the min of each 16-element sub-block */
    float32x4_t d, dmin;
} ktile;

INLINE void k4_scales4(ktile *t, int32x4_t v0, int32x4_t v1, int32x4_t v2)
{
    const uint32x4_t s0 = vreinterpretq_u32_s32(v0), s1 = vreinterpretq_u32_s32(v1), s2 = vreinterpretq_u32_s32(v2);
    const uint32x4_t m6 = vdupq_n_u32(63), m4 = vdupq_n_u32(15), m2 = vdupq_n_u32(3);
    for (int j = 0; j < 4; j++) {
        const int32x4_t sh = vdupq_n_s32(-8 * j), sh6 = vdupq_n_s32(-(8 * j + 6)), sh4 = vdupq_n_s32(-(8 * j + 4));
        const uint32x4_t sc = vandq_u32(vshlq_u32(s0, sh), m6);
        const uint32x4_t mn = vandq_u32(vshlq_u32(s1, sh), m6);
        const uint32x4_t sch = vorrq_u32(vandq_u32(vshlq_u32(s2, sh), m4), vshlq_n_u32(vandq_u32(vshlq_u32(s0, sh6), m2), 4));
        const uint32x4_t mnh = vorrq_u32(vandq_u32(vshlq_u32(s2, sh4), m4), vshlq_n_u32(vandq_u32(vshlq_u32(s1, sh6), m2), 4));
        t->sc[j] = vreinterpretq_s32_u32(sc);
        t->sc[j + 4] = vreinterpretq_s32_u32(sch);
        t->mn[j] = vreinterpretq_s32_u32(mn);
        t->mn[j + 4] = vreinterpretq_s32_u32(mnh);
    }
}

INLINE void build_q4_K(ktile *t, const uint8_t *const p[TW])
{
    int32x4_t h[4];
    load4x16(p, 0, h);
    t->d = half_lanes_to_f32(h[0], 0);
    t->dmin = half_lanes_to_f32(h[0], 1);
    k4_scales4(t, h[1], h[2], h[3]);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int v = 0; v < 8; v++) { /* qs bytes 16v..16v+15: chunk c = v/2, dwords 4(v%2).. */
        int32x4_t r[4];
        load4x16(p, 16 + 16 * (size_t)v, r);
        const int c = v / 2;
        for (int cc = 0; cc < 4; cc++) {
            const int tt = 4 * (v % 2) + cc;
            const uint8x16_t b = vreinterpretq_u8_s32(r[cc]);
            t->q[16 * c + tt] = vreinterpretq_s8_u8(vandq_u8(b, m4));
            t->q[16 * c + 8 + tt] = vreinterpretq_s8_u8(vshrq_n_u8(b, 4));
        }
    }
}

INLINE void build_q5_K(ktile *t, const uint8_t *const p[TW])
{
    int32x4_t h[4];
    load4x16(p, 0, h);
    t->d = half_lanes_to_f32(h[0], 0);
    t->dmin = half_lanes_to_f32(h[0], 1);
    k4_scales4(t, h[1], h[2], h[3]);
    int32x4_t qh[8]; /* qh[u] lane i = qh bytes 4u..4u+3 of row i */
    load4x16(p, 16, qh);
    load4x16(p, 32, qh + 4);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), one = vdupq_n_u8(1);
    for (int v = 0; v < 8; v++) {
        int32x4_t r[4];
        load4x16(p, 48 + 16 * (size_t)v, r);
        const int c = v / 2;
        for (int cc = 0; cc < 4; cc++) {
            const int tt = 4 * (v % 2) + cc;
            const uint8x16_t b = vreinterpretq_u8_s32(r[cc]), hb = vreinterpretq_u8_s32(qh[tt]);
            const uint8x16_t lo5 = vshlq_n_u8(vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)(-2 * c))), one), 4);
            const uint8x16_t hi5 = vshlq_n_u8(vandq_u8(vshlq_u8(hb, vdupq_n_s8((int8_t)(-2 * c - 1))), one), 4);
            t->q[16 * c + tt] = vreinterpretq_s8_u8(vorrq_u8(vandq_u8(b, m4), lo5));
            t->q[16 * c + 8 + tt] = vreinterpretq_s8_u8(vorrq_u8(vshrq_n_u8(b, 4), hi5));
        }
    }
}

INLINE void build_q6_K(ktile *t, const uint8_t *const p[TW])
{
    int32x4_t h[4];
    load4x16(p, 192, h); /* scales[0..15] as int8 */
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 4; k++) {
            const int32x4_t v = vshlq_s32(h[c], vdupq_n_s32(24 - 8 * k));
            t->sc[4 * c + k] = vshrq_n_s32(v, 24);
        }
    t->d = gather_f16(p, 208);
    const uint8x16_t m4 = vdupq_n_u8(0x0F), m2 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    for (int half = 0; half < 2; half++) {
        int32x4_t qh[8];
        load4x16(p, 128 + 32 * (size_t)half, qh);
        load4x16(p, 128 + 32 * (size_t)half + 16, qh + 4);
        for (int v = 0; v < 2; v++) { /* ql bytes 16v.. (a) and 32 + 16v.. (b) of this half */
            int32x4_t ra[4], rb[4];
            load4x16(p, 64 * (size_t)half + 16 * (size_t)v, ra);
            load4x16(p, 64 * (size_t)half + 32 + 16 * (size_t)v, rb);
            for (int cc = 0; cc < 4; cc++) {
                const int tt = 4 * v + cc;
                const uint8x16_t x = vreinterpretq_u8_s32(ra[cc]), y = vreinterpretq_u8_s32(rb[cc]);
                const uint8x16_t hb = vreinterpretq_u8_s32(qh[tt]);
                const int k0 = 32 * half + tt;
                const uint8x16_t e0 = vorrq_u8(vandq_u8(x, m4), vshlq_n_u8(vandq_u8(hb, m2), 4));
                const uint8x16_t e1 = vorrq_u8(vandq_u8(y, m4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 2), m2), 4));
                const uint8x16_t e2 = vorrq_u8(vshrq_n_u8(x, 4), vshlq_n_u8(vandq_u8(vshrq_n_u8(hb, 4), m2), 4));
                const uint8x16_t e3 = vorrq_u8(vshrq_n_u8(y, 4), vshlq_n_u8(vshrq_n_u8(hb, 6), 4));
                t->q[k0] = vsubq_s8(vreinterpretq_s8_u8(e0), off);
                t->q[k0 + 8] = vsubq_s8(vreinterpretq_s8_u8(e1), off);
                t->q[k0 + 16] = vsubq_s8(vreinterpretq_s8_u8(e2), off);
                t->q[k0 + 24] = vsubq_s8(vreinterpretq_s8_u8(e3), off);
            }
        }
    }
}

/* Q3_K (110-byte blocks: hmask 32, qs 64, scales 12, d): element 128n + 32s + l (l < 32) is
 * (qs[32n + l] >> 2s & 3) | (hmask[l] >> (4n + s) & 1) << 2, minus 4, signed here; quad 32n + 8s + tt from
 * qs dword 8n + tt and hmask dword tt. sc[j] = the 6-bit scale j - 32 (gemm_avx512.c's build_q3_K). */
INLINE void build_q3_K(ktile *t, const uint8_t *const p[TW])
{
    int32x4_t h[4];
    load4x16(p, 92, h);   /* h[1..3] = scale bytes 0-3, 4-7, 8-11 (16 bytes ending inside the block) */
    const uint32x4_t a0 = vreinterpretq_u32_s32(h[1]), a1 = vreinterpretq_u32_s32(h[2]), a2 = vreinterpretq_u32_s32(h[3]);
    const uint32x4_t m4 = vdupq_n_u32(0x0F0F0F0F), m2 = vdupq_n_u32(0x03030303);
    uint32x4_t pk[4];   /* byte k of pk[c] = the 6-bit scale 4c + k */
    pk[0] = vorrq_u32(vandq_u32(a0, m4), vshlq_n_u32(vandq_u32(a2, m2), 4));
    pk[1] = vorrq_u32(vandq_u32(a1, m4), vshlq_n_u32(vandq_u32(vshrq_n_u32(a2, 2), m2), 4));
    pk[2] = vorrq_u32(vandq_u32(vshrq_n_u32(a0, 4), m4), vshlq_n_u32(vandq_u32(vshrq_n_u32(a2, 4), m2), 4));
    pk[3] = vorrq_u32(vandq_u32(vshrq_n_u32(a1, 4), m4), vshlq_n_u32(vandq_u32(vshrq_n_u32(a2, 6), m2), 4));
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 4; k++) {
            const uint32x4_t v = vandq_u32(vshlq_u32(pk[c], vdupq_n_s32(-8 * k)), vdupq_n_u32(0xFF));
            t->sc[4 * c + k] = vsubq_s32(vreinterpretq_s32_u32(v), vdupq_n_s32(32));
        }
    t->d = gather_f16(p, 108);
    int32x4_t hm[8];
    load4x16(p, 0, hm);
    load4x16(p, 16, hm + 4);
    const uint8x16_t q2 = vdupq_n_u8(3), b2 = vdupq_n_u8(4);
    const int8x16_t off = vdupq_n_s8(4);
    for (int n = 0; n < 2; n++) {
        int32x4_t qs[8];
        load4x16(p, 32 + 32 * (size_t)n, qs);
        load4x16(p, 48 + 32 * (size_t)n, qs + 4);
        for (int sh = 0; sh < 4; sh++) {
            const int hb = 4 * n + sh;   /* the hmask bit, moved to bit 2 */
            for (int tt = 0; tt < 8; tt++) {
                const uint8x16_t lo = vandq_u8(vshlq_u8(vreinterpretq_u8_s32(qs[tt]), vdupq_n_s8((int8_t)(-2 * sh))), q2);
                const uint8x16_t hi = vandq_u8(vshlq_u8(vreinterpretq_u8_s32(hm[tt]), vdupq_n_s8((int8_t)(2 - hb))), b2);
                t->q[32 * n + 8 * sh + tt] = vsubq_s8(vreinterpretq_s8_u8(vorrq_u8(lo, hi)), off);
            }
        }
    }
}

/* Q2_K (84-byte blocks: scales 16 (scale | min << 4), qs 64, d, dmin): element 128n + 32s + l is
 * qs[32n + l] >> 2s & 3 (quad 32n + 8s + tt from qs dword 8n + tt), of sub-block 8n + 2s + l / 16, value
 * d sc u - dmin m. */
INLINE void build_q2_K(ktile *t, const uint8_t *const p[TW])
{
    int32x4_t h[4], dd[4];
    load4x16(p, 0, h);
    load4x16(p, 68, dd);   /* dd[3] = d | dmin << 16 */
    t->d = half_lanes_to_f32(dd[3], 0);
    t->dmin = half_lanes_to_f32(dd[3], 1);
    for (int c = 0; c < 4; c++)
        for (int k = 0; k < 4; k++) {
            const uint32x4_t v = vshlq_u32(vreinterpretq_u32_s32(h[c]), vdupq_n_s32(-8 * k));
            t->sc[4 * c + k] = vreinterpretq_s32_u32(vandq_u32(v, vdupq_n_u32(15)));
            t->mins[4 * c + k] = vreinterpretq_s32_u32(vandq_u32(vshrq_n_u32(v, 4), vdupq_n_u32(15)));
        }
    const uint8x16_t q2 = vdupq_n_u8(3);
    for (int n = 0; n < 2; n++) {
        int32x4_t qs[8];
        load4x16(p, 16 + 32 * (size_t)n, qs);
        load4x16(p, 32 + 32 * (size_t)n, qs + 4);
        for (int sh = 0; sh < 4; sh++)
            for (int tt = 0; tt < 8; tt++)
                t->q[32 * n + 8 * sh + tt] =
                    vreinterpretq_s8_u8(vandq_u8(vshlq_u8(vreinterpretq_u8_s32(qs[tt]), vdupq_n_s8((int8_t)(-2 * sh))), q2));
    }
}

enum { Q8K_QS = 4, Q8K_BSUMS = 260, Q8K_BYTES = 292 };

/* Four sdot by element: s += q[0..3] . the 4 groups of x (16 activations). */
#define DOT4(s0, s1, q, x)                                                                   \
    do {                                                                                     \
        s0 = vdotq_laneq_s32(s0, (q)[0], x, 0);                                              \
        s1 = vdotq_laneq_s32(s1, (q)[1], x, 1);                                              \
        s0 = vdotq_laneq_s32(s0, (q)[2], x, 2);                                              \
        s1 = vdotq_laneq_s32(s1, (q)[3], x, 3);                                              \
    } while (0)

INLINE void run_k4(const ktile *t, const uint8_t *const a[MR], int R, float32x4_t *acc)
{
    for (int r = 0; r < R; r++) {
        const int8_t *x = (const int8_t *)(a[r] + Q8K_QS);
        int32x4_t isum = vdupq_n_s32(0);
        for (int j = 0; j < 8; j++) {
            int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
            const int8x16_t x0 = vld1q_s8(x + 32 * j), x1 = vld1q_s8(x + 32 * j + 16);
            DOT4(s0, s1, t->q + 8 * j, x0);
            DOT4(s0, s1, t->q + 8 * j + 4, x1);
            isum = vmlaq_s32(isum, vaddq_s32(s0, s1), t->sc[j]);
        }
        const int16_t *bs = (const int16_t *)(const void *)(a[r] + Q8K_BSUMS);
        const int16x8_t pairs = vpaddq_s16(vld1q_s16(bs), vld1q_s16(bs + 8)); /* bsums 2j + 2j+1 */
        const int32x4_t plo = vmovl_s16(vget_low_s16(pairs)), phi = vmovl_high_s16(pairs);
        int32x4_t imin = vmulq_laneq_s32(t->mn[0], plo, 0);
        imin = vmlaq_laneq_s32(imin, t->mn[1], plo, 1);
        imin = vmlaq_laneq_s32(imin, t->mn[2], plo, 2);
        imin = vmlaq_laneq_s32(imin, t->mn[3], plo, 3);
        imin = vmlaq_laneq_s32(imin, t->mn[4], phi, 0);
        imin = vmlaq_laneq_s32(imin, t->mn[5], phi, 1);
        imin = vmlaq_laneq_s32(imin, t->mn[6], phi, 2);
        imin = vmlaq_laneq_s32(imin, t->mn[7], phi, 3);
        const float32x4_t f = vsubq_f32(vmulq_f32(vcvtq_f32_s32(isum), t->d), vmulq_f32(vcvtq_f32_s32(imin), t->dmin));
        acc[r] = vfmaq_n_f32(acc[r], f, load_f32(a[r]));
    }
}

/* Signed tiles without mins (Q6_K: QS = 4 quads per sub-block, IQ4_XS: QS = 8). */
INLINE void run_signed(const ktile *t, const uint8_t *const a[MR], int R, int QS, float32x4_t *acc)
{
    for (int r = 0; r < R; r++) {
        const int8_t *x = (const int8_t *)(a[r] + Q8K_QS);
        int32x4_t isum = vdupq_n_s32(0);
        for (int j = 0; j < 64 / QS; j++) {
            int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
            for (int g = 0; g < QS; g += 4) DOT4(s0, s1, t->q + QS * j + g, vld1q_s8(x + 4 * (QS * j + g)));
            isum = vmlaq_s32(isum, vaddq_s32(s0, s1), t->sc[j]);
        }
        acc[r] = vfmaq_n_f32(acc[r], vmulq_f32(vcvtq_f32_s32(isum), t->d), load_f32(a[r]));
    }
}

/* Q2_K: the 16 sub-blocks of 16 as run_signed, and the mins against the 16 bsums, scaled by dmin. */
INLINE void run_q2(const ktile *t, const uint8_t *const a[MR], int R, float32x4_t *acc)
{
    for (int r = 0; r < R; r++) {
        const int8_t *x = (const int8_t *)(a[r] + Q8K_QS);
        int32x4_t isum = vdupq_n_s32(0), imin = vdupq_n_s32(0);
        for (int j = 0; j < 16; j++) {
            int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
            DOT4(s0, s1, t->q + 4 * j, vld1q_s8(x + 16 * j));
            isum = vmlaq_s32(isum, vaddq_s32(s0, s1), t->sc[j]);
        }
        int16_t bs[16];
        memcpy(bs, a[r] + Q8K_BSUMS, sizeof bs);
        for (int j = 0; j < 16; j++) imin = vmlaq_n_s32(imin, t->mins[j], bs[j]);
        const float32x4_t f = vsubq_f32(vmulq_f32(vcvtq_f32_s32(isum), t->d), vmulq_f32(vcvtq_f32_s32(imin), t->dmin));
        acc[r] = vfmaq_n_f32(acc[r], f, load_f32(a[r]));
    }
}

/* IQ4_XS: 136-byte blocks: d, scales_h, scales_l[4], qs[128]; sub-block j (32) has scale
 * ls_j - 32 and nibbles qs[16j..16j+15] (low: elements 0..15, high: 16..31). */
INLINE void build_iq4_xs(ktile *t, const uint8_t *const p[TW])
{
    int32x4_t h[4];
    load4x16(p, 0, h); /* h[0] = d | scales_h << 16, h[1] = scales_l */
    t->d = half_lanes_to_f32(h[0], 0);
    const uint32x4_t u0 = vreinterpretq_u32_s32(h[0]), u1 = vreinterpretq_u32_s32(h[1]);
    for (int j = 0; j < 8; j++) {
        const uint32x4_t lo = vandq_u32(vshlq_u32(u1, vdupq_n_s32(-4 * j)), vdupq_n_u32(15));
        const uint32x4_t hi = vandq_u32(vshlq_u32(u0, vdupq_n_s32(-(16 + 2 * j))), vdupq_n_u32(3));
        t->sc[j] = vsubq_s32(vreinterpretq_s32_u32(vorrq_u32(lo, vshlq_n_u32(hi, 4))), vdupq_n_s32(32));
    }
    const int8x16_t lut = vld1q_s8(ar_iq4nl_values);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    for (int v = 0; v < 8; v++) { /* qs bytes 16v..16v+15 = sub-block v */
        int32x4_t r[4];
        load4x16(p, 8 + 16 * (size_t)v, r);
        for (int u = 0; u < 4; u++) {
            const uint8x16_t b = vreinterpretq_u8_s32(r[u]);
            t->q[8 * v + u] = vqtbl1q_s8(lut, vandq_u8(b, m4));
            t->q[8 * v + 4 + u] = vqtbl1q_s8(lut, vshrq_n_u8(b, 4));
        }
    }
}

enum { KT_Q4_K, KT_Q5_K, KT_Q6_K, KT_IQ4_XS, KT_Q3_K, KT_Q2_K };

static void gemm_ktiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                        const void *xq, size_t xrb, int M, float *y, int64_t ldy, int kind)
{
    const int64_t nb = n_in / AR_QK_K;
    const size_t bbytes = kind == KT_Q4_K ? sizeof(ar_block_q4_K) : kind == KT_Q5_K ? sizeof(ar_block_q5_K)
                        : kind == KT_Q6_K ? sizeof(ar_block_q6_K) : kind == KT_Q3_K ? sizeof(ar_block_q3_K)
                        : kind == KT_Q2_K ? sizeof(ar_block_q2_K) : sizeof(ar_block_iq4_xs);
    const uint8_t *wb = w, *xb = xq;
    ktile t;
    float32x4_t acc[MCHUNK];
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += TW) {
        const int nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW;
        const uint8_t *rows[TW];
        for (int i = 0; i < TW; i++) rows[i] = wb + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int r = 0; r < mc; r++) acc[r] = vdupq_n_f32(0.0f);
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *p[TW];
                for (int i = 0; i < TW; i++) p[i] = rows[i] + (size_t)b * bbytes;
                if (kind == KT_Q4_K) build_q4_K(&t, p);
                else if (kind == KT_Q5_K) build_q5_K(&t, p);
                else if (kind == KT_Q6_K) build_q6_K(&t, p);
                else if (kind == KT_Q3_K) build_q3_K(&t, p);
                else if (kind == KT_Q2_K) build_q2_K(&t, p);
                else build_iq4_xs(&t, p);
                for (int r0 = 0; r0 < mc; r0 += MR) {
                    const int R = mc - r0 < MR ? mc - r0 : MR;
                    const uint8_t *a[MR];
                    for (int r = 0; r < MR; r++)
                        a[r] = xb + (size_t)(m0 + r0 + (r < R ? r : 0)) * xrb + (size_t)b * Q8K_BYTES;
                    if (kind == KT_Q6_K || kind == KT_Q3_K) run_signed(&t, a, R, 4, acc + r0);
                    else if (kind == KT_Q2_K) run_q2(&t, a, R, acc + r0);
                    else if (kind == KT_IQ4_XS) run_signed(&t, a, R, 8, acc + r0);
                    else run_k4(&t, a, R, acc + r0);
                }
            }
            for (int r = 0; r < mc; r++) store_rows(y + (int64_t)(m0 + r) * ldy + o0, acc[r], nv);
        }
    }
}

static void gemm_q4_K(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, KT_Q4_K);
}

static void gemm_q5_K(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, KT_Q5_K);
}

static void gemm_q6_K(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, KT_Q6_K);
}

static void gemm_iq4_xs(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                        const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, KT_IQ4_XS);
}

static void gemm_q3_K(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, KT_Q3_K);
}

static void gemm_q2_K(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                      const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    gemm_ktiles(w, wrb, n_in, o_lo, o_hi, xq, xrb, M, y, ldy, KT_Q2_K);
}

/* ---- 32-element block types (Q8_0, Q4_0, IQ4_NL) x Q8_0 ------------------------------------- */

typedef struct {
    int8x16_t q[8];
    float32x4_t d;
} q8tile;

enum { Q8T_Q8_0, Q8T_Q4_0, Q8T_IQ4_NL };

INLINE void build_q8(q8tile *t, const uint8_t *const p[TW], int kind)
{
    if (kind == Q8T_Q8_0) {
        int32x4_t r[4];
        load4x16(p, 2, r);
        for (int k = 0; k < 4; k++) t->q[k] = vreinterpretq_s8_s32(r[k]);
        load4x16(p, 18, r);
        for (int k = 0; k < 4; k++) t->q[4 + k] = vreinterpretq_s8_s32(r[k]);
        t->d = gather_f16(p, 0);
        return;
    }
    int32x4_t r[4];
    load4x16(p, 2, r);
    const uint8x16_t m4 = vdupq_n_u8(0x0F);
    const int8x16_t lut = vld1q_s8(ar_iq4nl_values), eight = vdupq_n_s8(8);
    for (int u = 0; u < 4; u++) {
        const uint8x16_t v = vreinterpretq_u8_s32(r[u]);
        const uint8x16_t lo = vandq_u8(v, m4), hi = vshrq_n_u8(v, 4);
        if (kind == Q8T_IQ4_NL) {
            t->q[u] = vqtbl1q_s8(lut, lo);
            t->q[4 + u] = vqtbl1q_s8(lut, hi);
        } else {
            t->q[u] = vsubq_s8(vreinterpretq_s8_u8(lo), eight);
            t->q[4 + u] = vsubq_s8(vreinterpretq_s8_u8(hi), eight);
        }
    }
    t->d = gather_f16(p, 0);
}

static void gemm_q8tiles(const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                         const void *xq, size_t xrb, int M, float *y, int64_t ldy, int kind)
{
    const int64_t nb = n_in / 32;
    const size_t bbytes = kind == Q8T_Q8_0 ? 34 : 18;
    const uint8_t *wb = w, *xb = xq;
    q8tile t;
    float32x4_t acc[MCHUNK];
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += TW) {
        const int nv = o_hi - o0 < TW ? (int)(o_hi - o0) : TW;
        const uint8_t *rows[TW];
        for (int i = 0; i < TW; i++) rows[i] = wb + (size_t)(o0 + (i < nv ? i : nv - 1)) * wrb;
        for (int m0 = 0; m0 < M; m0 += MCHUNK) {
            const int mc = M - m0 < MCHUNK ? M - m0 : MCHUNK;
            for (int r = 0; r < mc; r++) acc[r] = vdupq_n_f32(0.0f);
            for (int64_t b = 0; b < nb; b++) {
                const uint8_t *p[TW];
                for (int i = 0; i < TW; i++) p[i] = rows[i] + (size_t)b * bbytes;
                build_q8(&t, p, kind);
                for (int r = 0; r < mc; r++) {
                    const uint8_t *a = xb + (size_t)(m0 + r) * xrb + (size_t)b * 34;
                    int32x4_t s0 = vdupq_n_s32(0), s1 = vdupq_n_s32(0);
                    DOT4(s0, s1, t.q, vld1q_s8((const int8_t *)(a + 2)));
                    DOT4(s0, s1, t.q + 4, vld1q_s8((const int8_t *)(a + 18)));
                    acc[r] = vfmaq_f32(acc[r], vcvtq_f32_s32(vaddq_s32(s0, s1)), vmulq_f32(t.d, dup_f16(a)));
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

enum { FW = 4 };
enum { FK_F32, FK_F16, FK_BF16 };

INLINE float32x4_t load4f(int kind, const uint8_t *row, int64_t i)
{
    if (kind == FK_F32) return vld1q_f32((const float *)(const void *)row + i);
    const uint16x4_t h = vld1_u16((const uint16_t *)(const void *)row + i);
    if (kind == FK_F16) return vcvt_f32_f16(vreinterpret_f16_u16(h));
    return vreinterpretq_f32_u32(vshll_n_u16(h, 16));
}

INLINE float elem(int kind, const uint8_t *row, int64_t i)
{
    if (kind == FK_F32) return load_f32(row + 4 * i);
    uint16_t h;
    memcpy(&h, row + 2 * i, 2);
    if (kind == FK_F16) return vgetq_lane_f32(vcvt_f32_f16(vreinterpret_f16_u16(vdup_n_u16(h))), 0);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void float_block(int kind, const uint8_t *const w[FW], const uint8_t *const x[MR], int R,
                        int64_t n, float out[FW][MR])
{
    float32x4_t acc[FW][MR];
    for (int k = 0; k < FW; k++)
        for (int r = 0; r < MR; r++) acc[k][r] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t wv[FW];
        for (int k = 0; k < FW; k++) wv[k] = load4f(kind, w[k], i);
        for (int r = 0; r < R; r++) {
            const float32x4_t xv = load4f(kind, x[r], i);
            for (int k = 0; k < FW; k++) acc[k][r] = vfmaq_f32(acc[k][r], wv[k], xv);
        }
    }
    for (int k = 0; k < FW; k++)
        for (int r = 0; r < R; r++) {
            float s = vaddvq_f32(acc[k][r]);
            for (int64_t j = i; j < n; j++) s += elem(kind, w[k], j) * elem(kind, x[r], j);
            out[k][r] = s;
        }
}

static void gemm_float(int kind, const void *w, size_t wrb, int64_t n_in, int64_t o_lo, int64_t o_hi,
                       const void *xq, size_t xrb, int M, float *y, int64_t ldy)
{
    const uint8_t *wb = w, *xb = xq;
    for (int64_t o0 = o_lo; o0 < o_hi; o0 += FW) {
        const int nv = o_hi - o0 < FW ? (int)(o_hi - o0) : FW;
        const uint8_t *wr[FW];
        for (int k = 0; k < FW; k++) wr[k] = wb + (size_t)(o0 + (k < nv ? k : nv - 1)) * wrb;
        for (int r0 = 0; r0 < M; r0 += MR) {
            const int R = M - r0 < MR ? M - r0 : MR;
            const uint8_t *x[MR];
            for (int r = 0; r < MR; r++) x[r] = xb + (size_t)(r0 + (r < R ? r : 0)) * xrb;
            float out[FW][MR];
            float_block(kind, wr, x, R, n_in, out);
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

ar_gemm_kernel ar_gemm_neon_kernel(int wtype)
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

#else /* no dotprod at compile time: the scalar reference is used */

ar_gemm_kernel ar_gemm_neon_kernel(int wtype)
{
    (void)wtype;
    return NULL;
}

#endif
#else
typedef int ar_gemm_neon_unused;
#endif
