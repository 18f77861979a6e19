/* tests/oracle/llama_oracle.c — the llama.cpp reference oracle used by arbor's differential tests.
 *
 * Not part of libarbor. scripts/oracle.sh builds it against the llama.cpp 0.5.0 headers of the pinned
 * source bundle (build/oracle/llama.cpp) and links the prebuilt shared libraries shipped in the npm
 * package @node-llama-cpp/linux-x64@3.22.1 (tests/oracle/node_modules). See tests/oracle/README.md
 * and the project's oracle spec for why each llama.cpp setting below is what it is.
 *
 * Modes (one per run, dispatched in main):
 *   tok       text -> token ids (vocab-only load)
 *   tokbatch  many byte strings -> token ids, one line each
 *   detok     ids -> pieces
 *   vocabtest llama.cpp's VOCAB.gguf.inp/.out tokenizer vectors
 *   eval      logits of every prompt position + greedy steps -> LLOGITS1 file
 *   quantize  llama_model_quantize
 *   dequant   one tensor of a GGUF -> raw float32 via ggml's own to_float
 *   bench     llama-bench-style pp/tg timing, plus small-batch "verify" timing
 *
 * The CPU backend is a separate shared object (ggml is built with GGML_BACKEND_DL); it is loaded from
 * the directory that holds libllama (found with dladdr), so the binary runs from any cwd.
 * llama.cpp's log is hidden except for errors; -v (or LLAMA_VERBOSE=1) shows all of it. */
#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "gguf.h"
#include "llama.h"

static bool g_verbose;
static enum ggml_log_level g_last_level = GGML_LOG_LEVEL_INFO;

/* ---------------------------------------------------------------- small helpers */

static void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("llama_oracle: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die("out of memory allocating %zu bytes", n);
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        die("out of memory allocating %zu bytes", n);
    return q;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Whole file into memory (NUL-terminated for convenience; *len excludes the NUL). */
static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open '%s': %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n + 1 >= cap)
            buf = xrealloc(buf, cap *= 2);
        size_t got = fread(buf + n, 1, cap - n - 1, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f))
        die("cannot read '%s': %s", path, strerror(errno));
    fclose(f);
    buf[n] = '\0';
    *len = n;
    return buf;
}

static long parse_long(const char *s, const char *what, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi)
        die("bad %s '%s' (expected an integer in [%ld, %ld])", what, s, lo, hi);
    return v;
}

/* Whitespace-separated integers (token ids) from a string. */
static int32_t *parse_ids(const char *s, int32_t *n_out, const char *what)
{
    int32_t n = 0, cap = 64;
    int32_t *ids = xmalloc(sizeof(*ids) * (size_t)cap);
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ',')
            p++;
        if (!*p)
            break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (errno || end == p || v < 0 || v > INT32_MAX)
            die("bad token id in %s near '%.20s'", what, p);
        if (n == cap)
            ids = xrealloc(ids, sizeof(*ids) * (size_t)(cap *= 2));
        ids[n++] = (int32_t)v;
        p = end;
    }
    *n_out = n;
    return ids;
}

/* ---------------------------------------------------------------- llama.cpp setup */

static void log_filter(enum ggml_log_level level, const char *text, void *user)
{
    (void)user;
    if (level != GGML_LOG_LEVEL_CONT)
        g_last_level = level;
    if (g_verbose || g_last_level == GGML_LOG_LEVEL_ERROR)
        fputs(text, stderr);
}

/* Directory of the shared library that defines llama_backend_init (the npm bins dir). */
static void lib_dir(char *out, size_t cap)
{
    Dl_info info;
    if (!dladdr((void *)(uintptr_t)&llama_backend_init, &info) || !info.dli_fname)
        die("dladdr cannot locate libllama; is the oracle linked against the npm package's libs?");
    snprintf(out, cap, "%s", info.dli_fname);
    char *slash = strrchr(out, '/');
    if (slash)
        *slash = '\0';
    else
        snprintf(out, cap, ".");
}

static void oracle_init(void)
{
    llama_log_set(log_filter, NULL);
    char dir[4096];
    lib_dir(dir, sizeof(dir));
    const char *variant = getenv("LLAMA_CPU_VARIANT");
    if (variant && *variant) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/libggml-cpu-%s.so", dir, variant);
        if (!ggml_backend_load(path))
            die("LLAMA_CPU_VARIANT=%s: cannot load '%s'", variant, path);
    } else {
        ggml_backend_load_all_from_path(dir);
    }
    if (!ggml_backend_dev_by_type(GGML_BACKEND_DEVICE_TYPE_CPU))
        die("no CPU backend loaded from '%s' (expected libggml-cpu-*.so there; rerun scripts/oracle.sh)", dir);
    llama_backend_init();
}

