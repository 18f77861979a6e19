/* engine/spec_hook.c — a draft source as the scheduler's speculative hook (engine/spec_hook.h).
 *
 * State between steps is the chain's (spec/chain.h): the sequence has committed x_0..x_{P-1}, the anchor
 * x_P is pending, the source has seen positions offset..P-1 (offset > 0 only after a prefix-cache resume
 * with a feature-hungry source). Every mode goes through one DDTree: a chain is the tree of a table with
 * one candidate per depth (log-prob 0), so building, numbering, the verify batch and the walk are
 * spec/ddtree.h's and spec/tree_verify.h's own functions (ddtree_build, ddtree_truncate, ddtree_dfs,
 * ddtree_cum_gain, ddtree_walk), not copies.
 *
 * Data flow of a step: [plan: draft -> build the largest tree allowed -> calibrated gain curve] ->
 * propose: (draft -> build unless planned) -> truncate to max_nodes - 1 -> DFS -> tokens/parents ->
 * (the scheduler's forward) -> accept: ddtree_walk with the request's sampler -> path -> (the
 * scheduler's qwen35_commit) -> committed: ar_draft_commit(tokens, tap rows). Nothing is allocated per
 * step. */
#include "engine/spec_hook.h"

#include <stdlib.h>
#include <string.h>

#include "engine/generate.h"
#include "spec/budget.h"
#include "spec/ddtree.h"
#include "spec/tree_verify.h"

enum { MODE_CHAIN, MODE_TREE, MODE_AUTO };
enum { DEFAULT_MAX_BUDGET = 256 };

typedef struct spec_hook {
    ar_sched_spec base;
    ar_draft_source *src;
    int32_t n_vocab;
    int mode;
    int b_max;            /* draft nodes the tree holds at most */
    int top_k;            /* candidates asked per depth (0: chain only) */
    bool chain_seed;
    int offset;           /* sequence position of the source's position 0 */
    ddtree *tree;         /* the step's tree, in the numbering it was proposed in */
    float *zero_logp;     /* chain: log-prob 0 for every depth of the one-candidate table */
    double *cum;          /* [b_max + 1] */
    ar_budget *calib;     /* auto: this hook's acceptance calibration (alpha) only */
    bool planned;         /* tree holds a plan for (plan_pos, plan_anchor) */
    int plan_pos;
    int32_t plan_anchor;
    double predicted;     /* G of the proposed tree (uncalibrated) */
} spec_hook;

ar_spec_hook_params ar_spec_hook_defaults(void)
{
    return (ar_spec_hook_params){ .budget = 0, .max_budget = DEFAULT_MAX_BUDGET, .top_k = 0, .chain_seed = false };
}

/* Draft for the anchor at n_past(seq) and build the tree (selection order) of up to max_nodes - 1 draft
 * nodes: depths cut by the block, the tokens still wanted and the context, as ar_ddtree_round does. */
static int draft_build(spec_hook *h, const qwen35_seq *seq, int32_t anchor, int max_nodes, int max_emit, ar_error *err)
{
    ar_draft_source *src = h->src;
    const int P = qwen35_seq_n_past(seq), room = qwen35_seq_n_ctx(seq) - P;
    int L = src->block - 1;
    if (L > max_emit - 1) L = max_emit - 1;
    if (L > room - 1) L = room - 1;
    int B = h->b_max < max_nodes - 1 ? h->b_max : max_nodes - 1;
    if (L < 1 || B < 1) L = B = 0;
    h->planned = false;
    ar_draft dr = { 0 };
    int rc = AR_OK;
    if (L > 0) rc = ar_draft_propose(src, anchor, P - h->offset, L, h->top_k, &dr, err);
    if (rc) return rc;
    ddtree_params bp = { .budget = B, .top_k = h->top_k, .max_depth = L, .chain_seed = h->chain_seed };
    if (h->mode == MODE_CHAIN && L > 0) {   /* one candidate per depth: the tree is the chain */
        dr = (ar_draft){ .n_depth = dr.n_depth, .k = 1, .chain = dr.chain, .ids = dr.chain, .logp = h->zero_logp };
        bp.top_k = 1;
    }
    return ddtree_build(h->tree, anchor, &dr, &bp, err);
}

