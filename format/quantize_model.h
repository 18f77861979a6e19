/* format/quantize_model.h — whole-model quantization (what `arbor quantize` runs).
 *
 * Reads a GGUF, decides the type of every tensor exactly as llama.cpp's llama_model_quantize does
 * for the chosen file type (its "mixes": Q4_K_M puts Q6_K on some ffn_down / attn_v / attn_qkv,
 * keeps norms, 1-D tensors and ssm_conv1d in their type, ...), converts with the reference
 * quantizers of format/quant.h and writes a new GGUF with the same metadata plus
 * general.file_type. Without an importance matrix llama.cpp's output is the same byte for byte
 * in every tensor, which tests/test_quant_oracle checks. */
#ifndef AR_FORMAT_QUANTIZE_MODEL_H
#define AR_FORMAT_QUANTIZE_MODEL_H

#include "base/error.h"
#include "format/gguf.h"

/* File types (llama.cpp's llama_ftype numbers, stored as general.file_type). */
typedef struct ar_ftype_info {
    const char *name;       /* "q4_k_m" */
    int file_type;          /* LLAMA_FTYPE_MOSTLY_Q4_K_M = 15 */
    int default_type;       /* AR_Q4_K: the type of a 2-D weight the mix does not treat specially */
} ar_ftype_info;

/* Case-insensitive lookup ("Q4_K_M", "q4_k_m"); NULL when arbor does not offer that file type. */
const ar_ftype_info *ar_ftype_find(const char *name);
/* "f32, f16, bf16, q8_0, ..." for messages. */
const char *ar_ftype_list(void);

/* The type llama_model_quantize gives each tensor of `f` for file type `ft`: types[i] is for
 * gguf_tensor_at(f, i). Fails (naming the tensor) where llama.cpp would refuse, e.g. a fallback
 * type that does not exist. */
int ar_quantize_plan(const gguf_file *f, const ar_ftype_info *ft, int *types, ar_error *err);

/* Quantize `in` to `out` with file type `ftype` (a name from ar_ftype_list) on n_threads threads
 * (<= 0: one per core). Input tensors of any type arbor can dequantize are converted through F32;
 * a tensor that must change type but whose type arbor cannot read is an error naming it. Tensors
 * stream one at a time through the GGUF writer, so memory stays at about one tensor. */
int ar_quantize_model(const char *in, const char *out, const char *ftype, int n_threads, ar_error *err);

#endif