static struct llama_model *load_model(const char *path, bool vocab_only)
{
    if (access(path, R_OK) != 0)
        die("cannot read model '%s': %s", path, strerror(errno));
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = vocab_only;
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model)
        die("llama.cpp cannot load '%s' (see its error above; -v shows the full log)", path);
    return model;
}

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* Tokenize len bytes; returns a malloc'd id array, count in *n. */
static llama_token *tokenize(const struct llama_vocab *vocab, const char *text, size_t len, bool special,
                             int32_t *n, double *seconds)
{
    if (len > (size_t)INT32_MAX / 2)
        die("text of %zu bytes is too long for llama_tokenize", len);
    int32_t cap = (int32_t)len + 16;
    llama_token *ids = xmalloc(sizeof(*ids) * (size_t)cap);
    for (;;) {
        double t0 = now_s();
        int32_t got = llama_tokenize(vocab, text, (int32_t)len, ids, cap, false, special);
        double t1 = now_s();
        if (got == INT32_MIN)
            die("llama_tokenize overflow on %zu bytes of text", len);
        if (got >= 0) {
            *n = got;
            if (seconds)
                *seconds = t1 - t0;
            return ids;
        }
        cap = -got;
        ids = xrealloc(ids, sizeof(*ids) * (size_t)cap);
    }
}

static void print_ids(FILE *f, const llama_token *ids, int32_t n)
{
    for (int32_t i = 0; i < n; i++)
        fprintf(f, i ? " %d" : "%d", ids[i]);
    fputc('\n', f);
}

/* ---------------------------------------------------------------- tok / tokbatch / detok / vocabtest */

static int mode_tok(int argc, char **argv)
{
    const char *model_path = NULL, *text = NULL, *file = NULL;
    bool special = false, timing = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "-p") && i + 1 < argc)
            text = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc)
            file = argv[++i];
        else if (!strcmp(argv[i], "--special"))
            special = true;
        else if (!strcmp(argv[i], "--time"))
            timing = true;
        else if (!model_path && argv[i][0] != '-')
            model_path = argv[i];
        else
            die("tok: unexpected argument '%s'", argv[i]);
    }
    if (!model_path || (!text && !file) || (text && file))
        die("usage: tok MODEL (-p TEXT | -f FILE) [--special] [--time]");
    size_t len;
    char *buf = NULL;
    if (file) {
        buf = read_file(file, &len);
        text = buf;
    } else {
        len = strlen(text);
    }
    oracle_init();
    struct llama_model *model = load_model(model_path, true);
    int32_t n;
    double secs;
    llama_token *ids = tokenize(llama_model_get_vocab(model), text, len, special, &n, &secs);
    print_ids(stdout, ids, n);
    if (timing)
        fprintf(stderr, "%.6f\n", secs);
    free(ids);
    free(buf);
    llama_model_free(model);
    return 0;
}

static int mode_tokbatch(int argc, char **argv)
{
    const char *paths[3] = {0};
    int np = 0;
    bool special = false;
    for (int i = 0; i < argc; i++) {
        if (!strcmp(argv[i], "--special"))
            special = true;
        else if (np < 3 && argv[i][0] != '-')
            paths[np++] = argv[i];
        else
            die("tokbatch: unexpected argument '%s'", argv[i]);
    }
    if (np != 3)
        die("usage: tokbatch MODEL IN.bin OUT.txt [--special]");
    size_t len;
    char *in = read_file(paths[1], &len);
    oracle_init();
    struct llama_model *model = load_model(paths[0], true);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    FILE *out = fopen(paths[2], "wb");
    if (!out)
        die("cannot create '%s': %s", paths[2], strerror(errno));
    size_t off = 0, rec = 0;
    while (off < len) {
        if (len - off < 4)
            die("%s: record %zu at byte %zu: truncated length field", paths[1], rec, off);
        const unsigned char *p = (const unsigned char *)in + off;
        uint32_t n = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        off += 4;
        if (n > len - off)
            die("%s: record %zu at byte %zu: length %" PRIu32 " runs past the end of the file (%zu bytes)",
                paths[1], rec, off - 4, n, len);
        int32_t nid;
        llama_token *ids = tokenize(vocab, in + off, n, special, &nid, NULL);
        print_ids(out, ids, nid);
        free(ids);
        off += n;
        rec++;
    }
    if (fclose(out) != 0)
        die("cannot write '%s': %s", paths[2], strerror(errno));
    free(in);
    llama_model_free(model);
    return 0;
}

/* Piece bytes, escaped so that one piece is one printable line: printable ASCII as is, backslash
 * as \\, \n \t \r, every other byte (controls and all bytes >= 0x80) as \xNN. */
static void print_escaped(const char *s, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\\')
            fputs("\\\\", stdout);
        else if (c == '\n')
            fputs("\\n", stdout);
        else if (c == '\t')
            fputs("\\t", stdout);
        else if (c == '\r')
            fputs("\\r", stdout);
        else if (c >= 0x20 && c < 0x7f)
            fputc(c, stdout);
        else
            printf("\\x%02x", c);
    }
    fputc('\n', stdout);
}

