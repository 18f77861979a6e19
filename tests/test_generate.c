/* tests/test_generate.c — ar_generate end to end on the tiny fixture model: greedy tokens equal
 * llama.cpp's greedy continuation (the oracle's eval mode), chunked prefill and a continued
 * session give the same tokens, a seed reproduces its text, and the stop rules and errors.
 * Speculative decoding through the public API (ar_model_load_draft with a random drafter from
 * `$ARBOR_BIN mkdraft`, session params): chain and DDTree (budgets 4, 16, auto) give plain decoding's
 * tokens at T = 0 (and the same continuation after them) and, with the same seed, at T = 0.8 (the tree
 * walk draws from the sampler exactly as plain decoding does); a replay source set in DDTree mode
 * commits whole trees; bad DDTree parameters fail; `arbor run --draft D [--budget 8|auto]` prints plain
 * decoding's text and the decode line, and its flag errors are reported before any loading. */
#include "arbor.h"
#include "base/log.h"
#include "engine/generate.h"
#include "tests/test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

enum { MAX_GEN = 64 };

typedef struct collect {
    int32_t ids[MAX_GEN];
    int     n;
    char    text[8192];
    size_t  text_len;
    int     stop_after;   /* > 0: ask to stop after this many tokens */
    int     flushes;      /* token = -1 calls */
} collect;

static bool on_token(void *user, int32_t token, const char *piece, size_t len)
{
    collect *c = user;
    if (token < 0) c->flushes++;
    else if (c->n < MAX_GEN) c->ids[c->n++] = token;
    if (c->text_len + len < sizeof c->text) {
        memcpy(c->text + c->text_len, piece, len);
        c->text_len += len;
        c->text[c->text_len] = 0;
    }
    return c->stop_after > 0 && c->n >= c->stop_after;
}

static const char *oracle_path(void)
{
    const char *o = getenv("ARBOR_ORACLE");
    return o && *o ? o : "build/oracle/llama_oracle";
}

/* llama.cpp's greedy continuation of ids (n_gen tokens), via the oracle's eval mode. */
static int oracle_greedy(const char *model, const int32_t *ids, int n, int n_gen, int32_t *out)
{
    char cmd[8192];
    int k = snprintf(cmd, sizeof cmd, "'%s' eval '%s' -n %d -t 2 --ids '", oracle_path(), model, n_gen);
    for (int i = 0; i < n && k < (int)sizeof cmd - 32; i++)
        k += snprintf(cmd + k, sizeof cmd - (size_t)k, i ? " %d" : "%d", ids[i]);
    snprintf(cmd + k, sizeof cmd - (size_t)k, "' 2>&1");
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    char line[16384];
    int got = -1;
    while (fgets(line, sizeof line, p)) {
        int cnt = 0;
        char *s = line, *end;
        for (;;) {
            long v = strtol(s, &end, 10);
            if (end == s) break;
            if (cnt < n_gen) out[cnt] = (int32_t)v;
            cnt++;
            s = end;
        }
        while (*s == ' ' || *s == '\n') s++;
        if (cnt == n_gen && !*s) got = cnt;   /* the line of ids */
        else if (cnt == 0) printf("oracle: %s", line);
    }
    int rc = pclose(p);
    return rc == 0 ? got : -1;
}

static ar_session *session(ar_model *m, float temp, uint64_t seed, int n_ctx)
{
    ar_session_params sp = ar_session_defaults();
    sp.n_ctx = n_ctx;
    sp.sampling.temp = temp;
    sp.sampling.seed = seed;
    ar_session *s = NULL;
    ar_error err = {0};
    int rc = ar_session_create(&s, m, &sp, &err);
    CHECK(rc == 0, "ar_session_create: %s", err.msg);
    return s;
}

