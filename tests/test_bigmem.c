/* tests/test_bigmem.c — base/bigmem.h: buffers of every size class are zero-filled, writable to their
 * last byte, aligned (a page; 2 MiB from 2 MiB on), and freed; a size that cannot be mapped gives NULL;
 * where the kernel has transparent huge pages the large ones carry the huge-page advice (the "hg" flag
 * of /proc/self/smaps). */
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

int main(void)
{
    const size_t MiB = (size_t)1 << 20;
    const size_t sizes[] = { 0, 1, 100, 4095, 4096, 4097, 2 * MiB - 1, 2 * MiB, 2 * MiB + 1, 18874368, 33 * MiB + 5 };
#ifndef AR_BIGMEM_MALLOC
    const int thp = thp_in_kernel();
#endif
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        const size_t n = sizes[i];
        unsigned char *p = ar_bigmem_alloc(n);
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
        CHECK(!smaps_flags(p, flags, sizeof flags) || n < 2 * MiB, "ar_bigmem_free(%zu): still mapped", n);
#endif
    }
    ar_bigmem_free(NULL, 123);   /* nothing */
#ifndef AR_BIGMEM_MALLOC   /* (AddressSanitizer's calloc aborts on such sizes instead of returning NULL) */
    CHECK(ar_bigmem_alloc(SIZE_MAX) == NULL, "ar_bigmem_alloc(SIZE_MAX) did not fail");
    CHECK(ar_bigmem_alloc(SIZE_MAX - 4096) == NULL, "ar_bigmem_alloc(SIZE_MAX - 4096) did not fail");
#endif
    TEST_END();
}