static int mode_detok(int argc, char **argv)
{
    if (argc < 2)
        die("usage: detok MODEL ID...");
    oracle_init();
    struct llama_model *model = load_model(argv[0], true);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int32_t n_vocab = llama_vocab_n_tokens(vocab);
    for (int i = 1; i < argc; i++) {
        llama_token id = (llama_token)parse_long(argv[i], "token id", 0, n_vocab - 1);
        char buf[256];
        int32_t n = llama_token_to_piece(vocab, id, buf, sizeof(buf), 0, true);
        char *big = NULL;
        if (n < 0) {
            big = xmalloc((size_t)-n);
            n = llama_token_to_piece(vocab, id, big, -n, 0, true);
            if (n < 0)
                die("llama_token_to_piece failed for id %d", id);
        }
        print_escaped(big ? big : buf, n);
        free(big);
    }
    llama_model_free(model);
    return 0;
}

/* llama.cpp tests/test-tokenizer-0: inputs separated by "\n__ggml_vocab_test__\n", one output line
 * of space-separated ids (surrounding whitespace stripped) per input; add_special = parse_special = false. */
static int mode_vocabtest(int argc, char **argv)
{
    if (argc != 1)
        die("usage: vocabtest VOCAB.gguf   (reads VOCAB.gguf.inp and VOCAB.gguf.out)");
    const char *vocab_path = argv[0];
    char pin[4200], pout[4200];
    snprintf(pin, sizeof(pin), "%s.inp", vocab_path);
    snprintf(pout, sizeof(pout), "%s.out", vocab_path);
    size_t lin, lout;
    char *inp = read_file(pin, &lin);
    char *outp = read_file(pout, &lout);

    /* split inputs */
    static const char sep[] = "\n__ggml_vocab_test__\n";
    const size_t seplen = sizeof(sep) - 1;
    size_t n_in = 0, cap = 64;
    size_t *in_off = xmalloc(sizeof(size_t) * cap), *in_len = xmalloc(sizeof(size_t) * cap);
    for (size_t pos = 0; pos < lin;) {
        const char *next = memmem(inp + pos, lin - pos, sep, seplen);
        size_t end = next ? (size_t)(next - inp) : lin;
        if (n_in == cap) {
            cap *= 2;
            in_off = xrealloc(in_off, sizeof(size_t) * cap);
            in_len = xrealloc(in_len, sizeof(size_t) * cap);
        }
        in_off[n_in] = pos;
        in_len[n_in] = end - pos;
        n_in++;
        pos = next ? end + seplen : lin;
    }
    /* split expected lines */
    size_t n_out = 0;
    char **lines = xmalloc(sizeof(char *) * (lout + 1));
    for (char *p = outp; p < outp + lout;) {
        char *nl = memchr(p, '\n', (size_t)(outp + lout - p));
        if (nl)
            *nl = '\0';
        lines[n_out++] = p;
        p = nl ? nl + 1 : outp + lout;
    }
    if (n_in != n_out)
        die("vocabtest: %s has %zu inputs but %s has %zu lines", pin, n_in, pout, n_out);

    oracle_init();
    struct llama_model *model = load_model(vocab_path, true);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int passed = 0, failed = 0;
    for (size_t t = 0; t < n_in; t++) {
        int32_t n_exp;
        int32_t *exp = parse_ids(lines[t], &n_exp, pout);
        int32_t n;
        llama_token *got = tokenize(vocab, inp + in_off[t], in_len[t], false, &n, NULL);
        bool ok = n == n_exp;
        for (int32_t i = 0; ok && i < n; i++)
            ok = got[i] == exp[i];
        if (ok) {
            passed++;
        } else {
            failed++;
            printf("FAIL test %zu: '%.*s'\n  expected:", t, (int)in_len[t], inp + in_off[t]);
            for (int32_t i = 0; i < n_exp; i++)
                printf(" %d", exp[i]);
            printf("\n  got:     ");
            for (int32_t i = 0; i < n; i++)
                printf(" %d", got[i]);
            printf("\n");
        }
        free(exp);
        free(got);
    }
    printf("%d passed, %d failed\n", passed, failed);
    llama_model_free(model);
    free(lines);
    free(in_off);
    free(in_len);
    free(inp);
    free(outp);
    return failed ? 1 : 0;
}

/* ---------------------------------------------------------------- eval */

static void fwrite_or_die(const void *p, size_t size, size_t n, FILE *f, const char *path)
{
    if (fwrite(p, size, n, f) != n)
        die("cannot write '%s': %s", path, strerror(errno));
}

