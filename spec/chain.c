/* spec/chain.c — one round of lossless chain speculative decoding (spec/chain.h), and the prefill that
 * bootstraps a draft source.
 *
 * Data flow of a round: source -> draft chain d_1..d_n -> nodes [a, d_1..d_n] -> qwen35_forward (logits
 * of every node into c->logits, taps into c->taps) -> sampler walk over the logit rows (stops at the
 * first disagreement or when emit says stop) -> qwen35_commit(path 0..k-1) -> ar_draft_commit(tokens and
 * tap rows 0..k-1). Rejected nodes leave no trace: the forward never writes committed state, and only
 * committed rows reach the source. Nothing is allocated per round. */
#include "spec/chain.h"

#include <stdlib.h>

#include "base/timer.h"

enum { PREFILL_TAP_ROWS = 256 };   /* prefill chunk when taps are captured (bounds the tap buffer) */

struct ar_chain {
    const qwen35_model *m;
    qwen35_ctx *ctx;
    ar_draft_source *src;
    int n_vocab, max_nodes, block, prefill_chunk;
    ar_node *nodes;       /* [max(block, prefill_chunk)] */
    int *path;            /* 0, 1, 2, ... */
    int32_t *tokens;      /* the tokens of a round's nodes */
    float *logits;        /* [block][n_vocab] */
    float *taps;          /* [max(block, prefill_chunk)][feature_size], NULL without taps */
    ar_chain_stats st;
};

int ar_chain_create(ar_chain **out, const qwen35_model *m, qwen35_ctx *ctx, ar_draft_source *src, ar_error *err)
{
    *out = NULL;
    const int max_nodes = qwen35_ctx_max_nodes(ctx);
    if (src->block < 2 || src->block > max_nodes)
        return ar_fail(err, AR_EINVAL, "speculative block of %d tokens: must be 2..%d (the most nodes one forward "
                       "takes here; raise the batch size)", src->block, max_nodes);
    ar_chain *c = calloc(1, sizeof *c);
    if (!c) return ar_fail(err, AR_ENOMEM, "out of memory creating the speculative decoder");
    c->m = m;
    c->ctx = ctx;
    c->src = src;
    c->n_vocab = qwen35_hparams_of(m)->n_vocab;
    c->max_nodes = max_nodes;
    c->block = src->block;
    c->prefill_chunk = src->n_taps > 0 && max_nodes > PREFILL_TAP_ROWS ? PREFILL_TAP_ROWS : max_nodes;
    const int rows = c->prefill_chunk > c->block ? c->prefill_chunk : c->block;
    c->nodes = malloc((size_t)rows * sizeof *c->nodes);
    c->path = malloc((size_t)rows * sizeof *c->path);
    c->tokens = malloc((size_t)rows * sizeof *c->tokens);
    c->logits = malloc((size_t)c->block * (size_t)c->n_vocab * sizeof *c->logits);
    if (src->n_taps > 0) c->taps = malloc((size_t)rows * (size_t)src->feature_size * sizeof *c->taps);
    if (!c->nodes || !c->path || !c->tokens || !c->logits || (src->n_taps > 0 && !c->taps)) {
        ar_chain_free(c);
        return ar_fail(err, AR_ENOMEM, "out of memory for the speculative decoder's buffers (%d rows)", rows);
    }
    for (int i = 0; i < rows; i++) c->path[i] = i;
    *out = c;
    return AR_OK;
}

void ar_chain_free(ar_chain *c)
{
    if (!c) return;
    free(c->nodes);
    free(c->path);
    free(c->tokens);
    free(c->logits);
    free(c->taps);
    free(c);
}

ar_draft_source *ar_chain_source(ar_chain *c) { return c->src; }
const ar_chain_stats *ar_chain_get_stats(const ar_chain *c) { return &c->st; }
void ar_chain_stats_reset(ar_chain *c) { c->st = (ar_chain_stats){ 0 }; }

/* Forward of c->nodes[0..n) on seq with the source's taps; logits rows as the nodes ask. */
static int forward(ar_chain *c, qwen35_seq *seq, int n, float *logits, ar_error *err)
{
    ar_batch b = { .n_nodes = n, .nodes = c->nodes, .logits = logits };
    if (c->src->n_taps > 0) {
        b.n_taps = c->src->n_taps;
        b.tap_layers = c->src->tap_layers;
        b.taps = c->taps;
    }
    return qwen35_forward(c->ctx, &seq, &b, err);
}

