/* tests/test_gguf.c — the GGUF reader and writer.
 *
 * Round trips (every value type, tensors of several types, fill callbacks, copying a file key by
 * key), a v2 file and v1/v4/byte-swapped refusals built byte by byte, split models (3 parts, a
 * missing part, a wrong split.no, a wrong tensor total), a table of corruptions each checked for
 * the field its error must name, every truncation and every single-byte flip of a valid file
 * (none may crash: run this under ASan), and the time to open the real qwen35 vocab file. */
#include "base/timer.h"
#include "format/gguf.h"
#include "format/quant.h"
#include "tests/test.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- byte builder for hand-made files ------------------------------------------------------ */

typedef struct bb { uint8_t *p; size_t n, cap; } bb;

static void put(bb *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void u32(bb *b, uint32_t v) { put(b, &v, 4); }
static void u64(bb *b, uint64_t v) { put(b, &v, 8); }
static void str(bb *b, const char *s) { u64(b, strlen(s)); put(b, s, strlen(s)); }
static void zeros(bb *b, size_t n) { static const uint8_t z[4096]; while (n) { size_t k = n > 4096 ? 4096 : n; put(b, z, k); n -= k; } }
static void pad(bb *b, size_t a) { zeros(b, (a - b->n % a) % a); }

static void hdr(bb *b, uint32_t version, uint64_t n_tensors, uint64_t n_kv)
{
    put(b, "GGUF", 4);
    u32(b, version);
    u64(b, n_tensors);
    u64(b, n_kv);
}

static void kv_u32(bb *b, const char *key, uint32_t v) { str(b, key); u32(b, GGUF_T_UINT32); u32(b, v); }
static void kv_str(bb *b, const char *key, const char *v) { str(b, key); u32(b, GGUF_T_STRING); str(b, v); }

static void info(bb *b, const char *name, uint32_t n_dims, const int64_t *ne, uint32_t type, uint64_t offset)
{
    str(b, name);
    u32(b, n_dims);
    for (uint32_t d = 0; d < n_dims; d++) u64(b, (uint64_t)ne[d]);
    u32(b, type);
    u64(b, offset);
}

/* Open a private exact-size copy, so ASan sees any read past the end. */
static int open_bytes(const uint8_t *p, size_t n, gguf_file **f, ar_error *err)
{
    uint8_t *copy = malloc(n ? n : 1);
    if (n) memcpy(copy, p, n);
    int rc = gguf_open_memory(f, copy, n, err);
    if (rc == AR_OK) {
        /* walk everything the reader promises is in bounds */
        volatile uint8_t sink = 0;
        for (int64_t i = 0; i < gguf_n_tensors(*f); i++) {
            const gguf_tensor *t = gguf_tensor_at(*f, i);
            if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        }
        (void)sink;
        gguf_close(*f);
        *f = NULL;
    }
    free(copy);
    return rc;
}

static void expect_fail(const char *what, const bb *b, const char *needle1, const char *needle2)
{
    gguf_file *f = NULL;
    ar_error err = { 0 };
    int rc = open_bytes(b->p, b->n, &f, &err);
    CHECK(rc != AR_OK, "%s: expected an error, file opened", what);
    if (rc == AR_OK) return;
    CHECK(strstr(err.msg, needle1) != NULL, "%s: error '%s' does not mention '%s'", what, err.msg, needle1);
    if (needle2)
        CHECK(strstr(err.msg, needle2) != NULL, "%s: error '%s' does not mention '%s'", what, err.msg, needle2);
}

static void expect_ok(const char *what, const bb *b)
{
    gguf_file *f = NULL;
    ar_error err = { 0 };
    int rc = open_bytes(b->p, b->n, &f, &err);
    CHECK(rc == AR_OK, "%s: expected success, got '%s'", what, err.msg);
}

/* ---- temp files ---------------------------------------------------------------------------- */

static char tmpdir[256];

static const char *tmp_path(const char *name)
{
    static char buf[8][512];
    static int k;
    char *p = buf[k++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static uint8_t *read_all(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long sz = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *p = malloc(sz > 0 ? (size_t)sz : 1);
    *n = fread(p, 1, (size_t)sz, fp);
    fclose(fp);
    return p;
}

static void write_all(const char *path, const bb *b)
{
    FILE *fp = fopen(path, "wb");
    fwrite(b->p, 1, b->n, fp);
    fclose(fp);
}

/* ---- round trip ---------------------------------------------------------------------------- */

static int fill_ramp(void *ctx, const gguf_tensor *t, void *dst, uint64_t nbytes, ar_error *err)
{
    (void)err;
    int *calls = ctx;
    (*calls)++;
    if (nbytes != t->nbytes) return AR_EINVAL;
    for (uint64_t i = 0; i < nbytes; i++) ((uint8_t *)dst)[i] = (uint8_t)(i * 7 + 3);
    return AR_OK;
}

static int fill_fail(void *ctx, const gguf_tensor *t, void *dst, uint64_t nbytes, ar_error *err)
{
    (void)ctx; (void)t; (void)dst; (void)nbytes;
    return ar_fail(err, AR_EIO, "synthetic failure");
}

static gguf_kv scalar_kv(const char *key, enum gguf_type type)
{
    gguf_kv kv = { .key = { strlen(key), key }, .type = type };
    return kv;
}

static void set_all_types(gguf_writer *w)
{
    gguf_set_u8(w, "t.u8", 200);
    gguf_set_i32(w, "t.i32", -123456);
    gguf_set_u32(w, "t.u32", 4000000000u);
    gguf_set_u64(w, "t.u64", 0x123456789abcdefull);
    gguf_set_f32(w, "t.f32", 0.15625f);
    gguf_set_bool(w, "t.bool", true);
    gguf_set_str(w, "t.str", "héllo");
    gguf_set_strn(w, "t.strn", "a\0b", 3);
    gguf_set_str(w, "t.empty", "");
    gguf_kv kv = scalar_kv("t.i8", GGUF_T_INT8); kv.v.i64 = -5; gguf_set_kv(w, &kv);
    kv = scalar_kv("t.u16", GGUF_T_UINT16); kv.v.u64 = 65535; gguf_set_kv(w, &kv);
    kv = scalar_kv("t.i16", GGUF_T_INT16); kv.v.i64 = -32768; gguf_set_kv(w, &kv);
    kv = scalar_kv("t.i64", GGUF_T_INT64); kv.v.i64 = INT64_MIN; gguf_set_kv(w, &kv);
    kv = scalar_kv("t.f64", GGUF_T_FLOAT64); kv.v.f64 = 3.141592653589793; gguf_set_kv(w, &kv);

    uint8_t a_u8[] = { 1, 2, 255 };
    int8_t a_i8[] = { -1, 0, 127 };
    uint16_t a_u16[] = { 1, 65535 };
    int16_t a_i16[] = { -300, 300 };
    uint32_t a_u32[] = { 7, 8, 9, 10 };
    int32_t a_i32[] = { -1, 151643, 151645 };
    float a_f32[] = { 1.5f, -2.25f };
    bool a_bool[] = { true, false, true };
    uint64_t a_u64[] = { UINT64_MAX };
    int64_t a_i64[] = { -9, 9 };
    double a_f64[] = { 1e300 };
    gguf_set_arr(w, "a.u8", GGUF_T_UINT8, a_u8, 3);
    gguf_set_arr(w, "a.i8", GGUF_T_INT8, a_i8, 3);
    gguf_set_arr(w, "a.u16", GGUF_T_UINT16, a_u16, 2);
    gguf_set_arr(w, "a.i16", GGUF_T_INT16, a_i16, 2);
    gguf_set_arr(w, "a.u32", GGUF_T_UINT32, a_u32, 4);
    gguf_set_arr(w, "a.i32", GGUF_T_INT32, a_i32, 3);
    gguf_set_arr(w, "a.f32", GGUF_T_FLOAT32, a_f32, 2);
    gguf_set_arr(w, "a.bool", GGUF_T_BOOL, a_bool, 3);
    gguf_set_arr(w, "a.u64", GGUF_T_UINT64, a_u64, 1);
    gguf_set_arr(w, "a.i64", GGUF_T_INT64, a_i64, 2);
    gguf_set_arr(w, "a.f64", GGUF_T_FLOAT64, a_f64, 1);
    gguf_set_arr(w, "a.empty", GGUF_T_INT32, NULL, 0);
    gguf_str strs[] = { { 1, "!" }, { 0, "" }, { 7, "Ġhello" }, { 3, "a\0b" } };
    gguf_set_arr_str(w, "a.str", strs, 4);
    gguf_set_arr_str(w, "a.str_empty", NULL, 0);
}

static void check_all_types(const gguf_file *f)
{
    const gguf_kv *kv;
    kv = gguf_find(f, "t.u8");    CHECK(kv && kv->type == GGUF_T_UINT8 && kv->v.u64 == 200, "t.u8");
    kv = gguf_find(f, "t.i32");   CHECK(kv && kv->type == GGUF_T_INT32 && kv->v.i64 == -123456, "t.i32");
    kv = gguf_find(f, "t.u32");   CHECK(kv && kv->type == GGUF_T_UINT32 && kv->v.u64 == 4000000000u, "t.u32");
    kv = gguf_find(f, "t.u64");   CHECK(kv && kv->type == GGUF_T_UINT64 && kv->v.u64 == 0x123456789abcdefull, "t.u64");
    kv = gguf_find(f, "t.f32");   CHECK(kv && kv->type == GGUF_T_FLOAT32 && kv->v.f64 == 0.15625, "t.f32");
    kv = gguf_find(f, "t.bool");  CHECK(kv && kv->type == GGUF_T_BOOL && kv->v.b, "t.bool");
    kv = gguf_find(f, "t.str");   CHECK(kv && kv->type == GGUF_T_STRING && gguf_str_eq(kv->v.str, "héllo"), "t.str");
    kv = gguf_find(f, "t.strn");  CHECK(kv && kv->v.str.len == 3 && !memcmp(kv->v.str.ptr, "a\0b", 3), "t.strn");
    kv = gguf_find(f, "t.empty"); CHECK(kv && kv->type == GGUF_T_STRING && kv->v.str.len == 0, "t.empty");
    kv = gguf_find(f, "t.i8");    CHECK(kv && kv->type == GGUF_T_INT8 && kv->v.i64 == -5, "t.i8");
    kv = gguf_find(f, "t.u16");   CHECK(kv && kv->type == GGUF_T_UINT16 && kv->v.u64 == 65535, "t.u16");
    kv = gguf_find(f, "t.i16");   CHECK(kv && kv->type == GGUF_T_INT16 && kv->v.i64 == -32768, "t.i16");
    kv = gguf_find(f, "t.i64");   CHECK(kv && kv->type == GGUF_T_INT64 && kv->v.i64 == INT64_MIN, "t.i64");
    kv = gguf_find(f, "t.f64");   CHECK(kv && kv->type == GGUF_T_FLOAT64 && kv->v.f64 == 3.141592653589793, "t.f64");

    kv = gguf_find(f, "a.u8");
    CHECK(kv && kv->type == GGUF_T_ARRAY && kv->arr_type == GGUF_T_UINT8 && kv->arr_n == 3 &&
          ((const uint8_t *)kv->arr_data)[2] == 255, "a.u8");
    kv = gguf_find(f, "a.i16");
    int16_t i16[2];
    if (kv) memcpy(i16, kv->arr_data, 4);
    CHECK(kv && kv->arr_type == GGUF_T_INT16 && kv->arr_n == 2 && i16[0] == -300 && i16[1] == 300, "a.i16");
    kv = gguf_find(f, "a.f64");
    double d = 0;
    if (kv) memcpy(&d, kv->arr_data, 8);
    CHECK(kv && kv->arr_type == GGUF_T_FLOAT64 && d == 1e300, "a.f64");
    kv = gguf_find(f, "a.bool");
    CHECK(kv && kv->arr_type == GGUF_T_BOOL && kv->arr_n == 3 && ((const uint8_t *)kv->arr_data)[1] == 0, "a.bool");
    kv = gguf_find(f, "a.empty");
    CHECK(kv && kv->arr_type == GGUF_T_INT32 && kv->arr_n == 0, "a.empty");
    kv = gguf_find(f, "a.str");
    CHECK(kv && kv->arr_type == GGUF_T_STRING && kv->arr_n == 4 && kv->arr_str, "a.str");
    if (kv && kv->arr_str && kv->arr_n == 4) {
        CHECK(gguf_str_eq(kv->arr_str[0], "!") && kv->arr_str[1].len == 0 && gguf_str_eq(kv->arr_str[2], "Ġhello") &&
              kv->arr_str[3].len == 3 && !memcmp(kv->arr_str[3].ptr, "a\0b", 3), "a.str contents");
    }
    kv = gguf_find(f, "a.str_empty");
    CHECK(kv && kv->arr_type == GGUF_T_STRING && kv->arr_n == 0, "a.str_empty");

    /* typed getters */
    ar_error err = { 0 };
    uint32_t u; int32_t i; uint64_t u6; float x; bool b; gguf_str s;
    CHECK(gguf_get_u32(f, "t.u8", &u, &err) == AR_OK && u == 200, "get_u32 from u8");
    CHECK(gguf_get_i32(f, "t.i32", &i, &err) == AR_OK && i == -123456, "get_i32");
    CHECK(gguf_get_u32(f, "t.i32", &u, &err) != AR_OK && strstr(err.msg, "t.i32"), "get_u32 of negative: %s", err.msg);
    CHECK(gguf_get_i32(f, "t.u32", &i, &err) != AR_OK && strstr(err.msg, "does not fit"), "get_i32 of 4e9: %s", err.msg);
    CHECK(gguf_get_u64(f, "t.u64", &u6, &err) == AR_OK && u6 == 0x123456789abcdefull, "get_u64");
    CHECK(gguf_get_u32(f, "t.u64", &u, &err) != AR_OK, "get_u32 of big u64");
    CHECK(gguf_get_f32(f, "t.f64", &x, &err) == AR_OK && x == 3.14159265f, "get_f32 from f64");
    CHECK(gguf_get_f32(f, "t.u8", &x, &err) != AR_OK && strstr(err.msg, "u8"), "get_f32 of u8: %s", err.msg);
    CHECK(gguf_get_bool(f, "t.bool", &b, &err) == AR_OK && b, "get_bool");
    CHECK(gguf_get_str(f, "t.str", &s, &err) == AR_OK && gguf_str_eq(s, "héllo"), "get_str");
    CHECK(gguf_get_str(f, "a.str", &s, &err) != AR_OK && strstr(err.msg, "array"), "get_str of array: %s", err.msg);
    CHECK(gguf_get_u32(f, "no.such.key", &u, &err) == AR_EFORMAT && strstr(err.msg, "no.such.key") &&
          strstr(err.msg, "missing"), "missing key: %s", err.msg);
    CHECK(gguf_get_u32_or(f, "no.such.key", 77, &u, &err) == AR_OK && u == 77, "get_u32_or default");
    CHECK(gguf_get_u32_or(f, "t.u8", 77, &u, &err) == AR_OK && u == 200, "get_u32_or present");
    CHECK(gguf_get_f32_or(f, "no.such.key", 0.5f, &x, &err) == AR_OK && x == 0.5f, "get_f32_or default");
    CHECK(gguf_get_f32_or(f, "t.str", 0.5f, &x, &err) != AR_OK, "get_f32_or wrong type");
    int64_t ints[8];
    size_t n = 0;
    CHECK(gguf_get_ints(f, "a.i32", ints, 8, &n, &err) == AR_OK && n == 3 && ints[0] == -1 && ints[2] == 151645, "get_ints i32");
    CHECK(gguf_get_ints(f, "a.u16", ints, 8, &n, &err) == AR_OK && n == 2 && ints[1] == 65535, "get_ints u16");
    CHECK(gguf_get_ints(f, "t.i8", ints, 8, &n, &err) == AR_OK && n == 1 && ints[0] == -5, "get_ints scalar");
    CHECK(gguf_get_ints(f, "a.u32", ints, 2, &n, &err) != AR_OK && strstr(err.msg, "a.u32"), "get_ints cap: %s", err.msg);
    CHECK(gguf_get_ints(f, "a.u64", ints, 8, &n, &err) != AR_OK, "get_ints u64 max does not fit i64");
    CHECK(gguf_get_ints(f, "a.f32", ints, 8, &n, &err) != AR_OK, "get_ints of floats");
}

typedef struct tspec { const char *name; int type; int n_dims; int64_t ne[4]; } tspec;

static const tspec round_tensors[] = {
    { "tok_embd.weight", AR_F32, 2, { 4, 3, 1, 1 } },
    { "norm.weight", AR_F16, 1, { 8, 1, 1, 1 } },
    { "blk.0.attn_q.weight", AR_Q8_0, 2, { 64, 2, 1, 1 } },
    { "blk.0.ffn_up.weight", AR_Q4_K, 2, { 256, 3, 1, 1 } },
    { "blk.0.ffn_down.weight", AR_Q6_K, 3, { 256, 1, 2, 1 } },
    { "blk.0.bf16", AR_BF16, 4, { 2, 3, 1, 2 } },
    { "filled.weight", AR_Q5_K, 1, { 512, 1, 1, 1 } },
};
#define N_ROUND (int)(sizeof round_tensors / sizeof round_tensors[0])

static void test_round_trip(void)
{
    gguf_writer *w = gguf_writer_create();
    gguf_set_str(w, "general.architecture", "test");
    set_all_types(w);
    gguf_set_u32(w, "replace.me", 1);
    gguf_set_str(w, "remove.me", "x");
    gguf_set_u32(w, "after", 2);
    CHECK(gguf_set_str(w, "replace.me", "now a string") == AR_OK, "replace");
    CHECK(gguf_remove_key(w, "remove.me") == AR_OK, "remove");
    CHECK(gguf_remove_key(w, "remove.me") != AR_OK, "remove absent");
    CHECK(gguf_set_u32(w, "", 1) == AR_EINVAL, "empty key refused");
    CHECK(gguf_set_arr(w, "bad", GGUF_T_STRING, "x", 1) == AR_EINVAL, "set_arr of strings refused");
    gguf_writer_set_alignment(w, 64);

    uint8_t *datas[N_ROUND] = { 0 };
    int fill_calls = 0;
    for (int i = 0; i < N_ROUND; i++) {
        const tspec *t = &round_tensors[i];
        uint64_t nbytes = 0;
        CHECK(!gguf_check_shape(t->type, t->n_dims, t->ne, NULL, &nbytes), "shape %s", t->name);
        bool fill = !strcmp(t->name, "filled.weight");
        if (!fill) {
            datas[i] = malloc(nbytes);
            for (uint64_t k = 0; k < nbytes; k++) datas[i][k] = (uint8_t)(k * 31 + (uint64_t)i);
        }
        CHECK(gguf_add_tensor(w, t->name, t->type, t->n_dims, t->ne, datas[i], fill ? fill_ramp : NULL, &fill_calls) == AR_OK,
              "add %s", t->name);
    }
    int64_t ne_bad[2] = { 33, 1 };
    CHECK(gguf_add_tensor(w, "bad.block", AR_Q8_0, 2, ne_bad, datas[0], NULL, NULL) == AR_EINVAL, "bad block refused");
    CHECK(gguf_add_tensor(w, "tok_embd.weight", AR_F32, 2, round_tensors[0].ne, datas[0], NULL, NULL) == AR_EINVAL,
          "duplicate tensor refused");
    CHECK(gguf_add_tensor(w, "nodata", AR_F32, 2, round_tensors[0].ne, NULL, NULL, NULL) == AR_EINVAL, "no data refused");
    CHECK(gguf_add_tensor(w, "badtype", 4, 2, round_tensors[0].ne, datas[0], NULL, NULL) == AR_EINVAL, "type 4 refused");

    ar_error err = { 0 };
    const char *path = tmp_path("round.gguf");
    CHECK(gguf_writer_write(w, path, &err) == AR_OK, "write: %s", err.msg);
    CHECK(fill_calls == 1, "fill called %d times", fill_calls);
    char tmpname0[600];
    snprintf(tmpname0, sizeof tmpname0, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(tmpname0, F_OK) != 0, "no temporary left");
    gguf_writer_free(w);

    gguf_file *f = NULL;
    CHECK(gguf_open(&f, path, &err) == AR_OK, "open round trip: %s", err.msg);
    if (!f) return;
    CHECK(gguf_version(f) == 3 && gguf_alignment(f) == 64 && gguf_n_parts(f) == 1, "version/alignment/parts");
    CHECK(!strcmp(gguf_path(f), path), "path");
    struct stat st;
    stat(path, &st);
    CHECK(gguf_file_size(f) == (uint64_t)st.st_size, "file size");
    CHECK(gguf_data_offset(f, 0) % 64 == 0, "data offset aligned");
    check_all_types(f);

    /* insertion order: the replaced key stays where it was, the removed one is gone */
    int64_t i_arch = -1, i_repl = -1, i_after = -1;
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        if (gguf_str_eq(kv->key, "general.architecture")) i_arch = i;
        if (gguf_str_eq(kv->key, "replace.me")) i_repl = i;
        if (gguf_str_eq(kv->key, "after")) i_after = i;
    }
    CHECK(i_arch == 0 && i_repl > i_arch && i_after == i_repl + 1, "order %lld %lld %lld", (long long)i_arch,
          (long long)i_repl, (long long)i_after);
    CHECK(!gguf_find(f, "remove.me"), "removed key absent");
    const gguf_kv *rk = gguf_find(f, "replace.me");
    CHECK(rk && rk->type == GGUF_T_STRING && gguf_str_eq(rk->v.str, "now a string"), "replaced value");
    CHECK(gguf_kv_at(f, gguf_n_kv(f)) == NULL && gguf_kv_at(f, -1) == NULL, "kv_at bounds");

    CHECK(gguf_n_tensors(f) == N_ROUND, "n_tensors %lld", (long long)gguf_n_tensors(f));
    for (int i = 0; i < N_ROUND; i++) {
        const tspec *s = &round_tensors[i];
        const gguf_tensor *t = gguf_find_tensor(f, s->name);
        CHECK(t != NULL, "find %s", s->name);
        if (!t) continue;
        CHECK(t == gguf_tensor_at(f, i), "order of %s", s->name);
        CHECK(t->type == s->type && t->n_dims == s->n_dims, "type/dims of %s", s->name);
        for (int d = 0; d < 4; d++) CHECK(t->ne[d] == s->ne[d], "%s ne[%d] = %lld", s->name, d, (long long)t->ne[d]);
        CHECK(t->offset % 64 == 0 && (uintptr_t)t->data % 64 == 0, "%s aligned", s->name);
        int64_t nel = s->ne[0] * s->ne[1] * s->ne[2] * s->ne[3];
        const ar_dtype_info *ti = ar_dtype_get(s->type);
        CHECK(t->n_elements == nel && t->nbytes == (uint64_t)(nel / ti->block_elems) * ti->block_bytes,
              "%s sizes %lld %llu", s->name, (long long)t->n_elements, (unsigned long long)t->nbytes);
        bool same = true;
        for (uint64_t k = 0; k < t->nbytes; k++) {
            uint8_t want = datas[i] ? (uint8_t)(k * 31 + (uint64_t)i) : (uint8_t)(k * 7 + 3);
            if (((const uint8_t *)t->data)[k] != want) { same = false; break; }
        }
        CHECK(same, "data of %s", s->name);
        CHECK(t->part == 0, "part of %s", s->name);
    }
    CHECK(!gguf_find_tensor(f, "nope") && !gguf_find_tensor(f, NULL), "find absent tensor");

    /* copy key by key and tensor by tensor: the output must be byte-identical */
    gguf_writer *c = gguf_writer_create();
    for (int64_t i = 0; i < gguf_n_kv(f); i++) CHECK(gguf_set_kv(c, gguf_kv_at(f, i)) == AR_OK, "copy kv %lld", (long long)i);
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        CHECK(gguf_add_tensor(c, t->name, t->type, t->n_dims, t->ne, t->data, NULL, NULL) == AR_OK, "copy %s", t->name);
    }
    const char *copy = tmp_path("copy.gguf");
    CHECK(gguf_writer_write(c, copy, &err) == AR_OK, "write copy: %s", err.msg);
    gguf_writer_free(c);
    size_t na = 0, nb = 0;
    uint8_t *a = read_all(path, &na), *b = read_all(copy, &nb);
    CHECK(a && b && na == nb && !memcmp(a, b, na), "copy is byte-identical (%zu vs %zu bytes)", na, nb);
    free(a);
    free(b);

    /* gguf_writable: a private, writable alias of a tensor's bytes (and its neighbours' pages) with
     * the same contents; writes through it reach neither the file nor another tensor */
    {
        const gguf_tensor *t0 = gguf_tensor_at(f, 0), *t1 = gguf_tensor_at(f, 1);
        uint8_t *before1 = malloc(t1->nbytes);
        memcpy(before1, t1->data, t1->nbytes);
        uint8_t *wd = gguf_writable(f, t0->data, t0->nbytes, &err);
        CHECK(wd == t0->data, "writable alias of %s: %s", t0->name, wd ? "moved" : err.msg);
        bool same = wd != NULL;
        for (uint64_t k = 0; wd && k < t0->nbytes; k++) same = same && wd[k] == (uint8_t)(k * 31);
        CHECK(same, "writable %s kept its bytes", t0->name);
        if (wd) memset(wd, 0xAB, t0->nbytes);
        CHECK(!memcmp(before1, t1->data, t1->nbytes), "a write through %s's alias changed %s", t0->name, t1->name);
        CHECK(wd && ((const uint8_t *)t0->data)[0] == 0xAB, "the alias is the tensor's memory");
        /* the alias covers whole 2 MiB chunks (header and neighbours included): making the neighbour
         * writable afterwards keeps what was written through the first alias, and the metadata */
        uint8_t *wd1 = gguf_writable(f, t1->data, t1->nbytes, &err);
        CHECK(wd1 == t1->data && !memcmp(before1, t1->data, t1->nbytes), "writable %s kept its bytes: %s", t1->name,
              wd1 ? "changed" : err.msg);
        same = wd != NULL;
        for (uint64_t k = 0; wd && k < t0->nbytes; k++) same = same && wd[k] == 0xAB;
        CHECK(same, "making %s writable undid a write to %s", t1->name, t0->name);
        CHECK(gguf_find_tensor(f, t1->name) == t1 && gguf_tensor_at(f, 0) == t0, "tensor index after writable aliases");
        uint8_t *again = read_all(path, &na);
        const uint64_t at = gguf_data_offset(f, 0) + t0->offset;
        CHECK(again && na > at + 1 && again[at] == 0 && again[at + 1] == 31, "the file changed under a writable alias");
        gguf_file *fm = NULL;
        if (again && gguf_open_memory(&fm, again, na, &err) == AR_OK) {
            const gguf_tensor *tm = gguf_tensor_at(fm, 0);
            CHECK(gguf_writable(fm, tm->data, tm->nbytes, &err) == NULL && strstr(err.msg, "caller's buffer"),
                  "a caller's buffer made writable: %s", err.msg);
            gguf_close(fm);
        }
        free(again);
        static const uint8_t outside[16];
        CHECK(gguf_writable(f, outside, sizeof outside, &err) == NULL && strstr(err.msg, "not tensor data"),
              "range outside the file accepted: %s", err.msg);
        free(before1);
    }
    gguf_close(f);
    for (int i = 0; i < N_ROUND; i++) free(datas[i]);

    /* a failing fill callback leaves nothing under the final name */
    w = gguf_writer_create();
    int64_t ne1[1] = { 32 };
    gguf_add_tensor(w, "x", AR_F32, 1, ne1, NULL, fill_fail, NULL);
    const char *failed = tmp_path("failed.gguf");
    int rc = gguf_writer_write(w, failed, &err);
    CHECK(rc != AR_OK && strstr(err.msg, "synthetic failure") && strstr(err.msg, "'x'"), "fill failure: %s", err.msg);
    CHECK(access(failed, F_OK) != 0, "no file after a failed write");
    char tmpname[600];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", failed, (long)getpid());
    CHECK(access(tmpname, F_OK) != 0, "temporary removed after a failed write");
    gguf_writer_set_alignment(w, 48);
    CHECK(gguf_writer_write(w, failed, &err) == AR_EINVAL && strstr(err.msg, "general.alignment"), "bad alignment: %s", err.msg);
    gguf_writer_free(w);

    /* an empty writer writes a valid file */
    w = gguf_writer_create();
    const char *empty = tmp_path("empty.gguf");
    CHECK(gguf_writer_write(w, empty, &err) == AR_OK, "empty write: %s", err.msg);
    gguf_writer_free(w);
    CHECK(gguf_open(&f, empty, &err) == AR_OK && gguf_n_kv(f) == 0 && gguf_n_tensors(f) == 0, "empty open: %s", err.msg);
    gguf_close(f);
}

/* ---- hand-built files ---------------------------------------------------------------------- */

/* A small valid file: two kvs, one F32 tensor [8] and one Q8_0 tensor [32, 2]. */
static bb small_file(uint32_t version)
{
    bb b = { 0 };
    hdr(&b, version, 2, 2);
    kv_str(&b, "general.architecture", "test");
    kv_u32(&b, "test.block_count", 2);
    int64_t ne0[1] = { 8 }, ne1[2] = { 32, 2 };
    info(&b, "a", 1, ne0, AR_F32, 0);
    info(&b, "b", 2, ne1, AR_Q8_0, 32);
    pad(&b, 32);
    for (int i = 0; i < 8; i++) { float x = (float)i; put(&b, &x, 4); }
    zeros(&b, 68);
    return b;
}

static void test_versions(void)
{
    bb b = small_file(2);
    gguf_file *f = NULL;
    ar_error err = { 0 };
    CHECK(gguf_open_memory(&f, b.p, b.n, &err) == AR_OK, "v2: %s", err.msg);
    if (f) {
        CHECK(gguf_version(f) == 2 && gguf_n_tensors(f) == 2 && gguf_n_kv(f) == 2, "v2 contents");
        const gguf_tensor *t = gguf_find_tensor(f, "a");
        float x = 0;
        if (t) memcpy(&x, (const uint8_t *)t->data + 12, 4);
        CHECK(t && t->nbytes == 32 && x == 3.0f, "v2 tensor data");
        t = gguf_find_tensor(f, "b");
        CHECK(t && t->nbytes == 68 && t->offset == 32, "v2 q8_0 tensor");
        CHECK(!strcmp(gguf_path(f), "<memory>"), "memory path");
        gguf_close(f);
    }
    const char *v2 = tmp_path("v2.gguf");
    write_all(v2, &b);
    CHECK(gguf_open(&f, v2, &err) == AR_OK && gguf_version(f) == 2, "v2 from disk: %s", err.msg);
    gguf_close(f);
    free(b.p);

    b = small_file(1);
    expect_fail("v1", &b, "version 1", "not supported");
    free(b.p);
    b = small_file(4);
    expect_fail("v4", &b, "version 4", NULL);
    free(b.p);
    b = small_file(0x03000000);
    expect_fail("byte-swapped", &b, "big-endian", NULL);
    free(b.p);
    b = small_file(0);
    expect_fail("v0", &b, "version 0", NULL);
    free(b.p);
}

static void test_corruptions(void)
{
    int64_t ne8[1] = { 8 }, ne16[1] = { 16 };
    bb b = { 0 };

    expect_fail("empty file", &b, "empty", NULL);

    b = small_file(3); b.p[0] = 'X';
    expect_fail("flipped magic", &b, "magic", "'XGUF'");
    free(b.p);

    b = small_file(3);
    b.n = 3;
    expect_fail("3 bytes", &b, "truncated", "magic");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1ull << 40); kv_u32(&b, "k", 1);
    expect_fail("absurd n_kv", &b, "n_kv", NULL);
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, UINT64_MAX, 0); zeros(&b, 100);
    expect_fail("absurd n_tensors", &b, "n_tensors", NULL);
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "general.name"); u32(&b, GGUF_T_STRING); u64(&b, 1000000); put(&b, "abc", 3);
    expect_fail("string length past EOF", &b, "'general.name'", "runs past end of file");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); u64(&b, 1ull << 62); put(&b, "abcdefgh", 8);
    expect_fail("key length past EOF", &b, "key #0", "runs past end of file");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, ""); u32(&b, GGUF_T_UINT32); u32(&b, 1);
    expect_fail("empty key", &b, "empty key", NULL);
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 2); kv_u32(&b, "dup.key", 1); kv_u32(&b, "dup.key", 2);
    expect_fail("duplicate key", &b, "duplicate key 'dup.key'", "byte 47");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "k"); u32(&b, 13); u32(&b, 0);
    expect_fail("unknown value type", &b, "'k'", "not a GGUF type");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "flag"); u32(&b, GGUF_T_BOOL); put(&b, "\x02", 1);
    expect_fail("bool 2", &b, "'flag'", "bool");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "nested"); u32(&b, GGUF_T_ARRAY); u32(&b, GGUF_T_ARRAY); u64(&b, 1);
    u32(&b, GGUF_T_UINT8); u64(&b, 1); put(&b, "x", 1);
    expect_fail("array of arrays", &b, "'nested'", "arrays of arrays");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "big"); u32(&b, GGUF_T_ARRAY); u32(&b, GGUF_T_UINT32); u64(&b, 1ull << 62);
    zeros(&b, 16);
    expect_fail("array count past EOF", &b, "'big'", "runs past end of file");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "tokenizer.ggml.tokens"); u32(&b, GGUF_T_ARRAY); u32(&b, GGUF_T_STRING);
    u64(&b, 1ull << 61); str(&b, "a"); str(&b, "b");
    expect_fail("string array count", &b, "'tokenizer.ggml.tokens'", "strings");
    free(b.p);

    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "tokenizer.ggml.tokens"); u32(&b, GGUF_T_ARRAY); u32(&b, GGUF_T_STRING);
    u64(&b, 3); str(&b, "a"); str(&b, "b"); u64(&b, 99); put(&b, "c", 1);
    expect_fail("string array element past EOF", &b, "'tokenizer.ggml.tokens'", "element 2");
    free(b.p);

    /* alignment */
    b = (bb){ 0 }; hdr(&b, 3, 1, 1); kv_u32(&b, "general.alignment", 48); info(&b, "a", 1, ne8, AR_F32, 0); pad(&b, 64); zeros(&b, 32);
    expect_fail("alignment 48", &b, "general.alignment", "power of two");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 0, 1); kv_u32(&b, "general.alignment", 0);
    expect_fail("alignment 0", &b, "general.alignment", "power of two");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 0, 1); str(&b, "general.alignment"); u32(&b, GGUF_T_UINT64); u64(&b, 64);
    expect_fail("alignment u64", &b, "general.alignment", "u32");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 1); kv_u32(&b, "general.alignment", 256); info(&b, "a", 1, ne8, AR_F32, 0); pad(&b, 256); zeros(&b, 32);
    expect_ok("alignment 256", &b);
    free(b.p);

    /* tensor infos */
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); str(&b, "blk.0.five"); u32(&b, 5); for (int i = 0; i < 5; i++) u64(&b, 1);
    u32(&b, AR_F32); u64(&b, 0); pad(&b, 32); zeros(&b, 4);
    expect_fail("n_dims 5", &b, "'blk.0.five'", "n_dims = 5");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "scalar", 0, ne8, AR_F32, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("n_dims 0", &b, "'scalar'", "n_dims = 0");
    free(b.p);
    int64_t ne_zero[2] = { 8, 0 };
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "zero", 2, ne_zero, AR_F32, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("zero dim", &b, "'zero'", "ne[1] = 0");
    free(b.p);
    int64_t ne_neg[2] = { 8, -4 };
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "neg", 2, ne_neg, AR_F32, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("negative dim", &b, "'neg'", "ne[1] = -4");
    free(b.p);
    int64_t ne_huge[3] = { 1ll << 32, 1ll << 20, 1ll << 20 };
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "huge", 3, ne_huge, AR_F32, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("element count overflow", &b, "'huge'", "overflow");
    free(b.p);
    int64_t ne_big_bytes[2] = { 1ll << 31, 1ll << 31 };
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "bigbytes", 2, ne_big_bytes, AR_F32, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("byte size overflow", &b, "'bigbytes'", "overflow");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "weird", 1, ne8, 99, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("unknown type id 99", &b, "'weird'", "unknown type id 99");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "q4_2", 1, ne8, 4, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("removed type id 4", &b, "'q4_2'", "unknown type id 4");
    free(b.p);
    int64_t ne33[1] = { 33 };
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "odd", 1, ne33, AR_Q8_0, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("ne[0] not a block multiple", &b, "'odd'", "block size");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "", 1, ne8, AR_F32, 0); pad(&b, 32); zeros(&b, 64);
    expect_fail("empty tensor name", &b, "tensor #0", "empty tensor name");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); u64(&b, 3); put(&b, "a\0b", 3); u32(&b, 1); u64(&b, 8); u32(&b, AR_F32); u64(&b, 0);
    pad(&b, 32); zeros(&b, 64);
    expect_fail("NUL in tensor name", &b, "NUL", NULL);
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 2, 0); info(&b, "same", 1, ne8, AR_F32, 0); info(&b, "same", 1, ne8, AR_F32, 32);
    pad(&b, 32); zeros(&b, 64);
    expect_fail("duplicate tensor name", &b, "'same'", "duplicate tensor name");
    free(b.p);

    /* tensor data placement */
    b = (bb){ 0 }; hdr(&b, 3, 2, 0); info(&b, "first", 1, ne16, AR_F32, 0); info(&b, "second", 1, ne8, AR_F32, 32);
    pad(&b, 32); zeros(&b, 96);
    expect_fail("overlapping tensors", &b, "overlaps", "'first'");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "mis", 1, ne8, AR_F32, 4); pad(&b, 32); zeros(&b, 64);
    expect_fail("misaligned offset", &b, "'mis'", "not a multiple of the alignment 32");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "blk.0.attn_q.weight", 1, ne16, AR_F32, 0); pad(&b, 32); zeros(&b, 63);
    expect_fail("data past EOF", &b, "'blk.0.attn_q.weight' (info at byte 24)", "runs past end of file (size");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "far", 1, ne8, AR_F32, 1ull << 63); pad(&b, 32); zeros(&b, 64);
    expect_fail("offset 2^63", &b, "'far'", "runs past end of file");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "wrap", 1, ne8, AR_F32, UINT64_MAX - 31); pad(&b, 32); zeros(&b, 64);
    expect_fail("offset near 2^64", &b, "'wrap'", "runs past end of file");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "nodata", 1, ne8, AR_F32, 0);
    expect_fail("no data section", &b, "'nodata'", "runs past end of file");
    free(b.p);
    b = (bb){ 0 }; hdr(&b, 3, 1, 0); info(&b, "a", 1, ne8, AR_F32, 0); u32(&b, 7);
    expect_fail("info truncated", &b, "'a'", NULL);
    free(b.p);
}

