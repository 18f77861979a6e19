/* tests/test_bench.c — `arbor bench` end to end, through the binary ($ARBOR_BIN) on the tiny fixture
 * ($ARBOR_FIXTURES/tiny-f32.gguf) with a drafter made by `$ARBOR_BIN mkdraft`.
 *
 * --draft: the speculative comparison (plain, chain, DDTree budgets) exits 0, prints one table row per
 * mode with the asked number of tokens, plain's speed-up is 1.00x, and every mode produced plain's tokens
 * ("outputs identical: yes"). Also: flag errors are "arbor: ..." with exit 1, and without --draft the
 * llama-bench-style table is unchanged. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test.h"

static char g_tmp[256];
static const char *g_arbor;

/* Runs cmd (stderr kept apart in TMP/stderr.log), returns its stdout (malloc'd) and exit status. */
static char *capture(const char *cmd, int *status)
{
    char full[20000];
    snprintf(full, sizeof full, "%s 2>'%s/stderr.log'", cmd, g_tmp);
    *status = -1;
    FILE *p = popen(full, "r");
    if (!p) return NULL;
    size_t cap = 1 << 14, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += got;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
    }
    int st = pclose(p);
    *status = st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (buf) buf[n] = 0;
    return buf;
}

static char *read_stderr(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/stderr.log", g_tmp);
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char *buf = calloc(1, 1 << 16);
    if (buf) {
        size_t n = fread(buf, 1, (1 << 16) - 1, f);
        buf[n] = 0;
    }
    fclose(f);
    return buf;
}

/* The table row whose first cell starts with `mode`: its cells (trimmed) into cells[0..cap), count returned. */
static int row_cells(const char *out, const char *mode, char cells[][96], int cap)
{
    char key[128];
    snprintf(key, sizeof key, "\n| %s", mode);
    const char *at = strstr(out, key);
    if (!at) return 0;
    at += 2;   /* at the first cell */
    const char *end = strchr(at, '\n');
    if (!end) end = at + strlen(at);
    int n = 0;
    while (at < end && n < cap) {
        const char *bar = memchr(at, '|', (size_t)(end - at));
        if (!bar) break;
        const char *s = at, *e = bar;
        while (s < e && *s == ' ') s++;
        while (e > s && e[-1] == ' ') e--;
        snprintf(cells[n++], 96, "%.*s", (int)(e - s), s);
        at = bar + 1;
    }
    return n;
}

static void spec_table(const char *model, const char *draft)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' bench -m '%s' --draft '%s' --budget 4,16,auto -p 24 -n 16 -r 1 -t 2", g_arbor, model,
             draft);
    int st;
    char *out = capture(cmd, &st);
    CHECK(out != NULL, "could not run %s", cmd);
    if (!out) return;
    char *err = read_stderr();
    CHECK(st == 0, "%s exited %d; stdout:\n%s\nstderr:\n%s", cmd, st, out, err ? err : "");
    CHECK(strstr(out, "| mode | tokens | steps | acceptance length | draft ms/step | verify ms/step | commit ms/step | "
                      "t/s | speed-up |") != NULL, "the table header is missing:\n%s", out);
    static const char *const modes[] = { "plain |", "chain (block 16)", "ddtree 4 (block 16)", "ddtree 16 (block 16)",
                                         "ddtree auto (block 16" };
    for (int i = 0; i < 5; i++) {
        char cells[12][96];
        int n = row_cells(out, modes[i], cells, 12);
        CHECK(n == 9, "row '%s': %d cells, want 9:\n%s", modes[i], n, out);
        if (n != 9) continue;
        CHECK(!strcmp(cells[1], "16"), "row '%s': %s tokens, want 16", modes[i], cells[1]);
        double acc = atof(cells[3]);
        CHECK(acc >= 1.0 && acc <= 16.0, "row '%s': acceptance length %s outside [1, 16]", modes[i], cells[3]);
        CHECK(atof(cells[7]) > 0, "row '%s': t/s '%s' is not positive", modes[i], cells[7]);
        if (i == 0) CHECK(!strcmp(cells[8], "1.00x"), "plain's speed-up is %s, want 1.00x", cells[8]);
        printf("ok %-22s %s tokens, %s steps, acceptance %s, %s t/s, %s\n", cells[0], cells[1], cells[2], cells[3],
               cells[7], cells[8]);
    }
    CHECK(strstr(out, "\noutputs identical: yes\n") != NULL, "speculative modes differ from plain decoding:\n%s\n%s", out,
          err ? err : "");
    free(err);
    free(out);
}

static void errors(const char *model, const char *draft)
{
    static const struct { const char *args, *msg; } cases[] = {
        { "--budget 4", "arbor: bench: --block and --budget need --draft" },
        { "--draft '%s' --budget 0", "arbor: --budget: '0' is not a budget" },
        { "--draft '%s' --budget 4,,8", "arbor: --budget:" },
        { "--draft '%s' --verify 4", "do not combine with --draft" },
        { "--draft /nonexistent/d.gguf", "arbor: /nonexistent/d.gguf" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char args[2048], cmd[16384];
        snprintf(args, sizeof args, cases[i].args, draft);
        snprintf(cmd, sizeof cmd, "'%s' bench -m '%s' %s -n 4 -r 1", g_arbor, model, args);
        int st;
        char *out = capture(cmd, &st);
        char *err = read_stderr();
        CHECK(st == 1, "%s: exit %d, want 1", args, st);
        CHECK(err && strstr(err, cases[i].msg), "%s: stderr lacks '%s':\n%s", args, cases[i].msg, err ? err : "");
        free(err);
        free(out);
    }
}

/* Without --draft: the llama-bench table as before. */
static void plain_tables(const char *model)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' bench -m '%s' -p 8 -n 4 -r 1 -t 2", g_arbor, model);
    int st;
    char *out = capture(cmd, &st);
    CHECK(st == 0 && out, "%s exited %d", cmd, st);
    if (!out) return;
    CHECK(strstr(out, "| model | size | params | threads | test | t/s |") && strstr(out, "| pp8 |") &&
              strstr(out, "| tg4 |") && !strstr(out, "outputs identical"),
          "bench without --draft changed:\n%s", out);
    free(out);
}

int main(void)
{
    const char *bin = getenv("ARBOR_BIN");
    g_arbor = bin && *bin ? bin : "build/arbor";
    char model[1024];
    snprintf(model, sizeof model, "%s/tiny-f32.gguf", test_fixtures());
    bool have_arbor = access(g_arbor, X_OK) == 0, have_model = access(model, R_OK) == 0;
    CHECK(have_arbor, "arbor binary %s missing (set ARBOR_BIN)", g_arbor);
    CHECK(have_model, "fixture %s missing: run scripts/fixtures.sh", model);
    if (!have_arbor || !have_model) TEST_END();
    snprintf(g_tmp, sizeof g_tmp, "/tmp/arbor-test-bench-XXXXXX");
    CHECK(mkdtemp(g_tmp) != NULL, "mkdtemp failed");

    char draft[512], cmd[8192];
    snprintf(draft, sizeof draft, "%s/draft.gguf", g_tmp);
    snprintf(cmd, sizeof cmd, "'%s' mkdraft -q -o '%s' --target '%s' --seed 3", g_arbor, draft, model);
    int st;
    char *out = capture(cmd, &st);
    free(out);
    CHECK(st == 0, "%s failed (exit %d)", cmd, st);
    if (st == 0) {
        spec_table(model, draft);
        errors(model, draft);
    }
    plain_tables(model);

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_tmp);
    if (system(cmd) != 0) printf("note: could not remove %s\n", g_tmp);
    TEST_END();
}
