/* engine/sched.c — continuous batching over sequence slots; see sched.h for the step and the rules.
 *
 * Ownership and threads. A request (sreq) is created by ar_sched_submit on any thread, sits in the
 * FIFO queue under the mutex, and from admission on belongs to the stepping thread (the scheduler's
 * own, or the caller of ar_sched_step), which alone touches its sequence, sampler and stream state.
 * The mutex guards the queue, the slot table, the cancel flags and the statistics; callbacks run with
 * it released. A step never allocates except to grow the logits/taps scratch past its largest batch (and
 * the cost model of --budget auto at the first planning step).
 *
 * A request's life: QUEUED -> (admission: sampler history = prompt, prefix cache resume) -> PREFILL
 * (chunks committed step by step, snapshots at boundaries) -> first token from the last prompt
 * logits -> DECODE (one node per step, or a hook's verified chain/tree; planning hooks share the
 * decode nodes by expected gain, plan_shares) -> finish (flush the text,
 * optional final snapshot, on_done, sequence cleared, slot freed). */
#include "engine/sched.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/timer.h"
#include "engine/generate.h"
#include "spec/budget.h"

enum { PH_QUEUED, PH_PREFILL, PH_DECODE };

typedef struct sreq {
    struct sreq *next;          /* queue link */
    uint64_t id, admit_no;
    ar_sched_request p;         /* prompt / boundaries point at the copies below */
    int32_t *toks;              /* prompt, then every generated token; room for n_ctx + 1 */
    int n_toks;
    int *bounds, n_bounds, next_bound;   /* sorted, unique */
    bool cancel;                /* under the mutex */
    int phase, slot;
    int32_t pending;            /* the last emitted token (not evaluated yet) */
    int allot;                  /* a planning hook's nodes this step (plan_shares) */
    /* waiting for a leader (start): another request prefilling the same prefix up to lead_len, which
     * this one resumes from the cache once the leader has stored it; lead_slot < 0: not waiting */
    int lead_slot, lead_len;
    uint64_t lead_admit;
    ar_sampler *smp;
    ar_detok detok;
    ar_sched_result res;
    double t_submit, t_admit, t_first;
} sreq;

typedef struct seg {            /* one request's nodes in this step's batch */
    sreq *r;
    int kind;                   /* PH_PREFILL or PH_DECODE */
    int start, n;               /* nodes [start, start + n) */
    int row0;                   /* its first logits row (-1: none) */
    int end;                    /* prefill: the prompt position it reaches */
    int cap;                    /* prefill: a boundary inside the chunk whose state the forward captures
                                 * (ar_node.capture) for the prefix cache; 0: none */
    bool spec;
} seg;

struct ar_sched {
    ar_model *m;
    qwen35_ctx *ctx;
    const ar_vocab *vocab;
    ar_sched_params p;
    int n_vocab, n_embd, max_nodes;

    pthread_mutex_t mu;
    pthread_cond_t cv_work, cv_idle;
    sreq *q_head, *q_tail;
    int n_queued, n_active;
    sreq **slot_req;            /* [n_parallel] */
    qwen35_seq **seqs;          /* [n_parallel] */
    uint64_t next_id, next_admit;
    bool stopping, started;
    pthread_t thread;
    int n_taps;                 /* the hooks' tap layers (fixed by the first hook that asks) */
    int *tap_layers;
    ar_sched_stats st;

    ar_kv_pool *pool;
    ar_pcache *cache;

    /* step scratch, stepping thread only */
    ar_node *nodes;
    seg *segs;
    sreq **order;
    int *path, *depth;
    int32_t *ptoks, *pparents, *ctoks;
    float *logits;
    int cap_rows;
    float *taps, *ctaps;        /* [max_nodes][n_taps][n_embd] */
    float *resume_logits;       /* [n_vocab] */
    uint64_t step_gen;          /* tokens streamed since the last statistics update */
    double step_commit_s;
    char *piece;
    size_t piece_cap;

    /* --budget auto (hooks with `plan`): the step's cost model and the sharing scratch */
    ar_budget *cost;            /* T(width) of decode-only forwards, t_other; created at the first plan */
    int cost_widest;            /* the widest decode-only forward measured */
    double *gain;               /* [n_parallel][max_nodes]: the planning hooks' gain curves */
    double *cgain;              /* [max_nodes + 1]: the merged curve of the extra nodes */
    int *pick;                  /* [max_nodes]: which planner gets each extra node, best first */
    int *plan_n, *plan_a;       /* [n_parallel]: nodes each planner can use, its allotment so far */
    bool planned;               /* this step shared nodes by gain */
};

ar_sched_params ar_sched_defaults(void)
{
    return (ar_sched_params){ .n_parallel = 4, .n_ctx = 4096, .kv_page = 256, .prefill_budget = 0,
                              .max_queue = 64, .cache_bytes = 0, .kv_max_pages = 0 };
}

/* ---- create / free -------------------------------------------------------------------------- */

static void *zalloc(size_t n, size_t size, bool *ok)
{
    void *p = calloc(n ? n : 1, size);
    if (!p) *ok = false;
    return p;
}

