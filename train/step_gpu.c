/* A fine-tuning step's layers and head on the GPU (step_gpu.h): the device
 * twin of step.c's forward_micro / head_micro / backward_micro with
 * recompute. Without CUDA built in, step_gpu_init says so. */
#include "train/step_gpu.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

#ifdef TRANSMLA_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "model/crossentropy.h"
#include "model/cuda/grad_kernels.h"
#include "model/cuda/kernels.h"
#include "model/cuda/layer_grad_gpu.h"

struct StepGpu {
    GpuCtx g;
    int n_local;
    GpuLayer *layers;      /* [n_local] */
    GpuLayerGrads *grads;  /* [n_local], laid out as the host's buckets */
    GpuActs acts;          /* one layer's training activations (recomputed before its backward) */
    GpuRowsBuf rows_buf;   /* positions and document starts of the step's K micro-batches */
    GpuRows rows;
    float **saved;         /* [n_saved = K * (n_local + 1)] each micro-batch's layer inputs and the stage's output */
    int n_saved;
    float *x_tmp, *dx;     /* [N, D] the recomputed layer's output, the gradient */
    /* the head (last stage) */
    float *final_norm, *d_final_norm, *d_head; /* the gradients NULL when frozen */
    GpuMat head;
    float *xn, *dxn, *rstd, *logits, *ce_max, *ce_target, *lse;
    double *ce_sum;
    int32_t *targets;      /* [K * N] */
    int chunk;
    CrossEntropy ce;       /* the host's copy of the running log-sum-exp, for the NLL */
    float *host;           /* staging for the gradients added to the host's */
    size_t host_n;
    size_t act_bytes;      /* the activations' device memory (act_f32's) */
};

static size_t rows_n(const TrainStep *s) { return (size_t)s->B * s->T; }

static float *dev_f32(size_t n) { return gpu_alloc(n * sizeof(float)); }

/* An activation buffer, counted in d->act_bytes. */
static float *act_f32(StepGpu *d, size_t n) { return gpu_alloc_counted(&d->act_bytes, n * sizeof(float)); }

/* Micro-batch k's rows on the device. */
static GpuRows rows_of(const StepGpu *d, const TrainStep *s, int k) {
    GpuRows r = d->rows;
    r.B = s->B;
    r.pos += (size_t)k * rows_n(s);
    r.doc_start += (size_t)k * rows_n(s);
    return r;
}

static float *saved(const StepGpu *d, int k, int li) { return d->saved[k * (d->n_local + 1) + li]; }

static int upload_weights(StepGpu *d, const TrainStep *s) {
    const Model *m = s->m;
    for (int li = 0; li < d->n_local; li++) {
        int l = m->part.first + li;
        if (gpu_layer_refresh(&d->layers[li], &d->g, &m->cfg, &m->w.layers[l], l)) return -1;
    }
    if (!m->part.head) return 0;
    gpu_upload(d->final_norm, m->w.final_norm, (size_t)m->cfg.hidden_size * sizeof(float));
    gpu_mat_free(&d->head);
    gpu_mat_upload(&d->head, &d->g, &m->w.lm_head);
    return 0;
}

static void init_head(StepGpu *d, const TrainStep *s) {
    const ModelConfig *c = &s->m->cfg;
    const ModelWeights *gw = &s->ps->grads;
    size_t N = rows_n(s), D = (size_t)c->hidden_size;
    d->final_norm = dev_f32(D);
    d->d_final_norm = gw->final_norm ? dev_f32(D) : NULL;
    d->d_head = gw->lm_head.data ? dev_f32((size_t)c->vocab_size * D) : NULL;
    d->chunk = model_head_vocab_chunk((int)N, c->vocab_size);
    d->xn = act_f32(d, N * D);
    d->dxn = act_f32(d, N * D);
    d->rstd = act_f32(d, N);
    d->logits = act_f32(d, N * d->chunk);
    d->ce_max = act_f32(d, N);
    d->ce_target = act_f32(d, N);
    d->lse = act_f32(d, N);
    d->ce_sum = gpu_alloc(N * sizeof(double));
    d->targets = gpu_alloc((size_t)s->K * N * sizeof(int32_t));
    crossentropy_init(&d->ce, (int)N);
}

