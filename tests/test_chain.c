/* tests/test_chain.c — lossless chain speculative decoding (spec/chain.h) through ar_generate and directly.
 *
 * Targets: the tiny fixture ($ARBOR_FIXTURES/tiny-f32.gguf, tied, repetitive greedy text) and small
 * untied models made with `$ARBOR_BIN mkmodel`; drafters with random weights from `$ARBOR_BIN mkdraft`
 * (they accept ~nothing) and the replay source (spec/replay.c: the true continuation with an error at a
 * chosen depth each round, so every acceptance length and rollback point is walked on purpose).
 *   1. T = 0: speculative tokens == plain tokens for blocks 2..16, 256 tokens (continuing after each
 *      end-of-generation token), prompts crossing KV pages (pages of 8 / 4 tokens), both drafters; the
 *      replay source sees every acceptance length 0..block-1 and only reference tokens get committed.
 *   2. the stop rules under speculation: callback stop inside a block then continuing, n_predict not
 *      a multiple of the block, the context end (blocks shortened), bad configurations.
 *   3. T > 0, fixed seed, full sampler chain with penalties: speculative tokens == plain tokens (one
 *      sampler call per emitted token, in the same order, on the same logits).
 *   4. T > 0 statistics: 20,000 samples of the first 3 tokens on a 300-token-vocab model, chi-square
 *      against the exact distribution of the target's sampler (computed by enumerating the support
 *      tree), for plain sampling, a replay source proposing the greedy (plausible) tokens and one
 *      proposing wrong tokens; plus a power check (the same samples against a 15% hotter
 *      distribution must be rejected).
 *   5. llama.cpp's speculative-simple (build/oracle/llama-speculative-simple, or $ARBOR_SPEC_SIMPLE) on
 *      the same target + drafter at T = 0 prints the same text as arbor's speculative run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "arbor.h"
#include "base/log.h"
#include "base/timer.h"
#include "engine/generate.h"
#include "spec/chain.h"
#include "spec/draft.h"
#include "tests/test.h"

static char g_tmp[256];
static const char *g_arbor;
static char g_spec[4096];

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

static int sh(const char *cmd)
{
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* `arbor <tool> -q -o TMP/name.gguf args` -> path, or NULL (a failed check). */
static const char *make_file(const char *tool, const char *name, const char *args, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s.gguf", g_tmp, name);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s -q -o '%s' %s > '%s/%s.log' 2>&1", g_arbor, tool, path, args, g_tmp, name);
    int rc = sh(cmd);
    CHECK(rc == 0, "%s %s %s failed (exit %d, log %s/%s.log)", g_arbor, tool, args, rc, g_tmp, name);
    return rc == 0 ? path : NULL;
}

static ar_model *load(const char *path, const char *draft)
{
    ar_model_params mp = ar_model_defaults();
    mp.prefault = false;
    mp.n_threads = 1;
    mp.max_batch = 64;
    ar_model *m = NULL;
    ar_error err = { 0 };
    int rc = ar_model_load(&m, path, &mp, &err);
    if (!rc && draft) rc = ar_model_load_draft(m, draft, &err);
    CHECK(rc == 0, "loading %s (drafter %s): %s", path, draft ? draft : "-", err.msg);
    if (rc) { ar_model_free(m); return NULL; }
    return m;
}

/* ---- generation runs ------------------------------------------------------------------------ */

typedef struct run {
    int32_t ids[1024];
    int     n;
    int     stops[64];      /* stop reason of each ar_generate call */
    int     n_calls;
    int     stop_after;     /* > 0: the callback asks to stop when n reaches it */
    int     n_past;         /* ar_session_n_past at the end */
    /* speculative counters summed over the calls */
    int     steps, step_tokens, drafted, accepted;
    int     accept_len[AR_CHAIN_HIST];
} run;

static bool on_token(void *user, int32_t token, const char *piece, size_t len)
{
    (void)piece;
    (void)len;
    run *r = user;
    if (token < 0) return false;
    if (r->n < (int)(sizeof r->ids / sizeof r->ids[0])) r->ids[r->n] = token;
    r->n++;
    return r->stop_after > 0 && r->n == r->stop_after;
}

static ar_session *session(ar_model *m, int draft_block, int n_ctx, int kv_page, const ar_sampler_params *smp)
{
    ar_session_params sp = ar_session_defaults();
    sp.n_ctx = n_ctx;
    sp.kv_page = kv_page;
    sp.draft_block = draft_block;
    if (smp) sp.sampling = *smp;
    else { sp.sampling.temp = 0.0f; sp.sampling.seed = 1; }
    ar_session *s = NULL;
    ar_error err = { 0 };
    int rc = ar_session_create(&s, m, &sp, &err);
    CHECK(rc == 0, "ar_session_create (block %d): %s", draft_block, err.msg);
    return s;
}

/* One ar_generate call of up to n tokens (the prompt may be empty: continue). Returns its rc. */
static int gen_call(ar_session *s, const int32_t *prompt, int n_prompt, int n, run *r)
{
    ar_gen_stats st;
    ar_error err = { 0 };
    int rc = ar_generate(s, prompt, n_prompt, n, on_token, r, &st, &err);
    CHECK(rc == 0, "ar_generate: %s", err.msg);
    if (r->n_calls < 64) r->stops[r->n_calls] = st.stop;
    r->n_calls++;
    r->steps += st.n_steps;
    r->step_tokens += st.n_step_tokens;
    r->drafted += st.n_drafted;
    r->accepted += st.n_accepted;
    if (s->chain) {   /* ar_generate resets the chain's counters per call */
        const ar_chain_stats *cs = ar_chain_get_stats(s->chain);
        for (int i = 0; i < AR_CHAIN_HIST; i++) r->accept_len[i] += cs->n_accept_len[i];
    }
    r->n_past = ar_session_n_past(s);
    return rc;
}

