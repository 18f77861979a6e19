/* model/mkdraft.c — see mkdraft.h. Synthetic DFlash drafters for a given qwen35 target.
 *
 * Data flow: mkdraft_write() opens the target (kept open until the file is written: copied tokenizer
 * keys point into it), resolves the tap layers, sets the metadata of the chosen layout, plans one
 * `dspec` per tensor and registers each with the GGUF writer's fill callback. The callback fills rows
 * on the pool; row r of tensor T draws from a generator seeded by hash(seed, llama.cpp name of T)
 * and r, so bytes do not depend on threads, tensor order or layout.
 *
 * Value scales: projections ~ N(0, 1/fan_in) (fc included: its output is normalised right after),
 * norm gains ~ U(0.9, 1.1). */
#include "model/mkdraft.h"

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "base/half.h"
#include "base/log.h"
#include "format/gguf.h"
#include "format/quant.h"

#define QWEN_MASK_TOKEN 248070

/* ---- random numbers (splitmix64; approx. normal = centred sum of four 16-bit uniforms) ------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t tensor_seed(const char *name, uint64_t seed)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 0x100000001b3ULL;
    return mix64(h ^ mix64(seed + 0x5851f42d4c957f2dULL));
}

static float row_value(uint64_t *s, bool normal, float a, float b)
{
    *s += 0x9e3779b97f4a7c15ULL;
    uint64_t x = mix64(*s);
    if (!normal) return a + (b - a) * (float)(x >> 40) * (1.0f / 16777216.0f);
    uint32_t sum = (uint32_t)(x & 0xffff) + (uint32_t)((x >> 16) & 0xffff) + (uint32_t)((x >> 32) & 0xffff) +
                   (uint32_t)(x >> 48);
    return a + b * (((float)sum - 131070.0f) * (1.7320508f / 65536.0f));
}

/* ---- presets ---------------------------------------------------------------------------------------- */

int mkdraft_preset(mkdraft_params *p, const char *preset, ar_error *err)
{
    memset(p, 0, sizeof *p);
    p->rope_theta = 1e6f;   /* deliberately not the target's 1e7: the drafter has its own theta */
    p->eps = 1e-6f;
    p->type = AR_F32;
    p->seed = 1;
    p->block_size = 16;
    p->ctx = 4096;
    p->mask_token = -1;
    if (!strcmp(preset, "tiny")) {
        p->n_layer = 2; p->n_head = 4; p->n_head_kv = 2; p->head_dim = 64; p->n_ff = 512;
    } else if (!strcmp(preset, "mid")) {
        p->n_layer = 5; p->n_head = 16; p->n_head_kv = 4; p->head_dim = 128; p->n_ff = 6144;
        p->type = AR_F16; p->ctx = 262144;
    } else {
        return ar_fail(err, AR_EINVAL, "unknown drafter preset '%s' (tiny, mid)", preset);
    }
    snprintf(p->preset, sizeof p->preset, "%s", preset);
    return AR_OK;
}

/* Default HF tap ids for a target of N layers: z-lab's build_target_layer_ids (round(1 + i (N-4)/(n-1)),
 * n = drafter layers) for "mid"; three ids spread over [0, N-2] for "tiny" (small targets). */
static int default_taps(const mkdraft_params *p, int N, int *ids)
{
    if (!strcmp(p->preset, "mid") && N > 4) {
        int n = p->n_layer;
        for (int i = 0; i < n; i++) ids[i] = n == 1 ? N / 2 : (int)lround(1.0 + (double)i * (N - 4) / (n - 1));
        return n;
    }
    int n = N - 1 < 3 ? N - 1 : 3;
    if (n < 1) { ids[0] = 0; return 1; }
    for (int i = 0; i < n; i++) ids[i] = n == 1 ? 0 : (int)lround((double)i * (N - 2) / (n - 1));
    return n;
}

/* ---- tensor plan ---------------------------------------------------------------------------------- */

typedef struct dspec {
    char name[96];            /* name in the file */
    uint64_t seed;            /* from the llama.cpp name */
    int64_t ne[2];
    int n_dims, type;
    bool normal;
    float a, b;
    uint64_t nbytes;
    struct mk *mk;
} dspec;

typedef struct mk {
    const mkdraft_params *p;
    ar_pool *pool;
    dspec *ts;
    int n_ts;
    float *scratch;           /* per thread: max_ne0 floats */
    int64_t max_ne0;
    int n_fallback;
} mk;

