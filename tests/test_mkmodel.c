/* tests/test_mkmodel.c — synthetic qwen35 GGUFs (model/mkmodel.c, cli/mkmodel.c).
 *
 * Reads generated files back with the GGUF reader (keys, tensor shapes and types, value ranges,
 * tokenizer cut/padding), checks determinism (same seed -> same bytes, for any thread count) and
 * that llama.cpp (the oracle, $ARBOR_ORACLE) loads and runs every shape variant we care about:
 * its LLOGITS1 output must be finite and informative. Needs $ARBOR_FIXTURES/vocab-qwen35.gguf
 * (scripts/fixtures.sh), the oracle, and $ARBOR_BIN for the CLI checks. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "base/half.h"
#include "base/log.h"
#include "base/pool.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "model/mkmodel.h"
#include "test.h"

static char tmpdir[256];
static char vocab_src[1024];

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static mkmodel_params tiny(void)
{
    mkmodel_params p;
    mkmodel_preset(&p, "tiny", NULL);
    p.vocab_src = vocab_src;
    p.quiet = true;
    return p;
}

static int write_model(const mkmodel_params *p, const char *name, int n_threads)
{
    ar_pool *pool = ar_pool_create(n_threads);
    ar_error err = { 0 };
    int rc = mkmodel_write(p, tmp_path(name), pool, &err);
    ar_pool_free(pool);
    CHECK(rc == AR_OK, "mkmodel_write %s: %s", name, err.msg);
    return rc;
}

static gguf_file *open_model(const char *name)
{
    gguf_file *f = NULL;
    ar_error err = { 0 };
    int rc = gguf_open(&f, tmp_path(name), &err);
    CHECK(rc == AR_OK, "gguf_open %s: %s", name, err.msg);
    return rc ? NULL : f;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && fread(b, 1, (size_t)len, f) != (size_t)len) { free(b); b = NULL; }
    fclose(f);
    *n = (size_t)len;
    return b;
}

static int same_bytes(const char *a, const char *b)
{
    size_t na = 0, nb = 0;
    unsigned char *x = slurp(tmp_path(a), &na), *y = slurp(tmp_path(b), &nb);
    int same = x && y && na == nb && !memcmp(x, y, na);
    free(x);
    free(y);
    return same;
}

static uint32_t key_u32(gguf_file *f, const char *key)
{
    uint32_t v = 0xffffffffu;
    ar_error err;
    if (gguf_get_u32(f, key, &v, &err)) CHECK(0, "%s: %s", key, err.msg);
    return v;
}

/* Tensor present with the given shape and type. */
static const gguf_tensor *expect_tensor(gguf_file *f, const char *name, int64_t ne0, int64_t ne1, int type)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    CHECK(t != NULL, "tensor %s missing", name);
    if (!t) return NULL;
    int n_dims = ne1 > 0 ? 2 : 1;
    CHECK(t->n_dims == n_dims && t->ne[0] == ne0 && (ne1 <= 0 || t->ne[1] == ne1),
          "%s: shape [%lld, %lld] (%d dims), want [%lld, %lld]", name, (long long)t->ne[0], (long long)t->ne[1],
          t->n_dims, (long long)ne0, (long long)ne1);
    CHECK(t->type == type, "%s: type %s, want %s", name, ar_dtype_name(t->type), ar_dtype_name(type));
    return t;
}

/* Dequantized values of a whole tensor (caller frees). */
static float *values(const gguf_tensor *t)
{
    if (!t) return NULL;
    float *v = malloc((size_t)t->n_elements * sizeof *v);
    size_t row_bytes = ar_row_bytes(t->type, t->ne[0]);
    int64_t rows = t->n_elements / t->ne[0];
    for (int64_t r = 0; v && r < rows; r++)
        if (ar_dequantize_row(t->type, (const uint8_t *)t->data + r * row_bytes, v + r * t->ne[0], t->ne[0])) {
            CHECK(0, "%s: cannot dequantize %s", t->name, ar_dtype_name(t->type));
            free(v);
            return NULL;
        }
    return v;
}

static void moments(const float *v, int64_t n, double *mean, double *std, float *lo, float *hi, int *finite)
{
    double s = 0, s2 = 0;
    *lo = INFINITY;
    *hi = -INFINITY;
    *finite = 1;
    for (int64_t i = 0; i < n; i++) {
        if (!isfinite(v[i])) *finite = 0;
        s += v[i];
        s2 += (double)v[i] * v[i];
        if (v[i] < *lo) *lo = v[i];
        if (v[i] > *hi) *hi = v[i];
    }
    *mean = s / (double)n;
    *std = sqrt(s2 / (double)n - *mean * *mean);
}

