/* Wall-clock seconds for progress lines, rates and reports. */
#ifndef TM_IO_CLOCK_H
#define TM_IO_CLOCK_H

/* Monotonic seconds from an arbitrary origin. */
double tm_now_s(void);

#endif
