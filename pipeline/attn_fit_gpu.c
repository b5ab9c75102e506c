/* The attention fit's micro-batches on a GPU (attn_fit_gpu.h). Without
 * CUDA built in, attn_fit_gpu_init says so. */
#include "pipeline/attn_fit_gpu.h"

#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"

#ifdef TRANSMLA_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "model/cuda/grad_kernels.h"
#include "model/cuda/layer_grad_gpu.h"

struct AttnFitGpu {
    GpuCtx g;
    GpuLayer gl;         /* the fitted weights as the last attn_fit_gpu_weights left them */
    GpuActs acts;        /* the MLA block's training activations */
    GpuRowsBuf rows_buf; /* batch windows' positions */
    GpuRows rows;
    GpuLayerGrads G;     /* one block of P->total floats, the parameters end to end in P's order */
    float *xn, *y, *e;   /* [batch*T, D]: the inputs, the target, the error (then its gradient) */
    double *sq;          /* the error's sum of squares */
    float *host;         /* [P->total] the gradient on its way to P */
    int64_t total;
};

/* Where P's gradient host_g lies in the device block (NULL: not fitted). */
static float *grad_on_device(const AttnParams *P, const float *host_g, float *block) {
    if (!host_g) return NULL;
    int64_t off = 0;
    for (int i = 0; i < P->n; off += P->p[i].n, i++)
        if (P->p[i].g == host_g) return block + off;
    return NULL;
}

/* The device gradients laid out as P's parameters, each member of P->G mapped. */
static void map_grads(AttnFitGpu *d, const AttnParams *P) {
    const LayerWeights *G = &P->G;
    float *b = d->G.block;
    d->G.q = grad_on_device(P, tensor_grad_data(&G->q), b);
    d->G.q_a = grad_on_device(P, tensor_grad_data(&G->q_a), b);
    d->G.q_a_bias = grad_on_device(P, G->q_a_bias, b);
    d->G.q_a_norm = grad_on_device(P, G->q_a_norm, b);
    d->G.q_b = grad_on_device(P, tensor_grad_data(&G->q_b), b);
    d->G.kv_a = grad_on_device(P, tensor_grad_data(&G->kv_a), b);
    d->G.kv_a_bias = grad_on_device(P, G->kv_a_bias, b);
    d->G.kv_a_norm = grad_on_device(P, G->kv_a_norm, b);
    d->G.kv_b = grad_on_device(P, tensor_grad_data(&G->kv_b), b);
    d->G.o = grad_on_device(P, tensor_grad_data(&G->o), b);
}

int attn_fit_gpu_init(AttnFitGpu **out, const AttnFitProblem *p, int batch, int T, const RopeTable *rope,
                      const int32_t *pos) {
    *out = NULL;
    int count = gpu_count();
    if (count == 0) return tm_fail("--device cuda: no GPU is visible to this process");
    AttnFitGpu *d = callocCheck(1, sizeof *d);
    if (gpu_ctx_init(&d->g, p->local_rank % count, p->gpu_fp32 ? GPU_FP32 : GPU_BF16)) {
        gpu_ctx_free(&d->g);
        free(d);
        return -1;
    }
    size_t N = (size_t)batch * T, D = (size_t)p->c->hidden_size;
    gpu_acts_init_train(&d->acts, p->c, (int)N, 0);
    gpu_rows_upload(&d->rows_buf, &d->rows, rope, batch, T, pos, NULL);
    d->xn = gpu_alloc(N * D * sizeof(float));
    d->y = gpu_alloc(N * D * sizeof(float));
    d->e = gpu_alloc(N * D * sizeof(float));
    d->sq = gpu_alloc(sizeof(double));
    *out = d;
    return 0;
}

void attn_fit_gpu_free(AttnFitGpu *d) {
    if (!d) return;
    gpu_layer_free(&d->gl);
    gpu_acts_free(&d->acts);
    gpu_rows_free(&d->rows_buf);
    gpu_layer_grads_free(&d->G);
    void *bufs[] = {d->xn, d->y, d->e, d->sq};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) gpu_free(bufs[i]);
    free(d->host);
    gpu_ctx_free(&d->g);
    free(d);
}

