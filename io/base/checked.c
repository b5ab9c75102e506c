#include "io/base/checked.h"

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

static void (*die_handler)(const char *msg);

void tm_set_die_handler(void (*handler)(const char *msg)) { die_handler = handler; }

void tm_die(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (die_handler) die_handler(msg);
    fprintf(stderr, "transmla: error: %s\n", msg);
    exit(1);
}
