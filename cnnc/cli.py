"""The `cnnc` command."""
import argparse
import os
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
          f"thread pool {'on' if cfg['thread_pool'] else 'off'}, {cfg['threads']} thread(s)")
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


def _load_images(which):
    """(x_train, y_train), (x_test, y_test) as float32 in [0, 1] with a channel axis."""
    from cnnc.datasets import fashion_mnist
    (xtr, ytr), (xte, yte) = fashion_mnist.load_sample() if which == "sample" else fashion_mnist.load_data()
    prep = lambda x: (x.astype(np.float32) / np.float32(255.0))[..., None]
    return (prep(xtr), ytr.astype(np.int64)), (prep(xte), yte.astype(np.int64))


def _train(args):
    import cnnc
    from cnnc import zoo
    if args.threads:
        cnnc.set_num_threads(args.threads)
    cnnc.utils.set_random_seed(args.seed)
    t0 = time.perf_counter()
    (xtr, ytr), (xte, yte) = _load_images(args.data)
    print(f"Fashion-MNIST ({'embedded sample' if args.data == 'sample' else 'full dataset'}): "
          f"{len(xtr)} training and {len(xte)} test images")
    model = zoo.ARCHITECTURES[args.model]()
    model.compile(optimizer=args.optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if args.verbose:
        model.summary()
    model.fit(xtr, ytr, epochs=args.epochs, batch_size=args.batch_size, verbose=args.verbose if args.verbose else 0)
    loss, acc = model.evaluate(xte, yte, batch_size=256, verbose=0)
    model.save(args.output)
    print(f"test accuracy: {acc:.4f} (loss {loss:.4f}) after {args.epochs} epoch(s), "
          f"{time.perf_counter() - t0:.1f} s in all")
    print(f"model saved to {os.path.abspath(args.output)}")
    return 0


def _evaluate(args):
    from cnnc import models
    model = models.load_model(args.model)
    _, (xte, yte) = _load_images(args.data)
    if model.loss is None:
        model.compile(optimizer="rmsprop", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    result = model.evaluate(xte, yte, batch_size=256, verbose=0, return_dict=True)
    print(" - ".join(f"{k}: {v:.4f}" for k, v in result.items()) + f" on {len(xte)} test images")
    return 0


def _read_inputs(path, shape):
    """Images from a .npy file or (with Pillow) an image file, shaped for a model input `shape`
    (NHWC, or NCHW when the last axis is not 1 or 3 channels)."""
    channels_last = shape[-1] in (1, 3)
    h, w, c = shape[1:] if channels_last else (shape[2], shape[3], shape[1])
    if path.lower().endswith(".npy"):
        arr = np.load(path, allow_pickle=False)
    else:
        try:
            from PIL import Image
        except ImportError:
            raise SystemExit(f"cnnc predict: reading {path} needs Pillow (pip install pillow); .npy files work "
                             f"without it") from None
        img = Image.open(path).convert("L" if c == 1 else "RGB").resize((w, h))
        arr = np.asarray(img)
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] == c and arr.shape[:2] == (h, w)):
        arr = arr[None]
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.shape[1:] != (h, w, c):
        raise SystemExit(f"cnnc predict: {path} holds shape {arr.shape}, the model takes {h}x{w}x{c} images")
    if arr.max(initial=0) > 1.0:
        arr = arr / np.float32(255.0)
    return arr if channels_last else np.ascontiguousarray(arr.transpose(0, 3, 1, 2))


def _onnx_predictor(path):
    """(input shape with None batch, predict(x)) for an .onnx file, run by cnnc's ONNX runtime."""
    from cnnc.onnx import InferenceSession
    sess = InferenceSession(path)
    inp = sess.get_inputs()[0]
    shape = tuple(d if isinstance(d, int) else None for d in inp.shape)
    return shape, lambda x: sess.run(None, {inp.name: x})[0]


def _predict(args):
    from cnnc import models
    from cnnc.datasets.fashion_mnist import CLASS_NAMES
    if args.model.lower().endswith(".onnx"):
        shape, run = _onnx_predictor(args.model)
    else:
        model = models.load_model(args.model, compile=False)
        shape, run = model.input_shape, lambda x: model.predict(x, verbose=0)
    for path in args.files:
        x = _read_inputs(path, shape)
        probs = run(x)
        for i, p in enumerate(probs):
            k = int(np.argmax(p))
            label = f" ({CLASS_NAMES[k]})" if probs.shape[-1] == len(CLASS_NAMES) else ""
            where = path if len(probs) == 1 else f"{path}[{i}]"
            print(f"{where}: class {k}{label}, probability {float(p[k]):.3f}")
    return 0


def _onnx(args):
    from cnnc.onnx import check_model_report
    if args.action != "check":
        raise SystemExit(f"cnnc onnx: unknown action {args.action!r}; use: cnnc onnx check MODEL")
    report = check_model_report(args.model)
    print(report)
    return 0 if report.supported else 1


