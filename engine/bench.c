/* engine/bench.c — the timed runs behind `arbor bench` (see engine/bench.h).
 *
 * Owns one qwen35_ctx, one qwen35_seq and the node / path / logits buffers, all sized at creation so
 * the timed loops allocate nothing. Each timed run starts from a known state: pp and tg reset the
 * sequence first (outside the timer, like llama-bench's cache clear); verify runs on a prefix made
 * once by bench_verify_prefix, which its forwards never modify (qwen35_forward does not touch
 * committed state). Timing is wall clock (ar_now) around forward (+ commit), nothing else. */
#include "engine/bench.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/pool.h"
#include "base/timer.h"
#include "engine/generate.h"

struct bench {
    const qwen35_model *m;
    qwen35_ctx *ctx;
    qwen35_seq *seq;
    int max_nodes, max_logits, n_vocab;
    ar_node *nodes;     /* [max_nodes] */
    int *path;          /* [max_nodes] = 0, 1, 2, ... */
    float *logits;      /* [max_logits][n_vocab] */
    uint64_t rng;       /* xorshift64 state, never 0 */
};

static int32_t random_token(bench *b)
{
    b->rng ^= b->rng << 13;
    b->rng ^= b->rng >> 7;
    b->rng ^= b->rng << 17;
    return (int32_t)(b->rng % (uint64_t)b->n_vocab);
}

int bench_create(bench **out, const qwen35_model *m, int max_nodes, int n_ctx, int max_logits,
                 int n_threads, uint64_t seed, ar_error *err)
{
    *out = NULL;
    if (max_nodes < 1 || n_ctx < 1 || max_logits < 1)
        return ar_fail(err, AR_EINVAL, "bench: max_nodes (%d), n_ctx (%d) and max_logits (%d) must be >= 1",
                       max_nodes, n_ctx, max_logits);
    if (max_logits > max_nodes) max_logits = max_nodes;
    bench *b = calloc(1, sizeof *b);
    if (!b) return ar_fail(err, AR_ENOMEM, "bench: out of memory");
    b->m = m;
    b->max_nodes = max_nodes;
    b->max_logits = max_logits;
    b->n_vocab = qwen35_hparams_of(m)->n_vocab;
    b->rng = seed ? seed : 0x9E3779B97F4A7C15ull;

    int rc = qwen35_ctx_create(&b->ctx, m, max_nodes, n_threads, err);
    if (rc == AR_OK) rc = qwen35_seq_create(&b->seq, m, n_ctx, err);
    if (rc != AR_OK) { bench_free(b); return rc; }
    b->nodes = calloc((size_t)max_nodes, sizeof *b->nodes);
    b->path = malloc((size_t)max_nodes * sizeof *b->path);
    b->logits = malloc((size_t)max_logits * (size_t)b->n_vocab * sizeof *b->logits);
    if (!b->nodes || !b->path || !b->logits) {
        int n_vocab = b->n_vocab;
        bench_free(b);
        return ar_fail(err, AR_ENOMEM, "bench: out of memory for %d logit rows of %d", max_logits, n_vocab);
    }
    for (int i = 0; i < max_nodes; i++) b->path[i] = i;
    *out = b;
    return AR_OK;
}

void bench_free(bench *b)
{
    if (!b) return;
    qwen35_seq_free(b->seq);
    qwen35_ctx_free(b->ctx);
    free(b->nodes);
    free(b->path);
    free(b->logits);
    free(b);
}

/* Fill nodes[0..n) with a chain of random tokens after the sequence's committed prefix. */
static void make_chain(bench *b, int n, int pos0, bool all_logits, bool last_logits, bool commit)
{
    for (int i = 0; i < n; i++)
        b->nodes[i] = (ar_node){ .seq = 0, .token = random_token(b), .pos = pos0 + i, .parent = i - 1,
                                 .want_logits = all_logits || (last_logits && i == n - 1), .commit = commit };
}

