/* format/gguf_write.c — the GGUF v3 writer.
 *
 * Owns: the in-memory list of key/values (each already serialized to the bytes that follow its
 * type tag, so writing is a copy) and the tensor list (shape, type, and a data pointer or a fill
 * callback).
 *
 * Invariants: keys are unique and keep insertion order (setting an existing key replaces its value
 * in place); tensor names are unique, 1..63 bytes (llama.cpp's limit) and shapes valid for their
 * type (gguf_check_shape); `general.alignment`, when set, is the alignment used.
 *
 * Data flow: gguf_writer_write() lays tensors out back to back, each at an aligned offset (the
 * layout llama.cpp itself writes and expects), streams header, key/values, tensor infos, padding
 * and data through a bounded buffer into NAME.tmp.PID, fsyncs, then renames it over NAME, so a
 * crash never leaves a half-written file under the final name. Fill callbacks get one buffer of
 * exactly the tensor's size, allocated for that tensor and freed right after it. */
#include "format/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_TENSOR_NAME 63
#define OUT_BUF (1u << 20)

typedef struct wkv {
    char *key;
    enum gguf_type type;
    uint8_t *val;     /* serialized value (after the type tag) */
    size_t len;
} wkv;

typedef struct wtensor {
    gguf_tensor t;
    const void *data;
    gguf_fill_fn fill;
    void *fill_ctx;
} wtensor;

struct gguf_writer {
    wkv *kv;
    size_t n_kv, cap_kv;
    wtensor *tensors;
    size_t n_tensors, cap_tensors;
};

static const uint8_t type_size[GGUF_T_COUNT] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };

gguf_writer *gguf_writer_create(void)
{
    return calloc(1, sizeof(gguf_writer));
}

void gguf_writer_free(gguf_writer *w)
{
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].t.name);
    free(w->kv);
    free(w->tensors);
    free(w);
}

/* ---- key/values ---------------------------------------------------------------------------- */

static wkv *find_kv(gguf_writer *w, const char *key)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (!strcmp(w->kv[i].key, key)) return &w->kv[i];
    return NULL;
}

/* Take ownership of val (len bytes) as the value of key. */
static int put(gguf_writer *w, const char *key, enum gguf_type type, uint8_t *val, size_t len)
{
    if (!w || !key || !*key) {
        free(val);
        return AR_EINVAL;
    }
    wkv *kv = find_kv(w, key);
    if (!kv) {
        if (w->n_kv == w->cap_kv) {
            size_t cap = w->cap_kv ? w->cap_kv * 2 : 32;
            wkv *g = realloc(w->kv, cap * sizeof *g);
            if (!g) goto nomem;
            w->kv = g;
            w->cap_kv = cap;
        }
        char *k = strdup(key);
        if (!k) goto nomem;
        kv = &w->kv[w->n_kv++];
        *kv = (wkv){ .key = k };
    }
    free(kv->val);
    kv->type = type;
    kv->val = val;
    kv->len = len;
    return AR_OK;
nomem:
    free(val);
    return AR_ENOMEM;
}

static int put_copy(gguf_writer *w, const char *key, enum gguf_type type, const void *v, size_t len)
{
    uint8_t *val = malloc(len ? len : 1);
    if (!val) return AR_ENOMEM;
    memcpy(val, v, len);
    return put(w, key, type, val, len);
}

int gguf_set_u8(gguf_writer *w, const char *key, uint8_t v) { return put_copy(w, key, GGUF_T_UINT8, &v, 1); }
int gguf_set_i32(gguf_writer *w, const char *key, int32_t v) { return put_copy(w, key, GGUF_T_INT32, &v, 4); }
int gguf_set_u32(gguf_writer *w, const char *key, uint32_t v) { return put_copy(w, key, GGUF_T_UINT32, &v, 4); }
int gguf_set_u64(gguf_writer *w, const char *key, uint64_t v) { return put_copy(w, key, GGUF_T_UINT64, &v, 8); }
int gguf_set_f32(gguf_writer *w, const char *key, float v) { return put_copy(w, key, GGUF_T_FLOAT32, &v, 4); }

