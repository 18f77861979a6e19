/* spec/draft.c — the draft-source calls every implementation shares: argument checks, position
 * bookkeeping, and the top-k / log-softmax of a draft logits row (spec/draft.h). */
#include "spec/draft.h"

#include <math.h>

int ar_draft_propose(ar_draft_source *s, int32_t anchor, int pos, int n_depth, int top_k, ar_draft *out,
                     ar_error *err)
{
    *out = (ar_draft){ 0 };
    if (pos != s->n_past)
        return ar_fail(err, AR_EINVAL, "%s draft: anchor at position %d, but the source has seen %d committed positions",
                       s->name, pos, s->n_past);
    if (n_depth < 0 || n_depth > s->block - 1)
        return ar_fail(err, AR_EINVAL, "%s draft: %d depths asked of a block of %d", s->name, n_depth, s->block);
    if (top_k < 0 || top_k > s->max_k)
        return ar_fail(err, AR_EINVAL, "%s draft: top-%d asked, at most %d candidates per depth", s->name, top_k,
                       s->max_k);
    if (n_depth == 0) return AR_OK;
    return s->ops->draft(s, anchor, pos, n_depth, top_k, out, err);
}

int ar_draft_commit(ar_draft_source *s, const int32_t *tokens, const float *features, int n, int pos0, ar_error *err)
{
    if (pos0 != s->n_past)
        return ar_fail(err, AR_EINVAL, "%s commit: positions from %d, but the source has seen %d (commit in order)",
                       s->name, pos0, s->n_past);
    if (n < 0 || (n > 0 && (!tokens || (s->n_taps > 0 && !features))))
        return ar_fail(err, AR_EINVAL, "%s commit: %d positions without tokens/features", s->name, n);
    if (n == 0) return AR_OK;
    int rc = s->ops->commit(s, tokens, features, n, pos0, err);
    if (rc == AR_OK) s->n_past = pos0 + n;
    return rc;
}

void ar_draft_reset(ar_draft_source *s)
{
    s->ops->reset(s);
    s->n_past = 0;
}

void ar_draft_free(ar_draft_source *s)
{
    if (s) s->ops->destroy(s);
}

/* "better" = larger logit, then lower id; NaN ranks below everything */
static bool better(float a, int32_t ia, float b, int32_t ib)
{
    if (a != a) return false;
    if (b != b) return true;
    return a > b || (a == b && ia < ib);
}

int32_t ar_draft_topk(const float *logits, int n_vocab, int k, int32_t *ids, float *logp)
{
    if (k < 1) k = 1;
    if (k > n_vocab) k = n_vocab;
    if (k > AR_DRAFT_MAX_K) k = AR_DRAFT_MAX_K;
    /* one pass with insertion into a sorted list of k (k is small) */
    float val[AR_DRAFT_MAX_K];
    int n = 0;
    for (int32_t i = 0; i < n_vocab; i++) {
        const float v = logits[i];
        if (n == k && !better(v, i, val[n - 1], ids[n - 1])) continue;
        int j = n < k ? n++ : n - 1;
        for (; j > 0 && better(v, i, val[j - 1], ids[j - 1]); j--) {
            ids[j] = ids[j - 1];
            val[j] = val[j - 1];
        }
        ids[j] = i;
        val[j] = v;
    }
    if (logp) {
        float max = -INFINITY;
        for (int i = 0; i < n_vocab; i++)
            if (logits[i] > max) max = logits[i];
        double sum = 0.0;
        if (max > -INFINITY)
            for (int i = 0; i < n_vocab; i++)
                if (logits[i] == logits[i]) sum += exp((double)logits[i] - max);
        const double lse = max > -INFINITY ? (double)max + log(sum) : 0.0;
        for (int r = 0; r < n; r++)
            logp[r] = val[r] == val[r] && max > -INFINITY ? (float)((double)val[r] - lse) : -INFINITY;
    }
    return ids[0];
}
