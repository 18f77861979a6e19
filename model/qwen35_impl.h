/* model/qwen35_impl.h — internal structs shared by the qwen35 model files (not a public header).
 *
 *   qwen35_load.c   hparams, tensor binding and validation, qwen35_model lifetime
 *   qwen35_seq.c    per-sequence state (KV pages, GDN state, conv window), memory check
 *   qwen35.c        ctx, forward over a batch of nodes, commit */
#ifndef AR_MODEL_QWEN35_IMPL_H
#define AR_MODEL_QWEN35_IMPL_H

#include "compute/ops.h"
#include "model/kvcache.h"
#include "model/qwen35.h"

typedef struct qwen35_layer {
    bool recurrent;
    int  kind_index;              /* index among attention layers or among GDN layers */
    int  n_ff;
    const float *attn_norm, *post_attention_norm;
    ar_weight ffn_gate, ffn_up, ffn_down;
    /* attention */
    ar_weight wq, wk, wv;         /* wq: 2 * n_head * head_dim rows (query and gate per head) */
    ar_weight wqkv_attn;          /* fused alternative (n_rows = q + k + v); type < 0 when absent */
    ar_weight wo;
    const float *q_norm, *k_norm;
    /* gated DeltaNet */
    ar_weight ssm_qkv, ssm_gate, ssm_beta, ssm_alpha, ssm_out;
    const float *ssm_conv1d;      /* [channels][taps] */
    const float *ssm_dt_bias, *ssm_a, *ssm_norm;
} qwen35_layer;

struct qwen35_model {
    gguf_file *gguf;
    qwen35_hparams hp;
    ar_weight token_embd, output;
    const float *output_norm;
    qwen35_layer *layers;         /* n_layer trunk layers */
    ar_rope rope;
    bool kv_f32;                  /* KV cache elements: F32 instead of F16 (qwen35_set_kv_f32) */
};

struct qwen35_seq {
    const qwen35_model *m;
    int n_ctx, n_past;
    ar_kv_pages kv;
    float *gdn_state;             /* [n_gdn][n_v_heads][d_v][d_k] (transposed, as llama.cpp) */
    float *conv;                  /* [n_gdn][taps-1][channels], oldest row first */
    size_t state_floats, conv_floats;   /* per GDN layer */
    int gdn_ahead;                /* nodes a forward advanced gdn_state over in place (ar_node.commit), */
};                                /*   not yet committed; 0 otherwise */

/* Rearrange *w in place in f's private mapping if the compute backend reads it faster in another
 * layout (ar_weight_pack); adds its bytes to *bytes when it did. A matrix that cannot be rearranged
 * stays as it is, with a warning: every op reads either layout. Shared with dflash_load.c. */
void qwen35_pack_weight(gguf_file *f, ar_weight *w, uint64_t *bytes);

/* Floats per GDN layer of the recurrent state S and of the conv window (qwen35_seq.state_floats,
 * conv_floats). */
size_t qwen35_state_floats(const qwen35_hparams *hp);
size_t qwen35_conv_floats(const qwen35_hparams *hp);

/* The recurrent-state buffers of sequences, snapshots and captures: n_gdn_layers x qwen35_state_floats (the
 * GDN state) or x qwen35_conv_floats (the conv window) floats, from base/bigmem.h (huge pages where the
 * kernel has them: a new snapshot then costs ~10 page faults instead of ~4,600), zero-filled when zero is
 * set (a snapshot or capture overwrites the whole buffer and does not ask). NULL when out of memory.
 * qwen35_state_free needs the same count. */
float *qwen35_state_alloc(size_t floats, int zero);
void   qwen35_state_free(float *p, size_t floats);

/* A snapshot of s at n_past (<= s->n_past): shares the KV pages of [0, n_past) and takes ownership of
 * gdn_state and conv (from qwen35_state_alloc, laid out as in qwen35_seq) on success; on failure they
 * stay the caller's. */
int qwen35_snap_adopt(qwen35_snap **out, const qwen35_seq *s, int n_past, float *gdn_state, float *conv, ar_error *err);

#endif
