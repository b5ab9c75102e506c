/* Writing one Hugging Face safetensors folder from a pipeline: replica 0 of
 * each stage writes its own shards (numbered after the shards of the stages
 * before it); world rank 0 writes the index. Nothing is gathered but tensor
 * names. Used by convert's export and finetune's. */
#ifndef TM_DIST_WRITE_TENSORS_H
#define TM_DIST_WRITE_TENSORS_H

#include <stdint.h>

#include "dist/topology.h"
#include "io/safetensors_write.h"

/* Ranks with writer = 1 write their tensors ts[0..n) (all finite, checked
 * first) as shards numbered in world-rank order; world rank 0 writes the
 * index. Collective over the world; 0 or -1 on every rank. */
int dist_write_tensors(const Topology *t, const char *dir, const StWriteTensor *ts, int n, int writer,
                       uint64_t max_shard_bytes);

#endif
