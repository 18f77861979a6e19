/* spec/sample.c — token sampling: penalties, top-k, top-p, min-p, temperature, seeded draw.
 *
 * Data flow per call: the logits are copied once into `cand` (id order, NaN -> -inf), the penalties
 * are applied there, then the constraint (disallowed tokens -> -inf; sample.h); then either a greedy
 * argmax, or the filters shrink `cand` to the support of the final distribution, which is drawn from
 * with the sampler's own xoshiro256**. Greedy with no penalty and no constraint (every request at
 * temperature 0 with the defaults) skips the copy: ar_argmax reads the logits as they are.
 *
 * Speed (248K-token vocabularies): nothing sorts the whole vocabulary in the common cases.
 * - top-k on: a size-k min-heap over one pass of the logits, then a sort of the k survivors;
 * - top-k off, top-p on: tokens above a logit threshold are gathered (min-p's threshold, or
 *   max-8, max-16, ... widening until the gathered mass reaches p) and only those are sorted;
 * - top-k and top-p off: min-p is one gathering pass; the draw needs no order at all.
 * The ordering used everywhere is "logit descending, then id ascending", so results do not depend
 * on the sort algorithm. */
#include "spec/sample.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct cand {
    float   logit;
    int32_t id;
} cand;

struct ar_sampler {
    ar_sampler_params p;
    int32_t  n_vocab;
    uint64_t seed;        /* the seed actually used */
    uint64_t rng[4];      /* xoshiro256** state */
    cand    *cand;        /* n_vocab: working candidates */
    cand    *work;        /* n_vocab: heap / gathered set */
    float   *weight;      /* n_vocab: unnormalised probabilities of the support */
    int32_t *count;       /* n_vocab: occurrences of each id in the penalty window */
    int32_t *ring;        /* repeat_last_n: the window, oldest at ring_head */
    int      ring_len, ring_head;
    /* constraint (sample.h): armed by the first sample / dist after it was attached or reset */
    const ar_constraint_ops *cons;
    void     *cons_user;
    bool      cons_armed;
    bool      masked;     /* this call's candidates went through the constraint's mask */
    uint32_t *mask;       /* ceil(n_vocab / 32) words */
};

/* ---- random numbers: splitmix64 to seed, xoshiro256** to draw ---------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(uint64_t s[4])
{
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

/* Uniform in [0, 1) with 53 random bits. */
static double next_unit(uint64_t s[4]) { return (double)(next_u64(s) >> 11) * (1.0 / 9007199254740992.0); }

static void reseed(ar_sampler *s)
{
    uint64_t x = s->seed;
    for (int i = 0; i < 4; i++) s->rng[i] = splitmix64(&x);
}

/* ---- parameters -------------------------------------------------------------------------------- */

ar_sampler_params ar_sampler_defaults(void)
{
    ar_sampler_params p = {
        .temp = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
        .repeat_penalty = 1.0f, .repeat_last_n = 64, .presence_penalty = 0.0f, .frequency_penalty = 0.0f,
        .seed = AR_SEED_RANDOM,
    };
    return p;
}

static bool penalties_on(const ar_sampler_params *p)
{
    return p->repeat_last_n > 0 &&
           (p->repeat_penalty != 1.0f || p->frequency_penalty != 0.0f || p->presence_penalty != 0.0f);
}

