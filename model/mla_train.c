/* MLA block forward (keeping activations) and backward. The forward computes
 * what mla_attention_block computes, with positions and documents. */
#include "model/mla_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/attention.h"
#include "model/matmul.h"
#include "model/mla.h"
#include "model/rmsnorm.h"

static float *alloc_f(MlaActs *a, size_t n) {
    a->bytes += n * sizeof(float);
    return mallocCheck(n * sizeof(float));
}

void mla_acts_init(MlaActs *a, const ModelConfig *c, int N) {
    const MlaConfig *m = &c->mla;
    memset(a, 0, sizeof *a);
    size_t n = (size_t)N, H = (size_t)c->n_heads, R = (size_t)m->kv_lora_rank, Rq = (size_t)m->q_lora_rank;
    size_t qk = (size_t)m->qk_nope_head_dim + m->qk_rope_head_dim, dv = (size_t)m->v_head_dim;
    size_t lw = R + (size_t)m->qk_rope_head_dim;
    a->N = N;
    if (Rq) {
        a->qa = alloc_f(a, n * Rq);
        a->qan = alloc_f(a, n * Rq);
        a->rstd_q = alloc_f(a, n);
        a->dqa = alloc_f(a, n * Rq);
        a->dqan = alloc_f(a, n * Rq);
    }
    a->q = alloc_f(a, n * H * qk);
    a->lat = alloc_f(a, n * lw);
    a->craw = alloc_f(a, n * R);
    a->cn = alloc_f(a, n * R);
    a->rstd_c = alloc_f(a, n);
    a->k = alloc_f(a, n * H * qk);
    a->v = alloc_f(a, n * H * dv);
    a->att = alloc_f(a, n * H * dv);
    a->lse = alloc_f(a, n * H);
    a->dq = alloc_f(a, n * H * qk);
    a->dk = alloc_f(a, n * H * qk);
    a->dv = alloc_f(a, n * H * dv);
    a->datt = alloc_f(a, n * H * dv);
    a->dlat = alloc_f(a, n * lw);
    a->dc = alloc_f(a, n * R);
    a->dcr = alloc_f(a, n * R);
    a->dkvb = alloc_f(a, n * H * ((size_t)m->qk_nope_head_dim + dv));
    if (a->bytes != mla_acts_bytes(c, N)) tm_die("mla_acts_bytes disagrees with mla_acts_init");
}

uint64_t mla_acts_bytes(const ModelConfig *c, int N) {
    const MlaConfig *m = &c->mla;
    uint64_t n = (uint64_t)N, H = (uint64_t)c->n_heads, R = (uint64_t)m->kv_lora_rank, Rq = (uint64_t)m->q_lora_rank;
    uint64_t qk = (uint64_t)m->qk_nope_head_dim + m->qk_rope_head_dim, dv = (uint64_t)m->v_head_dim;
    uint64_t lw = R + (uint64_t)m->qk_rope_head_dim;
    uint64_t floats = (Rq ? n * (4 * Rq + 1) : 0) + n * H * qk * 4 + n * lw * 2 + n * R * 4 + n + n * H * dv * 4 +
                      n * H + n * H * ((uint64_t)m->qk_nope_head_dim + dv);
    return floats * sizeof(float);
}

void mla_acts_free(MlaActs *a) {
    float *all[] = {a->qa, a->qan, a->rstd_q, a->dqa, a->q, a->lat, a->craw, a->cn, a->rstd_c, a->k, a->v,
                    a->att, a->lse, a->dq, a->dk, a->dv, a->datt, a->dlat, a->dc, a->dcr, a->dqan, a->dkvb};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    memset(a, 0, sizeof *a);
}

