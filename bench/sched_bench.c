/* bench/sched_bench.c — the scheduler's aggregate decode throughput and the prefix cache's effect on
 * time to first token.
 *
 * Not a test. Build by hand against a library build, e.g.
 *   make BUILD=build-sched build-sched/libarbor.a
 *   cc -O2 -std=c11 -D_GNU_SOURCE -I. -Iinclude bench/sched_bench.c build-sched/libarbor.a \
 *      $(pkg-config --libs libpcre2-8) -lutf8proc -lmicrohttpd -ljansson -lm -pthread -ldl -o build-sched/sched_bench
 *   build-sched/sched_bench MODEL.gguf [par=1,4,10] [gen=24] [prompt=32] [shared=0] [threads=0] [prefix=4096]
 *      [user=64]
 *
 * 1. Aggregate decode: for each N in par, N requests (distinct random prompts of `prompt` tokens,
 *    greedy, `gen` tokens each) on a scheduler of N slots, stepped by hand. Only the steps whose batch
 *    is exactly the N decode nodes count: tokens = N per step, so aggregate tok/s = N / step time.
 *    shared = S > 0: every prompt starts with the same S tokens (a system prompt), a cache boundary at
 *    S, so the prefix is prefilled once and its KV pages are shared by the N sequences.
 * 2. Second turn: a conversation of `prefix` tokens (boundary at its end, answer kept with
 *    cache_final) then a second turn = prefix + answer + `user` new tokens, with the prefix cache,
 *    and the same second turn with no_cache. Time to first token = queue + prompt time. */
#include "arbor.h"
#include "base/log.h"
#include "base/timer.h"
#include "engine/generate.h"
#include "engine/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 0x2545F4914F6CDD1Dull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)(rng >> 11); }

typedef struct done_rec { ar_sched_result res; int32_t ids[256]; int n; } done_rec;

static bool on_tok(void *user, int32_t token, const char *piece, size_t len, const float *logits)
{
    (void)piece; (void)len; (void)logits;
    done_rec *d = user;
    if (token >= 0 && d->n < 256) d->ids[d->n++] = token;
    return false;
}

static void on_done(void *user, const ar_sched_result *res) { ((done_rec *)user)->res = *res; }

static ar_sampler_params greedy(void)
{
    ar_sampler_params sp = ar_sampler_defaults();
    sp.temp = 0;
    sp.seed = 1;
    return sp;
}

static const char *arg(int argc, char **argv, const char *key, const char *def)
{
    size_t k = strlen(key);
    for (int i = 2; i < argc; i++)
        if (!strncmp(argv[i], key, k) && argv[i][k] == '=') return argv[i] + k + 1;
    return def;
}

static int decode_bench(ar_model *m, int N, int gen, int plen, int shared, int vocab_hi)
{
    ar_error err;
    ar_sched_params p = ar_sched_defaults();
    p.n_parallel = N;
    p.n_ctx = shared + plen + gen + 16;
    if (shared) p.cache_bytes = (size_t)1 << 30;   /* the shared prefix: prefilled once, its KV pages shared */
    ar_sched *s = NULL;
    if (ar_sched_create(&s, m, &p, &err)) { fprintf(stderr, "sched: %s\n", err.msg); return 1; }
    done_rec *d = calloc((size_t)N, sizeof *d);
    int32_t *ids = malloc(((size_t)shared + plen) * sizeof *ids);
    for (int t = 0; t < shared; t++) ids[t] = (int32_t)(rnd() % (uint32_t)vocab_hi);
    for (int i = 0; i < N; i++) {
        for (int t = shared; t < shared + plen; t++) ids[t] = (int32_t)(rnd() % (uint32_t)vocab_hi);
        ar_sched_request r = { .prompt = ids, .n_prompt = shared + plen, .n_predict = gen, .sampling = greedy(),
                               .boundaries = shared ? &shared : NULL, .n_boundaries = shared ? 1 : 0,
                               .on_token = on_tok, .on_done = on_done, .user = &d[i] };
        if (ar_sched_submit(s, &r, NULL, &err)) { fprintf(stderr, "submit: %s\n", err.msg); return 1; }
    }
    double t_dec = 0, t_all0 = ar_now();
    int n_dec_steps = 0, steps = 0;
    ar_sched_stats st, st0;
    ar_sched_get_stats(s, &st0);
    for (;;) {
        double t0 = ar_now();
        int n = ar_sched_step(s);
        double dt = ar_now() - t0;
        if (n == 0) break;
        steps++;
        ar_sched_get_stats(s, &st);
        if (n == N && st.n_prefilled == st0.n_prefilled && st.n_active == N) { t_dec += dt; n_dec_steps++; }
        st0 = st;
    }
    double t_all = ar_now() - t_all0;
    ar_sched_get_stats(s, &st);
    printf("N=%2d%s: %d decode steps of %d nodes, %.1f ms per step -> aggregate %.2f tok/s (%.2f tok/s per sequence); "
           "whole run %d steps, %.2f s, %llu tokens; of the step time: forward %.1f%%, commit %.1f%%\n",
           N, shared ? " (shared prefix)" : "", n_dec_steps, N, 1e3 * t_dec / n_dec_steps, N * n_dec_steps / t_dec, n_dec_steps / t_dec, steps, t_all,
           (unsigned long long)st.n_generated, 100.0 * st.forward_s / st.busy_s, 100.0 * st.commit_s / st.busy_s);
    fflush(stdout);
    free(d);
    free(ids);
    ar_sched_free(s);
    return 0;
}

