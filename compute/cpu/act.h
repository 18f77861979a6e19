/* compute/cpu/act.h — ISA-specific elementwise activations behind compute/ops.h's ar_silu_mul. Each
 * fast path returns 1 when it handled the call, 0 when the build does not allow it (the caller then runs
 * the scalar reference). */
#ifndef AR_COMPUTE_CPU_ACT_H
#define AR_COMPUTE_CPU_ACT_H

#include <stdint.h>

int  ar_silu_mul_avx512(float *y, const float *g, const float *u, int64_t n);
int  ar_silu_mul_avx2(float *y, const float *g, const float *u, int64_t n);

/* The scalar reference: y[i] = silu(g[i]) * (u ? u[i] : 1), libm expf. */
void ar_silu_mul_ref(float *y, const float *g, const float *u, int64_t n);

#endif