int ar_sched_create(ar_sched **out, ar_model *m, const ar_sched_params *pp, ar_error *err)
{
    *out = NULL;
    ar_sched_params p = pp ? *pp : ar_sched_defaults();
    const qwen35_hparams *hp = qwen35_hparams_of(m->qm);
    if (p.n_parallel <= 0) p.n_parallel = 4;
    if (p.kv_page <= 0) p.kv_page = 256;
    if (p.max_queue <= 0) p.max_queue = 64;
    const int n_train = hp->n_ctx_train;
    if (p.n_ctx <= 0) p.n_ctx = n_train > 0 && n_train < 4096 ? n_train : 4096;
    else if (n_train > 0 && p.n_ctx > n_train)
        ar_log(AR_LOG_WARN, "context %d is longer than the model's training context %d", p.n_ctx, n_train);

    ar_sched *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory creating the scheduler");
    s->m = m;
    s->ctx = m->ctx;
    s->vocab = m->vocab;
    s->n_vocab = hp->n_vocab;
    s->n_embd = hp->n_embd;
    s->max_nodes = qwen35_ctx_max_nodes(m->ctx);
    if (p.prefill_budget <= 0 || p.prefill_budget > s->max_nodes) p.prefill_budget = s->max_nodes;
    s->p = p;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv_work, NULL);
    pthread_cond_init(&s->cv_idle, NULL);
    s->next_id = 1;

    int rc = ar_kv_pool_create(&s->pool, p.kv_max_pages, err);
    if (rc) goto fail;
    bool ok = true;
    const int P = p.n_parallel, M = s->max_nodes;
    s->slot_req = zalloc((size_t)P, sizeof *s->slot_req, &ok);
    s->seqs = zalloc((size_t)P, sizeof *s->seqs, &ok);
    s->order = zalloc((size_t)P, sizeof *s->order, &ok);
    s->segs = zalloc((size_t)P, sizeof *s->segs, &ok);
    s->nodes = zalloc((size_t)M, sizeof *s->nodes, &ok);
    s->path = zalloc((size_t)M, sizeof *s->path, &ok);
    s->depth = zalloc((size_t)M, sizeof *s->depth, &ok);
    s->ptoks = zalloc((size_t)M, sizeof *s->ptoks, &ok);
    s->pparents = zalloc((size_t)M, sizeof *s->pparents, &ok);
    s->ctoks = zalloc((size_t)M, sizeof *s->ctoks, &ok);
    s->cap_rows = P;
    s->logits = zalloc((size_t)s->cap_rows * (size_t)s->n_vocab, sizeof(float), &ok);
    s->resume_logits = zalloc((size_t)s->n_vocab, sizeof(float), &ok);
    s->gain = zalloc((size_t)P * (size_t)M, sizeof *s->gain, &ok);
    s->cgain = zalloc((size_t)M + 1, sizeof *s->cgain, &ok);
    s->pick = zalloc((size_t)M, sizeof *s->pick, &ok);
    s->plan_n = zalloc((size_t)P, sizeof *s->plan_n, &ok);
    s->plan_a = zalloc((size_t)P, sizeof *s->plan_a, &ok);
    s->piece_cap = 3 * ar_vocab_max_piece(s->vocab) + 16;
    s->piece = zalloc(s->piece_cap, 1, &ok);
    if (!ok) { rc = ar_fail(err, AR_ENOMEM, "out of memory creating the scheduler"); goto fail; }
    for (int i = 0; i < P; i++)
        if ((rc = qwen35_seq_create_pooled(&s->seqs[i], m->qm, p.n_ctx, p.kv_page, s->pool, true, err))) goto fail;
    if (p.cache_bytes && (rc = ar_pcache_create(&s->cache, p.cache_bytes, s->n_vocab, err))) goto fail;

    uint64_t per = qwen35_seq_bytes(m->qm, p.n_ctx);
    ar_log(AR_LOG_INFO, "scheduler: %d sequences of %d tokens (up to %.1f MiB each, KV pages of %d tokens as they "
           "grow), batches of up to %d nodes, prefill budget %d tokens per step, prefix cache %.0f MiB",
           P, p.n_ctx, (double)per / 1048576.0, p.kv_page, M, p.prefill_budget, (double)p.cache_bytes / 1048576.0);
    s->st.n_parallel = P;
    s->st.has_cache = s->cache != NULL;
    *out = s;
    return AR_OK;
fail:
    ar_sched_free(s);
    return rc;
}

static void req_free(sreq *r)
{
    if (!r) return;
    if (r->p.spec && r->p.spec->ops->destroy) r->p.spec->ops->destroy(r->p.spec);
    ar_sampler_free(r->smp);
    free(r->toks);
    free(r->bounds);
    free(r);
}

/* ---- finishing ------------------------------------------------------------------------------- */

/* End a request. row: the logits of its last committed position when known (for the final
 * snapshot), else NULL. status/err: an engine failure (0: none). Not under the mutex. */
static void finish(ar_sched *s, sreq *r, const float *row, int status, const ar_error *err)
{
    const double now = ar_now();
    ar_sched_result *res = &r->res;
    res->id = r->id;
    res->n_prompt = r->p.n_prompt;
    if (status) {
        res->status = status;
        if (err) res->err = *err;
        res->stop = AR_STOP_NONE;
    }
    if (res->cancelled) res->stop = AR_STOP_NONE;
    if (r->phase == PH_QUEUED) res->queue_s = now - r->t_submit;
    if (r->t_first > 0) res->gen_s = now - r->t_first;
    else if (r->phase != PH_QUEUED) res->prompt_s = now - r->t_admit;

    if (r->phase != PH_QUEUED) {
        size_t len = ar_detok_flush(&r->detok, s->piece, s->piece_cap);
        if (len && r->p.on_token) r->p.on_token(r->p.user, -1, s->piece, len, NULL);
        qwen35_seq *seq = s->seqs[r->slot];
        if (s->cache && r->p.cache_final && !status && !res->cancelled && qwen35_seq_n_past(seq) > 0) {
            ar_error e2;
            if (ar_pcache_put(s->cache, seq, r->toks, row, true, &e2))
                ar_log(AR_LOG_WARN, "prefix cache: %s", e2.msg);
        }
    }
    if (r->p.on_done) r->p.on_done(r->p.user, res);
    if (r->phase != PH_QUEUED) qwen35_seq_clear(s->seqs[r->slot]);   /* its pages go (or stay with the cache) */

    pthread_mutex_lock(&s->mu);
    if (r->phase != PH_QUEUED) {
        s->slot_req[r->slot] = NULL;
        s->n_active--;
    }
    s->st.n_finished++;
    if (res->cancelled) s->st.n_cancelled++;
    if (res->status) s->st.n_failed++;
    if (s->n_active == 0 && s->n_queued == 0) pthread_cond_broadcast(&s->cv_idle);
    pthread_mutex_unlock(&s->mu);
    req_free(r);
}

static void fail(ar_sched *s, sreq *r, int status, const ar_error *err)
{
    ar_log(AR_LOG_WARN, "request %llu failed: %s", (unsigned long long)r->id, err ? err->msg : "?");
    finish(s, r, NULL, status, err);
}

