#!/usr/bin/env bash
# A rank killed in the middle of a checkpoint save (2 ranks = 2 stages under
# mpirun): rank 1 dies half-way through writing its datasets
# (TRANSMLA_INJECT_FAILURE=checkpoint-write:1; mpirun then ends the job).
# Afterwards the previous checkpoint is untouched (it loads bit for bit and
# is the newest complete one), no checkpoint-20.h5 exists, only a temporary,
# and the next successful save removes that temporary. The files are read by
# HDF5's own tools too: h5dump -H lists the layout and attributes, and the
# raw bytes h5dump extracts from a dataset are the generator's.
# usage: checkpoint_crash.sh TEST_CHECKPOINT MPIEXEC
set -u
prog=$1 mpiexec=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dir=$work/ckpt
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
show() { tail -n "${2:-8}" "$1" | sed 's/^/      | /'; }
mpi() { timeout 60 "$mpiexec" --oversubscribe --allow-run-as-root -np 2 "$prog" "$@"; }

if mpi save "$dir" 10 1 >"$work/save10.log" 2>&1; then ok "checkpoint 10 saved"
else bad "saving checkpoint 10"; show "$work/save10.log"; fi

TRANSMLA_INJECT_FAILURE=checkpoint-write:1 mpi save "$dir" 20 1 >"$work/save20.log" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && [ "$rc" -ne 124 ] && grep -q "injected failure at checkpoint-write" "$work/save20.log"; then
    ok "rank 1 died mid-write (mpirun exit $rc)"
else
    bad "the injected failure did not end the save (exit $rc)"; show "$work/save20.log"
fi
[ ! -e "$dir/checkpoint-20.h5" ] && ok "no checkpoint-20.h5" || bad "checkpoint-20.h5 exists after the crash"
tmps=$(ls -A "$dir" | grep -c '^\.checkpoint-20\.h5\.tmp-')
[ "$tmps" -eq 1 ] && ok "the crash left one temporary" || bad "$tmps temporaries after the crash: $(ls -A "$dir")"

if mpi check "$dir" 10 >"$work/check10.log" 2>&1; then ok "checkpoint 10 is the newest and loads bit for bit"
else bad "checkpoint 10 after the crash"; show "$work/check10.log"; fi

if h5dump -H "$dir/checkpoint-10.h5" >"$work/h5dump.txt" 2>&1 &&
    grep -q 'GROUP "params"' "$work/h5dump.txt" && grep -q 'GROUP "adam_v"' "$work/h5dump.txt" &&
    grep -q 'DATASET "lm_head.weight"' "$work/h5dump.txt" && grep -q 'ATTRIBUTE "step"' "$work/h5dump.txt" &&
    grep -q 'DATASPACE  SIMPLE { ( 37, 16 ) / ( 37, 16 ) }' "$work/h5dump.txt" &&
    grep -q 'H5T_IEEE_F32LE' "$work/h5dump.txt"; then
    ok "h5dump -H reads checkpoint-10.h5"
else
    bad "h5dump -H on checkpoint-10.h5"; show "$work/h5dump.txt" 20
fi
# h5dump, not our reader, extracts the bytes of two datasets (one per stage)
for name in model.layers.0.self_attn.q_proj.weight lm_head.weight; do
    if h5dump -d "/params/$name" -b LE -o "$work/$name.h5dump.bin" "$dir/checkpoint-10.h5" >/dev/null 2>&1 &&
        "$prog" raw "$name" 10 "$work/$name.want.bin" >/dev/null 2>&1 &&
        cmp -s "$work/$name.h5dump.bin" "$work/$name.want.bin"; then
        ok "h5dump's bytes of /params/$name are the generator's"
    else
        bad "h5dump's bytes of /params/$name"
    fi
done

if mpi save "$dir" 30 1 >"$work/save30.log" 2>&1; then ok "checkpoint 30 saved after the crash"
else bad "saving checkpoint 30"; show "$work/save30.log"; fi
left=$(ls -A "$dir" | tr '\n' ' ')
[ "$left" = "checkpoint-30.h5 " ] && ok "the temporary and checkpoint 10 are gone" || bad "folder holds: $left"
if mpi check "$dir" 30 >"$work/check30.log" 2>&1; then ok "checkpoint 30 loads bit for bit"
else bad "checkpoint 30"; show "$work/check30.log"; fi

[ "$fails" -eq 0 ] && echo "checkpoint_crash: all passed" || echo "checkpoint_crash: $fails failed"
[ "$fails" -eq 0 ]
