/* spec/budget.c — the `--budget auto` cost model (spec/budget.h, docs/DDTREE.md).
 *
 * State: per verify width m a moving average of measured forward times (t[m], cnt[m]); the decayed
 * acceptance sums behind alpha; a moving average of the round time outside the forward. est[] caches
 * the piecewise-linear T(m) and is rebuilt after a forward observation. Nothing is allocated after
 * create (calibration allocates its synthetic batch once per call). */
#include "spec/budget.h"

#include <math.h>
#include <stdlib.h>

#include "base/timer.h"
#include "spec/ddtree.h"

enum { EMA_MIN_WEIGHT_INV = 4 };          /* running mean for the first 4 samples, then EMA 1/4 */
static const double ACCEPT_DECAY = 0.95;  /* per round: alpha forgets with a half-life of ~14 rounds */

struct ar_budget {
    int max_budget, max_m;
    double *t;        /* [max_m + 1] */
    int *cnt;         /* [max_m + 1] */
    double *est;      /* [max_m + 1], valid when !dirty */
    bool dirty;
    int widest;       /* largest measured m, 0 when none */
    double acc, pred; /* decayed sums of accepted and predicted draft nodes */
    double other;     /* moving average of the round time outside the verify forward */
    int n_other;
};

int ar_budget_create(ar_budget **out, int max_budget, ar_error *err)
{
    *out = NULL;
    if (max_budget < 1 || max_budget > (1 << 20))
        return ar_fail(err, AR_EINVAL, "budget model: max budget %d out of range", max_budget);
    ar_budget *b = calloc(1, sizeof *b);
    if (!b) return ar_fail(err, AR_ENOMEM, "out of memory for the budget model");
    b->max_budget = max_budget;
    b->max_m = max_budget + 1;
    const size_t n = (size_t)b->max_m + 1;
    b->t = calloc(n, sizeof *b->t);
    b->cnt = calloc(n, sizeof *b->cnt);
    b->est = calloc(n, sizeof *b->est);
    if (!b->t || !b->cnt || !b->est) {
        ar_budget_free(b);
        return ar_fail(err, AR_ENOMEM, "out of memory for the budget model");
    }
    b->dirty = true;
    *out = b;
    return AR_OK;
}

void ar_budget_free(ar_budget *b)
{
    if (!b) return;
    free(b->t);
    free(b->cnt);
    free(b->est);
    free(b);
}

int ar_budget_max(const ar_budget *b) { return b->max_budget; }

static double ema(double avg, int n, double x)
{
    if (n <= 1) return x;
    double w = n < EMA_MIN_WEIGHT_INV ? 1.0 / n : 1.0 / EMA_MIN_WEIGHT_INV;
    return avg + w * (x - avg);
}

void ar_budget_observe_forward(ar_budget *b, int m, double seconds)
{
    if (m < 1 || m > b->max_m || !(seconds >= 0) || !isfinite(seconds)) return;
    b->cnt[m]++;
    b->t[m] = ema(b->t[m], b->cnt[m], seconds);
    if (m > b->widest) b->widest = m;
    b->dirty = true;
}

void ar_budget_observe_round(ar_budget *b, double predicted, int accepted, double other_s)
{
    if (predicted >= 0 && isfinite(predicted) && accepted >= 0) {
        b->acc = ACCEPT_DECAY * b->acc + accepted;
        b->pred = ACCEPT_DECAY * b->pred + predicted;
    }
    if (other_s >= 0 && isfinite(other_s)) {
        b->n_other++;
        b->other = ema(b->other, b->n_other, other_s);
    }
}

double ar_budget_alpha(const ar_budget *b) { return (b->acc + 1.0) / (b->pred + 1.0); }
double ar_budget_other_s(const ar_budget *b) { return b->other; }
int ar_budget_samples(const ar_budget *b, int m) { return m >= 1 && m <= b->max_m ? b->cnt[m] : 0; }

/* est[m] for m = 1..max_m: linear between measured widths, flat below the first, last slope above. */
static void rebuild(ar_budget *b)
{
    int prev = 0, last = 0;
    for (int m = 1; m <= b->max_m; m++) {
        if (!b->cnt[m]) continue;
        if (!last) {
            for (int j = 1; j <= m; j++) b->est[j] = b->t[m];
        } else {
            for (int j = last + 1; j <= m; j++)
                b->est[j] = b->t[last] + (b->t[m] - b->t[last]) * (double)(j - last) / (double)(m - last);
        }
        prev = last;
        last = m;
    }
    if (!last) {
        for (int m = 1; m <= b->max_m; m++) b->est[m] = -1.0;
    } else {
        double slope = prev ? (b->t[last] - b->t[prev]) / (double)(last - prev) : 0.0;
        if (!(slope > 0)) slope = 0.0;
        for (int m = last + 1; m <= b->max_m; m++) b->est[m] = b->t[last] + slope * (double)(m - last);
    }
    b->dirty = false;
}

