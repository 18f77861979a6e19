/* engine/generate.h — the objects behind include/arbor.h's ar_model and ar_session, for the engine's
 * other parts (speculative decoding, the server's scheduler) that drive the model directly.
 *
 * ar_model   = the qwen35 weights + the tokenizer + ONE compute context (qwen35_ctx) with its node
 *              and path scratch; one forward at a time.
 * ar_session = one sequence (qwen35_seq) + its sampler + a logits row + the streaming detokenizer,
 *              and `pending`: the last sampled token, part of the context but not yet evaluated
 *              (it is evaluated first by the next ar_generate, so a stop costs no wasted forward). */
#ifndef AR_ENGINE_GENERATE_H
#define AR_ENGINE_GENERATE_H

#include "arbor.h"
#include "model/qwen35.h"
#include "tok/vocab.h"

struct ar_model {
    qwen35_model *qm;
    ar_vocab     *vocab;
    qwen35_ctx   *ctx;
    int           max_batch;   /* qwen35_ctx_max_nodes(ctx) */
    ar_node      *nodes;       /* [max_batch] */
    int          *path;        /* [max_batch] = 0, 1, 2, ... (a chain's commit path) */
};

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
};

const ar_vocab *ar_model_vocab(const ar_model *m);

/* Evaluate tokens as one chain after the session's committed prefix (in chunks of max_batch) and
 * commit them; the logits of the last token land in s->logits. */
int ar_session_eval(ar_session *s, const int32_t *tokens, int n, ar_error *err);

#endif
