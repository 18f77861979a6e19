/* format/gguf.c — the validating GGUF reader: v2/v3 files over mmap (or a caller's buffer),
 * split models opened as one logical file.
 *
 * Owns: the mapping of every part, the decoded key/value table of every part (only the first
 * part's is visible), the decoded string arrays, the union tensor table and two hash indexes
 * (keys of each part, tensor names of the union).
 *
 * Invariants once gguf_open() returns AR_OK:
 *  - every string, array and tensor byte range lies inside its part's mapping;
 *  - keys are unique in each part, tensor names are unique over all parts, non-empty, NUL-free;
 *  - every tensor has 1..4 dims > 0, a type ar_dtype_get() knows, ne[0] a multiple of its block,
 *    an element count and byte size that did not overflow, an aligned offset, and data that does
 *    not overlap any other tensor of its part.
 *
 * Data flow: map_file() -> parse_part(): a bounds-checked cursor walks the header, the key/values
 * (parse_kv) and the tensor infos (parse_info); place_tensors() then puts every tensor in the data
 * section. gguf_open() adds the sibling parts of a split model (open_splits) and indexes the union.
 * Every error says which file, which field and at which byte; lower levels build the core of the
 * message and each level above prefixes its context (ar_error_prefix). The typed getters
 * (gguf_get_u32 ...) live in gguf_get.c, on top of the accessors here. */
#include "format/gguf.h"
#include "format/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the GGUF reader assumes a little-endian host"
#endif

#define MIN_KV_BYTES   14u  /* key length 8 + 1 key byte + type 4 + 1 value byte */
#define MIN_INFO_BYTES 33u  /* name length 8 + 1 + n_dims 4 + one dim 8 + type 4 + offset 8 */
#define NAME_SHOWN     96   /* longest key/tensor name quoted in an error */

typedef struct name_index {
    int64_t *slot;   /* -1 = empty, else the entry index */
    uint64_t mask;
    int64_t count;
} name_index;

typedef struct part {
    char *path;
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    int fd;                 /* the file, open while mapped (gguf_writable drops its cached pages) */
    uint32_t version, alignment;
    uint64_t data_offset;
    int64_t n_kv;
    gguf_kv *kv;
    name_index keys;
    int64_t n_tensors;
    gguf_tensor *tensors;   /* moved into gguf_file.tensors once the union is built */
} part;

struct gguf_file {
    int n_parts;
    part *parts;
    int64_t n_tensors;
    gguf_tensor *tensors;
    name_index names;
};

typedef struct cursor {
    const uint8_t *base;
    uint64_t size, pos;
    ar_error *err;
} cursor;

