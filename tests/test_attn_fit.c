/* C side of tests/ref/attn_fit_check.py: `test_attn_fit DIR [--gpu]` reads
 * DIR/in.safetensors (shape scalars; the MlaAttn arrays under their
 * mla_attn_fields names, absent ones NULL; o_proj, o_bias optional, xn, y;
 * all F32) and writes DIR/out.json:
 *  - objective, grad: attn_fit_objective with its gradient, per AttnParam;
 *  - fit: attn_fit_layer's AttnFitResult and the fitted MlaAttn arrays (for
 *    the numpy oracle to re-evaluate).
 * With --gpu the micro-batches run on GPU 0 with fp32 GEMMs
 * (pipeline/attn_fit_gpu.h): the same checks hold the GPU's fit to the
 * oracle; exit 77 (skipped) where no GPU is visible or CUDA is not built in. */
#include <jansson.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/safetensors.h"
#include "pipeline/attn_fit.h"
#include "pipeline/stage_device.h"

static StFile in;

static const float *tensor(const char *name, int64_t *n) {
    const StTensor *t = st_find(&in, name);
    if (!t) return NULL;
    if (t->dtype != TM_F32) tm_die("in.safetensors: %s is not F32", name);
    if (n) *n = st_numel(t);
    return t->data;
}
static const float *need(const char *name) {
    const float *f = tensor(name, NULL);
    if (!f) tm_die("in.safetensors: no tensor %s", name);
    return f;
}
static int scalar(const char *name) { return (int)need(name)[0]; }

static json_t *array_f(const float *a, int64_t n) {
    json_t *j = json_array();
    for (int64_t i = 0; i < n; i++) json_array_append_new(j, json_real(a[i]));
    return j;
}
static json_t *array_d(const double *a, int64_t n) {
    json_t *j = json_array();
    for (int64_t i = 0; i < n; i++) json_array_append_new(j, json_real(a[i]));
    return j;
}

/* Every MlaAttn array present in the file, as float64 (lengths checked). */
static void load_attn(MlaAttn *a) {
    MlaField f[MLA_MAX_FIELDS];
    int k = mla_attn_fields(a, f);
    for (int i = 0; i < k; i++) {
        int64_t n;
        const float *src = tensor(f[i].name, &n);
        if (!src) continue;
        if (n != f[i].n) tm_die("in.safetensors: %s has %lld elements, expected %lld", f[i].name, (long long)n,
                                (long long)f[i].n);
        *f[i].p = mallocCheck((size_t)n * sizeof(double));
        for (int64_t j = 0; j < n; j++) (*f[i].p)[j] = src[j];
    }
}

/* The converted layer as a DeepSeek loader sees it (io/hf_config.c's
 * deepseek_v3: head_dim = qk_rope_head_dim, which sizes the rope table). */
static ModelConfig layer_config(const MlaAttn *a) {
    ModelConfig c = {.arch = TM_ARCH_DEEPSEEK_V3, .hidden_size = a->D, .n_layers = 1, .n_heads = a->H,
                     .n_kv_heads = a->H, .head_dim = a->dr, .rotary_dim = a->dr, .rope_theta = need("rope_theta")[0],
                     .rms_norm_eps = 1e-6, .rope_scaling = {.type = TM_ROPE_PLAIN}};
    strcpy(c.model_type, "deepseek_v3");
    c.mla = (MlaConfig){.kv_lora_rank = a->R, .q_lora_rank = a->Rq, .qk_nope_head_dim = a->dn,
                        .qk_rope_head_dim = a->dr, .v_head_dim = a->dv, .rope_interleave = 0, .latent_norms = 1,
                        .q_bias = 0};
    return c;
}

static json_t *fitted(MlaAttn *a) {
    MlaField f[MLA_MAX_FIELDS];
    int k = mla_attn_fields(a, f);
    json_t *j = json_object();
    for (int i = 0; i < k; i++)
        if (*f[i].p) json_object_set_new(j, f[i].name, array_d(*f[i].p, f[i].n));
    return j;
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    int gpu = argc == 3 && !strcmp(argv[2], "--gpu");
    if (argc != 2 && !gpu) tm_die("usage: test_attn_fit DIR [--gpu]");
    if (gpu && stage_device_check(PIPE_CUDA)) {
        printf("test_attn_fit --gpu: %s: skipped\n", tm_error());
        MPI_Finalize();
        return 77;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/in.safetensors", argv[1]);
    if (st_open(&in, path)) tm_die("%s", tm_error());
    MlaAttn a = {.H = scalar("H"), .D = scalar("D"), .dn = scalar("dn"), .dr = scalar("dr"), .dv = scalar("dv"),
                 .R = scalar("R"), .Rq = scalar("Rq"), .kv_norm = need("kv_norm")[0], .q_norm = need("q_norm")[0]};
    a.nk = a.R;
    load_attn(&a);
    ModelConfig c = layer_config(&a);
    c.sliding_window = scalar("window"); /* the fitted layer, 0, sees this window */
    c.window_even_layers = 0;
    int nseq = scalar("nseq"), batch = scalar("batch");
    AttnFitData x = {.nseq = nseq, .T = scalar("T"), .batch = batch, .xn = (float *)need("xn"),
                     .y = (float *)need("y")};
    Tensor o_orig = {.dtype = TM_F32, .rows = a.D, .cols = (int64_t)a.H * a.dv, .data = (void *)need("o_proj")};
    const float *o_bias = tensor("o_bias", NULL);
    AttnFitProblem p = {.c = &c, .layer = 0, .steps = scalar("steps"), .lr = 2e-3,
                        .fit_o = scalar("fit_o"), .per_step = 1, .held = scalar("held"), .comm = MPI_COMM_SELF,
                        .mb_first = 0, .mb_total = (nseq + batch - 1) / batch,
                        .device = gpu ? PIPE_CUDA : PIPE_CPU, .gpu_fp32 = 1};

    json_t *out = json_object(), *grad = json_object();
    AttnParams P;
    attn_params_init(&P, &p, &a, &o_orig, o_bias);
    json_object_set_new(out, "objective", json_real(attn_fit_objective(&p, &x, &P, 1)));
    for (int i = 0; i < P.n; i++) json_object_set_new(grad, P.p[i].name, array_f(P.p[i].g, P.p[i].n));
    json_object_set_new(out, "grad", grad);
    attn_params_free(&P);

    AttnFitResult r;
    if (attn_fit_layer(&p, &x, &a, &o_orig, o_bias, &r, NULL)) tm_die("attn_fit_layer failed: %s", tm_error());
    json_object_set_new(out, "fit", json_pack("{sfsfsfsfsisfso}", "train_before", r.train_before, "train_after",
                                              r.train_after, "held_before", r.held_before, "held_after",
                                              r.held_after, "best_step", r.best_step, "seconds", r.seconds,
                                              "weights", fitted(&a)));
    snprintf(path, sizeof path, "%s/out.json", argv[1]);
    if (json_dump_file(out, path, JSON_INDENT(1))) tm_die("%s: cannot write", path);
    json_decref(out);
    mla_attn_free(&a);
    st_close(&in);
    MPI_Finalize();
    return 0;
}
