/* One decoder layer, forward (keeping activations) and backward:
 * x_mid = x + attention(input_norm(x)); x_out = x_mid + MLP(post_norm(x_mid)),
 * the attention MLA (deepseek_v3, gemma2_mla) or GQA (with qwen3's QK-norm),
 * the MLP SwiGLU or GeGLU (gemma2). With sandwich norms (gemma2) each block's
 * output is normed before its residual add: x_mid = x + attn_out_norm(attention(..)). */
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
    float *h1, *h2, *act;     /* dense MLP: gate, up, act(gate) * up */
    /* sandwich norms: each block's output before its norm, and the norm's rstd */
    float *attn_o, *rstd_ao, *mlp_o, *rstd_mo;
    int32_t *doc_win;         /* windowed layers: doc_start with the window composed in */
    MoeScratch moe;           /* MoE layers: routing of the last forward */
    MlaActs mla;              /* deepseek_v3, gemma2_mla */
    GqaActs gqa;              /* the others */
    float *dx_mid, *dxn, *dh1, *dh2, *dact; /* gradient scratch */
    float *dblk;              /* sandwich norms: gradient at a block's output before its norm */
};

static float *alloc_f(LayerActs *a, size_t n) {
    a->bytes += n * sizeof(float);
    return mallocCheck(n * sizeof(float));
}

static int is_mla(const ModelConfig *c) { return hf_config_is_mla(c); }

static int any_window(const ModelConfig *c) {
    for (int l = 0; l < c->n_layers; l++)
        if (hf_config_layer_window(c, l)) return 1;
    return 0;
}

static void dense_mlp_init(LayerActs *a, struct LayerActsImpl *p, size_t NI) {
    p->h1 = alloc_f(a, NI);
    p->h2 = alloc_f(a, NI);
    p->act = alloc_f(a, NI);
    p->dh1 = alloc_f(a, NI);
    p->dh2 = alloc_f(a, NI);
    p->dact = alloc_f(a, NI);
}

static void sandwich_init(LayerActs *a, struct LayerActsImpl *p, size_t N, size_t D) {
    p->attn_o = alloc_f(a, N * D);
    p->rstd_ao = alloc_f(a, N);
    p->mlp_o = alloc_f(a, N * D);
    p->rstd_mo = alloc_f(a, N);
    p->dblk = alloc_f(a, N * D);
}

void layer_acts_init(LayerActs *a, const ModelConfig *c, int B, int T) {
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
    if (hf_config_has_dense_layer(c)) dense_mlp_init(a, p, N * I);
    if (c->sandwich_norms) sandwich_init(a, p, N, D);
    if (any_window(c)) {
        p->doc_win = mallocCheck(N * sizeof *p->doc_win);
        a->bytes += N * sizeof *p->doc_win;
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
    float *all[] = {p->xn, p->rstd1, p->x_mid, p->xn2, p->rstd2, p->h1, p->h2, p->act, p->attn_o, p->rstd_ao,
                    p->mlp_o, p->rstd_mo, p->dx_mid, p->dxn, p->dh1, p->dh2, p->dact, p->dblk};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    free(p->doc_win);
    if (p->moe.rows) moe_scratch_free(&p->moe);
    mla_acts_free(&p->mla);
    gqa_acts_free(&p->gqa);
    free(p);
    memset(a, 0, sizeof *a);
}

/* The first key each row sees in layer `layer`: its document's start, or
 * later where the layer's window ends first (a window is a document that
 * starts window-1 rows back). Returns doc_start itself for full layers. */
static const int32_t *layer_doc_start(const ModelConfig *c, int layer, const int32_t *doc_start, LayerActs *a) {
    int window = hf_config_layer_window(c, layer), T = a->T, N = a->B * a->T;
    if (!window) return doc_start;
    int32_t *w = a->impl->doc_win;
    for (int i = 0; i < N; i++) {
        int t = i % T, lo = t - window + 1, doc = doc_start ? doc_start[i] : 0;
        w[i] = lo > doc ? lo : doc;
    }
    return w;
}

/* x_res += out_norm(o) over N rows, o the block's output alone (sandwich norms). */
static void add_normed(float *x_res, float *normed, float *rstd, const float *o, const float *out_norm, int N, int D,
                       double eps) {
    rmsnorm_forward_train(normed, rstd, o, out_norm, N, D, eps);
    int64_t n = (int64_t)N * D;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) x_res[i] += normed[i];
}

