/* One decoder layer's backward pass on the GPU: the device twin of
 * layer_backward (model/layer.h) for the dense layers the forward runs: GQA
 * (llama, qwen2, mistral, phi3, qwen3's QK-norm, gemma2's sandwich norms,
 * GeGLU, soft-cap and sliding windows) and MLA (deepseek_v3, gemma2_mla;
 * mla_gpu.c) and MoE (mixtral, qwen3_moe, deepseek_v3's routed experts;
 * moe_gpu.c).
 * Built, not yet run on a GPU: test_gpu_layer_grad (label gpu) compares it
 * with the CPU engine when one is lent; the attention's and the row
 * kernels' arithmetic is checked on the CPU (test_attn_tile, test_grad_row). */
#ifndef TM_MODEL_CUDA_LAYER_GRAD_GPU_H
#define TM_MODEL_CUDA_LAYER_GRAD_GPU_H

#include <stddef.h>

#include "model/cuda/layer_gpu.h"

/* A layer's parameter gradients on the device (fp32), laid out as the
 * host's: one block mirroring the n floats from `host` on, so one copy
 * moves them (the trainer's per-layer gradient bucket, train/params.h). A
 * NULL member is frozen: no gradient, its input gradient still flows. */
typedef struct {
    float *q, *k, *v, *o, *gate, *up, *down;
    float *q_bias, *k_bias, *v_bias, *o_bias, *gate_bias, *up_bias, *down_bias;
    float *input_norm, *post_norm, *attn_out_norm, *mlp_out_norm, *q_head_norm, *k_head_norm;
    float *q_a, *q_b, *kv_a, *kv_b, *q_a_bias, *kv_a_bias, *q_a_norm, *kv_a_norm; /* MLA */
    float *router, **experts; /* MoE: [E, D]; each expert's gate, up, down ([3 * E], host array; NULL: frozen) */
    float *block; /* [n] */
    size_t n;
} GpuLayerGrads;

/* The device twin of the host gradients G (LayerWeights whose members point
 * into host[0, n)); zeroed. n_experts: the layer's (0: dense). 0, or -1
 * (tm_error) when a member of G lies outside that range. */
int gpu_layer_grads_init(GpuLayerGrads *d, const LayerWeights *G, int n_experts, const float *host, size_t n);
void gpu_layer_grads_free(GpuLayerGrads *d);
/* host[0, n) = the device's gradients (waits for the stream). */
int gpu_layer_grads_download(const GpuLayerGrads *d, GpuCtx *g, float *host);

/* After gpu_layer_forward of x_in with training activations (gpu_acts_init_train):
 * dx (in: dL/dx_out, out: dL/dx_in, [N, D] on the device) and the
 * parameter gradients accumulated (+=) into G, as layer_backward. */
int gpu_layer_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, int layer,
                       const float *x_in, float *dx, const GpuRows *r, GpuActs *a);

/* MoE's block (moe_gpu.c, moe_backward's steps), after its forward in the
 * same activations: dxn += dL/dxn given dout at the block's output, the
 * router's and the experts' gradients into G. */
int gpu_moe_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, const float *xn,
                     const float *dout, float *dxn, int N, GpuActs *a);

/* MLA's attention block (mla_gpu.c, mla_backward's steps): dxn += dL/dxn
 * given dy at the block's output, its parameters' gradients into G. */
int gpu_mla_attention_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, int layer,
                               const float *xn, const float *dy, float *dxn, const GpuRows *r, GpuActs *a);

#endif
