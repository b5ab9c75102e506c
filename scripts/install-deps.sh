#!/usr/bin/env bash
# Install everything transmla builds and tests with, from Debian's packages.
# Run as root on Debian 12 (bookworm).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends \
    ca-certificates build-essential cmake pkg-config \
    libopenmpi-dev openmpi-bin libscalapack-openmpi-dev libopenblas-dev libhdf5-openmpi-dev \
    libjansson-dev libpcre2-dev libutf8proc-dev zlib1g-dev libssl-dev libcmocka-dev hdf5-tools shellcheck gnuplot-nox \
    python3 python3-numpy \
    clang libclang-rt-14-dev
