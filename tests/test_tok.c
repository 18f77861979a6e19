/* tests/test_tok.c — tokenizer unit tests: llama.cpp's qwen35 vocab vectors, special tokens,
 * invalid UTF-8, detokenization round trips, the streaming detokenizer, load errors, and BPE details
 * (merge order, merges whose result is not a token) on tiny synthetic vocabularies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "format/gguf.h"
#include "tests/test.h"
#include "tok/vocab.h"

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) { free(b); b = NULL; }
    fclose(f);
    if (b) b[n] = 0;
    *len = (size_t)n;
    return b;
}

static void escape(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 8 < cap; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\') out[o++] = (char)c;
        else o += (size_t)snprintf(out + o, cap - o, "\\x%02x", c);
    }
    out[o] = 0;
}

static void ids_str(const int32_t *ids, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    out[0] = 0;
    for (size_t i = 0; i < n && o + 16 < cap; i++) o += (size_t)snprintf(out + o, cap - o, i ? " %d" : "%d", ids[i]);
}

static size_t tok(const ar_vocab *v, const char *s, size_t len, bool special, int32_t **ids)
{
    size_t n = 0;
    ar_error err;
    int rc = ar_tokenize(v, s, len, special, ids, &n, &err);
    CHECK(rc == 0, "ar_tokenize failed: %s", err.msg);
    return n;
}

static bool same_ids(const ar_vocab *v, const char *a, size_t la, const char *b, size_t lb)
{
    int32_t *x, *y;
    size_t nx = tok(v, a, la, false, &x), ny = tok(v, b, lb, false, &y);
    bool eq = nx == ny && (nx == 0 || !memcmp(x, y, nx * sizeof *x));
    free(x);
    free(y);
    return eq;
}

/* Detokenize ids with the streaming detokenizer; also checks every push emits whole UTF-8 characters. */
static size_t detok_all(const ar_vocab *v, const int32_t *ids, size_t n, bool special, char *out, size_t cap,
                        bool *split_char)
{
    ar_detok d = { 0 };
    size_t o = 0, piece_cap = 3 * ar_vocab_max_piece(v) + 16;
    char *buf = malloc(piece_cap);
    *split_char = false;
    for (size_t i = 0; i < n; i++) {
        size_t k = ar_detok_push(&d, v, ids[i], special, buf, piece_cap);
        /* a chunk never ends inside a character */
        for (size_t j = 0; j < k;) {
            unsigned char c = (unsigned char)buf[j];
            size_t len = c < 0x80 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : 4;
            if (j + len > k) { *split_char = true; break; }
            j += len;
        }
        if (o + k <= cap) memcpy(out + o, buf, k);
        o += k;
    }
    o += ar_detok_flush(&d, out + o, cap > o ? cap - o : 0);
    free(buf);
    return o;
}

static void test_vectors(const ar_vocab *v, const char *inp_path, const char *out_path)
{
    size_t ni, no;
    char *inp = slurp(inp_path, &ni), *outs = slurp(out_path, &no);
    CHECK(inp && outs, "cannot read %s / %s", inp_path, out_path);
    if (!inp || !outs) { free(inp); free(outs); return; }
    const char *sep = "\n__ggml_vocab_test__\n";
    size_t seplen = strlen(sep), pos = 0, n_cases = 0, n_ok = 0, n_roundtrip = 0;
    char *line = outs;
    while (pos < ni) {
        char *next = memmem(inp + pos, ni - pos, sep, seplen);
        size_t len = next ? (size_t)(next - (inp + pos)) : ni - pos;
        const char *text = inp + pos;
        pos += len + (next ? seplen : 0);
        /* expected ids: one line of .out */
        char *eol = line ? strchr(line, '\n') : NULL;
        if (eol) *eol = 0;
        int32_t want[4096];
        size_t nw = 0;
        for (char *p = line ? line : (char *)"", *e; *p && nw < 4096; p = e) {
            long id = strtol(p, &e, 10);
            if (e == p) break;
            want[nw++] = (int32_t)id;
        }
        int32_t *got;
        size_t ng = tok(v, text, len, false, &got);
        bool ok = ng == nw && (nw == 0 || !memcmp(got, want, nw * sizeof *got));
        char esc[512], gs[1024], ws[1024];
        escape(text, len, esc, sizeof esc);
        ids_str(got, ng, gs, sizeof gs);
        ids_str(want, nw, ws, sizeof ws);
        CHECK(ok, "vector %zu '%s': got [%s] want [%s]", n_cases, esc, gs, ws);
        n_ok += ok;
        /* detokenize(tokenize(x)) == x (these inputs are valid UTF-8) */
        char back[8192];
        bool split;
        size_t nb = detok_all(v, got, ng, false, back, sizeof back, &split);
        bool rt = nb == len && !memcmp(back, text, len) && !split;
        CHECK(rt, "vector %zu '%s': detokenize(tokenize(x)) != x", n_cases, esc);
        n_roundtrip += rt;
        free(got);
        n_cases++;
        line = eol ? eol + 1 : NULL;
    }
    CHECK(n_cases == 50, "expected 50 vectors in %s, found %zu", inp_path, n_cases);
    printf("ok vocab vectors: %zu/%zu passed, %zu round trips\n", n_ok, n_cases, n_roundtrip);
    free(inp);
    free(outs);
}

