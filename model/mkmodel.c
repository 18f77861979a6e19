/* model/mkmodel.c — see mkmodel.h. Synthetic qwen35 GGUFs: presets, metadata, the tokenizer
 * (copied, padded or cut down from a vocab GGUF) and seeded random tensors streamed to disk.
 *
 * Data flow: mkmodel_write() validates the shape, builds the tokenizer keys from the vocab
 * source (kept open until the file is written, since string keys point into it), plans one
 * `tspec` per tensor (name, shape, type, value distribution, seed), registers each with the GGUF
 * writer's fill callback and writes. The callback splits a tensor into chunks of rows and runs the
 * rows of a chunk on the thread pool. Row r of tensor T draws from a generator seeded by
 * hash(seed, T's name) and r alone, so the bytes do not depend on threads or tensor order.
 *
 * Value scales (spec oracle.md §3.3): 2-D projections ~ N(0, 1/fan_in) so every block's output is
 * O(1) and the residual stream grows only like sqrt(layers); the LM head has std 4/sqrt(n_embd)
 * (logits std ~4: top-1 p ~0.2 on a 4k vocab); norms are effective multipliers near 1; ssm_a is
 * -exp(U(0, ln 16)) (negative, as the converter stores it); ssm_dt.bias ~ U(-3, 0). */
#include "model/mkmodel.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/half.h"
#include "base/log.h"
#include "base/timer.h"
#include "format/gguf.h"
#include "format/quant.h"

/* ---- random numbers ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct { uint64_t s; } rng;   /* splitmix64 */

static inline uint64_t rng_next(rng *r)
{
    r->s += 0x9e3779b97f4a7c15ULL;
    return mix64(r->s);
}

static uint64_t name_seed(const char *name, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return mix64(h ^ mix64(seed + 0x632be59bd9b4e019ULL));
}

static rng row_rng(uint64_t tensor_seed, int64_t row)
{
    rng r = { mix64(tensor_seed + (uint64_t)row * 0xd1b54a32d192ed03ULL) };
    return r;
}

/* Approximately standard normal: sum of four 16-bit uniforms (Irwin-Hall), centred and scaled. */
static inline float rng_normal(rng *r)
{
    uint64_t x = rng_next(r);
    uint32_t s = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) + (uint32_t)((x >> 32) & 0xffff) +
                 (uint32_t)(x >> 48);
    return ((float)s - 131070.0f) * (1.7320508f / 65536.0f);
}

static inline float rng_uniform(rng *r) { return (float)(rng_next(r) >> 40) * (1.0f / 16777216.0f); }

/* ---- presets and validation ---------------------------------------------------------------- */

int mkmodel_preset(mkmodel_params *p, const char *preset, ar_error *err)
{
    memset(p, 0, sizeof *p);
    p->rope_theta = 1e7f;
    p->eps = 1e-6f;
    p->conv_kernel = 4;
    p->full_attn_interval = 4;
    p->type = AR_F32;
    p->seed = 1;
    if (!strcmp(preset, "tiny")) {
        /* Every 2-D row length is 256 or 512, so K-quants apply to all projections. */
        p->n_layer = 4; p->n_embd = 256; p->n_ff = 512;
        p->n_head = 4; p->n_head_kv = 2; p->head_dim = 64; p->rope_dim = 16;
        p->gdn_k_heads = 2; p->gdn_v_heads = 4; p->gdn_head_dim = 64;
        p->tied = true; p->ctx = 4096;
        p->vocab = "small:4096";
    } else if (!strcmp(preset, "mid")) {
        /* Qwen3.5-2B shape (llama.cpp labels it "qwen35 2B"): 1.88 B params with the 248,320 vocab. */
        p->n_layer = 24; p->n_embd = 2048; p->n_ff = 6144;
        p->n_head = 8; p->n_head_kv = 2; p->head_dim = 256; p->rope_dim = 64;
        p->gdn_k_heads = 16; p->gdn_v_heads = 16; p->gdn_head_dim = 128;
        p->tied = true; p->ctx = 262144; p->pad_vocab = 248320;
    } else if (!strcmp(preset, "27b")) {
        /* Qwen3.6-27B shape (spec qwen35.md §1.3). */
        p->n_layer = 64; p->n_embd = 5120; p->n_ff = 17408;
        p->n_head = 24; p->n_head_kv = 4; p->head_dim = 256; p->rope_dim = 64;
        p->gdn_k_heads = 16; p->gdn_v_heads = 48; p->gdn_head_dim = 128;
        p->tied = false; p->ctx = 262144; p->pad_vocab = 248320;
        p->random_blocks = true;
    } else {
        return ar_fail(err, AR_EINVAL, "unknown preset '%s' (tiny, mid, 27b)", preset);
    }
    snprintf(p->preset, sizeof p->preset, "%s", preset);
    return AR_OK;
}

bool mkmodel_is_recurrent(const mkmodel_params *p, int il)
{
    if (il < 0 || il >= p->n_layer) return false;
    if (p->has_recurrent) return p->recurrent[il];
    return (il + 1) % p->full_attn_interval != 0;
}

