/* engine/generate.c — generation on top of the qwen35 node-batch model: ar_model / ar_session /
 * ar_generate of include/arbor.h, plain or speculative (a DFlash drafter with chain verification,
 * spec/chain.h, or DDTree verification, spec/tree_verify.h).
 *
 * Flow of ar_generate: [pending token] + prompt are evaluated as one chain in chunks of max_batch
 * nodes and committed; then each step samples a token from the last logits, streams its text, and
 * (unless generation stops there) evaluates it as one node whose parent is the committed prefix
 * and commits it. The last sampled token stays `pending` (in the context, not evaluated) so that a
 * stop never costs a forward; the next call evaluates it first. Nothing is allocated per token.
 *
 * Speculative sessions (a drafter attached to the model, or a source set by ar_session_set_draft):
 * every committed forward also captures the drafter's tap features and feeds the committed positions to
 * the session's draft source (ar_chain_prefill / ar_ddtree_prefill), and instead of one node per step
 * each step is a round of the session's verifier: the pending token is the anchor, and either a chain
 * of drafts (spec/chain.h, draft_budget 0) or a DDTree of draft nodes (spec/tree_verify.h, draft_budget
 * N or auto) is verified in one forward; the tokens the sampler walks through are committed at once.
 * The two verifiers have the same contract (state between rounds, prefill, round arguments), so the
 * engine only picks which one to call. Every path shares emit_token (streaming and the stop rules), and
 * the sampler sees exactly the same calls in all of them, so the output is the same. */
#include "engine/generate.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/timer.h"
#include "compute/ops.h"

/* ---- model ---------------------------------------------------------------------------------- */

ar_model_params ar_model_defaults(void)
{
    return (ar_model_params){ .n_threads = 0, .max_batch = 512, .prefault = true };
}

/* Touch every page of the weights so the first forward does not stall on disk reads. */
static void prefault(const gguf_file *f)
{
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    uint64_t total = 0, done = 0, next_report = 0;
    int64_t nt = gguf_n_tensors(f);
    for (int64_t i = 0; i < nt; i++) total += gguf_tensor_at(f, i)->nbytes;
    for (int64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (!t->data || !t->nbytes) continue;
        uintptr_t a = (uintptr_t)t->data, a0 = a & ~(uintptr_t)(pg - 1);
        madvise((void *)a0, (size_t)(a + t->nbytes - a0), MADV_WILLNEED);
        volatile const unsigned char *p = t->data;
        unsigned char sink = 0;
        for (uint64_t off = 0; off < t->nbytes; off += (uint64_t)pg) sink ^= p[off];
        (void)sink;
        done += t->nbytes;
        if (done >= next_report || i == nt - 1) {
            ar_progress("loading weights", done, total);
            next_report = done + total / 50;
        }
    }
}

int ar_model_load(ar_model **out, const char *path, const ar_model_params *p, ar_error *err)
{
    *out = NULL;
    ar_model_params d = ar_model_defaults();
    if (!p) p = &d;
    ar_model *m = calloc(1, sizeof *m);
    if (!m) return ar_fail(err, AR_ENOMEM, "out of memory loading %s", path);
    int rc = qwen35_load(&m->qm, path, err);
    if (rc) goto fail;
    rc = ar_vocab_load(&m->vocab, qwen35_gguf(m->qm), err);
    if (rc) { ar_error_prefix(err, "%s: tokenizer: ", path); goto fail; }
    if (p->prefault) prefault(qwen35_gguf(m->qm));
    qwen35_set_kv_f32(m->qm, p->kv_f32);
    int max_batch = p->max_batch > 0 ? p->max_batch : 512;
    m->n_threads = p->n_threads;
    m->draft_swa_lucebox = p->draft_swa_lucebox;
    rc = qwen35_ctx_create(&m->ctx, m->qm, max_batch, p->n_threads, err);
    if (rc) goto fail;
    m->max_batch = qwen35_ctx_max_nodes(m->ctx);
    m->nodes = calloc((size_t)m->max_batch, sizeof *m->nodes);
    m->path = malloc((size_t)m->max_batch * sizeof *m->path);
    if (!m->nodes || !m->path) { rc = ar_fail(err, AR_ENOMEM, "out of memory loading %s", path); goto fail; }
    for (int i = 0; i < m->max_batch; i++) m->path[i] = i;
    *out = m;
    return 0;
fail:
    ar_model_free(m);
    return rc;
}

