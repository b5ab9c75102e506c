/* GPU forward throughput at real layer shapes (random bf16 weights) next to
 * cuBLAS's own bf16 GEMM on the same GEMM shapes, measured in the same run
 * (issue 24). For each config: the layers' forward on the GPU (bf16 GEMMs,
 * fp32 activations, the attention kernel), then the attention kernel
 * alone, then cuBLAS bf16 x bf16 -> fp32 GEMMs of the layers' seven weight
 * shapes with inputs already in bf16.
 *
 *   bench_gpu_forward [--config FILE]... [--layers 2] [--batch 4] [--seqlen 2048] [--reps 5]
 *
 * Default configs: Llama-3.2-1B and Qwen2.5-72B. The ratio printed is the
 * forward's TFLOP/s (every layer FLOP, attention included, over the whole
 * layers' time) over cuBLAS's TFLOP/s on those GEMMs. The head is not timed
 * (the vocabulary is cut to 1024 to save the upload). */
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/cublas_load.h"
#include "model/cuda/model_gpu.h"
#include "random_weights.h"

typedef struct {
    cudaEvent_t a, b;
} Timer;

static void timer_start(Timer *t, GpuCtx *g) { cudaEventRecord(t->a, (cudaStream_t)g->stream); }
static double timer_stop(Timer *t, GpuCtx *g) {
    cudaEventRecord(t->b, (cudaStream_t)g->stream);
    if (gpu_sync(g)) tm_die("%s", tm_error());
    float ms = 0;
    cudaEventElapsedTime(&ms, t->a, t->b);
    return ms / 1e3;
}

/* Best seconds of `reps` runs of the model's layers on gm->x. */
static double time_layers(GpuModel *gm, GpuCtx *g, Timer *t, int reps) {
    const ModelConfig *c = &gm->m->cfg;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) { /* r == 0: warm-up */
        timer_start(t, g);
        for (int l = 0; l < c->n_layers; l++)
            if (gpu_layer_forward(g, c, &gm->layers[l], l, gm->x, &gm->rows, &gm->acts)) tm_die("%s", tm_error());
        double s = timer_stop(t, g);
        if (r) best = s < best ? s : best;
    }
    return best;
}

static double time_attention(GpuModel *gm, GpuCtx *g, Timer *t, int reps) {
    const ModelConfig *c = &gm->m->cfg;
    GpuActs *a = &gm->acts;
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        timer_start(t, g);
        for (int l = 0; l < c->n_layers; l++)
            if (gpu_attention(g, c, l, a, &gm->rows)) tm_die("%s", tm_error());
        double s = timer_stop(t, g);
        if (r) best = s < best ? s : best;
    }
    return best;
}

