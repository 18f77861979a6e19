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

#endif
