/* model/qwen35.c — the qwen35 forward pass over a batch of nodes, and commit.
 *
 * Reads like the math of specs/qwen35.md §3: embed, then per layer RMSNorm -> (gated DeltaNet |
 * gated attention) -> residual -> RMSNorm -> SwiGLU FFN -> residual, then the final norm and the LM
 * head for the nodes that want logits. Every step runs on all M nodes of the batch at once, so each
 * weight matrix is read once per forward (compute/ops.h matmul).
 *
 * The batch is a forest of nodes (model/qwen35.h). The two rules that make any forest work:
 *   attention  a node attends to its sequence's committed KV (pages) and then to its in-batch
 *              ancestors and itself, root first (walked through parent links);
 *   GDN        a node's state = its parent's state advanced by its token. Per GDN layer and V head
 *              the nodes run in batch order with a small set of state slots: a root copies the
 *              committed state, a parent's LAST child takes the parent's slot over (so a chain is
 *              one running state, updated in place), other children copy it; a slot is released
 *              when its node has no children. The slot plan is made once per forward (prepare).
 *   conv       a node's window = the conv inputs of its d_conv-1 nearest ancestors, continued into
 *              the committed window.
 * Nothing committed is written by a forward, with one exception: nodes the caller promises to
 * commit (ar_node.commit: prompt chunks, plain decoding) run their GDN steps in place on the
 * sequence's committed state, and their commit only appends K/V and slides the conv window.
 * Otherwise the forward keeps, per node, what commit needs:
 * K (normed, roped) and V of every attention layer, and the raw conv input, g and beta of every
 * GDN layer. Commit appends the path's K/V to the pages and replays conv + L2 norm + the delta
 * rule along the path with the same kernels, so the committed state is bit-identical to the state
 * the forward used for the path's last node. */
#include "model/qwen35_impl.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/half.h"
#include "base/log.h"

/* Most query rows an attention tile gathers (nodes x heads per KV head; at least one node). */
enum { ATT_TILE_ROWS = 32 };

struct qwen35_ctx {
    const qwen35_model *m;
    ar_compute *comp;
    int max_nodes, n_threads;

    /* the last forward */
    bool valid;
    int n_nodes;
    ar_node *nodes;
    qwen35_seq **node_seq;
    int *node_past;            /* n_past of the node's sequence at forward time */
    int *depth, *n_children, *remaining;
    int *conv_src;             /* [node][d_conv-1]: >= 0 node, < 0: -(1 + committed window row) */
    int *gdn_slot, *gdn_from;  /* slot of each node; from: -1 committed, -2 in place, >= 0 copy slot */
    int *free_slots;
    int n_slots, cap_slots;
    float *slots;              /* [n_threads][cap_slots][d_v * d_k] */

    /* activations, [max_nodes][...] */
    float *x, *h, *proj, *proj2, *mix;
    size_t ld_proj, ld_proj2, ld_mix;
    int *logit_nodes;

    /* per thread */
    /* attention tiles (attend): tile_nodes nodes of one sequence x the query heads of one KV head */
    int att_tile_nodes, att_rows;      /* nodes per tile; rows per tile = tile_nodes x heads per KV head */
    int *att_tiles;                    /* [max_nodes + 1] first node of each tile of the forward */
    float *attn_o;                     /* [n_threads][att_rows][head_dim] accumulators */
    ar_attn_acc *att_acc;              /* [n_threads][att_rows] */
    ar_attn_acc **att_gacc;            /* [n_threads][att_rows] the rows of one ar_attn_rows call */
    const float **att_gq;              /* [n_threads][att_rows] */
    int *anc_stack;                    /* [n_threads][att_tile_nodes][max_nodes] in-batch ancestors */
    float *rope_cs;            /* [n_threads][n_rot] */

    /* kept for commit */
    float *scr_k, *scr_v;              /* [max_nodes][kv_dim] one layer's K and V as projected (F32) */
    unsigned char *keep_k, *keep_v;    /* [n_attn][max_nodes][kv_dim] as the KV cache stores them (kv_elt) */
    int kv_elt;                        /* 2 (F16) or 4 (F32): the model's KV element size */
    float *keep_mixed;                 /* [n_gdn][max_nodes][channels] raw conv input */
    float *keep_g, *keep_beta;         /* [n_gdn][max_nodes][n_v_heads] */
    /* ar_node.capture: the recurrent state after that node, kept for qwen35_snap_take_captured */
    int cap_node;                      /* node of the last forward, -1: none */
    float *cap_state, *cap_conv;       /* [n_gdn][n_v_heads][d_v * d_k], [n_gdn][d_conv-1][channels]; on first use */
    const qwen35_seq *cap_seq;         /* the sequence whose commit made the capture ready, */
    int cap_n_past;                    /*   and its position count then (0: nothing ready) */
};

/* ---- small helpers ------------------------------------------------------------------------- */

static size_t max3(size_t a, size_t b, size_t c) { return a > b ? (a > c ? a : c) : (b > c ? b : c); }

static void *xalloc(size_t n, size_t size, bool *ok)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) *ok = false;
    return p;
}

/* Parallel loop over [0, n) on the pool (ar_compute_for): fn(c, arg, lo, hi, ith). */
typedef void (*range_fn)(qwen35_ctx *c, void *arg, int lo, int hi, int ith);
typedef struct { qwen35_ctx *c; range_fn fn; void *arg; } par_task;

static void par_range(void *p, int lo, int hi, int ith)
{
    const par_task *t = p;
    t->fn(t->c, t->arg, lo, hi, ith);
}

static void par_for(qwen35_ctx *c, int n, range_fn fn, void *arg)
{
    par_task t = { c, fn, arg };
    ar_compute_for(c->comp, n, par_range, &t);
}

/* ---- ctx ------------------------------------------------------------------------------------ */

