/* base/error.c — see error.h. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int ar_fail(ar_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->code = code;
    }
    return code;
}

int ar_error_prefix(ar_error *err, const char *fmt, ...)
{
    if (!err) return AR_EINVAL;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t np = strlen(prefix);
    if (np >= sizeof err->msg) np = sizeof err->msg - 1;
    memcpy(err->msg, prefix, np);
    size_t room = sizeof err->msg - 1 - np, no = strlen(old);
    if (no > room) no = room;
    memcpy(err->msg + np, old, no);
    err->msg[np + no] = 0;
    return err->code;
}

const char *ar_error_code_name(int code)
{
    switch (code) {
    case AR_OK: return "ok";
    case AR_EIO: return "i/o error";
    case AR_EFORMAT: return "format error";
    case AR_EUNSUPPORTED: return "unsupported";
    case AR_ENOMEM: return "out of memory";
    case AR_EINVAL: return "invalid argument";
    case AR_ERANGE: return "out of range";
    default: return "error";
    }
}
