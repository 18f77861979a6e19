/* model/mkdraft.h — synthetic DFlash drafter GGUFs with seeded random weights (`arbor mkdraft`).
 *
 * A drafter is made for one target GGUF (qwen35): it takes the target's hidden size (the drafter
 * embeds with the target's token table and feeds the target's LM head), its layer count (for the
 * default tap layers) and its tokenizer (copied, as llama.cpp's converter does). The file carries
 * no token_embd / output: llama.cpp must pair it with the target (ctx_other), arbor with
 * dflash_load(..., target).
 *
 * Layouts (specs/dflash.md §2): llama.cpp's arch `dflash` (default: dflash.* keys, fc.weight
 * {n_tap*E, E}, enc.output_norm, dflash.target_layers = HF id + 1, tokenizer + mask_token_id) or
 * Lucebox's arch `qwen35-dflash-draft` (prefixed keys, dflash.fc.weight, dflash.hidden_norm.weight,
 * HF tap ids, no tokenizer). Every tensor's values depend only on (seed, llama.cpp tensor name, row),
 * so the two layouts of the same parameters hold identical weights. Written tensor by tensor
 * through the GGUF writer's fill callback. */
#ifndef AR_MODEL_MKDRAFT_H
#define AR_MODEL_MKDRAFT_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "base/pool.h"

#define MKDRAFT_MAX_LAYERS 64
#define MKDRAFT_MAX_TAPS 64

typedef enum { MKDRAFT_LLAMACPP = 0, MKDRAFT_LUCEBOX = 1 } mkdraft_layout;

typedef struct mkdraft_params {
    char preset[16];
    const char *target;       /* target qwen35 GGUF (required) */
    const char *name;         /* general.name; NULL = "arbor-synthetic-dflash-<preset>" */
    int n_layer, n_head, n_head_kv, head_dim, n_ff;
    int block_size;
    int n_tap;                /* 0 = default rule (preset) */
    int target_layers[MKDRAFT_MAX_TAPS];   /* HF ids: OUTPUT of target layer i (0 <= i < target n_layer) */
    float rope_theta, eps;
    int ctx;                  /* context_length */
    int type;                 /* ar_dtype of the 2-D weights (norms stay F32) */
    uint64_t seed;
    mkdraft_layout layout;
    int swa_window;           /* > 0: layers 0..n_layer-2 slide with this window, the last is full */
    bool causal;              /* dflash.attention.causal = true (llama.cpp layout only) */
    int32_t mask_token;       /* < 0: 248070 when the vocab has it, else the last token id */
    const char *variant;      /* NULL, "dflash2" or "dspark": adds that family's marker tensor/keys only
                               * (files no engine can run; for tests of the refusal path) */
    bool quiet;
} mkdraft_params;

/* Fill p with a preset: "tiny" (2 layers, 4/2 heads x 64, ff 512, block 16, 3 taps spread over the
 * target) or "mid" (5 layers, 16/4 x 128, ff 6144, block 16, 5 taps by z-lab's rule, f16). */
int mkdraft_preset(mkdraft_params *p, const char *preset, ar_error *err);

/* Write the drafter to path. pool may be NULL. */
int mkdraft_write(const mkdraft_params *p, const char *path, ar_pool *pool, ar_error *err);

#endif
