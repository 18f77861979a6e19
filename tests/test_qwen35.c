/* tests/test_qwen35.c — invariants of the qwen35 forward over batches of nodes (model/qwen35.h).
 *
 * On small synthetic F32 models (model/mkmodel.h, written to a temp dir):
 *   - tree == chain: the logits (and taps) of every node of a random tree equal those of its
 *     root-to-node path evaluated as a plain chain (several trees, up to 64 nodes, random branching,
 *     several sequences in one batch);
 *   - chain forward + commit, then decode, == one long prefill;
 *   - commit of a tree path, then continuing, == prefill of that path;
 *   - all of it across KV page boundaries (small pages);
 *   - loader validation lists every problem; batch/commit misuse is rejected with a clear error.
 * The worst relative difference (max |diff| / max |logit| per row) is printed. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "model/mkmodel.h"
#include "model/qwen35.h"
#include "test.h"

static char tmpdir[256];
static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 11); }

static double rel_diff(const float *a, const float *b, int n)
{
    double d = 0, m = 0;
    for (int i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)a[i]));
    }
    return m > 0 ? d / m : d;
}

static int make_model(const char *path, int tied, const char *recurrent, int n_layer)
{
    mkmodel_params p;
    ar_error err;
    if (mkmodel_preset(&p, "tiny", &err) != AR_OK) { printf("mkmodel_preset: %s\n", err.msg); return -1; }
    p.n_embd = 128; p.n_ff = 256; p.n_layer = n_layer;
    p.n_head = 4; p.n_head_kv = 2; p.head_dim = 32; p.rope_dim = 8;
    p.gdn_k_heads = 2; p.gdn_v_heads = 4; p.gdn_head_dim = 32;
    p.tied = tied;
    p.vocab = "small:300";
    p.quiet = true;
    if (recurrent) {
        p.has_recurrent = true;
        p.n_recurrent = 0;
        for (const char *s = recurrent; *s; s++)
            if (*s == '0' || *s == '1') p.recurrent[p.n_recurrent++] = *s == '1';
        p.n_layer = p.n_recurrent;
    }
    if (mkmodel_write(&p, path, NULL, &err) != AR_OK) { printf("mkmodel_write %s: %s\n", path, err.msg); return -1; }
    return 0;
}

/* ---- helpers over the public API ------------------------------------------------------------ */

typedef struct {
    qwen35_model *m;
    const qwen35_hparams *hp;
    qwen35_ctx *c;
    int V, E;
} harness;

/* Prefill ids[0..n) as chains of up to the ctx's max_nodes, committing each; logits of every
 * position into out (may be NULL). */
static int prefill(harness *h, qwen35_seq *s, const int32_t *ids, int n, float *out)
{
    ar_error err;
    int maxn = qwen35_ctx_max_nodes(h->c);
    ar_node *nodes = malloc((size_t)maxn * sizeof *nodes);
    int *path = malloc((size_t)maxn * sizeof *path);
    float *lg = malloc((size_t)maxn * h->V * sizeof(float));
    int rc = 0;
    for (int p0 = 0; p0 < n && !rc; p0 += maxn) {
        int k = n - p0 < maxn ? n - p0 : maxn;
        int base = qwen35_seq_n_past(s);
        for (int i = 0; i < k; i++) {
            nodes[i] = (ar_node){ .seq = 0, .token = ids[p0 + i], .pos = base + i, .parent = i - 1, .want_logits = true };
            path[i] = i;
        }
        ar_batch b = { .n_nodes = k, .nodes = nodes, .logits = lg };
        if (qwen35_forward(h->c, &s, &b, &err) != AR_OK || qwen35_commit(h->c, s, path, k, &err) != AR_OK) {
            printf("prefill: %s\n", err.msg);
            rc = -1;
        } else if (out) {
            memcpy(out + (size_t)p0 * h->V, lg, (size_t)k * h->V * sizeof(float));
        }
    }
    free(nodes); free(path); free(lg);
    return rc;
}

/* Logits of the last token of `chain` evaluated on top of s's committed state (s unchanged). */
static int chain_logits(harness *h, qwen35_seq *s, const int32_t *chain, int n, float *out,
                        int n_taps, const int *tap_layers, float *taps_last)
{
    ar_error err;
    ar_node *nodes = malloc((size_t)n * sizeof *nodes);
    float *taps = n_taps ? malloc((size_t)n * n_taps * h->E * sizeof(float)) : NULL;
    int base = qwen35_seq_n_past(s);
    for (int i = 0; i < n; i++)
        nodes[i] = (ar_node){ .seq = 0, .token = chain[i], .pos = base + i, .parent = i - 1, .want_logits = i == n - 1 };
    ar_batch b = { .n_nodes = n, .nodes = nodes, .logits = out, .n_taps = n_taps, .tap_layers = tap_layers, .taps = taps };
    int rc = qwen35_forward(h->c, &s, &b, &err);
    if (rc) printf("chain forward: %s\n", err.msg);
    if (!rc && n_taps) memcpy(taps_last, taps + (size_t)(n - 1) * n_taps * h->E, (size_t)n_taps * h->E * sizeof(float));
    free(nodes); free(taps);
    return rc;
}

