#!/usr/bin/env bash
# Distributed conversion benchmarks (issue 4). Every ratio is against a
# baseline measured in the same run. This machine has 2 cores: runs with more
# ranks than cores are oversubscribed (mpirun --oversubscribe, one BLAS thread
# per rank), so 4 ranks show overhead, not speedup; the numbers say how the
# work divides, the projection says what that means on real nodes.
#
#  1. strong scaling of calibration and of the per-layer eigen step on
#     bytelm-dev: P = 1, 2, 4 ranks as replicas (S = 1) and as stages;
#  2. pdsyevd vs LAPACK dsyevd at n = 2048, 4096, 8192 (bench_eigen);
#  3. one conversion of 2 layers at the real Qwen2.5-72B layer shapes
#     (random bf16 weights, bench/make_random_model.py), per step, and the
#     80-layer projection from it.
# usage: bench/bench_dist.sh [BUILD_DIR] [--quick]   (--quick: n <= 4096, fewer tokens)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=${1:-$here/../build}
quick=${2:-}
bin=$build/transmla
py=/usr/bin/python3
mpi() { local np=$1; shift; mpirun --bind-to none --oversubscribe --allow-run-as-root -np "$np" "$@"; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
sec() { "$py" -c "import json, sys; print(json.load(open(sys.argv[1]))['seconds'][sys.argv[2]])" "$1" "$2"; }

echo "== 1. strong scaling on bytelm-dev (2 cores; 4 ranks oversubscribed), 64 x 256 calibration tokens"
model=$here/../data/models/bytelm-dev
args=(convert --quiet --model-path "$model" --cal-tokens "$model/calib.u16" --cal-max-seqlen 256 --cal-nsamples 64
      --cal-batch-size 4 --qk-mqa-dim 32 --freqfold 4 --kv-lora-rank 64)
printf "%-16s %16s %8s %16s %8s\n" layout "calibrate[keys] s" speedup "bkv-pca s" speedup
base_c= base_e=
for layout in "1 1" "2 1" "2 2" "4 1" "3 3"; do
    set -- $layout
    mpi "$1" "$bin" "${args[@]}" --stages "$2" --save-path "$work/s$1-$2" >/dev/null 2>&1
    c=$(sec "$work/s$1-$2/transmla_report.json" calibrate_keys)
    e=$(sec "$work/s$1-$2/transmla_report.json" bkv_pca)
    base_c=${base_c:-$c} base_e=${base_e:-$e}
    printf "%-16s %16.3f %8.2f %16.3f %8.2f\n" "P=$1 S=$2" "$c" "$("$py" -c "print($base_c/$c)")" "$e" \
        "$("$py" -c "print($base_e/$e)")"
done

echo
echo "== 2. pdsyevd vs dsyevd (random symmetric n x n)"
sizes=2048,4096,8192
[ "$quick" = --quick ] && sizes=2048,4096
for np in 1 2 4; do mpi "$np" "$build/bench_eigen" --sizes "$sizes"; done

echo
echo "== 3. Qwen2.5-72B layer shapes: 2 layers of random bf16 weights (vocab cut to 1024)"
ntok=8
[ "$quick" = --quick ] && ntok=2
"$py" "$here/make_random_model.py" "$work/q72" --layers 2 --preset qwen2.5-72b
q72=(convert --quiet --model-path "$work/q72" --cal-tokens "$work/q72/calib.u16" --cal-max-seqlen 256
     --cal-nsamples "$ntok" --cal-batch-size 2 --qk-mqa-dim 64 --freqfold 4 --kv-lora-rank 512)
OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2 "$bin" "${q72[@]}" --save-path "$work/q72-p1" >/dev/null
mpi 2 "$bin" "${q72[@]}" --stages 2 --save-path "$work/q72-p2" >/dev/null 2>&1
"$py" - "$work/q72-p1/transmla_report.json" "$work/q72-p2/transmla_report.json" "$ntok" <<'PY'
import json, sys
one, two = (json.load(open(p)) for p in sys.argv[1:3])
ntok = int(sys.argv[3]) * 256
steps = ["calibrate_keys", "rorope", "calibrate_latent", "bkv_pca", "kv_norm_fit", "export"]
print("%-18s %12s %12s" % ("step (2 layers)", "P=1 (2 thr)", "P=2, S=2"))
for s in steps:
    print("%-18s %12.2f %12.2f" % (s, one["seconds"][s], two["seconds"][s]))
calib = sum(one["seconds"][s] for s in ("calibrate_keys", "calibrate_latent", "kv_norm_fit"))
per_layer_tok = 2 * ntok * 3 / calib  # layer-tokens per second over the three passes
convert = (one["seconds"]["rorope"] + one["seconds"]["bkv_pca"]) / 2
print("measured on 2 cores: %.0f layer-tokens/s of calibration, %.1f s of RoRoPE + BKV-PCA per layer" % (per_layer_tok, convert))
print("peak memory P=1: %.2f GiB; P=2 per rank: %s GiB" % (one["memory"]["peak_rss_bytes"] / 2**30,
      ", ".join("%.2f" % (r["peak_rss_bytes"] / 2**30) for r in two["memory"]["per_rank"])))
print()
print("projection, Qwen2.5-72B (80 layers), default calibration 128 x 256 tokens, three passes,")
print("assuming a node = 32 cores at this machine's per-core speed and perfect division over stages:")
cal_tok = 128 * 256 * 3
for nodes in (1, 4, 8, 16):
    cores = 32 * nodes
    t = 80 * (cal_tok / (per_layer_tok * cores / 2) + convert / (cores / 2))
    print("  %2d nodes: %7.1f min" % (nodes, t / 60))
PY
