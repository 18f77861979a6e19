/* tests/test_ddtree.c — DDTree: tree construction, verification, lossless walks, auto budget
 * (spec/ddtree.h, spec/tree_verify.h, spec/budget.h).
 *
 *   1. construction == brute force: on small random candidate tables (ties included), the selection
 *      order equals the sorted list of all rank paths (score descending, rank path ascending), with and
 *      without the chain seed; trees are ancestor-closed, topological, siblings distinct; truncation is a
 *      prefix of the selection; the DFS renumbering is a preorder of the same tree and bounds the GDN
 *      state slots by depth + 1 (the selection order's peak is printed);
 *   2. tree logits == path logits: every node of DDTree-shaped trees up to 128 nodes (selection and DFS
 *      numbering) on $ARBOR_FIXTURES/tiny-f32.gguf equals its root-to-node path evaluated as a chain;
 *   3. T = 0: DDTree output is token-identical to plain decoding for budgets 1 2 7 22 64 128 and blocks
 *      8 and 16, with a random DFlash drafter ($ARBOR_BIN mkdraft) and with the replay source (spec/replay.c)
 *      whose true tokens are moved to chosen ranks by a wrapper here; chain seed, auto budget, penalties;
 *   4. T > 0: with the same seed the output is token-identical to plain sampling (penalties, top-k/p,
 *      min-p on); a chi-square over 20,000 samples of the first 3 tokens on a small-vocab model shows no
 *      shift from the target's exact joint distribution (and detects a temperature 1.1 shift);
 *   5. a tree that would run past the context is cut: generation to the last position matches plain;
 *   6. the budget model: exploration ladder, interpolation, alpha calibration, optimum. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/log.h"
#include "base/timer.h"
#include "model/dflash.h"
#include "model/mkmodel.h"
#include "model/qwen35.h"
#include "spec/budget.h"
#include "spec/ddtree.h"
#include "spec/draft.h"
#include "spec/sample.h"
#include "spec/tree_verify.h"
#include "tests/test.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 11); }
static double urand(void) { return (double)rnd() / 4294967296.0; }   /* [0, 1) */

static char g_tmp[256];