void ar_model_free(ar_model *m)
{
    if (!m) return;
    dflash_ctx_free(m->draft_ctx);
    dflash_free(m->draft);
    free(m->nodes);
    free(m->path);
    qwen35_ctx_free(m->ctx);
    ar_vocab_free(m->vocab);
    qwen35_free(m->qm);
    free(m);
}

int32_t ar_model_n_vocab(const ar_model *m) { return qwen35_hparams_of(m->qm)->n_vocab; }
int     ar_model_n_ctx_train(const ar_model *m) { return qwen35_hparams_of(m->qm)->n_ctx_train; }
const ar_vocab *ar_model_vocab(const ar_model *m) { return m->vocab; }
bool    ar_model_token_is_eog(const ar_model *m, int32_t id) { return ar_token_is_eog(m->vocab, id); }

int ar_model_tokenize(const ar_model *m, const char *text, size_t len, bool parse_special, int32_t **ids,
                      size_t *n_ids, ar_error *err)
{
    *ids = NULL;
    *n_ids = 0;
    int32_t *t = NULL;
    size_t n = 0;
    int rc = ar_tokenize(m->vocab, text, len, parse_special, &t, &n, err);
    if (rc) return rc;
    int32_t bos = ar_vocab_bos(m->vocab);
    if (ar_vocab_add_bos(m->vocab) && bos >= 0 && (n == 0 || t[0] != bos)) {
        int32_t *u = realloc(t, (n + 1) * sizeof *u);
        if (!u) { free(t); return ar_fail(err, AR_ENOMEM, "out of memory tokenizing"); }
        memmove(u + 1, u, n * sizeof *u);
        u[0] = bos;
        t = u;
        n++;
    }
    *ids = t;
    *n_ids = n;
    return 0;
}

int ar_model_load_draft(ar_model *m, const char *path, ar_error *err)
{
    if (m->draft) return ar_fail(err, AR_EINVAL, "%s: the model already has a drafter", path);
    int rc = dflash_load(&m->draft, path, m->qm, err);
    if (rc) return rc;
    const dflash_hparams *hp = dflash_hparams_of(m->draft);
    ar_log(AR_LOG_INFO, "drafter %s: %s layout, %d layers, block %d, %d tap layers, rope theta %g", path,
           dflash_layout(m->draft), hp->n_layer, hp->block_size, hp->n_tap, (double)hp->rope_theta);
    /* rows: the longest block, and the chunk of prompt features appended at once */
    rc = dflash_ctx_create(&m->draft_ctx, m->draft, AR_DRAFT_MAX_BLOCK, m->n_threads, err);
    if (!rc) dflash_ctx_set_swa_mode(m->draft_ctx, m->draft_swa_lucebox ? DFLASH_SWA_LUCEBOX : DFLASH_SWA_LLAMACPP);
    if (rc) {
        dflash_free(m->draft);
        m->draft = NULL;
    }
    return rc;
}

bool ar_model_has_draft(const ar_model *m) { return m->draft != NULL; }

const char *ar_cpu_kernels(void) { return ar_compute_isa(); }

/* ---- session -------------------------------------------------------------------------------- */

ar_session_params ar_session_defaults(void)
{
    return (ar_session_params){ .n_ctx = 4096, .sampling = ar_sampler_defaults(), .special = false,
                                .draft_block = 0, .kv_page = 0, .draft_budget = 0, .draft_top_k = 0,
                                .draft_chain_seed = false };
}

