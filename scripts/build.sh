#!/usr/bin/env bash
# Configure and build the release binary into build/ (build/transmla).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$(nproc)"
