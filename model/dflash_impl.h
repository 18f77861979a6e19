/* model/dflash_impl.h — internal structs shared by the DFlash drafter files (not a public header).
 *
 *   dflash_load.c   layouts (llama.cpp / Lucebox), hparams, tensor binding, dflash_model lifetime
 *   dflash.c        state (context K/V), ctx, append (KV injection) and the block forward */
#ifndef AR_MODEL_DFLASH_IMPL_H
#define AR_MODEL_DFLASH_IMPL_H

#include "compute/ops.h"
#include "model/dflash.h"

typedef struct dflash_layer {
    const float *attn_norm, *ffn_norm, *q_norm, *k_norm;
    ar_weight wq, wk, wv, wo;
    ar_weight ffn_gate, ffn_up, ffn_down;
    bool shared_kv;           /* no attn_v: V = RMSNorm(K before k_norm), no gain (llama.cpp) */
} dflash_layer;

struct dflash_model {
    gguf_file *gguf;
    dflash_hparams hp;
    const qwen35_model *target;
    int n_vocab;              /* rows of the LM head (= target vocab) */
    ar_weight fc;             /* [n_tap * n_embd] -> n_embd */
    const float *hidden_norm; /* enc.output_norm / dflash.hidden_norm */
    const float *output_norm;
    ar_weight tok_embd;       /* the target's (or the drafter's own, rare): a view, data not copied */
    ar_weight lm_head;        /* idem */
    dflash_layer *layers;
    ar_rope rope;
};

#endif
