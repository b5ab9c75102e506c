#!/usr/bin/env bash
# Speed of the attention fit (--fit attention, pipeline/attn_fit.h) at real
# layer shapes: one-layer models of random bf16 weights from
# bench/make_random_model.py with Llama-3.2-1B, Qwen2.5-72B and Mixtral-8x7B
# attention shapes (vocabulary cut to 1024; Mixtral's layer with one
# expert's MLP as a dense one, which the fit does not touch), converted with
# few attention-fit steps. Per shape
# it prints the seconds of one Adam step per layer, the step's FLOPs, the
# achieved GFLOP/s, the GFLOP/s of a plain OpenBLAS sgemm at the step's
# largest GEMM measured in the same run (the machine is shared, so only a
# same-run baseline means anything), their ratio, and the projected fit time
# per layer at the defaults (128 windows of 256, 16 held back, 150 steps of
# 16 windows).
# usage: bench/bench_attn_fit.sh [--only l1b,q72,mixtral] [BUILD_DIR] [PYTHON]
#        (all three: about 13 minutes and 8 GiB peak on 2 cores)
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
# counted); GFLOP/step below is one step's forward + backward. Only one conversion per shape fits in the
# time, so seconds per step come from that count: achieved GFLOP/s = layer
# FLOPs / attn_fit seconds per layer (Adam, zeroing, gradient slots
# included as overhead), and seconds per step = step FLOPs / that rate.
# This assumes forward and backward run at the same rate.
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

# convert NAME PRESET RANK NSAMPLES BATCH STEPS WPS: model, conversion, peak RSS.
convert() {
    local name=$1 preset=$2 rank=$3 ns=$4 batch=$5 steps=$6 wps=$7
    "$py" "$here/bench/make_random_model.py" "$work/$name" --layers 1 --preset "$preset" --vocab 1024
    local cmd=("$B/transmla" convert --quiet --model-path "$work/$name" --save-path "$work/$name-mla"
               --cal-tokens "$work/$name/calib.u16" --cal-max-seqlen 256 --cal-nsamples "$ns" --cal-batch-size "$batch"
               --eval-dataset none --qk-mqa-dim 64 --kv-lora-rank "$rank" --freqfold 4
               --rorope-fit-steps 1 --rorope-fit-nsamples 4 --skip-published-mla --kv-norm rms
               --fit attention --attn-fit-steps "$steps" --attn-fit-windows-per-step "$wps")
    echo "+ ${cmd[*]}" | sed "s|$work|WORK|g"
    /usr/bin/time -v -o "$work/$name.time" "${cmd[@]}" >"$work/$name.log" 2>&1 || { cat "$work/$name.log"; exit 1; }
    rm -f "$work/$name/model.safetensors" "$work/$name-mla"/*.safetensors # 1.8 GB each at 72B shapes
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

rows = []
for name in (n for n in SHAPES if n in only):
    label, n_layers, mb_windows = SHAPES[name]
    rep = json.load(open("%s/%s-mla/transmla_report.json" % (work, name)))
    cfg = json.load(open("%s/%s-mla/config.json" % (work, name)))
    a = rep["attn_fit"]
    T, held, wps, steps = a["seqlen"], a["held_back_windows"], a["windows_per_step"], a["steps"]
    wtrain = a["windows"] - held
    total, step = attn_fit_layer_flops(mla_dims(cfg), T, wtrain, held, steps, wps)
    secs = a["seconds_per_layer"]
    rate = total / secs
    # the step's largest GEMM: q_proj over one micro-batch, [batch T, D] x [H (dn+dr), D]^T
    mb = mb_windows * T
    N, K = cfg["num_attention_heads"] * (cfg["qk_nope_head_dim"] + cfg["qk_rope_head_dim"]), cfg["hidden_size"]
    g = float(subprocess.check_output(["%s/sgemm" % work, str(mb), str(N), str(K)]))
    # the defaults: 128 windows, 16 held back, 112 trained, 150 steps of 16
    dtotal = attn_fit_defaults_flops(mla_dims(cfg), T)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open("%s/%s.time" % (work, name)).read()).group(1))
    wall = re.search(r"Elapsed \(wall clock\) time.*: (\S+)", open("%s/%s.time" % (work, name)).read()).group(1)
    rows.append((label, cfg, a, secs, step, rate, mb, N, K, g, dtotal, rss, wall, rep["seconds"], n_layers))

print("attention fit, one-layer random bf16 models, %s" % subprocess.check_output(["nproc"]).decode().strip() + " cores\n")
print("| shapes | fit data (trained + held, per step) | steps | fit s/layer | s/step | GFLOP/step | GFLOP/s | sgemm GFLOP/s at [M x K] x [N x K]^T | ratio | projected s/layer at defaults |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for label, cfg, a, secs, step, rate, mb, N, K, g, dtotal, rss, wall, sec, n_layers in rows:
    held = a["held_back_windows"]
    print("| %s (kv_lora_rank %d) | %d + %d windows of %d, %d per step | %d | %.1f | %.2f | %.1f | %.1f | %.1f at [%d x %d] x [%d x %d]^T | %.2f | %.0f (%.1f h for %s layers) |"
          % (label, cfg["kv_lora_rank"], a["windows"] - held, held, a["seqlen"], a["windows_per_step"], a["steps"],
             secs, step / rate, step / 1e9, rate / 1e9, g, mb, K, N, K, rate / 1e9 / g, dtotal / rate,
             dtotal / rate * n_layers / 3600, n_layers))
print()
for label, cfg, a, secs, step, rate, mb, N, K, g, dtotal, rss, wall, sec, _ in rows:
    print("%s: conversion %s wall, peak RSS %.2f GiB; phases (s): %s" % (label, wall, rss / 2**20,
          ", ".join("%s %.1f" % (k, v) for k, v in sec.items())))
    print("  attn_fit layer: train mse %.4g -> %.4g, held back %.4g -> %.4g, best step %d"
          % tuple(a["layers"][0][k] for k in ("train_mse_before", "train_mse_after", "held_mse_before", "held_mse_after", "best_step")))
print("\nprojection: the defaults' layer FLOPs (2 F(112) + 32 F(16) + 150 TR(16): the held-back 16 judged at 31 steps and once after) at the rate measured here;"
      "\n1B and Mixtral shapes ran in micro-batches of 8 (the default), 72B shapes in micro-batches of 4")
PY
