/* base/bigmem.c — see bigmem.h. */
#include "base/bigmem.h"

#ifdef AR_BIGMEM_MALLOC

/* Sanitizer builds (Makefile, test-asan): the heap, which LeakSanitizer watches; no alignment promise. */
#include <stdlib.h>

void *ar_bigmem_alloc(size_t bytes) { return calloc(1, bytes ? bytes : 1); }

void ar_bigmem_free(void *p, size_t bytes)
{
    (void)bytes;
    free(p);
}

#else

#include <stdint.h>
#include <sys/mman.h>

enum { HUGE_SHIFT = 21 };   /* 2 MiB: the x86-64 and arm64 (4 KiB granule) transparent huge page */

/* Buffers under one huge page gain nothing from the alignment; they keep whole 4 KiB pages. */
static size_t span(size_t bytes)
{
    const size_t huge = (size_t)1 << HUGE_SHIFT, page = 4096;
    if (bytes == 0) bytes = 1;
    if (bytes < huge) return (bytes + page - 1) & ~(page - 1);
    return (bytes + huge - 1) & ~(huge - 1);
}

void *ar_bigmem_alloc(size_t bytes)
{
    const size_t huge = (size_t)1 << HUGE_SHIFT, len = span(bytes);
    if (len < bytes) return NULL;   /* overflow */
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
    if (p) munmap(p, span(bytes));
}

#endif