static void check_std(gguf_file *f, const char *name, double want, double tol)
{
    const gguf_tensor *t = gguf_find_tensor(f, name);
    CHECK(t != NULL, "tensor %s missing", name);
    float *v = values(t);
    if (!v) return;
    double mean, std;
    float lo, hi;
    int finite;
    moments(v, t->n_elements, &mean, &std, &lo, &hi, &finite);
    CHECK(finite, "%s (%s): non-finite values", name, ar_dtype_name(t->type));
    CHECK(fabs(std / want - 1) < tol && fabs(mean) < 0.2 * want, "%s (%s): mean %.4g std %.4g, want std %.4g",
          name, ar_dtype_name(t->type), mean, std, want);
    free(v);
}

/* ---- the default tiny model ----------------------------------------------------------------- */

static void test_tiny_layout(void)
{
    mkmodel_params p = tiny();
    if (write_model(&p, "tiny.gguf", 2)) return;
    gguf_file *f = open_model("tiny.gguf");
    if (!f) return;
    gguf_str s;
    ar_error err;
    CHECK(gguf_get_str(f, "general.architecture", &s, &err) == 0 && gguf_str_eq(s, "qwen35"), "architecture");
    CHECK(gguf_find(f, "general.name") != NULL, "general.name missing");
    CHECK(key_u32(f, "general.file_type") == 0, "file_type of an f32 model");
    CHECK(key_u32(f, "qwen35.block_count") == 4, "block_count");
    CHECK(key_u32(f, "qwen35.embedding_length") == 256, "embedding_length");
    CHECK(key_u32(f, "qwen35.feed_forward_length") == 512, "feed_forward_length");
    CHECK(key_u32(f, "qwen35.attention.head_count") == 4 && key_u32(f, "qwen35.attention.head_count_kv") == 2, "heads");
    CHECK(key_u32(f, "qwen35.attention.key_length") == 64 && key_u32(f, "qwen35.attention.value_length") == 64, "head dims");
    CHECK(key_u32(f, "qwen35.rope.dimension_count") == 16, "rope dims");
    CHECK(key_u32(f, "qwen35.context_length") == 4096, "context_length");
    CHECK(key_u32(f, "qwen35.ssm.conv_kernel") == 4 && key_u32(f, "qwen35.ssm.state_size") == 64 &&
          key_u32(f, "qwen35.ssm.group_count") == 2 && key_u32(f, "qwen35.ssm.time_step_rank") == 4 &&
          key_u32(f, "qwen35.ssm.inner_size") == 256, "ssm keys");
    CHECK(key_u32(f, "qwen35.full_attention_interval") == 4, "full_attention_interval");
    CHECK(gguf_find(f, "qwen35.attention.recurrent_layers") == NULL, "no recurrent_layers array by default");
    float eps = 0, theta = 0;
    CHECK(gguf_get_f32(f, "qwen35.attention.layer_norm_rms_epsilon", &eps, &err) == 0 && eps == 1e-6f, "eps %g", eps);
    CHECK(gguf_get_f32(f, "qwen35.rope.freq_base", &theta, &err) == 0 && theta == 1e7f, "rope theta %g", theta);
    int64_t sec[8];
    size_t nsec = 0;
    CHECK(gguf_get_ints(f, "qwen35.rope.dimension_sections", sec, 8, &nsec, &err) == 0 && nsec == 4 &&
          sec[0] + sec[1] + sec[2] + sec[3] == 8 && sec[3] == 0, "rope sections (n=%zu)", nsec);

    /* tensors: 3 globals-ish (tied: no output.weight), 3 GDN layers x 14, 1 attention layer x 11 */
    CHECK(gguf_n_tensors(f) == 2 + 3 * 14 + 11, "tensor count %lld", (long long)gguf_n_tensors(f));
    CHECK(gguf_find_tensor(f, "output.weight") == NULL, "tied model has no output.weight");
    expect_tensor(f, "token_embd.weight", 256, 4096, AR_F32);
    expect_tensor(f, "output_norm.weight", 256, 0, AR_F32);
    expect_tensor(f, "blk.0.attn_qkv.weight", 256, 2 * 2 * 64 + 4 * 64, AR_F32);
    expect_tensor(f, "blk.0.attn_gate.weight", 256, 256, AR_F32);
    expect_tensor(f, "blk.0.ssm_conv1d.weight", 4, 512, AR_F32);
    expect_tensor(f, "blk.0.ssm_beta.weight", 256, 4, AR_F32);
    expect_tensor(f, "blk.0.ssm_alpha.weight", 256, 4, AR_F32);
    expect_tensor(f, "blk.0.ssm_norm.weight", 64, 0, AR_F32);
    expect_tensor(f, "blk.0.ssm_out.weight", 256, 256, AR_F32);
    expect_tensor(f, "blk.2.ffn_down.weight", 512, 256, AR_F32);
    expect_tensor(f, "blk.3.attn_q.weight", 256, 2 * 4 * 64, AR_F32);
    expect_tensor(f, "blk.3.attn_k.weight", 256, 2 * 64, AR_F32);
    expect_tensor(f, "blk.3.attn_v.weight", 256, 2 * 64, AR_F32);
    expect_tensor(f, "blk.3.attn_output.weight", 256, 256, AR_F32);
    expect_tensor(f, "blk.3.attn_q_norm.weight", 64, 0, AR_F32);
    expect_tensor(f, "blk.3.post_attention_norm.weight", 256, 0, AR_F32);
    CHECK(gguf_find_tensor(f, "blk.3.attn_qkv.weight") == NULL, "attention layer has no attn_qkv");

    /* values: ssm_a negative, dt bias in range, norms near 1, projections ~ N(0, 1/fan_in) */
    float *a = values(expect_tensor(f, "blk.1.ssm_a", 4, 0, AR_F32));
    for (int i = 0; a && i < 4; i++) CHECK(a[i] <= -1.0f && a[i] >= -16.0f, "ssm_a[%d] = %g", i, a[i]);
    free(a);
    float *dt = values(expect_tensor(f, "blk.1.ssm_dt.bias", 4, 0, AR_F32));
    for (int i = 0; dt && i < 4; i++) CHECK(dt[i] >= -3.0f && dt[i] <= 0.0f, "ssm_dt.bias[%d] = %g", i, dt[i]);
    free(dt);
    const char *norms[] = { "output_norm.weight", "blk.0.attn_norm.weight", "blk.0.ssm_norm.weight", "blk.3.attn_k_norm.weight" };
    for (size_t k = 0; k < sizeof norms / sizeof norms[0]; k++) {
        const gguf_tensor *t = gguf_find_tensor(f, norms[k]);
        float *v = values(t);
        double mean, std;
        float lo, hi;
        int finite;
        if (!v) continue;
        moments(v, t->n_elements, &mean, &std, &lo, &hi, &finite);
        CHECK(lo >= 0.9f && hi <= 1.1f && fabs(mean - 1) < 0.02, "%s: range [%g, %g] mean %g", norms[k], lo, hi, mean);
        free(v);
    }
    check_std(f, "token_embd.weight", 4.0 / 16, 0.05);
    check_std(f, "blk.0.attn_qkv.weight", 1.0 / 16, 0.05);
    check_std(f, "blk.2.ffn_down.weight", 1.0 / sqrt(512), 0.05);
    check_std(f, "blk.0.ssm_conv1d.weight", 0.5, 0.1);

    /* tokenizer: small:4096 = 4093 source tokens + 3 controls; merges stay inside */
    const gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find(f, "tokenizer.ggml.token_type");
    const gguf_kv *merges = gguf_find(f, "tokenizer.ggml.merges");
    CHECK(tok && tok->arr_n == 4096, "4096 tokens");
    CHECK(types && types->arr_n == 4096 && types->arr_type == GGUF_T_INT32, "token types");
    if (tok && tok->arr_n == 4096 && types && types->arr_n == 4096) {
        CHECK(gguf_str_eq(tok->arr_str[4093], "<|endoftext|>") && gguf_str_eq(tok->arr_str[4094], "<|im_start|>") &&
              gguf_str_eq(tok->arr_str[4095], "<|im_end|>"), "special tokens at the end");
        int32_t ty[4];
        memcpy(ty, (const int32_t *)types->arr_data + 4092, sizeof ty);
        CHECK(ty[0] == 1 && ty[1] == 3 && ty[2] == 3 && ty[3] == 3, "token types %d %d %d %d", ty[0], ty[1], ty[2], ty[3]);
    }
    CHECK(key_u32(f, "tokenizer.ggml.eos_token_id") == 4095 && key_u32(f, "tokenizer.ggml.bos_token_id") == 4093,
          "eos/bos ids");
    CHECK(merges && merges->arr_n > 3000 && merges->arr_n < 4093, "merges kept: %llu",
          merges ? (unsigned long long)merges->arr_n : 0ULL);
    CHECK(gguf_get_str(f, "tokenizer.ggml.pre", &s, &err) == 0 && gguf_str_eq(s, "qwen35"), "pre-tokenizer copied");
    CHECK(gguf_get_str(f, "tokenizer.ggml.model", &s, &err) == 0 && gguf_str_eq(s, "gpt2"), "tokenizer model copied");
    CHECK(gguf_get_str(f, "tokenizer.chat_template", &s, &err) == 0 && s.len > 20, "chat template present");
    /* every kept merge: both parts and the joined result are tokens */
    if (tok && merges && tok->arr_n == 4096) {
        int bad = 0;
        for (uint64_t i = 0; i < merges->arr_n; i += 7) {
            gguf_str m = merges->arr_str[i];
            const char *sp = memchr(m.ptr + 1, ' ', m.len - 1);
            int found[3] = { 0, 0, 0 };
            for (uint64_t j = 0; sp && j < tok->arr_n; j++) {
                gguf_str t = tok->arr_str[j];
                size_t nl = (size_t)(sp - m.ptr), nr = m.len - nl - 1;
                if (t.len == nl && !memcmp(t.ptr, m.ptr, nl)) found[0] = 1;
                if (t.len == nr && !memcmp(t.ptr, sp + 1, nr)) found[1] = 1;
                if (t.len == nl + nr && !memcmp(t.ptr, m.ptr, nl) && !memcmp(t.ptr + nl, sp + 1, nr)) found[2] = 1;
            }
            if (!(found[0] && found[1] && found[2])) bad++;
        }
        CHECK(bad == 0, "%d sampled merges reach outside the kept vocab", bad);
    }
    gguf_close(f);
}