static const uint8_t type_size[GGUF_T_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

static const char *const type_names[GGUF_T_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "str", "arr", "u64", "i64", "f64"
};

const char *gguf_type_name(enum gguf_type t)
{
    return (unsigned)t < GGUF_T_COUNT ? type_names[t] : "unknown";
}

bool gguf_str_eq(gguf_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

static int shown(uint64_t len)
{
    return len > NAME_SHOWN ? NAME_SHOWN : (int)len;
}

/* ---- hash index over names ---------------------------------------------------------------- */

typedef gguf_str (*key_fn)(const void *entries, int64_t i);

static gguf_str kv_key(const void *entries, int64_t i)
{
    return ((const gguf_kv *)entries)[i].key;
}

static gguf_str tensor_key(const void *entries, int64_t i)
{
    const char *name = ((const gguf_tensor *)entries)[i].name;
    return (gguf_str){ strlen(name), name };
}

static uint64_t hash_name(const char *p, uint64_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (uint64_t i = 0; i < n; i++) h = (h ^ (uint8_t)p[i]) * 1099511628211ull;
    return h;
}

/* Slot where `name` lives, or the empty slot where it would go. */
static uint64_t index_probe(const name_index *ix, const void *entries, key_fn key, const char *name, uint64_t len)
{
    uint64_t s = hash_name(name, len) & ix->mask;
    for (;;) {
        int64_t e = ix->slot[s];
        if (e < 0) return s;
        gguf_str k = key(entries, e);
        if (k.len == len && memcmp(k.ptr, name, len) == 0) return s;
        s = (s + 1) & ix->mask;
    }
}

/* Double the table (load stays <= 1/2) and re-insert every entry. */
static int index_grow(name_index *ix, const void *entries, key_fn key)
{
    uint64_t cap = ix->slot ? (ix->mask + 1) * 2 : 16;
    int64_t *old = ix->slot;
    uint64_t old_cap = old ? ix->mask + 1 : 0;
    if (!(ix->slot = malloc(cap * sizeof *ix->slot))) {
        ix->slot = old;
        return AR_ENOMEM;
    }
    memset(ix->slot, 0xff, cap * sizeof *ix->slot);
    ix->mask = cap - 1;
    for (uint64_t s = 0; s < old_cap; s++) {
        if (old[s] < 0) continue;
        gguf_str k = key(entries, old[s]);
        ix->slot[index_probe(ix, entries, key, k.ptr, k.len)] = old[s];
    }
    free(old);
    return AR_OK;
}

/* Insert entry i; *dup = index of an earlier entry with the same name (entry i is then not added), or -1. */
static int index_add(name_index *ix, const void *entries, key_fn key, int64_t i, int64_t *dup)
{
    if (!ix->slot || (uint64_t)(ix->count + 1) * 2 > ix->mask + 1) {
        int rc = index_grow(ix, entries, key);
        if (rc) return rc;
    }
    gguf_str k = key(entries, i);
    uint64_t s = index_probe(ix, entries, key, k.ptr, k.len);
    *dup = ix->slot[s];
    if (*dup < 0) {
        ix->slot[s] = i;
        ix->count++;
    }
    return AR_OK;
}

/* Room for entry n of an array growing by doubling; NULL (old array intact) when out of memory. */
static void *grow(void *arr, int64_t *cap, int64_t n, size_t elem)
{
    if (n < *cap) return arr;
    int64_t nc = *cap ? *cap * 2 : 16;
    char *g = realloc(arr, (size_t)nc * elem);
    if (!g) return NULL;
    memset(g + (size_t)*cap * elem, 0, (size_t)(nc - *cap) * elem);
    *cap = nc;
    return g;
}

static int64_t index_find(const name_index *ix, const void *entries, key_fn key, const char *name)
{
    if (!ix->slot || !name) return -1;
    return ix->slot[index_probe(ix, entries, key, name, strlen(name))];
}

/* ---- bounds-checked cursor ----------------------------------------------------------------- */

static int need(cursor *c, uint64_t n, const char *what)
{
    if (n <= c->size - c->pos) return AR_OK;
    return ar_fail(c->err, AR_EFORMAT, "truncated: %s at byte %" PRIu64 " needs %" PRIu64
                   " bytes but the file ends at byte %" PRIu64, what, c->pos, n, c->size);
}

static int rd_u32(cursor *c, uint32_t *v, const char *what)
{
    int rc = need(c, 4, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 4);
    c->pos += 4;
    return AR_OK;
}

static int rd_u64(cursor *c, uint64_t *v, const char *what)
{
    int rc = need(c, 8, what);
    if (rc) return rc;
    memcpy(v, c->base + c->pos, 8);
    c->pos += 8;
    return AR_OK;
}

static int rd_str(cursor *c, gguf_str *s, const char *what)
{
    uint64_t len;
    int rc = rd_u64(c, &len, what);
    if (rc) return rc;
    if (len > c->size - c->pos)
        return ar_fail(c->err, AR_EFORMAT, "%s of %" PRIu64 " bytes at byte %" PRIu64
                       " runs past end of file (size %" PRIu64 ")", what, len, c->pos, c->size);
    s->len = len;
    s->ptr = (const char *)c->base + c->pos;
    c->pos += len;
    return AR_OK;
}

/* ---- key/values ---------------------------------------------------------------------------- */

static void widen(gguf_kv *kv, const uint8_t *p)
{
    uint8_t u8; int8_t i8; uint16_t u16; int16_t i16; uint32_t u32; int32_t i32; float f32;
    switch (kv->type) {
    case GGUF_T_UINT8:   memcpy(&u8, p, 1);  kv->v.u64 = u8; break;
    case GGUF_T_INT8:    memcpy(&i8, p, 1);  kv->v.i64 = i8; break;
    case GGUF_T_UINT16:  memcpy(&u16, p, 2); kv->v.u64 = u16; break;
    case GGUF_T_INT16:   memcpy(&i16, p, 2); kv->v.i64 = i16; break;
    case GGUF_T_UINT32:  memcpy(&u32, p, 4); kv->v.u64 = u32; break;
    case GGUF_T_INT32:   memcpy(&i32, p, 4); kv->v.i64 = i32; break;
    case GGUF_T_FLOAT32: memcpy(&f32, p, 4); kv->v.f64 = f32; break;
    case GGUF_T_BOOL:    kv->v.b = p[0] != 0; break;
    case GGUF_T_UINT64:  memcpy(&kv->v.u64, p, 8); break;
    case GGUF_T_INT64:   memcpy(&kv->v.i64, p, 8); break;
    case GGUF_T_FLOAT64: memcpy(&kv->v.f64, p, 8); break;
    default: break;
    }
}

static int check_bools(cursor *c, uint64_t at, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (c->base[at + i] > 1)
            return ar_fail(c->err, AR_EFORMAT, "bool value %u at byte %" PRIu64 " is not 0 or 1",
                           c->base[at + i], at + i);
    return AR_OK;
}

static int read_type(cursor *c, enum gguf_type *t, const char *what)
{
    uint64_t at = c->pos;
    uint32_t v;
    int rc = rd_u32(c, &v, what);
    if (rc) return rc;
    if (v >= GGUF_T_COUNT)
        return ar_fail(c->err, AR_EFORMAT, "%s %" PRIu32 " at byte %" PRIu64 " is not a GGUF type (0..%d)",
                       what, v, at, GGUF_T_COUNT - 1);
    *t = (enum gguf_type)v;
    return AR_OK;
}

static int parse_str_array(cursor *c, gguf_kv *kv)
{
    if (kv->arr_n > (c->size - c->pos) / 8)
        return ar_fail(c->err, AR_EFORMAT, "array of %" PRIu64 " strings at byte %" PRIu64
                       " cannot fit in the %" PRIu64 " bytes left in the file", kv->arr_n, c->pos, c->size - c->pos);
    if (kv->arr_n == 0) return AR_OK;
    kv->arr_str = malloc(kv->arr_n * sizeof *kv->arr_str);
    if (!kv->arr_str) return ar_fail(c->err, AR_ENOMEM, "cannot allocate %" PRIu64 " strings", kv->arr_n);
    for (uint64_t i = 0; i < kv->arr_n; i++) {
        int rc = rd_str(c, &kv->arr_str[i], "string");
        if (rc) return ar_error_prefix(c->err, "element %" PRIu64 ": ", i);
    }
    return AR_OK;
}

static int parse_array(cursor *c, gguf_kv *kv)
{
    int rc = read_type(c, &kv->arr_type, "array element type");
    if (!rc) rc = rd_u64(c, &kv->arr_n, "array length");
    if (rc) return rc;
    kv->arr_data = c->base + c->pos;
    if (kv->arr_type == GGUF_T_ARRAY)
        return ar_fail(c->err, AR_EUNSUPPORTED, "arrays of arrays are not supported");
    if (kv->arr_type == GGUF_T_STRING) return parse_str_array(c, kv);
    uint64_t es = type_size[kv->arr_type];
    if (kv->arr_n > (c->size - c->pos) / es)
        return ar_fail(c->err, AR_EFORMAT, "array of %" PRIu64 " x %s at byte %" PRIu64
                       " runs past end of file (size %" PRIu64 ")", kv->arr_n, gguf_type_name(kv->arr_type),
                       c->pos, c->size);
    if (kv->arr_type == GGUF_T_BOOL && (rc = check_bools(c, c->pos, kv->arr_n))) return rc;
    c->pos += kv->arr_n * es;
    return AR_OK;
}

static int parse_value(cursor *c, gguf_kv *kv)
{
    int rc = read_type(c, &kv->type, "value type");
    if (rc) return rc;
    if (kv->type == GGUF_T_ARRAY) return parse_array(c, kv);
    if (kv->type == GGUF_T_STRING) return rd_str(c, &kv->v.str, "string value");
    if ((rc = need(c, type_size[kv->type], gguf_type_name(kv->type)))) return rc;
    if (kv->type == GGUF_T_BOOL && (rc = check_bools(c, c->pos, 1))) return rc;
    widen(kv, c->base + c->pos);
    c->pos += type_size[kv->type];
    return AR_OK;
}

static int parse_kv(cursor *c, gguf_kv *kv, int64_t i)
{
    uint64_t at = c->pos;
    int rc = rd_str(c, &kv->key, "key");
    if (!rc && kv->key.len == 0) rc = ar_fail(c->err, AR_EFORMAT, "empty key");
    if (!rc) rc = parse_value(c, kv);
    if (!rc) return AR_OK;
    if (kv->key.len)
        return ar_error_prefix(c->err, "key '%.*s' (at byte %" PRIu64 "): ", shown(kv->key.len), kv->key.ptr, at);
    return ar_error_prefix(c->err, "key #%" PRId64 " (at byte %" PRIu64 "): ", i, at);
}

static int parse_kvs(cursor *c, part *p, int64_t n)
{
    int64_t cap = 0;
    for (int64_t i = 0; i < n; i++) {
        gguf_kv *g = grow(p->kv, &cap, i, sizeof *p->kv);
        if (!g) return ar_fail(c->err, AR_ENOMEM, "out of memory for %" PRId64 " keys", i + 1);
        p->kv = g;
        p->n_kv = i + 1;   /* entry i is zeroed; counting it now lets free_part release a half-parsed one */
        uint64_t at = c->pos;
        int64_t dup;
        int rc = parse_kv(c, &p->kv[i], i);
        if (!rc && (rc = index_add(&p->keys, p->kv, kv_key, i, &dup)))
            return ar_fail(c->err, rc, "out of memory indexing keys");
        if (rc) return rc;
        if (dup >= 0)
            return ar_fail(c->err, AR_EFORMAT, "duplicate key '%.*s' (key #%" PRId64 " at byte %" PRIu64
                           " repeats key #%" PRId64 ")", shown(p->kv[i].key.len), p->kv[i].key.ptr, i, at, dup);
    }
    return AR_OK;
}

static const gguf_kv *part_find(const part *p, const char *key)
{
    int64_t i = index_find(&p->keys, p->kv, kv_key, key);
    return i < 0 ? NULL : &p->kv[i];
}

static int read_alignment(part *p, ar_error *err)
{
    const gguf_kv *kv = part_find(p, "general.alignment");
    p->alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv) return AR_OK;
    if (kv->type != GGUF_T_UINT32)
        return ar_fail(err, AR_EFORMAT, "general.alignment has type %s, must be u32", gguf_type_name(kv->type));
    if (kv->v.u64 == 0 || (kv->v.u64 & (kv->v.u64 - 1)))
        return ar_fail(err, AR_EFORMAT, "general.alignment = %" PRIu64 " is not a power of two", kv->v.u64);
    p->alignment = (uint32_t)kv->v.u64;
    return AR_OK;
}

/* ---- tensor infos -------------------------------------------------------------------------- */

const char *gguf_check_shape(int type, int n_dims, const int64_t *ne, int64_t *n_elements, uint64_t *nbytes)
{
    const ar_dtype_info *ti = ar_dtype_get(type);
    if (!ti || ti->block_elems <= 0 || ti->block_bytes == 0) return "unknown type id";
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return "n_dims must be 1..4";
    int64_t n = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0) return "dimensions must be > 0";
        if (ne[d] > INT64_MAX / n) return "element count overflows int64";
        n *= ne[d];
    }
    if (ne[0] % ti->block_elems) return "ne[0] is not a multiple of the type's block size";
    uint64_t blocks = (uint64_t)(n / ti->block_elems);
    if (blocks > UINT64_MAX / ti->block_bytes || blocks * ti->block_bytes > (uint64_t)INT64_MAX)
        return "byte size overflows";
    if (n_elements) *n_elements = n;
    if (nbytes) *nbytes = blocks * ti->block_bytes;
    return NULL;
}

