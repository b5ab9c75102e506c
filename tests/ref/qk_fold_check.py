#!/usr/bin/python3
"""The QK-norm fold of `transmla convert` (pipeline/qk_fold.c), independently
in float64: each query and key head's 1/rms, averaged over the calibration
windows' tokens, replaces the per-token 1/rms; prints the perplexity of that
folded model (and of the original) on the evaluation windows as JSON.

Usage: qk_fold_check.py MODEL_DIR CAL_TOKENS EVAL_TOKENS --cal-seqlen N --ncal K
                        --eval-seqlen N [--neval K]
Windows are consecutive and non-overlapping from the file's start (u16 ids),
as `transmla convert --cal-tokens/--eval-tokens` reads them.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tm_ref  # noqa: E402


def windows(path, seqlen, n):
    toks = np.fromfile(path, dtype="<u2").astype(np.int64)
    avail = toks.shape[0] // seqlen
    n = avail if not n else n
    return [toks[i * seqlen:(i + 1) * seqlen] for i in range(n)]


class HeadNorm:
    """Stands in for tm_ref.rmsnorm: 3-D calls are the per-head q/k norms,
    in the order layer 0 q, layer 0 k, layer 1 q, ..."""

    def __init__(self, plain):
        self.plain, self.calls, self.sums, self.count, self.fixed = plain, 0, {}, 0, None

    def __call__(self, x, w, eps):
        if x.ndim != 3:
            return self.plain(x, w, eps)
        key = divmod(self.calls, 2)  # (layer, 0 = q / 1 = k)
        self.calls += 1
        if self.fixed is not None:  # the folded model: a constant per head
            return x * self.fixed[key][:, None, None] * w
        rinv = 1.0 / np.sqrt(np.mean(x * x, axis=-1) + eps)  # (heads, T)
        self.sums[key] = self.sums.get(key, 0.0) + rinv.sum(axis=1)
        return x * rinv[..., None] * w


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("cal")
    ap.add_argument("eval")
    ap.add_argument("--cal-seqlen", type=int, required=True)
    ap.add_argument("--ncal", type=int, default=0)
    ap.add_argument("--eval-seqlen", type=int, required=True)
    ap.add_argument("--neval", type=int, default=0)
    a = ap.parse_args()
    cfg, W = tm_ref.load_model(a.model)
    norm = HeadNorm(tm_ref.rmsnorm)
    tm_ref.rmsnorm = norm
    tokens = 0
    for s in windows(a.cal, a.cal_seqlen, a.ncal):
        norm.calls = 0
        tm_ref.hidden_states(cfg, W, s)
        tokens += s.shape[0]
    norm.fixed = {k: v / tokens for k, v in norm.sums.items()}
    evals = windows(a.eval, a.eval_seqlen, a.neval)
    tm_ref.rmsnorm = norm.plain
    out = {"original": math.exp(tm_ref.mean_nll(cfg, W, evals))}
    tm_ref.rmsnorm = norm
    tot, n = 0.0, 0
    for s in evals:  # the call counter restarts with every sequence
        norm.calls = 0
        t, k = tm_ref.nll_sum(cfg, W, [s])
        tot, n = tot + t, n + k
    out["qk_norm_folded"] = math.exp(tot / n)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