static int open_harness(harness *h, const char *path, int max_nodes, int threads)
{
    ar_error err;
    memset(h, 0, sizeof *h);
    if (qwen35_load(&h->m, path, &err) != AR_OK) { printf("load %s: %s\n", path, err.msg); return -1; }
    h->hp = qwen35_hparams_of(h->m);
    h->V = h->hp->n_vocab;
    h->E = h->hp->n_embd;
    if (qwen35_ctx_create(&h->c, h->m, max_nodes, threads, &err) != AR_OK) { printf("ctx: %s\n", err.msg); return -1; }
    return 0;
}

static void close_harness(harness *h)
{
    qwen35_ctx_free(h->c);
    qwen35_free(h->m);
}

/* ---- tree == chain -------------------------------------------------------------------------- */

/* Random forest over n_seqs sequences: each node picks a random earlier node of its sequence as
 * parent, or the committed prefix; siblings get distinct-looking random tokens. */
static void random_tree(ar_node *nodes, int n, int n_seqs, const int *n_past, int V, int branchy)
{
    int depth[256];
    for (int i = 0; i < n; i++) {
        int seq = (int)(rnd() % (uint32_t)n_seqs);
        int parent = -1;
        /* candidates: earlier nodes of the same seq; bias toward recent ones (chains) unless branchy */
        int cands[256], nc = 0;
        for (int j = 0; j < i; j++) if (nodes[j].seq == seq) cands[nc++] = j;
        if (nc && rnd() % 8 != 0) parent = branchy ? cands[rnd() % (uint32_t)nc] : cands[nc - 1 - (int)(rnd() % (nc < 3 ? (uint32_t)nc : 3u))];
        depth[i] = parent < 0 ? 0 : depth[parent] + 1;
        nodes[i] = (ar_node){ .seq = seq, .token = (int32_t)(rnd() % (uint32_t)V), .pos = n_past[seq] + depth[i],
                              .parent = parent, .want_logits = true };
    }
}

static void test_tree_equals_chain(const char *model_path, int page_tokens)
{
    harness h;
    if (open_harness(&h, model_path, 64, 2)) { CHECK(0, "cannot open %s", model_path); return; }
    const int n_seqs = 3, n_trees = test_sanitized() ? 3 : 8;
    ar_error err;
    qwen35_seq *seqs[3] = { 0 };
    int n_past[3];
    for (int s = 0; s < n_seqs; s++) {
        CHECK(qwen35_seq_create_paged(&seqs[s], h.m, 512, page_tokens, &err) == AR_OK, "seq: %s", err.msg);
        int32_t pre[40];
        n_past[s] = 5 + 11 * s;                       /* 5, 16, 27: crosses pages of 8 */
        for (int i = 0; i < n_past[s]; i++) pre[i] = (int32_t)(rnd() % (uint32_t)h.V);
        CHECK(prefill(&h, seqs[s], pre, n_past[s], NULL) == 0, "prefill seq %d", s);
    }
    int tap_layers[3] = { 0, 2, h.hp->n_layer };
    float *tree_lg = malloc((size_t)64 * h.V * sizeof(float));
    float *tree_taps = malloc((size_t)64 * 3 * h.E * sizeof(float));
    float *chain_lg = malloc((size_t)h.V * sizeof(float));
    float *chain_taps = malloc((size_t)3 * h.E * sizeof(float));
    double worst = 0, worst_tap = 0;
    int n_checked = 0;
    for (int t = 0; t < n_trees; t++) {
        int n = t == 0 ? 64 : 8 + (int)(rnd() % 57u);
        ar_node nodes[64];
        random_tree(nodes, n, t % 2 ? n_seqs : 1, n_past, h.V, t % 3 == 0);
        ar_batch b = { .n_nodes = n, .nodes = nodes, .logits = tree_lg, .n_taps = 3, .tap_layers = tap_layers, .taps = tree_taps };
        if (qwen35_forward(h.c, seqs, &b, &err) != AR_OK) { CHECK(0, "tree forward: %s", err.msg); continue; }
        for (int i = 0; i < n; i++) {
            int32_t chain[64];
            int len = 0;
            for (int j = i; j >= 0; j = nodes[j].parent) len++;
            int k = len;
            for (int j = i; j >= 0; j = nodes[j].parent) chain[--k] = nodes[j].token;
            if (chain_logits(&h, seqs[nodes[i].seq], chain, len, chain_lg, 3, tap_layers, chain_taps)) {
                CHECK(0, "chain forward failed");
                continue;
            }
            double d = rel_diff(chain_lg, tree_lg + (size_t)i * h.V, h.V);
            double dt = rel_diff(chain_taps, tree_taps + (size_t)i * 3 * h.E, 3 * h.E);
            if (d > worst) worst = d;
            if (dt > worst_tap) worst_tap = dt;
            CHECK(d <= 1e-5, "tree %d node %d (depth %d, seq %d): logits differ from its chain by %.3g", t, i, len - 1,
                  nodes[i].seq, d);
            CHECK(dt <= 1e-5, "tree %d node %d: taps differ from its chain by %.3g", t, i, dt);
            n_checked++;
        }
    }
    printf("tree == chain (page %d tokens): %d nodes, worst logit rel diff %.3g, worst tap rel diff %.3g\n",
           page_tokens, n_checked, worst, worst_tap);
    free(tree_lg); free(tree_taps); free(chain_lg); free(chain_taps);
    for (int s = 0; s < n_seqs; s++) qwen35_seq_free(seqs[s]);
    close_harness(&h);
}