int ar_sampler_create(ar_sampler **out, const ar_sampler_params *p, int32_t n_vocab, ar_error *err)
{
    *out = NULL;
    if (n_vocab <= 0) return ar_fail(err, AR_EINVAL, "sampler: vocabulary size %d must be positive", (int)n_vocab);
    if (isnan(p->temp)) return ar_fail(err, AR_EINVAL, "sampler: temperature is NaN");
    if (isnan(p->top_p)) return ar_fail(err, AR_EINVAL, "sampler: top-p is NaN");
    if (isnan(p->min_p) || p->min_p > 1.0f)
        return ar_fail(err, AR_EINVAL, "sampler: min-p %g must be in [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || !isfinite(p->repeat_penalty))
        return ar_fail(err, AR_EINVAL, "sampler: repeat penalty %g must be a positive number", (double)p->repeat_penalty);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return ar_fail(err, AR_EINVAL, "sampler: presence/frequency penalties must be finite numbers");
    if (p->repeat_last_n < 0)
        return ar_fail(err, AR_EINVAL, "sampler: repeat_last_n %d must be >= 0 (resolve -1 to the context size first)",
                       p->repeat_last_n);

    ar_sampler *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->cand   = malloc((size_t)n_vocab * sizeof *s->cand);
    s->work   = malloc((size_t)n_vocab * sizeof *s->work);
    s->weight = malloc((size_t)n_vocab * sizeof *s->weight);
    s->count  = calloc((size_t)n_vocab, sizeof *s->count);
    s->mask   = malloc(((size_t)n_vocab + 31) / 32 * sizeof *s->mask);
    if (p->repeat_last_n > 0) s->ring = malloc((size_t)p->repeat_last_n * sizeof *s->ring);
    if (!s->cand || !s->work || !s->weight || !s->count || !s->mask || (p->repeat_last_n > 0 && !s->ring)) {
        ar_sampler_free(s);
        return ar_fail(err, AR_ENOMEM, "sampler: out of memory for a %d-token vocabulary", (int)n_vocab);
    }
    if (p->seed == AR_SEED_RANDOM) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)s;
        s->seed = splitmix64(&x);
        if (s->seed == AR_SEED_RANDOM) s->seed = 0;
    } else {
        s->seed = p->seed;
    }
    reseed(s);
    s->cons = p->constraint;
    s->cons_user = p->constraint_user;
    s->p.constraint = NULL;          /* the live constraint is s->cons (set_constraint may replace it) */
    s->p.constraint_user = NULL;
    *out = s;
    return 0;
}

void ar_sampler_free(ar_sampler *s)
{
    if (!s) return;
    free(s->cand);
    free(s->work);
    free(s->weight);
    free(s->count);
    free(s->ring);
    free(s->mask);
    free(s);
}

void ar_sampler_reset(ar_sampler *s)
{
    for (int i = 0; i < s->ring_len; i++) s->count[s->ring[(s->ring_head + i) % s->p.repeat_last_n]] = 0;
    s->ring_len = s->ring_head = 0;
    reseed(s);
    s->cons_armed = false;
    if (s->cons && s->cons->reset) s->cons->reset(s->cons_user);
}

void ar_sampler_set_constraint(ar_sampler *s, const ar_constraint_ops *ops, void *user)
{
    s->cons = ops;
    s->cons_user = ops ? user : NULL;
    s->cons_armed = false;
}

uint64_t ar_sampler_seed(const ar_sampler *s) { return s->seed; }

void ar_sampler_accept(ar_sampler *s, int32_t token)
{
    if (s->cons && s->cons_armed && token >= 0 && token < s->n_vocab) s->cons->accept(s->cons_user, token);
    int n = s->p.repeat_last_n;
    if (n <= 0 || token < 0 || token >= s->n_vocab) return;
    if (s->ring_len == n) { /* full: the oldest leaves the window */
        s->count[s->ring[s->ring_head]]--;
        s->ring[s->ring_head] = token;
        s->ring_head = (s->ring_head + 1) % n;
    } else {
        s->ring[(s->ring_head + s->ring_len) % n] = token;
        s->ring_len++;
    }
    s->count[token]++;
}

/* ---- the chain --------------------------------------------------------------------------------- */

/* a ranks before b: larger logit, then lower id. */
static inline bool better(const cand *a, const cand *b)
{
    return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const cand *a = pa, *b = pb;
    return better(a, b) ? -1 : better(b, a) ? 1 : 0;
}