void ar_sched_free(ar_sched *s)
{
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    if (s->started) pthread_join(s->thread, NULL);
    /* everything still queued or running ends as cancelled */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        sreq *r = s->q_head;
        if (r) {
            s->q_head = r->next;
            if (!s->q_head) s->q_tail = NULL;
            s->n_queued--;
        }
        pthread_mutex_unlock(&s->mu);
        if (!r) break;
        r->res.cancelled = true;
        finish(s, r, NULL, 0, NULL);
    }
    for (int i = 0; s->slot_req && i < s->p.n_parallel; i++)
        if (s->slot_req[i]) {
            s->slot_req[i]->res.cancelled = true;
            finish(s, s->slot_req[i], NULL, 0, NULL);
        }
    ar_pcache_free(s->cache);
    for (int i = 0; s->seqs && i < s->p.n_parallel; i++) qwen35_seq_free(s->seqs[i]);
    ar_kv_pool_free(s->pool);
    ar_budget_free(s->cost);
    void *bufs[] = { s->slot_req, s->seqs, s->order, s->segs, s->nodes, s->path, s->depth, s->ptoks, s->pparents,
                     s->ctoks, s->logits, s->taps, s->ctaps, s->resume_logits, s->piece, s->tap_layers,
                     s->gain, s->cgain, s->pick, s->plan_n, s->plan_a };
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_work);
    pthread_cond_destroy(&s->cv_idle);
    free(s);
}

/* ---- submit / cancel ------------------------------------------------------------------------- */

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

int ar_sched_submit(ar_sched *s, const ar_sched_request *q, uint64_t *id, ar_error *err)
{
    if (id) *id = 0;
    if (!q || !q->prompt || q->n_prompt < 1) return ar_fail(err, AR_EINVAL, "request: empty prompt");
    for (int i = 0; i < q->n_prompt; i++)
        if (q->prompt[i] < 0 || q->prompt[i] >= s->n_vocab)
            return ar_fail(err, AR_EINVAL, "request: prompt token %d at position %d is outside the vocabulary [0, %d)",
                           (int)q->prompt[i], i, s->n_vocab);
    const int need = q->n_prompt + (q->n_predict != 0);
    if (need > s->p.n_ctx)
        return ar_fail(err, AR_ERANGE, "request: the prompt (%d tokens) does not fit in the context of %d tokens%s",
                       q->n_prompt, s->p.n_ctx, q->n_predict != 0 ? " with room for one generated token" : "");
    if (q->n_boundaries < 0 || (q->n_boundaries > 0 && !q->boundaries))
        return ar_fail(err, AR_EINVAL, "request: bad boundary list");
    for (int i = 0; i < q->n_boundaries; i++)
        if (q->boundaries[i] < 1 || q->boundaries[i] > q->n_prompt)
            return ar_fail(err, AR_EINVAL, "request: boundary %d is outside the prompt's positions 1..%d",
                           q->boundaries[i], q->n_prompt);
    if (q->spec) {
        const ar_sched_spec *sp = q->spec;
        if (!sp->ops || !sp->ops->propose || !sp->ops->accept)
            return ar_fail(err, AR_EINVAL, "request: speculative hook without propose/accept");
        if (sp->n_taps < 0 || (sp->n_taps > 0 && !sp->tap_layers))
            return ar_fail(err, AR_EINVAL, "request: speculative hook with %d taps and no layers", sp->n_taps);
    }

    sreq *r = calloc(1, sizeof *r);
    if (!r) return ar_fail(err, AR_ENOMEM, "out of memory queuing a request");
    r->p = *q;
    r->p.spec = NULL;                          /* owned only once queued */
    r->toks = malloc(((size_t)s->p.n_ctx + 1) * sizeof *r->toks);
    r->bounds = malloc(((size_t)q->n_boundaries + 1) * sizeof *r->bounds);
    if (!r->toks || !r->bounds) { req_free(r); return ar_fail(err, AR_ENOMEM, "out of memory queuing a request"); }
    memcpy(r->toks, q->prompt, (size_t)q->n_prompt * sizeof *r->toks);
    r->n_toks = q->n_prompt;
    r->p.prompt = r->toks;
    memcpy(r->bounds, q->boundaries ? q->boundaries : r->bounds, (size_t)q->n_boundaries * sizeof *r->bounds);
    qsort(r->bounds, (size_t)q->n_boundaries, sizeof *r->bounds, cmp_int);
    for (int i = 0; i < q->n_boundaries; i++)
        if (r->n_bounds == 0 || r->bounds[r->n_bounds - 1] != r->bounds[i]) r->bounds[r->n_bounds++] = r->bounds[i];
    r->p.boundaries = r->bounds;
    r->p.n_boundaries = r->n_bounds;
    ar_sampler_params sp = q->sampling;
    if (sp.repeat_last_n < 0) sp.repeat_last_n = s->p.n_ctx;
    int rc = ar_sampler_create(&r->smp, &sp, s->n_vocab, err);
    if (rc) { req_free(r); return rc; }
    r->pending = -1;
    r->phase = PH_QUEUED;
    r->lead_slot = -1;
    r->slot = -1;
    r->t_submit = ar_now();

    pthread_mutex_lock(&s->mu);
    if (q->spec && q->spec->n_taps > 0) {
        const ar_sched_spec *h = q->spec;
        bool same = s->n_taps == 0 || (s->n_taps == h->n_taps && !memcmp(s->tap_layers, h->tap_layers,
                                                                         (size_t)h->n_taps * sizeof(int)));
        if (!same) rc = ar_fail(err, AR_EINVAL, "request: the speculative hook's tap layers differ from the other hooks'");
        else if (s->n_taps == 0) {
            s->tap_layers = malloc((size_t)h->n_taps * sizeof(int));
            if (!s->tap_layers) rc = ar_fail(err, AR_ENOMEM, "out of memory");
            else {
                memcpy(s->tap_layers, h->tap_layers, (size_t)h->n_taps * sizeof(int));
                s->n_taps = h->n_taps;
            }
        }
    }
    if (!rc && s->stopping) rc = ar_fail(err, AR_EINVAL, "the scheduler is shutting down");
    if (!rc && s->n_queued >= s->p.max_queue)
        rc = ar_fail(err, AR_ERANGE, "the request queue is full (%d waiting); try again later", s->n_queued);
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        req_free(r);
        return rc;
    }
    r->p.spec = q->spec;
    r->id = s->next_id++;
    if (s->q_tail) s->q_tail->next = r; else s->q_head = r;
    s->q_tail = r;
    s->n_queued++;
    s->st.n_submitted++;
    if (id) *id = r->id;
    pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return AR_OK;
}

bool ar_sched_cancel(ar_sched *s, uint64_t id)
{
    bool found = false;
    pthread_mutex_lock(&s->mu);
    for (sreq *r = s->q_head; r && !found; r = r->next)
        if (r->id == id) r->cancel = found = true;
    for (int i = 0; i < s->p.n_parallel && !found; i++)
        if (s->slot_req[i] && s->slot_req[i]->id == id) s->slot_req[i]->cancel = found = true;
    if (found) pthread_cond_signal(&s->cv_work);
    pthread_mutex_unlock(&s->mu);
    return found;
}

