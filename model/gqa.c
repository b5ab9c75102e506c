/* GQA block forward and backward (gqa.h). */
#include "model/gqa.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/attention.h"
#include "model/matmul.h"
#include "model/rmsnorm.h"

void gqa_acts_init(GqaActs *a, const ModelConfig *c, int N, int backward, int count_only) {
    memset(a, 0, sizeof *a);
    size_t n = (size_t)N, qd = (size_t)c->n_heads * c->head_dim, kvd = (size_t)c->n_kv_heads * c->head_dim;
    uint64_t *b = &a->bytes;
    a->N = N;
    a->q = acts_alloc(b, n * qd, count_only);
    a->k = acts_alloc(b, n * kvd, count_only);
    a->v = acts_alloc(b, n * kvd, count_only);
    a->att = acts_alloc(b, n * qd, count_only);
    if (c->qk_norm) {
        a->rinv = acts_alloc(b, n * ((size_t)c->n_heads + c->n_kv_heads), count_only);
        a->q_pre = backward ? acts_alloc(b, n * qd, count_only) : a->q;
        a->k_pre = backward ? acts_alloc(b, n * kvd, count_only) : a->k;
    }
    if (!backward) return;
    a->lse = acts_alloc(b, n * c->n_heads, count_only);
    if (backward == ACTS_SAVED) return;
    a->dq = acts_alloc(b, n * qd, count_only);
    a->dk = acts_alloc(b, n * kvd, count_only);
    a->dv = acts_alloc(b, n * kvd, count_only);
    a->datt = acts_alloc(b, n * qd, count_only);
    if (c->qk_norm) {
        a->dq_pre = acts_alloc(b, n * qd, count_only);
        a->dk_pre = acts_alloc(b, n * kvd, count_only);
    }
}

void gqa_acts_borrow_grads(GqaActs *a, const GqaActs *from) {
    a->dq = from->dq, a->dk = from->dk, a->dv = from->dv, a->datt = from->datt;
    a->dq_pre = from->dq_pre, a->dk_pre = from->dk_pre;
}

void gqa_acts_free(GqaActs *a) {
    if (a->q_pre != a->q) free(a->q_pre);
    if (a->k_pre != a->k) free(a->k_pre);
    float *all[] = {a->q, a->k, a->v, a->rinv, a->att, a->lse, a->dq, a->dk, a->dv, a->datt, a->dq_pre, a->dk_pre};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    memset(a, 0, sizeof *a);
}

static RopeLayout heads_layout(int n_heads, int d) {
    return (RopeLayout){.n_heads = n_heads, .head_stride = d, .offset = 0, .interleave = 0};
}

void gqa_project(const ModelConfig *c, const LayerWeights *L, const float *xn, int N, float *q_pre, float *k_pre,
                 float *q, float *k, float *v, float *rinv) {
    int H = c->n_heads, G = c->n_kv_heads, d = c->head_dim;
    if (!c->qk_norm) q_pre = q, k_pre = k;
    matmul_forward(q_pre, xn, &L->q, L->q_bias, N, 0);
    matmul_forward(k_pre, xn, &L->k, L->k_bias, N, 0);
    matmul_forward(v, xn, &L->v, L->v_bias, N, 0);
    if (!c->qk_norm) return;
    if (L->qk_rinv_fixed) {
        if (q != q_pre) memcpy(q, q_pre, (size_t)N * H * d * sizeof(float));
        if (k != k_pre) memcpy(k, k_pre, (size_t)N * G * d * sizeof(float));
        head_scale_forward(q, L->q_head_norm, L->qk_rinv_fixed, N, H, d);
        head_scale_forward(k, L->k_head_norm, L->qk_rinv_fixed + H, N, G, d);
        return;
    }
    head_rmsnorm_forward(q, rinv, H + G, q_pre, L->q_head_norm, N, H, d, c->rms_norm_eps);
    head_rmsnorm_forward(k, rinv ? rinv + H : NULL, H + G, k_pre, L->k_head_norm, N, G, d, c->rms_norm_eps);
}

void gqa_forward(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out,
                 const LayerRows *rows, GqaActs *a) {
    int B = rows->B, T = rows->T, N = B * T, H = c->n_heads, G = c->n_kv_heads, d = c->head_dim;
    gqa_project(c, L, xn, N, a->q_pre, a->k_pre, a->q, a->k, a->v, a->rinv);
    if (rows->hook) {
        AttnProjections p = {.N = N, .q = a->q, .k = a->k, .v = a->v, .qk_rinv = a->rinv};
        rows->hook(rows->hook_ctx, layer, &p);
    }
    RopeLayout q_rope = heads_layout(H, d), k_rope = heads_layout(G, d);
    rope_forward_pos(a->q, (int64_t)H * d, rows->rope, N, rows->pos, &q_rope);
    rope_forward_pos(a->k, (int64_t)G * d, rows->rope, N, rows->pos, &k_rope);
    attention_forward(a->att, a->lse, a->q, a->k, a->v, B, T, H, G, d, d, rows->doc_start,
                      hf_config_layer_window(c, layer), (float)hf_config_attn_scale(c), (float)c->attn_softcap);
    matmul_forward(out, a->att, &L->o, L->o_bias, N, 1);
}

void gqa_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *xn,
                  const float *dout, float *dxn, const LayerRows *rows, GqaActs *a) {
    int B = rows->B, T = rows->T, N = B * T, H = c->n_heads, Gk = c->n_kv_heads, d = c->head_dim;
    if (!a->dq) tm_die("gqa_backward: the activations were made for the forward alone");
    if (L->qk_rinv_fixed) tm_die("gqa_backward: a linearised QK-norm (qk_rinv_fixed) is not trainable");
    memset(a->datt, 0, (size_t)N * H * d * sizeof(float));
    matmul_backward(a->datt, tensor_grad_data(&G->o), G->o_bias, dout, a->att, &L->o, N);
    attention_backward(a->dq, a->dk, a->dv, a->datt, a->att, a->lse, a->q, a->k, a->v, B, T, H, Gk, d, d,
                       rows->doc_start, hf_config_layer_window(c, layer), (float)hf_config_attn_scale(c),
                       (float)c->attn_softcap);
    RopeLayout q_rope = heads_layout(H, d), k_rope = heads_layout(Gk, d);
    rope_backward_pos(a->dq, (int64_t)H * d, rows->rope, N, rows->pos, &q_rope);
    rope_backward_pos(a->dk, (int64_t)Gk * d, rows->rope, N, rows->pos, &k_rope);
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
