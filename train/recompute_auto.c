#include "train/recompute_auto.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "io/base/error.h"
#include "io/base/host_memory.h"
#include "train/step.h"

/* What one node's ranks hold and would add, summed over them (bytes). */
typedef struct {
    uint64_t limit;        /* what the node lets the ranks use in all: the least of MemAvailable + their
                            * resident bytes and the cgroup / Slurm caps (io/base/host_memory.h) */
    uint64_t held;         /* resident now, the gradient and AdamW arenas (in full), recompute's activations */
    uint64_t extra;        /* what keeping every layer's activations adds to recompute's */
} RecomputeBudget;

/* The rule: off when the extra fits in half of what the limit leaves after
 * `held` (the other half for what is not counted: MPI and allocator
 * buffers, checkpoint writes, the page cache of the data). */
static int recompute_needed(const RecomputeBudget *b) {
    if (b->held >= b->limit) return 1;
    return b->extra > (b->limit - b->held) / 2;
}

static int recompute_choose(const Topology *t, const Model *m, const ParamSet *ps, const Teacher *teacher, int B,
                            int T, int K, char *why, size_t n) {
    char source[4200];
    uint64_t on = train_step_bytes(t, m, teacher, B, T, K, 1), off = train_step_bytes(t, m, teacher, B, T, K, 0);
    uint64_t mine[3] = {host_rss_bytes(), 3 * (uint64_t)ps->total * sizeof(float) + on, off > on ? off - on : 0};
    uint64_t caps[2] = {host_memory_available(), host_memory_cap(source, sizeof source)}, sums[3];
    MPI_Allreduce(mine, sums, 3, MPI_UINT64_T, MPI_SUM, t->node_comm);
    MPI_Allreduce(MPI_IN_PLACE, caps, 2, MPI_UINT64_T, MPI_MIN, t->node_comm);
    RecomputeBudget b = {.limit = caps[0] + sums[0], .held = sums[0] + sums[1], .extra = sums[2]};
    int binding_cap = caps[1] < b.limit;
    if (binding_cap) b.limit = caps[1];
    int need = recompute_needed(&b), any;
    MPI_Allreduce(&need, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    /* the figures of the node that decided: the lowest rank whose node needs recompute, else rank 0's */
    int me = need == any ? t->rank : t->size, from;
    MPI_Allreduce(&me, &from, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    double MiB = 1 << 20;
    if (t->rank == from)
        snprintf(why, n, "recompute %s (auto: keeping every layer's activations adds %.1f MiB on a node that holds "
                 "%.1f of %.1f MiB (%s)%s)", any ? "on" : "off", b.extra / MiB, b.held / MiB, b.limit / MiB,
                 binding_cap ? source : "MemAvailable + resident", any ? ": more than half of the rest" : "");
    MPI_Bcast(why, (int)n, MPI_CHAR, from, MPI_COMM_WORLD);
    return any;
}

int recompute_parse(const char *text, int *setting) {
    if (!strcmp(text, "auto")) *setting = RECOMPUTE_AUTO;
    else if (!strcmp(text, "on")) *setting = 1;
    else if (!strcmp(text, "off")) *setting = 0;
    else return tm_fail("--recompute '%s': expected auto, on or off", text);
    return 0;
}

int recompute_resolve(int setting, int gpu, const Topology *t, const Model *m, const ParamSet *ps,
                      const Teacher *teacher, int B, int T, int K, char *note, size_t n) {
    if (setting == RECOMPUTE_AUTO && !gpu) return recompute_choose(t, m, ps, teacher, B, T, K, note, n);
    int on = setting != 0;
    snprintf(note, n, "recompute %s (%s)", on ? "on" : "off",
             setting == RECOMPUTE_AUTO ? "auto: --device cuda recomputes" : "--recompute");
    return on;
}
