#!/usr/bin/env bash
# Write failures end cleanly (issue 18): each writer on a small tmpfs that
# fills up, on 1 and 2 ranks:
#  - convert's state (SAVE.work), convert's export (SAVE.work/export's
#    safetensors), finetune's checkpoints, tokenize --output (one process:
#    tokenize does not run under MPI);
#  - every failing run exits 1 (no signal, no hang: each command runs under
#    timeout), prints exactly one "transmla: error:" line naming the disk's
#    complaint, and no HDF5 error stack, crash report or other noise;
#  - nothing that looks complete is left: no SAVE folder, no final
#    checkpoint or token set, no temporary other than .tmp-* (and, for
#    convert, the resumable SAVE.work);
#  - given space (the tmpfs grown in place), the same command ends with
#    what an uninterrupted run makes: the same weights bit for bit, the same
#    perplexities / loss curve, the same token set;
#  - a damaged token set gives one error line, no HDF5 noise at exit.
# Needs root to mount the tmpfs; without it the test reports itself skipped (77).
# usage: write_failures.sh TRANSMLA PYTHON MPIEXEC
set -u
bin=$1 py=$2 mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../data/models/stories260K
blm=$here/../data/models/bytelm-dev
wiki=$here/../../shared/data/wikitext-2
work=$(mktemp -d)
disk=$work/disk
mkdir "$disk"
if ! mount -t tmpfs -o size=64m tmpfs "$disk" 2>/dev/null; then
    echo "write_failures: cannot mount a tmpfs here (needs root): skipped"
    rm -rf "$work"
    exit 77
fi
trap 'umount "$disk" 2>/dev/null; rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
. "$here/lib.sh"

# an empty disk of SIZE, or the same disk grown (or shrunk) to SIZE
fresh() { umount "$disk" && mount -t tmpfs -o "size=$1" tmpfs "$disk"; }
resize() { mount -o "remount,size=$1" "$disk"; }
used_kb() { df -k --output=used "$disk" | tail -n 1 | tr -d ' '; }

# launch NP COMMAND...: one process, or NP ranks under mpirun; 120 s at most
launch() {
    local np=$1; shift
    if [ "$np" = 1 ]; then timeout 120 "$bin" "$@"
    else timeout 120 "$mpiexec" --oversubscribe --allow-run-as-root -np "$np" "$bin" "$@"; fi
}

# what must not be printed: HDF5's error stack or its complaints at exit,
# crash reports (Open MPI's, the sanitizers')
noise='HDF5|infinite loop|segmentation|signal|backtrace|\*\*\*|runtime error|Sanitizer'

# failed NAME RC LOG PATTERN: the run failed as a full disk should
failed() {
    local name=$1 rc=$2 log=$3 pat=$4 n
    n=$(grep -c '^transmla: error: ' "$log")
    if [ "$rc" -ne 1 ]; then bad "$name: exit $rc (wanted 1: no signal, no hang)"; show "$log"; return
    fi
    if [ "$n" -ne 1 ]; then bad "$name: $n error lines (wanted 1)"; show "$log" 12; return; fi
    if grep -v '^transmla: error: ' "$log" | grep -qiE "$noise"; then
        bad "$name: noise besides the error line"; grep -iE "$noise" "$log" | head -n 4 | sed 's/^/      | /'; return
    fi
    if ! grep '^transmla: error: ' "$log" | grep -qE "$pat"; then bad "$name: error line does not match '$pat'"; show "$log"; return; fi
    ok "$name: exit $rc, $(grep '^transmla: error: ' "$log" | cut -c1-200)"
}

# nothing_complete NAME PATH...: none of these exist
nothing_complete() {
    local name=$1 p left=""; shift
    for p in "$@"; do [ -e "$p" ] && left="$left $p"; done
    if [ -n "$left" ]; then bad "$name: left behind:$left"; else ok "$name: nothing complete-looking left"; fi
}

# temps_only NAME DIR ALLOWED_REGEX: every entry of DIR matches the regex
temps_only() {
    local name=$1 dir=$2 allowed=$3 other
    other=$(ls -A "$dir" | grep -vE "$allowed" | tr '\n' ' ')
    if [ -n "$other" ]; then bad "$name: unexpected files in $dir: $other"
    elif [ -z "$(ls -A "$dir")" ]; then ok "$name: $dir is empty"
    else ok "$name: only $(ls -A "$dir" | tr '\n' ' ')left"; fi
}

