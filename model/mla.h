/* Multi-head latent attention (DeepSeek-V3) block, the non-absorbed form
 * used for whole sequences (keys and values of every head expanded from the
 * latent by kv_b_proj): forward and backward. The absorbed form for decoding
 * is in model/decode.c. */
#ifndef TM_MODEL_MLA_H
#define TM_MODEL_MLA_H

#include <stdint.h>

#include "model/latent_norm.h"
#include "model/layer.h"

typedef struct {
    int N;
    float *qa, *qan, *rstd_q;  /* q_lora: q_a output, its norm (== qa without latent norms), rstd */
    float *q;                  /* [N, H*(dn+dr)] after RoPE */
    float *lat;                /* [N, R+dr] kv_a output, k_pe roped */
    float *craw, *cn, *rstd_c; /* [N, R] latent before / after kv_a_layernorm */
    float *kvb;                /* [N, H*(dn+dv)] kv_b's output; the backward pass's dkvb */
    float *k, *v;              /* [N, H*(dn+dr)], [N, H*dv] per-head keys and values */
    float *att, *lse;          /* [N, H*dv], [N, H] (backward only) */
    /* gradient scratch (backward only) */
    float *dq, *dk, *dv, *datt, *dlat, *dc, *dcr, *dqa, *dqan;
    uint64_t bytes;
} MlaActs;

/* backward: an ActsMode. Without backward, qan is qa and craw is cn (normed
 * in place). */
void mla_acts_init(MlaActs *a, const ModelConfig *c, int N, int backward, int count_only);
/* a's gradient scratch pointers := from's (a made with ACTS_SAVED; an empty
 * `from` clears them again before mla_acts_free). */
void mla_acts_borrow_grads(MlaActs *a, const MlaActs *from);
/* What mla_acts_init(backward 1) allocates. */
uint64_t mla_acts_bytes(const ModelConfig *c, int N);
void mla_acts_free(MlaActs *a);

/* q [N, H*(dn+dr)] = the queries of xn, through q_proj, or q_a (into qa),
 * q_a_layernorm (into qan, rstd in rstd_q; qan may be qa) and q_b. Before
 * RoPE. The decoder's too. */
void mla_queries(const ModelConfig *c, const LayerWeights *L, const float *xn, int N, float *qa, float *qan,
                 float *rstd_q, float *q);
/* cn [N, R] = the latent kv_b_proj reads, from lat [N, R+dr]: a contiguous
 * copy (into craw; craw may be cn), RMS-normed when the model applies latent
 * norms (rstd in rstd_c). The decoder's too. */
void mla_latent(const ModelConfig *c, const LayerWeights *L, const float *lat, int N, float *craw, float *cn,
                float *rstd_c);

/* out += o_proj(MLA(xn)). */
void mla_forward(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out,
                 const LayerRows *rows, MlaActs *a);
void mla_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *xn,
                  const float *dout, float *dxn, const LayerRows *rows, MlaActs *a);

#endif