def _memory(args):
    from cnnc import models, zoo
    if args.model in zoo.ARCHITECTURES:
        model = zoo.ARCHITECTURES[args.model]()
        model.compile(optimizer=args.optimizer or "rmsprop", loss="sparse_categorical_crossentropy")
    else:
        model = models.load_model(args.model)
    report = model.memory_estimate(args.batch_size, optimizer=args.optimizer)
    print(report)
    if args.budget:
        n = model.max_batch_size(args.budget, training=True, optimizer=args.optimizer)
        m = model.max_batch_size(args.budget, training=False)
        print(f"largest batch within {args.budget}: {n} for training, {m} for inference")
    return 0


def _bundle(args):
    import cnnc
    from cnnc import deploy, zoo
    src = args.model
    if src in zoo.ARCHITECTURES and not os.path.exists(src):
        src = zoo.ARCHITECTURES[src]()
    n = deploy.bundle(src, args.output, plan_batch=args.plan_batch)
    rt = deploy.Runtime(args.output)
    batch = rt.fixed_batch or args.plan_batch
    plan, ws = rt.arena_parts(batch)
    shapes = ", ".join(f"{name} {list(rt.input_shape(i, batch))}" for i, name in enumerate(rt.input_names))
    print(f"wrote {args.output}: {n:,} bytes; input(s) {shapes}")
    print(f"C runtime arena at batch {batch}: {plan + ws:,} bytes (tensor plan {plan:,} + kernel workspace "
          f"{ws:,}; {cnnc.get_num_threads()} thread(s))")
    return 0


def _bench(args):
    from cnnc import bench
    return bench.run_args(args)


def _summary(args):
    from cnnc import models
    models.load_model(args.model, compile=False).summary()
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cnnc", description="Convolutional neural networks on the CPU.")
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("train", help="train a textbook CNN on Fashion-MNIST and save it")
    p.add_argument("--model", choices=sorted(__import__("cnnc.zoo").zoo.ARCHITECTURES), default="chollet",
                   help="architecture: chollet (Deep Learning with Python, ch. 5; default) or geron "
                        "(Hands-on ML, ch. 14)")
    p.add_argument("--data", choices=["sample", "full"], default="sample",
                   help="sample: the embedded stratified sample (default, no download); full: all 70,000 images")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--optimizer", default="rmsprop")
    p.add_argument("--output", default="fashion_mnist_cnn.cnnc", help="where to save the trained model")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--verbose", type=int, choices=[0, 1, 2], default=1)
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="evaluate a saved model on the Fashion-MNIST test images")
    p.add_argument("model")
    p.add_argument("--data", choices=["sample", "full"], default="sample")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("predict", help="classify images (.npy arrays, or PNG/JPEG with Pillow) with a .cnnc "
                                       "or .onnx model")
    p.add_argument("model")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=_predict)

    p = sub.add_parser("onnx", help="ONNX tools: `cnnc onnx check MODEL` reports support, ops, parameters, MACs")
    p.add_argument("action", choices=["check"])
    p.add_argument("model")
    p.set_defaults(func=_onnx)

    p = sub.add_parser("memory", help="per-layer RAM for training versus inference of a saved model (or of "
                                      "the textbook CNNs: chollet, geron)")
    p.add_argument("model")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--optimizer", default=None, help="default: the model's compiled optimizer")
    p.add_argument("--budget", default=None, help="also print the largest batch that fits, e.g. 2GB")
    p.set_defaults(func=_memory)

    p = sub.add_parser("bundle", help="write a bundle for the standalone C runtime from a saved model (.cnnc), "
                                      "an ONNX model (.onnx) or a zoo architecture name")
    p.add_argument("model")
    p.add_argument("output")
    p.add_argument("--plan-batch", type=int, default=1, help="batch size of the stored memory plan (default 1)")
    p.set_defaults(func=_bundle)

    p = sub.add_parser("summary", help="print a saved model's summary")
    p.add_argument("model")
    p.set_defaults(func=_summary)

    p = sub.add_parser("demo", help="run a small CNN forward pass through the C core and time it")
    p.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--repeat", type=int, default=10, help="timed repetitions per layer (default 10)")
    p.add_argument("--threads", type=int, default=0, help="threads (default: OMP_NUM_THREADS or all cores)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_demo)

    p = sub.add_parser("bench", help="time GEMM, inference and a training step against numpy, ONNX Runtime "
                                     "and PyTorch, with 1 and 2 threads")
    __import__("cnnc.bench").bench.add_arguments(p)
    p.set_defaults(func=_bench)

    p = sub.add_parser("config", help="print the build and run-time configuration")
    p.set_defaults(func=_config)

    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    for opt in ("batch", "repeat", "epochs", "batch_size"):
        if getattr(args, opt, 1) < 1:
            parser.error(f"--{opt.replace('_', '-')} must be >= 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