static void test_special(const ar_vocab *v)
{
    int32_t ims = ar_token_find(v, "<|im_start|>"), ime = ar_token_find(v, "<|im_end|>");
    int32_t eot = ar_token_find(v, "<|endoftext|>"), pad = ar_token_find(v, "[PAD151700]");
    CHECK(ims == 151644 && ime == 151645 && eot == 151643, "special ids %d %d %d", ims, ime, eot);
    CHECK(ar_token_find(v, "no such token \x01") == -1, "find of a missing text");
    CHECK(ar_token_type(v, ims) == AR_TOKEN_CONTROL, "<|im_start|> is CONTROL");
    CHECK(ar_token_is_eog(v, ime) && ar_token_is_eog(v, eot) && !ar_token_is_eog(v, ims), "EOG set");
    CHECK(ar_vocab_eos(v) == 151643 && !ar_vocab_add_bos(v), "eos %d add_bos %d", ar_vocab_eos(v), ar_vocab_add_bos(v));
    CHECK(!strcmp(ar_vocab_pre(v), "qwen35"), "pre %s", ar_vocab_pre(v));

    const char *chat = "<|im_start|>user\nhi<|im_end|>";
    int32_t *ids;
    size_t n = tok(v, chat, strlen(chat), true, &ids);
    int32_t want[] = { 151644, 872, 198, 6023, 151645 };
    CHECK(n == 5 && !memcmp(ids, want, sizeof want), "chat with parse_special: %zu ids", n);
    free(ids);
    n = tok(v, chat, strlen(chat), false, &ids);
    bool none = n > 5;
    for (size_t i = 0; i < n; i++) none = none && ids[i] != ims && ids[i] != ime;
    CHECK(none, "chat without parse_special must not produce control ids (%zu ids)", n);
    char back[256];
    bool split;
    size_t nb = detok_all(v, ids, n, false, back, sizeof back, &split);
    CHECK(nb == strlen(chat) && !memcmp(back, chat, nb), "control text round trip without parse_special");
    free(ids);

    /* USER_DEFINED tokens ([PAD...] in this vocab) always match, also inside words */
    const char *ud = "a[PAD151700]b";
    n = tok(v, ud, strlen(ud), false, &ids);
    CHECK(n == 3 && ids[1] == pad, "user-defined token without parse_special: %zu ids", n);
    free(ids);
    /* longest first: [PAD151700] wins over any shorter special inside it; partial texts stay text */
    const char *partial = "<|im_start|<|im_end|";
    n = tok(v, partial, strlen(partial), true, &ids);
    none = true;
    for (size_t i = 0; i < n; i++) none = none && ids[i] < 151643;
    CHECK(none, "partial special texts are plain text");
    free(ids);

    /* detokenization of control tokens depends on `special` */
    char buf[64];
    CHECK(ar_token_to_bytes(v, ims, false, buf, sizeof buf) == 0, "control hidden without special");
    size_t k = ar_token_to_bytes(v, ims, true, buf, sizeof buf);
    CHECK(k == 12 && !memcmp(buf, "<|im_start|>", 12), "control shown with special");
    k = ar_token_to_bytes(v, pad, false, buf, sizeof buf);
    CHECK(k == 11 && !memcmp(buf, "[PAD151700]", 11), "user-defined shown as text");
    CHECK(ar_token_to_bytes(v, -1, true, buf, sizeof buf) == 0 && ar_token_to_bytes(v, 1 << 30, true, buf, 4) == 0,
          "out-of-range ids yield nothing");
    k = ar_token_to_bytes(v, 220, false, buf, 0);   /* " " (Ġ) */
    CHECK(k == 1, "token 220 is one byte, got %zu", k);
}

