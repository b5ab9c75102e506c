/* `transmla finetune`: the training run around the step. Loads this rank's
 * stage of the model, builds the training rows, resumes from the newest
 * checkpoint, runs the steps (progress on rank 0, a JSONL metrics log),
 * checkpoints every save_steps and when asked to stop (SIGTERM/SIGUSR1), and
 * exports the trained model as a Hugging Face folder at the end. */
#ifndef TM_TRAIN_TRAINER_H
#define TM_TRAIN_TRAINER_H

#include <stdint.h>

#include "io/token_source.h"
#include "train/optim.h"
#include "train/params.h"

typedef struct {
    const char *model_path, *save_path;
    /* data: chat JSONL (data) or a token source (continued pretraining) */
    const char *data, *chat_template;
    TokenSource tokens;
    int has_tokens;
    int seq_len, batch, grad_accum, stages;
    int recompute;          /* 1: recompute each layer before its backward pass; 0: keep every layer's activations;
                             * RECOMPUTE_AUTO (train/recompute_auto.h): 0 where it fits the node's memory */
    int gpu;                /* 1: the layers and head on the rank's GPU (--device cuda, train/step_gpu.h) */
    int gpu_fp32;           /* with gpu: fp32 GEMMs instead of bf16 inputs */
    int64_t max_steps;      /* > 0 wins over epochs */
    double epochs;
    double warmup_ratio;
    OptimConfig opt;        /* warmup_steps and total_steps are filled in */
    int64_t save_steps;     /* 0: only at the end and when stopped */
    int save_total_limit;   /* 0: keep all */
    int resume;             /* 1: auto, 0: never */
    TrainWhat what;
    const char *distill_from; /* teacher model folder; NULL: plain next-token loss */
    double distill_weight;    /* alpha: alpha KL(teacher || student) + (1 - alpha) NLL */
    uint64_t seed;
    int log_every;
    int quiet;
} TrainConfig;

/* Collective over the world. Exit status for main: 0 (done, or stopped by a
 * signal after checkpointing), or 1 with tm_error set. */
int trainer_run(const TrainConfig *cfg);

#endif
