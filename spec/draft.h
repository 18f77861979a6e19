/* spec/draft.h — draft sources: what proposes the tokens speculative decoding verifies.
 *
 * A draft source follows ONE sequence. Between rounds it has seen every committed position of that
 * sequence (tokens, and the target's tap features when it asks for taps) and nothing else. Asked to
 * draft for the anchor a at position P (sampled and emitted, not yet run through the target), it fills
 * an ar_draft table for positions P+1 .. P+n_depth:
 *   chain[d-1]          the proposed token at depth d (the argmax chain a chain verifier checks);
 *   ids/logp[d-1][r]    the top-K candidates at depth d, best first (ties: lower id), with their
 *                       log-probabilities (log-softmax over the whole vocabulary, temperature 1).
 * Depth d's candidates are MARGINALS: they do not depend on the choice made at depths < d (one DFlash
 * block forward gives all depths at once). DDTree builds its best-first tree from exactly this table
 * (specs/ddtree.md §1.1); the chain verifier (spec/chain.h) reads only `chain`.
 *
 * Feeding a source (the caller's job, see spec/chain.h and engine/generate.c): every target forward
 * whose nodes get committed passes ar_draft_taps() to the forward, and after the commit calls
 * ar_draft_commit() with the committed tokens and their tap rows, in position order, starting at the
 * source's n_past. Features of uncommitted (rejected) nodes never reach the source.
 *
 * Implementations:
 *   DFlash   (spec/dflash_source.c) the block-diffusion drafter of model/dflash.h: commit = KV injection
 *            of the committed features (dflash_append), draft = one block [a, MASK x (B-1)] forward.
 *   replay   (spec/replay.c, for tests) proposes a known reference continuation, with errors injected
 *            at chosen depths, so each acceptance length and rollback path is exercised on purpose.
 *
 * Ownership: the source owns its per-sequence state and the arrays an ar_draft points to (valid until
 * the next call on the source). Not thread-safe. */
#ifndef AR_SPEC_DRAFT_H
#define AR_SPEC_DRAFT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "model/dflash.h"
#include "model/qwen35.h"

#define AR_DRAFT_MAX_K 64   /* most candidates per depth a source may be asked for */

/* The proposal for positions P+1 .. P+n_depth. */
typedef struct ar_draft {
    int      n_depth;    /* depths filled */
    int      k;          /* candidates per depth in ids/logp (0 when only the chain was asked for) */
    int32_t *chain;      /* [n_depth] */
    int32_t *ids;        /* [n_depth][k], best first */
    float   *logp;       /* [n_depth][k], log-probabilities, descending */
} ar_draft;

typedef struct ar_draft_source ar_draft_source;

typedef struct ar_draft_source_ops {
    int  (*draft)(ar_draft_source *s, int32_t anchor, int pos, int n_depth, int top_k, ar_draft *out, ar_error *err);
    int  (*commit)(ar_draft_source *s, const int32_t *tokens, const float *features, int n, int pos0, ar_error *err);
    void (*reset)(ar_draft_source *s);
    void (*destroy)(ar_draft_source *s);
} ar_draft_source_ops;

/* The common part every source starts with (implementations embed it first). */
struct ar_draft_source {
    const ar_draft_source_ops *ops;
    const char *name;          /* "dflash", "replay" */
    int n_taps;                /* target layers whose input the source needs for every committed position */
    const int *tap_layers;     /*   (qwen35 ar_batch convention); 0 / NULL: tokens are enough */
    int feature_size;          /* floats per position in ar_draft_commit's features (n_taps * n_embd) */
    int block;                 /* the block it drafts with: anchor + up to block-1 depths */
    int max_k;                 /* most candidates per depth it can return */
    int n_past;                /* committed positions seen */
};

/* Propose depths 1..n_depth (n_depth <= block - 1) for the anchor at pos == n_past. top_k = 0 asks
 * for the chain only (no log-softmax); 1 <= top_k <= max_k also fills ids/logp. */
int  ar_draft_propose(ar_draft_source *s, int32_t anchor, int pos, int n_depth, int top_k, ar_draft *out,
                      ar_error *err);
/* Committed positions pos0 .. pos0+n-1 (pos0 == n_past): their tokens and, when n_taps > 0, their tap
 * features [n][feature_size] (the rows a qwen35 forward writes to ar_batch.taps). */
int  ar_draft_commit(ar_draft_source *s, const int32_t *tokens, const float *features, int n, int pos0,
                     ar_error *err);
void ar_draft_reset(ar_draft_source *s);       /* back to an empty sequence */
void ar_draft_free(ar_draft_source *s);        /* NULL is a no-op */

/* Top-k of one logits row (1 <= k <= AR_DRAFT_MAX_K): ids best first (ties: lower id) and, when logp != NULL, their
 * log-softmax over all n_vocab entries (NaN logits count as -inf). Returns the argmax. */
int32_t ar_draft_topk(const float *logits, int n_vocab, int k, int32_t *ids, float *logp);

/* ---- DFlash ------------------------------------------------------------------------------------
 * A source over a drafter loaded for target (model/dflash.h): it borrows d and c (one ctx may serve many sources,
 * one call at a time) and owns the sequence's drafter context cache (n_ctx positions) and a logits
 * buffer of block-1 rows. block <= 0: the drafter's trained block; must fit the ctx's max_rows. */
int ar_dflash_source_create(ar_draft_source **out, const qwen35_model *target, const dflash_model *d, dflash_ctx *c,
                            int n_ctx, int block, int max_k, ar_error *err);

/* ---- replay (tests) -----------------------------------------------------------------------------
 * Proposes ref[P+1 .. P+n_depth] (ref = the whole reference sequence from position 0: prompt and the
 * continuation of a plain run); positions past the end of ref propose token 0. Errors: round r (the
 * r-th propose call) corrupts depth errors[r % n_errors] (1-based; 0 or beyond n_depth: no error) to a
 * token != the reference one; depths after the error propose the reference again (a chain verifier
 * never reaches them). The candidates per depth are the proposal, then the next ids, with made-up
 * decreasing log-probs. */
int  ar_replay_source_create(ar_draft_source **out, const int32_t *ref, int n_ref, int32_t n_vocab, int block,
                             ar_error *err);
void ar_replay_set_errors(ar_draft_source *s, const int *errors, int n_errors);   /* copies; n 0: none */
/* Committed tokens that differed from ref so far (a T = 0 run must give 0), and the first such position
 * (-1 if none). */
int  ar_replay_mismatches(const ar_draft_source *s, int *first_pos);

#endif