static void test_invalid_utf8(const ar_vocab *v)
{
    /* llama.cpp decodes an invalid byte to U+FFFD and accepts overlong forms */
    CHECK(same_ids(v, "\xff", 1, "\xef\xbf\xbd", 3), "0xFF tokenizes as U+FFFD");
    CHECK(same_ids(v, "\x80", 1, "\xef\xbf\xbd", 3), "lone continuation tokenizes as U+FFFD");
    CHECK(same_ids(v, "\xc0\x80", 2, "\x00", 1), "overlong C0 80 tokenizes as NUL");
    CHECK(same_ids(v, "a\xe4\xb8", 3, "a\xef\xbf\xbd\xef\xbf\xbd", 7), "truncated sequence: one U+FFFD per byte");
    /* above U+10FFFF (llama.cpp aborts here): each byte is invalid */
    CHECK(same_ids(v, "\xf5\x80\x80\x80", 4, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd", 12),
          "F5 80 80 80 tokenizes as four U+FFFD");
    int32_t *ids;
    size_t n = tok(v, "\xf4\x90\x80\x80 x", 6, false, &ids);
    CHECK(n > 0, "code point above U+10FFFF does not fail");
    free(ids);
    n = tok(v, "", 0, false, &ids);
    CHECK(n == 0 && ids == NULL, "empty text -> no ids");
    n = tok(v, "a\0b", 3, false, &ids);
    CHECK(n >= 2, "NUL inside text");
    free(ids);
}

static void test_detok(const ar_vocab *v)
{
    /* an emoji that spans several tokens is emitted whole, by the push that completes it */
    const char *texts[] = { "I \xf0\x9f\xa6\x99 llamas", "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7 family",
                            "\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd ok", "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c", "e\xcc\x81\xcc\xa7" };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        int32_t *ids;
        size_t n = tok(v, texts[t], strlen(texts[t]), false, &ids);
        char back[256];
        bool split;
        size_t nb = detok_all(v, ids, n, false, back, sizeof back, &split);
        CHECK(!split, "text %zu: a push split a UTF-8 character", t);
        CHECK(nb == strlen(texts[t]) && !memcmp(back, texts[t], nb), "text %zu: round trip", t);
        free(ids);
    }
    int32_t *ids;
    size_t n = tok(v, " \xf0\x9f\xa6\x99", 5, false, &ids);
    CHECK(n >= 3, "' llama-emoji' spans %zu tokens (want >= 3 to test streaming)", n);
    free(ids);

    /* invalid sequences become U+FFFD (one per maximal invalid subpart) */
    struct { const char *in; size_t len; const char *want; } cases[] = {
        { "\xff", 1, "\xef\xbf\xbd" },
        { "a\x80z", 3, "a\xef\xbf\xbdz" },
        { "\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd" },   /* surrogate: 3 subparts */
        { "\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd" },                   /* overlong */
        { "\xe4\xb8x", 3, "\xef\xbf\xbdx" },                             /* truncated, then ASCII */
        { "\xf0\x9f\x98", 3, "\xef\xbf\xbd" },                           /* truncated at the end: flush */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ar_detok d = { 0 };
        char out[64];
        size_t o = ar_detok_push_bytes(&d, cases[i].in, cases[i].len, out, sizeof out);
        o += ar_detok_flush(&d, out + o, sizeof out - o);
        CHECK(o == strlen(cases[i].want) && !memcmp(out, cases[i].want, o), "detok invalid case %zu (%zu bytes)", i, o);
    }
    /* a character split over pushes, one byte at a time */
    const char *smile = "\xf0\x9f\x98\x80!";
    ar_detok d = { 0 };
    char out[32];
    size_t o = 0;
    for (int i = 0; i < 5; i++) {
        size_t k = ar_detok_push_bytes(&d, smile + i, 1, out + o, sizeof out - o);
        CHECK(i < 3 ? k == 0 : k > 0, "byte %d of a split emoji emitted %zu bytes", i, k);
        o += k;
    }
    CHECK(o == 5 && !memcmp(out, smile, 5) && ar_detok_flush(&d, out, sizeof out) == 0, "split emoji reassembled");
}

/* ---- tiny synthetic vocabularies ---------------------------------------------------------------- */

