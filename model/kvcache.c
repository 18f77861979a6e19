/* model/kvcache.c — see kvcache.h. */
#include "model/kvcache.h"

#include <stdlib.h>
#include <string.h>

size_t ar_kv_page_bytes(int n_layers, int kv_dim, int page_tokens)
{
    return (size_t)n_layers * 2 * (size_t)page_tokens * (size_t)kv_dim * sizeof(float);
}

int ar_kv_init(ar_kv_pages *kv, int n_layers, int kv_dim, int page_tokens, int max_tokens, ar_error *err)
{
    memset(kv, 0, sizeof *kv);
    if (page_tokens < 1 || max_tokens < 1 || kv_dim < 0 || n_layers < 0)
        return ar_fail(err, AR_EINVAL, "bad KV cache geometry (page %d tokens, %d tokens)", page_tokens, max_tokens);
    kv->n_layers = n_layers;
    kv->kv_dim = kv_dim;
    kv->page_tokens = page_tokens;
    kv->max_tokens = max_tokens;
    kv->cap_pages = (max_tokens + page_tokens - 1) / page_tokens;
    kv->pages = calloc((size_t)kv->cap_pages, sizeof *kv->pages);
    if (!kv->pages) return ar_fail(err, AR_ENOMEM, "out of memory for the KV page table");
    return AR_OK;
}

void ar_kv_release(ar_kv_pages *kv)
{
    if (!kv->pages) return;
    for (int i = 0; i < kv->n_pages; i++) free(kv->pages[i]);
    free(kv->pages);
    memset(kv, 0, sizeof *kv);
}

int ar_kv_reserve(ar_kv_pages *kv, int n_tokens, ar_error *err)
{
    if (n_tokens > kv->max_tokens)
        return ar_fail(err, AR_ERANGE, "%d tokens exceed the sequence's context of %d", n_tokens, kv->max_tokens);
    int need = (n_tokens + kv->page_tokens - 1) / kv->page_tokens;
    if (kv->n_layers == 0 || kv->kv_dim == 0) return AR_OK;
    size_t bytes = ar_kv_page_bytes(kv->n_layers, kv->kv_dim, kv->page_tokens);
    int first = kv->n_pages;
    while (kv->n_pages < need) {
        float *p = malloc(bytes);
        if (!p) {
            while (kv->n_pages > first) free(kv->pages[--kv->n_pages]);
            return ar_fail(err, AR_ENOMEM, "out of memory for a KV page (%zu bytes) at %d tokens", bytes, n_tokens);
        }
        kv->pages[kv->n_pages++] = p;
    }
    return AR_OK;
}
