/* GQA block forward (keeping activations) and backward. The forward computes
 * what gqa_attention_block computes, with positions and documents. */
#include "model/gqa_train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/attention.h"
#include "model/matmul.h"
#include "model/rmsnorm.h"

static float *alloc_f(GqaActs *a, size_t n) {
    a->bytes += n * sizeof(float);
    return mallocCheck(n * sizeof(float));
}

void gqa_acts_init(GqaActs *a, const ModelConfig *c, int N) {
    memset(a, 0, sizeof *a);
    size_t n = (size_t)N, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    a->N = N;
    a->q = alloc_f(a, n * qd);
    a->k = alloc_f(a, n * kvd);
    a->v = alloc_f(a, n * kvd);
    a->att = alloc_f(a, n * qd);
    a->lse = alloc_f(a, n * c->n_heads);
    a->dq = alloc_f(a, n * qd);
    a->dk = alloc_f(a, n * kvd);
    a->dv = alloc_f(a, n * kvd);
    a->datt = alloc_f(a, n * qd);
    if (c->qk_norm) {
        a->q_pre = alloc_f(a, n * qd);
        a->k_pre = alloc_f(a, n * kvd);
        a->rinv = alloc_f(a, n * ((size_t)c->n_heads + c->n_kv_heads));
        a->dq_pre = alloc_f(a, n * qd);
        a->dk_pre = alloc_f(a, n * kvd);
    }
}

void gqa_acts_free(GqaActs *a) {
    float *all[] = {a->q, a->k, a->v, a->q_pre, a->k_pre, a->rinv, a->att, a->lse,
                    a->dq, a->dk, a->dv, a->datt, a->dq_pre, a->dk_pre};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    memset(a, 0, sizeof *a);
}

static RopeLayout heads_layout(int n_heads, int d) {
    return (RopeLayout){.n_heads = n_heads, .head_stride = d, .offset = 0, .interleave = 0};
}

void gqa_forward_train(const ModelConfig *c, const LayerWeights *L, const float *xn, float *x, int B, int T,
                       const int32_t *pos, const int32_t *doc_start, const RopeTable *rope, GqaActs *a) {
    int N = B * T, H = c->n_heads, G = c->n_kv_heads, d = c->head_dim;
    if (c->qk_norm) {
        matmul_forward(a->q_pre, xn, &L->q, L->q_bias, N, 0);
        matmul_forward(a->k_pre, xn, &L->k, L->k_bias, N, 0);
        head_rmsnorm_forward(a->q, a->rinv, H + G, a->q_pre, L->q_head_norm, N, H, d, c->rms_norm_eps);
        head_rmsnorm_forward(a->k, a->rinv + H, H + G, a->k_pre, L->k_head_norm, N, G, d, c->rms_norm_eps);
    } else {
        matmul_forward(a->q, xn, &L->q, L->q_bias, N, 0);
        matmul_forward(a->k, xn, &L->k, L->k_bias, N, 0);
    }
    matmul_forward(a->v, xn, &L->v, L->v_bias, N, 0);
    RopeLayout q_rope = heads_layout(H, d), k_rope = heads_layout(G, d);
    rope_forward_pos(a->q, (int64_t)H * d, rope, N, pos, &q_rope);
    rope_forward_pos(a->k, (int64_t)G * d, rope, N, pos, &k_rope);
    attention_forward_train(a->att, a->lse, a->q, a->k, a->v, B, T, H, G, d, d, doc_start,
                            (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    matmul_forward(x, a->att, &L->o, L->o_bias, N, 1);
}

void gqa_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, const float *xn, const float *dout,
                  float *dxn, int B, int T, const int32_t *pos, const int32_t *doc_start, const RopeTable *rope,
                  GqaActs *a) {
    int N = B * T, H = c->n_heads, Gk = c->n_kv_heads, d = c->head_dim;
    memset(a->datt, 0, (size_t)N * H * d * sizeof(float));
    matmul_backward(a->datt, tensor_grad_data(&G->o), G->o_bias, dout, a->att, &L->o, N);
    attention_backward(a->dq, a->dk, a->dv, a->datt, a->att, a->lse, a->q, a->k, a->v, B, T, H, Gk, d, d, doc_start,
                       (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    RopeLayout q_rope = heads_layout(H, d), k_rope = heads_layout(Gk, d);
    rope_backward_pos(a->dq, (int64_t)H * d, rope, N, pos, &q_rope);
    rope_backward_pos(a->dk, (int64_t)Gk * d, rope, N, pos, &k_rope);
    float *dq = a->dq, *dk = a->dk;
    if (c->qk_norm) {
        memset(a->dq_pre, 0, (size_t)N * H * d * sizeof(float));
        memset(a->dk_pre, 0, (size_t)N * Gk * d * sizeof(float));
        head_rmsnorm_backward(a->dq_pre, G->q_head_norm, a->dq, a->q_pre, L->q_head_norm, a->rinv, H + Gk, N, H, d);
        head_rmsnorm_backward(a->dk_pre, G->k_head_norm, a->dk, a->k_pre, L->k_head_norm, a->rinv + H, H + Gk, N, Gk,
                              d);
        dq = a->dq_pre;
        dk = a->dk_pre;
    }
    matmul_backward(dxn, tensor_grad_data(&G->q), G->q_bias, dq, xn, &L->q, N);
    matmul_backward(dxn, tensor_grad_data(&G->k), G->k_bias, dk, xn, &L->k, N);
    matmul_backward(dxn, tensor_grad_data(&G->v), G->v_bias, a->dv, xn, &L->v, N);
}
