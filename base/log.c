/* base/log.c — see log.h. */
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

int ar_log_level = AR_LOG_INFO;

void ar_log(int level, const char *fmt, ...)
{
    if (level > ar_log_level) return;
    static const char *tag[] = { "error: ", "warning: ", "", "debug: " };
    fputs("arbor: ", stderr);
    fputs(tag[level < 0 ? 0 : level > 3 ? 3 : level], stderr);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

void ar_progress(const char *what, unsigned long long done, unsigned long long total)
{
    if (ar_log_level < AR_LOG_INFO) return;
    int pct = total ? (int)(done * 100 / total) : 100;
    if (isatty(2)) {
        fprintf(stderr, "\rarbor: %s %3d%%", what, pct);
        if (done >= total) fputc('\n', stderr);
    } else if (done >= total) {
        fprintf(stderr, "arbor: %s 100%%\n", what);
    }
}
