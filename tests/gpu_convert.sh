#!/usr/bin/env bash
# transmla convert --device cuda against the CPU on the bundled bytelm-dev
# (8 calibration windows of 256 tokens, 8 evaluation windows of 256, fits
# off so the output is a function of the statistics alone): the key and
# latent statistics are gathered from the GPU's projections and the
# evaluations run there. The report's perplexities (original, rorope, mla,
# mla_native) with fp32 GEMMs (--gpu-fp32) within 1e-4 relative of the
# CPU's (the statistics differ at fp32 rounding, ~1e-7, and the
# eigenvectors with them), with bf16 GEMMs within 2e-2 (statistics from
# bf16-rounded inputs); 2 ranks as 2 pipeline stages sharing the GPU, fp32,
# within 1e-4. And with 5 steps of the rotation fit and 5 of the attention
# fit, both fits' micro-batches on the GPU (fp32), against the CPU's fits:
# within 1e-3 (Adam's first steps move each weight by about the learning
# rate whatever its gradient's size, so gradients equal to fp32 rounding
# still part the weights a little; a wrong gradient moves the perplexities
# by far more).
#   gpu_convert.sh TRANSMLA   (ctest gpu_convert, label gpu; exit 77: skipped without a GPU)
set -uo pipefail
bin=${1:?usage: gpu_convert.sh TRANSMLA}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_gpu gpu_convert "$bin"
M=$here/../data/models/bytelm-dev
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fit=0
convert() { # NAME [launcher...] -- transmla convert and its flags ($fit rotation- and attention-fit steps)
    local name=$1
    shift
    "$@" --model-path "$M" --save-path "$work/$name" --cal-tokens "$M/calib.u16" --cal-nsamples 8 \
        --eval-tokens "$M/eval.u16" --eval-nsamples 8 --ppl-seqlen 256 --skip-published-mla --rorope-fit-steps "$fit" \
        --attn-fit-steps "$fit" --kv-lora-rank 64 --qk-mqa-dim 32 --freqfold 4 --quiet >"$work/$name.log" 2>&1 ||
        { bad "$name: exit $?"; show "$work/$name.log"; }
}
convert cpu "$bin" convert
convert fp32 "$bin" convert --device cuda --gpu-fp32
convert bf16 "$bin" convert --device cuda
convert fp32_2 mpirun --oversubscribe --allow-run-as-root -np 2 "$bin" convert --device cuda --gpu-fp32 --stages 2
fit=5
convert cpu_fit "$bin" convert
convert fp32_fit "$bin" convert --device cuda --gpu-fp32
for case in cpu:fp32:1e-4 cpu:bf16:2e-2 cpu:fp32_2:1e-4 cpu_fit:fp32_fit:1e-3; do
    IFS=: read -r ref name tol <<<"$case"
    if python3 - "$work/$ref/transmla_report.json" "$work/$name/transmla_report.json" "$tol" <<'PY'; then
import json, sys
ref, got = (json.load(open(p))["ppl"] for p in sys.argv[1:3])
tol = float(sys.argv[3])
worst = max(abs(got[k] - ref[k]) / ref[k] for k in ("original", "rorope", "mla", "mla_native"))
print(" ".join(f"{k} {got[k]:.6f}/{ref[k]:.6f}" for k in ("original", "rorope", "mla", "mla_native")),
      f"worst {worst:.1e}")
sys.exit(worst > tol)
PY
        ok "$name: report perplexities against the CPU conversion's ($ref) within $tol"
    else
        bad "$name: report perplexities against the CPU conversion's ($ref) beyond $tol"
    fi
done
echo "gpu_convert: $fails failure(s)"
[ "$fails" -eq 0 ]
