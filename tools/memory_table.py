"""Estimated versus measured memory of the textbook CNNs, for training steps and inference.

For each model, batch size and mode a fresh process measures one step three ways:

* cnnc's own accounting (cnnc.memory.measure): the peak bytes of cnnc's live buffers;
* the resident set (RSS), independently of cnnc: the growth of the process's resident pages over the
  step, from the kernel's exact count in /proc/self/statm sampled at every Python and C function call
  and return of the step (sys.setprofile). Memory is touched inside calls and released between them,
  so the largest sample is the step's peak; it can miss only memory touched and released within a
  single C call. glibc maps every allocation on its own pages and unmaps them when it is freed
  (MALLOC_MMAP_THRESHOLD_=0: the heap is never used), so no buffer can reuse pages that earlier work
  left resident (with a page-sized threshold it did: the free heap holes left by the deploy lowering in
  memory_estimate() hid 17% of a batch-1 step). Transparent huge pages are disabled for the process
  (PR_SET_THP_DISABLE) so a page counts when it is touched, 4 KB at a time. Before the measured step,
  the tracemalloc step and a one-sample step warm Python's caches and the profiler;
* tracemalloc: the peak of every NumPy buffer and Python object, to the byte.

The VmHWM column is the kernel's own peak (reset through /proc/self/clear_refs), for comparison only:
the kernel records it when memory is unmapped, from an RSS count kept in per-CPU batches, so it lags
the true peak by tens of pages per CPU (up to 0.25 MB measured here): within 2% at 10 MB, but up to
half of a 0.5 MB step at batch 1. statm's count is exact on recent kernels (the child checks that it
sees every page as it is touched and the table says so when it does not). RSS counts pages, so it
includes the rounding of each allocation up to whole pages (a 40-byte array takes 4 KB) and leaves
out the pages of a buffer that nothing writes (part of a GEMM workspace at batch 1). The children run
on one thread (measure_case explains why; cnnc's accounting at 2 threads is checked in-process by
tests/test_memory.py).

    python tools/memory_table.py                         # chollet and geron at batch 1, 64, 256
    python tools/memory_table.py --report geron --batch 64
"""
import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import ctypes, gc, json, mmap, os, sys, tracemalloc
import numpy as np, cnnc
from cnnc import memory, nn, zoo
import cnnc.callbacks, cnnc._progbar, cnnc.losses, cnnc.metrics, cnnc.optimizers
name, b, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
try:
    ctypes.CDLL(None, use_errno=True).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: 4 KB pages only
except (AttributeError, OSError):
    pass
PAGE = os.sysconf("SC_PAGE_SIZE")
statm = os.open("/proc/self/statm", os.O_RDONLY)
def resident_pages():
    return int(os.pread(statm, 128, 0).split()[1])
