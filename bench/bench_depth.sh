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
# --ranks N keeps only the runs on N ranks; --only 1b16 the 16-layer ones.
# A conversion longer than a sitting runs in parts, as a Slurm user's would
# across time limits: --stop-after MIN stops the job (SIGUSR1, as at a time
# limit; not requeued) at the first per-layer step that starts after MIN
# minutes, so little work is thrown away, and --continue, with the same
# BENCH_DEPTH_WORK, submits it again from its saved progress instead of
# afresh; the report's seconds and peaks then cover every part
# (report.resume.runs counts them). Job logs are kept in WORK/logs.
# --attn-fit-steps N overrides the attention fit's step count alone (with
# --defaults: every other setting stays convert's own): a 16-layer
# conversion at the defaults but a few steps fits in a sitting, and the
# per-layer fit log times a step, so the full fit is counted, not guessed.
# bench/depth_prediction.py WORK/out-l1b-2-1 WORK/out-l1b-16-1 then sets the
# 16-layer run's phases beside the 2-layer run's prediction.
#   bash bench/bench_depth.sh [--mpirun] [--only 1b|1b2|1b16|72b] [--ranks N] [--fit WHAT] [--defaults]
#                             [--attn-fit-steps N] [--stop-after MIN] [--continue] [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
launcher=slurm only="" fit=attention defaults=0 ranks="" stop_after="" continue=0 attn_steps=""
while [ $# -gt 0 ]; do
    case $1 in
        --mpirun) launcher=mpirun; shift ;;
        --only) only=$2; shift 2 ;;
        --fit) fit=$2; shift 2 ;;
        --defaults) defaults=1; shift ;;
        --ranks) ranks=$2; shift 2 ;;
        --stop-after) stop_after=$2; shift 2 ;;
        --continue) continue=1; shift ;;
        --attn-fit-steps) attn_steps=$2; shift 2 ;;
        *) break ;;
    esac
done
B=$(cd "${1:-build}" && pwd)
PY=/usr/bin/python3
# shellcheck source=tests/lib.sh
. tests/lib.sh # times_marker
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
if [ -n "$attn_steps" ]; then convert_args+=(--attn-fit-steps "$attn_steps"); fi

cleanup() {
    if [ "$launcher" = slurm ]; then local_cluster_stop; fi
    [ -n "${BENCH_DEPTH_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
if [ "$launcher" = slurm ]; then
    # shellcheck source=slurm/local-cluster.sh
    . slurm/local-cluster.sh
    export TM_REPO=$repo TM_BIN=$B/transmla SLURM_LOCAL_KEEP=$work/logs/$(date +%Y%m%d-%H%M%S)
    local_cluster_start "$PY" || exit 1
fi

model() { # NAME PRESET LAYERS VOCAB: the random model, made once
    [ -f "$work/$1/model.safetensors" ] || "$PY" bench/make_random_model.py "$work/$1" --preset "$2" --layers "$3" --vocab "$4"
}

# Polls every 10 s (not wait_job's 0.2 s: scontrol would take CPU from the
# ranks for hours); prints the final state, or the last one seen at TIMEOUT_S.
wait_long() { # ID TIMEOUT_S
    local s="" end=$((SECONDS + $2))
    while [ "$SECONDS" -lt "$end" ]; do
        s=$(job_state "$1")
        case $s in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|PREEMPTED) break ;; esac
        sleep 10
    done
    echo "${s:-unknown}"
}

# --stop-after: after MIN minutes, wait for the next "layer i/N" line of a
# per-layer step (the previous layer is saved, the new one barely started),
# then send the batch script SIGUSR1, which passes it to the ranks.
stop_at_layer() { # ID LOG
    local before now
    before=$(grep -c "layer [0-9]*/[0-9]*" "$2" || true)
    for _ in $(seq 360); do
        # an empty state is scontrol not answering this time, not the job's end
        case $(job_state "$1") in RUNNING|"") ;; *) return 0 ;; esac
        now=$(grep -c "layer [0-9]*/[0-9]*" "$2" || true)
        [ "$now" -gt "$before" ] && break
        sleep 10
    done
    echo "stopping job $1 at: $(grep "layer [0-9]*/[0-9]*" "$2" | tail -n 1)"
    scancel --signal=USR1 --batch "$1"
}

