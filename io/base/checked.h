/* Checked wrappers for calls whose failure leaves nothing sensible to do:
 * they print one line naming the call site and exit (llm.c's fopenCheck habit). */
#ifndef TM_IO_CHECKED_H
#define TM_IO_CHECKED_H

#include <stddef.h>
#include <stdio.h>

void *tm_malloc_check(size_t size, const char *file, int line);
void *tm_calloc_check(size_t n, size_t size, const char *file, int line);
/* Print "transmla: error: <message>" and exit(1). */
_Noreturn void tm_die(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Replace the print-and-exit (MPI runs abort every rank instead); the handler
 * gets the message without the "transmla: error: " prefix and must not return. */
void tm_set_die_handler(void (*handler)(const char *msg));

#define mallocCheck(size) tm_malloc_check((size), __FILE__, __LINE__)
#define callocCheck(n, size) tm_calloc_check((n), (size), __FILE__, __LINE__)

#endif