/* The penalties on cand, each distinct windowed token once. */
static void penalize(ar_sampler *s)
{
    cand *c = s->cand;
    int n = s->p.repeat_last_n;
    /* count[t] is negated once t is done, so repeats in the window are skipped; restored below. */
    for (int i = 0; i < s->ring_len; i++) {
        int32_t t = s->ring[(s->ring_head + i) % n];
        int32_t k = s->count[t];
        if (k <= 0) continue;
        float l = c[t].logit;
        l = l <= 0.0f ? l * s->p.repeat_penalty : l / s->p.repeat_penalty;
        l -= (float)k * s->p.frequency_penalty + s->p.presence_penalty;
        c[t].logit = l;
        s->count[t] = -k;
    }
    for (int i = 0; i < s->ring_len; i++) {
        int32_t t = s->ring[(s->ring_head + i) % n];
        if (s->count[t] < 0) s->count[t] = -s->count[t];
    }
}

/* The constraint: tokens it does not allow get -inf. When every allowed token is -inf already, the
 * allowed ones get 0 (a uniform draw among them), so a disallowed token can never win. */
static void constrain(ar_sampler *s)
{
    s->cons_armed = true;
    if (!s->cons->allowed(s->cons_user, s->mask, s->n_vocab)) return;
    s->masked = true;
    cand *c = s->cand;
    const uint32_t *m = s->mask;
    bool any = false;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        if (!(m[i >> 5] >> (i & 31) & 1u)) c[i].logit = -INFINITY;
        else if (c[i].logit > -INFINITY) any = true;
    }
    if (!any)
        for (int32_t i = 0; i < s->n_vocab; i++)
            if (m[i >> 5] >> (i & 31) & 1u) c[i].logit = 0.0f;
}

/* Copy logits into cand (id order), apply the penalties, then the constraint (arming it). */
static void prepare(ar_sampler *s, const float *logits)
{
    s->masked = false;
    cand *c = s->cand;
    for (int32_t i = 0; i < s->n_vocab; i++) {
        float l = logits[i];
        c[i].logit = isnan(l) ? -INFINITY : l;
        c[i].id = i;
    }
    if (penalties_on(&s->p)) penalize(s);
    if (s->cons) constrain(s);
}

static float max_f(float a, float b) { return b > a ? b : a; }   /* NaN b never wins */

/* The argmax of raw logits, the same token as prepare + argmax without penalties or constraint: NaN
 * counts as -inf, the lowest id wins ties. One pass for the maximum, one to the first id holding it
 * (a NaN there when the maximum is -inf). The server samples every sequence of a step on one thread
 * while the other threads wait; the copy into `cand` (2 MB written and read back per 248K-token row)
 * took 2.5 % of a 10-sequence decode profile. */
int32_t ar_argmax(const float *l, int n)
{
    /* eight running maxima, so that the pass is not one chain of dependent compares */
    float m0 = -INFINITY, m1 = m0, m2 = m0, m3 = m0, m4 = m0, m5 = m0, m6 = m0, m7 = m0;
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        m0 = max_f(m0, l[i]); m1 = max_f(m1, l[i + 1]); m2 = max_f(m2, l[i + 2]); m3 = max_f(m3, l[i + 3]);
        m4 = max_f(m4, l[i + 4]); m5 = max_f(m5, l[i + 5]); m6 = max_f(m6, l[i + 6]); m7 = max_f(m7, l[i + 7]);
    }
    for (; i < n; i++) m0 = max_f(m0, l[i]);
    const float m = max_f(max_f(max_f(m0, m1), max_f(m2, m3)), max_f(max_f(m4, m5), max_f(m6, m7)));
    if (m == -INFINITY) {   /* every logit -inf or NaN: the first of them, as NaN -> -inf makes it */
        for (i = 0; i < n; i++)
            if (l[i] == m || isnan(l[i])) return i;
        return 0;
    }
    i = 0;
    for (; i + 8 <= n; i += 8)   /* eight compares per branch */
        if ((l[i] == m) | (l[i + 1] == m) | (l[i + 2] == m) | (l[i + 3] == m) | (l[i + 4] == m) | (l[i + 5] == m) |
            (l[i + 6] == m) | (l[i + 7] == m))
            break;
    for (; i < n; i++)
        if (l[i] == m) return i;
    return 0;
}

