/* base/bigmem.c — see bigmem.h. */
#include "base/bigmem.h"

#ifdef AR_BIGMEM_MALLOC

/* Sanitizer builds (Makefile, test-asan): the heap, which LeakSanitizer watches; no alignment promise. */
#include <stdlib.h>

void *ar_bigmem_alloc(size_t bytes, int zero) { return zero ? calloc(1, bytes ? bytes : 1) : malloc(bytes ? bytes : 1); }

void ar_bigmem_free(void *p, size_t bytes)
{
    (void)bytes;
    free(p);
}

void ar_bigmem_trim(void) {}

size_t ar_bigmem_spare_bytes(void) { return 0; }

#else

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

enum { HUGE_SHIFT = 21,   /* 2 MiB: the x86-64 and arm64 (4 KiB granule) transparent huge page */
       SPARES = 4 };      /* freed buffers kept for reuse */
#define SPARE_BYTES ((size_t)256 << 20)   /* ... holding at most this much memory (one 27B-shape state, 151 MB) */

/* Buffers under one huge page gain nothing from the alignment; they keep whole 4 KiB pages. */
static size_t span(size_t bytes)
{
    const size_t huge = (size_t)1 << HUGE_SHIFT, page = 4096;
    if (bytes == 0) bytes = 1;
    if (bytes < huge) return (bytes + page - 1) & ~(page - 1);
    return (bytes + huge - 1) & ~(huge - 1);
}

/* Freed buffers, reused by the next allocation of the same span: a fresh mapping costs its first-touch
 * faults again (the part of a snapshot that huge pages do not remove: docs/BENCHMARKS.md), a reused one
 * nothing (a snapshot overwrites it whole) or the zeroing. Buffers of one model come in a few sizes (a sequence's state, its conv window), and a
 * full prefix cache frees one snapshot for each it stores, so a few spares serve the steady state. */
static struct {
    pthread_mutex_t mu;
    void *p[SPARES];
    size_t len[SPARES];
    int n;
    size_t bytes;
} spare = { PTHREAD_MUTEX_INITIALIZER, { 0 }, { 0 }, 0, 0 };

static void *take_spare(size_t len)
{
    void *p = NULL;
    pthread_mutex_lock(&spare.mu);
    for (int i = spare.n - 1; i >= 0 && !p; i--)
        if (spare.len[i] == len) {
            p = spare.p[i];
            spare.bytes -= len;
            spare.n--;
            spare.p[i] = spare.p[spare.n];
            spare.len[i] = spare.len[spare.n];
        }
    pthread_mutex_unlock(&spare.mu);
    return p;
}

static int keep_spare(void *p, size_t len)
{
    int kept = 0;
    pthread_mutex_lock(&spare.mu);
    if (spare.n < SPARES && spare.bytes + len <= SPARE_BYTES) {
        spare.p[spare.n] = p;
        spare.len[spare.n++] = len;
        spare.bytes += len;
        kept = 1;
    }
    pthread_mutex_unlock(&spare.mu);
    return kept;
}

void *ar_bigmem_alloc(size_t bytes, int zero)
{
    const size_t huge = (size_t)1 << HUGE_SHIFT, len = span(bytes);
    if (len < bytes) return NULL;   /* overflow */
    void *r = take_spare(len);
    if (r) {
        if (zero) memset(r, 0, len);
        return r;
    }
    if (len < huge) {
        void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    /* over-map by one huge page, then trim to a 2 MiB-aligned span */
    if (len + huge < len) return NULL;
    uint8_t *raw = mmap(NULL, len + huge, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return NULL;
    uint8_t *p = (uint8_t *)(((uintptr_t)raw + huge - 1) & ~(uintptr_t)(huge - 1));
    if (p > raw) munmap(raw, (size_t)(p - raw));
    if (raw + len + huge > p + len) munmap(p + len, (size_t)(raw + len + huge - (p + len)));
#ifdef MADV_HUGEPAGE
    madvise(p, len, MADV_HUGEPAGE);   /* advice only: THP may be off, or the kernel may not know it */
#endif
    return p;
}

void ar_bigmem_free(void *p, size_t bytes)
{
    if (!p) return;
    const size_t len = span(bytes);
    if (!keep_spare(p, len)) munmap(p, len);
}

void ar_bigmem_trim(void)
{
    for (;;) {
        pthread_mutex_lock(&spare.mu);
        void *p = spare.n ? spare.p[spare.n - 1] : NULL;
        const size_t len = spare.n ? spare.len[spare.n - 1] : 0;
        if (spare.n) {
            spare.n--;
            spare.bytes -= len;
        }
        pthread_mutex_unlock(&spare.mu);
        if (!p) return;
        munmap(p, len);
    }
}

size_t ar_bigmem_spare_bytes(void)
{
    pthread_mutex_lock(&spare.mu);
    const size_t b = spare.bytes;
    pthread_mutex_unlock(&spare.mu);
    return b;
}

#endif
