/* tests/test_bigmem.c — base/bigmem.h: buffers of every size class are zero-filled, writable to their
 * last byte, aligned (a page; 2 MiB from 2 MiB on), and freed; a size that cannot be mapped gives NULL;
 * where the kernel has transparent huge pages the large ones carry the huge-page advice (the "hg" flag
 * of /proc/self/smaps). A freed buffer is handed out again, zeroed, to the next allocation of its span,
 * the kept ones stay within their bounds, trimming returns them, and threads allocating and freeing at
 * once always get zeroed buffers of their own. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bigmem.h"
#include "tests/test.h"

#ifndef AR_BIGMEM_MALLOC   /* the mapping checks; in the sanitizer build the buffers come from the heap */

/* the VmFlags line of the /proc/self/smaps entry that holds p; 0 when not found */
static int smaps_flags(const void *p, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return 0;
    char line[512];
    int inside = 0, found = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            inside = (uintptr_t)p >= lo && (uintptr_t)p < hi;
            continue;
        }
        if (inside && !strncmp(line, "VmFlags:", 8)) {
            size_t k = strlen(line + 8);
            if (k >= cap) k = cap - 1;
            memcpy(out, line + 8, k);
            out[k] = 0;
            found = 1;
            break;
        }
    }
    fclose(f);
    return found;
}

static int thp_in_kernel(void)
{
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return 0;
    char buf[128] = "";
    const int ok = fgets(buf, sizeof buf, f) != NULL;
    fclose(f);
    return ok && (strstr(buf, "[always]") || strstr(buf, "[madvise]"));
}

#endif

#ifndef AR_BIGMEM_MALLOC
/* a freed buffer comes back, zeroed, for the same span; the kept ones stay within 4 buffers and 256 MiB */
static void check_reuse(void)
{
    const size_t MiB = (size_t)1 << 20, n = 18874368;
    unsigned char *p = ar_bigmem_alloc(n, 1);
    CHECK(p != NULL, "ar_bigmem_alloc(%zu)", n);
    if (!p) return;
    memset(p, 0x5A, n);
    ar_bigmem_free(p, n);
    CHECK(ar_bigmem_spare_bytes() == n, "a freed %zu-byte buffer: %zu bytes kept", n, ar_bigmem_spare_bytes());
    unsigned char *q = ar_bigmem_alloc(n - 100, 1);   /* the same 18 MiB span */
    CHECK(q == p, "the kept buffer %p was not reused (got %p)", (void *)p, (void *)q);
    size_t nonzero = 0;
    for (size_t k = 0; q && k < n; k++) nonzero += q[k] != 0;
    CHECK(q && nonzero == 0, "the reused buffer has %zu bytes not zero", nonzero);
    CHECK(ar_bigmem_spare_bytes() == 0, "after reuse %zu bytes kept", ar_bigmem_spare_bytes());
    if (q) {   /* without zero the kept buffer comes back as it was left: no memset (a snapshot overwrites it) */
        memset(q, 0x5A, n);
        ar_bigmem_free(q, n - 100);
        unsigned char *u = ar_bigmem_alloc(n, 0);
        CHECK(u == q, "the kept buffer %p was not reused without zeroing (got %p)", (void *)q, (void *)u);
        CHECK(u && u[0] == 0x5A && u[n - 1] == 0x5A, "a buffer asked for without zeroing was written anyway");
        q = u;
    }
    unsigned char *r = ar_bigmem_alloc(n + 4 * MiB, 1);   /* another span: a new mapping */
    CHECK(r != NULL && r != q, "ar_bigmem_alloc(%zu): %p", n + 4 * MiB, (void *)r);
    ar_bigmem_free(q, n - 100);
    ar_bigmem_free(r, n + 4 * MiB);
    ar_bigmem_trim();
    void *many[6];
    for (int i = 0; i < 6; i++) many[i] = ar_bigmem_alloc(2 * MiB, 1);
    for (int i = 0; i < 6; i++) ar_bigmem_free(many[i], 2 * MiB);
    CHECK(ar_bigmem_spare_bytes() == 4 * 2 * MiB, "6 freed 2 MiB buffers: %zu bytes kept, expected 4 buffers",
          ar_bigmem_spare_bytes());
    ar_bigmem_trim();
    void *big[3];
    for (int i = 0; i < 3; i++) big[i] = ar_bigmem_alloc(100 * MiB, 1);
    for (int i = 0; i < 3; i++) ar_bigmem_free(big[i], 100 * MiB);
    CHECK(ar_bigmem_spare_bytes() == 200 * MiB, "3 freed 100 MiB buffers: %zu bytes kept, expected 2 (256 MiB cap)",
          ar_bigmem_spare_bytes());
    ar_bigmem_trim();
}
#endif

