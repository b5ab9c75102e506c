/* Calibration statistics summed on the GPU (model/cuda/stats_gpu.h: rows
 * made float64 on the device, cuBLAS SYRK, copied to the host once per
 * pass) against the two ways they were made before: the same GPU forward
 * with the projections copied to the host and summed there by
 * calib_gather_hook, and the CPU engine with that hook. Every statistic a
 * conversion gathers: keys (GQA fixtures, qwen3's QK-norm 1/rms sums,
 * gemma2, phi3, the trained bytelm-dev), the latent with the queries and
 * the [latent, normed latent] pairs (the MLA fixtures, with and without
 * q_lora, gemma2_mla). The batch goes through as one micro-batch per
 * sequence, so the device sums accumulate across micro-batches.
 *
 *   test_gpu_stats [BYTELM_DIR]   (ctest, label gpu; exit 77, skipped, with
 *                                  no GPU visible; the fixtures from
 *                                  TM_FIXTURES_DIR when set, tests/fixture.h) 
 *
 * Tolerances, as max |got - ref| over max |ref| per statistic:
 * - against the host hook on the same GPU's projections (both precisions):
 *   1e-12. The same float32 rows summed in float64 in another order
 *   (expected ~1e-15); a wrong row stride or triangle is O(1).
 * - against the CPU engine, fp32 GEMMs: 1e-4, as test_gpu_model's logits
 *   (the projections agree to a few 1e-6; a sum is a product of two).
 * The token counts equal exactly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "model/cuda/model_gpu.h"
#include "pipeline/calib_gpu.h"

#define TOL_SAME_ROWS 1e-12
#define TOL_CPU_FP32 1e-4

static const char *bytelm_dir = TM_SOURCE_DIR "/data/models/bytelm-dev";

typedef struct {
    const Model *m;
    const int32_t *tokens;
    int B, T;
    CalTarget target;
    int dim, qdim;
} Pass;

static void stats_init(CalibStats *st, const Pass *p) {
    const ModelConfig *c = &p->m->cfg;
    calib_stats_init(st, p->target, c->n_layers, 0, c->n_layers, p->dim, p->qdim);
    if (p->target == CAL_KEYS && c->qk_norm) calib_stats_want_rinv(st, c->n_heads + c->n_kv_heads);
}

static void stats_cpu(const Pass *p, CalibStats *st) {
    stats_init(st, p);
    CalibGather gather;
    calib_gather_init(&gather, st, &p->m->cfg, p->B * p->T);
    Workspace ws;
    workspace_init(&ws, &p->m->cfg, p->B, p->T);
    ws.hook = calib_gather_hook;
    ws.hook_ctx = &gather;
    model_embed(p->m, p->tokens, &ws);
    model_layers(p->m, &ws, 0, p->m->cfg.n_layers);
    workspace_free(&ws);
    calib_gather_free(&gather);
    calib_finish(st);
}

/* On the GPU, one sequence per micro-batch; on_device: stats_gpu.h, else the host hook. */
static void stats_gpu(const Pass *p, GpuPrecision precision, int on_device, CalibStats *st) {
    const ModelConfig *c = &p->m->cfg;
    int D = c->hidden_size;
    stats_init(st, p);
    GpuCtx g;
    GpuModel gm;
    if (gpu_ctx_init(&g, 0, precision) || gpu_model_init(&gm, &g, p->m, 1, p->T)) fail_msg("%s", tm_error());
    CalibGather gather;
    calib_gather_init(&gather, st, c, p->T);
    GpuStats gs;
    if (on_device) {
        calib_gpu_init(&gs, st, p->T);
        gm.rows.stats = &gs;
    } else {
        gm.rows.hook = calib_gather_hook;
        gm.rows.hook_ctx = &gather;
    }
    float *x = mallocCheck((size_t)p->B * p->T * D * sizeof(float));
    model_embed_rows(p->m, p->tokens, p->B * p->T, x);
    for (int b = 0; b < p->B; b++)
        if (gpu_model_layers(&gm, &g, x + (size_t)b * p->T * D, NULL, 1)) fail_msg("%s", tm_error());
    if (on_device && calib_gpu_collect(&g, &gs, st)) fail_msg("%s", tm_error());
    free(x);
    if (on_device) gpu_stats_free(&gs);
    calib_gather_free(&gather);
    gpu_model_free(&gm);
    gpu_ctx_free(&g);
    calib_finish(st);
}

static double rel_err(const double *a, const double *ref, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs(a[i] - ref[i]);
        d = e > d || isnan(e) ? e : d;
        m = fabs(ref[i]) > m ? fabs(ref[i]) : m;
    }
    return d / (m > 0 ? m : 1);
}