static int32_t argmax(const float *v, int32_t n)
{
    int32_t best = 0;
    for (int32_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static struct llama_context *new_context(struct llama_model *model, uint32_t n_ctx, uint32_t n_batch,
                                         int threads, enum llama_flash_attn_type fa, enum ggml_type kv)
{
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = n_batch;
    cp.n_ubatch = n_batch;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = fa;
    cp.type_k = kv;
    cp.type_v = kv;
    cp.no_perf = true;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx)
        die("llama.cpp cannot create a context (n_ctx %u, n_batch %u; see the error above)", n_ctx, n_batch);
    return ctx;
}

static void decode_or_die(struct llama_context *ctx, struct llama_batch batch, const char *what)
{
    int32_t rc = llama_decode(ctx, batch);
    if (rc != 0)
        die("llama_decode failed on %s (%d tokens): status %d%s", what, batch.n_tokens, rc,
            rc == 1 ? " (no room in the context; raise -c)" : "");
}

static void fill_batch(struct llama_batch *b, const llama_token *ids, int32_t n, int32_t pos0, bool all_logits)
{
    b->n_tokens = n;
    for (int32_t i = 0; i < n; i++) {
        b->token[i] = ids[i];
        b->pos[i] = pos0 + i;
        b->n_seq_id[i] = 1;
        b->seq_id[i][0] = 0;
        b->logits[i] = all_logits || i == n - 1;
    }
}

static int mode_eval(int argc, char **argv)
{
    const char *model_path = NULL, *text = NULL, *ids_arg = NULL, *ids_file = NULL, *out_path = NULL;
    long n_gen = 0, threads = default_threads(), n_ctx_arg = 0;
    bool special = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "-p") && has)
            text = argv[++i];
        else if (!strcmp(a, "--ids") && has)
            ids_arg = argv[++i];
        else if (!strcmp(a, "--ids-file") && has)
            ids_file = argv[++i];
        else if (!strcmp(a, "-n") && has)
            n_gen = parse_long(argv[++i], "-n", 0, 1 << 20);
        else if (!strcmp(a, "-o") && has)
            out_path = argv[++i];
        else if (!strcmp(a, "-t") && has)
            threads = parse_long(argv[++i], "-t", 1, 1024);
        else if (!strcmp(a, "-c") && has)
            n_ctx_arg = parse_long(argv[++i], "-c", 1, INT32_MAX);
        else if (!strcmp(a, "--special"))
            special = true;
        else if (!model_path && a[0] != '-')
            model_path = a;
        else
            die("eval: unexpected argument '%s'", a);
    }
    if (!model_path || (!!text + !!ids_arg + !!ids_file) != 1)
        die("usage: eval MODEL (-p TEXT | --ids \"1 2 3\" | --ids-file F) [-n NGEN] [-o OUT.bin] [-t N] [-c CTX] [--special]");

    oracle_init();
    struct llama_model *model = load_model(model_path, false);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);

    int32_t n_prompt;
    llama_token *prompt;
    if (text) {
        prompt = tokenize(vocab, text, strlen(text), special, &n_prompt, NULL);
    } else if (ids_arg) {
        prompt = parse_ids(ids_arg, &n_prompt, "--ids");
    } else {
        size_t len;
        char *s = read_file(ids_file, &len);
        prompt = parse_ids(s, &n_prompt, ids_file);
        free(s);
    }
    if (n_prompt == 0)
        die("eval: empty prompt");
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= n_vocab)
            die("eval: prompt token %d at position %d is out of the vocabulary [0, %d)", prompt[i], i, n_vocab);

    const int64_t n_rows64 = (int64_t)n_prompt + n_gen;
    if (n_rows64 > INT32_MAX / 2)
        die("eval: too many rows");
    const int32_t n_rows = (int32_t)n_rows64;
    uint32_t n_ctx = n_ctx_arg ? (uint32_t)n_ctx_arg : (uint32_t)n_rows + 16;
    if ((int64_t)n_ctx < n_rows64)
        die("eval: -c %u is smaller than prompt (%d) + generated (%ld) tokens", n_ctx, n_prompt, n_gen);
    uint32_t n_batch = n_prompt > 512 ? (uint32_t)n_prompt : 512;
    struct llama_context *ctx = new_context(model, n_ctx, n_batch, (int)threads,
                                            LLAMA_FLASH_ATTN_TYPE_DISABLED, GGML_TYPE_F32);
    if (llama_n_batch(ctx) < (uint32_t)n_prompt)
        die("eval: llama.cpp clamped n_batch to %u < prompt length %d", llama_n_batch(ctx), n_prompt);

    FILE *out = NULL;
    long tok_off = 0;
    if (out_path) {
        out = fopen(out_path, "wb");
        if (!out)
            die("cannot create '%s': %s", out_path, strerror(errno));
        fwrite_or_die("LLOGITS1", 1, 8, out, out_path);
        fwrite_or_die(&n_rows, 4, 1, out, out_path);
        fwrite_or_die(&n_vocab, 4, 1, out, out_path);
        tok_off = ftell(out);
        for (int32_t i = 0; i < n_rows; i++) /* tokens: rewritten at the end */
            fwrite_or_die(&i, 4, 1, out, out_path);
        for (int32_t i = 0; i < n_rows; i++)
            fwrite_or_die(&i, 4, 1, out, out_path);
    }

    llama_token *tokens = xmalloc(sizeof(llama_token) * (size_t)n_rows);
    memcpy(tokens, prompt, sizeof(llama_token) * (size_t)n_prompt);
    struct llama_batch batch = llama_batch_init(n_prompt, 0, 1);
    fill_batch(&batch, prompt, n_prompt, 0, true);
    decode_or_die(ctx, batch, "the prompt");
    llama_token next = 0;
    for (int32_t i = 0; i < n_prompt; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row)
            die("eval: no logits for prompt row %d", i);
        if (out)
            fwrite_or_die(row, 4, (size_t)n_vocab, out, out_path);
        if (i == n_prompt - 1)
            next = argmax(row, n_vocab);
    }
    for (int32_t s = 0; s < n_gen; s++) {
        const int32_t r = n_prompt + s;
        tokens[r] = next;
        fill_batch(&batch, &next, 1, r, true);
        decode_or_die(ctx, batch, "a greedy step");
        const float *row = llama_get_logits_ith(ctx, 0);
        if (!row)
            die("eval: no logits for step %d", s);
        if (out)
            fwrite_or_die(row, 4, (size_t)n_vocab, out, out_path);
        next = argmax(row, n_vocab);
    }
    if (out) {
        if (fseek(out, tok_off, SEEK_SET) != 0)
            die("cannot seek in '%s': %s", out_path, strerror(errno));
        fwrite_or_die(tokens, 4, (size_t)n_rows, out, out_path);
        if (fclose(out) != 0)
            die("cannot write '%s': %s", out_path, strerror(errno));
    }
    print_ids(stdout, tokens + n_prompt, (int32_t)n_gen);
    llama_batch_free(batch);
    free(tokens);
    free(prompt);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}

