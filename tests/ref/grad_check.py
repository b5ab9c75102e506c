#!/usr/bin/python3
"""grad_check: the backward kernels and the MLA training layer against central
finite differences of an independent float64 numpy forward.

    /usr/bin/python3 tests/ref/grad_check.py TEST_GRAD_BINARY WORKDIR [CASE ...]

For each case: make tiny random inputs (float64 numbers that are exactly float32,
so C and numpy see the same values), write WORKDIR/<case>/in.safetensors (and a
model directory for layer cases), run `test_grad KIND WORKDIR/<case>`, read its
out.safetensors and compare every element of every gradient with
    g_fd = (L(p + h) - L(p - h)) / 2h,   L = sum(forward(...) * dout),  h = 1e-6
computed here in float64 (truncation ~h^2, rounding ~1e-16 |L| / h ~ 1e-10).
Tolerance per tensor: max |g_c - g_fd| <= 1e-3 max |g_fd| + 1e-5 -- C computes in
float32 (relative rounding ~1e-6 per operation, a few hundred operations deep), so
1e-3 is loose for rounding yet far below what any wrong term would give.
Forward outputs C returns are checked the same way against this forward.

Nothing here calls C code or mirrors its structure: the numpy forward is written
from the model definitions (HF DeepseekV3 MLA, HF Qwen3 attention with its
per-head q_norm/k_norm before RoPE, SwiGLU, Mixtral-style routing and Qwen3-MoE's
unrenormalised top-k, HF Gemma2DecoderLayer: (1 + w) RMSNorms, sandwich norms,
GeGLU with tanh gelu, query_pre_attn_scalar, soft-capped scores and logits, a
sliding window on even layers; gemma2_mla: the same around DeepSeek's MLA).
"""
import json
import math
import os
import subprocess
import sys
import time
import zlib

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import tm_ref  # noqa: E402  (safetensors I/O, rmsnorm, silu)
import make_fixtures  # noqa: E402  (dsv3_config)

H_FD = 1e-6
REL, ABS = 1e-3, 1e-5


def f32(a):
    """float64 values exactly representable in float32."""
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def fd_grads(loss, params, names):
    """Central differences of loss() w.r.t. every element of params[n], n in names
    (params modified in place and restored)."""
    out = {}
    for n in names:
        p = params[n]
        g = np.zeros(p.shape)
        flat, gf = p.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            v = flat[i]
            flat[i] = v + H_FD
            lp = loss()
            flat[i] = v - H_FD
            lm = loss()
            flat[i] = v
            gf[i] = (lp - lm) / (2 * H_FD)
        out[n] = g
    return out


class Checker:
    def __init__(self):
        self.failed = []

    def close(self, case, what, got, want):
        got = np.asarray(got, dtype=np.float64).reshape(-1)
        want = np.asarray(want, dtype=np.float64).reshape(-1)
        if got.shape != want.shape:
            self.failed.append("%s %s: %d elements, %d expected" % (case, what, got.size, want.size))
            print("  FAIL %-40s shape" % what)
            return
        err = float(np.max(np.abs(got - want))) if got.size else 0.0
        ref = float(np.max(np.abs(want))) if want.size else 0.0
        ok = err <= REL * ref + ABS
        print("  %s %-44s max|err| %.2e  max|ref| %.2e  (%d el)" % ("ok  " if ok else "FAIL", what, err, ref, got.size))
        if not ok:
            self.failed.append("%s %s" % (case, what))

    def require(self, case, what, cond):
        print("  %s %s" % ("ok  " if cond else "FAIL", what))
        if not cond:
            self.failed.append("%s %s" % (case, what))


def run_c(binary, kind, d, tensors, threads=None, dtype="F32"):
    tm_ref.write_safetensors(os.path.join(d, "in.safetensors"),
                             {k: np.asarray(v, dtype=np.float64) for k, v in tensors.items()}, dtype)
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    r = subprocess.run([binary, kind, d], capture_output=True, text=True, env=env)
    if r.stderr.strip():
        print("  " + r.stderr.strip().replace("\n", "\n  "))
    if r.returncode:
        raise SystemExit("test_grad %s %s failed (exit %d)" % (kind, d, r.returncode))
    return tm_ref.read_safetensors(os.path.join(d, "out.safetensors"))


# --------------------------------------------------------------------------
# float64 forward pieces
# --------------------------------------------------------------------------

def rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def silu(x):
    return x / (1.0 + np.exp(-x))


def gelu_tanh(x):
    """PyTorch's gelu(approximate="tanh")."""
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def softcapped(x, cap):
    return cap * np.tanh(x / cap) if cap else x


def rope_rows(x, pos, inv_freq, interleave):
    """Rotate x (..., N, w) whose row r is at position pos[r]: pair i is
    (2i, 2i+1) interleaved or (i, i + w/2) rotate-half, turned by pos * inv_freq[i]."""
    ang = np.asarray(pos, dtype=np.float64)[:, None] * inv_freq[None, :]
    c, s = np.cos(ang), np.sin(ang)
    half = inv_freq.size
    ia = np.arange(half) * 2 if interleave else np.arange(half)
    ib = ia + 1 if interleave else ia + half
    a, b = x[..., ia], x[..., ib]
    y = x.copy()
    y[..., ia] = a * c - b * s
    y[..., ib] = b * c + a * s
    return y


def inv_freq(theta, width):
    return theta ** (-np.arange(0, width, 2, dtype=np.float64) / width)


def doc_mask(doc_start, T):
    """visible[i, j]: key j in [doc_start[i], i]."""
    i = np.arange(T)[:, None]
    j = np.arange(T)[None, :]
    return (j <= i) & (j >= np.asarray(doc_start)[:, None])


