/* Private to pipeline/: what one rank of `transmla convert` holds (Run), and
 * the pieces convert.c is built from: progress lines, streaming passes that
 * resume from saved state (run_stream.c), per-layer steps spread over a
 * stage's replicas (run_stream.c), and the report (run_report.c). */
#ifndef TM_PIPELINE_RUN_H
#define TM_PIPELINE_RUN_H

#include <jansson.h>
#include <stdint.h>

#include "dist/solver.h"
#include "dist/topology.h"
#include "io/base/error.h"
#include "io/dtype.h"
#include "model/model.h"
#include "pipeline/calibrate.h"
#include "pipeline/convert.h"
#include "pipeline/mla_layer.h"
#include "pipeline/plan.h"
#include "pipeline/resume.h"
#include "pipeline/rorope.h"

/* What the run reports, apart from what it computes with: the report's
 * JSON, stage timers, the largest memory held, the solvers' counts. */
typedef struct {
    json_t *report, *ppl, *seconds, *settings, *peak_rss; /* peak_rss: rank 0's running peak after each stage */
    double t_stage;
    double carried;       /* an earlier run's seconds in the stage it stopped in, not yet added to that stage */
    uint64_t prior_peak;  /* this rank's peak RSS in the earlier runs of a resumed conversion */
    int runs;             /* runs of this conversion so far, this one included (stopped ones that saved their times) */
    uint64_t mem_stats, mem_act, mem_attn; /* largest statistics, activations, converted attention held */
    int scalapack_calls, lapack_calls;
} RunReport;

/* Everything one rank holds, so that cleanup is one function: the context
 * (settings, topology, plan, model, tokens, solvers; set up by prepare and
 * not changed after), the conversion's state, and the report. A rank holds
 * its stage's layers [first, end) only; arrays indexed by layer are sized
 * for the whole model and empty elsewhere. */
typedef struct {
    /* context */
    const ConvertSettings *s;
    Topology t;
    Plan plan;
    int first, end;
    ModelConfig cfg;
    Model orig;
    int32_t *cal_ids, *eval_ids;
    size_t n_cal, n_eval;
    int cal_nseq, eval_nseq;
    EigenSolver local, stage; /* LAPACK/ScaLAPACK alone, or ScaLAPACK over the stage's ranks */
    DistSolverCtx local_ctx, stage_ctx;
    /* state */
    RoropeShape rs;         /* freqfold: as chosen */
    MlaAttn *layers;        /* the chosen conversion */
    double *kv_ratio;       /* BKV-PCA balance per layer */
    double *qk_fold;        /* qk_norm models: [n_layers][H+G] each q/k head's mean 1/rms (pipeline/qk_fold.c) */
    Resume resume;
    char tmp_dir[4200];     /* SAVE.work/export: the output until it is renamed into place */
    int done;               /* resume phases an earlier run finished (continue_phases) */
    int exported;           /* tmp_dir holds the whole export (this run's or an earlier one's) */
    int complete;           /* an earlier run put the output in place; only the work folder is left */
    RunReport rep;
} Run;

/* The phases that leave a marker in the state, in the order they run;
 * r->done counts those an earlier run finished (convert.c: continue_phases). */
enum { PHASE_ROROPE, PHASE_ROROPE_FIT, PHASE_BKV_PCA, PHASE_KV_NORM, PHASE_ATTN_FIT, N_PHASES };

/* Step results: 0 done, -1 failed (on every rank), RUN_STOPPED: a stop was
 * requested and the progress is saved. */
#define RUN_STOPPED 1

int run_is_root(const Run *r);
/* A progress line from rank 0 (stage lines are the same on every rank). */
void run_say(const Run *r, const char *fmt, ...) TM_PRINTF(2, 3);
/* Seconds since the last stage ended, as report.seconds[stage]. */
void run_stage_done(Run *r, const char *stage);
void run_note_max(uint64_t *slot, uint64_t v);
/* This rank's peak RSS over this run and the earlier runs of the conversion. */
uint64_t run_peak_rss(const Run *r);
static inline int run_data_free(const Run *r) { return r->s->data_free; }
static inline int run_has_eval(const ConvertSettings *s) { return s->eval.tokens || s->eval.dataset; }

/* ---- run_stream.c ---- */

/* A stop requested on any rank, seen by all: RUN_STOPPED or 0. */
int run_stop_requested(void);
/* Perplexity of m on the evaluation windows (NAN without them), as the
 * resumable pass `pass`. */