static double rel_diff(const float *a, const float *b, int n)
{
    double d = 0, m = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

/* ---- 1. construction --------------------------------------------------------------------------- */

enum { BF_MAX_DEPTH = 6 };

typedef struct { int depth; int32_t r[BF_MAX_DEPTH]; double logw; } bpath;

static int cmp_bpath(const void *pa, const void *pb)
{
    const bpath *a = pa, *b = pb;
    if (a->logw != b->logw) return a->logw > b->logw ? -1 : 1;
    for (int i = 0; i < a->depth && i < b->depth; i++)
        if (a->r[i] != b->r[i]) return a->r[i] < b->r[i] ? -1 : 1;
    return a->depth - b->depth;
}

/* Every rank path of depth 1..L with ranks < k and a finite score, scores summed root first. */
static void enum_paths(const ar_draft *d, int L, int k, bpath *cur, bpath *out, int *n)
{
    if (cur->depth == L) return;
    for (int r = 0; r < k; r++) {
        bpath nx = *cur;
        float lp = d->logp[(size_t)cur->depth * d->k + r];
        nx.logw = cur->logw + (lp == lp ? (double)lp : -INFINITY);
        nx.r[nx.depth++] = r;
        if (nx.logw == -INFINITY) continue;
        out[(*n)++] = nx;
        enum_paths(d, L, k, &nx, out, n);
    }
}

static int node_path(const ddtree *t, int i, int32_t *r)
{
    int n = t->depth[i];
    for (int j = i; j > 0; j = t->parent[j]) r[t->depth[j] - 1] = t->rank[j];
    return n;
}

/* Structural invariants; returns false (with a CHECK failure) when one is broken. */
static bool check_tree(const ddtree *t, const char *what)
{
    bool ok = t->n >= 1 && t->parent[0] == -1 && t->depth[0] == 0 && t->sel[0] == 0;
    int *seen = calloc((size_t)t->n, sizeof *seen);
    for (int i = 1; ok && i < t->n; i++) {
        int p = t->parent[i];
        ok = p >= 0 && p < i && t->depth[i] == t->depth[p] + 1 && t->sel[i] > t->sel[p] && t->sel[i] < t->n;
        ok = ok && !seen[t->sel[i]]++;
        int found = 0, prev_rank = -1;
        for (int j = t->first_child[p]; ok && j >= 0; j = t->next_sibling[j]) {
            found += j == i;
            ok = t->parent[j] == p && t->rank[j] > prev_rank && (j == i || t->token[j] != t->token[i]);
            prev_rank = t->rank[j];
        }
        ok = ok && found == 1;
    }
    free(seen);
    CHECK(ok, "%s: tree invariants broken (n %d)", what, t->n);
    return ok;
}

static void random_table(ar_draft *d, int32_t *ids, float *logp, int L, int k, int mode, int n_vocab)
{
    for (int dep = 0; dep < L; dep++) {
        for (int r = 0; r < k; r++) {   /* distinct tokens per depth */
            int32_t t;
            bool dup;
            do {
                t = (int32_t)(rnd() % (uint32_t)n_vocab);
                dup = false;
                for (int q = 0; q < r; q++) dup = dup || ids[dep * k + q] == t;
            } while (dup);
            ids[dep * k + r] = t;
        }
        float v = 0;
        for (int r = 0; r < k; r++) {
            if (mode == 1) v -= 0.5f * (float)(rnd() % 3);                 /* exact halves: many ties */
            else v -= (float)(urand() * 2.0);
            logp[dep * k + r] = v;
        }
        if (mode == 2 && k > 1 && rnd() % 2) logp[dep * k + k - 1] = -INFINITY;   /* a dead tail rank */
        if (mode == 2 && rnd() % 9 == 0)                                          /* a dead depth */
            for (int r = 0; r < k; r++) logp[dep * k + r] = r % 2 ? -INFINITY : NAN;
    }
    *d = (ar_draft){ .n_depth = L, .k = k, .ids = ids, .logp = logp };
}

static void test_construction(void)
{
    ddtree *t = NULL, *u = NULL;
    ar_error err;
    CHECK(ddtree_create(&t, 400, &err) == AR_OK && ddtree_create(&u, 400, &err) == AR_OK, "ddtree_create: %s", err.msg);
    if (!t || !u) return;
    bpath *all = malloc(20000 * sizeof *all), *ref = malloc(20000 * sizeof *ref);
    int32_t ids[BF_MAX_DEPTH * 5];
    float logp[BF_MAX_DEPTH * 5];
    int n_cases = 0, n_bad = 0, n_ties = 0;
    for (int c = 0; c < 600; c++) {
        const int L = 1 + (int)(rnd() % 5u), k = 1 + (int)(rnd() % 4u), mode = c % 3;
        ar_draft d;
        random_table(&d, ids, logp, L, k, mode, 40);
        const int kk = rnd() % 3 == 0 ? 1 + (int)(rnd() % (uint32_t)k) : 0;     /* top_k cut */
        const int keff = kk ? kk : k;
        const int maxd = rnd() % 4 == 0 ? 1 + (int)(rnd() % (uint32_t)L) : 0;  /* depth cut */
        const int leff = maxd ? maxd : L;
        const bool seed = c % 2;
        int n_all = 0;
        bpath root = { 0 };
        enum_paths(&d, leff, keff, &root, all, &n_all);
        qsort(all, (size_t)n_all, sizeof *all, cmp_bpath);
        for (int i = 1; i < n_all; i++) n_ties += all[i].logw == all[i - 1].logw;
        const int B = (int)(rnd() % (uint32_t)(n_all + 3 < 401 ? n_all + 3 : 401));
        /* reference selection: [chain seed] then the sorted paths */
        int n_ref = 0;
        if (seed) {
            bpath ch = { 0 };
            for (int dep = 0; dep < leff && n_ref < B; dep++) {
                float lp = logp[dep * k];
                if (!(lp == lp) || lp == -INFINITY) break;
                ch.logw += lp;
                ch.r[ch.depth++] = 0;
                ref[n_ref++] = ch;
            }
        }
        const int n_chain = n_ref;
        for (int i = 0; i < n_all && n_ref < B; i++) {
            bool chain = n_chain > 0 && all[i].depth <= n_chain;
            for (int q = 0; chain && q < all[i].depth; q++) chain = all[i].r[q] == 0;
            if (!chain) ref[n_ref++] = all[i];
        }
        ddtree_params p = { .budget = B, .top_k = kk, .max_depth = maxd, .chain_seed = seed };
        int rc = ddtree_build(t, 7, &d, &p, &err);
        CHECK(rc == AR_OK, "build: %s", err.msg);
        if (rc || !check_tree(t, "build")) { n_bad++; continue; }
        bool same = t->n - 1 == n_ref && t->token[0] == 7;
        for (int i = 1; same && i < t->n; i++) {
            int32_t r[BF_MAX_DEPTH];
            int dd = node_path(t, i, r);
            same = dd == ref[i - 1].depth && t->logw[i] == ref[i - 1].logw &&
                   t->token[i] == ids[(dd - 1) * k + r[dd - 1]] && t->sel[i] == i;
            for (int q = 0; same && q < dd; q++) same = r[q] == ref[i - 1].r[q];
        }
        if (!same) {
            n_bad++;
            if (n_bad <= 3)
                printf("case %d: L %d k %d (top %d, depth %d) B %d seed %d mode %d: tree of %d draft nodes, reference %d\n",
                       c, L, k, kk, maxd, B, seed, mode, t->n - 1, n_ref);
        }
        /* determinism: a second build of the same table is identical */
        rc = ddtree_build(u, 7, &d, &p, &err);
        bool det = rc == AR_OK && u->n == t->n;
        for (int i = 0; det && i < t->n; i++)
            det = u->token[i] == t->token[i] && u->parent[i] == t->parent[i] && u->logw[i] == t->logw[i];
        CHECK(det, "case %d: two builds of one table differ", c);
        /* cumulative gains are sums of exp(score) in selection order */
        double cum[64];
        if (t->n <= 64) {
            ddtree_cum_gain(t, cum);
            double s = 0;
            bool gok = true;
            for (int i = 1; i < t->n; i++) { s += exp(t->logw[i]); gok = gok && fabs(cum[i] - s) <= 1e-12 * (1 + s); }
            CHECK(gok, "case %d: cumulative gains wrong", c);
        }
        /* truncation keeps a prefix of the selection; DFS keeps the same tree */
        if (t->n > 2) {
            int b = (int)(rnd() % (uint32_t)(t->n - 1));
            ddtree_build(u, 7, &d, &p, &err);
            ddtree_dfs(u);
            check_tree(u, "dfs");
            ddtree_truncate(u, b);
            check_tree(u, "dfs+truncate");
            bool pre = u->n == b + 1;
            for (int i = 1; pre && i < u->n; i++) {   /* node with sel s has the same rank path as t's node s */
                int32_t r1[BF_MAX_DEPTH], r2[BF_MAX_DEPTH];
                int d1 = node_path(u, i, r1), d2 = node_path(t, u->sel[i], r2);
                pre = d1 == d2 && u->sel[i] <= b && u->token[i] == t->token[u->sel[i]];
                for (int q = 0; pre && q < d1; q++) pre = r1[q] == r2[q];
            }
            /* preorder: every subtree is the contiguous range after its root */
            int size[512];
            for (int i = u->n - 1; i >= 0; i--) {
                size[i] = 1;
                for (int j = u->first_child[i]; j >= 0; j = u->next_sibling[j]) size[i] += size[j];
            }
            for (int i = 0; pre && i < u->n; i++) {
                int expect = i + 1;
                for (int j = u->first_child[i]; pre && j >= 0; j = u->next_sibling[j]) {
                    pre = j == expect;
                    expect += size[j];
                }
            }
            CHECK(pre, "case %d: dfs + truncate(%d) is not a preorder of the selection prefix", c, b);
        }
        n_cases++;
    }
    CHECK(n_bad == 0, "%d of %d construction cases differ from the brute-force selection", n_bad, n_cases);
    printf("ok construction: %d random tables (%d score ties) equal brute force, selection order and tie-breaking\n",
           n_cases, n_ties);

    /* tie-breaking spelled out: equal scores -> lexicographically smaller rank path, prefix first */
    {
        int32_t tid[4] = { 10, 11, 20, 21 };
        float tlp[4] = { 0.0f, -1.0f, -1.0f, -1.0f };   /* (0) 0, (1) -1, (0,0) -1, (0,1) -1 ... */
        ar_draft d = { .n_depth = 2, .k = 2, .ids = tid, .logp = tlp };
        ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 6 }, &err);
        /* order: (0)=0, (0,0)=-1, (0,1)=-1, (1)=-1, (1,0)=-2, (1,1)=-2 */
        int want_par[7] = { -1, 0, 1, 1, 0, 4, 4 };
        int32_t want_tok[7] = { 1, 10, 20, 21, 11, 20, 21 };
        bool ok = t->n == 7;
        for (int i = 0; ok && i < 7; i++) ok = t->parent[i] == want_par[i] && t->token[i] == want_tok[i];
        CHECK(ok, "tie order: expected (0) (0,0) (0,1) (1) (1,0) (1,1)");
    }
    /* a repeated id in a row never gives two siblings with one token */
    {
        int32_t tid[6] = { 5, 5, 6, 8, 9, 8 };
        float tlp[6] = { -0.1f, -0.2f, -0.3f, -0.1f, -0.2f, -0.3f };
        ar_draft d = { .n_depth = 2, .k = 3, .ids = tid, .logp = tlp };
        ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 20 }, &err);
        CHECK(check_tree(t, "duplicate ids") && t->n == 1 + 2 + 2 * 2, "duplicate ids: %d nodes, expected 7", t->n);
    }
    /* bad calls */
    {
        ar_draft d = { .n_depth = 3, .k = 0 };
        CHECK(ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 3 }, &err) == AR_EINVAL, "a table without lists must fail");
        CHECK(ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 401 }, &err) == AR_EINVAL,
              "a budget over capacity must fail");
        CHECK(ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 0 }, &err) == AR_OK && t->n == 1,
              "budget 0: the root alone");
    }
    /* GDN state slots: selection order vs DFS order for a 256-node tree from a flat-ish table */
    {
        enum { L = 15, K = 64 };
        static int32_t bid[L * K];
        static float blp[L * K];
        for (int dep = 0; dep < L; dep++)
            for (int r = 0; r < K; r++) {
                bid[dep * K + r] = 100 + r;
                blp[dep * K + r] = -0.3f - 0.35f * (float)r - 0.02f * (float)dep;
            }
        ar_draft d = { .n_depth = L, .k = K, .ids = bid, .logp = blp };
        ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 256 }, &err);
        int pop = ddtree_peak_slots(t), maxd = 0;
        for (int i = 0; i < t->n; i++) if (t->depth[i] > maxd) maxd = t->depth[i];
        ddtree_dfs(t);
        int dfs = ddtree_peak_slots(t);
        printf("ok GDN state slots for a 257-node tree of depth %d: %d in selection order, %d in DFS order\n", maxd, pop,
               dfs);
        CHECK(dfs <= maxd + 1, "DFS order needs %d GDN slots for depth %d", dfs, maxd);
    }
    free(all);
    free(ref);
    ddtree_free(t);
    ddtree_free(u);
}

