/* model/kvcache.c — see kvcache.h.
 *
 * Each page is one malloc: a 64-byte header (reference count, cache pin count, pool, size) and then
 * the page's elements; kv->pages[i] points at them, so the inline accessors of kvcache.h stay a
 * single indexed load. Entries of a page table may be NULL (a page dropped by ar_kv_rewind because
 * it was shared); ar_kv_reserve fills them before they are written. */
#include "model/kvcache.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct ar_kv_pool {
    long max_pages;
    atomic_long live, peak, copies;
    atomic_size_t live_bytes;
};

typedef struct page_hdr {
    atomic_int refs;
    int pins;
    ar_kv_pool *pool;
    size_t bytes;
} page_hdr;

enum { HDR = 64 };
_Static_assert(sizeof(page_hdr) <= HDR, "page header must fit its slot");

static page_hdr *hdr_of(unsigned char *p) { return (page_hdr *)(void *)((char *)p - HDR); }

size_t ar_kv_page_bytes(int n_layers, int kv_dim, int elt, int page_tokens)
{
    return (size_t)n_layers * 2 * (size_t)page_tokens * (size_t)kv_dim * (size_t)elt;
}

/* ---- pages ---------------------------------------------------------------------------------- */

static unsigned char *page_new(ar_kv_pool *pool, size_t bytes)
{
    if (pool) {
        long n = atomic_fetch_add(&pool->live, 1) + 1;
        if (pool->max_pages > 0 && n > pool->max_pages) {
            atomic_fetch_sub(&pool->live, 1);
            return NULL;
        }
    }
    char *raw = malloc(HDR + bytes);
    if (!raw) {
        if (pool) atomic_fetch_sub(&pool->live, 1);
        return NULL;
    }
    page_hdr *h = (page_hdr *)(void *)raw;
    atomic_init(&h->refs, 1);
    h->pins = 0;
    h->pool = pool;
    h->bytes = bytes;
    if (pool) {
        atomic_fetch_add(&pool->live_bytes, bytes);
        long live = atomic_load(&pool->live), peak = atomic_load(&pool->peak);
        while (live > peak && !atomic_compare_exchange_weak(&pool->peak, &peak, live)) {}
    }
    return (unsigned char *)(void *)(raw + HDR);
}

static void page_ref(unsigned char *p) { atomic_fetch_add(&hdr_of(p)->refs, 1); }

static void page_unref(unsigned char *p)
{
    if (!p) return;
    page_hdr *h = hdr_of(p);
    if (atomic_fetch_sub(&h->refs, 1) != 1) return;
    if (h->pool) {
        atomic_fetch_sub(&h->pool->live, 1);
        atomic_fetch_sub(&h->pool->live_bytes, h->bytes);
    }
    free(h);
}

static int page_refs(unsigned char *p) { return p ? atomic_load(&hdr_of(p)->refs) : 0; }

/* ---- page tables ---------------------------------------------------------------------------- */

int ar_kv_init(ar_kv_pages *kv, int n_layers, int kv_dim, int elt, int page_tokens, int max_tokens, ar_error *err)
{
    memset(kv, 0, sizeof *kv);
    if (page_tokens < 1 || max_tokens < 1 || kv_dim < 0 || n_layers < 0 || (elt != 2 && elt != 4))
        return ar_fail(err, AR_EINVAL, "bad KV cache geometry (page %d tokens, %d tokens, %d-byte elements)",
                       page_tokens, max_tokens, elt);
    kv->n_layers = n_layers;
    kv->kv_dim = kv_dim;
    kv->elt = elt;
    kv->page_tokens = page_tokens;
    kv->max_tokens = max_tokens;
    kv->cap_pages = (max_tokens + page_tokens - 1) / page_tokens;
    kv->pages = calloc((size_t)kv->cap_pages, sizeof *kv->pages);
    if (!kv->pages) return ar_fail(err, AR_ENOMEM, "out of memory for the KV page table");
    return AR_OK;
}

void ar_kv_drop(ar_kv_pages *kv)
{
    if (!kv->pages) return;
    for (int i = 0; i < kv->n_pages; i++) {
        page_unref(kv->pages[i]);
        kv->pages[i] = NULL;
    }
    kv->n_pages = 0;
    kv->n_tokens = 0;
}

void ar_kv_release(ar_kv_pages *kv)
{
    if (!kv->pages) return;
    ar_kv_drop(kv);
    free(kv->pages);
    memset(kv, 0, sizeof *kv);
}

void ar_kv_rewind(ar_kv_pages *kv)
{
    for (int i = 0; i < kv->n_pages; i++)
        if (page_refs(kv->pages[i]) > 1) {
            page_unref(kv->pages[i]);
            kv->pages[i] = NULL;
        }
    while (kv->n_pages > 0 && !kv->pages[kv->n_pages - 1]) kv->n_pages--;
    kv->n_tokens = 0;
}

