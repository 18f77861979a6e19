/* base/log.h — leveled logging to stderr. The level is one of the two allowed globals. */
#ifndef AR_BASE_LOG_H
#define AR_BASE_LOG_H

enum { AR_LOG_ERROR = 0, AR_LOG_WARN = 1, AR_LOG_INFO = 2, AR_LOG_DEBUG = 3 };

extern int ar_log_level;

void ar_log(int level, const char *fmt, ...);

/* Progress line for long work ("loading: 42%"), rewritten in place on a terminal. done == total ends the line. */
void ar_progress(const char *what, unsigned long long done, unsigned long long total);

#endif