int qwen35_ctx_create(qwen35_ctx **out, const qwen35_model *m, int max_nodes, int n_threads, ar_error *err)
{
    *out = NULL;
    const qwen35_hparams *hp = &m->hp;
    if (max_nodes < 1) return ar_fail(err, AR_EINVAL, "max_nodes must be >= 1 (got %d)", max_nodes);
    qwen35_ctx *c = calloc(1, sizeof *c);
    if (!c) return ar_fail(err, AR_ENOMEM, "out of memory creating a model context");
    c->m = m;
    c->max_nodes = max_nodes;
    c->cap_node = -1;

    const size_t E = (size_t)hp->n_embd, M = (size_t)max_nodes, D = (size_t)hp->head_dim;
    const size_t qd2 = 2 * (size_t)hp->n_head * D, kvd = (size_t)hp->n_head_kv * D;
    const size_t C = (size_t)hp->ssm_conv_channels, vd = (size_t)hp->ssm_d_inner;
    const size_t Hv = (size_t)hp->ssm_n_v_heads, taps1 = (size_t)(hp->ssm_d_conv > 0 ? hp->ssm_d_conv - 1 : 0);
    const size_t F = (size_t)hp->n_ff;

    int64_t max_in = (int64_t)max3(E, (size_t)hp->n_head * D, max3(vd, F, 1));
    int rc = ar_compute_create(&c->comp, n_threads, max_in, max_nodes, err);
    if (rc != AR_OK) { free(c); return rc; }
    c->n_threads = ar_compute_n_threads(c->comp);
    const size_t T = (size_t)c->n_threads;

    c->ld_proj = max3(qd2 + 2 * kvd, C, F);
    c->ld_proj2 = max3(F, vd, 1);
    c->ld_mix = max3((size_t)hp->n_head * D, vd, 1);

    bool ok = true;
    c->nodes = xalloc(M, sizeof *c->nodes, &ok);
    c->node_seq = xalloc(M, sizeof *c->node_seq, &ok);
    c->node_past = xalloc(M, sizeof(int), &ok);
    c->depth = xalloc(M, sizeof(int), &ok);
    c->n_children = xalloc(M, sizeof(int), &ok);
    c->remaining = xalloc(M, sizeof(int), &ok);
    c->conv_src = xalloc(M * taps1, sizeof(int), &ok);
    c->gdn_slot = xalloc(M, sizeof(int), &ok);
    c->gdn_from = xalloc(M, sizeof(int), &ok);
    c->free_slots = xalloc(M, sizeof(int), &ok);
    c->logit_nodes = xalloc(M, sizeof(int), &ok);
    c->x = xalloc(M * E, sizeof(float), &ok);
    c->h = xalloc(M * E, sizeof(float), &ok);
    c->proj = xalloc(M * c->ld_proj, sizeof(float), &ok);
    c->proj2 = xalloc(M * c->ld_proj2, sizeof(float), &ok);
    c->mix = xalloc(M * c->ld_mix, sizeof(float), &ok);
    const int group = hp->n_head_kv > 0 ? hp->n_head / hp->n_head_kv : 1;
    c->att_tile_nodes = group >= ATT_TILE_ROWS || group < 1 ? 1 : ATT_TILE_ROWS / group;
    c->att_rows = c->att_tile_nodes * (group > 0 ? group : 1);
    const size_t TR = T * (size_t)c->att_rows;
    c->att_tiles = xalloc(M + 1, sizeof(int), &ok);
    c->attn_o = xalloc(TR * (D ? D : 1), sizeof(float), &ok);
    c->att_acc = xalloc(TR, sizeof *c->att_acc, &ok);
    c->att_gacc = xalloc(TR, sizeof *c->att_gacc, &ok);
    c->att_gq = xalloc(TR, sizeof *c->att_gq, &ok);
    c->anc_stack = xalloc(T * (size_t)c->att_tile_nodes * M, sizeof(int), &ok);
    c->rope_cs = xalloc(T * (size_t)(hp->n_rot > 0 ? hp->n_rot : 1), sizeof(float), &ok);
    c->scr_k = xalloc(M * kvd, sizeof(float), &ok);
    c->scr_v = xalloc(M * kvd, sizeof(float), &ok);
    c->kv_elt = qwen35_kv_f32(m) ? 4 : 2;
    c->keep_k = xalloc((size_t)hp->n_attn_layers * M * kvd, (size_t)c->kv_elt, &ok);
    c->keep_v = xalloc((size_t)hp->n_attn_layers * M * kvd, (size_t)c->kv_elt, &ok);
    c->keep_mixed = xalloc((size_t)hp->n_gdn_layers * M * C, sizeof(float), &ok);
    c->keep_g = xalloc((size_t)hp->n_gdn_layers * M * Hv, sizeof(float), &ok);
    c->keep_beta = xalloc((size_t)hp->n_gdn_layers * M * Hv, sizeof(float), &ok);
    c->cap_slots = max_nodes < 4 ? max_nodes : 4;
    c->slots = xalloc(T * (size_t)c->cap_slots * (size_t)hp->ssm_head_dim * (size_t)hp->ssm_head_dim, sizeof(float), &ok);
    if (!ok) {
        qwen35_ctx_free(c);
        return ar_fail(err, AR_ENOMEM, "out of memory for a context of %d nodes", max_nodes);
    }
    *out = c;
    return AR_OK;
}

/* ar_node.capture's buffers, sized as a snapshot's (qwen35_snap_adopt takes them over) */
static size_t cap_state_floats(const qwen35_hparams *hp) { return (size_t)hp->n_gdn_layers * qwen35_state_floats(hp); }
static size_t cap_conv_floats(const qwen35_hparams *hp) { return (size_t)hp->n_gdn_layers * qwen35_conv_floats(hp); }

void qwen35_ctx_free(qwen35_ctx *c)
{
    if (!c) return;
    ar_compute_free(c->comp);
    void *bufs[] = { c->nodes, c->node_seq, c->node_past, c->depth, c->n_children, c->remaining, c->conv_src,
                     c->gdn_slot, c->gdn_from, c->free_slots, c->slots, c->x, c->h, c->proj, c->proj2, c->mix,
                     c->logit_nodes, c->attn_o, c->anc_stack, c->rope_cs, c->att_tiles, c->att_acc, c->att_gacc,
                     (void *)c->att_gq, c->scr_k, c->scr_v, c->keep_k, c->keep_v, c->keep_mixed,
                     c->keep_g, c->keep_beta };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    qwen35_state_free(c->cap_state, cap_state_floats(&c->m->hp));
    qwen35_state_free(c->cap_conv, cap_conv_floats(&c->m->hp));
    free(c);
}

