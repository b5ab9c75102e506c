/* The MLA attention block (model/mla.c) for training: a forward pass that
 * keeps its activations and the backward pass. Packed sequences: per-row RoPE
 * positions and document starts (see attention_forward_train). */
#ifndef TM_MODEL_MLA_TRAIN_H
#define TM_MODEL_MLA_TRAIN_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    int N;
    float *qa, *qan, *rstd_q;  /* q_lora: q_a output, its norm (== qa without latent norms), rstd */
    float *q;                  /* [N, H*(dn+dr)] after RoPE */
    float *lat;                /* [N, R+dr] kv_a output, k_pe roped */
    float *craw, *cn, *rstd_c; /* [N, R] latent before / after kv_a_layernorm */
    float *k, *v;              /* [N, H*(dn+dr)], [N, H*dv] per-head keys and values */
    float *att, *lse;          /* [N, H*dv], [N, H] */
    /* gradient scratch */
    float *dq, *dk, *dv, *datt, *dlat, *dc, *dcr, *dkvb, *dqa, *dqan;
    uint64_t bytes;
} MlaActs;

void mla_acts_init(MlaActs *a, const ModelConfig *c, int N);
/* What mla_acts_init allocates for N rows (plan's estimates use it). */
uint64_t mla_acts_bytes(const ModelConfig *c, int N);
void mla_acts_free(MlaActs *a);
/* x[N, D] += o_proj(MLA(xn)), activations kept in a. */
void mla_forward_train(const ModelConfig *c, const LayerWeights *L, const float *xn, float *x, int B, int T,
                       const int32_t *pos, const int32_t *doc_start, const RopeTable *rope, MlaActs *a);
/* dxn[N, D] += dL/dxn given dout = dL/d(block output); parameter gradients
 * accumulate into G (NULL members frozen). */
void mla_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, const float *xn, const float *dout,
                  float *dxn, int B, int T, const int32_t *pos, const int32_t *doc_start, const RopeTable *rope,
                  MlaActs *a);

#endif