/* ---- shared: target, generation loops ---------------------------------------------------------- */

typedef struct {
    qwen35_model *m;
    qwen35_ctx *c;
    int V;
} target;

static int open_target(target *T, const char *path, int max_nodes, int threads)
{
    ar_error err;
    memset(T, 0, sizeof *T);
    if (qwen35_load(&T->m, path, &err) || qwen35_ctx_create(&T->c, T->m, max_nodes, threads, &err)) {
        CHECK(0, "target %s: %s", path, err.msg);
        return -1;
    }
    T->V = qwen35_hparams_of(T->m)->n_vocab;
    return 0;
}

static void close_target(target *T)
{
    qwen35_ctx_free(T->c);
    qwen35_free(T->m);
}

/* Chain forward of ids on top of s; commit when asked; logits of every node into lg (may be NULL). */
static int chain(target *T, qwen35_seq *s, const int32_t *ids, int n, bool commit, float *lg)
{
    ar_error err;
    ar_node nodes[256];
    int path[256];
    const int base = qwen35_seq_n_past(s);
    for (int i = 0; i < n; i++) {
        nodes[i] = (ar_node){ .seq = 0, .token = ids[i], .pos = base + i, .parent = i - 1, .want_logits = lg != NULL };
        path[i] = i;
    }
    ar_batch b = { .n_nodes = n, .nodes = nodes, .logits = lg };
    int rc = qwen35_forward(T->c, &s, &b, &err);
    if (!rc && commit) rc = qwen35_commit(T->c, s, path, n, &err);
    if (rc) printf("chain of %d: %s\n", n, err.msg);
    return rc;
}

/* Plain decoding (the engine's loop): prompt, then sample / emit / evaluate until n_gen tokens or the
 * context is full. */
static int plain_generate(target *T, int n_ctx, const int32_t *prompt, int n_prompt, int n_gen,
                          const ar_sampler_params *sp, int32_t *out, float *final_logits)
{
    ar_error err;
    qwen35_seq *s = NULL;
    ar_sampler *smp = NULL;
    float *lg = malloc((size_t)n_prompt * T->V * sizeof(float));
    int n = 0;
    if (qwen35_seq_create(&s, T->m, n_ctx, &err) || ar_sampler_create(&smp, sp, T->V, &err)) {
        CHECK(0, "plain: %s", err.msg);
        goto out;
    }
    for (int i = 0; i < n_prompt; i++) ar_sampler_accept(smp, prompt[i]);
    if (chain(T, s, prompt, n_prompt, true, lg)) goto out;
    const float *row = lg + (size_t)(n_prompt - 1) * T->V;
    for (;;) {
        int32_t tok = ar_sampler_sample(smp, row);
        ar_sampler_accept(smp, tok);
        out[n++] = tok;
        if (n >= n_gen || qwen35_seq_n_past(s) >= n_ctx) break;
        if (chain(T, s, &tok, 1, true, lg)) break;
        row = lg;
    }
    /* the state check: logits after the last token (evaluated, not committed) */
    if (final_logits && qwen35_seq_n_past(s) < n_ctx) chain(T, s, &out[n - 1], 1, false, final_logits);
out:
    qwen35_seq_free(s);
    ar_sampler_free(smp);
    free(lg);
    return n;
}

typedef struct { int32_t *out; int n; } collector;

static bool collect(void *user, int32_t tok)
{
    collector *c = user;
    c->out[c->n++] = tok;
    return false;
}

typedef struct {
    ar_ddtree_stats st;
    int max_depth_over;   /* rounds whose tree reached past the context */
    int rc;
} spec_result;

/* DDTree decoding with the same loop shape; logits after the last committed token into final_logits
 * (one extra plain forward of the pending token, for the state check). */
static int spec_generate(target *T, ar_draft_source *src, const ar_ddtree_params *dp, int n_ctx, const int32_t *prompt,
                         int n_prompt, int n_gen, const ar_sampler_params *sp, int32_t *out, float *final_logits,
                         spec_result *res)
{
    ar_error err = { 0 };
    qwen35_seq *s = NULL;
    ar_sampler *smp = NULL;
    ar_ddtree *dt = NULL;
    float *lg = malloc((size_t)T->V * sizeof(float));
    collector col = { out, 0 };
    memset(res, 0, sizeof *res);
    ar_draft_reset(src);
    int rc = qwen35_seq_create(&s, T->m, n_ctx, &err);
    if (!rc) rc = ar_sampler_create(&smp, sp, T->V, &err);
    if (!rc) rc = ar_ddtree_create(&dt, T->m, T->c, src, dp, &err);
    for (int i = 0; !rc && i < n_prompt; i++) ar_sampler_accept(smp, prompt[i]);
    if (!rc) rc = ar_ddtree_prefill(dt, s, prompt, n_prompt, lg, &err);
    if (!rc) {
        int32_t anchor = ar_sampler_sample(smp, lg);
        ar_sampler_accept(smp, anchor);
        collect(&col, anchor);
        while (!rc && col.n < n_gen && qwen35_seq_n_past(s) < n_ctx) {
            const int P = qwen35_seq_n_past(s);
            bool stopped;
            rc = ar_ddtree_round(dt, s, smp, anchor, n_gen - col.n, collect, &col, &anchor, &stopped, &err);
            const ddtree *tr = ar_ddtree_tree(dt);
            for (int i = 0; i < tr->n; i++)
                if (P + tr->depth[i] >= n_ctx) { res->max_depth_over++; break; }
        }
        if (!rc && final_logits && qwen35_seq_n_past(s) < n_ctx) rc = chain(T, s, &anchor, 1, false, final_logits);
    }
    CHECK(rc == 0, "spec generate (%s, budget %d): %s", src->name, dp->budget, err.msg);
    if (dt) res->st = *ar_ddtree_get_stats(dt);
    res->rc = rc;
    ar_ddtree_free(dt);
    ar_sampler_free(smp);
    qwen35_seq_free(s);
    free(lg);
    return col.n;
}

/* ---- a replay wrapper: the true token at a chosen rank --------------------------------------------
 * Wraps spec/replay.c: its proposal (the reference token, or a wrong one at its error depth) is moved
 * from rank 0 to rank sched[(round + depth) % n] of the candidate list (log-probs stay descending), so
 * the true path sits at chosen ranks and depths of the tree. */