int mkmodel_validate(const mkmodel_params *p, ar_error *err)
{
    struct { const char *name; int v, lo, hi; } ranges[] = {
        { "n_layer", p->n_layer, 1, MKMODEL_MAX_LAYERS - 1 }, { "n_embd", p->n_embd, 1, 1 << 20 },
        { "n_ff", p->n_ff, 1, 1 << 22 }, { "n_head", p->n_head, 1, 4096 }, { "n_head_kv", p->n_head_kv, 1, 4096 },
        { "head_dim", p->head_dim, 2, 1 << 16 }, { "rope_dim", p->rope_dim, 2, 1 << 16 },
        { "gdn_k_heads", p->gdn_k_heads, 1, 4096 }, { "gdn_v_heads", p->gdn_v_heads, 1, 4096 },
        { "gdn_head_dim", p->gdn_head_dim, 1, 1 << 16 }, { "conv_kernel", p->conv_kernel, 1, 64 },
        { "full_attn_interval", p->full_attn_interval, 1, 1 << 20 }, { "ctx", p->ctx, 1, 1 << 30 },
        { "nextn", p->nextn, 0, 1 },
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].v < ranges[i].lo || ranges[i].v > ranges[i].hi)
            return ar_fail(err, AR_EINVAL, "%s = %d is out of range [%d, %d]", ranges[i].name, ranges[i].v,
                           ranges[i].lo, ranges[i].hi);
    if (p->has_recurrent && p->n_recurrent != p->n_layer)
        return ar_fail(err, AR_EINVAL, "recurrent_layers has %d entries for %d layers", p->n_recurrent, p->n_layer);
    if (p->n_layer + p->nextn > MKMODEL_MAX_LAYERS)
        return ar_fail(err, AR_EINVAL, "n_layer + nextn = %d exceeds %d", p->n_layer + p->nextn, MKMODEL_MAX_LAYERS);
    if (p->n_head % p->n_head_kv)
        return ar_fail(err, AR_EINVAL, "n_head %d is not a multiple of n_head_kv %d", p->n_head, p->n_head_kv);
    if (p->gdn_v_heads % p->gdn_k_heads)
        return ar_fail(err, AR_EINVAL, "gdn_v_heads %d is not a multiple of gdn_k_heads %d", p->gdn_v_heads,
                       p->gdn_k_heads);
    if (p->rope_dim > p->head_dim || p->rope_dim % 2 || p->head_dim % 2)
        return ar_fail(err, AR_EINVAL, "rope_dim %d must be even and <= head_dim %d (even)", p->rope_dim, p->head_dim);
    if (!(p->eps > 0) || !(p->rope_theta > 0) || !isfinite(p->eps) || !isfinite(p->rope_theta))
        return ar_fail(err, AR_EINVAL, "eps (%g) and rope_theta (%g) must be positive", p->eps, p->rope_theta);
    if (!ar_dtype_get(p->type) || p->type == AR_Q8_1 || p->type == AR_Q8_K || (p->type >= AR_I8 && p->type <= AR_F64))
        return ar_fail(err, AR_EINVAL, "weight type %s cannot be used for model weights", ar_dtype_name(p->type));
    return AR_OK;
}

/* ---- tensor plan ---------------------------------------------------------------------------- */

enum dist { D_NORMAL, D_UNIFORM, D_NEG_EXP };   /* N(a, b); U(a, b); -exp(U(a, b)) */

typedef struct mk_state mk_state;

typedef struct tspec {
    char name[96];
    int n_dims;
    int64_t ne[2];
    int type;
    enum dist dist;
    float a, b;
    uint64_t seed;
    uint64_t nbytes;
    mk_state *st;
} tspec;

struct mk_state {
    const mkmodel_params *p;
    ar_pool *pool;
    tspec *ts;
    int n_ts, cap_ts;
    float *scratch;              /* per thread: max_ne0 floats */
    int64_t max_ne0;
    uint64_t bytes_total, bytes_done;
    int last_pct;
    int n_fallback;
};

static bool is_float_type(int t) { return t == AR_F32 || t == AR_F16 || t == AR_BF16; }

/* Random-but-valid block generator available for this type (see random_blocks_row). */
static bool has_random_blocks(int t)
{
    switch (t) {
    case AR_Q8_0: case AR_Q4_0: case AR_Q4_1: case AR_Q5_0: case AR_Q5_1: case AR_Q2_K: case AR_Q3_K:
    case AR_Q4_K: case AR_Q5_K: case AR_Q6_K: case AR_IQ4_NL: case AR_IQ4_XS:
        return true;
    default:
        return false;
    }
}

static int add_spec(mk_state *st, int n_dims, int64_t ne0, int64_t ne1, bool matrix, enum dist dist, float a,
                    float b, const char *fmt, ...)
{
    if (st->n_ts == st->cap_ts) {
        int cap = st->cap_ts ? st->cap_ts * 2 : 64;
        tspec *n = realloc(st->ts, (size_t)cap * sizeof *n);
        if (!n) return AR_ENOMEM;
        st->ts = n;
        st->cap_ts = cap;
    }
    tspec *t = &st->ts[st->n_ts++];
    memset(t, 0, sizeof *t);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->dist = dist;
    t->a = a;
    t->b = b;
    t->seed = name_seed(t->name, st->p->seed);
    t->st = st;
    t->type = AR_F32;
    if (matrix) {
        int want = st->p->type;
        const ar_dtype_info *info = ar_dtype_get(want);
        if (info && ne0 % info->block_elems == 0) {
            t->type = want;
        } else {
            t->type = AR_F16;   /* row length does not fit the block size: keep it exact-ish */
            st->n_fallback++;
        }
    }
    t->nbytes = ar_row_bytes(t->type, ne0) * (uint64_t)t->ne[1];
    if (ne0 > st->max_ne0) st->max_ne0 = ne0;
    return AR_OK;
}

#define ADD(...) do { int rc_ = add_spec(st, __VA_ARGS__); if (rc_) return rc_; } while (0)

/* Shorthands: a gain vector near 1, and a projection with ne = [in, out]. */
#define NORM(n, ...) ADD(1, (n), 1, false, D_UNIFORM, 0.9f, 1.1f, __VA_ARGS__)
#define PROJ(in, out, ...) ADD(2, (in), (out), true, D_NORMAL, 0.0f, 1.0f / sqrtf((float)(in)), __VA_ARGS__)

