/* spec/sample.h — token sampling from a logits vector (llama.cpp's default chain, our own code).
 *
 * The chain, in llama.cpp's default order:
 *   penalties -> constraint -> top-k -> top-p -> min-p -> temperature -> draw.
 * - penalties (over the last repeat_last_n accepted tokens, each distinct token once):
 *     logit <= 0 ? logit *= repeat_penalty : logit /= repeat_penalty;
 *     logit -= count * frequency_penalty + (count > 0) * presence_penalty.
 * - constraint (optional, see ar_constraint_ops): tokens it does not allow get logit -inf, so every
 *   later stage (and the greedy argmax) only ever sees allowed tokens; one allowed token = forced.
 * - top-k keeps the k largest logits (k <= 0: off); ties go to the lower id.
 * - top-p keeps the smallest prefix of the sorted candidates whose softmax mass (at temperature 1,
 *   over the candidates left by top-k) reaches p (p >= 1: off).
 * - min-p keeps candidates with logit >= max + log(min_p) (min_p <= 0: off).
 * - temperature divides the surviving logits; temp <= 0 is greedy: the argmax after penalties
 *   (lowest id on ties), no random draw.
 * The random draw uses the sampler's own xoshiro256** generator seeded from params.seed, so a given
 * seed and the same logits give the same tokens on every machine.
 *
 * Nothing is allocated per call: all scratch (candidates, penalty counts) is sized at create. */
#ifndef AR_SPEC_SAMPLE_H
#define AR_SPEC_SAMPLE_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"

/* params.seed value that asks for a seed from the clock/entropy at create time. */
#define AR_SEED_RANDOM UINT64_MAX

/* A constraint on the generated tokens (constrained decoding: a grammar, a forced tool call).
 *
 * Arming: the sampler's history also receives the prompt (ar_sampler_accept of every prompt token,
 * before the first sample; engine/generate.c and engine/sched.c do so). A constraint is about the
 * generated text only, so it is ARMED by the first ar_sampler_sample / ar_sampler_dist call after
 * it was attached (or after ar_sampler_reset): accept calls before that are not shown to it; from
 * then on every ar_sampler_accept is. Speculative walks (spec/chain.c, spec/tree_verify.c) sample
 * and accept each emitted token in order, so verification stays lossless with respect to the
 * constrained distribution.
 *
 *   allowed  which tokens may come next: either return false (every token may: the mask is not
 *            read), or fill mask — ceil(n_vocab / 32) words, bit (i % 32) of word i / 32 set when
 *            token i is allowed, every word written — and return true. At least one token must be
 *            allowed. If every allowed token has logit -inf (or NaN), they are drawn uniformly.
 *   accept   the token that was emitted (after allowed; in emission order).
 *   reset    back to the start (ar_sampler_reset); may be NULL.
 * The callbacks run on the thread that samples. */
typedef struct ar_constraint_ops {
    bool (*allowed)(void *user, uint32_t *mask, int32_t n_vocab);
    void (*accept)(void *user, int32_t token);
    void (*reset)(void *user);
} ar_constraint_ops;

typedef struct ar_sampler_params {
    float    temp;              /* <= 0: greedy */
    int      top_k;             /* <= 0: off */
    float    top_p;             /* >= 1: off */
    float    min_p;             /* <= 0: off */
    float    repeat_penalty;    /* 1: off */
    int      repeat_last_n;     /* tokens of history the penalties look at; 0: off; must be >= 0 */
    float    presence_penalty;  /* 0: off */
    float    frequency_penalty; /* 0: off */
    uint64_t seed;              /* AR_SEED_RANDOM: pick one */
    /* Optional constraint (NULL: none), attached at create as by ar_sampler_set_constraint. It travels
     * with the parameters so code that builds its own sampler from them (engine/sched.c) honours it;
     * constraint_user is per generation (its state), so one set of parameters serves one sampler. */
    const ar_constraint_ops *constraint;
    void    *constraint_user;
} ar_sampler_params;

/* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off (last_n 64), random seed, no
 * constraint — llama.cpp's defaults. */
ar_sampler_params ar_sampler_defaults(void);

typedef struct ar_sampler ar_sampler;

/* Validates the parameters (NaN, negative last_n, ...) and allocates the scratch for n_vocab logits. */
int  ar_sampler_create(ar_sampler **out, const ar_sampler_params *p, int32_t n_vocab, ar_error *err);
void ar_sampler_free(ar_sampler *s);

/* Attach a constraint (ops NULL: remove it). It is disarmed until the next sample (see above). */
void ar_sampler_set_constraint(ar_sampler *s, const ar_constraint_ops *ops, void *user);

/* Forget the penalty history and reseed the generator from params.seed; the constraint (if any) is
 * reset and disarmed. */
void ar_sampler_reset(ar_sampler *s);

/* The seed in use (the chosen one when params.seed was AR_SEED_RANDOM). */
uint64_t ar_sampler_seed(const ar_sampler *s);

/* The greedy token of n raw logits (n >= 1): the largest, NaN counting as -inf, the lowest id on ties
 * (what ar_sampler_sample returns at temperature 0 with no penalty and no constraint). */
int32_t ar_argmax(const float *logits, int n);

/* Pick the next token from n_vocab logits (not modified). Does not record it: call ar_sampler_accept. */
int32_t ar_sampler_sample(ar_sampler *s, const float *logits);

/* Append a token to the penalty history (ids outside [0, n_vocab) are ignored) and, once armed,
 * advance the constraint. */
void ar_sampler_accept(ar_sampler *s, int32_t token);

/* The distribution ar_sampler_sample would draw from, after every transform (greedy: one token with
 * probability 1). Writes the min(support, cap) most probable entries, largest first (ties: lower id),
 * to ids/probs and returns the support size (so a return > cap means the list was cut). The
 * probabilities are those of the whole support (not renormalised after a cut). No random draw. */
int  ar_sampler_dist(ar_sampler *s, const float *logits, int32_t *ids, float *probs, int cap);

#endif
