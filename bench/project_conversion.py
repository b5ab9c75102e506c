#!/usr/bin/env python3
"""Project a conversion at convert's defaults (both fits, 128 calibration
windows of 256) onto a target model and Slurm layout, from a conversion of
a Llama-3.2-1B-shaped model measured on this machine (bench_depth.sh
--defaults, 1 rank, one core) and the attention fit's efficiency per shape
(bench_attn_fit.sh's ratio to same-run sgemm).

usage: project_conversion.py --measured DIR [--layers N] --fit-ratio SHAPE=R ...
                             [--target PRESET SBATCH ...] [--bin build/transmla]

  --measured DIR   a finished conversion (transmla_report.json, plan.txt and
                   the model's config.json at settings.model_path), 1 rank
  --layers N       project the measured model itself to N layers on 1 core
                   too (the check against a deeper measured run)
  --fit-ratio      the attention fit's GFLOP/s over same-run sgemm, per shape:
                   l1b=0.84 q72=0.77 mixtral=0.84 (bench_attn_fit.sh's ratio
                   per step); the measured model is l1b, targets are named
                   by their preset
  --target P S     a preset (layout and settings) and its sbatch script
                   (cores per rank = --cpus-per-task, evaluation windows =
                   --eval-nsamples x 2048, the fit schedule)

Each phase is scaled from the measured one, per layer and per core, by what
its work grows with, and divided by the cores that share it in the layout:
  calibration (keys, latents, kv-norm; the published rotation's latents too
    when the run evaluates): plan's TFLOP on each rank of the busiest stage
    (the layers, no head) at the measured run's FLOP rate per core;
  rotation fit: attention FLOPs per token (q, k, v, o, causal attention at
    256); its micro-batches (16 windows + 8 held back, micro-batches of 8)
    spread over at most 2 replicas; stages fit side by side (parallel);
  attention fit: bench/fit_flops.py's FLOPs of a layer's fit at the
    defaults, at the measured run's fit rate (its layers' own seconds)
    times the shapes' ratio to sgemm, and of moving its data on through
    every layer but the last (one stream, two with the sequential
    schedule), at the measured run's rate for the moves (the rest of the
    phase); a step's 2 micro-batches spread over at most 2
    replicas, the data over all; stages side by side (the sbatch's
    --attn-fit-schedule parallel), else one after another;
  RoRoPE, BKV-PCA, export: per layer, times (kv width)^3 (the eigenproblems);
  evaluation, apart: plan's GFLOP per evaluated token (2048-token windows,
    the head included), the busiest stage's share of it as in plan's
    per-stage column, x the windows x the six models a fitted run
    evaluates, spread over the replicas, stages side by side.
Threads are assumed to scale linearly to --cpus-per-task (they do not quite:
BLAS at 16 threads on these GEMMs), so these are lower bounds for a node as
fast per core as this machine.
"""
import argparse
import json
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from fit_flops import (attn_fit_defaults_flops, attn_fit_report_flops, attn_fit_stream_flops,  # noqa: E402
                       gqa_attention_flops, mla_dims_converted)

CAL_PHASES = ("calibrate_keys", "calibrate_latent", "kv_norm_fit")
PHASES = ("calibration", "rotation fit", "attention fit", "RoRoPE, BKV-PCA, export")  # the projected rows
SMALL_PHASES = ("rorope", "bkv_pca", "export")


def plan(bin_, args):
    out = subprocess.run([bin_, "plan"] + args, capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.splitlines() if re.match(r"\s+\d+\s", line) and len(line.split()) == 9]
    layers = []
    for r in rows:
        first, last = re.match(r"(\d+)-(\d+)", r[2]).groups()
        layers.append(int(last) - int(first) + 1)
    cal = re.search(r"calibration: .* ([\d.]+) TFLOP on each rank of the busiest stage", out)
    ev = re.search(r"evaluation: ([\d.]+) GFLOP per token", out)
    lay = re.search(r"(\d+) ranks = (\d+) stages? x (\d+) replicas?", out)
    stage_gflop = [float(r[8]) for r in rows]  # per stage at the calibration's 256 tokens
    return dict(layers_per_stage=max(layers), busiest_tflop=float(cal.group(1)), eval_gflop=float(ev.group(1)),
                busiest_eval_gflop=float(ev.group(1)) * max(stage_gflop) / sum(stage_gflop),
                stages=int(lay.group(2)), replicas=int(lay.group(3)))


def sbatch_settings(path):
    text = open(path).read()
    cores = int(re.search(r"--cpus-per-task=(\d+)", text).group(1))
    ev = re.search(r"--eval-nsamples (\d+)", text)
    parallel = "--attn-fit-schedule parallel" in text
    return cores, int(ev.group(1)) if ev else 0, parallel