int step_gpu_init(StepGpu **out, const TrainStep *s, int fp32) {
    *out = NULL;
    if (s->teacher) return tm_fail("--device cuda: distillation (--distill-from) runs on the CPU only");
    if (!s->recompute) return tm_fail("--device cuda: fine-tuning on the GPU recomputes layers (--recompute on)");
    if (gpu_count() == 0) return tm_fail("--device cuda: no GPU is visible to this process");
    const Model *m = s->m;
    size_t N = rows_n(s), D = (size_t)m->cfg.hidden_size;
    StepGpu *d = callocCheck(1, sizeof *d);
    d->n_local = s->n_local;
    if (gpu_ctx_init(&d->g, s->topo->local_rank % gpu_count(), fp32 ? GPU_FP32 : GPU_BF16)) {
        gpu_ctx_free(&d->g);
        free(d);
        return -1;
    }
    gpu_acts_init_train(&d->acts, &m->cfg, (int)N, 1);
    d->layers = callocCheck((size_t)d->n_local + 1, sizeof *d->layers);
    d->grads = callocCheck((size_t)d->n_local + 1, sizeof *d->grads);
    for (int li = 0; li < d->n_local; li++) {
        int l = m->part.first + li;
        const GradBucket *b = params_bucket(s->ps, l); /* NULL: the layer is frozen whole */
        const float *host = b ? s->ps->g + b->first : s->ps->g;
        int n_experts = hf_config_layer_is_moe(&m->cfg, l) ? m->cfg.n_experts : 0;
        if (gpu_layer_grads_init(&d->grads[li], &s->ps->grads.layers[l], n_experts, host,
                                 b ? (size_t)(b->end - b->first) : 0)) {
            step_gpu_free(d);
            return -1;
        }
    }
    gpu_rows_upload(&d->rows_buf, &d->rows, &s->rope, s->B * s->K, s->T, s->pos, s->doc_start);
    d->n_saved = s->K * (d->n_local + 1);
    d->saved = callocCheck((size_t)d->n_saved, sizeof *d->saved);
    for (int i = 0; i < d->n_saved; i++) d->saved[i] = act_f32(d, N * D);
    d->x_tmp = act_f32(d, N * D);
    d->dx = act_f32(d, N * D);
    if (m->part.head) init_head(d, s);
    if (upload_weights(d, s)) {
        step_gpu_free(d);
        return -1;
    }
    *out = d;
    return 0;
}

void step_gpu_free(StepGpu *d) {
    if (!d) return;
    for (int li = 0; li < d->n_local; li++) {
        gpu_layer_free(&d->layers[li]);
        gpu_layer_grads_free(&d->grads[li]);
    }
    free(d->layers);
    free(d->grads);
    gpu_acts_free(&d->acts);
    gpu_rows_free(&d->rows_buf);
    for (int i = 0; i < d->n_saved; i++) gpu_free(d->saved[i]);
    free(d->saved);
    void *bufs[] = {d->x_tmp, d->dx, d->final_norm, d->d_final_norm, d->d_head, d->xn, d->dxn, d->rstd, d->logits,
                    d->ce_max, d->ce_target, d->lse, d->ce_sum, d->targets};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) gpu_free(bufs[i]);
    gpu_mat_free(&d->head);
    if (d->ce.max) crossentropy_free(&d->ce);
    free(d->host);
    gpu_ctx_free(&d->g);
    free(d);
}

int step_gpu_rows(StepGpu *d, const TrainStep *s) {
    size_t n = (size_t)s->K * rows_n(s) * sizeof(int32_t);
    gpu_upload(d->rows_buf.pos, s->pos, n);
    gpu_upload(d->rows_buf.doc_start, s->doc_start, n);
    if (d->targets) gpu_upload(d->targets, s->targets, n);
    return 0;
}