static int hook_plan(ar_sched_spec *sp, const qwen35_seq *seq, int32_t anchor, int max_nodes, int max_emit,
                     double *gain, ar_error *err)
{
    spec_hook *h = (spec_hook *)sp;
    int rc = draft_build(h, seq, anchor, max_nodes, max_emit, err);
    if (rc) return rc;
    h->planned = true;
    h->plan_pos = qwen35_seq_n_past(seq);
    h->plan_anchor = anchor;
    const ddtree *t = h->tree;
    ddtree_cum_gain(t, h->cum);
    const double alpha = h->calib ? ar_budget_alpha(h->calib) : 1.0;
    for (int k = 0; k < t->n; k++) gain[k] = alpha * h->cum[k];
    return t->n;
}

static int hook_propose(ar_sched_spec *sp, const qwen35_seq *seq, int32_t anchor, int max_nodes, int max_emit,
                        int32_t *tokens, int32_t *parents, ar_error *err)
{
    spec_hook *h = (spec_hook *)sp;
    if (max_nodes < 1) return ar_fail(err, AR_EINVAL, "speculative hook: %d nodes allowed", max_nodes);
    const bool reuse = h->planned && h->plan_pos == qwen35_seq_n_past(seq) && h->plan_anchor == anchor;
    if (!reuse) {
        int rc = draft_build(h, seq, anchor, max_nodes, max_emit, err);
        if (rc) return rc;
    }
    h->planned = false;
    ddtree *t = h->tree;
    ddtree_truncate(t, max_nodes - 1);     /* a prefix of the selection: the best tree of that size */
    ddtree_cum_gain(t, h->cum);
    h->predicted = h->cum[t->n - 1];
    ddtree_dfs(t);
    for (int i = 0; i < t->n; i++) {
        tokens[i] = t->token[i];
        parents[i] = t->parent[i];
    }
    return t->n;
}

static int hook_accept(ar_sched_spec *sp, const float *logits, int n_nodes, ar_sampler *smp, int max_emit,
                       ar_sched_emit emit, void *emit_user, int *path, int *n_path, ar_error *err)
{
    spec_hook *h = (spec_hook *)sp;
    const ddtree *t = h->tree;
    if (n_nodes != t->n)
        return ar_fail(err, AR_EINVAL, "speculative hook: %d verified rows for a tree of %d nodes", n_nodes, t->n);
    int32_t last;
    bool stopped;
    ddtree_walk(t, logits, h->n_vocab, smp, max_emit, emit, emit_user, path, n_path, &last, &stopped);
    /* a walk cut by the end of generation says nothing about the draft's quality */
    if (h->calib && t->n > 1 && !stopped) ar_budget_observe_round(h->calib, h->predicted, *n_path - 1, -1.0);
    return AR_OK;
}

static int hook_committed(ar_sched_spec *sp, const int32_t *tokens, const float *taps, int n, int pos0, ar_error *err)
{
    spec_hook *h = (spec_hook *)sp;
    if (pos0 < h->offset)
        return ar_fail(err, AR_EINVAL, "speculative hook: commit at position %d before the drafter's start %d", pos0,
                       h->offset);
    return ar_draft_commit(h->src, tokens, taps, n, pos0 - h->offset, err);
}

static int hook_resumed(ar_sched_spec *sp, const int32_t *tokens, int n, ar_error *err)
{
    spec_hook *h = (spec_hook *)sp;
    ar_draft_reset(h->src);
    h->planned = false;
    h->offset = 0;
    if (h->src->n_taps == 0) return ar_draft_commit(h->src, tokens, NULL, n, 0, err);   /* exact catch-up */
    h->offset = n;   /* no features for [0, n): draft from the context after it */
    return AR_OK;
}

static void hook_destroy(ar_sched_spec *sp)
{
    spec_hook *h = (spec_hook *)sp;
    if (!h) return;
    ar_draft_free(h->src);
    ddtree_free(h->tree);
    ar_budget_free(h->calib);
    free(h->zero_logp);
    free(h->cum);
    free(h);
}

static const ar_sched_spec_ops hook_ops = { .propose = hook_propose, .accept = hook_accept,
                                            .committed = hook_committed, .resumed = hook_resumed,
                                            .destroy = hook_destroy };