int qwen35_ctx_max_nodes(const qwen35_ctx *c) { return c->max_nodes; }

/* ---- batch preparation ------------------------------------------------------------------- */

static int validate(qwen35_ctx *c, qwen35_seq *const *seqs, const ar_batch *b, ar_error *err)
{
    const qwen35_hparams *hp = &c->m->hp;
    if (!b || b->n_nodes < 1) return ar_fail(err, AR_EINVAL, "empty batch");
    if (b->n_nodes > c->max_nodes)
        return ar_fail(err, AR_EINVAL, "batch of %d nodes exceeds the context's max_nodes %d", b->n_nodes, c->max_nodes);
    if (!b->nodes || !seqs) return ar_fail(err, AR_EINVAL, "batch without nodes or sequences");
    if (b->n_taps < 0 || (b->n_taps > 0 && (!b->tap_layers || !b->taps)))
        return ar_fail(err, AR_EINVAL, "batch asks for %d taps without tap_layers/taps buffers", b->n_taps);
    for (int t = 0; t < b->n_taps; t++)
        if (b->tap_layers[t] < 0 || b->tap_layers[t] > hp->n_layer)
            return ar_fail(err, AR_EINVAL, "tap layer %d out of range 0..%d", b->tap_layers[t], hp->n_layer);
    int n_logits = 0, n_capture = 0;
    for (int i = 0; i < b->n_nodes; i++) {
        const ar_node *nd = &b->nodes[i];
        if (nd->seq < 0 || !seqs[nd->seq]) return ar_fail(err, AR_EINVAL, "node %d: sequence %d is missing", i, nd->seq);
        if (seqs[nd->seq]->m != c->m) return ar_fail(err, AR_EINVAL, "node %d: sequence %d belongs to another model", i, nd->seq);
        if (seqs[nd->seq]->kv.elt != c->kv_elt)
            return ar_fail(err, AR_EINVAL, "node %d: sequence %d stores its KV as %s, the context as %s (set the KV type "
                           "before creating either)", i, nd->seq, seqs[nd->seq]->kv.elt == 2 ? "F16" : "F32",
                           c->kv_elt == 2 ? "F16" : "F32");
        if (nd->token < 0 || nd->token >= hp->n_vocab)
            return ar_fail(err, AR_EINVAL, "node %d: token %d out of range (vocab %d)", i, nd->token, hp->n_vocab);
        if (nd->pos < 0) return ar_fail(err, AR_EINVAL, "node %d: negative position %d", i, nd->pos);
        if (nd->parent < -1 || nd->parent >= i)
            return ar_fail(err, AR_EINVAL, "node %d: parent %d must be -1 or an earlier node", i, nd->parent);
        if (nd->parent >= 0 && b->nodes[nd->parent].seq != nd->seq)
            return ar_fail(err, AR_EINVAL, "node %d: parent %d belongs to sequence %d, not %d", i, nd->parent,
                           b->nodes[nd->parent].seq, nd->seq);
        int d = nd->parent < 0 ? 0 : c->depth[nd->parent] + 1;
        c->depth[i] = d;
        const qwen35_seq *s = seqs[nd->seq];
        if (s->n_past + d + 1 > s->n_ctx)
            return ar_fail(err, AR_ERANGE, "node %d: position %d of sequence %d is beyond its context of %d tokens",
                           i, s->n_past + d, nd->seq, s->n_ctx);
        n_logits += nd->want_logits;
        if (s->gdn_ahead)
            return ar_fail(err, AR_EINVAL, "node %d: sequence %d's last forward advanced its state in place (ar_node.commit) "
                           "and was not committed; commit it or reset the sequence", i, nd->seq);
        /* commit flags: all of a sequence's nodes or none, and then one chain in batch order */
        int prev = -1;
        for (int j = i - 1; j >= 0 && prev < 0; j--)
            if (b->nodes[j].seq == nd->seq) prev = j;
        if (prev >= 0 && b->nodes[prev].commit != nd->commit)
            return ar_fail(err, AR_EINVAL, "node %d: sequence %d mixes nodes with and without ar_node.commit", i, nd->seq);
        if (nd->commit && nd->parent != prev)
            return ar_fail(err, AR_EINVAL, "node %d: nodes with ar_node.commit must form one chain (parent %d, expected %d)",
                           i, nd->parent, prev);
        if (nd->capture && !nd->commit)
            return ar_fail(err, AR_EINVAL, "node %d: ar_node.capture needs ar_node.commit (a chain advanced in place)", i);
        if (nd->capture && n_capture++)
            return ar_fail(err, AR_EINVAL, "node %d: a second ar_node.capture in one batch (at most one)", i);
    }
    if (n_logits && !b->logits) return ar_fail(err, AR_EINVAL, "%d nodes want logits but batch.logits is NULL", n_logits);
    return AR_OK;
}

/* Node bookkeeping shared by all layers: children counts, conv window sources, GDN slot plan. */
static int prepare(qwen35_ctx *c, qwen35_seq *const *seqs, const ar_batch *b, ar_error *err)
{
    const qwen35_hparams *hp = &c->m->hp;
    const int M = b->n_nodes, taps1 = hp->ssm_d_conv - 1;
    c->n_nodes = M;
    memcpy(c->nodes, b->nodes, (size_t)M * sizeof *c->nodes);
    for (int i = 0; i < M; i++) {
        c->node_seq[i] = seqs[b->nodes[i].seq];
        c->node_past[i] = c->node_seq[i]->n_past;
        c->n_children[i] = 0;
    }
    for (int i = 0; i < M; i++)
        if (c->nodes[i].parent >= 0) c->n_children[c->nodes[i].parent]++;

    /* conv sources, oldest tap first */
    for (int i = 0; i < M && taps1 > 0 && hp->n_gdn_layers > 0; i++) {
        int *src = c->conv_src + (size_t)i * (size_t)taps1;
        int cur = i, crow = taps1 - 1;
        for (int k = taps1 - 1; k >= 0; k--) {
            if (cur >= 0) cur = c->nodes[cur].parent;
            if (cur >= 0) src[k] = cur;
            else src[k] = -(1 + crow--);
        }
    }

    /* GDN slot plan */
    int n_free = 0, n_used = 0, peak = 0;
    for (int i = 0; i < M; i++) c->remaining[i] = c->n_children[i];
    for (int i = 0; i < M; i++) {
        int p = c->nodes[i].parent, slot;
        if (c->nodes[i].commit) {          /* in place on the committed state: no slot */
            c->gdn_slot[i] = -1;
            c->gdn_from[i] = p < 0 ? -3 : -2;
            continue;
        }
        if (p >= 0 && --c->remaining[p] == 0) {
            slot = c->gdn_slot[p];
            c->gdn_from[i] = -2;
        } else {
            slot = n_free ? c->free_slots[--n_free] : n_used++;
            c->gdn_from[i] = p < 0 ? -1 : c->gdn_slot[p];
        }
        c->gdn_slot[i] = slot;
        if (n_used > peak) peak = n_used;
        if (c->n_children[i] == 0) c->free_slots[n_free++] = slot;
    }
    c->n_slots = peak;
    if (hp->n_gdn_layers > 0 && peak > c->cap_slots) {
        /* grows only when a batch has more live branches than any before it */
        size_t per = (size_t)hp->ssm_head_dim * (size_t)hp->ssm_head_dim;
        float *ns = realloc(c->slots, (size_t)c->n_threads * (size_t)peak * per * sizeof(float));
        if (!ns) return ar_fail(err, AR_ENOMEM, "out of memory for %d GDN state slots", peak);
        c->slots = ns;
        c->cap_slots = peak;
    }
    return AR_OK;
}

