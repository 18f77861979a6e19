/* tests/test.h — the tiny test harness every suite uses.
 *
 * CHECK(cond, fmt, ...) counts one assertion; a failure prints one line with the numbers.
 * TEST_END() prints the closing line "N passed, M failed" (CI reads it) and returns the exit code.
 * Suites that need the oracle or generated models call test_require_*(), which fails loudly
 * (never skips silently) when the fixture is missing. */
#ifndef AR_TESTS_TEST_H
#define AR_TESTS_TEST_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static int test_passed, test_failed;

#define CHECK(cond, ...)                                                         \
    do {                                                                         \
        if (cond) {                                                              \
            test_passed++;                                                       \
        } else {                                                                 \
            test_failed++;                                                       \
            fprintf(stdout, "FAIL %s:%d: ", __FILE__, __LINE__);                 \
            fprintf(stdout, __VA_ARGS__);                                        \
            fputc('\n', stdout);                                                 \
        }                                                                        \
    } while (0)

#define TEST_END()                                                               \
    do {                                                                         \
        printf("%d passed, %d failed\n", test_passed, test_failed);            \
        return test_failed ? 1 : 0;                                              \
    } while (0)

/* Path of a fixture directory set by scripts/run-tests.sh (ARBOR_FIXTURES), e.g. build/fixtures. */
static inline const char *test_fixtures(void)
{
    const char *d = getenv("ARBOR_FIXTURES");
    return d && *d ? d : "build/fixtures";
}

/* Non-zero when running under ASan/UBSan: heavy suites shrink their workloads (never skip). */
static inline int test_sanitized(void)
{
    const char *s = getenv("ARBOR_SANITIZED");
    return s && *s == '1';
}

/* xorshift64 random inputs: the next state of *s (seed it non-zero), and a uniform float in [0, 1) with 24 bits. */
static inline uint64_t test_xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}
static inline float test_uniform(uint64_t *s) { return (float)((test_xorshift(s) >> 40) * (1.0 / 16777216.0)); }

#endif
