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

#endif
