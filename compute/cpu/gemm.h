/* compute/cpu/gemm.h — quantized matrix kernels: weights x M activation rows, weights read once.
 *
 * The matmul of a forward pass over M nodes: y[m][o] = dot(W row o, x row m). Decode is bound by
 * the weight read, so the kernels read each weight block once per call and use it for every
 * activation row while it sits in registers/L1; extra rows then cost only arithmetic.
 *
 * Numerics are ggml's vec_dot with vec_dot_type: the activation row is first converted to the
 * weight type's dot type (ar_gemm_act_type) with ar_gemm_quantize_act, then each block's integer
 * sum is formed exactly and scaled in float. Only the order of the float additions differs from
 * ggml (and between ISAs), so results agree with llama.cpp to float rounding.
 *
 *   Q4_K Q5_K Q6_K Q2_K Q3_K IQ4_XS -> Q8_K      Q8_0 Q4_0 Q5_0 IQ4_NL -> Q8_0
 *   Q4_1 Q5_1 -> Q8_1      F16 -> F16      BF16 -> BF16      F32 -> F32
 *
 * Activation formats (ar_gemm_quantize_act): Q8_K is bit-identical to ggml's quantize_row_q8_K
 * (= format/quant.c's reference). Q8_0 and Q8_1 follow ggml-cpu's x86 quantize_row_q8_0/q8_1,
 * which is what llama.cpp runs on the machines we compare against: d = amax/127 stored as F16,
 * quants = round-half-even(x * (127/amax)); that can differ by one step from the reference
 * quantizer (roundf, x * (1/d)) on ties. F16/BF16 are round-to-nearest-even conversions.
 * A Q8_K activation row is its n_in / 256 blocks followed by one pair-sum record per block
 * (AR_GEMM_Q8K_PAIRS bytes: the 8 sums of 32 quants, bsums[2j] + bsums[2j+1], as int16), with which the
 * AVX-512 Q4_K / Q5_K kernels fold the sub-block mins in half the 16-bit products; other paths ignore it.
 * A Q8_0 activation row is likewise its n_in / 32 blocks followed by one record per block
 * (AR_GEMM_Q8_0_REC bytes: the block's d widened to float, then -128 x the sum of its 32 quants as
 * int32), with which the AVX-512 Q8_0 / Q4_0 / IQ4_NL kernels take the weights as unsigned (value +
 * 128) against the signed activation, start each block's integer sum at the record's correction
 * (exact) and scale by d without a conversion; other paths ignore it.
 *
 * Dispatch: scalar reference (gemm.c, exactly ggml's generic vec_dot math) for every type above,
 * and fast paths (gemm_avx512.c, gemm_avx2.c, gemm_neon.c) for Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS Q8_0
 * Q4_0 IQ4_NL F32 F16 BF16, chosen once by CPU features (other types use the reference). The fast
 * paths agree with the reference to float rounding and are tested against it (tests/test_gemm.c).
 * They read each weight block once per call and reuse it for all M rows, so a call with M = 16
 * costs far less than 16 calls with M = 1 (numbers: bench/gemm_bench.c).
 *
 * Threading: one call is one thread's share; callers split [0, n_out) into ranges (aligned to
 * AR_GEMM_ROW_ALIGN for best speed) and call ar_gemm per range. Nothing is allocated (but by
 * ar_gemm_pack_tiles, at load). */
#ifndef AR_COMPUTE_CPU_GEMM_H
#define AR_COMPUTE_CPU_GEMM_H

#include <stddef.h>
#include <stdint.h>

/* Output-row ranges that are multiples of this keep every fast path on full tiles. */
#define AR_GEMM_Q8K_PAIRS 16
#define AR_GEMM_Q8_0_REC 8
#define AR_GEMM_ROW_ALIGN 16

/* The activation (dot) type for a weight type; -1 when ar_gemm does not handle the weight type. */
int    ar_gemm_act_type(int wtype);
/* Bytes of one converted activation row of n_in elements (0 if unsupported or misaligned). */
size_t ar_gemm_act_row_bytes(int wtype, int64_t n_in);
/* Convert one float row to the dot type of wtype (see the format notes above). */
void   ar_gemm_quantize_act(int wtype, const float *x, void *xq, int64_t n_in);

/* y[m*ldy + o] = dot(W row o, activation row m) for o in [o_lo, o_hi), m < M.
 * w points at row 0 (rows w_row_bytes apart); activation row m starts at xq + m*xq_row_bytes.
 * n_in must be a multiple of the weight type's block size. */
void   ar_gemm(int wtype, const void *w, size_t w_row_bytes, int64_t n_in, int64_t o_lo,
               int64_t o_hi, const void *xq, size_t xq_row_bytes, int M, float *y, int64_t ldy);