/* n_total tokens from the prompt, continuing after every stop that is not the context end. */
static void gen_total(ar_session *s, const int32_t *prompt, int n_prompt, int n_total, run *r)
{
    if (gen_call(s, prompt, n_prompt, n_total, r)) return;
    while (r->n < n_total && r->n_calls < 64 && r->stops[r->n_calls - 1] != AR_STOP_CONTEXT)
        if (gen_call(s, NULL, 0, n_total - r->n, r)) return;
}

static bool same_run(const run *a, const run *b)
{
    if (a->n != b->n || a->n_calls != b->n_calls || a->n_past != b->n_past) return false;
    for (int i = 0; i < a->n && i < 1024; i++) if (a->ids[i] != b->ids[i]) return false;
    for (int i = 0; i < a->n_calls && i < 64; i++) if (a->stops[i] != b->stops[i]) return false;
    return true;
}

static int first_diff(const run *a, const run *b)
{
    for (int i = 0; i < a->n && i < b->n && i < 1024; i++) if (a->ids[i] != b->ids[i]) return i;
    return a->n < b->n ? a->n : b->n;
}

/* The replay source over ref = prompt + plain tokens, errors at depths 1..block-1 then none, cycled. */
static ar_draft_source *replay(ar_model *m, const int32_t *prompt, int np, const run *plain, int block,
                               const int *errors, int n_errors)
{
    int32_t ref[2048];
    int n = 0;
    for (int i = 0; i < np; i++) ref[n++] = prompt[i];
    for (int i = 0; i < plain->n && n < 2048; i++) ref[n++] = plain->ids[i];
    ar_draft_source *src = NULL;
    ar_error err = { 0 };
    int rc = ar_replay_source_create(&src, ref, n, ar_model_n_vocab(m), block, &err);
    CHECK(rc == 0, "replay source: %s", err.msg);
    if (rc) return NULL;
    int sched[64];
    if (!errors) {
        n_errors = 0;
        for (int d = 1; d < block; d++) sched[n_errors++] = d;
        sched[n_errors++] = 0;
        errors = sched;
    }
    ar_replay_set_errors(src, errors, n_errors);
    return src;
}

static ar_session *replay_session(ar_model *m, ar_draft_source *src, int n_ctx, int kv_page, const ar_sampler_params *smp)
{
    ar_session *s = session(m, 1, n_ctx, kv_page, smp);
    if (!s || !src) { ar_session_free(s); ar_draft_free(src); return NULL; }
    ar_error err = { 0 };
    int rc = ar_session_set_draft(s, src, &err);
    CHECK(rc == 0, "ar_session_set_draft: %s", err.msg);
    if (rc) { ar_draft_free(src); ar_session_free(s); return NULL; }
    return s;
}

/* ---- 1. T = 0 matrix -------------------------------------------------------------------------- */

static void t0_matrix(const char *label, ar_model *m, const int32_t *prompt, int np, int n_tok, const int *blocks,
                      int n_blocks, int kv_page)
{
    run plain = { 0 };
    ar_session *s = session(m, 1, 1024, kv_page, NULL);
    if (!s) return;
    gen_total(s, prompt, np, n_tok, &plain);
    ar_session_free(s);
    CHECK(plain.n == n_tok, "%s: plain run gave %d of %d tokens", label, plain.n, n_tok);
    int n_ok = 0, n_cases = 0, all_lengths = 1;
    double al_replay = 0.0;
    int dflash_acc = 0, dflash_drafted = 0;
    for (int bi = 0; bi < n_blocks; bi++) {
        const int b = blocks[bi];
        /* the model's DFlash drafter */
        run r = { 0 };
        s = session(m, b, 1024, kv_page, NULL);
        if (s) {
            gen_total(s, prompt, np, n_tok, &r);
            ar_session_free(s);
            n_cases++;
            bool ok = same_run(&plain, &r);
            n_ok += ok;
            CHECK(ok, "%s: DFlash block %d: %d tokens, %d calls, first difference at token %d (plain %d tokens)", label,
                  b, r.n, r.n_calls, first_diff(&plain, &r), plain.n);
            CHECK(r.steps > 0 && r.step_tokens == r.n - r.n_calls && r.accepted == r.step_tokens - r.steps,
                  "%s: DFlash block %d: stats: %d steps, %d step tokens, %d accepted, %d tokens in %d calls", label, b,
                  r.steps, r.step_tokens, r.accepted, r.n, r.n_calls);
            dflash_acc += r.accepted;
            dflash_drafted += r.drafted;
        }
        /* the replay source: an error at depth 1, 2, ..., b-1, then none, round after round */
        run q = { 0 };
        s = replay_session(m, replay(m, prompt, np, &plain, b, NULL, 0), 1024, kv_page, NULL);
        if (s) {
            gen_total(s, prompt, np, n_tok, &q);
            int first;
            int mm = ar_replay_mismatches(s->src, &first);
            ar_session_free(s);
            n_cases++;
            bool ok = same_run(&plain, &q);
            n_ok += ok;
            CHECK(ok, "%s: replay block %d: %d tokens, first difference at token %d", label, b, q.n, first_diff(&plain, &q));
            CHECK(mm == 0, "%s: replay block %d: %d committed tokens differ from the reference (first at position %d)",
                  label, b, mm, first);
            /* one cycle of the error schedule emits 1 + 2 + ... + b tokens: with room for it (plus the first
             * token and a margin), every acceptance length 0..b-1 must have come up */
            bool every = true;
            if (n_tok >= b * (b + 1) / 2 + b + 2)
                for (int k = 0; k < b; k++) every = every && q.accept_len[k] > 0;
            all_lengths &= every;
            CHECK(every, "%s: replay block %d: not every acceptance length 0..%d was seen", label, b, b - 1);
            al_replay += q.steps ? (double)q.step_tokens / q.steps : 0;
        }
    }
    printf("ok %-14s T=0, %d tokens, kv pages of %d, prompt %d: %d/%d speculative runs token-identical to plain "
           "(blocks %d..%d; DFlash drafts accepted %d/%d, replay mean acceptance length %.2f, every length seen: %s)\n",
           label, n_tok, kv_page, np, n_ok, n_cases, blocks[0], blocks[n_blocks - 1], dflash_acc, dflash_drafted,
           al_replay / n_blocks, all_lengths ? "yes" : "no");
}