/* ---- commit ----------------------------------------------------------------------------------- */

/* prefill in chunks + commit, then one-by-one decode == one long prefill */
static void test_chunked_equals_long(const char *model_path)
{
    const int n = test_sanitized() ? 40 : 100, chunk = 16;
    harness h_long, h_chunk;
    if (open_harness(&h_long, model_path, 128, 2) || open_harness(&h_chunk, model_path, chunk, 1)) {
        CHECK(0, "cannot open %s", model_path);
        return;
    }
    ar_error err;
    int32_t ids[128];
    for (int i = 0; i < n; i++) ids[i] = (int32_t)(rnd() % (uint32_t)h_long.V);
    float *a = malloc((size_t)n * h_long.V * sizeof(float)), *b = malloc((size_t)n * h_long.V * sizeof(float));
    qwen35_seq *sa = NULL, *sb = NULL;
    CHECK(qwen35_seq_create_paged(&sa, h_long.m, 256, 16, &err) == AR_OK, "%s", err.msg);
    CHECK(qwen35_seq_create_paged(&sb, h_chunk.m, 256, 7, &err) == AR_OK, "%s", err.msg);
    CHECK(prefill(&h_long, sa, ids, n, a) == 0, "long prefill");
    int split = n * 2 / 3;
    CHECK(prefill(&h_chunk, sb, ids, split, b) == 0, "chunked prefill");
    for (int i = split; i < n; i++) {   /* decode: one node per step */
        ar_node nd = { .seq = 0, .token = ids[i], .pos = i, .parent = -1, .want_logits = true };
        int path = 0;
        ar_batch bt = { .n_nodes = 1, .nodes = &nd, .logits = b + (size_t)i * h_chunk.V };
        CHECK(qwen35_forward(h_chunk.c, &sb, &bt, &err) == AR_OK && qwen35_commit(h_chunk.c, sb, &path, 1, &err) == AR_OK,
              "decode %d: %s", i, err.msg);
    }
    CHECK(qwen35_seq_n_past(sa) == n && qwen35_seq_n_past(sb) == n, "n_past %d %d", qwen35_seq_n_past(sa), qwen35_seq_n_past(sb));
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double d = rel_diff(a + (size_t)i * h_long.V, b + (size_t)i * h_long.V, h_long.V);
        if (d > worst) worst = d;
        CHECK(d <= 1e-5, "position %d: chunked+decode differs from one prefill by %.3g", i, d);
    }
    printf("chunks of %d + commit + decode == one prefill of %d: worst rel diff %.3g\n", chunk, n, worst);

    /* reset, then the same again: bit-identical to the first run */
    qwen35_seq_reset(sb);
    CHECK(qwen35_seq_n_past(sb) == 0, "reset");
    float *c2 = malloc((size_t)split * h_chunk.V * sizeof(float));
    CHECK(prefill(&h_chunk, sb, ids, split, c2) == 0, "prefill after reset");
    CHECK(memcmp(c2, b, (size_t)split * h_chunk.V * sizeof(float)) == 0, "prefill after reset is not bit-identical");
    free(c2);
    free(a); free(b);
    qwen35_seq_free(sa); qwen35_seq_free(sb);
    close_harness(&h_long); close_harness(&h_chunk);
}

/* ---- in-place commit (ar_node.commit) ---------------------------------------------------------- */

/* One forward + commit of a chain of k tokens on s, with or without the commit flag, plus (when
 * other != NULL) a 3-node tree of speculative nodes on `other` in the same batch, not committed. */
static int step_chain(harness *h, qwen35_seq *s, qwen35_seq *other, const int32_t *ids, int k, bool flag, float *lg,
                      ar_error *err)
{
    ar_node nodes[32];
    qwen35_seq *seqs[2] = { s, other };
    const int base = qwen35_seq_n_past(s);
    for (int i = 0; i < k; i++)
        nodes[i] = (ar_node){ .seq = 0, .token = ids[i], .pos = base + i, .parent = i - 1, .want_logits = true,
                              .commit = flag };
    int n = k;
    if (other) {
        const int ob = qwen35_seq_n_past(other);
        nodes[n++] = (ar_node){ .seq = 1, .token = 5, .pos = ob, .parent = -1, .want_logits = true };
        nodes[n++] = (ar_node){ .seq = 1, .token = 6, .pos = ob + 1, .parent = k, .want_logits = true };
        nodes[n++] = (ar_node){ .seq = 1, .token = 7, .pos = ob + 1, .parent = k, .want_logits = true };
    }
    int path[32];
    for (int i = 0; i < k; i++) path[i] = i;
    ar_batch b = { .n_nodes = n, .nodes = nodes, .logits = lg };
    int rc = qwen35_forward(h->c, seqs, &b, err);
    if (rc == AR_OK) rc = qwen35_commit(h->c, s, path, k, err);
    return rc;
}

