"""cnnc.nn.matmul against numpy.matmul (OpenBLAS) on float32, measured in one run.

Each thread count runs in its own subprocess (OpenBLAS reads its thread count at load) where the two
libraries alternate call by call; the table reports median times, GFLOP/s and the ratio (cnnc/numpy).

    python tools/bench_matmul.py                 # 1024^3 plus the two textbook CNNs' im2col shapes
    python tools/bench_matmul.py --sizes 1024x1024x1024 --threads 2 --reps 30

A size is m x n x k, optionally followed by ":TN", ":NT" or ":TT": op(A) = A^T (A stored k x m) and/or
op(B) = B^T (B stored n x k), both libraries computing the same product from the same storage.
"""
import argparse
import json
import os
import subprocess
import sys
import time

# m x n x k; the conv shapes are im2col GEMMs of the textbook CNNs at batch 64 (NHWC):
# Chollet's MNIST CNN conv2 (11x11 output, 3x3x32 -> 64) and Geron's conv 3x3x128 -> 256 (7x7 output),
# then Chollet conv2's backward GEMMs: dW = col^T * dY (288x64, depth 7744) and dCol = dY * W^T.
DEFAULT_SIZES = ["1024x1024x1024", "7744x64x288", "3136x256x1152", "512x512x512", "288x64x7744:TN",
                 "7744x288x64:NT"]


def _worker(sizes, reps):
    import numpy as np
    import cnnc
    from cnnc import nn
    rng = np.random.default_rng(0)
    rows = []
    for spec in sizes:
        dims, _, trans = spec.partition(":")
        m, n, k = (int(v) for v in dims.split("x"))
        ta, tb = (trans or "NN")[0] == "T", (trans or "NN")[1] == "T"
        a = rng.standard_normal((k, m) if ta else (m, k), dtype=np.float32)
        b = rng.standard_normal((n, k) if tb else (k, n), dtype=np.float32)
        ours = lambda: nn.matmul(a, b, transpose_a=ta, transpose_b=tb)
        theirs = lambda: np.matmul(a.T if ta else a, b.T if tb else b)
        ref = theirs()
        err = float(np.abs(ours() - ref).max() / np.abs(ref).max())
        times = {"cnnc": [], "numpy": []}
        for _ in range(reps):
            for name, fn in (("cnnc", ours), ("numpy", theirs)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
        med = {name: sorted(v)[len(v) // 2] for name, v in times.items()}
        rows.append({"size": spec, "flop": 2.0 * m * n * k, "cnnc": med["cnnc"], "numpy": med["numpy"],
                     "rel_err": err, "threads": cnnc.get_num_threads(), "simd": cnnc.show_config(False)["simd"]})
    print(json.dumps(rows))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", default=DEFAULT_SIZES)
    ap.add_argument("--threads", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--reps", type=int, default=15)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args.sizes, args.reps)
        return
    print(f"{'threads':>7} {'simd':>7} {'m x n x k':>18} {'cnnc ms':>9} {'numpy ms':>9} {'cnnc GF/s':>10} "
          f"{'numpy GF/s':>10} {'ratio':>6} {'rel err':>8}")
    for t in args.threads:
        # OpenBLAS's workers busy-wait for a long time after each call; interleaved with cnnc they would
        # hold the second core while cnnc runs. A short timeout lets each library have the cores in turn.
        env = dict(os.environ, OMP_NUM_THREADS=str(t), OPENBLAS_NUM_THREADS=str(t), MKL_NUM_THREADS=str(t),
                   OPENBLAS_THREAD_TIMEOUT=os.environ.get("OPENBLAS_THREAD_TIMEOUT", "4"))
        # the worker imports the cnnc of this checkout (built in place) before any installed one
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        out = subprocess.run([sys.executable, __file__, "--worker", "--reps", str(args.reps), "--sizes",
                              *args.sizes], env=env, check=True, capture_output=True, text=True).stdout
        for r in json.loads(out.strip().splitlines()[-1]):
            gc, gn = r["flop"] / r["cnnc"] / 1e9, r["flop"] / r["numpy"] / 1e9
            print(f"{r['threads']:>7} {r['simd']:>7} {r['size']:>18} {1e3 * r['cnnc']:>9.2f} "
                  f"{1e3 * r['numpy']:>9.2f} {gc:>10.1f} {gn:>10.1f} {gc / gn:>6.2f} {r['rel_err']:>8.1e}")


if __name__ == "__main__":
    main()
