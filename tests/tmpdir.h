/* One temporary folder per cmocka test group, removed when the group ends:
 * pass group_setup / group_teardown to cmocka_run_group_tests. Each test file
 * names its folder with TMPDIR_TAG before including this. */
#ifndef TM_TESTS_TMPDIR_H
#define TM_TESTS_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "pipeline/output.h"

#ifndef TMPDIR_TAG
#define TMPDIR_TAG "test"
#endif

static char tmp_root[64];

static int group_setup(void **state) {
    (void)state;
    snprintf(tmp_root, sizeof tmp_root, "/tmp/tm_" TMPDIR_TAG "_XXXXXX");
    return mkdtemp(tmp_root) ? 0 : -1;
}

static int group_teardown(void **state) {
    (void)state;
    output_remove_tree(tmp_root);
    return 0;
}

/* A path under the temporary root. */
static inline const char *tmp_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", tmp_root, name);
    return buf;
}

#endif