# What the stopped runs so far saved (convert's times marker, JSON in an
# HDF5 attribute): seconds per finished stage, the unfinished one's so far,
# each rank's peak RSS.
saved_times() { # MARKER
    times_marker "$1" "$PY" | "$PY" -c '
import json, sys
t = json.load(sys.stdin)
print("  after %d run(s), seconds per finished stage: %s; in the unfinished one so far %.1f; peak RSS per rank (GiB): %s" % (
    t["runs"], ", ".join("%s %.1f" % (k, v) for k, v in t["seconds"]), t["in_stage_seconds"],
    ", ".join("%.2f" % (b / 2**30) for b in t["peak_rss_per_rank"])))'
}

convert() { # MODEL RANKS OUT: one conversion, 1 rank or RANKS ranks as RANKS stages
    local m=$work/$1 n=$2 out=$3 args
    args=(--model-path "$m" --cal-tokens "$m/calib.u32" "${convert_args[@]}" --stages "$n" --save-path "$out")
    local t0=$SECONDS
    if [ "$launcher" = slurm ]; then
        local id state log
        id=$(submit -n "$n" --time="$hours:00:00" --no-requeue --job-name="depth-$1-$n" slurm/convert.sbatch "${args[@]}")
        log=$LC_WORK/jobs/depth-$1-$n-$id.log
        state=$(wait_long "$id" $((${stop_after:-$((hours * 60))} * 60)))
        if [ "$state" = RUNNING ] && [ -n "$stop_after" ]; then
            stop_at_layer "$id" "$log"
            state=$(wait_long "$id" 1800)
        fi
        echo "$1 on $n rank(s): $((SECONDS - t0)) s wall (job $id, $state)"
        if [ "$state" != COMPLETED ] && grep -q "stopped (signal" "$log"; then
            echo "$1 on $n rank(s): stopped, its progress is in $out.work: run again with --continue"
            saved_times "$out.work/times.done.h5"
            return 1
        fi
        [ "$state" = COMPLETED ] || { echo "job $id ($1, $n ranks) ended $state"; tail -n 20 "$log"; exit 1; }
    else
        mpirun --oversubscribe --allow-run-as-root -np "$n" "$B/transmla" convert --quiet "${args[@]}"
        echo "$1 on $n rank(s): $((SECONDS - t0)) s wall"
    fi
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
print(f"| {name} | {ranks} | phases (s) over {rep['resume'].get('runs', 1)} run(s): " + ", ".join(f"{k} {v:.1f}" for k, v in rep["seconds"].items()) + " |")
print(f"| {name} | {ranks} | rank 0's peak RSS after each phase (GiB): "
      + ", ".join(f"{k} {v / 2**30:.2f}" for k, v in rep.get("peak_rss_after", {}).items()) + " |")
PYEOF
}

run() { # MODEL RANKS
    [ -z "$ranks" ] || [ "$ranks" = "$2" ] || return 0
    local out=$work/out-$1-$2
    [ "$continue" = 1 ] || rm -rf "$out" "$out.work"
    convert "$1" "$2" "$out" || return 0
    report "$1" "$2" "$out" | tee -a "$work/table.md"
}

echo "| model | ranks | rank (stage) | peak RSS GiB | plan GiB | plan / measured | plan: weights / stats / convert / activ. |" >"$work/table.md"
echo "| --- | --- | --- | --- | --- | --- | --- |" >>"$work/table.md"
if [ "$only" != 72b ] && [ "$only" != 1b16 ]; then
    model l1b-2 llama-3.2-1b 2 128256
    run l1b-2 1
fi
if [ "$only" = 1b2 ]; then run l1b-2 2; fi
if [ "$only" != 72b ] && [ "$only" != 1b2 ]; then
    model l1b-16 llama-3.2-1b 16 128256
    run l1b-16 1
    run l1b-16 2
fi
if [ "$only" != 1b ] && [ "$only" != 1b2 ] && [ "$only" != 1b16 ]; then
    model q72-2 qwen2.5-72b 2 152064
    run q72-2 1
    run q72-2 2
fi
echo
cat "$work/table.md"
