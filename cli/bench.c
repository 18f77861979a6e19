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
 *   | test | weights/token | ms/token | GB/s read | machine GB/s | % of bandwidth |   --roofline
 *
 * With --draft the run is a different one: plain decoding vs DFlash chain speculation vs DDTree for each
 * --budget, end to end through ar_generate on one seeded random prompt at T = 0 (engine/bench.h,
 * bench_spec_compare), one table row per mode, then "outputs identical: yes|no" (no: exit 1, since
 * lossless speculation must reproduce plain decoding's tokens):
 *   | mode | tokens | steps | acceptance length | draft ms/step | verify ms/step | commit ms/step | t/s | speed-up | */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arbor.h"
#include "base/log.h"
#include "engine/bench.h"
#include "format/quant.h"

#define MAX_VERIFY 64
#define MAX_BUDGETS 32
#define BW_BYTES   ((size_t)512 << 20) /* 512 MiB: 16x a 32 MiB L3 */
#define BW_RUNS    20                   /* per measurement; measured before AND after the tests */

/* VmRSS of this process in MiB (Linux /proc), or -1. */
static double rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    double kib = -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6)) kib = strtod(line + 6, NULL);
    fclose(f);
    return kib < 0 ? -1 : kib / 1024.0;
}

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
        "      --kv-type f16|f32  attention KV cache type (default f16, as llama.cpp)\n"
        "  -r, --repetitions R    timed runs per test, after one untimed warm-up (default 5)\n"
        "  -ub, --ubatch-size U   most nodes per forward while processing the prompt (default 512)\n"
        "      --roofline         measure the machine's memory read bandwidth and report decode as a\n"
        "                         percentage of it (weights read per token / time per token / bandwidth)\n"
        "      --seed S           random token seed (default 1)\n"
        "\n"
        "speculative decoding (replaces the tables above): plain vs chain vs DDTree on the same random prompt,\n"
        "greedy (T = 0), each mode in a fresh session with one warm-up; checks all produce the same tokens:\n"
        "      --draft PATH       DFlash drafter GGUF made for the model\n"
        "      --block N          tokens per step (anchor + up to N-1 drafts), 2..64 (default: the drafter's)\n"
        "      --budget LIST      also DDTree with each budget of LIST: draft nodes per step (1..ubatch - 1)\n"
        "                         or auto, e.g. 4,16,auto\n"
        "  -p, -n, -r, -t, -ub, --seed as above; -p defaults to 64 with --draft\n");
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

/* "4,16,auto" -> budgets (auto = -1), each in [1, max]. */
static int parse_budgets(const char *s, long max, int *out, int cap, int *n)
{
    *n = 0;
    const char *p = s;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[32];
        if (len == 0 || len >= sizeof item)
            return cli_fail("--budget: '%s' is not a comma-separated list of budgets (1..%ld) or auto", s, max);
        memcpy(item, p, len);
        item[len] = 0;
        long v;
        if (!strcmp(item, "auto")) v = -1;
        else {
            char *end;
            errno = 0;
            v = strtol(item, &end, 10);
            if (errno || end == item || *end || v < 1 || v > max)
                return cli_fail("--budget: '%s' is not a budget in [1, %ld] (draft nodes per step; the batch size is "
                                "%ld) or auto", item, max, max + 1);
        }
        if (*n == cap) return cli_fail("--budget: at most %d budgets", cap);
        out[(*n)++] = (int)v;
        p = comma ? comma + 1 : p + len;
        if (comma && !*p) return cli_fail("--budget: '%s' ends with a comma", s);
    }
    if (*n == 0) return cli_fail("--budget: empty list");
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

/* ---- --draft: plain vs chain vs DDTree --------------------------------------------------------------- */

typedef struct spec_print {
    const bench_spec_row *rows;   /* rows[0] (plain) is complete before any other is printed */
    int reps;
    bool tty;
} spec_print;

static void spec_label(const bench_spec_row *r, char *buf, size_t cap)
{
    if (r->mode.kind == BENCH_SPEC_PLAIN) snprintf(buf, cap, "plain");
    else if (r->mode.kind == BENCH_SPEC_CHAIN) snprintf(buf, cap, "chain (block %d)", r->block);
    else if (r->mode.budget > 0) snprintf(buf, cap, "ddtree %d (block %d)", r->mode.budget, r->block);
    else snprintf(buf, cap, "ddtree auto (block %d, mean %.1f nodes)", r->block, r->drafted_per_step);
}

static void spec_on_run(void *user, int mode, int run)
{
    spec_print *sp = user;
    if (!sp->tty) return;
    if (run < 0) fprintf(stderr, "bench: mode %d warm-up          \r", mode + 1);
    else fprintf(stderr, "bench: mode %d run %d/%d          \r", mode + 1, run + 1, sp->reps);
    fflush(stderr);
}

