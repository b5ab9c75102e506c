/* One optimizer step's forward and backward passes over this replica's K
 * micro-batches, through the pipeline stages (GPipe order: every stage runs
 * the K forwards, then the K backwards; see README "Fine-tuning" for why),
 * with the gradients summed across replicas by one non-blocking allreduce
 * per layer, started as soon as the layer's last backward is done so that it
 * overlaps the backward passes of the layers below it.
 *
 * Memory per rank: the input of each of its layers for each of the K
 * micro-batches (B x T x hidden floats each) and one layer's activations;
 * a layer is recomputed from its saved input before its backward pass.
 * Without recompute, every layer keeps its activations of one micro-batch
 * (n_local times the memory, a quarter fewer layer FLOPs) and each
 * micro-batch's backward follows its forward, so the stages of a pipeline
 * no longer overlap. */
#ifndef TM_TRAIN_STEP_H
#define TM_TRAIN_STEP_H

#include <stdint.h>

#include "dist/topology.h"
#include "model/layer.h"
#include "model/model.h"
#include "train/params.h"
#include "train/sampler.h"
#include "train/teacher.h"

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
    LayerActs *kept;       /* recompute off: layers 0..n_local-2's activations of the micro-batch in flight
                            * (the last layer's are acts') */
    float **saved;         /* [K * (n_local + 1)] inputs of the layers (and of the head) per micro-batch */
    float *x_tmp, *dx;     /* [N, D]: the recomputed layer's output (recompute only), the gradient */
    float *xn, *dxn, *rstd;/* head: final norm output, its gradient, rstd */
    float *logits, *teacher_logits; /* [N, chunk] */
    int chunk;
    float embed_scale;     /* gemma2: sqrt(hidden_size) in the embedding's stored dtype; else 1 */
    int32_t *tokens, *targets, *pos, *doc_start; /* [K, N] */
    int64_t *row_idx;
    Teacher *teacher;      /* distillation (NULL: none): its part of the teacher, the same layers */
    uint64_t bytes;        /* activation memory of this rank */
} TrainStep;

void train_step_init(TrainStep *s, const Topology *t, const Model *m, ParamSet *ps, Sampler *sampler, int B, int T,
                     int K, int recompute, Teacher *teacher);
void train_step_free(TrainStep *s);

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
