"""The `cnnc` command."""
import argparse
import sys
import time

import numpy as np


def _demo(args):
    """Run a small CNN stack (conv -> pool -> conv -> pool -> dense) through the C core and report."""
    import cnnc
    from cnnc import nn

    if args.threads:
        cnnc.set_num_threads(args.threads)
    cfg = cnnc.show_config(print_=False)
    print(f"cnnc {cfg['version']}: SIMD path {cfg['simd']} (supported: {', '.join(cfg['simd_supported'])}), "
          f"OpenMP {'on' if cfg['openmp'] else 'off'}, {cfg['threads']} thread(s)")
    rng = np.random.default_rng(args.seed)
    n = args.batch
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    params = {
        "w1": rng.standard_normal((3, 3, 1, 32), dtype=np.float32) * np.float32(np.sqrt(2 / 9)),
        "b1": np.zeros(32, np.float32),
        "w2": rng.standard_normal((3, 3, 32, 64), dtype=np.float32) * np.float32(np.sqrt(2 / 288)),
        "b2": np.zeros(64, np.float32),
        "w3": rng.standard_normal((5 * 5 * 64, 10), dtype=np.float32) * np.float32(np.sqrt(1 / 1600)),
        "b3": np.zeros(10, np.float32),
    }
    steps = [
        ("conv2d 3x3x32 relu", lambda t: nn.conv2d(t, params["w1"], params["b1"], activation="relu")),
        ("max_pool2d 2x2", lambda t: nn.max_pool2d(t, 2)),
        ("conv2d 3x3x64 relu", lambda t: nn.conv2d(t, params["w2"], params["b2"], activation="relu")),
        ("max_pool2d 2x2", lambda t: nn.max_pool2d(t, 2)),
        ("flatten", lambda t: t.reshape(t.shape[0], -1)),
        ("dense 10 softmax", lambda t: nn.dense(t, params["w3"], params["b3"], activation="softmax")),
    ]
    print(f"\nforward pass, batch {n}, input {x.shape}:")
    print(f"  {'layer':<22}{'output shape':<20}{'median ms':>10}")
    t = x
    total = 0.0
    for name, fn in steps:
        fn(t)  # warm-up: thread start and first touch of fresh buffers are not part of the timing
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            out = fn(t)
            times.append(time.perf_counter() - t0)
        ms = 1e3 * float(np.median(times))
        total += ms
        print(f"  {name:<22}{str(out.shape):<20}{ms:>10.3f}")
        t = out
    print(f"  {'total':<42}{total:>10.3f}")
    print(f"\nsoftmax rows sum to 1 within {float(np.abs(t.sum(axis=1) - 1).max()):.1e}")

    a = rng.standard_normal((512, 512), dtype=np.float32)
    nn.matmul(a, a)
    t0 = time.perf_counter()
    reps = 5
    for _ in range(reps):
        nn.matmul(a, a)
    dt = (time.perf_counter() - t0) / reps
    print(f"matmul 512^3: {2 * 512**3 / dt / 1e9:.1f} GFLOP/s")
    return 0


def _config(args):
    import cnnc
    cnnc.show_config()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cnnc", description="Convolutional neural networks on the CPU.")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("demo", help="run a small CNN forward pass through the C core and time it")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--repeat", type=int, default=10, help="timed repetitions per layer (default 10)")
    p.add_argument("--threads", type=int, default=0, help="threads (default: OMP_NUM_THREADS or all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)
    p = sub.add_parser("config", help="print the build and run-time configuration")
    p.set_defaults(func=_config)
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if getattr(args, "batch", 1) < 1 or getattr(args, "repeat", 1) < 1:
        parser.error("--batch and --repeat must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