/* ---- tokens ---------------------------------------------------------------------------------- */

/* A sampled (and sampler-accepted) token: pending, streamed, stop rules in ar_generate's order.
 * Returns true when the request ends after it (res.stop says why). */
static bool emit(ar_sched *s, sreq *r, int32_t tok, const float *row)
{
    r->pending = tok;
    r->toks[r->n_toks++] = tok;
    r->res.n_gen++;
    s->step_gen++;
    size_t len = ar_detok_push(&r->detok, s->vocab, tok, r->p.special, s->piece, s->piece_cap);
    bool stop = r->p.on_token ? r->p.on_token(r->p.user, tok, s->piece, len, row) : false;
    if (ar_token_is_eog(s->vocab, tok)) { r->res.stop = AR_STOP_EOG; return true; }
    if (stop) { r->res.stop = AR_STOP_CALLBACK; return true; }
    if (r->p.n_predict >= 0 && r->res.n_gen >= r->p.n_predict) { r->res.stop = AR_STOP_LENGTH; return true; }
    return false;
}

static bool sample_emit(ar_sched *s, sreq *r, const float *row)
{
    int32_t tok = ar_sampler_sample(r->smp, row);
    ar_sampler_accept(r->smp, tok);
    return emit(s, r, tok, row);
}

/* The prompt is in (row = its last logits): the first token, or the end for n_predict == 0. */
static void prompt_done(ar_sched *s, sreq *r, const float *row)
{
    r->t_first = ar_now();
    r->res.prompt_s = r->t_first - r->t_admit;
    if (r->p.n_predict == 0) { r->res.stop = AR_STOP_LENGTH; finish(s, r, row, 0, NULL); return; }
    r->phase = PH_DECODE;
    if (sample_emit(s, r, row)) finish(s, r, row, 0, NULL);
}

/* The hook's emit during accept: collect, and stop the walk at the end of generation or n_predict
 * (the user callback runs afterwards, in emit(), and may cut the path shorter). */
typedef struct walk {
    ar_sched *s;
    sreq *r;
    int n, cap;
    int32_t *toks;
} walk;

static bool walk_emit(void *user, int32_t tok)
{
    walk *w = user;
    if (w->n < w->cap) w->toks[w->n] = tok;
    w->n++;
    if (ar_token_is_eog(w->s->vocab, tok)) return true;
    return w->r->p.n_predict >= 0 && w->r->res.n_gen + w->n >= w->r->p.n_predict;
}

/* ---- admission -------------------------------------------------------------------------------- */

static void resume(ar_sched *s, sreq *r);

/* Requests that arrive together with a long common prefix (agents sharing a system prompt) would
 * each prefill it. A request whose prompt shares, beyond what the cache already holds, at least
 * LEAD_MIN tokens up to a boundary that another request is still prefilling towards waits for that
 * leader instead, then resumes from the snapshot the leader stores there (release_waiters). A history
 * fill (ar_sched_request.fill) exists only to be resumed from, so for it any shared length counts. */
enum { LEAD_MIN = 128 };

static bool find_lead(ar_sched *s, sreq *r)
{
    int has_logits = 0;
    const int have = ar_pcache_match(s->cache, r->toks, r->p.n_prompt, r->p.n_prompt, &has_logits);
    int best = have, lead = -1;
    for (int i = 0; i < s->p.n_parallel; i++) {
        const sreq *l = s->slot_req[i];
        if (!l || l == r || l->phase != PH_PREFILL || l->p.no_cache || l->lead_slot >= 0) continue;
        const int n = l->p.n_prompt < r->p.n_prompt ? l->p.n_prompt : r->p.n_prompt;
        const int floor = l->p.fill ? have : have + LEAD_MIN - 1;
        int common = 0;
        while (common < n && l->toks[common] == r->toks[common]) common++;
        for (int k = l->next_bound; k < l->n_bounds; k++)   /* boundaries the leader has not reached */
            if (l->bounds[k] <= common && l->bounds[k] < r->p.n_prompt && l->bounds[k] > floor && l->bounds[k] > best) {
                best = l->bounds[k];
                lead = i;
            }
    }
    if (lead < 0) return false;
    r->lead_slot = lead;
    r->lead_admit = s->slot_req[lead]->admit_no;
    r->lead_len = best;
    return true;
}

/* Waiters whose leader stored the shared prefix (or went away) resume now. Leaders never wait
 * themselves (find_lead), so there are no chains or cycles of waiters. */
static void release_waiters(ar_sched *s)
{
    for (int i = 0; i < s->p.n_parallel; i++) {
        sreq *r = s->slot_req[i];
        if (!r || r->phase != PH_PREFILL || r->lead_slot < 0) continue;
        const sreq *l = s->slot_req[r->lead_slot];
        const bool same = l && l->admit_no == r->lead_admit;
        if (same && l->phase == PH_PREFILL && qwen35_seq_n_past(s->seqs[r->lead_slot]) < r->lead_len) continue;
        r->lead_slot = -1;
        /* the leader passed the prefix: resume from its snapshot; it went away (cancelled, failed):
         * the first of its waiters leads the others */
        if (same || !find_lead(s, r)) resume(s, r);
    }
}

static void start(ar_sched *s, sreq *r)
{
    r->t_admit = ar_now();
    r->res.queue_s = r->t_admit - r->t_submit;
    r->phase = PH_PREFILL;
    for (int i = 0; i < r->p.n_prompt; i++) ar_sampler_accept(r->smp, r->toks[i]);
    r->lead_slot = -1;
    if (s->cache && !r->p.no_cache && (!r->p.spec || r->p.spec->ops->resumed) && find_lead(s, r)) return;
    resume(s, r);
}

