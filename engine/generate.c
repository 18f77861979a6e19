/* engine/generate.c — plain (non-speculative) generation on top of the qwen35 node-batch model:
 * ar_model / ar_session / ar_generate of include/arbor.h.
 *
 * Flow of ar_generate: [pending token] + prompt are evaluated as one chain in chunks of max_batch
 * nodes and committed; then each step samples a token from the last logits, streams its text, and
 * (unless generation stops there) evaluates it as one node whose parent is the committed prefix
 * and commits it. The last sampled token stays `pending` (in the context, not evaluated) so that a
 * stop never costs a forward; the next call evaluates it first. Nothing is allocated per token. */
#include "engine/generate.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "base/log.h"
#include "base/timer.h"

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
    int max_batch = p->max_batch > 0 ? p->max_batch : 512;
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

/* ---- session -------------------------------------------------------------------------------- */

ar_session_params ar_session_defaults(void)
{
    return (ar_session_params){ .n_ctx = 4096, .sampling = ar_sampler_defaults(), .special = false };
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

    ar_session *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory creating a session");
    s->m = m;
    s->special = p->special;
    s->pending = -1;
    int rc = qwen35_seq_create(&s->seq, m->qm, n_ctx, err);
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
    *out = s;
    return 0;
fail:
    ar_session_free(s);
    return rc;
}

void ar_session_free(ar_session *s)
{
    if (!s) return;
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
    s->pending = -1;
    memset(&s->detok, 0, sizeof s->detok);
}

int ar_session_n_past(const ar_session *s) { return qwen35_seq_n_past(s->seq) + (s->pending >= 0); }
int ar_session_n_ctx(const ar_session *s) { return s->n_ctx; }
uint64_t ar_session_seed(const ar_session *s) { return ar_sampler_seed(s->sampler); }

/* The chain [first (if >= 0)] + tokens[0..n) after the committed prefix, in chunks of max_batch. */
static int eval_chain(ar_session *s, int32_t first, const int32_t *tokens, int n, ar_error *err)
{
    ar_model *m = s->m;
    const int shift = first >= 0;
    n += shift;
    qwen35_seq *seqs[1] = { s->seq };
    for (int done = 0; done < n;) {
        int k = n - done < m->max_batch ? n - done : m->max_batch;
        int pos0 = qwen35_seq_n_past(s->seq);
        for (int i = 0; i < k; i++) {
            int j = done + i;
            m->nodes[i] = (ar_node){ .seq = 0, .token = shift && j == 0 ? first : tokens[j - shift], .pos = pos0 + i,
                                     .parent = i - 1, .want_logits = j == n - 1 };
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
    st.stop = AR_STOP_LENGTH;
    for (;;) {
        if (n_predict >= 0 && st.n_gen >= n_predict) { st.stop = AR_STOP_LENGTH; break; }
        int32_t tok = ar_sampler_sample(s->sampler, s->logits);
        ar_sampler_accept(s->sampler, tok);
        s->pending = tok;
        st.n_gen++;
        size_t len = ar_detok_push(&s->detok, s->m->vocab, tok, s->special, s->piece, s->piece_cap);
        bool stop = on_token ? on_token(user, tok, s->piece, len) : false;
        if (ar_token_is_eog(s->m->vocab, tok)) { st.stop = AR_STOP_EOG; break; }
        if (stop) { st.stop = AR_STOP_CALLBACK; break; }
        if (n_predict >= 0 && st.n_gen >= n_predict) { st.stop = AR_STOP_LENGTH; break; }
        if (qwen35_seq_n_past(s->seq) >= s->n_ctx) { st.stop = AR_STOP_CONTEXT; break; }
        if ((rc = eval_chain(s, -1, &tok, 1, err))) break;
        s->pending = -1;
    }
    st.gen_s = ar_now() - t1;
    size_t len = ar_detok_flush(&s->detok, s->piece, s->piece_cap);
    if (len && on_token) on_token(user, -1, s->piece, len);
out:
    if (rc) st.stop = AR_STOP_NONE;
    if (stats) *stats = st;
    return rc;
}
