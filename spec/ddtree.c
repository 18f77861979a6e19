/* spec/ddtree.c — DDTree construction (spec/ddtree.h, specs/ddtree.md §1).
 *
 * Data flow: ar_draft table -> best-first heap of candidates {logw, parent, depth, rank} -> nodes in
 * selection order (parent[i] < i) -> optionally truncated to a prefix of the selection -> optionally
 * renumbered to DFS preorder -> ar_node batch. The heap holds at most B + depth + 1 entries (every
 * pop pushes <= 2, the chain seed pushes one sibling per chain node), sized at create.
 *
 * Invariants kept by every operation: node 0 is the root; parent[i] < i; siblings have distinct
 * tokens and are linked in rank order; sel[] is a permutation of 0..n-1 with sel[0] = 0 and every
 * node's sel larger than its parent's. */
#include "spec/ddtree.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct ddtree_cand {
    double  logw;
    int32_t parent, depth, rank;
};

int ddtree_create(ddtree **out, int max_budget, ar_error *err)
{
    *out = NULL;
    if (max_budget < 0 || max_budget > (1 << 24))
        return ar_fail(err, AR_EINVAL, "DDTree budget %d out of range", max_budget);
    ddtree *t = calloc(1, sizeof *t);
    if (!t) return ar_fail(err, AR_ENOMEM, "out of memory creating a DDTree");
    const size_t cap = (size_t)max_budget + 1;
    t->cap = (int)cap;
    t->heap_cap = max_budget + DDTREE_MAX_DEPTH + 2;
    int32_t **arrs[] = { &t->token, &t->depth, &t->parent, &t->rank, &t->first_child, &t->next_sibling, &t->sel,
                         &t->tmp, &t->map, &t->last_child, &t->stack };
    bool ok = true;
    for (size_t i = 0; i < sizeof arrs / sizeof arrs[0]; i++) ok = ok && (*arrs[i] = malloc(cap * sizeof(int32_t)));
    ok = ok && (t->logw = malloc(cap * sizeof(double))) && (t->dtmp = malloc(cap * sizeof(double)));
    ok = ok && (t->heap = malloc((size_t)t->heap_cap * sizeof *t->heap));
    if (!ok) {
        ddtree_free(t);
        return ar_fail(err, AR_ENOMEM, "out of memory for a DDTree of %d nodes", max_budget);
    }
    t->n = 1;
    t->token[0] = 0;
    t->depth[0] = 0;
    t->parent[0] = -1;
    t->rank[0] = -1;
    t->first_child[0] = t->next_sibling[0] = -1;
    t->sel[0] = 0;
    t->logw[0] = 0.0;
    *out = t;
    return AR_OK;
}

void ddtree_free(ddtree *t)
{
    if (!t) return;
    void *bufs[] = { t->token, t->depth, t->parent, t->rank, t->first_child, t->next_sibling, t->sel, t->tmp, t->map,
                     t->last_child, t->stack, t->logw, t->dtmp, t->heap };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(t);
}

/* ---- best-first heap ------------------------------------------------------------------------ */

/* Ranks of the path root -> candidate, depth 1 first, into r; returns its length. */
static int rank_path(const ddtree *t, const ddtree_cand *c, int32_t *r)
{
    r[c->depth - 1] = c->rank;
    for (int i = c->parent; i > 0; i = t->parent[i]) r[t->depth[i] - 1] = t->rank[i];
    return c->depth;
}

/* a pops before b: higher score, then the lexicographically smaller rank path (a prefix first). */
static bool before(const ddtree *t, const ddtree_cand *a, const ddtree_cand *b)
{
    if (a->logw != b->logw) return a->logw > b->logw;
    int32_t ra[DDTREE_MAX_DEPTH], rb[DDTREE_MAX_DEPTH];
    int na = rank_path(t, a, ra), nb = rank_path(t, b, rb);
    for (int i = 0; i < na && i < nb; i++)
        if (ra[i] != rb[i]) return ra[i] < rb[i];
    return na < nb;
}

static void heap_push(ddtree *t, int *n, ddtree_cand c)
{
    int i = (*n)++;
    while (i > 0) {
        int p = (i - 1) / 2;
        if (!before(t, &c, &t->heap[p])) break;
        t->heap[i] = t->heap[p];
        i = p;
    }
    t->heap[i] = c;
}

