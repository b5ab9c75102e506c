/* Writing a converted model as a DeepSeek-V3 Hugging Face folder:
 * safetensors shards + index, config.json, the source's tokenizer files
 * (dist/write_tensors.c decides who writes which shard). */
#ifndef TM_PIPELINE_EXPORT_H
#define TM_PIPELINE_EXPORT_H

#include <stdint.h>

#include <jansson.h>

#include "dist/topology.h"
#include "io/safetensors_write.h"
#include "pipeline/build.h"

/* The tensors of `native` (a BUILD_NATIVE model, or one stage's part of it)
 * as they will be stored: `dtype`, with converted copies owned here. The
 * embedding is left out unless with_embedding (with tied embeddings the last
 * stage holds it too, but only the first writes it). */
typedef struct {
    StWriteTensor *t;
    int n;
    void **converted;
} ExportTensors;
void export_tensors_init(ExportTensors *e, const BuiltModel *native, TmDType dtype, int with_embedding);
void export_tensors_free(ExportTensors *e);

/* The whole converted model into dir: replica 0 of each stage writes its
 * part's shards (dist/write_tensors.h), world rank 0 the index, config.json
 * and tokenizer files. Collective over the world. native: this stage's
 * BUILD_NATIVE part. */
int export_model(const Topology *t, const char *dir, const BuiltModel *native, const char *src_dir, TmDType dtype,
                 uint64_t max_shard_bytes);

/* config.json (from cfg and the source's config.json) and the source's
 * tokenizer files, written into dir. */
int export_metadata(const char *dir, const ModelConfig *cfg, const char *src_dir, TmDType dtype);

/* The config.json object of the export (caller json_decref()s). */
json_t *export_config_json(const ModelConfig *c, const char *src_config_path, TmDType dtype);

#endif
