/* Failure injection for the tests (a crash, a stop or a small write block
 * at a named point): compiled in only with -DTRANSMLA_TEST_HOOKS=ON
 * (scripts/test.sh), so a production binary reads no such variable. */
#ifndef TM_IO_TEST_HOOKS_H
#define TM_IO_TEST_HOOKS_H

#include <stdlib.h>

/* The value of the environment variable `name` in a test build, else NULL. */
static inline const char *tm_test_hook(const char *name) {
#ifdef TM_TEST_HOOKS
    return getenv(name);
#else
    (void)name;
    return NULL;
#endif
}

#endif
