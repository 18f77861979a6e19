/* spec/tree_verify.c — one round of lossless DDTree speculative decoding (spec/tree_verify.h), the
 * sampler walk over a verified tree, and the prefill that bootstraps the draft source.
 *
 * Data flow of a round: source -> top-K table of L depths -> ddtree_build (selection order) -> [auto:
 * cum gains -> ar_budget_choose -> ddtree_truncate] -> ddtree_dfs -> ar_node batch -> qwen35_forward
 * (logits of every node into t->logits, taps into t->taps) -> ddtree_walk (the sampler on the rows
 * along the walked path only) -> qwen35_commit(path) -> gather the path's tokens and tap rows (in
 * place: path[j] >= j) -> ar_draft_commit. Rejected nodes leave no trace: the forward never writes
 * committed state and only the path's rows reach the source. Nothing is allocated per round. */
#include "spec/tree_verify.h"

#include <stdlib.h>
#include <string.h>

#include "base/timer.h"

enum { PREFILL_TAP_ROWS = 256, DEFAULT_MAX_BUDGET = 256 };

struct ar_ddtree {
    const qwen35_model *m;
    qwen35_ctx *ctx;
    ar_draft_source *src;
    ar_ddtree_params p;
    int n_vocab, b_max, top_k, prefill_chunk, rows;
    ddtree *tree;
    ar_budget *budget;    /* auto only */
    ar_node *nodes;       /* [rows] */
    int *chain;           /* [rows]: 0, 1, 2, ... (a prefill chunk's commit path) */
    int *path;            /* [b_max + 1]: the walked path */
    int32_t *tokens;      /* [rows] */
    float *logits;        /* [b_max + 1][n_vocab] */
    float *taps;          /* [rows][feature_size], NULL without taps */
    double *cum;          /* [b_max + 1] */
    ar_ddtree_stats st;
};

ar_ddtree_params ar_ddtree_defaults(void)
{
    return (ar_ddtree_params){ .budget = 0, .max_budget = DEFAULT_MAX_BUDGET, .top_k = 0, .chain_seed = false };
}

int ar_ddtree_create(ar_ddtree **out, const qwen35_model *m, qwen35_ctx *ctx, ar_draft_source *src,
                     const ar_ddtree_params *p, ar_error *err)
{
    *out = NULL;
    ar_ddtree_params d = ar_ddtree_defaults();
    if (!p) p = &d;
    const int max_nodes = qwen35_ctx_max_nodes(ctx);
    if (p->budget < 0) return ar_fail(err, AR_EINVAL, "DDTree budget %d: must be >= 1 (or 0 for auto)", p->budget);
    if (p->budget > 0 && p->budget + 1 > max_nodes)
        return ar_fail(err, AR_EINVAL, "DDTree budget %d needs %d nodes per forward, but this model context takes at "
                       "most %d (raise the batch size)", p->budget, p->budget + 1, max_nodes);
    if (src->max_k < 1 || src->block < 2)
        return ar_fail(err, AR_EINVAL, "DDTree needs a draft source with candidate lists (%s: block %d, top-%d)",
                       src->name, src->block, src->max_k);
    ar_ddtree *t = calloc(1, sizeof *t);
    if (!t) return ar_fail(err, AR_ENOMEM, "out of memory creating the DDTree decoder");
    t->m = m;
    t->ctx = ctx;
    t->src = src;
    t->p = *p;
    t->n_vocab = qwen35_hparams_of(m)->n_vocab;
    if (p->budget > 0) {
        t->b_max = p->budget;
    } else {
        t->b_max = p->max_budget > 0 ? p->max_budget : DEFAULT_MAX_BUDGET;
        if (t->b_max > max_nodes - 1) t->b_max = max_nodes - 1;
    }
    int k = p->top_k > 0 ? p->top_k : t->b_max;
    if (k > src->max_k) k = src->max_k;
    t->top_k = k < 1 ? 1 : k;
    t->prefill_chunk = src->n_taps > 0 && max_nodes > PREFILL_TAP_ROWS ? PREFILL_TAP_ROWS : max_nodes;
    t->rows = t->prefill_chunk > t->b_max + 1 ? t->prefill_chunk : t->b_max + 1;
    int rc = ddtree_create(&t->tree, t->b_max, err);
    if (!rc && p->budget == 0 && t->b_max >= 1) rc = ar_budget_create(&t->budget, t->b_max, err);
    if (rc) { ar_ddtree_free(t); return rc; }
    const size_t R = (size_t)t->rows, N = (size_t)t->b_max + 1;
    t->nodes = malloc(R * sizeof *t->nodes);
    t->chain = malloc(R * sizeof *t->chain);
    t->path = malloc(N * sizeof *t->path);
    t->tokens = malloc(R * sizeof *t->tokens);
    t->logits = malloc(N * (size_t)t->n_vocab * sizeof *t->logits);
    t->cum = malloc(N * sizeof *t->cum);
    if (src->n_taps > 0) t->taps = malloc(R * (size_t)src->feature_size * sizeof *t->taps);
    if (!t->nodes || !t->chain || !t->path || !t->tokens || !t->logits || !t->cum || (src->n_taps > 0 && !t->taps)) {
        ar_ddtree_free(t);
        return ar_fail(err, AR_ENOMEM, "out of memory for the DDTree buffers (%d nodes of %d logits)", t->b_max + 1,
                       t->n_vocab);
    }
    for (int i = 0; i < t->rows; i++) t->chain[i] = i;
    *out = t;
    return AR_OK;
}