/* Speculative decoding with src (owned by the session on success): a chain verifier, or a DDTree one
 * when the session has a draft budget. */
static int attach_source(ar_session *s, ar_draft_source *src, ar_error *err)
{
    if (src->block > AR_DRAFT_MAX_BLOCK)
        return ar_fail(err, AR_EINVAL, "speculative block of %d tokens: at most %d", src->block, AR_DRAFT_MAX_BLOCK);
    ar_chain *chain = NULL;
    ar_ddtree *tree = NULL;
    int rc;
    if (s->draft_budget != 0) {
        /* auto considers budgets up to min(256, max_batch - 1): the whole tree is one forward */
        const int max_budget = s->m->max_batch - 1 < 256 ? s->m->max_batch - 1 : 256;
        if (max_budget < 1)
            return ar_fail(err, AR_EINVAL, "DDTree needs forwards of at least 2 nodes, but the model's batch is %d "
                           "(raise the batch size)", s->m->max_batch);
        ar_ddtree_params dp = ar_ddtree_defaults();
        dp.budget = s->draft_budget > 0 ? s->draft_budget : 0;
        dp.max_budget = max_budget;
        dp.top_k = s->draft_top_k;
        dp.chain_seed = s->draft_chain_seed;
        rc = ar_ddtree_create(&tree, s->m->qm, s->m->ctx, src, &dp, err);
    } else {
        rc = ar_chain_create(&chain, s->m->qm, s->m->ctx, src, err);
    }
    if (rc) return rc;
    ar_chain_free(s->chain);
    ar_ddtree_free(s->tree);
    ar_draft_free(s->src);
    s->chain = chain;
    s->tree = tree;
    s->src = src;
    return 0;
}

int ar_session_create(ar_session **out, ar_model *m, const ar_session_params *p, ar_error *err)
{
    *out = NULL;
    ar_session_params d = ar_session_defaults();
    if (!p) p = &d;
    int n_train = ar_model_n_ctx_train(m);
    int n_ctx = p->n_ctx;
    if (n_ctx <= 0) n_ctx = n_train > 0 && n_train < 4096 ? n_train : 4096;
    else if (n_train > 0 && n_ctx > n_train)
        ar_log(AR_LOG_WARN, "context %d is longer than the model's training context %d", n_ctx, n_train);
    if (m->draft && p->draft_block != 1 && (p->draft_block < 0 || p->draft_block > AR_DRAFT_MAX_BLOCK))
        return ar_fail(err, AR_EINVAL, "speculative block of %d tokens: must be 2..%d (0: the drafter's, 1: off)",
                       p->draft_block, AR_DRAFT_MAX_BLOCK);
    if (p->draft_budget < -1)
        return ar_fail(err, AR_EINVAL, "DDTree budget %d: must be >= 1 draft nodes, -1 (auto) or 0 (chain)",
                       p->draft_budget);
    if (p->draft_top_k < 0 || p->draft_top_k > AR_DRAFT_MAX_K)
        return ar_fail(err, AR_EINVAL, "DDTree top-k %d: must be 1..%d (0: the budget, at most %d)", p->draft_top_k,
                       AR_DRAFT_MAX_K, AR_DRAFT_MAX_K);
    if (m->draft && p->draft_block == 1 && p->draft_budget != 0)
        return ar_fail(err, AR_EINVAL, "a DDTree budget needs speculative decoding, but draft_block 1 turns it off");

    ar_session *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory creating a session");
    s->m = m;
    s->special = p->special;
    s->pending = -1;
    s->draft_budget = p->draft_budget;
    s->draft_top_k = p->draft_top_k;
    s->draft_chain_seed = p->draft_chain_seed;
    int rc = qwen35_seq_create_paged(&s->seq, m->qm, n_ctx, p->kv_page, err);
    if (rc) goto fail;
    s->n_ctx = qwen35_seq_n_ctx(s->seq);
    ar_sampler_params sp = p->sampling;
    if (sp.repeat_last_n < 0) sp.repeat_last_n = s->n_ctx;
    rc = ar_sampler_create(&s->sampler, &sp, ar_model_n_vocab(m), err);
    if (rc) goto fail;
    s->logits = malloc((size_t)ar_model_n_vocab(m) * sizeof *s->logits);
    s->piece_cap = 3 * ar_vocab_max_piece(m->vocab) + 16;
    s->piece = malloc(s->piece_cap);
    if (!s->logits || !s->piece) { rc = ar_fail(err, AR_ENOMEM, "out of memory creating a session"); goto fail; }
    if (m->draft && p->draft_block != 1) {
        ar_draft_source *src = NULL;
        /* the chain reads only the top-1 chain; a tree takes up to AR_DRAFT_MAX_K candidates per depth */
        const int max_k = p->draft_budget != 0 ? AR_DRAFT_MAX_K : 8;
        rc = ar_dflash_source_create(&src, m->qm, m->draft, m->draft_ctx, s->n_ctx, p->draft_block, max_k, err);
        if (!rc && (rc = attach_source(s, src, err))) ar_draft_free(src);
        if (rc) goto fail;
    }
    *out = s;
    return 0;
fail:
    ar_session_free(s);
    return rc;
}

