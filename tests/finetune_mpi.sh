#!/usr/bin/env bash
# Fine-tuning across topologies and interruptions, on the dsv3_moe_softmax
# fixture (3 layers, q_lora, MoE, untied head) with a token file:
#  1. the same global batch on 1 rank, 2 replicas, 2 stages and 2 x 2 gives
#     the same loss curve (tolerance below), and the loss goes down; with
#     --recompute off (1 rank; 2 and 3 stages in 1F1B order, up to 3
#     micro-batches in flight on the first stage) the curve is
#     bit-identical to recompute's; --recompute auto (the default) keeps
#     the activations, and recomputes under a 1 MB SLURM_MEM_PER_NODE;
#  2. a 2-rank run killed with SIGKILL right after its step-10 checkpoint and
#     resumed (--resume auto) gives losses at steps 11-20 bit-identical to an
#     uninterrupted run; a run killed while writing a checkpoint leaves the
#     previous one usable, and resuming from it is bit-identical too;
#     a run with other settings refuses the checkpoint, naming the field;
#  3. SIGUSR1 makes a run finish its step, checkpoint and exit 0; the rerun
#     ends bit-identical to an uninterrupted one;
#  4. the exported model keeps the stored dtype (bf16, f16; 2 replicas and
#     2 stages): an lr 1e-30 step writes the weights back bit for bit.
# usage: finetune_mpi.sh TRANSMLA PYTHON MPIEXEC FIXTURES
set -euo pipefail
BIN=$1 PY=$2 MPIEXEC=$3 FIX=$4
SRC=$(cd "$(dirname "$0")/.." && pwd)
MODEL=$FIX/dsv3_moe_softmax
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
mpi() { local np=$1; shift; "$MPIEXEC" --oversubscribe --allow-run-as-root -np "$np" "$@"; }
curves() { "$PY" "$SRC/tests/ref/compare_curves.py" "$@"; }
fail() { echo "finetune_mpi: FAIL: $*" >&2; exit 1; }