void ar_ddtree_free(ar_ddtree *t)
{
    if (!t) return;
    ddtree_free(t->tree);
    ar_budget_free(t->budget);
    free(t->nodes);
    free(t->chain);
    free(t->path);
    free(t->tokens);
    free(t->logits);
    free(t->taps);
    free(t->cum);
    free(t);
}

ar_draft_source *ar_ddtree_source(ar_ddtree *t) { return t->src; }
ar_budget *ar_ddtree_budget(ar_ddtree *t) { return t->budget; }
const ddtree *ar_ddtree_tree(const ar_ddtree *t) { return t->tree; }
const ar_ddtree_stats *ar_ddtree_get_stats(const ar_ddtree *t) { return &t->st; }
void ar_ddtree_stats_reset(ar_ddtree *t) { t->st = (ar_ddtree_stats){ 0 }; }

/* Forward of t->nodes[0..n) on seq with the source's taps. */
static int forward(ar_ddtree *t, qwen35_seq *seq, int n, float *logits, ar_error *err)
{
    ar_batch b = { .n_nodes = n, .nodes = t->nodes, .logits = logits };
    if (t->src->n_taps > 0) {
        b.n_taps = t->src->n_taps;
        b.tap_layers = t->src->tap_layers;
        b.taps = t->taps;
    }
    return qwen35_forward(t->ctx, &seq, &b, err);
}

int ar_ddtree_prefill(ar_ddtree *t, qwen35_seq *seq, const int32_t *tokens, int n, float *last_logits, ar_error *err)
{
    const double t0 = ar_now();
    int rc = AR_OK;
    for (int done = 0; done < n && rc == AR_OK;) {
        const int k = n - done < t->prefill_chunk ? n - done : t->prefill_chunk;
        const int pos0 = qwen35_seq_n_past(seq);
        for (int i = 0; i < k; i++)
            t->nodes[i] = (ar_node){ .seq = 0, .token = tokens[done + i], .pos = pos0 + i, .parent = i - 1,
                                     .want_logits = last_logits && done + i == n - 1, .commit = true };
        rc = forward(t, seq, k, last_logits, err);
        if (!rc) rc = qwen35_commit(t->ctx, seq, t->chain, k, err);
        if (!rc) rc = ar_draft_commit(t->src, tokens + done, t->taps, k, pos0, err);
        done += k;
    }
    t->st.prefill_s += ar_now() - t0;
    return rc;
}

int ddtree_walk(const ddtree *t, const float *logits, int n_vocab, ar_sampler *smp, int max_emit, ar_chain_emit emit,
                void *user, int *path, int *n_path, int32_t *last, bool *stopped)
{
    int cur = 0, emitted = 0;
    int32_t y = t->token[0];
    *stopped = false;
    path[0] = 0;
    *n_path = 1;
    for (;;) {
        const float *row = logits + (size_t)cur * (size_t)n_vocab;
        if (smp) {
            y = ar_sampler_sample(smp, row);
            ar_sampler_accept(smp, y);
        } else {
            y = ar_argmax(row, n_vocab);   /* the sampler's greedy token (NaN as -inf, lowest id on ties) */
        }
        emitted++;
        if (emit && emit(user, y)) { *stopped = true; break; }
        if (emitted >= max_emit) break;
        int c = ddtree_child(t, cur, y);
        if (c < 0) break;           /* y is the bonus token */
        path[(*n_path)++] = c;
        cur = c;
    }
    *last = y;
    return emitted;
}

