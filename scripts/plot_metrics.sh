#!/usr/bin/env bash
# Draw a fine-tuning run's loss curve (and learning rate) as a PNG:
#   bash scripts/plot_metrics.sh SAVE/metrics.jsonl [OUT.png]
# Reads the JSONL that `transmla finetune` writes; needs gnuplot (gnuplot-nox).
set -euo pipefail
in=${1:?usage: plot_metrics.sh METRICS.jsonl [OUT.png]}
out=${2:-${in%.jsonl}.png}
[ -s "$in" ] || { echo "plot_metrics: $in: missing or empty" >&2; exit 1; }
command -v gnuplot >/dev/null || { echo "plot_metrics: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
data=$(mktemp)
trap 'rm -f "$data"' EXIT
# step loss lr, one line per step, from the JSON objects (no jq needed)
sed -n 's/.*"step": *\([0-9]*\).*"loss": *\([-0-9.eE+naif]*\).*"lr": *\([-0-9.eE+]*\).*/\1 \2 \3/p' "$in" >"$data"
[ -s "$data" ] || { echo "plot_metrics: $in: no step/loss/lr records" >&2; exit 1; }
gnuplot <<GP
set terminal pngcairo size 900,520 noenhanced
set output "$out"
set title "transmla finetune: $(basename "$(dirname "$in")")"
set xlabel "step"
set ylabel "training loss (mean NLL per target token)"
set y2label "learning rate"
set y2tics
set ytics nomirror
set grid
plot "$data" using 1:2 with lines lw 2 title "loss", "$data" using 1:3 axes x1y2 with lines dt 2 title "lr"
GP
echo "plot_metrics: wrote $out ($(wc -l <"$data") steps)"
