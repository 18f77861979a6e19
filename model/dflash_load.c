/* model/dflash_load.c — open a DFlash drafter GGUF in either layout and bind it to its target.
 *
 * The two layouts differ only in names and conventions (specs/dflash.md §2.1-2.3):
 *                     llama.cpp (arch dflash)            Lucebox (arch [qwen35-]dflash-draft)
 *   key prefix        dflash.                            <arch>.  and  <arch>.dflash.
 *   fc / hidden norm  fc.weight / enc.output_norm.weight  dflash.fc.weight / dflash.hidden_norm.weight
 *                                                        (or dflash_fc / dflash_hidden_norm)
 *   tap layers        dflash.target_layers = HF id + 1   <arch>.dflash.target_layer_ids = HF ids
 *                     (input of layer)                   (output of layer; absent -> 1 + k*((N-2)/(L-1)))
 *   mask token        tokenizer.ggml.mask_token_id        <arch>.dflash.mask_token_id (absent -> 248070)
 *   ffn norm          blk.N.ffn_norm                     blk.N.ffn_norm or blk.N.post_attention_norm
 *   rope              NeoX, or M-RoPE sections [n/2,0,0,0] NeoX, full head dim
 * Both become one dflash_model with tap layers in llama.cpp's convention. Every problem found is
 * reported in one message. Tensors of drafter families arbor does not run (DFlash2, DSpark, Domino,
 * reduced vocab, Gemma/Laguna extras) are refused by name rather than silently ignored. */
#include "model/dflash_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "format/quant.h"
#include "model/qwen35_impl.h"   /* the target's token_embd / output views (read only) */

#define LUCEBOX_QWEN_MASK 248070  /* lucebox hardcodes the Qwen3.5/3.6 mask id for qwen35 targets */

/* ---- problem collection -------------------------------------------------------------------- */

typedef struct {
    const gguf_file *f;
    char text[3000];
    size_t len;
    int n, code;
} problems;

static void problem(problems *p, int code, const char *fmt, ...)
{
    p->n++;
    if (p->code == AR_OK || code == AR_EFORMAT) p->code = code;
    if (p->len + 8 >= sizeof p->text) return;
    if (p->len) p->len += (size_t)snprintf(p->text + p->len, sizeof p->text - p->len, "; ");
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(p->text + p->len, sizeof p->text - p->len, fmt, ap);
    va_end(ap);
    if (w > 0) p->len += (size_t)w;
    if (p->len >= sizeof p->text) p->len = sizeof p->text - 1;
}

/* ---- layout detection ------------------------------------------------------------------------- */

enum layout { L_NONE, L_LLAMACPP, L_LUCEBOX };

static bool has_tensor_prefix(const gguf_file *f, const char *prefix)
{
    size_t n = strlen(prefix);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++)
        if (!strncmp(gguf_tensor_at(f, i)->name, prefix, n)) return true;
    return false;
}

/* A drafter family arbor recognises but does not run: a static description, else NULL. */
static const char *unsupported_family(const gguf_file *f, const char *prefix)
{
    char key[160];
    char key2[160];
    snprintf(key, sizeof key, "%s.selector_rank", prefix);
    snprintf(key2, sizeof key2, "%s.conv_kernel_size", prefix);
    if (gguf_find_tensor(f, "selector_hidden.weight") || gguf_find_tensor(f, "blk.0.attn_conv_base") ||
        gguf_find(f, key) || gguf_find(f, key2))
        return "a DFlash2 drafter (selector_hidden / per-layer conv heads)";
    snprintf(key, sizeof key, "%s.sample_from_anchor", prefix);
    snprintf(key2, sizeof key2, "%s.has_confidence_head", prefix);
    if (gguf_find_tensor(f, "markov_w1.weight") || gguf_find(f, key) || gguf_find(f, key2))
        return "a DSpark drafter (Markov / confidence heads)";
    snprintf(key, sizeof key, "%s.hyper_connection.count", prefix);
    if (gguf_find(f, key) || gguf_find_tensor(f, "hc_head_fn.weight"))
        return "a DeepSeek-V4 DSpark drafter (hyper-connections, MLA, MoE)";
    if (has_tensor_prefix(f, "dflash.domino.")) return "a Lucebox Domino drafter (GRU correction head)";
    if (has_tensor_prefix(f, "dflash.dspark.")) return "a Lucebox DSpark drafter (auxiliary heads)";
    return NULL;
}

