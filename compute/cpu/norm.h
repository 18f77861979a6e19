/* compute/cpu/norm.h — ISA-specific row norms and the Gated DeltaNet short convolution behind
 * compute/ops.h's ar_rmsnorm, ar_l2norm and ar_conv_step. Each fast path returns 1 when it handled the
 * call, 0 when the build does not allow it (the caller then runs the scalar reference). */
#ifndef AR_COMPUTE_CPU_NORM_H
#define AR_COMPUTE_CPU_NORM_H

int ar_rmsnorm_avx512(float *y, const float *x, const float *w, int n, float eps);
int ar_l2norm_avx512(float *x, int n, float eps);
int ar_conv_step_avx512(float *out, const float *const *rows, const float *w, int channels, int taps);
int ar_rmsnorm_avx2(float *y, const float *x, const float *w, int n, float eps);
int ar_l2norm_avx2(float *x, int n, float eps);
int ar_conv_step_avx2(float *out, const float *const *rows, const float *w, int channels, int taps);

/* The scalar references (what ops.c runs without a fast path). */
void ar_rmsnorm_ref(float *y, const float *x, const float *w, int n, float eps);
void ar_l2norm_ref(float *x, int n, float eps);
void ar_conv_step_ref(float *out, const float *const *rows, const float *w, int channels, int taps);

#endif
