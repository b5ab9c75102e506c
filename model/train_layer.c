/* One decoder layer, forward (keeping activations) and backward:
 * x_mid = x + attention(input_norm(x)); x_out = x_mid + MLP(post_norm(x_mid)),
 * the attention MLA (deepseek_v3) or GQA (with qwen3's QK-norm). */
#include "model/train_layer.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "model/gqa_train.h"
#include "model/matmul.h"
#include "model/mla_train.h"
#include "model/rmsnorm.h"
#include "model/swiglu.h"

struct LayerActsImpl {
    float *xn, *rstd1;        /* input_norm output and rstd */
    float *x_mid;             /* residual after attention */
    float *xn2, *rstd2;       /* post_norm output and rstd */
    float *h1, *h2, *act;     /* dense MLP: gate, up, silu(gate) * up */
    MoeScratch moe;           /* MoE layers: routing of the last forward */
    MlaActs mla;              /* deepseek_v3 */
    GqaActs gqa;              /* the others */
    float *dx_mid, *dxn, *dh1, *dh2, *dact; /* gradient scratch */
};

static float *alloc_f(LayerActs *a, size_t n) {
    a->bytes += n * sizeof(float);
    return mallocCheck(n * sizeof(float));
}

static int is_mla(const ModelConfig *c) { return hf_config_is_mla(c); }

void layer_acts_init(LayerActs *a, const ModelConfig *c, int B, int T) {
    if (c->arch == TM_ARCH_GEMMA2) tm_die("training: gemma2 layers are not supported"); /* caps, GeGLU, sandwich norms */
    if (c->sliding_window) tm_die("training: %s layers with a sliding window are not supported", tm_arch_name(c->arch));
    memset(a, 0, sizeof *a);
    a->B = B;
    a->T = T;
    struct LayerActsImpl *p = callocCheck(1, sizeof *p);
    a->impl = p;
    size_t N = (size_t)B * T, D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    p->xn = alloc_f(a, N * D);
    p->rstd1 = alloc_f(a, N);
    p->x_mid = alloc_f(a, N * D);
    p->xn2 = alloc_f(a, N * D);
    p->rstd2 = alloc_f(a, N);
    p->dx_mid = alloc_f(a, N * D);
    p->dxn = alloc_f(a, N * D);
    if (hf_config_has_dense_layer(c)) {
        p->h1 = alloc_f(a, N * I);
        p->h2 = alloc_f(a, N * I);
        p->act = alloc_f(a, N * I);
        p->dh1 = alloc_f(a, N * I);
        p->dh2 = alloc_f(a, N * I);
        p->dact = alloc_f(a, N * I);
    }
    if (c->n_experts)
        moe_scratch_init(&p->moe, (int)N, (int)D, c->expert_intermediate_size, c->n_experts, c->n_experts_per_tok);
    if (is_mla(c)) {
        mla_acts_init(&p->mla, c, (int)N);
        a->bytes += p->mla.bytes;
    } else {
        gqa_acts_init(&p->gqa, c, (int)N);
        a->bytes += p->gqa.bytes;
    }
}

void layer_acts_free(LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    if (!p) return;
    float *all[] = {p->xn, p->rstd1, p->x_mid, p->xn2, p->rstd2, p->h1, p->h2, p->act,
                    p->dx_mid, p->dxn, p->dh1, p->dh2, p->dact};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    if (p->moe.rows) moe_scratch_free(&p->moe);
    mla_acts_free(&p->mla);
    gqa_acts_free(&p->gqa);
    free(p);
    memset(a, 0, sizeof *a);
}

void layer_forward_train(const ModelConfig *c, const LayerWeights *L, int layer, const float *x_in, float *x_out,
                         const int32_t *pos, const int32_t *doc_start, const RopeTable *rope, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int B = a->B, T = a->T, N = B * T, D = c->hidden_size;
    rmsnorm_forward_train(p->xn, p->rstd1, x_in, L->input_norm, N, D, c->rms_norm_eps);
    memcpy(p->x_mid, x_in, (size_t)N * D * sizeof(float));
    if (is_mla(c)) mla_forward_train(c, L, p->xn, p->x_mid, B, T, pos, doc_start, rope, &p->mla);
    else gqa_forward_train(c, L, p->xn, p->x_mid, B, T, pos, doc_start, rope, &p->gqa);
    rmsnorm_forward_train(p->xn2, p->rstd2, p->x_mid, L->post_norm, N, D, c->rms_norm_eps);
    memcpy(x_out, p->x_mid, (size_t)N * D * sizeof(float));
    if (hf_config_layer_is_moe(c, layer)) {
        moe_forward(x_out, p->xn2, L, N, D, c->expert_intermediate_size, c->n_experts, c->n_experts_per_tok,
                    !c->moe_topk_raw, &p->moe);
        return;
    }
    int64_t NI = (int64_t)N * c->intermediate_size;
    matmul_forward(p->h1, p->xn2, &L->gate, L->gate_bias, N, 0);
    matmul_forward(p->h2, p->xn2, &L->up, L->up_bias, N, 0);
    swiglu_forward_out(p->act, p->h1, p->h2, NI);
    matmul_forward(x_out, p->act, &L->down, L->down_bias, N, 1);
}

void layer_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *x_in,
                    const float *dx_out, float *dx_in, const int32_t *pos, const int32_t *doc_start,
                    const RopeTable *rope, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int B = a->B, T = a->T, N = B * T, D = c->hidden_size;
    size_t ND = (size_t)N * D;
    /* MLP: dxn2 (in dxn) from dx_out, then the residual and post_norm into dx_mid */
    memset(p->dxn, 0, ND * sizeof(float));
    if (hf_config_layer_is_moe(c, layer)) {
        moe_backward(p->dxn, G, dx_out, p->xn2, L, N, D, c->expert_intermediate_size, c->n_experts,
                     c->n_experts_per_tok, !c->moe_topk_raw, &p->moe);
    } else {
        int64_t NI = (int64_t)N * c->intermediate_size;
        memset(p->dact, 0, (size_t)NI * sizeof(float));
        matmul_backward(p->dact, tensor_grad_data(&G->down), G->down_bias, dx_out, p->act, &L->down, N);
        swiglu_backward(p->dh1, p->dh2, p->dact, p->h1, p->h2, NI);
        matmul_backward(p->dxn, tensor_grad_data(&G->gate), G->gate_bias, p->dh1, p->xn2, &L->gate, N);
        matmul_backward(p->dxn, tensor_grad_data(&G->up), G->up_bias, p->dh2, p->xn2, &L->up, N);
    }
    memcpy(p->dx_mid, dx_out, ND * sizeof(float));
    rmsnorm_backward(p->dx_mid, G->post_norm, p->dxn, p->x_mid, L->post_norm, p->rstd2, N, D);
    /* attention: dxn from dx_mid, then the residual and input_norm into dx_in */
    memset(p->dxn, 0, ND * sizeof(float));
    if (is_mla(c)) mla_backward(c, L, G, p->xn, p->dx_mid, p->dxn, B, T, pos, doc_start, rope, &p->mla);
    else gqa_backward(c, L, G, p->xn, p->dx_mid, p->dxn, B, T, pos, doc_start, rope, &p->gqa);
    memcpy(dx_in, p->dx_mid, ND * sizeof(float)); /* dx_out is no longer read: dx_in may alias it */
    rmsnorm_backward(dx_in, G->input_norm, p->dxn, x_in, L->input_norm, p->rstd1, N, D);
}
