/* A conversion's saved progress, so that a killed or requeued job continues
 * where it stopped and ends with the same model as an uninterrupted run.
 *
 * Everything lives in the work folder SAVE_PATH.work (beside the output, on
 * the shared file system every rank sees), as small HDF5 files that each
 * appear complete or not at all (written under a temporary name, renamed):
 *   state.h5                   the conversion's fingerprint: settings,
 *                              topology, hashes of config and token ids
 *   PASS.rankRRRRR.h5          one streaming pass (calibration or
 *                              evaluation) on one rank: micro-batches done,
 *                              its unreduced covariance sums or NLL sums
 *   STEP.layerLLLLL.h5         one finished layer of a per-layer step
 *                              (RoRoPE rotation, or the whole MLA attention)
 *   FIT-stream.rankRRRRR.h5    a per-layer fit's residual streams on one
 *                              rank at the input of its next layer, so a
 *                              resumed fit need not rebuild them
 *   PHASE.done.h5              a finished phase (JSON of what it decided)
 * Files a finished phase no longer needs are removed; the folder goes when
 * the output is in place. Collective calls say so. */
#ifndef TM_PIPELINE_RESUME_H
#define TM_PIPELINE_RESUME_H

#include <jansson.h>
#include <mpi.h>
#include <stdint.h>

#include "pipeline/calibrate.h"
#include "pipeline/mla_layer.h"

typedef enum { RESUME_AUTO, RESUME_NEVER } ResumeMode;

typedef struct {
    char dir[4096];
    int rank;
    int continued;  /* the folder held the state of this same conversion */
} Resume;

/* Collective. AUTO: continue from save_path.work when its fingerprint
 * matches (a JSON object), refuse naming the first field that differs;
 * NEVER: discard the folder. Rank 0 then creates it with state.h5. */
int resume_open(Resume *rs, const char *save_path, json_t *fingerprint, ResumeMode mode, int rank);
/* Rank 0 removes the folder (the output is complete). */
void resume_finish(Resume *rs);

/* One streaming pass on this rank: micro-batches [0, next_mb) of n_mb are
 * in the sums. */
typedef struct {
    int next_mb, n_mb;
    double nll;         /* last stage: NLL sum so far */
    int64_t predicted;  /* and its token count */
} PassCursor;

/* 1: found (st, when given, gets its sums and count; its shape must match),
 * 0: none saved, -1: unreadable (error names the file). */
int resume_load_pass(const Resume *rs, const char *pass, PassCursor *c, CalibStats *st);
int resume_save_pass(const Resume *rs, const char *pass, const PassCursor *c, const CalibStats *st);

/* Per-layer results. has: the file exists. */
int resume_has_layer(const Resume *rs, const char *step, int layer);
/* One layer's float64 array of n values (a rotation, a fit's info row, ...). */
int resume_save_array(const Resume *rs, const char *step, int layer, const double *v, int64_t n);
int resume_load_array(const Resume *rs, const char *step, int layer, double *v, int64_t n);
int resume_save_attn(const Resume *rs, const char *step, int layer, MlaAttn *a, double kv_ratio);
int resume_load_attn(const Resume *rs, const char *step, int layer, MlaAttn *a, double *kv_ratio);

/* This rank's streams of a per-layer fit (nx arrays of n floats) at the
 * input of `layer`, under the name `step`. */
int resume_save_streams(const Resume *rs, const char *step, int layer, float *const *x, int nx, int64_t n);
/* The layer they were saved at, RESUME_NO_STREAMS (none saved), or -1
 * (unreadable, or not nx streams: the error names the file). */
enum { RESUME_NO_STREAMS = -2 };
int resume_streams_layer(const Resume *rs, const char *step, int nx);
int resume_load_streams(const Resume *rs, const char *step, float *const *x, int nx, int64_t n);

/* Collective: rank 0 writes PHASE.done.h5 holding info (a JSON object). */
int resume_mark_done(const Resume *rs, const char *phase, json_t *info);
/* Collective: the info of a finished phase (new reference), or NULL. */
json_t *resume_phase_done(const Resume *rs, const char *phase);
/* Collective: rank 0 removes the files whose names start with prefix. */
void resume_remove(const Resume *rs, const char *prefix);

#endif