static enum layout detect(const gguf_file *f, gguf_str *arch_out)
{
    gguf_str arch = { 0, "" };
    const gguf_kv *kv = gguf_find(f, "general.architecture");
    if (!kv || kv->type != GGUF_T_STRING) return L_NONE;
    arch = kv->v.str;
    if (arch_out) *arch_out = arch;
    if (gguf_str_eq(arch, "dflash")) return L_LLAMACPP;
    if (gguf_str_eq(arch, "dflash-draft") || gguf_str_eq(arch, "qwen35-dflash-draft")) return L_LUCEBOX;
    return L_NONE;
}

const char *dflash_file_kind(const gguf_file *f)
{
    gguf_str arch;
    enum layout l = detect(f, &arch);
    if (l == L_NONE) {
        const gguf_kv *kv = gguf_find(f, "general.architecture");
        if (kv && kv->type == GGUF_T_STRING && kv->v.str.len > 13 &&
            !memcmp(kv->v.str.ptr + kv->v.str.len - 13, "-dflash-draft", 13))
            return "DFlash drafter of another family (Lucebox layout, not supported)";
        return NULL;
    }
    char prefix[64];
    snprintf(prefix, sizeof prefix, "%.*s", (int)(arch.len < 63 ? arch.len : 63), arch.ptr);
    const char *fam = unsupported_family(f, l == L_LLAMACPP ? "dflash" : prefix);
    if (fam) {
        if (strstr(fam, "DFlash2")) return "DFlash2 drafter (not supported)";
        if (strstr(fam, "Domino")) return "Lucebox Domino drafter (not supported)";
        return "DSpark drafter (not supported)";
    }
    if (l == L_LLAMACPP) return "DFlash drafter (llama.cpp layout, arch dflash)";
    if (gguf_str_eq(arch, "dflash-draft")) return "DFlash drafter (Lucebox layout, arch dflash-draft)";
    return "DFlash drafter (Lucebox layout, arch qwen35-dflash-draft)";
}

/* ---- keys --------------------------------------------------------------------------------------- */

typedef struct {
    problems *p;
    const char *prefix;       /* "dflash" or the Lucebox arch */
} keys;

static const char *full_key(const keys *k, const char *key, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s.%s", k->prefix, key);
    return buf;
}

static bool key_u32(const keys *k, const char *key, bool required, uint32_t def, uint32_t *out)
{
    char full[160];
    ar_error e;
    full_key(k, key, full, sizeof full);
    *out = def;
    if (!gguf_find(k->p->f, full)) {
        if (required) problem(k->p, AR_EFORMAT, "missing key %s", full);
        return false;
    }
    if (gguf_get_u32(k->p->f, full, out, &e) != AR_OK) { problem(k->p, AR_EFORMAT, "%s", e.msg); *out = def; return false; }
    return true;
}

static bool key_f32(const keys *k, const char *key, bool required, float def, float *out)
{
    char full[160];
    ar_error e;
    full_key(k, key, full, sizeof full);
    *out = def;
    if (!gguf_find(k->p->f, full)) {
        if (required) problem(k->p, AR_EFORMAT, "missing key %s", full);
        return false;
    }
    if (gguf_get_f32(k->p->f, full, out, &e) != AR_OK) { problem(k->p, AR_EFORMAT, "%s", e.msg); *out = def; return false; }
    return true;
}

static bool key_bool(const keys *k, const char *key, bool def)
{
    char full[160];
    ar_error e;
    bool v = def;
    full_key(k, key, full, sizeof full);
    if (gguf_find(k->p->f, full) && gguf_get_bool(k->p->f, full, &v, &e) != AR_OK) {
        problem(k->p, AR_EFORMAT, "%s", e.msg);
        v = def;
    }
    return v;
}