static int read_name(cursor *c, gguf_tensor *t)
{
    gguf_str s;
    int rc = rd_str(c, &s, "tensor name");
    if (rc) return rc;
    if (s.len == 0) return ar_fail(c->err, AR_EFORMAT, "empty tensor name");
    if (memchr(s.ptr, 0, s.len))
        return ar_fail(c->err, AR_EFORMAT, "tensor name '%.*s' contains a NUL byte", shown(s.len), s.ptr);
    if (!(t->name = malloc(s.len + 1))) return ar_fail(c->err, AR_ENOMEM, "out of memory for a tensor name");
    memcpy(t->name, s.ptr, s.len);
    t->name[s.len] = 0;
    return AR_OK;
}

static int read_shape(cursor *c, gguf_tensor *t)
{
    uint32_t n_dims;
    uint64_t at = c->pos;
    int rc = rd_u32(c, &n_dims, "n_dims");
    if (rc) return rc;
    if (n_dims == 0 || n_dims > GGUF_MAX_DIMS)
        return ar_fail(c->err, AR_EFORMAT, "n_dims = %" PRIu32 " at byte %" PRIu64 " (must be 1..%d)",
                       n_dims, at, GGUF_MAX_DIMS);
    t->n_dims = (int)n_dims;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (int d = 0; d < t->n_dims; d++) {
        uint64_t v;
        at = c->pos;
        if ((rc = rd_u64(c, &v, "dimension"))) return rc;
        if (v == 0 || v > (uint64_t)INT64_MAX)
            return ar_fail(c->err, AR_EFORMAT, "ne[%d] = %" PRId64 " at byte %" PRIu64 " (must be > 0)",
                           d, (int64_t)v, at);
        t->ne[d] = (int64_t)v;
    }
    return AR_OK;
}