/* ---------------------------------------------------------------- quantize / dequant */

static const struct {
    const char *name;
    enum llama_ftype ftype;
} k_ftypes[] = {
    {"q8_0", LLAMA_FTYPE_MOSTLY_Q8_0},     {"q4_0", LLAMA_FTYPE_MOSTLY_Q4_0},
    {"q4_1", LLAMA_FTYPE_MOSTLY_Q4_1},     {"q5_0", LLAMA_FTYPE_MOSTLY_Q5_0},
    {"q5_1", LLAMA_FTYPE_MOSTLY_Q5_1},     {"q4_k_s", LLAMA_FTYPE_MOSTLY_Q4_K_S},
    {"q4_k_m", LLAMA_FTYPE_MOSTLY_Q4_K_M}, {"q5_k_s", LLAMA_FTYPE_MOSTLY_Q5_K_S},
    {"q5_k_m", LLAMA_FTYPE_MOSTLY_Q5_K_M}, {"q6_k", LLAMA_FTYPE_MOSTLY_Q6_K},
    {"q3_k_s", LLAMA_FTYPE_MOSTLY_Q3_K_S}, {"q3_k_m", LLAMA_FTYPE_MOSTLY_Q3_K_M},
    {"q3_k_l", LLAMA_FTYPE_MOSTLY_Q3_K_L}, {"q2_k", LLAMA_FTYPE_MOSTLY_Q2_K},
    {"iq4_xs", LLAMA_FTYPE_MOSTLY_IQ4_XS}, {"f16", LLAMA_FTYPE_MOSTLY_F16},
    {"bf16", LLAMA_FTYPE_MOSTLY_BF16},     {"f32", LLAMA_FTYPE_ALL_F32},
};

static int mode_quantize(int argc, char **argv)
{
    if (argc != 3)
        die("usage: quantize IN.gguf OUT.gguf TYPE");
    int found = -1;
    for (size_t i = 0; i < sizeof(k_ftypes) / sizeof(k_ftypes[0]); i++)
        if (!strcasecmp(argv[2], k_ftypes[i].name))
            found = (int)i;
    if (found < 0) {
        fprintf(stderr, "llama_oracle: unknown quantization type '%s'; known:", argv[2]);
        for (size_t i = 0; i < sizeof(k_ftypes) / sizeof(k_ftypes[0]); i++)
            fprintf(stderr, " %s", k_ftypes[i].name);
        fputc('\n', stderr);
        return 1;
    }
    if (access(argv[0], R_OK) != 0)
        die("cannot read '%s': %s", argv[0], strerror(errno));
    oracle_init();
    llama_model_quantize_params qp = llama_model_quantize_default_params();
    qp.ftype = k_ftypes[found].ftype;
    qp.nthread = 2;
    uint32_t rc = llama_model_quantize(argv[0], argv[1], &qp);
    if (rc != 0)
        die("llama_model_quantize %s -> %s (%s) failed (status %u; see the error above)", argv[0], argv[1],
            k_ftypes[found].name, rc);
    return 0;
}