/* ---- determinism ---------------------------------------------------------------------------- */

static void test_determinism(void)
{
    mkmodel_params p = tiny();
    if (write_model(&p, "det1.gguf", 1) || write_model(&p, "det3.gguf", 3)) return;
    CHECK(same_bytes("tiny.gguf", "det1.gguf"), "same seed, 2 vs 1 threads: files differ");
    CHECK(same_bytes("det1.gguf", "det3.gguf"), "same seed, 1 vs 3 threads: files differ");
    p.seed = 2;
    if (write_model(&p, "seed2.gguf", 2)) return;
    CHECK(!same_bytes("tiny.gguf", "seed2.gguf"), "different seeds give the same file");
    /* quantized paths too: float quantization and random blocks */
    p.seed = 1;
    p.type = AR_Q4_K;
    if (write_model(&p, "q4k1.gguf", 1) || write_model(&p, "q4k3.gguf", 3)) return;
    CHECK(same_bytes("q4k1.gguf", "q4k3.gguf"), "q4_K, 1 vs 3 threads: files differ");
    p.random_blocks = true;
    if (write_model(&p, "q4kr1.gguf", 1) || write_model(&p, "q4kr3.gguf", 3)) return;
    CHECK(same_bytes("q4kr1.gguf", "q4kr3.gguf"), "random q4_K blocks, 1 vs 3 threads: files differ");
    CHECK(!same_bytes("q4k1.gguf", "q4kr1.gguf"), "random blocks equal quantized floats");
    unlink(tmp_path("det1.gguf"));
    unlink(tmp_path("det3.gguf"));
    unlink(tmp_path("seed2.gguf"));
    unlink(tmp_path("q4k3.gguf"));
    unlink(tmp_path("q4kr3.gguf"));
}

