/* One decoder layer on the GPU: the device twin of layer_forward
 * (model/layer.h) for dense layers of the GQA families (llama, qwen2,
 * mistral, phi3, qwen3 with its QK-norm, gemma2 with its sandwich norms,
 * GeGLU, soft-cap and sliding windows), of MLA (deepseek_v3 and
 * gemma2_mla, model/cuda/mla_gpu.c) and MoE layers (mixtral, qwen3_moe,
 * deepseek_v3's routed experts, model/cuda/moe_gpu.c). Activations stay fp32; the
 * GEMMs run in the context's precision (model/cuda/gpu.h). */
#ifndef TM_MODEL_CUDA_LAYER_GPU_H
#define TM_MODEL_CUDA_LAYER_GPU_H

#include "io/hf_config.h"
#include "model/cuda/gpu.h"
#include "model/layer.h"
#include "model/rope.h"
#include "model/weights.h"

typedef struct {
    GpuMat q, k, v, o, gate, up, down;
    GpuMat q_a, q_b, kv_a, kv_b; /* MLA */
    float *q_bias, *k_bias, *v_bias, *o_bias, *gate_bias, *up_bias, *down_bias;
    float *input_norm, *post_norm, *attn_out_norm, *mlp_out_norm, *q_head_norm, *k_head_norm;
    float *q_a_bias, *kv_a_bias, *q_a_norm, *kv_a_norm; /* MLA */
    GpuMat router, *experts; /* MoE: [E, D], and each expert's gate, up, down ([3 * E]) */
    int n_experts;
    void *block;  /* the device memory a resident layer's weights live in (model/cuda/layer_image.h) */
    size_t bytes; /* of the weights */
} GpuLayer;

/* The layer resident on the device, its weights in one block
 * (model/cuda/layer_image.c); 0, or -1 (tm_error says why) for a layer
 * type not on the GPU. */
int gpu_layer_upload(GpuLayer *gl, const GpuCtx *g, const ModelConfig *c, const LayerWeights *L, int layer);
/* The same for gl zeroed or uploaded before (changed weights: a fine-tuning
 * step, a fit's Adam step): its device block is kept when the layout's size
 * is the same, so no cudaFree/cudaMalloc per layer per step. */
int gpu_layer_refresh(GpuLayer *gl, const GpuCtx *g, const ModelConfig *c, const LayerWeights *L, int layer);
void gpu_layer_free(GpuLayer *gl);

/* The rows (LayerRows) on the device: positions, document starts (NULL:
 * one document per sequence) and the RoPE table. */
typedef struct {
    int B, T;
    const int32_t *pos, *doc_start;
    const float *rope_cos, *rope_sin;
    int rope_half;
    /* Calibration: its statistics summed on the device (stats_gpu.h), or
     * else, when hook is not NULL, the hook called as on the CPU (layer.h)
     * with the projections copied to the host. */
    struct GpuStats *stats;
    AttentionHook hook;
    void *hook_ctx;
} GpuRows;

/* Device copies of a RopeTable and of the rows' positions and document starts. */
typedef struct {
    float *cos, *sin;
    int32_t *pos, *doc_start;
} GpuRowsBuf;
void gpu_rows_upload(GpuRowsBuf *b, GpuRows *rows, const RopeTable *rt, int B, int T, const int32_t *pos,
                     const int32_t *doc_start);
void gpu_rows_free(GpuRowsBuf *b);