/* Greedy tokens agree with the oracle's: equal, or ours stopped early at an end-of-generation token. */
static bool agrees(const ar_model *m, const collect *c, const int32_t *want, int n_want)
{
    if (c->n > n_want) return false;
    for (int i = 0; i < c->n; i++) if (c->ids[i] != want[i]) return false;
    return c->n == n_want || (c->n > 0 && ar_model_token_is_eog(m, c->ids[c->n - 1]));
}

/* ---- 7. speculative decoding through the public API: chain and DDTree == plain ------------------ */

static int sh(const char *cmd)
{
    int st = system(cmd);
    return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static bool same_ids(const collect *a, const collect *b)
{
    return a->n == b->n && !memcmp(a->ids, b->ids, sizeof(int32_t) * (size_t)a->n);
}

static int first_diff(const collect *a, const collect *b)
{
    int i = 0;
    while (i < a->n && i < b->n && a->ids[i] == b->ids[i]) i++;
    return i;
}

static ar_session *spec_session(ar_model *m, float temp, uint64_t seed, int budget, ar_error *err, int *rc)
{
    ar_session_params sp = ar_session_defaults();
    sp.n_ctx = 256;
    sp.sampling.temp = temp;
    sp.sampling.seed = seed;
    sp.draft_budget = budget;
    ar_session *s = NULL;
    *rc = ar_session_create(&s, m, &sp, err);
    return s;
}

static const char *mode_name(int budget, char *buf, size_t cap)
{
    if (budget == 0) snprintf(buf, cap, "chain");
    else if (budget < 0) snprintf(buf, cap, "ddtree auto");
    else snprintf(buf, cap, "ddtree budget %d", budget);
    return buf;
}

/* `arbor run` with extra flags: exit status, stdout to TMP/name.out, stderr to TMP/name.err. */
static int run_cli(const char *arbor, const char *tmp, const char *name, const char *model, const char *flags, int n_gen)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' run -m '%s' -p 'Once upon a time' -n %d --temp 0 -t 2 %s > '%s/%s.out' 2> '%s/%s.err'",
             arbor, model, n_gen, flags, tmp, name, tmp, name);
    return sh(cmd);
}

/* The whole of TMP/name.ext (at most cap - 1 bytes), or "" */
static const char *slurp(const char *tmp, const char *name, const char *ext, char *buf, size_t cap)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s.%s", tmp, name, ext);
    buf[0] = 0;
    FILE *f = fopen(p, "rb");
    if (!f) return buf;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* The "decode: ..." line of a run's stderr ("" when missing). */
static const char *decode_line(const char *err_text, char *line, size_t cap)
{
    const char *p = strstr(err_text, "decode: ");
    line[0] = 0;
    if (!p) return line;
    size_t n = strcspn(p, "\n");
    if (n >= cap) n = cap - 1;
    memcpy(line, p, n);
    line[n] = 0;
    return line;
}

