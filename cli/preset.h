/* Presets (configs/presets/NAME.json): the published conversion settings of a
 * model and a recommended rank layout, read with jansson. Command-line flags
 * override whatever a preset sets. */
#ifndef TM_CLI_PRESET_H
#define TM_CLI_PRESET_H

typedef struct {
    char model[256];         /* Hugging Face id, informational */
    char config[4096];       /* config.json path (relative to the preset's folder in the file; resolved here), or "" */
    int qk_mqa_dim, kv_lora_rank, freqfold; /* 0: not set */
    int nodes, ranks_per_node, stages;      /* 0: not set */
    char mem_per_node[32];   /* "256G", or "" */
} Preset;

/* The value of --preset in argv, or NULL: presets are read before the flags
 * so that flags can override them. */
const char *preset_flag(int argc, char **argv);

/* Unknown keys and wrong types are errors naming the file and key (a typo
 * must not silently fall back to a default). */
int preset_load(const char *path, Preset *p);

#endif
