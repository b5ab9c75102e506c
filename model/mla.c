#include "model/mla.h"

#include <string.h>

#include "model/attention.h"
#include "model/matmul.h"
#include "model/rmsnorm.h"

void mla_queries(const ModelConfig *c, const LayerWeights *L, const float *xn, int N, Workspace *ws) {
    int Rq = c->mla.q_lora_rank;
    if (!Rq) {
        matmul_forward(ws->q, xn, &L->q, L->q_bias, N, 0);
        return;
    }
    matmul_forward(ws->lat, xn, &L->q_a, L->q_a_bias, N, 0);
    if (c->mla.latent_norms) {
        rmsnorm_forward(ws->cn, ws->lat, L->q_a_norm, N, Rq, TM_MLA_LATENT_NORM_EPS);
        matmul_forward(ws->q, ws->cn, &L->q_b, NULL, N, 0);
    } else {
        matmul_forward(ws->q, ws->lat, &L->q_b, NULL, N, 0);
    }
}

void mla_latent(const ModelConfig *c, const LayerWeights *L, int N, Workspace *ws) {
    int R = c->mla.kv_lora_rank, w = R + c->mla.qk_rope_head_dim;
    for (int i = 0; i < N; i++) memcpy(ws->cn + (size_t)i * R, ws->lat + (size_t)i * w, (size_t)R * sizeof(float));
    if (c->mla.latent_norms) rmsnorm_forward(ws->cn, ws->cn, L->kv_a_norm, N, R, TM_MLA_LATENT_NORM_EPS);
}

void mla_attention_block(const ModelConfig *c, const LayerWeights *L, int layer, Workspace *ws) {
    const MlaConfig *m = &c->mla;
    int B = ws->B, T = ws->T, N = B * T, H = c->n_heads;
    int dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim, R = m->kv_lora_rank;
    int qk = dn + dr, lw = R + dr;
    mla_queries(c, L, ws->xn, N, ws);
    matmul_forward(ws->lat, ws->xn, &L->kv_a, L->kv_a_bias, N, 0);
    if (ws->hook) ws->hook(ws->hook_ctx, layer, ws);
    mla_latent(c, L, N, ws);
    matmul_forward(ws->kvb, ws->cn, &L->kv_b, NULL, N, 0);

    RopeLayout q_rope = {.n_heads = H, .head_stride = qk, .offset = dn, .interleave = m->rope_interleave};
    RopeLayout k_rope = {.n_heads = 1, .head_stride = lw, .offset = R, .interleave = m->rope_interleave};
    rope_forward(ws->q, (int64_t)H * qk, &ws->rope, B, T, 0, &q_rope);
    rope_forward(ws->lat, lw, &ws->rope, B, T, 0, &k_rope);
    /* per-head keys [k_nope_h ; shared k_pe] and values, for the causal kernel */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            const float *src = ws->kvb + ((size_t)i * H + h) * (dn + dv);
            float *k = ws->k + ((size_t)i * H + h) * qk;
            memcpy(k, src, (size_t)dn * sizeof(float));
            memcpy(k + dn, ws->lat + (size_t)i * lw + R, (size_t)dr * sizeof(float));
            memcpy(ws->v + ((size_t)i * H + h) * dv, src + dn, (size_t)dv * sizeof(float));
        }
    attention_forward(ws->att, ws->q, ws->k, ws->v, B, T, H, H, qk, dv, hf_config_layer_window(c, layer),
                      (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    block_residual(c, L->attn_out_norm, ws->att, &L->o, L->o_bias, N, ws);
}
