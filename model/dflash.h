/* model/dflash.h — the DFlash block-diffusion drafter (specs/dflash.md §1-2): load, context cache
 * of committed target features, one non-causal block forward -> draft logits.
 *
 * What the drafter is: a few Qwen3-style decoder layers that never see their own tokens' history.
 * Their keys/values come from two row sets:
 *   context rows  c_p = RMSNorm(W_fc · F_p) * hidden_norm for every COMMITTED position p, where F_p is
 *                 the concatenation of the target's hidden state ENTERING each tap layer (llama.cpp's
 *                 "layer input" convention, dflash_tap_layers()). Per drafter layer: K = RoPE(k_norm(Wk c_p)),
 *                 V = Wv c_p, computed once when the features are appended (dflash_append) and kept
 *                 in the state, like llama.cpp's "KV injection";
 *   block rows    [anchor, MASK x (n_block-1)] at positions P..P+n_block-1, embedded with the TARGET's
 *                 token table; only they make queries, and they attend to the visible context plus
 *                 the whole block (non-causal; per-layer sliding windows and an optional causal
 *                 block follow §1.5 and dflash_swa_mode).
 * Logits = TARGET LM head (shared by pointer, never copied) · output_norm(h). Row j >= 1 predicts the
 * token at position P+j; row 0 (the anchor) is usually skipped (dflash_draft's row0).
 *
 * Two GGUF layouts load (dflash_layout() says which): llama.cpp's arch `dflash` (fc.weight,
 * enc.output_norm.weight, dflash.target_layers = HF id + 1, tokenizer.ggml.mask_token_id) and
 * Lucebox's arch `dflash-draft` / `qwen35-dflash-draft` (dflash.fc.weight, dflash.hidden_norm.weight,
 * <arch>.dflash.target_layer_ids = HF ids, <arch>.dflash.mask_token_id). Both map to the same
 * model; tap layers are always reported in llama.cpp's convention. DFlash2 (selector/conv heads),
 * DSpark (Markov head), reduced draft vocabularies and Gemma/Laguna extras are refused with a
 * message naming what was found.
 *
 * Ownership: dflash_model owns its mmap'd GGUF and borrows the target (which must outlive it);
 * dflash_state owns the context K/V of one sequence; dflash_ctx owns scratch for up to max_rows rows
 * and a thread pool. Nothing is allocated per step. Not thread-safe per ctx.
 *
 * Typical use (speculative-simple style, spec §3):
 *     dflash_load(&d, path, target, &err); dflash_ctx_create(&c, d, 64, 0, &err);
 *     dflash_state_create(&s, d, n_ctx, &err);
 *     taps = dflash_tap_layers(d, &n_tap);   // pass to qwen35_forward via ar_batch.n_taps/tap_layers/taps
 *     target forward over x_0..x_{N-2} with taps -> feats [N-1][n_tap * n_embd]
 *     dflash_append(c, s, feats, N-1, 0, &err);                       // n_past = N-1
 *     dflash_draft(c, s, x_{N-1}, N-1, B, 1, logits, &err);            // rows 1..B-1 -> drafts
 *     after verification: dflash_append(c, s, verify_feats, n_accepted + 1, P, &err) */
#ifndef AR_MODEL_DFLASH_H
#define AR_MODEL_DFLASH_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "format/gguf.h"
#include "model/qwen35.h"

#define DFLASH_MAX_LAYERS 64
#define DFLASH_MAX_TAPS 64

typedef struct dflash_hparams {
    const char *layout;       /* "llama.cpp" or "lucebox" (static string) */
    char arch[32];            /* general.architecture as found */
    int n_layer, n_embd, n_ff;
    int n_head, n_head_kv, head_dim, n_rot;
    float rms_eps;
    float rope_theta;         /* the DRAFTER's own theta */
    int rope_sections[4];     /* llama.cpp M-RoPE drafts: [n_rot/2, 0, 0, 0] (== plain NeoX for text) */
    float attn_scale;         /* 1/sqrt(head_dim) unless dflash.attention.scale */
    float embd_scale;         /* 1 unless dflash.embedding_scale */
    int block_size;           /* trained block length (16 when the file does not say) */
    int32_t mask_token;
    int n_tap;
    int tap_layers[DFLASH_MAX_TAPS];   /* target layer whose INPUT is tapped (HF id + 1); n_layer = last output */
    int n_ctx_train;
    bool causal;              /* dflash.attention.causal: block attention causal on every layer */
    int swa_window;           /* 0: no sliding-window layers */
    bool swa[DFLASH_MAX_LAYERS];
    int n_swa_layers;
} dflash_hparams;

