#!/usr/bin/env bash
# Submit the scaling benchmark over node counts (default 4 8 16): one job per
# count (Slurm arrays share one node count, so each count is its own
# submission), all appending to one CSV named by the first job's id.
#   TM_MODEL=/path/to/model bash slurm/submit-scaling.sh [NODES...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(4 8 16)
first=""
for n in "${counts[@]}"; do
    id=$(sbatch --parsable --nodes="$n" --export="ALL,TM_SCALING_ID=${first:-}" "$here/scaling-bench.sbatch")
    [ -n "$first" ] || first=$id
    echo "submitted $n nodes: job $id"
done
echo "results: scaling-$first.csv (nodes,ranks,stages,seconds)"
