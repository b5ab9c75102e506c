/* The part of a model a rank holds (its layers, and the final norm and
 * head on the last stage) on one GPU: the device twin of model_layers,
 * model_head_nll and model_logits (model/model.h) for the dense GQA
 * families (model/cuda/layer_gpu.h). The residual stream arrives from the
 * host (the embedding rows, or the previous stage's message) once per
 * micro-batch; the layers, the head and the cross-entropy run on the
 * device. Parts whose layers do not fit the GPU stream them. */
#ifndef TM_MODEL_CUDA_MODEL_GPU_H
#define TM_MODEL_CUDA_MODEL_GPU_H

#include "model/cuda/layer_gpu.h"
#include "model/cuda/layer_stream.h"
#include "model/model.h"

typedef struct {
    const Model *m;
    GpuLayer *layers;  /* [part.end - part.first] */
    float *final_norm; /* part.head only */
    GpuMat head;
    int B, T, vocab_chunk;
    GpuRowsBuf rows_buf;
    GpuRows rows;
    RopeTable rope;
    GpuActs acts;
    float *x, *logits; /* [B*T, D], [B*T, vocab_chunk] */
    float *ce_max, *ce_target;
    double *ce_sum;
    int32_t *targets;
    int streamed;        /* the layers' weights stream through two slots (layer_stream.h) */
    LayerStream stream;
    size_t bytes;        /* on the device */
} GpuModel;

/* Uploads m's part and makes activations for up to B sequences of T, one
 * document each; 0, or -1 with tm_error() (a layer type not on the GPU).
 * The layers stay resident when their weights fit the GPU's free memory
 * (after the activations, with GPU_STREAM_MARGIN to spare), else they are
 * streamed; TRANSMLA_GPU_STREAM_WEIGHTS=1 in the environment streams them
 * always (the gpu tests compare both ways). */
int gpu_model_init(GpuModel *gm, GpuCtx *g, const Model *m, int B, int T);
void gpu_model_free(GpuModel *gm);
/* The part's layers over b <= B sequences: x_in [b*T, D] (host) uploaded,
 * run, and copied back into x_out when not NULL (the device keeps it). */
int gpu_model_layers(GpuModel *gm, GpuCtx *g, const float *x_in, float *x_out, int b);
/* After gpu_model_layers: next-token NLL summed over the b*(T-1) predicted
 * tokens of tokens [b*T] (part.head), as model_head_nll. */
int gpu_model_head_nll(GpuModel *gm, GpuCtx *g, const int32_t *tokens, int b, double *nll, int64_t *n_predicted);
/* logits[B*T, V] (host) of tokens [B*T] for a model held whole (the GPU
 * tests compare them with the CPU engine's). */
int gpu_model_logits(GpuModel *gm, GpuCtx *g, const int32_t *tokens, float *logits);

#endif