/* greedy with nothing that changes the logits first */
static bool plain_greedy(const ar_sampler *s)
{
    return !(s->p.temp > 0.0f) && !s->cons && !penalties_on(&s->p);
}

static int32_t argmax(const cand *c, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (c[i].logit > c[best].logit) best = i;   /* strict: the lowest id wins ties */
    return c[best].id;
}

/* Min-heap (root = worst) sift-down over h[0..n). */
static void heap_down(cand *h, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && better(&h[w], &h[l])) w = l;
        if (r < n && better(&h[w], &h[r])) w = r;
        if (w == i) return;
        cand t = h[i]; h[i] = h[w]; h[w] = t;
        i = w;
    }
}

/* Keep the k best of c[0..n) in c[0..k), sorted. */
static int top_k(cand *c, int n, int k, cand *heap)
{
    int m = 0;
    for (int i = 0; i < n; i++) {
        if (m < k) {
            heap[m++] = c[i];
            if (m == k) for (int j = k / 2 - 1; j >= 0; j--) heap_down(heap, k, j);
        } else if (better(&c[i], &heap[0])) {
            heap[0] = c[i];
            heap_down(heap, k, 0);
        }
    }
    qsort(heap, (size_t)m, sizeof *heap, cmp_cand);
    memcpy(c, heap, (size_t)m * sizeof *c);
    return m;
}

/* Top-p cut of sorted c[0..n) with softmax over c[0..n) (at temperature 1). */
static int top_p_sorted(const cand *c, int n, float p)
{
    if (c[0].logit == -INFINITY) return n;
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += exp((double)c[i].logit - c[0].logit);
    double cum = 0.0;
    for (int i = 0; i < n; i++) {
        cum += exp((double)c[i].logit - c[0].logit) / sum;
        if (cum >= p) return i + 1;
    }
    return n;
}

/* Min-p cut of sorted c[0..n): keep logit >= max + log(min_p) (the first always stays). */
static int min_p_sorted(const cand *c, int n, float min_p)
{
    float thr = c[0].logit + logf(min_p);
    int i = 1;
    while (i < n && c[i].logit >= thr) i++;
    return i;
}

/* Gather c[i].logit >= thr into dst (id order); returns the count. */
static int gather(const cand *c, int n, float thr, cand *dst)
{
    int m = 0;
    for (int i = 0; i < n; i++)
        if (c[i].logit >= thr) dst[m++] = c[i];
    return m;
}

/* Shrink s->cand to the support of the distribution (before temperature). Returns its size;
 * *sorted tells whether cand[0..n) is in rank order. */
