/* Fitting a converted layer's whole MLA attention to the original layer's
 * attention output (DESIGN.md section 2, beyond the published method).
 *
 * After BKV-PCA and the kv-norm fit, a layer is what a DeepSeek loader runs:
 * q_proj (or q_a_proj, q_a_layernorm, q_b_proj), kv_a_proj_with_mqa (latent
 * and rope rows), kv_a_layernorm, kv_b_proj and o_proj. The objective is the
 * mean squared error between that block's output, o_proj(MLA(xn)) + bias,
 * and the original attention block's output y on the same calibration
 * tokens, with Adam on every one of those weights (o_proj optional; biases
 * the layout holds are fitted too, o_proj's bias is not).
 *
 * No overfitting by construction: the last `held` micro-batches never train;
 * their error, measured every ATTN_JUDGE_EVERY steps and after the last,
 * picks the step whose weights are kept (step 0, the starting weights,
 * included), so a layer never leaves the fit worse on held-back data than it
 * came. Training steps walk the other micro-batches in a fixed
 * stride (step s trains those m with m % k == s % k), the same whichever
 * ranks hold them; each micro-batch's error and gradient is computed alone
 * and all of them are added in micro-batch order on every rank of `comm`,
 * so from the same inputs any layout of replicas gives the one-process
 * result bit for bit. The forward and backward are the fine-tuning MLA kernels
 * (model/mla.h), so what is fitted is what the export computes. */
#ifndef TM_PIPELINE_ATTN_FIT_H
#define TM_PIPELINE_ATTN_FIT_H

#include <mpi.h>
#include <stdint.h>

#include "model/model.h"
#include "pipeline/mla_layer.h"
#include "pipeline/stream.h"

#define ATTN_JUDGE_EVERY 5

/* One layer's data on this rank: nseq windows of T tokens (positions 0..T-1
 * each) in micro-batches of `batch` windows (the last may be shorter). */
typedef struct {
    int nseq, T, batch;
    float *xn; /* [nseq*T, D] the layer's input after input_layernorm */
    float *y;  /* [nseq*T, D] the original attention block's output, o_proj bias included */
} AttnFitData;

typedef struct {
    const ModelConfig *c;   /* the converted model's (mla_config_from, BUILD_NATIVE, rope_interleave 0) */
    int layer;              /* its index: c's sliding window for it is the original's */
    int steps;
    double lr;
    int fit_o;              /* fit o_proj too */
    int per_step;           /* training micro-batches per step, over all ranks (0: all of them) */
    int held;               /* the last `held` of the mb_total micro-batches are held back */
    MPI_Comm comm;          /* ranks holding the other micro-batches (MPI_COMM_SELF: none) */
    int mb_first, mb_total; /* this rank's first micro-batch, and all of comm's */
    int device;             /* PIPE_CPU (0), or PIPE_CUDA: the micro-batches' forward and backward on GPU
                             * local_rank mod the GPUs visible (pipeline/attn_fit_gpu.h) */
    int local_rank, gpu_fp32; /* with PIPE_CUDA: the rank's on its node; fp32 GEMMs (else bf16 inputs) */
} AttnFitProblem;

typedef struct {
    double train_before, train_after; /* mean squared error per element on the training micro-batches */
    double held_before, held_after;   /* the same on the held-back ones (NAN without any) */
    int best_step;                    /* the step whose weights are kept (0: the starting ones) */
    double seconds;
    uint64_t bytes;                   /* what the fit held: parameters x 6 and a share of a step's gradients, activations */
} AttnFitResult;

/* The fitted tensors of a layer as fp32, in a fixed order, with their
 * gradients: q (or q_a, q_a_bias, q_a_norm, q_b), kv_a, kv_a_bias, kv_a_norm,
 * kv_b, o. Absent ones (no bias, no q_lora, o not fitted) are skipped. */
#define ATTN_MAX_PARAMS 9
typedef struct {
    const char *name; /* "q", "q_a", "q_a_bias", "q_a_norm", "q_b", "kv_a", "kv_a_bias", "kv_a_norm", "kv_b", "o" */
    float *w, *g;
    int64_t n;
} AttnParam;

typedef struct {
    int n;
    AttnParam p[ATTN_MAX_PARAMS + 1];
    LayerWeights L, G;  /* views of the w (weights) and g (gradients) */
    int64_t total;      /* elements over all parameters */
} AttnParams;

/* The parameters of `a` as the export computes them (kv_b_native when set,
 * kv_a_layernorm = a->kv_norm_w, or 1 with kv_b_native, else a->kv_norm;
 * q_a_layernorm likewise; no q_proj bias), o_proj = a->o or o_orig
 * (converted to fp32), o_bias the original's (not fitted; may be NULL). */
void attn_params_init(AttnParams *P, const AttnFitProblem *p, const MlaAttn *a, const Tensor *o_orig,
                      const float *o_bias);
void attn_params_free(AttnParams *P);
/* The fitted values back into `a` (float64): q or q_a/q_b/q_norm_w, kv_a,
 * kv_a_bias, kv_norm_w, kv_b_native; o when fitted; q_bias dropped (the
 * native layout has none and the fit has made up for it). */
void attn_params_store(const AttnParams *P, MlaAttn *a);

/* Summed squared error of the block on micro-batches [m0, m1) of this rank
 * (global indices; those this rank does not hold are skipped), divided by
 * `norm`; with grad set, the gradient of that value accumulates (+=) into
 * P's g. y_fit (optional, [nseq*T, D]): the block's output on those rows.
 * Local to this rank: no communication. */
double attn_fit_local(const AttnFitProblem *p, const AttnFitData *x, AttnParams *P, int m0, int m1, double norm,
                      int grad, float *y_fit);

/* The mean squared error per element (over comm's tokens of micro-batches
 * [0, mb_total - held) and D) and, with grad, its gradient in P's g
 * (overwritten). Collective over comm. The numpy oracle checks this. */
double attn_fit_objective(const AttnFitProblem *p, const AttnFitData *x, AttnParams *P, int grad);

/* attn_fit_layer's result when a stop was requested during the fit. */
#define ATTN_FIT_STOPPED 1

/* Adam from a's weights for p->steps steps; the weights with the lowest
 * held-back error seen are stored back into a. y_fit (optional): the kept
 * block's output on this rank's rows. Collective over comm. Returns 0, -1,
 * or ATTN_FIT_STOPPED (a unchanged) when a stop reached a rank of comm. */
/* Floats per calibration row the attention-fit run holds (pipeline/run_attn_fit.c):
 * the stream, the layer's normed input and target, and the sequential
 * schedule's second stream and fitted output, or the parallel schedule's
 * copy of the stream for the next stage. */
int attn_fit_stream_cols(const ModelConfig *c, int sequential, int last_stage);
/* Bytes attn_fit_layer holds besides the data, for a layer of the
 * converted model mla on one of `replicas` ranks: the parameters five times
 * (weights, gradient, two moments, best step), the step's running gradient
 * sum and, with replicas, the rank's share of the step's per-micro-batch
 * gradients (dist/ordered_sum.h), one micro-batch's activations and error
 * rows (biases, a few rows, aside). */
uint64_t attn_fit_state_bytes(const ModelConfig *mla, int fit_o, int batch, int T, int mbs_per_step, int replicas);

int attn_fit_layer(const AttnFitProblem *p, const AttnFitData *x, MlaAttn *a, const Tensor *o_orig,
                   const float *o_bias, AttnFitResult *res, float *y_fit);

#endif