# a learnable stream (a pattern with 10% noise) of 48 windows of 32 tokens
"$PY" - "$work/train.u16" <<'PYEOF'
import sys
import numpy as np
rng = np.random.default_rng(0)
i = np.arange(48 * 32)
t = np.where(rng.random(i.size) < 0.1, rng.integers(0, 64, i.size), (5 * i + i // 7) % 64)
t.astype("<u2").tofile(sys.argv[1])
PYEOF
common=(--model-path "$MODEL" --tokens "$work/train.u16" --seq-len 32 --learning-rate 1e-3 --warmup-ratio 0.1)

echo "== 1. one global batch of 8 rows on four topologies"
"$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/r1" --batch-size 2 --gradient-accumulation-steps 4 \
    --recompute on
mpi 2 "$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/dp2" --batch-size 2 --gradient-accumulation-steps 2
mpi 2 "$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/pp2" --stages 2 --batch-size 2 \
    --gradient-accumulation-steps 4 --recompute on
mpi 4 "$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/pp2dp2" --stages 2 --batch-size 2 \
    --gradient-accumulation-steps 2
# float32 gradients summed in another order (replicas add partial sums;
# stages add the norm's squares separately) differ by rounding (~1e-7
# relative); eight Adam steps at lr 1e-3 keep that far below 1e-4
curves "$work/r1/metrics.jsonl" "$work/dp2/metrics.jsonl" --rtol 1e-4 --decreasing
curves "$work/r1/metrics.jsonl" "$work/pp2/metrics.jsonl" --rtol 1e-4
curves "$work/r1/metrics.jsonl" "$work/pp2dp2/metrics.jsonl" --rtol 1e-4
"$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/r1keep" --batch-size 2 \
    --gradient-accumulation-steps 4 --recompute off
mpi 2 "$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/pp2keep" --stages 2 --batch-size 2 \
    --gradient-accumulation-steps 4 --recompute off
mpi 3 "$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/pp3" --stages 3 --batch-size 2 \
    --gradient-accumulation-steps 4 --recompute on
mpi 3 "$BIN" finetune "${common[@]}" --quiet --max-steps 8 --save-path "$work/pp3keep" --stages 3 --batch-size 2 \
    --gradient-accumulation-steps 4 --recompute off
curves "$work/r1/metrics.jsonl" "$work/r1keep/metrics.jsonl" --exact
curves "$work/pp2/metrics.jsonl" "$work/pp2keep/metrics.jsonl" --exact
curves "$work/pp3/metrics.jsonl" "$work/pp3keep/metrics.jsonl" --exact
# --recompute auto (the default): off where the kept activations fit the
# node's memory (this fixture's do anywhere), on under a 1 MB Slurm limit;
# both choices give the same bits
auto() { # NAME: 2 stages at the default, its start line in NAME.log
    mpi 2 "$BIN" finetune "${common[@]}" --max-steps 8 --save-path "$work/$1" --stages 2 --batch-size 2 \
        --gradient-accumulation-steps 4 2>"$work/$1.log"
    curves "$work/pp2/metrics.jsonl" "$work/$1/metrics.jsonl" --exact
}
auto pp2auto
grep -q "recompute off (auto: keeping every layer's activations adds .* MiB on a node that holds" \
    "$work/pp2auto.log" || { cat "$work/pp2auto.log"; fail "auto did not keep the activations of a small model"; }
SLURM_MEM_PER_NODE=1 auto pp2tight
grep -q "recompute on (auto: .* (SLURM_MEM_PER_NODE=1): more than half of the rest)" "$work/pp2tight.log" ||
    { cat "$work/pp2tight.log"; fail "auto did not recompute under a 1 MB SLURM_MEM_PER_NODE"; }
"$PY" "$SRC/tests/ref/compare_models.py" "$work/r1" "$work/pp2dp2" --rtol 1e-3

echo "== 2. SIGKILL after the step-10 checkpoint, then resume (2 replicas)"
long=(--max-steps 20 --save-steps 10 --batch-size 2 --gradient-accumulation-steps 2)
mpi 2 "$BIN" finetune "${common[@]}" --quiet "${long[@]}" --save-path "$work/full"
rc=0
TRANSMLA_INJECT_FAILURE=checkpoint-saved-10:0 TRANSMLA_INJECT_SIGKILL=1 \
    mpi 2 "$BIN" finetune "${common[@]}" --quiet "${long[@]}" --save-path "$work/killed" >"$work/killed.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "the injected SIGKILL did not stop the run"
[ -f "$work/killed/checkpoint-10.h5" ] || fail "no checkpoint-10.h5 before the kill"
[ ! -e "$work/killed/config.json" ] || fail "a killed run left a model that looks complete"
mpi 2 "$BIN" finetune "${common[@]}" "${long[@]}" --save-path "$work/killed" 2>"$work/resumed.log"
grep -q "resuming from .*checkpoint-10.h5 (step 10 of 20)" "$work/resumed.log" || fail "the rerun did not resume at step 10"
curves "$work/full/metrics.jsonl" "$work/killed/metrics.jsonl" --steps 11-20 --exact

echo "== 2b. killed while writing a checkpoint: the previous one stays usable"
rm -f "$work/killed/checkpoint-20.h5" "$work/killed/config.json"
rc=0
TRANSMLA_INJECT_FAILURE=checkpoint-write:1 \
    mpi 2 "$BIN" finetune "${common[@]}" --quiet "${long[@]}" --save-path "$work/killed" >"$work/crash.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "the injected failure while writing did not stop the run"
[ ! -e "$work/killed/checkpoint-20.h5" ] || fail "a checkpoint killed mid-write has its final name"
h5dump -H "$work/killed/checkpoint-10.h5" >/dev/null || fail "checkpoint-10.h5 is damaged"
mpi 2 "$BIN" finetune "${common[@]}" "${long[@]}" --save-path "$work/killed" 2>"$work/resumed2.log"
grep -q "resuming from .*checkpoint-10.h5" "$work/resumed2.log" || fail "the rerun did not resume from checkpoint 10"
curves "$work/full/metrics.jsonl" "$work/killed/metrics.jsonl" --steps 11-20 --exact
"$PY" "$SRC/tests/ref/compare_models.py" "$work/full" "$work/killed" --exact

echo "== 2c. another run's checkpoint is refused, naming the first field that differs"
# --train attention changes only trained_elements, the one field summed over ranks
rc=0
mpi 2 "$BIN" finetune "${common[@]}" "${long[@]}" --train attention --save-path "$work/killed" 2>"$work/other.log" || rc=$?
[ "$rc" -ne 0 ] || fail "a run training other parameters resumed another run's checkpoint"
grep -q "checkpoint-20.h5: attribute trained_elements is [0-9]* but this run has [0-9]*: it belongs to another run" \
    "$work/other.log" || { cat "$work/other.log"; fail "no one-line refusal naming trained_elements"; }

echo "== 3. SIGUSR1: finish the step, checkpoint, exit 0; the rerun continues"
sig=(--max-steps 300 --batch-size 2 --gradient-accumulation-steps 4 --save-steps 0)
"$BIN" finetune "${common[@]}" --quiet "${sig[@]}" --save-path "$work/sig_full"
"$BIN" finetune "${common[@]}" "${sig[@]}" --save-path "$work/sig" 2>"$work/sig.log" &
pid=$!
for _ in $(seq 1 400); do
    [ -f "$work/sig/metrics.jsonl" ] && [ "$(wc -l <"$work/sig/metrics.jsonl")" -ge 5 ] && break
    sleep 0.05
done
kill -USR1 "$pid"
rc=0
wait "$pid" || rc=$?
[ "$rc" -eq 0 ] || fail "a run stopped by SIGUSR1 exited $rc (expected 0)"
grep -q "stopped (signal 10) after step" "$work/sig.log" || fail "no stop line in the log"
ls "$work"/sig/checkpoint-*.h5 >/dev/null || fail "no checkpoint after SIGUSR1"
[ ! -e "$work/sig/config.json" ] || fail "a stopped run exported a model"
"$BIN" finetune "${common[@]}" --quiet "${sig[@]}" --save-path "$work/sig"
curves "$work/sig_full/metrics.jsonl" "$work/sig/metrics.jsonl" --exact
echo "== 4. the export keeps the stored dtype: a step of lr 1e-30 writes bf16/f16 weights back bit for bit"
# widening bf16/f16 to the fp32 masters and rounding back is exact, so any
# other rounding, dtype or lost tensor shows; frozen tensors (--train
# attention) are written as stored
"$PY" -c "import numpy as np; np.random.default_rng(1).integers(0, 88, 32 * 16).astype('<u2').tofile('$work/rt.u16')"
rt=(--tokens "$work/rt.u16" --seq-len 32 --max-steps 1 --learning-rate 1e-30 --weight-decay 0 --quiet)
for what in all attention; do
    mpi 2 "$BIN" finetune "${rt[@]}" --model-path "$FIX/dsv3_tied_bf16" --train "$what" --save-path "$work/rt_bf16_$what"
    "$PY" "$SRC/tests/ref/compare_models.py" "$FIX/dsv3_tied_bf16" "$work/rt_bf16_$what" --exact
    mpi 2 "$BIN" finetune "${rt[@]}" --model-path "$FIX/dsv3_qlora_bias_llama3_f16" --stages 2 --train "$what" \
        --save-path "$work/rt_f16_$what"
    "$PY" "$SRC/tests/ref/compare_models.py" "$FIX/dsv3_qlora_bias_llama3_f16" "$work/rt_f16_$what" --exact
done
echo "finetune_mpi: ok"
