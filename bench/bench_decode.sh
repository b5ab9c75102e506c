#!/usr/bin/env bash
# Decode throughput and cache size, original against MLA, one run:
# Llama-2-7B (MHA, 32 kv heads) and Qwen2.5-7B (GQA, 4 kv heads) layer
# shapes, 2 layers of random bf16 weights each (bench/make_random_model.py;
# vocabulary cut to 1024, the same for both models), the MLA twin with
# kv_lora_rank 512 and rope 64; contexts 1k, 4k, 16k; batch 1 and 16.
# Writes the models under WORK (default a temporary folder, removed).
# usage: bash bench/bench_decode.sh [WORK]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-/usr/bin/python3}
work=${1:-$(mktemp -d)}
[ -n "${1:-}" ] || trap 'rm -rf "$work"' EXIT
cmake --build build --target bench_decode -j2 >/dev/null
for shape in llama-2-7b:32 qwen2.5-7b:28; do
    name=${shape%%:*} depth=${shape#*:}
    [ -f "$work/$name/config.json" ] || "$PY" bench/make_random_model.py "$work/$name" --layers 2 --preset "$name"
    [ -f "$work/$name-mla/config.json" ] || "$PY" bench/make_random_model.py "$work/$name-mla" --layers 2 --preset "$name" --mla 512
    ./build/bench_decode "$name" "$depth" "$work/$name" "$work/$name-mla" "${@:2}"
done