int ar_kv_reserve(ar_kv_pages *kv, int n, ar_error *err)
{
    if (n > kv->max_tokens)
        return ar_fail(err, AR_ERANGE, "%d tokens exceed the sequence's context of %d", n, kv->max_tokens);
    if (n <= kv->n_tokens) return AR_OK;
    if (kv->n_layers == 0 || kv->kv_dim == 0) { kv->n_tokens = n; return AR_OK; }
    const int P = kv->page_tokens;
    const int first = kv->n_tokens / P, need = (n + P - 1) / P;
    const size_t bytes = ar_kv_page_bytes(kv->n_layers, kv->kv_dim, kv->elt, P);

    /* allocate everything first so a failure changes nothing */
    unsigned char *fresh[need - first];
    for (int i = first; i < need; i++) {
        unsigned char *old = i < kv->n_pages ? kv->pages[i] : NULL;
        if (old && page_refs(old) == 1) { fresh[i - first] = NULL; continue; }
        unsigned char *p = page_new(kv->pool, bytes);
        if (!p) {
            for (int j = first; j < i; j++) page_unref(fresh[j - first]);
            return ar_fail(err, AR_ENOMEM, "out of memory for a KV page (%zu bytes) at %d tokens%s", bytes, n,
                           kv->pool && kv->pool->max_pages > 0 ? " (KV page budget reached)" : "");
        }
        fresh[i - first] = p;
    }
    for (int i = first; i < need; i++) {
        unsigned char *p = fresh[i - first];
        if (!p) continue;
        unsigned char *old = i < kv->n_pages ? kv->pages[i] : NULL;
        if (old) {
            /* copy-on-write: the rows below n_tokens are the prefix this page already holds */
            const int rows = kv->n_tokens - i * P;
            if (rows > 0)
                for (int l = 0; l < 2 * kv->n_layers; l++)
                    memcpy(p + (size_t)l * P * kv->kv_dim * kv->elt, old + (size_t)l * P * kv->kv_dim * kv->elt,
                           (size_t)rows * kv->kv_dim * kv->elt);
            if (kv->pool) atomic_fetch_add(&kv->pool->copies, 1);
            page_unref(old);
        }
        kv->pages[i] = p;
    }
    if (need > kv->n_pages) kv->n_pages = need;
    kv->n_tokens = n;
    return AR_OK;
}

int ar_kv_share(ar_kv_pages *dst, const ar_kv_pages *src, int n_tokens, ar_error *err)
{
    if (dst->n_layers != src->n_layers || dst->kv_dim != src->kv_dim || dst->page_tokens != src->page_tokens)
        return ar_fail(err, AR_EINVAL, "cannot share KV pages between caches of different geometry "
                       "(%d layers x %d, page %d vs %d layers x %d, page %d)", src->n_layers, src->kv_dim,
                       src->page_tokens, dst->n_layers, dst->kv_dim, dst->page_tokens);
    if (n_tokens < 0 || n_tokens > src->n_tokens || n_tokens > dst->max_tokens)
        return ar_fail(err, AR_ERANGE, "sharing %d KV positions: the source holds %d, the destination fits %d",
                       n_tokens, src->n_tokens, dst->max_tokens);
    ar_kv_drop(dst);
    if (src->n_layers > 0 && src->kv_dim > 0) {
        const int np = (n_tokens + src->page_tokens - 1) / src->page_tokens;
        for (int i = 0; i < np; i++) {
            page_ref(src->pages[i]);
            dst->pages[i] = src->pages[i];
        }
        dst->n_pages = np;
    }
    dst->n_tokens = n_tokens;
    return AR_OK;
}

int ar_kv_page_refs(const ar_kv_pages *kv, int i)
{
    return i >= 0 && i < kv->n_pages ? page_refs(kv->pages[i]) : 0;
}

size_t ar_kv_pin(const ar_kv_pages *kv, int delta)
{
    size_t bytes = 0;
    for (int i = 0; i < kv->n_pages; i++) {
        if (!kv->pages[i]) continue;
        page_hdr *h = hdr_of(kv->pages[i]);
        int before = h->pins;
        h->pins += delta;
        if ((before == 0 && h->pins > 0) || (before > 0 && h->pins == 0)) bytes += h->bytes;
    }
    return bytes;
}

/* ---- pools ---------------------------------------------------------------------------------- */

int ar_kv_pool_create(ar_kv_pool **out, long max_pages, ar_error *err)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return ar_fail(err, AR_ENOMEM, "out of memory for a KV page pool");
    (*out)->max_pages = max_pages > 0 ? max_pages : 0;
    atomic_init(&(*out)->live, 0);
    atomic_init(&(*out)->peak, 0);
    atomic_init(&(*out)->copies, 0);
    atomic_init(&(*out)->live_bytes, 0);
    return AR_OK;
}

void ar_kv_pool_free(ar_kv_pool *p) { free(p); }
long ar_kv_pool_live(const ar_kv_pool *p) { return p ? atomic_load(&((ar_kv_pool *)p)->live) : 0; }
long ar_kv_pool_peak(const ar_kv_pool *p) { return p ? atomic_load(&((ar_kv_pool *)p)->peak) : 0; }
long ar_kv_pool_copies(const ar_kv_pool *p) { return p ? atomic_load(&((ar_kv_pool *)p)->copies) : 0; }
size_t ar_kv_pool_live_bytes(const ar_kv_pool *p) { return p ? atomic_load(&((ar_kv_pool *)p)->live_bytes) : 0; }
