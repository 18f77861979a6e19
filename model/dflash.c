/* model/dflash.c — the DFlash drafter forward (specs/dflash.md §1.3-1.7): context cache and block.
 *
 * append  (llama.cpp's "KV injection"): for committed features F_p, c_p = RMSNorm(W_fc F_p) *
 *         hidden_norm, then per layer K_p = RoPE(k_norm(Wk c_p), p), V_p = Wv c_p written straight
 *         into the state at slot p. Context rows skip attn_norm and are the same c_p for every layer.
 * draft   block rows h_j = E_target[token_j] (anchor, then MASKs) at positions P+j; per layer
 *             x = RMSNorm(h) * attn_norm;  Q, K, V = Wq x, Wk x, Wv x;  q_norm / k_norm per head; RoPE
 *             h += Wo · attention(Q over visible context K/V and visible block K/V)
 *             h += W_down(silu(W_gate y) * W_up y),  y = RMSNorm(h) * ffn_norm
 *         then o = RMSNorm(h) * output_norm and logits = W_lm(target) · o for rows row0..n-1.
 * Visibility (§1.5): a query at p1 = P+j sees every committed context row and every block row
 * (non-causal), except that a causal drafter hides block rows i > j, and on sliding-window layers
 * llama.cpp hides keys with p1 - p0 >= W while Lucebox makes the block causal and shows the context
 * rows [P-W, P) to every query. Both keys sets stay contiguous runs, so attention walks at most two
 * runs per (query, head) with the online softmax of compute/ops.h.
 * Every step works on all rows at once (weights read once per call); scratch lives in the ctx. */
#include "model/dflash_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"

struct dflash_state {
    const dflash_model *d;
    int n_ctx, n_past;
    size_t kvd;
    float *k, *v;             /* [n_layer][n_ctx][kvd] */
};

/* Most query rows a drafter attention tile gathers (block rows x heads per KV head; at least one row). */
enum { TILE_ROWS = 32 };

struct dflash_ctx {
    const dflash_model *d;
    ar_compute *comp;
    int max_rows, n_threads;
    dflash_swa_mode swa_mode;
    /* per call, [max_rows][...] */
    float *h, *x, *q, *kb, *vb, *o, *gate, *up;
    int32_t *tokens;
    int *pos;
    /* per thread */
    float *attn_acc;          /* [n_threads][tile_rows][head_dim] accumulators */
    ar_attn_acc *att;         /* [n_threads][tile_rows] */
    ar_attn_acc **gacc;       /* [n_threads][tile_rows] the rows of one ar_attn_rows call */
    const float **gq;         /* [n_threads][tile_rows] */
    int tile_nodes, tile_rows;   /* block rows per tile; x query heads per KV head */
    float *rope_cs;           /* [n_threads][n_rot] */
    /* the call in flight (read by the workers) */
    dflash_state *st;
    const float *ctx_k, *ctx_v;  /* layer views for attention */
    int n_rows, P, n_ctx_rows, layer;
};

/* ---- state ------------------------------------------------------------------------------------ */

int dflash_state_create(dflash_state **out, const dflash_model *d, int n_ctx, ar_error *err)
{
    *out = NULL;
    if (n_ctx < 1) return ar_fail(err, AR_EINVAL, "drafter context of %d positions", n_ctx);
    const dflash_hparams *hp = &d->hp;
    dflash_state *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory");
    s->d = d;
    s->n_ctx = n_ctx;
    s->kvd = (size_t)hp->n_head_kv * (size_t)hp->head_dim;
    size_t n = (size_t)hp->n_layer * (size_t)n_ctx * s->kvd;
    s->k = malloc(n * sizeof(float));
    s->v = malloc(n * sizeof(float));
    if (!s->k || !s->v) {
        dflash_state_free(s);
        return ar_fail(err, AR_ENOMEM, "out of memory for the drafter context cache (%.1f MiB for %d positions)",
                       2.0 * (double)n * 4.0 / 1048576.0, n_ctx);
    }
    *out = s;
    return AR_OK;
}

void dflash_state_free(dflash_state *s)
{
    if (!s) return;
    free(s->k);
    free(s->v);
    free(s);
}

void dflash_state_reset(dflash_state *s) { s->n_past = 0; }
int dflash_state_n_past(const dflash_state *s) { return s->n_past; }
int dflash_state_n_ctx(const dflash_state *s) { return s->n_ctx; }

int dflash_rollback(dflash_state *s, int n_past)
{
    if (n_past < 0 || n_past > s->n_past) return AR_EINVAL;
    s->n_past = n_past;
    return AR_OK;
}