int gguf_set_bool(gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return put_copy(w, key, GGUF_T_BOOL, &b, 1);
}

void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment)
{
    gguf_set_u32(w, "general.alignment", alignment);
}

/* Serialized size of n strings; SIZE_MAX on overflow. */
static size_t strs_size(const gguf_str *s, uint64_t n)
{
    size_t total = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (s[i].len > SIZE_MAX - 8 - total) return SIZE_MAX;
        total += 8 + (size_t)s[i].len;
    }
    return total;
}

static uint8_t *put_str_bytes(uint8_t *p, gguf_str s)
{
    memcpy(p, &s.len, 8);
    if (s.len) memcpy(p + 8, s.ptr, (size_t)s.len);
    return p + 8 + s.len;
}

int gguf_set_strn(gguf_writer *w, const char *key, const char *v, size_t len)
{
    if (!v && len) return AR_EINVAL;
    if (len > SIZE_MAX - 8) return AR_EINVAL;
    uint8_t *val = malloc(8 + len);
    if (!val) return AR_ENOMEM;
    put_str_bytes(val, (gguf_str){ len, v });
    return put(w, key, GGUF_T_STRING, val, 8 + len);
}

int gguf_set_str(gguf_writer *w, const char *key, const char *v)
{
    return v ? gguf_set_strn(w, key, v, strlen(v)) : AR_EINVAL;
}

/* Array header (element type, count) followed by `body` bytes; returns the body pointer in *body. */
static uint8_t *array_alloc(enum gguf_type elem, uint64_t n, size_t body, size_t *len)
{
    if (body > SIZE_MAX - 12) return NULL;
    uint8_t *val = malloc(12 + body);
    if (!val) return NULL;
    uint32_t t = (uint32_t)elem;
    memcpy(val, &t, 4);
    memcpy(val + 4, &n, 8);
    *len = 12 + body;
    return val;
}

int gguf_set_arr(gguf_writer *w, const char *key, enum gguf_type elem_type, const void *data, uint64_t n)
{
    if ((unsigned)elem_type >= GGUF_T_COUNT || !type_size[elem_type] || (!data && n)) return AR_EINVAL;
    if (n > SIZE_MAX / 2 / type_size[elem_type]) return AR_EINVAL;
    size_t body = (size_t)n * type_size[elem_type], len;
    uint8_t *val = array_alloc(elem_type, n, body, &len);
    if (!val) return AR_ENOMEM;
    if (body) memcpy(val + 12, data, body);
    if (elem_type == GGUF_T_BOOL)
        for (size_t i = 0; i < body; i++) val[12 + i] = val[12 + i] ? 1 : 0;
    return put(w, key, GGUF_T_ARRAY, val, len);
}

int gguf_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n)
{
    if (!strs && n) return AR_EINVAL;
    for (uint64_t i = 0; i < n; i++)
        if (!strs[i].ptr && strs[i].len) return AR_EINVAL;
    size_t body = strs_size(strs, n), len;
    if (body == SIZE_MAX) return AR_EINVAL;
    uint8_t *val = array_alloc(GGUF_T_STRING, n, body, &len);
    if (!val) return AR_ENOMEM;
    uint8_t *p = val + 12;
    for (uint64_t i = 0; i < n; i++) p = put_str_bytes(p, strs[i]);
    return put(w, key, GGUF_T_ARRAY, val, len);
}

