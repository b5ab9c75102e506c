/* One decoder layer of a DeepSeek-V3 (MLA) or GQA model (llama, qwen2,
 * mistral, phi3, qwen3 with its QK-norm, the MoE ones, gemma2) or of a
 * gemma2_mla model, for training: a forward pass that keeps what the
 * backward pass needs in a LayerActs, and the backward pass. Micro-batches
 * are packed sequences: each row has its own RoPE position and the index
 * where its document starts, so attention and positions restart at document
 * boundaries; a layer with a sliding window (hf_config_layer_window) also
 * stops each row's keys window-1 rows back, inside the layer.
 *
 * Memory: a LayerActs holds one layer's activations for one micro-batch; the
 * trainer keeps only each layer's input and recomputes the layer before its
 * backward pass (activation checkpointing). */
#ifndef TM_MODEL_TRAIN_LAYER_H
#define TM_MODEL_TRAIN_LAYER_H

#include <stdint.h>

#include "model/model.h"

typedef struct {
    int B, T;
    /* filled by layer_forward_train, read by layer_backward; the fields are
     * train_layer.c's business (saved norms' inputs and rstd, q, latent,
     * kv_b output, per-head k/v, attention output and lse, MLP/MoE inputs)
     * plus scratch for the gradients. */
    struct LayerActsImpl *impl;
    uint64_t bytes; /* allocated */
} LayerActs;

void layer_acts_init(LayerActs *a, const ModelConfig *c, int B, int T);
void layer_acts_free(LayerActs *a);

/* x_out[N, D] = layer `layer` of x_in[N, D] (N = B*T; x_out must not alias
 * x_in). pos[N]: RoPE positions; doc_start[N]: row index within the sequence
 * where the row's document begins (see attention_forward_train). rope: a
 * table for the model's qk_rope_head_dim covering the largest position.
 * Computes what model_layers computes for the same layer (equal within fp32
 * rounding when pos = t and doc_start = 0); doc_start NULL: one document per
 * row. */
void layer_forward_train(const ModelConfig *c, const LayerWeights *L, int layer, const float *x_in, float *x_out,
                         const int32_t *pos, const int32_t *doc_start, const RopeTable *rope, LayerActs *a);

/* After layer_forward_train on the same x_in: dx_in[N, D] = dL/dx_in
 * (overwritten; may alias dx_out) given dx_out = dL/dx_out. Parameter
 * gradients accumulate (+=) into G, a LayerWeights whose Tensor .data and
 * float * members point at fp32 gradient buffers shaped like L's; a NULL
 * member is frozen and skipped (its input gradient still flows). */
void layer_backward(const ModelConfig *c, const LayerWeights *L, LayerWeights *G, int layer, const float *x_in,
                    const float *dx_out, float *dx_in, const int32_t *pos, const int32_t *doc_start,
                    const RopeTable *rope, LayerActs *a);

#endif
