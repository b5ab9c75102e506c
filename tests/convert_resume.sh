#!/usr/bin/env bash
# Resumable conversion (issue 6): a conversion stopped or killed part-way
# continues from SAVE.work and ends with the model an uninterrupted run makes,
# bit for bit (the same topology adds the same float64 sums in the same
# order, so nothing is allowed to differ).
#  - one process: SIGTERM mid calibrate[keys], SIGUSR1 mid calibrate[latent],
#    SIGTERM as soon as the next run resumes that pass, SIGTERM mid
#    eval[mla], SIGKILL mid calibrate[kv-norm] (nothing saved at that
#    moment: the files already there must be enough); each stop exits
#    with status 75, the next run's log says what it skipped; the final model
#    is bit-identical to the uninterrupted one and SAVE.work is gone; the
#    report's seconds add up the runs that saved them (every stop), each
#    stop's share under its own wall time, the seconds of the stage a run
#    stopped in staying with that stage (not with the first stage the next
#    run finishes, the original's evaluation), and its peak RSS after each stage
#    never falls from stage to stage (the peak when the stage first finished);
#  - a crash inside the RoRoPE fit (parallel and sequential schedules) and
#    the attention fit: the next run loads the fitted layers, starts from
#    the streams saved at the crashed layer's input (loading the layers
#    before it without moving the streams through them) and ends
#    bit-identical;
#  - 4 ranks (2 stages x 2 replicas) under mpirun, SIGTERM to every rank as
#    Slurm sends it, twice: bit-identical to the uninterrupted 4-rank run;
#    then a crash in the second stage's attention fit: the first stage's
#    replicas load all their layers and the streams at its end, and the run
#    ends bit-identical;
#  - the state is HDF5 readable by h5dump; another conversion's state (other
#    kv_lora_rank, other rank count) is refused naming the field, and
#    --resume never discards it; a damaged state file is named in the error.
# usage: convert_resume.sh TRANSMLA PYTHON MPIEXEC
set -u
bin=$1 py=$2 mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../data/models/stories260K
work=$(mktemp -d)
trap 'pkill -KILL -f "^$bin convert .*$work" 2>/dev/null; rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
. "$here/lib.sh"

# 64 calibration windows, one per micro-batch, so every pass lasts long
# enough to be caught part-way; evaluation on 8 windows, one per micro-batch.
# The RoRoPE fit is kept short (4 windows, 10 steps), so is the attention
# fit (8 windows, 6 steps), and the published rotation's MLA is not built:
# resuming is what is tested.
args=(--model-path "$model" --cal-tokens "$model/calib.u16" --cal-max-seqlen 256 --cal-nsamples 0
      --cal-batch-size 1 --eval-tokens "$model/calib.u16" --eval-nsamples 8 --eval-batch-size 1 --ppl-seqlen 256
      --qk-mqa-dim 4 --kv-lora-rank 16 --rorope-fit-nsamples 4 --rorope-fit-steps 10
      --skip-published-mla --attn-fit-nsamples 8 --attn-fit-steps 6 --attn-fit-windows-per-step 2)
# Under the sanitizers (TM_SANITIZED) without the attention fit: its resume
# is checked there by convert_phases, and here by the release pass.
[ -n "${TM_SANITIZED:-}" ] && args+=(--fit rotation)
one() { timeout 300 "$bin" convert "${args[@]}" "$@"; }
mpi() { timeout 300 "$mpiexec" --oversubscribe --allow-run-as-root -np 4 "$bin" convert "${args[@]}" --stages 2 "$@"; }
same() { # name a b
    local out
    if out=$("$py" "$here/ref/compare_models.py" "$2" "$3" --exact 2>&1); then ok "$1: $(echo "$out" | tail -n 1)"
    else bad "$1: differs from the uninterrupted run"; echo "$out" | tail -n 4 | sed 's/^/      | /'; fi
}

