/* Where a pipeline stage runs its layers and scores: the CPU engine
 * (model/model.h), or with PipeJob.device PIPE_CUDA the rank's GPU
 * (model/cuda/model_gpu.h), the residual stream crossing to the device and
 * back once per micro-batch. The one switch between the two for
 * pipeline/stream.c. */
#ifndef TM_PIPELINE_STAGE_DEVICE_H
#define TM_PIPELINE_STAGE_DEVICE_H

#include "dist/topology.h"
#include "model/model.h"
#include "pipeline/stream.h"

typedef struct StageDevice StageDevice;

/* 0 when `device` can be used here (PIPE_CPU always; PIPE_CUDA when CUDA is
 * built in and a GPU is visible), else one error line: what a command checks
 * before it starts. */
int stage_device_check(int device);

/* NULL in *d for the CPU. PIPE_CUDA: uploads the part to GPU (local_rank mod
 * count) for micro-batches of ws; a calibration job's statistics
 * (j->stats) are summed on the GPU, a hook without them gets each layer's
 * projections copied to the host. -1 with tm_error() when
 * stage_device_check fails or the part holds a layer type not on the GPU. */
int stage_device_init(StageDevice **d, const Topology *t, const Model *m, const PipeJob *j, const Workspace *ws);
/* After a pass, or when it stops: statistics summed on the GPU (a job
 * with stats) added to the job's CalibStats, as the hook would have. */
void stage_device_finish(StageDevice *d);
void stage_device_free(StageDevice *d);
/* ws->x through the part's layers (ws->B sequences). */
void stage_device_layers(StageDevice *d, const Model *m, Workspace *ws);
/* After stage_device_layers on the last stage: model_final_norm +
 * model_head_nll. */
double stage_device_head_nll(StageDevice *d, const Model *m, const int32_t *tokens, Workspace *ws,
                             int64_t *n_predicted);

#endif
