#!/usr/bin/env bash
# Distributed conversion (issue 4) under mpirun, oversubscribed on this
# 2-core machine (OMP_NUM_THREADS=1 per rank):
#  - every S x Dp split of P = 2 and 4 ranks gives the P = 1 model: tensors
#    within 1e-5 scale-relative (tests/ref/compare_models.py) and the same
#    perplexities within 1e-6. Why not bit-identical: replicas split the
#    calibration windows, so the float64 covariance sums are added in another
#    order (~1e-16 relative), and the fp32 forward runs other micro-batch
#    shapes; both move eigenvectors by (rounding / eigen gap), measured ~1e-7.
#    The RoRoPE rotation fit is on (the default), so this also holds for it:
#    its replicas add every micro-batch's gradient in one order, and the
#    fitted models, per-layer MSEs and perplexities agree as above;
#  - with the attention fit (--fit attention), 2 stages x 2 replicas give
#    the one-process model within 1e-3 scale-relative, the same perplexities
#    within 1e-6, and the same per-layer errors (1e-5) and kept steps. Its
#    replicas also add every micro-batch's gradient in one order (2 stages x
#    1 replica are bit-identical), but Adam's normalised steps turn the
#    ~1e-7 differences it starts from (above) into up to 4e-4 in the few
#    weights whose gradients are near zero (measured in the last layer's
#    q_proj: 3e-5 with 2 replicas, 4e-4 with 4);
#  - the same topology twice gives bit-identical files (deterministic sums);
#  - --scalapack-min-n 1 sends every BKV-PCA eigenproblem through ScaLAPACK
#    (the report counts them) and still gives the LAPACK model within 1e-5;
#  - data-free mode (--cal-dataset none, SVDs of the weights, pdgesvd when
#    forced) gives the same model on 1 and 4 ranks;
#  - peak memory: with S stages a rank maps about 1/S of the weights;
#  - a failure injected on one rank mid-calibration, and a corrupt shard only
#    one stage reads, end the job within seconds with one message naming the
#    rank, and leave no output folder.
#  - gemma2: 2 stages x 2 replicas with both fits give the one-process
#    perplexities.
# usage: convert_mpi.sh TRANSMLA PYTHON MPIEXEC FIXTURES_DIR
set -u
bin=$1 py=$2 mpiexec=$3 fixtures=$4
here=$(cd "$(dirname "$0")" && pwd)
model=$here/../data/models/stories260K
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
. "$here/lib.sh"
mpi() { local np=$1; shift; timeout 300 "$mpiexec" --oversubscribe --allow-run-as-root -np "$np" "$bin" "$@"; }
jget() { "$py" -c "import json, sys; d = json.load(open(sys.argv[1]))
for k in sys.argv[2].split('.'): d = d[int(k) if k.isdigit() else k]
print(d)" "$1" "$2"; }
same_ppl() { # a b [tol]: every ppl entry within tol (default 1e-6) relative
    "$py" -c "
import json, sys
a, b = (json.load(open(p + '/transmla_report.json'))['ppl'] for p in sys.argv[1:3])
tol = float(sys.argv[3])
keys = [k for k in b if isinstance(b[k], float)]
worst = max(abs(a[k] - b[k]) / abs(b[k]) for k in keys)
print('%s ppl %s: worst relative difference %.2e (within %g)' % ('ok   ' if worst <= tol else 'FAIL ', ','.join(keys), worst, tol))
sys.exit(0 if worst <= tol else 1)" "$1" "$2" "${3:-1e-6}"
}
# Under the sanitizers (TM_SANITIZED) the RoRoPE fit runs short: the same
# code in a fraction of the time; the release pass checks what it achieves.
# The splits below run the rotation fit alone; the attention fit is checked
# after them, on its own tolerance.
fitq=()
if [ -n "${TM_SANITIZED:-}" ]; then fitq=(--rorope-fit-nsamples 4 --rorope-fit-steps 8); fi
attnq=(--fit attention --attn-fit-steps 10 --attn-fit-windows-per-step 4)
if [ -n "${TM_SANITIZED:-}" ]; then attnq=(--fit attention --attn-fit-steps 3); fi
args=(convert "${fitq[@]}" --fit rotation --quiet --model-path "$model" --cal-tokens "$model/calib.u16" --cal-max-seqlen 128 --cal-nsamples 12
      --cal-batch-size 2 --eval-tokens "$model/eval.u16" --ppl-seqlen 256 --eval-nsamples 6 --eval-batch-size 2
      --qk-mqa-dim 4 --freqfold 2 --kv-lora-rank 16 --max-shard-mb 1)

"$bin" "${args[@]}" --save-path "$work/p1" >/dev/null || bad "one-process conversion"
for split in "2 1" "2 2" "4 1" "4 2" "4 4"; do
    set -- $split
    out=$work/np$1-s$2
    if mpi "$1" "${args[@]}" --stages "$2" --save-path "$out" >"$out.log" 2>&1; then
        "$py" "$here/ref/compare_models.py" "$out" "$work/p1" --rtol 1e-5 | sed "s/^/P=$1 S=$2: /" | tail -3
        [ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))
        same_ppl "$out" "$work/p1" | sed "s/^\(....\) /\1 P=$1 S=$2: /"
        [ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))
    else
        bad "P=$1 S=$2 conversion"; tail -5 "$out.log"
    fi
