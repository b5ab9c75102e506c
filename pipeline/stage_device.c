/* A stage on the CPU or a GPU (stage_device.h). */
#include "pipeline/stage_device.h"

#include <stdlib.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#ifdef TRANSMLA_HAVE_CUDA
#include "model/cuda/model_gpu.h"

struct StageDevice {
    GpuCtx g;
    GpuModel gm;
    int scores; /* the last stage of a scoring job: its layers' output stays on the device */
};

int stage_device_check(int device) {
    if (device == PIPE_CUDA && gpu_count() == 0) return tm_fail("--device cuda: no GPU is visible to this process");
    return 0;
}

int stage_device_init(StageDevice **d, const Topology *t, const Model *m, const PipeJob *j, const Workspace *ws) {
    *d = NULL;
    if (j->device != PIPE_CUDA) return 0;
    if (stage_device_check(j->device)) return -1;
    int n = gpu_count();
    StageDevice *s = callocCheck(1, sizeof *s);
    if (gpu_ctx_init(&s->g, t->local_rank % n, j->gpu_fp32 ? GPU_FP32 : GPU_BF16)) {
        free(s);
        return -1;
    }
    if (gpu_model_init(&s->gm, &s->g, m, ws->B, ws->T)) {
        gpu_ctx_free(&s->g);
        free(s);
        return -1;
    }
    s->gm.rows.hook = j->hook; /* the projections come to the host, where the statistics are summed */
    s->gm.rows.hook_ctx = j->hook_ctx;
    s->scores = j->score && m->part.head;
    *d = s;
    return 0;
}

void stage_device_free(StageDevice *d) {
    if (!d) return;
    gpu_model_free(&d->gm);
    gpu_ctx_free(&d->g);
    free(d);
}

void stage_device_layers(StageDevice *d, const Model *m, Workspace *ws) {
    if (!d) {
        model_layers(m, ws, m->part.first, m->part.end);
        return;
    }
    if (gpu_model_layers(&d->gm, &d->g, ws->x, d->scores ? NULL : ws->x, ws->B)) tm_die("%s", tm_error());
}

double stage_device_head_nll(StageDevice *d, const Model *m, const int32_t *tokens, Workspace *ws,
                             int64_t *n_predicted) {
    if (!d) {
        model_final_norm(m, ws);
        return model_head_nll(m, tokens, ws, n_predicted);
    }
    double nll;
    if (gpu_model_head_nll(&d->gm, &d->g, tokens, ws->B, &nll, n_predicted)) tm_die("%s", tm_error());
    return nll;
}

#else /* CPU only */

int stage_device_check(int device) {
    if (device == PIPE_CUDA)
        return tm_fail("--device cuda: this transmla was built without CUDA (cmake -DTRANSMLA_CUDA=ON)");
    return 0;
}

int stage_device_init(StageDevice **d, const Topology *t, const Model *m, const PipeJob *j, const Workspace *ws) {
    (void)t, (void)m, (void)ws;
    *d = NULL;
    return stage_device_check(j->device);
}

void stage_device_free(StageDevice *d) { (void)d; }

void stage_device_layers(StageDevice *d, const Model *m, Workspace *ws) {
    (void)d;
    model_layers(m, ws, m->part.first, m->part.end);
}

double stage_device_head_nll(StageDevice *d, const Model *m, const int32_t *tokens, Workspace *ws,
                             int64_t *n_predicted) {
    (void)d;
    model_final_norm(m, ws);
    return model_head_nll(m, tokens, ws, n_predicted);
}

#endif
