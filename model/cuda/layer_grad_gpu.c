/* A layer's backward pass on the GPU (layer_grad_gpu.h), step for step
 * model/layer.c's layer_backward with gqa.c's gqa_backward (MLA's:
 * mla_gpu.c; MoE's: moe_gpu.c). */
#include "model/cuda/layer_grad_gpu.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/attention_cuda.h"
#include "model/cuda/grad_kernels.h"
#include "model/cuda/kernels.h"

/* A host gradient's place in the device block: NULL for NULL (frozen). */
static float *on_device(const GpuLayerGrads *d, const float *host, const float *p) {
    return p ? d->block + (p - host) : NULL;
}

static int inside(const float *p, const float *host, size_t n) { return !p || (p >= host && p < host + n); }

/* The experts' gradients (each expert's gate, up, down) mapped as the other members. */
static int map_experts(GpuLayerGrads *d, const LayerWeights *G, int n_experts, const float *host, size_t n) {
    if (!G->experts || !n_experts) return 0;
    d->experts = callocCheck((size_t)3 * n_experts, sizeof *d->experts);
    for (int e = 0; e < n_experts; e++) {
        const Tensor *t[] = {&G->experts[e].gate, &G->experts[e].up, &G->experts[e].down};
        for (int i = 0; i < 3; i++) {
            const float *p = tensor_grad_data(t[i]);
            if (!inside(p, host, n)) return tm_fail("gpu_layer_grads_init: an expert's gradient lies outside its block");
            d->experts[3 * e + i] = on_device(d, host, p);
        }
    }
    return 0;
}

int gpu_layer_grads_init(GpuLayerGrads *d, const LayerWeights *G, int n_experts, const float *host, size_t n) {
    memset(d, 0, sizeof *d);
    /* each host member and the device member it becomes, side by side */
    const float *h[] = {tensor_grad_data(&G->q), tensor_grad_data(&G->k), tensor_grad_data(&G->v),
                        tensor_grad_data(&G->o), tensor_grad_data(&G->gate), tensor_grad_data(&G->up),
                        tensor_grad_data(&G->down), G->q_bias, G->k_bias, G->v_bias, G->o_bias, G->gate_bias,
                        G->up_bias, G->down_bias, G->input_norm, G->post_norm, G->attn_out_norm, G->mlp_out_norm,
                        G->q_head_norm, G->k_head_norm, tensor_grad_data(&G->q_a), tensor_grad_data(&G->q_b),
                        tensor_grad_data(&G->kv_a), tensor_grad_data(&G->kv_b), G->q_a_bias, G->kv_a_bias,
                        G->q_a_norm, G->kv_a_norm, tensor_grad_data(&G->router)};
    float **v[] = {&d->q, &d->k, &d->v, &d->o, &d->gate, &d->up, &d->down, &d->q_bias, &d->k_bias, &d->v_bias,
                   &d->o_bias, &d->gate_bias, &d->up_bias, &d->down_bias, &d->input_norm, &d->post_norm,
                   &d->attn_out_norm, &d->mlp_out_norm, &d->q_head_norm, &d->k_head_norm, &d->q_a, &d->q_b,
                   &d->kv_a, &d->kv_b, &d->q_a_bias, &d->kv_a_bias, &d->q_a_norm, &d->kv_a_norm, &d->router};
    size_t k = sizeof h / sizeof *h;
    for (size_t i = 0; i < k; i++)
        if (!inside(h[i], host, n)) return tm_fail("gpu_layer_grads_init: a gradient lies outside its layer's block");
    d->n = n;
    d->block = gpu_alloc(n * sizeof(float));
    cudaMemset(d->block, 0, n * sizeof(float));
    for (size_t i = 0; i < k; i++) *v[i] = on_device(d, host, h[i]);
    if (map_experts(d, G, n_experts, host, n)) {
        gpu_layer_grads_free(d);
        return -1;
    }
    return 0;
}

void gpu_layer_grads_free(GpuLayerGrads *d) {
    gpu_free(d->block);
    free(d->experts);
    memset(d, 0, sizeof *d);
}

int gpu_layer_grads_download(const GpuLayerGrads *d, GpuCtx *g, float *host) {
    if (gpu_sync(g)) return -1;
    gpu_download(host, d->block, d->n * sizeof(float));
    return 0;
}

/* The gradient at a block's output before its sandwich norm (in a->dblk)
 * from dres, the gradient of the residual it was added to; without
 * sandwich norms dres itself (block_out_grad). */
static const float *block_out_grad(GpuCtx *g, const ModelConfig *c, float *dweight, const float *dres, const float *o,
                                   const float *out_norm, const float *rstd, int N, GpuActs *a) {
    if (!c->sandwich_norms) return dres;
    cudaStream_t s = (cudaStream_t)g->stream;
    gpu_zero(g, a->dblk, (size_t)N * c->hidden_size);
    cuda_rmsnorm_backward(a->dblk, dweight, dres, o, out_norm, rstd, N, c->hidden_size, s);
    return a->dblk;
}

