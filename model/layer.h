/* One decoder layer of a DeepSeek-V3 (MLA) or GQA model (llama, qwen2,
 * mistral, phi3, qwen3 with its QK-norm, the MoE ones, gemma2) or of a
 * gemma2_mla model: the one forward pass of each layer type, used by
 * evaluation, calibration, the fits and training, and its backward pass.
 *   x_mid = x + attention(input_norm(x)); x_out = x_mid + MLP(post_norm(x_mid)),
 * with gemma2's sandwich norms each block's output normed before its add.
 * Rows are B sequences of T: each row has its own RoPE position and the row
 * where its document starts, so attention and positions restart at document
 * boundaries (training packs documents); a layer with a sliding window
 * (hf_config_layer_window) also stops each row's keys window-1 rows back.
 *
 * Memory: a LayerActs holds one layer's activations for one micro-batch. One
 * made for the backward pass keeps what it needs (the trainer keeps each
 * layer's input and recomputes the layer before its backward pass, or
 * without recompute keeps one per layer); one made for the
 * forward alone reuses its buffers and runs in place. */
#ifndef TM_MODEL_LAYER_H
#define TM_MODEL_LAYER_H

#include <stddef.h>
#include <stdint.h>

#include "io/hf_config.h"
#include "model/moe.h"
#include "model/rope.h"
#include "model/weights.h"

/* What the attention's input projections made, as an AttentionHook sees it
 * (before RoPE and before the latent norm). GQA: q, k, v (biases added); for
 * qk_norm models (qwen3) after the per-head QK-norm, normed and multiplied by
 * the norm weights, with qk_rinv [N, H+G] this micro-batch's 1/rms of each
 * head. MLA: q [N, H*(dn+dr)] and lat [N, R+dr] (kv_a_proj_with_mqa output,
 * rope dims last). */
typedef struct {
    int N;
    const float *q, *k, *v, *qk_rinv, *lat;
} AttnProjections;

/* Called once per layer after the attention's input projections: the
 * converter gathers its statistics here. */
typedef void (*AttentionHook)(void *ctx, int layer, const AttnProjections *p);

/* The rows a layer runs on. */
typedef struct {
    int B, T;
    const int32_t *pos;       /* [B*T] RoPE positions */
    const int32_t *doc_start; /* [B*T] row within the sequence where the row's document begins; NULL: 0 */
    const RopeTable *rope;    /* covers the largest position */
    AttentionHook hook;       /* NULL: none */
    void *hook_ctx;
} LayerRows;

/* What a LayerActs keeps (layer_acts_init's `backward`). */
typedef enum {
    ACTS_FORWARD = 0,  /* the forward alone: buffers reused, in place */
    ACTS_BACKWARD = 1, /* what layer_backward needs, with its gradient scratch */
    ACTS_SAVED = 2,    /* what layer_backward needs; the gradient scratch another's (layer_acts_init_sharing) */
} ActsMode;

typedef struct {
    int B, T;     /* the most rows it holds: B sequences of T */
    int backward; /* an ActsMode */
    /* the fields are layer.c's business (saved norms' inputs and rstd, the
     * attention's and the MLP's activations, gradient scratch) */
    struct LayerActsImpl *impl;
    uint64_t bytes; /* allocated */
} LayerActs;

/* n floats counted into *bytes and allocated, or with count_only counted
 * only (NULL): the one computation behind the acts' init and bytes functions. */
float *acts_alloc(uint64_t *bytes, size_t n, int count_only);

/* backward: an ActsMode; ACTS_FORWARD for evaluation and calibration. */
void layer_acts_init(LayerActs *a, const ModelConfig *c, int B, int T, int backward);
/* One layer's saved activations (ACTS_SAVED) with the gradient scratch of
 * `grads` (ACTS_BACKWARD, the same config and rows; it outlives a): the
 * trainer's per-layer activations without recompute share one scratch. */
void layer_acts_init_sharing(LayerActs *a, const ModelConfig *c, int B, int T, const LayerActs *grads);
/* The bytes layer_acts_init would count in a->bytes, allocating nothing. */
uint64_t layer_acts_bytes(const ModelConfig *c, int B, int T, int backward);
void layer_acts_free(LayerActs *a);
/* [B*T, D] scratch between layers (the buffer of a layer's normed input):
 * the forward's final norm goes here, so evaluation holds no second copy. */
float *layer_acts_scratch(const LayerActs *a);

/* x_out[N, D] = layer `layer` of x_in[N, D] (N = rows->B * rows->T). x_out
 * may be x_in (in place) when `a` is not for the backward pass. */
void layer_forward(const ModelConfig *c, const LayerWeights *L, int layer, const float *x_in, float *x_out,
                   const LayerRows *rows, LayerActs *a);

/* After layer_forward on the same x_in: dx_in[N, D] = dL/dx_in (overwritten;
 * may alias dx_out) given dx_out = dL/dx_out. Parameter gradients accumulate
 * (+=) into G, a LayerWeights whose Tensor .data and float * members point at
 * fp32 gradient buffers shaped like L's; a NULL member is frozen and skipped
 * (its input gradient still flows). */
void layer_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *x_in,
                    const float *dx_out, float *dx_in, const LayerRows *rows, LayerActs *a);

/* The layer's halves alone, for the per-layer fits: out[N, D] += the
 * attention block of xn (o_proj included, before any sandwich norm);
 * x[B*T, D] += the MLP block of post_norm(x) (through the sandwich norm), in
 * place, with activations for the forward alone. */
void layer_attention(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out,
                     const LayerRows *rows, LayerActs *a);
void layer_mlp_block(const ModelConfig *c, const LayerWeights *L, int layer, float *x, int B, LayerActs *a);

/* out[N, D] += down(act(gate xn) * up xn) of a dense MLP, or the MoE of xn:
 * act SiLU, or GELU-tanh for gemma2. h1, h2: [N, I] (the gate's and up's
 * outputs); act may be h1 (in place) when nothing keeps h1. The decoder's
 * MLP too. */
void mlp_apply(const ModelConfig *c, const LayerWeights *L, int layer, const float *xn, float *out, int N, float *h1,
               float *h2, float *act, MoeScratch *moe);

#endif