# run LOG SAVE LAUNCHER WHEN SIGNAL: start a conversion, wait until its log
# has a line matching WHEN, send SIGNAL to its ranks (not to mpirun: Slurm
# signals every task itself), wait; its exit status in $rc.
run_stop() {
    local log=$1 save=$2 launcher=$3 when=$4 sig=$5 pid t0
    t0=$(date +%s.%N)
    "$launcher" --save-path "$save" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 3000); do
        grep -qE "$when" "$log" 2>/dev/null && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    pkill "-$sig" -f "^$bin convert .*--save-path $save( |$)"
    wait "$pid"
    rc=$?
    echo "$(date +%s.%N) $t0 $rc" >>"$save.walls"
}

# The seconds the stopped runs so far saved (the times marker: JSON in an
# HDF5 attribute): the finished stages' and the unfinished one's so far.
marked_seconds() { # MARKER
    [ -f "$1" ] || { echo 0; return; }
    times_marker "$1" "$py" | "$py" -c '
import json, sys
t = json.load(sys.stdin)
print(sum(v for _, v in t["seconds"]) + t["in_stage_seconds"])'
}

# ---- one process ----
ref=$work/ref
one --save-path "$ref" --quiet >"$work/ref.log" 2>&1 || { bad "uninterrupted conversion"; show "$work/ref.log"; }
save=$work/out
stops=("calibrate\[keys\]: batch 5/|TERM|75" "calibrate\[latent\]: batch 20/|USR1|75"
       "calibrate\[latent\]: resuming at batch|TERM|75" "eval\[mla\]: batch 1/|TERM|75"
       "calibrate\[kv-norm\]: batch 10/|KILL|137")
i=0
for s in "${stops[@]}"; do
    IFS='|' read -r when sig want <<<"$s"
    i=$((i + 1))
    run_stop "$work/one-$i.log" "$save" one "$when" "$sig"
    if [ "$rc" -eq "$want" ] && [ -d "$save.work" ] && [ ! -e "$save" ]; then
        ok "SIG$sig at '${when//\\/}': exit $rc, $(find "$save.work" -name '*.h5' | wc -l) state files, no output"
    else bad "SIG$sig at '${when//\\/}': exit $rc (wanted $want), output $(ls -d "$save" 2>&1)"; show "$work/one-$i.log"; fi
    if [ "$want" = 75 ] && ! grep -q "stopped (signal" "$work/one-$i.log"; then bad "run $i: no 'stopped' line"; fi
    marked_seconds "$save.work/times.done.h5" >>"$save.marks"
    [ "$want" = 75 ] && times_marker "$save.work/times.done.h5" "$py" >"$save.marker-$i"
done
t0=$(date +%s.%N)
one --save-path "$save" >"$work/one-last.log" 2>&1 || { bad "the last resumed run failed"; show "$work/one-last.log"; }
echo "$(date +%s.%N) $t0 0" >>"$save.walls"
# the report's seconds cover every run that saved its times (the stops, not
# the SIGKILL): the same stages as the uninterrupted run's, in its order;
# each stop adds to the saved seconds more than nothing and less than its
# own wall time, the SIGKILL adds nothing, and the report adds the last
# run's own seconds (under its wall time) to them. Bounds by each run's own
# wall time hold however loaded the machine is.
"$py" - "$ref" "$save" "$save.walls" "$save.marks" "$save.marker-2" "$save.marker-3" >"$work/times.txt" <<'EOF' && ok "times over 5 runs: $(cat "$work/times.txt")" || { bad "the resumed report's times"; cat "$work/times.txt"; }
import json, sys
a, b = (json.load(open(p + '/transmla_report.json'))['seconds'] for p in sys.argv[1:3])
rep = json.load(open(sys.argv[2] + '/transmla_report.json'))
walls = [(float(t1) - float(t0), int(rc)) for t1, t0, rc in (l.split() for l in open(sys.argv[3]))]
marks = [0.0] + [float(x) for x in open(sys.argv[4])]
total = sum(b.values())
assert list(a) == list(b), (list(a), list(b))  # the same stages, in the order they ran
assert rep['resume']['runs'] == 5, rep['resume']
for (w, rc), before, after in zip(walls, marks, marks[1:]):
    assert (before < after < before + w) if rc == 75 else after == before, (walls, marks)
