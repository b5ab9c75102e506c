/* One optimizer step's forward and backward passes over this replica's K
 * micro-batches, through the pipeline stages, with the gradients summed
 * across replicas by one non-blocking allreduce per layer, started as soon
 * as the layer's last backward is done so that it overlaps the backward
 * passes of the layers below it. Activations go to the next stage by
 * non-blocking sends, so a stage computes while they travel.
 *
 * With recompute (GPipe order: every stage runs the K forwards, then the K
 * backwards; see README "Fine-tuning" for why): memory per rank is the
 * input of each of its layers for each of the K micro-batches (B x T x
 * hidden floats each) and one layer's activations; a layer is recomputed
 * from its saved input before its backward pass.
 *
 * Without recompute (1F1B order): stage s of S runs min(S - 1 - s, K)
 * forwards ahead, then alternates one forward and one backward, so at most
 * min(S - s, K) micro-batches are in flight on it, each keeping every
 * layer's activations (n_local times one layer's, a quarter fewer layer
 * FLOPs); the stages overlap as under GPipe. The backwards still run in
 * micro-batch order, so the gradients are the same bits in either order. */
#ifndef TM_TRAIN_STEP_H
#define TM_TRAIN_STEP_H

#include <stdint.h>

#include "dist/stage_link.h"
#include "dist/topology.h"
#include "model/layer.h"
#include "model/model.h"
#include "train/params.h"
#include "train/sampler.h"
#include "train/teacher.h"

typedef struct StepGpu StepGpu; /* train/step_gpu.h */

typedef struct {
    const Topology *topo;
    const Model *m;        /* this stage's part, bound to the fp32 masters */
    ParamSet *ps;
    Sampler *sampler;
    int B, T, K;
    int n_local;           /* layers of this stage */
    RopeTable rope;
    LayerActs acts;        /* one layer's (recomputed) activations, and the gradient scratch */
    int recompute;         /* 0: every layer's activations kept for its backward pass */
    int slots;             /* micro-batches in flight: K with recompute, else min(stages - stage, K) */
    LayerActs *kept;       /* recompute off: [slots * n_local] each layer's activations per micro-batch in
                            * flight (the first slot's last layer's are acts') */
    float **saved;         /* [slots * (n_local + 1)] inputs of the layers (and of the head) per slot */
    StageMsg *sent;        /* [slots] each slot's activations on their way to the next stage */
    StageMsg sent_grad;    /* dx on its way to the previous stage */
    float *x_tmp, *dx;     /* [N, D]: the recomputed layer's output (recompute only), the gradient */
    float *xn, *dxn, *rstd;/* head: final norm output, its gradient, rstd */
    float *logits, *teacher_logits; /* [N, chunk] */
    int chunk;
    float embed_scale;     /* gemma2: sqrt(hidden_size) in the embedding's stored dtype; else 1 */
    int32_t *tokens, *targets, *pos, *doc_start; /* [K, N] */
    int64_t *row_idx;
    Teacher *teacher;      /* distillation (NULL: none): its part of the teacher, the same layers */
    uint64_t bytes;        /* activation memory of this rank */
    int count_only;        /* train_step_bytes: buffers counted, not allocated */
    StepGpu *gpu;          /* NULL: the CPU engine; else the layers and head run on the GPU (step_gpu.h) */
} TrainStep;

void train_step_init(TrainStep *s, const Topology *t, const Model *m, ParamSet *ps, Sampler *sampler, int B, int T,
                     int K, int recompute, Teacher *teacher);
void train_step_free(TrainStep *s);
/* The activation bytes train_step_init would count in s->bytes for this
 * rank's stage (a distillation teacher's buffers included; NULL: none),
 * allocating nothing. */
uint64_t train_step_bytes(const Topology *t, const Model *m, const Teacher *teacher, int B, int T, int K,
                          int recompute);
/* After train_step_init (with recompute, no teacher): the stage's layers
 * and head run on the rank's GPU (train/step_gpu.h), fp32 or bf16 GEMMs.
 * 0, or -1 with tm_error(). */
int train_step_use_gpu(TrainStep *s, int fp32);

typedef struct {
    double loss;           /* mean NLL per target token over the global batch */
    double kl;             /* with a teacher: mean KL(teacher || student) per target token; else 0 */
    int64_t targets;       /* target tokens in the global batch */
    double grad_norm;      /* global norm before clipping */
} StepResult;

/* Gradients of step `step` (summed over replicas, divided by the global
 * batch's target count) into s->ps->g; the loss on every rank. Collective
 * over the world. */
void train_step_grads(TrainStep *s, int64_t step, StepResult *out);

#endif
