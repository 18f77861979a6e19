/* format/quantize_model.c — whole-model quantization with llama.cpp's type mixes.
 *
 * Owns: the file-type table, the per-tensor type decision (a faithful re-statement of
 * llama.cpp src/llama-quant.cpp: tensor_allows_quantization, llama_tensor_get_type_impl and
 * tensor_type_fallback, for the file types offered here), and the streaming conversion.
 *
 * Invariants: tensors are visited in llama.cpp's order (by layer number, then name), because the
 * mixes count attn_v/attn_qkv and ffn_down tensors in that order (use_more_bits), and the output
 * file lists them in that order too. Tensor data is byte-identical to llama-quantize's output
 * without an importance matrix (format/quant.c and quant_encode.c are bit-exact with ggml), and
 * with the metadata rewritten in llama.cpp's key order the whole file is identical as well.
 *
 * Data flow: gguf_open -> ar_quantize_plan (types) -> writer gets the metadata (all keys but
 * file type / quantization version / split keys, which are re-added last, as llama.cpp does) and
 * the tensors, each with a fill callback: unchanged ones are copied, converted ones run row slabs
 * on the thread pool (each thread: dequantize a row to F32, quantize it); then the tensor's input
 * pages are released, so memory stays at about one tensor (the writer's buffer). */
#include "format/quantize_model.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/pool.h"
#include "format/quant.h"

/* llama.cpp's llama_ftype numbers for the offered file types. */
enum {
    FT_ALL_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14, FT_Q4_K_M = 15,
    FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_IQ4_NL = 25, FT_IQ4_XS = 30, FT_BF16 = 32,
};

static const ar_ftype_info ftypes[] = {
    { "f32",    FT_ALL_F32, AR_F32 },    { "f16",    FT_F16,    AR_F16 },
    { "bf16",   FT_BF16,    AR_BF16 },   { "q8_0",   FT_Q8_0,   AR_Q8_0 },
    { "q4_0",   FT_Q4_0,    AR_Q4_0 },   { "q4_1",   FT_Q4_1,   AR_Q4_1 },
    { "q5_0",   FT_Q5_0,    AR_Q5_0 },   { "q5_1",   FT_Q5_1,   AR_Q5_1 },
    { "q2_k",   FT_Q2_K,    AR_Q2_K },   { "q3_k_s", FT_Q3_K_S, AR_Q3_K },
    { "q3_k_m", FT_Q3_K_M,  AR_Q3_K },   { "q3_k_l", FT_Q3_K_L, AR_Q3_K },
    { "q4_k_s", FT_Q4_K_S,  AR_Q4_K },   { "q4_k_m", FT_Q4_K_M, AR_Q4_K },
    { "q5_k_s", FT_Q5_K_S,  AR_Q5_K },   { "q5_k_m", FT_Q5_K_M, AR_Q5_K },
    { "q6_k",   FT_Q6_K,    AR_Q6_K },   { "iq4_nl", FT_IQ4_NL, AR_IQ4_NL },
    { "iq4_xs", FT_IQ4_XS,  AR_IQ4_XS },
};
#define N_FTYPES (sizeof ftypes / sizeof ftypes[0])

#define QUANTIZATION_VERSION 2   /* ggml's GGML_QNT_VERSION */
#define MAX_LAYERS 512           /* llama.cpp's LLAMA_MAX_LAYERS */
#define SLAB_ELEMS (1 << 22)     /* elements per pool run: bounds the progress step and latency */

const ar_ftype_info *ar_ftype_find(const char *name)
{
    for (size_t i = 0; name && i < N_FTYPES; i++)
        if (!strcasecmp(ftypes[i].name, name)) return &ftypes[i];
    return NULL;
}

const char *ar_ftype_list(void)
{
    return "f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, q2_k, q3_k_s, q3_k_m, q3_k_l, q4_k_s, q4_k_m, "
           "q5_k_s, q5_k_m, q6_k, iq4_nl, iq4_xs";
}

/* ---- the type decision -------------------------------------------------------------------- */

