/* cli/info.c — `arbor info [--kv] MODEL.gguf`: describe a GGUF file.
 *
 * Owns nothing persistent: opens the file with the validating reader (so a corrupt file is
 * reported, never crashed on), prints the file, architecture, every `<arch>.*` hyperparameter,
 * a table of tensors by type, the tokenizer summary and the chat template's presence; `--kv`
 * dumps every key instead. Long strings and arrays are summarised, never printed whole. */
#include "cli/cli.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "model/dflash.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#define SHOW_ELEMS 8      /* array elements shown before "..." */
#define SHOW_CHARS 120    /* string bytes shown before "..." */

static void usage(FILE *out)
{
    fprintf(out, "usage: arbor info [--kv] MODEL.gguf\n"
                 "  describes a GGUF file: parts, version, architecture and hyperparameters,\n"
                 "  tensors by type, tokenizer and chat template.\n"
                 "  --kv   dump every metadata key with its type and (summarised) value\n");
}

static void print_size(uint64_t bytes)
{
    static const char *unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) { v /= 1024; u++; }
    if (u == 0) printf("%" PRIu64 " B", bytes);
    else printf("%.2f %s", v, unit[u]);
}

static void print_count(int64_t n)
{
    if (n < 1000) printf("%" PRId64, n);
    else if (n < 1000000) printf("%.2f K", (double)n / 1e3);
    else if (n < 1000000000) printf("%.2f M", (double)n / 1e6);
    else printf("%.2f B", (double)n / 1e9);
}

/* A string quoted, control bytes escaped, cut at `max` bytes. */
static void print_str(gguf_str s, uint64_t max)
{
    putchar('"');
    uint64_t n = s.len < max ? s.len : max;
    for (uint64_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c < 32 || c == 127) printf("\\x%02x", c);
        else putchar(c);
    }
    putchar('"');
    if (n < s.len) printf("... (%" PRIu64 " bytes)", s.len);
}

static void print_scalar(enum gguf_type t, const void *p)
{
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
    uint64_t u64; int64_t i64; double f64;
    switch (t) {
    case GGUF_T_UINT8:   memcpy(&u8, p, 1);  printf("%u", u8); break;
    case GGUF_T_INT8:    memcpy(&i8, p, 1);  printf("%d", i8); break;
    case GGUF_T_UINT16:  memcpy(&u16, p, 2); printf("%u", u16); break;
    case GGUF_T_INT16:   memcpy(&i16, p, 2); printf("%d", i16); break;
    case GGUF_T_UINT32:  memcpy(&u32, p, 4); printf("%" PRIu32, u32); break;
    case GGUF_T_INT32:   memcpy(&i32, p, 4); printf("%" PRId32, i32); break;
    case GGUF_T_FLOAT32: memcpy(&f32, p, 4); printf("%g", (double)f32); break;
    case GGUF_T_BOOL:    printf("%s", *(const uint8_t *)p ? "true" : "false"); break;
    case GGUF_T_UINT64:  memcpy(&u64, p, 8); printf("%" PRIu64, u64); break;
    case GGUF_T_INT64:   memcpy(&i64, p, 8); printf("%" PRId64, i64); break;
    case GGUF_T_FLOAT64: memcpy(&f64, p, 8); printf("%g", f64); break;
    default: printf("?"); break;
    }
}

static size_t elem_size(enum gguf_type t)
{
    static const uint8_t size[GGUF_T_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
    return (unsigned)t < GGUF_T_COUNT ? size[t] : 0;
}

static void print_value(const gguf_kv *kv)
{
    switch (kv->type) {
    case GGUF_T_STRING: print_str(kv->v.str, SHOW_CHARS); return;
    case GGUF_T_BOOL: printf("%s", kv->v.b ? "true" : "false"); return;
    case GGUF_T_FLOAT32: case GGUF_T_FLOAT64: printf("%g", kv->v.f64); return;
    case GGUF_T_INT8: case GGUF_T_INT16: case GGUF_T_INT32: case GGUF_T_INT64: printf("%" PRId64, kv->v.i64); return;
    case GGUF_T_ARRAY: break;
    default: printf("%" PRIu64, kv->v.u64); return;
    }
    printf("[");
    uint64_t n = kv->arr_n < SHOW_ELEMS ? kv->arr_n : SHOW_ELEMS;
    for (uint64_t i = 0; i < n; i++) {
        if (i) printf(", ");
        if (kv->arr_type == GGUF_T_STRING) print_str(kv->arr_str[i], 40);
        else print_scalar(kv->arr_type, (const uint8_t *)kv->arr_data + i * elem_size(kv->arr_type));
    }
    printf("%s] (%" PRIu64 " x %s)", n < kv->arr_n ? ", ..." : "", kv->arr_n, gguf_type_name(kv->arr_type));
}

static void print_key(gguf_str key, int width)
{
    int n = key.len > 200 ? 200 : (int)key.len;
    printf("  %-*.*s ", width, n, key.ptr);
}

static int dump_kv(const gguf_file *f)
{
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        print_key(kv->key, 40);
        if (kv->type == GGUF_T_ARRAY) printf("%-5s ", "arr");
        else printf("%-5s ", gguf_type_name(kv->type));
        print_value(kv);
        putchar('\n');
    }
    return 0;
}

