#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh --prebuilt runs into one archive, for a GPU
# machine that cannot install packages or build (this workplace's lent H200
# reaches no registry): the gpu test programs and bench_gpu_forward from a
# CUDA build, transmla itself, the shared libraries they load (all but the
# C library, the driver's libcuda, cuBLAS and Open MPI's own, which come
# from the GPU machine), and the golden fixtures the tests read.
#   bash scripts/gpu-bundle.sh [BUILD_DIR] [OUT]   (defaults: build .gpu/bundle.tar.xz)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
out=${2:-.gpu/bundle.tar.xz}
bins=("$build/tests/test_attn_tile" "$build/tests/test_gpu_model" "$build/tests/test_gpu_stats"
    "$build/tests/test_gpu_layer_grad" "$build/tests/test_attn_fit" "$build/tests/test_rorope_fit"
    "$build/bench_gpu_forward" "$build/transmla")
for b in "${bins[@]}"; do [ -x "$b" ] || { echo "gpu-bundle: $b missing: build with -DTRANSMLA_CUDA=ON first" >&2; exit 1; }; done
[ -f "$build/fixtures/fixtures.json" ] || { echo "gpu-bundle: $build/fixtures missing: run ctest -R make_fixtures" >&2; exit 1; }
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/lib"
cp "${bins[@]}" "$stage/bin/"
cp -r "$build/fixtures" "$stage/fixtures"
ldd "${bins[@]}" | awk '$3 ~ /^\// {print $3}' | sort -u |
    grep -v -E '/lib(c|m|dl|pthread|rt)\.so|ld-linux|libcuda\.so|libcublas|lib(mpi|open-pal|open-rte|hwloc|event|pmix)' |
    xargs -I{} cp -L {} "$stage/lib/"
mkdir -p "$(dirname "$out")"
tar -C "$stage" -cJf "$out" bin lib fixtures
echo "gpu-bundle: $out ($(du -h "$out" | cut -f1)); on the GPU machine: bash scripts/gpu-check.sh --prebuilt $out"