typedef enum {
    CAT_TOKEN_EMBD, CAT_ATTN_Q, CAT_ATTN_V, CAT_ATTN_K, CAT_ATTN_QKV, CAT_ATTN_KV_B, CAT_ATTN_OUTPUT,
    CAT_FFN_UP, CAT_FFN_GATE, CAT_FFN_DOWN, CAT_OUTPUT, CAT_OTHER
} category;

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

static category tensor_category(const char *name)
{
    if (!strcmp(name, "output.weight")) return CAT_OUTPUT;
    if (!strcmp(name, "token_embd.weight") || !strcmp(name, "per_layer_token_embd.weight")) return CAT_TOKEN_EMBD;
    if (has(name, "attn_qkv.weight")) return CAT_ATTN_QKV;
    if (has(name, "attn_kv_b.weight")) return CAT_ATTN_KV_B;
    if (has(name, "attn_v.weight")) return CAT_ATTN_V;
    if (has(name, "attn_k.weight")) return CAT_ATTN_K;
    if (has(name, "attn_q.weight")) return CAT_ATTN_Q;
    if (has(name, "attn_output.weight")) return CAT_ATTN_OUTPUT;
    if (has(name, "ffn_up")) return CAT_FFN_UP;
    if (has(name, "ffn_gate")) return CAT_FFN_GATE;
    if (has(name, "ffn_down")) return CAT_FFN_DOWN;
    return CAT_OTHER;
}

/* attn_v-like tensors share one counter (i_attention_wv) and one rule set. */
static bool cat_is_attn_v(category c) { return c == CAT_ATTN_V || c == CAT_ATTN_QKV || c == CAT_ATTN_KV_B; }

/* ggml_n_dims: trailing dimensions of size 1 do not count. */
static int n_dims_eff(const gguf_tensor *t)
{
    for (int i = GGUF_MAX_DIMS - 1; i >= 1; i--)
        if (t->ne[i] > 1) return i + 1;
    return 1;
}

/* tensor_allows_quantization: 2-D+ tensors named *weight, minus the exclusions llama.cpp keeps
 * in their type (norms, conv1d, routers, small per-arch tables). */
static bool allows_quantization(const gguf_tensor *t)
{
    if (n_dims_eff(t) < 2) return false;
    const char *name = t->name;
    size_t len = strlen(name);
    /* llama.cpp tests name.rfind("weight") == size - 6, which (size_t wrap-around) also holds for
     * any 5-character name; kept for identical decisions. */
    bool q = len == 5 || (len >= 6 && !strcmp(name + len - 6, "weight"));
    static const char *const excluded[] = {
        "_norm.weight", "ffn_gate_inp.weight", "ffn_gate_tid2eid.weight", "altup", "laurel",
        "per_layer_model_proj", "ssm_conv1d", "shortconv.conv.weight", "indexer.k_proj.weight",
        "indexer.q_proj.weight", "time_mix_first.weight", "time_mix_w0.weight", "time_mix_w1.weight",
        "time_mix_w2.weight", "time_mix_v0.weight", "time_mix_v1.weight", "time_mix_v2.weight",
        "time_mix_a0.weight", "time_mix_a1.weight", "time_mix_a2.weight", "time_mix_g1.weight",
        "time_mix_g2.weight", "time_mix_decay_w1.weight", "time_mix_decay_w2.weight",
        "time_mix_lerp_fused.weight", "attn_rel_b.weight", ".position_embd", "sam.pos_embd", "sam.neck.",
        "sam.net_", ".rel_pos", ".patch_embd", ".patch_merger", "a.rvq.codebook", "mm.a.code_embd",
    };
    for (size_t i = 0; q && i < sizeof excluded / sizeof excluded[0]; i++)
        if (has(name, excluded[i])) q = false;
    if (!strcmp(name, "position_embd.weight") || !strcmp(name, "token_types.weight")) q = false;
    return q;
}

