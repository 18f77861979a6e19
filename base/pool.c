/* base/pool.c — see pool.h.
 *
 * Protocol: the caller bumps `generation` under the mutex after storing (fn, ctx); workers wait
 * for a generation they have not run, run their share, then decrement `pending`. The caller runs
 * share 0 itself and spins (then sleeps) until pending reaches 0. */
#include "base/pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct ar_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    ar_pool_fn fn;
    void *ctx;
    atomic_ulong generation;
    atomic_int pending;
    int stop;
};

typedef struct { ar_pool *pool; int ith; } worker_arg;

enum { SPIN_ITERS = 200000 };

static void *worker(void *p)
{
    worker_arg *wa = p;
    ar_pool *pool = wa->pool;
    int ith = wa->ith;
    free(wa);
    unsigned long seen = 0;
    for (;;) {
        unsigned long gen;
        int spins = 0;
        while ((gen = atomic_load_explicit(&pool->generation, memory_order_acquire)) == seen && spins < SPIN_ITERS)
            spins++;
        if (gen == seen) {
            pthread_mutex_lock(&pool->mu);
            while ((gen = atomic_load(&pool->generation)) == seen && !pool->stop)
                pthread_cond_wait(&pool->wake, &pool->mu);
            int stop = pool->stop;
            pthread_mutex_unlock(&pool->mu);
            if (stop) return NULL;
        }
        seen = gen;
        pool->fn(pool->ctx, ith, pool->n);
        if (atomic_fetch_sub_explicit(&pool->pending, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&pool->mu);
            pthread_cond_signal(&pool->done);
            pthread_mutex_unlock(&pool->mu);
        }
    }
}

ar_pool *ar_pool_create(int n_threads)
{
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    ar_pool *pool = calloc(1, sizeof *pool);
    if (!pool) return NULL;
    pool->n = n_threads;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->wake, NULL);
    pthread_cond_init(&pool->done, NULL);
    pool->threads = calloc((size_t)n_threads, sizeof *pool->threads);
    if (!pool->threads) { free(pool); return NULL; }
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        if (!wa) { pool->n = i; break; }
        wa->pool = pool;
        wa->ith = i;
        if (pthread_create(&pool->threads[i], NULL, worker, wa) != 0) { free(wa); pool->n = i; break; }
    }
    return pool;
}

void ar_pool_free(ar_pool *pool)
{
    if (!pool) return;
    pthread_mutex_lock(&pool->mu);
    pool->stop = 1;
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    for (int i = 1; i < pool->n; i++) pthread_join(pool->threads[i], NULL);
    pthread_mutex_destroy(&pool->mu);
    pthread_cond_destroy(&pool->wake);
    pthread_cond_destroy(&pool->done);
    free(pool->threads);
    free(pool);
}

int ar_pool_size(const ar_pool *pool) { return pool ? pool->n : 1; }

void ar_pool_run(ar_pool *pool, ar_pool_fn fn, void *ctx)
{
    if (!pool || pool->n == 1) { fn(ctx, 0, 1); return; }
    pool->fn = fn;
    pool->ctx = ctx;
    atomic_store(&pool->pending, pool->n - 1);
    pthread_mutex_lock(&pool->mu);
    atomic_fetch_add_explicit(&pool->generation, 1, memory_order_release);
    pthread_cond_broadcast(&pool->wake);
    pthread_mutex_unlock(&pool->mu);
    fn(ctx, 0, pool->n);
    int spins = 0;
    while (atomic_load_explicit(&pool->pending, memory_order_acquire) > 0 && spins < SPIN_ITERS) spins++;
    if (atomic_load(&pool->pending) > 0) {
        pthread_mutex_lock(&pool->mu);
        while (atomic_load(&pool->pending) > 0) pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
    }
}

void ar_split_range(long n, long align, int ith, int nth, long *lo, long *hi)
{
    if (align < 1) align = 1;
    long units = (n + align - 1) / align;
    long per = units / nth, extra = units % nth;
    long ulo = ith * per + (ith < extra ? ith : extra);
    long uhi = ulo + per + (ith < extra ? 1 : 0);
    *lo = ulo * align < n ? ulo * align : n;
    *hi = uhi * align < n ? uhi * align : n;
}

void ar_steal_init(ar_steal *s, long n, long align, long min_units, int nth)
{
    if (align < 1) align = 1;
    if (nth < 1) nth = 1;
    if (nth > AR_STEAL_MAX) nth = AR_STEAL_MAX;
    s->n = n;
    s->align = align;
    s->min_units = min_units < 1 ? 1 : min_units;
    s->nth = nth;
    const long units = (n + align - 1) / align;
    for (int i = 0; i < nth; i++) {
        long lo, hi;
        ar_split_range(units, 1, i, nth, &lo, &hi);
        atomic_init(&s->part[i], (unsigned long long)lo << 32 | (unsigned long long)hi);
    }
}

/* Claims up to `want` units of part p, from its front (owner) or its back (thief). */
static int steal_claim(ar_steal *s, int p, int owner, long *ulo, long *uhi)
{
    unsigned long long cur = atomic_load_explicit(&s->part[p], memory_order_relaxed);
    for (;;) {
        const long f = (long)(cur >> 32), b = (long)(cur & 0xFFFFFFFFull);
        if (f >= b) return 0;
        long want = owner ? (b - f + 1) / 2 : (b - f + 3) / 4;
        if (want < s->min_units) want = s->min_units;
        if (want > b - f) want = b - f;
        const long nf = owner ? f + want : f, nb = owner ? b : b - want;
        const unsigned long long next = (unsigned long long)nf << 32 | (unsigned long long)nb;
        if (atomic_compare_exchange_weak_explicit(&s->part[p], &cur, next, memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *ulo = owner ? f : nb;
            *uhi = owner ? nf : b;
            return 1;
        }
    }
}

int ar_steal_next(ar_steal *s, int ith, long *lo, long *hi)
{
    long ulo = 0, uhi = 0;
    int got = ith < s->nth && steal_claim(s, ith, 1, &ulo, &uhi);
    for (int k = 1; !got && k < s->nth; k++) got = steal_claim(s, (ith + k) % s->nth, 0, &ulo, &uhi);
    if (!got) return 0;
    *lo = ulo * s->align < s->n ? ulo * s->align : s->n;
    *hi = uhi * s->align < s->n ? uhi * s->align : s->n;
    return 1;
}
