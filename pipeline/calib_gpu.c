/* CalibStats on the GPU (calib_gpu.h). */
#include "pipeline/calib_gpu.h"

void calib_gpu_init(GpuStats *g, const CalibStats *h, int max_rows) {
    GpuStatsSource src = h->target == CAL_KEYS     ? GPU_STATS_KEYS
                         : h->target == CAL_LATENT ? GPU_STATS_LATENT
                                                   : GPU_STATS_LATENT_NORMED;
    gpu_stats_init(g, src, h->first, h->end, h->dim, h->want_q ? h->qdim : 0, h->nrinv, max_rows);
}

int calib_gpu_collect(GpuCtx *ctx, GpuStats *g, CalibStats *h) {
    return gpu_stats_collect(ctx, g, h->sum, h->qsum, h->rinv, &h->count);
}