/* ---- per-node elementwise steps ---------------------------------------------------------- */

typedef struct { const float *w; float *dst; size_t ld_dst; } norm_arg;

static void embed_rows(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)arg; (void)ith;
    const int E = c->m->hp.n_embd;
    for (int i = lo; i < hi; i++) ar_get_row(&c->m->token_embd, c->nodes[i].token, c->x + (size_t)i * E);
}

static void norm_rows(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)ith;
    norm_arg *a = arg;
    const int E = c->m->hp.n_embd;
    for (int i = lo; i < hi; i++) ar_rmsnorm(c->h + (size_t)i * E, c->x + (size_t)i * E, a->w, E, c->m->hp.rms_eps);
}

static void residual_rows(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)arg; (void)ith;
    const size_t E = (size_t)c->m->hp.n_embd;
    for (size_t j = (size_t)lo * E; j < (size_t)hi * E; j++) c->x[j] += c->h[j];
}

static void swiglu_rows(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)ith;
    const int F = *(const int *)arg;
    for (int i = lo; i < hi; i++) {
        float *g = c->proj + (size_t)i * c->ld_proj;
        const float *u = c->proj2 + (size_t)i * c->ld_proj2;
        ar_silu_mul(g, g, u, F);
    }
}

/* ---- gated full attention (§3.3) ---------------------------------------------------------- */

/* K, V: the layer's projections (F32 scratch); KC, VC: the same rows in the cache's element type
 * (F16 rounds them), which is what attention reads for in-batch keys as well as committed ones (as
 * llama.cpp, which writes the batch into its cache first) and what commit copies into the pages. */
typedef struct { const qwen35_layer *L; float *K, *V; unsigned char *KC, *VC; size_t ld_q; int n_items; } attn_arg;

static void qk_norm_rope(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    attn_arg *a = arg;
    const qwen35_hparams *hp = &c->m->hp;
    const int D = hp->head_dim, kvd = hp->n_head_kv * D;
    float *cs = c->rope_cs + (size_t)ith * (size_t)hp->n_rot;
    for (int i = lo; i < hi; i++) {
        float *q = c->proj + (size_t)i * a->ld_q, *k = a->K + (size_t)i * kvd;
        for (int h = 0; h < hp->n_head; h++) ar_rmsnorm(q + 2 * h * D, q + 2 * h * D, a->L->q_norm, D, hp->rms_eps);
        for (int h = 0; h < hp->n_head_kv; h++) ar_rmsnorm(k + h * D, k + h * D, a->L->k_norm, D, hp->rms_eps);
        ar_rope_cache(&c->m->rope, c->nodes[i].pos, cs);
        ar_rope_apply(q, hp->n_head, 2 * D, hp->n_rot, cs);
        ar_rope_apply(k, hp->n_head_kv, D, hp->n_rot, cs);
        const float *v = a->V + (size_t)i * kvd;
        const size_t row = (size_t)kvd * (size_t)c->kv_elt;
        if (c->kv_elt == 2) {
            uint16_t *k16 = (uint16_t *)(void *)(a->KC + i * row), *v16 = (uint16_t *)(void *)(a->VC + i * row);
            for (int j = 0; j < kvd; j++) {
                k16[j] = ar_f32_to_f16(k[j]);
                v16[j] = ar_f32_to_f16(v[j]);
            }
        } else {
            memcpy(a->KC + i * row, k, row);
            memcpy(a->VC + i * row, v, row);
        }
    }
}

/* One tile per item: up to att_tile_nodes consecutive nodes of one sequence x the query heads of one
 * KV head, all of which see the sequence's committed keys and (in a chain) most of each other's, so
 * they go through ar_attn_rows together and read each key block once. A node's keys are positions
 * 0 .. n_past - 1 (KV pages) then its in-batch ancestors root first (positions n_past + depth); the
 * softmax blocks are cut at positions that are multiples of AR_ATTN_BLOCK, so a node's output does
 * not depend on how its keys were split between pages and the batch (prompt chunking, chain or tree
 * verification, plain decode) nor on which nodes share its tile. Two nodes see the same keys in a
 * block when they see the same number and the same last one (the ancestors of one node are one path).
 * Items go out first, last, second, second last ... so each thread's range mixes short and long
 * causal rows. */