typedef struct plan_state {
    int ftype;                 /* llama_ftype */
    bool falcon, is_70b, tied;
    int n_expert, n_gqa;
    int n_attention_wv, i_attention_wv;
    int n_layer, i_ffn_down, i_ffn_gate, i_ffn_up;
} plan_state;

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* layer_info: the running counter, or (MoE) the layer number parsed from the name. */
static int layer_of(const plan_state *s, int counter, const char *name, ar_error *err, int *layer)
{
    *layer = counter;
    if (s->n_expert > 1) {
        if (sscanf(name, "blk.%d.", layer) != 1)
            return ar_fail(err, AR_EFORMAT, "tensor '%s': cannot determine its layer", name);
        if (*layer < 0 || *layer >= s->n_layer)
            return ar_fail(err, AR_EFORMAT, "tensor '%s': layer %d is outside [0, %d)", name, *layer, s->n_layer);
    }
    return AR_OK;
}

/* llama_tensor_get_type_impl, restricted to the file types offered (the IQ1/IQ2/IQ3/TQ/MXFP4
 * branches of llama.cpp cannot be reached from them). */
static int mix_type(plan_state *s, int type, const gguf_tensor *t, category cat, ar_error *err)
{
    const int ft = s->ftype;
    int layer, rc;
    if (cat == CAT_OUTPUT || (s->tied && cat == CAT_TOKEN_EMBD)) {
        const ar_dtype_info *di = ar_dtype_get(type);
        if (s->falcon || t->ne[0] % di->block_elems) type = AR_Q8_0;
        else if (type != AR_Q8_0) type = AR_Q6_K;
    } else if (cat == CAT_TOKEN_EMBD) {
        /* only IQ1/IQ2/IQ3/TQ/Q2_0 file types change an untied token_embd */
    } else if (cat_is_attn_v(cat)) {
        if (ft == FT_Q2_K) type = s->n_gqa >= 4 ? AR_Q4_K : AR_Q3_K;
        else if (ft == FT_Q3_K_M) type = s->i_attention_wv < 2 ? AR_Q5_K : AR_Q4_K;
        else if (ft == FT_Q3_K_L) type = AR_Q5_K;
        else if ((ft == FT_IQ4_NL || ft == FT_IQ4_XS) && s->n_gqa >= 4) type = AR_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(s->i_attention_wv, s->n_attention_wv)) type = AR_Q6_K;
        else if (ft == FT_Q4_K_S && s->i_attention_wv < 4) type = AR_Q5_K;
        if (s->is_70b && (type == AR_Q3_K || type == AR_Q4_K)) type = AR_Q5_K;
        if (s->n_expert == 8) type = AR_Q8_0;
        s->i_attention_wv++;
    } else if (cat == CAT_ATTN_K) {
        if (s->n_expert == 8) type = AR_Q8_0;
    } else if (cat == CAT_ATTN_Q) {
        /* only IQ3 file types */
    } else if (cat == CAT_FFN_DOWN) {
        if ((rc = layer_of(s, s->i_ffn_down, t->name, err, &layer))) return rc;
        const int n = s->n_layer;
        if (ft == FT_Q2_K) type = AR_Q3_K;
        else if (ft == FT_Q3_K_M)
            type = layer < n / 16 ? AR_Q5_K : (!s->falcon || use_more_bits(layer, n)) ? AR_Q4_K : AR_Q3_K;
        else if (ft == FT_Q3_K_L) type = s->falcon ? AR_Q4_K : AR_Q5_K;
        else if (ft == FT_Q4_K_M) {
            if (s->falcon) type = layer < n / 16 ? AR_Q6_K : use_more_bits(layer, n) ? AR_Q5_K : AR_Q4_K;
            else if (use_more_bits(layer, n)) type = AR_Q6_K;
        } else if (layer < n / 8 && (ft == FT_IQ4_NL || ft == FT_IQ4_XS)) type = AR_Q5_K;  /* no imatrix */
        else if (ft == FT_Q5_K_M && use_more_bits(layer, n)) type = AR_Q6_K;
        else if (ft == FT_Q4_K_S && !s->falcon && layer < n / 8) type = AR_Q5_K;
        s->i_ffn_down++;
    } else if (cat == CAT_ATTN_OUTPUT) {
        if (!s->falcon) {
            if (s->n_expert == 8) {
                if (ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_IQ4_NL || ft == FT_Q4_K_S ||
                    ft == FT_Q4_K_M || ft == FT_IQ4_XS)
                    type = AR_Q5_K;
            } else {
                if (ft == FT_Q2_K) type = AR_Q3_K;
                else if (ft == FT_Q3_K_M) type = AR_Q4_K;
                else if (ft == FT_Q3_K_L) type = AR_Q5_K;
            }
        } else if (ft == FT_Q3_K_L) {
            type = AR_Q4_K;
        }
    } else if (cat == CAT_FFN_GATE) {
        if ((rc = layer_of(s, s->i_ffn_gate, t->name, err, &layer))) return rc;
        s->i_ffn_gate++;
    } else if (cat == CAT_FFN_UP) {
        if ((rc = layer_of(s, s->i_ffn_up, t->name, err, &layer))) return rc;
        s->i_ffn_up++;
    }
    /* (llama.cpp's separate ATTENTION_QKV branch is unreachable: attn_qkv is attn_v-like above) */
    return type;
}