int step_gpu_forward(StepGpu *d, const TrainStep *s, int k, const float *x0, float *x_out) {
    const Model *m = s->m;
    size_t ND = rows_n(s) * m->cfg.hidden_size;
    gpu_upload(saved(d, k, 0), x0, ND * sizeof(float));
    GpuRows r = rows_of(d, s, k);
    for (int li = 0; li < d->n_local; li++) {
        gpu_copy(&d->g, saved(d, k, li + 1), saved(d, k, li), ND);
        if (gpu_layer_forward(&d->g, &m->cfg, &d->layers[li], m->part.first + li, saved(d, k, li + 1), &r, &d->acts))
            return -1;
    }
    if (gpu_sync(&d->g)) return -1;
    if (x_out) gpu_download(x_out, saved(d, k, d->n_local), ND * sizeof(float));
    return 0;
}

/* Final norm, LM head and loss of micro-batch k, forward and backward
 * (head_micro): d->dx = the gradient at the stage's output; *nll += the
 * NLL sum. Two passes over the vocabulary: the log-sum-exps, then the
 * gradient. */
static int head_backward(StepGpu *d, const TrainStep *s, int k, float weight, double *nll) {
    const ModelConfig *c = &s->m->cfg;
    cudaStream_t st = (cudaStream_t)d->g.stream;
    int N = (int)rows_n(s), D = c->hidden_size, V = c->vocab_size;
    float cap = (float)c->final_softcap, eps = (float)c->rms_norm_eps;
    const float *x = saved(d, k, d->n_local);
    const int32_t *targets = d->targets + (size_t)k * N;
    cuda_rmsnorm(d->xn, d->rstd, x, d->final_norm, N, D, eps, st);
    cuda_crossentropy_reset(d->ce_max, d->ce_sum, d->ce_target, N, st);
    for (int v0 = 0; v0 < V; v0 += d->chunk) {
        int cols = V - v0 < d->chunk ? V - v0 : d->chunk;
        GpuMat w = gpu_mat_rows(&d->head, v0, cols);
        if (gpu_linear(&d->g, d->logits, d->xn, &w, NULL, N, 0)) return -1;
        cuda_crossentropy_update(d->ce_max, d->ce_sum, d->ce_target, d->logits, N, cols, v0, targets, cap, st);
    }
    cuda_crossentropy_lse(d->lse, d->ce_max, d->ce_sum, N, st);
    if (gpu_sync(&d->g)) return -1;
    gpu_download(d->ce.max, d->ce_max, (size_t)N * sizeof(float));
    gpu_download(d->ce.sum, d->ce_sum, (size_t)N * sizeof(double));
    gpu_download(d->ce.target_logit, d->ce_target, (size_t)N * sizeof(float));
    int64_t counted;
    *nll += crossentropy_finish(&d->ce, N, s->targets + (size_t)k * N, &counted);
    gpu_zero(&d->g, d->dxn, (size_t)N * D);
    for (int v0 = 0; v0 < V; v0 += d->chunk) {
        int cols = V - v0 < d->chunk ? V - v0 : d->chunk;
        GpuMat w = gpu_mat_rows(&d->head, v0, cols);
        if (gpu_linear(&d->g, d->logits, d->xn, &w, NULL, N, 0)) return -1;
        cuda_crossentropy_grad(d->logits, d->lse, targets, N, cols, v0, weight, cap, st);
        float *dw = d->d_head ? d->d_head + (size_t)v0 * D : NULL;
        if (gpu_linear_backward(&d->g, d->dxn, dw, NULL, d->logits, d->xn, &w, N)) return -1;
    }
    gpu_zero(&d->g, d->dx, (size_t)N * D);
    cuda_rmsnorm_backward(d->dx, d->d_final_norm, d->dxn, x, d->final_norm, d->rstd, N, D, st);
    return 0;
}

