/* MoE layers on the GPU (layer_gpu.h), moe_forward's steps: the router's
 * GEMM on the device, the routing on the host (moe_route_rows, the CPU's
 * own, so both pick the same experts), then per expert a gather of its
 * rows, its SwiGLU MLP and a weighted scatter-add, one expert after the
 * other on the stream (deterministic, as on the CPU). */
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/kernels.h"
#include "model/cuda/layer_gpu.h"
#include "model/moe.h"

struct GpuMoeActs {
    float *logits, *xe, *ye, *h1, *h2; /* device: [N, E], [N, D], [N, D], [N, I], [N, I] */
    int32_t *rows;                     /* device: every expert's rows, expert by expert [N * k] */
    float *w;                          /* device: their weights [N * k] */
    float *host_logits, *host_w;       /* host: [N, E], [N * k] */
    int *expert_of, *count;            /* host: [N, k], [E] */
    float *weight_of;                  /* host: [N, k] */
    int32_t *host_rows;                /* host: [N * k] */
};

void gpu_moe_acts_init(GpuActs *a, const ModelConfig *c, int N) {
    struct GpuMoeActs *m = callocCheck(1, sizeof *m);
    size_t n = (size_t)N, E = (size_t)c->n_experts, k = (size_t)c->n_experts_per_tok;
    size_t D = (size_t)c->hidden_size, I = (size_t)c->expert_intermediate_size;
    m->logits = gpu_alloc(n * E * sizeof(float));
    m->xe = gpu_alloc(n * D * sizeof(float));
    m->ye = gpu_alloc(n * D * sizeof(float));
    m->h1 = gpu_alloc(n * I * sizeof(float));
    m->h2 = gpu_alloc(n * I * sizeof(float));
    m->rows = gpu_alloc(n * k * sizeof(int32_t));
    m->w = gpu_alloc(n * k * sizeof(float));
    a->bytes += n * (E + 2 * D + 2 * I + 2 * k) * 4;
    m->host_logits = mallocCheck(n * E * sizeof(float));
    m->host_w = mallocCheck(n * k * sizeof(float));
    m->expert_of = mallocCheck(n * k * sizeof(int));
    m->weight_of = mallocCheck(n * k * sizeof(float));
    m->count = mallocCheck(E * sizeof(int));
    m->host_rows = mallocCheck(n * k * sizeof(int32_t));
    a->moe = m;
}

void gpu_moe_acts_free(GpuActs *a) {
    struct GpuMoeActs *m = a->moe;
    if (!m) return;
    void *dev[] = {m->logits, m->xe, m->ye, m->h1, m->h2, m->rows, m->w};
    for (size_t i = 0; i < sizeof dev / sizeof *dev; i++) gpu_free(dev[i]);
    void *host[] = {m->host_logits, m->host_w, m->expert_of, m->weight_of, m->count, m->host_rows};
    for (size_t i = 0; i < sizeof host / sizeof *host; i++) free(host[i]);
    free(m);
    a->moe = NULL;
}

/* Each expert's rows in order (as gather_expert_rows lists them), expert
 * after expert, with the weight each row gives that expert. */
static void list_rows(struct GpuMoeActs *m, int N, int E, int k) {
    int at = 0;
    for (int e = 0; e < E; e++) {
        m->count[e] = 0;
        for (int i = 0; i < N; i++)
            for (int j = 0; j < k; j++)
                if (m->expert_of[(size_t)i * k + j] == e) {
                    m->host_rows[at] = i;
                    m->host_w[at++] = m->weight_of[(size_t)i * k + j];
                    m->count[e]++;
                }
    }
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
    if (!accumulate) cudaMemsetAsync(out, 0, (size_t)N * D * sizeof(float), s);
    for (int e = 0, at = 0; e < E; at += m->count[e++]) {
        int n = m->count[e];
        if (!n) continue;
        const GpuMat *X = gl->experts + 3 * e;
        float *gate_up[] = {m->h1, m->h2};
        const GpuMat *w_gate_up[] = {&X[0], &X[1]};
        const float *no_bias[] = {NULL, NULL};
        cuda_gather_rows(m->xe, xn, m->rows + at, n, D, s);
        if (gpu_linear_many(g, 2, gate_up, m->xe, w_gate_up, no_bias, n)) return -1;
        cuda_glu(m->h1, m->h2, (int64_t)n * I, 0, s);
        if (gpu_linear(g, m->ye, m->h1, &X[2], NULL, n, 0)) return -1;
        cuda_scatter_add_rows(out, m->ye, m->rows + at, m->w + at, n, D, s);
    }
    return 0;
}
