/* tests/test_sample.c — the sampler: greedy, seeds, filters' kept sets, penalties' formulas,
 * a chi-square check of the draw, and the fast paths against a full-sort reference on a large vocab. */
#include "spec/sample.h"
#include "base/timer.h"
#include "tests/test.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

static uint64_t lcg_state = 12345;
static float frand(void) /* [0, 1) */
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((lcg_state >> 40) & 0xffffff) / 16777216.0f;
}

static ar_sampler *make(ar_sampler_params p, int n_vocab)
{
    ar_sampler *s = NULL;
    ar_error err = {0};
    int rc = ar_sampler_create(&s, &p, n_vocab, &err);
    CHECK(rc == 0, "ar_sampler_create: %s", err.msg);
    return s;
}

static ar_sampler_params plain(float temp)
{
    ar_sampler_params p = ar_sampler_defaults();
    p.temp = temp; p.top_k = 0; p.top_p = 1.0f; p.min_p = 0.0f; p.seed = 42;
    return p;
}

/* Sorted (by id) support of the distribution. */
static int support(ar_sampler *s, const float *logits, int32_t *ids, float *probs, int cap)
{
    int n = ar_sampler_dist(s, logits, ids, probs, cap);
    for (int i = 1; i < n && i < cap; i++)   /* insertion sort by id */
        for (int j = i; j > 0 && ids[j - 1] > ids[j]; j--) {
            int32_t t = ids[j]; ids[j] = ids[j - 1]; ids[j - 1] = t;
            float f = probs[j]; probs[j] = probs[j - 1]; probs[j - 1] = f;
        }
    return n;
}

static bool same_set(const int32_t *ids, int n, const int32_t *want, int n_want)
{
    if (n != n_want) return false;
    for (int i = 0; i < n; i++) if (ids[i] != want[i]) return false;
    return true;
}

static void test_greedy(void)
{
    float logits[6] = { 0.5f, 2.0f, -1.0f, 3.0f, 3.0f, 1.0f };
    ar_sampler *s = make(plain(0.0f), 6);
    CHECK(ar_sampler_sample(s, logits) == 3, "greedy picks the argmax, lowest id on ties");
    int32_t id; float pr;
    CHECK(ar_sampler_dist(s, logits, &id, &pr, 1) == 1 && id == 3 && pr == 1.0f, "greedy dist is one token at p=1");
    ar_sampler_free(s);

    /* top-k = 1 is greedy, at any temperature and seed. */
    enum { NV = 1000 };
    static float lg[NV];
    ar_sampler_params p = ar_sampler_defaults();
    p.top_k = 1; p.temp = 1.5f; p.seed = 7;
    ar_sampler *k1 = make(p, NV), *g = make(plain(0.0f), NV);
    int diff = 0;
    for (int t = 0; t < 200; t++) {
        for (int i = 0; i < NV; i++) lg[i] = frand() * 10.0f - 5.0f;
        if (ar_sampler_sample(k1, lg) != ar_sampler_sample(g, lg)) diff++;
    }
    CHECK(diff == 0, "top-k=1 differs from greedy in %d of 200 draws", diff);
    ar_sampler_free(k1);
    ar_sampler_free(g);
}

/* The argmax as prepare + argmax define it: NaN is -inf, the lowest id wins ties. */
static int32_t greedy_ref(const float *lg, int n)
{
    int best = 0;
    float bv = isnan(lg[0]) ? -INFINITY : lg[0];
    for (int i = 1; i < n; i++) {
        const float v = isnan(lg[i]) ? -INFINITY : lg[i];
        if (v > bv) { best = i; bv = v; }
    }
    return best;
}

/* Greedy with default penalties and no constraint reads the raw logits (no copy into the candidates); with a
 * penalty window that changes nothing (repeat penalty 1 with presence penalty 0 is "off", so a presence
 * penalty on a token never seen) it takes the copying path: both must agree with the reference on ties,
 * NaN, -inf and +inf anywhere, including the first and last ids. */