static const char *ftype_name(uint64_t t)
{
    static const char *names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [7] = "Q8_0", [8] = "Q5_0", [9] = "Q5_1",
        [10] = "Q2_K", [11] = "Q3_K_S", [12] = "Q3_K_M", [13] = "Q3_K_L", [14] = "Q4_K_S", [15] = "Q4_K_M",
        [16] = "Q5_K_S", [17] = "Q5_K_M", [18] = "Q6_K", [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S",
        [22] = "IQ3_XS", [23] = "IQ3_XXS", [24] = "IQ1_S", [25] = "IQ4_NL", [26] = "IQ3_S", [27] = "IQ3_M",
        [28] = "IQ2_S", [29] = "IQ2_M", [30] = "IQ4_XS", [31] = "IQ1_M", [32] = "BF16", [36] = "TQ1_0",
        [37] = "TQ2_0", [38] = "MXFP4_MOE", [39] = "NVFP4", [40] = "Q1_0", [41] = "Q2_0",
    };
    return t < sizeof names / sizeof names[0] && names[t] ? names[t] : "unknown";
}

static void print_file(const gguf_file *f)
{
    printf("file          %s\n", gguf_path(f));
    printf("              %d part%s, ", gguf_n_parts(f), gguf_n_parts(f) > 1 ? "s" : "");
    print_size(gguf_file_size(f));
    printf(", GGUF v%" PRIu32 ", alignment %" PRIu32, gguf_version(f), gguf_alignment(f));
    if (gguf_n_tensors(f)) printf(", data at byte %" PRIu64, gguf_data_offset(f, 0));
    putchar('\n');
    for (int i = 0; gguf_n_parts(f) > 1 && i < gguf_n_parts(f); i++) {
        printf("  part %-5d  %s (", i + 1, gguf_part_path(f, i));
        print_size(gguf_part_size(f, i));
        printf(")\n");
    }
}

static void print_general(const gguf_file *f, gguf_str arch)
{
    const gguf_kv *kv = gguf_find(f, "general.name");
    if (kv) { printf("name          "); print_value(kv); putchar('\n'); }
    printf("architecture  %.*s\n", arch.len > 200 ? 200 : (int)arch.len, arch.ptr);
    const char *drafter = dflash_file_kind(f);   /* which drafter layout (llama.cpp / Lucebox), or NULL */
    if (drafter) printf("drafter       %s\n", drafter);
    kv = gguf_find(f, "general.file_type");
    if (kv && kv->type != GGUF_T_ARRAY && kv->type != GGUF_T_STRING) {
        uint64_t t = kv->type == GGUF_T_INT32 || kv->type == GGUF_T_INT64 ? (uint64_t)kv->v.i64 : kv->v.u64;
        printf("file type     %s (general.file_type = %" PRIu64 ")\n", ftype_name(t), t);
    }
    kv = gguf_find(f, "general.quantization_version");
    if (kv) { printf("quant version "); print_value(kv); putchar('\n'); }
}

static void print_hparams(const gguf_file *f, gguf_str arch)
{
    printf("\nhyperparameters (%.*s.*)\n", arch.len > 200 ? 200 : (int)arch.len, arch.ptr);
    int shown = 0;
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        if (kv->key.len <= arch.len || memcmp(kv->key.ptr, arch.ptr, arch.len) || kv->key.ptr[arch.len] != '.') continue;
        print_key(kv->key, 40);
        print_value(kv);
        putchar('\n');
        shown++;
    }
    if (!shown) printf("  (none)\n");
}

static void print_tensors(const gguf_file *f)
{
    int64_t count[AR_DTYPE_COUNT] = { 0 }, params[AR_DTYPE_COUNT] = { 0 }, total_params = 0;
    uint64_t bytes[AR_DTYPE_COUNT] = { 0 }, total_bytes = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (t->type < 0 || t->type >= AR_DTYPE_COUNT) continue;   /* the reader only admits known types */
        count[t->type]++;
        params[t->type] += t->n_elements;
        bytes[t->type] += t->nbytes;
        total_params += t->n_elements;
        total_bytes += t->nbytes;
    }
    printf("\ntensors       %" PRId64 ", ", gguf_n_tensors(f));
    print_count(total_params);
    printf(" params (%" PRId64 "), ", total_params);
    print_size(total_bytes);
    printf("\n  %-8s %8s %16s %14s  %s\n", "type", "tensors", "params", "bytes", "bits/param");
    for (int t = 0; t < AR_DTYPE_COUNT; t++) {
        if (!count[t]) continue;
        printf("  %-8s %8" PRId64 " %16" PRId64 " %14" PRIu64 "  %.2f\n", ar_dtype_name(t), count[t], params[t], bytes[t],
               params[t] ? 8.0 * (double)bytes[t] / (double)params[t] : 0.0);
    }
}