def attention(q, k, v, H, G, doc, B, T, scale, cap=0.0, window=0):
    """q (B*T, H*dqk), k (B*T, G*dqk), v (B*T, G*dv) -> (B*T, H*dv); head h reads kv head h // (H/G).
    cap: scores -> cap tanh(s / cap) before the mask (gemma2); window: row i sees keys i - j < window."""
    dqk, dv = q.shape[1] // H, v.shape[1] // G
    out = np.zeros((B * T, H * dv))
    for b in range(B):
        rows = slice(b * T, (b + 1) * T)
        vis = doc_mask(doc[rows], T)
        if window:
            vis = vis & (np.arange(T)[:, None] - np.arange(T)[None, :] < window)
        for h in range(H):
            g = h // (H // G)
            s = softcapped(q[rows, h * dqk:(h + 1) * dqk] @ k[rows, g * dqk:(g + 1) * dqk].T * scale, cap)
            s = np.where(vis, s, -np.inf)
            p = np.exp(s - s.max(axis=1, keepdims=True))
            p /= p.sum(axis=1, keepdims=True)
            out[rows, h * dv:(h + 1) * dv] = p @ v[rows, g * dv:(g + 1) * dv]
    return out


def lin(W, x, name, with_bias=True):
    y = x @ W[name + ".weight"].T
    if with_bias and name + ".bias" in W:
        y = y + W[name + ".bias"]
    return y


def mla_layer(spec, W, x, pos, doc):
    """One DeepSeek-V3 decoder layer (layer 0) over packed rows x (B*T, D)."""
    B, T, H = spec["B"], spec["T"], spec["H"]
    dn, dr, dv, R = spec["dn"], spec["dr"], spec["dv"], spec["R"]
    eps, ln = spec["eps"], spec["latent_norms"]
    a = "model.layers.0.self_attn."
    h = rmsnorm(x, W["model.layers.0.input_layernorm.weight"], eps)
    if spec["Rq"]:
        qa = lin(W, h, a + "q_a_proj")
        if ln:
            qa = rmsnorm(qa, W[a + "q_a_layernorm.weight"], 1e-6)
        q = lin(W, qa, a + "q_b_proj")
    else:
        q = lin(W, h, a + "q_proj")
    ckv = lin(W, h, a + "kv_a_proj_with_mqa")
    c, k_pe = ckv[:, :R], ckv[:, R:]
    if ln:
        c = rmsnorm(c, W[a + "kv_a_layernorm.weight"], 1e-6)
    kv = lin(W, c, a + "kv_b_proj").reshape(B * T, H, dn + dv)
    q = q.reshape(B * T, H, dn + dr)
    inv = inv_freq(spec["theta"], dr)
    q_pe = np.stack([rope_rows(q[:, hh, dn:], pos, inv, spec["interleave"]) for hh in range(H)], axis=1)
    k_pe = rope_rows(k_pe, pos, inv, spec["interleave"])
    qf = np.concatenate([q[:, :, :dn], q_pe], axis=2).reshape(B * T, -1)
    kf = np.concatenate([kv[:, :, :dn], np.repeat(k_pe[:, None, :], H, axis=1)], axis=2).reshape(B * T, -1)
    vf = kv[:, :, dn:].reshape(B * T, -1)
    o = attention(qf, kf, vf, H, H, doc, B, T, 1.0 / math.sqrt(dn + dr))
    return mlp_part(spec, W, x + lin(W, o, a + "o_proj"))


def qwen3_layer(spec, W, x, pos, doc):
    """One Qwen3 decoder layer (layer 0) over packed rows x (B*T, D): q/k/v projections,
    each query and key head RMS-normalised over its d values (q_norm/k_norm weights),
    then RoPE (rotate-half), grouped attention, o_proj; then the MLP or MoE."""
    B, T, H, G, d, eps = spec["B"], spec["T"], spec["H"], spec["G"], spec["d"], spec["eps"]
    a = "model.layers.0.self_attn."
    h = rmsnorm(x, W["model.layers.0.input_layernorm.weight"], eps)
    inv = inv_freq(spec["theta"], d)

    def heads(name, n):
        y = lin(W, h, a + name + "_proj").reshape(B * T, n, d)
        if name != "v":
            y = rmsnorm(y, W[a + name + "_norm.weight"], eps)
            y = np.stack([rope_rows(y[:, j, :], pos, inv, False) for j in range(n)], axis=1)
        return y.reshape(B * T, n * d)
    o = attention(heads("q", H), heads("k", G), heads("v", G), H, G, doc, B, T, 1.0 / math.sqrt(d))
    return mlp_part(spec, W, x + lin(W, o, a + "o_proj"))


def layer_forward(spec, W, x, pos, doc):
    return (qwen3_layer if spec.get("arch") else mla_layer)(spec, W, x, pos, doc)


def mlp_part(spec, W, x):
    """x + MLP(post_attention_layernorm(x)) of layer 0: SwiGLU or the MoE."""
    h = rmsnorm(x, W["model.layers.0.post_attention_layernorm.weight"], spec["eps"])
    m = "model.layers.0.mlp."
    if not spec["moe"]:
        return x + lin(W, silu(lin(W, h, m + "gate_proj")) * lin(W, h, m + "up_proj"), m + "down_proj")
    return x + moe(spec, W, h)


