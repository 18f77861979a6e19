/* base/error.h — error reporting for every layer.
 *
 * Functions that can fail return an int status (0 = ok, negative = one of AR_E*) and fill an
 * ar_error whose message names the thing that is wrong (file, field, byte offset, tensor) and,
 * where useful, what to do next. The CLI prints "arbor: <msg>"; the server maps codes to HTTP. */
#ifndef AR_BASE_ERROR_H
#define AR_BASE_ERROR_H

#include <stddef.h>

enum {
    AR_OK           = 0,
    AR_EIO          = -1, /* cannot open/read/write/mmap a file */
    AR_EFORMAT      = -2, /* malformed input (corrupt GGUF, bad JSON, invalid UTF-8 ...) */
    AR_EUNSUPPORTED = -3, /* well-formed but not supported (quant type, architecture ...) */
    AR_ENOMEM       = -4, /* allocation failed or would exceed a memory budget */
    AR_EINVAL       = -5, /* bad argument from the caller (CLI flag, API parameter) */
    AR_ERANGE       = -6, /* out of range (prompt longer than context, index) */
};

typedef struct ar_error {
    int  code;
    char msg[1024];
} ar_error;

/* Format a message into err (if non-NULL) and return code. Usage: return ar_fail(err, AR_EFORMAT, "..."); */
int ar_fail(ar_error *err, int code, const char *fmt, ...);

/* Prefix an existing message with context ("loading x.gguf: " + old message); returns err->code. */
int ar_error_prefix(ar_error *err, const char *fmt, ...);

const char *ar_error_code_name(int code);

#endif
