/* compute/cpu/cpu_features.c — CPUID / getauxval detection behind ar_cpu_features_get().
 *
 * The table is computed once under pthread_once and never changes afterwards. On x86 an AVX or
 * AVX-512 feature counts only if XCR0 says the OS saves the wider registers. */
#include "compute/cpu/cpu_features.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static ar_cpu_features features;
static pthread_once_t features_once = PTHREAD_ONCE_INIT;
static const char *cap_error;

#if defined(__x86_64__) || defined(__i386__)
static unsigned long long read_xcr0(void)
{
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

static void detect(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    const bool fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave || !avx) return;
    const unsigned long long xcr0 = read_xcr0();
    const bool ymm_ok = (xcr0 & 0x6) == 0x6;           /* SSE + AVX state */
    const bool zmm_ok = ymm_ok && (xcr0 & 0xe0) == 0xe0; /* opmask + ZMM_Hi256 + Hi16_ZMM */
    if (!ymm_ok) return;
    unsigned int max_leaf = __get_cpuid_max(0, 0);
    if (max_leaf < 7) return;
    __cpuid_count(7, 0, a, b, c, d);
    features.fma = fma;
    features.f16c = f16c;
    features.avx2 = (b >> 5) & 1;
    if (zmm_ok) {
        features.avx512f = (b >> 16) & 1;
        features.avx512dq = (b >> 17) & 1;
        features.avx512bw = (b >> 30) & 1;
        features.avx512vl = (b >> 31) & 1;
        features.avx512vnni = (c >> 11) & 1;
        unsigned int a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        features.avx512bf16 = (a1 >> 5) & 1;
        (void)b1; (void)c1; (void)d1;
    }
}
#elif defined(__aarch64__)
static void detect(void)
{
    features.neon = true; /* Advanced SIMD is mandatory in AArch64 */
#if defined(__linux__)
    unsigned long hw = getauxval(AT_HWCAP);
    features.dotprod = (hw >> 20) & 1; /* HWCAP_ASIMDDP */
#endif
}
#else
static void detect(void) {}
#endif

/* ARBOR_CPU_ISA (see the header) */
static void apply_cap(void)
{
    const char *cap = getenv("ARBOR_CPU_ISA");
    if (!cap || !*cap || !strcmp(cap, "native")) return;
    if (!strcmp(cap, "avx512")) return;
    if (!strcmp(cap, "avx2") || !strcmp(cap, "neon") || !strcmp(cap, "scalar")) {
        features.avx512f = features.avx512bw = features.avx512vl = features.avx512dq = false;
        features.avx512vnni = features.avx512bf16 = false;
        features.dotprod = false;
        if (strcmp(cap, "avx2")) features.avx2 = features.fma = features.f16c = false;  /* neon, scalar */
        if (!strcmp(cap, "scalar")) features.neon = false;
        return;
    }
    cap_error = "ARBOR_CPU_ISA must be native, avx512, avx2, neon or scalar; ignored";
}

static void init(void)
{
    memset(&features, 0, sizeof features);
    detect();
    apply_cap();
}

const char *ar_cpu_isa_cap_error(void)
{
    pthread_once(&features_once, init);
    return cap_error;
}

const ar_cpu_features *ar_cpu_features_get(void)
{
    pthread_once(&features_once, init);
    return &features;
}

bool ar_cpu_has_avx2_set(void)
{
    const ar_cpu_features *f = ar_cpu_features_get();
    return f->avx2 && f->fma && f->f16c;
}

bool ar_cpu_has_avx512_set(void)
{
    const ar_cpu_features *f = ar_cpu_features_get();
    return ar_cpu_has_avx2_set() && f->avx512f && f->avx512bw && f->avx512vl && f->avx512dq &&
           f->avx512vnni;
}

bool ar_cpu_has_neon_dot(void)
{
    const ar_cpu_features *f = ar_cpu_features_get();
    return f->neon && f->dotprod;
}
