/* A stage on the CPU or a GPU (stage_device.h). Without CUDA built in, or
 * with d NULL, every call is the CPU engine's. */
#include "pipeline/stage_device.h"

#include <stdio.h>
#include <stdlib.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#ifdef TRANSMLA_HAVE_CUDA
#include "model/cuda/model_gpu.h"
#include "pipeline/calib_gpu.h"

struct StageDevice {
    GpuCtx g;
    GpuModel gm;
    int scores;      /* the last stage of a scoring job: its layers' output stays on the device */
    CalibStats *host; /* a calibration's sums, made on the device in stats */
    GpuStats stats;
};

/* The job's statistics summed on the device; else its hook gets each
 * layer's projections on the host. */
static void stats_init(StageDevice *s, const PipeJob *j, const Workspace *ws) {
    CalibStats *h = j->stats;
    if (!h) {
        s->gm.rows.hook = j->hook;
        s->gm.rows.hook_ctx = j->hook_ctx;
        return;
    }
    calib_gpu_init(&s->stats, h, ws->B * ws->T);
    s->host = h;
    s->gm.rows.stats = &s->stats;
}
#endif

int stage_device_check(int device) {
    if (device != PIPE_CUDA) return 0;
#ifdef TRANSMLA_HAVE_CUDA
    return gpu_count() ? 0 : tm_fail("--device cuda: no GPU is visible to this process");
#else
    return tm_fail("--device cuda: this transmla was built without CUDA (cmake -DTRANSMLA_CUDA=ON)");
#endif
}

int stage_device_init(StageDevice **d, const Topology *t, const Model *m, const PipeJob *j, const Workspace *ws) {
    *d = NULL;
    if (j->device != PIPE_CUDA) return 0;
    if (stage_device_check(j->device)) return -1;
#ifdef TRANSMLA_HAVE_CUDA
    StageDevice *s = callocCheck(1, sizeof *s);
    if (gpu_ctx_init(&s->g, t->local_rank % gpu_count(), j->gpu_fp32 ? GPU_FP32 : GPU_BF16) ||
        gpu_model_init(&s->gm, &s->g, m, ws->B, ws->T)) {
        gpu_ctx_free(&s->g); /* what the failed init made (a stream, a cuBLAS handle) */
        free(s);
        return -1;
    }
    stats_init(s, j, ws);
    if (s->gm.streamed && j->label && t->replica == 0) /* once per stage and pass */
        fprintf(stderr, "%s: stage %d's %d layers do not fit GPU %d: streamed from %.2f GiB of pinned host memory "
                "through two device slots\n", j->label, t->stage, m->part.end - m->part.first, s->g.device,
                (double)s->gm.stream.host_bytes / (1 << 30));
    s->scores = j->score && m->part.head;
    *d = s;
#else
    (void)t, (void)m, (void)ws;
#endif
    return 0;
}

void stage_device_finish(StageDevice *d) {
#ifdef TRANSMLA_HAVE_CUDA
    if (!d || !d->host) return;
    if (calib_gpu_collect(&d->g, &d->stats, d->host)) tm_die("%s", tm_error());
#else
    (void)d;
#endif
}

void stage_device_free(StageDevice *d) {
#ifdef TRANSMLA_HAVE_CUDA
    if (!d) return;
    gpu_stats_free(&d->stats);
    gpu_model_free(&d->gm);
    gpu_ctx_free(&d->g);
    free(d);
#else
    (void)d;
#endif
}

void stage_device_layers(StageDevice *d, const Model *m, Workspace *ws) {
#ifdef TRANSMLA_HAVE_CUDA
    if (d) {
        if (gpu_model_layers(&d->gm, &d->g, ws->x, d->scores ? NULL : ws->x, ws->B)) tm_die("%s", tm_error());
        return;
    }
#else
    (void)d;
#endif
    model_layers(m, ws, m->part.first, m->part.end);
}

double stage_device_head_nll(StageDevice *d, const Model *m, const int32_t *tokens, Workspace *ws,
                             int64_t *n_predicted) {
#ifdef TRANSMLA_HAVE_CUDA
    if (d) {
        double nll;
        if (gpu_model_head_nll(&d->gm, &d->g, tokens, ws->B, &nll, n_predicted)) tm_die("%s", tm_error());
        return nll;
    }
#else
    (void)d;
#endif
    model_final_norm(m, ws);
    return model_head_nll(m, tokens, ws, n_predicted);
}
