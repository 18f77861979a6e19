/* base/pool.h — one persistent thread pool.
 *
 * ar_pool_run(pool, fn, ctx) calls fn(ctx, ith, nth) on every thread (the caller is thread 0)
 * and returns when all are done. Workers spin briefly and then sleep on a condition variable, so a
 * forward pass of many small ops does not pay a futex round trip per op. Kernels split their own
 * work by (ith, nth); nothing is created per op. */
#ifndef AR_BASE_POOL_H
#define AR_BASE_POOL_H

typedef struct ar_pool ar_pool;
typedef void (*ar_pool_fn)(void *ctx, int ith, int nth);

/* n_threads <= 0 means "one per online core". */
ar_pool *ar_pool_create(int n_threads);
void     ar_pool_free(ar_pool *pool);
int      ar_pool_size(const ar_pool *pool);
void     ar_pool_run(ar_pool *pool, ar_pool_fn fn, void *ctx);

/* Split [0, n) into nth near-equal parts aligned to `align`; part ith is [*lo, *hi). */
void ar_split_range(long n, long align, int ith, int nth, long *lo, long *hi);

/* A split of [0, n) that follows the threads' real speeds: thread ith owns ar_split_range's part
 * ith and takes it front to back in chunks that halve as it empties (one sequential stream, few
 * claims); a thread whose own part is done takes small chunks from the back of the others'. So when
 * one core runs slower (a busy neighbour, a slower core type), the other finishes its work instead
 * of waiting. Chunk bounds are multiples of `align` (or n). ar_steal_init before the pool run; each
 * thread then calls ar_steal_next until it returns 0. nth <= AR_STEAL_MAX, n / align < 2^32. */
enum { AR_STEAL_MAX = 64 };
typedef struct {
    _Atomic unsigned long long part[AR_STEAL_MAX]; /* front << 32 | back, in units of align */
    long n, align, min_units;
    int nth;
} ar_steal;

void ar_steal_init(ar_steal *s, long n, long align, long min_units, int nth);
int  ar_steal_next(ar_steal *s, int ith, long *lo, long *hi);

#endif