/* Narrow a reader's widened scalar back to its on-disk bytes. */
static void narrow(const gguf_kv *kv, uint8_t *p)
{
    uint8_t u8 = (uint8_t)kv->v.u64; int8_t i8 = (int8_t)kv->v.i64;
    uint16_t u16 = (uint16_t)kv->v.u64; int16_t i16 = (int16_t)kv->v.i64;
    uint32_t u32 = (uint32_t)kv->v.u64; int32_t i32 = (int32_t)kv->v.i64; float f32 = (float)kv->v.f64;
    switch (kv->type) {
    case GGUF_T_UINT8:   memcpy(p, &u8, 1); break;
    case GGUF_T_INT8:    memcpy(p, &i8, 1); break;
    case GGUF_T_UINT16:  memcpy(p, &u16, 2); break;
    case GGUF_T_INT16:   memcpy(p, &i16, 2); break;
    case GGUF_T_UINT32:  memcpy(p, &u32, 4); break;
    case GGUF_T_INT32:   memcpy(p, &i32, 4); break;
    case GGUF_T_FLOAT32: memcpy(p, &f32, 4); break;
    case GGUF_T_BOOL:    p[0] = kv->v.b ? 1 : 0; break;
    case GGUF_T_UINT64:  memcpy(p, &kv->v.u64, 8); break;
    case GGUF_T_INT64:   memcpy(p, &kv->v.i64, 8); break;
    case GGUF_T_FLOAT64: memcpy(p, &kv->v.f64, 8); break;
    default: break;
    }
}

int gguf_set_kv(gguf_writer *w, const gguf_kv *kv)
{
    if (!kv || !kv->key.len || memchr(kv->key.ptr, 0, (size_t)kv->key.len)) return AR_EINVAL;
    char *key = strndup(kv->key.ptr, (size_t)kv->key.len);
    if (!key) return AR_ENOMEM;
    int rc;
    if (kv->type == GGUF_T_ARRAY && kv->arr_type == GGUF_T_STRING) {
        rc = gguf_set_arr_str(w, key, kv->arr_str, kv->arr_n);
    } else if (kv->type == GGUF_T_ARRAY) {
        rc = gguf_set_arr(w, key, kv->arr_type, kv->arr_data, kv->arr_n);
    } else if (kv->type == GGUF_T_STRING) {
        rc = kv->v.str.len > SIZE_MAX - 8 ? AR_EINVAL : gguf_set_strn(w, key, kv->v.str.ptr, (size_t)kv->v.str.len);
    } else if ((unsigned)kv->type < GGUF_T_COUNT) {
        uint8_t bytes[8];
        narrow(kv, bytes);
        rc = put_copy(w, key, kv->type, bytes, type_size[kv->type]);
    } else {
        rc = AR_EINVAL;
    }
    free(key);
    return rc;
}

int gguf_remove_key(gguf_writer *w, const char *key)
{
    wkv *kv = w && key ? find_kv(w, key) : NULL;
    if (!kv) return AR_EINVAL;
    free(kv->key);
    free(kv->val);
    size_t i = (size_t)(kv - w->kv);
    memmove(kv, kv + 1, (w->n_kv - i - 1) * sizeof *kv);
    w->n_kv--;
    return AR_OK;
}

/* ---- tensors ------------------------------------------------------------------------------- */

int gguf_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                    const void *data, gguf_fill_fn fill, void *fill_ctx)
{
    if (!w || !name || !ne || (!data && !fill)) return AR_EINVAL;
    size_t len = strlen(name);
    if (len == 0 || len > MAX_TENSOR_NAME) return AR_EINVAL;
    for (size_t i = 0; i < w->n_tensors; i++)
        if (!strcmp(w->tensors[i].t.name, name)) return AR_EINVAL;
    gguf_tensor t = { .n_dims = n_dims, .type = type, .ne = { 1, 1, 1, 1 } };
    if (n_dims < 1 || n_dims > GGUF_MAX_DIMS) return AR_EINVAL;
    memcpy(t.ne, ne, (size_t)n_dims * sizeof *ne);
    if (gguf_check_shape(type, n_dims, t.ne, &t.n_elements, &t.nbytes)) return AR_EINVAL;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? w->cap_tensors * 2 : 64;
        wtensor *g = realloc(w->tensors, cap * sizeof *g);
        if (!g) return AR_ENOMEM;
        w->tensors = g;
        w->cap_tensors = cap;
    }
    if (!(t.name = strdup(name))) return AR_ENOMEM;
    w->tensors[w->n_tensors++] = (wtensor){ t, data, fill, fill_ctx };
    return AR_OK;
}