/* Evaluate and commit n tokens as a chain in chunks of max_nodes; logits for the last one only if asked. */
static int eval_chain(bench *b, int n, bool last_logits, ar_error *err)
{
    for (int done = 0; done < n;) {
        int k = n - done < b->max_nodes ? n - done : b->max_nodes;
        make_chain(b, k, qwen35_seq_n_past(b->seq), false, last_logits && done + k == n, true);
        ar_batch batch = { .n_nodes = k, .nodes = b->nodes, .logits = b->logits };
        int rc = qwen35_forward(b->ctx, &b->seq, &batch, err);
        if (rc == AR_OK) rc = qwen35_commit(b->ctx, b->seq, b->path, k, err);
        if (rc != AR_OK) return rc;
        done += k;
    }
    return AR_OK;
}

static int check_fits(bench *b, int n, const char *what, ar_error *err)
{
    if (n < 1) return ar_fail(err, AR_EINVAL, "bench: %s needs at least 1 token (got %d)", what, n);
    if (n > qwen35_seq_n_ctx(b->seq))
        return ar_fail(err, AR_ERANGE, "bench: %s of %d tokens does not fit the bench context of %d",
                       what, n, qwen35_seq_n_ctx(b->seq));
    return AR_OK;
}

int bench_pp(bench *b, int n_tokens, double *seconds, ar_error *err)
{
    int rc = check_fits(b, n_tokens, "prompt processing", err);
    if (rc != AR_OK) return rc;
    qwen35_seq_reset(b->seq);
    double t0 = ar_now();
    rc = eval_chain(b, n_tokens, true, err);
    *seconds = ar_now() - t0;
    return rc;
}

int bench_tg(bench *b, int n_tokens, double *seconds, ar_error *err)
{
    int rc = check_fits(b, n_tokens, "generation", err);
    if (rc != AR_OK) return rc;
    qwen35_seq_reset(b->seq);
    double t0 = ar_now();
    for (int i = 0; i < n_tokens && rc == AR_OK; i++) {
        make_chain(b, 1, i, true, true, true);
        ar_batch batch = { .n_nodes = 1, .nodes = b->nodes, .logits = b->logits };
        rc = qwen35_forward(b->ctx, &b->seq, &batch, err);
        if (rc == AR_OK) rc = qwen35_commit(b->ctx, b->seq, b->path, 1, err);
    }
    *seconds = ar_now() - t0;
    return rc;
}

int bench_verify_prefix(bench *b, int depth, ar_error *err)
{
    qwen35_seq_reset(b->seq);
    if (depth <= 0) return AR_OK;
    int rc = check_fits(b, depth, "the verify prefix", err);
    return rc != AR_OK ? rc : eval_chain(b, depth, false, err);
}

int bench_verify(bench *b, int m, double *seconds, ar_error *err)
{
    if (m < 1 || m > b->max_logits)
        return ar_fail(err, AR_EINVAL, "bench: verify batch of %d nodes is outside [1, %d]", m, b->max_logits);
    int past = qwen35_seq_n_past(b->seq);
    int rc = check_fits(b, past + m, "the verify prefix + batch", err);
    if (rc != AR_OK) return rc;
    make_chain(b, m, past, true, true, false);   /* verify: not committed */
    ar_batch batch = { .n_nodes = m, .nodes = b->nodes, .logits = b->logits };
    double t0 = ar_now();
    rc = qwen35_forward(b->ctx, &b->seq, &batch, err);
    *seconds = ar_now() - t0;
    return rc;
}

/* ---- model figures ------------------------------------------------------------------------------ */