int ar_spec_hook_create(ar_sched_spec **out, ar_draft_source *src, int32_t n_vocab, const ar_spec_hook_params *pp,
                        ar_error *err)
{
    *out = NULL;
    ar_spec_hook_params p = pp ? *pp : ar_spec_hook_defaults();
    if (!src) return ar_fail(err, AR_EINVAL, "speculative hook: no draft source");
    if (p.budget < -1)
        return ar_fail(err, AR_EINVAL, "speculative hook: budget %d (0 chain, N >= 1 DDTree nodes, -1 auto)", p.budget);
    if (p.top_k < 0 || p.top_k > AR_DRAFT_MAX_K)
        return ar_fail(err, AR_EINVAL, "speculative hook: top-k %d (0..%d)", p.top_k, AR_DRAFT_MAX_K);
    if (src->block < 2)
        return ar_fail(err, AR_EINVAL, "speculative hook: %s source with a block of %d tokens", src->name, src->block);
    if (p.budget != 0 && src->max_k < 1)
        return ar_fail(err, AR_EINVAL, "DDTree needs a draft source with candidate lists (%s: top-%d)", src->name,
                       src->max_k);
    spec_hook *h = calloc(1, sizeof *h);
    if (!h) return ar_fail(err, AR_ENOMEM, "out of memory creating a speculative hook");
    h->mode = p.budget == 0 ? MODE_CHAIN : p.budget > 0 ? MODE_TREE : MODE_AUTO;
    h->n_vocab = n_vocab;
    h->chain_seed = p.chain_seed;
    if (h->mode == MODE_CHAIN) h->b_max = src->block - 1;
    else if (h->mode == MODE_TREE) h->b_max = p.budget;
    else h->b_max = p.max_budget > 0 ? p.max_budget : DEFAULT_MAX_BUDGET;
    if (h->mode != MODE_CHAIN) {
        int k = p.top_k > 0 ? p.top_k : h->b_max;
        h->top_k = k > src->max_k ? src->max_k : k;
    }
    int rc = ddtree_create(&h->tree, h->b_max, err);
    if (!rc && h->mode == MODE_AUTO) rc = ar_budget_create(&h->calib, h->b_max, err);
    if (rc) { hook_destroy(&h->base); return rc; }
    h->zero_logp = calloc((size_t)src->block, sizeof *h->zero_logp);
    h->cum = malloc(((size_t)h->b_max + 1) * sizeof *h->cum);
    if (!h->zero_logp || !h->cum) {
        hook_destroy(&h->base);
        return ar_fail(err, AR_ENOMEM, "out of memory creating a speculative hook");
    }
    h->base = (ar_sched_spec){ .ops = &hook_ops, .n_taps = src->n_taps, .tap_layers = src->tap_layers,
                               .plan = h->mode == MODE_AUTO ? hook_plan : NULL };
    h->src = src;   /* owned from here on */
    *out = &h->base;
    return AR_OK;
}

int ar_spec_hook_dflash(ar_sched_spec **out, const ar_model *m, int n_ctx, int block, const ar_spec_hook_params *p,
                        ar_error *err)
{
    *out = NULL;
    if (!m->draft) return ar_fail(err, AR_EINVAL, "speculative decoding needs a drafter (ar_model_load_draft)");
    if (block != 0 && (block < 2 || block > AR_DRAFT_MAX_BLOCK))
        return ar_fail(err, AR_EINVAL, "speculative block of %d tokens: must be 2..%d (0: the drafter's)", block,
                       AR_DRAFT_MAX_BLOCK);
    if (n_ctx < 1) return ar_fail(err, AR_EINVAL, "speculative hook: context of %d tokens", n_ctx);
    /* the chain reads only the top-1 chain; a tree takes up to AR_DRAFT_MAX_K candidates per depth */
    const int max_k = p && p->budget != 0 ? AR_DRAFT_MAX_K : 8;
    ar_draft_source *src = NULL;
    int rc = ar_dflash_source_create(&src, m->qm, m->draft, m->draft_ctx, n_ctx, block, max_k, err);
    if (rc) return rc;
    if (src->block > AR_DRAFT_MAX_BLOCK) {
        rc = ar_fail(err, AR_EINVAL, "speculative block of %d tokens: at most %d", src->block, AR_DRAFT_MAX_BLOCK);
        ar_draft_free(src);
        return rc;
    }
    rc = ar_spec_hook_create(out, src, qwen35_hparams_of(m->qm)->n_vocab, p, err);
    if (rc) ar_draft_free(src);
    return rc;
}

void ar_spec_hook_free(ar_sched_spec *sp)
{
    if (sp && sp->ops && sp->ops->destroy) sp->ops->destroy(sp);
}

ar_draft_source *ar_spec_hook_source(ar_sched_spec *sp) { return ((spec_hook *)sp)->src; }
