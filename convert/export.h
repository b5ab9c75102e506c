/* Writing a converted model as a DeepSeek-V3 Hugging Face folder:
 * safetensors shards + index, config.json, the source's tokenizer files
 * (dist/export.c decides who writes which shard). */
#ifndef TM_CONVERT_EXPORT_H
#define TM_CONVERT_EXPORT_H

#include <stdint.h>

#include <jansson.h>

#include "convert/build.h"
#include "io/safetensors_write.h"

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

/* config.json (from cfg and the source's config.json) and the source's
 * tokenizer files, written into dir. */
int export_metadata(const char *dir, const ModelConfig *cfg, const char *src_dir, TmDType dtype);

/* Copy src_dir's tokenizer files (those present), and config.json too when
 * with_config, into dir. */
int export_copy_tokenizer_files(const char *dir, const char *src_dir, int with_config);
/* The config.json object of the export (caller json_decref()s). */
json_t *export_config_json(const ModelConfig *c, const char *src_config_path, TmDType dtype);

#endif
