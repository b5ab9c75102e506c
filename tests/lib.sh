# Shared by the shell tests (sourced after `here` is set): one result line
# per check and the count of failures.
#   ok WHAT        a check that passed
#   bad WHAT       a check that failed (counted)
#   show LOG [N]   the last N (6) lines of LOG, indented under the result
# A test ends with: echo "NAME: $fails failure(s)"; [ "$fails" -eq 0 ]
fails=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*"; fails=$((fails + 1)); }
show() { tail -n "${2:-6}" "$1" | sed 's/^/      | /'; }
# times_marker MARKER PYTHON: the JSON convert saves its times in (the info
# attribute of SAVE.work/times.done.h5), read with h5dump; also used by
# bench/bench_depth.sh.
times_marker() {
    h5dump -a info "$1" | "$2" -c 'import re, sys
print(re.search(r"\(0\): \"(.*)\"\s*$", sys.stdin.read(), re.M).group(1))'
}
# need_gpu NAME TRANSMLA: a gpu test ends here with 77 (ctest: skipped)
# unless TRANSMLA was built with CUDA and sees a GPU.
need_gpu() {
    "$2" version | grep -q "GPU(s):" && return 0
    echo "$1: no GPU visible (or CUDA not compiled in), skipped"
    exit 77
}
