/* base/timer.h — monotonic wall clock in seconds. */
#ifndef AR_BASE_TIMER_H
#define AR_BASE_TIMER_H
double ar_now(void);
#endif
