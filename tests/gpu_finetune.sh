#!/usr/bin/env bash
# transmla finetune --device cuda against the CPU: three steps (2 micro-batches
# of 2 rows each) on bytelm-dev (llama, 4 layers) and on the qwen3 (QK-norm),
# gemma2 (sandwich norms, GeGLU, soft-caps, tied head), phi3 (fused
# projections), deepseek_v3 MLA (q_proj; q_lora with biases, f16),
# gemma2_mla (q_lora) and MoE (mixtral, qwen3_moe, deepseek_v3's routed
# experts after a dense layer) fixtures. With fp32 GEMMs (--gpu-fp32) each step's loss within
# 1e-5 and its gradient norm within 1e-4 relative of the CPU's (the same fp32
# arithmetic summed in other orders, a few 1e-6 through the layers, grown a
# little by two Adam steps); with bf16 GEMM inputs the loss within 2e-2 (a
# mean over the rows: a bf16-fed router flipping a near tie moves it less). On
# bytelm-dev also 2 stages (mpirun -np 2 --stages 2), each rank its part on
# the GPU (local rank mod count), against the CPU, fp32. A wrong gradient
# anywhere moves the gradient norm by far more, and the next steps' losses
# with it. test_gpu_layer_grad holds each layer's gradients one by one.
#   gpu_finetune.sh TRANSMLA PYTHON FIXTURES   (ctest gpu_finetune, label gpu; 77: skipped without a GPU)
set -uo pipefail
bin=${1:?usage: gpu_finetune.sh TRANSMLA PYTHON FIXTURES} PY=${2:?} FIX=${3:?}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_gpu gpu_finetune "$bin"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpirun=(mpirun --oversubscribe --allow-run-as-root -np 2)
curves() { "$PY" "$here/ref/compare_curves.py" "$@" && ok "${*##*/}" || bad "$*"; }
# a learnable stream below the fixtures' vocabularies (64 and up): 24 windows of 32 tokens
"$PY" -c '
import struct, sys
open(sys.argv[1], "wb").write(b"".join(struct.pack("<H", (5 * i + i // 7) % 64) for i in range(24 * 32)))' \
    "$work/pattern.u16"
run() { # NAME MODEL TOKENS [prefix...] -- finetune flags
    local name=$1 model=$2 toks=$3
    shift 3
    "$@" --model-path "$model" --tokens "$toks" --seq-len 32 --batch-size 2 --gradient-accumulation-steps 2 \
        --max-steps 3 --learning-rate 1e-3 --warmup-ratio 0 --quiet --save-path "$work/$name" \
        >"$work/$name.log" 2>&1 || { bad "$name: exit $?"; show "$work/$name.log"; }
}
check() { # NAME MODEL TOKENS
    run "$1_cpu" "$2" "$3" "$bin" finetune
    run "$1_fp32" "$2" "$3" "$bin" finetune --device cuda --gpu-fp32
    run "$1_bf16" "$2" "$3" "$bin" finetune --device cuda
    curves "$work/$1_cpu/metrics.jsonl" "$work/$1_fp32/metrics.jsonl" --rtol 1e-5
    curves "$work/$1_cpu/metrics.jsonl" "$work/$1_fp32/metrics.jsonl" --rtol 1e-4 --field grad_norm
    curves "$work/$1_cpu/metrics.jsonl" "$work/$1_bf16/metrics.jsonl" --rtol 2e-2
}
B=$here/../data/models/bytelm-dev
check bytelm-dev "$B" "$B/calib.u16"
for f in qwen3 gemma2 phi3 dsv3_noqlora_dense dsv3_qlora_bias_llama3_f16 gemma2_mla_qlora mixtral_moe_bf16 qwen3_moe \
    dsv3_moe_softmax; do check "$f" "$FIX/$f" "$work/pattern.u16"; done
run bytelm-dev_pp2 "$B" "$B/calib.u16" "${mpirun[@]}" "$bin" finetune --stages 2 --device cuda --gpu-fp32
curves "$work/bytelm-dev_cpu/metrics.jsonl" "$work/bytelm-dev_pp2/metrics.jsonl" --rtol 1e-5
curves "$work/bytelm-dev_cpu/metrics.jsonl" "$work/bytelm-dev_pp2/metrics.jsonl" --rtol 1e-4 --field grad_norm
echo "gpu_finetune: $fails failure(s)"
[ "$fails" -eq 0 ]