static float *state_k(const dflash_state *s, int layer, int pos)
{
    return s->k + ((size_t)layer * (size_t)s->n_ctx + (size_t)pos) * s->kvd;
}

static float *state_v(const dflash_state *s, int layer, int pos)
{
    return s->v + ((size_t)layer * (size_t)s->n_ctx + (size_t)pos) * s->kvd;
}

/* ---- ctx -------------------------------------------------------------------------------------- */

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

int dflash_ctx_create(dflash_ctx **out, const dflash_model *d, int max_rows, int n_threads, ar_error *err)
{
    *out = NULL;
    const dflash_hparams *hp = &d->hp;
    if (max_rows < 1) return ar_fail(err, AR_EINVAL, "max_rows must be >= 1 (got %d)", max_rows);
    dflash_ctx *c = calloc(1, sizeof *c);
    if (!c) return ar_fail(err, AR_ENOMEM, "out of memory creating the drafter context");
    c->d = d;
    c->max_rows = max_rows;
    const size_t R = (size_t)max_rows, E = (size_t)hp->n_embd, D = (size_t)hp->head_dim;
    const size_t qd = (size_t)hp->n_head * D, kvd = (size_t)hp->n_head_kv * D, F = (size_t)hp->n_ff;
    const size_t fin = (size_t)hp->n_tap * E;
    int64_t max_in = (int64_t)maxz(maxz(fin, E), maxz(qd, F));
    int rc = ar_compute_create(&c->comp, n_threads, max_in, max_rows, err);
    if (rc != AR_OK) { free(c); return rc; }
    c->n_threads = ar_compute_n_threads(c->comp);
    const size_t T = (size_t)c->n_threads;
    c->h = malloc(R * E * sizeof(float));
    c->x = malloc(R * E * sizeof(float));
    c->q = malloc(R * qd * sizeof(float));
    c->kb = malloc(R * kvd * sizeof(float));
    c->vb = malloc(R * kvd * sizeof(float));
    c->o = malloc(R * qd * sizeof(float));
    c->gate = malloc(R * F * sizeof(float));
    c->up = malloc(R * F * sizeof(float));
    c->tokens = malloc(R * sizeof(int32_t));
    c->pos = malloc(R * sizeof(int));
    const int group = hp->n_head_kv > 0 ? hp->n_head / hp->n_head_kv : 1;
    c->tile_nodes = group >= TILE_ROWS || group < 1 ? 1 : TILE_ROWS / group;
    c->tile_rows = c->tile_nodes * (group > 0 ? group : 1);
    const size_t TR = T * (size_t)c->tile_rows;
    c->attn_acc = malloc(TR * D * sizeof(float));
    c->att = malloc(TR * sizeof *c->att);
    c->gacc = malloc(TR * sizeof *c->gacc);
    c->gq = malloc(TR * sizeof *c->gq);
    c->rope_cs = malloc(T * (size_t)hp->n_rot * sizeof(float));
    if (!c->h || !c->x || !c->q || !c->kb || !c->vb || !c->o || !c->gate || !c->up || !c->tokens || !c->pos ||
        !c->attn_acc || !c->att || !c->gacc || !c->gq || !c->rope_cs) {
        dflash_ctx_free(c);
        return ar_fail(err, AR_ENOMEM, "out of memory for a drafter context of %d rows", max_rows);
    }
    *out = c;
    return AR_OK;
}

void dflash_ctx_free(dflash_ctx *c)
{
    if (!c) return;
    ar_compute_free(c->comp);
    void *bufs[] = { c->h, c->x, c->q, c->kb, c->vb, c->o, c->gate, c->up, c->tokens, c->pos, c->attn_acc, c->att,
                     c->gacc, (void *)c->gq, c->rope_cs };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(c);
}

void dflash_ctx_set_swa_mode(dflash_ctx *c, dflash_swa_mode mode) { c->swa_mode = mode; }

/* ---- parallel row loops ------------------------------------------------------------------------ */

typedef void (*range_fn)(dflash_ctx *c, const void *arg, int lo, int hi, int ith);
typedef struct { dflash_ctx *c; range_fn fn; const void *arg; } par_task;

static void par_range(void *p, int lo, int hi, int ith)
{
    const par_task *t = p;
    t->fn(t->c, t->arg, lo, hi, ith);
}

static void par_for(dflash_ctx *c, int n, range_fn fn, const void *arg)
{
    par_task t = { c, fn, arg };
    ar_compute_for(c->comp, n, par_range, &t);
}

