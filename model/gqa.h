/* Grouped-query attention block (llama, qwen2, mistral, phi3, mixtral, qwen3
 * with its QK-norm, qwen3_moe, gemma2): forward and backward. */
#ifndef TM_MODEL_GQA_H
#define TM_MODEL_GQA_H

#include <stdint.h>

#include "model/layer.h"

typedef struct {
    int N;
    float *q, *k, *v;         /* [N, H*d], [N, G*d], [N, G*d]: q and k normed (qk_norm) and roped */
    float *q_pre, *k_pre;     /* qk_norm: q and k projections before the norm (q, k themselves: normed in place,
                               * without backward) */
    float *rinv;              /* qk_norm: [N, H+G] 1/rms of each query head then each key head */
    float *att, *lse;         /* [N, H*d], [N, H] (backward only) */
    /* gradient scratch (backward only) */
    float *dq, *dk, *dv, *datt, *dq_pre, *dk_pre;
    uint64_t bytes;
} GqaActs;

/* Allocates (counting into a->bytes) or, with count_only, only counts;
 * backward: an ActsMode. */
void gqa_acts_init(GqaActs *a, const ModelConfig *c, int N, int backward, int count_only);
/* As mla_acts_borrow_grads. */
void gqa_acts_borrow_grads(GqaActs *a, const GqaActs *from);
void gqa_acts_free(GqaActs *a);

/* q, k, v of N rows of xn (biases added), then for qk_norm models the
 * per-head QK-norm from q_pre/k_pre into q/k (which may be the same buffers)
 * with each head's 1/rms in rinv [N, H+G] (NULL: not kept) (the fixed ones of a linearised
 * model, L->qk_rinv_fixed, when it has them); before RoPE. The decoder's too. */
void gqa_project(const ModelConfig *c, const LayerWeights *L, const float *xn, int N, float *q_pre, float *k_pre,
                 float *q, float *k, float *v, float *rinv);

/* out += o_proj(attention(rope(q), rope(k), v)) of xn. */
void gqa_forward(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out,
                 const LayerRows *rows, GqaActs *a);
void gqa_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *xn,
                  const float *dout, float *dxn, const LayerRows *rows, GqaActs *a);

#endif
