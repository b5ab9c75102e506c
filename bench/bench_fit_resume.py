#!/usr/bin/env python3
"""What a stopped attention fit costs to resume, with and without the streams
it saves after each layer (pipeline/fit_stream.h: fit_stream_save).

A random bf16 model of Llama-3.2-1B layer shapes (bench/make_random_model.py,
vocabulary cut to 1024) is converted on one rank with the default data (128
calibration windows of 256: the attention fit's two streams are 2 x 128 x
256 x 2048 floats) and short fits (freqfold 4, 5 rotation-fit and 2
attention-fit steps: the steps do not change what a resume rebuilds). The
run is stopped by SIGTERM as soon as its attention fit starts the last
layer, as Slurm's time limit would stop it. Its work folder is copied
twice: run A resumes as it is (loads the streams saved at the last layer's
input), run B without the saved streams (rm SAVE.work/attn-fit-stream.*:
it moves both streams through every fitted layer again, as every resume
did before the streams were saved). Printed: the seconds from each resumed
run's start to its last layer's fit starting (the resume's own cost, the
model's load included), their ratio, the cost of saving the streams after
each layer in the first run against the layer's fit, and whether A and B
end bit-identical (they must: the saved streams are the moved ones).

usage: python3 bench/bench_fit_resume.py [BUILD_DIR] [--layers N] [--work DIR]
"""
import argparse
import glob
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(cmd, env, stop_at=None):
    """Run cmd, time-stamping its stderr lines; SIGTERM it at the first line
    matching stop_at. Returns (exit status, [(seconds, line)])."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    lines, stopped = [], False
    for line in p.stderr:
        lines.append((time.monotonic() - t0, line.rstrip("\n")))
        if stop_at and not stopped and re.search(stop_at, line):
            p.send_signal(signal.SIGTERM)
            stopped = True
    return p.wait(), lines


def first(lines, pattern):
    for t, line in lines:
        if re.search(pattern, line):
            return t, line
    sys.exit("no line matching %r; the log's tail:\n%s" % (pattern, "\n".join(l for _, l in lines[-15:])))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--work", help="keep everything here (default: a temporary folder, removed)")
    a = ap.parse_args()
    binary = os.path.join(os.path.abspath(a.build), "transmla")
    work = a.work or tempfile.mkdtemp(prefix="bench_fit_resume.")
    os.makedirs(work, exist_ok=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    L = a.layers
    try:
        model = os.path.join(work, "model")
        if not os.path.exists(os.path.join(model, "model.safetensors")):
            subprocess.run([sys.executable, os.path.join(REPO, "bench/make_random_model.py"), model, "--preset",
                            "llama-3.2-1b", "--layers", str(L), "--vocab", "1024"], check=True)
        save = os.path.join(work, "out")
        args = [binary, "convert", "--model-path", model, "--cal-tokens", os.path.join(model, "calib.u16"),
                "--eval-dataset", "none", "--freqfold", "4", "--rorope-fit-steps", "5", "--attn-fit-steps", "2",
                "--skip-published-mla"]
        for d in (save, save + ".work", save + "-a", save + "-a.work", save + "-b", save + "-b.work"):
            shutil.rmtree(d, ignore_errors=True)
        last = r"^attn-fit: layer %d/%d \(rank 0, 1 replicas\)$" % (L, L)
        rc, lines = run(args + ["--save-path", save], env, stop_at=last)
        if rc != 75:
            sys.exit("the first run exited %d, not 75 (stopped); its tail:\n%s" % (rc, "\n".join(l for _, l in lines[-15:])))
        saves = [float(m.group(1)) for _, l in lines for m in [re.search(r"^attn-fit: streams saved .*, ([0-9.]+) s\)$", l)] if m]
        mib = re.search(r"\(([0-9.]+) MiB on this rank", first(lines, r"^attn-fit: streams saved")[1]).group(1)
        fits = [float(m.group(1)) for _, l in lines for m in [re.search(r"^attn-fit: layer \d+/\d+: .*, ([0-9.]+) s$", l)] if m]
        print("first run: %.0f s, stopped at the start of layer %d/%d's attention fit" % (lines[-1][0], L, L))
        shutil.copytree(save + ".work", save + "-a.work")
        shutil.copytree(save + ".work", save + "-b.work")
        gone = glob.glob(os.path.join(save + "-b.work", "attn-fit-stream.*"))
        if not gone:
            sys.exit("%s.work holds no attn-fit-stream.* files" % save)
        for f in gone:
            os.remove(f)
        res = {}
        for name in ("a", "b"):
            rc, lines = run(args + ["--save-path", save + "-" + name], env)
            if rc != 0:
                sys.exit("resumed run %s exited %d; its tail:\n%s" % (name, rc, "\n".join(l for _, l in lines[-15:])))
            res[name] = (first(lines, last)[0], lines[-1][0])
        cmp = subprocess.run([sys.executable, os.path.join(REPO, "tests/ref/compare_models.py"), save + "-a",
                              save + "-b", "--exact"], capture_output=True, text=True)
        same = cmp.stdout.strip().splitlines()[-1] if cmp.returncode == 0 else "DIFFER: " + cmp.stdout[-300:]
        print()
        print("| resumed at layer %d/%d (Llama-3.2-1B shapes, 128 x 256 windows, 1 rank) | with the saved streams "
              "| moving the streams through the fitted layers | ratio |" % (L, L))
        print("| --- | --- | --- | --- |")
        print("| seconds from start to the last layer's fit | %.1f | %.1f | %.2f |"
              % (res["a"][0], res["b"][0], res["b"][0] / res["a"][0]))
        print("| whole resumed run, s | %.1f | %.1f | %.2f |" % (res["a"][1], res["b"][1], res["b"][1] / res["a"][1]))
        print()
        print("saving the streams after each layer (first run, %s MiB): %s s; the layers' fits (%d steps): %s s"
              % (mib, ", ".join("%.2f" % s for s in saves), 2, ", ".join("%.1f" % f for f in fits)))
        print("A and B: %s" % same)
        return 0 if cmp.returncode == 0 else 1
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