typedef struct {
    ar_draft_source base;
    ar_draft_source *inner;
    const int *sched;
    int n_sched;
    long round;
} ranked_source;

static int rk_draft(ar_draft_source *b, int32_t anchor, int pos, int n_depth, int top_k, ar_draft *out, ar_error *err)
{
    ranked_source *s = (ranked_source *)b;
    int rc = ar_draft_propose(s->inner, anchor, pos, n_depth, top_k, out, err);
    if (rc || top_k < 2) return rc;
    for (int d = 0; d < n_depth; d++) {
        int r = s->sched[(s->round + d) % s->n_sched] % top_k;
        int32_t *ids = out->ids + (size_t)d * top_k, t0 = ids[0];
        memmove(ids, ids + 1, (size_t)r * sizeof *ids);
        ids[r] = t0;
    }
    s->round++;
    return AR_OK;
}

static int rk_commit(ar_draft_source *b, const int32_t *tokens, const float *f, int n, int pos0, ar_error *err)
{
    return ar_draft_commit(((ranked_source *)b)->inner, tokens, f, n, pos0, err);
}

static void rk_reset(ar_draft_source *b)
{
    ranked_source *s = (ranked_source *)b;
    ar_draft_reset(s->inner);
    s->round = 0;
}

static void rk_destroy(ar_draft_source *b) { (void)b; }

static const ar_draft_source_ops ranked_ops = { rk_draft, rk_commit, rk_reset, rk_destroy };

static void ranked_init(ranked_source *s, ar_draft_source *inner, const int *sched, int n_sched)
{
    *s = (ranked_source){ .inner = inner, .sched = sched, .n_sched = n_sched };
    s->base = *inner;
    s->base.ops = &ranked_ops;
    s->base.name = "replay-ranked";
}

/* ---- 2. tree logits == path logits ------------------------------------------------------------ */

static void test_tree_logits(target *T)
{
    ar_error err;
    qwen35_seq *s = NULL;
    ddtree *t = NULL;
    if (qwen35_seq_create(&s, T->m, 512, &err) || ddtree_create(&t, 127, &err)) { CHECK(0, "setup: %s", err.msg); return; }
    int32_t pre[12];
    for (int i = 0; i < 12; i++) pre[i] = (int32_t)(rnd() % (uint32_t)T->V);
    chain(T, s, pre, 12, true, NULL);
    enum { L = 15, K = 16 };
    int32_t ids[L * K];
    float logp[L * K];
    float *row = malloc((size_t)T->V * sizeof(float));
    float *tree_lg = malloc((size_t)128 * T->V * sizeof(float));
    float *path_lg = malloc((size_t)16 * T->V * sizeof(float));
    ar_node nodes[128];
    const int budgets[] = { 7, 22, 64, 127, 127 };
    double worst = 0;
    int n_checked = 0;
    const int n_trees = test_sanitized() ? 2 : 5;
    for (int c = 5 - n_trees; c < 5; c++) {
        for (int d = 0; d < L; d++) {
            for (int i = 0; i < T->V; i++) row[i] = (float)(urand() * 2.0);
            row[rnd() % (uint32_t)T->V] += (float)(urand() * 6.0);
            ar_draft_topk(row, T->V, K, ids + d * K, logp + d * K);
        }
        ar_draft d = { .n_depth = L, .k = K, .ids = ids, .logp = logp };
        ddtree_build(t, pre[11], &d, &(ddtree_params){ .budget = budgets[c], .chain_seed = c == 4 }, &err);
        if (c % 2) ddtree_dfs(t);
        ddtree_nodes(t, 0, qwen35_seq_n_past(s), nodes);
        ar_batch b = { .n_nodes = t->n, .nodes = nodes, .logits = tree_lg };
        if (qwen35_forward(T->c, &s, &b, &err)) { CHECK(0, "tree forward: %s", err.msg); continue; }
        /* take a copy: the chain forwards below reuse the ctx */
        for (int leaf = 0; leaf < t->n; leaf++) {
            if (t->first_child[leaf] >= 0) continue;
            int path[16], n = 0;
            for (int j = leaf; j >= 0; j = t->parent[j]) n++;
            int k = n;
            for (int j = leaf; j >= 0; j = t->parent[j]) path[--k] = j;
            int32_t toks[16];
            for (int i = 0; i < n; i++) toks[i] = t->token[path[i]];
            if (chain(T, s, toks, n, false, path_lg)) { CHECK(0, "path forward"); continue; }
            for (int i = 0; i < n; i++) {
                double r = rel_diff(tree_lg + (size_t)path[i] * T->V, path_lg + (size_t)i * T->V, T->V);
                if (r > worst) worst = r;
                CHECK(r <= 1e-5, "tree %d (%d nodes) node %d depth %d: logits differ from its path by %.3g", c, t->n,
                      path[i], i, r);
                n_checked++;
            }
        }
    }
    printf("ok tree logits == path logits: %d DDTree trees of up to 128 nodes (selection and DFS numbering), %d node "
           "rows, worst %.2e relative\n", n_trees, n_checked, worst);
    free(row);
    free(tree_lg);
    free(path_lg);
    ddtree_free(t);
    qwen35_seq_free(s);
}

/* ---- 3. T = 0 token identity --------------------------------------------------------------------- */

