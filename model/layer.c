/* One decoder layer, forward and backward (layer.h). */
#include "model/layer.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/gqa.h"
#include "model/matmul.h"
#include "model/mla.h"
#include "model/rmsnorm.h"
#include "model/swiglu.h"

/* Without backward, the forward runs in place: xn2 is xn, act is h1, x_mid is
 * the caller's x_out, and the sandwich norms' outputs are normed in xn. */
struct LayerActsImpl {
    float *xn, *rstd1;        /* input_norm output and rstd */
    float *x_mid;             /* backward: residual after attention */
    float *xn2, *rstd2;       /* post_norm output and rstd */
    float *h1, *h2, *act;     /* dense MLP: gate, up, act(gate) * up */
    /* sandwich norms: each block's output before its norm, and the norm's rstd */
    float *attn_o, *rstd_ao, *mlp_o, *rstd_mo;
    MoeScratch moe;           /* MoE layers: routing of the last forward */
    MlaActs mla;              /* deepseek_v3, gemma2_mla */
    GqaActs gqa;              /* the others */
    float *dx_mid, *dxn, *dh1, *dh2, *dact; /* gradient scratch; dxn also the sandwich norms' scratch */
    float *dblk;              /* sandwich norms: gradient at a block's output before its norm */
};

float *acts_alloc(uint64_t *bytes, size_t n, int count_only) {
    *bytes += n * sizeof(float);
    return count_only ? NULL : mallocCheck(n * sizeof(float));
}

static int is_mla(const ModelConfig *c) { return hf_config_is_mla(c); }

static void acts_make(struct LayerActsImpl *p, uint64_t *b, const ModelConfig *c, size_t N, int backward, int k) {
    size_t D = (size_t)c->hidden_size, I = (size_t)c->intermediate_size;
    p->xn = acts_alloc(b, N * D, k);
    p->rstd1 = acts_alloc(b, N, k);
    p->xn2 = backward ? acts_alloc(b, N * D, k) : p->xn;
    p->rstd2 = acts_alloc(b, N, k);
    if (hf_config_has_dense_layer(c)) {
        p->h1 = acts_alloc(b, N * I, k);
        p->h2 = acts_alloc(b, N * I, k);
        p->act = backward ? acts_alloc(b, N * I, k) : p->h1;
    }
    if (c->sandwich_norms) {
        p->attn_o = acts_alloc(b, N * D, k);
        p->rstd_ao = acts_alloc(b, N, k);
        p->mlp_o = backward ? acts_alloc(b, N * D, k) : p->attn_o;
        p->rstd_mo = acts_alloc(b, N, k);
    }
    if (is_mla(c)) mla_acts_init(&p->mla, c, (int)N, backward, k);
    else gqa_acts_init(&p->gqa, c, (int)N, backward, k);
    *b += is_mla(c) ? p->mla.bytes : p->gqa.bytes;
    if (!backward) return;
    p->x_mid = acts_alloc(b, N * D, k);
    if (backward == ACTS_SAVED) return;
    p->dx_mid = acts_alloc(b, N * D, k);
    p->dxn = acts_alloc(b, N * D, k);
    if (hf_config_has_dense_layer(c)) {
        p->dh1 = acts_alloc(b, N * I, k);
        p->dh2 = acts_alloc(b, N * I, k);
        p->dact = acts_alloc(b, N * I, k);
    }
    if (c->sandwich_norms) p->dblk = acts_alloc(b, N * D, k);
}

void layer_acts_init(LayerActs *a, const ModelConfig *c, int B, int T, int backward) {
    memset(a, 0, sizeof *a);
    a->B = B;
    a->T = T;
    a->backward = backward;
    struct LayerActsImpl *p = callocCheck(1, sizeof *p);
    a->impl = p;
    size_t N = (size_t)B * T;
    acts_make(p, &a->bytes, c, N, backward, 0);
    if (c->n_experts)
        moe_scratch_init(&p->moe, (int)N, c->hidden_size, c->expert_intermediate_size, c->n_experts,
                         c->n_experts_per_tok);
}

void layer_acts_init_sharing(LayerActs *a, const ModelConfig *c, int B, int T, const LayerActs *grads) {
    const struct LayerActsImpl *g = grads->impl;
    if (grads->backward != ACTS_BACKWARD || grads->B != B || grads->T != T)
        tm_die("layer_acts_init_sharing: the gradient scratch is not for %d x %d rows with backward", B, T);
    layer_acts_init(a, c, B, T, ACTS_SAVED);
    struct LayerActsImpl *p = a->impl;
    p->dx_mid = g->dx_mid, p->dxn = g->dxn, p->dh1 = g->dh1, p->dh2 = g->dh2, p->dact = g->dact, p->dblk = g->dblk;
    if (is_mla(c)) mla_acts_borrow_grads(&p->mla, &g->mla);
    else gqa_acts_borrow_grads(&p->gqa, &g->gqa);
}