static ddtree_cand heap_pop(ddtree *t, int *n)
{
    ddtree_cand top = t->heap[0], last = t->heap[--(*n)];
    int i = 0;
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = -1;
        if (l >= *n) break;
        w = r < *n && before(t, &t->heap[r], &t->heap[l]) ? r : l;
        if (!before(t, &t->heap[w], &last)) break;
        t->heap[i] = t->heap[w];
        i = w;
    }
    if (*n > 0) t->heap[i] = last;
    return top;
}

/* ---- build ------------------------------------------------------------------------------------ */

typedef struct {
    const ar_draft *d;
    int n_depth, k;
} table;

static double lp_at(const table *tb, int depth, int rank)
{
    float v = tb->d->logp[(size_t)(depth - 1) * (size_t)tb->d->k + (size_t)rank];
    return v == v ? (double)v : -INFINITY;
}

static int32_t tok_at(const table *tb, int depth, int rank)
{
    return tb->d->ids[(size_t)(depth - 1) * (size_t)tb->d->k + (size_t)rank];
}

static void link_child(ddtree *t, int parent, int child)
{
    if (t->first_child[parent] < 0) t->first_child[parent] = child;
    else t->next_sibling[t->last_child[parent]] = child;
    t->last_child[parent] = child;
}

/* Select candidate c as the next node; false when its token is already a child of its parent (a table
 * with a repeated id: the duplicate is skipped, so sibling tokens stay distinct). */
static bool add_node(ddtree *t, const table *tb, const ddtree_cand *c)
{
    const int32_t tok = tok_at(tb, c->depth, c->rank);
    for (int j = t->first_child[c->parent]; j >= 0; j = t->next_sibling[j])
        if (t->token[j] == tok) return false;
    const int i = t->n++;
    t->token[i] = tok;
    t->depth[i] = c->depth;
    t->parent[i] = c->parent;
    t->rank[i] = c->rank;
    t->logw[i] = c->logw;
    t->sel[i] = i;
    t->first_child[i] = t->next_sibling[i] = -1;
    link_child(t, c->parent, i);
    return true;
}

static void push_cand(ddtree *t, int *nh, const table *tb, int parent, int depth, int rank)
{
    double lp = lp_at(tb, depth, rank);
    if (lp == -INFINITY) return;    /* never selected; later ranks of the row are no better */
    ddtree_cand c = { t->logw[parent] + lp, parent, depth, rank };
    if (c.logw == -INFINITY) return;
    heap_push(t, nh, c);
}

int ddtree_build(ddtree *t, int32_t root, const ar_draft *d, const ddtree_params *p, ar_error *err)
{
    const int B = p->budget;
    t->n = 1;
    t->token[0] = root;
    t->first_child[0] = t->next_sibling[0] = -1;
    if (B < 0 || B > t->cap - 1)
        return ar_fail(err, AR_EINVAL, "DDTree budget %d: must be 0..%d (the tree's capacity)", B, t->cap - 1);
    table tb = { d, d ? d->n_depth : 0, d ? d->k : 0 };
    if (p->max_depth > 0 && p->max_depth < tb.n_depth) tb.n_depth = p->max_depth;
    if (tb.n_depth > DDTREE_MAX_DEPTH) tb.n_depth = DDTREE_MAX_DEPTH;
    if (B == 0 || tb.n_depth <= 0) return AR_OK;
    if (tb.k < 1 || !d->ids || !d->logp)
        return ar_fail(err, AR_EINVAL, "DDTree: the draft has no candidate lists (ask the source for top-k >= 1)");
    if (p->top_k > 0 && p->top_k < tb.k) tb.k = p->top_k;

    int nh = 0;
    if (p->chain_seed) {
        /* §1.5: the rank-0 chain first; each chain node offers only its rank-1 sibling (its rank-0
         * child is the next chain node) */
        for (int dep = 1, prev = 0; dep <= tb.n_depth && t->n <= B; dep++) {
            double lp = lp_at(&tb, dep, 0);
            if (lp == -INFINITY) break;          /* nothing below a zero-probability depth */
            ddtree_cand c = { t->logw[prev] + lp, prev, dep, 0 };
            add_node(t, &tb, &c);
            if (tb.k > 1) push_cand(t, &nh, &tb, prev, dep, 1);
            prev = t->n - 1;
        }
    } else {
        push_cand(t, &nh, &tb, 0, 1, 0);
    }
    while (t->n <= B && nh > 0) {
        ddtree_cand c = heap_pop(t, &nh);
        bool added = add_node(t, &tb, &c);
        if (c.rank + 1 < tb.k) push_cand(t, &nh, &tb, c.parent, c.depth, c.rank + 1);
        if (added && c.depth < tb.n_depth) push_cand(t, &nh, &tb, t->n - 1, c.depth + 1, 0);
    }
    return AR_OK;
}