static void test_inplace_commit(const char *model_path)
{
    harness h;
    if (open_harness(&h, model_path, 32, 2)) { CHECK(0, "cannot open %s", model_path); return; }
    ar_error err;
    qwen35_seq *a = NULL, *b = NULL, *o = NULL;
    CHECK(qwen35_seq_create_paged(&a, h.m, 256, 16, &err) == AR_OK && qwen35_seq_create_paged(&b, h.m, 256, 16, &err) == AR_OK &&
          qwen35_seq_create_paged(&o, h.m, 256, 16, &err) == AR_OK, "%s", err.msg);
    int32_t ids[128];
    for (int i = 0; i < 128; i++) ids[i] = (int32_t)(rnd() % (uint32_t)h.V);
    float *la = malloc((size_t)32 * h.V * sizeof(float)), *lb = malloc((size_t)32 * h.V * sizeof(float));
    /* chunks of 13, 9, then 20 single-token steps: flagged (a, with a speculative tree of another
     * sequence in the same batch) vs unflagged (b): bit-identical logits at every step */
    const int steps[] = { 13, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1 };
    int pos = 0, same = 1;
    for (size_t st = 0; st < sizeof steps / sizeof *steps; st++) {
        const int k = steps[st];
        int ra = step_chain(&h, a, st % 2 ? o : NULL, ids + pos, k, true, la, &err);
        CHECK(ra == AR_OK, "in-place step %zu: %s", st, err.msg);
        int rb = step_chain(&h, b, NULL, ids + pos, k, false, lb, &err);
        CHECK(rb == AR_OK, "replay step %zu: %s", st, err.msg);
        if (ra || rb) break;
        same &= memcmp(la, lb, (size_t)k * h.V * sizeof(float)) == 0;
        pos += k;
    }
    CHECK(same, "logits with ar_node.commit (in place) differ from forward + replayed commit");
    printf("in-place commit: %d positions bit-identical to the replayed commit (%s)\n", pos, same ? "yes" : "NO");

    /* a committed path other than the flagged chain is refused, and the sequence stays refused */
    ar_node nodes[3];
    for (int i = 0; i < 3; i++)
        nodes[i] = (ar_node){ .seq = 0, .token = ids[i], .pos = pos + i, .parent = i - 1, .want_logits = true, .commit = true };
    ar_batch bt = { .n_nodes = 3, .nodes = nodes, .logits = la };
    int path[3] = { 0, 1, 2 };
    CHECK(qwen35_forward(h.c, &a, &bt, &err) == AR_OK, "%s", err.msg);
    CHECK(qwen35_commit(h.c, a, path, 2, &err) == AR_EINVAL, "commit of 2 of 3 flagged nodes accepted");
    CHECK(strstr(err.msg, "in place") != NULL, "message: %s", err.msg);
    CHECK(qwen35_forward(h.c, &a, &bt, &err) == AR_EINVAL, "forward after an uncommitted in-place forward accepted");
    qwen35_snap *snap = NULL;
    CHECK(qwen35_snap_take(&snap, a, &err) == AR_EINVAL, "snapshot of an inconsistent sequence accepted");
    qwen35_seq_reset(a);
    for (int i = 0; i < 3; i++) nodes[i].pos = i;
    CHECK(qwen35_forward(h.c, &a, &bt, &err) == AR_OK && qwen35_commit(h.c, a, path, 3, &err) == AR_OK,
          "after reset: %s", err.msg);
    /* mixed flags within a sequence, and a flagged tree, are refused before any work */
    nodes[1].commit = false;
    for (int i = 0; i < 3; i++) nodes[i].pos = 3 + i;
    CHECK(qwen35_forward(h.c, &a, &bt, &err) == AR_EINVAL, "mixed commit flags accepted");
    nodes[1].commit = true;
    nodes[2].parent = 0;
    CHECK(qwen35_forward(h.c, &a, &bt, &err) == AR_EINVAL, "a flagged tree accepted");
    CHECK(qwen35_seq_n_past(a) == 3, "a refused forward changed the sequence");
    free(la); free(lb);
    qwen35_seq_free(a); qwen35_seq_free(b); qwen35_seq_free(o);
    close_harness(&h);
}

/* ---- captured snapshots (ar_node.capture) ------------------------------------------------------ */

/* One flagged chain of ids[0..k) on s, capturing after node cap (-1: none), committed. */
static int capture_chain(harness *h, qwen35_seq *s, const int32_t *ids, int k, int cap, float *lg, ar_error *err)
{
    ar_node nodes[32];
    const int base = qwen35_seq_n_past(s);
    int path[32];
    for (int i = 0; i < k; i++) {
        nodes[i] = (ar_node){ .seq = 0, .token = ids[i], .pos = base + i, .parent = i - 1, .want_logits = true,
                              .commit = true, .capture = i == cap };
        path[i] = i;
    }
    ar_batch b = { .n_nodes = k, .nodes = nodes, .logits = lg };
    int rc = qwen35_forward(h->c, &s, &b, err);
    if (rc == AR_OK) rc = qwen35_commit(h->c, s, path, k, err);
    return rc;
}

