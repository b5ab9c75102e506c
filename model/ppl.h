/* Perplexity over consecutive windows of a token stream: window k is tokens
 * [k*seqlen, (k+1)*seqlen), ppl = exp(mean NLL over all predicted tokens).
 * The windows and the checks; the one evaluation loop, which eval and
 * convert share, is pipeline/stream.h's (micro-batches through the stages,
 * NLL from model_head_nll). */
#ifndef TM_MODEL_PPL_H
#define TM_MODEL_PPL_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"

/* Check that n_ids tokens hold nseq windows of seqlen (nseq <= 0: all complete
 * windows, resolved in place). */
int ppl_check_windows(size_t n_ids, int seqlen, int *nseq);
/* A perplexity that is NaN or Inf is an error (one line with the NLL behind
 * it), never a result to print; every evaluation ends with this check. */
int ppl_check_finite(double ppl, double nll, int64_t predicted);

#endif
