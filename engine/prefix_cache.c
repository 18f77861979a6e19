/* engine/prefix_cache.c — see prefix_cache.h.
 *
 * Entries live in one doubly linked list, most recently used first; a lookup compares each entry's
 * token list with the prompt (a few entries of a few thousand tokens: a memcmp each, far below the
 * cost of one forward). Bytes are accounted when an entry is linked and unlinked, under the mutex.
 *
 * Eviction: least recently used first, except that an entry a boundary entry extends (a
 * conversation's earlier boundary once a later one is stored), that fewer than two requests resumed
 * from and that no two entries extend in different directions goes before any other. A conversation's
 * next turn resumes from its latest boundary, so the earlier ones are worth little, while a prefix
 * several conversations share (a system prompt) branches or has hits and is kept. Plain LRU let one
 * round of ten agents' earlier boundaries push out the latest boundary of the agent that was slowest
 * to come back (a 5,400-token re-prefill in bench/agents.sh); without the branch rule a system prompt
 * stored again after an eviction (no hits yet) went first, and new conversations prefilled it. An
 * answer's snapshot nobody resumed from goes in the same first pass: the next turn resumes from it
 * only when the template keeps the answer as generated (after tool calls); kept otherwise, such
 * snapshots crowded a 30-minute soak's shared system prompt out of the cache. */
#include "engine/prefix_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *prev, *next;
    int n;                    /* tokens */
    int n_longer;             /* boundary entries in the cache whose tokens extend this one's */
    int32_t next_tok;         /* the token after this entry's in the first of them */
    bool branches;            /* two of them went on with different tokens: a prefix several
                               * conversations share (a system prompt), never "earlier boundary" */
    bool answer;              /* ends a generated answer as generated (ar_pcache_put's answer) */
    int hits;                 /* resumes from it */
    int32_t *tokens;
    float *logits;            /* [n_vocab] or NULL */
    qwen35_snap *snap;
    size_t own_bytes;         /* state + tokens + logits (KV pages are counted by pinning) */
} entry;

struct ar_pcache {
    pthread_mutex_t mu;
    entry *head, *tail;
    int n_vocab;
    ar_pcache_stats st;
};

int ar_pcache_create(ar_pcache **out, size_t cap_bytes, int n_vocab, ar_error *err)
{
    *out = NULL;
    if (cap_bytes == 0 || n_vocab < 1) return ar_fail(err, AR_EINVAL, "prefix cache: cap and vocabulary must be positive");
    ar_pcache *c = calloc(1, sizeof *c);
    if (!c) return ar_fail(err, AR_ENOMEM, "out of memory for the prefix cache");
    pthread_mutex_init(&c->mu, NULL);
    c->n_vocab = n_vocab;
    c->st.cap = cap_bytes;
    *out = c;
    return AR_OK;
}

static void unlink_entry(ar_pcache *c, entry *e)
{
    if (e->prev) e->prev->next = e->next; else c->head = e->next;
    if (e->next) e->next->prev = e->prev; else c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void push_front(ar_pcache *c, entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head) c->head->prev = e; else c->tail = e;
    c->head = e;
}

static bool is_prefix(const entry *a, const entry *b)   /* a's tokens begin b's (a shorter) */
{
    return a->n < b->n && !memcmp(a->tokens, b->tokens, (size_t)a->n * sizeof *a->tokens);
}

/* e enters (+1) or leaves (-1) the cache: the entries a boundary entry extends count it in n_longer
 * (an answer as generated does not make them redundant: the next turn may render it otherwise). */
static void count_longer(ar_pcache *c, const entry *e, int delta)
{
    if (e->answer) return;
    for (entry *x = c->head; x; x = x->next) {
        if (x == e || !is_prefix(x, e)) continue;
        if (delta > 0 && x->n_longer == 0 && !x->branches) x->next_tok = e->tokens[x->n];
        else if (delta > 0 && e->tokens[x->n] != x->next_tok) x->branches = true;
        x->n_longer += delta;
    }
}

static void entry_drop(ar_pcache *c, entry *e)
{
    unlink_entry(c, e);
    count_longer(c, e, -1);
    size_t kv = qwen35_snap_pin(e->snap, -1);
    c->st.kv_bytes -= kv;
    c->st.bytes -= kv + e->own_bytes;
    c->st.n_entries--;
    qwen35_snap_free(e->snap);
    free(e->tokens);
    free(e->logits);
    free(e);
}

void ar_pcache_clear(ar_pcache *c)
{
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    while (c->head) entry_drop(c, c->head);
    pthread_mutex_unlock(&c->mu);
}

void ar_pcache_free(ar_pcache *c)
{
    if (!c) return;
    ar_pcache_clear(c);
    pthread_mutex_destroy(&c->mu);
    free(c);
}

static entry *find_exact(ar_pcache *c, const int32_t *tokens, int n)
{
    for (entry *e = c->head; e; e = e->next)
        if (e->n == n && !memcmp(e->tokens, tokens, (size_t)n * sizeof *tokens)) return e;
    return NULL;
}

/* An entry for tokens[0, n) is there already: move it to the front, add logits if it had none. */
static bool refresh(ar_pcache *c, const int32_t *tokens, int n, const float *logits)
{
    const size_t lbytes = (size_t)c->n_vocab * sizeof(float);
    entry *e = find_exact(c, tokens, n);
    if (!e) return false;
    unlink_entry(c, e);
    push_front(c, e);
    c->st.n_refreshed++;
    if (logits && !e->logits && (e->logits = malloc(lbytes))) {
        memcpy(e->logits, logits, lbytes);
        e->own_bytes += lbytes;
        c->st.bytes += lbytes;
    }
    return true;
}

