/* base/bigmem.h — large buffers straight from anonymous memory, advised for transparent huge pages.
 *
 * The recurrent state of a sequence and its prefix-cache snapshots are tens of MiB each (the mid model:
 * 18 Gated DeltaNet layers x 1 MiB). From malloc, each new one is a fresh mapping whose first touch
 * faults every 4 KiB page: ~4,600 faults for one 18.9 MB snapshot, taken between a request's prompt and
 * its first token. A 2 MiB-aligned mapping advised MADV_HUGEPAGE faults once per 2 MiB where the kernel
 * has transparent huge pages (mode "always" or "madvise"), and a state streamed every decode step then
 * needs one TLB entry per 2 MiB instead of 512. Where THP is off this is plain anonymous memory, as
 * malloc would give. (Measured in docs/BENCHMARKS.md, 2026-11-28 12:00 section.)
 *
 * The memory is zero-filled when asked (a new mapping always is); from 2 MiB on it starts on a 2 MiB boundary, below on a page. ar_bigmem_free
 * needs the size given to ar_bigmem_alloc. Built with AR_BIGMEM_MALLOC (the sanitizer build) these are
 * calloc and free, so that LeakSanitizer sees a buffer that is never freed. */
#ifndef AR_BASE_BIGMEM_H
#define AR_BASE_BIGMEM_H

#include <stddef.h>

/* zero: the buffer must read as zeros; otherwise its bytes are unspecified (the caller overwrites them all) */
void  *ar_bigmem_alloc(size_t bytes, int zero); /* NULL when out of memory (bytes 0: a valid 1-byte buffer) */
void   ar_bigmem_free(void *p, size_t bytes);  /* p NULL: nothing */

/* A freed buffer is kept (up to 4 of them, 256 MiB in all) and handed out again to the next allocation
 * of the same span: a fresh mapping costs the first-touch faults again, a kept one nothing, or a memset when
 * zeros are asked for (thread-safe). ar_bigmem_trim returns the kept ones to the system; ar_bigmem_spare_bytes says how much
 * is kept. */
void   ar_bigmem_trim(void);
size_t ar_bigmem_spare_bytes(void);

#endif