/* tensor_type_fallback: a row length the type's block does not divide gets a 32-wide type,
 * or F16 when even that does not fit. */
static int fallback_type(const gguf_tensor *t, int type, ar_error *err)
{
    const int64_t ncols = t->ne[0];
    const int64_t blck = ar_dtype_get(type)->block_elems;
    if (ncols % blck == 0) return type;
    int ret;
    switch (type) {
    case AR_IQ4_XS: ret = AR_IQ4_NL; break;
    case AR_Q2_K: case AR_Q3_K: ret = AR_Q4_0; break;
    case AR_Q4_K: ret = AR_Q5_0; break;
    case AR_Q5_K: ret = AR_Q5_1; break;
    case AR_Q6_K: ret = AR_Q8_0; break;
    default:
        if (blck > 32)
            return ar_fail(err, AR_EUNSUPPORTED, "tensor '%s': no fallback type is defined for %s", t->name, ar_dtype_name(type));
        ret = type;
    }
    if (ncols % ar_dtype_get(ret)->block_elems) ret = AR_F16;
    ar_log(AR_LOG_DEBUG, "%s: row length %" PRId64 " is not a multiple of %" PRId64 " (%s): using %s", t->name, ncols,
           blck, ar_dtype_name(type), ar_dtype_name(ret));
    return ret;
}

static int read_hparams(const gguf_file *f, plan_state *s, ar_error *err)
{
    gguf_str arch;
    int rc = gguf_get_str(f, "general.architecture", &arch, err);
    if (rc) return rc;
    char key[160], a[96];
    snprintf(a, sizeof a, "%.*s", (int)(arch.len < 64 ? arch.len : 64), arch.ptr);
    uint32_t u;
    snprintf(key, sizeof key, "%s.block_count", a);
    if ((rc = gguf_get_u32(f, key, &u, err))) return rc;
    if (u == 0 || u > MAX_LAYERS) return ar_fail(err, AR_EFORMAT, "%s: %s = %u is outside 1..%d", gguf_path(f), key, u, MAX_LAYERS);
    s->n_layer = (int)u;
    snprintf(key, sizeof key, "%s.expert_count", a);
    if ((rc = gguf_get_u32_or(f, key, 0, &u, err))) return rc;
    s->n_expert = (int)u;
    /* n_gqa of layer 0 = n_head / n_head_kv (0 when n_head_kv is 0), both scalar or per layer */
    int64_t v[MAX_LAYERS];
    size_t n = 0;
    int64_t n_head = 0, n_head_kv;
    snprintf(key, sizeof key, "%s.attention.head_count", a);
    if (gguf_find(f, key)) {
        if ((rc = gguf_get_ints(f, key, v, MAX_LAYERS, &n, err))) return rc;
        n_head = n ? v[0] : 0;
    }
    n_head_kv = n_head;
    snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
    if (gguf_find(f, key)) {
        if ((rc = gguf_get_ints(f, key, v, MAX_LAYERS, &n, err))) return rc;
        n_head_kv = n ? v[0] : 0;
    }
    s->n_gqa = n_head_kv > 0 ? (int)(n_head / n_head_kv) : 0;
    s->falcon = !strcmp(a, "falcon");
    s->is_70b = !strcmp(a, "llama") && s->n_layer == 80 && n_head != n_head_kv;
    return AR_OK;
}

