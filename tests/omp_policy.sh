#!/usr/bin/env bash
# transmla re-executes itself once with OMP_WAIT_POLICY=PASSIVE and
# OPENBLAS_THREAD_TIMEOUT=4 (model/threads.c): with 2 OpenMP threads and
# neither set, `transmla version` must report both; what the user set is
# kept; with one thread nothing changes.
# usage: omp_policy.sh TRANSMLA
set -u
bin=$1
fails=0
expect() { # NAME WANT ENV...
    local name=$1 want=$2 got
    shift 2
    got=$(env -u OMP_WAIT_POLICY "$@" "$bin" version | sed -n 's/^  OpenMP: *//p')
    if [ "$got" = "$want" ]; then echo "ok    $name: $got"
    else echo "FAIL  $name: got '$got', want '$want'"; fails=$((fails + 1)); fi
}
expect "2 threads, no policy: re-executed passive" "2 threads, wait policy PASSIVE" OMP_NUM_THREADS=2
expect "the user's policy kept" "2 threads, wait policy active" OMP_NUM_THREADS=2 OMP_WAIT_POLICY=active
expect "1 thread: left alone" "1 threads, wait policy default (spin, then sleep)" OMP_NUM_THREADS=1
# OpenBLAS's idle threads: a 2^4-cycle timeout set the same way, the user's kept
blas() { # NAME WANT ENV...
    local name=$1 want=$2 got
    shift 2
    got=$(env -u OMP_WAIT_POLICY -u OPENBLAS_THREAD_TIMEOUT "$@" "$bin" version | sed -n 's/^  OpenBLAS: .*; //p')
    if [ "$got" = "$want" ]; then echo "ok    $name: $got"
    else echo "FAIL  $name: got '$got', want '$want'"; fails=$((fails + 1)); fi
}
blas "2 threads: OpenBLAS timeout 2^4" "idle threads sleep after 2^4 cycles" OMP_NUM_THREADS=2
blas "the user's timeout kept" "idle threads sleep after 2^10 cycles" OMP_NUM_THREADS=2 OPENBLAS_THREAD_TIMEOUT=10
blas "the user's wait policy set: the timeout still set" "idle threads sleep after 2^4 cycles" OMP_NUM_THREADS=2 \
    OMP_WAIT_POLICY=active
exit $((fails > 0))
