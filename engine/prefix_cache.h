/* engine/prefix_cache.h — prefix cache for hybrid (attention + Gated DeltaNet) sequences.
 *
 * Attention KV can be reused at any position, but a GDN layer's state exists only at the positions
 * where it was kept, so the cache stores SNAPSHOTS (model/qwen35.h qwen35_snap) taken at positions the
 * engine chooses — message boundaries: the end of the system prompt, of each user or tool turn, of the
 * generated answer. An entry = the token ids [0, n) + a snapshot at n (references to the KV pages of
 * [0, n), shared with the sequences that made or resumed from them, and a copy of the GDN state and
 * conv window) + optionally the logits of position n-1 (so a prompt that is entirely cached needs no
 * forward at all).
 *
 * A new request resumes from the LONGEST entry whose tokens are a prefix of its prompt (token-id
 * match): its sequence shares the entry's KV pages and copies its recurrent state; only the rest of
 * the prompt is prefilled. Restoring is exact (the sequence is bit-identical to the one the snapshot
 * was taken from), so the output does not depend on whether the cache was used, beyond the float
 * rounding of where prefill chunks were cut.
 *
 * Memory: entries are kept in LRU order under a byte cap that counts the recurrent-state copies, the
 * token lists, the logits and every KV page the cache holds (each page once, however many entries
 * share it: model/kvcache.h ar_kv_pin). Inserting past the cap evicts least recently used entries;
 * an entry bigger than the cap by itself is not kept. Thread-safe (one mutex). */
#ifndef AR_ENGINE_PREFIX_CACHE_H
#define AR_ENGINE_PREFIX_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "model/qwen35.h"

typedef struct ar_pcache ar_pcache;

typedef struct ar_pcache_stats {
    int      n_entries;
    size_t   bytes;          /* everything the cache holds (see above) */
    size_t   kv_bytes;       /*   of which KV pages */
    size_t   cap;
    uint64_t n_put;          /* snapshots stored */
    uint64_t n_refreshed;    /* puts that found the same prefix already stored */
    uint64_t n_rejected;     /* puts not kept (bigger than the cap) */
    uint64_t n_evicted;
    uint64_t n_hits, n_misses;
    uint64_t tokens_reused;  /* prompt tokens not prefilled thanks to the cache */
} ar_pcache_stats;

/* cap_bytes: the memory cap (> 0). n_vocab: the logits row length. */
int  ar_pcache_create(ar_pcache **out, size_t cap_bytes, int n_vocab, ar_error *err);
void ar_pcache_free(ar_pcache *c);     /* lets go of every page it holds; NULL ok */

/* Snapshot seq, whose committed positions hold tokens[0 .. n_past(seq)), with the logits of its last
 * position (n_vocab floats; NULL: none). A stored entry with the same tokens is refreshed (moved to
 * the front; logits added if it had none) instead. Returns 0 also when the entry is not kept.
 * answer: the snapshot ends a generated answer as generated, which the next turn's prompt may render
 * otherwise (the Qwen3.5 template drops an earlier answer's reasoning block); false: a message
 * boundary of a prompt. A boundary entry makes the entries it extends candidates for eviction before
 * any other (see prefix_cache.c); an answer entry does not. */
int  ar_pcache_put(ar_pcache *c, const qwen35_seq *seq, const int32_t *tokens, const float *logits, bool answer,
                   ar_error *err);
/* The same with a snapshot already taken (e.g. qwen35_snap_take_captured), whose positions hold
 * tokens[0 .. n_past(snap)); the cache owns snap from the call on, whether it keeps it or not. */
int  ar_pcache_put_snap(ar_pcache *c, qwen35_snap *snap, const int32_t *tokens, const float *logits, bool answer,
                        ar_error *err);

/* Restore into seq the longest entry whose tokens are a prefix of tokens[0 .. n) and that fits seq's
 * context. An entry of all n tokens qualifies only when it has logits and logits is not NULL; then
 * *logits receives a copy of them (n_vocab floats, caller's buffer) and the caller samples without a forward.
 * Returns the positions restored (0: no entry; seq untouched) or a negative AR_E* code. */
int  ar_pcache_resume(ar_pcache *c, qwen35_seq *seq, const int32_t *tokens, int n, float *logits, ar_error *err);

/* Length of the entry ar_pcache_resume would restore (no restore, no statistics). */
int  ar_pcache_match(ar_pcache *c, const int32_t *tokens, int n, int max_n, int *has_logits);

void ar_pcache_clear(ar_pcache *c);    /* drop every entry */
void ar_pcache_get_stats(ar_pcache *c, ar_pcache_stats *out);

#endif