static int parse_info(cursor *c, gguf_tensor *t)
{
    uint32_t type;
    int rc = read_name(c, t);
    if (!rc) rc = read_shape(c, t);
    uint64_t at = c->pos;
    if (!rc) rc = rd_u32(c, &type, "tensor type");
    if (rc) return rc;
    if (type > INT32_MAX || !ar_dtype_get((int)type))
        return ar_fail(c->err, AR_EFORMAT, "unknown type id %" PRIu32 " at byte %" PRIu64, type, at);
    t->type = (int)type;
    const char *why = gguf_check_shape(t->type, t->n_dims, t->ne, &t->n_elements, &t->nbytes);
    if (why)
        return ar_fail(c->err, AR_EFORMAT, "shape [%" PRId64 ", %" PRId64 ", %" PRId64 ", %" PRId64 "] of type %s: %s",
                       t->ne[0], t->ne[1], t->ne[2], t->ne[3], ar_dtype_name(t->type), why);
    return rd_u64(c, &t->offset, "tensor data offset");
}

static int parse_infos(cursor *c, part *p, int part_no, int64_t n, uint64_t **info_at)
{
    int64_t cap = 0, cap_at = 0, dup = -1;
    name_index names = { 0 };
    int rc = AR_OK;
    for (int64_t i = 0; i < n && !rc; i++) {
        gguf_tensor *g = grow(p->tensors, &cap, i, sizeof *p->tensors);
        if (g) p->tensors = g;
        uint64_t *ga = g ? grow(*info_at, &cap_at, i, sizeof **info_at) : NULL;
        if (!ga) {
            rc = ar_fail(c->err, AR_ENOMEM, "out of memory for %" PRId64 " tensor infos", i + 1);
            break;
        }
        *info_at = ga;
        p->n_tensors = i + 1;
        gguf_tensor *t = &p->tensors[i];
        t->part = part_no;
        ga[i] = c->pos;
        if ((rc = parse_info(c, t))) {
            if (t->name) ar_error_prefix(c->err, "tensor '%s' (info at byte %" PRIu64 "): ", t->name, ga[i]);
            else ar_error_prefix(c->err, "tensor #%" PRId64 " (info at byte %" PRIu64 "): ", i, ga[i]);
        } else if ((rc = index_add(&names, p->tensors, tensor_key, i, &dup))) {
            ar_fail(c->err, rc, "out of memory indexing tensor names");
        } else if (dup >= 0) {
            rc = ar_fail(c->err, AR_EFORMAT, "tensor '%s' (info at byte %" PRIu64 "): duplicate tensor name "
                         "(tensor #%" PRId64 " repeats #%" PRId64 ")", t->name, ga[i], i, dup);
        }
    }
    free(names.slot);
    return rc;
}

/* ---- tensor placement ---------------------------------------------------------------------- */

typedef struct span { uint64_t begin, end; int64_t i; } span;

static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : (x->i > y->i) - (x->i < y->i);
}

