/* engine/generate.h — the objects behind include/arbor.h's ar_model and ar_session, for the engine's
 * other parts (the server's scheduler, tests) that drive the model directly.
 *
 * ar_model   = the qwen35 weights + the tokenizer + ONE compute context (qwen35_ctx) with its node
 *              and path scratch; one forward at a time. Optionally a DFlash drafter (weights + one
 *              drafter ctx) that sessions draft with.
 * ar_session = one sequence (qwen35_seq) + its sampler + a logits row + the streaming detokenizer,
 *              and `pending`: the last sampled token, part of the context but not yet evaluated
 *              (it is evaluated first by the next ar_generate, so a stop costs no wasted forward).
 *              With speculative decoding also a draft source (the drafter's context cache of this
 *              sequence) and ONE verifier over it: the chain verifier (spec/chain.h, draft_budget 0) or
 *              the DDTree verifier (spec/tree_verify.h, draft_budget N >= 1 or -1 = auto); `pending` is
 *              then the anchor of the next round. */
#ifndef AR_ENGINE_GENERATE_H
#define AR_ENGINE_GENERATE_H

#include "arbor.h"
#include "model/dflash.h"
#include "model/qwen35.h"
#include "spec/chain.h"
#include "spec/draft.h"
#include "spec/tree_verify.h"
#include "tok/vocab.h"

struct ar_model {
    qwen35_model *qm;
    ar_vocab     *vocab;
    qwen35_ctx   *ctx;
    int           n_threads;   /* as asked (<= 0: one per core) */
    int           max_batch;   /* qwen35_ctx_max_nodes(ctx) */
    ar_node      *nodes;       /* [max_batch] */
    int          *path;        /* [max_batch] = 0, 1, 2, ... (a chain's commit path) */
    dflash_model *draft;       /* NULL: no drafter */
    dflash_ctx   *draft_ctx;   /* rows: up to AR_DRAFT_MAX_BLOCK */
    bool          draft_swa_lucebox;
};

/* Longest speculative block (anchor + drafts) a session may ask for. */
#define AR_DRAFT_MAX_BLOCK 64

struct ar_session {
    ar_model   *m;
    qwen35_seq *seq;
    ar_sampler *sampler;
    int         n_ctx;
    bool        special;
    int32_t     pending;       /* sampled, in the context, not yet evaluated; -1 if none */
    float      *logits;        /* [n_vocab] */
    ar_detok    detok;
    char       *piece;         /* [piece_cap] */
    size_t      piece_cap;
    ar_draft_source *src;      /* speculative decoding: NULL when off */
    ar_chain   *chain;         /* draft_budget 0: chain verification */
    ar_ddtree  *tree;          /* draft_budget != 0: DDTree verification (exactly one of chain, tree is set
                                  when src is) */
    int         draft_budget;  /* ar_session_params: 0 chain, N >= 1 tree of N nodes, -1 auto */
    int         draft_top_k;   /* DDTree candidates per depth (0: min(budget, AR_DRAFT_MAX_K)) */
    bool        draft_chain_seed;
    bool        spec_paused;   /* ar_session_set_speculative(false): decode plainly although src is set */
};

const ar_vocab *ar_model_vocab(const ar_model *m);

/* Evaluate tokens as one chain after the session's committed prefix (in chunks of max_batch) and
 * commit them; the logits of the last token land in s->logits. */
int ar_session_eval(ar_session *s, const int32_t *tokens, int n, ar_error *err);

/* Decode speculatively with src (e.g. spec/replay.c's source in tests) instead of the model's drafter,
 * verifying blocks of src->block tokens as a chain, or DDTrees when the session was created with a
 * draft_budget (its top_k / chain seed too). The session must be empty (new or reset) and src fresh. On
 * success the session owns src (and frees it); on failure the caller still does. NULL src: plain
 * decoding. */
int ar_session_set_draft(ar_session *s, ar_draft_source *src, ar_error *err);

#endif