static int plan_attention(mk_state *st, int il)
{
    const mkmodel_params *p = st->p;
    int64_t E = p->n_embd, D = p->head_dim;
    PROJ(E, 2 * p->n_head * D, "blk.%d.attn_q.weight", il);
    PROJ(E, p->n_head_kv * D, "blk.%d.attn_k.weight", il);
    PROJ(E, p->n_head_kv * D, "blk.%d.attn_v.weight", il);
    PROJ(p->n_head * D, E, "blk.%d.attn_output.weight", il);
    NORM(D, "blk.%d.attn_q_norm.weight", il);
    NORM(D, "blk.%d.attn_k_norm.weight", il);
    return AR_OK;
}

static int plan_ffn(mk_state *st, int il)
{
    int64_t E = st->p->n_embd, F = st->p->n_ff;
    PROJ(E, F, "blk.%d.ffn_gate.weight", il);
    PROJ(E, F, "blk.%d.ffn_up.weight", il);
    PROJ(F, E, "blk.%d.ffn_down.weight", il);
    return AR_OK;
}

static int plan_tensors(mk_state *st, int64_t n_vocab)
{
    const mkmodel_params *p = st->p;
    int64_t E = p->n_embd;
    float head_std = 4.0f / sqrtf((float)E);
    ADD(2, E, n_vocab, true, D_NORMAL, 0.0f, p->tied ? head_std : 1.0f, "token_embd.weight");
    NORM(E, "output_norm.weight");
    if (!p->tied) ADD(2, E, n_vocab, true, D_NORMAL, 0.0f, head_std, "output.weight");

    int64_t d = p->gdn_head_dim, kdim = p->gdn_k_heads * d, vdim = p->gdn_v_heads * d;
    int64_t conv_dim = 2 * kdim + vdim;
    for (int il = 0; il < p->n_layer; il++) {
        NORM(E, "blk.%d.attn_norm.weight", il);
        NORM(E, "blk.%d.post_attention_norm.weight", il);
        if (mkmodel_is_recurrent(p, il)) {
            PROJ(E, conv_dim, "blk.%d.attn_qkv.weight", il);
            PROJ(E, vdim, "blk.%d.attn_gate.weight", il);
            ADD(2, p->conv_kernel, conv_dim, false, D_NORMAL, 0.0f, 1.0f / sqrtf((float)p->conv_kernel),
                "blk.%d.ssm_conv1d.weight", il);
            ADD(1, p->gdn_v_heads, 1, false, D_UNIFORM, -3.0f, 0.0f, "blk.%d.ssm_dt.bias", il);
            ADD(1, p->gdn_v_heads, 1, false, D_NEG_EXP, 0.0f, logf(16.0f), "blk.%d.ssm_a", il);
            PROJ(E, p->gdn_v_heads, "blk.%d.ssm_beta.weight", il);
            PROJ(E, p->gdn_v_heads, "blk.%d.ssm_alpha.weight", il);
            NORM(d, "blk.%d.ssm_norm.weight", il);
            PROJ(vdim, E, "blk.%d.ssm_out.weight", il);
        } else {
            int rc = plan_attention(st, il);
            if (rc) return rc;
        }
        int rc = plan_ffn(st, il);
        if (rc) return rc;
    }
    /* MTP block(s), named as llama.cpp's converter names them (spec qwen35.md §2.5). */
    for (int il = p->n_layer; il < p->n_layer + p->nextn; il++) {
        NORM(E, "blk.%d.attn_norm.weight", il);
        NORM(E, "blk.%d.post_attention_norm.weight", il);
        int rc = plan_attention(st, il);
        if (!rc) rc = plan_ffn(st, il);
        if (rc) return rc;
        PROJ(2 * E, E, "blk.%d.nextn.eh_proj.weight", il);
        NORM(E, "blk.%d.nextn.enorm.weight", il);
        NORM(E, "blk.%d.nextn.hnorm.weight", il);
        NORM(E, "blk.%d.nextn.shared_head_norm.weight", il);
    }
    return AR_OK;
}

int64_t mkmodel_n_params(const mkmodel_params *p, int64_t n_vocab)
{
    mk_state st = { .p = p };
    int64_t n = 0;
    if (plan_tensors(&st, n_vocab) == AR_OK)
        for (int i = 0; i < st.n_ts; i++) n += st.ts[i].ne[0] * st.ts[i].ne[1];
    free(st.ts);
    return n;
}

/* ---- tensor values -------------------------------------------------------------------------- */

static void gen_floats(const tspec *t, rng *r, float *out, int64_t n)
{
    switch (t->dist) {
    case D_NORMAL:
        for (int64_t i = 0; i < n; i++) out[i] = t->a + t->b * rng_normal(r);
        break;
    case D_UNIFORM:
        for (int64_t i = 0; i < n; i++) out[i] = t->a + (t->b - t->a) * rng_uniform(r);
        break;
    case D_NEG_EXP:
        for (int64_t i = 0; i < n; i++) out[i] = -expf(t->a + (t->b - t->a) * rng_uniform(r));
        break;
    }
}

static void rand_bytes(rng *r, uint8_t *dst, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t x = rng_next(r);
        memcpy(dst + i, &x, 8);
    }
    if (i < n) {
        uint64_t x = rng_next(r);
        memcpy(dst + i, &x, n - i);
    }
}

static void put_f16(uint8_t *dst, float v)
{
    uint16_t h = ar_f32_to_f16(v);
    memcpy(dst, &h, 2);
}