/* A snapshot captured inside a chain == the snapshot of a chain cut there: restored, the next
 * forward gives bit-identical logits. Captures near the chain's start take conv rows from the
 * committed window; KV pages of 8 tokens put the position mid-page. */
static void test_capture(const char *model_path)
{
    harness h;
    if (open_harness(&h, model_path, 32, 2)) { CHECK(0, "cannot open %s", model_path); return; }
    ar_error err;
    int32_t ids[64];
    for (int i = 0; i < 64; i++) ids[i] = (int32_t)(rnd() % (uint32_t)h.V);
    float *lg = malloc((size_t)32 * h.V * sizeof(float)), *lx = malloc((size_t)8 * h.V * sizeof(float)),
          *ly = malloc((size_t)8 * h.V * sizeof(float));
    const int prefix = 10, k = 17, caps[] = { 0, 1, 6, 16 };
    int n_same = 0;
    for (size_t ci = 0; ci < sizeof caps / sizeof *caps; ci++) {
        const int cap = caps[ci];
        qwen35_seq *a = NULL, *b = NULL, *x = NULL, *y = NULL;
        CHECK(qwen35_seq_create_paged(&a, h.m, 128, 8, &err) == AR_OK && qwen35_seq_create_paged(&b, h.m, 128, 8, &err) == AR_OK &&
              qwen35_seq_create_paged(&x, h.m, 128, 8, &err) == AR_OK && qwen35_seq_create_paged(&y, h.m, 128, 8, &err) == AR_OK,
              "%s", err.msg);
        qwen35_snap *sa = NULL, *sb = NULL;
        /* a: prefix, then the whole chain with a capture; b: prefix, then the chain cut after cap */
        int rc = capture_chain(&h, a, ids, prefix, -1, lg, &err);
        if (!rc) rc = capture_chain(&h, a, ids + prefix, k, cap, lg, &err);
        if (!rc) rc = qwen35_snap_take_captured(&sa, h.c, a, &err);
        CHECK(rc == AR_OK, "capture at %d: %s", cap, err.msg);
        qwen35_snap *again = NULL;
        if (!rc) rc = qwen35_snap_take_captured(&again, h.c, a, &err) == AR_EINVAL && !again ? AR_OK : -1;
        CHECK(rc == AR_OK, "a second qwen35_snap_take_captured of one capture accepted");
        if (!rc) rc = capture_chain(&h, b, ids, prefix, -1, lg, &err);
        if (!rc) rc = capture_chain(&h, b, ids + prefix, cap + 1, -1, lg, &err);
        if (!rc) rc = qwen35_snap_take(&sb, b, &err);
        CHECK(rc == AR_OK && qwen35_snap_n_past(sa) == prefix + cap + 1 && qwen35_snap_n_past(sb) == prefix + cap + 1,
              "capture at %d: %s (n_past %d)", cap, rc ? err.msg : "", sa ? qwen35_snap_n_past(sa) : -1);
        /* the same continuation from both snapshots */
        if (!rc) rc = qwen35_seq_restore(x, sa, &err);
        if (!rc) rc = qwen35_seq_restore(y, sb, &err);
        if (!rc) rc = capture_chain(&h, x, ids + 40, 8, -1, lx, &err);
        if (!rc) rc = capture_chain(&h, y, ids + 40, 8, -1, ly, &err);
        CHECK(rc == AR_OK, "continuation after capture at %d: %s", cap, err.msg);
        const bool same = !rc && memcmp(lx, ly, (size_t)8 * h.V * sizeof(float)) == 0;
        CHECK(same, "capture at %d: the restored snapshot's next logits differ from the cut chain's", cap);
        n_same += same;
        qwen35_snap_free(sa);
        qwen35_snap_free(sb);
        qwen35_seq_free(a); qwen35_seq_free(b); qwen35_seq_free(x); qwen35_seq_free(y);
    }
    printf("captured snapshots: %d of 4 capture points give the cut chain's logits bit for bit\n", n_same);

    /* refused: capture without commit, two captures, no capture ready */
    qwen35_seq *s = NULL;
    CHECK(qwen35_seq_create_paged(&s, h.m, 128, 8, &err) == AR_OK, "%s", err.msg);
    ar_node nodes[2] = { { .seq = 0, .token = ids[0], .pos = 0, .parent = -1, .want_logits = true, .capture = true },
                         { .seq = 0, .token = ids[1], .pos = 1, .parent = 0, .want_logits = true } };
    ar_batch bt = { .n_nodes = 2, .nodes = nodes, .logits = lg };
    CHECK(qwen35_forward(h.c, &s, &bt, &err) == AR_EINVAL && strstr(err.msg, "capture"), "capture without commit: %s", err.msg);
    nodes[0].commit = nodes[1].commit = nodes[1].capture = true;
    CHECK(qwen35_forward(h.c, &s, &bt, &err) == AR_EINVAL && strstr(err.msg, "capture"), "two captures: %s", err.msg);
    qwen35_snap *none = NULL;
    CHECK(qwen35_snap_take_captured(&none, h.c, s, &err) == AR_EINVAL && !none, "a capture from nothing");
    qwen35_seq_free(s);
    free(lg); free(lx); free(ly);
    close_harness(&h);
}