int ar_session_set_draft(ar_session *s, ar_draft_source *src, ar_error *err)
{
    if (qwen35_seq_n_past(s->seq) != 0 || s->pending >= 0 || (src && src->n_past != 0))
        return ar_fail(err, AR_EINVAL, "a draft source can only be set on an empty session (reset it first)");
    if (src) return attach_source(s, src, err);
    ar_chain_free(s->chain);
    ar_ddtree_free(s->tree);
    ar_draft_free(s->src);
    s->chain = NULL;
    s->tree = NULL;
    s->src = NULL;
    return 0;
}

void ar_session_free(ar_session *s)
{
    if (!s) return;
    ar_chain_free(s->chain);
    ar_ddtree_free(s->tree);
    ar_draft_free(s->src);
    qwen35_seq_free(s->seq);
    ar_sampler_free(s->sampler);
    free(s->logits);
    free(s->piece);
    free(s);
}

void ar_session_reset(ar_session *s)
{
    qwen35_seq_reset(s->seq);
    ar_sampler_reset(s->sampler);
    if (s->src) ar_draft_reset(s->src);
    s->pending = -1;
    memset(&s->detok, 0, sizeof s->detok);
}

int ar_session_n_past(const ar_session *s) { return qwen35_seq_n_past(s->seq) + (s->pending >= 0); }
int ar_session_n_ctx(const ar_session *s) { return s->n_ctx; }
uint64_t ar_session_seed(const ar_session *s) { return ar_sampler_seed(s->sampler); }
int ar_session_draft_block(const ar_session *s) { return s->src ? s->src->block : 0; }
int ar_session_draft_budget(const ar_session *s) { return s->tree ? s->draft_budget : 0; }

int ar_session_set_speculative(ar_session *s, bool on, ar_error *err)
{
    if (s->spec_paused == !on) return AR_OK;
    if (qwen35_seq_n_past(s->seq) > 0 || s->pending >= 0)
        return ar_fail(err, AR_EINVAL, "speculative decoding can only be switched on an empty session (reset it first)");
    s->spec_paused = !on;
    return AR_OK;
}

/* Whether this generation drafts: a source is attached and not paused. */
static bool speculating(const ar_session *s) { return s->src && !s->spec_paused; }

/* Speculative prefill through the session's verifier: evaluate, commit, feed the source. */
static int spec_prefill(ar_session *s, const int32_t *tokens, int n, ar_error *err)
{
    if (s->tree) return ar_ddtree_prefill(s->tree, s->seq, tokens, n, s->logits, err);
    return ar_chain_prefill(s->chain, s->seq, tokens, n, s->logits, err);
}