/* A scalar or a per-layer array that must be uniform (llama.cpp get_key_or_arr). */
static bool key_uniform(const keys *k, const char *key, bool required, int def, int n_layer, int *out)
{
    char full[160];
    ar_error e;
    full_key(k, key, full, sizeof full);
    *out = def;
    if (!gguf_find(k->p->f, full)) {
        if (required) problem(k->p, AR_EFORMAT, "missing key %s", full);
        return false;
    }
    int64_t v[DFLASH_MAX_LAYERS];
    size_t n = 0;
    if (gguf_get_ints(k->p->f, full, v, DFLASH_MAX_LAYERS, &n, &e) != AR_OK) { problem(k->p, AR_EFORMAT, "%s", e.msg); return false; }
    if (n == 0) { problem(k->p, AR_EFORMAT, "key %s is empty", full); return false; }
    for (size_t i = 1; i < n && (int)i < n_layer; i++)
        if (v[i] != v[0]) {
            problem(k->p, AR_EUNSUPPORTED, "key %s differs between layers (%lld vs %lld): not supported", full,
                    (long long)v[0], (long long)v[i]);
            return false;
        }
    if (v[0] < 0 || v[0] > (1 << 24)) { problem(k->p, AR_EFORMAT, "key %s = %lld is out of range", full, (long long)v[0]); return false; }
    *out = (int)v[0];
    return true;
}

static void read_swa(const keys *k, dflash_hparams *hp)
{
    uint32_t w = 0;
    key_u32(k, "attention.sliding_window", false, 0, &w);
    hp->swa_window = (int)w;
    if (w == 0) return;
    char full[160];
    full_key(k, "attention.sliding_window_pattern", full, sizeof full);
    const gguf_kv *kv = gguf_find(k->p->f, full);
    if (!kv) {
        problem(k->p, AR_EFORMAT, "key %.*s is %u but %s (which layers slide) is missing", (int)strlen(full) - 8, full,
                w, full);
        return;
    }
    if (kv->type != GGUF_T_ARRAY || (kv->arr_type != GGUF_T_BOOL && kv->arr_type != GGUF_T_UINT8 &&
                                     kv->arr_type != GGUF_T_INT8)) {
        problem(k->p, AR_EFORMAT, "key %s must be an array of bool", full);
        return;
    }
    if (kv->arr_n < (uint64_t)hp->n_layer) {
        problem(k->p, AR_EFORMAT, "key %s has %llu entries for %d layers", full, (unsigned long long)kv->arr_n, hp->n_layer);
        return;
    }
    const uint8_t *v = kv->arr_data;
    for (int i = 0; i < hp->n_layer; i++) {
        hp->swa[i] = v[i] != 0;
        hp->n_swa_layers += hp->swa[i];
    }
}

/* Keys both layouts spell the same way under their prefix. */
static void read_common(const keys *k, dflash_hparams *hp, bool theta_required)
{
    uint32_t u;
    key_u32(k, "embedding_length", true, 0, &u); hp->n_embd = (int)u;
    key_u32(k, "block_count", true, 0, &u); hp->n_layer = (int)u;
    key_u32(k, "context_length", false, 0, &u); hp->n_ctx_train = (int)u;
    if (hp->n_layer < 1 || hp->n_layer > DFLASH_MAX_LAYERS) {
        problem(k->p, AR_EFORMAT, "block_count %d is out of range (1..%d)", hp->n_layer, DFLASH_MAX_LAYERS);
        hp->n_layer = 0;
        return;
    }
    key_uniform(k, "feed_forward_length", true, 0, hp->n_layer, &hp->n_ff);
    key_uniform(k, "attention.head_count", true, 0, hp->n_layer, &hp->n_head);
    key_uniform(k, "attention.head_count_kv", false, hp->n_head, hp->n_layer, &hp->n_head_kv);
    key_f32(k, "attention.layer_norm_rms_epsilon", true, 1e-6f, &hp->rms_eps);
    key_f32(k, "rope.freq_base", theta_required, 10000.0f, &hp->rope_theta);
    uint32_t kl, vl;
    key_u32(k, "attention.key_length", false, hp->n_head > 0 ? (uint32_t)(hp->n_embd / hp->n_head) : 0, &kl);
    key_u32(k, "attention.value_length", false, kl, &vl);
    if (kl != vl) problem(k->p, AR_EUNSUPPORTED, "attention key_length %u != value_length %u", kl, vl);
    hp->head_dim = (int)kl;
    if (hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv != 0)
        problem(k->p, AR_EFORMAT, "attention head counts %d (kv %d) are invalid (kv must divide heads)", hp->n_head,
                hp->n_head_kv);
    if (hp->head_dim <= 0 || hp->head_dim % 2 || hp->head_dim > 4096)
        problem(k->p, AR_EFORMAT, "head dim %d is invalid", hp->head_dim);
    if (hp->n_ff <= 0) problem(k->p, AR_EFORMAT, "feed_forward_length is 0");
    if (!(hp->rms_eps > 0)) problem(k->p, AR_EFORMAT, "layer_norm_rms_epsilon %g is not positive", hp->rms_eps);
    if (!(hp->rope_theta > 0)) problem(k->p, AR_EFORMAT, "rope.freq_base %g is not positive", hp->rope_theta);
    char full[160];
    gguf_str st;
    ar_error e;
    full_key(k, "rope.scaling.type", full, sizeof full);
    if (gguf_find(k->p->f, full) && gguf_get_str(k->p->f, full, &st, &e) == AR_OK && !gguf_str_eq(st, "none"))
        problem(k->p, AR_EUNSUPPORTED, "rope scaling '%.*s' is not supported", (int)st.len, st.ptr);
    read_swa(k, hp);
}

