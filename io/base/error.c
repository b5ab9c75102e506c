#include "io/base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char err_msg[1024];

int tm_fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    return -1;
}

int tm_fail_context(const char *fmt, ...) {
    char prefix[256], old[sizeof err_msg - 260];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t n = strnlen(err_msg, sizeof old - 1);
    memcpy(old, err_msg, n);
    old[n] = '\0';
    snprintf(err_msg, sizeof err_msg, "%s: %s", prefix, old);
    return -1;
}

const char *tm_error(void) { return err_msg[0] ? err_msg : "unknown error"; }

void tm_clear_error(void) { err_msg[0] = '\0'; }
