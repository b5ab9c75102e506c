#!/usr/bin/env bash
# Conversions at real shapes and depth, measured against `transmla plan`
# (issue 23, items 2 and 3). Random bf16 models with the real vocabularies
# (bench/make_random_model.py) are converted by the default method (RoRoPE
# with the fitted rotation, BKV-PCA, the attention fit, the kv-norm fit) at
# sizes a 2-core machine finishes: 16 calibration windows of 256 (the
# rotation fit's default 16 and the attention fit's data are those), 5
# rotation-fit and 3 attention-fit steps, freqfold 4, no evaluation. Peak
# memory does not depend on the step counts; the cost of a step at the
# defaults is bench_attn_fit.sh's.
#  - Llama-3.2-1B shapes: 2 layers on 1 rank (the per-layer time the
#    16-layer prediction is made from), then all 16 layers on 1 rank and on
#    2 ranks (2 stages);
#  - Qwen2.5-72B shapes: 2 layers on 1 rank and on 2 ranks (2 stages).
# Every run goes through slurm/convert.sbatch on a private one-node Slurm
# (slurm/local-cluster.sh; root, installs slurm-wlm when missing), or with
# --mpirun straight through mpirun. For each rank it prints the measured
# peak RSS (transmla_report.json, getrusage) next to plan's estimate for its
# stage with the same settings, and the seconds of each phase.
# --fit rotation|attention (default attention) is given to both convert and
# plan: with rotation, Qwen2.5-72B shapes at 2 ranks fit a 24 GiB machine.
# --defaults converts with convert's own settings instead (128 calibration
# windows of 256, freqfold auto, 60 rotation-fit and 150 attention-fit steps;
# no evaluation: a random model has no text, and `plan` prints the cost per
# evaluated token), issue 23 item 3's run: hours per 1B conversion on 2
# cores. --only 1b2 runs the 2-layer Llama-3.2-1B conversions alone (1 rank:
# the per-layer cost the 16-layer runs are predicted from; and 2 stages);
# --ranks N keeps only the runs on N ranks.
#   bash bench/bench_depth.sh [--mpirun] [--only 1b|1b2|72b] [--ranks N] [--fit WHAT] [--defaults] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
launcher=slurm only="" fit=attention defaults=0 ranks=""
while [ $# -gt 0 ]; do
    case $1 in
        --mpirun) launcher=mpirun; shift ;;
        --only) only=$2; shift 2 ;;
        --fit) fit=$2; shift 2 ;;
        --defaults) defaults=1; shift ;;
        --ranks) ranks=$2; shift 2 ;;
        *) break ;;
    esac
done
B=$(cd "${1:-build}" && pwd)
PY=/usr/bin/python3
work=${BENCH_DEPTH_WORK:-$(mktemp -d /tmp/bench_depth.XXXXXX)}
mkdir -p "$work"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
settings=(--cal-nsamples 16 --freqfold 4 --eval-dataset none --fit "$fit")
convert_args=(--token-dtype u32 --rorope-fit-steps 5 --attn-fit-steps 3 --skip-published-mla "${settings[@]}")
hours=10
if [ "$defaults" = 1 ]; then
    settings=(--eval-dataset none --fit "$fit")
    convert_args=(--token-dtype u32 "${settings[@]}")
    hours=48
fi

