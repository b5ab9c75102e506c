/* MoE layers on the GPU (layer_gpu.h, layer_grad_gpu.h), moe_forward's
 * and moe_backward's steps: the router's GEMM on the device, the routing on
 * the host (moe_route_rows, the CPU's own, so both pick the same experts),
 * then per expert a gather of its rows, its SwiGLU MLP and a weighted
 * scatter-add, one expert after the other on the stream (deterministic, as
 * on the CPU); backward, the router's logit gradient on the host
 * (moe_router_grad, the CPU's). */
#include <cuda_runtime_api.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/grad_kernels.h"
#include "model/cuda/kernels.h"
#include "model/cuda/layer_grad_gpu.h"
#include "model/moe.h"

struct GpuMoeActs {
    float *logits, *xe, *ye, *h1, *h2; /* device: [N, E], [N, D], [N, D], [N, I], [N, I] */
    int32_t *rows;                     /* device: every expert's rows, expert by expert [N * k] */
    float *w;                          /* device: their weights [N * k] */
    float *host_logits, *host_w;       /* host: [N, E], [N * k] */
    int *expert_of, *count;            /* host: [N, k], [E] */
    float *weight_of;                  /* host: [N, k] */
    int32_t *host_rows;                /* host: [N * k] */
    int *slot;                         /* host: [N * k] each list entry's (row, choice) index i * k + j */
    /* training (gpu_moe_acts_init_train): device act, dact [N, I], dxe [N, D], dw [N * k] (in the rows'
     * order), dz [N, E]; host dw in the list's order and by (row, choice), dz */
    float *act, *dact, *dxe, *dw, *dz, *host_dw_list, *host_dw, *host_dz;
};

void gpu_moe_acts_init(GpuActs *a, const ModelConfig *c, int N) {
    struct GpuMoeActs *m = callocCheck(1, sizeof *m);
    size_t n = (size_t)N, E = (size_t)c->n_experts, k = (size_t)c->n_experts_per_tok;
    size_t D = (size_t)c->hidden_size, I = (size_t)c->expert_intermediate_size;
    m->logits = gpu_alloc_counted(&a->bytes, n * E * sizeof(float));
    m->xe = gpu_alloc_counted(&a->bytes, n * D * sizeof(float));
    m->ye = gpu_alloc_counted(&a->bytes, n * D * sizeof(float));
    m->h1 = gpu_alloc_counted(&a->bytes, n * I * sizeof(float));
    m->h2 = gpu_alloc_counted(&a->bytes, n * I * sizeof(float));
    m->rows = gpu_alloc_counted(&a->bytes, n * k * sizeof(int32_t));
    m->w = gpu_alloc_counted(&a->bytes, n * k * sizeof(float));
    m->host_logits = mallocCheck(n * E * sizeof(float));
    m->host_w = mallocCheck(n * k * sizeof(float));
    m->expert_of = mallocCheck(n * k * sizeof(int));
    m->weight_of = mallocCheck(n * k * sizeof(float));
    m->count = mallocCheck(E * sizeof(int));
    m->host_rows = mallocCheck(n * k * sizeof(int32_t));
    m->slot = mallocCheck(n * k * sizeof(int));
    a->moe = m;
}

void gpu_moe_acts_init_train(GpuActs *a, const ModelConfig *c, int N) {
    struct GpuMoeActs *m = a->moe;
    size_t n = (size_t)N, E = (size_t)c->n_experts, k = (size_t)c->n_experts_per_tok;
    size_t D = (size_t)c->hidden_size, I = (size_t)c->expert_intermediate_size;
    m->act = gpu_alloc_counted(&a->bytes, n * I * sizeof(float));
    m->dact = gpu_alloc_counted(&a->bytes, n * I * sizeof(float));
    m->dxe = gpu_alloc_counted(&a->bytes, n * D * sizeof(float));
    m->dw = gpu_alloc_counted(&a->bytes, n * k * sizeof(float));
    m->dz = gpu_alloc_counted(&a->bytes, n * E * sizeof(float));
    m->host_dw_list = mallocCheck(n * k * sizeof(float));
    m->host_dw = mallocCheck(n * k * sizeof(float));
    m->host_dz = mallocCheck(n * E * sizeof(float));
}

void gpu_moe_acts_free(GpuActs *a) {
    struct GpuMoeActs *m = a->moe;
    if (!m) return;
    void *dev[] = {m->logits, m->xe, m->ye, m->h1, m->h2, m->rows, m->w, m->act, m->dact, m->dxe, m->dw, m->dz};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) gpu_free(dev[i]);
    void *host[] = {m->host_logits, m->host_w, m->expert_of, m->weight_of, m->count, m->host_rows,
                    m->slot, m->host_dw_list, m->host_dw, m->host_dz};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
    free(m);
    a->moe = NULL;
}

/* Each expert's rows in order (as gather_expert_rows lists them), expert
 * after expert, with the weight each row gives that expert and its
 * (row, choice) slot. */
static void list_rows(struct GpuMoeActs *m, int N, int E, int k) {
    int at = 0;
    for (int e = 0; e < E; e++) {
        m->count[e] = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < k; j++)
                if (m->expert_of[(size_t)i * k + j] == e) {
                    m->slot[at] = i * k + j;
                    m->host_rows[at] = i;
                    m->host_w[at++] = m->weight_of[(size_t)i * k + j];
                    m->count[e]++;
                }
    }
}

