#!/usr/bin/env bash
# Every job script in slurm/ and the local-Slurm test harness parse
# (bash -n) and are shellcheck-clean (issue 6). shellcheck comes from Debian
# (scripts/install-deps.sh).
# usage: slurm_scripts.sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
command -v shellcheck >/dev/null || { echo "FAIL  shellcheck not installed (apt-get install shellcheck)"; exit 1; }
fails=0
for f in "$repo"/slurm/*.sh "$repo"/slurm/*.sbatch "$repo"/tests/slurm_local.sh; do
    if bash -n "$f" && shellcheck -x -P "$repo" -s bash "$f"; then echo "ok    ${f#"$repo"/}"
    else echo "FAIL  ${f#"$repo"/}"; fails=$((fails + 1)); fi
done
echo "slurm_scripts: $fails failure(s)"
[ "$fails" -eq 0 ]