assert marks[-1] < total < marks[-1] + walls[-1][0], (total, marks, walls)
# run 3, stopped as soon as it resumed the latent pass, still counts run 2's
# seconds in that pass as the pass's (they are not the re-run evaluation's)
m2, m3 = (json.load(open(p)) for p in sys.argv[5:7])
assert m3['in_stage_seconds'] >= m2['in_stage_seconds'] > 0, (m2, m3)
# the peak RSS after each stage is a running peak over the runs, recorded
# when a stage first finished: the same stages, never falling
peaks = rep['peak_rss_after']
assert list(peaks) == list(b), (list(peaks), list(b))
assert all(x <= y for x, y in zip(list(peaks.values()), list(peaks.values())[1:])), peaks
print(f"{total:.1f} s in the stages; saved after each stop: {', '.join('%.1f' % m for m in marks[1:])} s; in the latent pass at stops 2 and 3: {m2['in_stage_seconds']:.2f}, {m3['in_stage_seconds']:.2f} s; report.resume.runs 5")
EOF
# what each resumed run said it skipped
expect_line() { # log pattern what
    if grep -qE "$2" "$1"; then ok "$3: $(grep -E "$2" "$1" | head -n 1)"; else bad "$3: no line matching '$2'"; show "$1"; fi
}
expect_line "$work/one-2.log" "calibrate\[keys\]: resuming at batch [0-9]+/64" "run 2 resumes the key pass"
expect_line "$work/one-3.log" "resume: rorope-fit done before.*rorope-fit.layer" "run 3 skips RoRoPE's fitted layers"
expect_line "$work/one-3.log" "calibrate\[latent\]: resuming at batch" "run 3 resumes the latent pass"
expect_line "$work/one-5.log" "eval\[mla\]: resuming at batch" "run 5 resumes eval[mla]"
expect_line "$work/one-last.log" "resume: bkv-pca done before" "the last run skips BKV-PCA's layers"
expect_line "$work/one-last.log" "calibrate\[kv-norm\]: (resuming|batch 1/)" "the last run redoes or resumes the kv-norm pass"
same "1 process, stopped 4 times and killed once" "$ref" "$save"
# a crash between two layers of a per-layer step (a test hook kills rank 0
# right after it saved BKV-PCA's layer 3 of 5): the next run loads layers 1-3
save=$work/layers
TRANSMLA_INJECT_FAILURE=bkv-pca:layer2:0 one --save-path "$save" >"$work/layers-1.log" 2>&1
grep -q "injected failure at bkv-pca:layer2" "$work/layers-1.log" || { bad "the injected crash did not happen"; show "$work/layers-1.log"; }
one --save-path "$save" >"$work/layers-2.log" 2>&1 || { bad "the run after the crash failed"; show "$work/layers-2.log"; }
n=$(grep -cE "^bkv-pca: layer [1-3]/5 .*done before, loaded from the state" "$work/layers-2.log")
m=$(grep -cE "^bkv-pca: layer [45]/5 \(rank 0\)$" "$work/layers-2.log")
if [ "$n" -eq 3 ] && [ "$m" -eq 2 ]; then ok "after a crash at BKV-PCA layer 3: layers 1-3 loaded, 4-5 computed ($(grep -m1 "done before, loaded" "$work/layers-2.log"))"
else bad "after a crash at BKV-PCA layer 3: $n layers loaded (want 3), $m computed (want 2)"; show "$work/layers-2.log" 30; fi
same "1 process, crashed between BKV-PCA's layers" "$ref" "$save"
if [ -e "$save.work" ]; then bad "$save.work left after success"; else ok "the work folder is removed after success"; fi
"$py" - "$ref" "$save" <<'EOF' && ok "perplexities in the reports are equal" || bad "perplexities differ"
import json, sys
a, b = (json.load(open(p + '/transmla_report.json')) for p in sys.argv[1:])
assert a['ppl'] == b['ppl'], (a['ppl'], b['ppl'])
assert b['resume']['continued'] is True and a['resume']['continued'] is False
EOF