typedef struct { float *dst; const float *src; const float *w; } norm_arg;

/* dst[i] = RMSNorm(src[i]) * w, rows of n_embd */
static void norm_rows(dflash_ctx *c, const void *arg, int lo, int hi, int ith)
{
    (void)ith;
    const norm_arg *a = arg;
    const int E = c->d->hp.n_embd;
    for (int i = lo; i < hi; i++) ar_rmsnorm(a->dst + (size_t)i * E, a->src + (size_t)i * E, a->w, E, c->d->hp.rms_eps);
}

static void residual_rows(dflash_ctx *c, const void *arg, int lo, int hi, int ith)
{
    (void)arg; (void)ith;
    const size_t E = (size_t)c->d->hp.n_embd;
    for (size_t j = (size_t)lo * E; j < (size_t)hi * E; j++) c->h[j] += c->x[j];
}

static void swiglu_rows(dflash_ctx *c, const void *arg, int lo, int hi, int ith)
{
    (void)arg; (void)ith;
    const size_t F = (size_t)c->d->hp.n_ff;
    ar_silu_mul(c->gate + (size_t)lo * F, c->gate + (size_t)lo * F, c->up + (size_t)lo * F, (int64_t)(hi - lo) * (int64_t)F);
}

static void embed_rows(dflash_ctx *c, const void *arg, int lo, int hi, int ith)
{
    (void)arg; (void)ith;
    const int E = c->d->hp.n_embd;
    const float s = c->d->hp.embd_scale;
    for (int i = lo; i < hi; i++) {
        float *h = c->h + (size_t)i * E;
        ar_get_row(&c->d->tok_embd, c->tokens[i], h);
        if (s != 1.0f)
            for (int e = 0; e < E; e++) h[e] *= s;
    }
}

/* K (and Q when q != NULL): per-head RMSNorm with the layer's gains, then RoPE at c->pos[i]. V of a
 * shared-KV layer is RMSNorm of the raw K (llama.cpp), taken before k_norm. */
typedef struct { const dflash_layer *L; float *q, *k, *v; size_t ldk; } qk_arg;

static void qk_rows(dflash_ctx *c, const void *arg, int lo, int hi, int ith)
{
    const qk_arg *a = arg;
    const dflash_hparams *hp = &c->d->hp;
    const int D = hp->head_dim;
    float *cs = c->rope_cs + (size_t)ith * (size_t)hp->n_rot;
    for (int i = lo; i < hi; i++) {
        float *k = a->k + (size_t)i * a->ldk;
        if (a->L->shared_kv) {
            float *v = a->v + (size_t)i * a->ldk;
            for (int h = 0; h < hp->n_head_kv; h++) ar_rmsnorm(v + h * D, k + h * D, NULL, D, hp->rms_eps);
        }
        for (int h = 0; h < hp->n_head_kv; h++) ar_rmsnorm(k + h * D, k + h * D, a->L->k_norm, D, hp->rms_eps);
        ar_rope_cache(&c->d->rope, c->pos[i], cs);
        ar_rope_apply(k, hp->n_head_kv, D, hp->n_rot, cs);
        if (a->q) {
            float *q = a->q + (size_t)i * (size_t)hp->n_head * D;
            for (int h = 0; h < hp->n_head; h++) ar_rmsnorm(q + h * D, q + h * D, a->L->q_norm, D, hp->rms_eps);
            ar_rope_apply(q, hp->n_head, D, hp->n_rot, cs);
        }
    }
}

/* ---- append: context K/V ("KV injection") -------------------------------------------------------- */

