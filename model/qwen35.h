/* model/qwen35.h — the Qwen3.5 / Qwen3.6 dense hybrid model ("qwen35" GGUF): load, per-sequence
 * state, one forward over a batch of nodes, commit.
 *
 * The one idea (docs/ARCHITECTURE.md): every forward takes a batch of NODES. A node is
 * (sequence, token, position, parent); the parent is an earlier node of the same sequence in the
 * same batch, or -1 = "the committed prefix of the sequence".
 *   prefill       = a chain (node i's parent is i-1, the first node's parent is -1)
 *   decode        = one node with parent -1
 *   verification  = a chain or a tree of draft tokens
 *   many agents   = the union of several sequences' chains/trees in one batch
 * Attention: a node sees its sequence's committed KV plus its in-batch ancestors and itself.
 * Gated DeltaNet: a node's recurrent state is its parent's state advanced by its own token.
 *
 * qwen35_forward() never modifies committed state (so a rejected draft costs nothing to undo).
 * qwen35_commit() then makes one root-to-node path of that forward permanent: the K/V of the
 * path's nodes are appended to the sequence's KV pages, and the GDN state S and conv window are
 * advanced along the path from per-node inputs the forward kept in the ctx (exactly the same
 * arithmetic as the forward, so a committed state is bit-identical to what the forward used;
 * no snapshots, no replay forward).
 *
 * Ownership: qwen35_model owns the mmap'd GGUF (weights are used in place); qwen35_seq owns its
 * state; qwen35_ctx owns scratch sized at creation for max_nodes and the thread pool, and the
 * per-node data of the LAST forward (valid until the next forward on that ctx). A ctx serves
 * any number of sequences, one forward at a time (not thread-safe). A model may be shared by
 * several ctxs and seqs.
 *
 * Numerics follow llama.cpp (docs: specs/qwen35.md §3, §8): F32 activations, F32 KV cache,
 * F32 recurrent state; weights of any type arbor can dequantize.
 *
 * Typical use (greedy):
 *     qwen35_load(&m, path, &err); qwen35_ctx_create(&c, m, 64, 0, &err);
 *     qwen35_seq_create(&s, m, 4096, &err);
 *     nodes[i] = (ar_node){ .seq = 0, .token = ids[i], .pos = i, .parent = i - 1,
 *                           .want_logits = i == n - 1 };           // prompt chunk <= max_nodes
 *     qwen35_forward(c, &s, &(ar_batch){ .n_nodes = n, .nodes = nodes, .logits = lg }, &err);
 *     qwen35_commit(c, s, path = {0, 1, ..., n-1}, n, &err);       // n_past = n
 *     then one node per step: { .token = argmax, .pos = n_past, .parent = -1, .want_logits = 1 }
 */
#ifndef AR_MODEL_QWEN35_H
#define AR_MODEL_QWEN35_H

#include <stdbool.h>
#include <stdint.h>

#include "base/error.h"
#include "format/gguf.h"
#include "model/kvcache.h"

#define QWEN35_MAX_LAYERS 256

typedef struct qwen35_hparams {
    int   n_vocab;          /* rows of token_embd */
    int   n_embd;
    int   n_layer;          /* trunk layers = block_count - nextn_predict_layers */
    int   n_layer_all;      /* block_count (MTP blocks included; those are loaded, never run) */
    int   n_nextn;          /* nextn_predict_layers */
    int   n_ctx_train;
    int   n_ff;             /* largest feed_forward_length over the trunk */
    float rms_eps;          /* every RMSNorm and the GDN L2 norm */
    /* gated full attention */
    int   n_head, n_head_kv, head_dim;   /* head_dim = key_length = value_length */
    int   n_rot;                         /* rotated dims per head (partial NeoX rope) */
    float rope_theta;
    int   rope_sections[4];
    /* gated DeltaNet */
    int   ssm_d_conv;                    /* conv kernel taps (4) */
    int   ssm_n_k_heads;                 /* group_count (Q/K heads) */
    int   ssm_n_v_heads;                 /* time_step_rank (V heads) */
    int   ssm_head_dim;                  /* state_size = d_k = d_v */
    int   ssm_d_inner;                   /* n_v_heads * head_dim */
    int   ssm_conv_channels;             /* d_inner + 2 * n_k_heads * head_dim */
    /* layers */
    int   n_attn_layers, n_gdn_layers;
    bool  recurrent[QWEN35_MAX_LAYERS];  /* per trunk layer: true = GDN, false = attention */
    bool  tied_output;                   /* no output.weight: the LM head is token_embd */
} qwen35_hparams;