# a crash in the RoRoPE fit (after layer 3's rotation is saved): the next run
# loads fitted layers 1-3 and fits 4-5; for both schedules (sequential moves
# its stream through the loaded layers' converted output)
for sched in parallel sequential; do
    ref_s=$ref
    if [ "$sched" = sequential ]; then
        ref_s=$work/ref-seq
        one --save-path "$ref_s" --quiet --rorope-fit-schedule sequential >"$work/ref-seq.log" 2>&1 || { bad "uninterrupted sequential fit"; show "$work/ref-seq.log"; }
    fi
    save=$work/fit-$sched
    TRANSMLA_INJECT_FAILURE=rorope-fit:layer2:0 one --save-path "$save" --rorope-fit-schedule "$sched" >"$work/fit-$sched-1.log" 2>&1
    grep -q "injected failure at rorope-fit:layer2" "$work/fit-$sched-1.log" || { bad "$sched: the injected fit crash did not happen"; show "$work/fit-$sched-1.log"; }
    one --save-path "$save" --rorope-fit-schedule "$sched" >"$work/fit-$sched-2.log" 2>&1 || { bad "$sched: the run after the fit crash failed"; show "$work/fit-$sched-2.log"; }
    n=$(grep -cE "^rorope-fit: layer [1-3]/5 .*done before, loaded from the state" "$work/fit-$sched-2.log")
    m=$(grep -cE "^rorope-fit: layer [45]/5 \(rank 0, 1 replicas\)$" "$work/fit-$sched-2.log")
    if [ "$n" -eq 3 ] && [ "$m" -eq 2 ]; then ok "$sched fit, crash at layer 3: layers 1-3 loaded, 4-5 fitted"
    else bad "$sched fit, crash at layer 3: $n layers loaded (want 3), $m fitted (want 2)"; show "$work/fit-$sched-2.log" 30; fi
    expect_line "$work/fit-$sched-2.log" "^rorope-fit: the saved streams stand at layer 3's input: layers 1-2 are loaded" \
        "$sched fit: the stream resumes at layer 3"
    same "1 process, crashed between the $sched fit's layers" "$ref_s" "$save"
done

# a crash in the attention fit (after layer 3 is saved): the next run loads
# fitted layers 1-3, moves the sequential stream through them, fits 4-5
if [ -z "${TM_SANITIZED:-}" ]; then
save=$work/attn-fit
TRANSMLA_INJECT_FAILURE=attn-fit:layer2:0 one --save-path "$save" >"$work/attn-fit-1.log" 2>&1
grep -q "injected failure at attn-fit:layer2" "$work/attn-fit-1.log" || { bad "the injected attention-fit crash did not happen"; show "$work/attn-fit-1.log"; }
one --save-path "$save" >"$work/attn-fit-2.log" 2>&1 || { bad "the run after the attention-fit crash failed"; show "$work/attn-fit-2.log"; }
n=$(grep -cE "^attn-fit: layer [1-3]/5 .*done before, loaded from the state" "$work/attn-fit-2.log")
m=$(grep -cE "^attn-fit: layer [45]/5 \(rank 0, 1 replicas\)$" "$work/attn-fit-2.log")
if [ "$n" -eq 3 ] && [ "$m" -eq 2 ]; then ok "attention fit, crash at layer 3: layers 1-3 loaded, 4-5 fitted"
else bad "attention fit, crash at layer 3: $n layers loaded (want 3), $m fitted (want 2)"; show "$work/attn-fit-2.log" 30; fi
expect_line "$work/attn-fit-2.log" "^attn-fit: the saved streams stand at layer 3's input: layers 1-2 are loaded" \
    "attention fit: both streams resume at layer 3"
same "1 process, crashed between the attention fit's layers" "$ref" "$save"
fi

# ---- 4 ranks: 2 stages x 2 replicas ----
ref4=$work/ref4
mpi --save-path "$ref4" --quiet >"$work/ref4.log" 2>&1 || { bad "uninterrupted 4-rank conversion"; show "$work/ref4.log"; }
save=$work/out4
run_stop "$work/mpi-1.log" "$save" mpi "calibrate\[keys\]: batch 8/" TERM
[ "$rc" -ne 0 ] && [ -d "$save.work" ] && [ ! -e "$save" ] && ok "4 ranks: SIGTERM mid calibrate[keys]: exit $rc, state saved" \
    || { bad "4 ranks: stop 1: exit $rc"; show "$work/mpi-1.log"; }