static void read_llamacpp(const keys *k, dflash_hparams *hp)
{
    read_common(k, hp, false);
    problems *p = k->p;
    ar_error e;
    char full[160];

    uint32_t u;
    key_u32(k, "rope.dimension_count", false, (uint32_t)hp->head_dim, &u);
    hp->n_rot = (int)u;
    full_key(k, "rope.dimension_sections", full, sizeof full);
    if (gguf_find(p->f, full)) {
        int64_t s[8] = { 0 };
        size_t n = 0;
        if (gguf_get_ints(p->f, full, s, 8, &n, &e) != AR_OK) problem(p, AR_EFORMAT, "%s", e.msg);
        else if (n > 4) problem(p, AR_EFORMAT, "key %s has %zu entries, expected at most 4", full, n);
        for (int i = 0; i < 4; i++) hp->rope_sections[i] = (int)s[i];
    }

    /* tap layers: required, already in the "input of layer" convention */
    full_key(k, "target_layers", full, sizeof full);
    if (!gguf_find(p->f, full)) {
        problem(p, AR_EFORMAT, "missing key %s (the target layers whose input the drafter reads)", full);
    } else {
        int64_t v[DFLASH_MAX_TAPS];
        size_t n = 0;
        if (gguf_get_ints(p->f, full, v, DFLASH_MAX_TAPS, &n, &e) != AR_OK) problem(p, AR_EFORMAT, "%s", e.msg);
        else if (n == 0) problem(p, AR_EFORMAT, "key %s is empty", full);
        hp->n_tap = (int)n;
        for (size_t i = 0; i < n; i++) hp->tap_layers[i] = v[i] < 0 || v[i] > 1 << 20 ? -1 : (int)v[i];
    }

    key_u32(k, "block_size", false, 16, &u);
    hp->block_size = (int)u;
    hp->causal = key_bool(k, "attention.causal", false);
    key_f32(k, "embedding_scale", false, 0.0f, &hp->embd_scale);
    if (hp->embd_scale == 0.0f) hp->embd_scale = 1.0f;
    key_f32(k, "attention.scale", false, 0.0f, &hp->attn_scale);

    full_key(k, "hidden_activation", full, sizeof full);
    gguf_str act;
    if (gguf_find(p->f, full) && gguf_get_str(p->f, full, &act, &e) == AR_OK && !gguf_str_eq(act, "silu"))
        problem(p, AR_EUNSUPPORTED, "hidden activation '%.*s' is not supported (only silu)", (int)act.len, act.ptr);

    if (!gguf_find(p->f, "tokenizer.ggml.mask_token_id")) {
        problem(p, AR_EFORMAT, "missing key tokenizer.ggml.mask_token_id (the MASK token of the draft block)");
    } else if (gguf_get_u32(p->f, "tokenizer.ggml.mask_token_id", &u, &e) != AR_OK) {
        problem(p, AR_EFORMAT, "%s", e.msg);
    } else {
        hp->mask_token = (int32_t)u;
    }
}