/* llama_model_loader's weight order: by layer number (-1 for non-layer tensors), then by name. */
static int tensor_layer(const char *name)
{
    int layer = -1;
    if (sscanf(name, "blk.%d.", &layer) != 1) layer = -1;
    return layer;
}

static const gguf_file *sort_file;

static int cmp_tensors(const void *pa, const void *pb)
{
    const char *a = gguf_tensor_at(sort_file, *(const int64_t *)pa)->name;
    const char *b = gguf_tensor_at(sort_file, *(const int64_t *)pb)->name;
    int la = tensor_layer(a), lb = tensor_layer(b);
    if (la != lb) return la < lb ? -1 : 1;
    return strcmp(a, b);
}

/* The visiting order (indexes into f), allocated. qsort's comparator has no context argument,
 * hence the file-static; callers are serialized by the mutex. */
static pthread_mutex_t sort_mu = PTHREAD_MUTEX_INITIALIZER;

static int64_t *tensor_order(const gguf_file *f)
{
    int64_t n = gguf_n_tensors(f);
    int64_t *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    if (!order) return NULL;
    for (int64_t i = 0; i < n; i++) order[i] = i;
    pthread_mutex_lock(&sort_mu);
    sort_file = f;
    qsort(order, (size_t)n, sizeof *order, cmp_tensors);
    pthread_mutex_unlock(&sort_mu);
    return order;
}

static bool is_quantized(int type) { const ar_dtype_info *d = ar_dtype_get(type); return d && d->block_elems > 1; }

static int plan_ordered(const gguf_file *f, const ar_ftype_info *ft, const int64_t *order, int *types, ar_error *err)
{
    plan_state s = { .ftype = ft->file_type, .tied = true };
    int rc = is_quantized(ft->default_type) ? read_hparams(f, &s, err) : AR_OK;
    if (rc) return rc;
    const int64_t n = gguf_n_tensors(f);
    for (int64_t i = 0; i < n; i++) {
        category c = tensor_category(gguf_tensor_at(f, i)->name);
        if (cat_is_attn_v(c)) s.n_attention_wv++;
        if (c == CAT_OUTPUT) s.tied = false;
    }
    for (int64_t k = 0; k < n; k++) {
        const gguf_tensor *t = gguf_tensor_at(f, order[k]);
        int type = t->type;
        if (allows_quantization(t)) {
            type = ft->default_type;
            if (is_quantized(type)) {
                if ((type = mix_type(&s, type, t, tensor_category(t->name), err)) < 0) return type;
                if ((type = fallback_type(t, type, err)) < 0) return type;
            }
        }
        types[order[k]] = type;
    }
    return AR_OK;
}

int ar_quantize_plan(const gguf_file *f, const ar_ftype_info *ft, int *types, ar_error *err)
{
    int64_t *order = tensor_order(f);
    if (!order) return ar_fail(err, AR_ENOMEM, "out of memory");
    int rc = plan_ordered(f, ft, order, types, err);
    free(order);
    return rc;
}

/* ---- streaming conversion ----------------------------------------------------------------- */

typedef struct quant_run {
    ar_pool *pool;
    float *scratch;            /* n_threads rows of max_row floats */
    int64_t max_row;
    unsigned long long done, total;   /* converted elements, for the progress line */
} quant_run;

typedef struct tensor_job {
    quant_run *run;
    const gguf_tensor *src;
    int type;
} tensor_job;

typedef struct slab {
    const tensor_job *job;
    uint8_t *dst;
    int64_t row0, nrows;
} slab;