void mla_forward_train(const ModelConfig *c, const LayerWeights *L, const float *xn, float *x, int B, int T,
                       const int32_t *pos, const int32_t *doc_start, const RopeTable *rope, MlaActs *a) {
    const MlaConfig *m = &c->mla;
    int N = B * T, H = c->n_heads, dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim;
    int R = m->kv_lora_rank, Rq = m->q_lora_rank, qk = dn + dr, lw = R + dr;
    if (!Rq) {
        matmul_forward(a->q, xn, &L->q, L->q_bias, N, 0);
    } else {
        matmul_forward(a->qa, xn, &L->q_a, L->q_a_bias, N, 0);
        if (m->latent_norms) rmsnorm_forward_train(a->qan, a->rstd_q, a->qa, L->q_a_norm, N, Rq, TM_MLA_LATENT_NORM_EPS);
        else memcpy(a->qan, a->qa, (size_t)N * Rq * sizeof(float));
        matmul_forward(a->q, a->qan, &L->q_b, NULL, N, 0);
    }
    matmul_forward(a->lat, xn, &L->kv_a, L->kv_a_bias, N, 0);
    for (int i = 0; i < N; i++) memcpy(a->craw + (size_t)i * R, a->lat + (size_t)i * lw, (size_t)R * sizeof(float));
    if (m->latent_norms) rmsnorm_forward_train(a->cn, a->rstd_c, a->craw, L->kv_a_norm, N, R, TM_MLA_LATENT_NORM_EPS);
    else memcpy(a->cn, a->craw, (size_t)N * R * sizeof(float));
    float *kvb = a->dkvb; /* scratch: kv_b's output is only needed to fill k and v */
    matmul_forward(kvb, a->cn, &L->kv_b, NULL, N, 0);

    RopeLayout q_rope = {.n_heads = H, .head_stride = qk, .offset = dn, .interleave = m->rope_interleave};
    RopeLayout k_rope = {.n_heads = 1, .head_stride = lw, .offset = R, .interleave = m->rope_interleave};
    rope_forward_pos(a->q, (int64_t)H * qk, rope, N, pos, &q_rope);
    rope_forward_pos(a->lat, lw, rope, N, pos, &k_rope);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            const float *src = kvb + ((size_t)i * H + h) * (dn + dv);
            float *k = a->k + ((size_t)i * H + h) * qk;
            memcpy(k, src, (size_t)dn * sizeof(float));
            memcpy(k + dn, a->lat + (size_t)i * lw + R, (size_t)dr * sizeof(float));
            memcpy(a->v + ((size_t)i * H + h) * dv, src + dn, (size_t)dv * sizeof(float));
        }
    attention_forward_train(a->att, a->lse, a->q, a->k, a->v, B, T, H, H, qk, dv, doc_start,
                            (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    matmul_forward(x, a->att, &L->o, L->o_bias, N, 1);
}

void mla_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, const float *xn, const float *dout,
                  float *dxn, int B, int T, const int32_t *pos, const int32_t *doc_start, const RopeTable *rope,
                  MlaActs *a) {
    const MlaConfig *m = &c->mla;
    int N = B * T, H = c->n_heads, dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim;
    int R = m->kv_lora_rank, Rq = m->q_lora_rank, qk = dn + dr, lw = R + dr;
    memset(a->datt, 0, (size_t)N * H * dv * sizeof(float));
    matmul_backward(a->datt, tensor_grad_data(&G->o), G->o_bias, dout, a->att, &L->o, N);
    attention_backward(a->dq, a->dk, a->dv, a->datt, a->att, a->lse, a->q, a->k, a->v, B, T, H, H, qk, dv, doc_start,
                       (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    /* per-head key/value gradients back to kv_b's output and the shared k_pe */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *kpe = a->dlat + (size_t)i * lw + R;
        memset(kpe, 0, (size_t)dr * sizeof(float));
        for (int h = 0; h < H; h++) {
            const float *dk = a->dk + ((size_t)i * H + h) * qk;
            float *dst = a->dkvb + ((size_t)i * H + h) * (dn + dv);
            memcpy(dst, dk, (size_t)dn * sizeof(float));
            memcpy(dst + dn, a->dv + ((size_t)i * H + h) * dv, (size_t)dv * sizeof(float));
            for (int j = 0; j < dr; j++) kpe[j] += dk[dn + j];
        }
    }
    RopeLayout q_rope = {.n_heads = H, .head_stride = qk, .offset = dn, .interleave = m->rope_interleave};
    RopeLayout k_rope = {.n_heads = 1, .head_stride = lw, .offset = R, .interleave = m->rope_interleave};
    rope_backward_pos(a->dq, (int64_t)H * qk, rope, N, pos, &q_rope);
    rope_backward_pos(a->dlat, lw, rope, N, pos, &k_rope);

    /* latent: dc = d(cn) through kv_b, then through kv_a_layernorm into dlat's first R columns */
    float *dcn = a->dc;
    memset(dcn, 0, (size_t)N * R * sizeof(float));
    matmul_backward(dcn, tensor_grad_data(&G->kv_b), NULL, a->dkvb, a->cn, &L->kv_b, N);
    if (m->latent_norms) {
        memset(a->dcr, 0, (size_t)N * R * sizeof(float));
        rmsnorm_backward(a->dcr, G->kv_a_norm, dcn, a->craw, L->kv_a_norm, a->rstd_c, N, R);
        dcn = a->dcr;
    }
    for (int i = 0; i < N; i++) memcpy(a->dlat + (size_t)i * lw, dcn + (size_t)i * R, (size_t)R * sizeof(float));
    matmul_backward(dxn, tensor_grad_data(&G->kv_a), G->kv_a_bias, a->dlat, xn, &L->kv_a, N);

    if (!Rq) {
        matmul_backward(dxn, tensor_grad_data(&G->q), G->q_bias, a->dq, xn, &L->q, N);
        return;
    }
    float *dq_lat = a->dqan;
    memset(dq_lat, 0, (size_t)N * Rq * sizeof(float));
    matmul_backward(dq_lat, tensor_grad_data(&G->q_b), NULL, a->dq, a->qan, &L->q_b, N);
    if (m->latent_norms) {
        memset(a->dqa, 0, (size_t)N * Rq * sizeof(float));
        rmsnorm_backward(a->dqa, G->q_a_norm, dq_lat, a->qa, L->q_a_norm, a->rstd_q, N, Rq);
        dq_lat = a->dqa;
    }
    matmul_backward(dxn, tensor_grad_data(&G->q_a), G->q_a_bias, dq_lat, xn, &L->q_a, N);
}