int ar_chain_prefill(ar_chain *c, qwen35_seq *seq, const int32_t *tokens, int n, float *last_logits, ar_error *err)
{
    if (c->src->n_past != qwen35_seq_n_past(seq))
        return ar_fail(err, AR_EINVAL, "speculative prefill: the draft source has seen %d positions, the sequence %d",
                       c->src->n_past, qwen35_seq_n_past(seq));
    const double t0 = ar_now();
    int rc = AR_OK;
    for (int done = 0; done < n && rc == AR_OK;) {
        const int k = n - done < c->prefill_chunk ? n - done : c->prefill_chunk;
        const int pos0 = qwen35_seq_n_past(seq);
        for (int i = 0; i < k; i++)
            c->nodes[i] = (ar_node){ .seq = 0, .token = tokens[done + i], .pos = pos0 + i, .parent = i - 1,
                                     .want_logits = last_logits && done + i == n - 1, .commit = true };
        rc = forward(c, seq, k, last_logits, err);
        if (!rc) rc = qwen35_commit(c->ctx, seq, c->path, k, err);
        if (!rc) rc = ar_draft_commit(c->src, tokens + done, c->taps, k, pos0, err);
        done += k;
    }
    c->st.prefill_s += ar_now() - t0;
    return rc;
}

int ar_chain_round(ar_chain *c, qwen35_seq *seq, ar_sampler *smp, int32_t anchor, int max_emit,
                   ar_chain_emit emit, void *user, int32_t *last, bool *stopped, ar_error *err)
{
    *stopped = false;
    *last = anchor;
    const int P = qwen35_seq_n_past(seq), room = qwen35_seq_n_ctx(seq) - P;
    if (room < 1)
        return ar_fail(err, AR_ERANGE, "speculative round: the context is full (%d tokens)", qwen35_seq_n_ctx(seq));
    if (max_emit < 1) return ar_fail(err, AR_EINVAL, "speculative round: %d tokens to emit", max_emit);
    if (c->src->n_past != P)
        return ar_fail(err, AR_EINVAL, "speculative round: the draft source has seen %d positions, the sequence %d",
                       c->src->n_past, P);

    /* 1. draft: n depths, cut by the block, the caller's budget and the context */
    int n = c->block - 1;
    if (n > max_emit - 1) n = max_emit - 1;
    if (n > room - 1) n = room - 1;
    const double t0 = ar_now();
    ar_draft dr = { 0 };
    int rc = ar_draft_propose(c->src, anchor, P, n, 0, &dr, err);
    if (rc) return rc;
    const double t1 = ar_now();

    /* 2. verify [a, d_1..d_n] as one chain */
    c->tokens[0] = anchor;
    for (int i = 1; i <= n; i++) c->tokens[i] = dr.chain[i - 1];
    for (int i = 0; i <= n; i++)
        c->nodes[i] = (ar_node){ .seq = 0, .token = c->tokens[i], .pos = P + i, .parent = i - 1, .want_logits = true };
    rc = forward(c, seq, n + 1, c->logits, err);
    if (rc) return rc;
    const double t2 = ar_now();

    /* 3. accept: the target's sampler on each row, in order, until it disagrees with the draft */
    int k = 0;   /* tokens emitted */
    int32_t y = anchor;
    for (int i = 0; i <= n; i++) {
        y = ar_sampler_sample(smp, c->logits + (size_t)i * (size_t)c->n_vocab);
        ar_sampler_accept(smp, y);
        k++;
        if (emit && emit(user, y)) { *stopped = true; break; }
        if (i == n || y != c->tokens[i + 1]) break;
    }

    /* 4. commit the anchor and the accepted drafts: nodes 0..k-1 (the last emitted token is pending) */
    rc = qwen35_commit(c->ctx, seq, c->path, k, err);
    if (!rc) rc = ar_draft_commit(c->src, c->tokens, c->taps, k, P, err);
    const double t3 = ar_now();
    *last = y;
    c->st.n_rounds++;
    c->st.n_drafted += n;
    c->st.n_accepted += k - 1;
    c->st.n_emitted += k;
    c->st.n_accept_len[k - 1 < AR_CHAIN_HIST ? k - 1 : AR_CHAIN_HIST - 1]++;
    c->st.draft_s += t1 - t0;
    c->st.verify_s += t2 - t1;
    c->st.accept_s += t3 - t2;
    return rc;
}
