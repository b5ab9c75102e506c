#!/usr/bin/env python3
"""Predict a deep conversion's phases from a shallow 1-rank one's and set the
prediction beside the deep run's measurement (issue 23 item 3: does depth
cost what the 2-layer run says it will?).

usage: depth_prediction.py SHALLOW_OUT DEEP_OUT [--plan GIB[,GIB...]]

Both are finished conversions (transmla_report.json) of the same shapes with
the same settings (bench_depth.sh --only 1b2 / --only 1b16 with the same
flags), the shallow one on 1 rank, the deep one on 1 rank or on S ranks as S
stages (one core each). Every phase is scaled by the layer ratio, except the
attention fit: its default sequential schedule fits every layer and, after
each but the last, moves its data on through the fitted layer, so the deep
run is (deep layers) fits and (deep layers - 1) moves of the shallow run's
mean length (the report times each layer's fit; the moves are the rest of
the phase), on any number of stages. On stages the other phases run stage
by stage side by side, so they take the busiest stage's layers: those of
the deep run's plan.txt (bench_depth.sh writes `transmla plan`'s output
there). --plan adds `transmla plan`'s peak for the deep run (one per rank on
stages, comma-separated) to the peak RSS
row. A run in parts (stopped and resumed) counts every part's seconds.
"""
import argparse
import json
import os
import sys

# settings that may differ between the two runs
PER_RUN = ("model_path", "cal_source", "ranks", "stages")


def load(out):
    path = os.path.join(out, "transmla_report.json")
    try:
        rep = json.load(open(path))
    except (OSError, ValueError) as e:
        sys.exit("%s: %s" % (path, e))
    st = rep["settings"]
    if st["replicas"] != 1:
        sys.exit("%s: settings.replicas is %d; the prediction is for stages alone" % (path, st["replicas"]))
    return rep


def busiest_stage_layers(out, stages, n_layers):
    """Layers of the deep run's busiest stage: n_layers on one stage, else from its plan.txt ("0-8+E" rows)."""
    if stages == 1:
        return n_layers
    path = os.path.join(out, "plan.txt")
    counts = []
    try:
        for line in open(path):
            f = line.split()
            if len(f) == 9 and f[0].isdigit():
                first, last = f[2].split("+")[0].split("-")
                counts.append(int(last) - int(first) + 1)
    except (OSError, ValueError) as e:
        sys.exit("%s: %s" % (path, e))
    if len(counts) != stages:
        sys.exit("%s: %d stage rows; the report has settings.stages %d" % (path, len(counts), stages))
    return max(counts)


def layers(rep):
    return len(rep["attn_fit"]["layers"])


def fit_parts(rep):
    """Mean seconds of one layer's fit and of one data move."""
    fit = rep["attn_fit"]
    fits = [layer["seconds"] for layer in fit["layers"]]
    moves = rep["seconds"]["attn_fit"] - sum(fits)
    return sum(fits) / len(fits), moves / (len(fits) - 1) if len(fits) > 1 else 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shallow")
    ap.add_argument("deep")
    ap.add_argument("--plan", type=lambda v: [float(x) for x in v.split(",")])
    a = ap.parse_args()
    short, deep = load(a.shallow), load(a.deep)
    for k, v in short["settings"].items():
        if k not in PER_RUN and deep["settings"].get(k) != v:
            sys.exit("%s: settings.%s is %r, %s's is %r; predict only between like runs"
                     % (a.deep, k, deep["settings"].get(k), a.shallow, v))
    if short["settings"]["ranks"] != 1:
        sys.exit("%s: settings.ranks is %d; the shallow run is on 1 rank" % (a.shallow, short["settings"]["ranks"]))
    ls, ld = layers(short), layers(deep)
    stages = deep["settings"]["stages"]
    if stages > 1 and deep["settings"]["attn_fit_schedule"] != "sequential":
        sys.exit("%s: settings.attn_fit_schedule is %r; the prediction on stages is for the sequential one"
                 % (a.deep, deep["settings"]["attn_fit_schedule"]))
    lb = busiest_stage_layers(a.deep, stages, ld)
    fit_s, move_s = fit_parts(short)
    dfit_s, dmove_s = fit_parts(deep)
    steps = short["settings"]["attn_fit_steps"]
    on = "1 rank" if stages == 1 else "%d stages" % stages
    runs = deep["resume"].get("runs", 1)
    print("| phase (s) | %d layers, 1 rank | %d layers predicted, %s | %d layers measured, %s (%d part%s) | "
          "measured / predicted |" % (ls, ld, on, ld, on, runs, "s" if runs > 1 else ""))
    print("| --- | --- | --- | --- | --- |")
    tot = [0.0, 0.0, 0.0]
    for phase, s in short["seconds"].items():
        d = deep["seconds"].get(phase, 0.0)
        if phase == "attn_fit":
            p = ld * fit_s + (ld - 1) * move_s
            name = "attn_fit, %d steps (fits + data moves)" % steps
            cells = ("%.1f (%d x %.1f + %d x %.1f)" % (s, ls, fit_s, ls - 1, move_s),
                     "%.0f (%d x %.1f + %d x %.1f)" % (p, ld, fit_s, ld - 1, move_s),
                     "%.1f (%d x %.1f + %d x %.1f)" % (d, ld, dfit_s, ld - 1, dmove_s))
        else:
            p = s * lb / ls  # side by side on stages: the busiest stage's layers
            name = phase
            cells = ("%.1f" % s, "%.0f" % p, "%.1f" % d)
        tot = [tot[0] + s, tot[1] + p, tot[2] + d]
        if not phase.startswith("eval_"):  # the small evaluations of a run without data: in the total only
            print("| %s | %s | %s | %s | %.2f |" % ((name,) + cells + (d / p,)))
    print("| every phase (the evaluations included) | %.1f | %.0f | %.1f | **%.2f** |" % (tot[0], tot[1], tot[2], tot[2] / tot[1]))
    peaks = [r["peak_rss_bytes"] / 2**30 for r in deep["memory"]["per_rank"]]
    if a.plan and len(a.plan) != len(peaks):
        sys.exit("--plan: %d value(s) for the deep run's %d rank(s)" % (len(a.plan), len(peaks)))
    plan = " (plan %s: %s)" % (", ".join("%.2f" % p for p in a.plan),
                               ", ".join("%.2f" % (p / m) for p, m in zip(a.plan, peaks))) if a.plan else ""
    print("| peak RSS GiB%s | %.2f | | %s%s | |" % (
        " per rank" if stages > 1 else "", short["memory"]["peak_rss_bytes"] / 2**30,
        ", ".join("%.2f" % m for m in peaks), plan))


if __name__ == "__main__":
    main()