static void print_token(const gguf_file *f, const char *label, const char *key, const gguf_kv *tokens)
{
    const gguf_kv *kv = gguf_find(f, key);
    if (!kv) return;
    printf("  %-10s  ", label);
    print_value(kv);
    bool is_int = kv->type != GGUF_T_ARRAY && kv->type != GGUF_T_STRING && kv->type != GGUF_T_BOOL &&
                  kv->type != GGUF_T_FLOAT32 && kv->type != GGUF_T_FLOAT64;
    if (is_int && tokens && tokens->arr_type == GGUF_T_STRING) {
        bool neg = (kv->type == GGUF_T_INT8 || kv->type == GGUF_T_INT16 || kv->type == GGUF_T_INT32 ||
                    kv->type == GGUF_T_INT64) && kv->v.i64 < 0;
        uint64_t id = neg ? 0 : kv->v.u64;
        if (neg || id >= tokens->arr_n) printf("  (out of range: %" PRIu64 " tokens)", tokens->arr_n);
        else { putchar(' '); print_str(tokens->arr_str[id], 60); }
    }
    putchar('\n');
}

static void print_tokenizer(const gguf_file *f)
{
    const gguf_kv *model = gguf_find(f, "tokenizer.ggml.model"), *pre = gguf_find(f, "tokenizer.ggml.pre");
    const gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens"), *merges = gguf_find(f, "tokenizer.ggml.merges");
    printf("\ntokenizer\n");
    if (!model && !tokens) {
        printf("  (none)\n");
    } else {
        printf("  %-10s  ", "model");
        if (model) print_value(model); else printf("(absent)");
        printf("\n  %-10s  ", "pre");
        if (pre) print_value(pre); else printf("(absent)");
        printf("\n  %-10s  %" PRIu64 "\n", "tokens", tokens && tokens->type == GGUF_T_ARRAY ? tokens->arr_n : 0);
        printf("  %-10s  %" PRIu64 "\n", "merges", merges && merges->type == GGUF_T_ARRAY ? merges->arr_n : 0);
        if (tokens && tokens->type != GGUF_T_ARRAY) tokens = NULL;
        print_token(f, "bos", "tokenizer.ggml.bos_token_id", tokens);
        print_token(f, "eos", "tokenizer.ggml.eos_token_id", tokens);
        print_token(f, "eot", "tokenizer.ggml.eot_token_id", tokens);
        print_token(f, "pad", "tokenizer.ggml.padding_token_id", tokens);
        print_token(f, "unk", "tokenizer.ggml.unknown_token_id", tokens);
        print_token(f, "add_bos", "tokenizer.ggml.add_bos_token", NULL);
        print_token(f, "add_eos", "tokenizer.ggml.add_eos_token", NULL);
    }
    const gguf_kv *tmpl = gguf_find(f, "tokenizer.chat_template");
    if (tmpl && tmpl->type == GGUF_T_STRING)
        printf("chat template present (%" PRIu64 " bytes)\n", tmpl->v.str.len);
    else
        printf("chat template none\n");
}

int cmd_info(int argc, char **argv)
{
    bool kv_only = false;
    const char *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        else if (!strcmp(argv[i], "--kv")) kv_only = true;
        else if (argv[i][0] == '-' && argv[i][1]) return cli_fail("info: unknown option '%s' (try 'arbor info --help')", argv[i]);
        else if (path) return cli_fail("info: one model file at a time ('%s' and '%s')", path, argv[i]);
        else path = argv[i];
    }
    if (!path) {
        usage(stderr);
        return 1;
    }
    gguf_file *f = NULL;
    ar_error err = { 0 };
    if (gguf_open(&f, path, &err) != AR_OK) return cli_fail("%s", err.msg);
    if (kv_only) {
        dump_kv(f);
        gguf_close(f);
        return 0;
    }
    gguf_str arch = { 0, "" };
    const gguf_kv *a = gguf_find(f, "general.architecture");
    if (a && a->type == GGUF_T_STRING) arch = a->v.str;
    print_file(f);
    print_general(f, arch.len ? arch : (gguf_str){ 9, "(unknown)" });
    if (arch.len) print_hparams(f, arch);
    print_tensors(f);
    print_tokenizer(f);
    gguf_close(f);
    return 0;
}
