/* Writing the converted model from a pipeline: replica 0 of each stage
 * writes its own shards (numbered after the shards of the stages before it);
 * world rank 0 writes the index, config.json and tokenizer files. Nothing is
 * gathered but tensor names. */
#ifndef TM_DIST_EXPORT_H
#define TM_DIST_EXPORT_H

#include <stdint.h>

#include "convert/build.h"
#include "io/safetensors_write.h"
#include "dist/topology.h"

/* Collective over the world. native: this stage's BUILD_NATIVE part. */
int dist_export(const Topology *t, const char *dir, const BuiltModel *native, const char *src_dir, TmDType dtype,
                uint64_t max_shard_bytes);

/* The pieces: ranks with writer = 1 write their tensors ts[0..n) as shards
 * numbered in world-rank order; world rank 0 writes the index. Collective
 * over the world; 0 or -1 on every rank. */
int dist_write_tensors(const Topology *t, const char *dir, const StWriteTensor *ts, int n, int writer,
                       uint64_t max_shard_bytes);

#endif