/* x_mid = x_in + the attention block of xn (through attn_out_norm with sandwich norms). */
static void attention_forward_part(const ModelConfig *c, const LayerWeights *L, const float *x_in,
                                   const int32_t *pos, const int32_t *doc, const RopeTable *rope, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int B = a->B, T = a->T, N = B * T, D = c->hidden_size;
    size_t ND = (size_t)N * D;
    /* the block adds o_proj's output into its target: x_mid itself, or a zeroed o for the sandwich norm */
    float *target = c->sandwich_norms ? p->attn_o : p->x_mid;
    if (c->sandwich_norms) memset(p->attn_o, 0, ND * sizeof(float));
    else memcpy(p->x_mid, x_in, ND * sizeof(float));
    if (is_mla(c)) mla_forward_train(c, L, p->xn, target, B, T, pos, doc, rope, &p->mla);
    else gqa_forward_train(c, L, p->xn, target, B, T, pos, doc, rope, &p->gqa);
    if (!c->sandwich_norms) return;
    memcpy(p->x_mid, x_in, ND * sizeof(float));
    add_normed(p->x_mid, p->dxn, p->rstd_ao, p->attn_o, L->attn_out_norm, N, D, c->rms_norm_eps);
}

/* x_out = x_mid + the MLP (or MoE) of xn2 (through mlp_out_norm with sandwich norms). */
static void mlp_forward_part(const ModelConfig *c, const LayerWeights *L, int layer, float *x_out, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int N = a->B * a->T, D = c->hidden_size;
    size_t ND = (size_t)N * D;
    float *target = c->sandwich_norms ? p->mlp_o : x_out;
    if (c->sandwich_norms) memset(p->mlp_o, 0, ND * sizeof(float));
    else memcpy(x_out, p->x_mid, ND * sizeof(float));
    if (hf_config_layer_is_moe(c, layer)) {
        moe_forward(target, p->xn2, L, N, D, c->expert_intermediate_size, c->n_experts, c->n_experts_per_tok,
                    !c->moe_topk_raw, &p->moe);
    } else {
        int64_t NI = (int64_t)N * c->intermediate_size;
        matmul_forward(p->h1, p->xn2, &L->gate, L->gate_bias, N, 0);
        matmul_forward(p->h2, p->xn2, &L->up, L->up_bias, N, 0);
        if (c->gelu_mlp) geglu_forward_out(p->act, p->h1, p->h2, NI);
        else swiglu_forward_out(p->act, p->h1, p->h2, NI);
        matmul_forward(target, p->act, &L->down, L->down_bias, N, 1);
    }
    if (!c->sandwich_norms) return;
    memcpy(x_out, p->x_mid, ND * sizeof(float));
    add_normed(x_out, p->dxn, p->rstd_mo, p->mlp_o, L->mlp_out_norm, N, D, c->rms_norm_eps);
}

void layer_forward_train(const ModelConfig *c, const LayerWeights *L, int layer, const float *x_in, float *x_out,
                         const int32_t *pos, const int32_t *doc_start, const RopeTable *rope, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int N = a->B * a->T, D = c->hidden_size;
    rmsnorm_forward_train(p->xn, p->rstd1, x_in, L->input_norm, N, D, c->rms_norm_eps);
    attention_forward_part(c, L, x_in, pos, layer_doc_start(c, layer, doc_start, a), rope, a);
    rmsnorm_forward_train(p->xn2, p->rstd2, p->x_mid, L->post_norm, N, D, c->rms_norm_eps);
    mlp_forward_part(c, L, layer, x_out, a);
}

