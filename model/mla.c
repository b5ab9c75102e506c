/* MLA block forward and backward (mla.h). */
#include "model/mla.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/attention.h"
#include "model/matmul.h"
#include "model/rmsnorm.h"

void mla_acts_init(MlaActs *a, const ModelConfig *c, int N, int backward, int count_only) {
    const MlaConfig *m = &c->mla;
    memset(a, 0, sizeof *a);
    size_t n = (size_t)N, H = (size_t)c->n_heads, R = (size_t)m->kv_lora_rank, Rq = (size_t)m->q_lora_rank;
    size_t qk = (size_t)m->qk_nope_head_dim + m->qk_rope_head_dim, dv = (size_t)m->v_head_dim;
    size_t lw = R + (size_t)m->qk_rope_head_dim;
    uint64_t *b = &a->bytes;
    int k = count_only;
    a->N = N;
    if (Rq) {
        a->qa = acts_alloc(b, n * Rq, k);
        a->qan = backward ? acts_alloc(b, n * Rq, k) : a->qa;
        a->rstd_q = acts_alloc(b, n, k);
    }
    a->q = acts_alloc(b, n * H * qk, k);
    a->lat = acts_alloc(b, n * lw, k);
    a->cn = acts_alloc(b, n * R, k);
    a->craw = backward ? acts_alloc(b, n * R, k) : a->cn;
    a->rstd_c = acts_alloc(b, n, k);
    a->kvb = acts_alloc(b, n * H * ((size_t)m->qk_nope_head_dim + dv), k);
    a->k = acts_alloc(b, n * H * qk, k);
    a->v = acts_alloc(b, n * H * dv, k);
    a->att = acts_alloc(b, n * H * dv, k);
    if (!backward) return;
    a->lse = acts_alloc(b, n * H, k);
    if (backward == ACTS_SAVED) return;
    if (Rq) {
        a->dqa = acts_alloc(b, n * Rq, k);
        a->dqan = acts_alloc(b, n * Rq, k);
    }
    a->dq = acts_alloc(b, n * H * qk, k);
    a->dk = acts_alloc(b, n * H * qk, k);
    a->dv = acts_alloc(b, n * H * dv, k);
    a->datt = acts_alloc(b, n * H * dv, k);
    a->dlat = acts_alloc(b, n * lw, k);
    a->dc = acts_alloc(b, n * R, k);
    a->dcr = acts_alloc(b, n * R, k);
}

uint64_t mla_acts_bytes(const ModelConfig *c, int N) {
    MlaActs a;
    mla_acts_init(&a, c, N, 1, 1);
    return a.bytes;
}

void mla_acts_borrow_grads(MlaActs *a, const MlaActs *from) {
    a->dq = from->dq, a->dk = from->dk, a->dv = from->dv, a->datt = from->datt, a->dlat = from->dlat;
    a->dc = from->dc, a->dcr = from->dcr, a->dqa = from->dqa, a->dqan = from->dqan;
}

void mla_acts_free(MlaActs *a) {
    if (a->qan != a->qa) free(a->qan);
    if (a->craw != a->cn) free(a->craw);
    float *all[] = {a->qa, a->rstd_q, a->dqa, a->q, a->lat, a->cn, a->rstd_c, a->kvb, a->k, a->v, a->att,
                    a->lse, a->dq, a->dk, a->dv, a->datt, a->dlat, a->dc, a->dcr, a->dqan};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    memset(a, 0, sizeof *a);
}

void mla_queries(const ModelConfig *c, const LayerWeights *L, const float *xn, int N, float *qa, float *qan,
                 float *rstd_q, float *q) {
    int Rq = c->mla.q_lora_rank;
    if (!Rq) {
        matmul_forward(q, xn, &L->q, L->q_bias, N, 0);
        return;
    }
    matmul_forward(qa, xn, &L->q_a, L->q_a_bias, N, 0);
    if (c->mla.latent_norms) rmsnorm_forward_train(qan, rstd_q, qa, L->q_a_norm, N, Rq, TM_MLA_LATENT_NORM_EPS);
    else if (qan != qa) memcpy(qan, qa, (size_t)N * Rq * sizeof(float));
    matmul_forward(q, qan, &L->q_b, NULL, N, 0);
}

void mla_latent(const ModelConfig *c, const LayerWeights *L, const float *lat, int N, float *craw, float *cn,
                float *rstd_c) {
    int R = c->mla.kv_lora_rank, w = R + c->mla.qk_rope_head_dim;
    for (int i = 0; i < N; i++) memcpy(craw + (size_t)i * R, lat + (size_t)i * w, (size_t)R * sizeof(float));
    if (c->mla.latent_norms) rmsnorm_forward_train(cn, rstd_c, craw, L->kv_a_norm, N, R, TM_MLA_LATENT_NORM_EPS);
    else if (cn != craw) memcpy(cn, craw, (size_t)N * R * sizeof(float));
}

static RopeLayout q_layout(const ModelConfig *c) {
    const MlaConfig *m = &c->mla;
    int qk = m->qk_nope_head_dim + m->qk_rope_head_dim;
    return (RopeLayout){.n_heads = c->n_heads, .head_stride = qk, .offset = m->qk_nope_head_dim,
                        .interleave = m->rope_interleave};
}

