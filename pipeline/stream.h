/* Streaming token windows through the pipeline: each replica takes a
 * disjoint, contiguous slice of the windows and pushes it through the stages
 * in micro-batches; a stage receives the residual stream of micro-batch i+1
 * while it computes micro-batch i and sends i-1, so stages overlap. Used for
 * calibration (the stages' attention hooks gather statistics) and for
 * perplexity (the last stage scores the tokens). */
#ifndef TM_PIPELINE_STREAM_H
#define TM_PIPELINE_STREAM_H

#include <stdint.h>

#include "dist/topology.h"
#include "model/model.h"
#include "pipeline/calibrate.h"

enum { PIPE_CPU, PIPE_CUDA };

typedef struct {
    const int32_t *ids;  /* window k = ids[k*seqlen ..] (every rank holds the token ids) */
    int seqlen, nseq, batch;
    int score;           /* the last stage computes next-token NLL */
    AttentionHook hook;  /* NULL, or called per layer with global layer indices */
    void *hook_ctx;
    CalibStats *stats;   /* the sums the hook adds to (calibration), or NULL: PIPE_CUDA sums them on the GPU
                          * instead of calling the hook, into these once the pass ends or stops */
    const char *label;   /* progress lines; NULL: quiet */
    int device;          /* PIPE_CPU, or PIPE_CUDA: each rank's part on GPU (local rank mod GPU count) */
    int gpu_fp32;        /* PIPE_CUDA: fp32 GEMMs and attention instead of bf16 with fp32 accumulation */
    /* a resumed pass: this replica starts at micro-batch start_mb, and the
     * last stage's partial scores so far are nll0 over predicted0 tokens */
    int start_mb;
    double nll0;
    int64_t predicted0;
} PipeJob;

typedef struct {
    double nll;          /* mean NLL per predicted token (score) over all replicas */
    double ppl;
    int64_t predicted, tokens;
    double seconds, tokens_per_s;
    uint64_t activation_bytes; /* this rank's micro-batch workspace and pipeline buffers */
    /* where this rank's replica got to: micro-batches [0, next_mb) of n_mb
     * are done, with this rank's partial scores (last stage) */
    int next_mb, n_mb;
    double nll_local;
    int64_t predicted_local;
    int stopped;         /* some replica stopped early (a stop request, io/base/interrupt.h): the pass is incomplete */
} PipeResult;

/* Collective over the world; 0, or -1 on every rank with tm_error() when
 * the device cannot take the part (PIPE_CUDA). m holds this stage's part (embedding on stage
 * 0, head on the last when scoring). When a stop is requested, each
 * replica's first stage stops before its next micro-batch and tells the
 * stages after it (an empty message), so every stage of a replica has done
 * the same micro-batches; the hook's sums then hold [0, next_mb). */
int pipeline_run(const Topology *t, const Model *m, const PipeJob *job, PipeResult *out);

/* Windows [first, first + count) of nseq that replica `replica` of Dp takes. */
void pipeline_slice(int nseq, int replica, int replicas, int *first, int *count);

#endif
