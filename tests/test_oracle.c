/* tests/test_oracle.c — smoke test of the llama.cpp oracle that the differential tests rely on.
 *
 * The oracle (build/oracle/llama_oracle, env ARBOR_ORACLE) and the llama.cpp source tree it was built
 * from (build/oracle/llama.cpp, env ARBOR_LLAMA_SRC) are installed by scripts/oracle.sh, which
 * scripts/deps.sh runs. This suite checks that the oracle starts, loads the CPU backend and reproduces
 * llama.cpp's own tokenizer vectors for the qwen35 pre-tokenizer; it does not test arbor code.
 * A missing oracle is a failed check (never a skip). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "tests/test.h"

static const char *env_or(const char *name, const char *def)
{
    const char *v = getenv(name);
    return v && *v ? v : def;
}

/* Appends s to buf single-quoted for /bin/sh. */
static void append_quoted(char *buf, size_t cap, const char *s)
{
    size_t n = strlen(buf);
    if (n + 1 < cap)
        buf[n++] = '\'';
    for (; *s && n + 5 < cap; s++) {
        if (*s == '\'') {
            memcpy(buf + n, "'\\''", 4);
            n += 4;
        } else {
            buf[n++] = *s;
        }
    }
    if (n + 1 < cap)
        buf[n++] = '\'';
    buf[n] = '\0';
}

/* Runs a shell command; returns its exit status and its stdout in out (truncated to cap). */
static int run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(out, cap, "popen failed");
        return -1;
    }
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    char sink[4096];
    while (fread(sink, 1, sizeof(sink), p) > 0)
        ;
    int st = pclose(p);
    return st == -1 ? -1 : (WIFEXITED(st) ? WEXITSTATUS(st) : 128);
}

static void chomp(char *s)
{
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

int main(void)
{
    const char *oracle = env_or("ARBOR_ORACLE", "build/oracle/llama_oracle");
    const char *src = env_or("ARBOR_LLAMA_SRC", "build/oracle/llama.cpp");
    char vocab[4096];
    snprintf(vocab, sizeof(vocab), "%s/models/ggml-vocab-qwen35.gguf", src);

    int have_oracle = access(oracle, X_OK) == 0;
    CHECK(have_oracle, "oracle '%s' not found or not executable: run scripts/deps.sh (or scripts/oracle.sh)",
          oracle);
    int have_vocab = access(vocab, R_OK) == 0;
    CHECK(have_vocab, "llama.cpp vocab file '%s' not found: run scripts/deps.sh (or scripts/oracle.sh)", vocab);
    if (!have_oracle || !have_vocab)
        TEST_END();

    char cmd[16384], out[65536];

    /* 1. llama.cpp's tests/test-tokenizer-0 vectors for the qwen35 pre-tokenizer */
    cmd[0] = '\0';
    append_quoted(cmd, sizeof(cmd), oracle);
    strcat(cmd, " vocabtest ");
    append_quoted(cmd, sizeof(cmd), vocab);
    strcat(cmd, " 2>&1");
    int rc = run(cmd, out, sizeof(out));
    CHECK(rc == 0 && strstr(out, "50 passed, 0 failed") != NULL,
          "oracle vocabtest on %s: exit %d, output:\n%s", vocab, rc, out);

    /* 2. one plain tokenization */
    cmd[0] = '\0';
    append_quoted(cmd, sizeof(cmd), oracle);
    strcat(cmd, " tok ");
    append_quoted(cmd, sizeof(cmd), vocab);
    strcat(cmd, " -p 'Hello world'");
    rc = run(cmd, out, sizeof(out));
    chomp(out);
    CHECK(rc == 0 && strcmp(out, "9707 1879") == 0, "oracle tok 'Hello world': exit %d, got '%s', want '9707 1879'",
          rc, out);

    /* 3. tokbatch: length-prefixed records, including an empty one, one line of ids each */
    const char *tmp = env_or("TMPDIR", "/tmp");
    char in_path[4096], out_path[4096];
    snprintf(in_path, sizeof(in_path), "%s/arbor-test-oracle-%ld.bin", tmp, (long)getpid());
    snprintf(out_path, sizeof(out_path), "%s/arbor-test-oracle-%ld.txt", tmp, (long)getpid());
    FILE *f = fopen(in_path, "wb");
    CHECK(f != NULL, "cannot create %s", in_path);
    if (f) {
        static const unsigned char recs[] = {11, 0, 0, 0, 'H', 'e', 'l', 'l', 'o', ' ', 'w', 'o', 'r', 'l', 'd',
                                             0,  0, 0, 0, 1,   0,   0,   0,   '\n'};
        fwrite(recs, 1, sizeof(recs), f);
        fclose(f);
        cmd[0] = '\0';
        append_quoted(cmd, sizeof(cmd), oracle);
        strcat(cmd, " tokbatch ");
        append_quoted(cmd, sizeof(cmd), vocab);
        strcat(cmd, " ");
        append_quoted(cmd, sizeof(cmd), in_path);
        strcat(cmd, " ");
        append_quoted(cmd, sizeof(cmd), out_path);
        rc = run(cmd, out, sizeof(out));
        char got[256] = "";
        FILE *g = fopen(out_path, "rb");
        if (g) {
            size_t n = fread(got, 1, sizeof(got) - 1, g);
            got[n] = '\0';
            fclose(g);
        }
        CHECK(rc == 0 && strcmp(got, "9707 1879\n\n198\n") == 0,
              "oracle tokbatch: exit %d, got '%s', want '9707 1879\\n\\n198\\n'", rc, got);
        remove(in_path);
        remove(out_path);
    }

    /* 4. detok renders pieces, escaped one per line */
    cmd[0] = '\0';
    append_quoted(cmd, sizeof(cmd), oracle);
    strcat(cmd, " detok ");
    append_quoted(cmd, sizeof(cmd), vocab);
    strcat(cmd, " 9707 1879 198");
    rc = run(cmd, out, sizeof(out));
    CHECK(rc == 0 && strcmp(out, "Hello\n world\n\\n\n") == 0, "oracle detok: exit %d, got '%s'", rc, out);

    /* 5. failures are reported, not crashes */
    cmd[0] = '\0';
    append_quoted(cmd, sizeof(cmd), oracle);
    strcat(cmd, " tok /nonexistent/model.gguf -p x 2>&1");
    rc = run(cmd, out, sizeof(out));
    CHECK(rc == 1 && strstr(out, "cannot read model") != NULL, "oracle on a missing model: exit %d, output '%s'",
          rc, out);

    TEST_END();
}