/* ---- weight types --------------------------------------------------------------------------- */

static void test_types(void)
{
    static const int types[] = { AR_F16, AR_BF16, AR_Q8_0 };
    gguf_file *ref = open_model("tiny.gguf");
    if (!ref) return;
    for (size_t k = 0; k < sizeof types / sizeof types[0]; k++) {
        mkmodel_params p = tiny();
        p.type = types[k];
        char name[64];
        snprintf(name, sizeof name, "type-%s.gguf", ar_dtype_name(types[k]));
        if (write_model(&p, name, 2)) continue;
        gguf_file *f = open_model(name);
        if (!f) continue;
        CHECK(key_u32(f, "general.file_type") == (types[k] == AR_F16 ? 1u : types[k] == AR_BF16 ? 32u : 7u),
              "%s: file_type", name);
        expect_tensor(f, "blk.0.ssm_conv1d.weight", 4, 512, AR_F32);
        expect_tensor(f, "blk.0.ssm_a", 4, 0, AR_F32);
        expect_tensor(f, "blk.0.ssm_dt.bias", 4, 0, AR_F32);
        expect_tensor(f, "blk.0.ssm_norm.weight", 64, 0, AR_F32);
        expect_tensor(f, "blk.3.attn_q_norm.weight", 64, 0, AR_F32);
        expect_tensor(f, "blk.0.ssm_beta.weight", 256, 4, types[k]);
        expect_tensor(f, "token_embd.weight", 256, 4096, types[k]);
        /* same random floats as the f32 model, converted: f16/bf16 exactly, q8_0 within its step */
        const char *names[] = { "blk.0.attn_qkv.weight", "blk.3.attn_v.weight", "blk.2.ffn_down.weight" };
        for (int n = 0; n < 3; n++) {
            const gguf_tensor *t = expect_tensor(f, names[n], gguf_find_tensor(ref, names[n])->ne[0],
                                                 gguf_find_tensor(ref, names[n])->ne[1], types[k]);
            float *v = values(t), *r = values(gguf_find_tensor(ref, names[n]));
            double worst = 0, rms = 0;
            int exact = 1;
            for (int64_t i = 0; v && r && i < t->n_elements; i++) {
                float want = types[k] == AR_F16 ? ar_f16_to_f32(ar_f32_to_f16(r[i]))
                           : types[k] == AR_BF16 ? ar_bf16_to_f32(ar_f32_to_bf16(r[i])) : r[i];
                if (v[i] != want) exact = 0;
                double d = fabs((double)v[i] - r[i]);
                if (d > worst) worst = d;
                rms += (double)r[i] * r[i];
            }
            rms = sqrt(rms / (double)(t ? t->n_elements : 1));
            if (types[k] == AR_Q8_0)
                CHECK(v && r && worst < 0.02 * 4 * rms, "%s q8_0: worst |d| %.3g vs rms %.3g", names[n], worst, rms);
            else
                CHECK(v && r && exact, "%s %s: not the f32 values converted", names[n], ar_dtype_name(types[k]));
            if (n == 0) printf("ok %s vs f32: worst |diff| %.3g (rms %.3g)\n", name, worst, rms);
            free(v);
            free(r);
        }
        gguf_close(f);
    }
    gguf_close(ref);
}

