/* MLA's attention block on the GPU (layer_gpu.h): mla_forward's steps
 * (model/mla.c) on the device. */
#include <string.h>

#include "io/base/error.h"
#include "model/cuda/kernels.h"
#include "model/cuda/layer_gpu.h"
#include "model/mla.h"

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
    } else {
        if (gpu_linear(g, a->qa, xn, &gl->q_a, gl->q_a_bias, N, 0)) return -1;
        if (m->latent_norms) cuda_rmsnorm(a->qa, NULL, a->qa, gl->q_a_norm, N, Rq, (float)TM_MLA_LATENT_NORM_EPS, s);
        if (gpu_linear(g, a->q, a->qa, &gl->q_b, NULL, N, 0)) return -1;
    }
    /* the latent and the shared rope key (kv_a), the latent normed (mla_latent), kv_b */
    if (gpu_linear(g, a->lat, xn, &gl->kv_a, gl->kv_a_bias, N, 0)) return -1;
    if (gpu_projections(g, c, layer, r, a)) return -1;
    cuda_copy_rows(a->cn, R, a->lat, lw, N, R, s);
    if (m->latent_norms) cuda_rmsnorm(a->cn, NULL, a->cn, gl->kv_a_norm, N, R, (float)TM_MLA_LATENT_NORM_EPS, s);
    if (gpu_linear(g, a->kvb, a->cn, &gl->kv_b, NULL, N, 0)) return -1;
    cuda_rope(a->q, (int64_t)H * qk, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, H, qk, dn, m->rope_interleave,
              s);
    cuda_rope(a->lat, lw, r->rope_cos, r->rope_sin, r->rope_half, N, r->pos, 1, lw, R, m->rope_interleave, s);
    cuda_mla_heads(a->k, a->v, a->kvb, a->lat, N, H, dn, dr, dv, R, s);
    if (gpu_attention(g, c, layer, a, r)) return -1;
    return gpu_linear(g, out, a->att, &gl->o, gl->o_bias, N, accumulate);
}
