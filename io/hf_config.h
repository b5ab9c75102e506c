/* One model description read from a Hugging Face config.json. */
#ifndef TM_IO_HF_CONFIG_H
#define TM_IO_HF_CONFIG_H

#include "io/dtype.h"

typedef enum {
    TM_ARCH_LLAMA,
    TM_ARCH_QWEN2,
    TM_ARCH_MISTRAL,
    TM_ARCH_MIXTRAL,
    TM_ARCH_DEEPSEEK_V3,
    TM_ARCH_QWEN3,
    TM_ARCH_QWEN3_MOE,
    TM_ARCH_PHI3,
    TM_ARCH_GEMMA2,
    TM_ARCH_GEMMA2_MLA /* a converted gemma2: MLA attention, everything else gemma2's (our own format) */
} TmArch;
typedef enum { TM_ROPE_PLAIN, TM_ROPE_LINEAR, TM_ROPE_LLAMA3 } TmRopeScaling;

typedef struct {
    TmRopeScaling type;
    double factor, low_freq_factor, high_freq_factor;
    long long original_max_position_embeddings;
} TmRopeScalingCfg;

/* Multi-head latent attention (model_type deepseek_v3). */
typedef struct {
    int kv_lora_rank, q_lora_rank;   /* q_lora_rank 0: a plain q_proj */
    int qk_nope_head_dim, qk_rope_head_dim, v_head_dim;
    int rope_interleave;             /* rope dims in (2i, 2i+1) pairs, else rotate-half halves */
    /* Not config.json fields: the converter's exact model runs without the
     * latent RMSNorms and may carry a q_proj bias; a loaded file always has
     * latent_norms = 1 and q_bias = 0, as DeepSeek loaders compute it. */
    int latent_norms, q_bias;
} MlaConfig;

typedef struct {
    TmArch arch;
    char model_type[32];
    int hidden_size, n_layers, n_heads, n_kv_heads, head_dim, intermediate_size, vocab_size;
    int rotary_dim; /* dims of each q/k head that RoPE rotates (the leading ones); head_dim unless
                       partial_rotary_factor < 1 (phi3); deepseek_v3: qk_rope_head_dim (= its head_dim) */
    long long max_position_embeddings;
    double rope_theta, rms_norm_eps;
    TmRopeScalingCfg rope_scaling;
    int tie_word_embeddings;
    int qkv_bias, o_bias, mlp_bias;  /* qwen2: qkv; llama attention_bias: qkv+o; llama mlp_bias */
    int fused_proj;                  /* phi3: stored as qkv_proj [q; k; v] and gate_up_proj [gate; up] */
    int sliding_window;              /* 0 = full causal attention; per layer: hf_config_layer_window */
    int window_even_layers;          /* gemma2: the window only on even layers (0, 2, ...), odd ones full */
    int n_experts, n_experts_per_tok; /* 0 = dense MLP */
    int first_moe_layer;             /* layers below it are dense (deepseek_v3 first_k_dense_replace) */
    int expert_intermediate_size;    /* width of each expert's MLP */
    int moe_topk_raw;                /* 1: top-k softmax weights kept as they are (qwen3_moe norm_topk_prob
                                      * false); 0: renormalised to sum 1 (mixtral, deepseek_v3) */
    int qk_norm; /* qwen3: per-head RMSNorm of q and k before RoPE */
    /* gemma2 (all 0 elsewhere) */
    double query_pre_attn_scalar;    /* scores scaled by its -1/2 power; 0: head_dim's */
    double attn_softcap, final_softcap; /* scores, logits -> cap * tanh(x / cap); 0: none */
    int gelu_mlp;                    /* GeGLU: gelu_tanh(gate) * up instead of silu */
    int sandwich_norms;              /* post_attention/post_feedforward norms on each block's output */
    int norm_plus_one;               /* RMSNorm multiplies by (1 + weight); added once at load */
    int embed_scaled;                /* embeddings times sqrt(hidden_size) (rounded to the weight dtype) */
    MlaConfig mla;                   /* MLA attention only (hf_config_is_mla) */
    long long bos_token_id, eos_token_id; /* -1 when null */
    TmDType torch_dtype;             /* TM_DTYPE_INVALID when absent */
} ModelConfig;

/* Parse and check DIR/config.json (or a config file path). Errors name the
 * file and the field. */
int hf_config_load(ModelConfig *cfg, const char *config_path);
const char *tm_arch_name(TmArch a);
/* Whether the attention is MLA (deepseek_v3, gemma2_mla) rather than GQA. */
int hf_config_is_mla(const ModelConfig *c);
/* Whether layer l runs the MoE rather than the dense MLP. */
int hf_config_layer_is_moe(const ModelConfig *c, int l);
/* 1 when some layer has the dense MLP (it needs the dense scratch). */
int hf_config_has_dense_layer(const ModelConfig *c);
/* Width of one query head's q/k (q_proj rows per head) and of its value. */
int hf_config_qk_head_dim(const ModelConfig *c);
int hf_config_v_head_dim(const ModelConfig *c);
/* Sliding window of layer l (0: full causal attention); every reader of the
 * window goes through it. */
int hf_config_layer_window(const ModelConfig *c, int l);
/* Attention scores are scaled by score_dim^-1/2 (hf_config_attn_scale): query_pre_attn_scalar (gemma2,
 * gemma2_mla), else the q/k head width (head_dim; MLA: qk_nope_head_dim + qk_rope_head_dim). */
double hf_config_score_dim(const ModelConfig *c);
double hf_config_attn_scale(const ModelConfig *c);

#endif