/* ---- the 16-row tile layout -------------------------------------------------------------
 * The AVX-512 K-quant (Q2_K..Q6_K, IQ4_XS), Q8_0, Q4_0 and IQ4_NL kernels work on tiles of 16 weight rows x one
 * block, transposed so that a
 * 32-bit lane holds one row. From the row layout they transpose every tile on every call (16
 * row streams, 2-3 16x16 transposes per tile); in the tile layout the weights are stored that way
 * once, at load. Same bytes, same size, rearranged:
 *   tile (g, b) = rows 16g..16g+15 of block column b, at data + 16g * row_bytes + b * 16 * block_bytes;
 *   byte j of row i's block is at (j / 4) * 64 + 4i + j % 4 in the tile for j < 4 * (block_bytes / 4),
 *   and the bytes after those (Q6_K's and Q3_K's 2-byte d) follow as 16 rows x (block_bytes % 4) bytes. A Q8_0,
 *   Q4_0 or IQ4_NL block is taken as its quants then its d (the 2 head bytes moved behind), so its
 *   dword columns (8; 4 of packed nibbles) hold quants only and the 16 rows' d follow as 16 halves;
 *   Q8_0's quants are stored + 128 (each byte's top bit flipped), the unsigned operand vpdpbusd takes.
 * So dword column k of a tile is one 64-byte vector: lane i = dword k of row i. A layer's weights
 * are then one sequential stream per thread, also for decode. Only matrices of a whole number of
 * tiles (n_out % 16 == 0) take the layout. The AVX2 Q4_K kernel reads the same layout as two 8-row
 * halves (a column's first and second 32 bytes). */

/* Rows longer than this stay in the row layout (callers take one row out on the stack). */
#define AR_GEMM_TILE_ROW_MAX 24576
/* Whether the implementation in use has a tile-layout kernel for wtype and the matrix fits it. */
int    ar_gemm_tiles_wanted(int wtype, int64_t n_in, int64_t n_out);
/* Rearrange n_out rows (a multiple of 16) of a wtype matrix from the row layout to the tile
 * layout, in place. 0, or -1 when the type has no tile layout, n_out does not fit it, or memory
 * for one row group cannot be had (the data is then unchanged). */
int    ar_gemm_pack_tiles(int wtype, void *data, size_t row_bytes, int64_t n_out);
/* Row `row` of a tile-layout matrix back in the row layout (row_bytes bytes to out). */
void   ar_gemm_tile_row(int wtype, const void *data, size_t row_bytes, int64_t row, void *out);
/* ar_gemm for a matrix in the tile layout (any [o_lo, o_hi)). Implementations without a tile
 * kernel for wtype run the row kernel on rows taken back out of the tiles (slow, but exact). */
void   ar_gemm_tiled(int wtype, const void *w, size_t w_row_bytes, int64_t n_in, int64_t o_lo,
                     int64_t o_hi, const void *xq, size_t xq_row_bytes, int M, float *y, int64_t ldy);

/* Force an implementation: "scalar", "avx2", "avx512", "neon"; NULL = best available.
 * Returns 0, or -1 when that implementation is not available on this CPU/build. */
int    ar_gemm_force(const char *isa);
/* The implementation in use ("scalar", "avx2", "avx512", "neon"). */
const char *ar_gemm_isa(void);

/* ---- internal: the per-ISA kernel tables (gemm.c dispatches) ------------------------------ */

/* One weight type's kernel: same contract as ar_gemm without the type. */
typedef void (*ar_gemm_kernel)(const void *w, size_t w_row_bytes, int64_t n_in, int64_t o_lo,
                               int64_t o_hi, const void *xq, size_t xq_row_bytes, int M, float *y,
                               int64_t ldy);

/* Fast kernel for wtype, or NULL (the scalar reference is used then). Each is defined on the
 * architectures its file targets and returns NULL when the file was built without its ISA. */
ar_gemm_kernel ar_gemm_avx512_kernel(int wtype);
/* Q8_K activation rows (nb blocks of 256), bit-identical to ar_quantize_row; 0 when not built. */
int            ar_gemm_avx512_q8_K(const float *x, void *y, int64_t nb);
/* Q8_0 activation rows (nb blocks of 32, then their records), bit-identical to the scalar path; 0 when
 * not built. */
int            ar_gemm_avx512_q8_0(const float *x, void *y, int64_t nb);
/* Its tile-layout kernel for wtype, or NULL. */
ar_gemm_kernel ar_gemm_avx512_tile_kernel(int wtype);
ar_gemm_kernel ar_gemm_avx2_kernel(int wtype);
ar_gemm_kernel ar_gemm_avx2_tile_kernel(int wtype);
/* Q8_K activation rows on AVX2, bit-identical to ar_quantize_row; 0 when not built. */
int            ar_gemm_avx2_q8_K(const float *x, void *y, int64_t nb);
ar_gemm_kernel ar_gemm_neon_kernel(int wtype);
/* The scalar reference for wtype (NULL when unsupported). */
ar_gemm_kernel ar_gemm_scalar_kernel(int wtype);

#endif
