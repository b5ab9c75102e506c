#!/usr/bin/env bash
# The whole test suite: release build, the same suite again under
# AddressSanitizer + UndefinedBehaviorSanitizer, and a libFuzzer smoke run of
# every parser.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== release build and tests"
bash scripts/build.sh -DTRANSMLA_TEST_HOOKS=ON
(cd build && ctest --output-on-failure -j"$jobs")

# slurm_local runs in the release pass only: under the sanitizers it would
# repeat convert_resume's checks through Slurm at twice the time; so do
# convert_resume (its resume paths run under the sanitizers in convert_phases'
# chains; 340 s there) and phi3_repack (the phi3 paths run there in
# phi3_convert). Tests
# labelled slow (finetune_bytelm: 20 training steps of a real model) too: the
# sanitizers see the same training code in finetune_mpi and finetune_chat.
echo "== ASan + UBSan build and tests"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DTRANSMLA_SANITIZE=ON -DTRANSMLA_CUDA=OFF -DTRANSMLA_TEST_HOOKS=ON
cmake --build build-asan -j"$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$PWD/../tests/lsan.supp \
    ctest --output-on-failure -j"$jobs" -E "fuzz|slurm_local|convert_resume|phi3_repack" -LE slow)

# Every parser's libFuzzer target (tests/fuzz.cmake) for TM_FUZZ_SECONDS
# each, one after the other: 8 targets x 20 s keep the pass near 3 minutes.
echo "== libFuzzer smoke runs (${TM_FUZZ_SECONDS:-20} s per target)"
CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DTRANSMLA_FUZZ=ON -DTRANSMLA_CUDA=OFF \
    -DTM_FUZZ_SECONDS="${TM_FUZZ_SECONDS:-20}"
fuzz_targets=(fuzz_safetensors fuzz_config fuzz_preset fuzz_tokenizer_load fuzz_tokenizer_roundtrip fuzz_chat
              fuzz_token_set fuzz_checkpoint)
cmake --build build-fuzz -j"$jobs" --target "${fuzz_targets[@]}"
(cd build-fuzz && ctest --output-on-failure -R fuzz)