static void spec_on_row(void *user, int mode, const bench_spec_row *r)
{
    (void)mode;
    spec_print *sp = user;
    if (sp->tty) fprintf(stderr, "%40s\r", "");
    char label[96], steps[32], draft[32], commit[32];
    spec_label(r, label, sizeof label);
    if (r->steps == (double)(long)r->steps) snprintf(steps, sizeof steps, "%ld", (long)r->steps);
    else snprintf(steps, sizeof steps, "%.1f", r->steps);
    const bool plain = r->mode.kind == BENCH_SPEC_PLAIN;
    if (plain) {
        snprintf(draft, sizeof draft, "-");
        snprintf(commit, sizeof commit, "-");
    } else {
        snprintf(draft, sizeof draft, "%.2f", r->draft_ms);
        snprintf(commit, sizeof commit, "%.2f", r->commit_ms);
    }
    const double base = sp->rows[0].tps.mean;
    printf("| %s | %d | %s | %.2f | %s | %.2f%s | %s | %.2f ± %.2f | %.2fx |\n", label, r->n_gen, steps,
           r->accept_len, draft, plain ? r->step_ms : r->verify_ms, plain ? " *" : "", commit, r->tps.mean, r->tps.sd,
           base > 0 ? r->tps.mean / base : 0.0);
    fflush(stdout);
}

static int bench_spec_cli(const char *model_path, const char *draft_path, long n_prompt, long n_gen, long reps,
                          long n_threads, long ubatch, long block, const int *budgets, int n_budgets,
                          unsigned long long seed, bool kv_f32)
{
    bench_spec_mode modes[2 + MAX_BUDGETS];
    int n_modes = 0;
    modes[n_modes++] = (bench_spec_mode){ BENCH_SPEC_PLAIN, 0 };
    modes[n_modes++] = (bench_spec_mode){ BENCH_SPEC_CHAIN, 0 };
    for (int i = 0; i < n_budgets; i++) modes[n_modes++] = (bench_spec_mode){ BENCH_SPEC_TREE, budgets[i] };
    bench_spec_row rows[2 + MAX_BUDGETS];

    ar_error err = { 0 };
    ar_model *model = NULL;
    int ret = 1;
    ar_model_params mp = ar_model_defaults();
    mp.kv_f32 = kv_f32;
    mp.n_threads = (int)n_threads;
    mp.max_batch = (int)ubatch;
    ar_log(AR_LOG_INFO, "loading %s", model_path);
    if (ar_model_load(&model, model_path, &mp, &err)) { cli_fail("%s", err.msg); goto done; }
    ar_log(AR_LOG_INFO, "loading drafter %s", draft_path);
    if (ar_model_load_draft(model, draft_path, &err)) { cli_fail("%s", err.msg); goto done; }

    char load[64];
    read_loadavg(load, sizeof load);
    printf("arbor bench: %s, drafter %s, %ld threads, kernels %s, prompt %ld random tokens (seed %llu), %ld generated "
           "at T = 0, %ld repetitions per mode after 1 warm-up, load average %s\n\n", model_path, base_name(draft_path),
           n_threads, ar_cpu_kernels(), n_prompt, seed, n_gen, reps, load);
    printf("| mode | tokens | steps | acceptance length | draft ms/step | verify ms/step | commit ms/step | t/s | speed-up |\n");
    printf("| ---- | -----: | ----: | ----------------: | ------------: | -------------: | -------------: | --: | -------: |\n");
    fflush(stdout);

    spec_print sp = { rows, (int)reps, isatty(fileno(stderr)) };
    bench_spec_hooks hooks = { spec_on_run, spec_on_row, &sp };
    bench_spec_params p = { .n_prompt = (int)n_prompt, .n_gen = (int)n_gen, .reps = (int)reps,
                            .draft_block = (int)block, .seed = seed };
    if (bench_spec_compare(model, &p, modes, n_modes, rows, &hooks, &err)) {
        if (sp.tty) fprintf(stderr, "%40s\r", "");
        cli_fail("%s", err.msg);
        goto done;
    }
    bool same = true;
    for (int i = 0; i < n_modes; i++) same = same && rows[i].identical;
    printf("\n* plain: steps are the decode forwards after the first token (which comes from the prompt's logits);\n"
           "  its verify column is the whole step (one-token forward + sampling). acceptance length = tokens\n"
           "  committed per step; t/s = generated tokens / generation time (prompt excluded), mean ± sd; speed-up\n"
           "  = t/s / plain's t/s.\n");
    printf("\noutputs identical: %s\n", same ? "yes" : "no");
    read_loadavg(load, sizeof load);
    printf("load average at the end: %s\n", load);
    fflush(stdout);
    if (!same) {
        char label[96];
        for (int i = 0; i < n_modes; i++) {
            if (rows[i].identical) continue;
            spec_label(&rows[i], label, sizeof label);
            cli_fail("bench: %s produced different tokens than plain decoding (first at token %d): speculative "
                     "decoding at T = 0 must reproduce plain decoding", label, rows[i].first_diff);
        }
        goto done;
    }
    ret = 0;
done:
    ar_model_free(model);
    return ret;
}