def moe(spec, W, h):
    """Mixtral-style: softmax over all experts, top-k, renormalised over the chosen
    (Qwen3-MoE with norm_topk_prob false: the k softmax probabilities as they are)."""
    m = "model.layers.0.mlp."
    z = h @ W[m + "gate.weight"].T
    out = np.zeros_like(h)
    for t in range(h.shape[0]):
        p = np.exp(z[t] - z[t].max())
        p /= p.sum()
        top = np.argsort(-p, kind="stable")[:spec["k"]]
        for e, w in zip(top, p[top] / (p[top].sum() if spec.get("norm_topk", True) else 1.0)):
            q = m + "experts.%d." % e
            a = silu(W[q + "gate_proj.weight"] @ h[t]) * (W[q + "up_proj.weight"] @ h[t])
            out[t] += w * (W[q + "down_proj.weight"] @ a)
    return out


# --------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------

def rnd(rng, *shape, scale=1.0):
    return f32(rng.standard_normal(shape) * scale)


def case_rmsnorm(binary, d, chk, rng):
    N, C, eps = 5, 16, 1e-5
    P = {"x": rnd(rng, N, C), "w": f32(1 + 0.1 * rng.standard_normal(C))}
    dout, dx0, dw0 = rnd(rng, N, C), rnd(rng, N, C), rnd(rng, C)
    o = run_c(binary, "rmsnorm", d, dict(P, N=[N], C=[C], eps=[eps], dout=dout, dx0=dx0, dw0=dw0))
    g = fd_grads(lambda: np.sum(rmsnorm(P["x"], P["w"], eps) * dout), P, ["x", "w"])
    chk.close("rmsnorm", "dx (accumulated onto dx0)", o["dx"] - f32(dx0), g["x"])
    chk.close("rmsnorm", "dw (accumulated onto dw0)", o["dw"] - f32(dw0), g["w"])


def case_linear(binary, d, chk, rng, bf16):
    N, n_in, n_out = 5, 12, 7
    W = rnd(rng, n_out, n_in)
    if bf16:  # stored BF16: the values C widens are these
        W = tm_ref.quantize(W, "BF16")
    P = {"x": rnd(rng, N, n_in), "W": W, "b": rnd(rng, n_out)}
    dout, dx0, dW0, db0 = rnd(rng, N, n_out), rnd(rng, N, n_in), rnd(rng, n_out, n_in), rnd(rng, n_out)
    o = run_c(binary, "linear", d, dict(P, N=[N], dout=dout, dx0=dx0, dW0=dW0, db0=db0),
              dtype=(lambda n: "BF16" if n == "W" else "F32") if bf16 else "F32")
    fwd = lambda: P["x"] @ P["W"].T + P["b"]  # noqa: E731
    g = fd_grads(lambda: np.sum(fwd() * dout), P, ["x", "W", "b"])
    tag = " (BF16 W)" if bf16 else ""
    chk.require("linear", "weight read as %s" % ("BF16" if bf16 else "F32"), o["W_elem_bytes"][0, 0] == (2 if bf16 else 4))
    chk.close("linear", "y" + tag, o["y"], fwd())
    chk.close("linear", "dx" + tag, o["dx"] - dx0, g["x"])
    chk.close("linear", "dW" + tag, o["dW"] - dW0, g["W"])
    chk.close("linear", "db" + tag, o["db"] - db0, g["b"])


def case_gated(binary, d, chk, rng, name, act):
    """act(g) * u (SwiGLU: silu, GeGLU: gelu_tanh): output and both gradients."""
    n = 40
    P = {"g": rnd(rng, n, scale=2.0), "u": rnd(rng, n)}
    dout = rnd(rng, n)
    o = run_c(binary, name, d, dict(P, dout=dout))
    g = fd_grads(lambda: np.sum(act(P["g"]) * P["u"] * dout), P, ["g", "u"])
    chk.close(name, "y", o["y"], act(P["g"]) * P["u"])
    chk.close(name, "dg", o["dg"], g["g"])
    chk.close(name, "du", o["du"], g["u"])


def case_rope(binary, d, chk, rng, interleave):
    B, T, nh, stride, off, rd = 2, 6, 3, 10, 2, 8   # spans of 8 at offset 2 of each 10-wide head
    N, Wd = B * T, nh * stride
    pos = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3])
    theta = 10000.0
    P = {"x": rnd(rng, N, Wd)}
    dout = rnd(rng, N, Wd)
    inv = inv_freq(theta, rd)

    def fwd():
        y = P["x"].copy()
        for h in range(nh):
            sl = slice(h * stride + off, h * stride + off + rd)
            y[:, sl] = rope_rows(P["x"][:, sl], pos, inv, interleave)
        return y

    o = run_c(binary, "rope", d, dict(P, N=[N], W=[Wd], T=[T], n_heads=[nh], head_stride=[stride], offset=[off],
                                      interleave=[interleave], theta=[theta], rope_dim=[rd], max_pos=[T], pos=pos,
                                      dout=dout))
    g = fd_grads(lambda: np.sum(fwd() * dout), P, ["x"])
    tag = " interleave" if interleave else " rotate-half"
    chk.close("rope", "y" + tag, o["y"], fwd())
    chk.close("rope", "dx" + tag, o["dx"], g["x"])


DOC_START = np.array([0, 0, 0, 3, 3, 3, 0, 0, 2, 2, 2, 2])   # B=2, T=6: two documents in each row
POS = np.array([0, 1, 2, 0, 1, 2, 0, 1, 0, 1, 2, 3])


def window_doc_start(doc, T, window):
    """The first key each row sees with a window as well as documents: what the C layer
    hands its attention kernel (the kernel itself knows only document starts)."""
    t = np.arange(doc.size) % T
    return np.maximum(doc, t - window + 1)