static void read_lucebox(const keys *k, dflash_hparams *hp, int target_n_layer, int64_t fc_in)
{
    read_common(k, hp, true);
    problems *p = k->p;
    ar_error e;
    char full[160];
    hp->n_rot = hp->head_dim;
    hp->embd_scale = 1.0f;

    uint32_t u, n_tap = 0;
    if (!key_u32(k, "dflash.n_target_layers", false, 0, &n_tap) && hp->n_embd > 0 && fc_in > 0)
        n_tap = (uint32_t)(fc_in / hp->n_embd);      /* the loader derives L from fc.ne0 / H */
    if (n_tap < 1 || n_tap > DFLASH_MAX_TAPS) {
        problem(p, AR_EFORMAT, "cannot tell the number of target layers (dflash.n_target_layers %u)", n_tap);
        n_tap = 0;
    }
    hp->n_tap = (int)n_tap;
    full_key(k, "dflash.target_layer_ids", full, sizeof full);
    if (gguf_find(p->f, full)) {
        int64_t v[DFLASH_MAX_TAPS];
        size_t n = 0;
        if (gguf_get_ints(p->f, full, v, DFLASH_MAX_TAPS, &n, &e) != AR_OK) problem(p, AR_EFORMAT, "%s", e.msg);
        else if ((int)n != hp->n_tap)
            problem(p, AR_EFORMAT, "key %s has %zu entries, dflash.n_target_layers says %d", full, n, hp->n_tap);
        else
            for (size_t i = 0; i < n; i++)   /* HF "output of layer i" = llama.cpp "input of layer i+1" */
                hp->tap_layers[i] = v[i] < 0 || v[i] > 1 << 20 ? -1 : (int)v[i] + 1;
    } else if (hp->n_tap > 0) {
        /* lucebox's qwen35 target rule: HF ids 1 + k * ((N - 2) / (L - 1)) */
        for (int i = 0; i < hp->n_tap; i++) {
            int hf = hp->n_tap == 1 ? target_n_layer / 2 : 1 + i * ((target_n_layer - 2) / (hp->n_tap - 1));
            hp->tap_layers[i] = hf + 1;
        }
    }

    key_u32(k, "dflash.block_size", false, 16, &u);
    hp->block_size = (int)u;
    if (key_u32(k, "dflash.mask_token_id", false, LUCEBOX_QWEN_MASK, &u)) hp->mask_token = (int32_t)u;
    else hp->mask_token = LUCEBOX_QWEN_MASK;
    if (key_bool(k, "dflash.context_kv_layer_norm", false))
        problem(p, AR_EUNSUPPORTED, "dflash.context_kv_layer_norm (Laguna-style drafters) is not supported");
    hp->causal = false;
}

/* ---- tensors -------------------------------------------------------------------------------------- */

static bool shape_is(const gguf_tensor *t, int64_t ne0, int64_t ne1)
{
    return t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1;
}

static void shape_problem(problems *p, const gguf_tensor *t, int64_t ne0, int64_t ne1)
{
    problem(p, AR_EFORMAT, "tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", t->name,
            (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3], (long long)ne0,
            (long long)ne1);
}

/* First of up to two names that exists (NULL when neither). */
static const gguf_tensor *find2(const gguf_file *f, const char *a, const char *b)
{
    const gguf_tensor *t = gguf_find_tensor(f, a);
    return t || !b ? t : gguf_find_tensor(f, b);
}

static bool bind_matrix_t(problems *p, ar_weight *w, const gguf_tensor *t, int64_t ne0, int64_t ne1)
{
    memset(w, 0, sizeof *w);
    w->type = -1;
    bool ok = true;
    if (!shape_is(t, ne0, ne1)) { shape_problem(p, t, ne0, ne1); ok = false; }
    const ar_dtype_info *info = ar_dtype_get(t->type);
    if (!info || !info->dequant) {
        problem(p, AR_EUNSUPPORTED, "tensor %s has type %s, which arbor cannot compute with (supported: %s)", t->name,
                ar_dtype_name(t->type), ar_dtype_supported_list());
        ok = false;
    }
    if (!ok) return false;
    w->type = t->type;
    w->n_in = t->ne[0];
    w->n_out = t->ne[1];
    w->row_bytes = ar_row_bytes(t->type, t->ne[0]);
    w->data = t->data;
    w->scale = 1.0f;
    /* optional per-tensor multiplier "<base>.scale" (llama.cpp fc_s, wq_s, ...) */
    char sname[160];
    size_t n = strlen(t->name);
    if (n > 7 && !strcmp(t->name + n - 7, ".weight") && n < sizeof sname) {
        snprintf(sname, sizeof sname, "%.*s.scale", (int)(n - 7), t->name);
        const gguf_tensor *s = gguf_find_tensor(p->f, sname);
        if (s) {
            if (s->type != AR_F32 || s->n_elements != 1) problem(p, AR_EFORMAT, "tensor %s must be one F32 value", sname);
            else memcpy(&w->scale, s->data, sizeof(float));
        }
    }
    return true;
}