/* ---- 2. stop rules ------------------------------------------------------------------------------ */

static void stop_rules(ar_model *m, const int32_t *prompt, int np)
{
    /* callback stop inside a block, then continuing: same tokens and context as plain */
    const int stops[] = { 1, 2, 7, 16, 17 };
    for (int i = 0; i < 5; i++) {
        run p = { .stop_after = stops[i] }, d = { .stop_after = stops[i] }, q = { .stop_after = stops[i] };
        ar_session *s = session(m, 1, 512, 8, NULL);
        gen_call(s, prompt, np, 100, &p);
        p.stop_after = 0;
        gen_call(s, NULL, 0, 40, &p);
        ar_session_free(s);
        s = session(m, 16, 512, 8, NULL);
        gen_call(s, prompt, np, 100, &d);
        d.stop_after = 0;
        gen_call(s, NULL, 0, 40, &d);
        ar_session_free(s);
        s = replay_session(m, replay(m, prompt, np, &p, 16, (const int[]){ 0 }, 1), 512, 8, NULL);
        if (s) {
            gen_call(s, prompt, np, 100, &q);
            q.stop_after = 0;
            gen_call(s, NULL, 0, 40, &q);
            ar_session_free(s);
        }
        CHECK(p.stops[0] == AR_STOP_CALLBACK || p.stops[0] == AR_STOP_EOG, "plain stop %d", p.stops[0]);
        CHECK(same_run(&p, &d), "callback stop after %d then 40 more: DFlash differs (token %d, n_past %d vs %d)",
              stops[i], first_diff(&p, &d), d.n_past, p.n_past);
        CHECK(same_run(&p, &q), "callback stop after %d then 40 more: replay (all accepted) differs (token %d, n_past %d vs %d)",
              stops[i], first_diff(&p, &q), q.n_past, p.n_past);
    }
    /* n_predict not a multiple of the block, and the context end (the last blocks get shortened) */
    const int n_preds[] = { 1, 2, 3, 15, 16, 17, 33 };
    for (int i = 0; i < 7; i++) {
        run p = { 0 }, q = { 0 };
        ar_session *s = session(m, 1, 512, 8, NULL);
        gen_call(s, prompt, np, n_preds[i], &p);
        ar_session_free(s);
        s = replay_session(m, replay(m, prompt, np, &p, 16, (const int[]){ 0 }, 1), 512, 8, NULL);
        if (s) { gen_call(s, prompt, np, n_preds[i], &q); ar_session_free(s); }
        CHECK(same_run(&p, &q), "n_predict %d with block 16 (all accepted): %d tokens (plain %d)", n_preds[i], q.n, p.n);
    }
    for (int extra = 1; extra <= 20; extra += 19) {
        const int n_ctx = np + extra;
        run p = { 0 }, d = { 0 }, q = { 0 };
        ar_session *s = session(m, 1, n_ctx, 4, NULL);
        gen_total(s, prompt, np, 200, &p);
        ar_session_free(s);
        s = session(m, 16, n_ctx, 4, NULL);
        gen_total(s, prompt, np, 200, &d);
        ar_session_free(s);
        s = replay_session(m, replay(m, prompt, np, &p, 16, (const int[]){ 0 }, 1), n_ctx, 4, NULL);
        if (s) { gen_total(s, prompt, np, 200, &q); ar_session_free(s); }
        CHECK(p.stops[p.n_calls - 1] == AR_STOP_CONTEXT && p.n_past == n_ctx + 1,
              "plain at the context end (%d): stop %d, n_past %d", n_ctx, p.stops[p.n_calls - 1], p.n_past);
        CHECK(same_run(&p, &d), "context end %d: DFlash %d tokens, n_past %d (plain %d, %d)", n_ctx, d.n, d.n_past, p.n,
              p.n_past);
        CHECK(same_run(&p, &q), "context end %d: replay %d tokens, n_past %d (plain %d, %d)", n_ctx, q.n, q.n_past, p.n,
              p.n_past);
    }
    /* configurations that must be refused */
    ar_session_params sp = ar_session_defaults();
    sp.draft_block = 65;
    ar_session *s = NULL;
    ar_error err = { 0 };
    CHECK(ar_session_create(&s, m, &sp, &err) == AR_EINVAL, "a block of 65 must be refused");
    s = session(m, 1, 64, 0, NULL);
    run r = { 0 };
    gen_call(s, prompt, np, 2, &r);
    ar_draft_source *src = NULL;
    ar_replay_source_create(&src, prompt, np, ar_model_n_vocab(m), 4, &err);
    CHECK(src && ar_session_set_draft(s, src, &err) == AR_EINVAL, "set_draft on a used session must fail");
    ar_draft_free(src);
    ar_session_free(s);
    CHECK(ar_model_load_draft(m, "/nonexistent.gguf", &err) != 0, "a second drafter must be refused");
    printf("ok stop rules: callback stops inside blocks, n_predict 1..33, context ends at +1 and +20: same tokens, "
           "stops and context as plain\n");
}