static int write_vocab_types(const char *path, const char *pre, const char *model, const char *const *toks, int nt,
                             const char *const *merges, int nm, const int32_t *types)
{
    gguf_writer *w = gguf_writer_create();
    gguf_str ts[64], ms[64];
    for (int i = 0; i < nt; i++) ts[i] = (gguf_str){ strlen(toks[i]), toks[i] };
    for (int i = 0; i < nm; i++) ms[i] = (gguf_str){ strlen(merges[i]), merges[i] };
    gguf_set_str(w, "general.architecture", "qwen35");
    gguf_set_str(w, "tokenizer.ggml.model", model);
    if (pre) gguf_set_str(w, "tokenizer.ggml.pre", pre);
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", ts, (uint64_t)nt);
    gguf_set_arr_str(w, "tokenizer.ggml.merges", ms, (uint64_t)nm);
    if (types) gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, types, (uint64_t)nt);
    ar_error err;
    int rc = gguf_writer_write(w, path, &err);
    gguf_writer_free(w);
    return rc;
}

static int write_vocab(const char *path, const char *pre, const char *model, const char *const *toks, int nt,
                       const char *const *merges, int nm)
{
    return write_vocab_types(path, pre, model, toks, nt, merges, nm, NULL);
}

static int load_tiny(const char *path, ar_vocab **v, ar_error *err)
{
    gguf_file *f;
    int rc = gguf_open(&f, path, err);
    if (rc) return rc;
    rc = ar_vocab_load(v, f, err);
    gguf_close(f);
    return rc;
}

