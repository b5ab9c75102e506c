/* Every parameter of a GQA model, with its shape, in one place (llm.c's
 * ParameterTensors habit). Matrices are views of the stored weights; the small
 * vectors (norms, biases) are widened to fp32 once at load. gemma2's RMSNorm
 * weights are stored around 0 and multiply by (1 + w): 1 is added here, at
 * load, so every norm vector in memory is the factor the forward multiplies
 * by. Code that writes norms back to a file subtracts it again: WeightSlot.add
 * says which vectors got it (train/save_model.c). */
#ifndef TM_MODEL_WEIGHTS_H
#define TM_MODEL_WEIGHTS_H

#include "io/hf_config.h"
#include "io/safetensors_set.h"
#include "model/tensor.h"

typedef struct {
    Tensor gate, up, down;       /* [I, D], [I, D], [D, I] */
} ExpertWeights;

typedef struct {
    float *input_norm;           /* [D] */
    Tensor q, k, v, o;           /* [H*d, D], [G*d, D], [G*d, D], [D, H*d] */
    /* phi3 (cfg.fused_proj): the stored qkv_proj [q; k; v] and gate_up_proj
     * [gate; up]; q, k, v, gate and up are row views of them */
    Tensor qkv, gate_up;
    float *q_bias, *k_bias, *v_bias, *o_bias; /* NULL when the architecture has none */
    float *q_head_norm, *k_head_norm; /* [head_dim] qwen3's q_norm/k_norm weights, NULL otherwise */
    /* Not in any file: set by the converter to evaluate QK-norm with each
     * head's 1/rms replaced by a constant ([H+G], queries then keys), the
     * linear stand-in it folds into the projections; NULL: the real norm. */
    const float *qk_rinv_fixed;
    /* MLA (deepseek_v3): q is q_proj [H*(dn+dr), D] unless q_lora_rank > 0 */
    Tensor q_a, q_b;             /* [Rq, D], [H*(dn+dr), Rq] */
    Tensor kv_a, kv_b;           /* [R+dr, D] (rope rows last), [H*(dn+dv), R] */
    float *q_a_bias, *kv_a_bias; /* attention_bias */
    float *q_a_norm, *kv_a_norm; /* [Rq], [R] */
    float *post_norm;            /* [D] the MLP's input norm (gemma2: pre_feedforward_layernorm) */
    /* gemma2 (cfg.sandwich_norms): norms of the attention's and the MLP's
     * outputs before the residual add (post_attention_layernorm,
     * post_feedforward_layernorm); NULL otherwise */
    float *attn_out_norm, *mlp_out_norm;
    /* dense MLP */
    Tensor gate, up, down;
    float *gate_bias, *up_bias, *down_bias;
    /* MoE (n_experts > 0) */
    Tensor router;               /* [E, D] */
    ExpertWeights *experts;      /* [E] */
} LayerWeights;

typedef struct {
    Tensor embed;                /* [V, D] */
    LayerWeights *layers;        /* [n_layers] */
    float *final_norm;           /* [D] */
    Tensor lm_head;              /* [V, D]; the embedding when tied */
    int64_t n_params;            /* parameters bound (tied head counted once) */
    uint64_t n_bytes;            /* their stored bytes */
    TmDType dtype;               /* dtype of the attention projections */
    void **owned;                /* fp32 vectors and realigned copies to free */
    int n_owned, cap_owned;
} ModelWeights;

/* Which part of the model a process holds: layers [first, end), the
 * embedding, the final norm and head (a pipeline stage). Defined here because
 * weights_bind takes it; model.h (which includes this header) is its home for
 * users, with model_part_all. */
typedef struct {
    int first, end;
    int embed, head;
} ModelPart;

/* What a tensor name belongs to: its layer index for "model.layers.<i>.*",
 * else one of these. */
enum { WEIGHT_PART_EMBED = -1, WEIGHT_PART_HEAD = -2, WEIGHT_PART_OTHER = -3 };
int weights_tensor_part(const char *name);
/* Whether the part needs the tensor `name`: its layers', the embedding when it
 * holds the embedding or a tied head, the final norm and lm_head when it holds
 * the head. Names the model does not explain (WEIGHT_PART_OTHER, a layer past
 * num_hidden_layers) are wanted, so that binding reports them. */
int model_part_wants(const ModelPart *p, const ModelConfig *c, const char *name);

/* Bind every tensor of `part` the config implies, checking names, shapes and
 * dtypes; a tensor the config does not explain is an error too, while one of
 * another part is skipped. Messages name the file holding the tensor and the
 * config fields that fix its shape. Layers outside the part stay zeroed;
 * n_params/n_bytes count only the bound tensors; dtype is that of the part's
 * first layer (its embedding or head when it has no layer). */
int weights_bind(ModelWeights *w, const ModelConfig *cfg, const StSet *set, const char *config_path,
                 const ModelPart *part);
void weights_free(ModelWeights *w, const ModelConfig *cfg);
/* For a fused layout (cfg.fused_proj), point every bound layer's q, k, v,
 * gate and up at their rows of qkv and gate_up (weights_bind does this; a
 * layout mirrored with weights_slots calls it once its slots are filled). */
void weights_split_fused(ModelWeights *w, const ModelConfig *cfg);
/* Every float tensor of `set` that `part` needs is finite; else one error
 * naming the file and the tensor. A scan over the bytes, run once on weights
 * read from files (model_load*), before the first forward uses them. */
int weights_check_finite(const StSet *set, const ModelConfig *cfg, const ModelPart *part);

/* Names and shapes of every tensor the config implies (cols == 0: a vector),
 * for tools that make weights: benchmarks, fixtures. Free with free(). */
typedef struct {
    char name[160];
    int64_t rows, cols;
} WeightShape;
int weights_expected(const ModelConfig *cfg, WeightShape **out);

/* Where each parameter of `part` lives inside w, in the model's order (the
 * embedding, then layer by layer, then the final norm and head): a matrix
 * slot (mat) or an fp32 vector slot (vec). On a w that is not bound (zeroed,
 * or earlier slots of the same call) it allocates the experts arrays the
 * slots point into, so a second ModelWeights can mirror a model's layout
 * (the trainer's gradients). Free with free(); w with weights_free. */
typedef struct {
    char name[160];
    int64_t rows, cols;  /* cols == 0: a vector */
    int layer;           /* its layer, or WEIGHT_PART_EMBED / WEIGHT_PART_HEAD */
    Tensor *mat;
    float **vec;
    float add;           /* added to the vector at load (gemma2's (1 + w) norms: 1); a writer subtracts it */
} WeightSlot;
int weights_slots(ModelWeights *w, const ModelConfig *cfg, const ModelPart *part, WeightSlot **out);

#endif