static float iq4nl_std(void)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < 16; i++) { s += ar_iq4nl_values[i]; s2 += (double)ar_iq4nl_values[i] * ar_iq4nl_values[i]; }
    return (float)sqrt(s2 / 16);   /* about zero-mean; use the rms */
}

/* Q4_K / Q5_K 12-byte packing of eight 6-bit scales and mins (inverse of ar_get_scale_min_k4). */
static void pack_scale_min_k4(uint8_t *q, const uint8_t *sc, const uint8_t *m)
{
    for (int j = 0; j < 4; j++) {
        q[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
        q[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
        q[j + 8] = (uint8_t)((sc[j + 4] & 15) | ((m[j + 4] & 15) << 4));
    }
}

/* Random but valid blocks whose dequantized values have mean ~0 and std ~`std`: random quants
 * and sub-block scales, then a super-block scale d from the moments of the random fields
 * (q uniform in [0, 2^b): variance (4^b - 1) / 12; 6-bit scales uniform: E sc^2 = 1333.5).
 * For the types with mins, every sub-block is centred: min = scale and dmin = d * E[q], so a
 * value is d * sc * (q - E[q]), as in real weights (no per-sub-block offset). */
static void random_blocks_row(int type, rng *r, uint8_t *dst, int64_t n, float std)
{
    const ar_dtype_info *info = ar_dtype_get(type);
    int64_t nb = n / info->block_elems;
    size_t bs = info->block_bytes;
    rand_bytes(r, dst, (size_t)nb * bs);
    for (int64_t ib = 0; ib < nb; ib++) {
        uint8_t *b = dst + (size_t)ib * bs;
        switch (type) {
        case AR_Q8_0: put_f16(b, std / 73.9f); break;                 /* int8 uniform: std 73.9 */
        case AR_Q4_0: put_f16(b, std / 4.61f); break;                 /* q-8, q in 0..15 */
        case AR_Q5_0: put_f16(b, std / 9.23f); break;                 /* q-16, q in 0..31 */
        case AR_Q4_1: put_f16(b, std / 4.61f); put_f16(b + 2, -7.5f * std / 4.61f); break;
        case AR_Q5_1: put_f16(b, std / 9.23f); put_f16(b + 2, -15.5f * std / 9.23f); break;
        case AR_Q4_K: case AR_Q5_K: {
            ar_block_q4_K *q = (ar_block_q4_K *)b;   /* q5_K starts with the same d, dmin, scales[12] */
            uint8_t sc[8];
            for (int j = 0; j < 8; j++) sc[j] = q->scales[j] & 63;
            pack_scale_min_k4(q->scales, sc, sc);
            float d = type == AR_Q4_K ? std / 168.3f : std / 337.2f, mean_q = type == AR_Q4_K ? 7.5f : 15.5f;
            q->d = ar_f32_to_f16(d);
            q->dmin = ar_f32_to_f16(mean_q * d);
            break;
        }
        case AR_Q2_K: {   /* scales byte = min << 4 | scale, q in 0..3 */
            ar_block_q2_K *q = (ar_block_q2_K *)b;
            for (int j = 0; j < AR_QK_K / 16; j++) q->scales[j] = (uint8_t)((q->scales[j] & 15) * 17);
            float d = std / 9.84f;
            q->d = ar_f32_to_f16(d);
            q->dmin = ar_f32_to_f16(1.5f * d);
            break;
        }
        case AR_Q3_K: {   /* (sc - 32) * q, q in -4..3 */
            ar_block_q3_K *q = (ar_block_q3_K *)b;
            q->d = ar_f32_to_f16(std / 43.3f);
            break;
        }
        case AR_Q6_K: {   /* keep |scale| <= 32 so d stays a normal f16: d * sc * (q - 32) */
            ar_block_q6_K *q = (ar_block_q6_K *)b;
            for (int j = 0; j < AR_QK_K / 16; j++) q->scales[j] = (int8_t)((q->scales[j] & 63) - 32);
            q->d = ar_f32_to_f16(std / (18.48f * 18.48f));
            break;
        }
        case AR_IQ4_NL: put_f16(b, std / iq4nl_std()); break;
        case AR_IQ4_XS: put_f16(b, std / (18.48f * iq4nl_std())); break;   /* (ls - 32) * kv[q] */
        default: break;
        }
    }
}

static int make_row(const tspec *t, int64_t row, uint8_t *dst, float *tmp)
{
    rng r = row_rng(t->seed, row);
    int64_t n = t->ne[0];
    if (!is_float_type(t->type) && t->st->p->random_blocks && t->dist == D_NORMAL && has_random_blocks(t->type)) {
        random_blocks_row(t->type, &r, dst, n, t->b);
        return AR_OK;
    }
    gen_floats(t, &r, tmp, n);
    switch (t->type) {
    case AR_F32:
        memcpy(dst, tmp, (size_t)n * sizeof(float));
        return AR_OK;
    case AR_F16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = ar_f32_to_f16(tmp[i]); memcpy(dst + 2 * i, &h, 2); }
        return AR_OK;
    case AR_BF16:
        for (int64_t i = 0; i < n; i++) { uint16_t h = ar_f32_to_bf16(tmp[i]); memcpy(dst + 2 * i, &h, 2); }
        return AR_OK;
    default:
        return ar_quantize_row(t->type, tmp, dst, n);
    }
}

typedef struct fill_job {
    const tspec *t;
    uint8_t *dst;         /* first byte of row0 */
    int64_t row0, n_rows;
    size_t row_bytes;
    atomic_int rc;
} fill_job;

static void fill_rows(void *ctx, int ith, int nth)
{
    fill_job *j = ctx;
    long lo, hi;
    ar_split_range((long)j->n_rows, 1, ith, nth, &lo, &hi);
    float *tmp = j->t->st->scratch + (size_t)ith * (size_t)j->t->st->max_ne0;
    for (long r = lo; r < hi; r++) {
        int rc = make_row(j->t, j->row0 + r, j->dst + (size_t)r * j->row_bytes, tmp);
        if (rc) atomic_store(&j->rc, rc);
    }
}

static void progress(mk_state *st, uint64_t add)
{
    st->bytes_done += add;
    if (st->p->quiet) return;
    int pct = st->bytes_total ? (int)(st->bytes_done * 100 / st->bytes_total) : 100;
    if (pct != st->last_pct || st->bytes_done >= st->bytes_total) {
        st->last_pct = pct;
        ar_progress("mkmodel: writing", st->bytes_done, st->bytes_total);
    }
}

static int fill_tensor(void *ctx, const gguf_tensor *gt, void *dst, uint64_t nbytes, ar_error *err)
{
    const tspec *t = ctx;
    mk_state *st = t->st;
    if (nbytes != t->nbytes)
        return ar_fail(err, AR_EINVAL, "tensor %s: writer asks for %llu bytes, planned %llu", gt ? gt->name : t->name,
                       (unsigned long long)nbytes, (unsigned long long)t->nbytes);
    size_t row_bytes = ar_row_bytes(t->type, t->ne[0]);
    int64_t chunk = (int64_t)((32u << 20) / row_bytes);   /* ~32 MiB between progress updates */
    if (chunk < 1) chunk = 1;
    for (int64_t r0 = 0; r0 < t->ne[1]; r0 += chunk) {
        fill_job j = { .t = t, .dst = (uint8_t *)dst + (size_t)r0 * row_bytes, .row0 = r0, .row_bytes = row_bytes };
        j.n_rows = t->ne[1] - r0 < chunk ? t->ne[1] - r0 : chunk;
        atomic_init(&j.rc, AR_OK);
        ar_pool_run(st->pool, fill_rows, &j);
        int rc = atomic_load(&j.rc);
        if (rc) return ar_fail(err, rc, "tensor %s: quantizing to %s failed", t->name, ar_dtype_name(t->type));
        progress(st, (uint64_t)j.n_rows * row_bytes);
    }
    return AR_OK;
}

/* ---- tokenizer ------------------------------------------------------------------------------ */

typedef struct strset { gguf_str *slot; uint64_t mask; } strset;

static uint64_t str_hash(const char *p, uint64_t n)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (uint64_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ULL;
    return h;
}

static int strset_init(strset *s, uint64_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * n) cap *= 2;
    s->slot = calloc(cap, sizeof *s->slot);
    s->mask = cap - 1;
    return s->slot ? AR_OK : AR_ENOMEM;
}