static void test_speculative(ar_model *m, const char *model_path, const int32_t *ids, int n)
{
    const bool san = test_sanitized();
    const int NG = san ? 24 : 64;   /* tokens per run */
    const char *arbor = getenv("ARBOR_BIN");
    if (!arbor || !*arbor) arbor = "build/arbor";
    char tmp[256] = "/tmp/arbor-test-generate-XXXXXX";
    if (!mkdtemp(tmp)) { CHECK(0, "mkdtemp failed"); return; }
    char draft[512], cmd[4096];
    snprintf(draft, sizeof draft, "%s/draft.gguf", tmp);
    snprintf(cmd, sizeof cmd, "'%s' mkdraft -q -o '%s' --target '%s' > '%s/mkdraft.log' 2>&1", arbor, draft, model_path,
             tmp);
    int rc = sh(cmd);
    CHECK(rc == 0, "%s failed (exit %d; set ARBOR_BIN to the arbor binary)", cmd, rc);
    if (rc) return;

    ar_error err = {0};
    ar_model_params mp = ar_model_defaults();
    mp.prefault = false;
    mp.n_threads = 2;
    ar_model *md = NULL;
    rc = ar_model_load(&md, model_path, &mp, &err);
    if (!rc) rc = ar_model_load_draft(md, draft, &err);
    CHECK(rc == 0 && ar_model_has_draft(md), "model + drafter %s: %s", draft, err.msg);
    if (rc) { ar_model_free(md); return; }

    /* the reference: plain decoding (the fixture model without a drafter), then 8 more tokens in a second call */
    enum { NMORE = 8 };
    ar_gen_stats st;
    collect ref = { 0 }, ref_more = { 0 };
    ar_session *p = session(m, 0.0f, 1, 256);
    rc = ar_generate(p, ids, n, NG, on_token, &ref, &st, &err);
    rc |= ar_generate(p, NULL, 0, NMORE, on_token, &ref_more, &st, &err);
    CHECK(rc == 0 && ref.n == NG && ref_more.n == NMORE, "plain reference: %s (%d + %d tokens)", err.msg, ref.n,
          ref_more.n);
    CHECK(ar_session_draft_block(p) == 0 && ar_session_draft_budget(p) == 0, "plain session reports block %d budget %d",
          ar_session_draft_block(p), ar_session_draft_budget(p));
    ar_session_free(p);

    /* T = 0: chain, DDTree 4, 16 and auto are token-identical to plain, and leave the same state behind (the
     * continuation is identical too) */
    static const int budgets[] = { 0, 4, 16, -1 };
    char name[64];
    for (int b = 0; b < 4; b++) {
        mode_name(budgets[b], name, sizeof name);
        ar_session *s = spec_session(md, 0.0f, 1, budgets[b], &err, &rc);
        CHECK(rc == 0, "%s session: %s", name, err.msg);
        if (rc) continue;
        CHECK(ar_session_draft_block(s) == 16 && ar_session_draft_budget(s) == budgets[b],
              "%s: the session reports block %d budget %d", name, ar_session_draft_block(s), ar_session_draft_budget(s));
        collect c = { 0 }, more = { 0 };
        rc = ar_generate(s, ids, n, NG, on_token, &c, &st, &err);
        CHECK(rc == 0 && same_ids(&c, &ref), "T=0 %s: %s; %d tokens, first difference at %d", name, err.msg, c.n,
              first_diff(&c, &ref));
        CHECK(st.n_steps > 0 && st.n_step_tokens == st.n_gen - 1 && st.n_accepted <= st.n_drafted &&
              st.n_step_tokens == st.n_steps + st.n_accepted,
              "T=0 %s stats: %d steps, %d step tokens, %d of %d drafts accepted, %d generated", name, st.n_steps,
              st.n_step_tokens, st.n_accepted, st.n_drafted, st.n_gen);
        if (budgets[b] > 0)
            CHECK(st.n_drafted <= budgets[b] * st.n_steps && st.n_drafted > (budgets[b] - 1) * (st.n_steps - 1),
                  "%s: %d nodes verified in %d steps", name, st.n_drafted, st.n_steps);
        printf("T=0 %-16s %d tokens in %d steps: %.2f tokens/step, %.1f nodes/step (draft %.2f verify %.2f commit %.2f ms/step)\n",
               name, st.n_gen, st.n_steps, st.n_steps ? (double)st.n_step_tokens / st.n_steps : 0.0,
               st.n_steps ? (double)st.n_drafted / st.n_steps : 0.0, 1e3 * st.draft_s / (st.n_steps ? st.n_steps : 1),
               1e3 * st.verify_s / (st.n_steps ? st.n_steps : 1), 1e3 * st.commit_s / (st.n_steps ? st.n_steps : 1));
        rc = ar_generate(s, NULL, 0, NMORE, on_token, &more, &st, &err);
        CHECK(rc == 0 && same_ids(&more, &ref_more), "T=0 %s: the continuation differs from plain: %s (%d tokens)", name,
              err.msg, more.n);
        ar_session_free(s);
    }

    /* ar_session_set_speculative: a drafter-equipped session switched off decodes plainly (what the server
     * does for logprobs requests): same tokens, no draft steps; switching is refused on a non-empty session */
    {
        ar_session *s = spec_session(md, 0.0f, 1, 0, &err, &rc);
        CHECK(rc == 0, "chain session: %s", err.msg);
        if (!rc) {
            collect c = { 0 }, c2 = { 0 };
            rc = ar_session_set_speculative(s, false, &err);
            CHECK(rc == 0, "switching speculation off on a new session: %s", err.msg);
            rc = ar_generate(s, ids, n, NG, on_token, &c, &st, &err);
            CHECK(rc == 0 && same_ids(&c, &ref) && st.n_steps == 0 && st.n_drafted == 0,
                  "speculation off: %s; %d tokens, first difference at %d, %d draft steps", err.msg, c.n,
                  first_diff(&c, &ref), st.n_steps);
            CHECK(ar_session_set_speculative(s, true, &err) == AR_EINVAL, "switching on a non-empty session must fail");
            ar_session_reset(s);
            rc = ar_session_set_speculative(s, true, &err);
            CHECK(rc == 0, "switching speculation back on after a reset: %s", err.msg);
            rc = ar_generate(s, ids, n, NG, on_token, &c2, &st, &err);
            CHECK(rc == 0 && same_ids(&c2, &ref) && st.n_steps > 0, "speculation back on: %s; %d tokens, %d steps",
                  err.msg, c2.n, st.n_steps);
            ar_session_free(s);
        }
    }

    /* T = 0.8, same seed: the tree walk draws from the sampler exactly as plain decoding does (one sample +
     * accept per emitted token), so the tokens are plain sampling's */
    const int n_seeds = san ? 1 : 3;
    for (int k = 0; k < n_seeds; k++) {
        const uint64_t seed = 4242 + 17 * (uint64_t)k;
        collect plain_s = { 0 };
        ar_session *ps = session(m, 0.8f, seed, 256);
        rc = ar_generate(ps, ids, n, NG, on_token, &plain_s, &st, &err);
        CHECK(rc == 0 && plain_s.n > 0, "plain sampling seed %llu: %s", (unsigned long long)seed, err.msg);
        ar_session_free(ps);
        for (int b = 0; b < 4; b++) {
            mode_name(budgets[b], name, sizeof name);
            ar_session *s = spec_session(md, 0.8f, seed, budgets[b], &err, &rc);
            CHECK(rc == 0, "%s session: %s", name, err.msg);
            if (rc) continue;
            collect c = { 0 };
            rc = ar_generate(s, ids, n, NG, on_token, &c, &st, &err);
            CHECK(rc == 0 && same_ids(&c, &plain_s), "T=0.8 seed %llu %s: %s; %d tokens vs plain %d, first difference at %d",
                  (unsigned long long)seed, name, err.msg, c.n, plain_s.n, first_diff(&c, &plain_s));
            ar_session_free(s);
        }
    }
    printf("T=0.8: chain and DDTree 4/16/auto equal plain sampling for %d seed(s), %d tokens each\n", n_seeds, NG);

    /* A replay source that proposes the reference (ar_session_set_draft on a drafter-less model, in DDTree
     * mode): full trees get accepted, the output is still plain's */
    int32_t all[256];
    const int n_all = n + ref.n;
    memcpy(all, ids, (size_t)n * sizeof *ids);
    memcpy(all + n, ref.ids, (size_t)ref.n * sizeof *ids);
    ar_draft_source *rsrc = NULL;
    rc = ar_replay_source_create(&rsrc, all, n_all, ar_model_n_vocab(m), 8, &err);
    CHECK(rc == 0, "replay source: %s", err.msg);
    if (!rc) {
        ar_session *s = spec_session(m, 0.0f, 1, 6, &err, &rc);
        CHECK(rc == 0 && s, "drafter-less session with a budget: %s", err.msg);
        if (s && (rc = ar_session_set_draft(s, rsrc, &err))) ar_draft_free(rsrc);
        CHECK(rc == 0 && s && ar_session_draft_budget(s) == 6 && ar_session_draft_block(s) == 8,
              "set_draft in DDTree mode: %s", err.msg);
        if (s && !rc) {
            collect c = { 0 };
            rc = ar_generate(s, ids, n, NG, on_token, &c, &st, &err);
            const double len = st.n_steps ? (double)st.n_step_tokens / st.n_steps : 0.0;
            CHECK(rc == 0 && same_ids(&c, &ref), "replay DDTree: %s; first difference at %d", err.msg, first_diff(&c, &ref));
            /* the replay ranks the reference first with a clear margin, so the 6 nodes are its top-1 chain and every
             * round commits 6 drafts + the bonus (the last round is cut by the token budget) */
            const int want_steps = (NG - 1 + 6) / 7;
            CHECK(st.n_steps == want_steps, "replay DDTree: %d steps for %d tokens (want %d: 7 per step), %.2f tokens/step",
                  st.n_steps, NG - 1, want_steps, len);
            printf("replay source, DDTree budget 6 block 8: %.2f tokens/step, %d of %d nodes accepted\n", len,
                   st.n_accepted, st.n_drafted);
            rc = ar_session_set_draft(s, NULL, &err);
            CHECK(rc == AR_EINVAL, "set_draft on a used session: rc %d", rc);
            ar_session_reset(s);
            rc = ar_session_set_draft(s, NULL, &err);
            CHECK(rc == 0 && ar_session_draft_block(s) == 0 && ar_session_draft_budget(s) == 0, "set_draft(NULL): %s",
                  err.msg);
        }
        ar_session_free(s);
    }

    /* bad DDTree parameters */
    ar_session_params sp = ar_session_defaults();
    ar_session *bad = NULL;
    sp.draft_budget = -2;
    rc = ar_session_create(&bad, md, &sp, &err);
    CHECK(rc == AR_EINVAL && !bad && strstr(err.msg, "budget"), "budget -2: rc %d '%s'", rc, err.msg);
    sp.draft_budget = 4;
    sp.draft_top_k = 65;
    rc = ar_session_create(&bad, md, &sp, &err);
    CHECK(rc == AR_EINVAL && !bad && strstr(err.msg, "top-k"), "top-k 65: rc %d '%s'", rc, err.msg);
    sp.draft_top_k = 0;
    sp.draft_block = 1;
    rc = ar_session_create(&bad, md, &sp, &err);
    CHECK(rc == AR_EINVAL && !bad, "budget with draft_block 1 (off): rc %d '%s'", rc, err.msg);
    sp.draft_block = 0;
    sp.draft_budget = 512;   /* 513 nodes per forward: more than the model's batch of 512 */
    rc = ar_session_create(&bad, md, &sp, &err);
    CHECK(rc != 0 && !bad && strstr(err.msg, "batch"), "budget 512 on a batch of 512: rc %d '%s'", rc, err.msg);
    ar_session_free(bad);
    ar_model_free(md);

    /* arbor run --draft D --budget 8 / auto: the same text as plain at --temp 0, and the decode line */
    const int n_cli = san ? 12 : 32;
    static const char *const cli_names[] = { "plain", "chain", "b8", "auto" };
    char flags[4][1200];
    snprintf(flags[0], sizeof flags[0], "%s", "");
    snprintf(flags[1], sizeof flags[1], "--draft '%s'", draft);
    snprintf(flags[2], sizeof flags[2], "--draft '%s' --budget 8", draft);
    snprintf(flags[3], sizeof flags[3], "--draft '%s' --budget auto", draft);
    static const char *const want_mode[] = { "decode: plain,", "decode: chain block 16,", "decode: ddtree budget 8 (block 16),",
                                             "decode: ddtree budget auto (mean " };
    static char out0[16384], out[16384], errt[16384];
    char line[1024];
    for (int i = 0; i < 4; i++) {
        rc = run_cli(arbor, tmp, cli_names[i], model_path, flags[i], n_cli);
        slurp(tmp, cli_names[i], "err", errt, sizeof errt);
        decode_line(errt, line, sizeof line);
        CHECK(rc == 0, "arbor run %s: exit %d: %s", flags[i], rc, errt);
        CHECK(strstr(line, want_mode[i]) && strstr(line, "acceptance length") && strstr(line, " t/s"),
              "arbor run %s: decode line '%s' (want '%s...')", flags[i], line, want_mode[i]);
        if (i > 0) CHECK(strstr(line, "per step: draft ") && strstr(line, " verify ") && strstr(line, " commit "),
                         "arbor run %s: no per-step times in '%s'", flags[i], line);
        slurp(tmp, cli_names[i], "out", i ? out : out0, sizeof out);
        if (i > 0) CHECK(!strcmp(out, out0) && *out, "arbor run %s --temp 0: text differs from plain:\n%s\nvs\n%s", flags[i],
                         out, out0);
        printf("arbor run %-10s %s\n", cli_names[i], line);
    }
    /* flag errors: before any loading, with a message */
    static const struct { const char *flags, *msg; } cli_bad[] = {
        { "--budget 8", "needs --draft" },
        { "--draft X --budget 0", "--budget" },
        { "--draft X --budget 512", "--budget" },
        { "--draft X --budget 4 -b 4", "--budget" },
        { "--draft X --budget many", "--budget" },
        { "--draft X --tree-k 4", "need --budget" },
        { "--draft X --chain-seed", "need --budget" },
        { "--draft X --budget 4 --tree-k 65", "--tree-k" },
    };
    for (size_t i = 0; i < sizeof cli_bad / sizeof *cli_bad; i++) {
        rc = run_cli(arbor, tmp, "bad", model_path, cli_bad[i].flags, 4);
        slurp(tmp, "bad", "err", errt, sizeof errt);
        CHECK(rc == 1 && strstr(errt, "arbor: ") && strstr(errt, cli_bad[i].msg), "arbor run %s: exit %d, '%s'",
              cli_bad[i].flags, rc, errt);
    }

    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    sh(cmd);
}


