#!/usr/bin/python3
"""rorope_fit_check: pipeline/rorope_fit.c against an independent float64 numpy
oracle.

    /usr/bin/python3 tests/ref/rorope_fit_check.py TEST_ROROPE_FIT_BINARY WORKDIR [--gpu]

(--gpu: the binary runs the fit's micro-batches on the GPU, fp32; the same
checks and tolerances, exit 77 where no GPU is visible: ctest gpu_rorope_fit.)

For each case (no window; a sliding window shorter than the windows; partial
rotary, phi3's: RoPE on the leading rd = 12 of d = 16 dims) this makes random
q, k, v (float32-exact), the original attention output o with RoPE on the
leading rd dims of each head, a random o_proj, bases V and a skew S per frequency bucket, runs
`test_rorope_fit DIR` and checks:
  - the objective (MSE after o_proj of partial-RoPE vs original attention) at
    (V, S) equals the numpy one: rel 1e-5 (C runs the attention in float32,
    ~1e-6 relative; a wrong term moves it by O(1));
  - its gradient w.r.t. each free entry of S (S_ij with S_ji = -S_ij) equals
    central differences of the numpy objective (h = 1e-6, float64):
    max |g_c - g_fd| <= 1e-3 max |g_fd| + 1e-9 (float32 rounding through a few
    hundred operations, far below any wrong term);
  - the Cayley transform of a large skew matrix (float64) is orthogonal to
    1e-10, and so is the rotation the fit returns;
  - the fit lowers the objective (at least 10% on these problems), and
    re-evaluating the returned rotation here gives the MSE C reports (1e-5).

The numpy side is written from the algorithm's description (rotate-half RoPE
as Hugging Face Llama, the RoRoPE layout documented in pipeline/rorope.h), not
from the C code.
"""
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tm_ref  # noqa: E402  (safetensors writer)

H_FD = 1e-6