static bool strset_has(const strset *s, const char *p, uint64_t n)
{
    for (uint64_t i = str_hash(p, n) & s->mask;; i = (i + 1) & s->mask) {
        if (!s->slot[i].ptr) return false;
        if (s->slot[i].len == n && !memcmp(s->slot[i].ptr, p, n)) return true;
    }
}

static void strset_add(strset *s, gguf_str v)
{
    uint64_t i = str_hash(v.ptr, v.len) & s->mask;
    while (s->slot[i].ptr) i = (i + 1) & s->mask;
    s->slot[i] = v;
}

typedef struct vocab_build {
    gguf_file *src;       /* open until the model is written: copied keys point into it */
    gguf_str *tokens, *merges;
    int32_t *types;
    float *scores;
    char *pad_names;
    int64_t n_vocab;
} vocab_build;

static void vocab_free(vocab_build *v)
{
    gguf_close(v->src);
    free(v->tokens);
    free(v->merges);
    free(v->types);
    free(v->scores);
    free(v->pad_names);
}

static const char default_chat_template[] =
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

static bool ends_with(gguf_str s, const char *suffix)
{
    size_t n = strlen(suffix);
    return s.len >= n && !memcmp(s.ptr + s.len - n, suffix, n);
}

/* Cut the vocab down to its first n_keep tokens + three control tokens, keeping only the merges
 * whose parts and result all stay in the vocab (spec oracle.md §3.3 "--vocab small:N"). */
static int cut_small(vocab_build *v, const gguf_kv *tok, const gguf_kv *types, const gguf_kv *merges,
                     int64_t n_keep, const char *src_path, ar_error *err)
{
    static const char *specials[3] = { "<|endoftext|>", "<|im_start|>", "<|im_end|>" };
    int64_t n = n_keep + 3;
    v->tokens = malloc((size_t)n * sizeof *v->tokens);
    v->types = malloc((size_t)n * sizeof *v->types);
    strset set = { 0 };
    if (!v->tokens || !v->types || strset_init(&set, (uint64_t)n)) { free(set.slot); return ar_fail(err, AR_ENOMEM, "out of memory"); }
    for (int64_t i = 0; i < n_keep; i++) {
        v->tokens[i] = tok->arr_str[i];
        v->types[i] = 1;
        if (types && types->arr_type == GGUF_T_INT32 && (uint64_t)i < types->arr_n)
            memcpy(&v->types[i], (const char *)types->arr_data + 4 * i, 4);
        if (strset_has(&set, v->tokens[i].ptr, v->tokens[i].len)) {
            free(set.slot);
            return ar_fail(err, AR_EFORMAT, "%s: token %lld '%.*s' appears twice", src_path, (long long)i,
                           (int)v->tokens[i].len, v->tokens[i].ptr);
        }
        strset_add(&set, v->tokens[i]);
    }
    for (int k = 0; k < 3; k++) {
        gguf_str s = { strlen(specials[k]), specials[k] };
        if (strset_has(&set, s.ptr, s.len)) {
            free(set.slot);
            return ar_fail(err, AR_EFORMAT, "%s: '%s' is already among the first %lld tokens", src_path, specials[k],
                           (long long)n_keep);
        }
        v->tokens[n_keep + k] = s;
        v->types[n_keep + k] = 3;   /* CONTROL */
        strset_add(&set, s);
    }
    uint64_t n_merges = merges ? merges->arr_n : 0, kept = 0, maxlen = 0;
    for (uint64_t i = 0; i < n_merges; i++) if (merges->arr_str[i].len > maxlen) maxlen = merges->arr_str[i].len;
    v->merges = malloc((n_merges ? n_merges : 1) * sizeof *v->merges);
    char *joined = malloc(maxlen + 1);
    if (!v->merges || !joined) { free(set.slot); free(joined); return ar_fail(err, AR_ENOMEM, "out of memory"); }
    for (uint64_t i = 0; i < n_merges; i++) {
        gguf_str m = merges->arr_str[i];
        const char *sp = m.len > 1 ? memchr(m.ptr + 1, ' ', m.len - 1) : NULL;   /* llama.cpp: find(' ', 1) */
        if (!sp) continue;
        uint64_t nl = (uint64_t)(sp - m.ptr), nr = m.len - nl - 1;
        if (!strset_has(&set, m.ptr, nl) || !strset_has(&set, sp + 1, nr)) continue;
        memcpy(joined, m.ptr, nl);
        memcpy(joined + nl, sp + 1, nr);
        if (!strset_has(&set, joined, nl + nr)) continue;
        v->merges[kept++] = m;
    }
    free(joined);
    free(set.slot);
    v->n_vocab = n;
    return (int)kept;   /* >= 0 */
}