same_model() { # name a b
    local out
    if out=$("$py" "$here/ref/compare_models.py" "$2" "$3" --exact 2>&1); then ok "$1: $(echo "$out" | tail -n 1)"
    else bad "$1: differs from the uninterrupted run"; echo "$out" | tail -n 4 | sed 's/^/      | /'; fi
}

same_ppl() { # name a b: the conversion reports' perplexities
    if "$py" - "$2" "$3" <<'EOF'; then ok "$1: perplexities equal"; else bad "$1: perplexities differ"; fi
import json, sys
a, b = (json.load(open(p + '/transmla_report.json')) for p in sys.argv[1:])
assert a['ppl'] == b['ppl'], (a['ppl'], b['ppl'])
EOF
}

# a short conversion of stories260K: 8 calibration windows, 2 evaluated, a
# 10-step RoRoPE fit; about 3 s on one core
conv=(convert --model-path "$model" --cal-tokens "$model/calib.u16" --cal-max-seqlen 256 --cal-nsamples 8
      --cal-batch-size 1 --eval-tokens "$model/calib.u16" --eval-nsamples 2 --eval-batch-size 1 --ppl-seqlen 256
      --qk-mqa-dim 4 --kv-lora-rank 16 --rorope-fit-nsamples 4 --rorope-fit-steps 10 --skip-published-mla
      --attn-fit-steps 4 --quiet)

for np in 1 2; do
    ref=$work/ref$np
    launch "$np" "${conv[@]}" --save-path "$ref" >"$work/ref$np.log" 2>&1 || { bad "np $np: uninterrupted conversion"; show "$work/ref$np.log"; }

    # ---- convert state: the disk fills while SAVE.work is written ----
    fresh 160k
    save=$disk/out
    launch "$np" "${conv[@]}" --save-path "$save" >"$work/state$np.log" 2>&1
    failed "np $np: convert state on a full disk" $? "$work/state$np.log" "out\.work/.*No space left on device"
    nothing_complete "np $np: convert state" "$save"
    temps_only "np $np: convert state" "$disk" '^out\.work$'
    temps_only "np $np: convert state" "$save.work" '\.h5$'
    resize 64m
    launch "$np" "${conv[@]}" --save-path "$save" >"$work/state$np-2.log" 2>&1 || { bad "np $np: the rerun with space failed"; show "$work/state$np-2.log"; }
    same_model "np $np: convert state, rerun with space" "$ref" "$save"
    same_ppl "np $np: convert state, rerun with space" "$ref" "$save"
    [ ! -e "$save.work" ] || bad "np $np: $save.work left after success"

    # ---- convert export: the state is complete, the safetensors do not fit ----
    fresh 64m
    TRANSMLA_INJECT_FAILURE=export:0 launch "$np" "${conv[@]}" --save-path "$save" >"$work/inject$np.log" 2>&1
    grep -q "injected failure at export" "$work/inject$np.log" || { bad "np $np: the injected stop before export did not happen"; show "$work/inject$np.log"; }
    resize "$(($(used_kb) + 300))k" # room for a third of model.safetensors
    launch "$np" "${conv[@]}" --save-path "$save" >"$work/export$np.log" 2>&1
    failed "np $np: convert export on a full disk" $? "$work/export$np.log" "out\.work/export/.*(No space left on device|cannot write)"
    nothing_complete "np $np: convert export" "$save"
    temps_only "np $np: convert export" "$disk" '^out\.work$'
    resize 64m
    launch "$np" "${conv[@]}" --save-path "$save" >"$work/export$np-2.log" 2>&1 || { bad "np $np: the export rerun with space failed"; show "$work/export$np-2.log"; }
    same_model "np $np: convert export, rerun with space" "$ref" "$save"
    same_ppl "np $np: convert export, rerun with space" "$ref" "$save"
done

# ---- finetune checkpoints: checkpoint-2 fits, checkpoint-4 does not ----
# stories260K converted above; a checkpoint of it is 3.2 MB (weights and
# both Adam moments)
ft=(finetune --model-path "$work/ref1" --tokens "$model/calib.u16" --seq-len 32 --learning-rate 1e-3
    --max-steps 4 --save-steps 2 --logging-steps 100)
