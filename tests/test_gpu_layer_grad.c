/* A layer's backward pass on the GPU (model/cuda/layer_grad_gpu.h) against
 * the CPU engine's layer_backward, whose gradients test_grad holds to
 * finite differences of a float64 numpy forward: for every layer of every
 * fixture of tests/ref/make_fixtures.py (llama MHA and GQA, qwen2's
 * biases, mistral's window, qwen3's QK-norm, phi3's fused projections,
 * gemma2's sandwich norms, GeGLU and soft-cap, f32 and bf16; deepseek_v3
 * MLA with and without q_lora, both rope layouts, biases; gemma2_mla; the
 * MoE ones: mixtral, qwen3_moe with and without renormalised top-k,
 * deepseek_v3's routed experts after a dense layer) and of the trained
 * bytelm-dev, on two sequences of 19 rows, the first packing two documents
 * (positions restart, attention stops at the boundary), with random layer
 * inputs and output gradients: the layer's output, its input gradient and
 * every parameter's gradient (the router's and each expert's too). The
 * GPU routes on the host with the CPU's own function, so both pick the
 * same experts unless two router logits lie closer than fp32 rounding (a
 * chance of order 1e-6 per row here; it would show as an O(1) error in
 * that row, and the seeds are fixed).
 *
 *   test_gpu_layer_grad [FIXTURES_DIR [BYTELM_DIR]]   (ctest, label gpu)
 *
 * Exit 77 (skipped) when no GPU is visible.
 *
 * Tolerance 1e-4 of each tensor's largest magnitude, fp32 GEMMs on both
 * sides: the same arithmetic summed in other orders (cuBLAS's, the
 * attention's per-row sums against the CPU's blocked sgemms, the norms'
 * mean square in float instead of double), a few 1e-6 expected through one
 * layer; a wrong index, a missing term or a transposed GEMM moves a
 * gradient by O(1) of its size. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "tests/fixture.h"
#include "io/base/error.h"
#include "io/base/rng.h"
#include "model/cuda/layer_grad_gpu.h"
#include "model/model.h"
#include "train/params.h"

#define TOL 1e-4
enum { B = 2, T = 19, DOC2 = 7 }; /* the first sequence's second document starts at row 7 */

