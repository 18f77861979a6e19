/* engine/sched.h — continuous batching: N sequences generating at once, one forward per step.
 *
 * Requests come from any thread (ar_sched_submit: token ids, sampling, callbacks); the scheduler runs
 * them on n_parallel sequence slots. Every step builds ONE batch of nodes from all active sequences
 * (docs/ARCHITECTURE.md: a batch is a forest of per-sequence chains and trees), runs one
 * qwen35_forward, then samples, streams and commits per sequence:
 *   1. admission   queued requests take free slots (FIFO); a request resumes from the prefix cache
 *                  (engine/prefix_cache.h) when an entry matches the start of its prompt;
 *   2. decode      first, every decoding sequence gets its node(s): its pending token (plain
 *                  decoding), or the chain / tree its speculative hook proposes (ar_sched_spec;
 *                  engine/spec_hook.h adapts the draft sources), hooks with `plan` (--budget auto)
 *                  sharing the nodes by expected gain;
 *   3. prefill     then prompt chunks fill the rest of the step's token budget (prefill_budget),
 *                  oldest request first, so a long prompt never stalls the others' decode by more
 *                  than one budget per step. Chunks end at the prompt's snapshot boundaries and
 *                  otherwise where the budget ends (a node's arithmetic does not depend on the
 *                  batch: GEMM rows are the same bits for any M and attention cuts its softmax
 *                  blocks at absolute positions, so a request's output does not depend on how its
 *                  prompt was chunked, hence not on the other requests);
 *   4. forward     one qwen35_forward over the whole batch (each weight read once for everyone);
 *   5. per seq     commit the prompt chunk (snapshot into the prefix cache at a boundary); sample the
 *                  first / next token (or let the hook accept a verified path and commit it); stream
 *                  it through on_token; finish on end-of-generation, n_predict, context full, a
 *                  callback stop or cancellation; on_done once, the slot is freed (KV pages let go).
 * Each sequence's sampling is exactly ar_generate's (engine/generate.c): the prompt tokens go into the
 * sampler's history, the first token is sampled from the prompt's last logits, then one token per
 * decode step. So at temperature 0 a request's tokens do not depend on what else runs (tests/
 * test_sched.c checks it), and at temperature > 0 they are a sample of the same distribution.
 *
 * Threads: ar_sched_start runs the steps on a thread of its own (it sleeps while there is no work);
 * without it the caller drives ar_sched_step itself (tests). Callbacks (on_token, on_done) run on the
 * stepping thread and must not block for long; they may call ar_sched_submit / ar_sched_cancel. The
 * scheduler uses the model's compute context (ar_model's one qwen35_ctx): while a scheduler exists,
 * do not call ar_generate / ar_session_eval on sessions of the same model.
 *
 * Memory: n_parallel sequences of n_ctx tokens (the recurrent state allocated up front, KV pages as
 * they grow, optionally capped by kv_max_pages), a batch scratch, and the prefix cache (cache_bytes).
 * When every request has ended and the cache is cleared, no KV page is left (ar_sched_stats.kv_pages). */
#ifndef AR_ENGINE_SCHED_H
#define AR_ENGINE_SCHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arbor.h"
#include "engine/prefix_cache.h"
#include "model/qwen35.h"
#include "spec/sample.h"

typedef struct ar_sched ar_sched;

typedef struct ar_sched_params {
    int    n_parallel;      /* sequence slots (requests generating at once); <= 0: 4 */
    int    n_ctx;           /* context of each sequence; <= 0: 4096 (at most the training context) */
    int    kv_page;         /* KV page size in tokens; <= 0: 256 */
    int    prefill_budget;  /* most prompt tokens per step over all sequences; <= 0: the model's max batch */
    int    max_queue;       /* requests waiting for a slot at most (then submit fails); <= 0: 64 */
    size_t cache_bytes;     /* prefix cache cap in bytes; 0: no prefix cache */
    long   kv_max_pages;    /* KV pages over all sequences and the cache at most; <= 0: no cap */
} ar_sched_params;

ar_sched_params ar_sched_defaults(void);

