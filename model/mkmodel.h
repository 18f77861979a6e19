/* model/mkmodel.h — synthetic qwen35 GGUFs with seeded random weights (`arbor mkmodel`).
 *
 * A model is described by mkmodel_params (start from a preset, override any field), and written
 * tensor by tensor through the GGUF writer's fill callback, so a 27B-shape model streams to disk
 * without ever being held in memory. Every tensor's values depend only on (seed, tensor name,
 * row), never on the thread count or on tensor order, so the same parameters give the same bytes.
 *
 * Weight types: 2-D projections take `type` (F32/F16/BF16 by conversion, quantized types by
 * quantizing the random floats with ar_quantize_row, or — with random_blocks — by writing random
 * but valid blocks directly, which is how the 27b preset stays fast). 1-D tensors, norms,
 * ssm_conv1d, ssm_a and ssm_dt.bias are always F32, as llama.cpp's converter writes them. */
#ifndef AR_MODEL_MKMODEL_H
#define AR_MODEL_MKMODEL_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "base/pool.h"

#define MKMODEL_MAX_LAYERS 512

typedef struct mkmodel_params {
    char preset[16];          /* name of the preset the values came from ("tiny", "mid", "27b") */
    const char *name;         /* general.name; NULL = "arbor-synthetic-<preset>" */

    /* shape (qwen35 hyperparameters, spec qwen35.md §1) */
    int n_layer;              /* trunk layers */
    int n_embd, n_ff;
    int n_head, n_head_kv, head_dim, rope_dim;
    float rope_theta, eps;
    int gdn_k_heads, gdn_v_heads, gdn_head_dim, conv_kernel;
    int full_attn_interval;
    bool has_recurrent;       /* write qwen35.attention.recurrent_layers from `recurrent` */
    int n_recurrent;          /* entries given in `recurrent` (must equal n_layer) */
    bool recurrent[MKMODEL_MAX_LAYERS];
    bool tied;                /* no output.weight: llama.cpp reuses token_embd */
    int ctx;                  /* context_length (n_ctx_train) */
    int nextn;                /* MTP blocks appended after the trunk (0 or 1) */

    /* weights */
    int type;                 /* ar_dtype of the 2-D projections */
    bool random_blocks;       /* quantized types: random valid blocks instead of quantizing floats */
    uint64_t seed;

    /* tokenizer: vocab = path of a GGUF whose tokenizer.* keys are copied, or "small:N" (a reduced
     * byte-level BPE vocab cut from vocab_src), or NULL = all of vocab_src. pad_vocab > n pads with
     * "[PAD<id>]" tokens of type UNUSED. */
    const char *vocab;
    const char *vocab_src;    /* NULL = $ARBOR_FIXTURES/vocab-qwen35.gguf (default build/fixtures) */
    int pad_vocab;
    const char *chat_template;/* text; NULL = the vocab source's template, else a short Qwen-style one */

    bool quiet;               /* no progress output */
} mkmodel_params;

/* Fill p with a preset ("tiny", "mid", "27b"). Returns AR_OK or AR_EINVAL naming the preset. */
int mkmodel_preset(mkmodel_params *p, const char *preset, ar_error *err);

/* Check shapes for consistency (head ratios, rope dims, layer flags ...). */
int mkmodel_validate(const mkmodel_params *p, ar_error *err);

/* Layer il (< n_layer) is Gated DeltaNet (true) or full attention (false). */
bool mkmodel_is_recurrent(const mkmodel_params *p, int il);

/* Number of weights the model will hold (all tensors, MTP included), given n_vocab. */
int64_t mkmodel_n_params(const mkmodel_params *p, int64_t n_vocab);

/* Write the model to path. pool may be NULL (single thread). The output does not depend on
 * the pool size. */
int mkmodel_write(const mkmodel_params *p, const char *path, ar_pool *pool, ar_error *err);

#endif
