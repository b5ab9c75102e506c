/* Calibration statistics: per layer, the float64 covariance sums a
 * conversion step needs, gathered by an attention hook while token windows
 * stream through the model (pipeline/stream.c). Only the sums persist;
 * activations live for one micro-batch. */
#ifndef TM_PIPELINE_CALIBRATE_H
#define TM_PIPELINE_CALIBRATE_H

#include <stdint.h>

#include "model/model.h"

typedef enum {
    CAL_KEYS,   /* GQA model: keys before RoPE (RoRoPE's statistics) */
    CAL_LATENT, /* MLA model: the latent before its norm (BKV-PCA's), and queries when want_q */
    CAL_LATENT_NORMED, /* MLA model: [c, c / rms(c)] for the kv_a_layernorm fit (dim = 2 * kv_lora_rank) */
} CalTarget;

typedef struct {
    CalTarget target;
    int first, end;     /* the layers held: [first, end) (one pipeline stage's) */
    int dim;            /* per layer: dim x dim sums */
    double **sum;       /* [n_layers][dim * dim], NULL outside [first, end); symmetric after calib_finish */
    int want_q, qdim;
    double **qsum;      /* [n_layers][qdim * qdim] when want_q */
    int nrinv;          /* CAL_KEYS on a qk_norm model: H + G, else 0 */
    double **rinv;      /* [n_layers][nrinv]: sums over tokens of each query then key head's 1/rms (QK-norm) */
    int64_t count;      /* tokens summed (the same for every layer) */
} CalibStats;

/* dim: the statistic's width (GQA: kv_heads*head_dim; MLA: leading latent
 * dims to cover). qdim: query width, or 0 for none. */
void calib_stats_init(CalibStats *s, CalTarget target, int n_layers, int first, int end, int dim, int qdim);
/* Also sum each q/k head's 1/rms (ws->qk_rinv, n = H + G values per token). */
void calib_stats_want_rinv(CalibStats *s, int n);
void calib_stats_free(CalibStats *s);
uint64_t calib_stats_bytes(const CalibStats *s);

/* The hook's state: scratch for up to max_rows rows of one micro-batch. */
typedef struct {
    CalibStats *s;
    const ModelConfig *c;
    double *stage;
    float *pair;        /* CAL_LATENT_NORMED rows [c, c / rms(c)] */
    uint64_t bytes;     /* the scratch's size */
} CalibGather;

void calib_gather_init(CalibGather *g, CalibStats *s, const ModelConfig *c, int max_rows);
void calib_gather_free(CalibGather *g);
/* AttentionHook: add one micro-batch's rows of `layer` to the sums. */
void calib_gather_hook(void *g, int layer, const AttnProjections *p);
/* Copy the upper triangles into the lower ones once every row is in. */
void calib_finish(CalibStats *s);
/* Every sum held is finite; else one error naming `label` (the pass), the
 * layer and the statistic, so that no step fits anything to NaN/Inf. */
int calib_check_finite(const CalibStats *s, const char *label);

#endif