typedef struct qwen35_model qwen35_model;

/* Open the GGUF (mmap), read hparams, bind and validate every tensor. On failure the error lists
 * ALL problems found (missing tensors, wrong shapes or types, bad keys), not just the first. An MTP
 * block (layers >= n_layer) is checked for presence only and never run. */
int  qwen35_load(qwen35_model **out, const char *path, ar_error *err);
void qwen35_free(qwen35_model *m);
const qwen35_hparams *qwen35_hparams_of(const qwen35_model *m);
/* KV cache element type: F16 (the default, llama.cpp's default cache type) or F32. Set it before
 * creating any context or sequence of the model (they must all agree). */
void qwen35_set_kv_f32(qwen35_model *m, bool f32);
bool qwen35_kv_f32(const qwen35_model *m);
const gguf_file      *qwen35_gguf(const qwen35_model *m);         /* for the tokenizer */

/* ---- per-sequence state ------------------------------------------------------------------
 * Paged attention KV (F16 or F32, qwen35_set_kv_f32; pages of page_tokens positions holding every attention layer's K and
 * V, allocated lazily by commit as the sequence grows), GDN state S per GDN layer and V head
 * (d_k x d_v, F32) and the conv window (last d_conv-1 raw conv inputs), and n_past. */
typedef struct qwen35_seq qwen35_seq;

/* Computes and logs the memory needed for n_ctx tokens ("needs 3.1 GiB for 32768 tokens") and
 * fails with AR_ENOMEM before allocating when it would not fit in MemAvailable. n_ctx <= 0 means
 * n_ctx_train. */
int  qwen35_seq_create(qwen35_seq **out, const qwen35_model *m, int n_ctx, ar_error *err);
/* Same with an explicit KV page size (tests use small pages to cross page boundaries). */
int  qwen35_seq_create_paged(qwen35_seq **out, const qwen35_model *m, int n_ctx, int page_tokens,
                             ar_error *err);
void qwen35_seq_free(qwen35_seq *s);
void qwen35_seq_reset(qwen35_seq *s);            /* back to empty (n_past 0, zero state); keeps its private
                                                    pages for reuse, lets go of shared ones */
void qwen35_seq_clear(qwen35_seq *s);            /* back to empty and every KV page let go (memory returned) */
int  qwen35_seq_n_past(const qwen35_seq *s);
int  qwen35_seq_n_ctx(const qwen35_seq *s);
/* Bytes a sequence of n_ctx tokens needs at most (state + full KV). */
uint64_t qwen35_seq_bytes(const qwen35_model *m, int n_ctx);

/* Same as qwen35_seq_create_paged, counting (and capping, see model/kvcache.h) the KV pages in pool
 * (NULL: none); quiet: no "sequence needs ..." log line (a scheduler creating many). */
int  qwen35_seq_create_pooled(qwen35_seq **out, const qwen35_model *m, int n_ctx, int page_tokens, ar_kv_pool *pool,
                              bool quiet, ar_error *err);
int  qwen35_seq_page_tokens(const qwen35_seq *s);
const ar_kv_pages *qwen35_seq_kv(const qwen35_seq *s);   /* tests, stats: page references */

/* ---- snapshots (the prefix cache's unit) -------------------------------------------------------
 * A snapshot is the committed state of a sequence at its n_past: references to its KV pages for
 * [0, n_past) (shared, never copied: a sequence that later appends to a shared page copies that page
 * first) and a copy of the GDN state S and conv window (qwen35_snap_state_bytes: n_gdn_layers x
 * (n_v_heads x d_k x d_v + (d_conv-1) x channels) floats, ~150 MiB at the 27B shape). Restoring it
 * into a sequence of the same model and page size (any n_ctx >= n_past) makes that sequence
 * bit-identical to the original at that point: its next forward gives the same logits. A snapshot
 * is independent of the sequence it came from (either may be freed or reset first). */
typedef struct qwen35_snap qwen35_snap;