/* The chain [first (if >= 0)] + tokens[0..n) after the committed prefix, in chunks of max_batch. */
static int eval_chain(ar_session *s, int32_t first, const int32_t *tokens, int n, ar_error *err)
{
    ar_model *m = s->m;
    const int shift = first >= 0;
    if (speculating(s)) {   /* speculative: the draft source sees every committed position (with taps) */
        if (!shift) return spec_prefill(s, tokens, n, err);
        if (n == 0) return spec_prefill(s, &first, 1, err);
        int32_t *all = malloc(((size_t)n + 1) * sizeof *all);
        if (!all) return ar_fail(err, AR_ENOMEM, "out of memory for a %d-token prompt", n + 1);
        all[0] = first;
        memcpy(all + 1, tokens, (size_t)n * sizeof *tokens);
        int rc = spec_prefill(s, all, n + 1, err);
        free(all);
        return rc;
    }
    n += shift;
    qwen35_seq *seqs[1] = { s->seq };
    for (int done = 0; done < n;) {
        int k = n - done < m->max_batch ? n - done : m->max_batch;
        int pos0 = qwen35_seq_n_past(s->seq);
        for (int i = 0; i < k; i++) {
            int j = done + i;
            m->nodes[i] = (ar_node){ .seq = 0, .token = shift && j == 0 ? first : tokens[j - shift], .pos = pos0 + i,
                                     .parent = i - 1, .want_logits = j == n - 1, .commit = true };
        }
        ar_batch b = { .n_nodes = k, .nodes = m->nodes, .logits = s->logits };
        int rc = qwen35_forward(m->ctx, seqs, &b, err);
        if (!rc) rc = qwen35_commit(m->ctx, s->seq, m->path, k, err);
        if (rc) return rc;
        done += k;
    }
    return 0;
}

int ar_session_eval(ar_session *s, const int32_t *tokens, int n, ar_error *err)
{
    return eval_chain(s, -1, tokens, n, err);
}

/* ---- generation ----------------------------------------------------------------------------- */

typedef struct gen_run {
    ar_session  *s;
    ar_on_token  on_token;
    void        *user;
    int          n_predict;
    ar_gen_stats *st;
} gen_run;

/* One sampled (and sampler-accepted) token: it becomes pending, is streamed, and the stop rules are
 * checked. Returns true to stop after it (st->stop says why). Shared by plain and speculative steps. */
static bool emit_token(void *user, int32_t tok)
{
    gen_run *g = user;
    ar_session *s = g->s;
    s->pending = tok;
    g->st->n_gen++;
    size_t len = ar_detok_push(&s->detok, s->m->vocab, tok, s->special, s->piece, s->piece_cap);
    bool stop = g->on_token ? g->on_token(g->user, tok, s->piece, len) : false;
    if (ar_token_is_eog(s->m->vocab, tok)) { g->st->stop = AR_STOP_EOG; return true; }
    if (stop) { g->st->stop = AR_STOP_CALLBACK; return true; }
    if (g->n_predict >= 0 && g->st->n_gen >= g->n_predict) { g->st->stop = AR_STOP_LENGTH; return true; }
    return false;
}