static int mode_dequant(int argc, char **argv)
{
    if (argc != 3)
        die("usage: dequant MODEL.gguf TENSOR OUT.bin");
    const char *path = argv[0], *name = argv[1], *out_path = argv[2];
    const uint16_t one = 1;
    if (*(const uint8_t *)&one != 1)
        die("dequant writes host-order floats and needs a little-endian host");
    llama_log_set(log_filter, NULL);
    struct gguf_init_params gp = {.no_alloc = true, .ctx = NULL};
    struct gguf_context *g = gguf_init_from_file(path, gp);
    if (!g)
        die("cannot parse GGUF '%s' (see the error above)", path);
    int64_t id = gguf_find_tensor(g, name);
    if (id < 0)
        die("tensor '%s' not found in '%s'", name, path);
    enum ggml_type type = gguf_get_tensor_type(g, id);
    const int64_t *ne = gguf_get_tensor_ne(g, id);
    int64_t n_el = 1;
    for (int d = 0; d < GGML_MAX_DIMS; d++)
        n_el *= ne[d];
    const struct ggml_type_traits *tr = ggml_get_type_traits(type);
    if (type != GGML_TYPE_F32 && !tr->to_float)
        die("tensor '%s' has type %s, which ggml cannot convert to float", name, ggml_type_name(type));
    const int64_t row_el = ne[0];
    const size_t row_bytes = ggml_row_size(type, row_el);
    const int64_t n_rows = row_el ? n_el / row_el : 0;
    if ((size_t)n_rows * row_bytes != gguf_get_tensor_size(g, id))
        die("tensor '%s': size mismatch (%zu bytes for %" PRId64 " rows of %zu)", name, gguf_get_tensor_size(g, id),
            n_rows, row_bytes);
    const off_t off = (off_t)(gguf_get_data_offset(g) + gguf_get_tensor_offset(g, id));

    FILE *in = fopen(path, "rb");
    if (!in)
        die("cannot open '%s': %s", path, strerror(errno));
    if (fseeko(in, off, SEEK_SET) != 0)
        die("cannot seek to byte %lld of '%s'", (long long)off, path);
    FILE *out = fopen(out_path, "wb");
    if (!out)
        die("cannot create '%s': %s", out_path, strerror(errno));
    int64_t rows_per_chunk = row_bytes ? (int64_t)((16u << 20) / row_bytes) : 1;
    if (rows_per_chunk < 1)
        rows_per_chunk = 1;
    unsigned char *raw = xmalloc(row_bytes * (size_t)rows_per_chunk);
    float *f = xmalloc(sizeof(float) * (size_t)row_el * (size_t)rows_per_chunk);
    for (int64_t r = 0; r < n_rows; r += rows_per_chunk) {
        int64_t nr = n_rows - r < rows_per_chunk ? n_rows - r : rows_per_chunk;
        size_t nb = row_bytes * (size_t)nr;
        if (fread(raw, 1, nb, in) != nb)
            die("'%s': tensor '%s' data is truncated (row %" PRId64 ")", path, name, r);
        if (type == GGML_TYPE_F32)
            memcpy(f, raw, nb);
        else
            tr->to_float(raw, f, row_el * nr);
        fwrite_or_die(f, sizeof(float), (size_t)(row_el * nr), out, out_path);
    }
    if (fclose(out) != 0)
        die("cannot write '%s': %s", out_path, strerror(errno));
    fclose(in);
    free(raw);
    free(f);
    fprintf(stderr, "%s: %s [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "] -> %" PRId64 " floats\n", name,
            ggml_type_name(type), ne[0], ne[1], ne[2], ne[3], n_el);
    gguf_free(g);
    return 0;
}

/* ---------------------------------------------------------------- bench */

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;

static llama_token random_token(int32_t n_vocab)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (llama_token)(g_rng % (uint64_t)n_vocab);
}

static void mean_sd(const double *v, int n, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    for (int i = 0; i < n; i++)
        s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++)
        s2 += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(s2 / (n - 1)) : 0.0;
}

struct bench_cfg {
    struct llama_model *model;
    int32_t n_vocab;
    int threads;
    enum llama_flash_attn_type fa;
    enum ggml_type kv;
    uint32_t n_batch;
};

/* Prompt processing of n tokens in n_batch chunks, last logits only (as llama-bench). Seconds. */
static double run_pp(const struct bench_cfg *c, int n)
{
    struct llama_context *ctx = new_context(c->model, (uint32_t)n + 16, c->n_batch, c->threads, c->fa, c->kv);
    uint32_t nb = llama_n_batch(ctx);
    llama_token *toks = xmalloc(sizeof(llama_token) * (size_t)n);
    for (int i = 0; i < n; i++)
        toks[i] = random_token(c->n_vocab);
    double t0 = now_s();
    for (int done = 0; done < n;) {
        int m = n - done < (int)nb ? n - done : (int)nb;
        decode_or_die(ctx, llama_batch_get_one(toks + done, m), "pp");
        done += m;
    }
    llama_synchronize(ctx);
    double t = now_s() - t0;
    free(toks);
    llama_free(ctx);
    return t;
}

/* n single-token decodes with random tokens. Seconds. */
static double run_tg(const struct bench_cfg *c, int n)
{
    struct llama_context *ctx = new_context(c->model, (uint32_t)n + 16, c->n_batch, c->threads, c->fa, c->kv);
    llama_token tok = random_token(c->n_vocab);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        decode_or_die(ctx, llama_batch_get_one(&tok, 1), "tg");
        llama_synchronize(ctx);
        tok = random_token(c->n_vocab);
    }
    double t = now_s() - t0;
    llama_free(ctx);
    return t;
}

