/* How much memory this process's node lets it use, for choices made at
 * start-up (finetune's --recompute auto). Linux: /proc and cgroup files. */
#ifndef TM_IO_HOST_MEMORY_H
#define TM_IO_HOST_MEMORY_H

#include <stddef.h>
#include <stdint.h>

/* MemAvailable of /proc/meminfo in bytes (memory the machine can give
 * without swapping); 0 when unreadable. */
uint64_t host_memory_available(void);

/* The least memory limit set on this process, in bytes: the cgroup limits
 * of its cgroup and every ancestor (v2 memory.max, v1
 * memory.limit_in_bytes: Slurm's task/cgroup sets them) and
 * SLURM_MEM_PER_NODE (MB, set by Slurm for --mem jobs). UINT64_MAX when
 * none is set. `source` (n bytes) names the one that binds. */
uint64_t host_memory_cap(char *source, size_t n);
/* The same from other files (tests): proc_cgroup in place of
 * /proc/self/cgroup, sys_root of /sys/fs/cgroup, slurm_mem the value of
 * SLURM_MEM_PER_NODE (NULL: unset). */
uint64_t host_memory_cap_from(const char *proc_cgroup, const char *sys_root, const char *slurm_mem, char *source,
                              size_t n);

/* Resident bytes of this process now (/proc/self/statm); 0 when unreadable. */
uint64_t host_rss_bytes(void);

#endif