static int sh(const char *cmd)
{
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool same_tokens(const int32_t *a, int na, const int32_t *b, int nb, int *first)
{
    *first = -1;
    for (int i = 0; i < na && i < nb; i++)
        if (a[i] != b[i]) { *first = i; return false; }
    if (na != nb) *first = na < nb ? na : nb;
    return na == nb;
}

static void check_run(const char *label, const int32_t *ref, int n_ref, const float *ref_lg, const int32_t *got, int n_got,
                      const float *got_lg, int V, const spec_result *r)
{
    int first;
    bool same = same_tokens(ref, n_ref, got, n_got, &first);
    double d = ref_lg && got_lg ? rel_diff(got_lg, ref_lg, V) : 0;
    CHECK(same, "%s: differs from plain decoding at token %d (%d vs %d tokens)", label, first, n_got, n_ref);
    CHECK(d <= 1e-4, "%s: the state after generation differs from plain decoding (next logits %.3g)", label, d);
    CHECK(r->max_depth_over == 0, "%s: %d trees reached past the context", label, r->max_depth_over);
    printf("%s %-34s %2d tokens %s, %3d rounds, %5.2f tokens/round, %4ld nodes verified, state %.1e\n",
           same && d <= 1e-4 ? "ok" : "--", label, n_got, same ? "identical" : "DIFFERENT", r->st.n_rounds,
           r->st.n_rounds ? (double)r->st.n_emitted / r->st.n_rounds : 0.0, r->st.n_nodes, d);
}

static void test_greedy(target *T, const char *arbor, const char *target_path)
{
    ar_error err;
    const int n_prompt = 10, N = test_sanitized() ? 12 : 32, n_ctx = 256;
    int32_t prompt[10], ref[64], got[64];
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 613 + 97) % T->V);
    ar_sampler_params greedy = ar_sampler_defaults();
    greedy.temp = 0;
    greedy.seed = 1;
    float *ref_lg = malloc((size_t)T->V * sizeof(float)), *got_lg = malloc((size_t)T->V * sizeof(float));
    const int n_ref = plain_generate(T, n_ctx, prompt, n_prompt, N, &greedy, ref, ref_lg);
    CHECK(n_ref == N, "plain greedy gave %d tokens", n_ref);
    const int budgets[] = { 1, 2, 7, 22, 64, 128 };
    char label[128];

    /* replay source (the plain run's continuation) with ranks and errors */
    int32_t full[128];
    memcpy(full, prompt, sizeof(int32_t) * n_prompt);
    memcpy(full + n_prompt, ref, sizeof(int32_t) * n_ref);
    for (int block = 8; block <= 16; block += 8) {
        ar_draft_source *rp = NULL;
        if (ar_replay_source_create(&rp, full, n_prompt + n_ref, T->V, block, &err)) {
            CHECK(0, "replay: %s", err.msg);
            continue;
        }
        const int errors[] = { 0, 3, 1, 9, 0, 5, 2, 14, 7 };
        const int sched[] = { 0, 1, 0, 0, 3, 0, 2, 0, 0, 1, 5, 0 };
        ar_replay_set_errors(rp, errors, 9);
        ranked_source rk;
        ranked_init(&rk, rp, sched, 12);
        for (int b = 0; b < 6; b++) {
            ar_ddtree_params dp = ar_ddtree_defaults();
            dp.budget = budgets[b];
            spec_result r;
            int n = spec_generate(T, &rk.base, &dp, n_ctx, prompt, n_prompt, N, &greedy, got, got_lg, &r);
            snprintf(label, sizeof label, "T=0 replay block %d budget %d", block, budgets[b]);
            check_run(label, ref, n_ref, ref_lg, got, n, got_lg, T->V, &r);
            int first;
            CHECK(ar_replay_mismatches(rp, &first) == 0, "%s: committed a token off the reference at %d", label, first);
        }
        /* without errors and with the true chain at rank 0, every round accepts the whole block */
        ar_replay_set_errors(rp, NULL, 0);
        {
            ar_ddtree_params dp = ar_ddtree_defaults();
            dp.budget = 64;   /* holds the whole rank-0 chain (score -0.1 per depth) */
            spec_result r;
            int n = spec_generate(T, rp, &dp, n_ctx, prompt, n_prompt, N, &greedy, got, got_lg, &r);
            snprintf(label, sizeof label, "T=0 replay-exact block %d budget 64", block);
            check_run(label, ref, n_ref, ref_lg, got, n, got_lg, T->V, &r);
            const int want = (N - 1 + block - 1) / block;   /* first token from the prefill, then full blocks */
            CHECK(r.st.n_rounds == want, "%s: %d rounds, expected %d (full acceptance)", label, r.st.n_rounds, want);
        }
        /* chain seed, auto budget, selection-order verification, penalties */
        ar_replay_set_errors(rp, errors, 9);
        for (int v = 0; v < 4; v++) {
            ar_ddtree_params dp = ar_ddtree_defaults();
            ar_sampler_params sp = greedy;
            dp.budget = 22;
            if (v == 0) dp.chain_seed = true;
            if (v == 1) { dp.budget = 0; dp.max_budget = 64; }
            if (v == 2) dp.pop_order = true;
            if (v == 3) { sp.repeat_penalty = 1.5f; sp.presence_penalty = 0.3f; sp.repeat_last_n = 16; }
            int32_t pref[64];
            float *plg = ref_lg;
            int np = n_ref;
            const int32_t *cmp = ref;
            if (v == 3) {   /* penalties change the plain output itself */
                plg = malloc((size_t)T->V * sizeof(float));
                np = plain_generate(T, n_ctx, prompt, n_prompt, N, &sp, pref, plg);
                cmp = pref;
            }
            spec_result r;
            int n = spec_generate(T, &rk.base, &dp, n_ctx, prompt, n_prompt, N, &sp, got, got_lg, &r);
            const char *what[] = { "chain seed", "auto budget", "selection order", "penalties" };
            snprintf(label, sizeof label, "T=0 replay block %d %s", block, what[v]);
            check_run(label, cmp, np, plg, got, n, got_lg, T->V, &r);
            if (v == 3) free(plg);
        }
        ar_draft_free(rp);
    }

    /* a random DFlash drafter (mkdraft): real block forwards, real top-k tables */
    for (int block = 8; block <= 16; block += 8) {
        char path[512], cmd[16384];
        snprintf(path, sizeof path, "%s/draft-b%d.gguf", g_tmp, block);
        snprintf(cmd, sizeof cmd, "'%s' mkdraft -q -o '%s' --target '%s' --seed %d --block %d > '%s.log' 2>&1", arbor, path,
                 target_path, 3 + block, block, path);
        int rc = sh(cmd);
        CHECK(rc == 0, "%s failed (exit %d, log %s.log)", cmd, rc, path);
        if (rc) continue;
        dflash_model *d = NULL;
        dflash_ctx *dc = NULL;
        ar_draft_source *src = NULL;
        rc = dflash_load(&d, path, T->m, &err);
        if (!rc) rc = dflash_ctx_create(&dc, d, 16, 2, &err);
        if (!rc) rc = ar_dflash_source_create(&src, T->m, d, dc, n_ctx, 0, AR_DRAFT_MAX_K, &err);
        CHECK(rc == 0, "drafter %s: %s", path, err.msg);
        const int n_gen = test_sanitized() ? 4 : 8;   /* a random drafter is (almost) never right: one round per token */
        int32_t ref16[16];
        float *lg16 = malloc((size_t)T->V * sizeof(float));
        const int n16 = plain_generate(T, n_ctx, prompt, n_prompt, n_gen, &greedy, ref16, lg16);
        for (int b = 0; !rc && b < 6; b++) {
            ar_ddtree_params dp = ar_ddtree_defaults();
            dp.budget = budgets[b];
            spec_result r;
            int n = spec_generate(T, src, &dp, n_ctx, prompt, n_prompt, n_gen, &greedy, got, got_lg, &r);
            snprintf(label, sizeof label, "T=0 dflash block %d budget %d", block, budgets[b]);
            check_run(label, ref16, n16, lg16, got, n, got_lg, T->V, &r);
        }
        free(lg16);
        ar_draft_free(src);
        dflash_ctx_free(dc);
        dflash_free(d);
    }
    free(ref_lg);
    free(got_lg);
}

/* ---- 4. T > 0 ------------------------------------------------------------------------------------ */

