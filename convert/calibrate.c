#include "convert/calibrate.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert/linalg.h"
#include "io/checked.h"
#include "io/clock.h"
#include "model/mla.h"

void calib_stats_init(CalibStats *s, CalTarget target, int n_layers, int dim, int qdim) {
    memset(s, 0, sizeof *s);
    s->target = target;
    s->n_layers = n_layers;
    s->dim = dim;
    s->want_q = qdim > 0;
    s->qdim = qdim;
    s->sum = callocCheck((size_t)n_layers, sizeof *s->sum);
    if (s->want_q) s->qsum = callocCheck((size_t)n_layers, sizeof *s->qsum);
    for (int l = 0; l < n_layers; l++) {
        s->sum[l] = callocCheck((size_t)dim * dim, sizeof(double));
        if (s->want_q) s->qsum[l] = callocCheck((size_t)qdim * qdim, sizeof(double));
    }
}

void calib_stats_free(CalibStats *s) {
    for (int l = 0; l < s->n_layers; l++) {
        free(s->sum[l]);
        if (s->qsum) free(s->qsum[l]);
    }
    free(s->sum);
    free(s->qsum);
    memset(s, 0, sizeof *s);
}

uint64_t calib_stats_bytes(const CalibStats *s) {
    return (uint64_t)s->n_layers * 8 * ((uint64_t)s->dim * s->dim + (uint64_t)s->qdim * s->qdim);
}

typedef struct {
    CalibStats *s;
    const ModelConfig *c;
    double *stage;
    float *pair;  /* CAL_LATENT_NORMED rows [c, c / rms(c)] */
    int64_t rows; /* rows added by the last hook call (same for every layer) */
} HookCtx;

static void gather(void *vctx, int layer, const Workspace *ws) {
    HookCtx *h = vctx;
    CalibStats *s = h->s;
    int N = ws->B * ws->T;
    const float *X;
    int64_t ld;
    if (s->target == CAL_KEYS) {
        X = ws->k;
        ld = (int64_t)h->c->n_kv_heads * h->c->head_dim;
    } else {
        X = ws->lat;
        ld = (int64_t)h->c->mla.kv_lora_rank + h->c->mla.qk_rope_head_dim;
    }
    if (s->target == CAL_LATENT_NORMED) { /* what kv_a_layernorm would feed kv_b_proj, beside the exact latent */
        int R = h->c->mla.kv_lora_rank;
        for (int i = 0; i < N; i++) {
            const float *c = X + (int64_t)i * ld;
            float *row = h->pair + (int64_t)i * 2 * R;
            double ss = 0;
            for (int j = 0; j < R; j++) ss += (double)c[j] * c[j];
            float inv = (float)(1.0 / sqrt(ss / R + TM_MLA_LATENT_NORM_EPS));
            for (int j = 0; j < R; j++) {
                row[j] = c[j];
                row[R + j] = c[j] * inv;
            }
        }
        X = h->pair;
        ld = 2 * R;
    }
    /* token-file windows have no padding; `keep` is where masked rows drop out */
    h->rows = cov_accumulate(s->sum[layer], s->dim, X, ld, 0, N, NULL, h->stage);
    if (s->want_q) cov_accumulate(s->qsum[layer], s->qdim, ws->q, s->qdim, 0, N, NULL, h->stage);
}

int calibrate(const Model *m, const int32_t *ids, int seqlen, int nseq, int batch, const char *stage, int progress,
              CalibStats *s) {
    if (batch < 1) batch = 1;
    if (batch > nseq) batch = nseq;
    Workspace ws;
    workspace_init(&ws, &m->cfg, batch, seqlen);
    int wide = s->dim > s->qdim ? s->dim : s->qdim;
    HookCtx h = {.s = s, .c = &m->cfg, .stage = mallocCheck((size_t)batch * seqlen * wide * sizeof(double))};
    if (s->target == CAL_LATENT_NORMED) h.pair = mallocCheck((size_t)batch * seqlen * s->dim * sizeof(float));
    s->activation_bytes = ws.bytes + (uint64_t)batch * seqlen * wide * sizeof(double);
    ws.hook = gather;
    ws.hook_ctx = &h;
    double t0 = tm_now_s();
    int n_batches = (nseq + batch - 1) / batch;
    for (int bi = 0; bi < n_batches; bi++) {
        int first = bi * batch;
        ws.B = nseq - first < batch ? nseq - first : batch;
        model_forward(m, ids + (size_t)first * seqlen, &ws);
        s->count += h.rows;
        if (progress) {
            double el = tm_now_s() - t0, done = (double)(first + ws.B) * seqlen, rate = done / el;
            fprintf(stderr, "%s: batch %d/%d  %.0f tokens  %.0f tokens/s  ETA %.1f s\n", stage, bi + 1, n_batches, done,
                    rate, ((double)nseq * seqlen - done) / rate);
        }
    }
    for (int l = 0; l < s->n_layers; l++) {
        sym_fill_lower(s->sum[l], s->dim);
        if (s->want_q) sym_fill_lower(s->qsum[l], s->qdim);
    }
    free(h.stage);
    free(h.pair);
    workspace_free(&ws);
    return 0;
}