static void test_greedy_raw(void)
{
    enum { NV = 997, T = 400 };
    static float lg[NV];
    ar_sampler *fast = make(plain(0.0f), NV);
    ar_sampler_params pp = plain(0.0f);
    pp.repeat_last_n = 8; pp.presence_penalty = 0.5f;
    ar_sampler *slow = make(pp, NV);
    int bad = 0, bad_dist = 0;
    for (int t = 0; t < T; t++) {
        const int kind = t % 8;
        for (int i = 0; i < NV; i++) lg[i] = (float)(int)(frand() * 8.0f) - 4.0f;   /* many ties */
        if (kind == 1) for (int i = 0; i < NV; i += 3) lg[i] = NAN;
        if (kind == 2) { for (int i = 0; i < NV; i++) lg[i] = -INFINITY; lg[NV - 1] = -3.0f; }
        if (kind == 3) for (int i = 0; i < NV; i++) lg[i] = -INFINITY;
        if (kind == 4) { for (int i = 0; i < NV; i++) lg[i] = i % 2 ? -INFINITY : NAN; }
        if (kind == 5) { lg[0] = NAN; for (int i = 1; i < NV; i++) lg[i] = -INFINITY; }
        if (kind == 6) { lg[(t * 37) % NV] = INFINITY; lg[(t * 53) % NV] = INFINITY; }
        if (kind == 7) for (int i = 0; i < NV; i++) lg[i] = NAN;
        const int32_t want = greedy_ref(lg, NV);
        const int32_t a = ar_sampler_sample(fast, lg), b = ar_sampler_sample(slow, lg);
        if (a != want || b != want || ar_argmax(lg, NV) != want) {
            if (bad < 3) printf("  case %d (kind %d): raw %d, copied %d, reference %d\n", t, kind, a, b, want);
            bad++;
        }
        int32_t id = -1;
        float pr = 0.0f;
        if (ar_sampler_dist(fast, lg, &id, &pr, 1) != 1 || id != want || pr != 1.0f) bad_dist++;
    }
    CHECK(bad == 0, "greedy on raw logits (ar_argmax): %d of %d rows differ from the reference or the copying path", bad, T);
    CHECK(bad_dist == 0, "greedy dist on raw logits: %d of %d rows differ", bad_dist, T);
    ar_sampler_free(fast);
    ar_sampler_free(slow);
}

static void test_seed(void)
{
    enum { NV = 5000, T = 300 };
    static float lg[NV];
    for (int i = 0; i < NV; i++) lg[i] = frand() * 4.0f;
    ar_sampler_params p = ar_sampler_defaults();
    p.seed = 1234;
    ar_sampler *a = make(p, NV), *b = make(p, NV);
    p.seed = 1235;
    ar_sampler *c = make(p, NV);
    static int32_t sa[T];
    int same = 0, same_c = 0, distinct = 0;
    for (int t = 0; t < T; t++) {
        int32_t x = ar_sampler_sample(a, lg), y = ar_sampler_sample(b, lg), z = ar_sampler_sample(c, lg);
        sa[t] = x;
        same += x == y;
        same_c += x == z;
        if (t == 0 || x != sa[0]) distinct++;
    }
    CHECK(same == T, "same seed, same logits: %d of %d draws equal", same, T);
    CHECK(same_c < T, "a different seed gave the very same %d draws", T);
    CHECK(distinct > 10, "draws at temp 0.8 look constant (%d distinct)", distinct);
    CHECK(ar_sampler_seed(a) == 1234, "ar_sampler_seed reports %llu", (unsigned long long)ar_sampler_seed(a));
    ar_sampler_reset(a);
    int again = 0;
    for (int t = 0; t < T; t++) again += ar_sampler_sample(a, lg) == sa[t];
    CHECK(again == T, "after reset the same sequence: %d of %d", again, T);
    ar_sampler_free(a); ar_sampler_free(b); ar_sampler_free(c);

    p.seed = AR_SEED_RANDOM;
    ar_sampler *r1 = make(p, NV), *r2 = make(p, NV);
    CHECK(ar_sampler_seed(r1) != AR_SEED_RANDOM, "a random seed was chosen");
    ar_sampler_free(r1); ar_sampler_free(r2);
}

