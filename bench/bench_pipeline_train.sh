#!/usr/bin/env bash
# Fine-tuning through pipeline stages, recompute on (GPipe order) against
# off (1F1B order), in one run: bytelm-dev (3 layers, split 2 + 1 over 2
# stages) on its calibration bytes, 8 micro-batches of 4 x 256 tokens per
# step, 1 rank (2 threads) and 2 ranks as 2 stages (1 thread each) on this
# 2-core machine. Prints each run's median tokens/s over steps 2-5 (step 1
# pays the first touch of the optimizer state) and, per topology, off / on.
# Without recompute a stage skips a quarter of the layer FLOPs; if its
# stages overlap as well as GPipe's do, off / on is about the same at 2
# stages as at 1 (before 1F1B, when each micro-batch's backward ran right
# after its forward, the 2-stage ratio fell well below it).
#   bash bench/bench_pipeline_train.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
B=${1:-build}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
M=data/models/bytelm-dev
args=(finetune --model-path "$M" --tokens "$M/calib.u16" --seq-len 256 --batch-size 4
    --gradient-accumulation-steps 8 --max-steps 5 --learning-rate 1e-4 --quiet)
median_rate() { # metrics.jsonl: median tokens/s of steps 2..
    /usr/bin/python3 -c "
import json, statistics, sys
r = [json.loads(l)['tokens_per_s'] for l in open(sys.argv[1]) if '\"step\"' in l][1:]
print('%.0f' % statistics.median(r))" "$1"
}
echo "| ranks | stages | --recompute | tokens/s (median, steps 2-5) | off / on |"
echo "| --- | --- | --- | --- | --- |"
for np in 1 2; do
    declare -A rate=()
    for r in on off; do
        out=$work/np$np-$r
        if [ $np = 1 ]; then
            OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$B/transmla" "${args[@]}" --recompute $r --save-path "$out"
        else
            mpirun --oversubscribe --allow-run-as-root -np 2 -x OMP_NUM_THREADS=1 -x OPENBLAS_NUM_THREADS=1 \
                "$B/transmla" "${args[@]}" --recompute $r --stages 2 --save-path "$out"
        fi
        rate[$r]=$(median_rate "$out/metrics.jsonl")
        ratio=""
        [ $r = off ] && ratio=$(/usr/bin/python3 -c "print('%.2f' % (${rate[off]} / ${rate[on]}))")
        echo "| $np | $np | $r | ${rate[$r]} | $ratio |"
    done
done