static void attend(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    attn_arg *a = arg;
    const qwen35_hparams *hp = &c->m->hp;
    const int D = hp->head_dim, H = hp->n_head, KVH = hp->n_head_kv, kvd = KVH * D, group = H / KVH;
    const int li = a->L->kind_index, MN = c->max_nodes;
    const float scale = 1.0f / sqrtf((float)D);
    const size_t t0r = (size_t)ith * (size_t)c->att_rows;
    float *acc_o = c->attn_o + t0r * (size_t)D;
    ar_attn_acc *acc = c->att_acc + t0r, **gacc = c->att_gacc + t0r;
    const float **gq = c->att_gq + t0r;
    int *anc = c->anc_stack + (size_t)ith * (size_t)c->att_tile_nodes * (size_t)MN;
    int len[ATT_TILE_ROWS];
    const void *kp[AR_ATTN_BLOCK], *vp[AR_ATTN_BLOCK];
    const size_t elt = (size_t)c->kv_elt;
    for (int item = lo; item < hi; item++) {
        const int idx = item % 2 == 0 ? item / 2 : a->n_items - 1 - item / 2;
        const int tile = idx / KVH, kvh = idx % KVH;
        const int i0 = c->att_tiles[tile], tn = c->att_tiles[tile + 1] - i0;
        const qwen35_seq *s = c->node_seq[i0];
        const int n_past = c->node_past[i0];
        int lmax = 0;
        for (int t = 0; t < tn; t++) {
            int n = 0, *st = anc + (size_t)t * MN;
            for (int j = i0 + t; j >= 0; j = c->nodes[j].parent) st[n++] = j;
            for (int x = 0, y = n - 1; x < y; x++, y--) { const int tmp = st[x]; st[x] = st[y]; st[y] = tmp; }
            len[t] = n_past + n;
            if (len[t] > lmax) lmax = len[t];
            for (int g = 0; g < group; g++) ar_attn_begin(&acc[t * group + g], acc_o + (size_t)(t * group + g) * D, D);
        }
        for (int b0 = 0; b0 < lmax; b0 += AR_ATTN_BLOCK) {
            unsigned done = 0;
            for (int t = 0; t < tn; t++) {
                if (done >> t & 1) continue;
                const int n = len[t] - b0 < AR_ATTN_BLOCK ? len[t] - b0 : AR_ATTN_BLOCK;
                if (n <= 0) continue;
                const int *st = anc + (size_t)t * MN;
                const int last = b0 + n - 1 >= n_past ? st[b0 + n - 1 - n_past] : -1;
                int R = 0;
                for (int u = t; u < tn; u++) {
                    if (done >> u & 1) continue;
                    const int nu = len[u] - b0 < AR_ATTN_BLOCK ? len[u] - b0 : AR_ATTN_BLOCK;
                    if (nu != n || (last >= 0 && anc[(size_t)u * MN + (size_t)(b0 + n - 1 - n_past)] != last))
                        continue;
                    done |= 1u << u;
                    for (int g = 0; g < group; g++) {
                        gacc[R] = &acc[u * group + g];
                        gq[R++] = c->proj + (size_t)(i0 + u) * a->ld_q + (size_t)(2 * (kvh * group + g) * D);
                    }
                }
                for (int j = 0; j < n; j++) {
                    const int p = b0 + j;
                    if (p < n_past) {
                        kp[j] = (const unsigned char *)ar_kv_k(&s->kv, li, p) + (size_t)(kvh * D) * elt;
                        vp[j] = (const unsigned char *)ar_kv_v(&s->kv, li, p) + (size_t)(kvh * D) * elt;
                    } else {
                        const size_t off = ((size_t)st[p - n_past] * (size_t)kvd + (size_t)(kvh * D)) * elt;
                        kp[j] = a->KC + off;
                        vp[j] = a->VC + off;
                    }
                }
                if (elt == 2)
                    ar_attn_rows_f16(gacc, gq, R, (const uint16_t *const *)kp, (const uint16_t *const *)vp, n, scale);
                else
                    ar_attn_rows(gacc, gq, R, (const float *const *)kp, (const float *const *)vp, n, scale);
            }
        }
        for (int t = 0; t < tn; t++)
            for (int g = 0; g < group; g++) {
                const int h = kvh * group + g;
                const float *gate = c->proj + (size_t)(i0 + t) * a->ld_q + (size_t)(2 * h * D) + D;
                float *o = c->mix + (size_t)(i0 + t) * c->ld_mix + (size_t)h * D;
                ar_attn_finish(&acc[t * group + g], o);
                for (int d = 0; d < D; d++) o[d] *= ar_sigmoid(gate[d]);
            }
    }
}

static void split_fused_kv(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)ith;
    attn_arg *a = arg;
    const qwen35_hparams *hp = &c->m->hp;
    const size_t qd2 = 2 * (size_t)hp->n_head * hp->head_dim, kvd = (size_t)hp->n_head_kv * hp->head_dim;
    for (int i = lo; i < hi; i++) {
        const float *r = c->proj + (size_t)i * a->ld_q;
        memcpy(a->K + (size_t)i * kvd, r + qd2, kvd * sizeof(float));
        memcpy(a->V + (size_t)i * kvd, r + qd2 + kvd, kvd * sizeof(float));
    }
}

/* h (normed input) -> h (attention output, before the residual) */
static void attention_layer(qwen35_ctx *c, const qwen35_layer *L)
{
    const qwen35_hparams *hp = &c->m->hp;
    const int M = c->n_nodes, E = hp->n_embd;
    const size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, off = (size_t)L->kind_index * c->max_nodes * kvd;
    attn_arg a = { L, c->scr_k, c->scr_v, c->keep_k + off * (size_t)c->kv_elt, c->keep_v + off * (size_t)c->kv_elt,
                   c->ld_proj, 0 };
    if (L->wqkv_attn.type >= 0) {                       /* fused q|k|v */
        ar_matmul(c->comp, &L->wqkv_attn, c->h, E, c->proj, (int64_t)c->ld_proj, M);
        par_for(c, M, split_fused_kv, &a);
    } else {
        const ar_weight *w[3] = { &L->wq, &L->wk, &L->wv };                       /* query|gate per head, K, V */
        float *y[3] = { c->proj, a.K, a.V };
        const int64_t ld[3] = { (int64_t)c->ld_proj, (int64_t)kvd, (int64_t)kvd };
        ar_matmul_n(c->comp, 3, w, c->h, E, y, ld, M);
    }
    par_for(c, M, qk_norm_rope, &a);
    int n_tiles = 0;                                  /* tiles: runs of one sequence's nodes */
    for (int i = 0; i < M; i++)
        if (!n_tiles || c->node_seq[i] != c->node_seq[c->att_tiles[n_tiles - 1]] ||
            i - c->att_tiles[n_tiles - 1] == c->att_tile_nodes)
            c->att_tiles[n_tiles++] = i;
    c->att_tiles[n_tiles] = M;
    a.n_items = n_tiles * hp->n_head_kv;
    par_for(c, a.n_items, attend, &a);
    ar_matmul(c->comp, &L->wo, c->mix, (int64_t)c->ld_mix, c->h, E, M);
}

