#!/usr/bin/env bash
# transmla re-executes itself once with OMP_WAIT_POLICY=PASSIVE (model/threads.c):
# with 2 OpenMP threads and no policy set, `transmla version` must report
# PASSIVE; a policy the user set is kept; with one thread nothing changes.
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
exit $((fails > 0))
