/* compute/cpu/gdn.h — ISA-specific Gated DeltaNet recurrence steps behind ar_gdn_step and ar_gdn_steps
 * (compute/ops.h).
 * Each returns 1 when it handled the call, 0 when the shape or the build does not allow it (the
 * caller then runs the scalar reference, ar_gdn_step_ref). */
#ifndef AR_COMPUTE_CPU_GDN_H
#define AR_COMPUTE_CPU_GDN_H

#include <stddef.h>

int ar_gdn_step_avx512(float *St, const float *q, const float *k, const float *v, float g, float beta,
                       float *o, int d_k, int d_v, float scale);
int ar_gdn_steps_avx512(float *St, int T, const float *q, const float *k, const float *v, size_t ld_u,
                        const float *g, const float *beta, size_t ld_gb, float *o, size_t ld_o, int d_k, int d_v,
                        float scale);

int ar_gdn_step_avx2(float *St, const float *q, const float *k, const float *v, float g, float beta,
                     float *o, int d_k, int d_v, float scale);

/* The scalar reference (what ar_gdn_step runs without a fast path). */
void ar_gdn_step_ref(float *St, const float *q, const float *k, const float *v, float g, float beta,
                     float *o, int d_k, int d_v, float scale);

#endif
