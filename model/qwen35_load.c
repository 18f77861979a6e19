/* model/qwen35_load.c — open a qwen35 GGUF: hyperparameters, tensor binding, validation.
 *
 * Keys and tensors follow specs/qwen35.md §1-2 (llama.cpp's qwen35 loader). Every problem found
 * (missing key or tensor, wrong shape, a type arbor cannot compute with) is collected and reported
 * in ONE error, so a user fixing a converter sees the whole list at once. Weights stay in the mmap
 * of the GGUF and are used in place. An MTP block (layers >= block_count - nextn_predict_layers) is
 * part of the file but never bound or run here. */
#include "model/qwen35_impl.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/timer.h"
#include "format/quant.h"

#define ARCH "qwen35"

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

/* ---- hyperparameters ------------------------------------------------------------------------ */

static int key_u32(problems *p, const char *key, bool required, uint32_t def, uint32_t *out)
{
    ar_error e;
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    if (!gguf_find(p->f, full)) {
        *out = def;
        if (required) problem(p, AR_EFORMAT, "missing key %s", full);
        return required ? -1 : 0;
    }
    if (gguf_get_u32(p->f, full, out, &e) != AR_OK) { problem(p, AR_EFORMAT, "%s", e.msg); *out = def; return -1; }
    return 0;
}

static void key_f32(problems *p, const char *key, bool required, float def, float *out)
{
    ar_error e;
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    *out = def;
    if (!gguf_find(p->f, full)) {
        if (required) problem(p, AR_EFORMAT, "missing key %s", full);
        return;
    }
    if (gguf_get_f32(p->f, full, out, &e) != AR_OK) { problem(p, AR_EFORMAT, "%s", e.msg); *out = def; }
}

/* A key that is a scalar or a per-layer array: fills per[0..n_layer_all) (scalar broadcast). */
static void key_per_layer(problems *p, const char *key, bool required, int64_t def, int n_layer_all, int64_t *per)
{
    ar_error e;
    char full[128];
    snprintf(full, sizeof full, ARCH ".%s", key);
    for (int i = 0; i < n_layer_all; i++) per[i] = def;
    if (!gguf_find(p->f, full)) {
        if (required) problem(p, AR_EFORMAT, "missing key %s", full);
        return;
    }
    int64_t vals[QWEN35_MAX_LAYERS];
    size_t n = 0;
    if (gguf_get_ints(p->f, full, vals, QWEN35_MAX_LAYERS, &n, &e) != AR_OK) { problem(p, AR_EFORMAT, "%s", e.msg); return; }
    if (n == 1) {
        for (int i = 0; i < n_layer_all; i++) per[i] = vals[0];
    } else if ((int)n >= n_layer_all) {
        for (int i = 0; i < n_layer_all; i++) per[i] = vals[i];
    } else {
        problem(p, AR_EFORMAT, "key %s has %zu entries, expected 1 or %d (block_count)", full, n, n_layer_all);
    }
}

static int read_recurrent_layers(problems *p, qwen35_hparams *hp)
{
    const gguf_kv *kv = gguf_find(p->f, ARCH ".attention.recurrent_layers");
    if (!kv) return 0;
    if (kv->type != GGUF_T_ARRAY || (kv->arr_type != GGUF_T_BOOL && kv->arr_type != GGUF_T_UINT8 &&
                                     kv->arr_type != GGUF_T_INT8)) {
        problem(p, AR_EFORMAT, "key " ARCH ".attention.recurrent_layers must be an array of bool");
        return -1;
    }
    if (kv->arr_n < (uint64_t)hp->n_layer) {
        problem(p, AR_EFORMAT, "key " ARCH ".attention.recurrent_layers has %llu entries, expected %d",
                (unsigned long long)kv->arr_n, hp->n_layer_all);
        return -1;
    }
    const uint8_t *v = kv->arr_data;
    for (int i = 0; i < hp->n_layer; i++) hp->recurrent[i] = v[i] != 0;
    return 1;
}

