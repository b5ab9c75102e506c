/* Which rows go where: every epoch is a seeded permutation of the rows, cut
 * into global batches of B x K x Dp rows (the last incomplete one dropped);
 * replica r's micro-batch k of step s takes rows (r*K + k)*B .. +B of that
 * step's global batch. Every rank can compute every assignment, so resuming
 * needs only the step number, and the same global batch is the same rows
 * whatever the number of replicas. */
#ifndef TM_TRAIN_SAMPLER_H
#define TM_TRAIN_SAMPLER_H

#include <stdint.h>

#include "train/rows.h"

typedef struct {
    const TrainRows *rows;
    uint64_t seed;
    int B, K, replicas;
    int64_t global_batch;     /* rows per step: B * K * replicas */
    int64_t steps_per_epoch;
    int64_t epoch;            /* whose permutation `perm` holds (-1: none yet) */
    int64_t *perm;
} Sampler;

/* Fails when the rows do not fill one global batch. */
int sampler_init(Sampler *s, const TrainRows *rows, uint64_t seed, int B, int K, int replicas);
void sampler_free(Sampler *s);
/* The B row indices of replica r's micro-batch k of step `step`. */
void sampler_rows(Sampler *s, int64_t step, int r, int k, int64_t *out);
/* Tokens that carry loss in step `step`'s whole global batch. */
int64_t sampler_step_targets(Sampler *s, int64_t step);

#endif
