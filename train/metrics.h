/* What a training run reports on rank 0: one progress line per logged step
 * (step, loss, lr, grad norm, tokens/s, MFU, ETA) and one JSON object per
 * step in SAVE/metrics.jsonl (scripts/plot_metrics.sh draws it). */
#ifndef TM_TRAIN_METRICS_H
#define TM_TRAIN_METRICS_H

#include <stdint.h>
#include <stdio.h>

#include "io/hf_config.h"
#include "train/params.h"

typedef struct {
    int64_t step, total_steps;
    double epoch, loss, lr, grad_norm;
    double kl;                /* distillation: mean KL(teacher || student); printed when distill */
    int distill;
    int64_t tokens, targets;  /* tokens processed, of which carried loss, this step */
    double step_s, tokens_per_s, gflops, mfu, elapsed_s, eta_s;
} StepLog;

typedef struct {
    FILE *f;
    char *path;
} Metrics;

/* Open path for appending; lines of steps after resume_step (a run that
 * went further than its last checkpoint) are dropped first. */
int metrics_open(Metrics *m, const char *path, int64_t resume_step);
void metrics_write(Metrics *m, const StepLog *s);
void metrics_close(Metrics *m);
void metrics_print(FILE *to, const StepLog *s);

/* Model FLOPs of one training token at sequence length T (MLA or GQA):
 * forward and backward, 3x forward when everything is trained; frozen
 * weights (what != TRAIN_ALL) get no weight gradients, so those are not
 * counted. The recomputed forward is not counted, as MFU conventionally
 * does not. */
double train_flops_per_token(const ModelConfig *c, int T, TrainWhat what);
/* This process's sgemm GFLOP/s at out[M, N] = A[M, K] B[N, K]^T, as the engine
 * calls it, timed for about `seconds` after one warm-up call. */
double measure_sgemm_gflops_at(int M, int N, int K, double seconds);
/* The same at a square size (the MFU yardstick). */
double measure_sgemm_gflops(int n, double seconds);

#endif