static void read_hparams(problems *p, qwen35_hparams *hp)
{
    uint32_t u;
    memset(hp, 0, sizeof *hp);
    key_u32(p, "context_length", true, 0, &u); hp->n_ctx_train = (int)u;
    key_u32(p, "embedding_length", true, 0, &u); hp->n_embd = (int)u;
    key_u32(p, "block_count", true, 0, &u); hp->n_layer_all = (int)u;
    key_u32(p, "nextn_predict_layers", false, 0, &u); hp->n_nextn = (int)u;
    hp->n_layer = hp->n_layer_all - hp->n_nextn;
    if (hp->n_layer_all < 1 || hp->n_layer_all > QWEN35_MAX_LAYERS || hp->n_layer < 1) {
        problem(p, AR_EFORMAT, "block_count %d with nextn_predict_layers %d is out of range (1..%d trunk layers)",
                hp->n_layer_all, hp->n_nextn, QWEN35_MAX_LAYERS);
        hp->n_layer = hp->n_layer_all = 0;
        return;
    }
    int64_t per[QWEN35_MAX_LAYERS];
    key_per_layer(p, "attention.head_count", true, 0, hp->n_layer_all, per);
    int64_t head_count[QWEN35_MAX_LAYERS];
    memcpy(head_count, per, sizeof per);
    key_per_layer(p, "attention.head_count_kv", false, -1, hp->n_layer_all, per);
    int64_t head_count_kv[QWEN35_MAX_LAYERS];
    memcpy(head_count_kv, per, sizeof per);

    key_f32(p, "attention.layer_norm_rms_epsilon", true, 1e-6f, &hp->rms_eps);
    key_f32(p, "rope.freq_base", false, 10000.0f, &hp->rope_theta);

    /* rope sections: required, 4 ints (llama.cpp get_key_or_arr(..., 4, true)) */
    {
        ar_error e;
        int64_t s[8] = { 0 };
        size_t n = 0;
        if (!gguf_find(p->f, ARCH ".rope.dimension_sections"))
            problem(p, AR_EFORMAT, "missing key " ARCH ".rope.dimension_sections");
        else if (gguf_get_ints(p->f, ARCH ".rope.dimension_sections", s, 8, &n, &e) != AR_OK)
            problem(p, AR_EFORMAT, "%s", e.msg);
        else if (n > 4)
            problem(p, AR_EFORMAT, "key " ARCH ".rope.dimension_sections has %zu entries, expected at most 4", n);
        for (int i = 0; i < 4; i++) hp->rope_sections[i] = (int)s[i];
    }

    key_u32(p, "ssm.conv_kernel", true, 0, &u); hp->ssm_d_conv = (int)u;
    key_u32(p, "ssm.inner_size", true, 0, &u); hp->ssm_d_inner = (int)u;
    key_u32(p, "ssm.state_size", true, 0, &u); hp->ssm_head_dim = (int)u;
    key_u32(p, "ssm.time_step_rank", true, 0, &u); hp->ssm_n_v_heads = (int)u;
    key_u32(p, "ssm.group_count", true, 0, &u); hp->ssm_n_k_heads = (int)u;

    /* layer kinds (§1.2) */
    if (read_recurrent_layers(p, hp) == 0) {
        uint32_t interval;
        key_u32(p, "full_attention_interval", false, 4, &interval);
        if (interval == 0) { problem(p, AR_EFORMAT, "key " ARCH ".full_attention_interval is 0"); interval = 4; }
        for (int i = 0; i < hp->n_layer; i++) hp->recurrent[i] = (i + 1) % (int)interval != 0;
    }

    /* attention head geometry: uniform over the attention layers */
    hp->n_head = hp->n_head_kv = 0;
    for (int i = 0; i < hp->n_layer; i++) {
        if (hp->recurrent[i]) { hp->n_gdn_layers++; continue; }
        hp->n_attn_layers++;
        int h = (int)head_count[i], hk = head_count_kv[i] < 0 ? h : (int)head_count_kv[i];
        if (hp->n_head == 0) { hp->n_head = h; hp->n_head_kv = hk; }
        else if (h != hp->n_head || hk != hp->n_head_kv)
            problem(p, AR_EUNSUPPORTED, "attention layer %d has %d/%d heads, layer before had %d/%d (must be uniform)",
                    i, h, hk, hp->n_head, hp->n_head_kv);
    }
    if (hp->n_attn_layers > 0) {
        if (hp->n_head <= 0 || hp->n_head_kv <= 0 || hp->n_head % hp->n_head_kv != 0)
            problem(p, AR_EFORMAT, "attention head counts %d (kv %d) are invalid (kv must divide heads)", hp->n_head, hp->n_head_kv);
    }
    int def_head_dim = hp->n_head > 0 ? hp->n_embd / hp->n_head : 0;
    uint32_t kl, vl, nrot;
    key_u32(p, "attention.key_length", false, (uint32_t)def_head_dim, &kl);
    key_u32(p, "attention.value_length", false, kl, &vl);
    if (kl != vl) problem(p, AR_EUNSUPPORTED, "attention key_length %u != value_length %u", kl, vl);
    hp->head_dim = (int)kl;
    key_u32(p, "rope.dimension_count", false, kl, &nrot);
    hp->n_rot = (int)nrot;
    if (hp->n_attn_layers > 0 && (hp->head_dim <= 0 || hp->n_rot <= 0 || hp->n_rot > hp->head_dim ||
                                  hp->n_rot % 2 || hp->n_rot > 2048))
        problem(p, AR_EFORMAT, "rope.dimension_count %d invalid for head dim %d", hp->n_rot, hp->head_dim);
    if (hp->n_attn_layers > 0 &&
        hp->rope_sections[0] + hp->rope_sections[1] + hp->rope_sections[2] + hp->rope_sections[3] <= 0)
        problem(p, AR_EFORMAT, "rope.dimension_sections sum to 0");
    {
        gguf_str st;
        ar_error e;
        if (gguf_find(p->f, ARCH ".rope.scaling.type") &&
            gguf_get_str(p->f, ARCH ".rope.scaling.type", &st, &e) == AR_OK && !gguf_str_eq(st, "none"))
            problem(p, AR_EUNSUPPORTED, "rope scaling '%.*s' is not supported", (int)st.len, st.ptr);
    }

    /* feed forward */
    key_per_layer(p, "feed_forward_length", true, 0, hp->n_layer_all, per);
    hp->n_ff = 0;
    for (int i = 0; i < hp->n_layer; i++) if ((int)per[i] > hp->n_ff) hp->n_ff = (int)per[i];

    /* GDN geometry */
    if (hp->n_gdn_layers > 0) {
        if (hp->ssm_n_v_heads <= 0 || hp->ssm_n_k_heads <= 0 || hp->ssm_head_dim <= 0 || hp->ssm_d_conv < 1 ||
            hp->ssm_d_conv > 64)
            problem(p, AR_EFORMAT, "ssm geometry invalid (v heads %d, k heads %d, state %d, conv %d)",
                    hp->ssm_n_v_heads, hp->ssm_n_k_heads, hp->ssm_head_dim, hp->ssm_d_conv);
        else {
            if (hp->ssm_n_v_heads % hp->ssm_n_k_heads != 0)
                problem(p, AR_EFORMAT, "ssm.time_step_rank %d is not a multiple of ssm.group_count %d",
                        hp->ssm_n_v_heads, hp->ssm_n_k_heads);
            if (hp->ssm_d_inner != hp->ssm_n_v_heads * hp->ssm_head_dim)
                problem(p, AR_EFORMAT, "ssm.inner_size %d != time_step_rank %d x state_size %d",
                        hp->ssm_d_inner, hp->ssm_n_v_heads, hp->ssm_head_dim);
        }
    }
    hp->ssm_conv_channels = hp->ssm_d_inner + 2 * hp->ssm_n_k_heads * hp->ssm_head_dim;
    if (hp->n_embd <= 0) problem(p, AR_EFORMAT, "embedding_length is 0");
}