def case_attention(binary, d, chk, rng, H, G, cap=0.0, window=0):
    B, T, dqk, dv = 2, 6, 6, 5
    scale = 1.0 / math.sqrt(10.0 if cap else dqk)
    qs = 2.5 if cap else 1.0                          # capped: scores up to ~|4|, so the cap of 1.5 bites
    P = {"q": rnd(rng, B * T, H * dqk, scale=qs), "k": rnd(rng, B * T, G * dqk), "v": rnd(rng, B * T, G * dv)}
    dout = rnd(rng, B * T, H * dv)
    doc_c = window_doc_start(DOC_START, T, window) if window else DOC_START
    extra = {"softcap": [cap]} if cap else {}
    o = run_c(binary, "attention", d, dict(P, B=[B], T=[T], H=[H], G=[G], dqk=[dqk], dv=[dv], scale=[scale],
                                           doc_start=doc_c, dout=dout, **extra))
    fwd = lambda: attention(P["q"], P["k"], P["v"], H, G, DOC_START, B, T, scale, cap, window)  # noqa: E731
    g = fd_grads(lambda: np.sum(fwd() * dout), P, ["q", "k", "v"])
    tag = " H=%d G=%d" % (H, G) + (" cap %g window %d" % (cap, window) if cap else "")
    if cap:
        raw = attention(P["q"], P["k"], P["v"], H, G, DOC_START, B, T, scale, 0.0, window)
        chk.require("attention", "the cap moves the output (max %.2f)" % np.max(np.abs(raw - fwd())),
                    np.max(np.abs(raw - fwd())) > 0.05)
    if window:
        full = attention(P["q"], P["k"], P["v"], H, G, DOC_START, B, T, scale, cap, 0)
        chk.require("attention", "the window moves the output (max %.2f)" % np.max(np.abs(full - fwd())),
                    np.max(np.abs(full - fwd())) > 0.05)
    chk.close("attention", "out" + tag, o["out"], fwd())
    for n in ("q", "k", "v"):
        chk.close("attention", "d" + n + tag, o["d" + n], g[n])


def log_softmax(z):
    lp = z - z.max(axis=1, keepdims=True)
    return lp - np.log(np.exp(lp).sum(axis=1, keepdims=True))


def case_head(binary, d, chk, rng, cap=0.0, alpha=None, cap_t=0.0):
    """The LM head's loss: the targets' NLL, or with alpha a distillation,
    (1 - alpha) NLL + alpha KL(p_t || p_s) from a teacher of another width
    (Dt = 6) and its own cap."""
    N, D, V, chunk, weight = 7, 8, 23, 5, 0.37       # 5 chunks, the last one 3 wide
    P = {"h": rnd(rng, N, D), "W": rnd(rng, V, D)}   # logits up to ~|8|: a cap of 3 bites
    targets = np.array([3, -1, 22, 0, -1, 10, 5])
    dh0, dW0 = rnd(rng, N, D), rnd(rng, V, D)
    ins = {"hidden": P["h"], "W": P["W"], "targets": targets, "N": [N], "chunk": [chunk], "weight": [weight],
           "dh0": dh0, "dW0": dW0, "softcap": [cap]}
    keep = targets >= 0
    if alpha is not None:
        ht, Wt = rnd(rng, N, 6), rnd(rng, V, 6)
        ins.update({"hidden_t": ht, "Wt": Wt, "softcap_t": [cap_t], "alpha": [alpha]})
        lpt = log_softmax(softcapped(ht @ Wt.T, cap_t))
    o = run_c(binary, "head", d, ins)

    def nll():
        lp = log_softmax(softcapped(P["h"] @ P["W"].T, cap))
        return -np.sum(lp[keep, targets[keep]])

    def kl():
        lp = log_softmax(softcapped(P["h"] @ P["W"].T, cap))
        return np.sum((np.exp(lpt) * (lpt - lp))[keep])

    loss = (lambda: weight * nll()) if alpha is None else (lambda: weight * ((1 - alpha) * nll() + alpha * kl()))
    g = fd_grads(loss, P, ["h", "W"])
    if cap:
        print("  final soft-cap %g; max |logit| %.2f" % (cap, np.max(np.abs(P["h"] @ P["W"].T))))
    chk.close("head", "nll (sum, unweighted)", o["nll_count"][0, 0], nll())
    chk.require("head", "count of rows with a target == %d" % np.sum(keep), o["nll_count"][0, 1] == np.sum(keep))
    if alpha is not None:
        chk.close("head", "KL(teacher || student) (sum)", o["nll_count"][0, 2], kl())
    chk.close("head", "dhidden", o["dhidden"] - dh0, g["h"])
    chk.close("head", "dlm_head", o["dW"] - dW0, g["W"])


def case_embedding(binary, d, chk, rng):
    V, D = 9, 70                                      # D > 64: two column blocks
    tokens = np.array([3, 1, 3, 8, 0, 3, 1])
    P = {"E": rnd(rng, V, D)}
    dout, dE0 = rnd(rng, tokens.size, D), rnd(rng, V, D)
    o = run_c(binary, "embedding", d, {"tokens": tokens, "V": [V], "D": [D], "dout": dout, "dE0": dE0})
    g = fd_grads(lambda: np.sum(P["E"][tokens] * dout), P, ["E"])
    chk.close("embedding", "dembed (accumulated onto dE0)", o["dE"] - dE0, g["E"])


# --------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------