def kv_width(cfg):
    return cfg["num_key_value_heads"] * (cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"])


def measured_rates(rep, cfg, plan1, ratio):
    """Per-core rates and per-layer seconds of the measured 1-rank run."""
    sec, L = rep["seconds"], cfg["num_hidden_layers"]
    cal_s = sum(sec[p] for p in CAL_PHASES)
    # the run's own fits (bench_depth.sh --attn-fit-steps may shorten them; the report times each layer's)
    # and, the rest of the phase, its data moved on after every layer but the last: two rates, since
    # the fit's efficiency depends on the shape (the ratio) and the moves are plain forward GEMMs
    st, fit = rep["settings"], rep["attn_fit"]
    fit_flops = attn_fit_report_flops(mla_dims_converted(cfg, st["kv_lora_rank"]), fit)
    fit_s = sum(layer["seconds"] for layer in fit["layers"])
    stream = attn_fit_stream_flops(cfg, st["cal_nsamples"], st["cal_max_seqlen"], st["attn_fit_schedule"] == "sequential")
    return dict(cal_rate=plan1["busiest_tflop"] * 1e12 / cal_s,
                rot_s_per_flop=sec["rorope_fit"] / L / gqa_attention_flops(cfg),
                fit_rate=fit_flops * len(fit["layers"]) / fit_s / ratio,  # FLOP/s per core at ratio 1
                move_rate=stream * (L - 1) / (sec["attn_fit"] - fit_s),
                small_s=sum(sec.get(p, 0) for p in SMALL_PHASES) / L / kv_width(cfg) ** 3)


def project(m, cfg, kv_lora_rank, p, cores, eval_windows, parallel, ratio):
    """Seconds per phase on the layout p (plan's), cores per rank."""
    fit_ranks = cores * min(p["replicas"], 2)
    per_stage = p["layers_per_stage"] if parallel else cfg["num_hidden_layers"]
    passes = 4 if eval_windows else 3  # evaluating, the published rotation's latents are calibrated too
    fit_flops = attn_fit_defaults_flops(mla_dims_converted(cfg, kv_lora_rank))
    # each replica moves its share of the 128 windows on through every layer it fits
    stream = attn_fit_stream_flops(cfg, 128, 256, not parallel) / p["replicas"]
    out = {
        "calibration": p["busiest_tflop"] * 1e12 * passes / 3 / (cores * m["cal_rate"]),
        "rotation fit": m["rot_s_per_flop"] * gqa_attention_flops(cfg) * p["layers_per_stage"] / fit_ranks,
        # a stage moves its data on after each of its layers but the last
        "attention fit": fit_flops / fit_ranks / (m["fit_rate"] * ratio) * per_stage
                         + stream / cores / m["move_rate"] * (per_stage - 1),
        "RoRoPE, BKV-PCA, export": m["small_s"] * kv_width(cfg) ** 3 * p["layers_per_stage"] / cores,
    }
    # the stages run side by side (pipelined micro-batches): the busiest one's GFLOP per token, head included
    evaluation = 6 * eval_windows * 2048 * p["busiest_eval_gflop"] * 1e9 / p["replicas"] / (cores * m["cal_rate"])
    return out, evaluation


def hours(s):
    return "%.0f s" % s if s < 600 else "%.1f min" % (s / 60) if s < 5400 else "%.1f h" % (s / 3600)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--measured", required=True)
    ap.add_argument("--layers", type=int)
    ap.add_argument("--fit-ratio", nargs="+", required=True)
    ap.add_argument("--target", nargs=2, action="append", default=[])
    ap.add_argument("--bin", default=os.path.join(os.path.dirname(__file__), "..", "build", "transmla"))
    a = ap.parse_args()
    ratios = dict(x.split("=") for x in a.fit_ratio)
    rep = json.load(open(os.path.join(a.measured, "transmla_report.json")))
    if rep["settings"]["ranks"] != 1:
        sys.exit("%s: settings.ranks is %d; the rates come from a 1-rank run" % (a.measured, rep["settings"]["ranks"]))
    model = rep["settings"]["model_path"]
    cfg = json.load(open(os.path.join(model, "config.json")))
    plan1 = plan(a.bin, ["--model-path", model, "--eval-dataset", "none"])
    m = measured_rates(rep, cfg, plan1, float(ratios["l1b"]))
    cols, evals = [], []
    if a.layers:
        deep = dict(cfg, num_hidden_layers=a.layers)
        p = dict(plan1, layers_per_stage=a.layers, busiest_tflop=plan1["busiest_tflop"] * a.layers / cfg["num_hidden_layers"])
        cols.append(("%s, %d layers, 1 core" % (os.path.basename(model), a.layers),
                     project(m, deep, rep["settings"]["kv_lora_rank"], p, 1, 0,
                             rep["settings"]["attn_fit_schedule"] != "sequential", float(ratios["l1b"]))[0]))
        evals.append("-")
    for preset, sbatch in a.target:
        pre = json.load(open(preset))
        tcfg = json.load(open(os.path.join(os.path.dirname(preset), pre["config"])))
        cores, ev, parallel = sbatch_settings(sbatch)
        p = plan(a.bin, ["--preset", preset])
        name = os.path.basename(preset).replace(".json", "")
        shape = next((k for k in ratios if name.startswith({"q72": "qwen2.5-72b", "mixtral": "mixtral"}.get(k, k))), None)
        if shape is None:
            sys.exit("%s: no --fit-ratio for it" % preset)
        phases, e = project(m, tcfg, pre["convert"]["kv_lora_rank"], p, cores, ev, parallel, float(ratios[shape]))
        cols.append(("%s: %d stages x %d replicas, %d cores per rank" % (name, p["stages"], p["replicas"], cores), phases))
        evals.append("%s (%d windows of 2048, 6 models; %.2f GFLOP per token in all)" % (hours(e), ev, p["eval_gflop"]))
    print("measured: %s (%d layers, 1 rank, one core): calibration %.1f GFLOP/s, attention fit %.1f GFLOP/s, "
          "its data moves %.1f GFLOP/s" % (a.measured, cfg["num_hidden_layers"], m["cal_rate"] / 1e9,
                                           m["fit_rate"] * float(ratios["l1b"]) / 1e9, m["move_rate"] / 1e9))
    print()
    print("| phase | " + " | ".join(c[0] for c in cols) + " |")
    print("| --- |" + " --- |" * len(cols))
    for k in PHASES:
        print("| %s | " % k + " | ".join(hours(c[1][k]) for c in cols) + " |")
    print("| total, without evaluation | " + " | ".join(hours(sum(c[1].values())) for c in cols) + " |")
    print("| evaluation, apart | " + " | ".join(evals) + " |")


if __name__ == "__main__":
    main()
