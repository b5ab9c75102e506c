#include "model/ppl.h"

#include <math.h>
#include <stdio.h>

#include "io/base/clock.h"
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

int ppl_eval(const Model *m, const int32_t *ids, size_t n_ids, int seqlen, int nseq, int batch, int progress,
             PplResult *out) {
    if (ppl_check_windows(n_ids, seqlen, &nseq)) return -1;
    if (batch < 1) batch = 1;
    if (batch > nseq) batch = nseq;

    Workspace ws;
    workspace_init(&ws, &m->cfg, batch, seqlen);
    double t0 = tm_now_s(), total = 0.0;
    int64_t predicted = 0, tokens = 0;
    int n_batches = (nseq + batch - 1) / batch;
    for (int bi = 0; bi < n_batches; bi++) {
        int first = bi * batch, count = nseq - first < batch ? nseq - first : batch;
        ws.B = count; /* a short last batch reuses the same buffers */
        int64_t n;
        total += model_nll(m, ids + (size_t)first * seqlen, &ws, &n);
        predicted += n;
        tokens += (int64_t)count * seqlen;
        if (progress) {
            double el = tm_now_s() - t0, rate = tokens / el;
            fprintf(stderr, "eval: batch %d/%d  %lld tokens  %.0f tokens/s  ETA %.1f s\n", bi + 1, n_batches,
                    (long long)tokens, rate, ((double)nseq * seqlen - tokens) / rate);
        }
    }
    workspace_free(&ws);
    out->seconds = tm_now_s() - t0;
    out->predicted = predicted;
    out->tokens = tokens;
    out->nll = total / (double)predicted;
    out->ppl = exp(out->nll);
    out->tokens_per_s = tokens / out->seconds;
    return ppl_check_finite(out->ppl, out->nll, predicted);
}

int ppl_check_finite(double ppl, double nll, int64_t predicted) {
    if (isfinite(ppl)) return 0;
    if (isnan(nll))
        return tm_fail("perplexity is NaN (the NLL over %lld predicted tokens is NaN): the model's outputs overflow "
                       "float32 or hold NaN", (long long)predicted);
    return tm_fail("perplexity is Inf (mean NLL %g over %lld predicted tokens): the model puts no probability on "
                   "the text", nll, (long long)predicted);
}