static void test_random_blocks(void)
{
    static const int types[] = { AR_Q8_0, AR_Q4_0, AR_Q4_1, AR_Q5_0, AR_Q5_1, AR_Q2_K, AR_Q3_K,
                                 AR_Q4_K, AR_Q5_K, AR_Q6_K, AR_IQ4_NL, AR_IQ4_XS };
    int n = test_sanitized() ? 4 : (int)(sizeof types / sizeof types[0]);
    for (int k = 0; k < n; k++) {
        mkmodel_params p = tiny();
        p.type = types[k];
        p.random_blocks = true;
        p.n_layer = 1;
        p.has_recurrent = true;
        p.n_recurrent = 1;
        p.recurrent[0] = true;
        if (write_model(&p, "rb.gguf", 2)) continue;
        gguf_file *f = open_model("rb.gguf");
        if (!f) continue;
        expect_tensor(f, "blk.0.ffn_gate.weight", 256, 512, types[k]);
        expect_tensor(f, "blk.0.ssm_conv1d.weight", 4, 512, AR_F32);
        check_std(f, "blk.0.ffn_gate.weight", 1.0 / 16, 0.1);
        check_std(f, "token_embd.weight", 4.0 / 16, 0.1);
        gguf_close(f);
    }
    unlink(tmp_path("rb.gguf"));
}

/* ---- other shapes and options ------------------------------------------------------------- */