int run_eval_ppl(Run *r, const Model *m, const char *label, const char *pass, double *ppl);
/* The same into r->ppl[key]. */
int run_eval_into(Run *r, const Model *m, const char *label, const char *pass, const char *key);
/* The statistics of `target` on m, summed over the stage's replicas, as the
 * resumable pass `pass`. */
int run_gather_stats(Run *r, const Model *m, CalibStats *st, CalTarget target, int dim, int qdim, const char *label,
                     const char *pass);
/* What one per-layer step reads and writes, handed to each layer's call. */
typedef struct {
    const CalibStats *stats; /* its statistics (NULL: data-free) */
    MlaAttn *layers;         /* the layers it makes, indexed by layer */
    int freqfold;            /* RoRoPE's */
    char name[32];           /* its state files' prefix */
} StepArgs;

/* One layer's step; saved: its result is in the state (load it, do not
 * compute it), else compute it and save it when `save` is set. */
typedef int (*LayerStep)(Run *r, const StepArgs *a, int l, const EigenSolver *e, int saved, int save);

int run_each_stage_layer(Run *r, LayerStep step, const StepArgs *a, int eigen_n, const char *label);

/* After a per-layer fit over the stages: -1 when a rank failed, RUN_STOPPED
 * (with a line naming `phase`) when one stopped, else 0. Collective. */
int run_fit_outcome(Run *r, int rc, const char *phase);
/* Every layer's row of `width` numbers, each from its stage's replica 0
 * (mine: [n_layers * width], zero outside this stage's layers; cleared on
 * other replicas). The result is rank 0's to read and everyone's to free. */
double *run_layer_rows(Run *r, double *mine, int width);

/* ---- run_fit.c ---- */

/* Fitting is on: steps > 0 and calibration data. */
int run_fit_enabled(const Run *r);
/* freqfold auto with the fit on: each layer's freqfold is the candidate
 * whose short fit leaves the lowest error on held-back windows. */
int run_choosing_freqfold(const Run *r);
/* The freqfolds auto tries (c, 2c, 4c, ... dividing head_dim / 2), or
 * `fixed` alone; returns how many. (convert.c) */
int run_freqfold_candidates(const RoropeShape *rs, int fixed, int *out);
/* Fit every layer's rotation (r->layers rebuilt from it), evaluate, mark
 * the phase "rorope-fit" done; nothing when the fit is off or was done. */
int stage_rorope_fit(Run *r);
/* The fit's report and ppl.rorope from the phase's info. */
void run_apply_fit(Run *r, json_t *done);

/* ---- run_attn_fit.c ---- */

/* The whole-attention fit is on: steps > 0 and calibration data. */
int run_attn_fit_enabled(const Run *r);
/* Fit every layer's MLA attention as exported (r->layers updated), mark the
 * phase "attn-fit" done; nothing when the fit is off or was done. */
int stage_attn_fit(Run *r);
/* The fit's report and ppl.mla_native_rotation_fit from the phase's info. */
void run_apply_attn_fit(Run *r, json_t *done);

/* ---- qk_fold.c ---- */

/* QK-norm models: each head's mean 1/rms over the calibration tokens, from
 * the key pass's sums, kept for this stage's layers and saved. 0 or -1. */
int run_qk_fold_set(Run *r, const CalibStats *keys);
/* gqa_attn_load of layer l of the original, with the QK-norm folded in
 * for a QK-norm model (the means loaded from the state when an earlier run
 * made them). 0, or -1 when the state cannot be read (an error is reported). */
int run_gqa_attn_load(Run *r, int l, GqaAttn *g);
/* ppl.qk_norm_folded: the original with every 1/rms replaced by its mean
 * (before any RoRoPE or low rank), when there is evaluation data. */
int run_qk_fold_eval(Run *r);

/* ---- run_report.c ---- */

json_t *run_settings_json(const Run *r);
/* Per-rank memory into the report (collective). */
void run_memory_report(Run *r);
void run_print_memory(const Run *r);
/* kv balance ratios, eigen solver counts, KV bytes, notes (collective). */
void run_report_tail(Run *r, TmDType dtype);
/* A stopped run's stage seconds, the time spent in the stage it stopped in,
 * and every rank's peak RSS, saved in the state (collective); the next run
 * of the conversion loads them (collective), so its report covers all runs
 * (report.resume.runs counts them). */
int run_times_save(Run *r);
void run_times_load(Run *r);

#endif