uint64_t layer_acts_bytes(const ModelConfig *c, int B, int T, int backward) {
    struct LayerActsImpl p = {0};
    uint64_t bytes = 0;
    acts_make(&p, &bytes, c, (size_t)B * T, backward, 1);
    return bytes;
}

void layer_acts_free(LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    if (!p) return;
    if (a->backward) {
        float *kept[] = {p->xn2, p->act, p->mlp_o, p->x_mid};
        for (size_t i = 0; i < sizeof kept / sizeof *kept; i++) free(kept[i]);
    }
    if (a->backward == ACTS_BACKWARD) {
        float *grads[] = {p->dx_mid, p->dxn, p->dh1, p->dh2, p->dact, p->dblk};
        for (size_t i = 0; i < sizeof grads / sizeof *grads; i++) free(grads[i]);
    } else { /* borrowed (or none): not ours to free */
        mla_acts_borrow_grads(&p->mla, &(MlaActs){0});
        gqa_acts_borrow_grads(&p->gqa, &(GqaActs){0});
    }
    float *all[] = {p->xn, p->rstd1, p->rstd2, p->h1, p->h2, p->attn_o, p->rstd_ao, p->rstd_mo};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) free(all[i]);
    if (p->moe.rows) moe_scratch_free(&p->moe);
    mla_acts_free(&p->mla);
    gqa_acts_free(&p->gqa);
    free(p);
    memset(a, 0, sizeof *a);
}

float *layer_acts_scratch(const LayerActs *a) { return a->impl->xn; }

static int rows_fit(const LayerActs *a, int B, int T) { return T == a->T && B <= a->B; }

/* x_res += out_norm(o) over N rows, o the block's output alone (sandwich
 * norms); `normed` is scratch. */
static void add_normed(float *x_res, float *normed, float *rstd, const float *o, const float *out_norm, int N, int D,
                       double eps) {
    rmsnorm_forward_train(normed, rstd, o, out_norm, N, D, eps);
    int64_t n = (int64_t)N * D;
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) x_res[i] += normed[i];
}

void mlp_apply(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out, int N, float *h1,
               float *h2, float *act, MoeScratch *moe) {
    if (hf_config_layer_is_moe(c, layer)) {
        moe_forward(out, xn, L, N, c->hidden_size, c->expert_intermediate_size, c->n_experts, c->n_experts_per_tok,
                    !c->moe_topk_raw, moe);
        return;
    }
    int64_t NI = (int64_t)N * c->intermediate_size;
    matmul_forward(h1, xn, &L->gate, L->gate_bias, N, 0);
    matmul_forward(h2, xn, &L->up, L->up_bias, N, 0);
    if (c->gelu_mlp) geglu_forward_out(act, h1, h2, NI);
    else swiglu_forward_out(act, h1, h2, NI);
    matmul_forward(out, act, &L->down, L->down_bias, N, 1);
}

void layer_attention(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out,
                     const LayerRows *rows, LayerActs *a) {
    if (!rows_fit(a, rows->B, rows->T))
        tm_die("layer_attention: %d x %d rows in activations for %d x %d", rows->B, rows->T, a->B, a->T);
    if (is_mla(c)) mla_forward(c, L, layer, xn, out, rows, &a->impl->mla);
    else gqa_forward(c, L, layer, xn, out, rows, &a->impl->gqa);
}

/* One of the layer's two blocks: out += its output of `in`. */
typedef void (*BlockFn)(const ModelConfig *c, const LayerWeights *L, int layer, const float *in, float *out,
                        const LayerRows *rows, LayerActs *a);

static void attn_block(const ModelConfig *c, const LayerWeights *L, int layer, const float *in, float *out,
                       const LayerRows *rows, LayerActs *a) {
    layer_attention(c, L, layer, in, out, rows, a);
}

static void mlp_block(const ModelConfig *c, const LayerWeights *L, int layer, const float *in, float *out,
                      const LayerRows *rows, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    mlp_apply(c, L, layer, in, out, rows->B * rows->T, p->h1, p->h2, p->act, &p->moe);
}

/* res = x_in + the block's output. The block adds its output into res itself,
 * or with sandwich norms into o (zeroed first), which is then normed and
 * added. res may be x_in. */
static void residual_block(const ModelConfig *c, const LayerWeights *L, int layer, BlockFn block, const float *in,
                           const float *x_in, float *res, float *o, const float *out_norm, float *rstd,
                           const LayerRows *rows, LayerActs *a) {
    int N = rows->B * rows->T, D = c->hidden_size;
    size_t ND = (size_t)N * D;
    if (!c->sandwich_norms) {
        if (res != x_in) memcpy(res, x_in, ND * sizeof(float));
        block(c, L, layer, in, res, rows, a);
        return;
    }
    memset(o, 0, ND * sizeof(float));
    block(c, L, layer, in, o, rows, a);
    if (res != x_in) memcpy(res, x_in, ND * sizeof(float));
    /* the norm's output needs scratch: the gradient buffer, or the block's input, no longer needed */
    float *scratch = a->backward ? a->impl->dxn : (float *)in;
    add_normed(res, scratch, rstd, o, out_norm, N, D, c->rms_norm_eps);
}

