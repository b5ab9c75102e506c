#include "pipeline/fit_stream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/stage_link.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "model/rmsnorm.h"
#include "pipeline/stream.h"


float *fit_rows_alloc(int64_t N, int width) { return mallocCheck((size_t)(N ? N : 1) * width * sizeof(float)); }

/* Replica `replica`'s micro-batches [*first, *first + count) of the mb_total; its windows returned. */
static int replica_share(int total, int batch, int replica, int replicas, int *first) {
    int count, mb_total = (total + batch - 1) / batch;
    pipeline_slice(mb_total, replica, replicas, first, &count);
    int w0 = *first * batch, w1 = (*first + count) * batch, n = (w1 < total ? w1 : total) - w0;
    return n > 0 ? n : 0;
}

int fit_stream_windows(int total, int batch, int replica, int replicas) {
    int first;
    return replica_share(total, batch < 1 ? 1 : batch, replica, replicas, &first);
}

uint64_t fit_stream_held_bytes(const ModelConfig *c, int64_t N, int cols, int batch, int T) {
    return (uint64_t)N * cols * sizeof(float) + workspace_bytes(c, batch, T);
}

void fit_stream_init(FitStream *f, const ModelConfig *c, const Topology *t, int total, int T, int batch) {
    memset(f, 0, sizeof *f);
    f->T = T;
    f->batch = batch < 1 ? 1 : batch;
    f->mb_total = (total + f->batch - 1) / f->batch;
    f->nseq = replica_share(total, f->batch, t->replica, t->replicas, &f->mb_first);
    f->N = (int64_t)f->nseq * T;
    f->D = c->hidden_size;
    f->x = fit_rows_alloc(f->N, f->D);
    workspace_init(&f->ws, c, f->batch, T);
}

void fit_stream_free(FitStream *f) {
    free(f->x);
    workspace_free(&f->ws);
    memset(f, 0, sizeof *f);
}

int fit_stream_start(FitStream *f, float *x, const Topology *t, const int32_t *cal_ids, const Model *orig) {
    if (t->stage > 0) return fit_stream_recv(x, f->N * f->D, t);
    /* as the model's forward embeds (gemma2: times sqrt(hidden_size)) */
    model_embed_rows(orig, cal_ids + (int64_t)f->mb_first * f->batch * f->T, (int)f->N, x);
    return 0;
}

int fit_mb_count(int nseq, int batch) { return (nseq + batch - 1) / batch; }

int fit_mb(int nseq, int batch, int T, int m, int64_t *row0) {
    *row0 = (int64_t)m * batch * T;
    return nseq - m * batch < batch ? nseq - m * batch : batch;
}

int fit_stream_mb_count(const FitStream *f) { return fit_mb_count(f->nseq, f->batch); }

int fit_stream_mb(const FitStream *f, int m, int64_t *row0) { return fit_mb(f->nseq, f->batch, f->T, m, row0); }

void fit_stream_mlp(FitStream *f, float *x, const ModelConfig *c, const LayerWeights *L, int l) {
    for (int m = 0; m < fit_stream_mb_count(f); m++) {
        int64_t row0;
        int B = fit_stream_mb(f, m, &row0);
        layer_mlp_block(c, L, l, x + row0 * f->D, B, &f->ws.acts);
    }
}

void fit_stream_send(const float *x, int64_t n, int status, const Topology *t) {
    stage_send(t, LINK_NEXT, LINK_TAG_FIT, x, n, status);
}

int fit_stream_recv(float *x, int64_t n, const Topology *t) {
    int status = stage_recv(t, LINK_PREV, LINK_TAG_FIT, x, n);
    if (status < 0) tm_fail("the stage before this one failed in a per-layer fit");
    return status;
}

int fit_agree_status(int rc, MPI_Comm comm) {
    int v[2] = {rc < 0, rc > 0};
    MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_INT, MPI_MAX, comm);
    return v[0] ? -1 : v[1] ? 1 : 0;
}

int fit_stream_save(float *const *x, int nx, int64_t n, const Resume *rs, const char *step, int layer, MPI_Comm comm,
                    const char *what, int say) {
    double t0 = tm_now_s();
    int rc = fit_agree_status(resume_save_streams(rs, step, layer, x, nx, n), comm);
    if (!rc && say)
        fprintf(stderr, "%s: streams saved at layer %d's input (%.1f MiB on this rank, %.2f s)\n", what, layer + 1,
                (double)nx * n * sizeof(float) / (1 << 20), tm_now_s() - t0);
    return rc;
}

int fit_stream_resume(float *const *x, int nx, int64_t n, const Resume *rs, const char *step, const char *layer_step,
                      int first, int end, MPI_Comm comm, const char *what, int say) {
    if (!rs->continued) return first; /* a new conversion's folder holds none: nothing to read */
    int at = resume_streams_layer(rs, step, nx);
    if (at >= 0 && (at <= first || at > end)) at = RESUME_NO_STREAMS;
    for (int l = first; at > first && l < at; l++)
        if (!resume_has_layer(rs, layer_step, l)) at = RESUME_NO_STREAMS; /* not expected: layers are saved first */
    int v[3] = {at == -1, at, -at}; /* an error, the highest layer, minus the lowest */
    MPI_Allreduce(MPI_IN_PLACE, v, 3, MPI_INT, MPI_MAX, comm);
    if (v[0]) return -1;
    if (v[1] < 0 || v[1] != -v[2]) return first;
    if (fit_agree_status(resume_load_streams(rs, step, x, nx, n), comm)) return -1;
    if (say)
        fprintf(stderr, "%s: the saved streams stand at layer %d's input: layers %d-%d are loaded, not moved through\n",
                what, v[1] + 1, first + 1, v[1]);
    return v[1];
}
