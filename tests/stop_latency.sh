#!/usr/bin/env bash
# Stops within seconds (issue 18): SIGTERM during the RoRoPE fit, or the
# attention fit, of bytelm-dev (100000 Adam steps per layer, so the fit
# would run for hours) saves and
# exits with status 75 in under 30 s (Slurm's default KillWait before
# SIGKILL) — on one process, and on 2 stages x 1 replica with the
# sequential schedule, where stage 1 waits in its receive for stage 0's
# stream while stage 0 fits. Before the fix the stop took effect only when the
# fit ended.
# usage: stop_latency.sh TRANSMLA MPIEXEC
set -u
bin=$1 mpiexec=$2
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../data/models/bytelm-dev
work=$(mktemp -d)
trap 'pkill -KILL -f "^$bin convert .*$work" 2>/dev/null; rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
. "$here/lib.sh"

args=(--model-path "$model" --cal-tokens "$model/calib.u16" --cal-nsamples 8 --cal-max-seqlen 128 --cal-batch-size 4
      --eval-tokens "$model/eval.u16" --eval-nsamples 2 --ppl-seqlen 128 --qk-mqa-dim 32 --kv-lora-rank 64
      --freqfold 4 --rorope-fit-nsamples 4 --skip-published-mla)
one() { "$bin" convert "${args[@]}" "$@"; }
mpi() { "$mpiexec" --oversubscribe --allow-run-as-root -np 2 "$bin" convert "${args[@]}" --stages 2 "$@"; }

# stop NAME LAUNCHER WHEN: start with a fit that would not end, SIGTERM every
# rank once the log shows WHEN, time the exit.
stop() {
    local name=$1 launcher=$2 when=$3 phase=$4 save=$work/$1 log=$work/$1.log pid t0 t1 rc
    shift 4
    "$launcher" --save-path "$save" "$@" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1200); do
        grep -qE "$when" "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    grep -qE "$when" "$log" || bad "$name: never reached '$when'"
    sleep 1 # inside the fit's Adam steps
    t0=$(date +%s%N)
    pkill -TERM -f "^$bin convert .*--save-path $save( |$)"
    for _ in $(seq 600); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    t1=$(date +%s%N)
    kill -KILL "$pid" 2>/dev/null
    wait "$pid"
    rc=$?
    local ms=$(((t1 - t0) / 1000000)) secs
    secs=$((ms / 1000)).$(printf '%03d' $((ms % 1000)))
    if [ "$rc" -eq 75 ] && [ "$ms" -lt 30000 ]; then ok "$name: SIGTERM in the fit -> exit 75 after $secs s"
    else bad "$name: SIGTERM in the fit -> exit $rc after $secs s (want 75 within 30 s)"; tail -n 5 "$log" | sed 's/^/      | /'; fi
    grep -q "$phase: stopped" "$log" && ok "$name: $(grep -m1 "$phase: stopped" "$log")" ||
        bad "$name: no '$phase: stopped' line"
}

rotation=(--rorope-fit-steps 100000 --rorope-fit-schedule sequential)
stop one one "rorope-fit: layer 1/3 \(rank 0, 1 replicas\)$" rorope-fit "${rotation[@]}"
[ -d "$work/one.work" ] && ok "one: the progress is kept in one.work" || bad "one: no work folder"
stop mpi mpi "rorope-fit: layer 1/3 \(rank 0, 1 replicas\)$" rorope-fit "${rotation[@]}"
# the attention fit, sequential (default): the second stage waits for the first's stream
attention=(--rorope-fit-steps 2 --attn-fit-steps 100000)
stop one-attn one "attn-fit: layer 1/3 \(rank 0, 1 replicas\)$" attn-fit "${attention[@]}"
stop mpi-attn mpi "attn-fit: layer 1/3 \(rank 0, 1 replicas\)$" attn-fit "${attention[@]}"

echo "stop_latency: $fails failure(s)"
[ "$fails" -eq 0 ]