/* ---- tensors -------------------------------------------------------------------------------- */

static const gguf_tensor *find(problems *p, const char *name, bool required)
{
    const gguf_tensor *t = gguf_find_tensor(p->f, name);
    if (!t && required) problem(p, AR_EFORMAT, "missing tensor %s", name);
    return t;
}

static bool shape_is(const gguf_tensor *t, int64_t ne0, int64_t ne1)
{
    return t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1;
}

static void shape_problem(problems *p, const gguf_tensor *t, int64_t ne0, int64_t ne1)
{
    problem(p, AR_EFORMAT, "tensor %s has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]", t->name,
            (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], (long long)t->ne[3],
            (long long)ne0, (long long)ne1);
}

/* Matrix W[ne1][ne0] of any computable type. Returns false (and records why) when unusable. */
static bool bind_matrix(problems *p, ar_weight *w, const char *name, int64_t ne0, int64_t ne1, bool required)
{
    memset(w, 0, sizeof *w);
    w->type = -1;
    const gguf_tensor *t = find(p, name, required);
    if (!t) return false;
    bool ok = true;
    if (!shape_is(t, ne0, ne1)) { shape_problem(p, t, ne0, ne1); ok = false; }
    const ar_dtype_info *info = ar_dtype_get(t->type);
    if (!info || !info->dequant) {
        problem(p, AR_EUNSUPPORTED, "tensor %s has type %s, which arbor cannot compute with (supported: %s)",
                t->name, ar_dtype_name(t->type), ar_dtype_supported_list());
        ok = false;
    } else if (t->ne[0] % info->block_elems != 0) {
        problem(p, AR_EFORMAT, "tensor %s: row of %lld is not a multiple of the %s block (%lld)", t->name,
                (long long)t->ne[0], info->name, (long long)info->block_elems);
        ok = false;
    }
    if (!ok) return false;
    w->type = t->type;
    w->n_in = t->ne[0];
    w->n_out = t->ne[1];
    w->row_bytes = ar_row_bytes(t->type, t->ne[0]);
    w->data = t->data;
    w->scale = 1.0f;
    /* optional per-tensor scale "<base>.scale" (specs/qwen35.md §2.0) */
    char sname[256];
    size_t n = strlen(name);
    if (n > 7 && !strcmp(name + n - 7, ".weight") && n - 7 + 7 < sizeof sname) {
        snprintf(sname, sizeof sname, "%.*s.scale", (int)(n - 7), name);
        const gguf_tensor *s = gguf_find_tensor(p->f, sname);
        if (s) {
            if (s->type != AR_F32 || s->n_elements != 1) problem(p, AR_EFORMAT, "tensor %s must be one F32 value", sname);
            else memcpy(&w->scale, s->data, sizeof(float));
        }
    }
    return true;
}