static int build_vocab(const mkmodel_params *p, gguf_writer *w, vocab_build *v, ar_error *err)
{
    const char *vocab = p->vocab;
    bool small = vocab && !strncmp(vocab, "small:", 6);
    char defpath[4096];
    const char *path = vocab;
    if (!vocab || small) {
        path = p->vocab_src;
        if (!path) {
            const char *fx = getenv("ARBOR_FIXTURES");
            snprintf(defpath, sizeof defpath, "%s/vocab-qwen35.gguf", fx && *fx ? fx : "build/fixtures");
            path = defpath;
        }
    }
    int rc = gguf_open(&v->src, path, err);
    if (rc) {
        if (path == defpath)
            ar_error_prefix(err, "vocab source (run scripts/fixtures.sh, or pass --vocab-src FILE): ");
        return rc;
    }
    const gguf_kv *tok = gguf_find(v->src, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find(v->src, "tokenizer.ggml.token_type");
    const gguf_kv *merges = gguf_find(v->src, "tokenizer.ggml.merges");
    const gguf_kv *scores = gguf_find(v->src, "tokenizer.ggml.scores");
    if (!tok || tok->type != GGUF_T_ARRAY || tok->arr_type != GGUF_T_STRING || tok->arr_n == 0)
        return ar_fail(err, AR_EFORMAT, "%s: no tokenizer.ggml.tokens string array", path);
    if (merges && (merges->type != GGUF_T_ARRAY || merges->arr_type != GGUF_T_STRING)) merges = NULL;
    if (types && (types->type != GGUF_T_ARRAY || types->arr_type != GGUF_T_INT32)) types = NULL;
    if (scores && (scores->type != GGUF_T_ARRAY || scores->arr_type != GGUF_T_FLOAT32)) scores = NULL;

    /* Every tokenizer.* key of the source, then the arrays we change replace theirs. */
    for (int64_t i = 0; i < gguf_n_kv(v->src); i++) {
        const gguf_kv *kv = gguf_kv_at(v->src, i);
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10) && (rc = gguf_set_kv(w, kv)))
            return ar_fail(err, rc, "copying %.*s from %s", (int)kv->key.len, kv->key.ptr, path);
    }

    int64_t n_src = (int64_t)tok->arr_n;
    bool rewrite = false;
    if (small) {
        char *end;
        long n = strtol(vocab + 6, &end, 10);
        if (*end || end == vocab + 6 || n < 256 + 3 || n - 3 > n_src)
            return ar_fail(err, AR_EINVAL, "--vocab %s: N must be in [259, %lld] (the source has %lld tokens)", vocab,
                           (long long)n_src + 3, (long long)n_src);
        int kept = cut_small(v, tok, types, merges, n - 3, path, err);
        if (kept < 0) return kept;
        /* Drop every special-token id of the source, then point bos/pad at <|endoftext|> and eos at <|im_end|>. */
        for (int64_t i = gguf_n_kv(v->src) - 1; i >= 0; i--) {
            const gguf_kv *kv = gguf_kv_at(v->src, i);
            if (ends_with(kv->key, "_token_id") && kv->key.len < 256) {
                char key[256];
                memcpy(key, kv->key.ptr, kv->key.len);
                key[kv->key.len] = 0;
                gguf_remove_key(w, key);
            }
        }
        gguf_remove_key(w, "tokenizer.ggml.scores");
        scores = NULL;
        gguf_set_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)(n - 3));
        gguf_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n - 1));
        gguf_set_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)(n - 3));
        if ((rc = gguf_set_arr_str(w, "tokenizer.ggml.merges", v->merges, (uint64_t)kept)))
            return ar_fail(err, rc, "setting tokenizer.ggml.merges");
        rewrite = true;
    } else {
        v->n_vocab = n_src;
        v->tokens = malloc((size_t)n_src * sizeof *v->tokens);
        v->types = malloc((size_t)n_src * sizeof *v->types);
        if (!v->tokens || !v->types) return ar_fail(err, AR_ENOMEM, "out of memory");
        memcpy(v->tokens, tok->arr_str, (size_t)n_src * sizeof *v->tokens);
        for (int64_t i = 0; i < n_src; i++) {
            v->types[i] = 1;
            if (types && (uint64_t)i < types->arr_n) memcpy(&v->types[i], (const char *)types->arr_data + 4 * i, 4);
        }
    }
    if (!gguf_find(v->src, "tokenizer.ggml.add_bos_token")) gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);

    if (p->pad_vocab > 0 && p->pad_vocab < v->n_vocab)
        return ar_fail(err, AR_EINVAL, "--pad-vocab %d is smaller than the vocab (%lld tokens)", p->pad_vocab,
                       (long long)v->n_vocab);
    if (p->pad_vocab > v->n_vocab) {
        int64_t n = p->pad_vocab, n0 = v->n_vocab;
        gguf_str *nt = realloc(v->tokens, (size_t)n * sizeof *nt);
        if (nt) v->tokens = nt;
        int32_t *ny = realloc(v->types, (size_t)n * sizeof *ny);
        if (ny) v->types = ny;
        v->pad_names = malloc((size_t)(n - n0) * 24);
        if (!nt || !ny || !v->pad_names) return ar_fail(err, AR_ENOMEM, "out of memory padding the vocab");
        for (int64_t i = n0; i < n; i++) {
            char *s = v->pad_names + (size_t)(i - n0) * 24;
            int len = snprintf(s, 24, "[PAD%lld]", (long long)i);
            v->tokens[i] = (gguf_str){ (uint64_t)len, s };
            v->types[i] = 5;   /* UNUSED */
        }
        v->n_vocab = n;
        rewrite = true;
    }
    if (rewrite) {
        if ((rc = gguf_set_arr_str(w, "tokenizer.ggml.tokens", v->tokens, (uint64_t)v->n_vocab)) ||
            (rc = gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, v->types, (uint64_t)v->n_vocab)))
            return ar_fail(err, rc, "setting the tokenizer arrays");
        if (scores) {
            v->scores = calloc((size_t)v->n_vocab, sizeof *v->scores);
            if (!v->scores) return ar_fail(err, AR_ENOMEM, "out of memory");
            memcpy(v->scores, scores->arr_data, (size_t)(scores->arr_n < (uint64_t)v->n_vocab ? scores->arr_n : (uint64_t)v->n_vocab) * 4);
            if ((rc = gguf_set_arr(w, "tokenizer.ggml.scores", GGUF_T_FLOAT32, v->scores, (uint64_t)v->n_vocab)))
                return ar_fail(err, rc, "setting tokenizer.ggml.scores");
        }
    }
    if (p->chat_template) gguf_set_str(w, "tokenizer.chat_template", p->chat_template);
    else if (!gguf_find(v->src, "tokenizer.chat_template")) gguf_set_str(w, "tokenizer.chat_template", default_chat_template);
    return AR_OK;
}

