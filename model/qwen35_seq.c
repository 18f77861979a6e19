/* model/qwen35_seq.c — per-sequence state of a qwen35 model, and snapshots of it.
 *
 * Holds what a sequence has committed: attention K/V in pages (model/kvcache.h, allocated as the
 * sequence grows, shared by reference with snapshots and other sequences), the GDN state S of every
 * GDN layer and V head (F32, stored transposed as llama.cpp does: St[c][i] = S[i][c]) and the conv
 * window (last d_conv-1 raw conv inputs per GDN layer). Only qwen35_commit (model/qwen35.c) and
 * qwen35_seq_restore change it; a forward only reads it. Creation computes the full-context memory
 * need up front and refuses, with numbers, when it would not fit in the machine's available memory.
 *
 * A snapshot (qwen35_snap) is a sequence's committed state at one position: references to the KV
 * pages of [0, n_past) (no copy; the page copy-on-write of kvcache.h keeps them intact while the
 * sequence goes on appending) and copies of the GDN state and conv window (the only part that is
 * overwritten in place, so the only part that costs memory). Restoring it into any sequence of the
 * same model and page size makes that sequence bit-identical to the original at that position. */
#include "model/qwen35_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/bigmem.h"
#include "base/log.h"

enum { DEFAULT_PAGE_TOKENS = 256 };

size_t qwen35_state_floats(const qwen35_hparams *hp)
{
    return (size_t)hp->ssm_n_v_heads * (size_t)hp->ssm_head_dim * (size_t)hp->ssm_head_dim;
}

size_t qwen35_conv_floats(const qwen35_hparams *hp)
{
    return (size_t)(hp->ssm_d_conv - 1) * (size_t)hp->ssm_conv_channels;
}

float *qwen35_state_alloc(size_t floats, int zero)
{
    if (floats > SIZE_MAX / sizeof(float)) return NULL;
    return ar_bigmem_alloc(floats * sizeof(float), zero);
}

void qwen35_state_free(float *p, size_t floats) { ar_bigmem_free(p, floats * sizeof(float)); }

uint64_t qwen35_seq_bytes(const qwen35_model *m, int n_ctx)
{
    const qwen35_hparams *hp = &m->hp;
    uint64_t rec = (uint64_t)hp->n_gdn_layers * (qwen35_state_floats(hp) + qwen35_conv_floats(hp)) * sizeof(float);
    uint64_t kv = (uint64_t)hp->n_attn_layers * 2 * (uint64_t)hp->n_head_kv * (uint64_t)hp->head_dim * (m->kv_f32 ? 4u : 2u);
    return rec + kv * (uint64_t)(n_ctx > 0 ? n_ctx : 0);
}

/* MemAvailable from /proc/meminfo in bytes; 0 when unknown. */
static uint64_t mem_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

static void human(char *buf, size_t n, uint64_t bytes)
{
    if (bytes >= (1ull << 30)) snprintf(buf, n, "%.1f GiB", (double)bytes / (double)(1ull << 30));
    else if (bytes >= (1ull << 20)) snprintf(buf, n, "%.1f MiB", (double)bytes / (double)(1ull << 20));
    else snprintf(buf, n, "%.1f KiB", (double)bytes / 1024.0);
}