/* forward a tree, commit one root-to-node path, continue decoding == prefill(prefix + path + rest) */
static void test_commit_tree_path(const char *model_path)
{
    harness h;
    if (open_harness(&h, model_path, 64, 2)) { CHECK(0, "cannot open %s", model_path); return; }
    ar_error err;
    double worst = 0;
    for (int trial = 0; trial < (test_sanitized() ? 2 : 6); trial++) {
        qwen35_seq *s = NULL, *ref = NULL;
        CHECK(qwen35_seq_create_paged(&s, h.m, 256, 8, &err) == AR_OK, "%s", err.msg);
        CHECK(qwen35_seq_create_paged(&ref, h.m, 256, 5, &err) == AR_OK, "%s", err.msg);
        int32_t all[200];
        int n_pre = 3 + (int)(rnd() % 20u);
        for (int i = 0; i < n_pre; i++) all[i] = (int32_t)(rnd() % (uint32_t)h.V);
        CHECK(prefill(&h, s, all, n_pre, NULL) == 0, "prefill");
        int past[1] = { n_pre };
        ar_node nodes[64];
        int n = 10 + (int)(rnd() % 50u);
        random_tree(nodes, n, 1, past, h.V, trial % 2);
        float *lg = malloc((size_t)n * h.V * sizeof(float));
        ar_batch b = { .n_nodes = n, .nodes = nodes, .logits = lg };
        CHECK(qwen35_forward(h.c, &s, &b, &err) == AR_OK, "tree forward: %s", err.msg);
        /* deepest node's path */
        int best = 0, bd = -1;
        for (int i = 0; i < n; i++) {
            int d = 0;
            for (int j = i; j >= 0; j = nodes[j].parent) d++;
            if (d > bd || (d == bd && rnd() % 2)) { bd = d; best = i; }
        }
        int path[64], k = bd;
        for (int j = best; j >= 0; j = nodes[j].parent) path[--k] = j;
        for (int t = 0; t < bd; t++) all[n_pre + t] = nodes[path[t]].token;
        CHECK(qwen35_commit(h.c, s, path, bd, &err) == AR_OK, "commit: %s", err.msg);
        CHECK(qwen35_seq_n_past(s) == n_pre + bd, "n_past %d != %d", qwen35_seq_n_past(s), n_pre + bd);
        /* a second commit of the same forward must be refused */
        CHECK(qwen35_commit(h.c, s, path, 1, &err) != AR_OK, "second commit of one forward was accepted");
        /* continue with a few decode steps */
        int n_more = 5, total = n_pre + bd + n_more;
        for (int t = 0; t < n_more; t++) all[n_pre + bd + t] = (int32_t)(rnd() % (uint32_t)h.V);
        float *cont = malloc((size_t)n_more * h.V * sizeof(float));
        for (int t = 0; t < n_more; t++) {
            ar_node nd = { .seq = 0, .token = all[n_pre + bd + t], .pos = n_pre + bd + t, .parent = -1, .want_logits = true };
            int p0 = 0;
            ar_batch bt = { .n_nodes = 1, .nodes = &nd, .logits = cont + (size_t)t * h.V };
            CHECK(qwen35_forward(h.c, &s, &bt, &err) == AR_OK && qwen35_commit(h.c, s, &p0, 1, &err) == AR_OK,
                  "decode: %s", err.msg);
        }
        float *full = malloc((size_t)total * h.V * sizeof(float));
        CHECK(prefill(&h, ref, all, total, full) == 0, "reference prefill");
        for (int t = 0; t < bd; t++) {
            double d = rel_diff(full + (size_t)(n_pre + t) * h.V, lg + (size_t)path[t] * h.V, h.V);
            if (d > worst) worst = d;
            CHECK(d <= 1e-5, "trial %d: path node %d differs from the prefill by %.3g", trial, t, d);
        }
        for (int t = 0; t < n_more; t++) {
            double d = rel_diff(full + (size_t)(n_pre + bd + t) * h.V, cont + (size_t)t * h.V, h.V);
            if (d > worst) worst = d;
            CHECK(d <= 1e-5, "trial %d: decode %d after the committed path differs from the prefill by %.3g", trial, t, d);
        }
        free(lg); free(cont); free(full);
        qwen35_seq_free(s); qwen35_seq_free(ref);
    }
    printf("commit of a tree path + decode == prefill of the path: worst rel diff %.3g\n", worst);
    close_harness(&h);
}

/* ---- misuse and validation ------------------------------------------------------------------ */