static void test_shapes(void)
{
    /* explicit recurrent layers + MTP block */
    mkmodel_params p = tiny();
    p.n_layer = 4;
    p.has_recurrent = true;
    p.n_recurrent = 4;
    bool flags[4] = { true, false, true, false };
    memcpy(p.recurrent, flags, sizeof flags);
    p.nextn = 1;
    p.tied = false;
    if (write_model(&p, "rec.gguf", 2) == 0) {
        gguf_file *f = open_model("rec.gguf");
        if (f) {
            CHECK(key_u32(f, "qwen35.block_count") == 5 && key_u32(f, "qwen35.nextn_predict_layers") == 1, "nextn keys");
            const gguf_kv *kv = gguf_find(f, "qwen35.attention.recurrent_layers");
            CHECK(kv && kv->type == GGUF_T_ARRAY && kv->arr_type == GGUF_T_BOOL && kv->arr_n == 5, "recurrent_layers bool[5]");
            if (kv && kv->arr_n == 5) {
                const uint8_t *b = kv->arr_data;
                CHECK(b[0] == 1 && b[1] == 0 && b[2] == 1 && b[3] == 0 && b[4] == 0, "recurrent flags %d%d%d%d%d",
                      b[0], b[1], b[2], b[3], b[4]);
            }
            CHECK(gguf_find(f, "qwen35.full_attention_interval") == NULL, "no interval when the array is written");
            expect_tensor(f, "blk.1.attn_q.weight", 256, 512, AR_F32);
            expect_tensor(f, "blk.2.attn_qkv.weight", 256, 512, AR_F32);
            expect_tensor(f, "output.weight", 256, 4096, AR_F32);
            check_std(f, "output.weight", 4.0 / 16, 0.05);
            check_std(f, "token_embd.weight", 1.0, 0.05);
            expect_tensor(f, "blk.4.nextn.eh_proj.weight", 512, 256, AR_F32);
            expect_tensor(f, "blk.4.nextn.enorm.weight", 256, 0, AR_F32);
            expect_tensor(f, "blk.4.nextn.hnorm.weight", 256, 0, AR_F32);
            expect_tensor(f, "blk.4.nextn.shared_head_norm.weight", 256, 0, AR_F32);
            expect_tensor(f, "blk.4.attn_q.weight", 256, 512, AR_F32);
            expect_tensor(f, "blk.4.ffn_down.weight", 512, 256, AR_F32);
            gguf_close(f);
        }
    }
    /* GDN ratio 3 with a K-quant: the 384-wide ssm_out rows fall back to F16 */
    p = tiny();
    p.gdn_v_heads = 6;
    p.type = AR_Q4_K;
    if (write_model(&p, "gdn3q.gguf", 2) == 0) {
        gguf_file *f = open_model("gdn3q.gguf");
        if (f) {
            expect_tensor(f, "blk.0.attn_qkv.weight", 256, 2 * 128 + 384, AR_Q4_K);
            expect_tensor(f, "blk.0.ssm_out.weight", 384, 256, AR_F16);
            expect_tensor(f, "blk.0.ssm_conv1d.weight", 4, 640, AR_F32);
            CHECK(key_u32(f, "qwen35.ssm.inner_size") == 384 && key_u32(f, "qwen35.ssm.time_step_rank") == 6, "gdn3 keys");
            gguf_close(f);
        }
        unlink(tmp_path("gdn3q.gguf"));
    }
    /* full source vocab padded, tiny width so the embedding stays small */
    p = tiny();
    p.vocab = vocab_src;
    p.pad_vocab = 152064;
    p.n_embd = 32; p.n_ff = 64; p.n_layer = 1; p.n_head = 2; p.n_head_kv = 1; p.head_dim = 16; p.rope_dim = 4;
    p.gdn_k_heads = 1; p.gdn_v_heads = 1; p.gdn_head_dim = 16;
    p.type = AR_F16;
    if (write_model(&p, "pad.gguf", 2) == 0) {
        gguf_file *f = open_model("pad.gguf");
        gguf_file *src = NULL;
        ar_error err;
        if (f && gguf_open(&src, vocab_src, &err) == 0) {
            const gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens"), *ty = gguf_find(f, "tokenizer.ggml.token_type");
            const gguf_kv *m = gguf_find(f, "tokenizer.ggml.merges"), *sm = gguf_find(src, "tokenizer.ggml.merges");
            const gguf_kv *stok = gguf_find(src, "tokenizer.ggml.tokens");
            CHECK(tok && tok->arr_n == 152064 && ty && ty->arr_n == 152064, "padded to 152064");
            if (tok && tok->arr_n == 152064 && stok && ty) {
                int32_t last;
                memcpy(&last, (const int32_t *)ty->arr_data + 152063, 4);
                CHECK(gguf_str_eq(tok->arr_str[152063], "[PAD152063]") && last == 5, "pad token / type %d", last);
                int same = 1;
                for (uint64_t i = 0; i < stok->arr_n; i++)
                    if (tok->arr_str[i].len != stok->arr_str[i].len ||
                        memcmp(tok->arr_str[i].ptr, stok->arr_str[i].ptr, tok->arr_str[i].len)) same = 0;
                CHECK(same, "source tokens kept in order");
            }
            CHECK(m && sm && m->arr_n == sm->arr_n, "all merges copied");
            CHECK(key_u32(f, "tokenizer.ggml.eos_token_id") == key_u32(src, "tokenizer.ggml.eos_token_id"), "eos id copied");
            expect_tensor(f, "token_embd.weight", 32, 152064, AR_F16);
        }
        gguf_close(src);
        gguf_close(f);
        unlink(tmp_path("pad.gguf"));
    }
}

