#!/usr/bin/env python3
"""Compare two Hugging Face model folders tensor by tensor (numpy only).

usage: compare_models.py A B [--rtol 1e-5] [--exact]

Both folders must hold the same tensor names with the same shapes and
dtypes. Each tensor passes when max|a - b| <= rtol * max|b| (scale-relative:
a converted tensor's small entries carry the absolute rounding of its large
ones). --exact demands identical bits. Prints the worst tensor; exit 1 on a
mismatch. Reading is tm_ref.read_model_weights, independent of transmla.
"""
import argparse
import sys
import os

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tm_ref import read_model_weights  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--rtol", type=float, default=1e-5)
    ap.add_argument("--exact", action="store_true")
    args = ap.parse_args()
    wa, wb = read_model_weights(args.a), read_model_weights(args.b)
    if set(wa) != set(wb):
        only_a, only_b = sorted(set(wa) - set(wb)), sorted(set(wb) - set(wa))
        print(f"FAIL tensor names differ: only in A {only_a[:5]}, only in B {only_b[:5]}")
        return 1
    worst, worst_name, bad = 0.0, "", []
    for name in sorted(wa):
        a, b = np.asarray(wa[name], dtype=np.float64), np.asarray(wb[name], dtype=np.float64)
        if a.shape != b.shape:
            bad.append(f"{name}: shape {a.shape} vs {b.shape}")
            continue
        if args.exact:
            if not np.array_equal(a, b):
                bad.append(f"{name}: not bit-identical")
            continue
        scale = max(np.max(np.abs(b)), 1e-30)
        rel = float(np.max(np.abs(a - b)) / scale) if a.size else 0.0
        if rel > worst:
            worst, worst_name = rel, name
        if rel > args.rtol:
            bad.append(f"{name}: scale-relative difference {rel:.3e} > {args.rtol:g}")
    for line in bad[:10]:
        print("FAIL " + line)
    what = "bit-identical" if args.exact else f"worst scale-relative difference {worst:.3e} ({worst_name})"
    print(f"{'ok' if not bad else 'FAIL'}  {len(wa)} tensors, {what}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