static int place_one(const part *p, gguf_tensor *t, uint64_t info_at, ar_error *err)
{
    uint64_t room = p->size > p->data_offset ? p->size - p->data_offset : 0;
    if (t->offset % p->alignment)
        return ar_fail(err, AR_EFORMAT, "tensor '%s' (info at byte %" PRIu64 "): data offset %" PRIu64
                       " is not a multiple of the alignment %" PRIu32, t->name, info_at, t->offset, p->alignment);
    if (t->offset > room)
        return ar_fail(err, AR_EFORMAT, "tensor '%s' (info at byte %" PRIu64 "): data offset %" PRIu64
                       " (data section starts at byte %" PRIu64 ") runs past end of file (size %" PRIu64 ")",
                       t->name, info_at, t->offset, p->data_offset, p->size);
    uint64_t at = p->data_offset + t->offset;   /* <= size: no wrap */
    if (t->nbytes > room - t->offset)
        return ar_fail(err, AR_EFORMAT, "tensor '%s' (info at byte %" PRIu64 "): data [offset %" PRIu64 ", %" PRIu64
                       "+%" PRIu64 ") runs past end of file (size %" PRIu64 ")", t->name, info_at, at, at,
                       t->nbytes, p->size);
    t->data = p->base + at;
    return AR_OK;
}

static int place_tensors(part *p, const uint64_t *info_at, ar_error *err)
{
    if (p->n_tensors == 0) return AR_OK;
    for (int64_t i = 0; i < p->n_tensors; i++) {
        int rc = place_one(p, &p->tensors[i], info_at[i], err);
        if (rc) return rc;
    }
    span *s = malloc((size_t)p->n_tensors * sizeof *s);
    if (!s) return ar_fail(err, AR_ENOMEM, "out of memory checking tensor overlaps");
    for (int64_t i = 0; i < p->n_tensors; i++)
        s[i] = (span){ p->tensors[i].offset, p->tensors[i].offset + p->tensors[i].nbytes, i };
    qsort(s, (size_t)p->n_tensors, sizeof *s, span_cmp);
    int rc = AR_OK;
    for (int64_t k = 1; k < p->n_tensors && !rc; k++) {
        if (s[k].begin >= s[k - 1].end) continue;
        const gguf_tensor *a = &p->tensors[s[k - 1].i], *b = &p->tensors[s[k].i];
        rc = ar_fail(err, AR_EFORMAT, "tensor '%s' (info at byte %" PRIu64 "): data [offset %" PRIu64 ", %" PRIu64
                     "+%" PRIu64 ") overlaps tensor '%s' [offset %" PRIu64 ", %" PRIu64 "+%" PRIu64 ")",
                     b->name, info_at[s[k].i], p->data_offset + b->offset, p->data_offset + b->offset, b->nbytes,
                     a->name, p->data_offset + a->offset, p->data_offset + a->offset, a->nbytes);
    }
    free(s);
    return rc;
}

/* ---- one part ------------------------------------------------------------------------------ */

static int parse_version(cursor *c, part *p)
{
    int rc = need(c, 4, "magic");
    if (rc) return rc;
    if (memcmp(c->base, "GGUF", 4)) {
        char m[4];
        for (int i = 0; i < 4; i++) m[i] = c->base[i] >= 32 && c->base[i] < 127 ? (char)c->base[i] : '?';
        return ar_fail(c->err, AR_EFORMAT, "bad magic '%.4s' at byte 0 (expected 'GGUF'): not a GGUF file", m);
    }
    c->pos = 4;
    if ((rc = rd_u32(c, &p->version, "version"))) return rc;
    if (p->version == 1)
        return ar_fail(c->err, AR_EUNSUPPORTED, "GGUF version 1 is not supported (only v2 and v3); "
                       "re-convert the model with a current llama.cpp");
    if (p->version && (p->version & 0xffff) == 0)
        return ar_fail(c->err, AR_EUNSUPPORTED, "GGUF version %" PRIu32 " looks byte-swapped: big-endian files "
                       "are not supported", p->version);
    if (p->version < 2 || p->version > 3)
        return ar_fail(c->err, AR_EFORMAT, "GGUF version %" PRIu32 " at byte 4 is not supported (only v2 and v3)",
                       p->version);
    return AR_OK;
}

static int parse_counts(cursor *c, int64_t *n_tensors, int64_t *n_kv)
{
    uint64_t nt, nk;
    int rc = rd_u64(c, &nt, "n_tensors");
    if (!rc) rc = rd_u64(c, &nk, "n_kv");
    if (rc) return rc;
    uint64_t left = c->size - c->pos;
    if (nk > left / MIN_KV_BYTES)
        return ar_fail(c->err, AR_EFORMAT, "n_kv = %" PRIu64 " (at byte 16) cannot fit in the %" PRIu64
                       " bytes after the header (a key/value takes at least %u; truncated or corrupt file?)", nk, left, MIN_KV_BYTES);
    if (nt > (left - nk * MIN_KV_BYTES) / MIN_INFO_BYTES)
        return ar_fail(c->err, AR_EFORMAT, "n_tensors = %" PRIu64 " (at byte 8) cannot fit in the %" PRIu64
                       " bytes after the header (a tensor info takes at least %u; truncated or corrupt file?)", nt, left, MIN_INFO_BYTES);
    *n_tensors = (int64_t)nt;
    *n_kv = (int64_t)nk;
    return AR_OK;
}

