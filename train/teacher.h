/* The teacher of a distillation fine-tune (`finetune --distill-from DIR`):
 * this stage's layers of another model (typically the original the student
 * was converted from), frozen in their stored dtype, run forward on the same
 * micro-batches as the student. At the head stage it keeps each
 * micro-batch's final-norm output, from which the head's loss
 * (model/crossentropy.h HeadTeacher) takes the teacher's distribution.
 *
 * Memory per rank: the teacher's shard of the same layers, one layer's
 * activations, two [N, Dt] streams and, at the head stage, K [N, Dt]
 * final-norm outputs. */
#ifndef TM_TRAIN_TEACHER_H
#define TM_TRAIN_TEACHER_H

#include <stdint.h>

#include "model/layer.h"
#include "model/model.h"

typedef struct {
    Model m;
    float alpha;           /* weight of the KL term; 1 - alpha on the targets' NLL */
    RopeTable rope;
    LayerActs acts;
    float *x;              /* [N, Dt] the stream through this stage's layers (in place) */
    float **head;          /* [K] final-norm outputs (head stage only) */
    float *rstd;           /* [N] */
    int K;
    uint64_t bytes;        /* activation memory */
    int count_only;        /* teacher_step_bytes' copy: buffers counted, not allocated */
} Teacher;

/* Loads layers [part->first, part->end) (and the embedding/head the part
 * holds) of the model in dir; refuses one whose vocabulary or depth differs
 * from the student's config, naming dir's config.json field. */
int teacher_load(Teacher *t, const char *dir, const ModelPart *part, const ModelConfig *student, float alpha);
void teacher_buffers(Teacher *t, int B, int T, int K);
/* What teacher_buffers(t, B, T, K) allocates, in bytes (t->bytes after it). */
uint64_t teacher_step_bytes(const Teacher *t, int B, int T, int K);
void teacher_free(Teacher *t);

/* t->x -> this stage's layers -> t->x; at the head stage also the final
 * norm into t->head[k]. tokens are needed when the part holds the embedding
 * (t->x is then made here); otherwise t->x must hold the previous stage's
 * output. */
void teacher_forward(Teacher *t, int k, const int32_t *tokens, const LayerRows *rows);

#endif
