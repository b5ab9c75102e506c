/* finetune's --recompute auto (the default): keep every layer's activations
 * (off: a quarter fewer layer FLOPs, 1.2-1.4x the tokens/s) when they fit
 * the memory each node lets the job use, else recompute each layer. */
#ifndef TM_TRAIN_RECOMPUTE_AUTO_H
#define TM_TRAIN_RECOMPUTE_AUTO_H

#include <stddef.h>
#include <stdint.h>

#include "dist/topology.h"
#include "model/model.h"
#include "train/params.h"

#define RECOMPUTE_AUTO (-1) /* TrainConfig.recompute: chosen by recompute_choose */

/* What one node's ranks hold and would add, summed over them (bytes). */
typedef struct {
    uint64_t limit;        /* what the node lets the ranks use in all: the least of MemAvailable + their
                            * resident bytes and the cgroup / Slurm caps (io/base/host_memory.h) */
    uint64_t held;         /* resident now, the gradient and AdamW arenas (not yet touched), recompute's activations */
    uint64_t extra;        /* what keeping every layer's activations adds to recompute's */
} RecomputeBudget;

/* The rule: off when the extra fits in half of what the limit leaves after
 * `held` (the other half for what is not counted: MPI and allocator
 * buffers, checkpoint writes, the page cache of the data). 1 (recompute)
 * or 0. */
int recompute_needed(const RecomputeBudget *b);

/* Collective over the world, after the model part and its ParamSet are
 * loaded: 1 (recompute) or 0, the same on every rank (off only if every
 * node fits), and on every rank `why` (n bytes) for the start line, with
 * the busiest node's figures. */
int recompute_choose(const Topology *t, const Model *m, const ParamSet *ps, int B, int T, int K, char *why, size_t n);

#endif