static void test_errors(void)
{
    ar_error err = { 0 };
    mkmodel_params p = tiny();
    p.gdn_v_heads = 5;
    CHECK(mkmodel_write(&p, tmp_path("bad.gguf"), NULL, &err) == AR_EINVAL && strstr(err.msg, "gdn_v_heads"),
          "v heads not a multiple of k heads: %s", err.msg);
    p = tiny();
    p.n_head_kv = 3;
    CHECK(mkmodel_validate(&p, &err) == AR_EINVAL && strstr(err.msg, "n_head"), "GQA ratio: %s", err.msg);
    p = tiny();
    p.rope_dim = 128;
    CHECK(mkmodel_validate(&p, &err) == AR_EINVAL, "rope_dim > head_dim accepted");
    p = tiny();
    p.has_recurrent = true;
    p.n_recurrent = 3;
    CHECK(mkmodel_validate(&p, &err) == AR_EINVAL && strstr(err.msg, "recurrent"), "recurrent count: %s", err.msg);
    p = tiny();
    p.vocab_src = "/nonexistent/vocab.gguf";
    CHECK(mkmodel_write(&p, tmp_path("bad.gguf"), NULL, &err) != AR_OK && strstr(err.msg, "/nonexistent/vocab.gguf"),
          "missing vocab source: %s", err.msg);
    p = tiny();
    p.vocab = "small:100";
    CHECK(mkmodel_write(&p, tmp_path("bad.gguf"), NULL, &err) == AR_EINVAL && strstr(err.msg, "small:100"),
          "small:100: %s", err.msg);
    p = tiny();
    p.type = AR_IQ2_XXS;
    CHECK(mkmodel_write(&p, tmp_path("bad.gguf"), NULL, &err) == AR_EUNSUPPORTED, "iq2_xxs: %s", err.msg);
    CHECK(mkmodel_preset(&p, "huge", &err) == AR_EINVAL && strstr(err.msg, "huge"), "unknown preset: %s", err.msg);
    CHECK(mkmodel_preset(&p, "27b", &err) == AR_OK && mkmodel_n_params(&p, 248320) > 26800000000LL &&
          mkmodel_n_params(&p, 248320) < 27000000000LL, "27b preset: %lld params", (long long)mkmodel_n_params(&p, 248320));
    CHECK(mkmodel_preset(&p, "mid", &err) == AR_OK && llabs(mkmodel_n_params(&p, 248320) - 1880000000LL) < 10000000LL,
          "mid preset: %lld params", (long long)mkmodel_n_params(&p, 248320));
    unlink(tmp_path("bad.gguf"));
}

/* The CLI maps flags to the same parameters: its file equals the library's. */
static void test_cli(void)
{
    const char *bin = getenv("ARBOR_BIN");
    if (!bin || !*bin) bin = "build/arbor";
    CHECK(access(bin, X_OK) == 0, "arbor binary %s not found (set ARBOR_BIN)", bin);
    if (access(bin, X_OK)) return;
    char cmd[4096];
    snprintf(cmd, sizeof cmd,
             "%s mkmodel -q -o %s --vocab-src %s --recurrent-layers 1,0,1,0 --nextn 1 --untied -t 3 >%s 2>&1", bin,
             tmp_path("cli.gguf"), vocab_src, tmp_path("cli.log"));
    CHECK(system(cmd) == 0, "%s failed", cmd);
    CHECK(same_bytes("cli.gguf", "rec.gguf"), "CLI file differs from the library's for the same parameters");
    snprintf(cmd, sizeof cmd, "%s mkmodel -o %s --n-head-kv 3 >%s 2>&1", bin, tmp_path("bad.gguf"), tmp_path("cli.log"));
    CHECK(system(cmd) != 0, "invalid GQA accepted by the CLI");
    snprintf(cmd, sizeof cmd, "%s mkmodel -o %s --recurrent-layers 1,2 >%s 2>&1", bin, tmp_path("bad.gguf"),
             tmp_path("cli.log"));
    CHECK(system(cmd) != 0, "bad --recurrent-layers accepted");
    unlink(tmp_path("cli.gguf"));
    unlink(tmp_path("cli.log"));
    unlink(tmp_path("bad.gguf"));
}

/* ---- llama.cpp loads and runs what we write --------------------------------------------------- */