/* Parse and validate a mapped part; errors are NOT yet prefixed with the file name. */
static int parse_part(part *p, int part_no, ar_error *err)
{
    cursor c = { p->base, p->size, 0, err };
    int64_t n_tensors = 0, n_kv = 0;
    if (p->size == 0) return ar_fail(err, AR_EFORMAT, "empty file (0 bytes)");
    int rc = parse_version(&c, p);
    if (!rc) rc = parse_counts(&c, &n_tensors, &n_kv);
    if (!rc) rc = parse_kvs(&c, p, n_kv);
    if (!rc) rc = read_alignment(p, err);
    if (rc) return rc;
    uint64_t *info_at = NULL;
    rc = parse_infos(&c, p, part_no, n_tensors, &info_at);
    if (!rc) {
        /* c.pos <= size < 2^63, so rounding up to a u32 alignment cannot wrap */
        p->data_offset = (c.pos + p->alignment - 1) / p->alignment * p->alignment;
        rc = place_tensors(p, info_at, err);
    }
    free(info_at);
    return rc;
}

static int map_file(part *p, const char *path, ar_error *err)
{
    if (!(p->path = strdup(path))) return ar_fail(err, AR_ENOMEM, "out of memory");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ar_fail(err, AR_EIO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return ar_fail(err, AR_EIO, "%s: not a regular file", path);
    }
    p->size = (uint64_t)st.st_size;
    if (p->size == 0) {
        close(fd);
        return ar_fail(err, AR_EFORMAT, "%s: empty file (0 bytes)", path);
    }
    void *m = mmap(NULL, (size_t)p->size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
        close(fd);
        return ar_fail(err, AR_EIO, "%s: cannot mmap %" PRIu64 " bytes: %s", path, p->size, strerror(errno));
    }
    p->base = m;
    p->mapped = true;
    p->fd = fd;
    return AR_OK;
}

void *gguf_writable(gguf_file *f, const void *data, uint64_t nbytes, ar_error *err)
{
    const uint8_t *d = data;
    for (int i = 0; i < f->n_parts; i++) {
        const part *p = &f->parts[i];
        if (d < p->base || d >= p->base + p->size || nbytes > (uint64_t)(p->base + p->size - d)) continue;
        if (!p->mapped) {
            ar_fail(err, AR_EINVAL, "%s: tensor data in a caller's buffer cannot be rearranged", p->path ? p->path : "gguf");
            return NULL;
        }
        /* The range's pages are replaced by anonymous memory holding the same bytes, 2 MiB at a time
         * (copied out, mapped over, copied back), so that the kernel can back them with huge pages:
         * one fault and one TLB entry per 2 MiB instead of a copy-on-write fault per 4 KiB page. The
         * range is widened to whole 2 MiB chunks of the address space (within the file's mapping), so
         * that a tensor's first and last chunks can be huge pages too; the neighbours' bytes there are
         * copied back unchanged. Each chunk's file pages are then dropped from the page cache (pages
         * another process maps stay): the process holds its own copy, and a second copy of a model
         * as large as memory leaves no free 2 MiB blocks for the first (measured on the 27B shape:
         * 9.3-13.8 of 14.9 GB in huge pages without it, 14.8 with it). */
        const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), huge = (uintptr_t)2 << 20;
        const uintptr_t map_lo = (uintptr_t)p->base, map_hi = ((uintptr_t)p->base + p->size + page - 1) & ~(page - 1);
        uintptr_t lo = (uintptr_t)d & ~(huge - 1), hi = ((uintptr_t)d + nbytes + huge - 1) & ~(huge - 1);
        if (lo < map_lo) lo = map_lo;
        if (hi > map_hi) hi = map_hi;
        uint8_t *tmp = malloc(huge);
        if (!tmp) {
            ar_fail(err, AR_ENOMEM, "out of memory");
            return NULL;
        }
        for (uintptr_t a = lo; a < hi;) {
            const uintptr_t end = (a & ~(huge - 1)) + huge < hi ? (a & ~(huge - 1)) + huge : hi;
            memcpy(tmp, (const void *)a, end - a);
            void *m = mmap((void *)a, end - a, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
            if (m == MAP_FAILED) {   /* the range [a, end) is still the file's */
                ar_fail(err, AR_EIO, "%s: cannot map %" PRIu64 " bytes of memory for tensor data: %s", p->path,
                        (uint64_t)(end - a), strerror(errno));
                free(tmp);
                return NULL;
            }
            madvise(m, end - a, MADV_HUGEPAGE);   /* advice only: THP may be off */
            memcpy(m, tmp, end - a);
            posix_fadvise(p->fd, (off_t)(a - map_lo), (off_t)(end - a), POSIX_FADV_DONTNEED);   /* advice only */
            a = end;
        }
        free(tmp);
        return (void *)(uintptr_t)d;
    }
    ar_fail(err, AR_EINVAL, "gguf_writable: the range is not tensor data of this file");
    return NULL;
}

static int open_part(part *p, const char *path, int part_no, ar_error *err)
{
    int rc = map_file(p, path, err);
    if (rc) return rc;
    rc = parse_part(p, part_no, err);
    return rc ? ar_error_prefix(err, "%s: ", path) : AR_OK;
}