/* ---- renumbering -------------------------------------------------------------------------------- */

/* Rebuild first_child / next_sibling from parent[] (children in numbering order). */
static void relink(ddtree *t)
{
    for (int i = 0; i < t->n; i++) t->first_child[i] = t->next_sibling[i] = -1;
    for (int i = 1; i < t->n; i++) link_child(t, t->parent[i], i);
}

/* Apply new index map[i] (a permutation of 0..n-1 onto 0..m-1 for kept nodes, -1 dropped). */
static void apply_map(ddtree *t, int m)
{
    int32_t *arrs[] = { t->token, t->depth, t->rank, t->sel };
    for (size_t a = 0; a < sizeof arrs / sizeof arrs[0]; a++) {
        for (int i = 0; i < t->n; i++)
            if (t->map[i] >= 0) t->tmp[t->map[i]] = arrs[a][i];
        memcpy(arrs[a], t->tmp, (size_t)m * sizeof(int32_t));
    }
    for (int i = 0; i < t->n; i++)
        if (t->map[i] >= 0) t->tmp[t->map[i]] = t->parent[i] < 0 ? -1 : t->map[t->parent[i]];
    memcpy(t->parent, t->tmp, (size_t)m * sizeof(int32_t));
    for (int i = 0; i < t->n; i++)
        if (t->map[i] >= 0) t->dtmp[t->map[i]] = t->logw[i];
    memcpy(t->logw, t->dtmp, (size_t)m * sizeof(double));
    t->n = m;
    relink(t);
}

void ddtree_truncate(ddtree *t, int b)
{
    if (b < 0) b = 0;
    if (b >= t->n - 1) return;
    int m = 0;
    for (int i = 0; i < t->n; i++) t->map[i] = t->sel[i] <= b ? m++ : -1;
    apply_map(t, m);
}

void ddtree_dfs(ddtree *t)
{
    int sp = 0, m = 0;
    t->stack[sp++] = 0;
    while (sp > 0) {
        int i = t->stack[--sp];
        t->map[i] = m++;
        int nc = 0;   /* push the children in reverse rank order so the best is visited first */
        for (int j = t->first_child[i]; j >= 0; j = t->next_sibling[j]) t->tmp[nc++] = j;
        while (nc > 0) t->stack[sp++] = t->tmp[--nc];
    }
    /* children were linked in rank order; relink() orders them by new index = preorder = rank order */
    apply_map(t, m);
}

/* ---- queries ------------------------------------------------------------------------------------ */

void ddtree_cum_gain(const ddtree *t, double *cum)
{
    cum[0] = 0.0;
    for (int i = 1; i < t->n; i++) cum[t->sel[i]] = exp(t->logw[i]);
    for (int s = 1; s < t->n; s++) cum[s] += cum[s - 1];
}

int ddtree_child(const ddtree *t, int node, int32_t token)
{
    for (int j = t->first_child[node]; j >= 0; j = t->next_sibling[j])
        if (t->token[j] == token) return j;
    return -1;
}

void ddtree_nodes(const ddtree *t, int seq, int pos0, ar_node *nodes)
{
    for (int i = 0; i < t->n; i++)
        nodes[i] = (ar_node){ .seq = seq, .token = t->token[i], .pos = pos0 + t->depth[i], .parent = t->parent[i],
                              .want_logits = true };
}

int ddtree_peak_slots(const ddtree *t)
{
    const size_t n = (size_t)t->n;
    int *kids = calloc(n, sizeof *kids), *left = malloc(n * sizeof *left), *slot = malloc(n * sizeof *slot),
        *freel = malloc(n * sizeof *freel);
    int peak = -1;
    if (kids && left && slot && freel) {
        for (int i = 1; i < t->n; i++) kids[t->parent[i]]++;
        memcpy(left, kids, n * sizeof *left);
        int n_free = 0, n_used = 0;
        for (int i = 0; i < t->n; i++) {
            int p = t->parent[i];
            slot[i] = p >= 0 && --left[p] == 0 ? slot[p] : n_free ? freel[--n_free] : n_used++;
            if (kids[i] == 0) freel[n_free++] = slot[i];
        }
        peak = n_used;
    }
    free(kids);
    free(left);
    free(slot);
    free(freel);
    return peak;
}