/* ---- gated DeltaNet (§3.4) ---------------------------------------------------------------- */

typedef struct {
    const qwen35_layer *L;
    qwen35_seq *seq;           /* commit only: the sequence and the committed path */
    const int *path;
    int n_path;
    float *mixed, *g, *beta;   /* kept inputs of this layer */
    float *u;                  /* conv output (post SiLU, q/k L2-normed), ld channels */
} gdn_arg;

static const float *committed_conv_row(const qwen35_seq *s, int gi, int row)
{
    return s->conv + (size_t)gi * s->conv_floats + (size_t)row * (size_t)s->m->hp.ssm_conv_channels;
}

/* silu(conv) then L2-normalise each q and k head, in place in u. */
static void conv_finish(const qwen35_hparams *hp, float *u)
{
    const int C = hp->ssm_conv_channels, dk = hp->ssm_head_dim, Hk = hp->ssm_n_k_heads;
    ar_silu_mul(u, u, NULL, C);
    for (int h = 0; h < 2 * Hk; h++) ar_l2norm(u + (size_t)h * dk, dk, hp->rms_eps);
}

static void gdn_gates_conv(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)ith;
    gdn_arg *a = arg;
    const qwen35_hparams *hp = &c->m->hp;
    const int C = hp->ssm_conv_channels, Hv = hp->ssm_n_v_heads, taps = hp->ssm_d_conv;
    const int gi = a->L->kind_index;
    const float *rows[64];
    for (int i = lo; i < hi; i++) {
        float *g = a->g + (size_t)i * Hv, *beta = a->beta + (size_t)i * Hv;
        for (int j = 0; j < Hv; j++) {
            beta[j] = ar_sigmoid(beta[j]);
            g[j] = ar_softplus(g[j] + a->L->ssm_dt_bias[j]) * a->L->ssm_a[j];
        }
        const int *src = c->conv_src + (size_t)i * (size_t)(taps - 1);
        for (int k = 0; k < taps - 1; k++)
            rows[k] = src[k] >= 0 ? a->mixed + (size_t)src[k] * C : committed_conv_row(c->node_seq[i], gi, -src[k] - 1);
        rows[taps - 1] = a->mixed + (size_t)i * C;
        float *u = a->u + (size_t)i * C;
        ar_conv_step(u, rows, a->L->ssm_conv1d, C, taps);
        conv_finish(hp, u);
    }
}

/* V heads [lo, hi): run every node's recurrence step in batch order with the slot plan. */
static void gdn_recurrence(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    gdn_arg *a = arg;
    const qwen35_hparams *hp = &c->m->hp;
    const int C = hp->ssm_conv_channels, Hv = hp->ssm_n_v_heads, Hk = hp->ssm_n_k_heads, d = hp->ssm_head_dim;
    const size_t per = (size_t)d * d;
    const int gi = a->L->kind_index;
    const float scale = 1.0f / sqrtf((float)d);
    float *slots = c->slots + (size_t)ith * (size_t)c->cap_slots * per;
    for (int j = lo; j < hi; j++) {
        const int kh = j % Hk;                          /* tiled V-head order (§2.4) */
        for (int i = 0; i < c->n_nodes;) {
            float *St = c->gdn_slot[i] < 0 ? c->node_seq[i]->gdn_state + ((size_t)gi * Hv + j) * per
                                           : slots + (size_t)c->gdn_slot[i] * per;
            if (c->gdn_from[i] == -1)
                memcpy(St, c->node_seq[i]->gdn_state + ((size_t)gi * Hv + j) * per, per * sizeof(float));
            else if (c->gdn_from[i] >= 0)
                memcpy(St, slots + (size_t)c->gdn_from[i] * per, per * sizeof(float));
            /* a run: the following nodes that are each the previous one's child on the same state, in
             * place, up to the captured node (a prompt chunk, a chain) go through ar_gdn_steps at once */
            int e = i + 1;
            while (e < c->n_nodes && e - 1 != c->cap_node && c->nodes[e].parent == e - 1 && c->gdn_from[e] == -2 &&
                   c->gdn_slot[e] == c->gdn_slot[e - 1])
                e++;
            const float *u = a->u + (size_t)i * C;
            ar_gdn_steps(St, e - i, u + (size_t)kh * d, u + (size_t)(Hk + kh) * d,
                         u + (size_t)(2 * Hk) * d + (size_t)j * d, (size_t)C, a->g + (size_t)i * Hv + j,
                         a->beta + (size_t)i * Hv + j, (size_t)Hv, c->mix + (size_t)i * c->ld_mix + (size_t)j * d,
                         (size_t)c->ld_mix, d, d, scale);
            if (e - 1 == c->cap_node) memcpy(c->cap_state + ((size_t)gi * Hv + j) * per, St, per * sizeof(float));
            i = e;
        }
    }
}

/* y = RMSNorm(o; ssm_norm) * SiLU(z) per head, in place in mix. */
static void gdn_gated_norm(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)ith;
    gdn_arg *a = arg;
    const qwen35_hparams *hp = &c->m->hp;
    const int d = hp->ssm_head_dim, Hv = hp->ssm_n_v_heads;
    for (int i = lo; i < hi; i++) {
        float *o = c->mix + (size_t)i * c->ld_mix;
        const float *z = c->proj2 + (size_t)i * c->ld_proj2;
        for (int j = 0; j < Hv; j++) ar_rmsnorm(o + j * d, o + j * d, a->L->ssm_norm, d, hp->rms_eps);
        ar_silu_mul(o, z, o, (int64_t)Hv * d);
    }
}

static gdn_arg gdn_kept(qwen35_ctx *c, const qwen35_layer *L)
{
    const qwen35_hparams *hp = &c->m->hp;
    const size_t M = (size_t)c->max_nodes, gi = (size_t)L->kind_index;
    gdn_arg a = { .L = L };
    a.mixed = c->keep_mixed + gi * M * (size_t)hp->ssm_conv_channels;
    a.g = c->keep_g + gi * M * (size_t)hp->ssm_n_v_heads;
    a.beta = c->keep_beta + gi * M * (size_t)hp->ssm_n_v_heads;
    a.u = c->proj;
    return a;
}