static bool is_float_type(int t) { return t == AR_F32 || t == AR_F16 || t == AR_BF16; }

static void add(mk *m, const char *file_name, const char *canon_name, int n_dims, int64_t ne0, int64_t ne1,
                bool matrix, bool normal, float a, float b)
{
    dspec *t = &m->ts[m->n_ts++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", file_name);
    t->seed = tensor_seed(canon_name, m->p->seed);
    t->n_dims = n_dims;
    t->ne[0] = ne0;
    t->ne[1] = n_dims > 1 ? ne1 : 1;
    t->normal = normal;
    t->a = a;
    t->b = b;
    t->type = AR_F32;
    t->mk = m;
    if (matrix) {
        const ar_dtype_info *info = ar_dtype_get(m->p->type);
        if (info && ne0 % info->block_elems == 0) t->type = m->p->type;
        else { t->type = AR_F16; m->n_fallback++; }
    }
    t->nbytes = ar_row_bytes(t->type, ne0) * (uint64_t)t->ne[1];
    if (ne0 > m->max_ne0) m->max_ne0 = ne0;
}

static void proj(mk *m, const char *fname, const char *cname, int64_t in, int64_t out)
{
    add(m, fname, cname, 2, in, out, true, true, 0.0f, 1.0f / sqrtf((float)in));
}

static void gain(mk *m, const char *fname, const char *cname, int64_t n)
{
    add(m, fname, cname, 1, n, 1, false, false, 0.9f, 1.1f);
}

static int plan(mk *m, int64_t E, int n_tap, int64_t n_vocab)
{
    const mkdraft_params *p = m->p;
    bool luce = p->layout == MKDRAFT_LUCEBOX;
    m->ts = calloc((size_t)(16 + 12 * p->n_layer), sizeof *m->ts);
    if (!m->ts) return AR_ENOMEM;
    const int64_t D = p->head_dim, qd = (int64_t)p->n_head * D, kvd = (int64_t)p->n_head_kv * D;
    proj(m, luce ? "dflash.fc.weight" : "fc.weight", "fc.weight", (int64_t)n_tap * E, E);
    gain(m, luce ? "dflash.hidden_norm.weight" : "enc.output_norm.weight", "enc.output_norm.weight", E);
    gain(m, "output_norm.weight", "output_norm.weight", E);
    char nm[96];
    for (int il = 0; il < p->n_layer; il++) {
#define L(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), nm)
        gain(m, L("attn_norm.weight"), nm, E);
        proj(m, L("attn_q.weight"), nm, E, qd);
        proj(m, L("attn_k.weight"), nm, E, kvd);
        proj(m, L("attn_v.weight"), nm, E, kvd);
        proj(m, L("attn_output.weight"), nm, qd, E);
        gain(m, L("attn_q_norm.weight"), nm, D);
        gain(m, L("attn_k_norm.weight"), nm, D);
        gain(m, L("ffn_norm.weight"), nm, E);
        proj(m, L("ffn_gate.weight"), nm, E, p->n_ff);
        proj(m, L("ffn_up.weight"), nm, E, p->n_ff);
        proj(m, L("ffn_down.weight"), nm, p->n_ff, E);
#undef L
    }
    if (p->variant && !strcmp(p->variant, "dflash2")) add(m, "selector_hidden.weight", "selector_hidden.weight", 2, E, 8, false, true, 0, 0.1f);
    if (p->variant && !strcmp(p->variant, "dspark")) add(m, "markov_w1.weight", "markov_w1.weight", 2, 8, n_vocab, false, true, 0, 0.1f);
    return AR_OK;
}

/* ---- fill ------------------------------------------------------------------------------------------- */

typedef struct { const dspec *t; uint8_t *dst; size_t row_bytes; atomic_int rc; } fill_job;

static void fill_rows(void *ctx, int ith, int nth)
{
    fill_job *j = ctx;
    const dspec *t = j->t;
    long lo, hi;
    ar_split_range((long)t->ne[1], 1, ith, nth, &lo, &hi);
    float *tmp = t->mk->scratch + (size_t)ith * (size_t)t->mk->max_ne0;
    const int64_t n = t->ne[0];
    for (long r = lo; r < hi; r++) {
        uint64_t s = mix64(t->seed + (uint64_t)r * 0xd1b54a32d192ed03ULL);
        for (int64_t i = 0; i < n; i++) tmp[i] = row_value(&s, t->normal, t->a, t->b);
        uint8_t *dst = j->dst + (size_t)r * j->row_bytes;
        int rc = AR_OK;
        if (t->type == AR_F32) memcpy(dst, tmp, (size_t)n * sizeof(float));
        else if (t->type == AR_F16)
            for (int64_t i = 0; i < n; i++) { uint16_t h = ar_f32_to_f16(tmp[i]); memcpy(dst + 2 * i, &h, 2); }
        else if (t->type == AR_BF16)
            for (int64_t i = 0; i < n; i++) { uint16_t h = ar_f32_to_bf16(tmp[i]); memcpy(dst + 2 * i, &h, 2); }
        else rc = ar_quantize_row(t->type, tmp, dst, n);
        if (rc) atomic_store(&j->rc, rc);
    }
}

static int fill_tensor(void *ctx, const gguf_tensor *gt, void *dst, uint64_t nbytes, ar_error *err)
{
    (void)gt;
    const dspec *t = ctx;
    if (nbytes != t->nbytes)
        return ar_fail(err, AR_EINVAL, "tensor %s: writer asks for %llu bytes, planned %llu", t->name,
                       (unsigned long long)nbytes, (unsigned long long)t->nbytes);
    fill_job j = { .t = t, .dst = dst, .row_bytes = ar_row_bytes(t->type, t->ne[0]) };
    atomic_init(&j.rc, AR_OK);
    ar_pool_run(t->mk->pool, fill_rows, &j);
    int rc = atomic_load(&j.rc);
    return rc ? ar_fail(err, rc, "tensor %s: quantizing to %s failed", t->name, ar_dtype_name(t->type)) : AR_OK;
}

/* ---- metadata --------------------------------------------------------------------------------------- */

static uint32_t file_type(int t)
{
    switch (t) {
    case AR_F32: return 0;  case AR_F16: return 1;   case AR_Q4_0: return 2; case AR_Q4_1: return 3;
    case AR_Q8_0: return 7; case AR_Q5_0: return 8;  case AR_Q5_1: return 9; case AR_Q4_K: return 15;
    case AR_Q5_K: return 17; case AR_Q6_K: return 18; case AR_BF16: return 32;
    default: return 1024;   /* LLAMA_FTYPE_GUESSED */
    }
}

typedef struct target_info {
    gguf_file *f;
    int64_t n_embd, n_layer, n_vocab;
} target_info;

static int open_target(const char *path, target_info *ti, ar_error *err)
{
    int rc = gguf_open(&ti->f, path, err);
    if (rc) return ar_error_prefix(err, "--target: ");
    gguf_str arch;
    ar_error e;
    if (gguf_get_str(ti->f, "general.architecture", &arch, &e) || !gguf_str_eq(arch, "qwen35"))
        return ar_fail(err, AR_EUNSUPPORTED, "--target %s: not a qwen35 model", path);
    uint32_t E = 0, bc = 0, nextn = 0;
    if (gguf_get_u32(ti->f, "qwen35.embedding_length", &E, &e) || gguf_get_u32(ti->f, "qwen35.block_count", &bc, &e))
        return ar_fail(err, AR_EFORMAT, "--target %s: %s", path, e.msg);
    gguf_get_u32_or(ti->f, "qwen35.nextn_predict_layers", 0, &nextn, &e);
    const gguf_kv *tok = gguf_find(ti->f, "tokenizer.ggml.tokens");
    const gguf_tensor *te = gguf_find_tensor(ti->f, "token_embd.weight");
    if (!tok || tok->type != GGUF_T_ARRAY || !te)
        return ar_fail(err, AR_EFORMAT, "--target %s: no tokenizer.ggml.tokens or token_embd.weight", path);
    ti->n_embd = E;
    ti->n_layer = (int64_t)bc - nextn;
    ti->n_vocab = te->ne[1];
    if (ti->n_layer < 1 || E < 1) return ar_fail(err, AR_EFORMAT, "--target %s: bad shape", path);
    return AR_OK;
}

static int set_llamacpp_keys(gguf_writer *w, const mkdraft_params *p, const target_info *ti, const int *hf, int n_tap,
                             int32_t mask)
{
    int rc = 0;
    rc |= gguf_set_str(w, "general.architecture", "dflash");
    rc |= gguf_set_u32(w, "dflash.context_length", (uint32_t)p->ctx);
    rc |= gguf_set_u32(w, "dflash.embedding_length", (uint32_t)ti->n_embd);
    rc |= gguf_set_u32(w, "dflash.block_count", (uint32_t)p->n_layer);
    rc |= gguf_set_u32(w, "dflash.feed_forward_length", (uint32_t)p->n_ff);
    rc |= gguf_set_u32(w, "dflash.attention.head_count", (uint32_t)p->n_head);
    rc |= gguf_set_u32(w, "dflash.attention.head_count_kv", (uint32_t)p->n_head_kv);
    rc |= gguf_set_u32(w, "dflash.attention.key_length", (uint32_t)p->head_dim);
    rc |= gguf_set_u32(w, "dflash.attention.value_length", (uint32_t)p->head_dim);
    rc |= gguf_set_f32(w, "dflash.attention.layer_norm_rms_epsilon", p->eps);
    rc |= gguf_set_f32(w, "dflash.rope.freq_base", p->rope_theta);
    rc |= gguf_set_u32(w, "dflash.rope.dimension_count", (uint32_t)p->head_dim);
    /* the target uses M-RoPE: the converter writes degenerate sections (temporal dim only) */
    int32_t sections[4] = { p->head_dim / 2, 0, 0, 0 };
    rc |= gguf_set_arr(w, "dflash.rope.dimension_sections", GGUF_T_INT32, sections, 4);
    int32_t tl[MKDRAFT_MAX_TAPS];
    for (int i = 0; i < n_tap; i++) tl[i] = hf[i] + 1;   /* "input of layer" convention */
    rc |= gguf_set_arr(w, "dflash.target_layers", GGUF_T_INT32, tl, (uint64_t)n_tap);
    rc |= gguf_set_u32(w, "dflash.block_size", (uint32_t)p->block_size);
    if (p->causal) rc |= gguf_set_bool(w, "dflash.attention.causal", true);
    if (p->swa_window > 0) {
        uint8_t pat[MKDRAFT_MAX_LAYERS];
        for (int i = 0; i < p->n_layer; i++) pat[i] = i < p->n_layer - 1;
        rc |= gguf_set_u32(w, "dflash.attention.sliding_window", (uint32_t)p->swa_window);
        rc |= gguf_set_arr(w, "dflash.attention.sliding_window_pattern", GGUF_T_BOOL, pat, (uint64_t)p->n_layer);
    }
    if (p->variant && !strcmp(p->variant, "dflash2")) {
        rc |= gguf_set_u32(w, "dflash.selector_rank", 8);
        rc |= gguf_set_u32(w, "dflash.selector_top_k", 4);
    }
    if (p->variant && !strcmp(p->variant, "dspark")) rc |= gguf_set_bool(w, "dflash.sample_from_anchor", false);
    /* tokenizer: every tokenizer.* key of the target, plus the mask token */
    for (int64_t i = 0; i < gguf_n_kv(ti->f); i++) {
        const gguf_kv *kv = gguf_kv_at(ti->f, i);
        if (kv->key.len > 10 && !memcmp(kv->key.ptr, "tokenizer.", 10)) rc |= gguf_set_kv(w, kv);
    }
    rc |= gguf_set_u32(w, "tokenizer.ggml.mask_token_id", (uint32_t)mask);
    return rc ? AR_ENOMEM : AR_OK;
}

static int set_lucebox_keys(gguf_writer *w, const mkdraft_params *p, const target_info *ti, const int *hf, int n_tap,
                            int32_t mask)
{
    const char *A = "qwen35-dflash-draft";
    char k[128];
    int rc = 0;
#define KEY(s) (snprintf(k, sizeof k, "%s.%s", A, s), k)
    rc |= gguf_set_str(w, "general.architecture", A);
    rc |= gguf_set_u32(w, KEY("embedding_length"), (uint32_t)ti->n_embd);
    rc |= gguf_set_u32(w, KEY("block_count"), (uint32_t)p->n_layer);
    rc |= gguf_set_u32(w, KEY("feed_forward_length"), (uint32_t)p->n_ff);
    rc |= gguf_set_u32(w, KEY("attention.head_count"), (uint32_t)p->n_head);
    rc |= gguf_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)p->n_head_kv);
    rc |= gguf_set_u32(w, KEY("attention.key_length"), (uint32_t)p->head_dim);
    rc |= gguf_set_u32(w, KEY("attention.value_length"), (uint32_t)p->head_dim);
    rc |= gguf_set_u32(w, KEY("vocab_size"), (uint32_t)ti->n_vocab);
    rc |= gguf_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), p->eps);
    rc |= gguf_set_f32(w, KEY("rope.freq_base"), p->rope_theta);
    rc |= gguf_set_u32(w, KEY("context_length"), (uint32_t)p->ctx);
    rc |= gguf_set_u32(w, KEY("dflash.n_target_layers"), (uint32_t)n_tap);
    rc |= gguf_set_u32(w, KEY("dflash.block_size"), (uint32_t)p->block_size);
    rc |= gguf_set_u32(w, KEY("dflash.mask_token_id"), (uint32_t)mask);
    int32_t ids[MKDRAFT_MAX_TAPS];
    for (int i = 0; i < n_tap; i++) ids[i] = hf[i];      /* HF convention: output of layer i */
    rc |= gguf_set_arr(w, KEY("dflash.target_layer_ids"), GGUF_T_INT32, ids, (uint64_t)n_tap);
    if (p->swa_window > 0) {
        uint8_t pat[MKDRAFT_MAX_LAYERS];
        for (int i = 0; i < p->n_layer; i++) pat[i] = i < p->n_layer - 1;
        rc |= gguf_set_u32(w, KEY("attention.sliding_window"), (uint32_t)p->swa_window);
        rc |= gguf_set_arr(w, KEY("attention.sliding_window_pattern"), GGUF_T_BOOL, pat, (uint64_t)p->n_layer);
    }