static bool bind_matrix(problems *p, ar_weight *w, const char *name, const char *alt, int64_t ne0, int64_t ne1)
{
    const gguf_tensor *t = find2(p->f, name, alt);
    if (!t) {
        memset(w, 0, sizeof *w);
        w->type = -1;
        if (alt) problem(p, AR_EFORMAT, "missing tensor %s (or %s)", name, alt);
        else problem(p, AR_EFORMAT, "missing tensor %s", name);
        return false;
    }
    return bind_matrix_t(p, w, t, ne0, ne1);
}

static const float *bind_f32(problems *p, const char *name, const char *alt, int64_t ne0)
{
    const gguf_tensor *t = find2(p->f, name, alt);
    if (!t) {
        if (alt) problem(p, AR_EFORMAT, "missing tensor %s (or %s)", name, alt);
        else problem(p, AR_EFORMAT, "missing tensor %s", name);
        return NULL;
    }
    bool ok = true;
    if (!shape_is(t, ne0, 1)) { shape_problem(p, t, ne0, 1); ok = false; }
    if (t->type != AR_F32) {
        problem(p, AR_EUNSUPPORTED, "tensor %s has type %s, expected f32", t->name, ar_dtype_name(t->type));
        ok = false;
    }
    return ok ? (const float *)t->data : NULL;
}

static void refuse_tensor(problems *p, const char *name, const char *why)
{
    if (gguf_find_tensor(p->f, name)) problem(p, AR_EUNSUPPORTED, "tensor %s (%s) is not supported", name, why);
}

static void bind_layer(problems *p, enum layout l, const dflash_hparams *hp, int il, dflash_layer *L)
{
    char a[96], b[96];
#define N(buf, suffix) (snprintf(buf, sizeof buf, "blk.%d." suffix, il), buf)
    const int64_t E = hp->n_embd, D = hp->head_dim, qd = (int64_t)hp->n_head * D, kvd = (int64_t)hp->n_head_kv * D;
    L->attn_norm = bind_f32(p, N(a, "attn_norm.weight"), NULL, E);
    if (l == L_LUCEBOX) L->ffn_norm = bind_f32(p, N(a, "ffn_norm.weight"), N(b, "post_attention_norm.weight"), E);
    else L->ffn_norm = bind_f32(p, N(a, "ffn_norm.weight"), NULL, E);
    L->q_norm = bind_f32(p, N(a, "attn_q_norm.weight"), NULL, D);
    L->k_norm = bind_f32(p, N(a, "attn_k_norm.weight"), NULL, D);
    bind_matrix(p, &L->wq, N(a, "attn_q.weight"), NULL, E, qd);
    bind_matrix(p, &L->wk, N(a, "attn_k.weight"), NULL, E, kvd);
    L->shared_kv = !gguf_find_tensor(p->f, N(a, "attn_v.weight"));
    if (!L->shared_kv) bind_matrix(p, &L->wv, a, NULL, E, kvd);
    else L->wv.type = -1;
    bind_matrix(p, &L->wo, N(a, "attn_output.weight"), NULL, qd, E);
    bind_matrix(p, &L->ffn_gate, N(a, "ffn_gate.weight"), NULL, E, hp->n_ff);
    bind_matrix(p, &L->ffn_up, N(a, "ffn_up.weight"), NULL, E, hp->n_ff);
    bind_matrix(p, &L->ffn_down, N(a, "ffn_down.weight"), NULL, hp->n_ff, E);
    /* optional extras of other drafter families */
    if (l == L_LLAMACPP) refuse_tensor(p, N(a, "post_attention_norm.weight"), "Gemma-style attention post-norm");
    refuse_tensor(p, N(a, "post_ffw_norm.weight"), "Gemma-style FFN post-norm");
    refuse_tensor(p, N(a, "layer_output_scale.weight"), "per-layer output scale");
    refuse_tensor(p, N(a, "rope_freqs.weight"), "rope frequency factors");
    refuse_tensor(p, N(a, "attn_sinks.weight"), "attention sinks");
    refuse_tensor(p, N(a, "attn_gate.weight"), "Laguna attention gate");
#undef N
}

/* ---- load --------------------------------------------------------------------------------------------- */

