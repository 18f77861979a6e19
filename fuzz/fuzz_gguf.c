/* fuzz/fuzz_gguf.c — libFuzzer target for the GGUF reader (built by scripts/fuzz.sh).
 *
 * Opens every input with gguf_open_memory() and, when it is accepted, touches every byte the
 * reader promises is in bounds (keys, strings, string arrays, raw arrays, first and last byte of
 * every tensor) and runs the typed getters on every key, so ASan/UBSan see any broken promise.
 * The input buffer is exactly `size` bytes: any read past it is reported. */
#include "format/gguf.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t elem_size[GGUF_T_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

static uint8_t touch(const void *p, uint64_t n)
{
    uint8_t h = 0;
    for (uint64_t i = 0; i < n; i++) h ^= ((const uint8_t *)p)[i];
    return h;
}

static void exercise_getters(const gguf_file *f, const gguf_kv *kv)
{
    char key[256];
    if (kv->key.len >= sizeof key) return;
    memcpy(key, kv->key.ptr, (size_t)kv->key.len);
    key[kv->key.len] = 0;
    if (!memchr(key, 0, (size_t)kv->key.len) && gguf_find(f, key) != kv) abort();   /* keys are unique */
    ar_error err;
    uint32_t u32; uint64_t u64; int32_t i32; float f32; bool b; gguf_str s; int64_t ints[16]; size_t n;
    gguf_get_u32(f, key, &u32, &err);
    gguf_get_u64(f, key, &u64, &err);
    gguf_get_i32(f, key, &i32, &err);
    gguf_get_f32(f, key, &f32, &err);
    gguf_get_bool(f, key, &b, &err);
    gguf_get_str(f, key, &s, &err);
    gguf_get_ints(f, key, ints, 16, &n, &err);
    gguf_get_u32_or(f, key, 1, &u32, &err);
    gguf_get_f32_or(f, key, 1.0f, &f32, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gguf_file *f = NULL;
    ar_error err = { 0 };
    if (gguf_open_memory(&f, data, size, &err) != AR_OK) {
        if (!err.msg[0]) abort();   /* every refusal must say why */
        return 0;
    }
    volatile uint8_t sink = 0;
    for (int64_t i = 0; i < gguf_n_kv(f); i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        sink ^= touch(kv->key.ptr, kv->key.len);
        if (kv->type == GGUF_T_STRING) sink ^= touch(kv->v.str.ptr, kv->v.str.len);
        if (kv->type == GGUF_T_ARRAY && kv->arr_type == GGUF_T_STRING)
            for (uint64_t k = 0; k < kv->arr_n; k++) sink ^= touch(kv->arr_str[k].ptr, kv->arr_str[k].len);
        else if (kv->type == GGUF_T_ARRAY)
            sink ^= touch(kv->arr_data, kv->arr_n * elem_size[kv->arr_type]);
        exercise_getters(f, kv);
    }
    for (int64_t i = 0; i < gguf_n_tensors(f); i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        if (gguf_find_tensor(f, t->name) != t) abort();   /* names are unique */
        if (t->nbytes) sink ^= ((const uint8_t *)t->data)[0] ^ ((const uint8_t *)t->data)[t->nbytes - 1];
        if ((uintptr_t)((const uint8_t *)t->data - data) % gguf_alignment(f)) abort();
    }
    (void)sink;
    gguf_close(f);
    return 0;
}
