/* spec/chain.h — lossless chain speculative decoding: one round = draft a block, verify it in ONE
 * target forward, keep the longest prefix the target's own sampler agrees with, commit it
 * (specs/dflash.md §3).
 *
 * State between rounds (§3.0): the sequence has committed x_0..x_{P-1}; the anchor a = x_P was sampled
 * and emitted but not evaluated; the draft source has seen exactly positions 0..P-1.
 * One round (ar_chain_round):
 *   1. draft      d_1..d_n from the source (n = min(block-1, what the caller still wants - 1, room left in
 *                 the context - 1); the source drafts with its full block and the chain takes n depths);
 *   2. verify     nodes [a, d_1, ..., d_n] at P..P+n as one chain (node i's parent is i-1) in one
 *                 qwen35_forward: logits for every node, tap features when the source wants them;
 *   3. accept     for i = 0, 1, ...: y_i = the sampler's token on row i (penalties, top-k/p, min-p,
 *                 temperature and RNG exactly as plain decoding: one ar_sampler_sample + accept per
 *                 emitted token, in order); emit y_i; continue while i < n and y_i == d_{i+1}. At
 *                 temp 0 this is greedy verification; at temp > 0 every emitted token is one sample
 *                 of the target's own distribution given the tokens before it, so the output
 *                 distribution is the target's (no draft probabilities needed: acceptance is
 *                 "sampled == drafted", and the first mismatching sample is the bonus token);
 *   4. commit     the path [a, y_0, ..., y_{k-2}] (k = tokens emitted, every one of them verified)
 *                 with qwen35_commit; the last emitted token is the next anchor (pending, not
 *                 evaluated); the source gets the committed tokens and their tap rows.
 * The emit callback sees each token right after it is sampled and may stop the round (end of
 * generation, token budget, user stop): then that token is the last one emitted, exactly where a
 * plain decoding loop would have stopped, and nothing after it was sampled.
 *
 * Ownership: the chain borrows the target ctx (one forward at a time) and the source; it owns the
 * verify scratch (nodes, block rows of logits and taps) and the prefill tap buffer. */
#ifndef AR_SPEC_CHAIN_H
#define AR_SPEC_CHAIN_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "model/qwen35.h"
#include "spec/draft.h"
#include "spec/sample.h"

typedef struct ar_chain ar_chain;

#define AR_CHAIN_HIST 64   /* acceptance-length histogram buckets (the last one collects longer runs) */

/* Counters, accumulated over rounds (ar_chain_stats_reset clears them). */
typedef struct ar_chain_stats {
    int    n_rounds;     /* draft/verify steps */
    int    n_drafted;    /* draft tokens verified */
    int    n_accepted;   /* draft tokens the sampler agreed with (committed) */
    int    n_emitted;    /* tokens emitted by rounds (accepted + bonus; acceptance length = n_emitted / n_rounds) */
    double draft_s;      /* source: draft block forwards and top-k */
    double verify_s;     /* target: verification forwards */
    double accept_s;     /* sampling walk, target commit, source commit (feature injection) */
    double prefill_s;    /* ar_chain_prefill */
    int    n_accept_len[AR_CHAIN_HIST];   /* rounds by drafts accepted (0, 1, 2, ...) */
} ar_chain_stats;

/* Called with every emitted token, in order. Return true to stop after it. */
typedef bool (*ar_chain_emit)(void *user, int32_t token);

/* Scratch for blocks of the source's block size on ctx (<= the ctx's max nodes). */
int  ar_chain_create(ar_chain **out, const qwen35_model *m, qwen35_ctx *ctx, ar_draft_source *src, ar_error *err);
void ar_chain_free(ar_chain *c);
ar_draft_source *ar_chain_source(ar_chain *c);
const ar_chain_stats *ar_chain_get_stats(const ar_chain *c);
void ar_chain_stats_reset(ar_chain *c);

/* Evaluate tokens[0..n) as a chain after seq's committed prefix (chunks of the ctx's max nodes), commit
 * them and feed them (with taps) to the source — the prompt bootstrap. The logits of the last token go
 * to last_logits (n_vocab floats) when it is not NULL. */
int  ar_chain_prefill(ar_chain *c, qwen35_seq *seq, const int32_t *tokens, int n, float *last_logits, ar_error *err);

/* One round from the anchor at position n_past(seq). max_emit >= 1 bounds the tokens emitted (the
 * caller's remaining budget); the verified block is also cut to fit the context (the anchor needs a
 * free position: n_past < n_ctx). *last = the last token emitted (the next anchor); *stopped = the emit
 * callback asked to stop. */
int  ar_chain_round(ar_chain *c, qwen35_seq *seq, ar_sampler *smp, int32_t anchor, int max_emit,
                    ar_chain_emit emit, void *user, int32_t *last, bool *stopped, ar_error *err);

#endif