int  qwen35_snap_take(qwen35_snap **out, const qwen35_seq *s, ar_error *err);
/* s drops its pages and state and becomes the snapshot's state (n_past = the snapshot's). */
int  qwen35_seq_restore(qwen35_seq *s, const qwen35_snap *snap, ar_error *err);
void qwen35_snap_free(qwen35_snap *snap);
int  qwen35_snap_n_past(const qwen35_snap *snap);
size_t qwen35_snap_state_bytes(const qwen35_snap *snap);   /* the copied recurrent state */
/* Cache accounting (ar_kv_pin on the snapshot's pages): bytes of KV pages newly held (+1) or let go (-1). */
size_t qwen35_snap_pin(const qwen35_snap *snap, int delta);

/* ---- a batch of nodes ------------------------------------------------------------------- */
typedef struct ar_node {
    int32_t seq;        /* index into the seqs array passed to qwen35_forward */
    int32_t token;
    int32_t pos;        /* absolute position (rope); normally n_past + depth in the batch */
    int32_t parent;     /* -1 = committed prefix of seq, else index of an EARLIER node of the same seq */
    bool    want_logits;
    bool    commit;     /* the caller WILL commit this node (prompt chunks, plain decoding). Either all
                         * nodes of a sequence in the batch set it or none; those that do form one
                         * chain from the committed prefix in batch order. The forward then advances
                         * the sequence's recurrent state in place (no copy, and qwen35_commit of
                         * exactly that chain skips the GDN replay); any other commit is refused. */
    bool    capture;    /* keep the sequence's recurrent state after this node (a commit node; at most one
                         * per batch) so that, once the chain is committed, qwen35_snap_take_captured makes
                         * the snapshot at this node's position without cutting the chain there */
} ar_node;

typedef struct ar_batch {
    int n_nodes;
    const ar_node *nodes;
    int n_taps;                 /* optional: capture the hidden state ENTERING these layers (DFlash);  */
    const int *tap_layers;      /*   a value of n_layer means the output of the last layer (pre-norm) */
    float *taps;                /* out [n_nodes][n_taps][n_embd], may be NULL when n_taps == 0 */
    float *logits;              /* out [n_logit_nodes][n_vocab], one row per want_logits node, in node order */
} ar_batch;

typedef struct qwen35_ctx qwen35_ctx;

/* Scratch for batches of up to max_nodes nodes, and a thread pool (n_threads <= 0: one per core).
 * Memory grows with max_nodes (activations plus the per-node commit inputs: about
 * 2.3 MiB per node at the 27B shape), so prefill long prompts in chunks of max_nodes. */
int  qwen35_ctx_create(qwen35_ctx **out, const qwen35_model *m, int max_nodes, int n_threads, ar_error *err);
void qwen35_ctx_free(qwen35_ctx *c);
int  qwen35_ctx_max_nodes(const qwen35_ctx *c);

/* Evaluate a batch. seqs[node.seq] is the sequence of each node. Validates the batch (parents
 * earlier and of the same seq, tokens < n_vocab, room in the context) and fails with AR_EINVAL /
 * AR_ERANGE before any work. Committed state is NOT modified, except the recurrent state of
 * sequences whose nodes set ar_node.commit (advanced in place, see there). */
int  qwen35_forward(qwen35_ctx *c, qwen35_seq *const *seqs, const ar_batch *b, ar_error *err);

/* Make a path of the last forward permanent for s: path = node indices of that forward, root first,
 * each the parent of the next, path[0]'s parent -1, all of s. Appends K/V (n_past grows by n_path)
 * and advances the GDN state and conv window along the path. n_path == 0 is a no-op. After a forward
 * whose nodes of s set ar_node.commit, the path must be exactly those nodes (else AR_EINVAL, and s
 * cannot be used again until qwen35_seq_reset / _clear / _restore). */
int  qwen35_commit(qwen35_ctx *c, qwen35_seq *s, const int *path, int n_path, ar_error *err);

/* After a forward with an ar_node.capture node of s and the commit of its chain: the snapshot of s
 * at that node's position (n_past = its position + 1), bit-identical to qwen35_snap_take on a
 * sequence whose chain had been cut after that node. Once per capture; AR_EINVAL when none is ready. */
int  qwen35_snap_take_captured(qwen35_snap **out, qwen35_ctx *c, const qwen35_seq *s, ar_error *err);

#endif
