/* Forward throughput on a model with real layer shapes and random weights,
 * next to OpenBLAS sgemm measured in the same run on the same GEMM shapes.
 *
 *   bench_forward [--config FILE] [--layers 2] [--batch 8] [--seqlen 256]
 *                 [--dtype F32|BF16|F16] [--reps 2] [--json]
 *
 * Default: Llama-3.2-1B shapes (configs/models/llama-3.2-1b.config.json),
 * 2 layers, 8 x 256 tokens. The ratio printed is forward GFLOP/s (all model
 * FLOPs, attention included, over the whole forward time, LM head and loss
 * included) divided by the sgemm GFLOP/s over the forward's GEMMs. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "model/model.h"
#include "model/threads.h"
#include "random_weights.h"

/* Seconds for sgemm over the forward's GEMM shapes (M tokens): q, k, v, o,
 * gate, up, down per layer (dense) and the LM head. */
static double time_sgemm(const ModelConfig *c, int M, double *flops) {
    int D = c->hidden_size, qd = c->n_heads * c->head_dim, kvd = c->n_kv_heads * c->head_dim;
    int inter = c->intermediate_size, V = c->vocab_size;
    int shapes[][2] = {{qd, D}, {kvd, D}, {kvd, D}, {D, qd}, {inter, D}, {inter, D}, {D, inter}};
    int maxn = V, maxk = D > inter ? D : inter;
    for (int s = 0; s < 7; s++) maxn = shapes[s][0] > maxn ? shapes[s][0] : maxn;
    float *a = mallocCheck((size_t)M * maxk * sizeof(float));
    float *b = mallocCheck((size_t)maxn * maxk * sizeof(float));
    float *out = mallocCheck((size_t)M * maxn * sizeof(float));
    for (size_t i = 0; i < (size_t)M * maxk; i++) a[i] = urand();
    for (size_t i = 0; i < (size_t)maxn * maxk; i++) b[i] = urand();
    memset(out, 0, (size_t)M * maxn * sizeof(float));
    double t0 = tm_now_s();
    *flops = 0;
    for (int l = 0; l < c->n_layers; l++)
        for (int s = 0; s < 7; s++) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, shapes[s][0], shapes[s][1], 1.0f, a, shapes[s][1],
                        b, shapes[s][1], 0.0f, out, shapes[s][0]);
            *flops += 2.0 * M * shapes[s][0] * shapes[s][1];
        }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, V, D, 1.0f, a, D, b, D, 0.0f, out, V);
    *flops += 2.0 * M * V * D;
    double el = tm_now_s() - t0;
    free(a);
    free(b);
    free(out);
    return el;
}

int main(int argc, char **argv) {
    threads_wait_passive(argv); /* as transmla runs */
    const char *config = TRANSMLA_SOURCE_DIR "/configs/models/llama-3.2-1b.config.json", *dtype = "F32";
    int layers = 2, B = 8, T = 256, reps = 2, json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--json")) { json = 1; continue; }
        if (!v) tm_die("bench_forward: option %s needs a value", a);
        if (!strcmp(a, "--config")) config = v;
        else if (!strcmp(a, "--layers")) layers = atoi(v);
        else if (!strcmp(a, "--batch")) B = atoi(v);
        else if (!strcmp(a, "--seqlen")) T = atoi(v);
        else if (!strcmp(a, "--dtype")) dtype = v;
        else if (!strcmp(a, "--reps")) reps = atoi(v);
        else tm_die("bench_forward: unknown option %s", a);
        i++;
    }
    ModelConfig c;
    if (hf_config_load(&c, config)) tm_die("%s", tm_error());
    if (c.n_experts) tm_die("bench_forward: %s is a MoE model; the sgemm baseline covers dense models", config);
    c.n_layers = layers;
    TmDType dt = tm_dtype_parse(dtype);
    if (!tm_dtype_is_weight_float(dt)) tm_die("bench_forward: --dtype %s: use F32, BF16 or F16", dtype);

    int n;
    StTensor *tensors = random_tensors(&c, dt, &n);
    StSet set;
    st_set_from_tensors(&set, tensors, n);
    Model m;
    if (model_init(&m, &c, &set, config)) tm_die("%s", tm_error());
    int32_t *tokens = mallocCheck((size_t)B * T * sizeof(int32_t));
    for (int i = 0; i < B * T; i++) tokens[i] = (int32_t)((urand() + 1.0f) * 0.5f * (c.vocab_size - 1));
    Workspace ws;
    workspace_init(&ws, &c, B, T);
    int64_t pred;
    model_nll(&m, tokens, &ws, &pred); /* warm-up: page in weights, spin up threads */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = tm_now_s();
        model_nll(&m, tokens, &ws, &pred);
        double el = tm_now_s() - t0;
        best = el < best ? el : best;
    }
    double gemm_flops = 0, gemm_best = 1e30;
    for (int r = 0; r < reps; r++) {
        double el = time_sgemm(&c, B * T, &gemm_flops);
        gemm_best = el < gemm_best ? el : gemm_best;
    }
    double fwd_flops = model_forward_flops(&c, B, T);
    double fwd_gflops = fwd_flops / best / 1e9, sgemm_gflops = gemm_flops / gemm_best / 1e9;
    double tps = (double)B * T / best;
    if (json)
        printf("{\"config\": \"%s\", \"layers\": %d, \"batch\": %d, \"seqlen\": %d, \"dtype\": \"%s\", "
               "\"tokens_per_s\": %.1f, \"forward_gflops\": %.2f, \"sgemm_gflops\": %.2f, \"ratio\": %.3f}\n",
               config, layers, B, T, dtype, tps, fwd_gflops, sgemm_gflops, fwd_gflops / sgemm_gflops);
    else
        printf("forward  %s, %d layers, %d x %d tokens, %s weights\n"
               "forward  %.1f tokens/s  %.1f GFLOP/s  (%.3f s, %.1f GFLOP)\n"
               "sgemm    %.1f GFLOP/s on the same GEMM shapes (%.3f s, %.1f GFLOP)\n"
               "ratio    forward / sgemm = %.3f\n",
               config, layers, B, T, dtype, tps, fwd_gflops, best, fwd_flops / 1e9, sgemm_gflops, gemm_best,
               gemm_flops / 1e9, fwd_gflops / sgemm_gflops);
    workspace_free(&ws);
    model_free(&m);
    random_tensors_free(tensors, n);
    free(tokens);
    return 0;
}
