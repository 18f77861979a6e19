/* spec/replay.c — the test-only "replay" draft source (spec/draft.h).
 *
 * It knows the answer: ref holds the sequence a plain run produced (prompt + continuation), so its
 * proposals are right unless it is told to be wrong. An error schedule picks, per round, the depth
 * whose token is replaced by another one; so a T = 0 test can walk every acceptance length
 * 0..block-1 and every rollback point on purpose, and check (ar_replay_mismatches) that what the
 * verifier committed is the reference. It needs no target features. */
#include "spec/draft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct replay_source {
    ar_draft_source base;
    int32_t *ref;
    int n_ref;
    int32_t n_vocab;
    int *errors;
    int n_errors;
    long round;
    int mismatches, first_mismatch;
    int32_t *chain, *ids;     /* [block - 1], [block - 1][AR_DRAFT_MAX_K] */
    float *logp;
} replay_source;

static int32_t ref_at(const replay_source *s, long pos) { return pos >= 0 && pos < s->n_ref ? s->ref[pos] : 0; }

static int rp_draft(ar_draft_source *base, int32_t anchor, int pos, int n_depth, int top_k, ar_draft *out,
                    ar_error *err)
{
    (void)anchor;
    (void)err;
    replay_source *s = (replay_source *)base;
    const int e = s->n_errors > 0 ? s->errors[s->round % s->n_errors] : 0;
    s->round++;
    for (int d = 1; d <= n_depth; d++) {
        int32_t t = ref_at(s, (long)pos + d);
        if (d == e) t = (int32_t)((t + 1 + (s->round % 7)) % s->n_vocab);   /* != t (n_vocab > 7) */
        s->chain[d - 1] = t;
        for (int r = 0; r < top_k; r++) {
            s->ids[(size_t)(d - 1) * (size_t)top_k + (size_t)r] = (int32_t)((t + r) % s->n_vocab);
            s->logp[(size_t)(d - 1) * (size_t)top_k + (size_t)r] = (float)(-0.1 - (double)r);
        }
    }
    *out = (ar_draft){ .n_depth = n_depth, .k = top_k, .chain = s->chain, .ids = top_k ? s->ids : NULL,
                       .logp = top_k ? s->logp : NULL };
    return AR_OK;
}

static int rp_commit(ar_draft_source *base, const int32_t *tokens, const float *features, int n, int pos0,
                     ar_error *err)
{
    (void)features;
    (void)err;
    replay_source *s = (replay_source *)base;
    for (int i = 0; i < n; i++)
        if (pos0 + i >= s->n_ref || tokens[i] != s->ref[pos0 + i]) {
            if (s->mismatches++ == 0) s->first_mismatch = pos0 + i;
        }
    return AR_OK;
}

static void rp_reset(ar_draft_source *base)
{
    replay_source *s = (replay_source *)base;
    s->round = 0;
    s->mismatches = 0;
    s->first_mismatch = -1;
}

static void rp_destroy(ar_draft_source *base)
{
    replay_source *s = (replay_source *)base;
    free(s->ref);
    free(s->errors);
    free(s->chain);
    free(s->ids);
    free(s->logp);
    free(s);
}

static const ar_draft_source_ops replay_ops = { rp_draft, rp_commit, rp_reset, rp_destroy };

int ar_replay_source_create(ar_draft_source **out, const int32_t *ref, int n_ref, int32_t n_vocab, int block,
                            ar_error *err)
{
    *out = NULL;
    if (block < 2 || n_ref < 0 || (n_ref > 0 && !ref) || n_vocab <= 8)
        return ar_fail(err, AR_EINVAL, "replay source: block %d, %d reference tokens, vocab %d", block, n_ref,
                       (int)n_vocab);
    replay_source *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory");
    s->base = (ar_draft_source){ .ops = &replay_ops, .name = "replay", .block = block, .max_k = AR_DRAFT_MAX_K };
    s->n_vocab = n_vocab;
    s->n_ref = n_ref;
    s->first_mismatch = -1;
    const size_t R = (size_t)(block - 1);
    s->ref = malloc((size_t)(n_ref > 0 ? n_ref : 1) * sizeof *s->ref);
    s->chain = malloc(R * sizeof *s->chain);
    s->ids = malloc(R * AR_DRAFT_MAX_K * sizeof *s->ids);
    s->logp = malloc(R * AR_DRAFT_MAX_K * sizeof *s->logp);
    if (!s->ref || !s->chain || !s->ids || !s->logp) {
        rp_destroy(&s->base);
        return ar_fail(err, AR_ENOMEM, "out of memory");
    }
    if (n_ref > 0) memcpy(s->ref, ref, (size_t)n_ref * sizeof *ref);
    *out = &s->base;
    return AR_OK;
}

void ar_replay_set_errors(ar_draft_source *base, const int *errors, int n_errors)
{
    replay_source *s = (replay_source *)base;
    free(s->errors);
    s->errors = NULL;
    s->n_errors = 0;
    if (n_errors <= 0 || !errors) return;
    s->errors = malloc((size_t)n_errors * sizeof *s->errors);
    if (!s->errors) return;
    memcpy(s->errors, errors, (size_t)n_errors * sizeof *errors);
    s->n_errors = n_errors;
}

int ar_replay_mismatches(const ar_draft_source *base, int *first_pos)
{
    const replay_source *s = (const replay_source *)base;
    if (first_pos) *first_pos = s->first_mismatch;
    return s->mismatches;
}