int cmd_bench(int argc, char **argv)
{
    const char *model_path = NULL, *draft_path = NULL, *budget_arg = NULL;
    long block = 0;
    bool prompt_given = false, depth_given = false;
    long n_prompt = 512, n_gen = 128, depth = 64, n_threads = 0, reps = 5, ubatch = 512;
    unsigned long long seed = 1;
    bool roofline = false, kv_f32 = false;
    int verify[MAX_VERIFY + 1], n_verify = 0;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
#define IS(s) (!strcmp(a, s))
#define NEED() do { if (!v) return cli_fail("%s needs a value (see arbor bench --help)", a); i++; } while (0)
        if (IS("-h") || IS("--help")) { usage(stdout); return 0; }
        else if (IS("-m") || IS("--model")) { NEED(); model_path = v; }
        else if (IS("-p") || IS("--n-prompt")) { NEED(); rc = parse_long(a, v, 0, 1L << 20, &n_prompt); prompt_given = true; }
        else if (IS("-n") || IS("--n-gen")) { NEED(); rc = parse_long(a, v, 0, 1L << 20, &n_gen); }
        else if (IS("--verify")) { NEED(); rc = parse_list(a, v, verify, MAX_VERIFY, &n_verify); }
        else if (IS("--depth")) { NEED(); rc = parse_long(a, v, 0, 1L << 20, &depth); depth_given = true; }
        else if (IS("-t") || IS("--threads")) { NEED(); rc = parse_long(a, v, 1, 1024, &n_threads); }
        else if (IS("-r") || IS("--repetitions")) { NEED(); rc = parse_long(a, v, 1, 1000, &reps); }
        else if (IS("-ub") || IS("--ubatch-size")) { NEED(); rc = parse_long(a, v, 1, 65536, &ubatch); }
        else if (IS("--roofline")) roofline = true;
        else if (IS("--kv-type") || IS("-ctk") || IS("--cache-type-k")) { NEED(); rc = cli_kv_type(a, v, &kv_f32); }
        else if (IS("--draft")) { NEED(); draft_path = v; }
        else if (IS("--block")) { NEED(); rc = parse_long(a, v, 2, 64, &block); }
        else if (IS("--budget")) { NEED(); budget_arg = v; }
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
    if (!draft_path && (block || budget_arg)) return cli_fail("bench: --block and --budget need --draft");
    if (draft_path) {
        if (n_verify || roofline || depth_given)
            return cli_fail("bench: --verify, --depth and --roofline time single forwards; they do not combine with --draft");
        if (!prompt_given) n_prompt = 64;
        if (n_prompt < 1 || n_gen < 1) return cli_fail("bench: --draft needs a prompt (-p) and a generation (-n) of at least 1 token");
        int budgets[MAX_BUDGETS], n_budgets = 0;
        if (budget_arg) {
            if (ubatch < 2)
                return cli_fail("bench: --budget needs a batch size of at least 2 (-ub): a tree of N nodes is N + 1 per forward");
            if (parse_budgets(budget_arg, ubatch - 1, budgets, MAX_BUDGETS, &n_budgets)) return 1;
        }
        if (n_threads <= 0) {
            long nc = sysconf(_SC_NPROCESSORS_ONLN);
            n_threads = nc > 0 ? nc : 1;
        }
        return bench_spec_cli(model_path, draft_path, n_prompt, n_gen, reps, n_threads, ubatch, block, budgets,
                              n_budgets, seed, kv_f32);
    }
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
    qwen35_set_kv_f32(m, kv_f32);

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
    printf("arbor bench: %s, %d threads, kernels %s, %ld repetitions after 1 warm-up, load average %s\n\n",
           model_path, (int)n_threads, ar_cpu_kernels(), reps, load);

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
    {
        /* resident memory after the runs: the mapped weights (every page touched), the context and
         * the sequence's KV/state; the bandwidth buffer of --roofline is freed by now */
        const double rss = rss_mib();
        if (rss > 0)
            printf("\nresident memory at the end: %.0f MiB = model file %.0f MiB + %.0f MiB (context, KV, state, "
                   "scratch) (%.2f x the file)\n", rss, mib, rss - mib, rss / mib);
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