/* a->dxn = dL/dxn2 given dy at the MLP's output (mlp_backward_part). */
static int mlp_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, const float *dy,
                        int N, GpuActs *a) {
    cudaStream_t s = (cudaStream_t)g->stream;
    int64_t NI = (int64_t)N * c->intermediate_size;
    gpu_zero(g, a->dxn, (size_t)N * c->hidden_size);
    if (gl->n_experts) return gpu_moe_backward(g, c, gl, G, a->xn2, dy, a->dxn, N, a);
    gpu_zero(g, a->dact, (size_t)NI);
    if (gpu_linear_backward(g, a->dact, G->down, G->down_bias, dy, a->act, &gl->down, N)) return -1;
    cuda_glu_backward(a->dh1, a->dh2, a->dact, a->h1, a->h2, NI, c->gelu_mlp, s);
    if (gpu_linear_backward(g, a->dxn, G->gate, G->gate_bias, a->dh1, a->xn2, &gl->gate, N)) return -1;
    return gpu_linear_backward(g, a->dxn, G->up, G->up_bias, a->dh2, a->xn2, &gl->up, N);
}

/* dxn += dL/dxn of the GQA block given dy at its output (gqa_backward). */
static int attention_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, int layer,
                              const float *dy, const GpuRows *r, GpuActs *a) {
    cudaStream_t s = (cudaStream_t)g->stream;
    int N = r->B * r->T, H = c->n_heads, Gk = c->n_kv_heads, d = c->head_dim;
    size_t qn = (size_t)N * H * d, kn = (size_t)N * Gk * d;
    gpu_zero(g, a->datt, qn);
    if (gpu_linear_backward(g, a->datt, G->o, G->o_bias, dy, a->att, &gl->o, N)) return -1;
    if (cuda_attention_backward(a->dq, a->dk, a->dv, a->delta, a->datt, a->att, a->lse, a->q, a->k, a->v, r->B, r->T,
                                H, Gk, d, d, r->doc_start, hf_config_layer_window(c, layer),
                                (float)hf_config_attn_scale(c), (float)c->attn_softcap, s))
        return tm_fail("CUDA: the attention's backward kernel did not launch (head dim %d)", d);
    cuda_rope_backward(a->dq, (int64_t)H * d, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, H, d, 0, 0, s);
    cuda_rope_backward(a->dk, (int64_t)Gk * d, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, Gk, d, 0, 0, s);
    const float *dq = a->dq, *dk = a->dk;
    if (c->qk_norm) { /* the GPU keeps each head's 1/rms as [N*H] then [N*G] */
        gpu_zero(g, a->dq_pre, qn);
        gpu_zero(g, a->dk_pre, kn);
        cuda_rmsnorm_backward(a->dq_pre, G->q_head_norm, a->dq, a->q_pre, gl->q_head_norm, a->rinv, (int64_t)N * H, d,
                              s);
        cuda_rmsnorm_backward(a->dk_pre, G->k_head_norm, a->dk, a->k_pre, gl->k_head_norm, a->rinv + (size_t)N * H,
                              (int64_t)N * Gk, d, s);
        dq = a->dq_pre;
        dk = a->dk_pre;
    }
    if (gpu_linear_backward(g, a->dxn, G->q, G->q_bias, dq, a->xn, &gl->q, N)) return -1;
    if (gpu_linear_backward(g, a->dxn, G->k, G->k_bias, dk, a->xn, &gl->k, N)) return -1;
    return gpu_linear_backward(g, a->dxn, G->v, G->v_bias, a->dv, a->xn, &gl->v, N);
}

int gpu_layer_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, int layer,
                       const float *x_in, float *dx, const GpuRows *r, GpuActs *a) {
    cudaStream_t s = (cudaStream_t)g->stream;
    int N = r->B * r->T, D = c->hidden_size;
    size_t ND = (size_t)N * D;
    if (!a->train) return tm_fail("gpu_layer_backward: the activations were made for the forward alone");
    if (N > a->N) return tm_fail("gpu_layer_backward: %d rows in activations for %d", N, a->N);
    /* MLP: dxn2 (in dxn) from dx, then the residual and post_norm into dx_mid */
    const float *dy = block_out_grad(g, c, G->mlp_out_norm, dx, a->mlp_o, gl->mlp_out_norm, a->rstd_mo, N, a);
    if (mlp_backward(g, c, gl, G, dy, N, a)) return -1;
    gpu_copy(g, a->dx_mid, dx, ND);
    cuda_rmsnorm_backward(a->dx_mid, G->post_norm, a->dxn, a->x_mid, gl->post_norm, a->rstd2, N, D, s);
    /* attention: dxn from dx_mid, then the residual and input_norm into dx */
    dy = block_out_grad(g, c, G->attn_out_norm, a->dx_mid, a->attn_o, gl->attn_out_norm, a->rstd_ao, N, a);
    gpu_zero(g, a->dxn, ND);
    if (hf_config_is_mla(c) ? gpu_mla_attention_backward(g, c, gl, G, layer, a->xn, dy, a->dxn, r, a)
                            : attention_backward(g, c, gl, G, layer, dy, r, a))
        return -1;
    gpu_copy(g, dx, a->dx_mid, ND);
    cuda_rmsnorm_backward(dx, G->input_norm, a->dxn, x_in, gl->input_norm, a->rstd1, N, D, s);
    return 0;
}