/* Expert X on its n listed rows from `at`: those rows of xn gathered into
 * m->xe, gate and up into m->h1, m->h2, act(gate) * up into act (m->h1 for
 * the forward alone; the backward keeps gate and up apart in m->act), the
 * expert's output into m->ye. */
static int expert_forward(GpuCtx *g, const GpuMat *X, const float *xn, struct GpuMoeActs *m, int at, int n, int D,
                          int I, float *act) {
    cudaStream_t s = (cudaStream_t)g->stream;
    float *gate_up[] = {m->h1, m->h2};
    const GpuMat *w_gate_up[] = {&X[0], &X[1]};
    const float *no_bias[] = {NULL, NULL};
    cuda_gather_rows(m->xe, xn, m->rows + at, n, D, s);
    if (gpu_linear_many(g, 2, gate_up, m->xe, w_gate_up, no_bias, n)) return -1;
    if (act == m->h1)
        cuda_glu(m->h1, m->h2, (int64_t)n * I, 0, s);
    else
        cuda_glu_out(act, m->h1, m->h2, (int64_t)n * I, 0, s);
    return gpu_linear(g, m->ye, act, &X[2], NULL, n, 0);
}

int gpu_moe_block(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const float *xn, float *out, int accumulate,
                  int N, GpuActs *a) {
    struct GpuMoeActs *m = a->moe;
    cudaStream_t s = (cudaStream_t)g->stream;
    int E = c->n_experts, k = c->n_experts_per_tok, D = c->hidden_size, I = c->expert_intermediate_size;
    if (gpu_linear(g, m->logits, xn, &gl->router, NULL, N, 0) || gpu_sync(g)) return -1;
    gpu_download(m->host_logits, m->logits, (size_t)N * E * sizeof(float));
    moe_route_rows(m->host_logits, N, E, k, !c->moe_topk_raw, m->expert_of, m->weight_of);
    list_rows(m, N, E, k);
    gpu_upload(m->rows, m->host_rows, (size_t)N * k * sizeof(int32_t));
    gpu_upload(m->w, m->host_w, (size_t)N * k * sizeof(float));
    if (!accumulate) gpu_zero(g, out, (size_t)N * D);
    for (int e = 0, at = 0; e < E; at += m->count[e++]) {
        int n = m->count[e];
        if (!n) continue;
        if (expert_forward(g, gl->experts + 3 * e, xn, m, at, n, D, I, m->h1)) return -1;
        cuda_scatter_add_rows(out, m->ye, m->rows + at, m->w + at, n, D, s);
    }
    return 0;
}

int gpu_moe_backward(GpuCtx *g, const ModelConfig *c, const GpuLayer *gl, const GpuLayerGrads *G, const float *xn,
                     const float *dout, float *dxn, int N, GpuActs *a) {
    struct GpuMoeActs *m = a->moe;
    cudaStream_t s = (cudaStream_t)g->stream;
    int E = c->n_experts, k = c->n_experts_per_tok, D = c->hidden_size, I = c->expert_intermediate_size;
    if (!m->act) return tm_fail("gpu_moe_backward: the activations were made for the forward alone");
    for (int e = 0, at = 0; e < E; at += m->count[e++]) {
        int n = m->count[e];
        if (!n) continue;
        const GpuMat *X = gl->experts + 3 * e;
        float *const *GX = G->experts ? G->experts + 3 * e : NULL; /* gate, up, down */
        int64_t nI = (int64_t)n * I;
        /* the expert's activations again, from its rows of xn */
        if (expert_forward(g, X, xn, m, at, n, D, I, m->act)) return -1;
        /* each row's routing-weight gradient, then ye becomes dy = w dout */
        cuda_moe_expert_grad(m->dw + at, m->ye, dout, m->rows + at, m->w + at, n, D, s);
        gpu_zero(g, m->dact, (size_t)nI);
        if (gpu_linear_backward(g, m->dact, GX ? GX[2] : NULL, NULL, m->ye, m->act, &X[2], n)) return -1;
        cuda_glu_backward(m->h1, m->h2, m->dact, m->h1, m->h2, nI, 0, s);
        gpu_zero(g, m->dxe, (size_t)n * D);
        if (gpu_linear_backward(g, m->dxe, GX ? GX[0] : NULL, NULL, m->h1, m->xe, &X[0], n) ||
            gpu_linear_backward(g, m->dxe, GX ? GX[1] : NULL, NULL, m->h2, m->xe, &X[1], n))
            return -1;
        cuda_scatter_add_rows(dxn, m->dxe, m->rows + at, NULL, n, D, s);
    }
    /* the router: its logit gradient on the host, as the CPU makes it */
    if (gpu_sync(g)) return -1;
    gpu_download(m->host_dw_list, m->dw, (size_t)N * k * sizeof(float));
    for (int at = 0; at < N * k; at++) m->host_dw[m->slot[at]] = m->host_dw_list[at]; /* by (row, choice) */
    moe_router_grad(m->host_dz, m->host_logits, m->expert_of, m->weight_of, m->host_dw, N, E, k, !c->moe_topk_raw);
    gpu_upload(m->dz, m->host_dz, (size_t)N * E * sizeof(float));
    return gpu_linear_backward(g, dxn, G->router, NULL, m->dz, xn, &gl->router, N);
}
