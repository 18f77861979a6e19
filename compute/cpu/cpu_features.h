/* compute/cpu/cpu_features.h — what the CPU we run on can do (the one global feature table).
 *
 * Filled once, lazily and thread-safely, from CPUID/XGETBV on x86 (an ISA counts only when the OS
 * saves its registers) and from getauxval(AT_HWCAP) on AArch64. Kernel dispatch reads it; nothing
 * else in arbor should test CPU features on its own.
 *
 * ARBOR_CPU_ISA caps what the table reports, for every kernel at once: "avx2" (an AVX2 + FMA + F16C
 * machine: AVX-512 and dotprod off), "neon" (NEON without dotprod; on x86 no SIMD at all), "scalar"
 * (no SIMD kernels), or "native" / "avx512" / unset (all detected). It answers "how does arbor run on a CPU without AVX-512" on the
 * machine at hand; a cap above what the CPU has changes nothing. ar_cpu_isa_cap_error() says when
 * the variable held something else (the cap is then ignored). */
#ifndef AR_COMPUTE_CPU_CPU_FEATURES_H
#define AR_COMPUTE_CPU_CPU_FEATURES_H

#include <stdbool.h>

typedef struct ar_cpu_features {
    /* x86-64 */
    bool avx2, fma, f16c;
    bool avx512f, avx512bw, avx512vl, avx512dq, avx512vnni, avx512bf16;
    /* AArch64 */
    bool neon, dotprod;
} ar_cpu_features;

const ar_cpu_features *ar_cpu_features_get(void);
/* NULL, or the message for an ARBOR_CPU_ISA value that is not one of the above. */
const char *ar_cpu_isa_cap_error(void);

/* The x86 kernels' requirement sets (what gemm_avx2.c / gemm_avx512.c are compiled for). */
bool ar_cpu_has_avx2_set(void);    /* avx2 + fma + f16c */
bool ar_cpu_has_avx512_set(void);  /* avx512 f/bw/vl/dq/vnni + the avx2 set (the BF16 kernel
                                      * also needs avx512bf16: gemm.c checks it per type) */
bool ar_cpu_has_neon_dot(void);    /* neon + dotprod */

#endif
