/* spec/dflash_source.c — the DFlash drafter (model/dflash.h) as a draft source (spec/draft.h).
 *
 * State: the drafter's context cache of ONE sequence (dflash_state), holding the injected K/V of every
 * committed position and nothing else (specs/dflash.md §3.4, pitfall 9): features reach it only through
 * ar_draft_commit, i.e. after the target committed those positions. Bootstrap after a prefill is the
 * same call with the prompt's tap rows (the engine captures taps on every committed forward), so there is
 * no separate "first step" path.
 *
 * draft: one block forward [anchor, MASK x (block-1)] at positions P..P+block-1 with the source's block
 * (always the full block, so the drafts do not depend on how many depths the caller verifies: a shorter
 * block would change every row's non-causal context, pitfall 8), LM head on rows 1..n_depth only, then
argmax (or top-k with log-probs) of rows 1..n_depth. */
#include "spec/draft.h"

#include <stdlib.h>

typedef struct dflash_source {
    ar_draft_source base;
    const dflash_model *d;
    dflash_ctx *c;
    dflash_state *st;
    int n_vocab;
    float *logits;            /* [block - 1][n_vocab] */
    int32_t *chain, *ids;     /* [block - 1], [block - 1][max_k] */
    float *logp;              /* [block - 1][max_k] */
} dflash_source;

static int src_draft(ar_draft_source *base, int32_t anchor, int pos, int n_depth, int top_k, ar_draft *out,
                     ar_error *err)
{
    dflash_source *s = (dflash_source *)base;
    int rc = dflash_draft(s->c, s->st, anchor, pos, base->block, 1, s->logits, err);
    if (rc) return rc;
    const size_t V = (size_t)s->n_vocab;
    for (int d = 0; d < n_depth; d++) {
        const float *row = s->logits + (size_t)d * V;
        if (top_k == 0) {
            int32_t best;
            ar_draft_topk(row, s->n_vocab, 1, &best, NULL);
            s->chain[d] = best;
        } else {
            int32_t *ids = s->ids + (size_t)d * (size_t)top_k;
            s->chain[d] = ar_draft_topk(row, s->n_vocab, top_k, ids, s->logp + (size_t)d * (size_t)top_k);
        }
    }
    *out = (ar_draft){ .n_depth = n_depth, .k = top_k, .chain = s->chain, .ids = top_k ? s->ids : NULL,
                       .logp = top_k ? s->logp : NULL };
    return AR_OK;
}

static int src_commit(ar_draft_source *base, const int32_t *tokens, const float *features, int n, int pos0,
                      ar_error *err)
{
    (void)tokens;
    dflash_source *s = (dflash_source *)base;
    return dflash_append(s->c, s->st, features, n, pos0, err);
}

static void src_reset(ar_draft_source *base)
{
    dflash_state_reset(((dflash_source *)base)->st);
}

static void src_destroy(ar_draft_source *base)
{
    dflash_source *s = (dflash_source *)base;
    dflash_state_free(s->st);
    free(s->logits);
    free(s->chain);
    free(s->ids);
    free(s->logp);
    free(s);
}

static const ar_draft_source_ops dflash_ops = { src_draft, src_commit, src_reset, src_destroy };

int ar_dflash_source_create(ar_draft_source **out, const qwen35_model *target, const dflash_model *d, dflash_ctx *c,
                            int n_ctx, int block, int max_k, ar_error *err)
{
    *out = NULL;
    if (block <= 0) block = dflash_block_size(d);
    if (block < 2) return ar_fail(err, AR_EINVAL, "DFlash block of %d tokens (at least 2: the anchor and a draft)", block);
    if (max_k < 0 || max_k > AR_DRAFT_MAX_K)
        return ar_fail(err, AR_EINVAL, "DFlash source: %d candidates per depth (at most %d)", max_k, AR_DRAFT_MAX_K);
    dflash_source *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory creating the DFlash source");
    int n_tap;
    s->base = (ar_draft_source){ .ops = &dflash_ops, .name = "dflash", .tap_layers = dflash_tap_layers(d, &n_tap),
                                 .feature_size = dflash_feature_size(d), .block = block, .max_k = max_k };
    s->base.n_taps = n_tap;
    s->d = d;
    s->c = c;
    s->n_vocab = qwen35_hparams_of(target)->n_vocab;
    const size_t R = (size_t)(block - 1), K = (size_t)(max_k > 0 ? max_k : 1);
    s->logits = malloc(R * (size_t)s->n_vocab * sizeof *s->logits);
    s->chain = malloc(R * sizeof *s->chain);
    s->ids = malloc(R * K * sizeof *s->ids);
    s->logp = malloc(R * K * sizeof *s->logp);
    if (!s->logits || !s->chain || !s->ids || !s->logp) {
        src_destroy(&s->base);
        return ar_fail(err, AR_ENOMEM, "out of memory for the DFlash source (%d draft rows of %d logits)", block - 1,
                       s->n_vocab);
    }
    int rc = dflash_state_create(&s->st, d, n_ctx, err);
    if (rc) { src_destroy(&s->base); return rc; }
    *out = &s->base;
    return AR_OK;
}