static void test_sampled_identity(target *T)
{
    ar_error err;
    const int n_prompt = 10, N = test_sanitized() ? 16 : 48, n_ctx = 256;
    int32_t prompt[10], ref[64], got[64], full[128];
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 331 + 17) % T->V);
    ar_sampler_params sp = ar_sampler_defaults();
    sp.temp = 0.9f;
    sp.top_k = 40;
    sp.top_p = 0.95f;
    sp.min_p = 0.02f;
    sp.repeat_penalty = 1.1f;
    sp.repeat_last_n = 32;
    sp.seed = 1234;
    float *ref_lg = malloc((size_t)T->V * sizeof(float)), *got_lg = malloc((size_t)T->V * sizeof(float));
    const int n_ref = plain_generate(T, n_ctx, prompt, n_prompt, N, &sp, ref, ref_lg);
    memcpy(full, prompt, sizeof(int32_t) * n_prompt);
    memcpy(full + n_prompt, ref, sizeof(int32_t) * n_ref);
    ar_draft_source *rp = NULL;
    if (ar_replay_source_create(&rp, full, n_prompt + n_ref, T->V, 16, &err)) { CHECK(0, "replay: %s", err.msg); return; }
    const int errors[] = { 0, 4, 2, 11 }, sched[] = { 0, 2, 0, 1, 0, 0, 4 };
    ar_replay_set_errors(rp, errors, 4);
    ranked_source rk;
    ranked_init(&rk, rp, sched, 7);
    const int budgets[] = { 1, 7, 22, 64 };
    for (int b = 0; b < 4; b++) {
        ar_ddtree_params dp = ar_ddtree_defaults();
        dp.budget = budgets[b];
        spec_result r;
        int n = spec_generate(T, &rk.base, &dp, n_ctx, prompt, n_prompt, N, &sp, got, got_lg, &r);
        char label[96];
        snprintf(label, sizeof label, "T=0.9 seed-identical budget %d", budgets[b]);
        check_run(label, ref, n_ref, ref_lg, got, n, got_lg, T->V, &r);
    }
    ar_draft_free(rp);
    free(ref_lg);
    free(got_lg);
}

/* The draft table of the chi-square test: depth d's candidates = the target's support at the greedy
 * prefix of length d-1, with the target's log-probs (marginals: wrong for every other branch). */
typedef struct {
    ar_draft_source base;
    int q0;                        /* position of the first sampled token */
    int k;
    int32_t ids[3][8];
    float logp[3][8];
    int32_t out_ids[16 * 8], out_chain[16];
    float out_logp[16 * 8];
} table_source;

static int ts_draft(ar_draft_source *b, int32_t anchor, int pos, int n_depth, int top_k, ar_draft *out, ar_error *err)
{
    (void)anchor; (void)err;
    table_source *s = (table_source *)b;
    for (int d = 1; d <= n_depth; d++) {
        int q = pos + d - s->q0;   /* 0-based index of the sampled token at that position */
        for (int r = 0; r < top_k; r++) {
            bool in = q >= 0 && q < 3 && r < s->k;
            s->out_ids[(d - 1) * top_k + r] = in ? s->ids[q][r] : r;
            s->out_logp[(d - 1) * top_k + r] = in ? s->logp[q][r] : -INFINITY;
        }
        s->out_chain[d - 1] = s->out_ids[(d - 1) * top_k];
    }
    *out = (ar_draft){ .n_depth = n_depth, .k = top_k, .chain = s->out_chain, .ids = s->out_ids, .logp = s->out_logp };
    return AR_OK;
}

static int ts_commit(ar_draft_source *b, const int32_t *t, const float *f, int n, int p, ar_error *e)
{
    (void)b; (void)t; (void)f; (void)n; (void)p; (void)e;
    return AR_OK;
}
static void ts_reset(ar_draft_source *b) { (void)b; }
static void ts_destroy(ar_draft_source *b) { (void)b; }
static const ar_draft_source_ops table_ops = { ts_draft, ts_commit, ts_reset, ts_destroy };

typedef struct { int32_t t[3]; double p; long obs; } cell;

static int find_cell(cell *cells, int n, const int32_t *t)
{
    for (int i = 0; i < n; i++)
        if (cells[i].t[0] == t[0] && cells[i].t[1] == t[1] && cells[i].t[2] == t[2]) return i;
    return -1;
}

static int cmp_cell_p(const void *a, const void *b)
{
    double pa = ((const cell *)a)->p, pb = ((const cell *)b)->p;
    return pa < pb ? -1 : pa > pb;
}

/* Pearson chi-square of observed counts against probabilities (cells with expected < 5 pooled). */
static double chi_square(cell *cells, int n, long total, int *df, double *crit)
{
    cell *c = malloc((size_t)n * sizeof *c);
    memcpy(c, cells, (size_t)n * sizeof *c);
    qsort(c, (size_t)n, sizeof *c, cmp_cell_p);
    double chi = 0, pool_e = 0, pool_o = 0;
    int k = 0;
    for (int i = 0; i < n; i++) {
        double e = c[i].p * (double)total;
        if (pool_e < 5.0) { pool_e += e; pool_o += (double)c[i].obs; continue; }
        chi += (c[i].obs - e) * (c[i].obs - e) / e;
        k++;
    }
    if (pool_e > 0) { chi += (pool_o - pool_e) * (pool_o - pool_e) / pool_e; k++; }
    free(c);
    *df = k - 1;
    double v = 2.0 / (9.0 * *df);   /* Wilson-Hilferty, p = 0.001 */
    *crit = *df * pow(1.0 - v + 3.0902 * sqrt(v), 3.0);
    return chi;
}

