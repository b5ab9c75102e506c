/* Mixtral sparse MoE: softmax router over all experts, top-k, weights
 * renormalised to sum 1 (renorm; qwen3_moe without norm_topk_prob keeps the
 * softmax weights as they are); each expert a SwiGLU MLP run on the tokens routed
 * to it (gathered, so every expert is one GEMM pass). */
#ifndef TM_MODEL_MOE_H
#define TM_MODEL_MOE_H

#include "model/weights.h"

typedef struct {
    float *router_logits;  /* [N, E] */
    int *expert_of;        /* [N, k] chosen experts */
    float *weight_of;      /* [N, k] their (renormalised) weights */
    int *rows;             /* [N] token rows routed to the current expert */
    float *xe, *ye;        /* [N, D] gathered inputs / expert outputs */
    float *h1, *h2;        /* [N, inter] */
} MoeScratch;

void moe_scratch_init(MoeScratch *s, int N, int D, int inter, int E, int k);
void moe_scratch_free(MoeScratch *s);
/* The routing of N rows of router logits [N, E]: each row's k experts and
 * their weights ([N, k]), as moe_forward routes (the GPU's MoE too). */
void moe_route_rows(const float *logits, int N, int E, int k, int renorm, int *expert_of, float *weight_of);
/* out[N, D] += MoE(inp[N, D]) */
void moe_forward(float *out, const float *inp, const LayerWeights *L, int N, int D, int inter, int E, int k,
                 int renorm, MoeScratch *s);

/* The router's logit gradient dz [N, E] (overwritten) from dw [N, k], the
 * loss's gradient with respect to each row's k routing weights: through
 * the softmax over the k chosen logits (renorm) or over all E (logits [N,
 * E]); the selection itself has none. moe_backward's, and the GPU's. */
void moe_router_grad(float *dz, const float *logits, const int *expert_of, const float *weight_of, const float *dw,
                     int N, int E, int k, int renorm);
/* Backward of moe_forward (out += MoE(inp)), whose routing (router_logits,
 * expert_of, weight_of) is still in s: dinp[N, D] += dL/dinp; gradients of
 * the router and of each expert's gate/up/down accumulate into G->router.data
 * and G->experts[e].*.data (fp32; NULL data: frozen, skipped). Expert
 * activations are recomputed from inp. The router's gradient flows through
 * the top-k softmax weights, renormalised or not as in the forward
 * (selection itself has none). */
void moe_backward(float *dinp, LayerWeights *G, const float *dout, const float *inp, const LayerWeights *L, int N,
                  int D, int inter, int E, int k, int renorm, MoeScratch *s);

#endif