/* One forward of m tokens (logits for every row) after a prefix of `prefix` tokens. Seconds. */
static double run_verify(const struct bench_cfg *c, int prefix, int m)
{
    struct llama_context *ctx =
        new_context(c->model, (uint32_t)(prefix + m) + 16, c->n_batch, c->threads, c->fa, c->kv);
    int n = prefix > m ? prefix : m;
    llama_token *toks = xmalloc(sizeof(llama_token) * (size_t)n);
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < prefix; i++)
        toks[i] = random_token(c->n_vocab);
    fill_batch(&b, toks, prefix, 0, false);
    decode_or_die(ctx, b, "the verify prefix");
    llama_synchronize(ctx);
    for (int i = 0; i < m; i++)
        toks[i] = random_token(c->n_vocab);
    fill_batch(&b, toks, m, prefix, true);
    double t0 = now_s();
    decode_or_die(ctx, b, "the verify batch");
    llama_synchronize(ctx);
    double t = now_s() - t0;
    llama_batch_free(b);
    free(toks);
    llama_free(ctx);
    return t;
}

static int mode_bench(int argc, char **argv)
{
    const char *model_path = NULL, *verify = NULL, *fa_arg = "auto", *kv_arg = "f16";
    long pp = 512, tg = 128, reps = 3, threads = default_threads(), prefix = 16, n_batch = 2048;
    bool pp_set = false, tg_set = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        bool has = i + 1 < argc;
        if (!strcmp(a, "--pp") && has)
            pp = parse_long(argv[++i], "--pp", 0, 1 << 20), pp_set = true;
        else if (!strcmp(a, "--tg") && has)
            tg = parse_long(argv[++i], "--tg", 0, 1 << 20), tg_set = true;
        else if (!strcmp(a, "-r") && has)
            reps = parse_long(argv[++i], "-r", 1, 1000);
        else if (!strcmp(a, "-t") && has)
            threads = parse_long(argv[++i], "-t", 1, 1024);
        else if (!strcmp(a, "-b") && has)
            n_batch = parse_long(argv[++i], "-b", 1, 1 << 20);
        else if (!strcmp(a, "--verify") && has)
            verify = argv[++i];
        else if (!strcmp(a, "--prefix") && has)
            prefix = parse_long(argv[++i], "--prefix", 1, 1 << 20);
        else if (!strcmp(a, "--fa") && has)
            fa_arg = argv[++i];
        else if (!strcmp(a, "--kv") && has)
            kv_arg = argv[++i];
        else if (!model_path && a[0] != '-')
            model_path = a;
        else
            die("bench: unexpected argument '%s'", a);
    }
    if (!model_path)
        die("usage: bench MODEL [--pp 512] [--tg 128] [-r 3] [-t N] [-b 2048] [--fa auto|on|off] [--kv f16|f32|bf16|q8_0]\n"
            "                   [--verify 1,2,4,8,16 [--prefix 16]]");
    /* --verify alone times only the verify batches unless --pp/--tg were asked for too */
    if (verify && !pp_set)
        pp = 0;
    if (verify && !tg_set)
        tg = 0;
    enum llama_flash_attn_type fa;
    if (!strcmp(fa_arg, "auto") || !strcmp(fa_arg, "-1"))
        fa = LLAMA_FLASH_ATTN_TYPE_AUTO;
    else if (!strcmp(fa_arg, "on") || !strcmp(fa_arg, "1"))
        fa = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    else if (!strcmp(fa_arg, "off") || !strcmp(fa_arg, "0"))
        fa = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    else
        die("bad --fa '%s' (auto, on or off)", fa_arg);
    enum ggml_type kv;
    if (!strcmp(kv_arg, "f16"))
        kv = GGML_TYPE_F16;
    else if (!strcmp(kv_arg, "f32"))
        kv = GGML_TYPE_F32;
    else if (!strcmp(kv_arg, "bf16"))
        kv = GGML_TYPE_BF16;
    else if (!strcmp(kv_arg, "q8_0"))
        kv = GGML_TYPE_Q8_0;
    else
        die("bad --kv '%s' (f16, f32, bf16 or q8_0)", kv_arg);

    /* parse the verify list before the (slow) model load */
    int n_m = 0, ms[64];
    if (verify) {
        char *copy = strdup(verify), *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            if (n_m == 64)
                die("--verify: at most 64 sizes");
            ms[n_m++] = (int)parse_long(t, "--verify size", 1, 1 << 16);
        }
        free(copy);
        if (!n_m)
            die("--verify needs a list of batch sizes, e.g. 1,2,4,8,16");
    }

    oracle_init();
    struct bench_cfg c = {.model = load_model(model_path, false), .threads = (int)threads, .fa = fa, .kv = kv,
                          .n_batch = (uint32_t)n_batch};
    c.n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(c.model));
    char desc[256];
    llama_model_desc(c.model, desc, sizeof(desc));
    printf("# %s | %.2f MiB | %.2f M params | CPU | threads %ld | n_batch %ld | fa %s | kv %s | reps %ld\n", desc,
           (double)llama_model_size(c.model) / (1024.0 * 1024.0),
           (double)llama_model_n_params(c.model) / 1e6, threads, n_batch, fa_arg, kv_arg, reps);
    fflush(stdout);

    double *v = xmalloc(sizeof(double) * (size_t)reps);
    double mean, sd;
    if (pp > 0) {
        run_pp(&c, (int)pp); /* warm-up */
        for (long r = 0; r < reps; r++)
            v[r] = (double)pp / run_pp(&c, (int)pp);
        mean_sd(v, (int)reps, &mean, &sd);
        printf("pp%ld %.2f t/s ± %.2f\n", pp, mean, sd);
        fflush(stdout);
    }
    if (tg > 0) {
        run_tg(&c, tg < 8 ? (int)tg : 8); /* warm-up */
        for (long r = 0; r < reps; r++)
            v[r] = (double)tg / run_tg(&c, (int)tg);
        mean_sd(v, (int)reps, &mean, &sd);
        printf("tg%ld %.2f t/s ± %.2f\n", tg, mean, sd);
        fflush(stdout);
    }
    for (int k = 0; k < n_m; k++) {
        run_verify(&c, (int)prefix, ms[k]); /* warm-up */
        for (long r = 0; r < reps; r++)
            v[r] = 1e3 * run_verify(&c, (int)prefix, ms[k]);
        mean_sd(v, (int)reps, &mean, &sd);
        printf("verify%d %.2f ms ± %.2f (prefix %ld, %.2f t/s)\n", ms[k], mean, sd, prefix, 1e3 * ms[k] / mean);
        fflush(stdout);
    }
    free(v);
    llama_model_free(c.model);
    return 0;
}