typedef struct dflash_model dflash_model;
typedef struct dflash_state dflash_state;
typedef struct dflash_ctx dflash_ctx;

/* What a GGUF is, without a target: NULL when it is not a drafter at all, else a short static
 * description, e.g. "DFlash drafter (llama.cpp layout, arch dflash)", "DFlash drafter (Lucebox layout,
 * arch dflash-draft)", "DFlash2 drafter (not supported)", "DSpark drafter (not supported)". For
 * `arbor info`. */
const char *dflash_file_kind(const gguf_file *f);

/* Open the drafter, check it against the target (same hidden size, tap layers that exist, mask
 * token inside the vocabulary, LM head shape) and bind every tensor. All problems are reported
 * in one message. The target must outlive the drafter. */
int  dflash_load(dflash_model **out, const char *path, const qwen35_model *target, ar_error *err);
void dflash_free(dflash_model *d);
const dflash_hparams *dflash_hparams_of(const dflash_model *d);
const char *dflash_layout(const dflash_model *d);              /* "llama.cpp" or "lucebox" */
/* Target layer indices whose INPUT is tapped, in feature order (llama.cpp convention: HF id + 1;
 * a value equal to the target's n_layer means the last layer's output, before the final norm). */
const int *dflash_tap_layers(const dflash_model *d, int *n);
int     dflash_block_size(const dflash_model *d);
int32_t dflash_mask_token(const dflash_model *d);
/* Floats per committed position that dflash_append expects: n_tap * n_embd. */
int     dflash_feature_size(const dflash_model *d);

/* ---- context cache of one sequence ---------------------------------------------------------
 * K (k_norm + RoPE applied) and V of every drafter layer for committed positions 0..n_past-1 (F32).
 * Memory: n_ctx * n_layer * 2 * n_head_kv * head_dim floats, allocated at creation (pages are
 * touched only as the cache fills). */
int  dflash_state_create(dflash_state **out, const dflash_model *d, int n_ctx, ar_error *err);
void dflash_state_free(dflash_state *s);
void dflash_state_reset(dflash_state *s);                      /* n_past = 0 */
int  dflash_state_n_past(const dflash_state *s);
int  dflash_state_n_ctx(const dflash_state *s);
/* Drop positions >= n_past (0 <= n_past <= current n_past). Only needed when features of
 * positions that later turn out uncommitted were appended. Returns AR_OK or AR_EINVAL. */
int  dflash_rollback(dflash_state *s, int n_past);

/* ---- forward ------------------------------------------------------------------------------- */
typedef enum dflash_swa_mode {
    DFLASH_SWA_LLAMACPP = 0,  /* default: per query p1, key p0 hidden iff p1 - p0 >= W (future block keys visible) */
    DFLASH_SWA_LUCEBOX  = 1,  /* SWA layers: block causal, context window [P-W, P) for every query */
} dflash_swa_mode;

/* Scratch for up to max_rows rows per call (a draft block of n_block <= max_rows; appends of any
 * length are split into chunks of max_rows) and a pool of n_threads (<= 0: one per core). */
int  dflash_ctx_create(dflash_ctx **out, const dflash_model *d, int max_rows, int n_threads, ar_error *err);
void dflash_ctx_free(dflash_ctx *c);
void dflash_ctx_set_swa_mode(dflash_ctx *c, dflash_swa_mode mode);

/* Append committed target features [n][n_tap * n_embd] for positions pos0 .. pos0+n-1; pos0 must be
 * the state's n_past (the cache is contiguous). Computes and stores their K/V for every layer. */
int  dflash_append(dflash_ctx *c, dflash_state *s, const float *features, int n, int pos0, ar_error *err);

/* One non-causal block forward: tokens [anchor, MASK x (n_block-1)] at positions pos..pos+n_block-1
 * (pos must equal n_past: the anchor is the first token without features). Writes the logits of
 * block rows row0..n_block-1 to logits [n_block - row0][n_vocab] (row0 = 1 skips the anchor row's
 * LM head). The state is not modified (block K/V are never cached). */
int  dflash_draft(dflash_ctx *c, const dflash_state *s, int32_t anchor, int pos, int n_block, int row0,
                  float *logits, ar_error *err);

#endif
