/* `transmla convert`: calibrate, RoRoPE, BKV-PCA, absorb, export, evaluate
 * each step, report; on one process or on P MPI ranks as S pipeline stages x
 * P/S replicas (dist/), giving the same model either way. */
#ifndef TM_PIPELINE_CONVERT_H
#define TM_PIPELINE_CONVERT_H

#include <stdint.h>

#include "io/dtype.h"
#include "io/token_source.h"
#include "pipeline/plan.h"

typedef struct {
    const char *model_path, *save_path;
    int overwrite;
    int data_free;            /* --cal-dataset none: no calibration data */
    TokenSource cal, eval;    /* eval.tokens and eval.dataset NULL: no perplexities */
    uint64_t seed;            /* calibration sampling from a text dataset */
    int cal_seqlen, cal_nsamples, cal_batch;  /* nsamples 0: every complete window */
    int ppl_seqlen, eval_nsamples, eval_batch;
    int qk_mqa_dim;
    int collapse;     /* 0: auto = head_dim / qk_mqa_dim */
    int freqfold;     /* 0: auto = search c, 2c, 4c, ... by evaluation perplexity */
    int kv_lora_rank, q_lora_rank;
    double balance_kv_ratio;
    TmDType dtype;    /* TM_DTYPE_INVALID: follow the input */
    int rope_interleave;
    int rorope_fit_steps;     /* Adam steps fitting each layer's RoRoPE rotation (0: the published PCA) */
    double rorope_fit_lr;
    int rorope_fit_nsamples;  /* calibration windows the fit uses (0: all) */
    int rorope_fit_sequential; /* 1: layer inputs from the converted prefix; 0: from the original model */
    int skip_published_mla;   /* 1: with the fit on, do not build the published rotation's MLA (ppl.mla_pca) */
    int kv_norm_fit;  /* 1: fit kv_b_proj to the exported kv_a_layernorm (one more calibration pass); 0: RMS weight */
    int attn_fit_steps;       /* Adam steps fitting each layer's whole MLA attention (0: no such fit) */
    double attn_fit_lr;
    int attn_fit_nsamples;    /* calibration windows that fit uses, held-back ones included (0: all) */
    int attn_fit_windows_per_step; /* windows each Adam step trains on */
    int attn_fit_o;           /* 1: o_proj is fitted too */
    int attn_fit_sequential;  /* 1: layer inputs from the fitted prefix; 0: from the original model */
    uint64_t max_shard_bytes;
    int progress;
    int device, gpu_fp32;    /* PIPE_CPU / PIPE_CUDA for the streaming passes (statistics, evaluations); fp32 GEMMs */
    int stages;              /* pipeline stages; replicas = ranks / stages */
    uint64_t mem_per_rank;   /* 0: no limit on the plan's estimate */
    int scalapack_min_n;     /* eigenproblems/SVDs with at least this many rows run on ScaLAPACK */
    int resume_never;        /* 1: discard saved progress (save_path.work) and start afresh */
} ConvertSettings;

/* The defaults of `transmla convert`'s numeric settings (flags override them). */
void convert_settings_defaults(ConvertSettings *s);
/* What the per-layer fits of s will hold, for pipeline/plan.h. */
PlanFits plan_fits_of(const ConvertSettings *s);
/* Whether the rotation fit chooses each layer's freqfold (--freqfold auto,
 * the fit on, calibration data): the rule run_choosing_freqfold applies. */
int fit_chooses_freqfold(const ConvertSettings *s, int has_data);
/* How RoRoPE's search holds the converted attention (PlanInputs.attention_copies and
 * rorope_builds); has_data 0 for a data-free run. */
void plan_rorope_search(PlanInputs *in, const ConvertSettings *s, int has_eval, int has_data);

/* convert_run's result when a stop was requested (SIGTERM/SIGUSR1, see
 * io/base/interrupt.h) and the progress is saved in save_path.work. */
#define CONVERT_STOPPED 2

/* Collective over MPI_COMM_WORLD (MPI initialised by the caller). Returns 0,
 * CONVERT_STOPPED, or -1 on every rank with tm_error() set ("rank R: cause"
 * when several); progress is kept in save_path.work, and a run with the
 * same settings and ranks continues from it;
 * errors in the settings are found before any heavy work, and nothing
 * appears at save_path unless the whole conversion succeeded. */
int convert_run(const ConvertSettings *s);

#endif