/* The prompt from the prefix cache (its longest cached prefix), the rest to prefill. */
static void resume(ar_sched *s, sreq *r)
{
    qwen35_seq *seq = s->seqs[r->slot];
    ar_sched_spec *sp = r->p.spec;
    int n_cached = 0;
    ar_error err;
    if (s->cache && !r->p.no_cache && (!sp || sp->ops->resumed)) {
        n_cached = ar_pcache_resume(s->cache, seq, r->toks, r->p.n_prompt, s->resume_logits, &err);
        if (n_cached < 0) {
            ar_log(AR_LOG_WARN, "prefix cache: %s (prefilling the whole prompt)", err.msg);
            qwen35_seq_clear(seq);
            n_cached = 0;
        }
        if (n_cached > 0 && sp) {
            int rc = sp->ops->resumed(sp, r->toks, n_cached, &err);
            if (rc) { fail(s, r, rc, &err); return; }
        }
    }
    r->res.n_cached = n_cached;
    if (r->p.max_prefill > 0 && r->p.n_prompt - n_cached > r->p.max_prefill) {   /* not worth it: nothing done */
        r->res.stop = AR_STOP_NONE;
        finish(s, r, NULL, 0, NULL);
        return;
    }
    while (r->next_bound < r->n_bounds && r->bounds[r->next_bound] <= n_cached) r->next_bound++;
    pthread_mutex_lock(&s->mu);
    s->st.n_cached += (uint64_t)n_cached;
    pthread_mutex_unlock(&s->mu);
    if (n_cached == r->p.n_prompt) prompt_done(s, r, s->resume_logits);
}

/* Queue -> free slots, and cancellations. */
static void admit(ar_sched *s)
{
    sreq *gone = NULL, *fresh = NULL, **fresh_tail = &fresh;
    sreq **cancelled = s->order;   /* free until the batch is built */
    int n_cancelled = 0;
    pthread_mutex_lock(&s->mu);
    for (sreq **pp = &s->q_head; *pp;) {        /* cancelled while queued */
        sreq *r = *pp;
        if (r->cancel) {
            *pp = r->next;
            r->next = gone;
            gone = r;
            s->n_queued--;
        } else {
            pp = &r->next;
        }
    }
    s->q_tail = NULL;
    for (sreq *r = s->q_head; r; r = r->next) s->q_tail = r;
    for (int i = 0; i < s->p.n_parallel; i++) {
        sreq *r = s->slot_req[i];
        if (r && r->cancel) cancelled[n_cancelled++] = r;
        if (!r && s->q_head) {
            r = s->q_head;
            s->q_head = r->next;
            if (!s->q_head) s->q_tail = NULL;
            s->n_queued--;
            r->next = NULL;
            r->slot = i;
            r->admit_no = s->next_admit++;
            s->slot_req[i] = r;
            s->n_active++;
            *fresh_tail = r;
            fresh_tail = &r->next;
        }
    }
    pthread_mutex_unlock(&s->mu);
    while (gone) {
        sreq *r = gone;
        gone = r->next;
        r->res.cancelled = true;
        finish(s, r, NULL, 0, NULL);
    }
    for (int i = 0; i < n_cancelled; i++) {
        cancelled[i]->res.cancelled = true;
        finish(s, cancelled[i], NULL, 0, NULL);
    }
    while (fresh) {
        sreq *r = fresh;
        fresh = r->next;
        r->next = NULL;
        start(s, r);
    }
}

/* ---- one step ---------------------------------------------------------------------------------- */

static int grow_rows(ar_sched *s, int rows, ar_error *err)
{
    if (rows <= s->cap_rows) return AR_OK;
    float *p = realloc(s->logits, (size_t)rows * (size_t)s->n_vocab * sizeof(float));
    if (!p) return ar_fail(err, AR_ENOMEM, "out of memory for %d logits rows", rows);
    s->logits = p;
    s->cap_rows = rows;
    return AR_OK;
}

static int need_taps(ar_sched *s, ar_error *err)
{
    if (s->taps) return AR_OK;
    size_t n = (size_t)s->max_nodes * (size_t)s->n_taps * (size_t)s->n_embd;
    s->taps = malloc(n * sizeof(float));
    s->ctaps = malloc(n * sizeof(float));
    if (!s->taps || !s->ctaps) return ar_fail(err, AR_ENOMEM, "out of memory for the drafter's tap features");
    return AR_OK;
}

/* Build a hook's nodes for one decoding request. Returns the node count or a negative code. */
static int propose(ar_sched *s, sreq *r, qwen35_seq *seq, int base, int cap, ar_error *err)
{
    ar_sched_spec *sp = r->p.spec;
    const int max_emit = r->p.n_predict < 0 ? INT_MAX : r->p.n_predict - r->res.n_gen;
    int k = sp->ops->propose(sp, seq, r->pending, cap, max_emit, s->ptoks, s->pparents, err);
    if (k < 0) return k;
    if (k < 1 || k > cap) return ar_fail(err, AR_EINVAL, "speculative hook proposed %d nodes (1..%d allowed)", k, cap);
    if (s->ptoks[0] != r->pending || s->pparents[0] != -1)
        return ar_fail(err, AR_EINVAL, "speculative hook: node 0 must be the anchor with parent -1");
    const int n_past = qwen35_seq_n_past(seq);
    for (int i = 0; i < k; i++) {
        int par = s->pparents[i];
        if (i > 0 && (par < 0 || par >= i))
            return ar_fail(err, AR_EINVAL, "speculative hook: node %d has parent %d (must be an earlier node)", i, par);
        if (s->ptoks[i] < 0 || s->ptoks[i] >= s->n_vocab)
            return ar_fail(err, AR_EINVAL, "speculative hook: node %d token %d outside the vocabulary", i, s->ptoks[i]);
        s->depth[base + i] = i == 0 ? 0 : s->depth[base + par] + 1;
        s->nodes[base + i] = (ar_node){ .seq = r->slot, .token = s->ptoks[i], .pos = n_past + s->depth[base + i],
                                        .parent = i == 0 ? -1 : base + par, .want_logits = true };
    }
    return k;
}

static int cmp_admit(const void *a, const void *b)
{
    const sreq *x = *(sreq *const *)a, *y = *(sreq *const *)b;
    return (x->admit_no > y->admit_no) - (x->admit_no < y->admit_no);
}

/* Commit nodes path[0..n) of seg's request and tell its hook. */
static int commit(ar_sched *s, sreq *r, const int *path, int n, bool taps, ar_error *err)
{
    qwen35_seq *seq = s->seqs[r->slot];
    const int pos0 = qwen35_seq_n_past(seq);
    const double t0 = ar_now();
    int rc = qwen35_commit(s->ctx, seq, path, n, err);
    s->step_commit_s += ar_now() - t0;
    ar_sched_spec *sp = r->p.spec;
    if (rc || !sp || !sp->ops->committed) return rc;
    const size_t row = (size_t)s->n_taps * (size_t)s->n_embd;
    for (int i = 0; i < n; i++) {
        s->ctoks[i] = s->nodes[path[i]].token;
        if (taps) memcpy(s->ctaps + (size_t)i * row, s->taps + (size_t)path[i] * row, row * sizeof(float));
    }
    return sp->ops->committed(sp, s->ctoks, taps ? s->ctaps : NULL, n, pos0, err);
}