/* the shared k_pe: the last qk_rope_head_dim columns of the latent row */
static RopeLayout k_layout(const ModelConfig *c) {
    const MlaConfig *m = &c->mla;
    return (RopeLayout){.n_heads = 1, .head_stride = m->kv_lora_rank + m->qk_rope_head_dim,
                        .offset = m->kv_lora_rank, .interleave = m->rope_interleave};
}

void mla_forward(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out,
                 const LayerRows *rows, MlaActs *a) {
    const MlaConfig *m = &c->mla;
    int B = rows->B, T = rows->T, N = B * T, H = c->n_heads;
    int dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim, R = m->kv_lora_rank;
    int qk = dn + dr, lw = R + dr;
    mla_queries(c, L, xn, N, a->qa, a->qan, a->rstd_q, a->q);
    matmul_forward(a->lat, xn, &L->kv_a, L->kv_a_bias, N, 0);
    if (rows->hook) {
        AttnProjections p = {.N = N, .q = a->q, .lat = a->lat};
        rows->hook(rows->hook_ctx, layer, &p);
    }
    mla_latent(c, L, a->lat, N, a->craw, a->cn, a->rstd_c);
    matmul_forward(a->kvb, a->cn, &L->kv_b, NULL, N, 0);

    RopeLayout q_rope = q_layout(c), k_rope = k_layout(c);
    rope_forward_pos(a->q, (int64_t)H * qk, rows->rope, N, rows->pos, &q_rope);
    rope_forward_pos(a->lat, lw, rows->rope, N, rows->pos, &k_rope);
    /* per-head keys [k_nope_h ; shared k_pe] and values, for the causal kernel */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++)
        for (int h = 0; h < H; h++) {
            const float *src = a->kvb + ((size_t)i * H + h) * (dn + dv);
            float *k = a->k + ((size_t)i * H + h) * qk;
            memcpy(k, src, (size_t)dn * sizeof(float));
            memcpy(k + dn, a->lat + (size_t)i * lw + R, (size_t)dr * sizeof(float));
            memcpy(a->v + ((size_t)i * H + h) * dv, src + dn, (size_t)dv * sizeof(float));
        }
    attention_forward(a->att, a->lse, a->q, a->k, a->v, B, T, H, H, qk, dv, rows->doc_start,
                      hf_config_layer_window(c, layer), (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    matmul_forward(out, a->att, &L->o, L->o_bias, N, 1);
}

void mla_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *xn,
                  const float *dout, float *dxn, const LayerRows *rows, MlaActs *a) {
    const MlaConfig *m = &c->mla;
    int B = rows->B, T = rows->T, N = B * T, H = c->n_heads;
    int dn = m->qk_nope_head_dim, dr = m->qk_rope_head_dim, dv = m->v_head_dim, R = m->kv_lora_rank;
    int Rq = m->q_lora_rank, qk = dn + dr, lw = R + dr;
    if (!a->dq) tm_die("mla_backward: the activations were made for the forward alone");
    float *dkvb = a->kvb; /* kv_b's output is no longer needed: k and v hold it */
    memset(a->datt, 0, (size_t)N * H * dv * sizeof(float));
    matmul_backward(a->datt, tensor_grad_data(&G->o), G->o_bias, dout, a->att, &L->o, N);
    attention_backward(a->dq, a->dk, a->dv, a->datt, a->att, a->lse, a->q, a->k, a->v, B, T, H, H, qk, dv,
                       rows->doc_start, hf_config_layer_window(c, layer), (float)hf_config_attn_scale(c),
                       (float)c->attn_softcap);
    /* per-head key/value gradients back to kv_b's output and the shared k_pe */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < N; i++) {
        float *kpe = a->dlat + (size_t)i * lw + R;
        memset(kpe, 0, (size_t)dr * sizeof(float));
        for (int h = 0; h < H; h++) {
            const float *dk = a->dk + ((size_t)i * H + h) * qk;
            float *dst = dkvb + ((size_t)i * H + h) * (dn + dv);
            memcpy(dst, dk, (size_t)dn * sizeof(float));
            memcpy(dst + dn, a->dv + ((size_t)i * H + h) * dv, (size_t)dv * sizeof(float));
            for (int j = 0; j < dr; j++) kpe[j] += dk[dn + j];
        }
    }
    RopeLayout q_rope = q_layout(c), k_rope = k_layout(c);
    rope_backward_pos(a->dq, (int64_t)H * qk, rows->rope, N, rows->pos, &q_rope);
    rope_backward_pos(a->dlat, lw, rows->rope, N, rows->pos, &k_rope);

    /* latent: dc = d(cn) through kv_b, then through kv_a_layernorm into dlat's first R columns */
    float *dcn = a->dc;
    memset(dcn, 0, (size_t)N * R * sizeof(float));
    matmul_backward(dcn, tensor_grad_data(&G->kv_b), NULL, dkvb, a->cn, &L->kv_b, N);
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
