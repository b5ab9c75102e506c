/* Recoverable errors: a function that fails records one message and returns -1.
 * The command line prints that message as its single error line and exits 1;
 * tests and the fuzzer inspect it instead. */
#ifndef TM_IO_ERROR_H
#define TM_IO_ERROR_H

#if defined(__GNUC__)
#define TM_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define TM_PRINTF(a, b)
#endif

/* Record the current error (replaces any previous one). Always returns -1. */
int tm_fail(const char *fmt, ...) TM_PRINTF(1, 2);
/* Prefix the current error with more context, e.g. the file name. Returns -1. */
int tm_fail_context(const char *fmt, ...) TM_PRINTF(1, 2);
const char *tm_error(void);
void tm_clear_error(void);

#endif
