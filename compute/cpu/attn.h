/* compute/cpu/attn.h — ISA-specific online-softmax attention behind ar_attn_rows (compute/ops.h). A
 * fast path returns 1 when it handled the call, 0 when the shape or the build does not allow it (the
 * caller then runs the scalar reference, ar_attn_rows_ref). */
#ifndef AR_COMPUTE_CPU_ATTN_H
#define AR_COMPUTE_CPU_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "compute/ops.h"

int  ar_attn_rows_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                         const float *const *v, int n, float scale);
int  ar_attn_rows_f16_avx512(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                             const uint16_t *const *v, int n, float scale);

int  ar_attn_rows_avx2(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                       const float *const *v, int n, float scale);
int  ar_attn_rows_f16_avx2(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                           const uint16_t *const *v, int n, float scale);

/* The scalar reference (what ar_attn_rows runs without a fast path). */
void ar_attn_rows_ref(ar_attn_acc *const *acc, const float *const *q, int R, const float *const *k,
                      const float *const *v, int n, float scale);
void ar_attn_rows_f16_ref(ar_attn_acc *const *acc, const float *const *q, int R, const uint16_t *const *k,
                          const uint16_t *const *v, int n, float scale);

#endif
