/* Fitting RoRoPE's rotation to the layer's attention output (DESIGN.md
 * section 2, step 1, beyond the published method).
 *
 * Each frequency bucket's basis is turned by an orthogonal Q_b = Cayley(S_b)
 * = (I - S_b)^-1 (I + S_b), S_b skew, starting at S_b = 0 (the PCA basis):
 * V_b' = Q_b V_b. The objective is the mean squared error, after o_proj,
 * between the original attention output and the partial-RoPE attention
 * output on the layer's calibration inputs, divided by its value at S = 0
 * (so Adam's epsilon means the same for every model). Only the rope rows of
 * P enter it: a key keeps k - P_rope^T P_rope k without RoPE and the rope
 * head P_rope k with it; queries get P_rope q on their group's slot.
 *
 * Mixes among the components that lose RoPE change nothing, so that block
 * of each S_b stays 0.
 *
 * Gradients flow through the training attention kernels. Every micro-batch's
 * gradient is computed alone and all of them are summed in micro-batch order
 * on every rank of `comm`, so replicas that hold different micro-batches get
 * the one-process result bit for bit. No randomness: full-batch steps. */
#ifndef TM_PIPELINE_ROROPE_FIT_H
#define TM_PIPELINE_ROROPE_FIT_H

#include <mpi.h>
#include <stdint.h>

#include "io/hf_config.h"
#include "model/tensor.h"
#include "pipeline/rorope.h"

/* One layer's calibration data on this rank: nseq windows of T tokens, in
 * micro-batches of `batch` windows (the last may be shorter). Per token the
 * GQA projections before RoPE (biases included) and the original attention
 * output before o_proj. */
typedef struct {
    int nseq, T, batch;
    float *q, *k, *v, *o; /* [nseq*T, H*d], [.., G*d], [.., G*d], [.., H*d] */
} FitData;

/* x's micro-batches: how many, and micro-batch m's first row and window count. */
int fit_data_mb_count(const FitData *x);
int fit_data_mb(const FitData *x, int m, int64_t *row0);

typedef struct {
    RoropeShape s;
    int H;                   /* query heads */
    const double *inv_freq;  /* [rd/2]: the original head's RoPE frequencies */
    int window;              /* sliding window (0: none) */
    double score_dim;        /* scores scaled by its -1/2 power: head_dim, or gemma2's query_pre_attn_scalar */
    double softcap;          /* the original's score soft-cap (0: none) */
    const Tensor *o_proj;    /* [D, H*d] */
    int steps;
    double lr;
    MPI_Comm comm;           /* ranks holding the other micro-batches (MPI_COMM_SELF: none) */
    int mb_first, mb_total;  /* this rank's first micro-batch, and all of comm's */
    int device;              /* PIPE_CPU (0), or PIPE_CUDA: the micro-batches on GPU local_rank mod the
                              * GPUs visible (pipeline/rorope_fit_gpu.h) */
    int local_rank;
} FitProblem;

typedef struct {
    double mse_before, mse_after; /* mean over tokens and hidden dims, after o_proj */
    int best_step;                /* the step whose rotation is kept (0: the PCA one) */
    double seconds;
} FitResult;

/* Q[n, n] = (I - S)^-1 (I + S) for skew S. Returns 0, or -1 (singular). */
int cayley(int n, const double *S, double *Q);

/* The MSE after o_proj (summed over comm's micro-batches, divided by the
 * global token count * D) with bases V' = Cayley(S_b) V_b; dS (optional)
 * gets its gradient w.r.t. each S_b's entries (antisymmetric: S_ij and S_ji
 * = -S_ij move together), and o_fit (optional, [nseq*T, H*d]) the converted
 * attention output. S and V: rorope_buckets x n x n. Collective over comm. */
double rorope_fit_objective(const FitProblem *p, const FitData *x, const double *V, const double *S, double *dS,
                            float *o_fit);

/* rorope_fit_layer's result when a stop was requested during the fit. */
#define FIT_STOPPED 1

/* Adam on the S_b from 0 for p->steps steps; the rotation with the lowest
 * objective seen (the PCA one included) is kept. P [L, L]: in, the PCA
 * rotation; out, the fitted one. o_fit (optional): the kept rotation's
 * attention output. Collective over comm. Returns 0, -1, or FIT_STOPPED
 * (on every rank of comm; P unchanged) when a stop request reached a rank
 * of comm between two steps. */
int rorope_fit_layer(const FitProblem *p, const FitData *x, double *P, FitResult *res, float *o_fit);

/* Floats per calibration row the rotation-fit run holds (pipeline/run_fit.c):
 * the stream, q and o, k and v, and the sequential schedule's converted
 * output or the parallel schedule's copy of the stream for the next stage. */
int rorope_fit_stream_cols(const ModelConfig *c, int sequential, int last_stage);

#endif