static void convert_rows(void *ctx, int ith, int nth)
{
    const slab *sl = ctx;
    const gguf_tensor *src = sl->job->src;
    const int64_t n = src->ne[0];
    const size_t in_rb = ar_row_bytes(src->type, n), out_rb = ar_row_bytes(sl->job->type, n);
    float *row = sl->job->run->scratch + (size_t)ith * (size_t)sl->job->run->max_row;
    long lo, hi;
    ar_split_range((long)sl->nrows, 1, ith, nth, &lo, &hi);
    for (int64_t r = sl->row0 + lo; r < sl->row0 + hi; r++) {
        const uint8_t *in = (const uint8_t *)src->data + (size_t)r * in_rb;
        ar_dequantize_row(src->type, in, row, n);   /* F32 too: a copy, which also aligns the row */
        ar_quantize_row(sl->job->type, row, sl->dst + (size_t)r * out_rb, n);
    }
}

/* Drop a finished tensor's input pages from this process, as llama.cpp unmaps each weight, so the
 * resident set stays near one tensor instead of growing to the whole input. gguf_open maps files
 * read-only (PROT_READ, MAP_PRIVATE): there MADV_DONTNEED only drops the mapping and a later access
 * reads the file again, so rounding out to whole pages (touching neighbours) is harmless. */
static void release_input(const gguf_tensor *t)
{
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    if (!t->nbytes || !page) return;
    uintptr_t lo = (uintptr_t)t->data & ~(page - 1);
    uintptr_t hi = ((uintptr_t)t->data + (uintptr_t)t->nbytes + page - 1) & ~(page - 1);
    madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static int fill_tensor(void *ctx, const gguf_tensor *t, void *dst, uint64_t nbytes, ar_error *err)
{
    const tensor_job *job = ctx;
    const gguf_tensor *src = job->src;
    const int64_t n = src->ne[0], nrows = src->n_elements / n;
    if ((uint64_t)nrows * ar_row_bytes(job->type, n) != nbytes)
        return ar_fail(err, AR_EINVAL, "internal: %s needs %" PRIu64 " bytes as %s, the writer gives %" PRIu64, t->name,
                       (uint64_t)nrows * ar_row_bytes(job->type, n), ar_dtype_name(job->type), nbytes);
    int64_t slab_rows = SLAB_ELEMS / n > 0 ? SLAB_ELEMS / n : 1;
    for (int64_t r = 0; r < nrows; r += slab_rows) {
        slab sl = { job, dst, r, nrows - r < slab_rows ? nrows - r : slab_rows };
        ar_pool_run(job->run->pool, convert_rows, &sl);
        job->run->done += (unsigned long long)(sl.nrows * n);
        ar_progress("quantizing", job->run->done, job->run->total);
    }
    release_input(src);
    return AR_OK;
}

/* Unchanged tensors go through a buffer too, so their input pages can be released. */
static int copy_tensor(void *ctx, const gguf_tensor *t, void *dst, uint64_t nbytes, ar_error *err)
{
    const tensor_job *job = ctx;
    if (nbytes != job->src->nbytes)
        return ar_fail(err, AR_EINVAL, "internal: %s has %" PRIu64 " bytes, the writer gives %" PRIu64, t->name,
                       job->src->nbytes, nbytes);
    memcpy(dst, job->src->data, nbytes);
    release_input(job->src);
    return AR_OK;
}

/* Keys llama.cpp drops from the copied metadata and writes itself (or, for splits, not at all). */
static bool rewritten_key(gguf_str key)
{
    return gguf_str_eq(key, "general.quantization_version") || gguf_str_eq(key, "general.file_type") ||
           gguf_str_eq(key, "split.no") || gguf_str_eq(key, "split.count") || gguf_str_eq(key, "split.tensors.count");
}

static int build_writer(gguf_writer *w, const gguf_file *f, const ar_ftype_info *ft, const int64_t *order,
                        const int *types, tensor_job *jobs, quant_run *run, ar_error *err)
{
    int rc = AR_OK;
    for (int64_t i = 0; i < gguf_n_kv(f) && !rc; i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        if (!rewritten_key(kv->key)) rc = gguf_set_kv(w, kv);
    }
    if (!rc) rc = gguf_set_u32(w, "general.quantization_version", QUANTIZATION_VERSION);
    if (!rc) rc = gguf_set_u32(w, "general.file_type", (uint32_t)ft->file_type);
    if (rc) return ar_fail(err, rc, "cannot copy the metadata of %s", gguf_path(f));
    for (int64_t k = 0; k < gguf_n_tensors(f); k++) {
        const gguf_tensor *t = gguf_tensor_at(f, order[k]);
        const int type = types[order[k]];
        tensor_job *job = &jobs[order[k]];
        *job = (tensor_job){ run, t, type };
        if (type == t->type) {
            rc = gguf_add_tensor(w, t->name, type, n_dims_eff(t), t->ne, NULL, copy_tensor, job);
        } else {
            rc = gguf_add_tensor(w, t->name, type, n_dims_eff(t), t->ne, NULL, fill_tensor, job);
            run->total += (unsigned long long)t->n_elements;
            if (t->ne[0] > run->max_row) run->max_row = t->ne[0];
        }
        if (rc) return ar_fail(err, rc, "tensor '%s': the writer refuses shape/type %s", t->name, ar_dtype_name(type));
    }
    return AR_OK;
}

/* Every tensor that changes type must be readable and its new type writable. */
static int check_convertible(const gguf_file *f, const int *types, ar_error *err)
{
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (types[i] == t->type) continue;
        const ar_dtype_info *in = ar_dtype_get(t->type), *out = ar_dtype_get(types[i]);
        if (!in || !in->dequant)
            return ar_fail(err, AR_EUNSUPPORTED, "tensor '%s' has type %s, which arbor cannot convert (it reads: %s)",
                           t->name, ar_dtype_name(t->type), ar_dtype_supported_list());
        if (!out || !out->quant)
            return ar_fail(err, AR_EUNSUPPORTED, "tensor '%s': arbor cannot quantize to %s", t->name, ar_dtype_name(types[i]));
    }
    return AR_OK;
}

