#include "pipeline/calibrate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "dist/linalg.h"
#include "io/base/checked.h"
#include "io/base/error.h"
#include "io/base/finite.h"
#include "model/latent_norm.h"

void calib_stats_init(CalibStats *s, CalTarget target, int n_layers, int first, int end, int dim, int qdim) {
    memset(s, 0, sizeof *s);
    s->target = target;
    s->first = first;
    s->end = end;
    s->dim = dim;
    s->want_q = qdim > 0;
    s->qdim = qdim;
    s->sum = callocCheck((size_t)n_layers, sizeof *s->sum);
    if (s->want_q) s->qsum = callocCheck((size_t)n_layers, sizeof *s->qsum);
    for (int l = first; l < end; l++) {
        s->sum[l] = callocCheck((size_t)dim * dim, sizeof(double));
        if (s->want_q) s->qsum[l] = callocCheck((size_t)qdim * qdim, sizeof(double));
    }
}

void calib_stats_want_rinv(CalibStats *s, int n) {
    s->nrinv = n;
    s->rinv = callocCheck((size_t)(s->end > 0 ? s->end : 1), sizeof *s->rinv);
    for (int l = s->first; l < s->end; l++) s->rinv[l] = callocCheck((size_t)n, sizeof(double));
}

void calib_stats_free(CalibStats *s) {
    for (int l = s->first; l < s->end; l++) {
        free(s->sum[l]);
        if (s->qsum) free(s->qsum[l]);
        if (s->rinv) free(s->rinv[l]);
    }
    free(s->sum);
    free(s->qsum);
    free(s->rinv);
    memset(s, 0, sizeof *s);
}

uint64_t calib_stats_bytes(const CalibStats *s) {
    return (uint64_t)(s->end - s->first) * 8 * ((uint64_t)s->dim * s->dim + (uint64_t)s->qdim * s->qdim + s->nrinv);
}

void calib_gather_init(CalibGather *g, CalibStats *s, const ModelConfig *c, int max_rows) {
    memset(g, 0, sizeof *g);
    g->s = s;
    g->c = c;
    int wide = s->dim > s->qdim ? s->dim : s->qdim;
    g->bytes = (uint64_t)max_rows * wide * sizeof(double);
    g->stage = mallocCheck(g->bytes);
    if (s->target == CAL_LATENT_NORMED) {
        g->pair = mallocCheck((size_t)max_rows * s->dim * sizeof(float));
        g->bytes += (uint64_t)max_rows * s->dim * sizeof(float);
    }
}

void calib_gather_free(CalibGather *g) {
    free(g->stage);
    free(g->pair);
    memset(g, 0, sizeof *g);
}

/* Rows [c, c / rms(c)]: what kv_a_layernorm would feed kv_b_proj, beside the exact latent. */
static const float *latent_pairs(CalibGather *g, const float *X, int64_t ld, int N) {
    int R = g->c->mla.kv_lora_rank;
    for (int i = 0; i < N; i++) {
        const float *c = X + (int64_t)i * ld;
        float *row = g->pair + (int64_t)i * 2 * R;
        float inv = latent_rms_inv(c, R);
        for (int j = 0; j < R; j++) {
            row[j] = c[j];
            row[R + j] = c[j] * inv;
        }
    }
    return g->pair;
}

void calib_gather_hook(void *vg, int layer, const AttnProjections *p) {
    CalibGather *g = vg;
    CalibStats *s = g->s;
    if (layer < s->first || layer >= s->end) return;
    int N = p->N;
    const float *X;
    int64_t ld;
    if (s->target == CAL_KEYS) {
        X = p->k;
        ld = (int64_t)g->c->n_kv_heads * g->c->head_dim;
    } else {
        X = p->lat;
        ld = (int64_t)g->c->mla.kv_lora_rank + g->c->mla.qk_rope_head_dim;
    }
    if (s->target == CAL_LATENT_NORMED) {
        X = latent_pairs(g, X, ld, N);
        ld = s->dim;
    }
    /* token-file windows have no padding; `keep` is where masked rows drop out */
    int64_t rows = cov_accumulate(s->sum[layer], s->dim, X, ld, 0, N, NULL, g->stage);
    if (s->want_q) cov_accumulate(s->qsum[layer], s->qdim, p->q, s->qdim, 0, N, NULL, g->stage);
    for (int i = 0; i < N && s->nrinv; i++)
        for (int j = 0; j < s->nrinv; j++) s->rinv[layer][j] += p->qk_rinv[(int64_t)i * s->nrinv + j];
    if (layer == s->first) s->count += rows; /* every layer sees the same rows */
}

void calib_finish(CalibStats *s) {
    for (int l = s->first; l < s->end; l++) {
        sym_fill_lower(s->sum[l], s->dim);
        if (s->want_q) sym_fill_lower(s->qsum[l], s->qdim);
    }
}

int calib_check_finite(const CalibStats *s, const char *label) {
    for (int l = s->first; l < s->end; l++) {
        int q = s->want_q && !tm_all_finite_f64(s->qsum[l], (size_t)s->qdim * s->qdim);
        if (s->nrinv && !tm_all_finite_f64(s->rinv[l], (size_t)s->nrinv))
            return tm_fail("%s: layer %d: a q/k head's 1/rms sum holds NaN/Inf (QK-norm of a zero head?)", label, l);
        if (q || !tm_all_finite_f64(s->sum[l], (size_t)s->dim * s->dim))
            return tm_fail("%s: layer %d: the %s covariance sum holds NaN/Inf: the model's activations overflow "
                           "float32 on the calibration data", label, l, q ? "query" : s->target == CAL_KEYS ? "key" : "latent");
    }
    return 0;
}