/* ---- speculative decoding hook ----------------------------------------------------------------
 * A request may bring a per-sequence hook that replaces "one node per step" by a chain or a tree of
 * draft nodes verified in the shared forward (spec/chain.h and spec/tree_verify.h split into their
 * two halves). State between steps is the chain's: the sequence has committed x_0..x_{P-1}; the
 * anchor x_P (the pending token) was sampled and emitted but not evaluated.
 *   propose    write the nodes to verify: tokens[0] = anchor with parents[0] = -1, then drafts whose
 *              parents are earlier indices of this list (a chain: parents[i] = i - 1). At most
 *              max_nodes (the scheduler's share for this sequence this step: the batch split evenly
 *              between the decoding sequences, minus a reserve for prompt chunks while a prompt is
 *              being prefilled (a quarter of the batch, or the prefill budget if smaller); for a hook
 *              with `plan`, its allotment, see below; never more than the context room) and useful
 *              only up to max_emit tokens. Returns the count (>= 1) or a
 *              negative AR_E* code. Node i goes at position P + depth(i); every node wants logits.
 *   accept     with the logits rows [n_nodes][n_vocab] of those nodes (in proposal order): walk them
 *              with the request's sampler exactly as spec/chain.h / ddtree_walk do (one
 *              ar_sampler_sample + ar_sampler_accept per emitted token), calling emit(emit_user, y)
 *              for every emitted token (it returns true to stop: end of generation, n_predict), and
 *              write the path: path[i] = the node whose row emitted token i, root first, each the
 *              parent of the next (so n_path == the number of tokens emitted, and the committed path
 *              is [anchor, y_0, ..., y_{n_path-2}]; y_{n_path-1} becomes the next anchor).
 *   committed  after every commit of the sequence (prompt chunks and accepted paths): the committed
 *              tokens at positions pos0.. and, when n_taps > 0, their tap rows [n][n_taps][n_embd]
 *              (ar_draft_commit's input).
 *   resumed    the sequence was restored from the prefix cache at n tokens (tokens[0..n)); the hook
 *              catches its drafter up (or returns 0 and drafts from a shorter context: verification is
 *              lossless anyway). NULL: requests with this hook never resume from the cache.
 *   destroy    when the request ends.
 *   plan       optional, ar_sched_spec.plan (a DDTree with --budget auto; NULL: the even share above;
 *              kept out of this table so that existing positional initializers stay complete). Called
 *              before propose in the same step: draft now for the anchor at n_past(seq) and report the
 *              tree it would
 *              propose with up to max_nodes nodes: return n (1..max_nodes), the most nodes worth
 *              proposing, and gain[k] for k = 0..n-1 = the expected number of draft tokens accepted
 *              when proposing k + 1 nodes, as well as the hook can tell (gain[0] = 0, non-decreasing,
 *              with non-increasing steps, as the prefixes of a best-first tree have). The scheduler
 *              shares the decode nodes between the planning sequences by marginal gain: each gets its
 *              root and one draft node (when it has one), then every further node goes to the sequence
 *              whose next node adds the most expected tokens, and the total is the one that maximises
 *              expected tokens per second, (decoding sequences + gains) / (T(width) + t_other), with T
 *              measured on the step's own forwards (spec/budget.h's model, widths explored up to twice
 *              the widest measured). The propose call that follows gets max_nodes <= n (its allotment)
 *              and proposes the first max_nodes nodes of the tree it planned.
 * n_taps / tap_layers: the target layers whose input the hook needs for every committed node (the
 * DFlash features). All hooks of one scheduler must ask for the same tap layers. */
typedef struct ar_sched_spec ar_sched_spec;
typedef bool (*ar_sched_emit)(void *user, int32_t token);   /* same signature as spec/chain.h's ar_chain_emit */

typedef struct ar_sched_spec_ops {
    int  (*propose)(ar_sched_spec *sp, const qwen35_seq *seq, int32_t anchor, int max_nodes, int max_emit,
                    int32_t *tokens, int32_t *parents, ar_error *err);
    int  (*accept)(ar_sched_spec *sp, const float *logits, int n_nodes, ar_sampler *smp, int max_emit,
                   ar_sched_emit emit, void *emit_user, int *path, int *n_path, ar_error *err);
    int  (*committed)(ar_sched_spec *sp, const int32_t *tokens, const float *taps, int n, int pos0, ar_error *err);
    int  (*resumed)(ar_sched_spec *sp, const int32_t *tokens, int n, ar_error *err);
    void (*destroy)(ar_sched_spec *sp);
} ar_sched_spec_ops;

typedef int (*ar_sched_plan)(ar_sched_spec *sp, const qwen35_seq *seq, int32_t anchor, int max_nodes, int max_emit,
                             double *gain, ar_error *err);

struct ar_sched_spec {
    const ar_sched_spec_ops *ops;
    int        n_taps;        /* 0: no features needed */
    const int *tap_layers;    /* qwen35 ar_batch convention */
    ar_sched_plan plan;       /* the optional op above (NULL: even share); here rather than in the ops table */
};

/* ---- requests -------------------------------------------------------------------------------- */

/* One generated token: its text (UTF-8, never half a character, may be empty) and the logits row it
 * was sampled from (n_vocab floats, raw; valid during the call). Return true to stop after it. At the
 * end, bytes still held back are flushed with token = -1 and logits = NULL. */
typedef bool (*ar_sched_on_token)(void *user, int32_t token, const char *piece, size_t len, const float *logits);

typedef struct ar_sched_result {
    uint64_t id;
    int      status;          /* 0, or the AR_E* code of an engine failure (err says what) */
    ar_error err;
    int      stop;            /* enum ar_stop (AR_STOP_NONE when cancelled or failed) */
    bool     cancelled;       /* ar_sched_cancel or the scheduler shutting down */
    int      n_prompt;        /* prompt tokens */
    int      n_cached;        /* of those, restored from the prefix cache */
    int      n_prefilled;     /* of those, evaluated (n_prompt - n_cached, when it ran to the end) */
    int      n_gen;           /* tokens generated (streamed) */
    double   queue_s;         /* submit -> admission */
    double   prompt_s;        /* admission -> first token (time to first token = queue_s + prompt_s) */
    double   gen_s;           /* first token -> end */
    int      n_spec_steps;    /* speculative steps, and the tokens they emitted */
    int      n_spec_tokens;   /*   (acceptance length = n_spec_tokens / n_spec_steps) */
    int      n_spec_nodes;    /* draft nodes those steps verified (the anchors not counted) */
} ar_sched_result;