n=$(find "$save.work" -name 'calib-keys.rank*.h5' | wc -l)
[ "$n" -eq 4 ] && ok "4 ranks: one pass file per rank" || bad "4 ranks: $n calib-keys pass files, not 4"
run_stop "$work/mpi-2.log" "$save" mpi "calibrate\[latent\]: batch 10/" TERM
mpi --save-path "$save" >"$work/mpi-3.log" 2>&1 || { bad "4 ranks: the resumed run failed"; show "$work/mpi-3.log"; }
expect_line "$work/mpi-2.log" "calibrate\[keys\]: resuming at batch" "4 ranks: run 2 resumes the key pass"
expect_line "$work/mpi-3.log" "resume: rorope-fit done before" "4 ranks: run 3 skips RoRoPE and its fit"
same "4 ranks, stopped twice" "$ref4" "$save"
if [ -z "${TM_SANITIZED:-}" ]; then
# rank 1 (stage 1's first replica: ranks alternate stages) crashes after
# saving layer 4, its stage's first; stage 0 (layers 1-3) had saved both
# streams at its end
save=$work/attn-fit4
TRANSMLA_INJECT_FAILURE=attn-fit:layer3:1 mpi --save-path "$save" >"$work/attn-fit4-1.log" 2>&1
grep -q "injected failure at attn-fit:layer3" "$work/attn-fit4-1.log" || { bad "4 ranks: the injected attention-fit crash did not happen"; show "$work/attn-fit4-1.log"; }
mpi --save-path "$save" >"$work/attn-fit4-2.log" 2>&1 || { bad "4 ranks: the run after the attention-fit crash failed"; show "$work/attn-fit4-2.log"; }
expect_line "$work/attn-fit4-2.log" "^attn-fit: the saved streams stand at layer 4's input: layers 1-3 are loaded" \
    "4 ranks: stage 0 resumes from the streams at its end"
same "4 ranks, crashed in the second stage's attention fit" "$ref4" "$save"
fi

# ---- the state file and refusals ----
save=$work/other
run_stop "$work/other-1.log" "$save" one "calibrate\[keys\]: batch 3/" TERM
if h5dump -A "$save.work/state.h5" 2>&1 | grep -q fingerprint && h5dump -H "$save.work/calib-keys.rank00000.h5" >/dev/null 2>&1
then ok "h5dump reads state.h5 and a pass file"; else bad "h5dump cannot read the state"; fi
refuse() { # name pattern command...
    local name=$1 pat=$2 out rc; shift 2
    out=$("$@" 2>&1); rc=$?
    if [ "$rc" -eq 1 ] && echo "$out" | grep -q "$pat"; then ok "$name: $(echo "$out" | grep -m1 "$pat" | cut -c1-220)"
    else bad "$name: exit $rc, wanted 1 and '$pat'"; echo "$out" | tail -n 3 | sed 's/^/      | /'; fi
}
refuse "other kv_lora_rank" "state.h5: saved progress of a different conversion (kv_lora_rank was 16, now 8)" \
    one --save-path "$save" --kv-lora-rank 8
refuse "other rank count" "state.h5: saved progress of a different conversion (ranks was 1, now 4)" \
    mpi --save-path "$save"
printf 'garbage' >"$save.work/eval-original.rank00000.h5"
refuse "damaged state file" "eval-original.rank00000.h5: not an HDF5 file" one --save-path "$save"
if one --save-path "$save" --kv-lora-rank 8 --resume never --quiet >"$work/never.log" 2>&1 && [ -d "$save" ] && [ ! -e "$save.work" ]
then ok "--resume never discards another conversion's state and converts"; else bad "--resume never"; show "$work/never.log"; fi

echo "convert_resume: $fails failure(s)"
[ "$fails" -eq 0 ]