/* h (normed input) -> h (GDN output, before the residual) */
static void gdn_layer(qwen35_ctx *c, const qwen35_layer *L)
{
    const qwen35_hparams *hp = &c->m->hp;
    const int M = c->n_nodes, E = hp->n_embd, Hv = hp->ssm_n_v_heads;
    gdn_arg a = gdn_kept(c, L);
    const ar_weight *w[4] = { &L->ssm_qkv, &L->ssm_gate, &L->ssm_beta, &L->ssm_alpha };  /* qkv, z, beta, alpha */
    float *y[4] = { a.mixed, c->proj2, a.beta, a.g };
    const int64_t ld[4] = { hp->ssm_conv_channels, (int64_t)c->ld_proj2, Hv, Hv };
    ar_matmul_n(c->comp, 4, w, c->h, E, y, ld, M);
    par_for(c, M, gdn_gates_conv, &a);
    par_for(c, Hv, gdn_recurrence, &a);
    par_for(c, M, gdn_gated_norm, &a);
    ar_matmul(c->comp, &L->ssm_out, c->mix, (int64_t)c->ld_mix, c->h, E, M);
}

/* ---- forward ------------------------------------------------------------------------------ */

static void take_taps(qwen35_ctx *c, const ar_batch *b, int layer)
{
    const int E = c->m->hp.n_embd;
    for (int t = 0; t < b->n_taps; t++) {
        if (b->tap_layers[t] != layer) continue;
        for (int i = 0; i < c->n_nodes; i++)
            memcpy(b->taps + ((size_t)i * b->n_taps + t) * E, c->x + (size_t)i * E, (size_t)E * sizeof(float));
    }
}

int qwen35_forward(qwen35_ctx *c, qwen35_seq *const *seqs, const ar_batch *b, ar_error *err)
{
    const qwen35_model *m = c->m;
    const qwen35_hparams *hp = &m->hp;
    c->valid = false;
    int rc = validate(c, seqs, b, err);
    if (rc == AR_OK) rc = prepare(c, seqs, b, err);
    if (rc != AR_OK) return rc;
    const int M = c->n_nodes, E = hp->n_embd;
    c->cap_node = -1;
    c->cap_n_past = 0;
    for (int i = 0; i < M; i++)
        if (c->nodes[i].capture) c->cap_node = i;
    if (c->cap_node >= 0 && hp->n_gdn_layers > 0 && !c->cap_state) {
        /* every layer's state and window are copied in by the forward before a snapshot adopts them */
        c->cap_state = qwen35_state_alloc(cap_state_floats(hp), 0);
        c->cap_conv = qwen35_state_alloc(cap_conv_floats(hp), 0);
        if (!c->cap_state || !c->cap_conv) {
            qwen35_state_free(c->cap_state, cap_state_floats(hp));
            qwen35_state_free(c->cap_conv, cap_conv_floats(hp));
            c->cap_state = c->cap_conv = NULL;
            return ar_fail(err, AR_ENOMEM, "out of memory for a captured recurrent state (ar_node.capture)");
        }
    }
    for (int i = 0; i < M; i++)
        if (c->nodes[i].commit) c->node_seq[i]->gdn_ahead++;

    par_for(c, M, embed_rows, NULL);                            /* x = token_embd[token] */
    for (int il = 0; il < hp->n_layer; il++) {
        const qwen35_layer *L = &m->layers[il];
        take_taps(c, b, il);
        par_for(c, M, norm_rows, &(norm_arg){ .w = L->attn_norm });            /* h = RMSNorm(x) */
        if (L->recurrent) gdn_layer(c, L);
        else attention_layer(c, L);
        par_for(c, M, residual_rows, NULL);                                    /* x += mixer(h) */
        par_for(c, M, norm_rows, &(norm_arg){ .w = L->post_attention_norm });  /* h = RMSNorm(x) */
        const ar_weight *w[2] = { &L->ffn_gate, &L->ffn_up };
        float *y[2] = { c->proj, c->proj2 };
        const int64_t ld[2] = { (int64_t)c->ld_proj, (int64_t)c->ld_proj2 };
        ar_matmul_n(c->comp, 2, w, c->h, E, y, ld, M);                          /* gate, up */
        par_for(c, M, swiglu_rows, (void *)&L->n_ff);                           /* silu(gate) * up */
        ar_matmul(c->comp, &L->ffn_down, c->proj, (int64_t)c->ld_proj, c->h, E, M);
        par_for(c, M, residual_rows, NULL);                                    /* x += ffn(h) */
    }
    take_taps(c, b, hp->n_layer);

    /* final norm and LM head, only for the nodes that want logits */
    int n_logits = 0;
    for (int i = 0; i < M; i++)
        if (c->nodes[i].want_logits) {
            ar_rmsnorm(c->h + (size_t)n_logits * E, c->x + (size_t)i * E, m->output_norm, E, hp->rms_eps);
            c->logit_nodes[n_logits++] = i;
        }
    if (n_logits) ar_matmul(c->comp, &m->output, c->h, E, b->logits, hp->n_vocab, n_logits);
    c->valid = true;
    return AR_OK;
}

/* ---- commit ------------------------------------------------------------------------------- */

static void commit_recurrence(qwen35_ctx *c, void *arg, int lo, int hi, int ith)
{
    (void)ith;
    gdn_arg *a = arg;
    const qwen35_hparams *hp = &c->m->hp;
    const int C = hp->ssm_conv_channels, Hv = hp->ssm_n_v_heads, Hk = hp->ssm_n_k_heads, d = hp->ssm_head_dim;
    const size_t per = (size_t)d * d;
    const int gi = a->L->kind_index, n_path = a->n_path;
    const int *path = a->path;
    for (int j = lo; j < hi; j++) {
        const int kh = j % Hk;
        float *St = a->seq->gdn_state + ((size_t)gi * Hv + j) * per;
        for (int t0 = 0; t0 < n_path; t0 += 64) {   /* the path's g and beta gathered, 64 at a time */
            const int n = n_path - t0 < 64 ? n_path - t0 : 64;
            float g[64], beta[64];
            for (int t = 0; t < n; t++) {
                g[t] = a->g[(size_t)path[t0 + t] * Hv + j];
                beta[t] = a->beta[(size_t)path[t0 + t] * Hv + j];
            }
            const float *u = a->u + (size_t)t0 * C;
            ar_gdn_steps(St, n, NULL, u + (size_t)(Hk + kh) * d, u + (size_t)(2 * Hk) * d + (size_t)j * d, (size_t)C,
                         g, beta, 1, NULL, 0, d, d, 1.0f);
        }
    }
}

