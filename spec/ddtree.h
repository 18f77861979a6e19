/* spec/ddtree.h — DDTree: the draft tree a speculative round verifies (specs/ddtree.md §1).
 *
 * Input: the per-depth candidate table of a draft source (spec/draft.h ar_draft): for depths
 * d = 1..L the top-K tokens with their log-probabilities, best first. The distributions are
 * MARGINALS (every branch at depth d reuses depth d's list).
 *
 * A tree node is a path root -> (1, r_1) -> ... -> (m, r_m) of ranks; its score is the path
 * log-probability logw = lp[1][r_1] + ... + lp[m][r_m] (summed root first, in double). Under the
 * "draft is the target" proxy exp(logw) is the probability that verification reaches the node, so
 * the B best-scoring nodes maximise the expected number of accepted tokens. They are found by a
 * best-first heap (§1.3): start with (depth 1, rank 0); every pop selects a node and pushes its next
 * sibling (same parent, rank + 1) and its first child (depth + 1, rank 0). Because a child never
 * scores above its parent and a sibling never above its better-ranked sibling, the pops come out in
 * exact score order and every prefix of the selection is ancestor-closed. Ties (equal logw) go to the
 * lexicographically smaller rank path, a prefix before its extensions (§1.4: the reference's Python
 * tuple order), so the tree is a pure function of the table.
 * chain_seed (§1.5, Lucebox's default, off by default here): the whole rank-0 chain is selected first
 * (depths 1..min(L, B)), then the heap fills the rest.
 *
 * Node numbering: node 0 is the root (the anchor token, parent -1, depth 0). ddtree_build numbers the
 * draft nodes 1..B in selection order (best first); ddtree_truncate keeps a prefix of the selection;
 * ddtree_dfs renumbers to depth-first preorder (children in rank order). Every numbering is
 * topological (parent[i] < i), which is all the model's batch needs; DFS order is what the verifier
 * uses because it keeps a root-to-leaf path in consecutive nodes (attention reads runs) and bounds the
 * live Gated DeltaNet state slots of qwen35_forward by the depth + 1 instead of the tree's width.
 *
 * Ownership: a ddtree owns its arrays (sized at create for up to max_budget draft nodes), reused by
 * every build; nothing is allocated per build. */
#ifndef AR_SPEC_DDTREE_H
#define AR_SPEC_DDTREE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "model/qwen35.h"
#include "spec/draft.h"

#define DDTREE_MAX_DEPTH 128   /* deepest tree (drafter block - 1 is 15 for the z-lab drafters) */

typedef struct ddtree_params {
    int  budget;        /* B >= 0: most draft nodes (the root is extra) */
    int  top_k;         /* ranks used per depth; 0 or more than the table has: all of the table's k */
    int  max_depth;     /* deepest node; 0 or more than the table has: all of the table's depths */
    bool chain_seed;    /* select the rank-0 chain first (§1.5) */
} ddtree_params;

typedef struct ddtree_cand ddtree_cand;

typedef struct ddtree {
    int      n;              /* nodes, root included: 1 + draft nodes */
    int      cap;            /* 1 + the most draft nodes */
    int32_t *token;          /* [cap]; token[0] = the root (anchor) */
    int32_t *depth;          /* depth[0] = 0 */
    int32_t *parent;         /* parent[0] = -1, parent[i] < i */
    int32_t *rank;           /* rank in its depth's candidate list; rank[0] = -1 */
    int32_t *first_child;    /* -1: a leaf; children are linked in rank order */
    int32_t *next_sibling;   /* -1: the last child */
    int32_t *sel;            /* selection index: sel[0] = 0, a draft node's 1..B (best first) */
    double  *logw;           /* score (path log-probability); logw[0] = 0 */
    /* scratch */
    ddtree_cand *heap;
    int      heap_cap;
    int32_t *tmp, *map, *last_child, *stack;
    double  *dtmp;
} ddtree;

int  ddtree_create(ddtree **out, int max_budget, ar_error *err);
void ddtree_free(ddtree *t);

/* Build the tree for root token `root` from the table d (d->k >= 1 or B == 0) in selection order.
 * Candidates whose log-prob is -inf or NaN are never selected, so the tree can have fewer than B
 * draft nodes. Fails (AR_EINVAL) when B exceeds the tree's capacity or the table is malformed. */
int  ddtree_build(ddtree *t, int32_t root, const ar_draft *d, const ddtree_params *p, ar_error *err);

/* Keep the draft nodes selected first (sel 1..b) and drop the rest (b >= n - 1: no-op). Keeps the
 * numbering's relative order, so a topological numbering stays one. */
void ddtree_truncate(ddtree *t, int b);

/* Renumber to depth-first preorder, children in rank order (the root stays node 0). */
void ddtree_dfs(ddtree *t);

/* cum[b] for b = 0 .. n-1: the expected number of accepted draft nodes of the tree cut to its b first
 * selections, sum of exp(logw) over sel 1..b (the proxy of §1.2). cum[0] = 0. */
void ddtree_cum_gain(const ddtree *t, double *cum);

/* The child of `node` whose token is `token`, or -1. */
int  ddtree_child(const ddtree *t, int node, int32_t token);

/* The verify batch: node i = (seq, token[i], pos0 + depth[i], parent[i], want_logits) (§1.6:
 * position = root position + depth, never + index). */
void ddtree_nodes(const ddtree *t, int seq, int pos0, ar_node *nodes);

/* The most live GDN state slots qwen35_forward's slot plan needs for this numbering (a root or a
 * non-last child takes a new slot, a node's last child inherits its slot, a leaf frees its slot). For
 * tests and memory reports. */
int  ddtree_peak_slots(const ddtree *t);

#endif