/* ---- metadata ------------------------------------------------------------------------------- */

static uint32_t file_type(int t)
{
    switch (t) {
    case AR_F32: return 0;   case AR_F16: return 1;    case AR_Q4_0: return 2;  case AR_Q4_1: return 3;
    case AR_Q8_0: return 7;  case AR_Q5_0: return 8;   case AR_Q5_1: return 9;  case AR_Q2_K: return 10;
    case AR_Q3_K: return 11; case AR_Q4_K: return 14;  case AR_Q5_K: return 16; case AR_Q6_K: return 18;
    case AR_IQ2_XXS: return 19; case AR_IQ2_XS: return 20; case AR_IQ3_XXS: return 23; case AR_IQ1_S: return 24;
    case AR_IQ4_NL: return 25; case AR_IQ3_S: return 26; case AR_IQ2_S: return 28; case AR_IQ4_XS: return 30;
    case AR_IQ1_M: return 31; case AR_BF16: return 32; case AR_TQ1_0: return 36; case AR_TQ2_0: return 37;
    case AR_MXFP4: return 38; case AR_NVFP4: return 39; case AR_Q1_0: return 40; case AR_Q2_0: return 41;
    default: return 1024;   /* LLAMA_FTYPE_GUESSED */
    }
}

static int set_metadata(const mkmodel_params *p, gguf_writer *w)
{
    char name[128];
    snprintf(name, sizeof name, "arbor-synthetic-%s", p->preset[0] ? p->preset : "custom");
    int rc = 0;
    rc |= gguf_set_str(w, "general.architecture", "qwen35");
    rc |= gguf_set_str(w, "general.name", p->name ? p->name : name);
    rc |= gguf_set_u32(w, "general.file_type", file_type(p->type));
    if (!is_float_type(p->type)) rc |= gguf_set_u32(w, "general.quantization_version", 2);
    int n_all = p->n_layer + p->nextn;
    rc |= gguf_set_u32(w, "qwen35.context_length", (uint32_t)p->ctx);
    rc |= gguf_set_u32(w, "qwen35.embedding_length", (uint32_t)p->n_embd);
    rc |= gguf_set_u32(w, "qwen35.block_count", (uint32_t)n_all);
    if (p->nextn) rc |= gguf_set_u32(w, "qwen35.nextn_predict_layers", (uint32_t)p->nextn);
    rc |= gguf_set_u32(w, "qwen35.feed_forward_length", (uint32_t)p->n_ff);
    rc |= gguf_set_u32(w, "qwen35.attention.head_count", (uint32_t)p->n_head);
    rc |= gguf_set_u32(w, "qwen35.attention.head_count_kv", (uint32_t)p->n_head_kv);
    rc |= gguf_set_u32(w, "qwen35.attention.key_length", (uint32_t)p->head_dim);
    rc |= gguf_set_u32(w, "qwen35.attention.value_length", (uint32_t)p->head_dim);
    rc |= gguf_set_f32(w, "qwen35.attention.layer_norm_rms_epsilon", p->eps);
    rc |= gguf_set_u32(w, "qwen35.rope.dimension_count", (uint32_t)p->rope_dim);
    rc |= gguf_set_f32(w, "qwen35.rope.freq_base", p->rope_theta);
    /* IMROPE sections [t, h, w, 0] summing to n_rot/2 (64 -> [11, 11, 10, 0]); for text all three
     * get the same position, so only the sum matters. */
    int half = p->rope_dim / 2, t = (half + 2) / 3, h = t < half - t ? t : half - t;
    int32_t sections[4] = { t, h, half - t - h, 0 };
    rc |= gguf_set_arr(w, "qwen35.rope.dimension_sections", GGUF_T_INT32, sections, 4);
    rc |= gguf_set_u32(w, "qwen35.ssm.conv_kernel", (uint32_t)p->conv_kernel);
    rc |= gguf_set_u32(w, "qwen35.ssm.inner_size", (uint32_t)(p->gdn_v_heads * p->gdn_head_dim));
    rc |= gguf_set_u32(w, "qwen35.ssm.state_size", (uint32_t)p->gdn_head_dim);
    rc |= gguf_set_u32(w, "qwen35.ssm.time_step_rank", (uint32_t)p->gdn_v_heads);
    rc |= gguf_set_u32(w, "qwen35.ssm.group_count", (uint32_t)p->gdn_k_heads);
    if (p->has_recurrent) {
        uint8_t flags[MKMODEL_MAX_LAYERS] = { 0 };   /* MTP layers stay false */
        for (int il = 0; il < p->n_layer; il++) flags[il] = p->recurrent[il];
        rc |= gguf_set_arr(w, "qwen35.attention.recurrent_layers", GGUF_T_BOOL, flags, (uint64_t)n_all);
    } else {
        rc |= gguf_set_u32(w, "qwen35.full_attention_interval", (uint32_t)p->full_attn_interval);
    }
    return rc ? AR_ENOMEM : AR_OK;
}