/* ---- 3. T > 0, same seed --------------------------------------------------------------------------- */

static void seeded(ar_model *m, const int32_t *prompt, int np, int n_tok)
{
    ar_sampler_params smp = ar_sampler_defaults();
    smp.temp = 0.9f;
    smp.repeat_penalty = 1.2f;
    smp.presence_penalty = 0.2f;
    smp.frequency_penalty = 0.1f;
    for (uint64_t seed = 1; seed <= 2; seed++) {
        smp.seed = seed;
        run p = { 0 }, d = { 0 }, q = { 0 };
        ar_session *s = session(m, 1, 1024, 8, &smp);
        gen_total(s, prompt, np, n_tok, &p);
        ar_session_free(s);
        s = session(m, 16, 1024, 8, &smp);
        gen_total(s, prompt, np, n_tok, &d);
        ar_session_free(s);
        /* the replay source proposes this seed's plain run, with an error every few rounds */
        s = replay_session(m, replay(m, prompt, np, &p, 8, (const int[]){ 0, 3, 0, 1, 7 }, 5), 1024, 8, &smp);
        if (s) { gen_total(s, prompt, np, n_tok, &q); ar_session_free(s); }
        CHECK(same_run(&p, &d), "seed %llu: DFlash speculative sampling differs from plain at token %d",
              (unsigned long long)seed, first_diff(&p, &d));
        CHECK(same_run(&p, &q), "seed %llu: replay speculative sampling differs from plain at token %d",
              (unsigned long long)seed, first_diff(&p, &q));
        if (seed == 1)
            printf("ok T=0.9 + penalties, seed 1..2: speculative tokens == plain tokens (%d tokens; replay acceptance "
                   "length %.2f, DFlash %.2f)\n", p.n, q.steps ? (double)q.step_tokens / q.steps : 0.0,
                   d.steps ? (double)d.step_tokens / d.steps : 0.0);
    }
}

/* ---- 4. statistics ------------------------------------------------------------------------------ */

/* Regularised upper incomplete gamma Q(a, x) (series / continued fraction). */
static double gamma_q(double a, double x)
{
    if (x <= 0) return 1.0;
    const double lg = lgamma(a);
    if (x < a + 1) {
        double sum = 1.0 / a, term = sum;
        for (int n = 1; n < 10000; n++) {
            term *= x / (a + n);
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-15) break;
        }
        return 1.0 - sum * exp(-x + a * log(x) - lg);
    }
    double b = x + 1 - a, c = 1e300, d = 1 / b, h = d;
    for (int i = 1; i < 10000; i++) {
        double an = -i * (i - a);
        b += 2;
        d = an * d + b;
        if (fabs(d) < 1e-300) d = 1e-300;
        c = b + an / c;
        if (fabs(c) < 1e-300) c = 1e-300;
        d = 1 / d;
        double del = d * c;
        h *= del;
        if (fabs(del - 1) < 1e-15) break;
    }
    return exp(-x + a * log(x) - lg) * h;
}

typedef struct cell { int64_t key; double p; int obs; } cell;

static int cmp_key(const void *a, const void *b)
{
    int64_t x = ((const cell *)a)->key, y = ((const cell *)b)->key;
    return x < y ? -1 : x > y;
}

static int cmp_p(const void *a, const void *b)
{
    double x = ((const cell *)a)->p, y = ((const cell *)b)->p;
    return x < y ? -1 : x > y;
}

/* Pearson chi-square of observed counts against probabilities (cells with expected count < 5 are pooled,
 * smallest first). Cells are re-sorted. Returns the p-value; *chi2, *df out. */
static double chi_square(cell *c, int n, int n_samples, double *chi2_out, int *df_out)
{
    qsort(c, (size_t)n, sizeof *c, cmp_p);
    double chi2 = 0, pool_e = 0;
    int pool_o = 0, bins = 0;
    for (int i = 0; i < n; i++) {
        double e = c[i].p * n_samples;
        if (pool_e + e < 5.0 || (pool_e > 0 && pool_e < 5.0)) {
            pool_e += e;
            pool_o += c[i].obs;
            if (pool_e < 5.0) continue;
            chi2 += (pool_o - pool_e) * (pool_o - pool_e) / pool_e;
            bins++;
            pool_e = 0;
            pool_o = 0;
            continue;
        }
        chi2 += (c[i].obs - e) * (c[i].obs - e) / e;
        bins++;
    }
    if (pool_e > 0) { chi2 += (pool_o - pool_e) * (pool_o - pool_e) / pool_e; bins++; }
    *chi2_out = chi2;
    *df_out = bins - 1;
    return bins > 1 ? gamma_q((bins - 1) / 2.0, chi2 / 2.0) : 1.0;
}

typedef struct stat_env {
    ar_model *m;
    qwen35_model *qm;
    qwen35_ctx *ctx;
    qwen35_seq *seq;
    int32_t V;
    const int32_t *prompt;
    int np;
    ar_sampler_params smp;
    float *logits;      /* [64][V] */
    float *z0;          /* [V]: the logits after the prompt */
    cell *tri;          /* exact distribution of the first 3 tokens, sorted by key */
    int n_tri;
} stat_env;