LAYER_SPECS = {
    # plain q_proj with its bias (the converter's exact model), no latent norms, interleaved rope
    "layer_q_interleave": dict(Rq=0, interleave=1, latent_norms=0, q_bias=1, attention_bias=False, moe=False),
    # plain q_proj, rotate-half rope, latent norm on kv
    "layer_q_halves": dict(Rq=0, interleave=0, latent_norms=1, q_bias=0, attention_bias=False, moe=False),
    # q_a/q_a_layernorm/q_b, latent norms, attention_bias (q_a, kv_a, o biases)
    "layer_qlora": dict(Rq=8, interleave=1, latent_norms=1, q_bias=0, attention_bias=True, moe=False),
    # MoE MLP: E=4, top-2, router gradient included
    "layer_moe": dict(Rq=8, interleave=1, latent_norms=1, q_bias=0, attention_bias=False, moe=True),
    # qwen3 (GQA 2:1): q_norm/k_norm before RoPE, attention_bias (q/k/v/o biases), dense MLP
    "layer_qwen3": dict(arch="qwen3", G=1, d=8, attention_bias=True, moe=False, latent_norms=0, q_bias=0),
    # qwen3_moe: the same attention without biases, MoE with top-2 NOT renormalised (norm_topk_prob false)
    "layer_qwen3_moe": dict(arch="qwen3_moe", G=1, d=8, attention_bias=False, moe=True, norm_topk=False,
                            latent_norms=0, q_bias=0),
}
SIZES = dict(D=16, H=2, dn=8, dr=4, dv=8, R=8, I=24, E=4, k=2, moe_I=8, B=2, T=6, eps=1e-5, theta=10000.0)


def layer_weights(spec, rng, attention):
    """Layer-0 model weights in the model's order (exactly float32): embedding, input
    norm, attention(mat, vec, prefix) for the attention's own tensors, post norm,
    SwiGLU MLP or MoE, final norm, an 8-row head."""
    s, D = spec, spec["D"]
    W = {}

    def mat(name, o, i):
        W[name + ".weight"] = rnd(rng, o, i, scale=1.0 / math.sqrt(i))

    def vec(name, n, base=0.0, scale=0.2):
        W[name] = f32(base + scale * rng.standard_normal(n))

    m = "model.layers.0.mlp."
    W["model.embed_tokens.weight"] = rnd(rng, 8, D)
    vec("model.layers.0.input_layernorm.weight", D, 1.0)
    attention(mat, vec, "model.layers.0.self_attn.")
    vec("model.layers.0.post_attention_layernorm.weight", D, 1.0)
    if s["moe"]:
        W[m + "gate.weight"] = rnd(rng, s["E"], D, scale=3.0 / math.sqrt(D))   # spread logits: clear top-k margins
        for e in range(s["E"]):
            q = m + "experts.%d." % e
            mat(q + "gate_proj", s["moe_I"], D)
            mat(q + "up_proj", s["moe_I"], D)
            mat(q + "down_proj", D, s["moe_I"])
    else:
        mat(m + "gate_proj", s["I"], D)
        mat(m + "up_proj", s["I"], D)
        mat(m + "down_proj", D, s["I"])
    vec("model.norm.weight", D, 1.0)
    mat("lm_head", 8, D)
    return W


def make_layer(spec, rng):
    """-> (config.json dict, {HF name: float64 weights exactly float32})."""
    if spec.get("arch"):
        return make_qwen3_layer(spec, rng)
    s = spec
    D, H, dn, dr, dv, R, Rq, I = s["D"], s["H"], s["dn"], s["dr"], s["dv"], s["R"], s["Rq"], s["I"]
    moe_cfg = dict(first_dense=0, experts=s["E"], top_k=s["k"], moe_I=s["moe_I"]) if s["moe"] else None
    cfg = make_fixtures.dsv3_config(D=D, L=1, H=H, q_lora=Rq or None, R=R, dn=dn, dr=dr, dv=dv, I=I, V=8,
                                    dtype="F32", moe=moe_cfg, rope_interleave=bool(s["interleave"]),
                                    attention_bias=s["attention_bias"], rms_norm_eps=s["eps"], rope_theta=s["theta"])

    def mla(mat, vec, a):
        if Rq:
            mat(a + "q_a_proj", Rq, D)
            if s["attention_bias"]:
                vec(a + "q_a_proj.bias", Rq)
            vec(a + "q_a_layernorm.weight", Rq, 1.0)
            mat(a + "q_b_proj", H * (dn + dr), Rq)
        else:
            mat(a + "q_proj", H * (dn + dr), D)
            if s["q_bias"]:
                vec(a + "q_proj.bias", H * (dn + dr))
        mat(a + "kv_a_proj_with_mqa", R + dr, D)
        if s["attention_bias"]:
            vec(a + "kv_a_proj_with_mqa.bias", R + dr)
        vec(a + "kv_a_layernorm.weight", R, 1.0)
        mat(a + "kv_b_proj", H * (dn + dv), R)
        mat(a + "o_proj", D, H * dv)
        if s["attention_bias"]:
            vec(a + "o_proj.bias", D)
    return cfg, layer_weights(spec, rng, mla)


def make_qwen3_layer(spec, rng):
    """A one-layer qwen3 / qwen3_moe model: (config.json dict, weights)."""
    s = spec
    D, H, G, d, I, E = s["D"], s["H"], s["G"], s["d"], s["I"], s["E"]
    extra = dict(num_experts=E, num_experts_per_tok=s["k"], moe_intermediate_size=s["moe_I"],
                 norm_topk_prob=s.get("norm_topk", True)) if s["moe"] else {}
    cfg = make_fixtures.base_config(s["arch"], D=D, L=1, H=H, G=G, d=d, I=I, V=8, dtype="F32",
                                    attention_bias=s["attention_bias"], rms_norm_eps=s["eps"],
                                    rope_theta=s["theta"], use_sliding_window=False, **extra)

    def gqa(mat, vec, a):
        for name, n in (("q", H * d), ("k", G * d), ("v", G * d)):
            mat(a + name + "_proj", n, D)
            if s["attention_bias"]:
                vec(a + name + "_proj.bias", n)
        mat(a + "o_proj", D, H * d)
        if s["attention_bias"]:
            vec(a + "o_proj.bias", D)
        vec(a + "q_norm.weight", d, 1.0, 0.4)
        vec(a + "k_norm.weight", d, 1.0, 0.4)
    return cfg, layer_weights(spec, rng, gqa)


