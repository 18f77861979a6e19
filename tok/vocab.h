/* tok/vocab.h — the tokenizer: vocabulary from GGUF metadata, text -> ids, ids -> bytes.
 *
 * Byte-level BPE as llama.cpp runs it for `tokenizer.ggml.model = gpt2` with the qwen35 / qwen2
 * pre-tokenizers (spec qwen35.md §5): special-token partition, pre-tokenizer regex, GPT-2 byte
 * encoding, merges by rank. The ids match llama.cpp's llama_tokenize(add_special = false) exactly,
 * including for invalid UTF-8 input (tests/test_tok_oracle.c checks it against llama.cpp).
 *
 * An ar_vocab is immutable after ar_vocab_load and may be used from several threads at once.
 * It copies what it needs from the GGUF, so the gguf_file may be closed afterwards. */
#ifndef AR_TOK_VOCAB_H
#define AR_TOK_VOCAB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "format/gguf.h"

typedef struct ar_vocab ar_vocab;

/* Token types of `tokenizer.ggml.token_type` (gguf-py TokenType). */
enum ar_token_type {
    AR_TOKEN_UNDEFINED = 0, AR_TOKEN_NORMAL = 1, AR_TOKEN_UNKNOWN = 2, AR_TOKEN_CONTROL = 3,
    AR_TOKEN_USER_DEFINED = 4, AR_TOKEN_UNUSED = 5, AR_TOKEN_BYTE = 6,
};

int  ar_vocab_load(ar_vocab **out, const gguf_file *f, ar_error *err);
void ar_vocab_free(ar_vocab *v);
int32_t ar_vocab_size(const ar_vocab *v);

/* Tokenize text (len bytes, need not be NUL-terminated). parse_special: also match CONTROL token texts
 * (<|im_start|> ...); USER_DEFINED tokens (<think>, <tool_call> ...) always match. *ids is malloc'd
 * (NULL when there are no tokens). No BOS/EOS is added: see ar_vocab_add_bos. */
int ar_tokenize(const ar_vocab *v, const char *text, size_t len, bool parse_special,
                int32_t **ids, size_t *n_ids, ar_error *err);

/* Bytes of one token after byte-level decoding; CONTROL (and UNKNOWN) tokens yield their text only when
 * special is true, UNUSED tokens yield nothing. Returns the token's full byte count (like snprintf) and
 * writes min(that, cap) bytes. An id out of range yields 0. */
size_t ar_token_to_bytes(const ar_vocab *v, int32_t id, bool special, char *out, size_t cap);
const char *ar_token_text(const ar_vocab *v, int32_t id, size_t *len);  /* raw vocab string; NULL if out of range */
int32_t ar_token_find(const ar_vocab *v, const char *text);              /* exact text -> id, -1 if none */
enum ar_token_type ar_token_type(const ar_vocab *v, int32_t id);        /* as stored in the GGUF */
/* End of generation, as llama.cpp decides it: eos, eot, eom, and every token whose text is one of
 * llama.cpp's end markers (<|im_end|>, <|endoftext|>, ...) plus the FIM pad/repo/file-sep tokens. */
bool ar_token_is_eog(const ar_vocab *v, int32_t id);
int32_t ar_vocab_eos(const ar_vocab *v);  int32_t ar_vocab_bos(const ar_vocab *v); /* -1 if none */
int32_t ar_vocab_eot(const ar_vocab *v);  int32_t ar_vocab_pad(const ar_vocab *v); /* -1 if none */
bool ar_vocab_add_bos(const ar_vocab *v);
bool ar_vocab_add_eos(const ar_vocab *v);
const char *ar_vocab_pre(const ar_vocab *v);      /* pre-tokenizer name, e.g. "qwen35" */
size_t ar_vocab_max_piece(const ar_vocab *v);     /* longest ar_token_to_bytes result (special = true) */

/* Streaming detokenizer: never emits half a UTF-8 character; an invalid sequence becomes U+FFFD
 * (one per maximal invalid subpart, as the Unicode standard recommends). Zero-initialise it
 * (ar_detok d = {0}). Each call writes at most cap bytes and returns the count written; a cap of
 * 3 * ar_vocab_max_piece(v) + 16 is always enough for push, 16 for flush. */
typedef struct ar_detok { unsigned char pend[8]; int n; } ar_detok;
size_t ar_detok_push(ar_detok *d, const ar_vocab *v, int32_t id, bool special, char *out, size_t cap);
/* Raw bytes version of push (for text that did not come from a token). */
size_t ar_detok_push_bytes(ar_detok *d, const char *bytes, size_t len, char *out, size_t cap);
size_t ar_detok_flush(ar_detok *d, char *out, size_t cap);

#endif