static void fill(float *x, size_t n, TmRng *r) {
    for (size_t i = 0; i < n; i++) x[i] = (float)((double)(rng_next(r) >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int report(const char *name, int layer, const char *what, double e) {
    int ok = e <= TOL;
    if (!ok) printf("%-28s layer %d %-24s max |gpu - cpu| / max |cpu| = %.2e FAIL\n", name, layer, what, e);
    return ok;
}

/* The CPU's and the GPU's forward and backward of layer l; 1: all within TOL. */
static int check_layer(const char *name, const Model *m, ParamSet *ps, int l, GpuCtx *g, const LayerRows *rows,
                       const GpuRows *grows, double *worst) {
    const ModelConfig *c = &m->cfg;
    size_t N = (size_t)B * T, ND = N * c->hidden_size;
    const GradBucket *bucket = params_bucket(ps, l);
    const float *host0 = ps->g + bucket->first;
    size_t n_grad = (size_t)(bucket->end - bucket->first);
    TmRng r;
    rng_seed(&r, 1000 + (uint64_t)l);
    float *x_in = mallocCheck(ND * sizeof(float)), *dx_out = mallocCheck(ND * sizeof(float));
    float *x_cpu = mallocCheck(ND * sizeof(float)), *dx_cpu = mallocCheck(ND * sizeof(float));
    float *x_gpu = mallocCheck(ND * sizeof(float)), *dx_gpu = mallocCheck(ND * sizeof(float));
    float *g_gpu = mallocCheck(n_grad * sizeof(float));
    fill(x_in, ND, &r);
    fill(dx_out, ND, &r);
    /* the CPU engine */
    params_zero_grads(ps);
    LayerActs acts;
    layer_acts_init(&acts, c, B, T, ACTS_BACKWARD);
    layer_forward(c, &m->w.layers[l], l, x_in, x_cpu, rows, &acts);
    layer_backward(c, &m->w.layers[l], &ps->grads.layers[l], l, x_in, dx_out, dx_cpu, rows, &acts);
    layer_acts_free(&acts);
    /* the GPU */
    GpuLayer gl;
    GpuActs ga;
    GpuLayerGrads gg;
    int n_experts = hf_config_layer_is_moe(c, l) ? c->n_experts : 0;
    if (gpu_layer_upload(&gl, g, c, &m->w.layers[l], l) ||
        gpu_layer_grads_init(&gg, &ps->grads.layers[l], n_experts, host0, n_grad))
        tm_die("%s layer %d: %s", name, l, tm_error());
    gpu_acts_init_train(&ga, c, (int)N, 1);
    float *x = gpu_alloc(ND * sizeof(float)), *x0 = gpu_alloc(ND * sizeof(float)), *dx = gpu_alloc(ND * sizeof(float));
    gpu_upload(x0, x_in, ND * sizeof(float));
    gpu_upload(x, x_in, ND * sizeof(float));
    gpu_upload(dx, dx_out, ND * sizeof(float));
    if (gpu_layer_forward(g, c, &gl, l, x, grows, &ga) || gpu_sync(g)) tm_die("%s: %s", name, tm_error());
    gpu_download(x_gpu, x, ND * sizeof(float));
    if (gpu_layer_backward(g, c, &gl, &gg, l, x0, dx, grows, &ga) || gpu_layer_grads_download(&gg, g, g_gpu))
        tm_die("%s: %s", name, tm_error());
    gpu_download(dx_gpu, dx, ND * sizeof(float));
    /* compare: the output, the input gradient, each parameter's gradient */
    double e_out = rel_error(x_gpu, x_cpu, ND), e_dx = rel_error(dx_gpu, dx_cpu, ND), e_max = fmax(e_out, e_dx);
    int ok = report(name, l, "output", e_out) & report(name, l, "input gradient", e_dx);
    int n_params = 0;
    for (int i = 0; i < ps->n; i++) {
        const Param *p = &ps->p[i];
        if (p->layer != l) continue;
        double e = rel_error(g_gpu + (p->g - host0), p->g, (size_t)p->n);
        ok &= report(name, l, p->name, e);
        e_max = fmax(e_max, e);
        n_params++;
    }
    printf("%-28s layer %d: output, input gradient and %d parameter gradients, worst %.2e (tolerance %.0e) %s\n",
           name, l, n_params, e_max, TOL, ok ? "ok" : "FAIL");
    *worst = fmax(*worst, e_max);
    gpu_free(x);
    gpu_free(x0);
    gpu_free(dx);
    gpu_layer_grads_free(&gg);
    gpu_acts_free(&ga);
    gpu_layer_free(&gl);
    free(x_in), free(dx_out), free(x_cpu), free(dx_cpu), free(x_gpu), free(dx_gpu), free(g_gpu);
    return ok && n_params > 0;
}

/* 0: every layer within tolerance; 1: a failure. */
static int check_model(const char *name, Model *m, GpuCtx *g) {
    const ModelConfig *c = &m->cfg;
    ParamSet ps;
    if (params_init(&ps, m, TRAIN_ALL)) tm_die("%s: %s", name, tm_error());
    int32_t pos[B * T], doc[B * T];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            int start = b == 0 && t >= DOC2 ? DOC2 : 0;
            pos[b * T + t] = t - start;
            doc[b * T + t] = start;
        }
    RopeTable rope;
    rope_table_init(&rope, &c->rope_scaling, c->rope_theta, c->rotary_dim, T);
    LayerRows rows = {.B = B, .T = T, .pos = pos, .doc_start = doc, .rope = &rope};
    GpuRowsBuf buf;
    GpuRows grows;
    gpu_rows_upload(&buf, &grows, &rope, B, T, pos, doc);
    int bad = 0;
    double worst = 0;
    for (int l = 0; l < c->n_layers; l++) bad |= !check_layer(name, m, &ps, l, g, &rows, &grows, &worst);
    gpu_rows_free(&buf);
    rope_table_free(&rope);
    params_free(&ps, c);
    return bad;
}

int main(int argc, char **argv) {
    const char *fixtures = argc > 1 ? argv[1] : TM_FIXTURES_DIR;
    const char *bytelm = argc > 2 ? argv[2] : TM_SOURCE_DIR "/data/models/bytelm-dev";
    if (gpu_count() == 0) {
        printf("test_gpu_layer_grad: no GPU visible, skipped\n");
        return 77;
    }
    GpuCtx g;
    if (gpu_ctx_init(&g, 0, GPU_FP32)) tm_die("%s", tm_error());
    char path[4096];
    snprintf(path, sizeof path, "%s/fixtures.json", fixtures);
    json_error_t je;
    json_t *list = json_load_file(path, 0, &je);
    if (!json_is_array(list)) tm_die("%s: %s (made by tests/ref/make_fixtures.py)", path, je.text);
    int failed = 0, checked = 0;
    for (size_t i = 0; i <= json_array_size(list); i++) {
        const char *name = i < json_array_size(list) ? json_string_value(json_array_get(list, i)) : "bytelm-dev";
        if (i < json_array_size(list)) snprintf(path, sizeof path, "%s/%s", fixtures, name);
        else snprintf(path, sizeof path, "%s", bytelm);
        Model m;
        if (model_load(&m, path)) tm_die("%s", tm_error());
        failed += check_model(name, &m, &g);
        checked++;
        model_free(&m);
    }
    json_decref(list);
    gpu_ctx_free(&g);
    printf("test_gpu_layer_grad: %d model(s) checked on the GPU, %d failed\n", checked, failed);
    return failed || checked == 0 ? 1 : 0;
}