# Gemma-2 layers: two layers (0 windowed, 1 full), each checked on its own.
GEMMA2_SPECS = {
    # GQA 2:1, head_dim 8, query_pre_attn_scalar 12 (not head_dim)
    "layer_gemma2": dict(mla=False, G=1, d=8, qpas=12.0),
    # MLA (q_proj, kv_a/kv_a_layernorm/kv_b, interleaved rope), query_pre_attn_scalar 20 (not dn + dr)
    "layer_gemma2_mla": dict(mla=True, qpas=20.0),
}
GEMMA2_SIZES = dict(D=16, H=2, dn=8, dr=4, dv=8, R=8, I=24, B=2, T=6, eps=1e-6, theta=10000.0,
                    cap=1.0, final_cap=5.0, window=3)


def gemma2_config(s):
    """config.json of a two-layer gemma2 / gemma2_mla model (written out here, every field the engine reads)."""
    c = {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2_mla" if s["mla"] else "gemma2",
         "hidden_size": s["D"], "num_hidden_layers": 2, "num_attention_heads": s["H"], "intermediate_size": s["I"],
         "vocab_size": 8, "max_position_embeddings": 64, "rms_norm_eps": s["eps"], "rope_theta": s["theta"],
         "hidden_act": "gelu_pytorch_tanh", "hidden_activation": "gelu_pytorch_tanh", "tie_word_embeddings": True,
         "query_pre_attn_scalar": s["qpas"], "attn_logit_softcapping": s["cap"],
         "final_logit_softcapping": s["final_cap"], "sliding_window": s["window"], "attention_bias": False,
         "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
    if s["mla"]:
        c.update(num_key_value_heads=s["H"], kv_lora_rank=s["R"], q_lora_rank=None, qk_nope_head_dim=s["dn"],
                 qk_rope_head_dim=s["dr"], v_head_dim=s["dv"], rope_interleave=True)
    else:
        c.update(num_key_value_heads=s["G"], head_dim=s["d"])
    return c


def make_gemma2_layers(s, rng):
    """-> (config, weights): norms stored as w around 0.3 N(0, 1) (they multiply as 1 + w)."""
    D, H, I = s["D"], s["H"], s["I"]
    W = {"model.embed_tokens.weight": rnd(rng, 8, D), "model.norm.weight": rnd(rng, D, scale=0.3)}

    def mat(name, o, i):
        W[name + ".weight"] = rnd(rng, o, i, scale=1.0 / math.sqrt(i))

    for l in range(2):
        p = "model.layers.%d." % l
        for n in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                  "post_feedforward_layernorm"):
            W[p + n + ".weight"] = rnd(rng, D, scale=0.3)
        a = p + "self_attn."
        if s["mla"]:
            dn, dr, dv, R = s["dn"], s["dr"], s["dv"], s["R"]
            mat(a + "q_proj", H * (dn + dr), D)
            mat(a + "kv_a_proj_with_mqa", R + dr, D)
            W[a + "kv_a_layernorm.weight"] = f32(1.0 + 0.2 * rng.standard_normal(R))   # DeepSeek's plain w
            mat(a + "kv_b_proj", H * (dn + dv), R)
            mat(a + "o_proj", D, H * dv)
        else:
            G, d = s["G"], s["d"]
            mat(a + "q_proj", H * d, D)
            mat(a + "k_proj", G * d, D)
            mat(a + "v_proj", G * d, D)
            mat(a + "o_proj", D, H * d)
        mat(p + "mlp.gate_proj", I, D)
        mat(p + "mlp.up_proj", I, D)
        mat(p + "mlp.down_proj", D, I)
    return gemma2_config(s), W


def gemma2_gqa_attention(s, W, a, h, pos, doc, window):
    B, T, H, G, d = s["B"], s["T"], s["H"], s["G"], s["d"]
    inv = inv_freq(s["theta"], d)

    def heads(name, n, rotate):
        y = lin(W, h, a + name + "_proj").reshape(B * T, n, d)
        if rotate:
            y = np.stack([rope_rows(y[:, j, :], pos, inv, False) for j in range(n)], axis=1)
        return y.reshape(B * T, n * d)
    o = attention(heads("q", H, True), heads("k", G, True), heads("v", G, False), H, G, doc, B, T,
                  s["qpas"] ** -0.5, s["cap"], window)
    return lin(W, o, a + "o_proj")


def gemma2_mla_attention(s, W, a, h, pos, doc, window):
    B, T, H, dn, dr, dv, R = s["B"], s["T"], s["H"], s["dn"], s["dr"], s["dv"], s["R"]
    q = lin(W, h, a + "q_proj").reshape(B * T, H, dn + dr)
    ckv = lin(W, h, a + "kv_a_proj_with_mqa")
    c = rmsnorm(ckv[:, :R], W[a + "kv_a_layernorm.weight"], 1e-6)
    kv = lin(W, c, a + "kv_b_proj").reshape(B * T, H, dn + dv)
    inv = inv_freq(s["theta"], dr)
    q_pe = np.stack([rope_rows(q[:, j, dn:], pos, inv, True) for j in range(H)], axis=1)
    k_pe = rope_rows(ckv[:, R:], pos, inv, True)
    qf = np.concatenate([q[:, :, :dn], q_pe], axis=2).reshape(B * T, -1)
    kf = np.concatenate([kv[:, :, :dn], np.repeat(k_pe[:, None, :], H, axis=1)], axis=2).reshape(B * T, -1)
    o = attention(qf, kf, kv[:, :, dn:].reshape(B * T, -1), H, H, doc, B, T, s["qpas"] ** -0.5, s["cap"], window)
    return lin(W, o, a + "o_proj")