/* 20,000 draws at temperature 1 with every filter off match softmax (chi-square, 9 dof). */
static void test_chi_square(void)
{
    enum { NV = 10, N = 20000 };
    float lg[NV] = { 1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.25f, 0.75f, -2.0f };
    ar_sampler *s = make(plain(1.0f), NV);
    int hist[NV] = {0};
    for (int t = 0; t < N; t++) {
        int32_t id = ar_sampler_sample(s, lg);
        if (id >= 0 && id < NV) hist[id]++;
    }
    double z = 0.0, chi = 0.0;
    for (int i = 0; i < NV; i++) z += exp(lg[i]);
    for (int i = 0; i < NV; i++) {
        double e = N * exp(lg[i]) / z;
        chi += (hist[i] - e) * (hist[i] - e) / e;
    }
    printf("chi-square (9 dof, 20000 draws, temp 1): %.2f (p=0.001 critical 27.88)\n", chi);
    CHECK(chi < 27.88, "chi-square %.2f over the 0.001 critical value", chi);

    /* Temperature 0.5 squares the probabilities: check the distribution the sampler reports. */
    ar_sampler_free(s);
    s = make(plain(0.5f), NV);
    int32_t ids[NV]; float pr[NV];
    int n = support(s, lg, ids, pr, NV);
    double z2 = 0.0, worst = 0.0;
    for (int i = 0; i < NV; i++) z2 += exp(2.0 * lg[i]);
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(pr[i] - exp(2.0 * lg[ids[i]]) / z2));
    printf("temperature 0.5 dist: worst |p - softmax(2 l)| = %.2e\n", worst);
    CHECK(n == NV && worst < 1e-6, "temp 0.5 dist: support %d, worst diff %g", n, worst);
    ar_sampler_free(s);
}

