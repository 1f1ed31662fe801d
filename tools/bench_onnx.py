"""Batch-1 inference of ONNX model-zoo classics: cnnc.onnx.InferenceSession next to ONNX Runtime.

Both run in this process with the same thread count; calls alternate and the table reports medians and
the ratio (cnnc / ONNX Runtime; below 1 means cnnc is faster). The models are the 'light' ones shipped
inside the onnx package; their weights are generated at load (ConstantOfShape), so they are randomised
here to keep the runtimes from seeing constant tensors.

    python tools/bench_onnx.py                     # squeezenet, resnet50, vgg19; 2 threads
    python tools/bench_onnx.py --models squeezenet --threads 1 --reps 20
"""
import argparse
import os
import time

import numpy as np

from cnnc.onnx._random import randomized_weights


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="*", default=["squeezenet", "resnet50", "vgg19"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=11)
    args = ap.parse_args()
    import onnx
    import onnxruntime as ort

    import cnnc
    import cnnc.onnx
    cnnc.set_num_threads(args.threads)
    light = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "light")
    so = ort.SessionOptions()
    so.intra_op_num_threads = args.threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # ONNX Runtime's pool spins between calls by default; interleaved with cnnc it would hold the cores
    # while cnnc runs (cnnc's pool workers spin 50 us after a loop, then sleep: src_c/threads.c)
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    print(f"threads {args.threads}, cnnc {cnnc.__version__} ({cnnc.show_config(False)['simd']}), "
          f"onnxruntime {ort.__version__}")
    print(f"{'model':<12} {'cnnc ms':>9} {'ORT ms':>9} {'ratio':>6} {'max |diff|':>11}")
    for name in args.models:
        model = randomized_weights(onnx.load(os.path.join(light, f"light_{name}.onnx")))
        data = model.SerializeToString()
        inits = {t.name for t in model.graph.initializer}
        inp = next(i for i in model.graph.input if i.name not in inits)
        shape = [d.dim_value or 1 for d in inp.type.tensor_type.shape.dim]
        x = np.random.default_rng(1).random(shape, dtype=np.float32)
        mine = cnnc.onnx.InferenceSession(data)
        ref = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
        feed = {inp.name: x}
        a, b = mine.run(None, feed)[0], ref.run(None, feed)[0]
        times = {"cnnc": [], "ort": []}
        for _ in range(args.reps):
            for key, sess in (("cnnc", mine), ("ort", ref)):
                t0 = time.perf_counter()
                sess.run(None, feed)
                times[key].append(time.perf_counter() - t0)
        med = {k: 1e3 * float(np.median(v)) for k, v in times.items()}
        print(f"{name:<12} {med['cnnc']:>9.2f} {med['ort']:>9.2f} {med['cnnc'] / med['ort']:>6.2f} "
              f"{float(np.abs(a - b).max()):>11.2e}")


if __name__ == "__main__":
    main()