int ar_quantize_model(const char *in, const char *out, const char *ftype, int n_threads, ar_error *err)
{
    const ar_ftype_info *ft = ar_ftype_find(ftype);
    if (!ft) return ar_fail(err, AR_EINVAL, "unknown quantization type '%s' (valid: %s)", ftype ? ftype : "", ar_ftype_list());
    gguf_file *f = NULL;
    int rc = gguf_open(&f, in, err);
    if (rc) return rc;
    const int64_t n = gguf_n_tensors(f);
    int64_t *order = tensor_order(f);
    int *types = malloc((size_t)(n ? n : 1) * sizeof *types);
    tensor_job *jobs = malloc((size_t)(n ? n : 1) * sizeof *jobs);
    gguf_writer *w = gguf_writer_create();
    quant_run run = { 0 };
    if (!order || !types || !jobs || !w) rc = ar_fail(err, AR_ENOMEM, "out of memory");
    if (!rc) rc = plan_ordered(f, ft, order, types, err);
    if (!rc) rc = check_convertible(f, types, err);
    if (!rc) rc = build_writer(w, f, ft, order, types, jobs, &run, err);
    if (!rc && !(run.pool = ar_pool_create(n_threads))) rc = ar_fail(err, AR_ENOMEM, "cannot start the thread pool");
    if (!rc) {
        size_t nth = (size_t)ar_pool_size(run.pool);
        run.scratch = malloc(nth * (size_t)(run.max_row ? run.max_row : 1) * sizeof(float));
        if (!run.scratch) rc = ar_fail(err, AR_ENOMEM, "out of memory for %zu rows of %" PRId64 " floats", nth, run.max_row);
    }
    if (!rc) {
        ar_log(AR_LOG_INFO, "quantizing %s -> %s as %s (%" PRId64 " tensors, %d threads)", in, out, ft->name, n,
               ar_pool_size(run.pool));
        rc = gguf_writer_write(w, out, err);
        if (!rc && run.total == 0) ar_progress("quantizing", 1, 1);
    }
    if (rc && err) ar_error_prefix(err, "quantize %s: ", in);
    ar_pool_free(run.pool);
    free(run.scratch);
    gguf_writer_free(w);
    free(jobs);
    free(types);
    free(order);
    gguf_close(f);
    return rc;
}