/* Every prefix of a valid file that cuts a header, kv, info or tensor byte must fail cleanly;
 * every single-byte flip must either fail cleanly or open (never crash, never read out of bounds). */
static void test_truncations_and_flips(void)
{
    gguf_writer *w = gguf_writer_create();
    gguf_set_str(w, "general.architecture", "qwen35");
    gguf_set_u32(w, "qwen35.block_count", 2);
    gguf_set_f32(w, "qwen35.rope.freq_base", 1e7f);
    gguf_str toks[] = { { 1, "a" }, { 2, "bc" }, { 0, "" } };
    gguf_set_arr_str(w, "tokenizer.ggml.tokens", toks, 3);
    int32_t types[] = { 1, 1, 3 };
    gguf_set_arr(w, "tokenizer.ggml.token_type", GGUF_T_INT32, types, 3);
    gguf_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    float f32[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    uint8_t q8[34 * 2] = { 0 };
    int64_t ne8[1] = { 8 }, ne_q[2] = { 32, 2 };
    gguf_add_tensor(w, "a", AR_F32, 1, ne8, f32, NULL, NULL);
    gguf_add_tensor(w, "b", AR_Q8_0, 2, ne_q, q8, NULL, NULL);
    ar_error err = { 0 };
    const char *path = tmp_path("trunc.gguf");
    CHECK(gguf_writer_write(w, path, &err) == AR_OK, "write: %s", err.msg);
    gguf_writer_free(w);
    size_t n = 0;
    uint8_t *p = read_all(path, &n);
    gguf_file *f = NULL;
    CHECK(p && gguf_open_memory(&f, p, n, &err) == AR_OK, "valid base: %s", err.msg);
    if (!f) { free(p); return; }
    size_t end = 0;
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        size_t e = (size_t)((const uint8_t *)t->data - p) + t->nbytes;
        if (e > end) end = e;
    }
    gguf_close(f);
    int bad_fail = 0, bad_ok = 0, no_msg = 0;
    for (size_t k = 0; k <= n; k++) {
        err.msg[0] = 0;
        int rc = open_bytes(p, k, &f, &err);
        if (k < end && rc == AR_OK) bad_ok++;
        if (k < end && rc != AR_OK && !err.msg[0]) no_msg++;
        if (k >= end && rc != AR_OK) bad_fail++;
    }
    CHECK(bad_ok == 0 && no_msg == 0, "truncations below byte %zu: %d opened, %d failed without a message", end, bad_ok, no_msg);
    CHECK(bad_fail == 0, "%d truncations inside the trailing padding failed", bad_fail);
    printf("truncation: %zu prefixes of a %zu-byte file checked (data ends at byte %zu)\n", n + 1, n, end);

    int opened = 0, failed = 0;
    for (size_t k = 0; k < n; k++) {
        for (int m = 0; m < 3; m++) {
            static const uint8_t masks[3] = { 0xff, 0x01, 0x80 };
            p[k] ^= masks[m];
            err.msg[0] = 0;
            int rc = open_bytes(p, n, &f, &err);
            if (rc == AR_OK) opened++;
            else if (err.msg[0]) failed++;
            else CHECK(0, "flip at byte %zu failed without a message", k);
            p[k] ^= masks[m];
        }
    }
    printf("flips: %d opened, %d refused with a message\n", opened, failed);
    CHECK(opened + failed == (int)n * 3, "flips accounted");
    free(p);
}

