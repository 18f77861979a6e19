/* format/gguf_get.c — typed getters over a validated gguf_file (see gguf.h).
 *
 * Owns no state: each getter looks a key up, checks its type converts (integers between widths
 * when the value fits, f32 <-> f64), and otherwise fails with a message naming the file, the key,
 * its actual type or value and what was expected. Only the public reader API is used. */
#include "format/gguf.h"

#include <inttypes.h>
#include <string.h>

static int shown(uint64_t len)
{
    return len > 96 ? 96 : (int)len;
}

/* Element i of an integer array, widened; *fits is false for a u64 above INT64_MAX. */
static int64_t array_int(const gguf_kv *kv, uint64_t i, bool *fits)
{
    const uint8_t *b = kv->arr_data;
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; uint64_t u64; int64_t i64;
    switch (kv->arr_type) {
    case GGUF_T_UINT8:  memcpy(&u8, b + i, 1); return u8;
    case GGUF_T_INT8:   memcpy(&i8, b + i, 1); return i8;
    case GGUF_T_UINT16: memcpy(&u16, b + 2 * i, 2); return u16;
    case GGUF_T_INT16:  memcpy(&i16, b + 2 * i, 2); return i16;
    case GGUF_T_UINT32: memcpy(&u32, b + 4 * i, 4); return u32;
    case GGUF_T_INT32:  memcpy(&i32, b + 4 * i, 4); return i32;
    case GGUF_T_INT64:  memcpy(&i64, b + 8 * i, 8); return i64;
    case GGUF_T_UINT64:
        memcpy(&u64, b + 8 * i, 8);
        *fits = u64 <= (uint64_t)INT64_MAX;
        return (int64_t)(u64 & (uint64_t)INT64_MAX);
    default:
        *fits = false;
        return 0;
    }
}

static bool is_int_type(enum gguf_type t)
{
    return t <= GGUF_T_INT32 || t == GGUF_T_UINT64 || t == GGUF_T_INT64;
}

static bool is_signed(enum gguf_type t)
{
    return t == GGUF_T_INT8 || t == GGUF_T_INT16 || t == GGUF_T_INT32 || t == GGUF_T_INT64;
}

static int lookup(const gguf_file *f, const char *key, const gguf_kv **kv, ar_error *err)
{
    if (!(*kv = gguf_find(f, key))) return ar_fail(err, AR_EFORMAT, "%s: key '%s' is missing", gguf_path(f), key);
    return AR_OK;
}

static int wrong_type(const gguf_file *f, const gguf_kv *kv, const char *want, ar_error *err)
{
    if (kv->type == GGUF_T_ARRAY)
        return ar_fail(err, AR_EFORMAT, "%s: key '%.*s' is an array of %s, expected %s", gguf_path(f),
                       shown(kv->key.len), kv->key.ptr, gguf_type_name(kv->arr_type), want);
    return ar_fail(err, AR_EFORMAT, "%s: key '%.*s' has type %s, expected %s", gguf_path(f), shown(kv->key.len),
                   kv->key.ptr, gguf_type_name(kv->type), want);
}

/* Integer kv converted to [lo, hi] (signed view) or [0, uhi] (unsigned view). */
static int get_int(const gguf_file *f, const gguf_kv *kv, int64_t lo, uint64_t hi, int64_t *s, uint64_t *u,
                   const char *want, ar_error *err)
{
    if (!is_int_type(kv->type)) return wrong_type(f, kv, want, err);
    bool neg = is_signed(kv->type) && kv->v.i64 < 0;
    bool fits = neg ? kv->v.i64 >= lo : (is_signed(kv->type) ? (uint64_t)kv->v.i64 : kv->v.u64) <= hi;
    if (!fits) {
        if (neg)
            return ar_fail(err, AR_EFORMAT, "%s: key '%.*s' = %" PRId64 " does not fit in %s", gguf_path(f),
                           shown(kv->key.len), kv->key.ptr, kv->v.i64, want);
        return ar_fail(err, AR_EFORMAT, "%s: key '%.*s' = %" PRIu64 " does not fit in %s", gguf_path(f),
                       shown(kv->key.len), kv->key.ptr, is_signed(kv->type) ? (uint64_t)kv->v.i64 : kv->v.u64, want);
    }
    if (s) *s = is_signed(kv->type) ? kv->v.i64 : (int64_t)kv->v.u64;
    if (u) *u = is_signed(kv->type) ? (uint64_t)kv->v.i64 : kv->v.u64;
    return AR_OK;
}

