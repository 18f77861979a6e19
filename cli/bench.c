/* cli/bench.c — `arbor bench`: llama-bench-style speed tables for a qwen35 GGUF.
 *
 * Flow: parse flags (all errors before any work), measure the memory bandwidth first when
 * --roofline asks for it (before the model's pages compete for the cache), load the model, then
 * per test one untimed warm-up run and REPS timed runs (engine/bench.h says what a run is), and
 * print markdown tables on stdout as each row completes. Progress and the load go to stderr.
 *
 * Tables (the same columns as llama-bench where they mean the same thing, so bench/compare.sh can
 * read both by column name):
 *   | model | size | params | threads | test | t/s |          pp<P>, tg<N>
 *   | model | threads | test | depth | ms/forward | t/s | fwd(M)/fwd(1) |     verify<M>
 *   | test | weights/token | ms/token | GB/s read | machine GB/s | % of bandwidth |   --roofline */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/log.h"
#include "engine/bench.h"
#include "format/quant.h"

#define MAX_VERIFY 64
#define BW_BYTES   ((size_t)512 << 20) /* 512 MiB: 16x a 32 MiB L3 */
#define BW_RUNS    20                   /* per measurement; measured before AND after the tests */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: arbor bench -m MODEL [options]\n"
        "\n"
        "Times prompt processing, decode and speculative-verify forwards with random tokens and prints\n"
        "llama-bench-style markdown tables (t/s = mean ± sample stddev over the repetitions).\n"
        "\n"
        "  -m, --model PATH       qwen35 GGUF model\n"
        "  -p, --n-prompt P       ppP: one chain of P tokens, logits for the last only, committed,\n"
        "                         from an empty sequence (default 512; 0 = skip)\n"
        "  -n, --n-gen N          tgN: N single-token decode steps, logits each, committed (default 128; 0 = skip)\n"
        "      --verify LIST      verifyM for each M of LIST (e.g. 1,2,4,8,16,32,64): one forward of a chain\n"
        "                         of M nodes, all wanting logits, after --depth committed tokens, not\n"
        "                         committed; also prints ms per forward and forward(M)/forward(1)\n"
        "      --depth D          committed prefix for verify (default 64)\n"
        "  -t, --threads N        threads (default: one per core)\n"
        "  -r, --repetitions R    timed runs per test, after one untimed warm-up (default 5)\n"
        "  -ub, --ubatch-size U   most nodes per forward while processing the prompt (default 512)\n"
        "      --roofline         measure the machine's memory read bandwidth and report decode as a\n"
        "                         percentage of it (weights read per token / time per token / bandwidth)\n"
        "      --seed S           random token seed (default 1)\n");
}

static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return cli_fail("%s: '%s' is not an integer in [%ld, %ld]", flag, s, lo, hi);
    *out = v;
    return 0;
}

static int parse_list(const char *flag, const char *s, int *out, int cap, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 1 || v > 65536 || (*end && *end != ','))
            return cli_fail("%s: '%s' is not a comma-separated list of sizes in [1, 65536]", flag, s);
        if (*n == cap) return cli_fail("%s: at most %d sizes", flag, cap);
        out[(*n)++] = (int)v;
        p = *end ? end + 1 : end;
    }
    if (*n == 0) return cli_fail("%s: empty list", flag);
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static void read_loadavg(char *buf, size_t cap)
{
    snprintf(buf, cap, "?");
    FILE *f = fopen("/proc/loadavg", "r");
    if (!f) return;
    double a, b, c;
    if (fscanf(f, "%lf %lf %lf", &a, &b, &c) == 3) snprintf(buf, cap, "%.2f, %.2f, %.2f", a, b, c);
    fclose(f);
}

typedef struct run_cfg {
    bench *b;
    int reps;
    double *v;       /* [reps] */
} run_cfg;

enum test_kind { TEST_PP, TEST_TG, TEST_VERIFY };

/* One warm-up run and cfg->reps timed runs; fills v[] with seconds and the stats. */
static int time_test(run_cfg *cfg, enum test_kind kind, int n, int warm_n, const char *label, bench_stat *st)
{
    ar_error err = {0};
    double s;
    int rc = AR_OK;
    const bool tty = isatty(fileno(stderr));
    for (int r = -1; r < cfg->reps && rc == AR_OK; r++) {
        int k = r < 0 ? warm_n : n;
        if (tty) {
            if (r < 0) fprintf(stderr, "bench: %s warm-up\r", label);
            else fprintf(stderr, "bench: %s run %d/%d     \r", label, r + 1, cfg->reps);
            fflush(stderr);
        }
        rc = kind == TEST_PP ? bench_pp(cfg->b, k, &s, &err)
           : kind == TEST_TG ? bench_tg(cfg->b, k, &s, &err)
           :                   bench_verify(cfg->b, k, &s, &err);
        if (r >= 0) cfg->v[r] = s;
    }
    if (tty) fprintf(stderr, "%40s\r", "");
    if (rc != AR_OK) return cli_fail("bench %s: %s", label, err.msg);
    bench_stats(cfg->v, cfg->reps, st);
    return 0;
}