void qwen35_pack_weight(gguf_file *f, ar_weight *w, uint64_t *bytes)
{
    if (!ar_weight_wants_pack(w)) return;   /* absent weights (type -1, or zeroed) are not wanted */
    const uint64_t n = (uint64_t)w->row_bytes * (uint64_t)w->n_out;
    ar_error e = { 0 };
    void *d = gguf_writable(f, w->data, n, &e);
    if (d && ar_weight_pack(w, d) == 0) {
        *bytes += n;
        return;
    }
    ar_log(AR_LOG_WARN, "a %lld x %lld %s matrix stays in the file's row layout (slower kernels): %s",
           (long long)w->n_out, (long long)w->n_in, ar_dtype_name(w->type), d ? "out of memory" : e.msg);
}

/* Every matrix of the model through qwen35_pack_weight (the tied output shares token_embd's), with
 * progress: it reads the whole file (a 27B model: ~15 GB, tens of seconds from disk). */
static void pack_weights(qwen35_model *m, const char *path)
{
    const double t0 = ar_now();
    enum { PER_LAYER = 13 };
    const int n = 2 + PER_LAYER * m->hp.n_layer;
    ar_weight **ws = malloc((size_t)n * sizeof *ws);
    if (!ws) return;   /* the row layout serves */
    int k = 0;
    ws[k++] = &m->token_embd;
    ws[k++] = m->hp.tied_output ? NULL : &m->output;
    for (int il = 0; il < m->hp.n_layer; il++) {
        qwen35_layer *L = &m->layers[il];
        ar_weight *lw[PER_LAYER] = { &L->ffn_gate, &L->ffn_up, &L->ffn_down, &L->wq, &L->wk, &L->wv, &L->wqkv_attn,
                                     &L->wo, &L->ssm_qkv, &L->ssm_gate, &L->ssm_beta, &L->ssm_alpha, &L->ssm_out };
        for (int i = 0; i < PER_LAYER; i++) ws[k++] = lw[i];
    }
    uint64_t total = 0, bytes = 0;
    for (int i = 0; i < n; i++)
        if (ws[i] && ar_weight_wants_pack(ws[i]))
            total += (uint64_t)ws[i]->row_bytes * (uint64_t)ws[i]->n_out;
    uint64_t next_report = 0;
    for (int i = 0; i < n && total; i++) {
        if (!ws[i]) continue;
        qwen35_pack_weight(m->gguf, ws[i], &bytes);
        if (bytes >= next_report && bytes < total) {
            ar_progress("rearranging weights", bytes, total);
            next_report = bytes + total / 50;
        }
    }
    if (total) ar_progress("rearranging weights", total, total);   /* ends the line (some may have stayed) */
    if (m->hp.tied_output) m->output = m->token_embd;
    free(ws);
    if (bytes)
        ar_log(AR_LOG_INFO, "%s: %.1f MB of weights rearranged into the compute kernels' tile layout in %.2f s", path,
               (double)bytes / 1e6, ar_now() - t0);
}