int ar_ddtree_round(ar_ddtree *t, qwen35_seq *seq, ar_sampler *smp, int32_t anchor, int max_emit,
                    ar_chain_emit emit, void *user, int32_t *last, bool *stopped, ar_error *err)
{
    *stopped = false;
    *last = anchor;
    ar_draft_source *src = t->src;
    const int P = qwen35_seq_n_past(seq), room = qwen35_seq_n_ctx(seq) - P;
    if (room < 1)
        return ar_fail(err, AR_ERANGE, "DDTree round: the context is full (%d tokens)", qwen35_seq_n_ctx(seq));
    if (max_emit < 1) return ar_fail(err, AR_EINVAL, "DDTree round: %d tokens to emit", max_emit);
    if (src->n_past != P)
        return ar_fail(err, AR_EINVAL, "DDTree round: the draft source has seen %d positions, the sequence %d",
                       src->n_past, P);

    /* 1. draft: L depths, cut by the block, the caller's budget and the context (a clean cut: no node
     * ever sits past the context, and the tree is built for the depths that remain) */
    int L = src->block - 1;
    if (L > max_emit - 1) L = max_emit - 1;
    if (L > room - 1) L = room - 1;
    const double t0 = ar_now();
    ar_draft dr = { 0 };
    int rc = AR_OK;
    if (L > 0 && t->b_max > 0) rc = ar_draft_propose(src, anchor, P, L, t->top_k, &dr, err);
    if (rc) return rc;
    const double t1 = ar_now();

    /* 2. build the tree (auto: the budget model picks how much of it to verify) */
    const ddtree_params bp = { .budget = t->b_max, .top_k = t->top_k, .max_depth = L, .chain_seed = t->p.chain_seed };
    rc = ddtree_build(t->tree, anchor, &dr, &bp, err);
    if (rc) return rc;
    ddtree *tree = t->tree;
    if (t->budget) {
        ddtree_cum_gain(tree, t->cum);
        ddtree_truncate(tree, ar_budget_choose(t->budget, t->cum, tree->n - 1));
    }
    ddtree_cum_gain(tree, t->cum);
    const double predicted = t->cum[tree->n - 1];
    if (!t->p.pop_order) ddtree_dfs(tree);
    const double t2 = ar_now();

    /* 3. verify every node in one forward */
    ddtree_nodes(tree, 0, P, t->nodes);
    rc = forward(t, seq, tree->n, t->logits, err);
    if (rc) return rc;
    const double t3 = ar_now();

    /* 4. walk with the target's sampler; 5. commit the path, feed the source its rows */
    int n_path = 0;
    const int k = ddtree_walk(tree, t->logits, t->n_vocab, smp, max_emit, emit, user, t->path, &n_path, last, stopped);
    rc = qwen35_commit(t->ctx, seq, t->path, n_path, err);
    if (!rc) {
        const size_t fs = (size_t)src->feature_size;
        for (int j = 0; j < n_path; j++) {
            t->tokens[j] = tree->token[t->path[j]];
            if (t->taps && t->path[j] != j)
                memcpy(t->taps + (size_t)j * fs, t->taps + (size_t)t->path[j] * fs, fs * sizeof(float));
        }
        rc = ar_draft_commit(src, t->tokens, t->taps, n_path, P, err);
    }
    const double t4 = ar_now();

    t->st.n_rounds++;
    t->st.n_nodes += tree->n - 1;
    t->st.n_accepted += n_path - 1;
    t->st.n_emitted += k;
    t->st.predicted += predicted;
    t->st.draft_s += t1 - t0;
    t->st.build_s += t2 - t1;
    t->st.verify_s += t3 - t2;
    t->st.accept_s += t4 - t3;
    t->st.last_budget = tree->n - 1;
    t->st.last_accepted = n_path - 1;
    if (t->budget && !rc) {
        ar_budget_observe_forward(t->budget, tree->n, t3 - t2);
        ar_budget_observe_round(t->budget, *stopped ? -1.0 : predicted, n_path - 1, (t2 - t0) + (t4 - t3));
    }
    return rc;
}