static void free_part(part *p)
{
    for (int64_t i = 0; i < p->n_kv && p->kv; i++) free(p->kv[i].arr_str);
    free(p->kv);
    for (int64_t i = 0; i < p->n_tensors && p->tensors; i++) free(p->tensors[i].name);
    free(p->tensors);
    free(p->keys.slot);
    if (p->mapped) {
        munmap((void *)p->base, (size_t)p->size);
        close(p->fd);
    }
    free(p->path);
}

/* ---- split models -------------------------------------------------------------------------- */

static int kv_as_u64(const gguf_kv *kv, uint64_t *out)
{
    switch (kv->type) {
    case GGUF_T_UINT8: case GGUF_T_UINT16: case GGUF_T_UINT32: case GGUF_T_UINT64:
        *out = kv->v.u64;
        return AR_OK;
    case GGUF_T_INT8: case GGUF_T_INT16: case GGUF_T_INT32: case GGUF_T_INT64:
        if (kv->v.i64 < 0) return AR_ERANGE;
        *out = (uint64_t)kv->v.i64;
        return AR_OK;
    default:
        return AR_EFORMAT;
    }
}

static int split_key(const part *p, const char *key, uint64_t *out, ar_error *err)
{
    const gguf_kv *kv = part_find(p, key);
    if (!kv) return ar_fail(err, AR_EFORMAT, "%s: split part has no key %s", p->path, key);
    if (kv_as_u64(kv, out))
        return ar_fail(err, AR_EFORMAT, "%s: %s must be a non-negative integer (it is %s)", p->path, key,
                       gguf_type_name(kv->type));
    return AR_OK;
}

/* NAME-00001-of-0000N.gguf -> length of NAME, or -1 when `path` does not name part 1 of n. */
static int64_t split_prefix_len(const char *path, uint64_t n)
{
    char suffix[64];
    snprintf(suffix, sizeof suffix, "-%05d-of-%05" PRIu64 ".gguf", 1, n);
    size_t lp = strlen(path), ls = strlen(suffix);
    if (lp <= ls || strcmp(path + lp - ls, suffix)) return -1;
    return (int64_t)(lp - ls);
}

static int check_part_keys(const part *p, uint64_t no, uint64_t count, ar_error *err)
{
    uint64_t v;
    int rc = split_key(p, "split.no", &v, err);
    if (rc) return rc;
    if (v != no)
        return ar_fail(err, AR_EFORMAT, "%s: split.no is %" PRIu64 ", expected %" PRIu64 " for this file name",
                       p->path, v, no);
    if ((rc = split_key(p, "split.count", &v, err))) return rc;
    if (v != count)
        return ar_fail(err, AR_EFORMAT, "%s: split.count is %" PRIu64 " but the first part says %" PRIu64,
                       p->path, v, count);
    return AR_OK;
}

/* part 0 is open and says split.count = n > 1: open parts 1..n-1 next to it. */
static int open_splits(gguf_file *f, uint64_t n, ar_error *err)
{
    const char *first = f->parts[0].path;
    uint64_t no;
    int rc = split_key(&f->parts[0], "split.no", &no, err);
    if (rc) return rc;
    if (no != 0)
        return ar_fail(err, AR_EINVAL, "%s: this is split part %" PRIu64 " of %" PRIu64 "; open the first part "
                       "(NAME-00001-of-%05" PRIu64 ".gguf)", first, no + 1, n, n);
    int64_t lp = split_prefix_len(first, n);
    if (lp < 0)
        return ar_fail(err, AR_EFORMAT, "%s: split.count is %" PRIu64 " but the file name does not end in "
                       "-00001-of-%05" PRIu64 ".gguf, so the other parts cannot be found", first, n, n);
    if (n > 99999) return ar_fail(err, AR_EFORMAT, "%s: split.count %" PRIu64 " is absurd", first, n);
    part *grown = realloc(f->parts, n * sizeof *grown);
    if (!grown) return ar_fail(err, AR_ENOMEM, "out of memory");
    f->parts = grown;
    memset(f->parts + 1, 0, (n - 1) * sizeof *grown);
    size_t plen = (size_t)lp + 32;
    char *path = malloc(plen);
    if (!path) return ar_fail(err, AR_ENOMEM, "out of memory");
    for (uint64_t i = 1; i < n && !rc; i++) {
        snprintf(path, plen, "%.*s-%05" PRIu64 "-of-%05" PRIu64 ".gguf", (int)lp, f->parts[0].path, i + 1, n);
        f->n_parts = (int)i + 1;
        if (access(path, F_OK) != 0)
            rc = ar_fail(err, AR_EIO, "%s: split part %" PRIu64 " of %" PRIu64 " is missing: %s", f->parts[0].path,
                         i + 1, n, path);
        else if (!(rc = open_part(&f->parts[i], path, (int)i, err)))
            rc = check_part_keys(&f->parts[i], i, n, err);
    }
    free(path);
    return rc;
}

/* ---- the logical file ---------------------------------------------------------------------- */

