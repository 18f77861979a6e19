/* model/kvcache.h — paged attention KV storage for one sequence, with pages shared by reference.
 *
 * A page holds page_tokens consecutive positions of every attention layer's K and V, elt bytes per
 * element (2: IEEE half, llama.cpp's default cache type; 4: F32): layout
 * [layer][K|V][page_tokens][kv_dim]. Pages are allocated lazily (ar_kv_reserve) as the
 * sequence grows, so a sequence costs only what it has used. Rows of one layer inside one page are
 * contiguous (stride kv_dim), which is what the attention kernel consumes block by block.
 *
 * Sharing. A page is reference counted: several page tables (sequences, prefix-cache snapshots) may
 * point at the same page when they share a prefix (ar_kv_share). A shared page is never written:
 * before a sequence appends positions [n_tokens, n) (ar_kv_reserve, called by qwen35_commit), every
 * page of that range with more than one reference is replaced by a private copy of its rows below
 * n_tokens (copy-on-write; in practice only the partially filled last page of a shared prefix is
 * ever copied, since a sequence only appends). The last reference frees a page.
 *
 * Invariant: n_tokens = the positions the owner has written (its committed n_past); pages[0 ..
 * ceil(n_tokens / page_tokens)) exist. Pages past that may exist too (kept after a reset).
 *
 * Pools. An optional ar_kv_pool counts the pages allocated through it (live and peak), and may cap
 * them (a memory budget: ar_kv_reserve then fails with AR_ENOMEM). Every page remembers its pool,
 * so a pool must outlive all page tables that hold its pages. Page reference counts and pool
 * counters are atomic; a page table itself is not thread-safe. */
#ifndef AR_MODEL_KVCACHE_H
#define AR_MODEL_KVCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct ar_kv_pool ar_kv_pool;

typedef struct ar_kv_pages {
    int n_layers;       /* attention layers */
    int kv_dim;         /* elements per K (and per V) row */
    int elt;            /* bytes per element: 2 (F16) or 4 (F32) */
    int page_tokens;
    int max_tokens;
    int n_pages, cap_pages;
    int n_tokens;       /* positions written (see the invariant above) */
    unsigned char **pages;   /* page data (a private header precedes each page) */
    ar_kv_pool *pool;   /* where new pages are counted; NULL: none */
} ar_kv_pages;

int  ar_kv_init(ar_kv_pages *kv, int n_layers, int kv_dim, int elt, int page_tokens, int max_tokens, ar_error *err);
/* Drop every page reference and the page table. */
void ar_kv_release(ar_kv_pages *kv);
/* Drop every page reference, keep the (empty) table: n_tokens = 0, n_pages = 0. */
void ar_kv_drop(ar_kv_pages *kv);
/* Back to n_tokens = 0 keeping private pages for reuse (shared ones are dropped). */
void ar_kv_rewind(ar_kv_pages *kv);
/* Make positions [n_tokens, n) writable and set n_tokens = n: allocates missing pages and replaces
 * shared pages in that range by private copies. AR_ENOMEM / AR_ERANGE without changing anything. */
int  ar_kv_reserve(ar_kv_pages *kv, int n, ar_error *err);
/* dst (same geometry) drops its pages and references src's pages holding positions [0, n_tokens);
 * dst->n_tokens = n_tokens. n_tokens <= src->n_tokens. */
int  ar_kv_share(ar_kv_pages *dst, const ar_kv_pages *src, int n_tokens, ar_error *err);
size_t ar_kv_page_bytes(int n_layers, int kv_dim, int elt, int page_tokens);

/* References to page i (tests, stats); 0 when absent. */
int  ar_kv_page_refs(const ar_kv_pages *kv, int i);
/* Cache accounting: add delta (+1 / -1) to the "held by a cache" count of each page of kv and return
 * the bytes of the pages whose count went 0 -> 1 (delta +1) or 1 -> 0 (delta -1), so a cache holding
 * many snapshots of overlapping prefixes counts each shared page once. Not thread-safe (one cache). */
size_t ar_kv_pin(const ar_kv_pages *kv, int delta);

/* ---- pools ---- */
/* max_pages <= 0: no cap. */
int  ar_kv_pool_create(ar_kv_pool **out, long max_pages, ar_error *err);
void ar_kv_pool_free(ar_kv_pool *p);               /* after every page of it is gone; NULL ok */
long ar_kv_pool_live(const ar_kv_pool *p);          /* pages allocated and not yet freed */
long ar_kv_pool_peak(const ar_kv_pool *p);
size_t ar_kv_pool_live_bytes(const ar_kv_pool *p);
long ar_kv_pool_copies(const ar_kv_pool *p);        /* copy-on-write page copies made */

/* Row t of layer's K (V): kv_dim elements of elt bytes. */
static inline void *ar_kv_k(const ar_kv_pages *kv, int layer, int t)
{
    unsigned char *page = kv->pages[t / kv->page_tokens];
    return page + ((size_t)layer * 2 * (size_t)kv->page_tokens + (size_t)(t % kv->page_tokens)) * (size_t)kv->kv_dim *
                      (size_t)kv->elt;
}

static inline void *ar_kv_v(const ar_kv_pages *kv, int layer, int t)
{
    unsigned char *page = kv->pages[t / kv->page_tokens];
    return page + (((size_t)layer * 2 + 1) * (size_t)kv->page_tokens + (size_t)(t % kv->page_tokens)) *
                      (size_t)kv->kv_dim * (size_t)kv->elt;
}

/* Number of positions from t to the end of t's page, capped at end - t. */
static inline int ar_kv_run(const ar_kv_pages *kv, int t, int end)
{
    int left = kv->page_tokens - t % kv->page_tokens;
    return end - t < left ? end - t : left;
}

#endif