int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, ar_error *err)
{
    const gguf_kv *kv;
    uint64_t u;
    int rc = lookup(f, key, &kv, err);
    if (!rc) rc = get_int(f, kv, 0, UINT32_MAX, NULL, &u, "u32", err);
    if (!rc) *out = (uint32_t)u;
    return rc;
}

int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, ar_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    return rc ? rc : get_int(f, kv, 0, UINT64_MAX, NULL, out, "u64", err);
}

int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, ar_error *err)
{
    const gguf_kv *kv;
    int64_t s;
    int rc = lookup(f, key, &kv, err);
    if (!rc) rc = get_int(f, kv, INT32_MIN, INT32_MAX, &s, NULL, "i32", err);
    if (!rc) *out = (int32_t)s;
    return rc;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, ar_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc) return rc;
    if (kv->type != GGUF_T_FLOAT32 && kv->type != GGUF_T_FLOAT64) return wrong_type(f, kv, "f32", err);
    *out = (float)kv->v.f64;
    return AR_OK;
}

int gguf_get_bool(const gguf_file *f, const char *key, bool *out, ar_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc) return rc;
    if (kv->type != GGUF_T_BOOL) return wrong_type(f, kv, "bool", err);
    *out = kv->v.b;
    return AR_OK;
}

int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, ar_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc) return rc;
    if (kv->type != GGUF_T_STRING) return wrong_type(f, kv, "str", err);
    *out = kv->v.str;
    return AR_OK;
}

int gguf_get_ints(const gguf_file *f, const char *key, int64_t *out, size_t cap, size_t *n, ar_error *err)
{
    const gguf_kv *kv;
    int rc = lookup(f, key, &kv, err);
    if (rc) return rc;
    if (kv->type != GGUF_T_ARRAY) {
        if (cap < 1) return ar_fail(err, AR_EFORMAT, "%s: key '%s': no room for a value", gguf_path(f), key);
        if ((rc = get_int(f, kv, INT64_MIN, INT64_MAX, out, NULL, "an integer or an integer array", err))) return rc;
        *n = 1;
        return AR_OK;
    }
    if (!is_int_type(kv->arr_type)) return wrong_type(f, kv, "an integer array", err);
    if (kv->arr_n > cap)
        return ar_fail(err, AR_EFORMAT, "%s: key '%s' has %" PRIu64 " elements, at most %zu expected", gguf_path(f),
                       key, kv->arr_n, cap);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        bool fits = true;
        out[i] = array_int(kv, i, &fits);
        if (!fits)
            return ar_fail(err, AR_EFORMAT, "%s: key '%s' element %" PRIu64 " does not fit in i64", gguf_path(f), key, i);
    }
    *n = (size_t)kv->arr_n;
    return AR_OK;
}

int gguf_get_u32_or(const gguf_file *f, const char *key, uint32_t def, uint32_t *out, ar_error *err)
{
    if (!gguf_find(f, key)) {
        *out = def;
        return AR_OK;
    }
    return gguf_get_u32(f, key, out, err);
}

int gguf_get_f32_or(const gguf_file *f, const char *key, float def, float *out, ar_error *err)
{
    if (!gguf_find(f, key)) {
        *out = def;
        return AR_OK;
    }
    return gguf_get_f32(f, key, out, err);
}