static void test_errors(const char *model_path)
{
    harness h;
    if (open_harness(&h, model_path, 8, 1)) { CHECK(0, "cannot open %s", model_path); return; }
    ar_error err;
    qwen35_seq *s = NULL;
    CHECK(qwen35_seq_create_paged(&s, h.m, 16, 4, &err) == AR_OK, "%s", err.msg);
    float *lg = malloc((size_t)8 * h.V * sizeof(float));
    ar_node bad[2] = { { .seq = 0, .token = 1, .pos = 0, .parent = -1, .want_logits = true },
                       { .seq = 0, .token = 2, .pos = 1, .parent = 1, .want_logits = true } };   /* parent not earlier */
    ar_batch b = { .n_nodes = 2, .nodes = bad, .logits = lg };
    CHECK(qwen35_forward(h.c, &s, &b, &err) == AR_EINVAL, "parent == self accepted");
    bad[1].parent = 0; bad[1].token = h.V;
    CHECK(qwen35_forward(h.c, &s, &b, &err) == AR_EINVAL && strstr(err.msg, "token"), "token out of range accepted");
    bad[1].token = 2;
    b.logits = NULL;
    CHECK(qwen35_forward(h.c, &s, &b, &err) == AR_EINVAL, "logits NULL accepted");
    b.logits = lg;
    b.n_nodes = 9;
    CHECK(qwen35_forward(h.c, &s, &b, &err) == AR_EINVAL, "batch larger than max_nodes accepted");
    b.n_nodes = 2;
    int path2[2] = { 1, 0 };
    CHECK(qwen35_forward(h.c, &s, &b, &err) == AR_OK, "%s", err.msg);
    CHECK(qwen35_commit(h.c, s, path2, 2, &err) == AR_EINVAL, "commit of a path in the wrong order accepted");
    CHECK(qwen35_seq_n_past(s) == 0, "a refused commit changed the sequence");
    /* context overflow: 16 tokens max */
    int32_t ids[16];
    for (int i = 0; i < 16; i++) ids[i] = i;
    CHECK(prefill(&h, s, ids, 16, NULL) == 0, "prefill to the context end");
    ar_node one = { .seq = 0, .token = 3, .pos = 16, .parent = -1, .want_logits = true };
    b = (ar_batch){ .n_nodes = 1, .nodes = &one, .logits = lg };
    CHECK(qwen35_forward(h.c, &s, &b, &err) == AR_ERANGE, "forward beyond the context accepted (%d)", err.code);
    qwen35_seq *huge = NULL;
    CHECK(qwen35_seq_create(&huge, h.m, 1 << 30, &err) == AR_ENOMEM && strstr(err.msg, "needs"),
          "a 1G-token sequence was not refused with AR_ENOMEM (%s)", err.msg);
    qwen35_seq_free(huge);
    free(lg);
    qwen35_seq_free(s);
    close_harness(&h);
}

/* Rewrite a model without some tensors, with one wrong shape, or another architecture. */
static void test_load_validation(const char *model_path)
{
    ar_error err;
    gguf_file *f = NULL;
    if (gguf_open(&f, model_path, &err) != AR_OK) { CHECK(0, "%s", err.msg); return; }
    char bad_path[512], arch_path[512];
    snprintf(bad_path, sizeof bad_path, "%s/broken.gguf", tmpdir);
    snprintf(arch_path, sizeof arch_path, "%s/llama.gguf", tmpdir);
    for (int variant = 0; variant < 2; variant++) {
        gguf_writer *w = gguf_writer_create();
        for (int64_t i = 0; i < gguf_n_kv(f); i++) gguf_set_kv(w, gguf_kv_at(f, i));
        if (variant == 1) gguf_set_str(w, "general.architecture", "llama");
        for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
            const gguf_tensor *t = gguf_tensor_at(f, i);
            int64_t ne[4] = { t->ne[0], t->ne[1], t->ne[2], t->ne[3] };
            if (variant == 0 && (!strcmp(t->name, "blk.0.ssm_a") || !strcmp(t->name, "blk.3.attn_k_norm.weight"))) continue;
            if (variant == 0 && !strcmp(t->name, "blk.1.ffn_down.weight")) {   /* same bytes, transposed shape */
                ne[0] = t->ne[1]; ne[1] = t->ne[0];
            }
            gguf_add_tensor(w, t->name, t->type, t->n_dims, ne, t->data, NULL, NULL);
        }
        int rc = gguf_writer_write(w, variant ? arch_path : bad_path, &err);
        gguf_writer_free(w);
        CHECK(rc == AR_OK, "write: %s", err.msg);
    }
    gguf_close(f);
    qwen35_model *m = NULL;
    int rc = qwen35_load(&m, bad_path, &err);
    CHECK(rc != AR_OK && strstr(err.msg, "blk.0.ssm_a") && strstr(err.msg, "blk.3.attn_k_norm.weight") &&
          strstr(err.msg, "blk.1.ffn_down.weight") && strstr(err.msg, "3 problems"),
          "broken model: expected one error naming all three problems, got (%d) %s", rc, err.msg);
    printf("loader error: %.200s\n", err.msg);
    qwen35_free(m);
    m = NULL;
    rc = qwen35_load(&m, arch_path, &err);
    CHECK(rc == AR_EUNSUPPORTED && strstr(err.msg, "llama"), "other architecture: (%d) %s", rc, err.msg);
    qwen35_free(m);
    unlink(bad_path);
    unlink(arch_path);
}

/* ---- KV cache types ---------------------------------------------------------------------------- */