int dflash_load(dflash_model **out, const char *path, const qwen35_model *target, ar_error *err)
{
    *out = NULL;
    if (!target) return ar_fail(err, AR_EINVAL, "%s: a DFlash drafter needs its target model", path);
    dflash_model *d = calloc(1, sizeof *d);
    if (!d) return ar_fail(err, AR_ENOMEM, "out of memory loading %s", path);
    int rc = gguf_open(&d->gguf, path, err);
    if (rc != AR_OK) { free(d); return rc; }
    d->target = target;
    const gguf_file *f = d->gguf;
    const qwen35_hparams *thp = qwen35_hparams_of(target);

    gguf_str arch = { 0, "" };
    enum layout l = detect(f, &arch);
    if (l == L_NONE) {
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(arch.len < 63 ? arch.len : 63), arch.ptr);
        dflash_free(d);   /* arch points into the mapping: copied first */
        if (!name[0]) return ar_fail(err, AR_EFORMAT, "%s: no general.architecture: not a DFlash drafter", path);
        return ar_fail(err, AR_EUNSUPPORTED,
                       "%s: architecture '%s' is not a DFlash drafter (arbor loads arch 'dflash' from llama.cpp's "
                       "converter and 'dflash-draft' / 'qwen35-dflash-draft' from Lucebox's)", path, name);
    }
    dflash_hparams *hp = &d->hp;
    snprintf(hp->arch, sizeof hp->arch, "%.*s", (int)(arch.len < 31 ? arch.len : 31), arch.ptr);
    hp->layout = l == L_LLAMACPP ? "llama.cpp" : "lucebox";
    const char *fam = unsupported_family(f, l == L_LLAMACPP ? "dflash" : hp->arch);
    if (fam) {
        dflash_free(d);
        return ar_fail(err, AR_EUNSUPPORTED, "%s: this is %s, which arbor does not run (it runs plain DFlash drafters)",
                       path, fam);
    }

    problems p = { .f = f };
    keys k = { &p, l == L_LLAMACPP ? "dflash" : hp->arch };
    const gguf_tensor *fc_t = l == L_LLAMACPP ? gguf_find_tensor(f, "fc.weight")
                                              : find2(f, "dflash.fc.weight", "dflash_fc.weight");
    if (l == L_LLAMACPP) read_llamacpp(&k, hp);
    else read_lucebox(&k, hp, thp->n_layer, fc_t ? fc_t->ne[0] : 0);
    if (hp->attn_scale == 0.0f && hp->head_dim > 0) hp->attn_scale = 1.0f / sqrtf((float)hp->head_dim);

    /* against the target */
    if (hp->n_embd != thp->n_embd)
        problem(&p, AR_EUNSUPPORTED, "drafter hidden size %d differs from the target's %d (the drafter embeds with "
                "the target's token table)", hp->n_embd, thp->n_embd);
    for (int i = 0; i < hp->n_tap; i++)
        if (hp->tap_layers[i] < 0 || hp->tap_layers[i] > thp->n_layer)
            problem(&p, AR_EFORMAT, "tap layer %d (input-of-layer convention) does not exist in the %d-layer target",
                    hp->tap_layers[i], thp->n_layer);
    if (hp->mask_token < 0 || hp->mask_token >= thp->n_vocab)
        problem(&p, AR_EFORMAT, "mask token %d is outside the target vocabulary (%d tokens)", hp->mask_token, thp->n_vocab);
    if (hp->block_size < 2 || hp->block_size > 1024) problem(&p, AR_EFORMAT, "block size %d is out of range 2..1024", hp->block_size);
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        problem(&p, AR_EFORMAT, "rope.dimension_count %d is invalid for head dim %d", hp->n_rot, hp->head_dim);
    if (l == L_LUCEBOX) {
        uint32_t nv;
        if (key_u32(&k, "vocab_size", false, 0, &nv) && (int)nv != thp->n_vocab)
            problem(&p, AR_EFORMAT, "vocab_size %u differs from the target's %d", nv, thp->n_vocab);
    }

    /* global tensors */
    refuse_tensor(&p, "d2t", "reduced draft vocabulary");
    if (has_tensor_prefix(f, "dflash.aux_hidden_norm."))
        problem(&p, AR_EUNSUPPORTED, "tensors dflash.aux_hidden_norm.* (per-slice feature norms) are not supported");
    const int64_t E = hp->n_embd, fc_in = (int64_t)hp->n_tap * E;
    if (!fc_t) problem(&p, AR_EFORMAT, l == L_LLAMACPP ? "missing tensor fc.weight" : "missing tensor dflash.fc.weight (or dflash_fc.weight)");
    else if (hp->n_embd > 0 && hp->n_tap > 0) bind_matrix_t(&p, &d->fc, fc_t, fc_in, E);
    if (l == L_LLAMACPP) d->hidden_norm = bind_f32(&p, "enc.output_norm.weight", NULL, E);
    else d->hidden_norm = bind_f32(&p, "dflash.hidden_norm.weight", "dflash_hidden_norm.weight", E);
    d->output_norm = bind_f32(&p, "output_norm.weight", NULL, E);

    /* embeddings and LM head: the target's unless the drafter ships its own (llama.cpp rules) */
    d->n_vocab = thp->n_vocab;
    const gguf_tensor *own_embd = gguf_find_tensor(f, "token_embd.weight");
    const gguf_tensor *own_out = gguf_find_tensor(f, "output.weight");
    d->tok_embd = target->token_embd;
    d->lm_head = target->output;
    if (own_embd && bind_matrix_t(&p, &d->tok_embd, own_embd, E, thp->n_vocab)) d->lm_head = d->tok_embd;
    if (own_out) bind_matrix_t(&p, &d->lm_head, own_out, E, thp->n_vocab);

    if (hp->n_layer > 0) {
        d->layers = calloc((size_t)hp->n_layer, sizeof *d->layers);
        if (!d->layers) { dflash_free(d); return ar_fail(err, AR_ENOMEM, "out of memory loading %s", path); }
        if (hp->head_dim > 0 && hp->n_head > 0 && hp->n_head_kv > 0 && hp->n_ff > 0 && hp->n_embd > 0)
            for (int il = 0; il < hp->n_layer; il++) bind_layer(&p, l, hp, il, &d->layers[il]);
    }

    if (p.n) {
        int code = p.code;
        dflash_free(d);
        return ar_fail(err, code, "%s: %d problem%s: %s", path, p.n, p.n == 1 ? "" : "s", p.text);
    }

    /* the drafter's own matrices into the backend's layout (the target's views are already) */
    uint64_t packed = 0;
    qwen35_pack_weight(d->gguf, &d->fc, &packed);
    if (own_embd) {
        qwen35_pack_weight(d->gguf, &d->tok_embd, &packed);
        if (!own_out) d->lm_head = d->tok_embd;
    }
    if (own_out) qwen35_pack_weight(d->gguf, &d->lm_head, &packed);
    for (int il = 0; il < hp->n_layer; il++) {
        dflash_layer *L = &d->layers[il];
        ar_weight *ws[] = { &L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down };
        for (size_t i = 0; i < sizeof ws / sizeof ws[0]; i++) qwen35_pack_weight(d->gguf, ws[i], &packed);
    }

    d->rope = (ar_rope){ .n_rot = hp->n_rot, .theta_base = hp->rope_theta, .imrope = 0 };
    memcpy(d->rope.sections, hp->rope_sections, sizeof d->rope.sections);

    char taps[256] = "";
    for (int i = 0; i < hp->n_tap && strlen(taps) + 12 < sizeof taps; i++)
        snprintf(taps + strlen(taps), sizeof taps - strlen(taps), "%s%d", i ? "," : "", hp->tap_layers[i]);
    ar_log(AR_LOG_INFO, "%s: DFlash drafter (%s layout, arch %s): %d layers, n_embd %d, ff %d, attn %dx%d (kv %d), "
           "rope theta %g, block %d, mask %d, taps (input of target layer) [%s]%s%s",
           path, hp->layout, hp->arch, hp->n_layer, hp->n_embd, hp->n_ff, hp->n_head, hp->head_dim, hp->n_head_kv,
           (double)hp->rope_theta, hp->block_size, hp->mask_token, taps, hp->causal ? ", causal block" : "",
           hp->n_swa_layers ? ", sliding window" : "");
    *out = d;
    return AR_OK;
}

void dflash_free(dflash_model *d)
{
    if (!d) return;
    free(d->layers);
    gguf_close(d->gguf);
    free(d);
}

const dflash_hparams *dflash_hparams_of(const dflash_model *d) { return &d->hp; }
const char *dflash_layout(const dflash_model *d) { return d->hp.layout; }
int dflash_block_size(const dflash_model *d) { return d->hp.block_size; }
int32_t dflash_mask_token(const dflash_model *d) { return d->hp.mask_token; }
int dflash_feature_size(const dflash_model *d) { return d->hp.n_tap * d->hp.n_embd; }

const int *dflash_tap_layers(const dflash_model *d, int *n)
{
    if (n) *n = d->hp.n_tap;
    return d->hp.tap_layers;
}