static void oracle_run(const char *oracle, const char *label, mkmodel_params *p)
{
    char name[128];
    snprintf(name, sizeof name, "oracle-%s.gguf", label);
    if (write_model(p, name, 2)) return;
    char cmd[4096];
    const char *out = tmp_path("oracle.bin"), *log = tmp_path("oracle.log");
    unlink(out);
    /* one thread: on a loaded machine llama.cpp's spinning workers cost more than they give */
    snprintf(cmd, sizeof cmd, "%s eval %s --ids \"1 2 3 4 5\" -n 4 -t 1 -o %s >%s 2>&1", oracle, tmp_path(name), out, log);
    int rc = system(cmd);
    CHECK(rc == 0, "%s: llama.cpp eval exited %d (log %s)", label, rc, log);
    size_t n = 0;
    unsigned char *b = slurp(out, &n);
    int32_t rows = 0, vocab = 0;
    if (b && n >= 16) {
        memcpy(&rows, b + 8, 4);
        memcpy(&vocab, b + 12, 4);
    }
    int ok = b && n >= 16 && !memcmp(b, "LLOGITS1", 8) && rows == 9 && vocab == 4096 &&
             n == 16 + 8 * (size_t)rows + 4 * (size_t)rows * (size_t)vocab;
    CHECK(ok, "%s: bad LLOGITS1 output (%zu bytes, %d rows, %d vocab)", label, n, rows, vocab);
    if (ok) {
        const float *lg = (const float *)(b + 16 + 8 * (size_t)rows);
        int finite = 1, flat = 0;
        double pmin = 1, pmax = 0;
        for (int r = 0; r < rows; r++) {
            const float *l = lg + (size_t)r * vocab;
            float mx = -INFINITY, mn = INFINITY;
            for (int i = 0; i < vocab; i++) {
                if (!isfinite(l[i])) finite = 0;
                if (l[i] > mx) mx = l[i];
                if (l[i] < mn) mn = l[i];
            }
            if (!(mx > mn)) flat = 1;
            double s = 0;
            for (int i = 0; i < vocab; i++) s += exp((double)l[i] - mx);
            if (1 / s < pmin) pmin = 1 / s;
            if (1 / s > pmax) pmax = 1 / s;
        }
        CHECK(finite, "%s: non-finite logits", label);
        CHECK(!flat, "%s: a row of equal logits", label);
        CHECK(pmax < 0.9999 && pmin > 1.0 / 4096, "%s: top-1 probabilities in [%.3f, %.3f]", label, pmin, pmax);
        printf("ok oracle %-10s top-1 p in [%.3f, %.3f]\n", label, pmin, pmax);
    }
    free(b);
    unlink(out);
    unlink(log);
    unlink(tmp_path(name));
}

static void test_oracle(void)
{
    const char *oracle = getenv("ARBOR_ORACLE");
    if (!oracle || !*oracle) oracle = "build/oracle/llama_oracle";
    CHECK(access(oracle, X_OK) == 0, "llama.cpp oracle %s not found (scripts/oracle.sh builds it; or set ARBOR_ORACLE)",
          oracle);
    if (access(oracle, X_OK)) return;
    mkmodel_params p = tiny();
    oracle_run(oracle, "tiny", &p);
    p = tiny(); p.gdn_v_heads = 6;                              oracle_run(oracle, "gdn-ratio3", &p);
    p = tiny(); p.n_head = 6; p.n_head_kv = 1;                  oracle_run(oracle, "gqa6", &p);
    p = tiny(); p.has_recurrent = true; p.n_recurrent = 4;
    p.recurrent[0] = false; p.recurrent[1] = true; p.recurrent[2] = false; p.recurrent[3] = true;
    oracle_run(oracle, "rec-array", &p);
    p = tiny(); p.tied = false;                                 oracle_run(oracle, "untied", &p);
    p = tiny(); p.head_dim = 128; p.rope_dim = 32;              oracle_run(oracle, "hd128", &p);
    p = tiny(); p.type = AR_F16;                                oracle_run(oracle, "f16", &p);
    p = tiny(); p.type = AR_Q8_0;                               oracle_run(oracle, "q8_0", &p);
    p = tiny(); p.type = AR_Q4_K; p.random_blocks = true;       oracle_run(oracle, "q4_k-rand", &p);
    p = tiny(); p.nextn = 1;                                    oracle_run(oracle, "nextn", &p);
}

int main(void)
{
    ar_log_level = AR_LOG_WARN;
    snprintf(vocab_src, sizeof vocab_src, "%s/vocab-qwen35.gguf", test_fixtures());
    CHECK(access(vocab_src, R_OK) == 0, "fixture %s missing (run scripts/fixtures.sh)", vocab_src);
    if (access(vocab_src, R_OK)) TEST_END();
    snprintf(tmpdir, sizeof tmpdir, "/tmp/arbor-test-mkmodel-XXXXXX");
    CHECK(mkdtemp(tmpdir) != NULL, "mkdtemp");

    test_tiny_layout();
    test_determinism();
    test_types();
    test_random_blocks();
    test_shapes();
    test_errors();
    test_cli();
    test_oracle();

    const char *left[] = { "tiny.gguf", "q4k1.gguf", "q4kr1.gguf", "rec.gguf", "type-f16.gguf", "type-bf16.gguf",
                           "type-q8_0.gguf" };
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) unlink(tmp_path(left[i]));
    rmdir(tmpdir);
    TEST_END();
}