/* ---- write ---------------------------------------------------------------------------------- */

int mkmodel_write(const mkmodel_params *p, const char *path, ar_pool *pool, ar_error *err)
{
    int rc = mkmodel_validate(p, err);
    if (rc) return rc;
    /* The writer renames a temporary file over `path`: never do that to a device or directory. */
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return ar_fail(err, AR_EINVAL, "%s exists and is not a regular file", path);
    bool quantized = !is_float_type(p->type);
    if (quantized && !(p->random_blocks && has_random_blocks(p->type))) {
        const ar_dtype_info *info = ar_dtype_get(p->type);
        if (!info || !info->quant) {
            char list[512] = "";
            for (int t = 0; t < AR_DTYPE_COUNT; t++) {
                const ar_dtype_info *ti = ar_dtype_get(t);
                if (ti && ti->quant && t != AR_Q8_1 && t != AR_Q8_K && strlen(list) + strlen(ti->name) + 3 < sizeof list)
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", list[0] ? ", " : "", ti->name);
            }
            return ar_fail(err, AR_EUNSUPPORTED, "cannot quantize to %s%s (quantizable: %s)", ar_dtype_name(p->type),
                           p->random_blocks ? " and no random-block generator for it" : "", list);
        }
    }

    double t0 = ar_now();
    mk_state st = { .p = p, .pool = pool, .last_pct = -1 };
    vocab_build vb = { 0 };
    gguf_writer *w = gguf_writer_create();
    if (!w) return ar_fail(err, AR_ENOMEM, "out of memory");
    if ((rc = set_metadata(p, w))) { ar_fail(err, rc, "setting metadata"); goto done; }
    if ((rc = build_vocab(p, w, &vb, err))) goto done;
    if ((rc = plan_tensors(&st, vb.n_vocab))) { ar_fail(err, rc, "out of memory planning tensors"); goto done; }

    int nth = ar_pool_size(pool);
    st.scratch = malloc((size_t)nth * (size_t)st.max_ne0 * sizeof(float));
    if (!st.scratch) { rc = ar_fail(err, AR_ENOMEM, "out of memory"); goto done; }
    int64_t n_params = 0;
    for (int i = 0; i < st.n_ts; i++) {
        tspec *t = &st.ts[i];
        if ((rc = gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL, fill_tensor, t))) {
            ar_fail(err, rc, "tensor %s: invalid shape [%lld, %lld] for %s", t->name, (long long)t->ne[0],
                    (long long)t->ne[1], ar_dtype_name(t->type));
            goto done;
        }
        st.bytes_total += t->nbytes;
        n_params += t->ne[0] * t->ne[1];
    }
    if (st.n_fallback && !p->quiet)
        ar_log(AR_LOG_WARN, "mkmodel: %d tensor(s) with rows not a multiple of the %s block size are F16",
               st.n_fallback, ar_dtype_name(p->type));
    if ((rc = gguf_writer_write(w, path, err))) goto done;
    if (!p->quiet) {
        double dt = ar_now() - t0;
        ar_log(AR_LOG_INFO, "mkmodel: wrote %s: %.1f M params, %lld tensors, n_vocab %lld, %s, %.1f MiB in %.1f s (%.0f MiB/s)",
               path, (double)n_params / 1e6, (long long)st.n_ts, (long long)vb.n_vocab, ar_dtype_name(p->type),
               (double)st.bytes_total / 1048576.0, dt, (double)st.bytes_total / 1048576.0 / (dt > 0 ? dt : 1e-9));
    }
done:
    gguf_writer_free(w);
    vocab_free(&vb);
    free(st.ts);
    free(st.scratch);
    return rc;
}