/* The gradient at a block's output before its sandwich norm (in p->dblk)
 * from dres, the gradient of the residual it was added to; without sandwich
 * norms dres itself. */
static const float *block_out_grad(const ModelConfig *c, float *dweight, const float *dres, const float *o,
                                   const float *out_norm, const float *rstd, LayerActs *a) {
    if (!c->sandwich_norms) return dres;
    float *d = a->impl->dblk;
    int N = a->B * a->T, D = c->hidden_size;
    memset(d, 0, (size_t)N * D * sizeof(float));
    rmsnorm_backward(d, dweight, dres, o, out_norm, rstd, N, D);
    return d;
}

/* p->dxn = dL/dxn2 given dy, the gradient at the MLP's (pre-norm) output. */
static void mlp_backward_part(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer,
                              const float *dy, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int N = a->B * a->T, D = c->hidden_size;
    memset(p->dxn, 0, (size_t)N * D * sizeof(float));
    if (hf_config_layer_is_moe(c, layer)) {
        moe_backward(p->dxn, G, dy, p->xn2, L, N, D, c->expert_intermediate_size, c->n_experts,
                     c->n_experts_per_tok, !c->moe_topk_raw, &p->moe);
        return;
    }
    int64_t NI = (int64_t)N * c->intermediate_size;
    memset(p->dact, 0, (size_t)NI * sizeof(float));
    matmul_backward(p->dact, tensor_grad_data(&G->down), G->down_bias, dy, p->act, &L->down, N);
    if (c->gelu_mlp) geglu_backward(p->dh1, p->dh2, p->dact, p->h1, p->h2, NI);
    else swiglu_backward(p->dh1, p->dh2, p->dact, p->h1, p->h2, NI);
    matmul_backward(p->dxn, tensor_grad_data(&G->gate), G->gate_bias, p->dh1, p->xn2, &L->gate, N);
    matmul_backward(p->dxn, tensor_grad_data(&G->up), G->up_bias, p->dh2, p->xn2, &L->up, N);
}

void layer_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *x_in,
                    const float *dx_out, float *dx_in, const int32_t *pos, const int32_t *doc_start,
                    const RopeTable *rope, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int B = a->B, T = a->T, N = B * T, D = c->hidden_size;
    size_t ND = (size_t)N * D;
    /* MLP: dxn2 (in dxn) from dx_out, then the residual and post_norm into dx_mid */
    const float *dy = block_out_grad(c, G->mlp_out_norm, dx_out, p->mlp_o, L->mlp_out_norm, p->rstd_mo, a);
    mlp_backward_part(c, L, G, layer, dy, a);
    memcpy(p->dx_mid, dx_out, ND * sizeof(float));
    rmsnorm_backward(p->dx_mid, G->post_norm, p->dxn, p->x_mid, L->post_norm, p->rstd2, N, D);
    /* attention: dxn from dx_mid, then the residual and input_norm into dx_in */
    dy = block_out_grad(c, G->attn_out_norm, p->dx_mid, p->attn_o, L->attn_out_norm, p->rstd_ao, a);
    const int32_t *doc = layer_doc_start(c, layer, doc_start, a);
    memset(p->dxn, 0, ND * sizeof(float));
    if (is_mla(c)) mla_backward(c, L, G, p->xn, dy, p->dxn, B, T, pos, doc, rope, &p->mla);
    else gqa_backward(c, L, G, p->xn, dy, p->dxn, B, T, pos, doc, rope, &p->gqa);
    memcpy(dx_in, p->dx_mid, ND * sizeof(float)); /* dx_out is no longer read: dx_in may alias it */
    rmsnorm_backward(dx_in, G->input_norm, p->dxn, x_in, L->input_norm, p->rstd1, N, D);
}