typedef struct ar_sched_request {
    const int32_t *prompt;      /* copied; n_prompt >= 1 */
    int            n_prompt;
    int            n_predict;   /* < 0: until the end of generation or of the context; 0: prefill only */
    ar_sampler_params sampling; /* repeat_last_n < 0: the whole context */
    bool           special;     /* streamed text includes control tokens */
    const int     *boundaries;  /* prompt positions (1..n_prompt, any order) where the state is */
    int            n_boundaries;/*   snapshotted into the prefix cache (message ends); copied */
    bool           cache_final; /* also snapshot the whole context (prompt + answer) at the end */
    bool           no_cache;    /* do not resume from the prefix cache (snapshots are still taken) */
    bool           fill;        /* a history fill (n_predict 0): prefilled only to be resumed from, so a
                                   request sharing any of its prompt beyond the cache waits for it instead
                                   of evaluating the same tokens itself (see server/gen.c) */
    int            max_prefill; /* > 0: when more than this many prompt tokens are left to evaluate after
                                   the prefix cache, the request ends at once, unevaluated (a fill whose
                                   base snapshot was evicted is not worth a whole prefill) */
    ar_sched_on_token on_token; /* may be NULL */
    void (*on_done)(void *user, const ar_sched_result *res);   /* exactly once; may be NULL */
    void          *user;
    ar_sched_spec *spec;        /* NULL: plain decoding; else owned by the scheduler once submitted */
} ar_sched_request;

/* Sequences for p->n_parallel slots on model m (its compute context; NULL p: defaults). */
int  ar_sched_create(ar_sched **out, ar_model *m, const ar_sched_params *p, ar_error *err);
/* Stops the thread, ends queued and active requests as cancelled (on_done called), frees. NULL ok. */
void ar_sched_free(ar_sched *s);

/* Run the steps on a thread of the scheduler's own. */
int  ar_sched_start(ar_sched *s, ar_error *err);

/* Queue a request (any thread). Fails before queuing, with nothing called, when the prompt is empty,
 * holds ids outside the vocabulary, does not fit the context with room for one generated token
 * (AR_ERANGE, with the numbers), a boundary is outside 1..n_prompt, the sampling parameters are bad,
 * the hook's tap layers differ from the scheduler's, or the queue is full (AR_ERANGE). *id (may be
 * NULL) names it for ar_sched_cancel. */
int  ar_sched_submit(ar_sched *s, const ar_sched_request *r, uint64_t *id, ar_error *err);

/* End a queued or running request (any thread): it stops at the next step boundary, on_done reports
 * cancelled. Unknown or finished ids are ignored. Returns true when the id was live. */
bool ar_sched_cancel(ar_sched *s, uint64_t id);

/* One step (only without ar_sched_start): admission, one forward, per-sequence work. Returns the
 * nodes evaluated (0: nothing to do). Engine failures end the affected requests (on_done with
 * status), never the scheduler. */
int  ar_sched_step(ar_sched *s);

/* Block until no request is queued or running (with ar_sched_start). */
void ar_sched_wait_idle(ar_sched *s);

/* Drop every prefix cache entry (their KV pages are let go when no sequence shares them). */
void ar_sched_cache_clear(ar_sched *s);

/* ---- metrics --------------------------------------------------------------------------------- */

#define AR_SCHED_HIST 11   /* batch-size buckets: <= 1, 2, 4, 8, ..., 512, more */

typedef struct ar_sched_stats {
    int      n_parallel;
    int      n_active;          /* requests holding a slot */
    int      n_queued;          /* requests waiting for one */
    uint64_t n_submitted, n_finished, n_cancelled, n_failed;
    uint64_t n_steps;           /* forwards */
    uint64_t n_nodes;           /* nodes over all forwards (mean batch = n_nodes / n_steps) */
    uint64_t n_decode_nodes;    /* of those, decode / verify nodes */
    int      last_batch, max_batch;
    uint64_t batch_hist[AR_SCHED_HIST];   /* forwards by node count: bucket i holds <= 2^i (last: more) */
    uint64_t n_prefilled;       /* prompt tokens evaluated */
    uint64_t n_cached;          /* prompt tokens restored from the prefix cache instead */
    uint64_t n_generated;       /* tokens streamed */
    double   busy_s;            /* time spent in steps */
    double   forward_s;         /* of which in qwen35_forward */
    double   commit_s;          /* and in qwen35_commit */
    long     kv_pages, kv_pages_peak;      /* live KV pages (sequences and cache together) */
    size_t   kv_bytes;
    long     kv_copies;         /* copy-on-write page copies */
    bool     has_cache;
    ar_pcache_stats cache;
} ar_sched_stats;

void ar_sched_get_stats(ar_sched *s, ar_sched_stats *out);   /* any thread */

#endif
