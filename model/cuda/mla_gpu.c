/* MLA's attention block on the GPU (layer_gpu.h, layer_grad_gpu.h):
 * mla_forward's and mla_backward's steps (model/mla.c) on the device. */
#include <cuda_runtime_api.h>
#include <string.h>

#include "io/base/error.h"
#include "model/cuda/attention_cuda.h"
#include "model/cuda/grad_kernels.h"
#include "model/cuda/kernels.h"
#include "model/cuda/layer_grad_gpu.h"
#include "model/mla.h"

/* out[N, C] = the latent-normed in (its 1/rms in rstd, NULL: not kept),
 * or a copy of in for a model without latent norms; out may be in. */
static void latent_norm(GpuCtx *g, float *out, float *rstd, const float *in, const float *weight, int latent_norms,
                        int N, int C) {
    if (latent_norms) cuda_rmsnorm(out, rstd, in, weight, N, C, (float)TM_MLA_LATENT_NORM_EPS, (cudaStream_t)g->stream);
    else if (out != in) gpu_copy(g, out, in, (size_t)N * C);
}

int gpu_mla_attention(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, int layer, const float *xn, float *out,
                      int accumulate, const GpuRows *r, GpuActs *a) {
    const MlaConfig *m = &c->mla;
    cudaStream_t s = (cudaStream_t)g->stream;
    int N = r->B * r->T, H = c->n_heads, dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim;
    int dv = m->v_head_dim, R = m->kv_lora_rank, Rq = m->q_lora_rank, qk = dn + dr, lw = R + dr;
    if (dv > qk) return tm_fail("--device cuda: MLA with v_head_dim %d > qk head dim %d", dv, qk);
    /* queries: q_proj, or q_a -> its norm -> q_b (mla_queries) */
    if (!Rq) {
        if (gpu_linear(g, a->q, xn, &gl->q, gl->q_bias, N, 0)) return -1;
    } else { /* qan is qa unless training keeps both */
        if (gpu_linear(g, a->qa, xn, &gl->q_a, gl->q_a_bias, N, 0)) return -1;
        latent_norm(g, a->qan, a->rstd_q, a->qa, gl->q_a_norm, m->latent_norms, N, Rq);
        if (gpu_linear(g, a->q, a->qan, &gl->q_b, NULL, N, 0)) return -1;
    }
    /* the latent and the shared rope key (kv_a), the latent normed (mla_latent; craw is cn unless training), kv_b */
    if (gpu_linear(g, a->lat, xn, &gl->kv_a, gl->kv_a_bias, N, 0)) return -1;
    if (gpu_projections(g, c, layer, r, a)) return -1;
    cuda_copy_rows(a->craw, R, a->lat, lw, N, R, s);
    latent_norm(g, a->cn, a->rstd_c, a->craw, gl->kv_a_norm, m->latent_norms, N, R);
    if (gpu_linear(g, a->kvb, a->cn, &gl->kv_b, NULL, N, 0)) return -1;
    cuda_rope(a->q, (int64_t)H * qk, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, H, qk, dn, m->rope_interleave,
              s);
    cuda_rope(a->lat, lw, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, 1, lw, R, m->rope_interleave, s);
    cuda_mla_heads(a->k, a->v, a->kvb, a->lat, N, H, dn, dr, dv, R, s);
    if (gpu_attention(g, c, layer, a, r)) return -1;
    return gpu_linear(g, out, a->att, &gl->o, gl->o_bias, N, accumulate);
}

int gpu_mla_attention_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, int layer,
                               const float *xn, const float *dy, float *dxn, const GpuRows *r, GpuActs *a) {
    const MlaConfig *m = &c->mla;
    cudaStream_t s = (cudaStream_t)g->stream;
    int N = r->B * r->T, H = c->n_heads, dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim;
    int dv = m->v_head_dim, R = m->kv_lora_rank, Rq = m->q_lora_rank, qk = dn + dr, lw = R + dr;
    float *dkvb = a->kvb; /* kv_b's output is no longer needed: k and v hold it */
    gpu_zero(g, a->datt, (size_t)N * H * dv);
    if (gpu_linear_backward(g, a->datt, G->o, G->o_bias, dy, a->att, &gl->o, N)) return -1;
    if (cuda_attention_backward(a->dq, a->dk, a->dv, a->delta, a->datt, a->att, a->lse, a->q, a->k, a->v, r->B, r->T,
                                H, H, qk, dv, r->doc_start, hf_config_layer_window(c, layer),
                                (float)hf_config_attn_scale(c), (float)c->attn_softcap, s))
        return tm_fail("CUDA: the attention's backward kernel did not launch (head dims %d, %d)", qk, dv);
    /* per-head key and value gradients back to kv_b's output and the shared rope key */
    cuda_mla_heads_backward(dkvb, a->dlat, a->dk, a->dv, N, H, dn, dr, dv, R, s);
    cuda_rope_backward(a->dq, (int64_t)H * qk, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, H, qk, dn,
                       m->rope_interleave, s);
    cuda_rope_backward(a->dlat, lw, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, 1, lw, R, m->rope_interleave,
                       s);
    /* the latent: through kv_b, then kv_a_layernorm, into dlat's first R columns, then kv_a */
    const float *dcn = a->dc;
    gpu_zero(g, a->dc, (size_t)N * R);
    if (gpu_linear_backward(g, a->dc, G->kv_b, NULL, dkvb, a->cn, &gl->kv_b, N)) return -1;
    if (m->latent_norms) {
        gpu_zero(g, a->dcr, (size_t)N * R);
        cuda_rmsnorm_backward(a->dcr, G->kv_a_norm, a->dc, a->craw, gl->kv_a_norm, a->rstd_c, N, R, s);
        dcn = a->dcr;
    }
    cuda_copy_rows(a->dlat, lw, dcn, R, N, R, s);
    if (gpu_linear_backward(g, dxn, G->kv_a, G->kv_a_bias, a->dlat, xn, &gl->kv_a, N)) return -1;
    if (!Rq) return gpu_linear_backward(g, dxn, G->q, G->q_bias, a->dq, xn, &gl->q, N);
    /* the queries: q_b, q_a_layernorm, q_a */
    const float *dq_lat = a->dqan;
    gpu_zero(g, a->dqan, (size_t)N * Rq);
    if (gpu_linear_backward(g, a->dqan, G->q_b, NULL, a->dq, a->qan, &gl->q_b, N)) return -1;
    if (m->latent_norms) {
        gpu_zero(g, a->dqa, (size_t)N * Rq);
        cuda_rmsnorm_backward(a->dqa, G->q_a_norm, a->dqan, a->qa, gl->q_a_norm, a->rstd_q, N, Rq, s);
        dq_lat = a->dqa;
    }
    return gpu_linear_backward(g, dxn, G->q_a, G->q_a_bias, dq_lat, xn, &gl->q_a, N);
}
