"""Deployment footprint: the C runtime (libcnnc + a bundle) next to ONNX Runtime, in one run.

For the Fashion-MNIST CNN (cnnc.zoo.chollet_cnn) and light_squeezenet (from the onnx package, its
ConstantOfShape weights replaced by random ones) it reports:
  - the size of libcnnc.so and libcnnc.a, as built and stripped, and of the bundle (and of the .onnx);
  - peak resident memory (maxrss, through GNU time) of a process that loads the model and runs batch 1:
    src_c/build/run_bundle for cnnc, a Python process with onnxruntime for ONNX Runtime (the Python
    interpreter and the import are part of that figure; the 'import only' row shows how much);
  - batch-1 latency, median over --runs calls inside each process, then the median over --rounds
    processes. cnnc and ONNX Runtime processes alternate; ONNX Runtime gets intra_op_num_threads equal
    to cnnc's threads, inter_op 1, and allow_spinning=0, and cnnc CNNC_SPIN_US=0: in both, idle workers sleep at once.

    make -C src_c all example   (done by this script)
    python tools/bench_deploy.py [--threads 1,2] [--runs 200] [--rounds 3]

The machine may be shared: run it twice and read the spread of the rounds before trusting a ratio.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from cnnc.onnx._random import randomized_weights

ROOT = Path(__file__).resolve().parents[1]
SRC_C = ROOT / "src_c"
BUILD = SRC_C / "build"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a source tree: python tools/bench_deploy.py

TIME = "/usr/bin/time"  # GNU time (Debian: apt-get install time)

ORT_SCRIPT = r"""
import sys, time
import numpy as np
import onnxruntime as ort
path, threads, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if runs == 0:  # the baseline: interpreter + imports, no session
    print("median_ms nan")
    sys.exit(0)
so = ort.SessionOptions()
so.intra_op_num_threads = threads
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.add_session_config_entry("session.intra_op.allow_spinning", "0")
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [1 if not isinstance(d, int) else d for d in inp.shape]
x = np.random.default_rng(0).random(shape, dtype=np.float32)
feed = {inp.name: x}
for _ in range(10):
    sess.run(None, feed)
times = []
for _ in range(runs):
    t0 = time.perf_counter()
    sess.run(None, feed)
    times.append(time.perf_counter() - t0)
