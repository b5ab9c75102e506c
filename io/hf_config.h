/* One model description read from a Hugging Face config.json. */
#ifndef TM_IO_HF_CONFIG_H
#define TM_IO_HF_CONFIG_H

#include "io/dtype.h"

typedef enum { TM_ARCH_LLAMA, TM_ARCH_QWEN2, TM_ARCH_MISTRAL, TM_ARCH_MIXTRAL } TmArch;
typedef enum { TM_ROPE_PLAIN, TM_ROPE_LINEAR, TM_ROPE_LLAMA3 } TmRopeScaling;

typedef struct {
    TmRopeScaling type;
    double factor, low_freq_factor, high_freq_factor;
    long long original_max_position_embeddings;
} TmRopeScalingCfg;

typedef struct {
    TmArch arch;
    char model_type[32];
    int hidden_size, n_layers, n_heads, n_kv_heads, head_dim, intermediate_size, vocab_size;
    long long max_position_embeddings;
    double rope_theta, rms_norm_eps;
    TmRopeScalingCfg rope_scaling;
    int tie_word_embeddings;
    int qkv_bias, o_bias, mlp_bias;  /* qwen2: qkv; llama attention_bias: qkv+o; llama mlp_bias */
    int sliding_window;              /* 0 = full causal attention */
    int n_experts, n_experts_per_tok; /* 0 = dense MLP */
    long long bos_token_id, eos_token_id; /* -1 when null */
    TmDType torch_dtype;             /* TM_DTYPE_INVALID when absent */
} ModelConfig;

/* Parse and check DIR/config.json (or a config file path). Errors name the
 * file and the field. */
int hf_config_load(ModelConfig *cfg, const char *config_path);
const char *tm_arch_name(TmArch a);

#endif