/* Every layer's sums of got against ref within tol; prints the worst. */
static void compare(const char *name, const char *what, const CalibStats *got, const CalibStats *ref, double tol) {
    assert_int_equal(got->count, ref->count);
    double e = 0, eq = 0, er = 0;
    for (int l = ref->first; l < ref->end; l++) {
        e = fmax(e, rel_err(got->sum[l], ref->sum[l], (size_t)ref->dim * ref->dim));
        if (ref->want_q) eq = fmax(eq, rel_err(got->qsum[l], ref->qsum[l], (size_t)ref->qdim * ref->qdim));
        if (ref->nrinv) er = fmax(er, rel_err(got->rinv[l], ref->rinv[l], (size_t)ref->nrinv));
    }
    printf("%-26s %-22s sums %.2e, q %.2e, 1/rms %.2e (tolerance %.0e, %lld rows)\n", name, what, e, eq, er, tol,
           (long long)ref->count);
    if (!(e <= tol && eq <= tol && er <= tol)) fail_msg("%s: %s off by %.3e / %.3e / %.3e", name, what, e, eq, er);
}

static void check_pass(const char *name, const Pass *p) {
    CalibStats cpu, host, dev, host16, dev16;
    stats_cpu(p, &cpu);
    stats_gpu(p, GPU_FP32, 0, &host);
    stats_gpu(p, GPU_FP32, 1, &dev);
    stats_gpu(p, GPU_BF16, 0, &host16);
    stats_gpu(p, GPU_BF16, 1, &dev16);
    compare(name, "fp32 device vs hook", &dev, &host, TOL_SAME_ROWS);
    compare(name, "bf16 device vs hook", &dev16, &host16, TOL_SAME_ROWS);
    compare(name, "fp32 device vs CPU", &dev, &cpu, TOL_CPU_FP32);
    CalibStats *all[] = {&cpu, &host, &dev, &host16, &dev16};
    for (size_t i = 0; i < sizeof all / sizeof *all; i++) calib_stats_free(all[i]);
}

static void keys_of(const char *name, const Model *m, const int32_t *tokens, int B, int T) {
    const ModelConfig *c = &m->cfg;
    Pass p = {.m = m, .tokens = tokens, .B = B, .T = T, .target = CAL_KEYS, .dim = c->n_kv_heads * c->head_dim};
    check_pass(name, &p);
}

static void gqa_keys(void **state) {
    (void)state;
    const char *names[] = {"llama_gqa2_bf16", "qwen3", "gemma2", "phi3"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        FixtureMeta meta = fixture_meta(names[i]);
        int32_t *tokens = fixture_tokens(names[i], &meta);
        Model m;
        fixture_model(&m, names[i]);
        keys_of(names[i], &m, tokens, meta.batch, meta.seqlen);
        model_free(&m);
        free(tokens);
    }
}

/* The trained model on two lines of text (bytes), 64 tokens each. */
static void bytelm_keys(void **state) {
    (void)state;
    static const char text[] = "The tower is 324 metres tall, about the same height as an 81-storey building, and "
                               "the tallest structure in Paris. Its base is square, measuring 125 metres on each side.";
    int B = 2, T = 64;
    int32_t tokens[128];
    for (int t = 0; t < B * T; t++) tokens[t] = (unsigned char)text[t];
    Model m;
    model_load_or_fail(&m, bytelm_dir);
    keys_of("bytelm-dev", &m, tokens, B, T);
    model_free(&m);
}

static void mla_latent(void **state) {
    (void)state;
    const char *names[] = {"dsv3_noqlora_dense", "dsv3_qlora_bias_llama3_f16", "gemma2_mla"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        FixtureMeta meta = fixture_meta(names[i]);
        int32_t *tokens = fixture_tokens(names[i], &meta);
        Model m;
        fixture_model(&m, names[i]);
        const ModelConfig *c = &m.cfg;
        int R = c->mla.kv_lora_rank;
        Pass p = {.m = &m, .tokens = tokens, .B = meta.batch, .T = meta.seqlen, .target = CAL_LATENT, .dim = R,
                  .qdim = c->n_heads * hf_config_qk_head_dim(c)};
        check_pass(names[i], &p);
        p = (Pass){.m = &m, .tokens = tokens, .B = meta.batch, .T = meta.seqlen, .target = CAL_LATENT_NORMED,
                   .dim = 2 * R};
        check_pass(names[i], &p);
        model_free(&m);
        free(tokens);
    }
}

int main(int argc, char **argv) {
    if (argc > 1) bytelm_dir = argv[1];
    if (gpu_count() == 0) {
        printf("test_gpu_stats: no GPU visible, skipped\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gqa_keys),
        cmocka_unit_test(bytelm_keys),
        cmocka_unit_test(mla_latent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