#undef KEY
    return rc ? AR_ENOMEM : AR_OK;
}

/* ---- write --------------------------------------------------------------------------------------- */

static int validate(const mkdraft_params *p, ar_error *err)
{
    struct { const char *name; int v, lo, hi; } r[] = {
        { "n_layer", p->n_layer, 1, MKDRAFT_MAX_LAYERS }, { "n_head", p->n_head, 1, 4096 },
        { "n_head_kv", p->n_head_kv, 1, 4096 }, { "head_dim", p->head_dim, 2, 4096 }, { "n_ff", p->n_ff, 1, 1 << 22 },
        { "block_size", p->block_size, 2, 1024 }, { "ctx", p->ctx, 1, 1 << 30 }, { "n_tap", p->n_tap, 0, MKDRAFT_MAX_TAPS },
        { "swa_window", p->swa_window, 0, 1 << 30 },
    };
    for (size_t i = 0; i < sizeof r / sizeof r[0]; i++)
        if (r[i].v < r[i].lo || r[i].v > r[i].hi)
            return ar_fail(err, AR_EINVAL, "%s = %d is out of range [%d, %d]", r[i].name, r[i].v, r[i].lo, r[i].hi);
    if (p->n_head % p->n_head_kv) return ar_fail(err, AR_EINVAL, "n_head %d is not a multiple of n_head_kv %d", p->n_head, p->n_head_kv);
    if (p->head_dim % 2) return ar_fail(err, AR_EINVAL, "head_dim %d must be even", p->head_dim);
    if (!(p->eps > 0) || !(p->rope_theta > 0)) return ar_fail(err, AR_EINVAL, "eps and rope_theta must be positive");
    if (!p->target) return ar_fail(err, AR_EINVAL, "a drafter needs --target TARGET.gguf");
    if (p->causal && p->layout == MKDRAFT_LUCEBOX)
        return ar_fail(err, AR_EINVAL, "--causal exists only in llama.cpp's layout (dflash.attention.causal)");
    if (p->variant && strcmp(p->variant, "dflash2") && strcmp(p->variant, "dspark"))
        return ar_fail(err, AR_EINVAL, "unknown variant '%s' (dflash2, dspark)", p->variant);
    const ar_dtype_info *info = ar_dtype_get(p->type);
    if (!info || !(is_float_type(p->type) || info->quant) || p->type == AR_Q8_1 || p->type == AR_Q8_K)
        return ar_fail(err, AR_EINVAL, "weight type %s cannot be written", ar_dtype_name(p->type));
    return AR_OK;
}