/* Kept sets on logits made from known probabilities {0.4, 0.3, 0.15, 0.1, 0.05}. */
static void test_filters(void)
{
    float lg[5];
    const float pr0[5] = { 0.4f, 0.3f, 0.15f, 0.1f, 0.05f };
    for (int i = 0; i < 5; i++) lg[i] = logf(pr0[i]) + 3.0f;   /* offset: filters are shift-invariant */
    /* shuffle ids so order != id order: id i holds probability pr0[perm[i]] */
    const int perm[5] = { 2, 0, 4, 1, 3 };
    float sh[5];
    for (int i = 0; i < 5; i++) sh[i] = lg[perm[i]];
    /* ids by rank: rank0 = id1 (0.4), rank1 = id3 (0.3), rank2 = id0 (0.15), rank3 = id4 (0.1), rank4 = id2 (0.05) */
    int32_t ids[8]; float pr[8];
    struct { int top_k; float top_p, min_p; int n; int32_t want[5]; const char *what; } cases[] = {
        { 0, 0.65f, 0.0f, 2, { 1, 3 },          "top-p 0.65 (cum 0.4, 0.7)" },
        { 0, 0.80f, 0.0f, 3, { 0, 1, 3 },       "top-p 0.8" },
        { 0, 0.0f,  0.0f, 1, { 1 },             "top-p 0 keeps one" },
        { 0, 1.0f,  0.30f, 3, { 0, 1, 3 },      "min-p 0.3 (p >= 0.12)" },
        { 0, 1.0f,  0.20f, 4, { 0, 1, 3, 4 },   "min-p 0.2 (p >= 0.08)" },
        { 2, 1.0f,  0.0f, 2, { 1, 3 },          "top-k 2" },
        { 9, 1.0f,  0.0f, 5, { 0, 1, 2, 3, 4 }, "top-k above the vocab is off" },
        { 3, 0.80f, 0.0f, 2, { 1, 3 },          "top-k 3 then top-p 0.8 renormalises over 3 (0.47, 0.82)" },
        { 4, 0.95f, 0.0f, 4, { 0, 1, 3, 4 },    "top-k 4 then top-p 0.95" },
        { 0, 0.95f, 0.30f, 3, { 0, 1, 3 },      "top-p 0.95 then min-p 0.3" },
        { 0, 0.65f, 0.20f, 2, { 1, 3 },         "top-p 0.65 then min-p 0.2" },
        { 3, 1.0f,  0.30f, 3, { 0, 1, 3 },      "top-k 3 then min-p 0.3" },
        { 5, 1.0f,  0.50f, 2, { 1, 3 },         "top-k 5 then min-p 0.5 (p >= 0.2)" },
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        ar_sampler_params p = plain(1.0f);
        p.top_k = cases[c].top_k; p.top_p = cases[c].top_p; p.min_p = cases[c].min_p;
        ar_sampler *s = make(p, 5);
        int n = support(s, sh, ids, pr, 8);
        CHECK(same_set(ids, n, cases[c].want, cases[c].n), "%s: kept %d tokens (first %d)", cases[c].what, n,
              n > 0 ? ids[0] : -1);
        /* probabilities renormalised over the kept set */
        double z = 0.0, worst = 0.0;
        for (int i = 0; i < n; i++) z += exp(sh[ids[i]]);
        for (int i = 0; i < n; i++) worst = fmax(worst, fabs(pr[i] - exp(sh[ids[i]]) / z));
        CHECK(worst < 1e-6, "%s: probabilities off by %g", cases[c].what, worst);
        /* and the draw stays inside the set */
        int outside = 0;
        for (int t = 0; t < 200; t++) {
            int32_t id = ar_sampler_sample(s, sh);
            bool in = false;
            for (int i = 0; i < n; i++) in |= ids[i] == id;
            outside += !in;
        }
        CHECK(outside == 0, "%s: %d draws outside the kept set", cases[c].what, outside);
        ar_sampler_free(s);
    }
}

/* Reference: full sort, then the llama.cpp chain step by step. Returns kept count; keep[] by rank. */
static float *ref_logits;
static int cmp_ref(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    if (ref_logits[x] != ref_logits[y]) return ref_logits[x] > ref_logits[y] ? -1 : 1;
    return x < y ? -1 : 1;
}
static int reference(const float *lg, int nv, int top_k, float top_p, float min_p, int32_t *order)
{
    ref_logits = (float *)lg;
    for (int i = 0; i < nv; i++) order[i] = i;
    qsort(order, (size_t)nv, sizeof *order, cmp_ref);
    int n = nv;
    if (top_k > 0 && top_k < n) n = top_k;
    if (top_p < 1.0f) {
        double z = 0.0, cum = 0.0;
        for (int i = 0; i < n; i++) z += exp((double)lg[order[i]] - lg[order[0]]);
        for (int i = 0; i < n; i++) {
            cum += exp((double)lg[order[i]] - lg[order[0]]) / z;
            if (cum >= top_p) { n = i + 1; break; }
        }
    }
    if (min_p > 0.0f) {
        int m = 1;
        while (m < n && lg[order[m]] >= lg[order[0]] + logf(min_p)) m++;
        n = m;
    }
    return n;
}

