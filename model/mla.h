/* Multi-head latent attention (DeepSeek-V3), the non-absorbed form used for
 * whole sequences: keys and values of every head are expanded from the
 * latent by kv_b_proj. The absorbed form for decoding is in model/decode.h. */
#ifndef TM_MODEL_MLA_H
#define TM_MODEL_MLA_H

#include "model/model.h"

/* transformers' DeepseekV3RMSNorm default, which q_a/kv_a_layernorm keep */
#define TM_MLA_LATENT_NORM_EPS 1e-6

/* ws->q = the queries of ws->xn, through q_proj or q_a/q_a_layernorm/q_b (N rows). */
void mla_queries(const ModelConfig *c, const LayerWeights *L, const float *xn, int N, Workspace *ws);
/* The latent kv_b_proj reads, from ws->lat: a contiguous [N, R] copy,
 * RMS-normed when the model applies latent norms. */
void mla_latent(const ModelConfig *c, const LayerWeights *L, int N, Workspace *ws);
/* x += o_proj(MLA(xn)) for layer `layer`. */
void mla_attention_block(const ModelConfig *c, const LayerWeights *L, int layer, Workspace *ws);

#endif
