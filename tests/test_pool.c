/* tests/test_pool.c — the thread pool's work splits (base/pool.h): ar_split_range's parts, and
 * ar_steal's chunks, claimed by real pool threads of which some are made slow, cover [0, n) exactly
 * once with bounds on the alignment, and a slow thread's part is finished by the others. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/pool.h"
#include "tests/test.h"

enum { MAX_N = 5000, MAX_CHUNKS = 4096 };

typedef struct {
    ar_steal steal;
    long n, align;
    _Atomic int hits[MAX_N];
    _Atomic int n_chunks, bad_bounds, by_thread[8];
    int slow;                  /* thread that sleeps in each chunk (-1: none) */
} steal_job;

static void nap(long ns)
{
    struct timespec ts = { 0, ns };
    nanosleep(&ts, NULL);
}

static void steal_worker(void *p, int ith, int nth)
{
    (void)nth;
    steal_job *j = p;
    long lo, hi;
    while (ar_steal_next(&j->steal, ith, &lo, &hi)) {
        atomic_fetch_add(&j->n_chunks, 1);
        if (lo >= hi || lo % j->align || (hi % j->align && hi != j->n) || lo < 0 || hi > j->n)
            atomic_fetch_add(&j->bad_bounds, 1);
        for (long i = lo; i < hi && i >= 0 && i < j->n; i++) atomic_fetch_add(&j->hits[i], 1);
        atomic_fetch_add(&j->by_thread[ith], (int)(hi - lo));
        if (ith == j->slow) nap(200000);   /* 0.2 ms per chunk: this thread lags far behind */
    }
}

static void check_split_range(void)
{
    for (long n = 0; n < 300; n += 7)
        for (long align = 1; align <= 32; align *= 2)
            for (int nth = 1; nth <= 5; nth++) {
                long next = 0, ok = 1;
                for (int i = 0; i < nth; i++) {
                    long lo, hi;
                    ar_split_range(n, align, i, nth, &lo, &hi);
                    ok &= lo == next && hi >= lo && hi <= n && (lo % align == 0 || lo == n);
                    next = hi;
                }
                CHECK(ok && next == n, "ar_split_range n %ld align %ld nth %d: parts do not tile [0, n)", n, align, nth);
            }
}

/* One run of ar_steal over [0, n) on the pool; the slow thread's row count, or -1 when a check failed. */
static int run_steal(ar_pool *pool, long n, long align, long min_units, int slow)
{
    const int nth = ar_pool_size(pool);
    steal_job *j = calloc(1, sizeof *j);
    if (!j) { CHECK(0, "out of memory"); return -1; }
    j->n = n;
    j->align = align;
    j->slow = slow;
    ar_steal_init(&j->steal, n, align, min_units, nth);
    ar_pool_run(pool, steal_worker, j);
    int once = 1;
    for (long i = 0; i < n; i++) once &= atomic_load(&j->hits[i]) == 1;
    CHECK(once, "ar_steal n %ld align %ld min %ld threads %d slow %d: a row was not taken exactly once", n, align,
          min_units, nth, slow);
    CHECK(atomic_load(&j->bad_bounds) == 0, "ar_steal n %ld align %ld: %d chunks with bad bounds", n, align,
          atomic_load(&j->bad_bounds));
    CHECK(atomic_load(&j->n_chunks) <= MAX_CHUNKS, "ar_steal n %ld: %d chunks", n, atomic_load(&j->n_chunks));
    /* a call after the end finds nothing */
    long lo, hi;
    CHECK(!ar_steal_next(&j->steal, 0, &lo, &hi), "ar_steal n %ld: work left after every thread stopped", n);
    const int rows = slow >= 0 ? atomic_load(&j->by_thread[slow]) : 0;
    free(j);
    return once ? rows : -1;
}

static void check_steal(ar_pool *pool, long n, long align, long min_units, int slow)
{
    run_steal(pool, n, align, min_units, slow);
}

/* The slow thread naps 0.2 ms per chunk while the others run free: they must take part of its
 * share. A run where the scheduler stalled every other thread could still leave it all to the slow
 * one, so this asks for it in one of five runs. */
static void check_slow_thread(ar_pool *pool, int slow)
{
    const int nth = ar_pool_size(pool);
    const long own = (MAX_N + nth - 1) / nth;
    int best = MAX_N;
    for (int run = 0; run < 5 && best >= own; run++) {
        const int rows = run_steal(pool, MAX_N, 1, 1, slow);
        if (rows >= 0 && rows < best) best = rows;
    }
    CHECK(best < own, "ar_steal threads %d: the slow thread %d did %d rows in its best run, its part is %ld", nth,
          slow, best, own);
}

int main(void)
{
    check_split_range();
    for (int nth = 1; nth <= 4; nth++) {
        ar_pool *pool = ar_pool_create(nth);
        CHECK(pool != NULL, "ar_pool_create(%d)", nth);
        if (!pool) continue;
        uint64_t rng = 0x9E3779B97F4A7C15ull + (uint64_t)nth;
        const long sizes[] = { 0, 1, 15, 16, 17, 31, 32, 33, 100, 1000, 4096, MAX_N };
        for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++)
            for (long align = 1; align <= 32; align *= 2)
                check_steal(pool, sizes[k], align, 1 + (long)(test_xorshift(&rng) % 3), -1);
        for (int r = 0; r < 20; r++) {
            const long n = 1 + (long)(test_xorshift(&rng) % MAX_N), align = 1L << (test_xorshift(&rng) % 6);
            check_steal(pool, n, align, 1 + (long)(test_xorshift(&rng) % 4), (int)(test_xorshift(&rng) % (uint64_t)(nth + 1)) - 1);
        }
        if (nth > 1) {
            check_slow_thread(pool, 0);         /* the calling thread */
            check_slow_thread(pool, nth - 1);   /* a worker */
        }
        ar_pool_free(pool);
    }
    TEST_END();
}
