#!/usr/bin/env python3
"""Compare the loss curves of two `transmla finetune` runs (SAVE/metrics.jsonl).

usage: compare_curves.py A.jsonl B.jsonl [--steps FIRST-LAST] [--rtol R | --exact] [--decreasing] [--field F]

--exact: the losses (printed with 17 significant digits) must be equal, bit
for bit once parsed back to float64. --rtol: |a - b| <= rtol * |a| per step.
--decreasing: also require A's last loss to be below its first. --field: compare
another number of the records (e.g. kl) instead of the loss. The last
record of a step wins (a resumed run rewrites the steps after its checkpoint).
"""
import json
import sys


def curve(path, field):
    out = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                o = json.loads(line)
                out[o["step"]] = o[field]
    return out


def main():
    args = sys.argv[1:]
    field = args[args.index("--field") + 1] if "--field" in args else "loss"
    a, b = curve(args[0], field), curve(args[1], field)
    steps = sorted(a)
    rtol, exact, decreasing = 0.0, False, False
    i = 2
    while i < len(args):
        if args[i] == "--steps":
            lo, hi = (int(x) for x in args[i + 1].split("-"))
            steps = list(range(lo, hi + 1))
            i += 2
        elif args[i] == "--rtol":
            rtol = float(args[i + 1])
            i += 2
        elif args[i] == "--exact":
            exact = True
            i += 1
        elif args[i] == "--field":
            i += 2
        elif args[i] == "--decreasing":
            decreasing = True
            i += 1
        else:
            sys.exit(f"compare_curves: unknown argument {args[i]}")
    worst = 0.0
    for s in steps:
        if s not in a or s not in b:
            sys.exit(f"compare_curves: step {s} missing in {args[0] if s not in a else args[1]}")
        d = abs(a[s] - b[s])
        rel = d / abs(a[s]) if a[s] else d
        worst = max(worst, rel)
        if (exact and a[s] != b[s]) or (not exact and rel > rtol):
            sys.exit(f"compare_curves: step {s}: {a[s]!r} vs {b[s]!r} (relative difference {rel:.3g})")
    if decreasing and not a[steps[-1]] < a[steps[0]]:
        sys.exit(f"compare_curves: {field} did not decrease: step {steps[0]} {a[steps[0]]} -> step {steps[-1]} {a[steps[-1]]}")
    print(f"compare_curves: steps {steps[0]}-{steps[-1]} agree ({'bit-identical' if exact else f'largest relative difference {worst:.3g}'};"
          f" {field} {a[steps[0]]:.5f} -> {a[steps[-1]]:.5f})")


main()