def f32(a):
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def rope(x, freqs):
    """Rotate-half RoPE of x [T, w] at positions 0..T-1, pair i turning at freqs[i]."""
    T, w = x.shape
    ang = np.arange(T)[:, None] * freqs[None, :]
    c, s = np.cos(ang), np.sin(ang)
    x1, x2 = x[:, : w // 2], x[:, w // 2:]
    return np.concatenate([x1 * c - x2 * s, x2 * c + x1 * s], axis=1)


def softmax_attend(scores, v, window):
    T = scores.shape[0]
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    seen = (j <= i) & ((window <= 0) | (i - j < window))
    s = np.where(seen, scores, -np.inf)
    p = np.exp(s - s.max(axis=1, keepdims=True))
    return (p / p.sum(axis=1, keepdims=True)) @ v


def partial_rope(x, freqs, rd):
    """RoPE on the leading rd dims of x [T, d] (Phi-3's partial rotary), the rest as they are."""
    return np.concatenate([rope(x[:, :rd], freqs), x[:, rd:]], axis=1)


def original_attention(c, q, k, v):
    H, G, d, T, rd = c["H"], c["G"], c["d"], c["T"], c["rd"]
    out = np.zeros((q.shape[0], H * d))
    for w in range(c["nseq"]):
        rows = slice(w * T, (w + 1) * T)
        for h in range(H):
            g = h // (H // G)
            qh = partial_rope(q[rows, h * d:(h + 1) * d], c["inv_freq"], rd)
            kg = partial_rope(k[rows, g * d:(g + 1) * d], c["inv_freq"], rd)
            out[rows, h * d:(h + 1) * d] = softmax_attend(qh @ kg.T / np.sqrt(d), v[rows, g * d:(g + 1) * d],
                                                          c["window"])
    return out


def rope_rows(c, V, S):
    """P's rope rows [r, G*d] from bases V_b turned by Cayley(S_b): bucket b mixes
    the planes (i, i + rd/2), i in [b*f, (b+1)*f), of every head."""
    G, d, r, f, rd = c["G"], c["d"], c["r"], c["freqfold"], c["rd"]
    col, n, keep = rd // r, G * f, f // (rd // r)
    P = np.zeros((r, G * d))
    for b in range(rd // 2 // f):
        I = np.eye(n)
        Vt = np.linalg.solve(I - S[b], I + S[b]) @ V[b]
        for j in range(keep):
            q = b * keep + j
            for g in range(G):
                for m in range(f):
                    a = g * f + m
                    P[q, g * d + b * f + m] = Vt[j, a]
                    P[q + r // 2, g * d + rd // 2 + b * f + m] = Vt[j, a]
    assert col * r == rd
    return P


def objective(c, x, Pr):
    H, G, d, r, T = c["H"], c["G"], c["d"], c["r"], c["T"]
    freqs = c["inv_freq"][:: c["rd"] // r][: r // 2]
    q, k, v, o, Wo = x["q"], x["k"], x["v"], x["o"], x["o_proj"]
    ku = k @ Pr.T
    kn = k - ku @ Pr
    out = np.zeros_like(o)
    for w in range(c["nseq"]):
        rows = slice(w * T, (w + 1) * T)
        kr = rope(ku[rows], freqs)
        for h in range(H):
            g = h // (H // G)
            qh = q[rows, h * d:(h + 1) * d]
            qr = rope(qh @ Pr[:, g * d:(g + 1) * d].T, freqs)
            scores = (qh @ kn[rows, g * d:(g + 1) * d].T + qr @ kr.T) / np.sqrt(d)
            out[rows, h * d:(h + 1) * d] = softmax_attend(scores, v[rows, g * d:(g + 1) * d], c["window"])
    e = (out - o) @ Wo.T
    return float((e * e).sum() / e.size)


def run_case(binary, work, name, window, seed, rd=16, r=8, freqfold=4):
    rng = np.random.default_rng(seed)
    c = dict(H=4, G=2, d=16, rd=rd, r=r, freqfold=freqfold, T=12, nseq=3, batch=2, D=24, window=window, steps=40)
    N, L, nb, n = c["nseq"] * c["T"], c["G"] * c["d"], c["rd"] // 2 // c["freqfold"], c["G"] * c["freqfold"]
    c["inv_freq"] = f32(10000.0 ** (-np.arange(0, c["rd"], 2) / c["rd"]))
    x = dict(q=f32(rng.normal(size=(N, c["H"] * c["d"]))), k=f32(rng.normal(size=(N, L))),
             v=f32(rng.normal(size=(N, L))),
             o_proj=f32(rng.normal(size=(c["D"], c["H"] * c["d"])) / np.sqrt(c["H"] * c["d"])))
    x["o"] = f32(original_attention(c, x["q"], x["k"], x["v"]))
    V = f32(np.linalg.qr(rng.normal(size=(nb, n, n)))[0])
    A = np.triu(rng.normal(scale=0.3, size=(nb, n, n)), 1)
    S = f32(A - np.transpose(A, (0, 2, 1)))
    d = os.path.join(work, name)
    os.makedirs(d, exist_ok=True)
    tensors = {k: np.array([float(c[k])]) for k in ("H", "G", "d", "rd", "r", "freqfold", "T", "nseq", "batch", "D",
                                                     "window", "steps")}
    tensors.update(x)
    tensors.update(inv_freq=c["inv_freq"], V=V, S=S)
    tm_ref.write_safetensors(os.path.join(d, "in.safetensors"), tensors)
    rc = subprocess.run([binary, d] + EXTRA).returncode
    if rc == 77:  # --gpu where no GPU is visible
        sys.exit(77)
    if rc:
        raise SystemExit("%s %s: exit %d" % (binary, d, rc))
    out = json.load(open(os.path.join(d, "out.json")))
    fails = 0

    def check(what, ok, detail):
        nonlocal fails
        print("%s %s %s: %s" % ("ok   " if ok else "FAIL ", name, what, detail))
        fails += 0 if ok else 1

    mse = objective(c, x, rope_rows(c, V, S))
    check("objective", abs(out["mse"] - mse) <= 1e-5 * mse, "C %.9g numpy %.9g" % (out["mse"], mse))

    g_fd = np.zeros((nb, n, n))
    for b in range(nb):
        for i in range(n):
            for j in range(i + 1, n):
                Sp, Sm = S.copy(), S.copy()
                Sp[b, i, j] += H_FD
                Sp[b, j, i] -= H_FD
                Sm[b, i, j] -= H_FD
                Sm[b, j, i] += H_FD
                g_fd[b, i, j] = (objective(c, x, rope_rows(c, V, Sp)) - objective(c, x, rope_rows(c, V, Sm))) / (2 * H_FD)
                g_fd[b, j, i] = -g_fd[b, i, j]
    g_c = np.array(out["dS"]).reshape(nb, n, n)
    err, scale = np.abs(g_c - g_fd).max(), np.abs(g_fd).max()
    check("gradient vs central differences", err <= 1e-3 * scale + 1e-9, "max err %.3g, max |g| %.3g" % (err, scale))

    check("Cayley orthogonal (float64, 48 x 48)", out["cayley_orth"] <= 1e-10, "max |QQ^T - I| %.2e" % out["cayley_orth"])
    fit = out["fit"]
    check("fitted rotation orthogonal (float64)", fit["orth"] <= 1e-10, "max |PP^T - I| %.2e" % fit["orth"])
    V0 = np.array(out["V0"]).reshape(nb, n, n)
    before = objective(c, x, rope_rows(c, V0, np.zeros((nb, n, n))))
    after = objective(c, x, np.array(fit["P_rope"]).reshape(c["r"], L))
    check("mse before fit", abs(fit["mse_before"] - before) <= 1e-5 * before, "C %.6g numpy %.6g" % (fit["mse_before"], before))
    check("mse after fit", abs(fit["mse_after"] - after) <= 1e-5 * after, "C %.6g numpy %.6g" % (fit["mse_after"], after))
    check("fit lowers the objective", after <= 0.9 * before,
          "%.6g -> %.6g (best step %d of %d)" % (before, after, fit["best_step"], c["steps"]))
    return fails


EXTRA = []


def main():
    binary, work = sys.argv[1], sys.argv[2]
    EXTRA.extend(sys.argv[3:])  # --gpu
    os.makedirs(work, exist_ok=True)
    fails = run_case(binary, work, "no_window", 0, 1) + run_case(binary, work, "window5", 5, 2)
    fails += run_case(binary, work, "partial12", 0, 3, rd=12, r=6, freqfold=2)
    print("%d failure(s)" % fails)
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
