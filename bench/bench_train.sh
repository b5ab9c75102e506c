#!/usr/bin/env bash
# Training throughput on this machine: converts the bundled bytelm-dev
# (hidden 384) and a random model with Llama-3.2-1B layer shapes (hidden
# 2048, 2 layers, vocabulary cut to 1024) to MLA, then runs bench_train on
# each (with --recompute auto, finetune's default, which prints what it
# chose for this machine's memory, and with on), which prints training
# tokens/s and GFLOP/s next to the sgemm GFLOP/s it measures in the same
# run: after every timed step, so the ratio (the median step/sgemm pair)
# holds on a machine whose speed drifts.
#   bash bench/bench_train.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
M=data/models/bytelm-dev
"$B/transmla" convert --model-path "$M" --save-path "$work/bytelm" --cal-tokens "$M/calib.u16" --cal-nsamples 16 \
    --eval-nsamples 0 --qk-mqa-dim 32 --kv-lora-rank 64 --freqfold 4 --quiet
for r in auto on; do
    "$B/bench_train" "$work/bytelm" --seq-len 256 --batch-size 8 --steps 7 --recompute $r
done
/usr/bin/python3 bench/make_random_model.py "$work/l1b" --layers 2 --preset llama-3.2-1b --vocab 1024
"$B/transmla" convert --model-path "$work/l1b" --save-path "$work/l1b-mla" --cal-dataset none --qk-mqa-dim 64 \
    --kv-lora-rank 512 --freqfold 4 --quiet
for what in attention all; do
    for r in auto on; do
        "$B/bench_train" "$work/l1b-mla" --seq-len 512 --batch-size 2 --steps 5 --train $what --recompute $r
    done
done
