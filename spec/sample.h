/* spec/sample.h — token sampling from a logits vector (llama.cpp's default chain, our own code).
 *
 * The chain, in llama.cpp's default order:
 *   penalties -> top-k -> top-p -> min-p -> temperature -> draw.
 * - penalties (over the last repeat_last_n accepted tokens, each distinct token once):
 *     logit <= 0 ? logit *= repeat_penalty : logit /= repeat_penalty;
 *     logit -= count * frequency_penalty + (count > 0) * presence_penalty.
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
} ar_sampler_params;

/* temp 0.8, top_k 40, top_p 0.95, min_p 0.05, penalties off (last_n 64), random seed — llama.cpp's defaults. */
ar_sampler_params ar_sampler_defaults(void);

typedef struct ar_sampler ar_sampler;

/* Validates the parameters (NaN, negative last_n, ...) and allocates the scratch for n_vocab logits. */
int  ar_sampler_create(ar_sampler **out, const ar_sampler_params *p, int32_t n_vocab, ar_error *err);
void ar_sampler_free(ar_sampler *s);

/* Forget the penalty history and reseed the generator from params.seed. */
void ar_sampler_reset(ar_sampler *s);

/* The seed in use (the chosen one when params.seed was AR_SEED_RANDOM). */
uint64_t ar_sampler_seed(const ar_sampler *s);

/* Pick the next token from n_vocab logits (not modified). Does not record it: call ar_sampler_accept. */
int32_t ar_sampler_sample(ar_sampler *s, const float *logits);

/* Append a token to the penalty history (ids outside [0, n_vocab) are ignored). */
void ar_sampler_accept(ar_sampler *s, int32_t token);

/* The distribution ar_sampler_sample would draw from, after every transform (greedy: one token with
 * probability 1). Writes the min(support, cap) most probable entries, largest first (ties: lower id),
 * to ids/probs and returns the support size (so a return > cap means the list was cut). The
 * probabilities are those of the whole support (not renormalised after a cut). No random draw. */
int  ar_sampler_dist(ar_sampler *s, const float *logits, int32_t *ids, float *probs, int cap);

#endif
