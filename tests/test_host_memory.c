/* io/base/host_memory.c: the memory caps finetune's --recompute auto reads,
 * from made-up cgroup trees (v2 and v1, the limit on an ancestor of the
 * process's cgroup as Slurm's task/cgroup sets it on the job) and
 * SLURM_MEM_PER_NODE; and this machine's MemAvailable and resident bytes
 * are read at all. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/base/host_memory.h"

static char root[64];

static void put(const char *rel, const char *text) {
    char path[512], dir[512];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *p = strchr(path + strlen(root) + 1, '/'); p; p = strchr(p + 1, '/')) { /* its folders */
        snprintf(dir, sizeof dir, "%.*s", (int)(p - path), path);
        mkdir(dir, 0755);
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static uint64_t cap(const char *slurm, char *source) {
    char proc[128], sys[128];
    snprintf(proc, sizeof proc, "%s/cgroup", root);
    snprintf(sys, sizeof sys, "%s/sys", root);
    return host_memory_cap_from(proc, sys, slurm, source, 256);
}

/* the cap is `bytes`, bound by the file at root/rel */
static void expect_file_cap(uint64_t bytes, const char *rel) {
    char source[256], want[256];
    assert_true(cap(NULL, source) == bytes);
    snprintf(want, sizeof want, "%s/%s", root, rel);
    assert_string_equal(source, want);
}

static void limits(void **state) {
    (void)state;
    char source[256];
    snprintf(root, sizeof root, "/tmp/test_host_memory.XXXXXX");
    assert_non_null(mkdtemp(root));
    /* no cgroup file, no Slurm: no cap */
    assert_true(cap(NULL, source) == UINT64_MAX);
    assert_string_equal(source, "none");
    /* v2: the job's folder (an ancestor) sets 1 GiB, the task's folder "max" */
    put("cgroup", "0::/slurm/job_1/step_0/task_0\n");
    put("sys/slurm/job_1/memory.max", "1073741824\n");
    put("sys/slurm/job_1/step_0/task_0/memory.max", "max\n");
    expect_file_cap(1073741824ull, "sys/slurm/job_1/memory.max");
    /* v1 beside it (a hybrid host): the memory controller's 512 MiB on the job's folder wins; v1's
     * "unlimited" (a huge page-rounded number) on its parent is no cap */
    put("cgroup", "9:name=systemd:/\n4:memory:/slurm/uid_0/job_2\n0::/slurm/job_1/step_0/task_0\n");
    put("sys/memory/slurm/uid_0/job_2/memory.limit_in_bytes", "536870912\n");
    put("sys/memory/slurm/memory.limit_in_bytes", "9223372036854771712\n");
    expect_file_cap(536870912ull, "sys/memory/slurm/uid_0/job_2/memory.limit_in_bytes");
    /* SLURM_MEM_PER_NODE (MB) binds when lower; a higher one or a malformed one does not */
    assert_true(cap("256", source) == 256ull << 20);
    assert_string_equal(source, "SLURM_MEM_PER_NODE=256");
    assert_true(cap("4096", source) == 536870912ull);
    assert_true(cap("12G", source) == 536870912ull);
    assert_true(cap("0", source) == 536870912ull);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    assert_int_equal(system(cmd), 0);
}

static void this_machine(void **state) {
    (void)state;
    assert_true(host_memory_available() > 0);
    assert_true(host_rss_bytes() > 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {cmocka_unit_test(limits), cmocka_unit_test(this_machine)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
