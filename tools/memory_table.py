"""Estimated versus measured memory of the textbook CNNs, for training steps and inference.

For each model, batch size and mode a fresh process measures one step three ways: cnnc's own
accounting (cnnc.memory.measure), the growth of the resident set (VmHWM after resetting it through
/proc/self/clear_refs; Linux) and tracemalloc. Large buffers come straight from mmap
(MALLOC_MMAP_THRESHOLD_) so the resident set follows what is alive.

    python tools/memory_table.py                         # chollet and geron at batch 1, 64, 256
    python tools/memory_table.py --report geron --batch 64
"""
import argparse
import json
import os
import subprocess
import sys

_CHILD = r"""
import gc, json, sys, tracemalloc
import numpy as np, cnnc
from cnnc import memory, nn, zoo
import cnnc.callbacks, cnnc._progbar, cnnc.losses, cnnc.metrics, cnnc.optimizers
name, b, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]
cnnc.utils.set_random_seed(0)
rng = np.random.default_rng(0)
x, y = rng.random((b, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, b)
nn.conv2d(np.ones((2, 9, 9, 8), np.float32), np.ones((3, 3, 8, 8), np.float32))  # OpenMP threads
m = zoo.ARCHITECTURES[name]()
if mode == "train":
    m.compile("rmsprop", "sparse_categorical_crossentropy")
    m._build_optimizer()
    for i in range(len(m.optimizer._shapes)):
        m.optimizer._tmp(i)
    est = m.memory_estimate(b).training_bytes
    fn = lambda: m.fit(x, y, batch_size=b, epochs=1, verbose=0)
else:
    est = m.memory_estimate(b).inference_bytes
    fn = lambda: m.predict(x, batch_size=b, verbose=0)
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
gc.collect()
alive = memory.current_bytes()
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
base = status("VmRSS")
peak = memory.measure(fn)
rss = status("VmHWM") - base
gc.collect()
tracemalloc.start(); fn(); traced = tracemalloc.get_traced_memory()[1]; tracemalloc.stop()
print(json.dumps(dict(estimate=est, accounting=peak, alive_before=alive, rss_growth=rss, traced=traced)))
"""


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
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536")
    print(f"{'model':8} {'batch':>5} {'mode':6} {'estimate':>12} {'accounting':>12} {'est/acct':>9} "
          f"{'step est':>10} {'RSS growth':>11} {'est/RSS':>8} {'tracemalloc':>12} {'est/trace':>9}")
    for name in args.models:
        for b in args.batches:
            for mode in ("train", "infer"):
                out = subprocess.run([sys.executable, "-c", _CHILD, name, str(b), mode], env=env, check=True,
                                     capture_output=True, text=True).stdout
                r = json.loads(out.strip().splitlines()[-1])
                step = r["estimate"] - r["alive_before"]
                print(f"{name:8} {b:>5} {mode:6} {r['estimate'] / 1e6:>10.2f}MB {r['accounting'] / 1e6:>10.2f}MB "
                      f"{r['estimate'] / r['accounting']:>9.3f} {step / 1e6:>8.2f}MB {r['rss_growth'] / 1e6:>9.2f}MB "
                      f"{step / max(r['rss_growth'], 1):>8.3f} {r['traced'] / 1e6:>10.2f}MB "
                      f"{step / max(r['traced'], 1):>9.3f}")


if __name__ == "__main__":
    main()