/* ---------------------------------------------------------------- main */

static void usage(void)
{
    fputs("usage: llama_oracle [-v] MODE ARGS...\n"
          "  tok MODEL (-p TEXT | -f FILE) [--special] [--time]\n"
          "  tokbatch MODEL IN.bin OUT.txt [--special]\n"
          "  detok MODEL ID...\n"
          "  vocabtest VOCAB.gguf\n"
          "  eval MODEL (-p TEXT | --ids \"1 2 3\" | --ids-file F) [-n NGEN] [-o OUT.bin] [-t N] [-c CTX] [--special]\n"
          "  quantize IN.gguf OUT.gguf TYPE   (q8_0 q4_0 q4_1 q5_0 q5_1 q4_k_s q4_k_m q5_k_s q5_k_m q6_k q3_k_s q3_k_m q3_k_l q2_k iq4_xs f16 bf16 f32)\n"
          "  dequant MODEL.gguf TENSOR OUT.bin\n"
          "  bench MODEL [--pp 512] [--tg 128] [-r 3] [-t N] [--verify 1,2,4,8,16]\n"
          "env: LLAMA_VERBOSE=1 (= -v), LLAMA_CPU_VARIANT=zen4|icelake|haswell|x64|... forces one CPU backend\n",
          stderr);
}

int main(int argc, char **argv)
{
    const char *ev = getenv("LLAMA_VERBOSE");
    g_verbose = ev && *ev && strcmp(ev, "0") != 0;
    /* drop -v / --verbose wherever it appears, except as the value of an option (-p -v) */
    static const char *const k_value_opts[] = {"-p", "-f", "--ids", "--ids-file", "-o", "-n", "-t", "-c",
                                               "-r", "-b", "--pp", "--tg", "--verify", "--prefix", "--fa",
                                               "--kv"};
    int n = 0;
    for (int i = 0; i < argc; i++) {
        bool is_value = false;
        for (size_t k = 0; i > 0 && k < sizeof(k_value_opts) / sizeof(k_value_opts[0]); k++)
            is_value |= !strcmp(argv[i - 1], k_value_opts[k]);
        if (i > 0 && !is_value && (!strcmp(argv[i], "-v") || !strcmp(argv[i], "--verbose")))
            g_verbose = true;
        else
            argv[n++] = argv[i];
    }
    argc = n;
    if (argc < 2) {
        usage();
        return 1;
    }
    const char *mode = argv[1];
    int rest_c = argc - 2;
    char **rest = argv + 2;
    if (!strcmp(mode, "tok"))
        return mode_tok(rest_c, rest);
    if (!strcmp(mode, "tokbatch"))
        return mode_tokbatch(rest_c, rest);
    if (!strcmp(mode, "detok"))
        return mode_detok(rest_c, rest);
    if (!strcmp(mode, "vocabtest"))
        return mode_vocabtest(rest_c, rest);
    if (!strcmp(mode, "eval"))
        return mode_eval(rest_c, rest);
    if (!strcmp(mode, "quantize"))
        return mode_quantize(rest_c, rest);
    if (!strcmp(mode, "dequant"))
        return mode_dequant(rest_c, rest);
    if (!strcmp(mode, "bench"))
        return mode_bench(rest_c, rest);
    if (!strcmp(mode, "-h") || !strcmp(mode, "--help") || !strcmp(mode, "help")) {
        usage();
        return 0;
    }
    fprintf(stderr, "llama_oracle: unknown mode '%s'\n", mode);
    usage();
    return 1;
}
