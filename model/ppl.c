#include "model/ppl.h"

#include <math.h>
#include <stdio.h>

#include "io/base/error.h"

int ppl_check_windows(size_t n_ids, int seqlen, int *nseq) {
    if (seqlen < 2) return tm_fail("--seqlen %d: a window needs at least 2 tokens", seqlen);
    size_t avail = n_ids / (size_t)seqlen;
    if (avail == 0) return tm_fail("the token file holds %zu tokens, fewer than one window of --seqlen %d", n_ids, seqlen);
    if (*nseq <= 0) *nseq = (int)avail;
    if ((size_t)*nseq > avail)
        return tm_fail("--nseq %d windows of %d tokens need %lld tokens; the token file holds %zu", *nseq, seqlen,
                       (long long)*nseq * seqlen, n_ids);
    return 0;
}

int ppl_check_finite(double ppl, double nll, int64_t predicted) {
    if (isfinite(ppl)) return 0;
    if (isnan(nll))
        return tm_fail("perplexity is NaN (the NLL over %lld predicted tokens is NaN): the model's outputs overflow "
                       "float32 or hold NaN", (long long)predicted);
    return tm_fail("perplexity is Inf (mean NLL %g over %lld predicted tokens): the model puts no probability on "
                   "the text", nll, (long long)predicted);
}
