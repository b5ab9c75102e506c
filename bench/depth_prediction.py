#!/usr/bin/env python3
"""Predict a deep 1-rank conversion's phases from a shallow one's and set the
prediction beside the deep run's measurement (issue 23 item 3: does depth
cost what the 2-layer run says it will?).

usage: depth_prediction.py SHALLOW_OUT DEEP_OUT [--plan GIB]

Both are finished conversions (transmla_report.json) of the same shapes on
1 rank with the same settings (bench_depth.sh --only 1b2 / --only 1b16 with
the same flags). Every phase is scaled by the layer ratio, except the
attention fit: its default sequential schedule fits every layer and, after
each but the last, moves its data on through the fitted layer, so the deep
run is (deep layers) fits and (deep layers - 1) moves of the shallow run's
mean length (the report times each layer's fit; the moves are the rest of
the phase). --plan adds `transmla plan`'s peak for the deep run to the peak
RSS row. A run in parts (stopped and resumed) counts every part's seconds.
"""
import argparse
import json
import os
import sys

# settings that may differ between the two runs
PER_RUN = ("model_path", "cal_source")


def load(out):
    path = os.path.join(out, "transmla_report.json")
    try:
        rep = json.load(open(path))
    except (OSError, ValueError) as e:
        sys.exit("%s: %s" % (path, e))
    if rep["settings"]["ranks"] != 1:
        sys.exit("%s: settings.ranks is %d; the prediction is for 1-rank runs" % (path, rep["settings"]["ranks"]))
    return rep


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
    ap.add_argument("--plan", type=float)
    a = ap.parse_args()
    short, deep = load(a.shallow), load(a.deep)
    for k, v in short["settings"].items():
        if k not in PER_RUN and deep["settings"].get(k) != v:
            sys.exit("%s: settings.%s is %r, %s's is %r; predict only between like runs"
                     % (a.deep, k, deep["settings"].get(k), a.shallow, v))
    ls, ld = layers(short), layers(deep)
    fit_s, move_s = fit_parts(short)
    dfit_s, dmove_s = fit_parts(deep)
    steps = short["settings"]["attn_fit_steps"]
    print("| phase (s) | %d layers, 1 rank | %d layers predicted | %d layers measured (%d part%s) | measured / predicted |"
          % (ls, ld, ld, deep["resume"].get("runs", 1), "s" if deep["resume"].get("runs", 1) > 1 else ""))
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
            p = s * ld / ls
            name = phase
            cells = ("%.1f" % s, "%.0f" % p, "%.1f" % d)
        tot = [tot[0] + s, tot[1] + p, tot[2] + d]
        if not phase.startswith("eval_"):  # the small evaluations of a run without data: in the total only
            print("| %s | %s | %s | %s | %.2f |" % ((name,) + cells + (d / p,)))
    print("| every phase (the evaluations included) | %.1f | %.0f | %.1f | **%.2f** |" % (tot[0], tot[1], tot[2], tot[2] / tot[1]))
    peak = deep["memory"]["peak_rss_bytes"] / 2**30
    print("| peak RSS GiB | %.2f | | %.2f%s | |" % (short["memory"]["peak_rss_bytes"] / 2**30, peak,
                                                 " (plan %.2f, %.2f)" % (a.plan, a.plan / peak) if a.plan else ""))


if __name__ == "__main__":
    main()