# ckpt_case NP HOW PATTERN [VAR=VALUE...]: on a 6 MB disk checkpoint-2 fits,
# checkpoint-4 does not; the rerun with space resumes from checkpoint-2
ckpt_case() {
    local np=$1 how=$2 pat=$3 save=$disk/ft; shift 3
    fresh 6m
    (for kv in "$@"; do export "${kv?}"; done; launch "$np" "${ft[@]}" --save-path "$save") >"$work/ckpt$np.log" 2>&1
    failed "np $np: checkpoint on a full disk, $how" $? "$work/ckpt$np.log" "$pat"
    nothing_complete "np $np: checkpoint, $how" "$save/checkpoint-4.h5" "$save/config.json" "$save/model.safetensors"
    temps_only "np $np: checkpoint, $how" "$save" '^checkpoint-2\.h5$|^metrics\.jsonl$'
    resize 64m
    launch "$np" "${ft[@]}" --save-path "$save" >"$work/ckpt$np-2.log" 2>&1 || { bad "np $np: the fine-tune rerun with space failed"; show "$work/ckpt$np-2.log"; }
    grep -q "resuming from .*checkpoint-2.h5" "$work/ckpt$np-2.log" && ok "np $np, $how: the rerun resumes from checkpoint-2" \
        || { bad "np $np, $how: the rerun did not resume from checkpoint-2"; show "$work/ckpt$np-2.log"; }
    same_model "np $np, $how: fine-tune, rerun with space" "$work/ft$np" "$save"
    if "$py" "$here/ref/compare_curves.py" "$work/ft$np/metrics.jsonl" "$save/metrics.jsonl" --exact >"$work/curves$np.log" 2>&1
    then ok "np $np, $how: fine-tune, rerun with space: the same loss curve"; else bad "np $np, $how: loss curves differ"; show "$work/curves$np.log"; fi
}
for np in 1 2; do
    launch "$np" "${ft[@]}" --save-path "$work/ft$np" >"$work/ft$np.log" 2>&1 || { bad "np $np: uninterrupted fine-tune"; show "$work/ft$np.log"; }
    ckpt_case "$np" "space reserved" "checkpoint-4\.h5: cannot reserve .*No space left on device"
    # as on a file system without fallocate: the write itself fails
    ckpt_case "$np" "no reservation" "checkpoint-4\.h5: writing dataset .*" TRANSMLA_CKPT_NO_RESERVE=1
done

# ---- tokenize --output (one process) ----
tok=(tokenize --quiet --tokenizer "$blm" --dataset wikitext2 --data-path "$wiki" --split test)
launch 1 "${tok[@]}" --output "$work/test.h5" >"$work/tok-ref.log" 2>&1 || { bad "uninterrupted tokenize"; show "$work/tok-ref.log"; }
fresh 64k
launch 1 "${tok[@]}" --output "$disk/test.h5" >"$work/tok.log" 2>&1
failed "token set on a full disk" $? "$work/tok.log" "test\.h5: .*No space left on device"
nothing_complete "token set" "$disk/test.h5"
temps_only "token set" "$disk" '^test\.h5\.tmp-'
resize 64m
launch 1 "${tok[@]}" --output "$disk/test.h5" >"$work/tok-2.log" 2>&1 || { bad "the tokenize rerun with space failed"; show "$work/tok-2.log"; }
# HDF5 stores creation times: the contents are compared, not the bytes
if diff <(h5dump "$work/test.h5" | tail -n +2) <(h5dump "$disk/test.h5" | tail -n +2) >/dev/null
then ok "token set, rerun with space: the same contents (h5dump)"; else bad "token set: the rerun's contents differ"; fi

# ---- a damaged token set: one line, no HDF5 noise when the library closes ----
cp "$work/test.h5" "$work/damaged.h5"
"$py" - "$work/damaged.h5" <<'EOF'
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
for i in range(800, 4000):  # object headers and the chunk index
    b[i] ^= 0x5a
open(p, 'wb').write(b)
EOF
launch 1 eval --model-path "$blm" --tokens "$work/damaged.h5" --seqlen 64 --nseq 1 --quiet >"$work/damaged.log" 2>&1
failed "damaged token set" $? "$work/damaged.log" "damaged\.h5: "

echo "write_failures: $fails failure(s)"
[ "$fails" -eq 0 ]