double ar_budget_forward_s(ar_budget *b, int m)
{
    if (m < 1) return -1.0;
    if (m > b->max_m) m = b->max_m;
    if (b->dirty) rebuild(b);
    return b->est[m];
}

int ar_budget_choose(ar_budget *b, const double *cum, int b_max)
{
    if (b_max > b->max_budget) b_max = b->max_budget;
    if (b_max < 1) return 0;
    if (!b->widest) return 1;
    if (b->dirty) rebuild(b);
    int cap = 2 * b->widest - 1;          /* explore at most twice the widest measured width */
    if (cap > b_max) cap = b_max;
    if (cap < 1) cap = 1;
    const double alpha = ar_budget_alpha(b);
    int best = 1;
    double best_rate = -1.0;
    for (int B = 1; B <= cap; B++) {
        double time = b->est[B + 1] + b->other;
        double rate = (1.0 + alpha * cum[B]) / (time > 1e-12 ? time : 1e-12);
        if (rate > best_rate) {
            best_rate = rate;
            best = B;
        }
    }
    return best;
}

/* ---- calibration -------------------------------------------------------------------------------- */

int ar_budget_calibrate(ar_budget *b, const qwen35_model *model, qwen35_ctx *ctx, qwen35_seq *seq, int m_max, int reps,
                        ar_error *err)
{
    const int n_vocab = qwen35_hparams_of(model)->n_vocab;
    const int room = qwen35_seq_n_ctx(seq) - qwen35_seq_n_past(seq);
    if (room < 1) return ar_fail(err, AR_ERANGE, "budget calibration: the context is full");
    if (m_max > b->max_m) m_max = b->max_m;
    if (m_max > qwen35_ctx_max_nodes(ctx)) m_max = qwen35_ctx_max_nodes(ctx);
    if (m_max < 1) m_max = 1;
    if (reps < 1) reps = 1;

    /* a synthetic draft table: 15 depths (cut to the context), geometric scores, k ranks per depth */
    const int n_depth = room - 1 < 15 ? room - 1 : 15, k = m_max - 1 < 1 ? 1 : m_max - 1 > 64 ? 64 : m_max - 1;
    ddtree *t = NULL;
    int rc = ddtree_create(&t, m_max - 1, err);
    if (rc) return rc;
    int32_t *ids = malloc((size_t)(n_depth > 0 ? n_depth : 1) * (size_t)k * sizeof *ids);
    float *logp = malloc((size_t)(n_depth > 0 ? n_depth : 1) * (size_t)k * sizeof *logp);
    ar_node *nodes = malloc((size_t)m_max * sizeof *nodes);
    float *logits = malloc((size_t)m_max * (size_t)n_vocab * sizeof *logits);
    if (!ids || !logp || !nodes || !logits) {
        rc = ar_fail(err, AR_ENOMEM, "out of memory for a budget calibration of %d nodes", m_max);
        goto out;
    }
    for (int d = 0; d < n_depth; d++)
        for (int r = 0; r < k; r++) {
            ids[(size_t)d * k + r] = (int32_t)((r * 7 + d) % n_vocab);
            logp[(size_t)d * k + r] = -0.2f - 0.9f * (float)r - 0.05f * (float)d;
        }
    ar_draft dr = { .n_depth = n_depth, .k = k, .ids = ids, .logp = logp };
    bool warm = reps == 1;   /* a warm-up forward only when several are measured per width */
    for (int m = 1;; m = m * 2 > m_max && m < m_max ? m_max : m * 2) {
        rc = ddtree_build(t, 0, &dr, &(ddtree_params){ .budget = m - 1 }, err);
        if (rc) goto out;
        ddtree_dfs(t);
        ddtree_nodes(t, 0, qwen35_seq_n_past(seq), nodes);
        ar_batch batch = { .n_nodes = t->n, .nodes = nodes, .logits = logits };
        for (int r = warm ? 0 : -1; r < reps; r++) {
            double t0 = ar_now();
            rc = qwen35_forward(ctx, &seq, &batch, err);
            if (rc) goto out;
            if (r >= 0) ar_budget_observe_forward(b, t->n, ar_now() - t0);
        }
        warm = true;
        if (m >= m_max) break;
    }
out:
    ddtree_free(t);
    free(ids);
    free(logp);
    free(nodes);
    free(logits);
    return rc;
}
