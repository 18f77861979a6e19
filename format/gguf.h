/* format/gguf.h — GGUF files: a validating reader over mmap (v2/v3, split files) and a writer.
 *
 * Reader invariants: after gguf_open() succeeds every key, string, array, tensor info and tensor
 * byte range has been checked against the file size, so callers may dereference what it returns
 * without further bounds checks. Strings point into the mapping and are NOT NUL-terminated
 * (use gguf_str's len); tensor names are additionally copied as C strings for convenience.
 * A split model (NAME-00001-of-0000N.gguf with split.* keys) opens as one logical file whose
 * tensors come from every part; metadata comes from the first part. */
#ifndef AR_FORMAT_GGUF_H
#define AR_FORMAT_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/error.h"

enum gguf_type {
    GGUF_T_UINT8 = 0, GGUF_T_INT8 = 1, GGUF_T_UINT16 = 2, GGUF_T_INT16 = 3, GGUF_T_UINT32 = 4,
    GGUF_T_INT32 = 5, GGUF_T_FLOAT32 = 6, GGUF_T_BOOL = 7, GGUF_T_STRING = 8, GGUF_T_ARRAY = 9,
    GGUF_T_UINT64 = 10, GGUF_T_INT64 = 11, GGUF_T_FLOAT64 = 12, GGUF_T_COUNT
};

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

typedef struct gguf_str { uint64_t len; const char *ptr; } gguf_str;

typedef struct gguf_kv {
    gguf_str key;
    enum gguf_type type;
    union { uint64_t u64; int64_t i64; double f64; bool b; gguf_str str; } v; /* scalars, widened */
    /* arrays: element type, count, pointer to the raw little-endian elements in the mapping;
     * for string arrays `arr_str` holds the n decoded strings instead (allocated by the reader). */
    enum gguf_type arr_type;
    uint64_t arr_n;
    const void *arr_data;
    gguf_str *arr_str;
} gguf_kv;

typedef struct gguf_tensor {
    char *name;                  /* NUL-terminated copy */
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];   /* ne[0] fastest; unused dims are 1 */
    int type;                    /* ar_dtype id (may be one arbor cannot compute with) */
    uint64_t offset;             /* relative to its file's data section */
    uint64_t nbytes;
    int64_t n_elements;
    const void *data;            /* inside the mapping of file `part` */
    int part;                    /* split index, 0 for single files */
} gguf_tensor;

typedef struct gguf_file gguf_file;

/* Open and validate a GGUF (and its sibling splits, if path names the first split). */
int  gguf_open(gguf_file **out, const char *path, ar_error *err);
/* Validate an in-memory buffer (fuzzing, tests); the buffer must outlive the gguf_file. */
int  gguf_open_memory(gguf_file **out, const void *buf, size_t size, ar_error *err);
void gguf_close(gguf_file *f);

uint32_t gguf_version(const gguf_file *f);
uint32_t gguf_alignment(const gguf_file *f);
int      gguf_n_parts(const gguf_file *f);
const char *gguf_path(const gguf_file *f);
uint64_t gguf_file_size(const gguf_file *f);    /* sum over parts */

int64_t gguf_n_kv(const gguf_file *f);
const gguf_kv *gguf_kv_at(const gguf_file *f, int64_t i);
const gguf_kv *gguf_find(const gguf_file *f, const char *key);   /* NULL if absent */
bool gguf_str_eq(gguf_str s, const char *c);

/* Typed getters. Return AR_OK, or AR_EFORMAT naming the key when it is absent or of a type
 * that does not convert (integers convert between widths when the value fits; f32<->f64 convert). */
int gguf_get_u32(const gguf_file *f, const char *key, uint32_t *out, ar_error *err);
int gguf_get_u64(const gguf_file *f, const char *key, uint64_t *out, ar_error *err);
int gguf_get_i32(const gguf_file *f, const char *key, int32_t *out, ar_error *err);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, ar_error *err);
int gguf_get_bool(const gguf_file *f, const char *key, bool *out, ar_error *err);
int gguf_get_str(const gguf_file *f, const char *key, gguf_str *out, ar_error *err);
/* Array of integers of any integer element type, converted to int64 (n <= cap), or a single scalar as a 1-element array. */
int gguf_get_ints(const gguf_file *f, const char *key, int64_t *out, size_t cap, size_t *n, ar_error *err);
/* Same with defaults: when the key is absent, *out = def and AR_OK. */
int gguf_get_u32_or(const gguf_file *f, const char *key, uint32_t def, uint32_t *out, ar_error *err);
int gguf_get_f32_or(const gguf_file *f, const char *key, float def, float *out, ar_error *err);