static int hist_bucket(int n)
{
    int b = 0;
    while (b < AR_SCHED_HIST - 1 && (1 << b) < n) b++;
    return b;
}

/* A hook's verified nodes: walk them (the hook), stream, cut at a user stop, commit the path. */
static int spec_accept(ar_sched *s, seg *g, const float *rows, bool taps, ar_error *err)
{
    sreq *r = g->r;
    ar_sched_spec *sp = r->p.spec;
    int32_t emitted[g->n];
    walk w = { s, r, 0, g->n, emitted };
    int n_path = 0;
    const int max_emit = r->p.n_predict < 0 ? INT_MAX : r->p.n_predict - r->res.n_gen;
    int rc = sp->ops->accept(sp, rows, g->n, r->smp, max_emit, walk_emit, &w, s->path, &n_path, err);
    if (rc) return rc;
    if (n_path < 1 || n_path > g->n || n_path != w.n)
        return ar_fail(err, AR_EINVAL, "speculative hook: %d tokens emitted but a path of %d nodes (1..%d)", w.n,
                       n_path, g->n);
    for (int t = 0; t < n_path; t++) {
        const int v = s->path[t];
        bool ok = v >= 0 && v < g->n &&
                  (t == 0 ? v == 0 : s->nodes[g->start + v].parent == g->start + s->path[t - 1]);
        if (!ok) return ar_fail(err, AR_EINVAL, "speculative hook: path[%d] = %d is not a root-first path", t, v);
        if (t > 0 && emitted[t - 1] != s->nodes[g->start + v].token)
            return ar_fail(err, AR_EINVAL, "speculative hook: token %d was emitted but node %d (token %d) was accepted",
                           emitted[t - 1], v, s->nodes[g->start + v].token);
    }
    int cut = n_path;
    bool stop = false;
    for (int t = 0; t < n_path && !stop; t++) {
        stop = emit(s, r, emitted[t], rows + (size_t)s->path[t] * (size_t)s->n_vocab);
        if (stop) cut = t + 1;
    }
    const float *last = rows + (size_t)s->path[cut - 1] * (size_t)s->n_vocab;
    for (int t = 0; t < cut; t++) s->path[t] += g->start;
    rc = commit(s, r, s->path, cut, taps, err);
    if (rc) return rc;
    r->res.n_spec_steps++;
    r->res.n_spec_tokens += cut;
    r->res.n_spec_nodes += g->n - 1;
    if (stop) finish(s, r, last, 0, NULL);
    return AR_OK;
}

/* --budget auto: the decode nodes left after plain decoders (one each) and fixed hooks (their even share)
 * go to the hooks with `plan` by expected gain (sched.h). Every planner gets its root and, room
 * permitting, one draft node (so its acceptance keeps being measured); then the extra nodes are ranked
 * by marginal gain (the curves are concave, so greedy picking is the best split of any total), and the
 * total is the one that maximises expected tokens per second under the cost model of the step's own
 * decode-only forwards (spec/budget.h: T by width, t_other), exploring widths up to twice the widest
 * measured. Sets r->allot of every planning request; a failed plan ends its request. */
static void plan_shares(ar_sched *s, int reserve, int share)
{
    s->planned = false;
    sreq **pl = s->order;   /* free until the prompt chunks are ordered */
    int n_pl = 0, fixed = 0, n_dec = 0;
    for (int i = 0; i < s->p.n_parallel; i++) {
        sreq *r = s->slot_req[i];
        if (!r || r->phase != PH_DECODE) continue;
        const int room = s->p.n_ctx - qwen35_seq_n_past(s->seqs[i]);
        if (room <= 0) continue;
        r->allot = 0;
        n_dec++;
        if (r->p.spec && r->p.spec->plan) pl[n_pl++] = r;
        else fixed += !r->p.spec ? 1 : share < room ? share : room;
    }
    if (!n_pl) return;
    const int pool = s->max_nodes - reserve - fixed;
    if (pool <= n_pl) {   /* no room to share: roots only (propose drafts on its own) */
        for (int j = 0; j < n_pl; j++) pl[j]->allot = 1;
        return;
    }
    if (!s->cost) {
        ar_error e2;
        if (s->max_nodes >= 2 && ar_budget_create(&s->cost, s->max_nodes - 1, &e2))
            ar_log(AR_LOG_WARN, "scheduler: %s (speculative budgets stay at one draft node)", e2.msg);
    }
    /* the curves */
    const size_t M = (size_t)s->max_nodes;
    int n_ok = 0;
    for (int j = 0; j < n_pl; j++) {
        sreq *r = pl[j];
        qwen35_seq *seq = s->seqs[r->slot];
        const int room = s->p.n_ctx - qwen35_seq_n_past(seq);
        int cap = pool - (n_pl - 1);
        if (cap > room) cap = room;
        const int max_emit = r->p.n_predict < 0 ? INT_MAX : r->p.n_predict - r->res.n_gen;
        ar_error err;
        double *g = s->gain + (size_t)n_ok * M;
        int k = r->p.spec->plan(r->p.spec, seq, r->pending, cap, max_emit, g, &err);
        if (k >= 0 && (k < 1 || k > cap))
            k = ar_fail(&err, AR_EINVAL, "speculative hook planned %d nodes (1..%d allowed)", k, cap);
        if (k < 0) { fail(s, r, k, &err); continue; }
        pl[n_ok] = r;
        s->plan_n[n_ok++] = k;
    }
    n_pl = n_ok;
    /* roots, then one draft node each while the pool lasts */
    int used = 0;
    double g0 = 0;
    for (int j = 0; j < n_pl; j++) s->plan_a[j] = 1, used++;
    for (int j = 0; j < n_pl && used < pool; j++)
        if (s->plan_n[j] >= 2) {
            s->plan_a[j] = 2;
            used++;
            g0 += s->gain[(size_t)j * M + 1];
        }
    for (int j = 0; j < n_pl; j++) pl[j]->allot = s->plan_a[j];
    /* the extra nodes in order of marginal gain */
    int n_extra = 0;
    s->cgain[0] = 0;
    while (used + n_extra < pool) {
        int best = -1;
        double best_m = 0;
        for (int j = 0; j < n_pl; j++) {
            const int a = s->plan_a[j];
            if (a < 2 || a >= s->plan_n[j]) continue;
            const double *g = s->gain + (size_t)j * M;
            const double m = g[a] - g[a - 1];
            if (m > best_m) { best_m = m; best = j; }
        }
        if (best < 0) break;
        s->pick[n_extra] = best;
        s->cgain[n_extra + 1] = s->cgain[n_extra] + best_m;
        s->plan_a[best]++;
        n_extra++;
    }
    /* how many of them: the best expected rate under the cost model (none until a width is measured) */
    int take = 0;
    if (s->cost && s->cost_widest > 0) {
        const int width0 = fixed + used;
        int cap = 2 * s->cost_widest - 1 - width0;
        if (cap > n_extra) cap = n_extra;
        const double other = ar_budget_other_s(s->cost);
        double best_rate = -1;
        for (int e = 0; e <= cap; e++) {
            double t = ar_budget_forward_s(s->cost, width0 + e) + other;
            double rate = ((double)n_dec + g0 + s->cgain[e]) / (t > 1e-12 ? t : 1e-12);
            if (rate > best_rate) { best_rate = rate; take = e; }
        }
    }
    for (int e = 0; e < take; e++) pl[s->pick[e]]->allot++;
    s->planned = true;
}

