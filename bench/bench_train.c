/* Training throughput of one process: forward + backward + AdamW steps of
 * `transmla finetune` (recomputation included unless --recompute off) on a converted model, over
 * random tokens, next to the sgemm GFLOP/s of this machine measured in the
 * same run (square 1024 and the model's own widest projection shape).
 *
 *   bench_train MODEL_DIR [--seq-len 256] [--batch-size 4] [--steps 5] [--train all] [--recompute auto]
 *
 * --recompute auto, as finetune's default, chooses by this machine's memory
 * (train/recompute_auto.h) and prints the choice.
 *
 * GFLOP/s counts model FLOPs (3 x forward with --train all, as MFU does;
 * frozen weights get no weight gradient and count none), not the recomputed
 * forward pass, so "of sgemm" is the fraction of the machine's GEMM speed
 * that ends up as useful training work. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/topology.h"
#include "io/base/checked.h"
#include "io/base/clock.h"
#include "io/base/error.h"
#include "io/base/rng.h"
#include "model/threads.h"
#include "train/metrics.h"
#include "train/optim.h"
#include "train/recompute_auto.h"
#include "train/step.h"

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    threads_wait_passive(argv); /* as transmla runs */
    dist_init(&argc, &argv);
    if (argc < 2) {
        fprintf(stderr, "usage: bench_train MODEL_DIR [--seq-len L] [--batch-size B] [--steps N] [--train WHAT] "
                        "[--recompute auto|on|off]\n");
        return 2;
    }
    const char *dir = argv[1], *what_s = "all", *recompute = "auto";
    int T = 256, B = 4, steps = 5;
    for (int i = 2; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seq-len")) T = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--batch-size")) B = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--steps")) steps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--train")) what_s = argv[i + 1];
        else if (!strcmp(argv[i], "--recompute")) recompute = argv[i + 1];
    }
    Topology t;
    Model m;
    ParamSet ps;
    TrainWhat what;
    int setting;
    if (topology_init(&t, 1) || train_what_parse(what_s, &what) || recompute_parse(recompute, &setting) ||
        model_load(&m, dir) || params_init(&ps, &m, what)) {
        fprintf(stderr, "bench_train: %s\n", tm_error());
        return 1;
    }
    /* random rows, one document each: every position but the first is a target */
    TrainRows rows;
    int64_t n_rows = 4 * B;
    int32_t *ids = mallocCheck((size_t)n_rows * T * sizeof *ids);
    TmRng rng;
    rng_seed(&rng, 7);
    for (int64_t i = 0; i < n_rows * T; i++) ids[i] = (int32_t)(rng_next(&rng) % (uint64_t)m.cfg.vocab_size);
    train_rows_init(&rows, T);
    train_rows_from_stream(&rows, ids, (size_t)(n_rows * T), T);
    Sampler sampler;
    if (sampler_init(&sampler, &rows, 1, B, 1, 1)) {
        fprintf(stderr, "bench_train: %s\n", tm_error());
        return 1;
    }
    char note[640];
    int on = recompute_resolve(setting, 0, &t, &m, &ps, NULL, B, T, 1, note, sizeof note);
    TrainStep st;
    train_step_init(&st, &t, &m, &ps, &sampler, B, T, 1, on, NULL);
    OptimConfig o = {.lr = 1e-5, .weight_decay = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                     .max_grad_norm = 1.0, .schedule = LR_CONSTANT, .total_steps = steps + 1};
    StepResult res;
    train_step_grads(&st, 0, &res); /* warm-up */
    adamw_step(&ps, &o, 0, o.lr, 1.0f);
    /* each timed step is followed by sgemm at the model's shape, so a step and
     * its baseline see the same machine (a shared VM's speed drifts by tens
     * of percent within a minute); the ratio reported is the median pair's */
    int D = m.cfg.hidden_size, inter = m.cfg.intermediate_size;
    double flops_step = train_flops_per_token(&m.cfg, T, what) * B * T, secs = 0.0;
    double *ratio = mallocCheck((size_t)steps * sizeof *ratio), g_model = 0.0;
    for (int s = 1; s <= steps; s++) {
        double t0 = tm_now_s();
        train_step_grads(&st, s, &res);
        adamw_step(&ps, &o, s, o.lr, clip_scale(res.grad_norm, o.max_grad_norm));
        double dt = tm_now_s() - t0, g = measure_sgemm_gflops_at(B * T, inter, D, 0.3);
        secs += dt;
        g_model += g / steps;
        ratio[s - 1] = flops_step / dt / 1e9 / g;
    }
    qsort(ratio, (size_t)steps, sizeof *ratio, cmp_double);
    double tokens = (double)steps * B * T, gflops = flops_step * steps / secs / 1e9;
    double median = steps % 2 ? ratio[steps / 2] : 0.5 * (ratio[steps / 2 - 1] + ratio[steps / 2]);
    double g_square = measure_sgemm_gflops(1024, 0.5);
    printf("bench_train: %s  %d layers  hidden %d  train %s (%lld parameters)  %d x %d tokens per step  "
           "%s\n", dir, m.cfg.n_layers, D, what_s, (long long)ps.total, B, T, note);
    printf("training:  %.0f tokens/s  %.1f GFLOP/s (model FLOPs)  loss %.4f  activations %.1f MiB\n",
           tokens / secs, gflops, res.loss, (double)st.bytes / (1 << 20));
    printf("sgemm:     %.1f GFLOP/s at 1024^3, %.1f GFLOP/s at [%d x %d] x [%d x %d]^T (the MLP's up projection, "
           "mean over the steps)\n", g_square, g_model, B * T, D, inter, D);
    printf("ratio:     training / sgemm(model shape) = %.2f  (median of %d step/sgemm pairs, %.2f-%.2f)\n", median,
           steps, ratio[0], ratio[steps - 1]);
    free(ratio);
    train_step_free(&st);
    sampler_free(&sampler);
    train_rows_free(&rows);
    free(ids);
    model_free(&m);
    params_free(&ps, &m.cfg);
    topology_free(&t);
    dist_finalize();
    return 0;
}
