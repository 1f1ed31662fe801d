"""cnnc next to numpy.matmul, ONNX Runtime and PyTorch in one run: GEMM, inference of the textbook
CNNs, a training step, with 1 and 2 threads (the implementation is cnnc/bench.py, also `cnnc bench`).

    python tools/bench.py                       # everything, 10 interleaved repetitions
    python tools/bench.py --quick --only gemm   # a smoke run
"""
import os
import sys

# before numpy loads: OpenBLAS's workers then stop busy-waiting right after each call, instead of
# holding the cores while cnnc runs (otherwise cnnc.bench reruns itself in a child process to get this)
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

from cnnc import bench  # noqa: E402

if __name__ == "__main__":
    sys.exit(bench.main())
