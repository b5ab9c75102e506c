/* A calibration pass's statistics summed on the GPU (issue 24): the device
 * twin of pipeline/calibrate.c's calib_gather_hook. Each micro-batch's rows
 * of a layer (keys, latents, or [latent, normed latent] pairs, and queries)
 * are made float64 on the device and added by cuBLAS SYRK into that
 * layer's sums, which stay there until gpu_stats_collect adds them to the
 * host's once per pass: the projections no longer cross to the host. */
#ifndef TM_MODEL_CUDA_STATS_GPU_H
#define TM_MODEL_CUDA_STATS_GPU_H

#include "model/cuda/layer_gpu.h"

/* What a pass sums (pipeline/calibrate.h's CalTarget). */
typedef enum {
    GPU_STATS_KEYS,          /* GQA: k before RoPE, after QK-norm */
    GPU_STATS_LATENT,        /* MLA: the leading dim columns of kv_a's output */
    GPU_STATS_LATENT_NORMED, /* MLA: [c, c / rms(c)] of the latent c (dim = 2 * kv_lora_rank) */
} GpuStatsSource;

typedef struct GpuStats {
    GpuStatsSource source;
    int first, end;            /* layers [first, end) */
    int dim, qdim, nrinv;      /* as CalibStats: dim x dim sums, qdim x qdim of q (0: none), nrinv 1/rms sums */
    double *sum, *qsum, *rinv; /* device; layer l's at (l - first) times dim * dim, qdim * qdim, nrinv */
    double *rows;              /* device: one micro-batch's rows in float64 */
    int max_rows;
    int64_t count;             /* rows summed per layer since the last collect */
    size_t bytes;              /* on the device */
} GpuStats;

/* Device sums zeroed, for micro-batches of up to max_rows rows. */
void gpu_stats_init(GpuStats *s, GpuStatsSource source, int first, int end, int dim, int qdim, int nrinv,
                    int max_rows);
void gpu_stats_free(GpuStats *s);
/* Adds layer `layer`'s N rows from a (after the attention's input
 * projections, before RoPE); layers outside [first, end) are ignored.
 * -1 with tm_error() when the model's projections cannot give the sums. */
int gpu_stats_add(GpuCtx *g, GpuStats *s, const ModelConfig *c, int layer, const GpuActs *a, int N);
/* The host's sums (CalibStats' per-layer arrays, indexed by layer; qsum and
 * rinv NULL when not summed) += the device's, *count += count; the device's
 * are zeroed. */
int gpu_stats_collect(GpuCtx *g, GpuStats *s, double *const *sum, double *const *qsum, double *const *rinv,
                      int64_t *count);

#endif