int qwen35_commit(qwen35_ctx *c, qwen35_seq *s, const int *path, int n_path, ar_error *err)
{
    const qwen35_hparams *hp = &c->m->hp;
    if (n_path == 0) return AR_OK;
    if (!c->valid) return ar_fail(err, AR_EINVAL, "commit without a successful forward on this context");
    if (n_path < 0 || !path || !s) return ar_fail(err, AR_EINVAL, "commit: bad path");
    for (int t = 0; t < n_path; t++) {
        int i = path[t];
        if (i < 0 || i >= c->n_nodes) return ar_fail(err, AR_EINVAL, "commit: path[%d] = %d is not a node of the last forward", t, i);
        if (c->node_seq[i] != s) return ar_fail(err, AR_EINVAL, "commit: node %d belongs to another sequence", i);
        int want = t == 0 ? -1 : path[t - 1];
        if (c->nodes[i].parent != want)
            return ar_fail(err, AR_EINVAL, "commit: node %d's parent is %d, not %d (a path goes root first, parent to child)",
                           i, c->nodes[i].parent, want);
        if (c->node_past[i] != s->n_past)
            return ar_fail(err, AR_EINVAL, "commit: the sequence changed since the forward (already committed?)");
    }
    if (n_path > c->max_nodes) return ar_fail(err, AR_EINVAL, "commit: path too long");
    const bool in_place = s->gdn_ahead > 0;
    if (in_place) {
        bool exact = n_path == s->gdn_ahead;
        for (int t = 0; t < n_path && exact; t++) exact = c->nodes[path[t]].commit;
        if (!exact)
            return ar_fail(err, AR_EINVAL, "commit: the forward advanced this sequence's state in place over %d nodes "
                           "(ar_node.commit), so the path must be exactly those %d nodes (got %d); reset the sequence",
                           s->gdn_ahead, s->gdn_ahead, n_path);
    }
    const int n_past = s->n_past;
    int rc = ar_kv_reserve(&s->kv, n_past + n_path, err);
    if (rc != AR_OK) return rc;

    /* attention: K/V of the path's nodes go to slots n_past.. */
    const size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, M = (size_t)c->max_nodes;
    for (int li = 0; li < hp->n_attn_layers; li++)
        for (int t = 0; t < n_path; t++) {
            const size_t row = kvd * (size_t)c->kv_elt, src = ((size_t)li * M + (size_t)path[t]) * row;
            memcpy(ar_kv_k(&s->kv, li, n_past + t), c->keep_k + src, row);
            memcpy(ar_kv_v(&s->kv, li, n_past + t), c->keep_v + src, row);
        }

    /* a capture on this path (in place, so the path is the whole chain): its position */
    int t_cap = -1;
    for (int t = 0; t < n_path && in_place && c->cap_node >= 0; t++)
        if (path[t] == c->cap_node) t_cap = t;

    /* GDN: replay conv + delta rule along the path, then slide the conv window */
    const int C = hp->ssm_conv_channels, taps = hp->ssm_d_conv, taps1 = taps - 1;
    for (int il = 0; il < hp->n_layer; il++) {
        const qwen35_layer *L = &c->m->layers[il];
        if (!L->recurrent) continue;
        gdn_arg a = gdn_kept(c, L);
        a.seq = s;
        a.path = path;
        a.n_path = n_path;
        const int gi = L->kind_index;
        float *window = s->conv + (size_t)gi * s->conv_floats;
        const float *rows[64];
        for (int t = 0; t < n_path && !in_place; t++) {
            /* virtual sequence W = [committed window rows | path rows]; step t uses W[t .. t + taps-1] */
            for (int k = 0; k < taps; k++) {
                int w = t + k;
                rows[k] = w < taps1 ? window + (size_t)w * C : a.mixed + (size_t)path[w - taps1] * C;
            }
            float *u = a.u + (size_t)t * C;
            ar_conv_step(u, rows, L->ssm_conv1d, C, taps);
            conv_finish(hp, u);
        }
        if (!in_place) par_for(c, hp->ssm_n_v_heads, commit_recurrence, &a);   /* else the forward did it */
        for (int r = 0; r < taps1 && t_cap >= 0; r++) {   /* the window after the captured node */
            int w = t_cap + 1 + r;
            const float *src = w < taps1 ? window + (size_t)w * C : a.mixed + (size_t)path[w - taps1] * C;
            memcpy(c->cap_conv + ((size_t)gi * taps1 + r) * C, src, (size_t)C * sizeof(float));
        }
        for (int r = 0; r < taps1; r++) {
            int w = n_path + r;
            const float *src = w < taps1 ? window + (size_t)w * C : a.mixed + (size_t)path[w - taps1] * C;
            memmove(window + (size_t)r * C, src, (size_t)C * sizeof(float));
        }
    }
    s->n_past = n_past + n_path;
    s->gdn_ahead = 0;
    if (t_cap >= 0) {
        c->cap_seq = s;
        c->cap_n_past = n_past + t_cap + 1;
    }
    return AR_OK;
}

int qwen35_snap_take_captured(qwen35_snap **out, qwen35_ctx *c, const qwen35_seq *s, ar_error *err)
{
    *out = NULL;
    if (c->cap_n_past <= 0 || c->cap_seq != s || s->n_past < c->cap_n_past)
        return ar_fail(err, AR_EINVAL, "no captured state for this sequence (ar_node.capture in the last forward, then "
                       "the commit of its chain)");
    int rc = qwen35_snap_adopt(out, s, c->cap_n_past, c->cap_state, c->cap_conv, err);
    if (rc == AR_OK) c->cap_state = c->cap_conv = NULL;   /* the snapshot owns them now */
    c->cap_n_past = 0;
    return rc;
}
