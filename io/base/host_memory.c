#include "io/base/host_memory.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

uint64_t host_memory_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return (uint64_t)kb * 1024;
}

/* A limit file's number, or UINT64_MAX for "max", a missing file or v1's
 * "unlimited" (a huge page-rounded number). */
static uint64_t limit_file(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return UINT64_MAX;
    unsigned long long v = 0;
    int ok = fscanf(f, "%llu", &v) == 1;
    fclose(f);
    return ok && v < (1ULL << 60) ? (uint64_t)v : UINT64_MAX;
}

/* The least of `file` in the cgroup folder dir and each parent up to root. */
static void cgroup_walk(const char *root, const char *rel, const char *file, uint64_t *cap, char *source, size_t n) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s%s", root, rel);
    for (;;) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, file);
        uint64_t v = limit_file(path);
        if (v < *cap) {
            *cap = v;
            snprintf(source, n, "%s", path);
        }
        char *slash = strrchr(dir, '/');
        if (strlen(dir) <= strlen(root) || !slash) break;
        *slash = 0;
    }
}

uint64_t host_memory_cap_from(const char *proc_cgroup, const char *sys_root, const char *slurm_mem, char *source,
                              size_t n) {
    uint64_t cap = UINT64_MAX;
    snprintf(source, n, "none");
    char v1_root[4096];
    snprintf(v1_root, sizeof v1_root, "%s/memory", sys_root);
    FILE *f = fopen(proc_cgroup, "r");
    char line[4096];
    while (f && fgets(line, sizeof line, f)) { /* "0::/path" (v2) or "N:memory:/path" (v1) */
        line[strcspn(line, "\n")] = 0;
        char *a = strchr(line, ':'), *b = a ? strchr(a + 1, ':') : NULL;
        if (!b) continue;
        *b = 0;
        if (!strcmp(a + 1, "")) cgroup_walk(sys_root, b + 1, "memory.max", &cap, source, n);
        else if (strstr(a + 1, "memory")) cgroup_walk(v1_root, b + 1, "memory.limit_in_bytes", &cap, source, n);
    }
    if (f) fclose(f);
    if (slurm_mem && *slurm_mem) {
        char *end;
        unsigned long long mb = strtoull(slurm_mem, &end, 10);
        if (*end == 0 && mb > 0 && mb < (1ULL << 40) && (uint64_t)mb << 20 < cap) {
            cap = (uint64_t)mb << 20;
            snprintf(source, n, "SLURM_MEM_PER_NODE=%s", slurm_mem);
        }
    }
    return cap;
}

uint64_t host_memory_cap(char *source, size_t n) {
    return host_memory_cap_from("/proc/self/cgroup", "/sys/fs/cgroup", getenv("SLURM_MEM_PER_NODE"), source, n);
}

uint64_t host_rss_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    unsigned long long size, resident = 0;
    int ok = fscanf(f, "%llu %llu", &size, &resident) == 2;
    fclose(f);
    return ok ? (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE) : 0;
}