/* t/s mean ± sd over the runs (tokens / seconds of each run), as llama-bench averages rates. */
static void rate_stats(const double *secs, int n, int tokens, bench_stat *st)
{
    double r[1024];
    for (int i = 0; i < n; i++) r[i] = secs[i] > 0 ? tokens / secs[i] : 0.0;
    bench_stats(r, n, st);
}

int cmd_bench(int argc, char **argv)
{
    const char *model_path = NULL;
    long n_prompt = 512, n_gen = 128, depth = 64, n_threads = 0, reps = 5, ubatch = 512;
    unsigned long long seed = 1;
    bool roofline = false;
    int verify[MAX_VERIFY + 1], n_verify = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
#define IS(s) (!strcmp(a, s))
#define NEED() do { if (!v) return cli_fail("%s needs a value (see arbor bench --help)", a); i++; } while (0)
        if (IS("-h") || IS("--help")) { usage(stdout); return 0; }
        else if (IS("-m") || IS("--model")) { NEED(); model_path = v; }
        else if (IS("-p") || IS("--n-prompt")) { NEED(); rc = parse_long(a, v, 0, 1L << 20, &n_prompt); }
        else if (IS("-n") || IS("--n-gen")) { NEED(); rc = parse_long(a, v, 0, 1L << 20, &n_gen); }
        else if (IS("--verify")) { NEED(); rc = parse_list(a, v, verify, MAX_VERIFY, &n_verify); }
        else if (IS("--depth")) { NEED(); rc = parse_long(a, v, 0, 1L << 20, &depth); }
        else if (IS("-t") || IS("--threads")) { NEED(); rc = parse_long(a, v, 1, 1024, &n_threads); }
        else if (IS("-r") || IS("--repetitions")) { NEED(); rc = parse_long(a, v, 1, 1000, &reps); }
        else if (IS("-ub") || IS("--ubatch-size")) { NEED(); rc = parse_long(a, v, 1, 65536, &ubatch); }
        else if (IS("--roofline")) roofline = true;
        else if (IS("--seed")) {
            NEED();
            char *end;
            errno = 0;
            seed = strtoull(v, &end, 10);
            if (errno || end == v || *end || v[0] == '-') return cli_fail("--seed: '%s' is not an integer", v);
        }
        else return cli_fail("bench: unknown argument '%s' (see arbor bench --help)", a);
        if (rc) return rc;
#undef IS
#undef NEED
    }
    if (!model_path) return cli_fail("bench: no model (-m MODEL)");
    if (!n_prompt && !n_gen && !n_verify) return cli_fail("bench: nothing to do (-p 0, -n 0 and no --verify)");
    if (roofline && !n_gen) return cli_fail("bench: --roofline reports decode; it needs -n > 0");
    if (n_threads <= 0) {
        long nc = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = nc > 0 ? nc : 1;
    }
    /* forward(1) is the unit of the verify ratios: measure it even when the list lacks it */
    int max_m = 1;
    bool has_one = false;
    for (int k = 0; k < n_verify; k++) {
        if (verify[k] > max_m) max_m = verify[k];
        if (verify[k] == 1) has_one = true;
    }
    if (n_verify && !has_one) {
        memmove(verify + 1, verify, (size_t)n_verify * sizeof *verify);
        verify[0] = 1;
        n_verify++;
    }

    double bw = 0.0;
    if (roofline) {
        fprintf(stderr, "bench: measuring memory read bandwidth (%d threads, %zu MiB, best of %d)\n",
                (int)n_threads, BW_BYTES >> 20, BW_RUNS);
        bw = bench_mem_bandwidth((int)n_threads, BW_BYTES, BW_RUNS);
        if (bw <= 0) return cli_fail("bench: cannot allocate %zu MiB to measure the memory bandwidth", BW_BYTES >> 20);
    }

    ar_error err = {0};
    qwen35_model *m = NULL;
    bench *b = NULL;
    double *v = NULL;
    int ret = 1;
    ar_log(AR_LOG_INFO, "loading %s", model_path);
    if (qwen35_load(&m, model_path, &err)) { cli_fail("%s", err.msg); goto done; }

    int max_nodes = (int)(n_prompt < ubatch ? n_prompt : ubatch);
    int prefix_chunk = (int)(depth < ubatch ? depth : ubatch);
    if (prefix_chunk > max_nodes) max_nodes = prefix_chunk;
    if (max_m > max_nodes) max_nodes = max_m;
    if (max_nodes < 1) max_nodes = 1;
    long n_ctx = n_prompt;
    if (n_gen > n_ctx) n_ctx = n_gen;
    if (n_verify && depth + max_m > n_ctx) n_ctx = depth + max_m;
    if (bench_create(&b, m, max_nodes, (int)n_ctx, n_verify ? max_m : 1, (int)n_threads, seed, &err)) {
        cli_fail("%s", err.msg);
        goto done;
    }
    v = malloc((size_t)reps * sizeof *v);
    if (!v) { cli_fail("out of memory"); goto done; }
    run_cfg cfg = { b, (int)reps, v };

    bench_model_info info;
    bench_model_describe(m, &info);
    char model_col[512];
    snprintf(model_col, sizeof model_col, "%s (%s)", base_name(model_path), ar_dtype_name(info.main_type));
    char size_col[32], params_col[32];
    double mib = (double)info.file_bytes / (1024.0 * 1024.0);
    if (mib >= 1024.0) snprintf(size_col, sizeof size_col, "%.2f GiB", mib / 1024.0);
    else snprintf(size_col, sizeof size_col, "%.2f MiB", mib);
    if (info.n_params >= 1000000000) snprintf(params_col, sizeof params_col, "%.2f B", (double)info.n_params / 1e9);
    else snprintf(params_col, sizeof params_col, "%.2f M", (double)info.n_params / 1e6);
    char load[64];
    read_loadavg(load, sizeof load);
    printf("arbor bench: %s, %d threads, %ld repetitions after 1 warm-up, load average %s\n\n",
           model_path, (int)n_threads, reps, load);

    bench_stat st, rs;
    double tg_s_per_token = 0.0;
    char label[64];
    if (n_prompt || n_gen) {
        printf("| model | size | params | threads | test | t/s |\n");
        printf("| ----- | ---: | -----: | ------: | ---: | --: |\n");
        fflush(stdout);
    }
    if (n_prompt) {
        snprintf(label, sizeof label, "pp%ld", n_prompt);
        if (time_test(&cfg, TEST_PP, (int)n_prompt, (int)n_prompt, label, &st)) goto done;
        rate_stats(v, (int)reps, (int)n_prompt, &rs);
        printf("| %s | %s | %s | %ld | %s | %.2f ± %.2f |\n", model_col, size_col, params_col, n_threads,
               label, rs.mean, rs.sd);
        fflush(stdout);
    }
    if (n_gen) {
        snprintf(label, sizeof label, "tg%ld", n_gen);
        if (time_test(&cfg, TEST_TG, (int)n_gen, n_gen < 8 ? (int)n_gen : 8, label, &st)) goto done;
        rate_stats(v, (int)reps, (int)n_gen, &rs);
        tg_s_per_token = st.mean / (double)n_gen;
        printf("| %s | %s | %s | %ld | %s | %.2f ± %.2f |\n", model_col, size_col, params_col, n_threads,
               label, rs.mean, rs.sd);
        fflush(stdout);
    }

    if (n_verify) {
        if (bench_verify_prefix(b, (int)depth, &err)) { cli_fail("bench verify prefix: %s", err.msg); goto done; }
        printf("%s| model | threads | test | depth | ms/forward | t/s | fwd(M)/fwd(1) |\n",
               n_prompt || n_gen ? "\n" : "");
        printf("| ----- | ------: | ---: | ----: | ---------: | --: | ------------: |\n");
        fflush(stdout);
        double one_ms = 0.0;
        for (int k = 0; k < n_verify; k++) {
            snprintf(label, sizeof label, "verify%d", verify[k]);
            if (time_test(&cfg, TEST_VERIFY, verify[k], verify[k], label, &st)) goto done;
            rate_stats(v, (int)reps, verify[k], &rs);
            double ms = st.mean * 1e3, sd_ms = st.sd * 1e3;
            if (verify[k] == 1 && one_ms == 0.0) one_ms = ms;
            printf("| %s | %ld | %s | %ld | %.2f ± %.2f | %.2f ± %.2f | %.2f |\n", model_col, n_threads, label, depth,
                   ms, sd_ms, rs.mean, rs.sd, one_ms > 0 ? ms / one_ms : 0.0);
            fflush(stdout);
        }
    }

    if (roofline) {
        /* a shared machine disturbs short reads: measure again after the tests and keep the best */
        double bw2 = bench_mem_bandwidth((int)n_threads, BW_BYTES, BW_RUNS);
        if (bw2 > bw) bw = bw2;
        double gbs = tg_s_per_token > 0 ? (double)info.bytes_per_token / tg_s_per_token / 1e9 : 0.0;
        printf("\n| test | weights/token | ms/token | GB/s read | machine GB/s | %% of bandwidth |\n");
        printf("| ---: | ------------: | -------: | --------: | -----------: | -------------: |\n");
        printf("| tg%ld | %.3f GB | %.2f | %.2f | %.2f | %.1f %% |\n", n_gen, (double)info.bytes_per_token / 1e9,
               tg_s_per_token * 1e3, gbs, bw, bw > 0 ? 100.0 * gbs / bw : 0.0);
        printf("\nmachine GB/s: best of 2 x %d streaming reads of %zu MiB with %ld threads (before and after the\n"
               "tests); weights/token: every trunk layer's tensors + output norm + LM head + one token_embd row\n"
               "(1 GB = 1e9 bytes)\n", BW_RUNS, BW_BYTES >> 20, n_threads);
        if (gbs > bw)
            printf("note: decode read faster than the measured bandwidth: other work disturbed the bandwidth\n"
                   "measurement (or the weights partly stayed in cache); the percentage is not meaningful\n");
    }
    read_loadavg(load, sizeof load);
    printf("\nload average at the end: %s\n", load);
    ret = 0;
done:
    free(v);
    bench_free(b);
    qwen35_free(m);
    return ret;
}