int64_t gguf_n_tensors(const gguf_file *f);
const gguf_tensor *gguf_tensor_at(const gguf_file *f, int64_t i);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);  /* NULL if absent */
/* A writable alias of [data, data + nbytes), a range of f's tensor data, for rearranging it in
 * place. The mapping is private: written pages become this process's own copy and the file is
 * never written. NULL (and err) for gguf_open_memory files, a range outside the mapping, or when
 * the pages cannot be made writable. */
void *gguf_writable(gguf_file *f, const void *data, uint64_t nbytes, ar_error *err);

const char *gguf_type_name(enum gguf_type t);

/* Per part of a split model (part 0 for single files; NULL / 0 for a bad index). */
const char *gguf_part_path(const gguf_file *f, int part);
uint64_t gguf_part_size(const gguf_file *f, int part);
uint64_t gguf_data_offset(const gguf_file *f, int part);   /* file offset of the part's data section */

/* Validate a tensor shape for a type (n_dims 1..4, every dim > 0, element count fits int64, ne[0] a
 * multiple of the block size, byte size fits) and compute its element count and byte size (either
 * output may be NULL). Returns NULL when valid, else a static reason ("unknown type id", ...). */
const char *gguf_check_shape(int type, int n_dims, const int64_t *ne, int64_t *n_elements, uint64_t *nbytes);

/* ---- writer -------------------------------------------------------------------------------
 * Build the metadata and tensor list in memory, then write. Tensor data is either given as a
 * pointer (must stay valid until gguf_writer_write returns) or produced by a callback at write
 * time, so multi-GiB synthetic models stream to disk without being held in memory. Keys keep
 * insertion order; setting an existing key replaces its value. */
typedef struct gguf_writer gguf_writer;
/* Fill `nbytes` bytes of tensor data into dst. Return AR_OK or an error. */
typedef int (*gguf_fill_fn)(void *ctx, const gguf_tensor *t, void *dst, uint64_t nbytes, ar_error *err);

gguf_writer *gguf_writer_create(void);
void gguf_writer_free(gguf_writer *w);
/* Same as gguf_set_u32(w, "general.alignment", a); gguf_writer_write refuses a non-power-of-two. */
void gguf_writer_set_alignment(gguf_writer *w, uint32_t alignment);

int gguf_set_u8  (gguf_writer *w, const char *key, uint8_t v);
int gguf_set_i32 (gguf_writer *w, const char *key, int32_t v);
int gguf_set_u32 (gguf_writer *w, const char *key, uint32_t v);
int gguf_set_u64 (gguf_writer *w, const char *key, uint64_t v);
int gguf_set_f32 (gguf_writer *w, const char *key, float v);
int gguf_set_bool(gguf_writer *w, const char *key, bool v);
int gguf_set_str (gguf_writer *w, const char *key, const char *v);
int gguf_set_strn(gguf_writer *w, const char *key, const char *v, size_t len);
/* Numeric array: `data` holds n elements of elem_type (copied). */
int gguf_set_arr (gguf_writer *w, const char *key, enum gguf_type elem_type, const void *data, uint64_t n);
int gguf_set_arr_str(gguf_writer *w, const char *key, const gguf_str *strs, uint64_t n);
/* Copy one key/value (any type, arrays included) from a reader. */
int gguf_set_kv(gguf_writer *w, const gguf_kv *kv);
int gguf_remove_key(gguf_writer *w, const char *key);   /* AR_EINVAL when the key is absent */

/* Add a tensor. data == NULL and fill == NULL is an error. Returns AR_OK or AR_EINVAL (bad shape/type,
 * a duplicate name, or a name that is empty or longer than 63 bytes, llama.cpp's limit). */
int gguf_add_tensor(gguf_writer *w, const char *name, int type, int n_dims, const int64_t *ne,
                    const void *data, gguf_fill_fn fill, void *fill_ctx);

/* Writes GGUF v3 to PATH.tmp.PID, fsyncs, renames it to PATH (no half file under PATH on failure). */
int gguf_writer_write(gguf_writer *w, const char *path, ar_error *err);

#endif
