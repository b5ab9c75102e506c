#!/usr/bin/env bash
# The whole test suite: release build, the same suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer, and a libFuzzer smoke run of
# the safetensors header parser.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== release build and tests"
bash scripts/build.sh -DTRANSMLA_TEST_HOOKS=ON
(cd build && ctest --output-on-failure -j"$jobs")

# slurm_local runs in the release pass only: under the sanitizers it would
# repeat convert_resume's checks through Slurm at twice the time. Tests
# labelled slow (finetune_bytelm: 20 training steps of a real model) too: the
# sanitizers see the same training code in finetune_mpi and finetune_chat.
echo "== ASan + UBSan build and tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTRANSMLA_SANITIZE=ON -DTRANSMLA_CUDA=OFF -DTRANSMLA_TEST_HOOKS=ON
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$PWD/../tests/lsan.supp \
    ctest --output-on-failure -j"$jobs" -E "fuzz|slurm_local" -LE slow)

echo "== libFuzzer smoke run (${TM_FUZZ_SECONDS:-60} s)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRANSMLA_FUZZ=ON -DTRANSMLA_CUDA=OFF \
    -DTM_FUZZ_SECONDS="${TM_FUZZ_SECONDS:-60}"
cmake --build build-fuzz -j"$jobs" --target fuzz_safetensors
(cd build-fuzz && ctest --output-on-failure -R fuzz)
