/* The weights of a Hugging Face model folder: one model.safetensors, or the
 * shards named by model.safetensors.index.json. Each file is mapped once;
 * a name lookup says which file holds a tensor. */
#ifndef TM_IO_SAFETENSORS_SET_H
#define TM_IO_SAFETENSORS_SET_H

#include "io/safetensors.h"

typedef struct {
    char *dir;
    int n_files;
    StFile *files;
    int n;                    /* tensors across all files */
    const StTensor **sorted;  /* by name, for lookup */
} StSet;

int st_set_open(StSet *s, const char *dir);
/* st_set_open restricted to the tensors `keep` accepts (a process that holds
 * only part of a model). With an index file, only the shards holding at least
 * one kept tensor are opened; with a single model.safetensors the file is
 * mapped (lazily: untouched pages are never read). Either way the lookup
 * table (`sorted`, `n`) holds only the kept tensors. st_set_open keeps all. */
int st_set_open_filtered(StSet *s, const char *dir, int (*keep)(const char *name, void *ctx), void *ctx);
void st_set_close(StSet *s);
const StTensor *st_set_find(const StSet *s, const char *name);
/* Position of `name` in s->sorted, or -1. */
int st_set_index(const StSet *s, const char *name);
/* A set over tensors already in memory (benchmarks, tests): no files. The
 * caller keeps `tensors` alive; st_set_close frees only the lookup. */
void st_set_from_tensors(StSet *s, const StTensor *tensors, int n);
/* Total bytes of tensor data across the set. */
uint64_t st_set_bytes(const StSet *s);

#endif
