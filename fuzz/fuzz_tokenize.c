/* fuzz/fuzz_tokenize.c — libFuzzer target for the tokenizer (tok/vocab.c, tok/bpe.c) on the real Qwen3.5
 * vocabulary (built by scripts/fuzz.sh; the vocab GGUF is $ARBOR_FUZZ_VOCAB, by default the test fixture
 * build/fixtures/vocab-qwen35.gguf).
 *
 * Input: one flags byte, then bytes. Flags bit 1 set: the bytes are token ids (3 bytes each, little endian,
 * modulo the vocabulary), any sequence a model can emit, and the streaming detokenizer must write valid UTF-8
 * for them. Otherwise (bit 0: parse special tokens) the bytes are a prompt text, and the target aborts when
 * the tokenizer breaks what the engine relies on:
 *   - an id out of the vocabulary;
 *   - for an input that is valid UTF-8: the tokens' bytes (ar_token_to_bytes, specials as text) joined,
 *     or what the streaming detokenizer (ar_detok_push, one id at a time, then flush) writes, are not the
 *     input (byte-level BPE loses nothing). Invalid UTF-8 is read as llama.cpp reads it, which is not
 *     byte for byte (an overlong "\xc0\xaf" becomes "/"; tests/test_tok_oracle.c holds the ids to it);
 *   - the streaming detokenizer writes invalid UTF-8, whatever the input.
 * ASan/UBSan (and LeakSanitizer at exit) see the rest. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "format/gguf.h"
#include "server/json.h"
#include "tok/vocab.h"

static ar_vocab *V;
static char *piece;   /* one token's bytes / one detokenizer write */
static size_t piece_cap;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *path = getenv("ARBOR_FUZZ_VOCAB");
    if (!path || !*path) path = "build/fixtures/vocab-qwen35.gguf";
    gguf_file *f = NULL;
    ar_error err;
    if (gguf_open(&f, path, &err) || ar_vocab_load(&V, f, &err)) {
        fprintf(stderr, "fuzz_tokenize: %s: %s (set ARBOR_FUZZ_VOCAB to a qwen35 vocab GGUF)\n", path, err.msg);
        exit(2);
    }
    gguf_close(f);
    piece_cap = 3 * ar_vocab_max_piece(V) + 16;
    piece = malloc(piece_cap);
    if (!piece) abort();
    return 0;
}

static bool valid_utf8(const char *s, size_t n) { return utf8_valid_prefix(s, n) == n; }

/* out (grown as needed) += b[0..n) */
static void put(char **out, size_t *len, size_t *cap, const char *b, size_t n)
{
    if (!n) return;
    if (*len + n > *cap) {
        *cap = 2 * (*len + n) + 64;
        *out = realloc(*out, *cap);
        if (!*out) abort();
    }
    memcpy(*out + *len, b, n);
    *len += n;
}

/* ids (3 bytes each) -> the streaming detokenizer, specials as text or not (bit 2): valid UTF-8 */
static void detok_ids(const uint8_t *b, size_t n, bool special)
{
    const int32_t nv = ar_vocab_size(V);
    char *out = NULL;
    size_t ol = 0, oc = 0;
    ar_detok d = { 0 };
    for (size_t i = 0; i + 3 <= n; i += 3) {
        const int32_t id = (int32_t)((b[i] | (uint32_t)b[i + 1] << 8 | (uint32_t)b[i + 2] << 16) % (uint32_t)nv);
        const size_t w = ar_detok_push(&d, V, id, special, piece, piece_cap);
        if (w > piece_cap) abort();
        put(&out, &ol, &oc, piece, w);
    }
    put(&out, &ol, &oc, piece, ar_detok_flush(&d, piece, piece_cap));
    if (!valid_utf8(out, ol)) abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (data[0] & 2) {
        detok_ids(data + 1, size - 1, data[0] & 4);
        return 0;
    }
    const bool special = data[0] & 1;
    const char *text = (const char *)data + 1;
    const size_t n = size - 1;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    ar_error err;
    if (ar_tokenize(V, text, n, special, &ids, &n_ids, &err)) abort();   /* any bytes tokenize */
    const int32_t nv = ar_vocab_size(V);
    char *joined = NULL, *streamed = NULL;
    size_t jl = 0, jc = 0, sl = 0, sc = 0;
    ar_detok d = { 0 };
    for (size_t i = 0; i < n_ids; i++) {
        if (ids[i] < 0 || ids[i] >= nv) abort();
        const size_t b = ar_token_to_bytes(V, ids[i], true, piece, piece_cap);
        if (b > piece_cap) abort();
        put(&joined, &jl, &jc, piece, b);
        const size_t w = ar_detok_push(&d, V, ids[i], true, piece, piece_cap);
        if (w > piece_cap) abort();
        put(&streamed, &sl, &sc, piece, w);
    }
    const size_t w = ar_detok_flush(&d, piece, piece_cap);
    put(&streamed, &sl, &sc, piece, w);
    if (!valid_utf8(streamed, sl)) abort();
    if (valid_utf8(text, n)) {
        if (jl != n || (n && memcmp(joined, text, n))) abort();
        if (sl != n || (n && memcmp(streamed, text, n))) abort();
    }
    free(joined);
    free(streamed);
    free(ids);
    return 0;
}
