/* Perplexity over consecutive windows of a token stream: window k is tokens
 * [k*seqlen, (k+1)*seqlen), ppl = exp(mean NLL over all predicted tokens).
 * Shared by eval, convert and finetune. */
#ifndef TM_MODEL_PPL_H
#define TM_MODEL_PPL_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

typedef struct {
    double nll;          /* mean NLL per predicted token */
    double ppl;
    int64_t predicted;   /* tokens predicted: nseq * (seqlen - 1) */
    int64_t tokens;      /* tokens run through the model */
    double seconds, tokens_per_s;
} PplResult;

/* Check that n_ids tokens hold nseq windows of seqlen (nseq <= 0: all complete
 * windows, resolved in place). */
int ppl_check_windows(size_t n_ids, int seqlen, int *nseq);
/* nseq <= 0: every complete window. batch: windows per forward micro-batch.
 * progress: print batch i/n, tokens/s and ETA to stderr. */
int ppl_eval(const Model *m, const int32_t *ids, size_t n_ids, int seqlen, int nseq, int batch, int progress,
             PplResult *out);
/* A perplexity that is NaN or Inf is an error (one line with the NLL behind
 * it), never a result to print; every evaluation ends with this check. */
int ppl_check_finite(double ppl, double nll, int64_t predicted);

#endif
