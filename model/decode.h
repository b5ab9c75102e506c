/* Token-by-token greedy decoding with a KV cache. MLA models run the
 * absorbed form: the cache holds only the normed latent and the rotated rope
 * key (kv_lora_rank + qk_rope_head_dim floats per token and layer); kv_b_proj
 * is folded into the query (keys) and the output (values), so per-head keys
 * and values are never formed. GQA models cache rotated K and V per kv head. */
#ifndef TM_MODEL_DECODE_H
#define TM_MODEL_DECODE_H

#include "model/model.h"

/* One step's rows (one per sequence): the layer's projections and blocks
 * through the same functions as the whole-sequence forward (model/gqa.h,
 * model/mla.h, mlp_apply); attention against the cache is the decoder's own. */
typedef struct {
    float *x, *xn, *o;          /* [batch, D]: residual, block input, block output (sandwich norms) */
    float *q, *k, *v, *att;     /* queries, GQA keys and values, attention output */
    float *lat, *cn;            /* MLA: kv_a output (or q_a's), the latent (or q_a's norm) */
    float *h1, *h2;             /* dense MLP */
    MoeScratch moe;
} DecodeRows;

typedef struct {
    int max_T, n;        /* capacity and tokens cached (per sequence) */
    int batch;           /* sequences decoded together, all at position n */
    int width;           /* cached floats per token and layer */
    float *cache;        /* [n_layers][batch][max_T][width] */
    float **kv_b;        /* MLA: per layer kv_b_proj widened to fp32 [H*(dn+dv), R] */
    DecodeRows r;        /* `batch`-row scratch */
    RopeTable rope;      /* positions 0..max_T-1 */
    float *q_lat, *o_lat, *scores; /* [batch*H*(R+dr)], [batch*H*R], [threads*max_T] */
} DecodeState;

int decode_init(DecodeState *st, const Model *m, int max_T); /* one sequence */
/* B sequences stepped together: each step's projections and MLP are one
 * B-row GEMM (the weights read once for all B), attention per sequence. */
int decode_init_batch(DecodeState *st, const Model *m, int max_T, int B);
void decode_free(DecodeState *st, const Model *m);
/* Feed `token` at position st->n; logits[vocab] of the next token. */
int decode_step(const Model *m, DecodeState *st, int32_t token, float *logits);
/* Feed tokens[batch], one per sequence; logits[batch, vocab]. */
int decode_step_batch(const Model *m, DecodeState *st, const int32_t *tokens, float *logits);
/* Bytes the cache holds per token over all layers. */
uint64_t decode_cache_bytes_per_token(const DecodeState *st, const Model *m);

#endif