int dflash_append(dflash_ctx *c, dflash_state *s, const float *features, int n, int pos0, ar_error *err)
{
    const dflash_model *d = c->d;
    const dflash_hparams *hp = &d->hp;
    if (s->d != d) return ar_fail(err, AR_EINVAL, "dflash_append: state and context belong to different drafters");
    if (n < 0 || (n > 0 && !features)) return ar_fail(err, AR_EINVAL, "dflash_append: %d rows without features", n);
    if (pos0 != s->n_past)
        return ar_fail(err, AR_EINVAL, "dflash_append: features for position %d, but the drafter cache holds %d "
                       "positions (append committed positions in order)", pos0, s->n_past);
    if (s->n_past + n > s->n_ctx)
        return ar_fail(err, AR_ERANGE, "dflash_append: %d positions exceed the drafter context of %d", s->n_past + n,
                       s->n_ctx);
    const int E = hp->n_embd, fin = hp->n_tap * E;
    for (int r0 = 0; r0 < n; r0 += c->max_rows) {
        const int M = n - r0 < c->max_rows ? n - r0 : c->max_rows, p0 = s->n_past;
        for (int i = 0; i < M; i++) c->pos[i] = p0 + i;
        ar_matmul(c->comp, &d->fc, features + (size_t)r0 * fin, fin, c->x, E, M);          /* W_fc F */
        par_for(c, M, norm_rows, &(norm_arg){ c->h, c->x, d->hidden_norm });            /* c = RMSNorm * hidden_norm */
        for (int il = 0; il < hp->n_layer; il++) {
            const dflash_layer *L = &d->layers[il];
            float *K = state_k(s, il, p0), *V = state_v(s, il, p0);
            ar_matmul(c->comp, &L->wk, c->h, E, K, (int64_t)s->kvd, M);
            if (!L->shared_kv) ar_matmul(c->comp, &L->wv, c->h, E, V, (int64_t)s->kvd, M);
            par_for(c, M, qk_rows, &(qk_arg){ L, NULL, K, V, s->kvd });
        }
        s->n_past = p0 + M;
    }
    return AR_OK;
}

/* ---- draft: the block forward --------------------------------------------------------------------- */

/* Visible keys of query row j on layer il: context positions [*c_lo, P) and block rows [*b_lo, *b_hi). */
static void visible(const dflash_ctx *c, int il, int j, int n_block, int P, int *c_lo, int *b_lo, int *b_hi)
{
    const dflash_hparams *hp = &c->d->hp;
    *c_lo = 0;
    *b_lo = 0;
    *b_hi = hp->causal ? j + 1 : n_block;
    if (hp->swa_window > 0 && hp->swa[il]) {
        const int W = hp->swa_window;
        if (c->swa_mode == DFLASH_SWA_LUCEBOX) {
            *c_lo = P - W;
            *b_hi = j + 1;
        } else {                         /* hidden iff (P + j) - p0 >= W */
            *c_lo = P + j - W + 1;
            *b_lo = j - W + 1;
        }
        if (*c_lo < 0) *c_lo = 0;
        if (*b_lo < 0) *b_lo = 0;
    }
}

/* One tile per item: up to tile_nodes block rows x the query heads of one KV head. Rows whose visible
 * ranges are equal (all of them without a causal mask or a sliding window) go through ar_attn_rows
 * together, which reads each key block once for all of them; a row's arithmetic is the same as alone. */
static void attend(dflash_ctx *c, const void *arg, int lo, int hi, int ith)
{
    (void)arg;
    const dflash_hparams *hp = &c->d->hp;
    const int D = hp->head_dim, H = hp->n_head, KVH = hp->n_head_kv, group = H / KVH;
    const size_t kvd = (size_t)KVH * D, t0r = (size_t)ith * (size_t)c->tile_rows;
    float *acc_o = c->attn_acc + t0r * (size_t)D;
    ar_attn_acc *acc = c->att + t0r, **gacc = c->gacc + t0r;
    const float **gq = c->gq + t0r;
    int rng[TILE_ROWS][3];
    for (int item = lo; item < hi; item++) {
        const int tile = item / KVH, kvh = item % KVH;
        const int j0 = tile * c->tile_nodes;
        const int tn = c->n_rows - j0 < c->tile_nodes ? c->n_rows - j0 : c->tile_nodes;
        for (int t = 0; t < tn; t++) {
            visible(c, c->layer, j0 + t, c->n_rows, c->P, &rng[t][0], &rng[t][1], &rng[t][2]);
            for (int g = 0; g < group; g++) ar_attn_begin(&acc[t * group + g], acc_o + (size_t)(t * group + g) * D, D);
        }
        unsigned done = 0;
        for (int t = 0; t < tn; t++) {
            if (done >> t & 1) continue;
            int R = 0;
            for (int u = t; u < tn; u++) {
                if (done >> u & 1 || rng[u][0] != rng[t][0] || rng[u][1] != rng[t][1] || rng[u][2] != rng[t][2]) continue;
                done |= 1u << u;
                for (int g = 0; g < group; g++) {
                    gacc[R] = &acc[u * group + g];
                    gq[R++] = c->q + (size_t)(j0 + u) * (size_t)H * D + (size_t)(kvh * group + g) * D;
                }
            }
            const int c_lo = rng[t][0], b_lo = rng[t][1], b_hi = rng[t][2];
            if (c->n_ctx_rows > c_lo)
                ar_attn_block(gacc, gq, R, c->ctx_k + (size_t)c_lo * kvd + (size_t)kvh * D,
                           c->ctx_v + (size_t)c_lo * kvd + (size_t)kvh * D, kvd, c->n_ctx_rows - c_lo, hp->attn_scale);
            if (b_hi > b_lo)
                ar_attn_block(gacc, gq, R, c->kb + (size_t)b_lo * kvd + (size_t)kvh * D,
                           c->vb + (size_t)b_lo * kvd + (size_t)kvh * D, kvd, b_hi - b_lo, hp->attn_scale);
        }
        for (int t = 0; t < tn; t++)
            for (int g = 0; g < group; g++)
                ar_attn_finish(&acc[t * group + g], c->o + (size_t)(j0 + t) * (size_t)H * D + (size_t)(kvh * group + g) * D);
    }
}

