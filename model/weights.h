/* Every parameter of a GQA model, with its shape, in one place (llm.c's
 * ParameterTensors habit). Matrices are views of the stored weights; the small
 * vectors (norms, biases) are widened to fp32 once at load. */
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
    float *q_bias, *k_bias, *v_bias, *o_bias; /* NULL when the architecture has none */
    /* MLA (deepseek_v3): q is q_proj [H*(dn+dr), D] unless q_lora_rank > 0 */
    Tensor q_a, q_b;             /* [Rq, D], [H*(dn+dr), Rq] */
    Tensor kv_a, kv_b;           /* [R+dr, D] (rope rows last), [H*(dn+dv), R] */
    float *q_a_bias, *kv_a_bias; /* attention_bias */
    float *q_a_norm, *kv_a_norm; /* [Rq], [R] */
    float *post_norm;            /* [D] */
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

/* Bind every tensor the config implies, checking names, shapes and dtypes; a
 * tensor the config does not explain is an error too. Messages name the file
 * holding the tensor and the config fields that fix its shape. */
int weights_bind(ModelWeights *w, const ModelConfig *cfg, const StSet *set, const char *config_path);
void weights_free(ModelWeights *w, const ModelConfig *cfg);

/* Names and shapes of every tensor the config implies (cols == 0: a vector),
 * for tools that make weights: benchmarks, fixtures. Free with free(). */
typedef struct {
    char name[160];
    int64_t rows, cols;
} WeightShape;
int weights_expected(const ModelConfig *cfg, WeightShape **out);

#endif
