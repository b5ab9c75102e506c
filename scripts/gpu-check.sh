#!/usr/bin/env bash
# One command for a machine with an NVIDIA GPU and this repository (issue 24,
# Part B): installs the Debian packages, builds with CUDA on (sm_90 + PTX)
# into build-gpu/, runs the ctest label gpu and prints one summary. Needs
# nvcc and cuBLAS (CUDA 13) under /usr/local/cuda or on PATH. What runs on
# the GPU today: the attention kernel (gpu_attention) against the CPU engine.
#   bash scripts/gpu-check.sh
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
t0=$SECONDS
log=$(mktemp)
summary() { echo "gpu-check: $*  ($((SECONDS - t0)) s)"; }
if ! command -v cmake >/dev/null || ! pkg-config --exists scalapack-openmpi 2>/dev/null; then
    bash scripts/install-deps.sh >"$log" 2>&1 || { tail -n 20 "$log"; summary "FAIL: install-deps.sh"; exit 1; }
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | sed 's/^/gpu: /' ||
    echo "gpu: nvidia-smi not found"
if ! cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DTRANSMLA_CUDA=ON >"$log" 2>&1 ||
    ! cmake --build build-gpu -j"$(nproc)" >>"$log" 2>&1; then
    tail -n 30 "$log"
    summary "FAIL: build with -DTRANSMLA_CUDA=ON"
    exit 1
fi
build-gpu/transmla version | sed -n 's/^  CUDA: */cuda: /p'
(cd build-gpu && ctest -L gpu --output-on-failure -V) >"$log" 2>&1
rc=$?
grep -E "^[0-9]+: (GPU|gpu_)|tests passed|Skipped|Failed|Passed" "$log" | sed 's/^[0-9]*: //'
if [ $rc -ne 0 ]; then tail -n 30 "$log"; summary "FAIL: ctest -L gpu"; exit 1; fi
grep -q "Skipped" "$log" && { summary "gpu tests SKIPPED (no GPU visible)"; exit 1; }
summary "ok: every gpu test passed"