int dflash_draft(dflash_ctx *c, const dflash_state *s, int32_t anchor, int pos, int n_block, int row0,
                 float *logits, ar_error *err)
{
    const dflash_model *d = c->d;
    const dflash_hparams *hp = &d->hp;
    if (s->d != d) return ar_fail(err, AR_EINVAL, "dflash_draft: state and context belong to different drafters");
    if (n_block < 1 || n_block > c->max_rows)
        return ar_fail(err, AR_EINVAL, "dflash_draft: block of %d rows (the context was made for up to %d)", n_block,
                       c->max_rows);
    if (row0 < 0 || row0 >= n_block || !logits)
        return ar_fail(err, AR_EINVAL, "dflash_draft: logits from row %d of a %d-row block", row0, n_block);
    if (anchor < 0 || anchor >= d->n_vocab)
        return ar_fail(err, AR_EINVAL, "dflash_draft: anchor token %d out of range (vocab %d)", anchor, d->n_vocab);
    if (pos != s->n_past)
        return ar_fail(err, AR_EINVAL, "dflash_draft: anchor at position %d, but the drafter cache holds %d committed "
                       "positions (the anchor is the first position without features)", pos, s->n_past);
    const int E = hp->n_embd, M = n_block;
    const size_t qd = (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    for (int i = 0; i < M; i++) {
        c->tokens[i] = i == 0 ? anchor : hp->mask_token;
        c->pos[i] = pos + i;
    }
    c->n_rows = M;
    c->P = pos;
    c->n_ctx_rows = s->n_past;

    par_for(c, M, embed_rows, NULL);                                                     /* h = E[token] */
    for (int il = 0; il < hp->n_layer; il++) {
        const dflash_layer *L = &d->layers[il];
        par_for(c, M, norm_rows, &(norm_arg){ c->x, c->h, L->attn_norm });               /* x = RMSNorm(h) */
        ar_matmul(c->comp, &L->wq, c->x, E, c->q, (int64_t)qd, M);
        ar_matmul(c->comp, &L->wk, c->x, E, c->kb, (int64_t)kvd, M);
        if (!L->shared_kv) ar_matmul(c->comp, &L->wv, c->x, E, c->vb, (int64_t)kvd, M);
        par_for(c, M, qk_rows, &(qk_arg){ L, c->q, c->kb, c->vb, kvd });
        c->layer = il;
        c->ctx_k = state_k(s, il, 0);
        c->ctx_v = state_v(s, il, 0);
        par_for(c, (M + c->tile_nodes - 1) / c->tile_nodes * hp->n_head_kv, attend, NULL);
        ar_matmul(c->comp, &L->wo, c->o, (int64_t)qd, c->x, E, M);
        par_for(c, M, residual_rows, NULL);                                              /* h += attn */
        par_for(c, M, norm_rows, &(norm_arg){ c->x, c->h, L->ffn_norm });                /* x = RMSNorm(h) */
        ar_matmul(c->comp, &L->ffn_gate, c->x, E, c->gate, hp->n_ff, M);
        ar_matmul(c->comp, &L->ffn_up, c->x, E, c->up, hp->n_ff, M);
        par_for(c, M, swiglu_rows, NULL);
        ar_matmul(c->comp, &L->ffn_down, c->gate, hp->n_ff, c->x, E, M);
        par_for(c, M, residual_rows, NULL);                                              /* h += ffn */
    }
    par_for(c, M, norm_rows, &(norm_arg){ c->x, c->h, d->output_norm });                 /* drafter's own norm */
    ar_matmul(c->comp, &d->lm_head, c->x + (size_t)row0 * E, E, logits, d->n_vocab, M - row0);  /* target head */
    return AR_OK;
}