/* threads allocating, writing and freeing buffers of a few spans at once: each gets zeroed memory */
static void *churn(void *arg)
{
    uint64_t rng = (uint64_t)(uintptr_t)arg * 0x9E3779B97F4A7C15ull + 1;
    const size_t sizes[] = { 4096, 100000, 2u << 20, 5u << 20 };
    long bad = 0;
    for (int it = 0; it < 200; it++) {
        const size_t n = sizes[test_xorshift(&rng) % 4];
        unsigned char *p = ar_bigmem_alloc(n, 1);
        if (!p) return (void *)-1L;
        for (size_t k = 0; k < n; k += 509) bad += p[k] != 0;
        bad += p[n - 1] != 0;
        memset(p, 0xC3, n);
        ar_bigmem_free(p, n);
    }
    return (void *)bad;
}

static void check_threads(void)
{
    pthread_t th[4];
    for (long i = 0; i < 4; i++) pthread_create(&th[i], NULL, churn, (void *)i);
    for (int i = 0; i < 4; i++) {
        void *r = NULL;
        pthread_join(th[i], &r);
        CHECK(r == NULL, "thread %d: %ld bytes not zero (or an allocation failed: -1)", i, (long)r);
    }
    ar_bigmem_trim();
}

int main(void)
{
    const size_t MiB = (size_t)1 << 20;
    const size_t sizes[] = { 0, 1, 100, 4095, 4096, 4097, 2 * MiB - 1, 2 * MiB, 2 * MiB + 1, 18874368, 33 * MiB + 5 };
#ifndef AR_BIGMEM_MALLOC
    const int thp = thp_in_kernel();
#endif
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const size_t n = sizes[i];
        unsigned char *p = ar_bigmem_alloc(n, 1);
        CHECK(p != NULL, "ar_bigmem_alloc(%zu) failed", n);
        if (!p) continue;
        size_t nonzero = 0;
        for (size_t k = 0; k < n; k++) nonzero += p[k] != 0;
        CHECK(nonzero == 0, "ar_bigmem_alloc(%zu): %zu bytes not zero", n, nonzero);
        memset(p, 0xA5, n ? n : 1);
        CHECK(p[0] == 0xA5 && p[(n ? n : 1) - 1] == 0xA5, "ar_bigmem_alloc(%zu): not writable to its end", n);
#ifndef AR_BIGMEM_MALLOC
        const uintptr_t align = n >= 2 * MiB ? 2 * MiB : 4096;
        CHECK((uintptr_t)p % align == 0, "ar_bigmem_alloc(%zu) at %p: not aligned to %zu", n, (void *)p, (size_t)align);
        char flags[256];
        if (n >= 2 * MiB && thp) {
            const int found = smaps_flags(p, flags, sizeof flags);
            CHECK(found && strstr(flags, " hg"), "ar_bigmem_alloc(%zu): no huge-page advice in /proc/self/smaps (%s)", n,
                  found ? flags : "mapping not found");
        }
#endif
        ar_bigmem_free(p, n);
#ifndef AR_BIGMEM_MALLOC
        ar_bigmem_trim();
        CHECK(ar_bigmem_spare_bytes() == 0, "ar_bigmem_trim kept %zu bytes", ar_bigmem_spare_bytes());
        CHECK(!smaps_flags(p, flags, sizeof flags) || n < 2 * MiB, "ar_bigmem_free(%zu) + trim: still mapped", n);
#endif
    }
#ifndef AR_BIGMEM_MALLOC
    check_reuse();
#endif
    check_threads();
    ar_bigmem_free(NULL, 123);   /* nothing */
#ifndef AR_BIGMEM_MALLOC   /* (AddressSanitizer's calloc aborts on such sizes instead of returning NULL) */
    CHECK(ar_bigmem_alloc(SIZE_MAX, 1) == NULL, "ar_bigmem_alloc(SIZE_MAX) did not fail");
    CHECK(ar_bigmem_alloc(SIZE_MAX - 4096, 1) == NULL, "ar_bigmem_alloc(SIZE_MAX - 4096) did not fail");
#endif
    TEST_END();
}
