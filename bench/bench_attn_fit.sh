#!/usr/bin/env bash
# Speed of the attention fit (--fit attention, pipeline/attn_fit.h) at real
# layer shapes: one-layer models of random bf16 weights from
# bench/make_random_model.py with Llama-3.2-1B, Qwen2.5-72B and Mixtral-8x7B
# attention shapes (vocabulary cut to 1024; Mixtral's layer with one
# expert's MLP as a dense one, which the fit does not touch), converted with
# few attention-fit steps, and again with 5 steps more. Per shape it
# prints the fit's seconds per layer, the step's FLOPs, the achieved GFLOP/s
# of the short fit, the GFLOP/s of the 5 more steps (what a step costs, its
# Adam update and the judging it adds included: the rate the defaults' 150
# steps run at; the short fit also pays its fixed cost, setting up and
# storing the parameters, which few steps do not amortise), the GFLOP/s of a
# plain OpenBLAS sgemm at the step's largest GEMM measured in the same run
# (the machine is shared, so only a same-run baseline means anything), the
# ratios, the fixed seconds, and the projected fit time per layer at the
# defaults (128 windows of 256, 16 held back, 150 steps of 16 windows).
# usage: bench/bench_attn_fit.sh [--only l1b,q72,mixtral] [BUILD_DIR] [PYTHON]
#        (all three: about 15 minutes and 8 GiB peak on 2 cores)
#
# Settings, and why:
#  - Llama-3.2-1B shapes: qk_mqa_dim 64, kv_lora_rank 256, 24 windows of 256
#    in micro-batches of 8 (the default): 8 windows held back (an eighth,
#    rounded to whole micro-batches, at least one), 16 trained, 16 per step
#    (the default), 4 steps.
#  - Qwen2.5-72B shapes: qk_mqa_dim 64, kv_lora_rank 512, 8 windows in
#    micro-batches of 4: 4 held back, 4 trained, 4 per step, 2 steps. Every
#    calibration pass at these shapes costs ~80 s on 2 cores (the MLP), which
#    is what bounds the window count.
#  - Mixtral-8x7B shapes: qk_mqa_dim 64, kv_lora_rank 512 (its preset), the
#    1B shapes' windows (24 in micro-batches of 8, 16 per step), 2 steps.
#  - --rorope-fit-steps 1, --kv-norm rms, --skip-published-mla, --freqfold 4,
#    --eval-dataset none: the phases before the attention fit only have to
#    produce a converted layer; none of them changes the fit's cost.
#
# How a layer is counted (attn_fit_layer): each Adam step runs the forward
# and backward of the MLA block (model/mla.h) on the step's W trained
# windows; every 5th step and the last, the forward on the Hd held-back
# windows judges the weights. Around the steps: one forward over the trained
# windows (error before) and one over all windows (error after):
# bench/fit_flops.py counts them (and says how the block's FLOPs are
# counted); GFLOP/step below is one step's forward + backward. Achieved
# GFLOP/s = layer FLOPs / attn_fit seconds per layer (Adam, zeroing,
# gradient slots included as overhead); of the 5 more steps, the difference
# of the two fits' FLOPs over the difference of their seconds. This assumes
# forward and backward run at the same rate.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
only=l1b,q72,mixtral
if [ "${1:-}" = --only ]; then only=$2; shift 2; fi
B=${1:-$here/build}
py=${2:-/usr/bin/python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The same-run baseline: OpenBLAS sgemm (its default threads, as the fit
# uses at these shapes: o_proj is over 1M elements) at M x N x K, best of
# repeats for about 2 s.
cat >"$work/sgemm.c" <<'C'
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + 1e-9 * t.tv_nsec; }
int main(int argc, char **argv) {
    int M = atoi(argv[1]), N = atoi(argv[2]), K = atoi(argv[3]);
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * N * K), *c = malloc(sizeof(float) * M * N);
    for (long i = 0; i < (long)M * K; i++) a[i] = (float)(i % 7) * 0.1f;
    for (long i = 0; i < (long)N * K; i++) b[i] = (float)(i % 5) * 0.1f;
    double best = 1e30, t0 = now();
    for (int r = 0; r < 50 && (r < 3 || now() - t0 < 2.0); r++) {
        double t = now(); /* C[M,N] = A[M,K] B[N,K]^T, the y = x W^T of a linear layer */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, a, K, b, K, 0.0f, c, N);
        t = now() - t;
        if (t < best) best = t;
    }
    printf("%.3f\n", 2.0 * M * N * K / best / 1e9);
    return 0;
}
C
cc -O2 -o "$work/sgemm" "$work/sgemm.c" -I/usr/include/x86_64-linux-gnu -lopenblas