static void account(ar_sched *s, double t0, double forward_s, int n, int n_dec, uint64_t n_prefilled)
{
    pthread_mutex_lock(&s->mu);
    if (n > 0) {
        s->st.n_steps++;
        s->st.n_nodes += (uint64_t)n;
        s->st.n_decode_nodes += (uint64_t)n_dec;
        s->st.last_batch = n;
        if (n > s->st.max_batch) s->st.max_batch = n;
        s->st.batch_hist[hist_bucket(n)]++;
    }
    s->st.n_prefilled += n_prefilled;
    s->st.n_generated += s->step_gen;
    s->step_gen = 0;
    s->st.forward_s += forward_s;
    s->st.commit_s += s->step_commit_s;
    s->step_commit_s = 0;
    s->st.busy_s += ar_now() - t0;
    pthread_mutex_unlock(&s->mu);
}

int ar_sched_step(ar_sched *s)
{
    const double t0 = ar_now();
    /* a full context ends a request before admission, so its slot is reused in this same step */
    for (int i = 0; i < s->p.n_parallel; i++) {
        sreq *r = s->slot_req[i];
        if (r && r->phase == PH_DECODE && qwen35_seq_n_past(s->seqs[i]) >= s->p.n_ctx) {
            r->res.stop = AR_STOP_CONTEXT;
            finish(s, r, NULL, 0, NULL);
        }
    }
again:
    admit(s);
    release_waiters(s);

    /* decode first: every decoding request's node(s) */
    int n = 0, n_rows = 0, n_seg = 0, n_dec = 0, n_decoding = 0;
    bool want_taps = false;
    ar_error err;
    int n_prefilling = 0;
    for (int i = 0; i < s->p.n_parallel; i++) {
        if (s->slot_req[i] && s->slot_req[i]->phase == PH_DECODE) n_decoding++;
        if (s->slot_req[i] && s->slot_req[i]->phase == PH_PREFILL && s->slot_req[i]->lead_slot < 0) n_prefilling++;
    }
    /* hooks share the nodes evenly, leaving prompts a quarter of the batch (or their budget) */
    const int reserve = n_prefilling ? (s->p.prefill_budget < s->max_nodes / 4 ? s->p.prefill_budget : s->max_nodes / 4) : 0;
    const int share = n_decoding ? ((s->max_nodes - reserve) / n_decoding > 0 ? (s->max_nodes - reserve) / n_decoding : 1) : 0;
    plan_shares(s, reserve, share);   /* hooks with `plan` (--budget auto): by expected gain instead */
    for (int i = 0; i < s->p.n_parallel; i++) {
        sreq *r = s->slot_req[i];
        if (!r || r->phase != PH_DECODE) continue;
        qwen35_seq *seq = s->seqs[i];
        const int room = s->p.n_ctx - qwen35_seq_n_past(seq);
        if (room <= 0) { r->res.stop = AR_STOP_CONTEXT; finish(s, r, NULL, 0, NULL); continue; }
        if (n >= s->max_nodes) continue;         /* more decoders than nodes: next step */
        seg *g = &s->segs[n_seg];
        *g = (seg){ .r = r, .kind = PH_DECODE, .start = n, .row0 = n_rows, .spec = r->p.spec != NULL };
        if (!r->p.spec) {
            s->nodes[n] = (ar_node){ .seq = i, .token = r->pending, .pos = qwen35_seq_n_past(seq), .parent = -1,
                                     .want_logits = true, .commit = true };   /* always committed */
            g->n = 1;
        } else {
            int cap = share < room ? share : room;
            if (r->p.spec->plan && r->allot > 0) cap = r->allot < room ? r->allot : room;
            if (cap > s->max_nodes - n) cap = s->max_nodes - n;
            int k = propose(s, r, seq, n, cap, &err);
            if (k < 0) { fail(s, r, k, &err); continue; }
            g->n = k;
            if (r->p.spec->n_taps > 0) want_taps = true;
        }
        n += g->n;
        n_rows += g->n;
        n_seg++;
    }
    n_dec = n;

    /* then prompt chunks, oldest request first, up to the budget */
    int n_pre = 0;
    for (int i = 0; i < s->p.n_parallel; i++)
        if (s->slot_req[i] && s->slot_req[i]->phase == PH_PREFILL && s->slot_req[i]->lead_slot < 0)
            s->order[n_pre++] = s->slot_req[i];
    qsort(s->order, (size_t)n_pre, sizeof *s->order, cmp_admit);
    const int full = s->p.prefill_budget < s->max_nodes - n ? s->p.prefill_budget : s->max_nodes - n;
    int budget = full;
    bool captured = false;   /* one ar_node.capture per forward */
    for (int j = 0; j < n_pre && budget > 0; j++) {
        sreq *r = s->order[j];
        qwen35_seq *seq = s->seqs[r->slot];
        const int pos = qwen35_seq_n_past(seq), np = r->p.n_prompt;
        int end = pos + budget < np ? pos + budget : np, cap = 0;
        /* a chunk ends at a boundary, where the cache snapshot is taken, unless the forward can
         * capture the state there (the first boundary inside the chunk, one per forward): then the
         * chunk goes on, which saves a forward per turn (the generation prompt after the last
         * message would otherwise be one) */
        int kb = r->next_bound;
        if (kb < r->n_bounds && r->bounds[kb] > pos && r->bounds[kb] < end) {
            if (s->cache && !captured) {
                cap = r->bounds[kb++];
                captured = true;
            }
            if (kb < r->n_bounds && r->bounds[kb] > pos && r->bounds[kb] < end) end = r->bounds[kb];
        }
        /* logits only where the chunk ends naturally (any cut: a node's arithmetic does not depend on it) */
        const bool natural = end == np || (kb < r->n_bounds && end == r->bounds[kb]);
        const int k = end - pos;
        seg *g = &s->segs[n_seg++];
        *g = (seg){ .r = r, .kind = PH_PREFILL, .start = n, .n = k, .row0 = natural ? n_rows : -1, .end = end,
                    .cap = cap, .spec = r->p.spec != NULL };
        for (int t = 0; t < k; t++)
            s->nodes[n + t] = (ar_node){ .seq = r->slot, .token = r->toks[pos + t], .pos = pos + t,
                                         .parent = t ? n + t - 1 : -1, .want_logits = natural && t == k - 1,
                                         .commit = true, .capture = pos + t + 1 == cap };   /* a prompt chunk: committed */
        if (natural) n_rows++;
        if (r->p.spec && r->p.spec->n_taps > 0) want_taps = true;
        n += k;
        budget -= k;
    }
    if (n == 0) {
        bool retry = false;   /* requests that ended while the batch was built freed slots for queued ones */
        pthread_mutex_lock(&s->mu);
        retry = s->q_head && s->n_active < s->p.n_parallel;
        pthread_mutex_unlock(&s->mu);
        if (retry) goto again;
        account(s, t0, 0, 0, 0, 0);
        return 0;
    }

    /* one forward for everyone */
    int rc = grow_rows(s, n_rows, &err);
    if (!rc && want_taps) rc = need_taps(s, &err);
    double tf = ar_now();
    if (!rc) {
        ar_batch b = { .n_nodes = n, .nodes = s->nodes, .logits = s->logits };
        if (want_taps) { b.n_taps = s->n_taps; b.tap_layers = s->tap_layers; b.taps = s->taps; }
        rc = qwen35_forward(s->ctx, s->seqs, &b, &err);
    }
    tf = ar_now() - tf;
    if (!rc && s->cost && n == n_dec) {   /* a decode-only forward: a sample of T(width) */
        ar_budget_observe_forward(s->cost, n, tf);
        if (n > s->cost_widest) s->cost_widest = n;
    }
    if (rc) {
        for (int j = 0; j < n_seg; j++) fail(s, s->segs[j].r, rc, &err);
        account(s, t0, tf, n, n_dec, 0);
        return n;
    }

    /* per request: commit, sample, stream */
    uint64_t n_prefilled = 0;
    for (int j = 0; j < n_seg; j++) {
        seg *g = &s->segs[j];
        sreq *r = g->r;
        const float *rows = g->row0 >= 0 ? s->logits + (size_t)g->row0 * (size_t)s->n_vocab : NULL;
        if (g->kind == PH_PREFILL) {
            for (int t = 0; t < g->n; t++) s->path[t] = g->start + t;
            rc = commit(s, r, s->path, g->n, want_taps && g->spec && r->p.spec->n_taps > 0, &err);
            if (rc) { fail(s, r, rc, &err); continue; }
            r->res.n_prefilled += g->n;
            n_prefilled += (uint64_t)g->n;
            if (g->cap) {   /* the boundary inside the chunk */
                r->next_bound++;
                qwen35_snap *snap = NULL;
                if ((rc = qwen35_snap_take_captured(&snap, s->ctx, s->seqs[r->slot], &err)) ||
                    (rc = ar_pcache_put_snap(s->cache, snap, r->toks, NULL, false, &err)))
                    ar_log(AR_LOG_WARN, "prefix cache: %s", err.msg);
            }
            if (r->next_bound < r->n_bounds && r->bounds[r->next_bound] == g->end) {
                r->next_bound++;
                if (s->cache && (rc = ar_pcache_put(s->cache, s->seqs[r->slot], r->toks, rows, false, &err)))
                    ar_log(AR_LOG_WARN, "prefix cache: %s", err.msg);
            }
            if (g->end == r->p.n_prompt) prompt_done(s, r, rows);
        } else if (!g->spec) {
            s->path[0] = g->start;
            rc = commit(s, r, s->path, 1, false, &err);
            if (rc) { fail(s, r, rc, &err); continue; }
            if (sample_emit(s, r, rows)) finish(s, r, rows, 0, NULL);
        } else {
            rc = spec_accept(s, g, rows, want_taps && r->p.spec->n_taps > 0, &err);
            if (rc) fail(s, r, rc, &err);
        }
    }
    if (s->planned && s->cost && n == n_dec) ar_budget_observe_round(s->cost, -1.0, 0, ar_now() - t0 - tf);
    account(s, t0, tf, n, n_dec, n_prefilled);
    return n;
}

