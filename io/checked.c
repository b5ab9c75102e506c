#include "io/checked.h"

#include <stdarg.h>
#include <stdlib.h>

void *tm_malloc_check(size_t size, const char *file, int line) {
    void *p = malloc(size ? size : 1);
    if (!p) tm_die("out of memory allocating %zu bytes at %s:%d", size, file, line);
    return p;
}

void *tm_calloc_check(size_t n, size_t size, const char *file, int line) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) tm_die("out of memory allocating %zu x %zu bytes at %s:%d", n, size, file, line);
    return p;
}

void tm_die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("transmla: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}