/* ---- split models -------------------------------------------------------------------------- */

static void set_u16(gguf_writer *w, const char *key, uint16_t v)
{
    gguf_kv kv = scalar_kv(key, GGUF_T_UINT16);
    kv.v.u64 = v;
    gguf_set_kv(w, &kv);
}

static void write_part(const char *path, int no, int count, int tensors_count, const char **names, int n_names,
                       float base)
{
    gguf_writer *w = gguf_writer_create();
    if (no == 0) {
        gguf_set_str(w, "general.architecture", "test");
        gguf_set_u32(w, "test.block_count", 3);
    }
    set_u16(w, "split.no", (uint16_t)no);
    set_u16(w, "split.count", (uint16_t)count);
    gguf_set_i32(w, "split.tensors.count", tensors_count);
    float data[4][16];
    int64_t ne[1] = { 16 };
    for (int i = 0; i < n_names; i++) {
        for (int k = 0; k < 16; k++) data[i][k] = base + (float)i * 100 + (float)k;
        gguf_add_tensor(w, names[i], AR_F32, 1, ne, data[i], NULL, NULL);
    }
    ar_error err = { 0 };
    CHECK(gguf_writer_write(w, path, &err) == AR_OK, "write %s: %s", path, err.msg);
    gguf_writer_free(w);
}

