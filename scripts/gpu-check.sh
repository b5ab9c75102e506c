#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU and this repository (issue 24,
# Part B): installs the Debian packages, builds with CUDA on (sm_90 + PTX)
# into build-gpu/, runs the gpu tests (ctest label gpu: the attention
# kernels, the whole forward, the calibration sums, a layer's backward pass,
# the attention and rotation fits against their float64 oracles and `transmla eval`, `convert`
# and `finetune --device cuda` against the CPU engine) and the GPU forward benchmark, and prints one summary. Needs nvcc and cuBLAS (CUDA 13) under
# /usr/local/cuda or on PATH.
#   bash scripts/gpu-check.sh
# On a GPU machine that can neither install nor build, run what
# scripts/gpu-bundle.sh packed on a machine that can (same CPU architecture;
# cuBLAS comes from the GPU machine's CUDA):
#   bash scripts/gpu-check.sh --prebuilt .gpu/bundle.tar.xz
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
t0=$SECONDS
log=$(mktemp)
summary() { echo "gpu-check: $*  ($((SECONDS - t0)) s)"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' ||
    echo "gpu: nvidia-smi not found"
fails=0
run() { # NAME COMMAND...: one gpu program, its lines kept, its exit counted
    local name=$1 rc
    shift
    "$@" >"$log" 2>&1
    rc=$?
    sed "s/^/$name: /" "$log"
    [ $rc -eq 0 ] || { echo "$name: FAIL (exit $rc)"; fails=$((fails + 1)); }
}
if [ "${1:-}" = "--prebuilt" ]; then
    dir=$(mktemp -d)
    tar -C "$dir" -xJf "${2:?--prebuilt wants the archive gpu-bundle.sh made}" || { summary "FAIL: unpacking $2"; exit 1; }
    # the machine's own copy of a library wins (its other libraries were built against it)
    for f in "$dir"/lib/*; do
        ldconfig -p | grep -q "^[[:space:]]$(basename "$f") " && rm -f "$f"
    done
    cuda_lib=$(dirname "$(ldconfig -p | awk '/libcublas\.so\.13 /{print $NF; exit}')")
    [ -d /usr/local/cuda/lib64 ] && cuda_lib=/usr/local/cuda/lib64
    export LD_LIBRARY_PATH=$dir/lib:$cuda_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    run gpu_attention "$dir/bin/test_attn_tile" --gpu
    run gpu_model "$dir/bin/test_gpu_model" "$dir/fixtures" data/models/bytelm-dev
    run gpu_stats env TM_FIXTURES_DIR="$dir/fixtures" "$dir/bin/test_gpu_stats" data/models/bytelm-dev
    run gpu_layer_grad "$dir/bin/test_gpu_layer_grad" "$dir/fixtures" data/models/bytelm-dev
    if python3 -c "import numpy" 2>/dev/null; then # the fits' float64 oracles need numpy
        run gpu_attn_fit python3 tests/ref/attn_fit_check.py "$dir/bin/test_attn_fit" "$dir/attn_fit" --gpu
        run gpu_rorope_fit python3 tests/ref/rorope_fit_check.py "$dir/bin/test_rorope_fit" "$dir/rorope_fit" --gpu
    else
        echo "gpu_attn_fit, gpu_rorope_fit: skipped (python3 has no numpy here)"
    fi
    run gpu_eval bash tests/gpu_eval.sh "$dir/bin/transmla"
    run gpu_convert bash tests/gpu_convert.sh "$dir/bin/transmla"
    run gpu_finetune bash tests/gpu_finetune.sh "$dir/bin/transmla" python3 "$dir/fixtures"
    run bench_gpu_forward "$dir/bin/bench_gpu_forward" ${GPU_BENCH_ARGS:-}
else
    if ! command -v cmake >/dev/null || ! pkg-config --exists scalapack-openmpi 2>/dev/null; then
        bash scripts/install-deps.sh >"$log" 2>&1 || { tail -n 20 "$log"; summary "FAIL: install-deps.sh"; exit 1; }
    fi
    if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTRANSMLA_CUDA=ON >"$log" 2>&1 ||
        ! cmake --build build-gpu -j"$(nproc)" >>"$log" 2>&1; then
        tail -n 30 "$log"
        summary "FAIL: build with -DTRANSMLA_CUDA=ON"
        exit 1
    fi
    build-gpu/transmla version | sed -n 's/^  CUDA: */cuda: /p'
    run ctest bash -c "cd build-gpu && ctest -L gpu --output-on-failure && ! grep -q '\*\*\*Skipped' Testing/Temporary/LastTest.log"
    run bench_gpu_forward build-gpu/bench_gpu_forward ${GPU_BENCH_ARGS:-}
fi
grep -h "ratio" "$log" | sed 's/^/bench: /'
[ $fails -eq 0 ] || { summary "FAIL: $fails gpu program(s) failed"; exit 1; }
summary "ok: every gpu test passed"
