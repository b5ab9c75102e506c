/* A model's layers, final norm and head on one GPU, and its logits: the
 * device twin of model_forward + model_logits (model/model.h) for the dense
 * GQA families (model/cuda/layer_gpu.h). The embedding rows are gathered on
 * the host (model_embed_rows) and uploaded once per micro-batch; everything
 * after runs on the device. Holds every layer: models that fit the GPU. */
#ifndef TM_MODEL_CUDA_MODEL_GPU_H
#define TM_MODEL_CUDA_MODEL_GPU_H

#include "model/cuda/layer_gpu.h"
#include "model/model.h"

typedef struct {
    const Model *m;
    GpuLayer *layers; /* [n_layers] */
    float *final_norm;
    GpuMat head;
    int B, T;
    GpuRowsBuf rows_buf;
    GpuRows rows;
    RopeTable rope;
    GpuActs acts;
    float *x, *logits; /* [N, D], [N, V] on the device */
    size_t bytes;
} GpuModel;

/* Uploads every layer and the head of m (which holds the whole model) and
 * makes activations for B sequences of T; 0, or -1 with tm_error(). */
int gpu_model_init(GpuModel *gm, GpuCtx *g, const Model *m, int B, int T);
void gpu_model_free(GpuModel *gm);
/* logits[B*T, V] (host) of tokens [B*T], one document per sequence. */
int gpu_model_logits(GpuModel *gm, GpuCtx *g, const int32_t *tokens, float *logits);

#endif