int ar_pcache_put(ar_pcache *c, const qwen35_seq *seq, const int32_t *tokens, const float *logits, bool answer,
                  ar_error *err)
{
    const int n = qwen35_seq_n_past(seq);
    if (n < 1) return AR_OK;
    pthread_mutex_lock(&c->mu);
    const bool had = refresh(c, tokens, n, logits);
    pthread_mutex_unlock(&c->mu);
    if (had) return AR_OK;
    /* take the snapshot outside the lock (copies the recurrent state) */
    qwen35_snap *snap = NULL;
    int rc = qwen35_snap_take(&snap, seq, err);
    if (rc) return rc;
    return ar_pcache_put_snap(c, snap, tokens, logits, answer, err);
}

int ar_pcache_put_snap(ar_pcache *c, qwen35_snap *snap, const int32_t *tokens, const float *logits, bool answer,
                       ar_error *err)
{
    const int n = qwen35_snap_n_past(snap);
    const size_t lbytes = (size_t)c->n_vocab * sizeof(float);
    size_t own = qwen35_snap_state_bytes(snap) + (size_t)n * sizeof *tokens + (logits ? lbytes : 0);
    if (own > c->st.cap) {
        qwen35_snap_free(snap);
        pthread_mutex_lock(&c->mu);
        c->st.n_rejected++;
        pthread_mutex_unlock(&c->mu);
        return AR_OK;
    }
    entry *e = calloc(1, sizeof *e);
    if (e) e->tokens = malloc((size_t)n * sizeof *tokens);
    if (e && logits) e->logits = malloc(lbytes);
    if (!e || !e->tokens || (logits && !e->logits)) {
        if (e) { free(e->tokens); free(e->logits); free(e); }
        qwen35_snap_free(snap);
        return ar_fail(err, AR_ENOMEM, "out of memory for a prefix cache entry of %d tokens", n);
    }
    e->n = n;
    memcpy(e->tokens, tokens, (size_t)n * sizeof *tokens);
    if (logits) memcpy(e->logits, logits, lbytes);
    e->snap = snap;
    e->own_bytes = own;
    e->answer = answer;

    pthread_mutex_lock(&c->mu);
    if (refresh(c, tokens, n, logits)) {      /* stored already (or by another thread meanwhile) */
        pthread_mutex_unlock(&c->mu);
        qwen35_snap_free(snap);
        free(e->tokens);
        free(e->logits);
        free(e);
        return AR_OK;
    }
    size_t kv = qwen35_snap_pin(snap, +1);
    c->st.kv_bytes += kv;
    c->st.bytes += kv + own;
    c->st.n_entries++;
    c->st.n_put++;
    for (entry *x = c->head; x; x = x->next) {
        if (x->answer || !is_prefix(e, x)) continue;
        if (e->n_longer++ == 0) e->next_tok = x->tokens[e->n];
        else if (x->tokens[e->n] != e->next_tok) e->branches = true;
    }
    count_longer(c, e, +1);
    push_front(c, e);
    while (c->st.bytes > c->st.cap && c->tail != e) {
        entry *v = c->tail;
        for (entry *x = c->tail; x && x != e; x = x->prev)
            if ((x->n_longer > 0 && !x->branches && x->hits < 2) || (x->answer && x->hits == 0)) { v = x; break; }
        entry_drop(c, v);
        c->st.n_evicted++;
    }
    if (c->st.bytes > c->st.cap) {            /* its own KV pages do not fit either */
        entry_drop(c, e);
        c->st.n_put--;
        c->st.n_rejected++;
    }
    pthread_mutex_unlock(&c->mu);
    return AR_OK;
}

/* The best entry for tokens[0..n) of at most max_n tokens; caller holds the mutex. */
static entry *best_match(ar_pcache *c, const int32_t *tokens, int n, int max_n, int allow_full)
{
    entry *best = NULL;
    for (entry *e = c->head; e; e = e->next) {
        if (e->n > n || e->n > max_n || (best && e->n <= best->n)) continue;
        if (e->n == n && (!e->logits || !allow_full)) continue;
        if (!memcmp(e->tokens, tokens, (size_t)e->n * sizeof *tokens)) best = e;
    }
    return best;
}

int ar_pcache_match(ar_pcache *c, const int32_t *tokens, int n, int max_n, int *has_logits)
{
    pthread_mutex_lock(&c->mu);
    entry *e = best_match(c, tokens, n, max_n, 1);
    int got = e ? e->n : 0;
    if (has_logits) *has_logits = e && e->logits;
    pthread_mutex_unlock(&c->mu);
    return got;
}

int ar_pcache_resume(ar_pcache *c, qwen35_seq *seq, const int32_t *tokens, int n, float *logits, ar_error *err)
{
    pthread_mutex_lock(&c->mu);
    entry *e = best_match(c, tokens, n, qwen35_seq_n_ctx(seq), logits != NULL);
    if (!e) {
        c->st.n_misses++;
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    int rc = qwen35_seq_restore(seq, e->snap, err);
    if (rc) { pthread_mutex_unlock(&c->mu); return rc; }
    if (e->n == n && logits) memcpy(logits, e->logits, (size_t)c->n_vocab * sizeof(float));
    unlink_entry(c, e);
    push_front(c, e);
    e->hits++;
    c->st.n_hits++;
    c->st.tokens_reused += (uint64_t)e->n;
    int got = e->n;
    pthread_mutex_unlock(&c->mu);
    return got;
}

void ar_pcache_get_stats(ar_pcache *c, ar_pcache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    *out = c->st;
    pthread_mutex_unlock(&c->mu);
}