/* ---- output -------------------------------------------------------------------------------- */

typedef struct out {
    int fd;
    const char *path;   /* the temporary file, for messages */
    uint8_t *buf;
    size_t n;
    uint64_t written;
    ar_error *err;
} out;

static int flush_out(out *o)
{
    size_t done = 0;
    while (done < o->n) {
        ssize_t k = write(o->fd, o->buf + done, o->n - done);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return ar_fail(o->err, AR_EIO, "%s: write failed: %s", o->path, strerror(errno));
        done += (size_t)k;
    }
    o->n = 0;
    return AR_OK;
}

static int emit(out *o, const void *p, uint64_t len)
{
    const uint8_t *s = p;
    while (len) {
        if (o->n == OUT_BUF) {
            int rc = flush_out(o);
            if (rc) return rc;
        }
        size_t k = OUT_BUF - o->n;
        if (k > len) k = (size_t)len;
        memcpy(o->buf + o->n, s, k);
        o->n += k;
        o->written += k;
        s += k;
        len -= k;
    }
    return AR_OK;
}

static int emit_u32(out *o, uint32_t v) { return emit(o, &v, 4); }
static int emit_u64(out *o, uint64_t v) { return emit(o, &v, 8); }

static int emit_str(out *o, const char *s, uint64_t len)
{
    int rc = emit_u64(o, len);
    return rc ? rc : emit(o, s, len);
}

static int pad_to(out *o, uint32_t alignment)
{
    static const uint8_t zeros[256];
    while (o->written % alignment) {
        uint64_t k = alignment - o->written % alignment;
        int rc = emit(o, zeros, k > sizeof zeros ? sizeof zeros : k);
        if (rc) return rc;
    }
    return AR_OK;
}

static int resolve_alignment(gguf_writer *w, uint32_t *alignment, ar_error *err)
{
    wkv *kv = find_kv(w, "general.alignment");
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    if (!kv) return AR_OK;
    if (kv->type != GGUF_T_UINT32)
        return ar_fail(err, AR_EINVAL, "general.alignment must be u32, not %s", gguf_type_name(kv->type));
    memcpy(alignment, kv->val, 4);
    if (*alignment == 0 || (*alignment & (*alignment - 1)))
        return ar_fail(err, AR_EINVAL, "general.alignment = %" PRIu32 " is not a power of two", *alignment);
    return AR_OK;
}

/* Back-to-back layout at aligned offsets; fails if the data section would overflow. */
static int layout(gguf_writer *w, uint32_t alignment, ar_error *err)
{
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        gguf_tensor *t = &w->tensors[i].t;
        t->offset = off;
        uint64_t padded = (t->nbytes + alignment - 1) / alignment * alignment;
        if (padded < t->nbytes || padded > (uint64_t)INT64_MAX - off)
            return ar_fail(err, AR_EINVAL, "tensor '%s': data section exceeds 2^63 bytes", t->name);
        off += padded;
    }
    return AR_OK;
}

static int emit_header(out *o, gguf_writer *w)
{
    int rc = emit(o, "GGUF", 4);
    if (!rc) rc = emit_u32(o, 3);
    if (!rc) rc = emit_u64(o, w->n_tensors);
    if (!rc) rc = emit_u64(o, w->n_kv);
    for (size_t i = 0; i < w->n_kv && !rc; i++) {
        const wkv *kv = &w->kv[i];
        rc = emit_str(o, kv->key, strlen(kv->key));
        if (!rc) rc = emit_u32(o, (uint32_t)kv->type);
        if (!rc) rc = emit(o, kv->val, kv->len);
    }
    for (size_t i = 0; i < w->n_tensors && !rc; i++) {
        const gguf_tensor *t = &w->tensors[i].t;
        rc = emit_str(o, t->name, strlen(t->name));
        if (!rc) rc = emit_u32(o, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims && !rc; d++) rc = emit_u64(o, (uint64_t)t->ne[d]);
        if (!rc) rc = emit_u32(o, (uint32_t)t->type);
        if (!rc) rc = emit_u64(o, t->offset);
    }
    return rc;
}