/* The F16 cache (default) against F32 on the same prompt: every position's logits close, the same
 * argmax; a sequence whose KV type differs from the context's is refused with a clear error. */
static void test_kv_types(const char *model_path)
{
    harness h16, h32;
    ar_error err;
    if (open_harness(&h16, model_path, 64, 2)) { CHECK(0, "cannot open %s", model_path); return; }
    memset(&h32, 0, sizeof h32);
    CHECK(qwen35_load(&h32.m, model_path, &err) == AR_OK, "load: %s", err.msg);
    qwen35_set_kv_f32(h32.m, true);
    h32.hp = qwen35_hparams_of(h32.m);
    h32.V = h32.hp->n_vocab;
    h32.E = h32.hp->n_embd;
    CHECK(qwen35_ctx_create(&h32.c, h32.m, 64, 2, &err) == AR_OK, "ctx: %s", err.msg);
    enum { N = 150 };
    int32_t ids[N];
    for (int i = 0; i < N; i++) ids[i] = (int32_t)(rnd() % (uint32_t)h16.V);
    qwen35_seq *s16 = NULL, *s32 = NULL;
    CHECK(qwen35_seq_create(&s16, h16.m, 256, &err) == AR_OK && qwen35_seq_create(&s32, h32.m, 256, &err) == AR_OK,
          "seq: %s", err.msg);
    CHECK(qwen35_seq_bytes(h16.m, 1000) < qwen35_seq_bytes(h32.m, 1000), "an F16 sequence is not smaller");
    float *a = malloc((size_t)N * h16.V * sizeof(float)), *b = malloc((size_t)N * h16.V * sizeof(float));
    CHECK(prefill(&h16, s16, ids, N, a) == 0 && prefill(&h32, s32, ids, N, b) == 0, "prefill");
    double worst = 0;
    int same_argmax = 0;
    for (int p = 0; p < N; p++) {
        const float *x = a + (size_t)p * h16.V, *y = b + (size_t)p * h16.V;
        double m = 0, e = 0;
        int ax = 0, ay = 0;
        for (int v = 0; v < h16.V; v++) {
            m = fmax(m, fabs(y[v]));
            e = fmax(e, fabs((double)x[v] - y[v]));
            if (x[v] > x[ax]) ax = v;
            if (y[v] > y[ay]) ay = v;
        }
        if (m > 0 && e / m > worst) worst = e / m;
        same_argmax += ax == ay;
    }
    printf("KV F16 vs F32: %d positions, worst logit difference %.3g (relative to the row's largest), same argmax "
           "%d/%d\n", N, worst, same_argmax, N);
    CHECK(worst < 1e-2 && same_argmax >= N - 2, "F16 KV cache off the F32 one by %.3g, argmax equal at %d of %d",
          worst, same_argmax, N);
    /* a sequence of the other type on this context: refused */
    ar_node nd = { .seq = 0, .token = 1, .pos = qwen35_seq_n_past(s32), .parent = -1, .want_logits = true };
    ar_batch bt = { .n_nodes = 1, .nodes = &nd, .logits = b };
    qwen35_set_kv_f32(h16.m, true);
    qwen35_seq *odd = NULL;
    CHECK(qwen35_seq_create(&odd, h16.m, 64, &err) == AR_OK, "seq: %s", err.msg);
    nd.pos = 0;
    CHECK(qwen35_forward(h16.c, &odd, &bt, &err) == AR_EINVAL && strstr(err.msg, "KV as F32"),
          "a sequence with another KV type: %s", err.msg);
    qwen35_seq_free(odd);
    qwen35_seq_free(s16);
    qwen35_seq_free(s32);
    free(a);
    free(b);
    close_harness(&h16);
    close_harness(&h32);
}

int main(void)
{
    ar_log_level = AR_LOG_WARN;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/arbor-test-qwen35-XXXXXX");
    if (!mkdtemp(tmpdir)) { CHECK(0, "mkdtemp failed"); TEST_END(); }
    char m1[512], m2[512];
    snprintf(m1, sizeof m1, "%s/interval.gguf", tmpdir);
    snprintf(m2, sizeof m2, "%s/explicit.gguf", tmpdir);
    /* model 1: full_attention_interval 4, tied; model 2: explicit recurrent_layers, untied */
    int ok1 = make_model(m1, 1, NULL, 4) == 0, ok2 = make_model(m2, 0, "1,0,1,1,0", 5) == 0;
    CHECK(ok1 && ok2, "cannot write the test models (is $ARBOR_FIXTURES/vocab-qwen35.gguf there? run scripts/fixtures.sh)");
    if (ok1 && ok2) {
        test_tree_equals_chain(m1, 8);
        test_tree_equals_chain(m2, 3);
        test_chunked_equals_long(m1);
        test_chunked_equals_long(m2);
        test_commit_tree_path(m1);
        test_commit_tree_path(m2);
        test_inplace_commit(m1);
        test_inplace_commit(m2);
        test_capture(m1);
        test_capture(m2);
        test_errors(m1);
        test_load_validation(m1);
        test_kv_types(m2);
    }
    unlink(m1);
    unlink(m2);
    rmdir(tmpdir);
    TEST_END();
}
