#!/usr/bin/env bash
# Resume from every phase boundary (issue 18): a conversion stopped (SIGTERM)
# or killed (SIGKILL) at each boundary in turn — after the original's
# evaluation, RoRoPE, the fit, BKV-PCA, eval[mla], the kv-norm fit, the
# attention fit, half-way
# through the export (shards written, no index), after the export, after the
# last evaluation, before and after the final rename — is run again each
# time, and the chain ends with the model an uninterrupted run makes, bit for
# bit, with SAVE.work gone and nothing else left beside the output. On one
# process (with and without the fits), on 2 stages x 2 replicas, and on the
# qwen3 fixture (its QK-norm fold is saved after RoRoPE and read back by the
# phases after it).
# Before the fix every rerun after the kv-norm phase failed with
# "SAVE.work/rorope-fit.layer00000.h5: cannot open" (the kv-norm phase
# deleted BKV-PCA's marker with its layer files).
# usage: convert_phases.sh TRANSMLA PYTHON MPIEXEC FIXTURES_DIR
set -u
bin=$1 py=$2 mpiexec=$3 fixtures=$4
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../data/models/stories260K
work=$(mktemp -d)
trap 'pkill -KILL -f "^$bin convert .*$work" 2>/dev/null; rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
. "$here/lib.sh"

# small and fast: every phase runs (freqfold search, fit, kv-norm fit)
args=(--model-path "$model" --cal-tokens "$model/calib.u16" --cal-max-seqlen 128 --cal-nsamples 8
      --cal-batch-size 4 --eval-tokens "$model/eval.u16" --eval-nsamples 4 --eval-batch-size 2 --ppl-seqlen 128
      --qk-mqa-dim 4 --kv-lora-rank 16 --rorope-fit-nsamples 4 --rorope-fit-steps 5 --skip-published-mla
      --attn-fit-steps 4 --attn-fit-windows-per-step 4)
one() { timeout 120 "$bin" convert "${args[@]}" "$@"; }
mpi() { timeout 120 "$mpiexec" --oversubscribe --allow-run-as-root -np 4 "$bin" convert "${args[@]}" --stages 2 "$@"; }
boundaries=(eval-original rorope rorope-fit bkv-pca eval-mla kv-norm attn-fit export-shards export eval-mla-native finished
            renamed)

same() { # name a b
    local out
    if out=$("$py" "$here/ref/compare_models.py" "$2" "$3" --exact 2>&1) &&
       "$py" -c 'import json,sys; a,b=(json.load(open(p+"/transmla_report.json"))["ppl"] for p in sys.argv[1:]); assert a==b,(a,b)' "$2" "$3"
    then ok "$1: bit-identical to the uninterrupted run, same perplexities"
    else bad "$1: differs from the uninterrupted run"; echo "$out" | tail -n 4 | sed 's/^/      | /'; fi
}

# chain NAME LAUNCHER SIGNAL RANK: one run per boundary, each started on the
# state the one before left, each ending at its boundary by SIGNAL on RANK.
chain() {
    local name=$1 launcher=$2 sig=$3 rank=$4 save=$work/$1 i=0 rc b want
    for b in "${boundaries[@]}"; do
        i=$((i + 1))
        want=nonzero
        [ "$sig" = TERM ] && want=75
        [ "$sig" = KILL ] && [ "$launcher" = one ] && want=137
        # a stop after the last evaluation is not taken: the rest is a rename
        if [ "$sig" = TERM ] && { [ "$b" = finished ] || [ "$b" = renamed ]; }; then want=0; fi
        (export TRANSMLA_INJECT_FAILURE="boundary:$b:$rank" "TRANSMLA_INJECT_SIG$sig=1"
         "$launcher" --save-path "$save" >"$work/$name-$i.log" 2>&1)
        rc=$?
        # mpirun reports a rank's SIGKILL in its own way: any failure but a timeout or a missing command
        if { [ "$want" = nonzero ] && [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && [ "$rc" -ne 127 ]; } || [ "$rc" = "$want" ]; then
            ok "$name: SIG$sig at $b: exit $rc"
        else bad "$name: SIG$sig at $b: exit $rc (wanted $want)"; show "$work/$name-$i.log"; fi
        [ "$want" = 0 ] && break
        if [ -e "$save" ] && [ "$b" != renamed ]; then bad "$name: an output appeared before the rename ($b)"; fi
    done
    if [ ! -e "$save.work" ] && [ -d "$save" ]; then ok "$name: finished by the stop at $b"
    elif "$launcher" --save-path "$save" >"$work/$name-last.log" 2>&1; then ok "$name: the last rerun finished"
    else bad "$name: the last rerun failed"; show "$work/$name-last.log"; fi
    if [ "$sig" = KILL ] && ! grep -q "resume: .* is complete" "$work/$name-last.log"; then
        bad "$name: the rerun after a kill past the rename did not say the output was complete"; show "$work/$name-last.log"
    fi
    local left
    left=$(cd "$work" && ls -d "$name"* | grep -v -x "$name" | grep -v "\.log$")
    if [ -z "$left" ]; then ok "$name: nothing left beside the output"; else bad "$name: left beside the output: $left"; fi
    same "$name" "$5" "$save"
}

one --save-path "$work/ref1" >"$work/ref1.log" 2>&1 || { bad "uninterrupted conversion"; show "$work/ref1.log"; }
chain one-term one TERM 0 "$work/ref1"
chain one-kill one KILL 0 "$work/ref1"
grep -q "resume: the export was written before" "$work"/one-kill-*.log && ok "a rerun after the export keeps it" ||
    bad "no rerun kept the finished export"
# the published method (no fit): its rotations are the layers the phases after RoRoPE start from
nofit() { one --fit none "$@"; }
nofit --save-path "$work/ref0" >"$work/ref0.log" 2>&1 || { bad "uninterrupted conversion without the fit"; show "$work/ref0.log"; }
chain nofit-kill nofit KILL 0 "$work/ref0"

# qwen3: the fold (per-head mean 1/rms) is computed with the key statistics and read back after a kill
"$py" -c "import numpy as np; np.random.default_rng(5).integers(0, 80, 8 * 64).astype('<u2').tofile('$work/q3.u16')"
q3() { timeout 120 "$bin" convert --model-path "$fixtures/qwen3" --cal-tokens "$work/q3.u16" --cal-max-seqlen 64 --cal-nsamples 8 \
    --eval-tokens "$work/q3.u16" --ppl-seqlen 64 --qk-mqa-dim 4 --kv-lora-rank 12 --rorope-fit-steps 5 \
    --skip-published-mla --attn-fit-steps 4 --attn-fit-windows-per-step 2 "$@"; }
q3 --save-path "$work/refq3" >"$work/refq3.log" 2>&1 || { bad "uninterrupted qwen3 conversion"; show "$work/refq3.log"; }
chain qwen3-kill q3 KILL 0 "$work/refq3"

mpi --save-path "$work/ref4" >"$work/ref4.log" 2>&1 || { bad "uninterrupted 4-rank conversion"; show "$work/ref4.log"; }
chain mpi-term mpi TERM 3 "$work/ref4"
chain mpi-kill mpi KILL 0 "$work/ref4"

echo "convert_phases: $fails failure(s)"
[ "$fails" -eq 0 ]
