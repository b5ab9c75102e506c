/* The calibration windows' residual stream that the per-layer fits walk
 * through a stage (pipeline/run_fit.c, pipeline/run_attn_fit.c).
 *
 * Each replica of a stage holds the stream of its share of the fit windows,
 * in whole micro-batches, at the current layer (tokens x hidden floats),
 * and moves it on one layer at a time. Stage 0 starts it from the
 * embedding; later stages receive it from the stage before, behind that
 * stage's status word, so a stage that stops or fails releases the next one
 * instead of leaving it waiting in its receive. */
#ifndef TM_PIPELINE_FIT_STREAM_H
#define TM_PIPELINE_FIT_STREAM_H

#include <stdint.h>

#include "dist/topology.h"
#include "model/model.h"
#include "pipeline/resume.h"

typedef struct {
    int nseq, T, batch;     /* this replica's windows, in micro-batches of `batch` */
    int mb_first, mb_total; /* its first micro-batch, and the stage's count */
    int64_t N;              /* tokens held: nseq * T */
    int D;
    float *x;               /* [N, D] the stream at the current layer */
    Workspace ws;           /* one micro-batch of the original model's activations */
} FitStream;

/* This replica's share of `total` windows of `T` tokens (cal_ids: all of
 * them, stage 0 embeds its share) in micro-batches of `batch`. The stream
 * is not filled: fit_stream_start does that. */
void fit_stream_init(FitStream *f, const ModelConfig *c, const Topology *t, int total, int T, int batch);
void fit_stream_free(FitStream *f);
/* Stage 0: x = the embedding of its windows; later stages: x from the stage
 * before. Returns the stage before's status (0, RUN_STOPPED or -1; never
 * -1 on stage 0). */
int fit_stream_start(FitStream *f, float *x, const Topology *t, const int32_t *cal_ids, const Model *orig);

int fit_stream_mb_count(const FitStream *f);
/* Micro-batch m of this replica: its windows, first row in *row0. */
int fit_stream_mb(const FitStream *f, int m, int64_t *row0);

/* nseq windows of T tokens in micro-batches of `batch` (the last may be
 * shorter): how many, and micro-batch m's windows with its first row in
 * *row0. The one home of this arithmetic for the stream and both fits. */
int fit_mb_count(int nseq, int batch);
int fit_mb(int nseq, int batch, int T, int m, int64_t *row0);

/* Windows of `total` that replica `replica` of `replicas` holds, in whole
 * micro-batches of `batch` (fit_stream_init's split). */
int fit_stream_windows(int total, int batch, int replica, int replicas);
/* Bytes a fit run holds per rank besides its fit's state: `cols` floats per
 * row of its N rows (the stream's D included) and one micro-batch of the
 * original model's workspace. The run's memory report and `plan` use it. */
uint64_t fit_stream_held_bytes(const ModelConfig *c, int64_t N, int cols, int batch, int T);

/* x[N, width] (N may be 0). */
float *fit_rows_alloc(int64_t N, int width);
/* x (micro-batch rows) += MLP/MoE(post_norm(x)) of layer l, after the
 * caller added the attention block's output. */
void fit_stream_mlp(FitStream *f, float *x, const ModelConfig *c, const LayerWeights *L, int l);

/* n floats of x to the next stage behind `status` (0, RUN_STOPPED or -1);
 * only the status goes unless it is 0. */
void fit_stream_send(const float *x, int64_t n, int status, const Topology *t);
/* The stage before's status, and with 0, its n floats into x. */
int fit_stream_recv(float *x, int64_t n, const Topology *t);
/* Resuming a per-layer fit without rebuilding its streams: after each layer
 * every rank saves the nx streams x (n floats each) it moved on, at the
 * next layer's input, as `step` in the state (pipeline/resume.h); `what`
 * prefixes the progress line (say: print it). Collective over comm. */
int fit_stream_save(float *const *x, int nx, int64_t n, const Resume *rs, const char *step, int layer, MPI_Comm comm,
                    const char *what, int say);
/* Collective over comm (the stage's ranks) when rs continues an earlier
 * run (else `first` at once): the layer in (first, end] at
 * whose input every rank's saved streams stand, every layer of the stage
 * before it saved under `layer_step`; x then holds them. `first` (x as it
 * was) when none are saved, or when the ranks' stand at different layers
 * (a run stopped between their writes). -1: unreadable (the error names
 * the file). `what` prefixes the progress line (say: print it). */
int fit_stream_resume(float *const *x, int nx, int64_t n, const Resume *rs, const char *step, const char *layer_step,
                      int first, int end, MPI_Comm comm, const char *what, int say);
/* Errors win over stops: the status every rank of comm acts on. */
int fit_agree_status(int rc, MPI_Comm comm);

#endif
