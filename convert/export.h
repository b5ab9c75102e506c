/* Writing a converted model as a DeepSeek-V3 Hugging Face folder:
 * safetensors shards + index, config.json, the source's tokenizer files. */
#ifndef TM_CONVERT_EXPORT_H
#define TM_CONVERT_EXPORT_H

#include <stdint.h>

#include <jansson.h>

#include "convert/build.h"

/* Write `native` (a BUILD_NATIVE model) into the existing empty folder `dir`,
 * tensors stored as `dtype`. src_dir: the original model folder (config.json
 * fields carried over, tokenizer files copied). */
int export_deepseek_v3(const char *dir, const BuiltModel *native, const char *src_dir, TmDType dtype,
                       uint64_t max_shard_bytes);

/* The config.json object of the export (caller json_decref()s). */
json_t *export_config_json(const ModelConfig *c, const char *src_config_path, TmDType dtype);

#endif
