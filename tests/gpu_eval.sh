#!/usr/bin/env bash
# transmla eval --device cuda against the CPU on the bundled bytelm-dev
# (its eval.u16, 16 windows of 256 tokens) and on its MLA conversion:
# perplexity with fp32 GEMMs
# (--gpu-fp32) within 1e-5 relative of the CPU's (the same fp32 arithmetic
# in another order), with bf16 GEMMs within 1e-2 (every GEMM input rounded
# to bf16: measured on bytelm-dev's logits at 3.6e-3 of max |logit|); the
# same under mpirun -np 2 (two data-parallel ranks sharing the GPU: each
# takes GPU local_rank mod count). One clear error line for --device cuda
# where no GPU is visible is tested in cli_errors.
#   gpu_eval.sh TRANSMLA   (ctest gpu_eval, label gpu; exit 77: skipped without a GPU)
set -uo pipefail
bin=${1:?usage: gpu_eval.sh TRANSMLA}
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
need_gpu gpu_eval "$bin"
M=$here/../data/models/bytelm-dev
toks=$M/eval.u16
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mpirun=(mpirun --oversubscribe --allow-run-as-root -np 2)
run() { # NAME [mpirun...] -- eval flags: the JSON line in $work/NAME.json
    local name=$1
    shift
    "$@" --model-path "$M" --tokens "$toks" --seqlen 256 --nseq 16 --batch-size 4 --json >"$work/$name.json" \
        2>"$work/$name.err" || { bad "$name: exit $?"; show "$work/$name.err"; }
}
run cpu "$bin" eval
run fp32 "$bin" eval --device cuda --gpu-fp32
run bf16 "$bin" eval --device cuda
run fp32_2 "${mpirun[@]}" "$bin" eval --device cuda --gpu-fp32
run bf16_2 "${mpirun[@]}" "$bin" eval --device cuda
# the converted model (deepseek_v3 MLA), converted on the CPU with the fits off (2 s)
"$bin" convert --model-path "$M" --save-path "$work/mla" --cal-tokens "$M/calib.u16" --cal-nsamples 8 \
    --eval-dataset none --skip-published-mla --rorope-fit-steps 0 --attn-fit-steps 0 --kv-lora-rank 64 \
    --qk-mqa-dim 32 --freqfold 4 --quiet >"$work/convert.log" 2>&1 || { bad "convert: exit $?"; show "$work/convert.log"; }
M=$work/mla
run mla_cpu "$bin" eval
run mla_fp32 "$bin" eval --device cuda --gpu-fp32
run mla_bf16 "$bin" eval --device cuda
ppl() { /usr/bin/env python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ppl"])' "$work/$1.json" 2>/dev/null; }
for case in fp32:1e-5 bf16:1e-2 fp32_2:1e-5 bf16_2:1e-2 mla_fp32:1e-5 mla_bf16:1e-2; do
    name=${case%%:*} tol=${case#*:} got=$(ppl "${case%%:*}")
    cpu=$(ppl cpu)
    case $name in mla_*) cpu=$(ppl mla_cpu) ;; esac
    if [ -z "$cpu" ] || [ -z "$got" ]; then bad "$name: no perplexity"; continue; fi
    if python3 -c "import sys; c, g, t = map(float, sys.argv[1:]); sys.exit(abs(g - c) > t * c)" "$cpu" "$got" "$tol"; then
        ok "$name: ppl $got against the CPU's $cpu (tolerance $tol relative)"
    else
        bad "$name: ppl $got against the CPU's $cpu (tolerance $tol relative)"
    fi
done
echo "gpu_eval: $fails failure(s)"
[ "$fails" -eq 0 ]