static void test_splits(void)
{
    const char *p1 = tmp_path("m-00001-of-00003.gguf"), *p2 = tmp_path("m-00002-of-00003.gguf"),
               *p3 = tmp_path("m-00003-of-00003.gguf");
    const char *n1[] = { "a", "b" }, *n2[] = { "c" }, *n3[] = { "d", "e" };
    write_part(p1, 0, 3, 5, n1, 2, 1000);
    write_part(p2, 1, 3, 5, n2, 1, 2000);
    write_part(p3, 2, 3, 5, n3, 2, 3000);

    gguf_file *f = NULL;
    ar_error err = { 0 };
    CHECK(gguf_open(&f, p1, &err) == AR_OK, "open split: %s", err.msg);
    if (f) {
        CHECK(gguf_n_parts(f) == 3 && gguf_n_tensors(f) == 5, "parts %d tensors %lld", gguf_n_parts(f),
              (long long)gguf_n_tensors(f));
        const char *names[] = { "a", "b", "c", "d", "e" };
        const int parts[] = { 0, 0, 1, 2, 2 };
        const float first[] = { 1000, 1100, 2000, 3000, 3100 };
        for (int i = 0; i < 5; i++) {
            const gguf_tensor *t = gguf_find_tensor(f, names[i]);
            float x = -1;
            if (t) memcpy(&x, t->data, 4);
            CHECK(t && t->part == parts[i] && x == first[i], "split tensor %s part %d value %g", names[i],
                  t ? t->part : -1, (double)x);
        }
        uint32_t bc = 0;
        CHECK(gguf_get_u32(f, "test.block_count", &bc, &err) == AR_OK && bc == 3, "metadata from part 1");
        uint64_t total = 0;
        for (int i = 0; i < 3; i++) total += gguf_part_size(f, i);
        CHECK(total == gguf_file_size(f) && !strcmp(gguf_part_path(f, 2), p3), "part sizes/paths");
        CHECK(gguf_part_path(f, 3) == NULL, "part_path bounds");
        gguf_close(f);
    }

    CHECK(gguf_open(&f, p2, &err) != AR_OK && strstr(err.msg, "first part"), "open part 2: %s", err.msg);

    /* wrong split.no in part 2 */
    write_part(p2, 5, 3, 5, n2, 1, 2000);
    CHECK(gguf_open(&f, p1, &err) != AR_OK && strstr(err.msg, "split.no") && strstr(err.msg, "m-00002-of-00003.gguf"),
          "wrong split.no: %s", err.msg);
    write_part(p2, 1, 3, 5, n2, 1, 2000);

    /* wrong total */
    write_part(p1, 0, 3, 6, n1, 2, 1000);
    CHECK(gguf_open(&f, p1, &err) != AR_OK && strstr(err.msg, "split.tensors.count"), "wrong total: %s", err.msg);
    write_part(p1, 0, 3, 5, n1, 2, 1000);

    /* the same tensor in two parts */
    const char *n3dup[] = { "d", "a" };
    write_part(p3, 2, 3, 5, n3dup, 2, 3000);
    CHECK(gguf_open(&f, p1, &err) != AR_OK && strstr(err.msg, "duplicate tensor name 'a'"), "cross-part dup: %s", err.msg);

    /* a missing part */
    unlink(p3);
    CHECK(gguf_open(&f, p1, &err) != AR_OK && strstr(err.msg, "missing") && strstr(err.msg, "m-00003-of-00003.gguf"),
          "missing part: %s", err.msg);

    /* split.count > 1 but a name that does not say which files are the others */
    const char *odd = tmp_path("renamed.gguf");
    write_part(odd, 0, 3, 5, n1, 2, 1000);
    CHECK(gguf_open(&f, odd, &err) != AR_OK && strstr(err.msg, "-00001-of-00003.gguf"), "renamed split: %s", err.msg);

    /* a corrupt part is reported with its own name */
    write_part(p3, 2, 3, 5, n3, 2, 3000);
    size_t n = 0;
    uint8_t *bytes = read_all(p3, &n);
    bb b = { bytes, n / 2, n };
    write_all(p3, &b);
    CHECK(gguf_open(&f, p1, &err) != AR_OK && strstr(err.msg, "m-00003-of-00003.gguf"), "corrupt part: %s", err.msg);
    free(bytes);

    unlink(p1); unlink(p2); unlink(p3); unlink(odd);
}