static void test_chi_square(void)
{
    ar_error err;
    char path[512];
    snprintf(path, sizeof path, "%s/small300.gguf", g_tmp);
    mkmodel_params mp;
    mkmodel_preset(&mp, "tiny", &err);
    mp.n_embd = 64; mp.n_ff = 128; mp.n_head = 2; mp.n_head_kv = 1; mp.head_dim = 32; mp.rope_dim = 8;
    mp.gdn_k_heads = 1; mp.gdn_v_heads = 2; mp.gdn_head_dim = 32;
    mp.has_recurrent = true; mp.n_recurrent = 2; mp.recurrent[0] = true; mp.recurrent[1] = false; mp.n_layer = 2;
    mp.vocab = "small:300"; mp.quiet = true; mp.seed = 77;
    if (mkmodel_write(&mp, path, NULL, &err)) { CHECK(0, "mkmodel small:300: %s", err.msg); return; }
    target T;
    if (open_target(&T, path, 32, 1)) return;
    const int V = T.V;
    const int32_t prompt[4] = { 17, 101, 5, 233 };
    ar_sampler_params sp = ar_sampler_defaults();
    sp.temp = 1.0f; sp.top_k = 5; sp.top_p = 1.0f; sp.min_p = 0.0f; sp.seed = 1;

    /* exact joint of the first 3 tokens: the sampler's distribution at every prefix (plain chains) */
    qwen35_seq *s = NULL;
    ar_sampler *probe = NULL;
    if (qwen35_seq_create(&s, T.m, 64, &err) || ar_sampler_create(&probe, &sp, V, &err)) { CHECK(0, "%s", err.msg); return; }
    float *lg = malloc((size_t)8 * V * sizeof(float));
    float *rows = malloc((size_t)31 * V * sizeof(float));   /* logits of each prefix: root, 5, 25 */
    cell cells[125];
    int n_cells = 0;
    int32_t s1[5], s2[5][5], s3[5][5][5];
    float p1[5], p2[5][5], p3[5][5][5];
    int n1, n2[5], n3[5][5];
    int32_t seqbuf[8];
    memcpy(seqbuf, prompt, sizeof prompt);
    chain(&T, s, seqbuf, 4, false, lg);
    memcpy(rows, lg + (size_t)3 * V, (size_t)V * sizeof(float));
    n1 = ar_sampler_dist(probe, rows, s1, p1, 5);
    for (int a = 0; a < n1; a++) {
        seqbuf[4] = s1[a];
        chain(&T, s, seqbuf, 5, false, lg);
        memcpy(rows + (size_t)(1 + a) * V, lg + (size_t)4 * V, (size_t)V * sizeof(float));
        n2[a] = ar_sampler_dist(probe, rows + (size_t)(1 + a) * V, s2[a], p2[a], 5);
        for (int b = 0; b < n2[a]; b++) {
            seqbuf[5] = s2[a][b];
            chain(&T, s, seqbuf, 6, false, lg);
            memcpy(rows + (size_t)(6 + 5 * a + b) * V, lg + (size_t)5 * V, (size_t)V * sizeof(float));
            n3[a][b] = ar_sampler_dist(probe, rows + (size_t)(6 + 5 * a + b) * V, s3[a][b], p3[a][b], 5);
            for (int c = 0; c < n3[a][b]; c++)
                cells[n_cells++] = (cell){ { s1[a], s2[a][b], s3[a][b][c] }, (double)p1[a] * p2[a][b] * p3[a][b][c], 0 };
        }
    }
    /* the draft: the target's own support along the greedy prefix, as marginals */
    table_source ts = { .base = { .ops = &table_ops, .name = "table", .block = 4, .max_k = 8 }, .q0 = 4, .k = 5 };
    for (int r = 0; r < 5; r++) {
        ts.ids[0][r] = s1[r % n1];             ts.logp[0][r] = r < n1 ? logf(p1[r]) : -INFINITY;
        ts.ids[1][r] = s2[0][r % n2[0]];       ts.logp[1][r] = r < n2[0] ? logf(p2[0][r]) : -INFINITY;
        ts.ids[2][r] = s3[0][0][r % n3[0][0]]; ts.logp[2][r] = r < n3[0][0] ? logf(p3[0][0][r]) : -INFINITY;
    }
    const long n_samples = test_sanitized() ? 2000 : 20000;
    ar_ddtree *dt = NULL;
    ar_ddtree_params dp = ar_ddtree_defaults();
    dp.budget = 8;
    if (ar_ddtree_create(&dt, T.m, T.c, &ts.base, &dp, &err)) { CHECK(0, "ddtree: %s", err.msg); return; }
    long outside = 0, rounds = 0, emitted = 0;
    int rc = 0;
    for (long i = 0; i < n_samples && !rc; i++) {
        qwen35_seq_reset(s);
        ts.base.n_past = 0;
        ar_sampler *smp = NULL;
        ar_sampler_params p = sp;
        p.seed = 1000 + (uint64_t)i;
        rc = ar_sampler_create(&smp, &p, V, &err);
        for (int j = 0; j < 4 && !rc; j++) ar_sampler_accept(smp, prompt[j]);
        if (!rc) rc = ar_ddtree_prefill(dt, s, prompt, 3, NULL, &err);
        int32_t toks[3], anchor = prompt[3];
        collector col = { toks, 0 };
        while (!rc && col.n < 3) {
            bool stopped;
            rc = ar_ddtree_round(dt, s, smp, anchor, 3 - col.n, collect, &col, &anchor, &stopped, &err);
            rounds++;
        }
        emitted += col.n;
        ar_sampler_free(smp);
        int c = rc ? -1 : find_cell(cells, n_cells, toks);
        if (c < 0) outside++;
        else cells[c].obs++;
    }
    CHECK(rc == 0, "sampling rounds: %s", err.msg);
    CHECK(outside == 0, "%ld samples outside the sampler's support", outside);
    int df;
    double crit, chi = chi_square(cells, n_cells, n_samples, &df, &crit);
    printf("ok T=1 top-5: %ld DDTree samples of 3 tokens (%.2f tokens/round): chi-square %.1f, df %d, critical %.1f "
           "(p = 0.001) over %d cells\n", n_samples, (double)emitted / (double)rounds, chi, df, crit, n_cells);
    CHECK(chi < crit, "DDTree sampling shifts the distribution: chi-square %.1f >= %.1f (df %d)", chi, crit, df);

    /* power: plain sampling at temperature 1.1 from the same rows must be detected */
    for (int i = 0; i < n_cells; i++) cells[i].obs = 0;
    ar_sampler_params hot = sp;
    hot.temp = 1.1f;
    for (long i = 0; i < n_samples; i++) {
        ar_sampler *smp = NULL;
        hot.seed = 5000 + (uint64_t)i;
        ar_sampler_create(&smp, &hot, V, &err);
        int32_t t[3];
        t[0] = ar_sampler_sample(smp, rows);
        int a = 0;
        while (a < n1 && s1[a] != t[0]) a++;
        t[1] = ar_sampler_sample(smp, rows + (size_t)(1 + a) * V);
        int b = 0;
        while (b < n2[a] && s2[a][b] != t[1]) b++;
        t[2] = ar_sampler_sample(smp, rows + (size_t)(6 + 5 * a + b) * V);
        ar_sampler_free(smp);
        int c = find_cell(cells, n_cells, t);
        if (c >= 0) cells[c].obs++;
    }
    double chi_hot = chi_square(cells, n_cells, n_samples, &df, &crit);
    printf("ok power: plain sampling at T=1.1 gives chi-square %.1f (critical %.1f)\n", chi_hot, crit);
    CHECK(chi_hot > crit, "the chi-square test does not detect a temperature shift (%.1f <= %.1f)", chi_hot, crit);
    ar_ddtree_free(dt);
    ar_sampler_free(probe);
    qwen35_seq_free(s);
    free(lg);
    free(rows);
    close_target(&T);
}

/* ---- 5. context cut ----------------------------------------------------------------------------- */