def gemma2_layer(s, W, x, pos, doc, l):
    """HF Gemma2DecoderLayer l: x + post_attention_norm(attn(input_norm(x))), then
    x + post_feedforward_norm(down(gelu_tanh(gate(h)) * up(h))), h = pre_feedforward_norm(x);
    every norm multiplies by 1 + w; even layers see only the last `window` keys."""
    p = "model.layers.%d." % l

    def norm(h, name):
        return rmsnorm(h, 1.0 + W[p + name + ".weight"], s["eps"])
    attn = gemma2_mla_attention if s["mla"] else gemma2_gqa_attention
    window = s["window"] if l % 2 == 0 else 0
    x = x + norm(attn(s, W, p + "self_attn.", norm(x, "input_layernorm"), pos, doc, window), "post_attention_layernorm")
    h = norm(x, "pre_feedforward_layernorm")
    m = p + "mlp."
    y = lin(W, gelu_tanh(lin(W, h, m + "gate_proj")) * lin(W, h, m + "up_proj"), m + "down_proj")
    return x + norm(y, "post_feedforward_layernorm")


def case_gemma2_layer(binary, d, chk, rng, name, l):
    s = dict(GEMMA2_SIZES, **GEMMA2_SPECS[name])
    B, T, D = s["B"], s["T"], s["D"]
    cfg, W = make_gemma2_layers(s, rng)
    x, dout = rnd(rng, B * T, D, scale=2.0), rnd(rng, B * T, D)
    md = os.path.join(d, "model")
    os.makedirs(md, exist_ok=True)
    with open(os.path.join(md, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tm_ref.write_safetensors(os.path.join(md, "model.safetensors"), W, "F32")
    inputs = {"x": x, "dout": dout, "pos": POS, "doc_start": DOC_START, "B": [B], "T": [T], "layer": [l],
              "latent_norms": [1], "q_bias": [0]}
    o = run_c(binary, "layer", d, inputs)
    prefix = "model.layers.%d." % l
    P = {n: v for n, v in W.items() if n.startswith(prefix)}
    P["x"] = x
    fwd = lambda: gemma2_layer(s, P, P["x"], POS, DOC_START, l)  # noqa: E731
    tag = "layer %d (%s)" % (l, "window %d" % s["window"] if l % 2 == 0 else "full")
    chk.close(name, tag + " output", o["y"], fwd())
    # each gemma2 feature moves this layer's output (else the check above could not see it wrong)
    changes = [("the score cap", dict(cap=0.0)),
               ("query_pre_attn_scalar", dict(qpas=(s["dn"] + s["dr"]) if s["mla"] else s["d"]))]
    if l % 2 == 0:
        changes.append(("the window", dict(window=0)))
    for what, change in changes:
        moved = np.max(np.abs(gemma2_layer(dict(s, **change), P, x, POS, DOC_START, l) - fwd()))
        chk.require(name, "%s moves the output (max %.3f)" % (what, moved), moved > 1e-3)
    grads = sorted(n[len("grad."):] for n in o if n.startswith("grad."))
    chk.require(name, "a gradient for each of the layer's %d parameters" % (len(P) - 1), set(grads) == set(P) - {"x"})
    g = fd_grads(lambda: np.sum(fwd() * dout), P, sorted(P))
    chk.close(name, tag + " dx_in", o["dx"], g["x"])
    for n in grads:
        chk.close(name, n.replace("model.layers.", ""), o["grad." + n], g[n])


def topk_margin(spec, W, x, pos, doc):
    """Smallest gap, over tokens, between the k-th and (k+1)-th router logit of the MoE input."""
    a = "model.layers.0."
    h = rmsnorm(_after_attention(spec, W, x, pos, doc), W[a + "post_attention_layernorm.weight"], spec["eps"])
    z = np.sort(h @ W[a + "mlp.gate.weight"].T, axis=1)[:, ::-1]
    return float(np.min(z[:, spec["k"] - 1] - z[:, spec["k"]]))


def _after_attention(spec, W, x, pos, doc):
    """x + attention block: the layer with an MLP that adds nothing."""
    s = dict(spec, moe=True)
    Wz = dict(W)
    for e in range(spec["E"]):
        Wz["model.layers.0.mlp.experts.%d.down_proj.weight" % e] = np.zeros_like(
            W["model.layers.0.mlp.experts.%d.down_proj.weight" % e])
    return layer_forward(s, Wz, x, pos, doc)


def case_layer(binary, d, chk, rng, name, frozen_too=False):
    spec = dict(SIZES, **LAYER_SPECS[name])
    B, T, D = spec["B"], spec["T"], spec["D"]
    for attempt in range(50):
        cfg, W = make_layer(spec, rng)
        x = rnd(rng, B * T, D)
        if not spec["moe"] or topk_margin(spec, W, x, POS, DOC_START) > 1e-2:
            break
    else:
        raise SystemExit("%s: no random MoE layer with clear top-k margins" % name)
    if spec["moe"]:
        print("  top-k margin of the router logits: %.3g (FD moves them by ~1e-5 at most)"
              % topk_margin(spec, W, x, POS, DOC_START))
    dout = rnd(rng, B * T, D)
    md = os.path.join(d, "model")
    os.makedirs(md, exist_ok=True)
    with open(os.path.join(md, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    tm_ref.write_safetensors(os.path.join(md, "model.safetensors"), W, "F32")
    inputs = {"x": x, "dout": dout, "pos": POS, "doc_start": DOC_START, "B": [B], "T": [T],
              "latent_norms": [spec["latent_norms"]], "q_bias": [spec["q_bias"]]}
    o = run_c(binary, "layer", d, inputs)
    P = {n: v for n, v in W.items() if n.startswith("model.layers.0.")}
    P["x"] = x
    fwd = lambda: layer_forward(spec, P, P["x"], POS, DOC_START)  # noqa: E731
    chk.close(name, "layer output", o["y"], fwd())
    grads = sorted(n[len("grad."):] for n in o if n.startswith("grad."))
    chk.require(name, "a gradient for each of the layer's %d parameters" % (len(P) - 1), set(grads) == set(P) - {"x"})
    t0 = time.time()
    g = fd_grads(lambda: np.sum(fwd() * dout), P, sorted(P))
    print("  (finite differences of %d elements: %.1f s)" % (sum(v.size for v in P.values()), time.time() - t0))
    chk.close(name, "dx_in", o["dx"], g["x"])
    for n in grads:
        chk.close(name, n.replace("model.layers.0.", ""), o["grad." + n], g[n])
    # the same results whatever the thread count
    for th in (1, 3):
        ot = run_c(binary, "layer", d, inputs, threads=th)
        chk.require(name, "OMP_NUM_THREADS=%d: every output bit-identical" % th,
                    set(ot) == set(o) and all(np.array_equal(ot[n], o[n]) for n in o))
    if not frozen_too:
        return
    # every other parameter frozen (NULL): their gradients absent, the rest and dx_in unchanged
    fo = run_c(binary, "layer", d, dict(inputs, frozen=[1]))
    fgrads = set(n[len("grad."):] for n in fo if n.startswith("grad."))
    chk.require(name, "frozen: %d of %d gradients skipped" % (len(grads) - len(fgrads), len(grads)),
                0 < len(fgrads) < len(grads) and fgrads < set(grads))
    chk.require(name, "frozen: dx_in bit-identical", np.array_equal(fo["dx"], o["dx"]))
    chk.require(name, "frozen: trained gradients bit-identical",
                all(np.array_equal(fo["grad." + n], o["grad." + n]) for n in fgrads))


def main():
    if len(sys.argv) < 3:
        raise SystemExit("usage: grad_check.py TEST_GRAD_BINARY WORKDIR [CASE ...]")
    binary, work = sys.argv[1], sys.argv[2]
    cases = {
        "rmsnorm": lambda d, c, r: case_rmsnorm(binary, d, c, r),
        "linear": lambda d, c, r: case_linear(binary, d, c, r, False),
        "linear_bf16": lambda d, c, r: case_linear(binary, d, c, r, True),
        "swiglu": lambda d, c, r: case_gated(binary, d, c, r, "swiglu", silu),
        "geglu": lambda d, c, r: case_gated(binary, d, c, r, "geglu", gelu_tanh),
        "rope_interleave": lambda d, c, r: case_rope(binary, d, c, r, 1),
        "rope_halves": lambda d, c, r: case_rope(binary, d, c, r, 0),
        "attention_grouped": lambda d, c, r: case_attention(binary, d, c, r, 4, 2),
        "attention_mha": lambda d, c, r: case_attention(binary, d, c, r, 3, 3),
        "attention_softcap_window": lambda d, c, r: case_attention(binary, d, c, r, 4, 2, cap=1.5, window=2),
        "head": lambda d, c, r: case_head(binary, d, c, r),
        "head_softcap": lambda d, c, r: case_head(binary, d, c, r, cap=3.0),
        "head_distill": lambda d, c, r: case_head(binary, d, c, r, alpha=1.0),
        "head_distill_mixed_softcap": lambda d, c, r: case_head(binary, d, c, r, cap=3.0, alpha=0.3, cap_t=2.0),
        "embedding": lambda d, c, r: case_embedding(binary, d, c, r),
        "layer_q_interleave": lambda d, c, r: case_layer(binary, d, c, r, "layer_q_interleave"),
        "layer_q_halves": lambda d, c, r: case_layer(binary, d, c, r, "layer_q_halves"),
        "layer_qlora": lambda d, c, r: case_layer(binary, d, c, r, "layer_qlora", frozen_too=True),
        "layer_moe": lambda d, c, r: case_layer(binary, d, c, r, "layer_moe", frozen_too=True),
        "layer_qwen3": lambda d, c, r: case_layer(binary, d, c, r, "layer_qwen3", frozen_too=True),
        "layer_qwen3_moe": lambda d, c, r: case_layer(binary, d, c, r, "layer_qwen3_moe"),
        "layer_gemma2_0": lambda d, c, r: case_gemma2_layer(binary, d, c, r, "layer_gemma2", 0),
        "layer_gemma2_1": lambda d, c, r: case_gemma2_layer(binary, d, c, r, "layer_gemma2", 1),
        "layer_gemma2_mla_0": lambda d, c, r: case_gemma2_layer(binary, d, c, r, "layer_gemma2_mla", 0),
        "layer_gemma2_mla_1": lambda d, c, r: case_gemma2_layer(binary, d, c, r, "layer_gemma2_mla", 1),
    }
    chosen = sys.argv[3:] or list(cases)
    chk = Checker()
    for name in chosen:
        d = os.path.join(work, name)
        os.makedirs(d, exist_ok=True)
        print("== %s" % name)
        t0 = time.time()
        cases[name](d, chk, np.random.default_rng(zlib.crc32(name.encode())))
        print("   %.1f s" % (time.time() - t0))
    if chk.failed:
        print("FAILED: " + "; ".join(chk.failed))
        return 1
    print("all gradient checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