static int build_union(gguf_file *f, ar_error *err)
{
    int64_t total = 0;
    for (int i = 0; i < f->n_parts; i++) total += f->parts[i].n_tensors;
    if (total && !(f->tensors = calloc((size_t)total, sizeof *f->tensors)))
        return ar_fail(err, AR_ENOMEM, "cannot allocate %" PRId64 " tensors", total);
    for (int i = 0; i < f->n_parts; i++) {
        part *p = &f->parts[i];
        if (p->n_tensors) memcpy(f->tensors + f->n_tensors, p->tensors, (size_t)p->n_tensors * sizeof *p->tensors);
        f->n_tensors += p->n_tensors;
        free(p->tensors);   /* names now belong to f->tensors */
        p->tensors = NULL;
        p->n_tensors = 0;
    }
    for (int64_t i = 0; i < f->n_tensors; i++) {
        int64_t dup;
        if (index_add(&f->names, f->tensors, tensor_key, i, &dup))
            return ar_fail(err, AR_ENOMEM, "out of memory indexing %" PRId64 " tensors", f->n_tensors);
        if (dup < 0) continue;
        const gguf_tensor *t = &f->tensors[i];   /* parts are duplicate-free, so this is across parts */
        return ar_fail(err, AR_EFORMAT, "%s: duplicate tensor name '%s' (also in split part %d, %s)",
                       f->parts[t->part].path, t->name, f->tensors[dup].part + 1, f->parts[f->tensors[dup].part].path);
    }
    return AR_OK;
}

static int finish_open(gguf_file *f, bool from_disk, ar_error *err)
{
    const gguf_kv *kv = part_find(&f->parts[0], "split.count");
    uint64_t n = 1;
    if (kv && kv_as_u64(kv, &n))
        return ar_fail(err, AR_EFORMAT, "%s: split.count must be a non-negative integer (it is %s)",
                       f->parts[0].path, gguf_type_name(kv->type));
    int rc = AR_OK;
    if (n > 1 && from_disk && (rc = open_splits(f, n, err))) return rc;
    if ((rc = build_union(f, err))) return rc;
    if (f->n_parts > 1) {
        uint64_t want;
        if ((rc = split_key(&f->parts[0], "split.tensors.count", &want, err))) return rc;
        if (want != (uint64_t)f->n_tensors)
            return ar_fail(err, AR_EFORMAT, "%s: split.tensors.count is %" PRIu64 " but the %d parts hold %" PRId64
                           " tensors", f->parts[0].path, want, f->n_parts, f->n_tensors);
    }
    return AR_OK;
}

static gguf_file *new_file(void)
{
    gguf_file *f = calloc(1, sizeof *f);
    if (!f) return NULL;
    if (!(f->parts = calloc(1, sizeof *f->parts))) {
        free(f);
        return NULL;
    }
    f->n_parts = 1;
    return f;
}

int gguf_open(gguf_file **out, const char *path, ar_error *err)
{
    *out = NULL;
    gguf_file *f = new_file();
    if (!f) return ar_fail(err, AR_ENOMEM, "out of memory");
    int rc = open_part(&f->parts[0], path, 0, err);
    if (!rc) rc = finish_open(f, true, err);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return AR_OK;
}

int gguf_open_memory(gguf_file **out, const void *buf, size_t size, ar_error *err)
{
    *out = NULL;
    gguf_file *f = new_file();
    if (!f || !(f->parts[0].path = strdup("<memory>"))) {
        gguf_close(f);
        return ar_fail(err, AR_ENOMEM, "out of memory");
    }
    f->parts[0].base = buf;
    f->parts[0].size = size;
    int rc = parse_part(&f->parts[0], 0, err);
    if (rc) ar_error_prefix(err, "<memory>: ");
    else rc = finish_open(f, false, err);
    if (rc) {
        gguf_close(f);
        return rc;
    }
    *out = f;
    return AR_OK;
}

void gguf_close(gguf_file *f)
{
    if (!f) return;
    for (int i = 0; i < f->n_parts; i++) free_part(&f->parts[i]);
    free(f->parts);
    for (int64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    free(f->names.slot);
    free(f);
}

/* ---- accessors ----------------------------------------------------------------------------- */

uint32_t gguf_version(const gguf_file *f) { return f->parts[0].version; }
uint32_t gguf_alignment(const gguf_file *f) { return f->parts[0].alignment; }
int gguf_n_parts(const gguf_file *f) { return f->n_parts; }
const char *gguf_path(const gguf_file *f) { return f->parts[0].path; }

uint64_t gguf_file_size(const gguf_file *f)
{
    uint64_t s = 0;
    for (int i = 0; i < f->n_parts; i++) s += f->parts[i].size;
    return s;
}

const char *gguf_part_path(const gguf_file *f, int i) { return i >= 0 && i < f->n_parts ? f->parts[i].path : NULL; }
uint64_t gguf_part_size(const gguf_file *f, int i) { return i >= 0 && i < f->n_parts ? f->parts[i].size : 0; }
uint64_t gguf_data_offset(const gguf_file *f, int i) { return i >= 0 && i < f->n_parts ? f->parts[i].data_offset : 0; }

int64_t gguf_n_kv(const gguf_file *f) { return f->parts[0].n_kv; }

const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && i < f->parts[0].n_kv ? &f->parts[0].kv[i] : NULL;
}

const gguf_kv *gguf_find(const gguf_file *f, const char *key) { return part_find(&f->parts[0], key); }

int64_t gguf_n_tensors(const gguf_file *f) { return f->n_tensors; }

const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i)
{
    return i >= 0 && i < f->n_tensors ? &f->tensors[i] : NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name)
{
    int64_t i = index_find(&f->names, f->tensors, tensor_key, name);
    return i < 0 ? NULL : &f->tensors[i];
}