static double ttft(const ar_sched_result *r) { return r->queue_s + r->prompt_s; }

static int ttft_bench(ar_model *m, int prefix, int user, int vocab_hi)
{
    ar_error err;
    ar_sched_params p = ar_sched_defaults();
    p.n_parallel = 1;
    p.n_ctx = prefix + user + 64;
    p.cache_bytes = (size_t)2 << 30;
    ar_sched *s = NULL;
    if (ar_sched_create(&s, m, &p, &err)) { fprintf(stderr, "sched: %s\n", err.msg); return 1; }
    const int gen = 8;
    int32_t *t2 = malloc(((size_t)prefix + gen + user) * sizeof *t2);
    for (int i = 0; i < prefix; i++) t2[i] = (int32_t)(rnd() % (uint32_t)vocab_hi);
    done_rec a = { 0 }, b = { 0 }, c = { 0 };
    int bd = prefix;
    ar_sched_request r = { .prompt = t2, .n_prompt = prefix, .n_predict = gen, .sampling = greedy(), .boundaries = &bd,
                           .n_boundaries = 1, .cache_final = true, .on_token = on_tok, .on_done = on_done, .user = &a };
    ar_sched_submit(s, &r, NULL, &err);
    while (ar_sched_step(s) > 0) {}
    int n2 = prefix;
    memcpy(t2 + n2, a.ids, (size_t)a.n * sizeof *t2);
    n2 += a.n;
    for (int i = 0; i < user; i++) t2[n2++] = (int32_t)(rnd() % (uint32_t)vocab_hi);
    r = (ar_sched_request){ .prompt = t2, .n_prompt = n2, .n_predict = gen, .sampling = greedy(),
                            .on_token = on_tok, .on_done = on_done, .user = &b };
    ar_sched_submit(s, &r, NULL, &err);
    while (ar_sched_step(s) > 0) {}
    r.no_cache = true;
    r.user = &c;
    ar_sched_submit(s, &r, NULL, &err);
    while (ar_sched_step(s) > 0) {}
    ar_sched_stats st;
    ar_sched_get_stats(s, &st);
    printf("first turn: %d tokens, TTFT %.3f s (%.0f tok/s prefill)\n", prefix, ttft(&a.res),
           a.res.n_prefilled / a.res.prompt_s);
    printf("second turn: %d tokens, %d from the cache, %d prefilled: TTFT %.3f s with the cache, %.3f s without "
           "(%d prefilled) -> %.1fx; same tokens: %s\n", n2, b.res.n_cached, b.res.n_prefilled, ttft(&b.res),
           ttft(&c.res), c.res.n_prefilled, ttft(&c.res) / ttft(&b.res),
           b.n == c.n && !memcmp(b.ids, c.ids, (size_t)b.n * sizeof *b.ids) ? "yes" : "NO");
    printf("prefix cache: %d entries, %.1f MiB (KV %.1f MiB)\n", st.cache.n_entries, st.cache.bytes / 1048576.0,
           st.cache.kv_bytes / 1048576.0);
    free(t2);
    ar_sched_free(s);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [par=1,4,10] [gen=24] [prompt=32] [shared=0] [threads=0] [prefix=4096] [user=64]\n",
                argv[0]);
        return 1;
    }
    ar_log_level = AR_LOG_WARN;
    ar_model_params mp = ar_model_defaults();
    mp.n_threads = atoi(arg(argc, argv, "threads", "0"));
    ar_model *m = NULL;
    ar_error err;
    if (ar_model_load(&m, argv[1], &mp, &err)) { fprintf(stderr, "%s\n", err.msg); return 1; }
    int vocab_hi = ar_model_n_vocab(m) < 150000 ? ar_model_n_vocab(m) - 3 : 150000;   /* real tokens, not padding */
    const int gen = atoi(arg(argc, argv, "gen", "24")), plen = atoi(arg(argc, argv, "prompt", "32"));
    const int shared = atoi(arg(argc, argv, "shared", "0"));
    char list[256];
    snprintf(list, sizeof list, "%s", arg(argc, argv, "par", "1,4,10"));
    for (char *tok = strtok(list, ","); tok; tok = strtok(NULL, ","))
        if (atoi(tok) > 0 && decode_bench(m, atoi(tok), gen, plen, shared, vocab_hi)) return 1;
    const int prefix = atoi(arg(argc, argv, "prefix", "4096"));
    if (prefix > 0 && ttft_bench(m, prefix, atoi(arg(argc, argv, "user", "64")), vocab_hi)) return 1;
    ar_model_free(m);
    return 0;
}