int ar_generate(ar_session *s, const int32_t *prompt, int n_prompt, int n_predict, ar_on_token on_token,
                void *user, ar_gen_stats *stats, ar_error *err)
{
    ar_gen_stats st = { 0 };
    if (stats) *stats = st;
    const int32_t n_vocab = ar_model_n_vocab(s->m);
    if (n_prompt < 0 || (n_prompt > 0 && !prompt)) return ar_fail(err, AR_EINVAL, "generate: bad prompt");
    for (int i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            return ar_fail(err, AR_EINVAL, "generate: prompt token %d at position %d is outside the vocabulary [0, %d)",
                           (int)prompt[i], i, (int)n_vocab);
    const int has_pending = s->pending >= 0;
    const int n_eval = n_prompt + has_pending;
    if (n_eval == 0) return ar_fail(err, AR_EINVAL, "generate: empty prompt");
    const int n_past = qwen35_seq_n_past(s->seq);
    if ((long)n_past + n_eval > s->n_ctx)
        return ar_fail(err, AR_ERANGE, "generate: the prompt (%d tokens) does not fit in the context: %d of %d tokens "
                       "are free (raise the context size)", n_prompt, s->n_ctx - n_past - has_pending, s->n_ctx);
    if (s->chain) ar_chain_stats_reset(s->chain);
    if (s->tree) ar_ddtree_stats_reset(s->tree);

    /* Prompt: the pending token first, then the prompt, as one chain. */
    double t0 = ar_now();
    for (int i = 0; i < n_prompt; i++) ar_sampler_accept(s->sampler, prompt[i]);
    /* one chain: the pending token's node is the parent of the prompt's first */
    int rc = eval_chain(s, s->pending, prompt, n_prompt, err);
    if (!rc) s->pending = -1;
    st.n_prompt = n_eval;
    st.prompt_s = ar_now() - t0;
    if (rc) goto out;

    double t1 = ar_now();
    gen_run g = { s, on_token, user, n_predict, &st };
    st.stop = AR_STOP_LENGTH;
    bool stop = n_predict >= 0 && st.n_gen >= n_predict;
    if (!stop) {   /* the first token, from the prompt's logits */
        int32_t tok = ar_sampler_sample(s->sampler, s->logits);
        ar_sampler_accept(s->sampler, tok);
        stop = emit_token(&g, tok);
    }
    while (!stop) {
        if (qwen35_seq_n_past(s->seq) >= s->n_ctx) { st.stop = AR_STOP_CONTEXT; break; }
        if (speculating(s)) {   /* draft, verify [pending, drafts] in one forward, emit what the sampler walks through */
            int32_t last;
            const int max_emit = n_predict < 0 ? INT_MAX : n_predict - st.n_gen;
            if (s->tree)
                rc = ar_ddtree_round(s->tree, s->seq, s->sampler, s->pending, max_emit, emit_token, &g, &last, &stop, err);
            else
                rc = ar_chain_round(s->chain, s->seq, s->sampler, s->pending, max_emit, emit_token, &g, &last, &stop, err);
            if (rc) break;
        } else {           /* evaluate the pending token, sample the next */
            int32_t tok = s->pending;
            if ((rc = eval_chain(s, -1, &tok, 1, err))) break;
            s->pending = -1;
            tok = ar_sampler_sample(s->sampler, s->logits);
            ar_sampler_accept(s->sampler, tok);
            stop = emit_token(&g, tok);
        }
    }
    st.gen_s = ar_now() - t1;
    if (s->chain) {
        const ar_chain_stats *cs = ar_chain_get_stats(s->chain);
        st.n_steps = cs->n_rounds;
        st.n_step_tokens = cs->n_emitted;
        st.n_drafted = cs->n_drafted;
        st.n_accepted = cs->n_accepted;
        st.draft_s = cs->draft_s;
        st.verify_s = cs->verify_s;
        st.commit_s = cs->accept_s;
    } else if (s->tree) {
        const ar_ddtree_stats *ts = ar_ddtree_get_stats(s->tree);
        st.n_steps = ts->n_rounds;
        st.n_step_tokens = (int)ts->n_emitted;
        st.n_drafted = (int)ts->n_nodes;
        st.n_accepted = (int)ts->n_accepted;
        st.draft_s = ts->draft_s;
        st.verify_s = ts->verify_s;
        st.commit_s = ts->accept_s + ts->build_s;
    }
    size_t len = ar_detok_flush(&s->detok, s->piece, s->piece_cap);
    if (len && on_token) on_token(user, -1, s->piece, len);
out:
    if (rc) st.stop = AR_STOP_NONE;
    if (stats) *stats = st;
    return rc;
}