/* F32 tensor of exactly [ne0, ne1] (ne1 = 1 for vectors). */
static const float *bind_f32(problems *p, const char *name, int64_t ne0, int64_t ne1)
{
    const gguf_tensor *t = find(p, name, true);
    if (!t) return NULL;
    bool ok = true;
    if (!shape_is(t, ne0, ne1)) { shape_problem(p, t, ne0, ne1); ok = false; }
    if (t->type != AR_F32) {
        problem(p, AR_EUNSUPPORTED, "tensor %s has type %s, expected f32", t->name, ar_dtype_name(t->type));
        ok = false;
    }
    return ok ? (const float *)t->data : NULL;
}

static void bind_layer(problems *p, const qwen35_hparams *hp, int il, int n_ff, qwen35_layer *L)
{
    char nm[160];
#define NAME(suffix) (snprintf(nm, sizeof nm, "blk.%d." suffix, il), nm)
    const int64_t E = hp->n_embd;
    L->recurrent = hp->recurrent[il];
    L->n_ff = n_ff;
    L->attn_norm = bind_f32(p, NAME("attn_norm.weight"), E, 1);
    L->post_attention_norm = bind_f32(p, NAME("post_attention_norm.weight"), E, 1);
    bind_matrix(p, &L->ffn_gate, NAME("ffn_gate.weight"), E, n_ff, true);
    bind_matrix(p, &L->ffn_up, NAME("ffn_up.weight"), E, n_ff, true);
    bind_matrix(p, &L->ffn_down, NAME("ffn_down.weight"), n_ff, E, true);
    L->wqkv_attn.type = -1;
    if (!L->recurrent) {
        const int64_t D = hp->head_dim, qd = 2 * hp->n_head * D, kvd = hp->n_head_kv * D;
        if (!gguf_find_tensor(p->f, NAME("attn_q.weight")) && gguf_find_tensor(p->f, NAME("attn_qkv.weight"))) {
            bind_matrix(p, &L->wqkv_attn, nm, E, qd + 2 * kvd, true);   /* fused q|k|v */
        } else {
            bind_matrix(p, &L->wq, NAME("attn_q.weight"), E, qd, true);
            bind_matrix(p, &L->wk, NAME("attn_k.weight"), E, kvd, true);
            bind_matrix(p, &L->wv, NAME("attn_v.weight"), E, kvd, true);
        }
        bind_matrix(p, &L->wo, NAME("attn_output.weight"), hp->n_head * D, E, true);
        L->q_norm = bind_f32(p, NAME("attn_q_norm.weight"), D, 1);
        L->k_norm = bind_f32(p, NAME("attn_k_norm.weight"), D, 1);
    } else {
        const int64_t C = hp->ssm_conv_channels, Hv = hp->ssm_n_v_heads, dv = hp->ssm_head_dim;
        bind_matrix(p, &L->ssm_qkv, NAME("attn_qkv.weight"), E, C, true);
        bind_matrix(p, &L->ssm_gate, NAME("attn_gate.weight"), E, Hv * dv, true);
        bind_matrix(p, &L->ssm_beta, NAME("ssm_beta.weight"), E, Hv, true);
        bind_matrix(p, &L->ssm_alpha, NAME("ssm_alpha.weight"), E, Hv, true);
        bind_matrix(p, &L->ssm_out, NAME("ssm_out.weight"), Hv * dv, E, true);
        L->ssm_conv1d = bind_f32(p, NAME("ssm_conv1d.weight"), hp->ssm_d_conv, C);
        L->ssm_dt_bias = bind_f32(p, NAME("ssm_dt.bias"), Hv, 1);
        L->ssm_a = bind_f32(p, NAME("ssm_a"), Hv, 1);
        L->ssm_norm = bind_f32(p, NAME("ssm_norm.weight"), dv, 1);
    }
#undef NAME
}