static void test_tiny(void)
{
    char path[] = "/tmp/arbor-test-tok-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0, "mkstemp");
    if (fd < 0) return;
    close(fd);
    /* merges: "a b" (rank 0), "ab c" (1), "c a" (2), "x y" -> "xy" is not a token (virtual), "xy z" -> "xyz" */
    const char *toks[] = { "a", "b", "c", "ab", "abc", "ca", "x", "y", "z", "xyz", "\xc4\xa0", "\xc4\xa0" "a", "aa" };
    const char *merges[] = { "a b", "ab c", "c a", "x y", "xy z", "\xc4\xa0 a", "a a" };
    CHECK(write_vocab(path, "qwen35", "gpt2", toks, 13, merges, 7) == 0, "write tiny vocab");
    ar_vocab *v = NULL;
    ar_error err;
    CHECK(load_tiny(path, &v, &err) == 0, "load tiny vocab: %s", err.msg);
    if (v) {
        struct { const char *in; int32_t want[8]; size_t n; } cases[] = {
            { "abc", { 4 }, 1 },
            { "abcab", { 4, 3 }, 2 },              /* a b merges first everywhere, then ab c */
            { "cab", { 2, 3 }, 2 },                /* "a b" (rank 0) beats "c a" (rank 2); then c+ab has no merge */
            { "xyz", { 9 }, 1 },                   /* through the virtual symbol "xy" */
            { "xy", { 6, 7 }, 2 },                 /* "xy" is not a token: falls back to its bytes */
            { " a", { 11 }, 1 },
            { "q", { 0 }, 0 },                     /* no token for "q": dropped, as llama.cpp does */
            { "aaa", { 12, 0 }, 2 },               /* equal ranks: leftmost first */
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            int32_t *ids;
            size_t n = tok(v, cases[i].in, strlen(cases[i].in), false, &ids);
            char gs[128], ws[128];
            ids_str(ids, n, gs, sizeof gs);
            ids_str(cases[i].want, cases[i].n, ws, sizeof ws);
            CHECK(n == cases[i].n && (n == 0 || !memcmp(ids, cases[i].want, n * sizeof *ids)),
                  "tiny '%s': got [%s] want [%s]", cases[i].in, gs, ws);
            free(ids);
        }
        /* a long piece takes the heap path: 60 x "ab" + "c" -> 59 x ab, abc */
        char longw[200];
        for (int i = 0; i < 60; i++) memcpy(longw + 2 * i, "ab", 2);
        longw[120] = 'c';
        int32_t *ids;
        size_t n = tok(v, longw, 121, false, &ids);
        bool ok = n == 60 && ids[59] == 4;
        for (size_t i = 0; ok && i < 59; i++) ok = ids[i] == 3;
        CHECK(ok, "long piece (heap merge path): %zu ids", n);
        free(ids);
        memset(longw, 'a', 61);   /* equal ranks on the heap path: leftmost first -> 30 x aa, a */
        n = tok(v, longw, 61, false, &ids);
        ok = n == 31 && ids[30] == 0;
        for (size_t i = 0; ok && i < 30; i++) ok = ids[i] == 12;
        CHECK(ok, "long piece, equal ranks: %zu ids", n);
        free(ids);
        ar_vocab_free(v);
    }
    /* special tokens: longest text first, each found in what longer ones left (llama.cpp's order, not a
     * left-to-right longest match); CONTROL only with parse_special, USER_DEFINED always */
    const char *stoks[] = { "a", "<", "v", ">", "<u>", "u><v>", "<c>" };
    const int32_t stypes[] = { 1, 1, 1, 1, 4, 4, 3 };
    CHECK(write_vocab_types(path, "qwen35", "gpt2", stoks, 7, merges, 0, stypes) == 0, "write special vocab");
    CHECK(load_tiny(path, &v, &err) == 0, "load special vocab: %s", err.msg);
    if (v) {
        int32_t *ids;
        size_t n = tok(v, "<u><v>", 6, false, &ids);
        CHECK(n == 2 && ids[0] == 1 && ids[1] == 5, "overlapping specials: %zu ids, want '<' 'u><v>'", n);
        free(ids);
        n = tok(v, "a<c>a", 5, false, &ids);
        /* pieces "a" "<c" ">a"; 'c' has no token and is dropped */
        CHECK(n == 4 && ids[0] == 0 && ids[1] == 1 && ids[2] == 3 && ids[3] == 0, "control text without parse_special: %zu ids", n);
        free(ids);
        n = tok(v, "a<c>a", 5, true, &ids);
        CHECK(n == 3 && ids[1] == 6, "control text with parse_special: %zu ids", n);
        free(ids);
        CHECK(ar_token_type(v, 6) == AR_TOKEN_CONTROL && ar_token_type(v, 4) == AR_TOKEN_USER_DEFINED, "token types");
        ar_vocab_free(v);
        v = NULL;
    }
    /* qwen2 is supported; unknown pre-tokenizers and models fail with a clear message */
    CHECK(write_vocab(path, "qwen2", "gpt2", toks, 13, merges, 7) == 0 && load_tiny(path, &v, &err) == 0,
          "qwen2 pre-tokenizer loads");
    if (v) {
        /* qwen2: marks do not join letter runs; " \xcc\x81" is its own piece */
        CHECK(!strcmp(ar_vocab_pre(v), "qwen2"), "pre name %s", ar_vocab_pre(v));
        ar_vocab_free(v);
        v = NULL;
    }
    CHECK(write_vocab(path, "llama-bpe", "gpt2", toks, 13, merges, 7) == 0, "write");
    int rc = load_tiny(path, &v, &err);
    CHECK(rc == AR_EUNSUPPORTED && strstr(err.msg, "llama-bpe") && strstr(err.msg, "qwen35"),
          "unknown pre: rc %d '%s'", rc, err.msg);
    CHECK(write_vocab(path, "qwen35", "llama", toks, 13, merges, 7) == 0, "write");
    rc = load_tiny(path, &v, &err);
    CHECK(rc == AR_EUNSUPPORTED && strstr(err.msg, "gpt2"), "unknown model: rc %d '%s'", rc, err.msg);
    CHECK(write_vocab(path, NULL, "gpt2", toks, 13, merges, 7) == 0, "write");
    rc = load_tiny(path, &v, &err);
    CHECK(rc != 0 && strstr(err.msg, "tokenizer.ggml.pre"), "missing pre: rc %d '%s'", rc, err.msg);
    unlink(path);
}

int main(void)
{
    char vocab[1024], inp[1100], out[1100];
    snprintf(vocab, sizeof vocab, "%s/vocab-qwen35.gguf", test_fixtures());
    if (access(vocab, R_OK) != 0)   /* llama.cpp's own name, when ARBOR_FIXTURES points at its models/ */
        snprintf(vocab, sizeof vocab, "%s/ggml-vocab-qwen35.gguf", test_fixtures());
    snprintf(inp, sizeof inp, "%s.inp", vocab);
    snprintf(out, sizeof out, "%s.out", vocab);

    test_tiny();
    gguf_file *f = NULL;
    ar_vocab *v = NULL;
    ar_error err;
    int rc = gguf_open(&f, vocab, &err);
    CHECK(rc == 0, "fixture %s missing (run scripts/fixtures.sh or set ARBOR_FIXTURES): %s", vocab, err.msg);
    if (rc == 0) {
        rc = ar_vocab_load(&v, f, &err);
        CHECK(rc == 0, "load %s: %s", vocab, err.msg);
        gguf_close(f);
    }
    if (v) {
        test_vectors(v, inp, out);
        test_special(v);
        test_invalid_utf8(v);
        test_detok(v);
        ar_vocab_free(v);
    }
    TEST_END();
}