static int64_t key3(int32_t V, const int32_t t[3]) { return ((int64_t)t[0] * V + t[1]) * V + t[2]; }

/* Forward of nodes (no commit) after the committed prefix; logits of every want_logits node. */
static int fwd(stat_env *e, ar_node *nodes, int n)
{
    ar_batch b = { .n_nodes = n, .nodes = nodes, .logits = e->logits };
    ar_error err = { 0 };
    int rc = qwen35_forward(e->ctx, &e->seq, &b, &err);
    if (rc) CHECK(0, "forward: %s", err.msg);
    return rc;
}

static void prefill(stat_env *e, int n)
{
    ar_node nodes[64];
    for (int i = 0; i < n; i++) nodes[i] = (ar_node){ .token = e->prompt[i], .pos = i, .parent = i - 1, .want_logits = i == n - 1 };
    qwen35_seq_reset(e->seq);
    int path[64];
    for (int i = 0; i < n; i++) path[i] = i;
    ar_error err = { 0 };
    if (!fwd(e, nodes, n)) CHECK(qwen35_commit(e->ctx, e->seq, path, n, &err) == 0, "commit: %s", err.msg);
}

/* The sampler's distribution after history prompt + hist[0..nh) on a logits row. */
static int dist(stat_env *e, ar_sampler *s, const int32_t *hist, int nh, const float *row, int32_t *ids, float *p)
{
    ar_sampler_reset(s);
    for (int i = 0; i < e->np; i++) ar_sampler_accept(s, e->prompt[i]);
    for (int i = 0; i < nh; i++) ar_sampler_accept(s, hist[i]);
    return ar_sampler_dist(s, row, ids, p, e->V);
}

/* Enumerate the support tree: P(t1) P(t2 | t1) P(t3 | t1 t2) with the sampler's own transforms. */
static int exact_triples(stat_env *e, float temp_scale)
{
    ar_sampler_params sp = e->smp;
    sp.temp *= temp_scale;
    ar_sampler *s = NULL;
    ar_error err = { 0 };
    if (ar_sampler_create(&s, &sp, e->V, &err)) { CHECK(0, "sampler: %s", err.msg); return -1; }
    int32_t *i1 = malloc(3 * (size_t)e->V * sizeof *i1), *i2 = i1 + e->V, *i3 = i2 + e->V;
    float *p1 = malloc(3 * (size_t)e->V * sizeof *p1), *p2 = p1 + e->V, *p3 = p2 + e->V;
    int cap = 1 << 16;
    e->tri = malloc((size_t)cap * sizeof *e->tri);
    e->n_tri = 0;
    prefill(e, e->np);
    int n1 = dist(e, s, NULL, 0, e->logits, i1, p1);
    for (int a = 0; a < n1 && e->tri; a++) {
        ar_node nodes[64] = { { .token = i1[a], .pos = e->np, .parent = -1, .want_logits = true } };
        if (fwd(e, nodes, 1)) break;
        int32_t h[2] = { i1[a], 0 };
        int n2 = dist(e, s, h, 1, e->logits, i2, p2);
        CHECK(n2 < 64, "support of %d tokens at depth 2: raise the batch", n2);
        if (n2 >= 64) break;
        for (int b = 0; b < n2; b++)
            nodes[1 + b] = (ar_node){ .token = i2[b], .pos = e->np + 1, .parent = 0, .want_logits = true };
        nodes[0].want_logits = false;
        if (fwd(e, nodes, 1 + n2)) break;
        for (int b = 0; b < n2; b++) {
            h[1] = i2[b];
            int n3 = dist(e, s, h, 2, e->logits + (size_t)b * e->V, i3, p3);
            for (int c = 0; c < n3; c++) {
                if (e->n_tri == cap) {
                    cell *t = realloc(e->tri, (size_t)(cap *= 2) * sizeof *t);
                    if (!t) { free(e->tri); e->tri = NULL; break; }
                    e->tri = t;
                }
                const int32_t k[3] = { i1[a], i2[b], i3[c] };
                e->tri[e->n_tri++] = (cell){ key3(e->V, k), (double)p1[a] * p2[b] * p3[c], 0 };
            }
        }
    }
    free(i1);
    free(p1);
    ar_sampler_free(s);
    if (!e->tri) return -1;
    qsort(e->tri, (size_t)e->n_tri, sizeof *e->tri, cmp_key);
    return 0;
}

/* Logits after prompt + toks[0..n) (the committed prompt, toks as an uncommitted chain) -> e->logits. */
static int next_logits(stat_env *e, const int32_t *toks, int n)
{
    ar_node nodes[8];
    for (int i = 0; i < n; i++)
        nodes[i] = (ar_node){ .token = toks[i], .pos = e->np + i, .parent = i - 1, .want_logits = i == n - 1 };
    return fwd(e, nodes, n);
}

typedef struct emit3 { int32_t *out; int n; } emit3;

static bool emit_collect(void *user, int32_t tok)
{
    emit3 *c = user;
    c->out[c->n++] = tok;
    return false;
}

/* The first 3 tokens after the prompt with the given seed: plainly (chain == NULL) or speculatively,
 * starting like speculative-simple: prompt[0..np-2] committed, prompt[np-1] the first anchor. */