done
"$py" - "$work/np4-s2" "$work/p1" <<'EOF' && ok "2 stages x 2 replicas: the fit's per-layer MSEs equal one process's (1e-5) and fall" || bad "the fit's MSEs under MPI"
import json, sys
a, b = (json.load(open(p + '/transmla_report.json'))['rorope_fit']['layers'] for p in sys.argv[1:3])
for x, y in zip(a, b):
    print('      layer %d: mse %.6g -> %.6g (4 ranks) vs %.6g -> %.6g (1 process)' % (x['layer'], x['mse_before'], x['mse_after'], y['mse_before'], y['mse_after']))
    assert abs(x['mse_after'] - y['mse_after']) <= 1e-5 * y['mse_after'] and x['mse_after'] < x['mse_before']
assert len(a) == len(b) == 5
EOF
"$bin" "${args[@]}" "${attnq[@]}" --save-path "$work/p1a" >/dev/null || bad "one-process conversion, attention fit"
mpi 4 "${args[@]}" "${attnq[@]}" --stages 2 --save-path "$work/np4-s2a" >/dev/null 2>&1 || bad "P=4 S=2 conversion, attention fit"
"$py" "$here/ref/compare_models.py" "$work/np4-s2a" "$work/p1a" --rtol 1e-3 | sed "s/^/attention fit, P=4 S=2: /" | tail -2
[ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))
same_ppl "$work/np4-s2a" "$work/p1a" | sed "s/^\(....\) /\1 attention fit, P=4 S=2: /"
[ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))
"$py" - "$work/np4-s2a" "$work/p1a" <<'EOF' && ok "2 stages x 2 replicas: the attention fit's per-layer errors and kept steps equal one process's" || bad "the attention fit's errors under MPI"
import json, sys
a, b = (json.load(open(p + '/transmla_report.json'))['attn_fit']['layers'] for p in sys.argv[1:3])
for x, y in zip(a, b):
    print('      layer %d: held-back mse %.6g -> %.6g, step %d (4 ranks) vs %.6g -> %.6g, step %d (1 process)' % (
        x['layer'], x['held_mse_before'], x['held_mse_after'], x['best_step'], y['held_mse_before'], y['held_mse_after'], y['best_step']))
    assert x['best_step'] == y['best_step'] and abs(x['held_mse_after'] - y['held_mse_after']) <= 1e-5 * y['held_mse_after']
EOF

# gemma2 (the sandwich norm applied where the streams cross the stage boundary, per-layer windows,
# soft-caps in the fits): 2 stages x 2 replicas, both fits, give the one-process perplexities (5e-6:
# the layouts' sums differ by 3e-8 in the original's perplexity, and the fits' Adam steps grow that to
# 6e-7 .. 1.2e-6 in the fitted models, measured at different commits; each layout alone repeats its
# perplexities exactly)
"$py" -c "
import numpy as np, sys
np.random.default_rng(7).integers(0, 64, 12 * 64).astype('<u2').tofile(sys.argv[1])" "$work/g2.u16"
g2=(convert "${fitq[@]}" --quiet --model-path "$fixtures/gemma2" --cal-tokens "$work/g2.u16" --cal-max-seqlen 64
    --cal-nsamples 8 --eval-tokens "$work/g2.u16" --ppl-seqlen 64 --qk-mqa-dim 4 --freqfold auto --kv-lora-rank 12
    --attn-fit-steps 10)
"$bin" "${g2[@]}" --save-path "$work/g2p1" >/dev/null || bad "gemma2: one-process conversion"
mpi 4 "${g2[@]}" --stages 2 --save-path "$work/g2p4" >/dev/null 2>&1 || bad "gemma2: P=4 S=2 conversion"
same_ppl "$work/g2p4" "$work/g2p1" 5e-6 | sed "s/^\(....\) /\1 gemma2, both fits, P=4 S=2: /"
[ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))

# determinism: the same topology again, bit for bit
mpi 4 "${args[@]}" --stages 2 --save-path "$work/again" >/dev/null 2>&1 || bad "P=4 S=2 rerun"
"$py" "$here/ref/compare_models.py" "$work/again" "$work/np4-s2" --exact | sed 's/^/rerun P=4 S=2: /'
[ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))

# ScaLAPACK forced, 2 replicas of one stage (1x2 BLACS grid)
mpi 2 "${args[@]}" --scalapack-min-n 1 --save-path "$work/scalapack" >/dev/null 2>&1 || bad "forced ScaLAPACK run"
n=$(jget "$work/scalapack/transmla_report.json" eigen_solver.scalapack_problems 2>/dev/null || echo 0)
[ "$n" -gt 0 ] && ok "ScaLAPACK solved $n eigenproblems" || bad "ScaLAPACK was not used ($n problems)"
"$py" "$here/ref/compare_models.py" "$work/scalapack" "$work/p1" --rtol 1e-5 | sed 's/^/ScaLAPACK vs LAPACK: /' | tail -2
[ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))

