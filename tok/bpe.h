/* tok/bpe.h — internal to tok/: pre-tokenizer (PCRE2) and byte-level BPE merges.
 *
 * A bpe_model owns the symbol table (every vocab string, plus the merge operands and results that
 * are not vocab strings: "virtual" symbols with ids >= n_vocab), the merge table (pair -> rank,
 * result) and the compiled pre-tokenizer regex. It is immutable once built.
 * A bpe_session holds the per-call scratch (PCRE2 match data, buffers, a piece -> ids cache), so
 * several threads tokenize with one model, each with its own session. */
#ifndef AR_TOK_BPE_H
#define AR_TOK_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "format/gguf.h"

typedef struct bpe_model bpe_model;
typedef struct bpe_session bpe_session;

/* Growable id list. */
typedef struct bpe_ids { int32_t *ids; size_t n, cap; } bpe_ids;
int bpe_ids_push(bpe_ids *o, int32_t id);

/* tokens[0..n_vocab) are the vocab strings (non-empty), merges the "left right" strings (rank = index),
 * pre the pre-tokenizer name (tokenizer.ggml.pre). */
int  bpe_model_create(bpe_model **out, const gguf_str *tokens, int32_t n_vocab, const gguf_str *merges,
                      size_t n_merges, gguf_str pre, ar_error *err);
void bpe_model_free(bpe_model *m);
int32_t bpe_find(const bpe_model *m, const char *s, size_t len);   /* vocab id of a string, -1 if none */
const char *bpe_text(const bpe_model *m, int32_t id, size_t *len);  /* vocab string of an id */
const char *bpe_pre_name(const bpe_model *m);
extern const char bpe_supported_pre[];                              /* "qwen35, qwen2, ..." for messages */

bpe_session *bpe_session_create(const bpe_model *m);
void bpe_session_free(bpe_session *s);
/* Pre-tokenize and BPE-encode one text fragment (no special tokens in it), appending ids to out. */
int bpe_encode(bpe_session *s, const char *text, size_t len, bpe_ids *out, ar_error *err);

/* Byte-level decoding of a vocab string (GPT-2 byte <- unicode map), as llama.cpp's llama_decode_text:
 * a character outside the map becomes "[UNK_BYTE_0x<hex>" + text + "]". Returns the byte count and
 * writes min(count, cap) bytes. */
size_t bpe_decode_text(const char *text, size_t len, char *out, size_t cap);

#endif
