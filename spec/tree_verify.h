/* spec/tree_verify.h — lossless DDTree speculative decoding: one round = draft per-depth candidate
 * lists, build the best-first tree (spec/ddtree.h), verify ALL of it in ONE target forward, walk it
 * with the target's own sampler, commit the walked path (specs/ddtree.md §2).
 *
 * State between rounds is the chain's (spec/chain.h): the sequence has committed x_0..x_{P-1}; the
 * anchor a = x_P was sampled and emitted but not evaluated; the source has seen positions 0..P-1.
 * One round (ar_ddtree_round):
 *   1. draft    L = min(block - 1, max_emit - 1, context room - 1) depths, top-K candidates per depth;
 *   2. build    the tree of B draft nodes under the root a (B fixed, or chosen by spec/budget.h from
 *               this round's tree gains and the measured forward times), renumbered depth-first;
 *   3. verify   nodes [a, tree...] in one qwen35_forward: node i at P + depth(i), parent = its tree
 *               parent (ancestor-or-self attention, parent-indexed GDN state), logits of every node,
 *               the source's taps;
 *   4. walk     cur = root; y = the sampler's token on cur's row (ar_sampler_sample + accept: penalties,
 *               filters, temperature and RNG exactly as plain decoding, one draw per emitted token);
 *               emit y; if y is the token of a child c of cur, cur = c and repeat, else stop: y is the
 *               bonus. At temp 0 this is the greedy walk (§2.2); at temp > 0 every emitted token is a
 *               sample of the target's distribution given the tokens before it (§2.3), so the output
 *               distribution is the target's; the tree only decides how many of them one forward buys;
 *   5. commit   path = root + the accepted nodes (every emitted token but the last) with qwen35_commit;
 *               the last emitted token is the next anchor; the source gets the path's tokens and tap
 *               rows. The emit callback may stop the round after any token (end of generation, token
 *               budget, user stop); nothing after that token was sampled.
 *
 * Ownership: the decoder borrows the target ctx (one forward at a time) and the source; it owns the
 * tree, the verify scratch (nodes, logits and taps of B_max + 1 rows) and the budget model. */
#ifndef AR_SPEC_TREE_VERIFY_H
#define AR_SPEC_TREE_VERIFY_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "model/qwen35.h"
#include "spec/budget.h"
#include "spec/chain.h"
#include "spec/ddtree.h"
#include "spec/draft.h"
#include "spec/sample.h"

typedef struct ar_ddtree_params {
    int  budget;        /* B >= 1 draft nodes per round; 0: auto (spec/budget.h) */
    int  max_budget;    /* auto: the largest B considered (0: 256); always cut to the ctx's max nodes - 1 */
    int  top_k;         /* candidates per depth asked of the source (0: min(B or max_budget, the source's max)) */
    bool chain_seed;    /* specs/ddtree.md §1.5 (off: the reference's pure best-first tree) */
    bool pop_order;     /* tests: verify in selection order instead of depth-first order */
} ar_ddtree_params;

/* budget 0 (auto), max_budget 256, top_k 0, chain_seed off. */
ar_ddtree_params ar_ddtree_defaults(void);

/* Counters accumulated over rounds (ar_ddtree_stats_reset clears them). */
typedef struct ar_ddtree_stats {
    int    n_rounds;
    long   n_nodes;      /* draft nodes verified */
    long   n_accepted;   /* draft nodes committed */
    long   n_emitted;    /* tokens emitted (accepted + bonus; acceptance length = n_emitted / n_rounds) */
    double predicted;    /* sum of the verified trees' G(B) (the draft's own expectation of n_accepted) */
    double draft_s;      /* source: draft forward and top-k */
    double build_s;      /* tree construction, budget choice */
    double verify_s;     /* target verification forwards */
    double accept_s;     /* walk, target commit, source commit */
    double prefill_s;
    int    last_budget;  /* the last round: draft nodes verified, accepted */
    int    last_accepted;
} ar_ddtree_stats;

typedef struct ar_ddtree ar_ddtree;

/* Scratch for trees of up to max_budget (auto) or budget draft nodes on ctx; fails when the budget does
 * not fit the ctx's max nodes or the source gives no candidate lists (max_k 0). */
int  ar_ddtree_create(ar_ddtree **out, const qwen35_model *m, qwen35_ctx *ctx, ar_draft_source *src,
                      const ar_ddtree_params *p, ar_error *err);
void ar_ddtree_free(ar_ddtree *t);
ar_draft_source *ar_ddtree_source(ar_ddtree *t);
ar_budget *ar_ddtree_budget(ar_ddtree *t);
const ddtree *ar_ddtree_tree(const ar_ddtree *t);        /* the last round's tree (verified numbering) */
const ar_ddtree_stats *ar_ddtree_get_stats(const ar_ddtree *t);
void ar_ddtree_stats_reset(ar_ddtree *t);

/* Evaluate tokens[0..n) as a chain after seq's committed prefix, commit them and feed them (with taps)
 * to the source, as ar_chain_prefill. The logits of the last token go to last_logits when not NULL. */
int  ar_ddtree_prefill(ar_ddtree *t, qwen35_seq *seq, const int32_t *tokens, int n, float *last_logits, ar_error *err);

/* One round from the anchor at position n_past(seq); arguments and results as ar_chain_round. */
int  ar_ddtree_round(ar_ddtree *t, qwen35_seq *seq, ar_sampler *smp, int32_t anchor, int max_emit,
                     ar_chain_emit emit, void *user, int32_t *last, bool *stopped, ar_error *err);

/* The walk alone (step 4) over logits rows [t->n][n_vocab] of a verified tree: smp NULL walks the
 * argmax (ar_argmax: NaN as -inf, lowest id on ties). Writes the accepted path (root first, node
 * indices) to path (t->n entries suffice) and returns the number of tokens emitted (>= 1); *last = the
 * last one. */
int  ddtree_walk(const ddtree *t, const float *logits, int n_vocab, ar_sampler *smp, int max_emit, ar_chain_emit emit,
                 void *user, int *path, int *n_path, int32_t *last, bool *stopped);

#endif