# data-free, one process vs 4 ranks with forced pdgesvd
df=(convert --quiet --model-path "$model" --cal-dataset none --eval-tokens "$model/eval.u16" --ppl-seqlen 256
    --eval-nsamples 6 --qk-mqa-dim 4 --freqfold 2 --kv-lora-rank 16)
"$bin" "${df[@]}" --save-path "$work/df1" >/dev/null || bad "data-free one-process conversion"
mpi 4 "${df[@]}" --stages 2 --scalapack-min-n 1 --save-path "$work/df4" >/dev/null 2>&1 || bad "data-free P=4 S=2"
n=$(jget "$work/df4/transmla_report.json" eigen_solver.scalapack_problems 2>/dev/null || echo 0)
[ "$n" -gt 0 ] && ok "data-free: pdgesvd solved $n problems" || bad "data-free: ScaLAPACK not used"
"$py" "$here/ref/compare_models.py" "$work/df4" "$work/df1" --rtol 1e-5 | sed 's/^/data-free P=4 vs P=1: /' | tail -2
[ "${PIPESTATUS[0]}" = 0 ] || fails=$((fails + 1))

# memory: each of 4 stages maps at most ~1/4 of the weights plus the embedding/head
"$py" -c "
import json, sys
one = json.load(open(sys.argv[1]))['memory']['weights_bytes']
per = [r['weights_bytes'] for r in json.load(open(sys.argv[2]))['memory']['per_rank']]
emb = 2 * 512 * 64 * 4  # stories260K: tied 512 x 64 fp32 embedding, held by the first and the last stage
print('weights per rank with 4 stages:', per, 'one process:', one)
sys.exit(0 if max(per) <= one / 4 + emb and sum(per) < 1.5 * one else 1)" \
    "$work/p1/transmla_report.json" "$work/np4-s4/transmla_report.json" && ok "weights split over stages" || bad "weights per rank not ~1/S"

# failures on one rank: fast, one message naming the rank, no output
t0=$(date +%s)
TRANSMLA_INJECT_FAILURE=calibrate:1 mpi 4 "${args[@]}" --stages 2 --save-path "$work/inj" >"$work/inj.log" 2>&1
rc=$? t1=$(date +%s)
if [ $rc -ne 0 ] && grep -q "rank 1: injected failure at calibrate" "$work/inj.log" && [ $((t1 - t0)) -lt 60 ] &&
   [ ! -e "$work/inj" ]; then ok "injected failure on rank 1: exit $rc after $((t1 - t0)) s"
else bad "injected failure (exit $rc, $((t1 - t0)) s)"; cat "$work/inj.log"; fi

# a corrupt shard only stage 1 maps (the last layer and the final norm): the
# loader's error, agreed by every rank and printed once
mkdir -p "$work/split"
"$py" -c "
import json, os, shutil, sys
sys.path.insert(0, sys.argv[3])
from tm_ref import read_model_weights, write_safetensors
src, dst = sys.argv[1:3]
w = read_model_weights(src)
late = [n for n in w if n.startswith('model.layers.4.') or n == 'model.norm.weight']
parts = {'model-00001-of-00002.safetensors': [n for n in w if n not in late], 'model-00002-of-00002.safetensors': late}
for fn, names in parts.items(): write_safetensors(os.path.join(dst, fn), {n: w[n] for n in names})
json.dump({'weight_map': {n: fn for fn, names in parts.items() for n in names}}, open(os.path.join(dst, 'model.safetensors.index.json'), 'w'))
shutil.copy(os.path.join(src, 'config.json'), dst)
" "$model" "$work/split" "$here/ref"
last=$(ls "$work/split"/model-00002-of-00002.safetensors)
truncate -s 1000 "$last"
t0=$(date +%s)
mpi 2 "${args[@]}" --model-path "$work/split" --stages 2 --save-path "$work/corrupt" >"$work/corrupt.log" 2>&1
rc=$? t1=$(date +%s)
nerr=$(grep -c "transmla: error:" "$work/corrupt.log")
if [ $rc -ne 0 ] && [ "$nerr" = 1 ] && grep -q "transmla: error: rank 1: .*model-00002-of-00002.safetensors" "$work/corrupt.log" &&
   [ ! -e "$work/corrupt" ]; then ok "corrupt shard of stage 1: $(grep 'transmla: error' "$work/corrupt.log")"
else bad "corrupt shard (exit $rc, $nerr error lines)"; cat "$work/corrupt.log"; fi

[ $fails -eq 0 ] && echo "all distributed conversion checks passed" || echo "$fails distributed conversion checks failed"
exit $((fails > 0))