static int filter(ar_sampler *s, bool *sorted)
{
    const ar_sampler_params *p = &s->p;
    cand *c = s->cand;
    int n = s->n_vocab;
    *sorted = false;

    if (p->top_k > 0 && p->top_k < n) {
        n = top_k(c, n, p->top_k, s->work);
        *sorted = true;
        if (p->top_p < 1.0f) n = top_p_sorted(c, n, p->top_p);
        if (p->min_p > 0.0f) n = min_p_sorted(c, n, p->min_p);
        return n;
    }

    float max = c[0].logit;
    for (int i = 1; i < n; i++) if (c[i].logit > max) max = c[i].logit;
    if (max == -INFINITY) return n;   /* everything masked: the draw falls back to the lowest id */

    if (p->top_p < 1.0f) {
        /* Top-p over the whole vocabulary, normalised by the whole vocabulary; min-p's set (when on)
         * is a prefix of the same order, so the result is the shorter of the two prefixes. */
        double sum = 0.0;
        for (int i = 0; i < n; i++) sum += exp((double)c[i].logit - max);
        const bool minp = p->min_p > 0.0f;
        float widen = 8.0f;
        for (;;) {
            float thr = minp ? max + logf(p->min_p) : (isinf(widen) ? -INFINITY : max - widen);
            int g = gather(c, n, thr, s->work);
            qsort(s->work, (size_t)g, sizeof *s->work, cmp_cand);
            double cum = 0.0;
            int cut = -1;
            for (int i = 0; i < g; i++) {
                cum += exp((double)s->work[i].logit - max) / sum;
                if (cum >= p->top_p) { cut = i + 1; break; }
            }
            if (cut < 0 && (minp || g == n)) cut = g;   /* the whole gathered set stays */
            if (cut >= 0) {
                memcpy(c, s->work, (size_t)cut * sizeof *c);
                *sorted = true;
                return cut;
            }
            widen = widen >= 64.0f ? INFINITY : widen * 2.0f;
        }
    }
    if (p->min_p > 0.0f) return gather(c, n, max + logf(p->min_p), c);
    return n;
}

/* Unnormalised probabilities of c[0..n) at temperature temp into w; returns their sum. */
static double weigh(const cand *c, int n, float temp, float *w)
{
    float max = c[0].logit;
    for (int i = 1; i < n; i++) if (c[i].logit > max) max = c[i].logit;
    double sum = 0.0;
    if (max == -INFINITY) {   /* nothing left with weight: uniform over the candidates */
        for (int i = 0; i < n; i++) w[i] = 1.0f;
        return n;
    }
    for (int i = 0; i < n; i++) {
        w[i] = expf((c[i].logit - max) / temp);
        sum += w[i];
    }
    return sum;
}

int32_t ar_sampler_sample(ar_sampler *s, const float *logits)
{
    if (plain_greedy(s)) {
        s->masked = false;
        return ar_argmax(logits, s->n_vocab);
    }
    prepare(s, logits);
    if (!(s->p.temp > 0.0f)) return argmax(s->cand, s->n_vocab);
    bool sorted;
    int n = filter(s, &sorted);
    double sum = weigh(s->cand, n, s->p.temp, s->weight);
    double target = next_unit(s->rng) * sum, run = 0.0;
    int last = 0;
    for (int i = 0; i < n; i++) {
        if (s->weight[i] <= 0.0f) continue;
        run += s->weight[i];
        last = i;
        if (run > target) return s->cand[i].id;
    }
    return s->cand[last].id;   /* rounding left the target just past the end */
}

int ar_sampler_dist(ar_sampler *s, const float *logits, int32_t *ids, float *probs, int cap)
{
    if (plain_greedy(s)) {
        s->masked = false;
        if (cap > 0) { ids[0] = ar_argmax(logits, s->n_vocab); probs[0] = 1.0f; }
        return 1;
    }
    prepare(s, logits);
    if (!(s->p.temp > 0.0f)) {
        if (cap > 0) { ids[0] = argmax(s->cand, s->n_vocab); probs[0] = 1.0f; }
        return 1;
    }
    bool sorted;
    int n = filter(s, &sorted);
    if (!sorted) qsort(s->cand, (size_t)n, sizeof *s->cand, cmp_cand);
    if (s->masked)   /* tokens the constraint refused are not part of the support (they sort last) */
        while (n > 1 && s->cand[n - 1].logit == -INFINITY) n--;
    double sum = weigh(s->cand, n, s->p.temp, s->weight);
    for (int i = 0; i < n && i < cap; i++) {
        ids[i] = s->cand[i].id;
        probs[i] = (float)(s->weight[i] / sum);
    }
    return n;
}