static int sample3(stat_env *e, ar_chain *chain, uint64_t seed, int32_t out[3])
{
    ar_sampler_params sp = e->smp;
    sp.seed = seed;
    ar_sampler *s = NULL;
    ar_error err = { 0 };
    if (ar_sampler_create(&s, &sp, e->V, &err)) return -1;
    for (int i = 0; i < e->np; i++) ar_sampler_accept(s, e->prompt[i]);
    int rc = 0;
    if (!chain) {   /* plain: sample, evaluate (an uncommitted chain after the prompt), sample, ... */
        const float *row = e->z0;
        for (int i = 0; i < 3 && !rc; i++) {
            out[i] = ar_sampler_sample(s, row);
            ar_sampler_accept(s, out[i]);
            if (i < 2) {
                rc = next_logits(e, out, i + 1);
                row = e->logits;
            }
        }
    } else {
        qwen35_seq_reset(e->seq);
        ar_draft_reset(ar_chain_source(chain));
        rc = ar_chain_prefill(chain, e->seq, e->prompt, e->np - 1, NULL, &err);
        int32_t anchor = e->prompt[e->np - 1];
        emit3 col = { out, 0 };
        bool stopped;
        while (!rc && col.n < 3) rc = ar_chain_round(chain, e->seq, s, anchor, 3 - col.n, emit_collect, &col, &anchor, &stopped, &err);
    }
    if (rc) CHECK(0, "sample3: %s", err.msg);
    ar_sampler_free(s);
    return rc;
}

/* Chi-square of samples (keys) against e->tri (joint) and its marginals. Returns the smallest p. */
static double judge(stat_env *e, const char *label, const int64_t *keys, int n, bool print, int *impossible)
{
    cell *c = malloc((size_t)e->n_tri * sizeof *c);
    memcpy(c, e->tri, (size_t)e->n_tri * sizeof *c);
    *impossible = 0;
    for (int i = 0; i < n; i++) {
        cell k = { .key = keys[i] };
        cell *f = bsearch(&k, c, (size_t)e->n_tri, sizeof *c, cmp_key);
        if (f) f->obs++;
        else (*impossible)++;
    }
    double worst = 1.0, chi2[4], pv[4];
    int df[4];
    /* marginals: re-key by one position */
    for (int pos = 0; pos < 4; pos++) {
        cell *m = c;
        int nm = e->n_tri;
        cell *tmp = NULL;
        if (pos < 3) {
            tmp = calloc((size_t)e->V, sizeof *tmp);
            for (int v = 0; v < e->V; v++) tmp[v].key = v;
            for (int i = 0; i < e->n_tri; i++) {
                int64_t k = c[i].key, t[3] = { k / ((int64_t)e->V * e->V), (k / e->V) % e->V, k % e->V };
                tmp[t[pos]].p += c[i].p;
                tmp[t[pos]].obs += c[i].obs;
            }
            int w = 0;
            for (int v = 0; v < e->V; v++) if (tmp[v].p > 0) tmp[w++] = tmp[v];
            m = tmp;
            nm = w;
        }
        pv[pos] = chi_square(m, nm, n, &chi2[pos], &df[pos]);
        if (pos == 3) qsort(c, (size_t)e->n_tri, sizeof *c, cmp_key);
        if (pv[pos] < worst) worst = pv[pos];
        free(tmp);
    }
    if (print)
        printf("ok %-26s %d samples: chi2/df joint %.1f/%d (p %.3f), token 1 %.1f/%d (p %.3f), token 2 %.1f/%d "
               "(p %.3f), token 3 %.1f/%d (p %.3f)\n", label, n, chi2[3], df[3], pv[3], chi2[0], df[0], pv[0], chi2[1],
               df[1], pv[1], chi2[2], df[2], pv[2]);
    free(c);
    return worst;
}