int attn_fit_gpu_weights(AttnFitGpu *d, const AttnFitProblem *p, const AttnParams *P) {
    if (gpu_layer_refresh(&d->gl, &d->g, p->c, &P->L, p->layer)) return -1;
    if (d->total != P->total) { /* the first pass: the gradient block for P's parameters */
        gpu_layer_grads_free(&d->G);
        free(d->host);
        d->total = P->total;
        d->G.n = (size_t)P->total;
        d->G.block = gpu_alloc((size_t)P->total * sizeof(float));
        d->host = mallocCheck((size_t)P->total * sizeof(float));
        map_grads(d, P);
    }
    return 0;
}

int attn_fit_gpu_mb(AttnFitGpu *d, const AttnFitProblem *p, const float *xn, const float *y, int B, double norm,
                    int grad, AttnParams *P, float *y_fit, double *sum) {
    cudaStream_t s = (cudaStream_t)d->g.stream;
    const ModelConfig *c = p->c;
    size_t N = (size_t)B * d->rows.T, ND = N * c->hidden_size;
    GpuRows rows = d->rows;
    rows.B = B;
    gpu_upload(d->xn, xn, ND * sizeof(float));
    gpu_upload(d->y, y, ND * sizeof(float));
    /* e = the block's output - y, as mla_forward adds its output into -y */
    gpu_copy(&d->g, d->e, d->y, ND);
    cuda_scale(d->e, (int64_t)ND, -1.0f, s);
    if (gpu_mla_attention(&d->g, c, &d->gl, p->layer, d->xn, d->e, 1, &rows, &d->acts)) return -1;
    cuda_sum_squares(d->sq, d->e, (int64_t)ND, s);
    if (gpu_sync(&d->g)) return -1;
    gpu_download(sum, d->sq, sizeof(double));
    if (y_fit) {
        gpu_download(y_fit, d->e, ND * sizeof(float));
        for (size_t i = 0; i < ND; i++) y_fit[i] += y[i];
    }
    if (!grad) return 0;
    cuda_scale(d->e, (int64_t)ND, (float)(2.0 / norm), s);
    gpu_zero(&d->g, d->G.block, (size_t)d->total);
    if (gpu_mla_attention_backward(&d->g, c, &d->gl, &d->G, p->layer, d->xn, d->e, NULL, &rows, &d->acts) ||
        gpu_sync(&d->g))
        return -1;
    gpu_download(d->host, d->G.block, (size_t)d->total * sizeof(float));
    for (int64_t i = 0, off = 0; i < P->n; off += P->p[i].n, i++)
        for (int64_t j = 0; j < P->p[i].n; j++) P->p[i].g[j] += d->host[off + j];
    return 0;
}

#else

int attn_fit_gpu_init(AttnFitGpu **d, const AttnFitProblem *p, int batch, int T, const RopeTable *rope,
                      const int32_t *pos) {
    (void)p, (void)batch, (void)T, (void)rope, (void)pos;
    *d = NULL;
    return tm_fail("--device cuda: this transmla was built without CUDA (cmake -DTRANSMLA_CUDA=ON)");
}
void attn_fit_gpu_free(AttnFitGpu *d) { (void)d; }
int attn_fit_gpu_weights(AttnFitGpu *d, const AttnFitProblem *p, const AttnParams *P) {
    (void)d, (void)p, (void)P;
    return tm_fail("attn_fit_gpu: built without CUDA");
}
int attn_fit_gpu_mb(AttnFitGpu *d, const AttnFitProblem *p, const float *xn, const float *y, int B, double norm,
                    int grad, AttnParams *P, float *y_fit, double *sum) {
    (void)d, (void)p, (void)xn, (void)y, (void)B, (void)norm, (void)grad, (void)P, (void)y_fit, (void)sum;
    return tm_fail("attn_fit_gpu: built without CUDA");
}

#endif