int qwen35_seq_create_pooled(qwen35_seq **out, const qwen35_model *m, int n_ctx, int page_tokens, ar_kv_pool *pool,
                             bool quiet, ar_error *err)
{
    *out = NULL;
    const qwen35_hparams *hp = &m->hp;
    if (n_ctx <= 0) n_ctx = hp->n_ctx_train;
    if (n_ctx <= 0) return ar_fail(err, AR_EINVAL, "context size must be positive");
    if (page_tokens <= 0) page_tokens = DEFAULT_PAGE_TOKENS;

    uint64_t need = qwen35_seq_bytes(m, n_ctx), avail = mem_available();
    char hn[32], ha[32];
    human(hn, sizeof hn, need);
    human(ha, sizeof ha, avail);
    if (!quiet) ar_log(AR_LOG_INFO, "sequence needs %s for %d tokens (KV pages allocated as it grows)", hn, n_ctx);
    if (avail && need > avail)
        return ar_fail(err, AR_ENOMEM, "a sequence of %d tokens needs %s but only %s is available; use a smaller context",
                       n_ctx, hn, ha);

    qwen35_seq *s = calloc(1, sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory creating a sequence");
    s->m = m;
    s->n_ctx = n_ctx;
    s->state_floats = qwen35_state_floats(hp);
    s->conv_floats = qwen35_conv_floats(hp);
    int rc = ar_kv_init(&s->kv, hp->n_attn_layers, hp->n_head_kv * hp->head_dim, m->kv_f32 ? 4 : 2, page_tokens, n_ctx,
                        err);
    if (rc != AR_OK) { free(s); return rc; }
    s->kv.pool = pool;
    size_t ng = (size_t)hp->n_gdn_layers;
    s->gdn_state = qwen35_state_alloc(ng * s->state_floats, 1);   /* a new sequence starts from zeros */
    s->conv = qwen35_state_alloc(ng * s->conv_floats, 1);
    if (!s->gdn_state || !s->conv) {
        qwen35_seq_free(s);
        return ar_fail(err, AR_ENOMEM, "out of memory for the recurrent state (%s)", hn);
    }
    *out = s;
    return AR_OK;
}

int qwen35_seq_create_paged(qwen35_seq **out, const qwen35_model *m, int n_ctx, int page_tokens, ar_error *err)
{
    return qwen35_seq_create_pooled(out, m, n_ctx, page_tokens, NULL, false, err);
}

int qwen35_seq_create(qwen35_seq **out, const qwen35_model *m, int n_ctx, ar_error *err)
{
    return qwen35_seq_create_paged(out, m, n_ctx, DEFAULT_PAGE_TOKENS, err);
}

void qwen35_seq_free(qwen35_seq *s)
{
    if (!s) return;
    ar_kv_release(&s->kv);
    const size_t ng = (size_t)s->m->hp.n_gdn_layers;
    qwen35_state_free(s->gdn_state, ng * s->state_floats);
    qwen35_state_free(s->conv, ng * s->conv_floats);
    free(s);
}

static void zero_state(qwen35_seq *s)
{
    size_t ng = (size_t)s->m->hp.n_gdn_layers;
    memset(s->gdn_state, 0, ng * s->state_floats * sizeof(float));
    memset(s->conv, 0, ng * s->conv_floats * sizeof(float));
    s->n_past = 0;
    s->gdn_ahead = 0;
}

void qwen35_seq_reset(qwen35_seq *s)
{
    zero_state(s);
    ar_kv_rewind(&s->kv);     /* private pages stay for reuse, shared ones are let go */
}

void qwen35_seq_clear(qwen35_seq *s)
{
    zero_state(s);
    ar_kv_drop(&s->kv);
}

int qwen35_seq_n_past(const qwen35_seq *s) { return s->n_past; }
int qwen35_seq_n_ctx(const qwen35_seq *s) { return s->n_ctx; }
int qwen35_seq_page_tokens(const qwen35_seq *s) { return s->kv.page_tokens; }
const ar_kv_pages *qwen35_seq_kv(const qwen35_seq *s) { return &s->kv; }

/* ---- snapshots ------------------------------------------------------------------------------- */

struct qwen35_snap {
    const qwen35_model *m;
    int n_past;
    ar_kv_pages kv;               /* references to the pages holding positions [0, n_past) */
    float *gdn_state, *conv;      /* copies, as in qwen35_seq */
    size_t state_floats, conv_floats;
};

int qwen35_snap_take(qwen35_snap **out, const qwen35_seq *s, ar_error *err)
{
    *out = NULL;
    const qwen35_hparams *hp = &s->m->hp;
    if (s->gdn_ahead)
        return ar_fail(err, AR_EINVAL, "snapshot of a sequence whose in-place forward (ar_node.commit) was not committed");
    qwen35_snap *p = calloc(1, sizeof *p);
    if (!p) return ar_fail(err, AR_ENOMEM, "out of memory for a state snapshot");
    p->m = s->m;
    p->n_past = s->n_past;
    p->state_floats = s->state_floats;
    p->conv_floats = s->conv_floats;
    const size_t ng = (size_t)hp->n_gdn_layers;
    int rc = ar_kv_init(&p->kv, s->kv.n_layers, s->kv.kv_dim, s->kv.elt, s->kv.page_tokens, s->n_past > 0 ? s->n_past : 1,
                        err);
    if (rc == AR_OK) rc = ar_kv_share(&p->kv, &s->kv, s->n_past, err);
    if (rc == AR_OK) {
        p->gdn_state = qwen35_state_alloc(ng * p->state_floats, 0);   /* copied over whole below */
        p->conv = qwen35_state_alloc(ng * p->conv_floats, 0);
        if (!p->gdn_state || !p->conv) rc = ar_fail(err, AR_ENOMEM, "out of memory for a state snapshot");
    }
    if (rc != AR_OK) { qwen35_snap_free(p); return rc; }
    memcpy(p->gdn_state, s->gdn_state, ng * p->state_floats * sizeof(float));
    memcpy(p->conv, s->conv, ng * p->conv_floats * sizeof(float));
    *out = p;
    return AR_OK;
}

int qwen35_snap_adopt(qwen35_snap **out, const qwen35_seq *s, int n_past, float *gdn_state, float *conv, ar_error *err)
{
    *out = NULL;
    if (n_past < 1 || n_past > s->n_past)
        return ar_fail(err, AR_EINVAL, "snapshot at %d of a sequence of %d positions", n_past, s->n_past);
    qwen35_snap *p = calloc(1, sizeof *p);
    if (!p) return ar_fail(err, AR_ENOMEM, "out of memory for a state snapshot");
    p->m = s->m;
    p->n_past = n_past;
    p->state_floats = s->state_floats;
    p->conv_floats = s->conv_floats;
    int rc = ar_kv_init(&p->kv, s->kv.n_layers, s->kv.kv_dim, s->kv.elt, s->kv.page_tokens, n_past, err);
    if (rc == AR_OK) rc = ar_kv_share(&p->kv, &s->kv, n_past, err);
    if (rc != AR_OK) { qwen35_snap_free(p); return rc; }
    p->gdn_state = gdn_state;
    p->conv = conv;
    *out = p;
    return AR_OK;
}

int qwen35_seq_restore(qwen35_seq *s, const qwen35_snap *p, ar_error *err)
{
    if (p->m != s->m) return ar_fail(err, AR_EINVAL, "restoring a snapshot of another model");
    if (p->n_past > s->n_ctx)
        return ar_fail(err, AR_ERANGE, "a snapshot of %d tokens does not fit a context of %d", p->n_past, s->n_ctx);
    int rc = ar_kv_share(&s->kv, &p->kv, p->n_past, err);
    if (rc != AR_OK) return rc;
    const size_t ng = (size_t)s->m->hp.n_gdn_layers;
    memcpy(s->gdn_state, p->gdn_state, ng * s->state_floats * sizeof(float));
    memcpy(s->conv, p->conv, ng * s->conv_floats * sizeof(float));
    s->n_past = p->n_past;
    s->gdn_ahead = 0;
    return AR_OK;
}

void qwen35_snap_free(qwen35_snap *p)
{
    if (!p) return;
    ar_kv_release(&p->kv);
    const size_t ng = (size_t)p->m->hp.n_gdn_layers;
    qwen35_state_free(p->gdn_state, ng * p->state_floats);
    qwen35_state_free(p->conv, ng * p->conv_floats);
    free(p);
}

int qwen35_snap_n_past(const qwen35_snap *p) { return p->n_past; }

size_t qwen35_snap_state_bytes(const qwen35_snap *p)
{
    return (size_t)p->m->hp.n_gdn_layers * (p->state_floats + p->conv_floats) * sizeof(float);
}

size_t qwen35_snap_pin(const qwen35_snap *p, int delta) { return ar_kv_pin(&p->kv, delta); }
