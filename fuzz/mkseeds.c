/* fuzz/mkseeds.c — writes the seed corpus for fuzz_gguf: small valid GGUF files (a few KB each)
 * covering every value type, string arrays, tensors of several types and alignments, a v2 file,
 * split keys and an empty file. Usage: mkseeds DIR (called by scripts/fuzz.sh). */
#include "format/gguf.h"
#include "format/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fill_pattern(void *ctx, const gguf_tensor *t, void *dst, uint64_t nbytes, ar_error *err)
{
    (void)ctx; (void)t; (void)err;
    for (uint64_t i = 0; i < nbytes; i++) ((unsigned char *)dst)[i] = (unsigned char)(i * 13 + 7);
    return AR_OK;
}

static void add(gguf_writer *w, const char *name, int type, int n_dims, int64_t ne0, int64_t ne1)
{
    int64_t ne[2] = { ne0, ne1 };
    if (gguf_add_tensor(w, name, type, n_dims, ne, NULL, fill_pattern, NULL) != AR_OK) {
        fprintf(stderr, "mkseeds: cannot add %s\n", name);
        exit(1);
    }
}

static void save(gguf_writer *w, const char *dir, const char *name)
{
    char path[1024];
    ar_error err;
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (gguf_writer_write(w, path, &err) != AR_OK) {
        fprintf(stderr, "mkseeds: %s\n", err.msg);
        exit(1);
    }
    gguf_writer_free(w);
}

static void all_types(gguf_writer *w)
{
    gguf_kv kv = { .key = { 7, "t.int16" }, .type = GGUF_T_INT16 };
    kv.v.i64 = -7;
    gguf_set_kv(w, &kv);
    kv = (gguf_kv){ .key = { 8, "t.double" }, .type = GGUF_T_FLOAT64 };
    kv.v.f64 = 0.5;
    gguf_set_kv(w, &kv);
    gguf_set_u8(w, "t.u8", 7);
    gguf_set_i32(w, "t.i32", -1);
    gguf_set_u64(w, "t.u64", 1ull << 40);
    gguf_set_f32(w, "t.f32", 1.5f);
    gguf_set_bool(w, "t.bool", true);
    int16_t i16[3] = { -1, 2, -3 };
    double f64[2] = { 1.0, -2.0 };
    bool bools[2] = { true, false };
    int64_t i64[2] = { -5, 5 };
    gguf_set_arr(w, "a.i16", GGUF_T_INT16, i16, 3);
    gguf_set_arr(w, "a.f64", GGUF_T_FLOAT64, f64, 2);
    gguf_set_arr(w, "a.bool", GGUF_T_BOOL, bools, 2);
    gguf_set_arr(w, "a.i64", GGUF_T_INT64, i64, 2);
}

static void tokenizer(gguf_writer *w, int n)
{
    gguf_str *toks = calloc((size_t)n, sizeof *toks);
    char (*text)[8] = calloc((size_t)n, 8);
    int32_t *types = calloc((size_t)n, sizeof *types);
    for (int i = 0; i < n; i++) {
        snprintf(text[i], 8, "t%d", i);
        toks[i] = (gguf_str){ strlen(text[i]), text[i] };
        types[i] = i < 3 ? 3 : 1;
    }
    gguf_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_set_str(w, "tokenizer.ggml.pre", "qwen35");
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, types, (uint64_t)n);
    gguf_str merges[2] = { { 5, "t1 t2" }, { 5, "t3 t4" } };
    gguf_set_arr_str(w, "tokenizer.ggml.merges", merges, 2);
    gguf_set_u32(w, "tokenizer.ggml.eos_token_id", 1);
    gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    gguf_set_str(w, "tokenizer.chat_template", "{{ messages }}");
    free(toks);
    free(text);
    free(types);
}

static void patch_version(const char *dir, const char *name, unsigned version)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "r+b");
    if (!fp) exit(1);
    unsigned char v[4] = { (unsigned char)version, 0, 0, 0 };
    fseek(fp, 4, SEEK_SET);
    fwrite(v, 1, 4, fp);
    fclose(fp);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mkseeds DIR\n");
        return 1;
    }
    const char *dir = argv[1];

    gguf_writer *w = gguf_writer_create();
    gguf_set_str(w, "general.architecture", "qwen35");
    gguf_set_u32(w, "qwen35.block_count", 2);
    int32_t secs[4] = { 11, 11, 10, 0 };
    gguf_set_arr(w, "qwen35.rope.dimension_sections", GGUF_T_INT32, secs, 4);
    tokenizer(w, 40);
    add(w, "token_embd.weight", AR_Q8_0, 2, 32, 4);
    add(w, "output_norm.weight", AR_F32, 1, 16, 1);
    add(w, "blk.0.attn_q.weight", AR_F16, 2, 8, 4);
    add(w, "blk.0.ffn_up.weight", AR_Q4_K, 2, 256, 1);
    save(w, dir, "model.gguf");

    w = gguf_writer_create();
    all_types(w);
    add(w, "a", AR_BF16, 2, 4, 2);
    add(w, "b", AR_Q6_K, 1, 256, 1);
    save(w, dir, "types.gguf");

    w = gguf_writer_create();
    gguf_set_str(w, "general.architecture", "test");
    add(w, "x", AR_F32, 1, 4, 1);
    add(w, "y", AR_Q4_0, 2, 32, 2);
    save(w, dir, "v2.gguf");
    patch_version(dir, "v2.gguf", 2);

    w = gguf_writer_create();
    gguf_writer_set_alignment(w, 64);
    add(w, "p", AR_F32, 1, 3, 1);
    add(w, "q", AR_I8, 2, 5, 3);
    add(w, "r", AR_Q5_K, 1, 256, 1);
    save(w, dir, "align64.gguf");

    w = gguf_writer_create();
    gguf_kv kv = { .key = { 8, "split.no" }, .type = GGUF_T_UINT16 };
    gguf_set_kv(w, &kv);
    kv.key = (gguf_str){ 11, "split.count" };
    kv.v.u64 = 2;
    gguf_set_kv(w, &kv);
    gguf_set_i32(w, "split.tensors.count", 2);
    add(w, "s", AR_F32, 1, 8, 1);
    save(w, dir, "split.gguf");

    save(gguf_writer_create(), dir, "empty.gguf");
    return 0;
}
