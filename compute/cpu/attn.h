/* compute/cpu/attn.h — ISA-specific online-softmax attention blocks behind ar_attn_block
 * (compute/ops.h). A fast path returns 1 when it handled the call, 0 when the shape or the build does
 * not allow it (the caller then runs the scalar reference, ar_attn_block_ref). */
#ifndef AR_COMPUTE_CPU_ATTN_H
#define AR_COMPUTE_CPU_ATTN_H

#include <stddef.h>

#include "compute/ops.h"

int  ar_attn_block_avx512(ar_attn_acc *a, const float *q, const float *k, const float *v, size_t stride, int n,
                          float scale);

/* The scalar reference (what ar_attn_block runs without a fast path). */
void ar_attn_block_ref(ar_attn_acc *a, const float *q, const float *k, const float *v, size_t stride, int n,
                       float scale);

/* Keys per softmax block: both implementations rescale the accumulator once per block of this many. */
enum { AR_ATTN_BLOCK = 64 };

#endif