/* cuBLAS bf16 GEMMs of the layers' q, k, v, o, gate, up, down shapes over N rows. */
static double time_cublas(const ModelConfig *c, GpuCtx *g, Timer *t, int N, int reps, double *flops) {
    int D = c->hidden_size, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim, I = c->intermediate_size;
    int shapes[7][2] = {{qd, D}, {kvd, D}, {kvd, D}, {D, qd}, {I, D}, {I, D}, {D, I}};
    size_t maxk = (size_t)(D > I ? D : I), maxm = (size_t)(I > qd ? I : qd);
    maxm = maxm > (size_t)D ? maxm : (size_t)D;
    void *w = gpu_alloc(maxm * maxk * 2), *in = gpu_alloc((size_t)N * maxk * 2);
    float *out = gpu_alloc((size_t)N * maxm * sizeof(float));
    cudaMemset(w, 0x3c, maxm * maxk * 2); /* bf16 0x3c3c ~ 0.0115: finite, non-zero */
    cudaMemset(in, 0x3c, (size_t)N * maxk * 2);
    float one = 1.0f, zero = 0.0f;
    const CublasApi *blas = cublas_api(); /* opened by gpu_ctx_init */
    double best = 1e30;
    for (int r = 0; r <= reps; r++) {
        *flops = 0;
        timer_start(t, g);
        for (int l = 0; l < c->n_layers; l++)
            for (int s = 0; s < 7; s++) {
                int m = shapes[s][0], k = shapes[s][1];
                cublasStatus_t st = blas->gemm_ex((cublasHandle_t)g->blas, CUBLAS_OP_T, CUBLAS_OP_N, m, N, k, &one, w,
                                                 CUDA_R_16BF, k, in, CUDA_R_16BF, k, &zero, out, CUDA_R_32F, m,
                                                 CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
                if (st != CUBLAS_STATUS_SUCCESS) tm_die("cublasGemmEx: %s", blas->status_string(st));
                *flops += 2.0 * N * m * k;
            }
        double sec = timer_stop(t, g);
        if (r) best = sec < best ? sec : best;
    }
    gpu_free(w);
    gpu_free(in);
    gpu_free(out);
    return best;
}

static void bench_config(const char *config, int layers, int B, int T, int reps) {
    ModelConfig c;
    if (hf_config_load(&c, config)) tm_die("%s", tm_error());
    c.n_layers = layers;
    c.vocab_size = 1024;
    int n;
    StTensor *tensors = random_tensors(&c, TM_BF16, &n);
    StSet set;
    st_set_from_tensors(&set, tensors, n);
    Model m;
    if (model_init(&m, &c, &set, config)) tm_die("%s", tm_error());
    GpuCtx g;
    GpuModel gm;
    if (gpu_ctx_init(&g, 0, GPU_BF16) || gpu_model_init(&gm, &g, &m, B, T)) tm_die("%s", tm_error());
    int N = B * T;
    float *x = mallocCheck((size_t)N * c.hidden_size * sizeof(float));
    for (size_t i = 0; i < (size_t)N * c.hidden_size; i++) x[i] = urand();
    gpu_upload(gm.x, x, (size_t)N * c.hidden_size * sizeof(float));
    free(x);
    Timer t;
    cudaEventCreate(&t.a);
    cudaEventCreate(&t.b);
    double fwd = time_layers(&gm, &g, &t, reps), att = time_attention(&gm, &g, &t, reps), gemm_flops = 0;
    double gemm = time_cublas(&c, &g, &t, N, reps, &gemm_flops);
    double flops = 0;
    for (int l = 0; l < layers; l++) flops += model_layer_forward_flops(&c, l, B, T);
    double fwd_tf = flops / fwd / 1e12, blas_tf = gemm_flops / gemm / 1e12;
    printf("gpu-forward  %s: %d layers, %d x %d tokens, bf16 weights, %.2f GiB on the GPU\n", config, layers, B, T,
           (double)gm.bytes / (1 << 30));
    printf("gpu-forward  layers %.2f ms: %.0f tokens/s, %.1f TFLOP/s (%.1f GFLOP; attention kernel alone %.2f ms, "
           "%.0f%% of it)\n",
           fwd * 1e3, N / fwd, fwd_tf, flops / 1e9, att * 1e3, 100 * att / fwd);
    printf("gpu-forward  cuBLAS bf16 GEMMs, same shapes: %.2f ms, %.1f TFLOP/s\n", gemm * 1e3, blas_tf);
    printf("gpu-forward  ratio forward / cuBLAS = %.3f\n", fwd_tf / blas_tf);
    cudaEventDestroy(t.a);
    cudaEventDestroy(t.b);
    gpu_model_free(&gm);
    gpu_ctx_free(&g);
    model_free(&m);
    random_tensors_free(tensors, n);
}

int main(int argc, char **argv) {
    const char *configs[8];
    int n_configs = 0, layers = 2, B = 4, T = 2048, reps = 5;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) tm_die("bench_gpu_forward: option %s needs a value", a);
        if (!strcmp(a, "--config") && n_configs < 8) configs[n_configs++] = v;
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--seqlen")) T = atoi(v);
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else tm_die("bench_gpu_forward: unknown option %s", a);
        i++;
    }
    if (!n_configs) {
        configs[n_configs++] = TRANSMLA_SOURCE_DIR "/configs/models/llama-3.2-1b.config.json";
        configs[n_configs++] = TRANSMLA_SOURCE_DIR "/configs/models/qwen2.5-72b-instruct.config.json";
    }
    if (gpu_count() == 0) {
        printf("bench_gpu_forward: no GPU visible\n");
        return 77;
    }
    char buf[512];
    gpu_describe(buf, sizeof buf);
    printf("gpu-forward  CUDA %s\n", buf);
    for (int i = 0; i < n_configs; i++) bench_config(configs[i], layers, B, T, reps);
    return 0;
}
