/* Calibration statistics on the GPU (stats_gpu.h). */
#include "model/cuda/stats_gpu.h"

#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/kernels.h"

static double *zeroed(GpuStats *s, size_t n) {
    if (n == 0) return NULL;
    double *p = gpu_alloc(n * sizeof(double));
    if (cudaMemset(p, 0, n * sizeof(double)) != cudaSuccess) tm_die("CUDA: cudaMemset of %zu doubles failed", n);
    s->bytes += n * sizeof(double);
    return p;
}

void gpu_stats_init(GpuStats *s, GpuStatsSource source, int first, int end, int dim, int qdim, int nrinv,
                    int max_rows) {
    *s = (GpuStats){.source = source, .first = first, .end = end, .dim = dim, .qdim = qdim, .nrinv = nrinv,
                    .max_rows = max_rows};
    size_t L = (size_t)(end > first ? end - first : 0), wide = (size_t)(dim > qdim ? dim : qdim);
    s->sum = zeroed(s, L * dim * dim);
    s->qsum = zeroed(s, L * qdim * qdim);
    s->rinv = zeroed(s, L * nrinv);
    s->rows = gpu_alloc((size_t)max_rows * wide * sizeof(double));
    s->bytes += (size_t)max_rows * wide * sizeof(double);
}

void gpu_stats_free(GpuStats *s) {
    gpu_free(s->sum);
    gpu_free(s->qsum);
    gpu_free(s->rinv);
    gpu_free(s->rows);
    memset(s, 0, sizeof *s);
}

/* The rows the CPU's hook reads for s->source, float64 in s->rows. */
static int source_rows(GpuCtx *g, GpuStats *s, const ModelConfig *c, const GpuActs *a, int N) {
    cudaStream_t st = (cudaStream_t)g->stream;
    int mla = hf_config_is_mla(c), R = c->mla.kv_lora_rank, lw = R + c->mla.qk_rope_head_dim;
    int kw = c->n_kv_heads * c->head_dim;
    if (s->source == GPU_STATS_KEYS) {
        if (mla || s->dim > kw)
            return tm_fail("GPU statistics: keys of %d columns from a model with %d", s->dim, mla ? 0 : kw);
        cuda_rows_to_f64(s->rows, a->k, kw, s->dim, N, st);
        return 0;
    }
    if (!mla) return tm_fail("GPU statistics: latent rows asked of a model without MLA");
    if (s->source == GPU_STATS_LATENT_NORMED) {
        if (s->dim != 2 * R)
            return tm_fail("GPU statistics: latent pairs of %d columns for kv_lora_rank %d", s->dim, R);
        cuda_latent_pairs_f64(s->rows, a->lat, lw, R, N, st);
        return 0;
    }
    if (s->dim > lw) return tm_fail("GPU statistics: %d latent columns of %d", s->dim, lw);
    cuda_rows_to_f64(s->rows, a->lat, lw, s->dim, N, st);
    return 0;
}

int gpu_stats_add(GpuCtx *g, GpuStats *s, const ModelConfig *c, int layer, const GpuActs *a, int N) {
    if (layer < s->first || layer >= s->end) return 0;
    if (N > s->max_rows) return tm_fail("GPU statistics: %d rows for room of %d", N, s->max_rows);
    size_t l = (size_t)(layer - s->first);
    int H = c->n_heads, G = c->n_kv_heads;
    if (source_rows(g, s, c, a, N) || gpu_syrk_f64(g, s->sum + l * s->dim * s->dim, s->rows, s->dim, N)) return -1;
    if (s->qdim) {
        if (s->qdim != H * hf_config_qk_head_dim(c))
            return tm_fail("GPU statistics: queries of %d columns from a model with %d", s->qdim,
                           H * hf_config_qk_head_dim(c));
        cuda_rows_to_f64(s->rows, a->q, s->qdim, s->qdim, N, (cudaStream_t)g->stream);
        if (gpu_syrk_f64(g, s->qsum + l * s->qdim * s->qdim, s->rows, s->qdim, N)) return -1;
    }
    if (s->nrinv) {
        if (s->nrinv != H + G || !a->rinv) return tm_fail("GPU statistics: QK-norm sums of %d heads", s->nrinv);
        cuda_rinv_sums(s->rinv + l * s->nrinv, a->rinv, a->rinv + (size_t)N * H, N, H, G, (cudaStream_t)g->stream);
    }
    if (layer == s->first) s->count += N; /* every layer sees the same rows */
    return 0;
}

/* host[l] += the device's n values of layer l, for every layer held; then zeroed. */
static void add_layers(const GpuStats *s, double *dev, double *const *host, size_t n, double *tmp) {
    for (int l = s->first; l < s->end && n; l++) {
        double *d = dev + (size_t)(l - s->first) * n;
        gpu_download(tmp, d, n * sizeof(double));
        for (size_t i = 0; i < n; i++) host[l][i] += tmp[i];
        if (cudaMemset(d, 0, n * sizeof(double)) != cudaSuccess) tm_die("CUDA: cudaMemset of %zu doubles failed", n);
    }
}

int gpu_stats_collect(GpuCtx *g, GpuStats *s, double *const *sum, double *const *qsum, double *const *rinv,
                      int64_t *count) {
    if (gpu_sync(g)) return -1;
    size_t n = (size_t)s->dim * s->dim, nq = (size_t)s->qdim * s->qdim;
    size_t most = n > nq ? n : nq;
    if ((size_t)s->nrinv > most) most = (size_t)s->nrinv;
    double *tmp = mallocCheck((most ? most : 1) * sizeof(double));
    add_layers(s, s->sum, sum, n, tmp);
    if (s->qdim) add_layers(s, s->qsum, qsum, nq, tmp);
    if (s->nrinv) add_layers(s, s->rinv, rinv, (size_t)s->nrinv, tmp);
    free(tmp);
    *count += s->count;
    s->count = 0;
    return 0;
}