# convert NAME PRESET RANK NSAMPLES BATCH STEPS WPS: model, then two
# conversions, with STEPS and STEPS + 5 attention-fit steps (NAME-mla and
# NAME-more), and their peak RSS.
convert() {
    local name=$1 preset=$2 rank=$3 ns=$4 batch=$5 steps=$6 wps=$7 out more
    "$py" "$here/bench/make_random_model.py" "$work/$name" --layers 1 --preset "$preset" --vocab 1024
    for more in 0 5; do
        out=$name-mla
        [ "$more" = 0 ] || out=$name-more
        local cmd=("$B/transmla" convert --quiet --model-path "$work/$name" --save-path "$work/$out"
                   --cal-tokens "$work/$name/calib.u16" --cal-max-seqlen 256 --cal-nsamples "$ns" --cal-batch-size "$batch"
                   --eval-dataset none --qk-mqa-dim 64 --kv-lora-rank "$rank" --freqfold 4
                   --rorope-fit-steps 1 --rorope-fit-nsamples 4 --skip-published-mla --kv-norm rms
                   --fit attention --attn-fit-steps $((steps + more)) --attn-fit-windows-per-step "$wps")
        echo "+ ${cmd[*]}" | sed "s|$work|WORK|g"
        /usr/bin/time -v -o "$work/$out.time" "${cmd[@]}" >"$work/$out.log" 2>&1 || { cat "$work/$out.log"; exit 1; }
        rm -f "$work/$out"/*.safetensors # 1.8 GB at 72B shapes
    done
    rm -f "$work/$name/model.safetensors"
}
wanted() { case ",$only," in *",$1,"*) return 0 ;; esac; return 1; }
if wanted l1b; then convert l1b llama-3.2-1b 256 24 8 4 16; fi
if wanted q72; then convert q72 qwen2.5-72b 512 8 4 2 4; fi
if wanted mixtral; then convert mixtral mixtral-8x7b-attn 512 24 8 2 16; fi

"$py" - "$work" "$only" "$here/bench" <<'PY'
import json, re, subprocess, sys
work, only = sys.argv[1], sys.argv[2].split(",")
sys.path.insert(0, sys.argv[3])
from fit_flops import attn_fit_defaults_flops, attn_fit_layer_flops, mla_dims
# name: label, layers of the real model, windows per micro-batch used here
SHAPES = {"l1b": ("Llama-3.2-1B", 16, 8), "q72": ("Qwen2.5-72B", 80, 4), "mixtral": ("Mixtral-8x7B", 32, 8)}

def fit(name, out):
    """The fit's report, its model FLOPs in all and per step, and its seconds."""
    rep = json.load(open("%s/%s/transmla_report.json" % (work, out)))
    cfg = json.load(open("%s/%s/config.json" % (work, out)))
    a = rep["attn_fit"]
    held = a["held_back_windows"]
    total, step = attn_fit_layer_flops(mla_dims(cfg), a["seqlen"], a["windows"] - held, held, a["steps"],
                                       a["windows_per_step"])
    return rep, cfg, a, total, step, a["seconds_per_layer"]


rows = []
for name in (n for n in SHAPES if n in only):
    label, n_layers, mb_windows = SHAPES[name]
    rep, cfg, a, total, step, secs = fit(name, name + "-mla")
    _, _, a5, total5, _, secs5 = fit(name, name + "-more")
    rate = total / secs
    # the 5 more steps (and the held-back judgement they add) at the rate of a step, Adam and all:
    # what the defaults' 150 steps run at; the rest of the shorter fit is its fixed cost
    step_rate = (total5 - total) / (secs5 - secs)
    fixed = secs - total / step_rate
    # the step's largest GEMM: q_proj over one micro-batch, [batch T, D] x [H (dn+dr), D]^T
    mb = mb_windows * a["seqlen"]
    N, K = cfg["num_attention_heads"] * (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]), cfg["hidden_size"]
    g = float(subprocess.check_output(["%s/sgemm" % work, str(mb), str(N), str(K)]))
    # the defaults: 128 windows, 16 held back, 112 trained, 150 steps of 16
    dtotal = attn_fit_defaults_flops(mla_dims(cfg), a["seqlen"])
    timing = open("%s/%s-mla.time" % (work, name)).read()
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", timing).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", timing).group(1)
    rows.append(dict(label=label, cfg=cfg, a=a, a5=a5, secs=secs, secs5=secs5, step=step, rate=rate,
                     step_rate=step_rate, fixed=fixed, mb=mb, N=N, K=K, g=g, dtotal=dtotal, rss=rss, wall=wall,
                     sec=rep["seconds"], n_layers=n_layers))

print("attention fit, one-layer random bf16 models, %s" % subprocess.check_output(["nproc"]).decode().strip() + " cores\n")
print("| shapes | fit data (trained + held, per step) | steps | fit s/layer | GFLOP/step | GFLOP/s | ratio "
      "| steps + 5: fit s/layer | GFLOP/s of the 5 more steps | sgemm GFLOP/s at [M x K] x [N x K]^T "
      "| ratio per step | fixed s per fit | projected s/layer at the defaults |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for r in rows:
    a, cfg = r["a"], r["cfg"]
    held = a["held_back_windows"]
    proj = r["fixed"] + r["dtotal"] / r["step_rate"]
    print("| %s (kv_lora_rank %d) | %d + %d windows of %d, %d per step | %d | %.1f | %.1f | %.1f | %.2f | %.1f | %.1f "
          "| %.1f at [%d x %d] x [%d x %d]^T | **%.2f** | %.1f | %.0f (%.1f h for %d layers) |"
          % (r["label"], cfg["kv_lora_rank"], a["windows"] - held, held, a["seqlen"], a["windows_per_step"],
             a["steps"], r["secs"], r["step"] / 1e9, r["rate"] / 1e9, r["rate"] / 1e9 / r["g"], r["secs5"],
             r["step_rate"] / 1e9, r["g"], r["mb"], r["K"], r["N"], r["K"], r["step_rate"] / 1e9 / r["g"],
             r["fixed"], proj, proj * r["n_layers"] / 3600, r["n_layers"]))
print()
for r in rows:
    print("%s: conversion %s wall, peak RSS %.2f GiB; phases (s): %s" % (r["label"], r["wall"], r["rss"] / 2**20,
          ", ".join("%s %.1f" % (k, v) for k, v in r["sec"].items())))
    print("  attn_fit layer: train mse %.4g -> %.4g, held back %.4g -> %.4g, best step %d"
          % tuple(r["a"]["layers"][0][k] for k in ("train_mse_before", "train_mse_after", "held_mse_before", "held_mse_after", "best_step")))
print("\nprojection: the fixed seconds plus the defaults' layer FLOPs (2 F(112) + 32 F(16) + 150 TR(16): the held-back 16 "
      "judged at 31 steps and once after) at the rate of the 5 more steps;"
      "\n1B and Mixtral shapes ran in micro-batches of 8 (the default), 72B shapes in micro-batches of 4")
PY
