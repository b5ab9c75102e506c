/* Writing safetensors: one file, or shards plus model.safetensors.index.json.
 * Every file is written under a temporary name and renamed when complete, and
 * the index is renamed last, so a crash never leaves output that looks whole. */
#ifndef TM_IO_SAFETENSORS_WRITE_H
#define TM_IO_SAFETENSORS_WRITE_H

#include <stdint.h>

#include "io/dtype.h"
#include "io/safetensors.h"

typedef struct {
    const char *name;
    TmDType dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;   /* numel * dtype size bytes */
} StWriteTensor;

/* Write one safetensors file at `path` (via path.tmp + rename). */
int st_write_file(const char *path, const StWriteTensor *t, int n);
/* Write the tensors into `dir`: model.safetensors when they fit in one shard of
 * at most `max_shard_bytes` (0 = no limit), else model-0000i-of-0000N.safetensors
 * plus model.safetensors.index.json. */
int st_write_model(const char *dir, const StWriteTensor *t, int n, uint64_t max_shard_bytes);


/* The pieces of st_write_model, for writers that each hold part of a model
 * (pipeline stages). Shard assignment in order, at most max_shard_bytes each
 * (0: one shard): shard_of[i] (from 0), returns the shard count. */
int st_shard_plan(const StWriteTensor *t, int n, uint64_t max_shard_bytes, int *shard_of, uint64_t *total);
/* "model.safetensors" when n_shards == 1, else model-0000i-of-0000N.safetensors. */
void st_shard_name(char *buf, size_t size, int shard, int n_shards);
/* Write t's shards as shards first_shard + shard_of[i] of a model of n_shards. */
int st_write_shards(const char *dir, const StWriteTensor *t, int n, const int *shard_of, int first_shard,
                    int n_shards);
/* The index over every writer's tensors (none when n_shards == 1); written last. */
int st_write_index(const char *dir, const char *const *names, const int *shard_of, int n, int n_shards,
                   uint64_t total);

#endif
