/* tests/test_generate.c — ar_generate end to end on the tiny fixture model: greedy tokens equal
 * llama.cpp's greedy continuation (the oracle's eval mode), chunked prefill and a continued
 * session give the same tokens, a seed reproduces its text, and the stop rules and errors. */
#include "arbor.h"
#include "base/log.h"
#include "engine/generate.h"
#include "tests/test.h"

#include <stdio.h>
#include <string.h>

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

    free(ids);
    ar_model_free(m);
    ar_model_free(m4);
    TEST_END();
}