/* ---- real file ----------------------------------------------------------------------------- */

static void test_vocab_file(void)
{
    const char *src = getenv("ARBOR_LLAMA_SRC");
    char path[1024];
    snprintf(path, sizeof path, "%s/models/ggml-vocab-qwen35.gguf", src && *src ? src : "build/oracle/llama.cpp");
    if (access(path, R_OK) != 0) {
        CHECK(0, "missing %s (run scripts/oracle.sh, or set ARBOR_LLAMA_SRC)", path);
        return;
    }
    gguf_file *f = NULL;
    ar_error err = { 0 };
    double best = 1e9;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = ar_now();
        int rc = gguf_open(&f, path, &err);
        double dt = ar_now() - t0;
        if (dt < best) best = dt;
        CHECK(rc == AR_OK, "open vocab: %s", err.msg);
        if (rc) return;
        if (rep < 2) gguf_close(f);
    }
    printf("vocab: opened %s in %.2f ms (best of 3)\n", path, best * 1e3);
    CHECK(best < (test_sanitized() ? 1.0 : 0.1), "opening the vocab took %.1f ms", best * 1e3);
    const gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens");
    CHECK(tok && tok->arr_type == GGUF_T_STRING && tok->arr_n == 151936, "token count %llu",
          tok ? (unsigned long long)tok->arr_n : 0ull);
    if (tok && tok->arr_n > 0) CHECK(gguf_str_eq(tok->arr_str[0], "!"), "token 0 is '!'");
    const gguf_kv *merges = gguf_find(f, "tokenizer.ggml.merges");
    CHECK(merges && merges->arr_type == GGUF_T_STRING && merges->arr_n > 100000, "merges");
    gguf_str model;
    CHECK(gguf_get_str(f, "tokenizer.ggml.model", &model, &err) == AR_OK && gguf_str_eq(model, "gpt2"), "model gpt2");
    gguf_close(f);
}

int main(void)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/arbor-test-gguf-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpdir)) {
        CHECK(0, "cannot create a temporary directory");
        TEST_END();
    }
    test_round_trip();
    test_versions();
    test_corruptions();
    test_truncations_and_flips();
    test_splits();
    test_vocab_file();
    const char *left[] = { "round.gguf", "copy.gguf", "empty.gguf", "v2.gguf", "trunc.gguf" };
    for (size_t i = 0; i < sizeof left / sizeof left[0]; i++) unlink(tmp_path(left[i]));
    CHECK(rmdir(tmpdir) == 0, "temporary directory %s left non-empty", tmpdir);
    TEST_END();
}