int qwen35_load(qwen35_model **out, const char *path, ar_error *err)
{
    *out = NULL;
    qwen35_model *m = calloc(1, sizeof *m);
    if (!m) return ar_fail(err, AR_ENOMEM, "out of memory loading %s", path);
    if (ar_compute_isa_note()) ar_log(AR_LOG_WARN, "%s", ar_compute_isa_note());
    int rc = gguf_open(&m->gguf, path, err);
    if (rc != AR_OK) { free(m); return rc; }

    gguf_str arch;
    ar_error e;
    if (gguf_get_str(m->gguf, "general.architecture", &arch, &e) != AR_OK) {
        qwen35_free(m);
        return ar_fail(err, AR_EFORMAT, "%s: %s", path, e.msg);
    }
    if (!gguf_str_eq(arch, ARCH)) {
        ar_fail(err, AR_EUNSUPPORTED, "%s: architecture '%.*s' is not supported (arbor runs '" ARCH "' models)",
                path, (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
        qwen35_free(m);   /* after formatting: arch points into the mapping */
        return AR_EUNSUPPORTED;
    }

    problems p = { .f = m->gguf };
    qwen35_hparams *hp = &m->hp;
    read_hparams(&p, hp);

    /* globals */
    const gguf_tensor *te = find(&p, "token_embd.weight", true);
    if (te) {
        hp->n_vocab = (int)te->ne[1];
        bind_matrix(&p, &m->token_embd, "token_embd.weight", hp->n_embd, te->ne[1], true);
    }
    m->output_norm = bind_f32(&p, "output_norm.weight", hp->n_embd, 1);
    if (gguf_find_tensor(m->gguf, "output.weight")) {
        bind_matrix(&p, &m->output, "output.weight", hp->n_embd, hp->n_vocab, true);
    } else {
        hp->tied_output = true;
        m->output = m->token_embd;
    }

    /* layers */
    if (hp->n_layer > 0) {
        m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
        if (!m->layers) { qwen35_free(m); return ar_fail(err, AR_ENOMEM, "out of memory loading %s", path); }
        int64_t n_ff[QWEN35_MAX_LAYERS];
        key_per_layer(&p, "feed_forward_length", false, hp->n_ff, hp->n_layer_all, n_ff);
        int ia = 0, ig = 0;
        for (int il = 0; il < hp->n_layer; il++) {
            m->layers[il].kind_index = hp->recurrent[il] ? ig++ : ia++;
            bind_layer(&p, hp, il, (int)n_ff[il], &m->layers[il]);
        }
    }

    if (p.n) {
        int code = p.code;
        qwen35_free(m);
        return ar_fail(err, code, "%s: %d problem%s: %s", path, p.n, p.n == 1 ? "" : "s", p.text);
    }

    pack_weights(m, path);
    m->rope = (ar_rope){ .n_rot = hp->n_rot, .theta_base = hp->rope_theta, .imrope = 1 };
    memcpy(m->rope.sections, hp->rope_sections, sizeof m->rope.sections);

    ar_log(AR_LOG_INFO, "%s: qwen35, %d layers (%d gated DeltaNet, %d attention)%s, n_embd %d, vocab %d, ff %d, "
           "attn %dx%d (kv %d, rope %d), gdn k %d v %d x %d", path, hp->n_layer, hp->n_gdn_layers,
           hp->n_attn_layers, hp->n_nextn ? " + MTP (not run)" : "", hp->n_embd, hp->n_vocab, hp->n_ff,
           hp->n_head, hp->head_dim, hp->n_head_kv, hp->n_rot, hp->ssm_n_k_heads, hp->ssm_n_v_heads,
           hp->ssm_head_dim);
    *out = m;
    return AR_OK;
}

void qwen35_free(qwen35_model *m)
{
    if (!m) return;
    free(m->layers);
    gguf_close(m->gguf);
    free(m);
}

const qwen35_hparams *qwen35_hparams_of(const qwen35_model *m) { return &m->hp; }
void qwen35_set_kv_f32(qwen35_model *m, bool f32) { m->kv_f32 = f32; }
bool qwen35_kv_f32(const qwen35_model *m) { return m->kv_f32; }
const gguf_file *qwen35_gguf(const qwen35_model *m) { return m->gguf; }
