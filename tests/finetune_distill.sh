#!/usr/bin/env bash
# Distillation fine-tuning (`finetune --distill-from`), on two fixtures of
# different families with the same vocabulary and depth (qwen2_bias as the
# student, qwen3 as the teacher; 2 layers, vocabulary 80, fp32):
#  1. the step-1 KL(teacher || student) over all 8 windows (one batch, so
#     the sampler's order does not matter) equals the float64 numpy
#     forwards' (tests/ref/tm_ref.py) mean KL per target, 1e-4 relative
#     (fp32 logits of two models; measured ~1e-6), and the step-1 loss
#     their NLL;
#  2. a model distilled from itself has KL 0 at step 1 (< 1e-6 nats: the
#     teacher's stored-dtype forward and the student's fp32-master forward
#     are the same arithmetic);
#  3. at --distill-weight 0.5, 1 rank and 2 stages give the same loss and
#     KL curves (1e-4 relative, as finetune_mpi), and the KL goes down;
#  4. a teacher of another vocabulary or depth is refused with one line
#     naming its config.json field, and nothing is written.
# usage: finetune_distill.sh TRANSMLA PYTHON MPIEXEC FIXTURES
set -euo pipefail
BIN=$1 PY=$2 MPIEXEC=$3 FIX=$4
SRC=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
fail() { echo "finetune_distill: FAIL: $*" >&2; exit 1; }
S=$FIX/qwen2_bias T=$FIX/qwen3

"$PY" -c "import numpy as np; np.random.default_rng(5).integers(0, 80, 8 * 24).astype('<u2').tofile('$work/r.u16')"
one=(--tokens "$work/r.u16" --seq-len 24 --batch-size 8 --max-steps 1 --learning-rate 1e-30 --quiet)

echo "== 1. step-1 KL and NLL against the numpy forwards"
"$BIN" finetune --model-path "$S" --distill-from "$T" "${one[@]}" --save-path "$work/kl" || fail "finetune failed"
"$PY" - "$SRC/tests/ref" "$S" "$T" "$work/r.u16" "$work/kl/metrics.jsonl" <<'PYEOF'
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
import tm_ref
(cs, ws), (ct, wt) = tm_ref.load_model(sys.argv[2]), tm_ref.load_model(sys.argv[3])
ids = np.fromfile(sys.argv[4], dtype="<u2").astype(np.int64).reshape(8, 24)
kl = nll = n = 0.0
for seq in ids:
    ls, lt = (tm_ref.log_softmax(tm_ref.logits(c, w, seq))[:-1] for c, w in ((cs, ws), (ct, wt)))
    kl += np.sum(np.exp(lt) * (lt - ls))
    nll -= np.sum(ls[np.arange(23), seq[1:]])
    n += 23
got = json.loads(open(sys.argv[5]).readline())
print(f"finetune_distill: step-1 KL {got['kl']:.9f} (numpy {kl / n:.9f}), loss {got['loss']:.9f} (numpy NLL {nll / n:.9f})")
assert abs(got["kl"] - kl / n) <= 1e-4 * kl / n, "KL differs from the numpy forwards'"
assert abs(got["loss"] - nll / n) <= 1e-4 * nll / n, "the loss differs from the numpy NLL"
PYEOF

echo "== 2. distilled from itself: KL 0"
"$BIN" finetune --model-path "$T" --distill-from "$T" "${one[@]}" --save-path "$work/self" || fail "finetune failed"
"$PY" -c "
import json; kl = json.loads(open('$work/self/metrics.jsonl').readline())['kl']
print('finetune_distill: self-distillation step-1 KL %.2e' % kl); assert abs(kl) < 1e-6"

echo "== 3. 1 rank == 2 stages, KL decreasing"
run=(--model-path "$S" --distill-from "$T" --distill-weight 0.5 --tokens "$work/r.u16" --seq-len 24 --batch-size 2
     --gradient-accumulation-steps 2 --max-steps 6 --learning-rate 3e-3 --quiet)
"$BIN" finetune "${run[@]}" --save-path "$work/r1" || fail "1-rank finetune failed"
"$MPIEXEC" --oversubscribe --allow-run-as-root -np 2 "$BIN" finetune "${run[@]}" --stages 2 --save-path "$work/pp2" ||
    fail "2-stage finetune failed"
"$PY" "$SRC/tests/ref/compare_curves.py" "$work/r1/metrics.jsonl" "$work/pp2/metrics.jsonl" --rtol 1e-4
"$PY" "$SRC/tests/ref/compare_curves.py" "$work/r1/metrics.jsonl" "$work/pp2/metrics.jsonl" --rtol 1e-4 --field kl \
    --decreasing

echo "== 4. a teacher that does not fit is refused"
refused() { # TEACHER FIELD
    local rc=0
    "$BIN" finetune --model-path "$S" --distill-from "$1" "${one[@]}" --save-path "$work/bad" 2>"$work/err" || rc=$?
    [ "$rc" -ne 0 ] || fail "--distill-from $1 was accepted"
    [ "$(wc -l <"$work/err")" -eq 1 ] && grep -q "$1/config.json: $2" "$work/err" || { cat "$work/err"; fail "no one-line error naming $2"; }
    [ ! -e "$work/bad/config.json" ] || fail "a refused run wrote a model"
    echo "finetune_distill: refused: $(cat "$work/err")"
}
refused "$FIX/llama_gqa2_bf16" vocab_size
refused "$FIX/gemma2" num_hidden_layers
echo "finetune_distill: ok"
