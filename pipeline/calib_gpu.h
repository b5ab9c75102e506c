/* A calibration's CalibStats (pipeline/calibrate.h) summed on the GPU
 * (model/cuda/stats_gpu.h): the one bridge between the two, for
 * pipeline/stage_device.c and tests/test_gpu_stats.c. CUDA builds only. */
#ifndef TM_PIPELINE_CALIB_GPU_H
#define TM_PIPELINE_CALIB_GPU_H

#include "model/cuda/stats_gpu.h"
#include "pipeline/calibrate.h"

/* Device sums for h's target, layers, widths and 1/rms sums, for
 * micro-batches of up to max_rows rows. */
void calib_gpu_init(GpuStats *g, const CalibStats *h, int max_rows);
/* h's sums += the device's (zeroed); 0, or -1 with tm_error(). */
int calib_gpu_collect(GpuCtx *ctx, GpuStats *g, CalibStats *h);

#endif
