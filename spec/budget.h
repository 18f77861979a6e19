/* spec/budget.h — `--budget auto`: the DDTree node budget that maximises committed tokens per second
 * (docs/DDTREE.md has the model and measured numbers).
 *
 * Per round, with B draft nodes (verify width M = B + 1):
 *     tokens(B) = 1 + alpha * G(B)            G(B) = sum of exp(logw) over the tree's B first selections
 *     time(B)   = T(B + 1) + t_other          T(M) = target forward time over M nodes
 *     B*        = argmax tokens(B) / time(B)
 * G comes from the round's own tree (ddtree_cum_gain: the expected accepted draft nodes if the draft's
 * probabilities were the target's). alpha calibrates that proxy: decayed sum of accepted draft nodes over
 * decayed sum of predicted G of the trees actually verified (prior 1:1). T(M) is piecewise linear through
 * the measured widths (each an exponential moving average of real verify forwards or calibration
 * forwards), flat below the smallest, extended with the last segment's slope (>= 0) above the largest;
 * t_other (draft, tree, walk, commits) is a moving average of the rest of each round.
 * Exploration: B + 1 may be at most twice the widest measured width, so the widths tried grow
 * 2 -> 4 -> 8 -> ... only while the extrapolated rate keeps improving. A fresh model verifies B = 1
 * (width 2), then, knowing one width (flat extrapolation), B = 3; from then on the slope between the two
 * widest measured widths decides. No extra forward is ever run: every measurement is a useful round
 * (ar_budget_calibrate measures a whole ladder up front when a caller prefers that).
 *
 * Not thread-safe; one per decoder. */
#ifndef AR_SPEC_BUDGET_H
#define AR_SPEC_BUDGET_H

#include <stdbool.h>

#include "base/error.h"
#include "model/qwen35.h"

typedef struct ar_budget ar_budget;

/* A model for budgets 1..max_budget (verify widths up to max_budget + 1). */
int  ar_budget_create(ar_budget **out, int max_budget, ar_error *err);
void ar_budget_free(ar_budget *b);
int  ar_budget_max(const ar_budget *b);

/* A forward over m nodes took `seconds`. */
void ar_budget_observe_forward(ar_budget *b, int m, double seconds);
/* A verified round: the tree's predicted gain G(B), the draft nodes accepted, the round's time outside
 * the verify forward. */
void ar_budget_observe_round(ar_budget *b, double predicted, int accepted, double other_s);

/* The budget to verify now, 1..b_max (<= the model's max), given cum[0..b_max] = G of this round's
 * tree (ddtree_cum_gain). b_max < 1 gives 0. Without any measured width it returns 1. */
int  ar_budget_choose(ar_budget *b, const double *cum, int b_max);

/* Estimates: T(m) in seconds (< 0 when nothing is measured), alpha, t_other. */
double ar_budget_forward_s(ar_budget *b, int m);
double ar_budget_alpha(const ar_budget *b);
double ar_budget_other_s(const ar_budget *b);
/* Widths measured so far (count of forwards at m). */
int  ar_budget_samples(const ar_budget *b, int m);

/* Measure T(m) for m = 1, 2, 4, ... up to m_max (and m_max itself) with forwards over synthetic
 * DDTree-shaped batches on seq after its committed prefix (committed state is not touched; the
 * ctx's "last forward" is overwritten, so call it between rounds). reps forwards per width; with
 * reps > 1 the first width also gets one unmeasured warm-up. */
int  ar_budget_calibrate(ar_budget *b, const qwen35_model *m, qwen35_ctx *ctx, qwen35_seq *seq, int m_max, int reps,
                         ar_error *err);

#endif
