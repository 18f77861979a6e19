/* engine/spec_hook.h — speculative decoding for the scheduler: ar_sched_spec hooks (engine/sched.h) over a
 * draft source (spec/draft.h), so that `arbor serve --draft` runs with --parallel N.
 *
 * A hook follows ONE request. It owns its draft source (the DFlash drafter's context cache of that
 * sequence, or a test source) and a DDTree (spec/ddtree.h) it builds every step; the scheduler owns the
 * forward. One step of a speculative request, split in the scheduler's halves:
 *   [plan]     (--budget auto only) draft from the source now, build the best-first tree as large as the
 *              scheduler allows and report its expected-gain curve (ddtree_cum_gain, calibrated by this
 *              hook's measured acceptance); the scheduler shares the step's nodes between the
 *              sequences by marginal gain (engine/sched.c) and then asks for a prefix of this tree;
 *   propose    draft (unless planned for this anchor), build the chain / tree within the scheduler's
 *              max_nodes, renumber depth-first, hand the tokens and parents out;
 *   accept     ddtree_walk over the verified rows with the request's sampler (spec/tree_verify.h): the
 *              greedy walk at T = 0, lossless sampling at T > 0 — exactly ar_generate's walk;
 *   committed  ar_draft_commit of the committed tokens and their tap rows (prompt chunks and paths);
 *   resumed    the request resumed from the prefix cache at n tokens: a source that needs only tokens
 *              (replay) is caught up exactly; a source that needs the target's features (DFlash) has
 *              none for those positions (the cache keeps the target's state, not the features), so it
 *              drafts from the context after the resume point: the hook shifts the source's positions
 *              by n (RoPE attention is translation-invariant, so this is exactly "the drafter sees only
 *              the positions >= n"). Acceptance is lower until the drafter has seen enough new text;
 *              the output is the same either way (verification is lossless);
 *   destroy    frees the source and the tree.
 * Modes: chain (budget 0: the source's block, verified as a chain: a DDTree of one candidate per
 * depth), DDTree of N draft nodes (budget N >= 1), DDTree auto (budget -1: the scheduler's allotment).
 *
 * Threads: a hook may be created on any thread; all its ops run on the scheduler's stepping thread.
 * DFlash hooks of one model share the model's drafter context (ar_model.draft_ctx): safe because the
 * scheduler calls them one at a time. */
#ifndef AR_ENGINE_SPEC_HOOK_H
#define AR_ENGINE_SPEC_HOOK_H

#include <stdbool.h>
#include <stdint.h>

#include "arbor.h"
#include "base/error.h"
#include "engine/sched.h"
#include "spec/draft.h"

typedef struct ar_spec_hook_params {
    int  budget;       /* 0: chain of the source's block; N >= 1: DDTree of up to N draft nodes; -1: DDTree, auto */
    int  max_budget;   /* auto: the largest tree one sequence may get in a step (0: 256) */
    int  top_k;        /* DDTree: candidates per depth (0: min(budget or max_budget, the source's max_k)) */
    bool chain_seed;   /* DDTree: select the top-1 chain first (spec/ddtree.h) */
} ar_spec_hook_params;

/* budget 0 (chain), max_budget 256, top_k 0, chain_seed off. */
ar_spec_hook_params ar_spec_hook_defaults(void);

/* A hook over src for a model of n_vocab tokens. On success the hook owns src; on failure the caller
 * still does. Fails when a DDTree mode gets a source without candidate lists (max_k 0). */
int  ar_spec_hook_create(ar_sched_spec **out, ar_draft_source *src, int32_t n_vocab, const ar_spec_hook_params *p,
                         ar_error *err);

/* A hook over a new DFlash source on the model's drafter (ar_model_load_draft): n_ctx = the scheduler's
 * context (ar_sched_params.n_ctx), block = tokens per step (0: the drafter's trained block; 2..64). */
int  ar_spec_hook_dflash(ar_sched_spec **out, const ar_model *m, int n_ctx, int block, const ar_spec_hook_params *p,
                         ar_error *err);

/* Free a hook the scheduler does not own (never submitted, or ar_sched_submit failed). NULL ok. Once
 * submitted, the scheduler frees it when the request ends. */
void ar_spec_hook_free(ar_sched_spec *sp);

/* The hook's source (for tests and statistics; owned by the hook). */
ar_draft_source *ar_spec_hook_source(ar_sched_spec *sp);

#endif
