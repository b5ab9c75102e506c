/* The GQA attention block (model/forward.c's gqa_attention_block: llama,
 * qwen2, mistral without a window, qwen3's per-head QK-norm) for training: a
 * forward pass that keeps its activations and the backward pass. Packed
 * sequences: per-row RoPE positions and document starts (see
 * attention_forward_train). */
#ifndef TM_MODEL_GQA_TRAIN_H
#define TM_MODEL_GQA_TRAIN_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    int N;
    float *q, *k, *v;         /* [N, H*d], [N, G*d], [N, G*d]: q and k normed (qk_norm) and roped */
    float *q_pre, *k_pre;     /* qk_norm: q and k projections before the norm */
    float *rinv;              /* qk_norm: [N, H+G] 1/rms of each query head then each key head */
    float *att, *lse;         /* [N, H*d], [N, H] */
    /* gradient scratch */
    float *dq, *dk, *dv, *datt, *dq_pre, *dk_pre;
    uint64_t bytes;
} GqaActs;

void gqa_acts_init(GqaActs *a, const ModelConfig *c, int N);
void gqa_acts_free(GqaActs *a);
/* x[N, D] += o_proj(attention(xn)), activations kept in a. */
void gqa_forward_train(const ModelConfig *c, const LayerWeights *L, const float *xn, float *x, int B, int T,
                       const int32_t *pos, const int32_t *doc_start, const RopeTable *rope, GqaActs *a);
/* dxn[N, D] += dL/dxn given dout = dL/d(block output); parameter gradients
 * (q/k/v/o, their biases, q_norm/k_norm) accumulate into G (NULL members
 * frozen). */
void gqa_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, const float *xn, const float *dout,
                  float *dxn, int B, int T, const int32_t *pos, const int32_t *doc_start, const RopeTable *rope,
                  GqaActs *a);

#endif