def statm_is_exact():  # each page shows as it is touched (+2 for the interpreter's own pages)
    area = mmap.mmap(-1, 8 * PAGE)
    before = resident_pages()
    ok = True
    for i in range(8):
        area[i * PAGE] = 1
        ok = ok and i + 1 <= resident_pages() - before <= i + 3
    area.close()
    return ok
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
cnnc.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x, y = rng.random((b, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, b)
nn.conv2d(np.ones((2, 9, 9, 8), np.float32), np.ones((3, 3, 8, 8), np.float32))  # the pool's threads
m = zoo.ARCHITECTURES[name]()
if mode == "train":
    m.compile("rmsprop", "sparse_categorical_crossentropy")
    m._build_optimizer()
    if m.optimizer._c_rule(0.0) is None:  # the NumPy rule's scratch, made before the step as it persists
        for i in range(len(m.optimizer._shapes)):
            m.optimizer._tmp(i)
    est = m.memory_estimate(b).training_bytes
    step = lambda n: m.fit(x[:n], y[:n], batch_size=n, epochs=1, verbose=0)
else:
    est = m.memory_estimate(b).inference_bytes
    step = lambda n: m.predict(x[:n], batch_size=n, verbose=0)
gc.collect()
tracemalloc.start(); step(b); traced = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
peak = 0
def sample(frame, event, arg):
    global peak
    peak = max(peak, resident_pages())
def resident_growth(n):
    global peak
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = peak = resident_pages()
    sys.setprofile(sample)
    acct = memory.measure(step, n)
    sys.setprofile(None)
    return (max(peak, resident_pages()) - base) * PAGE, hwm() - base * PAGE, acct
resident_growth(1)
if mode == "train":
    m.release_training_memory()  # the measured step allocates afresh, as a first step does
alive = memory.current_bytes()
rss, hwm_growth, acct = resident_growth(b)
extra = {}
if mode == "train":
    # the next step takes its buffers from the block the training steps reuse, allocated in this step
    # and planned from the last one; the step after it touches no new memory
    extra["alive_before_reused"] = memory.current_bytes()
    extra["rss_growth_reused"], _, extra["accounting_reused"] = resident_growth(b)
    extra["arena_bytes"] = m._step_arena.nbytes()
    extra["rss_growth_steady"] = resident_growth(b)[0]
print(json.dumps(dict(estimate=est, accounting=acct, alive_before=alive, rss_growth=rss, hwm_growth=hwm_growth,
                      traced=traced, statm_exact=statm_is_exact(), **extra)))
"""


def measure_case(name, b, mode, cwd=None, threads=1):
    """Run the child for one case in a fresh process (importing the same cnnc as this one) and return
    its figures: estimate, accounting, alive_before, rss_growth, hwm_growth, traced, statm_exact; in
    training also the step that reuses the arena's block (alive_before_reused, rss_growth_reused,
    accounting_reused, arena_bytes) and the step after it (rss_growth_steady).

    One thread by default: with more, each thread has its own scratch (e.g. a GEMM's packed A block),
    but a thread touches its scratch only when it claims part of a loop, and at small sizes the caller
    often does all of it, so the resident set would vary from run to run by the untouched slots."""
    import cnnc
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="0", OMP_NUM_THREADS=str(threads),
               PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(cnnc.__file__))))
    r = subprocess.run([sys.executable, "-c", _CHILD, name, str(b), mode], env=env, cwd=cwd,
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        raise RuntimeError(f"memory child {name} b={b} {mode} failed:\n{r.stderr}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["chollet", "geron"])
    ap.add_argument("--batches", nargs="*", type=int, default=[1, 64, 256])
    ap.add_argument("--report", help="print the MemoryReport of this model instead")
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    if args.report:
        from cnnc import zoo
        model = zoo.ARCHITECTURES[args.report]()
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy")
        print(model.memory_estimate(args.batch))
        return
    print(f"{'model':8} {'batch':>5} {'mode':6} {'estimate':>12} {'accounting':>12} {'est/acct':>9} "
          f"{'step est':>10} {'RSS growth':>11} {'est/RSS':>8} {'tracemalloc':>12} {'est/trace':>9} "
          f"{'VmHWM (lags)':>13}")
    inexact = False
    for name in args.models:
        for b in args.batches:
            for mode in ("train", "infer"):
                r = measure_case(name, b, mode)
                step = r["estimate"] - r["alive_before"]
                print(f"{name:8} {b:>5} {mode:6} {r['estimate'] / 1e6:>10.2f}MB {r['accounting'] / 1e6:>10.2f}MB "
                      f"{r['estimate'] / r['accounting']:>9.3f} {step / 1e6:>8.2f}MB {r['rss_growth'] / 1e6:>9.2f}MB "
                      f"{step / max(r['rss_growth'], 1):>8.3f} {r['traced'] / 1e6:>10.2f}MB "
                      f"{step / max(r['traced'], 1):>9.3f} {r['hwm_growth'] / 1e6:>11.2f}MB")
                inexact = inexact or not r["statm_exact"]
    if inexact:
        print("warning: this kernel's /proc/self/statm counts in per-CPU batches: RSS growth lags like VmHWM")


if __name__ == "__main__":
    main()