int main(void)
{
    ar_log_level = AR_LOG_WARN;   /* the per-session memory lines are noise here */
    char path[1024];
    snprintf(path, sizeof path, "%s/tiny-f32.gguf", test_fixtures());
    ar_model_params mp = ar_model_defaults();
    mp.prefault = false;
    mp.n_threads = 2;
    ar_model *m = NULL, *m4 = NULL;
    ar_error err = {0};
    int rc = ar_model_load(&m, path, &mp, &err);
    CHECK(rc == 0, "fixture %s: %s (make it with scripts/fixtures.sh)", path, err.msg);
    if (rc) TEST_END();
    mp.max_batch = 4;
    rc = ar_model_load(&m4, path, &mp, &err);
    CHECK(rc == 0, "load with max_batch 4: %s", err.msg);
    if (rc) { ar_model_free(m); TEST_END(); }

    const char *prompt_text = "The quick brown fox jumps over the lazy dog. Once upon a time";
    int32_t *ids = NULL;
    size_t n = 0;
    rc = ar_model_tokenize(m, prompt_text, strlen(prompt_text), true, &ids, &n, &err);
    CHECK(rc == 0 && n > 4, "tokenize: %s (%zu tokens)", err.msg, n);
    if (rc || n <= 4) { ar_model_free(m); ar_model_free(m4); TEST_END(); }

    /* 1. greedy == llama.cpp greedy */
    enum { NG = 16 };
    int32_t want[NG];
    int n_want = oracle_greedy(path, ids, (int)n, NG, want);
    CHECK(n_want == NG, "oracle %s eval failed (set ARBOR_ORACLE; scripts/oracle.sh builds it)", oracle_path());
    ar_session *s = session(m, 0.0f, 1, 256);
    collect c = { 0 };
    ar_gen_stats st;
    rc = ar_generate(s, ids, (int)n, NG, on_token, &c, &st, &err);
    CHECK(rc == 0, "ar_generate: %s", err.msg);
    printf("greedy: prompt %d tokens, %d generated, stop %d; first ids %d %d %d (oracle %d %d %d)\n", st.n_prompt,
           st.n_gen, st.stop, c.ids[0], c.ids[1], c.ids[2], want[0], want[1], want[2]);
    CHECK(n_want != NG || agrees(m, &c, want, NG), "greedy tokens differ from llama.cpp's");
    CHECK(st.n_prompt == (int)n && st.n_gen == c.n, "stats: prompt %d (want %zu), gen %d (want %d)", st.n_prompt, n,
          st.n_gen, c.n);
    CHECK(st.stop == (c.n == NG ? AR_STOP_LENGTH : AR_STOP_EOG), "stop reason %d", st.stop);
    CHECK(ar_session_n_past(s) == (int)n + c.n, "n_past %d after %zu + %d", ar_session_n_past(s), n, c.n);
    collect full = c;

    /* 2. prefill in chunks of 4 gives the same tokens */
    ar_session *s4 = session(m4, 0.0f, 1, 256);
    c = (collect){ 0 };
    rc = ar_generate(s4, ids, (int)n, NG, on_token, &c, &st, &err);
    CHECK(rc == 0 && c.n == full.n && !memcmp(c.ids, full.ids, sizeof(int32_t) * (size_t)c.n),
          "chunked prefill (max_batch 4): %s, %d tokens", err.msg, c.n);
    ar_session_free(s4);

    /* 3. continuing a session: 8 + 8 (the pending token is evaluated first) == 16 */
    if (full.n == NG) {
        ar_session_reset(s);
        c = (collect){ 0 };
        rc = ar_generate(s, ids, (int)n, 8, on_token, &c, &st, &err);
        CHECK(rc == 0 && c.n == 8, "first half: %s", err.msg);
        rc = ar_generate(s, NULL, 0, 8, on_token, &c, &st, &err);
        CHECK(rc == 0 && st.n_prompt == 1, "second half: %s (n_prompt %d)", err.msg, st.n_prompt);
        CHECK(c.n == NG && !memcmp(c.ids, full.ids, sizeof full.ids), "8 + 8 continued tokens differ from 16");
        /* ... and a prompt appended to a continued session is one chain with the pending token */
        ar_session *sa = session(m, 0.0f, 1, 256), *sb = session(m, 0.0f, 1, 256);
        collect ca = { 0 }, cb = { 0 };
        int32_t both[256];
        memcpy(both, ids, n * sizeof *ids);
        memcpy(both + n, full.ids, 4 * sizeof *ids);
        memcpy(both + n + 4, ids, 3 * sizeof *ids);
        rc = ar_generate(sa, both, (int)n + 7, 6, on_token, &ca, &st, &err);
        rc |= ar_generate(sb, ids, (int)n, 4, NULL, NULL, &st, &err);
        rc |= ar_generate(sb, ids, 3, 6, on_token, &cb, &st, &err);
        CHECK(rc == 0 && ca.n == cb.n && !memcmp(ca.ids, cb.ids, sizeof ca.ids),
              "continued prompt differs from the whole prompt: %s", err.msg);
        ar_session_free(sa);
        ar_session_free(sb);
    }
    ar_session_free(s);

    /* 4. same seed at temp 0.8: same tokens and text; the seed is kept */
    collect r1 = { 0 }, r2 = { 0 }, r3 = { 0 };
    ar_session *a = session(m, 0.8f, 777, 256), *b = session(m, 0.8f, 777, 256), *d = session(m, 0.8f, 778, 256);
    CHECK(ar_session_seed(a) == 777, "session seed %llu", (unsigned long long)ar_session_seed(a));
    rc = ar_generate(a, ids, (int)n, 24, on_token, &r1, &st, &err);
    rc |= ar_generate(b, ids, (int)n, 24, on_token, &r2, &st, &err);
    rc |= ar_generate(d, ids, (int)n, 24, on_token, &r3, &st, &err);
    CHECK(rc == 0, "sampling runs: %s", err.msg);
    CHECK(r1.n == r2.n && !memcmp(r1.ids, r2.ids, sizeof r1.ids) && !strcmp(r1.text, r2.text),
          "same seed, different output: '%s' vs '%s'", r1.text, r2.text);
    printf("seed 777: %d tokens \"%.60s\"; seed 778 %s\n", r1.n, r1.text,
           r3.n == r1.n && !memcmp(r1.ids, r3.ids, sizeof r1.ids) ? "gave the same tokens" : "differs");
    ar_session_free(a); ar_session_free(b); ar_session_free(d);

    /* 5. stop rules: callback, context full */
    s = session(m, 0.0f, 1, (int)n + 5);
    c = (collect){ .stop_after = 3 };
    rc = ar_generate(s, ids, (int)n, -1, on_token, &c, &st, &err);
    CHECK(rc == 0 && (st.stop == AR_STOP_CALLBACK ? c.n == 3 : st.stop == AR_STOP_EOG), "callback stop: %d after %d",
          st.stop, c.n);
    ar_session_reset(s);
    c = (collect){ 0 };
    rc = ar_generate(s, ids, (int)n, -1, on_token, &c, &st, &err);
    CHECK(rc == 0 && (st.stop == AR_STOP_CONTEXT ? c.n == 6 : st.stop == AR_STOP_EOG),
          "context of prompt + 5: stop %d after %d tokens (want 6: 5 evaluated + 1 sampled)", st.stop, c.n);
    if (st.stop == AR_STOP_CONTEXT) {
        rc = ar_generate(s, NULL, 0, 4, on_token, &c, &st, &err);
        CHECK(rc == AR_ERANGE, "generating past a full context: rc %d", rc);
    }
    ar_session_free(s);

    /* n_predict 0 evaluates the prompt only */
    s = session(m, 0.0f, 1, 256);
    c = (collect){ 0 };
    rc = ar_generate(s, ids, (int)n, 0, on_token, &c, &st, &err);
    CHECK(rc == 0 && c.n == 0 && st.n_gen == 0 && ar_session_n_past(s) == (int)n, "n_predict 0: %d tokens", c.n);

    /* 6. errors before any work */
    ar_session_reset(s);
    rc = ar_generate(s, NULL, 0, 4, NULL, NULL, &st, &err);
    CHECK(rc == AR_EINVAL && strstr(err.msg, "empty"), "empty prompt: rc %d '%s'", rc, err.msg);
    int32_t bad[2] = { 1, ar_model_n_vocab(m) };
    rc = ar_generate(s, bad, 2, 4, NULL, NULL, &st, &err);
    CHECK(rc == AR_EINVAL && strstr(err.msg, "vocabulary"), "out-of-vocab token: rc %d '%s'", rc, err.msg);
    ar_session_free(s);
    s = session(m, 0.0f, 1, (int)n - 1);
    rc = ar_generate(s, ids, (int)n, 4, NULL, NULL, &st, &err);
    CHECK(rc == AR_ERANGE && ar_session_n_past(s) == 0, "prompt longer than the context: rc %d '%s'", rc, err.msg);
    ar_session_free(s);

    /* 7. speculative decoding: chain and DDTree through the public API and arbor run */
    test_speculative(m, path, ids, (int)n);

    free(ids);
    ar_model_free(m);
    ar_model_free(m4);
    TEST_END();
}