cleanup() {
    if [ "$launcher" = slurm ]; then local_cluster_stop; fi
    [ -n "${BENCH_DEPTH_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
if [ "$launcher" = slurm ]; then
    # shellcheck source=slurm/local-cluster.sh
    . slurm/local-cluster.sh
    export TM_REPO=$repo TM_BIN=$B/transmla
    local_cluster_start "$PY" || exit 1
fi

model() { # NAME PRESET LAYERS VOCAB: the random model, made once
    [ -f "$work/$1/model.safetensors" ] || "$PY" bench/make_random_model.py "$work/$1" --preset "$2" --layers "$3" --vocab "$4"
}

convert() { # MODEL RANKS OUT: one conversion, 1 rank or RANKS ranks as RANKS stages
    local m=$work/$1 n=$2 out=$3 args
    args=(--model-path "$m" --cal-tokens "$m/calib.u32" "${convert_args[@]}" --stages "$n" --save-path "$out")
    local t0=$SECONDS
    if [ "$launcher" = slurm ]; then
        local id state
        id=$(submit -n "$n" --time="$hours:00:00" --job-name="depth-$1-$n" slurm/convert.sbatch "${args[@]}")
        state=$(wait_job "$id" $((hours * 3600)))
        [ "$state" = COMPLETED ] || { echo "job $id ($1, $n ranks) ended $state"; tail -n 20 "$LC_WORK/jobs/"*"-$id.log"; exit 1; }
    else
        mpirun --oversubscribe --allow-run-as-root -np "$n" "$B/transmla" convert --quiet "${args[@]}"
    fi
    echo "$1 on $n rank(s): $((SECONDS - t0)) s wall"
}

report() { # MODEL RANKS OUT: peak RSS per rank against plan, then the phases
    "$B/transmla" plan --model-path "$work/$1" "${settings[@]}" --ranks-per-node "$2" --stages "$2" >"$3/plan.txt"
    "$PY" - "$1" "$2" "$3/plan.txt" "$3/transmla_report.json" <<'PYEOF'
import json, sys
name, ranks, plan, rep = sys.argv[1], int(sys.argv[2]), open(sys.argv[3]).read().splitlines(), json.load(open(sys.argv[4]))
est = {}
for line in plan:  # "  stage ranks layers weights stats convert activ. peak GFLOP/tok"
    f = line.split()
    if len(f) == 9 and f[0].isdigit():
        est[int(f[0])] = [float(x) for x in f[3:8]]
for r in rep["memory"]["per_rank"]:
    rss = r["peak_rss_bytes"] / 2**30
    w, st, cv, act, peak = est[r["stage"]]
    print(f"| {name} | {ranks} | {r['rank']} ({r['stage']}) | {rss:.2f} | {peak:.2f} | {peak / rss:.3f} "
          f"| {w:.2f} / {st:.2f} / {cv:.2f} / {act:.2f} |")
print(f"| {name} | {ranks} | phases (s): " + ", ".join(f"{k} {v:.1f}" for k, v in rep["seconds"].items()) + " |")
print(f"| {name} | {ranks} | rank 0's peak RSS after each phase (GiB): "
      + ", ".join(f"{k} {v / 2**30:.2f}" for k, v in rep.get("peak_rss_after", {}).items()) + " |")
PYEOF
}

run() { # MODEL RANKS
    [ -z "$ranks" ] || [ "$ranks" = "$2" ] || return 0
    local out=$work/out-$1-$2
    rm -rf "$out" "$out.work"
    convert "$1" "$2" "$out"
    report "$1" "$2" "$out" | tee -a "$work/table.md"
}

echo "| model | ranks | rank (stage) | peak RSS GiB | plan GiB | plan / measured | plan: weights / stats / convert / activ. |" >"$work/table.md"
echo "| --- | --- | --- | --- | --- | --- | --- |" >>"$work/table.md"
if [ "$only" != 72b ]; then
    model l1b-2 llama-3.2-1b 2 128256
    run l1b-2 1
fi
if [ "$only" = 1b2 ]; then run l1b-2 2; fi
if [ "$only" != 72b ] && [ "$only" != 1b2 ]; then
    model l1b-16 llama-3.2-1b 16 128256
    run l1b-16 1
    run l1b-16 2
fi
if [ "$only" != 1b ] && [ "$only" != 1b2 ]; then
    model q72-2 qwen2.5-72b 2 152064
    run q72-2 1
    run q72-2 2
fi
echo
cat "$work/table.md"
