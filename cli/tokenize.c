/* cli/tokenize.c — `arbor tokenize`: print the token ids of a text (or a file) for a model's vocabulary.
 * Loads only the GGUF metadata (the reader maps the file; no tensor is touched). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/timer.h"
#include "cli/cli.h"
#include "format/gguf.h"
#include "tok/vocab.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: arbor tokenize -m MODEL [--special] [-v] [--time] (TEXT | -f FILE)\n"
            "  prints the token ids, space-separated (no BOS is added)\n"
            "  --special  also match control-token texts such as <|im_start|> (chat prompts)\n"
            "  -v         one line per token: id and its piece (escaped)\n"
            "  --time     print the tokenization time (without loading) to stderr\n");
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + n, 1, cap - n, f)) > 0;) {
        n += got;
        if (n == cap) {
            char *b = realloc(buf, cap *= 2);
            if (!b) { free(buf); buf = NULL; }
            buf = b;
        }
    }
    if (ferror(f)) { free(buf); buf = NULL; }
    fclose(f);
    *len = n;
    return buf;
}

/* Piece bytes as readable text: valid UTF-8 as is, control and invalid bytes as escapes. */
static void print_escaped(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        if (c == '\\' || c == '\'') { printf("\\%c", c); i++; continue; }
        if (c == '\n') { fputs("\\n", stdout); i++; continue; }
        if (c == '\t') { fputs("\\t", stdout); i++; continue; }
        if (c == '\r') { fputs("\\r", stdout); i++; continue; }
        if (c >= 0x20 && c < 0x7f) { putchar(c); i++; continue; }
        int len = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
        bool ok = len > 0 && i + (size_t)len <= n;
        for (int k = 1; ok && k < len; k++) ok = (p[i + (size_t)k] & 0xc0) == 0x80;
        if (ok && len == 3) ok = !(c == 0xe0 && p[i + 1] < 0xa0) && !(c == 0xed && p[i + 1] > 0x9f);
        if (ok && len == 4) ok = !(c == 0xf0 && p[i + 1] < 0x90) && !(c == 0xf4 && p[i + 1] > 0x8f);
        if (ok) { fwrite(p + i, 1, (size_t)len, stdout); i += (size_t)len; continue; }
        printf("\\x%02x", c);
        i++;
    }
}

int cmd_tokenize(int argc, char **argv)
{
    const char *model = NULL, *file = NULL, *text = NULL;
    bool special = false, verbose = false, timing = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (++i >= argc) return cli_fail("%s needs a path", a); model = argv[i]; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { if (++i >= argc) return cli_fail("%s needs a path", a); file = argv[i]; }
        else if (!strcmp(a, "--special")) special = true;
        else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) verbose = true;
        else if (!strcmp(a, "--time")) timing = true;
        else if (a[0] == '-' && a[1]) { usage(stderr); return cli_fail("tokenize: unknown option '%s'", a); }
        else if (!text) text = a;
        else return cli_fail("tokenize: one TEXT only (quote it), or -f FILE");
    }
    if (!model) { usage(stderr); return cli_fail("tokenize: -m MODEL is required"); }
    if (!text == !file) { usage(stderr); return cli_fail("tokenize: give either TEXT or -f FILE"); }

    size_t len = 0;
    char *buf = NULL;
    if (file) {
        if (!(buf = read_file(file, &len))) return cli_fail("cannot read '%s': %s", file, strerror(errno));
        text = buf;
    } else {
        len = strlen(text);
    }
    ar_error err;
    gguf_file *f = NULL;
    ar_vocab *v = NULL;
    if (gguf_open(&f, model, &err) || ar_vocab_load(&v, f, &err)) {
        gguf_close(f);
        free(buf);
        return cli_fail("%s", err.msg);
    }
    gguf_close(f);

    int32_t *ids = NULL;
    size_t n = 0;
    double t0 = ar_now();
    int rc = ar_tokenize(v, text, len, special, &ids, &n, &err);
    double dt = ar_now() - t0;
    if (rc) { ar_vocab_free(v); free(buf); return cli_fail("%s", err.msg); }
    if (timing)
        fprintf(stderr, "arbor: %zu tokens from %zu bytes in %.3f ms (%.2f MB/s)\n", n, len, dt * 1e3,
                dt > 0 ? (double)len / dt / 1e6 : 0.0);
    if (verbose) {
        size_t cap = ar_vocab_max_piece(v) + 1;
        char *p = malloc(cap);
        for (size_t i = 0; p && i < n; i++) {
            size_t k = ar_token_to_bytes(v, ids[i], true, p, cap);
            printf("%d '", ids[i]);
            print_escaped((const unsigned char *)p, k);
            fputs("'\n", stdout);
        }
        free(p);
    } else {
        for (size_t i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(ids);
    ar_vocab_free(v);
    free(buf);
    return fflush(stdout) ? 1 : 0;
}