int mkdraft_write(const mkdraft_params *p, const char *path, ar_pool *pool, ar_error *err)
{
    int rc = validate(p, err);
    if (rc) return rc;
    struct stat sb;
    if (stat(path, &sb) == 0 && !S_ISREG(sb.st_mode))
        return ar_fail(err, AR_EINVAL, "%s exists and is not a regular file", path);

    target_info ti = { 0 };
    mk m = { .p = p, .pool = pool };
    gguf_writer *w = NULL;
    if ((rc = open_target(p->target, &ti, err))) goto done;

    int hf[MKDRAFT_MAX_TAPS], n_tap = p->n_tap;
    if (n_tap > 0) memcpy(hf, p->target_layers, (size_t)n_tap * sizeof(int));
    else n_tap = default_taps(p, (int)ti.n_layer, hf);
    for (int i = 0; i < n_tap; i++)
        if (hf[i] < 0 || hf[i] >= ti.n_layer) {
            rc = ar_fail(err, AR_EINVAL, "target layer %d (HF id: output of that layer) does not exist in the %lld-layer "
                         "target", hf[i], (long long)ti.n_layer);
            goto done;
        }
    int32_t mask = p->mask_token >= 0 ? p->mask_token : ti.n_vocab > QWEN_MASK_TOKEN ? QWEN_MASK_TOKEN : (int32_t)ti.n_vocab - 1;
    if (mask >= ti.n_vocab) {
        rc = ar_fail(err, AR_EINVAL, "mask token %d is outside the target vocabulary (%lld)", mask, (long long)ti.n_vocab);
        goto done;
    }

    w = gguf_writer_create();
    if (!w) { rc = ar_fail(err, AR_ENOMEM, "out of memory"); goto done; }
    char name[96];
    snprintf(name, sizeof name, "arbor-synthetic-dflash-%s", p->preset[0] ? p->preset : "custom");
    rc = gguf_set_str(w, "general.name", p->name ? p->name : name) | gguf_set_u32(w, "general.file_type", file_type(p->type));
    if (!rc) rc = p->layout == MKDRAFT_LUCEBOX ? set_lucebox_keys(w, p, &ti, hf, n_tap, mask)
                                                : set_llamacpp_keys(w, p, &ti, hf, n_tap, mask);
    if (!rc && !is_float_type(p->type)) rc = gguf_set_u32(w, "general.quantization_version", 2);
    if (rc) { rc = ar_fail(err, rc, "setting metadata"); goto done; }

    if ((rc = plan(&m, ti.n_embd, n_tap, ti.n_vocab))) { rc = ar_fail(err, rc, "out of memory"); goto done; }
    m.scratch = malloc((size_t)ar_pool_size(pool) * (size_t)m.max_ne0 * sizeof(float));
    if (!m.scratch) { rc = ar_fail(err, AR_ENOMEM, "out of memory"); goto done; }
    int64_t n_params = 0;
    for (int i = 0; i < m.n_ts; i++) {
        dspec *t = &m.ts[i];
        if ((rc = gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, NULL, fill_tensor, t))) {
            rc = ar_fail(err, rc, "tensor %s: invalid shape [%lld, %lld] for %s", t->name, (long long)t->ne[0],
                         (long long)t->ne[1], ar_dtype_name(t->type));
            goto done;
        }
        n_params += t->ne[0] * t->ne[1];
    }
    if (m.n_fallback && !p->quiet)
        ar_log(AR_LOG_WARN, "mkdraft: %d tensor(s) with rows not a multiple of the %s block size are F16", m.n_fallback,
               ar_dtype_name(p->type));
    if ((rc = gguf_writer_write(w, path, err))) goto done;
    if (!p->quiet) {
        char taps[256] = "";
        for (int i = 0; i < n_tap && strlen(taps) + 12 < sizeof taps; i++)
            snprintf(taps + strlen(taps), sizeof taps - strlen(taps), "%s%d", i ? "," : "", hf[i]);
        ar_log(AR_LOG_INFO, "mkdraft: wrote %s: %s layout, %.2f M params, %d layers, taps (HF ids) [%s], block %d, mask %d, %s",
               path, p->layout == MKDRAFT_LUCEBOX ? "Lucebox" : "llama.cpp", (double)n_params / 1e6, p->n_layer, taps,
               p->block_size, mask, ar_dtype_name(p->type));
    }
done:
    gguf_writer_free(w);
    gguf_close(ti.f);
    free(m.ts);
    free(m.scratch);
    return rc;
}