/* One micro-batch's activations for the forward alone. */
typedef struct {
    int N;
    float *xn, *q, *k, *v, *att, *h1, *h2, *o;
    float *qa, *lat, *cn, *kvb; /* MLA: q_a's output, kv_a's, the normed latent, kv_b's */
    uint16_t *q16, *k16, *v16;  /* bf16 path: q, k, v as the tensor-core attention reads them */
    float *rinv;                /* qk_norm: each q then k head's 1/rms, [N*H] then [N*G] */
    float *host;                /* a hook's copy of the projections (made at its first call) */
    size_t host_n;
    struct GpuMoeActs *moe;     /* MoE models: routing and expert scratch (model/cuda/moe_gpu.c) */
    /* What the forward keeps for gpu_layer_backward (gpu_acts_init_train);
     * for the forward alone they alias the buffers above (xn2 and scratch:
     * xn, act: h1, attn_o and mlp_o: o, q_pre: q, k_pre: k, qan: qa, craw:
     * cn) or are NULL. */
    int train;
    float *rstd1, *rstd2, *rstd_ao, *rstd_mo; /* 1/rms of input_norm, post_norm and the sandwich norms */
    float *x_mid, *xn2, *act;                 /* the residual after attention, post_norm's output, act(gate) * up */
    float *attn_o, *mlp_o;                    /* sandwich norms: each block's output before its norm */
    float *q_pre, *k_pre;                     /* qk_norm: q and k before their norm */
    float *qan, *rstd_q, *craw, *rstd_c;      /* MLA: q_a's output normed, the latent before its norm, 1/rms */
    float *lse;                               /* [N, H] the attention's log-sum-exp (fp32 attention) */
    float *scratch;                           /* a sandwich norm's output before its add */
    /* gradient scratch (training) */
    float *dx_mid, *dxn, *dblk, *dh1, *dh2, *dact, *dq, *dk, *dv, *datt, *dq_pre, *dk_pre, *delta;
    float *dlat, *dc, *dcr, *dqa, *dqan;      /* MLA */
    size_t bytes;
} GpuActs;
void gpu_acts_init(GpuActs *a, const ModelConfig *c, int N);
/* Activations for training: the forward (gpu_layer_forward) keeps what
 * gpu_layer_backward needs, with its gradient scratch; the attention runs
 * in fp32 with its log-sum-exp. mlp 0: the attention block's alone (the
 * attention fit: no MLP or MoE buffers). */
void gpu_acts_init_train(GpuActs *a, const ModelConfig *c, int N, int mlp);
void gpu_acts_free(GpuActs *a);

/* a->att = attention_forward of a->q, a->k, a->v for layer `layer` (GQA
 * heads, or MLA's per-head keys and values), on the bf16 path with the
 * tensor-core kernel where the heads fit it, else fp32. */
int gpu_attention(GpuCtx *g, const ModelConfig *c, int layer, GpuActs *a, const GpuRows *r);

/* The layer's projections (a->q, a->k, a->v, or MLA's a->q and a->lat;
 * QK-norm's 1/rms) added to r->stats on the device, or handed to r->hook
 * on the host as gqa_forward and mla_forward do; nothing when neither. */
int gpu_projections(GpuCtx *g, const ModelConfig *c, int layer, const GpuRows *r, GpuActs *a);

/* MoE (model/cuda/moe_gpu.c): scratch for N rows; out (=|+=) the MoE of
 * xn, routed on the host by moe_route_rows exactly as the CPU routes. */
void gpu_moe_acts_init(GpuActs *a, const ModelConfig *c, int N);
/* The scratch gpu_moe_backward adds (gpu_acts_init_train). */
void gpu_moe_acts_init_train(GpuActs *a, const ModelConfig *c, int N);
void gpu_moe_acts_free(GpuActs *a);
int gpu_moe_block(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const float *xn, float *out, int accumulate,
                  int N, GpuActs *a);

/* MLA's attention block (model/cuda/mla_gpu.c, mla_forward's steps): out
 * (=|+=) o_proj of the attention of xn. */
int gpu_mla_attention(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, int layer, const float *xn, float *out,
                      int accumulate, const GpuRows *r, GpuActs *a);

/* x[N, D] (device) = layer `layer` of x, in place. Queued on the stream.
 * With training activations they keep what gpu_layer_backward reads (the
 * caller keeps the layer's input). */
int gpu_layer_forward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, int layer, float *x, const GpuRows *rows,
                      GpuActs *a);

#endif