/* ---- thread, idle, cache, stats ------------------------------------------------------------ */

static void *run_thread(void *arg)
{
    ar_sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->stopping && s->n_queued == 0 && s->n_active == 0) pthread_cond_wait(&s->cv_work, &s->mu);
        bool stop = s->stopping;
        pthread_mutex_unlock(&s->mu);
        if (stop) break;
        ar_sched_step(s);
    }
    return NULL;
}

int ar_sched_start(ar_sched *s, ar_error *err)
{
    if (s->started) return ar_fail(err, AR_EINVAL, "the scheduler is already running");
    if (pthread_create(&s->thread, NULL, run_thread, s))
        return ar_fail(err, AR_ENOMEM, "cannot start the scheduler thread");
    s->started = true;
    return AR_OK;
}

void ar_sched_wait_idle(ar_sched *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->n_queued > 0 || s->n_active > 0) pthread_cond_wait(&s->cv_idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

void ar_sched_cache_clear(ar_sched *s)
{
    if (s->cache) ar_pcache_clear(s->cache);
}

void ar_sched_get_stats(ar_sched *s, ar_sched_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->n_active = s->n_active;
    out->n_queued = s->n_queued;
    pthread_mutex_unlock(&s->mu);
    out->kv_pages = ar_kv_pool_live(s->pool);
    out->kv_pages_peak = ar_kv_pool_peak(s->pool);
    out->kv_bytes = ar_kv_pool_live_bytes(s->pool);
    out->kv_copies = ar_kv_pool_copies(s->pool);
    if (s->cache) ar_pcache_get_stats(s->cache, &out->cache);
}
