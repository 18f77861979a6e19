/* model/kvcache.h — paged attention KV storage for one sequence.
 *
 * A page holds page_tokens consecutive positions of every attention layer's K and V (F32):
 * layout [layer][K|V][page_tokens][kv_dim]. Pages are allocated lazily (ar_kv_reserve) as the
 * sequence grows, so a sequence costs only what it has used; a page is the unit later shared
 * by reference between sequences with a common prefix. Rows of one layer inside one page are
 * contiguous (stride kv_dim), which is what the attention kernel consumes block by block. */
#ifndef AR_MODEL_KVCACHE_H
#define AR_MODEL_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

typedef struct ar_kv_pages {
    int n_layers;       /* attention layers */
    int kv_dim;         /* floats per K (and per V) row */
    int page_tokens;
    int max_tokens;
    int n_pages, cap_pages;
    float **pages;
} ar_kv_pages;

int  ar_kv_init(ar_kv_pages *kv, int n_layers, int kv_dim, int page_tokens, int max_tokens, ar_error *err);
void ar_kv_release(ar_kv_pages *kv);
/* Make sure positions [0, n_tokens) have pages. AR_ENOMEM / AR_ERANGE without changing anything. */
int  ar_kv_reserve(ar_kv_pages *kv, int n_tokens, ar_error *err);
size_t ar_kv_page_bytes(int n_layers, int kv_dim, int page_tokens);

static inline float *ar_kv_k(const ar_kv_pages *kv, int layer, int t)
{
    float *page = kv->pages[t / kv->page_tokens];
    return page + ((size_t)layer * 2 * (size_t)kv->page_tokens + (size_t)(t % kv->page_tokens)) * (size_t)kv->kv_dim;
}

static inline float *ar_kv_v(const ar_kv_pages *kv, int layer, int t)
{
    float *page = kv->pages[t / kv->page_tokens];
    return page + (((size_t)layer * 2 + 1) * (size_t)kv->page_tokens + (size_t)(t % kv->page_tokens)) * (size_t)kv->kv_dim;
}

/* Number of positions from t to the end of t's page, capped at end - t. */
static inline int ar_kv_run(const ar_kv_pages *kv, int t, int end)
{
    int left = kv->page_tokens - t % kv->page_tokens;
    return end - t < left ? end - t : left;
}

#endif