/* Layer index of a "blk.N.*" tensor name, or -1. */
static int block_of(const char *name)
{
    if (strncmp(name, "blk.", 4)) return -1;
    char *end;
    long l = strtol(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && l >= 0 && l < 1L << 30 ? (int)l : -1;
}

void bench_model_describe(const qwen35_model *m, bench_model_info *out)
{
    const qwen35_hparams *hp = qwen35_hparams_of(m);
    const gguf_file *g = qwen35_gguf(m);
    memset(out, 0, sizeof *out);
    enum { N_TYPES = 64 };
    uint64_t by_type[N_TYPES] = { 0 };
    for (int64_t i = 0; i < gguf_n_tensors(g); i++) {
        const gguf_tensor *t = gguf_tensor_at(g, i);
        out->file_bytes += t->nbytes;
        out->n_params += t->n_elements;
        int l = block_of(t->name);
        if (l >= 0) {
            if (l >= hp->n_layer) continue;             /* MTP block: loaded, never run */
            out->bytes_per_token += t->nbytes;
            if (t->n_dims >= 2 && t->type >= 0 && t->type < N_TYPES) by_type[t->type] += t->nbytes;
        } else if (!strcmp(t->name, "token_embd.weight")) {
            int64_t rows = t->ne[1] > 0 ? t->ne[1] : 1;
            out->bytes_per_token += t->nbytes / (uint64_t)rows;   /* the row of the token */
            if (hp->tied_output) out->bytes_per_token += t->nbytes; /* ... and all of it as the LM head */
        } else {
            out->bytes_per_token += t->nbytes;          /* output.weight, output_norm.weight, ... */
        }
    }
    out->main_type = 0;
    for (int t = 1; t < N_TYPES; t++)
        if (by_type[t] > by_type[out->main_type]) out->main_type = t;
}

/* ---- memory bandwidth ---------------------------------------------------------------------------- */

typedef struct bw_task {
    const uint64_t *buf;
    long n_words;
    uint64_t sums[256];     /* per thread, so the reads cannot be optimised away */
} bw_task;

static void bw_touch(void *p, int ith, int nth)
{
    bw_task *t = p;
    long lo, hi;
    ar_split_range(t->n_words, 64, ith, nth, &lo, &hi);
    uint64_t *w = (uint64_t *)t->buf;
    for (long i = lo; i < hi; i++) w[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull;
}

static void bw_read(void *p, int ith, int nth)
{
    bw_task *t = p;
    long lo, hi;
    ar_split_range(t->n_words, 64, ith, nth, &lo, &hi);
    const uint64_t *w = t->buf;
    /* eight independent accumulators: the loop is bound by loads, not by an add chain */
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
    long i = lo;
    for (; i + 8 <= hi; i += 8) {
        a0 += w[i];     a1 += w[i + 1]; a2 += w[i + 2]; a3 += w[i + 3];
        a4 += w[i + 4]; a5 += w[i + 5]; a6 += w[i + 6]; a7 += w[i + 7];
    }
    for (; i < hi; i++) a0 += w[i];
    if (ith < 256) t->sums[ith] = a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
}

double bench_mem_bandwidth(int n_threads, size_t bytes, int runs)
{
    long n_words = (long)(bytes / sizeof(uint64_t));
    if (n_words < 64 || runs < 1) return -1.0;
    bw_task *t = calloc(1, sizeof *t);
    uint64_t *buf = malloc((size_t)n_words * sizeof *buf);
    ar_pool *pool = ar_pool_create(n_threads);
    if (!t || !buf || !pool) { free(t); free(buf); ar_pool_free(pool); return -1.0; }
    t->buf = buf;
    t->n_words = n_words;
    ar_pool_run(pool, bw_touch, t);          /* fault every page in before timing */
    double best = 0.0;
    for (int r = 0; r < runs; r++) {
        double t0 = ar_now();
        ar_pool_run(pool, bw_read, t);
        double dt = ar_now() - t0;
        double gbs = dt > 0 ? (double)n_words * sizeof(uint64_t) / dt / 1e9 : 0.0;
        if (gbs > best) best = gbs;
    }
    ar_pool_free(pool);
    free(buf);
    free(t);
    return best;
}

/* ---- statistics ------------------------------------------------------------------------------------ */

void bench_stats(const double *v, int n, bench_stat *out)
{
    memset(out, 0, sizeof *out);
    out->n = n;
    if (n < 1) return;
    double s = 0;
    out->min = out->max = v[0];
    for (int i = 0; i < n; i++) {
        s += v[i];
        if (v[i] < out->min) out->min = v[i];
        if (v[i] > out->max) out->max = v[i];
    }
    out->mean = s / n;
    if (n > 1) {
        double s2 = 0;
        for (int i = 0; i < n; i++) s2 += (v[i] - out->mean) * (v[i] - out->mean);
        out->sd = sqrt(s2 / (n - 1));
    }
}

/* ---- speculative decoding comparison ---------------------------------------------------------------- */

typedef struct spec_tokens {
    int32_t *ids;   /* [cap] */
    int n, cap;
} spec_tokens;

static bool collect_token(void *user, int32_t token, const char *piece, size_t len)
{
    (void)piece;
    (void)len;
    spec_tokens *t = user;
    if (token >= 0 && t->n < t->cap) t->ids[t->n++] = token;
    return false;
}

static const char *spec_mode_name(const bench_spec_mode *md, char *buf, size_t cap)
{
    if (md->kind == BENCH_SPEC_PLAIN) snprintf(buf, cap, "plain");
    else if (md->kind == BENCH_SPEC_CHAIN) snprintf(buf, cap, "chain");
    else if (md->budget < 0) snprintf(buf, cap, "ddtree budget auto");
    else snprintf(buf, cap, "ddtree budget %d", md->budget);
    return buf;
}

/* n seeded random ids of the vocabulary, none ending generation (the prompt is not a finished turn). */
static int spec_prompt(const ar_model *m, int n, uint64_t seed, int32_t *out, ar_error *err)
{
    const int32_t n_vocab = ar_model_n_vocab(m);
    uint64_t x = seed ? seed : 0x9E3779B97F4A7C15ull;
    for (int i = 0; i < n; i++) {
        int32_t id = -1;
        for (int tries = 0; tries < 1000 && id < 0; tries++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            id = (int32_t)(x % (uint64_t)n_vocab);
            if (ar_model_token_is_eog(m, id)) id = -1;
        }
        if (id < 0) return ar_fail(err, AR_EINVAL, "bench: no token of the vocabulary (%d) is usable in a prompt", n_vocab);
        out[i] = id;
    }
    return AR_OK;
}

/* One mode: a fresh session, one warm-up and p->reps timed generations; ref (plain's tokens) NULL for plain
 * itself, whose warm-up tokens then become ref. */
static int spec_mode_run(ar_model *m, const bench_spec_params *p, const int32_t *prompt, int mode_ix,
                         const bench_spec_mode *md, spec_tokens *ref, spec_tokens *got, double *tps,
                         bench_spec_row *row, const bench_spec_hooks *hooks, ar_error *err)
{
    char name[64];
    spec_mode_name(md, name, sizeof name);
    ar_session_params sp = ar_session_defaults();
    /* room for the prompt, the generation and a block of verification nodes past them (rounds are cut by
     * the context; never cut here) */
    sp.n_ctx = p->n_prompt + p->n_gen + 2 * AR_DRAFT_MAX_BLOCK;
    sp.sampling.temp = 0.0f;
    sp.sampling.seed = 1;
    sp.draft_block = md->kind == BENCH_SPEC_PLAIN ? 1 : p->draft_block;
    sp.draft_budget = md->kind == BENCH_SPEC_TREE ? md->budget : 0;
    ar_session *s = NULL;
    int rc = ar_session_create(&s, m, &sp, err);
    if (rc != AR_OK) {
        ar_error inner = *err;
        return ar_fail(err, rc, "bench %s: %s", name, inner.msg);
    }
    memset(row, 0, sizeof *row);
    row->mode = *md;
    row->block = ar_session_draft_block(s);
    row->identical = true;
    row->first_diff = -1;
    double steps = 0, step_tokens = 0, drafted = 0, accepted = 0, draft_s = 0, verify_s = 0, commit_s = 0, gen_s = 0;
    for (int r = -1; r < p->reps; r++) {
        if (hooks && hooks->on_run) hooks->on_run(hooks->user, mode_ix, r);
        ar_session_reset(s);
        spec_tokens *out = md->kind == BENCH_SPEC_PLAIN && r < 0 ? ref : got;
        out->n = 0;
        ar_gen_stats gs;
        rc = ar_generate(s, prompt, p->n_prompt, p->n_gen, collect_token, out, &gs, err);
        if (rc != AR_OK) {
            ar_error inner = *err;
            rc = ar_fail(err, rc, "bench %s: %s", name, inner.msg);
            break;
        }
        if (out != ref && row->identical) {
            int n = out->n < ref->n ? out->n : ref->n, d = 0;
            while (d < n && out->ids[d] == ref->ids[d]) d++;
            if (d < n || out->n != ref->n) { row->identical = false; row->first_diff = d; }
        }
        if (r < 0) { row->n_gen = gs.n_gen; continue; }
        tps[r] = gs.gen_s > 0 ? gs.n_gen / gs.gen_s : 0.0;
        gen_s += gs.gen_s;
        if (md->kind == BENCH_SPEC_PLAIN) {
            steps += gs.n_gen > 1 ? gs.n_gen - 1 : 0;
            step_tokens += gs.n_gen > 1 ? gs.n_gen - 1 : 0;
        } else {
            steps += gs.n_steps;
            step_tokens += gs.n_step_tokens;
            drafted += gs.n_drafted;
            accepted += gs.n_accepted;
            draft_s += gs.draft_s;
            verify_s += gs.verify_s;
            commit_s += gs.commit_s;
        }
    }
    ar_session_free(s);
    if (rc != AR_OK) return rc;
    bench_stats(tps, p->reps, &row->tps);
    row->steps = steps / p->reps;
    if (steps > 0) {
        row->accept_len = step_tokens / steps;
        row->drafted_per_step = drafted / steps;
        row->draft_ms = 1e3 * draft_s / steps;
        row->verify_ms = 1e3 * verify_s / steps;
        row->commit_ms = 1e3 * commit_s / steps;
        row->step_ms = 1e3 * gen_s / steps;
    }
    row->accepted_frac = drafted > 0 ? accepted / drafted : 0.0;
    return AR_OK;
}

int bench_spec_compare(ar_model *m, const bench_spec_params *p, const bench_spec_mode *modes, int n_modes,
                       bench_spec_row *rows, const bench_spec_hooks *hooks, ar_error *err)
{
    if (!ar_model_has_draft(m))
        return ar_fail(err, AR_EINVAL, "bench: speculative decoding needs a drafter (ar_model_load_draft)");
    if (n_modes < 1 || modes[0].kind != BENCH_SPEC_PLAIN)
        return ar_fail(err, AR_EINVAL, "bench: the first mode must be plain decoding (the reference)");
    if (p->n_prompt < 1 || p->n_gen < 1 || p->reps < 1)
        return ar_fail(err, AR_EINVAL, "bench: prompt tokens (%d), generated tokens (%d) and repetitions (%d) must be >= 1",
                       p->n_prompt, p->n_gen, p->reps);
    if (p->draft_block != 0 && (p->draft_block < 2 || p->draft_block > AR_DRAFT_MAX_BLOCK))
        return ar_fail(err, AR_EINVAL, "bench: speculative block %d: must be 2..%d (0: the drafter's)", p->draft_block,
                       AR_DRAFT_MAX_BLOCK);
    for (int i = 0; i < n_modes; i++)
        if (modes[i].kind < BENCH_SPEC_PLAIN || modes[i].kind > BENCH_SPEC_TREE ||
            (modes[i].kind == BENCH_SPEC_TREE && (modes[i].budget == 0 || modes[i].budget < -1)))
            return ar_fail(err, AR_EINVAL, "bench: mode %d is not plain, chain or a tree of >= 1 nodes (or auto)", i);

    int32_t *prompt = malloc((size_t)p->n_prompt * sizeof *prompt);
    spec_tokens ref = { malloc((size_t)p->n_gen * sizeof(int32_t)), 0, p->n_gen };
    spec_tokens got = { malloc((size_t)p->n_gen * sizeof(int32_t)), 0, p->n_gen };
    double *tps = malloc((size_t)p->reps * sizeof *tps);
    int rc = AR_OK;
    if (!prompt || !ref.ids || !got.ids || !tps)
        rc = ar_fail(err, AR_ENOMEM, "bench: out of memory for %d prompt and %d generated tokens", p->n_prompt, p->n_gen);
    if (rc == AR_OK) rc = spec_prompt(m, p->n_prompt, p->seed, prompt, err);
    for (int i = 0; i < n_modes && rc == AR_OK; i++) {
        rc = spec_mode_run(m, p, prompt, i, &modes[i], &ref, &got, tps, &rows[i], hooks, err);
        if (rc == AR_OK && hooks && hooks->on_row) hooks->on_row(hooks->user, i, &rows[i]);
    }
    free(prompt);
    free(ref.ids);
    free(got.ids);
    free(tps);
    return rc;
}
