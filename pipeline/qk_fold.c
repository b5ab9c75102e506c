/* QK-norm (Qwen3) folded into the projections.
 *
 * A DeepSeek latent is a linear function of the layer input, but Qwen3
 * scales every query and key head by its own 1/rms before RoPE. The
 * conversion replaces that 1/rms by its mean over the calibration tokens
 * (one number per head and layer), which turns q_norm/k_norm into a scale
 * of q_proj/k_proj rows; the attention fit then trains the converted layer
 * toward the original's QK-normed output. */
#include <math.h>
#include <stdlib.h>

#include "io/base/checked.h"
#include "pipeline/run.h"

static int n_heads_qk(const Run *r) { return r->cfg.n_heads + r->cfg.n_kv_heads; }

/* The [n_layers][H+G] table, NaN where a layer's means are not known yet. */
static double *fold_table(Run *r) {
    if (!r->qk_fold) {
        int64_t n = (int64_t)r->cfg.n_layers * n_heads_qk(r);
        r->qk_fold = mallocCheck((size_t)n * sizeof *r->qk_fold);
        for (int64_t i = 0; i < n; i++) r->qk_fold[i] = NAN;
    }
    return r->qk_fold;
}

int run_qk_fold_set(Run *r, const CalibStats *keys) {
    if (!r->cfg.qk_norm) return 0;
    int n = n_heads_qk(r), rc = 0;
    for (int l = r->first; l < r->end && !rc; l++) {
        double *f = fold_table(r) + (int64_t)l * n;
        for (int j = 0; j < n; j++) f[j] = keys->rinv[l][j] / (double)keys->count;
        if (r->t.replica == 0) rc = resume_save_array(&r->resume, "qk-fold", l, f, n);
    }
    return rc;
}

int run_gqa_attn_load(Run *r, int l, GqaAttn *g) {
    const double *fold = NULL;
    if (r->cfg.qk_norm) {
        int n = n_heads_qk(r);
        double *f = fold_table(r) + (int64_t)l * n;
        /* an earlier run computed it: the phase that gathers the key statistics is over */
        if (isnan(f[0]) && resume_load_array(&r->resume, "qk-fold", l, f, n)) return -1;
        fold = f;
    }
    gqa_attn_load(g, &r->cfg, &r->orig.w.layers[l], fold);
    return 0;
}

int run_qk_fold_eval(Run *r) {
    if (!r->cfg.qk_norm || !r->eval_ids) return 0;
    int n = n_heads_qk(r), L = r->cfg.n_layers;
    Model lin = r->orig; /* shares the weights; only the layer table differs */
    lin.w.layers = mallocCheck((size_t)L * sizeof *lin.w.layers);
    float *fixed = mallocCheck((size_t)L * n * sizeof *fixed);
    for (int l = 0; l < L; l++) {
        lin.w.layers[l] = r->orig.w.layers[l];
        if (l < r->first || l >= r->end) continue;
        for (int j = 0; j < n; j++) fixed[(int64_t)l * n + j] = (float)r->qk_fold[(int64_t)l * n + j];
        lin.w.layers[l].qk_rinv_fixed = fixed + (int64_t)l * n;
    }
    int rc = run_eval_into(r, &lin, "QK-norm folded (mean 1/rms per head)", "eval-qk-fold", "qk_norm_folded");
    free(lin.w.layers);
    free(fixed);
    return rc;
}