static void test_large_vocab(void)
{
    enum { NV = 248320 };
    static float lg[NV];
    static int32_t ids[NV], order[NV];
    static float pr[NV];
    int bad = 0, runs = 0, worst_n = 0;
    struct { int top_k; float top_p, min_p; float spread; } cases[] = {
        { 40, 0.95f, 0.05f, 20.0f }, { 0, 0.95f, 0.05f, 20.0f }, { 0, 0.9f, 0.0f, 20.0f },
        { 0, 0.5f, 0.0f, 4.0f },     { 0, 1.0f, 0.01f, 8.0f },   { 0, 0.99f, 0.0f, 2.0f },
        { 200, 0.9f, 0.0f, 3.0f },   { 0, 0.95f, 0.001f, 1.0f },
    };
    int reps = test_sanitized() ? 1 : 2;
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int r = 0; r < reps; r++) {
            for (int i = 0; i < NV; i++) lg[i] = frand() * cases[c].spread;
            /* a peaked head, like a real model */
            for (int i = 0; i < 30; i++) lg[(i * 7919) % NV] = cases[c].spread + 6.0f - (float)i * 0.3f;
            ar_sampler_params p = plain(0.7f);
            p.top_k = cases[c].top_k; p.top_p = cases[c].top_p; p.min_p = cases[c].min_p;
            ar_sampler *s = make(p, NV);
            int n = ar_sampler_dist(s, lg, ids, pr, NV);
            int m = reference(lg, NV, p.top_k, p.top_p, p.min_p, order);
            bool ok = n == m;
            for (int i = 0; ok && i < n; i++) ok = ids[i] == order[i];
            bad += !ok;
            runs++;
            if (n > worst_n) worst_n = n;
            if (!ok) printf("large vocab case %zu: kept %d, reference %d\n", c, n, m);
            ar_sampler_free(s);
        }
    }
    printf("large vocab: %d runs vs full-sort reference, largest support %d\n", runs, worst_n);
    CHECK(bad == 0, "large vocab: %d of %d runs differ from the full-sort reference", bad, runs);

    /* speed of the default chain, of top-k off and of greedy (temperature 0: the raw-logit argmax) */
    static const char *const what[] = { "defaults", "top-k off", "greedy" };
    for (int i = 0; i < NV; i++) lg[i] = frand() * 20.0f;
    for (int t = 0; t < 3; t++) {
        ar_sampler_params p = ar_sampler_defaults();
        p.seed = 3;
        if (t == 1) p.top_k = 0;
        if (t == 2) p.temp = 0.0f;
        ar_sampler *s = make(p, NV);
        for (int i = 0; i < 64; i++) ar_sampler_accept(s, i * 13);
        double t0 = ar_now();
        int iters = test_sanitized() ? 5 : 50;
        for (int i = 0; i < iters; i++) (void)ar_sampler_sample(s, lg);
        double ms = (ar_now() - t0) * 1e3 / iters;
        printf("sample over %d logits (%s): %.3f ms/token\n", NV, what[t], ms);
        CHECK(test_sanitized() || ms < 20.0, "sampling takes %.2f ms per token", ms);
        ar_sampler_free(s);
    }
}