/* Large pointer data goes straight to the file; the small rest through the buffer. */
static int emit_data(out *o, const void *data, uint64_t nbytes)
{
    if (nbytes < OUT_BUF) return emit(o, data, nbytes);
    int rc = flush_out(o);
    const uint8_t *p = data;
    uint64_t done = 0;
    while (!rc && done < nbytes) {
        size_t chunk = nbytes - done > (1u << 30) ? (1u << 30) : (size_t)(nbytes - done);
        ssize_t k = write(o->fd, p + done, chunk);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) rc = ar_fail(o->err, AR_EIO, "%s: write failed: %s", o->path, strerror(errno));
        else done += (uint64_t)k;
    }
    o->written += done;
    return rc;
}

static int emit_tensor(out *o, const wtensor *wt)
{
    const gguf_tensor *t = &wt->t;
    if (wt->data) return emit_data(o, wt->data, t->nbytes);
    void *buf = malloc(t->nbytes ? (size_t)t->nbytes : 1);
    if (!buf) return ar_fail(o->err, AR_ENOMEM, "tensor '%s': cannot allocate %" PRIu64 " bytes to fill", t->name, t->nbytes);
    int rc = wt->fill(wt->fill_ctx, t, buf, t->nbytes, o->err);
    if (rc) ar_error_prefix(o->err, "tensor '%s': ", t->name);
    else rc = emit_data(o, buf, t->nbytes);
    free(buf);
    return rc;
}

static int emit_all(out *o, gguf_writer *w, uint32_t alignment)
{
    int rc = emit_header(o, w);
    if (!rc) rc = pad_to(o, alignment);
    uint64_t data_start = o->written;
    for (size_t i = 0; i < w->n_tensors && !rc; i++) {
        /* layout() put each tensor where the previous one ended, padded */
        if (o->written - data_start != w->tensors[i].t.offset)
            return ar_fail(o->err, AR_EIO, "internal: tensor '%s' lands at the wrong offset", w->tensors[i].t.name);
        rc = emit_tensor(o, &w->tensors[i]);
        if (!rc) rc = pad_to(o, alignment);
    }
    if (!rc) rc = flush_out(o);
    if (!rc && fsync(o->fd) != 0) rc = ar_fail(o->err, AR_EIO, "%s: fsync failed: %s", o->path, strerror(errno));
    return rc;
}

int gguf_writer_write(gguf_writer *w, const char *path, ar_error *err)
{
    uint32_t alignment;
    int rc = resolve_alignment(w, &alignment, err);
    if (!rc) rc = layout(w, alignment, err);
    if (rc) return ar_error_prefix(err, "%s: ", path);
    /* The temp-file-and-rename dance must never replace a device, FIFO or directory (say
     * `-o /dev/null`): only a missing path or a regular file may be written. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return ar_fail(err, AR_EINVAL, "%s: exists and is not a regular file; refusing to replace it", path);
    size_t plen = strlen(path) + 32;
    char *tmp = malloc(plen);
    out o = { .fd = -1, .err = err, .buf = malloc(OUT_BUF) };
    if (!tmp || !o.buf) {
        free(tmp);
        free(o.buf);
        return ar_fail(err, AR_ENOMEM, "%s: out of memory", path);
    }
    snprintf(tmp, plen, "%s.tmp.%ld", path, (long)getpid());
    o.path = tmp;
    o.fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (o.fd < 0) {
        rc = ar_fail(err, AR_EIO, "%s: cannot create: %s", tmp, strerror(errno));
    } else {
        rc = emit_all(&o, w, alignment);
        if (close(o.fd) != 0 && !rc) rc = ar_fail(err, AR_EIO, "%s: close failed: %s", tmp, strerror(errno));
        if (!rc && rename(tmp, path) != 0)
            rc = ar_fail(err, AR_EIO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
        if (rc) unlink(tmp);
    }
    free(tmp);
    free(o.buf);
    return rc;
}
