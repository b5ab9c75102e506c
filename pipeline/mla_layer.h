/* One layer's attention through the conversion, in float64: the GQA
 * projections, their RoRoPE form written as a full-rank MLA, and the low-rank
 * MLA after BKV-PCA (and optional query PCA). o_proj never changes. */
#ifndef TM_PIPELINE_MLA_LAYER_H
#define TM_PIPELINE_MLA_LAYER_H

#include <stdint.h>

#include "dist/eigen_solver.h"
#include "io/hf_config.h"
#include "model/weights.h"

typedef struct {
    int H, G, d, D;
    double score_dim;      /* the original's scores are scaled by its -1/2 power (hf_config_score_dim) */
    double *wq, *wk, *wv;  /* [H*d, D], [G*d, D], [G*d, D] */
    double *bq, *bk, *bv;  /* NULL without biases */
} GqaAttn;

typedef struct {
    int H, D, dn, dr, dv;
    int R;                 /* latent width (kv_lora_rank) */
    int nk;                /* before BKV-PCA: latent dims 0..nk-1 come from keys, nk..R-1 are the values */
    int Rq;                /* 0: q holds q_proj */
    double *q, *q_bias;    /* [H*(dn+dr), D], [H*(dn+dr)] or NULL */
    double *q_a, *q_a_bias, *q_b; /* [Rq, D], [Rq] or NULL, [H*(dn+dr), Rq] */
    double *kv_a, *kv_a_bias;     /* [R+dr, D] rope rows last, [R+dr] or NULL */
    double *kv_b;          /* [H*(dn+dv), R] */
    double kv_norm, q_norm; /* calibration RMS of the latents: the exported layernorm weights */
    double *kv_b_native;   /* NULL, or kv_b_proj fitted to follow a unit-weight kv_a_layernorm */
    /* set by the whole-attention fit (pipeline/attn_fit.h), else NULL */
    double *kv_norm_w;     /* kv_a_layernorm's weight [R] */
    double *q_norm_w;      /* q_a_layernorm's weight [Rq] */
    double *o;             /* o_proj [D, H*dv] (NULL: the original's) */
} MlaAttn;

/* Read layer L's q/k/v (and biases) as float64. qk_fold: NULL, or for a
 * QK-norm model each query then key head's mean 1/rms [H+G], folded with
 * q_norm/k_norm into the q/k rows (pipeline/qk_fold.c). */
void gqa_attn_load(GqaAttn *g, const ModelConfig *c, const LayerWeights *L, const double *qk_fold);
void gqa_attn_free(GqaAttn *g);

/* The RoRoPE model of one layer written exactly as MLA with latent
 * [P_nope k ; v] (R = 2L - r), rope head P_rope k, queries absorbing the
 * key up-projection's rope part and rescaled from 1/sqrt(d) to
 * 1/sqrt(d + r). P is rorope_rotation's [L, L]. */
void mla_from_rorope(MlaAttn *a, const GqaAttn *g, const double *P, int r);
/* BKV-PCA: balance the key part of the latent against the values (ratio =
 * mean key-dim norm / (mean value-dim norm * balance), as the reference),
 * then keep the top R principal directions of the latent covariance sum
 * Z [nk+nv, nk+nv] over `count` tokens. Returns 0 or -1. */
int mla_bkv_pca(MlaAttn *a, const double *Z, int64_t count, int R, double balance, const EigenSolver *e,
                double *ratio_out);
/* Query PCA: q_proj -> q_a (top Rq directions of the query covariance sum Q
 * [H*(dn+dr)]^2 over count tokens) and q_b. */
int mla_q_pca(MlaAttn *a, const double *Q, int64_t count, int Rq, const EigenSolver *e);

/* Data-free counterparts (--cal-dataset none): the layer's input is taken as
 * the input norm's weight g times uncorrelated unit-variance noise, so a
 * projection W x + b has second moment F F^T with F = [W diag(g), b]; the
 * principal directions come from the SVD of F (the stacked, balanced K/V
 * projections; the query projection), not from calibration data. */
int mla_bkv_pca_weights(MlaAttn *a, const float *input_norm, int R, double balance, const EigenSolver *e,
                        double *ratio_out);
int mla_q_pca_weights(MlaAttn *a, const float *input_norm, int Rq, const EigenSolver *e);
/* RoRoPE's key statistics under the same assumption: K = F F^T [G*d, G*d]. */
void gqa_key_moment(const GqaAttn *g, const float *input_norm, double *K);
/* Fit the export's kv_b_proj to the norm DeepSeek loaders apply: with
 * n = c / rms(c) and S the covariance sum of [c, n] [2R, 2R], kv_b_native =
 * kv_b M with M = C_cn C_nn^-1, the least-squares map from what the loader
 * feeds kv_b_proj back to the exact latent (for every output at once). */
int mla_fit_kv_norm(MlaAttn *a, const double *S);
void mla_attn_free(MlaAttn *a);

/* Every array of an MlaAttn (NULL or allocated) with the length its shape
 * gives, in one fixed order: for sending and saving it whole. */
#define MLA_MAX_FIELDS 12
typedef struct {
    const char *name;
    double **p;
    int64_t n;
} MlaField;
int mla_attn_fields(MlaAttn *a, MlaField *f);
/* Every array and norm of a layer's result is finite; else one error naming
 * the step, the layer and the array (before the result is kept or saved). */
int mla_attn_check_finite(MlaAttn *a, int layer, const char *step);
/* Bytes its float64 matrices take. */
uint64_t mla_attn_bytes(const MlaAttn *a);

#endif