static void test_context_cut(target *T)
{
    ar_error err;
    const int n_prompt = 10, n_ctx = 22, N = 64;
    int32_t prompt[10], ref[80], got[80], full[128];
    for (int i = 0; i < n_prompt; i++) prompt[i] = (int32_t)((i * 977 + 3) % T->V);
    ar_sampler_params greedy = ar_sampler_defaults();
    greedy.temp = 0;
    float *lg = malloc((size_t)T->V * sizeof(float));
    const int n_ref = plain_generate(T, n_ctx, prompt, n_prompt, N, &greedy, ref, NULL);
    CHECK(n_ref == n_ctx - n_prompt + 1, "plain decoding to the context end gave %d tokens", n_ref);
    memcpy(full, prompt, sizeof(int32_t) * n_prompt);
    memcpy(full + n_prompt, ref, sizeof(int32_t) * n_ref);
    ar_draft_source *rp = NULL;
    ar_replay_source_create(&rp, full, n_prompt + n_ref, T->V, 16, &err);
    ar_ddtree_params dp = ar_ddtree_defaults();
    dp.budget = 64;
    spec_result r;
    int n = spec_generate(T, rp, &dp, n_ctx, prompt, n_prompt, N, &greedy, got, NULL, &r);
    check_run("context cut (22 positions, budget 64)", ref, n_ref, NULL, got, n, NULL, T->V, &r);

    /* the same tree uncut does not fit: the model refuses it */
    qwen35_seq *s = NULL;
    ddtree *t = NULL;
    qwen35_seq_create(&s, T->m, n_ctx, &err);
    ddtree_create(&t, 64, &err);
    chain(T, s, full, n_ctx - 5, true, NULL);
    int32_t ids[15 * 4];
    float logp[15 * 4];
    for (int i = 0; i < 60; i++) { ids[i] = i % 4 + 1; logp[i] = -0.1f * (float)(i % 4); }
    ar_draft d = { .n_depth = 15, .k = 4, .ids = ids, .logp = logp };
    ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 64 }, &err);
    ar_node nodes[65];
    float *tl = malloc((size_t)65 * T->V * sizeof(float));
    ddtree_nodes(t, 0, qwen35_seq_n_past(s), nodes);
    int rc = qwen35_forward(T->c, &s, &(ar_batch){ .n_nodes = t->n, .nodes = nodes, .logits = tl }, &err);
    CHECK(rc == AR_ERANGE, "an uncut tree past the context should be refused (rc %d)", rc);
    ddtree_build(t, 1, &d, &(ddtree_params){ .budget = 64, .max_depth = 4 }, &err);   /* room 5: depth <= 4 */
    ddtree_nodes(t, 0, qwen35_seq_n_past(s), nodes);
    rc = qwen35_forward(T->c, &s, &(ar_batch){ .n_nodes = t->n, .nodes = nodes, .logits = tl }, &err);
    CHECK(rc == AR_OK && t->n == 65, "the cut tree (%d nodes) should run: %s", t->n, err.msg);
    free(tl);
    ddtree_free(t);
    qwen35_seq_free(s);
    ar_draft_free(rp);
    free(lg);
}

/* ---- 6. budget model ------------------------------------------------------------------------------- */

static void test_budget(target *T)
{
    ar_error err;
    ar_budget *b = NULL;
    if (ar_budget_create(&b, 256, &err)) { CHECK(0, "budget: %s", err.msg); return; }
    double cum[257];
    cum[0] = 0;
    for (int i = 1; i <= 256; i++) cum[i] = cum[i - 1] + pow(0.93, i);
    CHECK(ar_budget_choose(b, cum, 256) == 1 && ar_budget_forward_s(b, 8) < 0, "nothing measured: budget 1");
    ar_budget_observe_forward(b, 1, 1.0);
    CHECK(ar_budget_choose(b, cum, 256) == 1, "only T(1) known: budget 1 (width <= 2)");
    ar_budget_observe_forward(b, 2, 1.0);
    CHECK(ar_budget_choose(b, cum, 256) == 3, "T(1), T(2) flat: explore width 4 (got %d)", ar_budget_choose(b, cum, 256));
    ar_budget_free(b);
    ar_budget_create(&b, 256, &err);
    ar_budget_observe_forward(b, 1, 1.0);
    ar_budget_observe_forward(b, 2, 3.0);   /* a steep T(2): the extrapolation rises faster than G, no exploration */
    CHECK(ar_budget_choose(b, cum, 256) == 1, "a steep T(2) keeps budget 1 (got %d)", ar_budget_choose(b, cum, 256));
    ar_budget_free(b);
    /* a known cost curve T(M) = 1 + 0.02 M: the optimum of (1 + G(B)) / T(B + 1) */
    ar_budget_create(&b, 256, &err);
    for (int m = 1; m <= 257; m = m == 256 ? 257 : m * 2) ar_budget_observe_forward(b, m, 1.0 + 0.02 * m);
    double t3 = ar_budget_forward_s(b, 3);
    CHECK(fabs(t3 - 1.06) < 1e-6, "T(3) interpolates T(2), T(4): %.4f", t3);
    int best = 1;
    double best_rate = 0;
    for (int B = 1; B <= 256; B++) {
        double rate = (1 + cum[B]) / (1.0 + 0.02 * (B + 1));
        if (rate > best_rate) { best_rate = rate; best = B; }
    }
    int got = ar_budget_choose(b, cum, 256);
    printf("ok budget model: T(M) = 1 + 0.02 M, G geometric 0.93: chooses %d (brute force %d)\n", got, best);
    CHECK(got == best, "budget choice %d, expected %d", got, best);
    for (int r = 0; r < 200; r++) ar_budget_observe_round(b, 10.0, 5, 0.0);
    CHECK(fabs(ar_budget_alpha(b) - 0.5) < 0.02, "alpha after accepting half the prediction: %.3f", ar_budget_alpha(b));
    CHECK(ar_budget_choose(b, cum, 256) < best, "a lower acceptance must lower the budget");
    ar_budget_free(b);

    /* calibration on the real target: T(M) for M = 1 .. 128 */
    qwen35_seq *s = NULL;
    qwen35_seq_create(&s, T->m, 256, &err);
    int32_t pre[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    chain(T, s, pre, 8, true, NULL);
    ar_budget_create(&b, 256, &err);
    int rc = ar_budget_calibrate(b, T->m, T->c, s, 129, 1, &err);
    CHECK(rc == 0 && qwen35_seq_n_past(s) == 8, "calibrate: %s", err.msg);
    printf("ok calibration on the tiny model:");
    for (int m = 1; m <= 129; m = m == 128 ? 129 : m * 2) printf(" T(%d)=%.2fms", m, 1e3 * ar_budget_forward_s(b, m));
    printf("\n");
    CHECK(ar_budget_samples(b, 1) == 1 && ar_budget_samples(b, 64) == 1 && ar_budget_samples(b, 129) == 1,
          "calibration measured the ladder");
    ar_budget_free(b);
    qwen35_seq_free(s);
}

int main(void)
{
    ar_log_level = AR_LOG_WARN;
    char target_path[4096];
    snprintf(target_path, sizeof target_path, "%s/tiny-f32.gguf", test_fixtures());
    const char *arbor = getenv("ARBOR_BIN");
    if (!arbor || !*arbor) arbor = "build/arbor";
    snprintf(g_tmp, sizeof g_tmp, "/tmp/arbor-test-ddtree-XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL, "mkdtemp failed");

    double t0 = ar_now();
#define TIMED(call) do { double t_ = ar_now(); clock_t c_ = clock(); call; \
        printf("ok   (%s: %.1f s, %.1f s cpu)\n", #call, ar_now() - t_, (double)(clock() - c_) / CLOCKS_PER_SEC); } while (0)
    TIMED(test_construction());
    bool have_target = access(target_path, R_OK) == 0, have_arbor = access(arbor, X_OK) == 0;
    CHECK(have_target, "fixture %s missing: run scripts/fixtures.sh", target_path);
    CHECK(have_arbor, "arbor binary %s missing (set ARBOR_BIN)", arbor);
    target T;
    if (have_target && open_target(&T, target_path, 160, 2) == 0) {
        TIMED(test_tree_logits(&T));
        if (have_arbor) TIMED(test_greedy(&T, arbor, target_path));
        TIMED(test_sampled_identity(&T));
        TIMED(test_context_cut(&T));
        TIMED(test_budget(&T));
        close_target(&T);
    }
    TIMED(test_chi_square());
    printf("ok   (total %.1f s)\n", ar_now() - t0);

    char cmd[400];
    if (!test_failed) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        sh(cmd);
    } else {
        printf("files kept in %s\n", g_tmp);
    }
    TEST_END();
}