times.sort()
print("median_ms", 1e3 * times[len(times) // 2])
"""


def build():
    r = subprocess.run(["make", "-C", str(SRC_C), "-j2", "all", "example"], capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"make failed:\n{r.stdout}\n{r.stderr}")


def stripped_size(path, tmp):
    out = Path(tmp) / ("stripped_" + path.name)
    r = subprocess.run(["strip", "--strip-unneeded", "-o", str(out), str(path)], capture_output=True, text=True)
    return out.stat().st_size if r.returncode == 0 else float("nan")


def run_measured(args, env=None):
    """Run a process; returns (stdout, its peak RSS in MiB). The peak comes from /usr/bin/time, a small
    process: a child forked straight from this Python process would report this process's RSS, which
    Linux carries across exec into ru_maxrss."""
    with tempfile.TemporaryDirectory() as tmp:
        rss_file = Path(tmp) / "rss"
        r = subprocess.run([TIME, "-f", "%M", "-o", str(rss_file), *args], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({r.returncode}): {r.stderr}")
        return r.stdout, int(rss_file.read_text().split()[-1]) / 1024.0


def c_latency(bundle, threads, runs):
    env = dict(os.environ, CNNC_SPIN_US="0")
    text, rss = run_measured([str(BUILD / "run_bundle"), str(bundle), "--threads", str(threads),
                              "--repeat", str(runs)], env)
    line = next(ln for ln in text.splitlines() if "median" in ln)
    return float(line.split("median ")[1].split(" ms")[0]), rss


def ort_latency(onnx_path, threads, runs):
    text, rss = run_measured([sys.executable, "-c", ORT_SCRIPT, str(onnx_path), str(threads), str(runs)])
    return float(text.split("median_ms ")[1]), rss


def make_models(tmp):
    import onnx
    from cnnc import deploy, onnx as cnnc_onnx, zoo
    from cnnc.utils import set_random_seed
    set_random_seed(0)
    model = zoo.chollet_cnn()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    out = {}
    fm_onnx, fm_b = Path(tmp) / "fashion_cnn.onnx", Path(tmp) / "fashion_cnn.cnnb"
    cnnc_onnx.export(model, str(fm_onnx))
    deploy.bundle(model, fm_b)
    out["fashion_cnn"] = (fm_onnx, fm_b)
    src = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"
    if src.exists():
        sq_onnx, sq_b = Path(tmp) / "squeezenet.onnx", Path(tmp) / "squeezenet.cnnb"
        onnx.save(randomized_weights(onnx.load(str(src))), str(sq_onnx))
        deploy.bundle(str(sq_onnx), sq_b)
        out["light_squeezenet"] = (sq_onnx, sq_b)
    else:
        print(f"(skipping light_squeezenet: {src} not found)")
    return out


def mib(n):
    return f"{n / 2**20:7.2f} MiB" if n >= 2**20 else f"{n / 1024:7.1f} KiB"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated thread counts (default 1,2)")
    ap.add_argument("--runs", type=int, default=200, help="batch-1 calls timed per process (default 200)")
    ap.add_argument("--rounds", type=int, default=3, help="processes per engine and setting (default 3)")
    args = ap.parse_args()
    threads = [int(t) for t in args.threads.split(",")]
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        sys.exit("onnxruntime is not installed (pip install onnxruntime)")
    if not os.path.exists(TIME):
        sys.exit(f"{TIME} (GNU time) is needed to measure peak RSS: apt-get install time")
    build()
    with tempfile.TemporaryDirectory() as tmp:
        print(f"cnnc C runtime (src_c/build, gcc -O3, thread pool) vs ONNX Runtime {ort_version}; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start\n")
        print(f"{'binary':40s} {'as built':>11s} {'stripped':>11s}")
        for name in ("libcnnc.so", "libcnnc.a", "run_bundle", "classify_fashion"):
            p = BUILD / name
            label = name if name.startswith("lib") else name + " (libcnnc.a linked in)"
            print(f"  {label:38s} {mib(p.stat().st_size)} {mib(stripped_size(p, tmp))}")
        ort_dir = Path(onnxruntime.__file__).parent / "capi"
        for p in sorted(ort_dir.glob("*.so*")):
            if p.stat().st_size > 1 << 20:
                print(f"  {'onnxruntime ' + p.name[:26]:38s} {mib(p.stat().st_size)}")

        models = make_models(tmp)
        print("\nmodel               .onnx        bundle")
        for name, (onnx_path, bundle) in models.items():
            print(f"  {name:16s} {mib(onnx_path.stat().st_size)}  {mib(bundle.stat().st_size)}")

        _, base_rss = ort_latency(next(iter(models.values()))[0], 1, 0)
        rows = []
        for name, (onnx_path, bundle) in models.items():
            for t in threads:
                c_ms, c_rss, o_ms, o_rss = [], [], [], []
                for _ in range(args.rounds):  # alternate the engines
                    ms, rss = c_latency(bundle, t, args.runs)
                    c_ms.append(ms)
                    c_rss.append(rss)
                    ms, rss = ort_latency(onnx_path, t, args.runs)
                    o_ms.append(ms)
                    o_rss.append(rss)
                rows.append((name, t, c_ms, max(c_rss), o_ms, max(o_rss)))
        print(f"\nbatch 1, median of {args.runs} calls per process, median (min-max) over {args.rounds} processes")
        print(f"{'model':18s} {'thr':>3s} {'cnnc ms':>22s} {'ORT ms':>22s} {'ratio':>6s} "
              f"{'cnnc RSS':>9s} {'ORT RSS':>9s}")
        for name, t, c_ms, c_rss, o_ms, o_rss in rows:
            cm, om = statistics.median(c_ms), statistics.median(o_ms)
            cs = f"{cm:8.3f} ({min(c_ms):.3f}-{max(c_ms):.3f})"
            os_ = f"{om:8.3f} ({min(o_ms):.3f}-{max(o_ms):.3f})"
            print(f"{name:18s} {t:3d} {cs:>22s} {os_:>22s} {cm / om:6.2f} {c_rss:6.1f} MiB {o_rss:6.1f} MiB")
        print(f"\nORT RSS includes the Python interpreter + numpy + onnxruntime import: {base_rss:.1f} MiB "
              f"for a process that only imports them. ratio = cnnc / ORT latency (below 1: cnnc faster).")
        print(f"load average {os.getloadavg()[0]:.2f} at the end (2 shared cores: expect noise)")


if __name__ == "__main__":
    main()