/* x_out = x_mid + the MLP block of post_norm(x_mid) (x_out may be x_mid
 * without backward). */
static void mlp_half(const ModelConfig *c, const LayerWeights *L, int layer, const float *x_mid, float *x_out,
                     const LayerRows *rows, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int N = rows->B * rows->T;
    rmsnorm_forward_train(p->xn2, p->rstd2, x_mid, L->post_norm, N, c->hidden_size, c->rms_norm_eps);
    residual_block(c, L, layer, mlp_block, p->xn2, x_mid, x_out, p->mlp_o, L->mlp_out_norm, p->rstd_mo, rows, a);
}

void layer_forward(const ModelConfig *c, const LayerWeights *L, int layer, const float *x_in, float *x_out,
                   const LayerRows *rows, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int N = rows->B * rows->T, D = c->hidden_size;
    if (a->backward && x_out == x_in) tm_die("layer_forward: in place with activations kept for the backward pass");
    float *x_mid = a->backward ? p->x_mid : x_out;
    rmsnorm_forward_train(p->xn, p->rstd1, x_in, L->input_norm, N, D, c->rms_norm_eps);
    residual_block(c, L, layer, attn_block, p->xn, x_in, x_mid, p->attn_o, L->attn_out_norm, p->rstd_ao, rows, a);
    mlp_half(c, L, layer, x_mid, x_out, rows, a);
}

void layer_mlp_block(const ModelConfig *c, const LayerWeights *L, int layer, float *x, int B, LayerActs *a) {
    if (a->backward || B > a->B)
        tm_die("layer_mlp_block: wants activations for the forward alone of at least %d sequences (%d, backward %d)",
               B, a->B, a->backward);
    LayerRows rows = {.B = B, .T = a->T};
    mlp_half(c, L, layer, x, x, &rows, a);
}

/* The gradient at a block's output before its sandwich norm (in p->dblk)
 * from dres, the gradient of the residual it was added to; without sandwich
 * norms dres itself. */
static const float *block_out_grad(const ModelConfig *c, float *dweight, const float *dres, const float *o,
                                   const float *out_norm, const float *rstd, int N, LayerActs *a) {
    if (!c->sandwich_norms) return dres;
    float *d = a->impl->dblk;
    int D = c->hidden_size;
    memset(d, 0, (size_t)N * D * sizeof(float));
    rmsnorm_backward(d, dweight, dres, o, out_norm, rstd, N, D);
    return d;
}

/* p->dxn = dL/dxn2 given dy, the gradient at the MLP's (pre-norm) output. */
static void mlp_backward_part(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer,
                              const float *dy, int N, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int D = c->hidden_size;
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
                    const float *dx_out, float *dx_in, const LayerRows *rows, LayerActs *a) {
    struct LayerActsImpl *p = a->impl;
    int N = rows->B * rows->T, D = c->hidden_size;
    size_t ND = (size_t)N * D;
    if (!a->backward) tm_die("layer_backward: the activations were made for the forward alone");
    /* MLP: dxn2 (in dxn) from dx_out, then the residual and post_norm into dx_mid */
    const float *dy = block_out_grad(c, G->mlp_out_norm, dx_out, p->mlp_o, L->mlp_out_norm, p->rstd_mo, N, a);
    mlp_backward_part(c, L, G, layer, dy, N, a);
    memcpy(p->dx_mid, dx_out, ND * sizeof(float));
    rmsnorm_backward(p->dx_mid, G->post_norm, p->dxn, p->x_mid, L->post_norm, p->rstd2, N, D);
    /* attention: dxn from dx_mid, then the residual and input_norm into dx_in */
    dy = block_out_grad(c, G->attn_out_norm, p->dx_mid, p->attn_o, L->attn_out_norm, p->rstd_ao, N, a);
    memset(p->dxn, 0, ND * sizeof(float));
    if (is_mla(c)) mla_backward(c, L, G, layer, p->xn, dy, p->dxn, rows, &p->mla);
    else gqa_backward(c, L, G, layer, p->xn, dy, p->dxn, rows, &p->gqa);
    memcpy(dx_in, p->dx_mid, ND * sizeof(float)); /* dx_out is no longer read: dx_in may alias it */
    rmsnorm_backward(dx_in, G->input_norm, p->dxn, x_in, L->input_norm, p->rstd1, N, D);
}