static void statistics(const char *target)
{
    stat_env e = { 0 };
    e.m = load(target, NULL);
    if (!e.m) return;
    e.qm = e.m->qm;
    e.ctx = e.m->ctx;
    e.V = ar_model_n_vocab(e.m);
    ar_error err = { 0 };
    if (qwen35_seq_create(&e.seq, e.qm, 64, &err)) { CHECK(0, "seq: %s", err.msg); ar_model_free(e.m); return; }
    static const int32_t prompt[] = { 17, 101, 233 };
    e.prompt = prompt;
    e.np = 3;
    e.smp = ar_sampler_defaults();
    e.smp.temp = 1.0f;
    e.smp.top_k = 40;
    e.smp.top_p = 0.95f;
    e.smp.min_p = 0.02f;
    e.smp.repeat_penalty = 1.3f;
    e.logits = malloc((size_t)64 * e.V * sizeof *e.logits);
    e.z0 = malloc((size_t)e.V * sizeof *e.z0);
    const int N = test_sanitized() ? 2000 : 20000;
    int64_t *keys = malloc((size_t)N * sizeof *keys);

    double t0 = ar_now();
    if (exact_triples(&e, 1.0f)) goto out;
    double sum = 0;
    for (int i = 0; i < e.n_tri; i++) sum += e.tri[i].p;
    CHECK(fabs(sum - 1.0) < 1e-4, "the exact distribution sums to %.6f", sum);

    /* the greedy continuation (plausible drafts) for the replay source */
    int32_t ref[16];
    memcpy(ref, prompt, sizeof prompt);
    {
        ar_sampler_params g = e.smp;
        g.temp = 0;
        ar_sampler *s = NULL;
        ar_sampler_create(&s, &g, e.V, &err);
        for (int i = 0; i < e.np; i++) ar_sampler_accept(s, prompt[i]);
        prefill(&e, e.np);
        memcpy(e.z0, e.logits, (size_t)e.V * sizeof *e.z0);
        const float *row = e.z0;
        for (int i = 0; i < 3; i++) {
            ref[e.np + i] = ar_sampler_sample(s, row);
            ar_sampler_accept(s, ref[e.np + i]);
            if (i < 2 && next_logits(&e, ref + e.np, i + 1)) break;
            row = e.logits;
        }
        ar_sampler_free(s);
    }

    /* plain sampling (checks the exact distribution itself); the prompt stays committed, z0 holds its logits */
    for (int i = 0; i < N; i++) {
        int32_t t[3];
        if (sample3(&e, NULL, 1 + (uint64_t)i, t)) goto out;
        keys[i] = key3(e.V, t);
    }
    int imp;
    double p_plain = judge(&e, "plain sampling", keys, N, true, &imp);
    CHECK(imp == 0 && p_plain > 1e-4, "plain sampling: chi-square p %.2e, %d samples outside the support", p_plain, imp);

    /* speculative, replay source: plausible (greedy) drafts, then wrong ones */
    for (int variant = 0; variant < 2; variant++) {
        ar_draft_source *src = NULL;
        ar_chain *chain = NULL;
        int rc = ar_replay_source_create(&src, ref, e.np + 3, e.V, 3, &err);
        if (!rc) ar_replay_set_errors(src, variant ? (const int[]){ 1 } : (const int[]){ 0 }, 1);
        if (!rc) rc = ar_chain_create(&chain, e.qm, e.ctx, src, &err);
        CHECK(rc == 0, "chain: %s", err.msg);
        const int n_s = variant ? N / 2 : N;   /* wrong drafts cost a round per token: half as many */
        for (int i = 0; !rc && i < n_s; i++) {
            int32_t t[3];
            if ((rc = sample3(&e, chain, 1000003 * (uint64_t)(variant + 1) + (uint64_t)i, t))) break;
            keys[i] = key3(e.V, t);
        }
        if (!rc) {
            const ar_chain_stats *cs = ar_chain_get_stats(chain);
            char label[64];
            snprintf(label, sizeof label, "speculative, %s drafts", variant ? "wrong" : "greedy");
            double p = judge(&e, label, keys, n_s, true, &imp);
            printf("   (%d rounds, %d of %d drafts accepted: depth-1 acceptance %.1f%%, depth-2 %d rounds)\n",
                   cs->n_rounds, cs->n_accepted, cs->n_drafted, 100.0 * (cs->n_rounds - cs->n_accept_len[0]) / cs->n_rounds,
                   cs->n_accept_len[2]);
            CHECK(imp == 0 && p > 1e-4, "%s: chi-square p %.2e (the output distribution shifted), %d impossible samples",
                  label, p, imp);
            if (!variant) {
                CHECK(cs->n_accepted > N / 10 && cs->n_accept_len[2] > 0,
                      "greedy drafts: only %d accepted in %d samples (acceptance must actually happen)", cs->n_accepted, N);
                /* power: the same samples against a 15% hotter sampler must be rejected */
                cell *exact = e.tri;
                int n_exact = e.n_tri;
                if (!exact_triples(&e, 1.15f)) {
                    double ph = judge(&e, "vs temp x1.15 (power)", keys, N, true, &imp);
                    CHECK(ph < 1e-6, "the chi-square test cannot tell temp %.2f from %.2f (p %.2e): no power",
                          (double)e.smp.temp, 1.15 * e.smp.temp, ph);
                    free(e.tri);
                }
                e.tri = exact;
                e.n_tri = n_exact;
            }
        }
        ar_chain_free(chain);
        ar_draft_free(src);
    }
    printf("   statistics took %.1f s\n", ar_now() - t0);
out:
    free(keys);
    free(e.tri);
    free(e.logits);
    free(e.z0);
    qwen35_seq_free(e.seq);
    ar_model_free(e.m);
}

/* ---- 5. llama.cpp's speculative-simple ------------------------------------------------------------- */