int step_gpu_backward(StepGpu *d, const TrainStep *s, int k, float weight, float *dx, double *nll) {
    const Model *m = s->m;
    size_t ND = rows_n(s) * m->cfg.hidden_size;
    if (m->part.head) {
        if (head_backward(d, s, k, weight, nll)) return -1;
    } else {
        gpu_upload(d->dx, dx, ND * sizeof(float));
    }
    GpuRows r = rows_of(d, s, k);
    for (int li = d->n_local - 1; li >= 0; li--) {
        int l = m->part.first + li;
        gpu_copy(&d->g, d->x_tmp, saved(d, k, li), ND); /* recompute the layer, keeping what its backward reads */
        if (gpu_layer_forward(&d->g, &m->cfg, &d->layers[li], l, d->x_tmp, &r, &d->acts) ||
            gpu_layer_backward(&d->g, &m->cfg, &d->layers[li], &d->grads[li], l, saved(d, k, li), d->dx, &r,
                               &d->acts))
            return -1;
    }
    if (gpu_sync(&d->g)) return -1;
    gpu_download(dx, d->dx, ND * sizeof(float));
    return 0;
}

/* host[0, n) += the device's dev[0, n), which is then zeroed for the next step. */
static void add_to_host(StepGpu *d, float *host, float *dev, size_t n) {
    if (!dev || !n) return;
    if (n > d->host_n) {
        free(d->host);
        d->host = mallocCheck(n * sizeof(float));
        d->host_n = n;
    }
    gpu_download(d->host, dev, n * sizeof(float));
    for (size_t i = 0; i < n; i++) host[i] += d->host[i];
    cudaMemset(dev, 0, n * sizeof(float));
}

int step_gpu_add_grads(StepGpu *d, const TrainStep *s) {
    if (gpu_sync(&d->g)) return -1;
    const Model *m = s->m;
    for (int li = 0; li < d->n_local; li++) {
        const GradBucket *b = params_bucket(s->ps, m->part.first + li);
        if (b) add_to_host(d, s->ps->g + b->first, d->grads[li].block, d->grads[li].n);
    }
    if (!m->part.head) return 0;
    size_t D = (size_t)m->cfg.hidden_size;
    add_to_host(d, s->ps->grads.final_norm, d->d_final_norm, D);
    add_to_host(d, (float *)s->ps->grads.lm_head.data, d->d_head, (size_t)m->cfg.vocab_size * D);
    return 0;
}

int step_gpu_weights(StepGpu *d, const TrainStep *s) { return upload_weights(d, s); }

size_t step_gpu_activation_bytes(const StepGpu *d) { return d->act_bytes + d->acts.bytes; }

#else

int step_gpu_init(StepGpu **d, const TrainStep *s, int fp32) {
    (void)s, (void)fp32;
    *d = NULL;
    return tm_fail("--device cuda: this transmla was built without CUDA (cmake -DTRANSMLA_CUDA=ON)");
}
void step_gpu_free(StepGpu *d) { (void)d; }
static int no_gpu(void) { return tm_fail("step_gpu: built without CUDA"); }
int step_gpu_rows(StepGpu *d, const TrainStep *s) { return (void)d, (void)s, no_gpu(); }
int step_gpu_forward(StepGpu *d, const TrainStep *s, int k, const float *x0, float *x_out) {
    return (void)d, (void)s, (void)k, (void)x0, (void)x_out, no_gpu();
}
int step_gpu_backward(StepGpu *d, const TrainStep *s, int k, float weight, float *dx, double *nll) {
    return (void)d, (void)s, (void)k, (void)weight, (void)dx, (void)nll, no_gpu();
}
int step_gpu_add_grads(StepGpu *d, const TrainStep *s) { return (void)d, (void)s, no_gpu(); }
int step_gpu_weights(StepGpu *d, const TrainStep *s) { return (void)d, (void)s, no_gpu(); }
size_t step_gpu_activation_bytes(const StepGpu *d) { return (void)d, 0; }

#endif