static void test_penalties(void)
{
    float lg[5] = { 2.0f, 3.0f, -1.0f, 0.5f, 1.0f };
    ar_sampler_params p = plain(1.0f);
    p.repeat_penalty = 1.5f; p.frequency_penalty = 0.1f; p.presence_penalty = 0.2f; p.repeat_last_n = 3;
    ar_sampler *s = make(p, 5);
    ar_sampler_accept(s, 1); ar_sampler_accept(s, 1); ar_sampler_accept(s, 2);
    float want[5];
    memcpy(want, lg, sizeof want);
    want[1] = 3.0f / 1.5f - (2 * 0.1f + 0.2f);   /* positive: divided; count 2 */
    want[2] = -1.0f * 1.5f - (1 * 0.1f + 0.2f);  /* negative: multiplied; count 1 */
    int32_t ids[5]; float pr[5];
    int n = support(s, lg, ids, pr, 5);
    double z = 0.0, worst = 0.0;
    for (int i = 0; i < 5; i++) z += exp(want[i]);
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(pr[i] - exp(want[ids[i]]) / z));
    printf("penalties: worst |p - softmax(penalised)| = %.2e\n", worst);
    CHECK(n == 5 && worst < 1e-6, "penalties change logits as the formulas say (worst %g)", worst);

    /* the window slides: after 3 more accepts of token 4, tokens 1 and 2 are out */
    ar_sampler_accept(s, 4); ar_sampler_accept(s, 4); ar_sampler_accept(s, 4);
    memcpy(want, lg, sizeof want);
    want[4] = 1.0f / 1.5f - (3 * 0.1f + 0.2f);
    n = support(s, lg, ids, pr, 5);
    z = 0.0; worst = 0.0;
    for (int i = 0; i < 5; i++) z += exp(want[i]);
    for (int i = 0; i < n; i++) worst = fmax(worst, fabs(pr[i] - exp(want[ids[i]]) / z));
    CHECK(n == 5 && worst < 1e-6, "penalty window of 3 slides (worst %g)", worst);
    ar_sampler_free(s);

    /* greedy still applies penalties: a repeated argmax loses to the runner-up */
    p = plain(0.0f);
    p.repeat_penalty = 2.0f;
    s = make(p, 5);
    CHECK(ar_sampler_sample(s, lg) == 1, "greedy without history picks 1");
    ar_sampler_accept(s, 1);
    CHECK(ar_sampler_sample(s, lg) == 0, "greedy with repeat penalty 2 on token 1 picks 0");
    ar_sampler_reset(s);
    CHECK(ar_sampler_sample(s, lg) == 1, "reset clears the penalty history");
    ar_sampler_accept(s, -5); ar_sampler_accept(s, 99);   /* ignored */
    CHECK(ar_sampler_sample(s, lg) == 1, "out-of-range accepts are ignored");
    ar_sampler_free(s);

    /* last_n 0 turns penalties off */
    p.repeat_last_n = 0;
    s = make(p, 5);
    ar_sampler_accept(s, 1);
    CHECK(ar_sampler_sample(s, lg) == 1, "repeat_last_n 0 disables penalties");
    ar_sampler_free(s);
}

static void test_errors_and_edges(void)
{
    ar_sampler *s = NULL;
    ar_error err = {0};
    ar_sampler_params p = ar_sampler_defaults();
    CHECK(ar_sampler_create(&s, &p, 0, &err) == AR_EINVAL && !s, "n_vocab 0 rejected");
    p.repeat_last_n = -1;
    CHECK(ar_sampler_create(&s, &p, 10, &err) == AR_EINVAL, "repeat_last_n -1 rejected");
    p = ar_sampler_defaults(); p.repeat_penalty = 0.0f;
    CHECK(ar_sampler_create(&s, &p, 10, &err) == AR_EINVAL, "repeat penalty 0 rejected");
    p = ar_sampler_defaults(); p.temp = NAN;
    CHECK(ar_sampler_create(&s, &p, 10, &err) == AR_EINVAL, "NaN temperature rejected: %s", err.msg);
    ar_sampler_free(NULL);

    /* NaN and -inf logits never get picked; all -inf falls back to a valid id */
    float lg[4] = { NAN, -INFINITY, 1.0f, NAN };
    p = ar_sampler_defaults(); p.seed = 5;
    s = make(p, 4);
    int bad = 0;
    for (int t = 0; t < 50; t++) bad += ar_sampler_sample(s, lg) != 2;
    CHECK(bad == 0, "NaN/-inf logits drawn %d times", bad);
    float all[4] = { -INFINITY, -INFINITY, -INFINITY, -INFINITY };
    int32_t id = ar_sampler_sample(s, all);
    CHECK(id >= 0 && id < 4, "all -inf logits give id %d", id);
    ar_sampler_free(s);
}

int main(void)
{
    test_greedy();
    test_greedy_raw();
    test_seed();
    test_chi_square();
    test_filters();
    test_penalties();
    test_large_vocab();
    test_errors_and_edges();
    TEST_END();
}
