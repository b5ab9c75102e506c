/* Calibration: stream token windows through a model one micro-batch at a
 * time and sum, per layer, the float64 covariance of what a conversion step
 * needs. Only the sums persist; activations live for one micro-batch. */
#ifndef TM_CONVERT_CALIBRATE_H
#define TM_CONVERT_CALIBRATE_H

#include <stdint.h>

#include "model/model.h"

typedef enum {
    CAL_KEYS,   /* GQA model: keys before RoPE (RoRoPE's statistics) */
    CAL_LATENT, /* MLA model: the latent before its norm (BKV-PCA's), and queries when want_q */
    CAL_LATENT_NORMED, /* MLA model: [c, c / rms(c)] for the kv_a_layernorm fit (dim = 2 * kv_lora_rank) */
} CalTarget;

typedef struct {
    CalTarget target;
    int n_layers, dim;  /* per layer: dim x dim sums */
    double **sum;       /* [n_layers][dim * dim], symmetric once calibrate() returns */
    int want_q, qdim;
    double **qsum;      /* [n_layers][qdim * qdim] when want_q */
    int64_t count;      /* tokens summed (the same for every layer) */
    uint64_t activation_bytes; /* the micro-batch's buffers while calibrating */
} CalibStats;

/* dim: the statistic's width (GQA: kv_heads*head_dim; MLA: leading latent
 * dims to cover). qdim: query width, or 0 for none. */
void calib_stats_init(CalibStats *s, CalTarget target, int n_layers, int dim, int qdim);
void calib_stats_free(CalibStats *s);
uint64_t calib_stats_bytes(const CalibStats *s);

/* Run nseq windows of seqlen tokens (ids[k*seqlen ..]) through m in
 * micro-batches of `batch` windows; `stage` names the step in progress lines. */
int calibrate(const Model *m, const int32_t *ids, int seqlen, int nseq, int batch, const char *stage, int progress,
              CalibStats *s);

#endif