static char *capture(const char *cmd, size_t *len)
{
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int st = pclose(p);
    if (!buf || st != 0) { free(buf); return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

static void spec_simple(const char *label, const char *target, const char *draft, const char *text, int n_gen)
{
    ar_model *m = load(target, draft);
    if (!m) return;
    int32_t *ids = NULL;
    size_t n = 0;
    ar_error err = { 0 };
    int rc = ar_model_tokenize(m, text, strlen(text), true, &ids, &n, &err);
    CHECK(rc == 0, "tokenize: %s", err.msg);
    run r = { 0 };
    ar_session *s = session(m, 16, 512, 0, NULL);
    if (!rc && s) gen_call(s, ids, (int)n, n_gen, &r);
    ar_session_free(s);
    /* arbor's generated bytes up to (not including) an end-of-generation token, as llama.cpp prints them */
    char mine[16384];
    size_t ml = 0;
    for (int i = 0; i < r.n && i < 1024; i++) {
        if (ar_model_token_is_eog(m, r.ids[i])) break;
        ml += ar_token_to_bytes(ar_model_vocab(m), r.ids[i], true, mine + ml, sizeof mine - ml);
    }
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' -m '%s' -md '%s' -p '%s' --spec-type draft-dflash --spec-draft-n-max 15 -n %d "
             "--temp 0 --top-k 1 -t 1 -c 512 -fit off -fa off -ctk f32 -ctv f32 2>'%s/spec-%s.log'", g_spec, target, draft,
             text, n_gen, g_tmp, label);
    size_t ll = 0;
    char *out = capture(cmd, &ll);
    CHECK(out != NULL, "llama-speculative-simple failed: %s", cmd);
    if (out) {
        /* stdout: "\n\n" + prompt + generated text + "\n\n" */
        const char *gen = out;
        size_t gl = ll;
        const char *at = strstr(out, text);
        if (at) { gen = at + strlen(text); gl = ll - (size_t)(gen - out); }
        bool eog_stop = r.n < n_gen;
        size_t same = 0;
        while (same < ml && same < gl && mine[same] == gen[same]) same++;
        bool ok = at && same == ml && (eog_stop ? gl - ml <= 4 : gl >= ml);
        printf("ok %-14s llama.cpp speculative-simple (T=0, 15 drafts) vs arbor DFlash block 16: %d tokens, %zu of "
               "%zu bytes of text equal\n", label, r.n, same, ml);
        CHECK(ok, "%s: arbor's speculative text differs from llama.cpp's at byte %zu of %zu (llama.cpp printed %zu)", label,
              same, ml, gl);
        free(out);
    }
    free(ids);
    ar_model_free(m);
}

/* ---- main ---------------------------------------------------------------------------------------- */

int main(void)
{
    ar_log_level = AR_LOG_WARN;
    const bool san = test_sanitized();
    char fixture[4096];
    snprintf(fixture, sizeof fixture, "%s/tiny-f32.gguf", test_fixtures());
    g_arbor = env_or("ARBOR_BIN", "build/arbor");
    const char *oracle = env_or("ARBOR_ORACLE", "build/oracle/llama_oracle");
    const char *slash = strrchr(oracle, '/');
    snprintf(g_spec, sizeof g_spec, "%.*s%sllama-speculative-simple", slash ? (int)(slash - oracle) : 0, oracle,
             slash ? "/" : "");
    const char *sp_env = getenv("ARBOR_SPEC_SIMPLE");
    if (sp_env && *sp_env) snprintf(g_spec, sizeof g_spec, "%s", sp_env);
    bool have_fixture = access(fixture, R_OK) == 0, have_arbor = access(g_arbor, X_OK) == 0,
         have_spec = access(g_spec, X_OK) == 0;
    CHECK(have_fixture, "fixture %s missing: run scripts/fixtures.sh", fixture);
    CHECK(have_arbor, "arbor binary %s missing (set ARBOR_BIN)", g_arbor);
    CHECK(have_spec, "llama.cpp speculative-simple %s missing: run scripts/oracle.sh (or set ARBOR_SPEC_SIMPLE)", g_spec);
    if (!have_fixture || !have_arbor) TEST_END();
    snprintf(g_tmp, sizeof g_tmp, "/tmp/arbor-test-chain-XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL, "mkdtemp failed");
    const double t_start = ar_now();

    char p_df[600], p_mt[600], p_md[600], p_st[600];
    char args[5000];
    snprintf(args, sizeof args, "--target '%s' --seed 3", fixture);
    const char *DF = make_file("mkdraft", "tiny-draft", args, p_df, sizeof p_df);
    /* a small untied target (less repetitive greedy text) and its drafter */
    const char *MT = make_file("mkmodel", "micro", "--untied --seed 7 --n-embd 64 --n-ff 128 --vocab small:512 --n-head 2 --n-head-kv 1 "
                               "--head-dim 32 --gdn-k-heads 1 --gdn-v-heads 2 --gdn-head-dim 32", p_mt,
                               sizeof p_mt);
    const char *MD = NULL;
    if (MT) {
        snprintf(args, sizeof args, "--target '%s' --seed 11 --n-head 2 --n-head-kv 1 --head-dim 32 --n-ff 128", MT);
        MD = make_file("mkdraft", "micro-draft", args, p_md, sizeof p_md);
    }
    /* the statistics model: 300 tokens, 64 wide, 2 layers (GDN + attention) */
    const char *ST = make_file("mkmodel", "stat",
                               "--untied --seed 21 --n-embd 64 --n-ff 128 --n-layer 2 --full-attn-interval 2 "
                               "--vocab small:300 --n-head 2 --n-head-kv 1 --head-dim 32 --gdn-k-heads 1 "
                               "--gdn-v-heads 2 --gdn-head-dim 32", p_st, sizeof p_st);

    /* prompts long enough to cross several KV pages */
    int32_t prompt[24];
    for (int i = 0; i < 24; i++) prompt[i] = (int32_t)((i * 613 + 97) % 509);

    static const int all_blocks[] = { 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16 };
    static const int few_blocks[] = { 2, 16 };
    if (MT && MD) {
        ar_model *m = load(MT, MD);
        if (m) {
            double t = ar_now();
            t0_matrix("micro-untied", m, prompt, 24, san ? 64 : 256, all_blocks, san ? 4 : 15, 8);
            printf("   (%.1f s)\n", ar_now() - t);
            t = ar_now();
            stop_rules(m, prompt, 24);
            printf("   (%.1f s)\n", ar_now() - t);
            t = ar_now();
            seeded(m, prompt, 24, san ? 64 : 256);
            printf("   (%.1f s)\n", ar_now() - t);
            ar_model_free(m);
        }
    }
    if (DF) {
        ar_model *m = load(fixture, DF);
        if (m) {
            double t = ar_now();
            t0_matrix("tiny-f32", m, prompt, 21, san ? 32 : 256, few_blocks, 2, 4);
            printf("   (%.1f s)\n", ar_now() - t);
            ar_model_free(m);
        }
    }
    if (ST) statistics(ST);
    if (have_spec && DF) spec_simple("tiny-f32", fixture, DF, "Here is a quick sort implementation in C++", 64);
    if (have_spec && MT && MD) spec_simple("micro-untied", MT, MD, "Once upon a time, in a small village", 64);

    printf("test_chain took %.1f s\n", ar_now() - t_start);
    char cmd[400];
    if (!test_failed) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
        sh(cmd);
    } else {
        printf("files kept in %s\n", g_tmp);
    }
    TEST_END();
}
