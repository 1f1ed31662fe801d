"""`cnnc bench`: cnnc next to the libraries it is compared with, measured in one run.

    cnnc bench                          # GEMM, inference, training; 1 and 2 threads; 10 repetitions
    cnnc bench --quick                  # 3 repetitions: a smoke run
    cnnc bench --only infer --threads 2 --reps 30

- gemm:  cnnc.nn.matmul vs numpy.matmul (float32): 1024^3 and the im2col GEMMs of the textbook CNNs.
- infer: the textbook CNNs (cnnc.zoo) at batch 1 and 64, cnnc's public inference paths vs ONNX Runtime
         running the model exported by cnnc.onnx.export (outputs checked to agree first).
- train: one RMSprop step (sparse categorical crossentropy, batch 64) vs the same network in PyTorch
         (NCHW, as PyTorch users write it) starting from cnnc's initial weights.
- depthwise (only when asked for): MobileNet-style 3x3 depthwise convolutions. Inference at batch 1,
         NCHW (ONNX's layout): nn.conv2d vs ONNX Runtime running one Conv node (group = channels).
         Training at batch 16: nn.conv2d then nn.conv2d_grad in NHWC (Keras' layout) vs the same
         forward and backward in PyTorch (NCHW).

Each case builds every candidate (each library at each thread count) and checks that they agree, then
calls them in turn, round after round, the order rotating every round, so that the load of a shared
machine falls on all of them alike. The table reports medians and ratios; "time" is cnnc / reference
(below 1: cnnc is faster), "speed" its inverse (throughput of cnnc relative to the reference).

ONNX Runtime, onnx and PyTorch are optional (pip install "cnnc[bench]"); without them their columns
say why they were skipped. Nothing here is imported by `import cnnc`.
"""
import argparse
import ctypes
import importlib
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

__all__ = ["main", "run", "add_arguments", "format_table"]

# m x n x k: 1024^3 and the im2col GEMMs at batch 64 (NHWC) of Chollet's conv2 (11x11 output,
# 3x3x32 -> 64) and Geron's 3x3 conv 128 -> 256 (7x7 output)
GEMM_SIZES = ["1024x1024x1024", "7744x64x288", "3136x256x1152"]
MODELS = ["chollet", "geron"]
INFER_BATCHES = [1, 64]
TRAIN_BATCH = 64
TOLERANCE = 1e-4
_INSTALL = 'pip install "cnnc[bench]"'


# ---- thread control -----------------------------------------------------------------------------

class _NumpyThreads:
    """Sets the thread count of numpy's BLAS as threadpoolctl does (threadpoolctl when installed,
    otherwise the OpenBLAS that numpy loaded, found in the process's memory map); `available` is
    False when neither works, and numpy then runs with its default thread count."""

    def __init__(self):
        self._set = self._get = None
        try:
            import threadpoolctl
            ctl = threadpoolctl.ThreadpoolController()
            blas = ctl.select(user_api="blas")
            if blas.lib_controllers:
                self._set = lambda n: blas.lib_controllers[0].set_num_threads(n)
                self._get = lambda: blas.lib_controllers[0].num_threads
        except ImportError:
            pass
        if self._set is None:
            self._from_openblas()

    def _from_openblas(self):
        try:
            with open("/proc/self/maps") as f:
                paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and "/" in line})
        except OSError:
            return
        for path in paths:
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for prefix, suffix in (("scipy_openblas", "64_"), ("scipy_openblas", ""), ("openblas", "64_"),
                                   ("openblas", "")):
                setter = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                getter = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if setter is not None and getter is not None:
                    setter.argtypes, setter.restype = [ctypes.c_int], None
                    getter.argtypes, getter.restype = [], ctypes.c_int
                    self._set, self._get = setter, getter
                    return

    @property
    def available(self):
        return self._set is not None

    def get(self):
        return self._get() if self._get else None

    def set(self, n):
        if self._set:
            self._set(n)


def _optional(name):
    """(module, None) or (None, why it is skipped)."""
    try:
        return importlib.import_module(name), None
    except ImportError as exc:
        return None, f"{name} is not installed ({_INSTALL})" if isinstance(exc, ModuleNotFoundError) \
            else f"{name} cannot be imported: {exc}"
    except OSError as exc:  # a broken shared library
        return None, f"{name} cannot be loaded: {exc}"


# ---- timing -------------------------------------------------------------------------------------

def _interleave(candidates, reps):
    """candidates: (key, prepare, call). One warm-up call each, then `reps` rounds calling every
    candidate once (prepare untimed, e.g. setting thread counts), the order rotating each round.
    Returns {key: median seconds}."""
    times = {key: [] for key, _, _ in candidates}
    for _, prepare, call in candidates:
        prepare()
        call()
    for r in range(reps):
        k = r % len(candidates)
        for key, prepare, call in candidates[k:] + candidates[:k]:
            prepare()
            t0 = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(v) for key, v in times.items()}


def _row(bench, case, threads, **kw):
    row = {"bench": bench, "case": case, "threads": threads, "ours": None, "ours_s": None, "ref": None,
           "ref_s": None, "flop": None, "note": ""}
    row.update(kw)
    return row


# ---- GEMM ---------------------------------------------------------------------------------------

def _bench_gemm(sizes, threads, reps, ctx):
    import cnnc
    from cnnc import nn
    rng = np.random.default_rng(0)
    blas = ctx["numpy_threads"]
    rows = []
    for spec in sizes:
        m, n, k = (int(v) for v in spec.lower().split("x"))
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        ref = np.matmul(a, b)
        err = float(np.abs(nn.matmul(a, b) - ref).max() / max(float(np.abs(ref).max()), 1e-30))
        cands = []
        for t in threads:
            cands.append((("cnnc", t), lambda t=t: cnnc.set_num_threads(t), lambda: nn.matmul(a, b)))
            cands.append((("numpy", t), lambda t=t: blas.set(t), lambda: np.matmul(a, b)))
        med = _interleave(cands, reps)
        for t in threads:
            rows.append(_row("gemm", spec, t, ours="nn.matmul", ours_s=med["cnnc", t],
                             ref="numpy.matmul" if blas.available else "numpy.matmul*", ref_s=med["numpy", t],
                             flop=2.0 * m * n * k, note=f"rel. err {err:.1e}"))
    return rows


# ---- models -------------------------------------------------------------------------------------

def _model(name, seed=0):
    import cnnc
    from cnnc import zoo
    cnnc.utils.set_random_seed(seed)
    return zoo.ARCHITECTURES[name]()


def _forward_flop(model):
    """FLOP of one image's forward pass (2 x the MACs of cnnc's memory estimate)."""
    return 2.0 * sum(r["macs"] for r in model.memory_estimate(1).rows)


def _ort_session(ort, data, threads):
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    # ORT's pool spins between calls by default: interleaved with cnnc it would hold the cores
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])


def _bench_infer(models, batches, threads, reps, ctx):
    import cnnc
    rows = []
    onnx, why = _optional("onnx")
    ort, why_ort = _optional("onnxruntime") if onnx else (None, why)
    for name in models:
        model = _model(name)
        flop = _forward_flop(model)
        data = None
        if onnx is not None:
            import cnnc.onnx
            data = cnnc.onnx.export(model).SerializeToString()
        rng = np.random.default_rng(1)
        for n in batches:
            x = rng.random((n,) + tuple(model.input_shape[1:]), dtype=np.float32)
            paths = {"predict": lambda: model.predict(x, batch_size=n, verbose=0),
                     "predict_on_batch": lambda: model.predict_on_batch(x)}
            if data is not None:
                sess = cnnc.onnx.InferenceSession(data)
                feed = {sess.get_inputs()[0].name: x}
                paths["onnx.InferenceSession"] = lambda sess=sess, feed=feed: sess.run(None, feed)[0]
            expected = model.predict(x, batch_size=n, verbose=0)
            note, refs = "", {}
            for path, fn in paths.items():
                d = float(np.abs(fn() - expected).max())
                if d > TOLERANCE:
                    raise AssertionError(f"cnnc's {path} differs from predict by {d:.1e} on {name}")
            if ort is not None:
                for t in threads:
                    refs[t] = _ort_session(ort, data, t)
                name_in = refs[threads[0]].get_inputs()[0].name
                d = float(np.abs(refs[threads[0]].run(None, {name_in: x})[0] - expected).max())
                if d > TOLERANCE:
                    note, refs = f"ONNX Runtime skipped: outputs differ by {d:.1e} > {TOLERANCE:g}", {}
                else:
                    note = f"max|diff| {d:.0e}"
            else:
                note = f"ONNX Runtime skipped: {why_ort}"
            cands = []
            for t in threads:
                cands += [((path, t), lambda t=t: cnnc.set_num_threads(t), fn) for path, fn in paths.items()]
                if t in refs:
                    cands.append((("ort", t), lambda: None,
                                  lambda s=refs[t], f={name_in: x}: s.run(None, f)))
            med = _interleave(cands, reps)
            for t in threads:
                best = min(paths, key=lambda p: med[p, t])
                others = ", ".join(f"{p} {1e3 * med[p, t]:.3g}" for p in paths if p != best)
                rows.append(_row("infer", f"{name} b={n}", t, ours=best, ours_s=med[best, t],
                                 ref="onnxruntime" if t in refs else None, ref_s=med.get(("ort", t)),
                                 flop=flop * n, note="; ".join(s for s in (note, f"cnnc ms: {others}") if s)))
    return rows


def _torch_net(torch, model):
    """The cnnc Sequential as a torch.nn.Sequential in NCHW with the same weights; the final softmax
    is left out (PyTorch's CrossEntropyLoss takes logits)."""
    from cnnc import layers as L
    nn = torch.nn
    mods, shape, pending_flatten = [], tuple(model.input_shape), None
    layers = model.layers
    for i, layer in enumerate(layers):
        out_shape = tuple(layer.compute_output_shape(shape))
        last = i == len(layers) - 1
        act = getattr(layer, "activation", None)
        if isinstance(layer, L.Conv2D):
            kh, kw = layer.kernel_size
            if (layer.data_format != "channels_last" or layer.groups != 1 or layer.dilation_rate != (1, 1)
                    or (layer.padding == "same" and (layer.strides != (1, 1) or kh % 2 == 0 or kw % 2 == 0))):
                raise NotImplementedError(f"no PyTorch twin for {layer.name}")
            pad = (kh // 2, kw // 2) if layer.padding == "same" else (0, 0)
            conv = nn.Conv2d(shape[3], layer.filters, (kh, kw), stride=layer.strides, padding=pad,
                             bias=layer.use_bias)
            conv.weight.data = torch.from_numpy(layer.params["kernel"].transpose(3, 2, 0, 1).copy())
            if layer.use_bias:
                conv.bias.data = torch.from_numpy(layer.params["bias"].copy())
            mods.append(conv)
        elif isinstance(layer, L.MaxPooling2D):
            if layer.padding != "valid":
                raise NotImplementedError(f"no PyTorch twin for {layer.name}")
            mods.append(nn.MaxPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, L.Flatten):
            pending_flatten = shape[1:]  # NHWC: torch flattens (C, H, W), Keras (H, W, C)
            mods.append(nn.Flatten())
        elif isinstance(layer, L.Dense):
            w = layer.params["kernel"]  # [in, units]
            if pending_flatten is not None and len(pending_flatten) == 3:
                h, wd, c = pending_flatten
                w = w.reshape(h, wd, c, -1).transpose(2, 0, 1, 3).reshape(h * wd * c, -1)
            pending_flatten = None
            lin = nn.Linear(w.shape[0], layer.units, bias=layer.use_bias)
            lin.weight.data = torch.from_numpy(np.ascontiguousarray(w.T))
            if layer.use_bias:
                lin.bias.data = torch.from_numpy(layer.params["bias"].copy())
            mods.append(lin)
        elif isinstance(layer, L.Dropout):
            mods.append(nn.Dropout(layer.rate))
        else:
            raise NotImplementedError(f"no PyTorch twin for {type(layer).__name__} {layer.name}")
        if act is not None and not act.is_linear:
            if act.name == "relu":
                mods.append(nn.ReLU())
            elif not (act.softmax and last):
                raise NotImplementedError(f"no PyTorch twin for activation {act.name} of {layer.name}")
        shape = out_shape
    return nn.Sequential(*mods)


def _bench_train(models, threads, reps, ctx):
    import cnnc
    from cnnc import optimizers
    rows = []
    torch, why = _optional("torch")
    for name in models:
        model = _model(name)
        flop = 3 * _forward_flop(model) * TRAIN_BATCH  # forward + the two backward GEMMs per layer
        rng = np.random.default_rng(2)
        x = rng.random((TRAIN_BATCH,) + tuple(model.input_shape[1:]), dtype=np.float32)
        y = rng.integers(0, model.output_shape[-1], TRAIN_BATCH)
        note = f"PyTorch skipped: {why}" if torch is None else ""
        if torch is not None:
            net = _torch_net(torch, model).eval()
            xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            yt = torch.from_numpy(y.astype(np.int64))
            with torch.no_grad():
                d = float(np.abs(torch.softmax(net(xt), 1).numpy() - model.predict(x, verbose=0)).max())
            if d > TOLERANCE:
                note, torch = f"PyTorch skipped: its forward differs from cnnc's by {d:.1e}", None
            else:
                net.train()
                # Keras' RMSprop adds epsilon inside the square root, PyTorch's outside: same step otherwise
                opt = torch.optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
                loss_fn = torch.nn.CrossEntropyLoss()
                losses = {}

                def torch_step():
                    opt.zero_grad(set_to_none=True)
                    loss = loss_fn(net(xt), yt)
                    loss.backward()
                    opt.step()
                    if "torch" not in losses:
                        losses["torch"] = loss.item()
        model.compile(optimizer=optimizers.RMSprop(learning_rate=1e-3, rho=0.9, epsilon=1e-7),
                      loss="sparse_categorical_crossentropy")

        def cnnc_step():
            loss = model.train_on_batch(x, y)
            if torch is not None:
                losses.setdefault("cnnc", float(loss))
        cands = []
        for t in threads:
            cands.append((("cnnc", t), lambda t=t: cnnc.set_num_threads(t), cnnc_step))
            if torch is not None:
                cands.append((("torch", t), lambda t=t: torch.set_num_threads(t), torch_step))
        med = _interleave(cands, reps)
        if torch is not None:
            note = f"step-1 loss cnnc {losses['cnnc']:.4f} torch {losses['torch']:.4f}"
            if any(type(l).__name__ == "Dropout" for l in model.layers):
                note += " (dropout masks differ)"
        for t in threads:
            rows.append(_row("train", f"{name} b={TRAIN_BATCH}", t, ours="train_on_batch", ours_s=med["cnnc", t],
                             ref="torch" if torch is not None else None, ref_s=med.get(("torch", t)),
                             flop=flop, note=note))
    return rows


# ---- depthwise ----------------------------------------------------------------------------------

# channels, input size, stride: 3x3 depthwise layers of MobileNet v1 at 224x224
DEPTHWISE = [(32, 112, 1), (64, 112, 2), (128, 56, 1), (256, 28, 2), (512, 14, 1)]
DEPTHWISE_TRAIN_BATCH = 16


def _depthwise_onnx(onnx, c, hw, s, w, b):
    from onnx import helper, numpy_helper
    f = onnx.TensorProto.FLOAT
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                            strides=[s, s], group=c)
    graph = helper.make_graph([node], "dw", [helper.make_tensor_value_info("x", f, [1, c, hw, hw])],
                              [helper.make_tensor_value_info("y", f, None)],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8).SerializeToString()


def _bench_depthwise(threads, reps, ctx):
    import cnnc
    from cnnc import nn
    rows = []
    onnx, why = _optional("onnx")
    ort, why_ort = _optional("onnxruntime") if onnx else (None, why)
    torch, why_torch = _optional("torch")
    rng = np.random.default_rng(3)
    for c, hw, s in DEPTHWISE:
        w = (rng.standard_normal((c, 1, 3, 3)) * 0.3).astype(np.float32)   # NCHW [Cout, 1, KH, KW]
        b = rng.standard_normal(c).astype(np.float32)
        case = f"{c}x{hw}x{hw} s{s}"
        oh = (hw + 2 - 3) // s + 1
        flop = 2.0 * 9 * c * oh * oh
        # inference, batch 1, NCHW
        x = rng.standard_normal((1, c, hw, hw)).astype(np.float32)
        kw = dict(strides=s, padding=1, groups=c, data_format="NCHW")
        ours = lambda x=x, kw=kw, w=w, b=b: nn.conv2d(x, w, b, **kw)  # noqa: E731
        expected = ours()
        refs, note = {}, f"ONNX Runtime skipped: {why_ort}"
        if ort is not None:
            data = _depthwise_onnx(onnx, c, hw, s, w, b)
            for t in threads:
                refs[t] = _ort_session(ort, data, t)
            d = float(np.abs(refs[threads[0]].run(None, {"x": x})[0] - expected).max())
            note = f"max|diff| {d:.0e}"
            if d > TOLERANCE:
                note, refs = f"ONNX Runtime skipped: outputs differ by {d:.1e} > {TOLERANCE:g}", {}
        cands = []
        for t in threads:
            cands.append((("cnnc", t), lambda t=t: cnnc.set_num_threads(t), ours))
            if t in refs:
                cands.append((("ort", t), lambda: None, lambda r=refs[t], x=x: r.run(None, {"x": x})))
        med = _interleave(cands, reps)
        for t in threads:
            rows.append(_row("depthwise", f"infer {case} b=1", t, ours="nn.conv2d NCHW", ours_s=med["cnnc", t],
                             ref="onnxruntime" if t in refs else None, ref_s=med.get(("ort", t)), flop=flop,
                             note=note))
        # training, NHWC in cnnc, NCHW in PyTorch: the forward, then dx, dw and db
        n = DEPTHWISE_TRAIN_BATCH
        xh = rng.standard_normal((n, hw, hw, c)).astype(np.float32)
        wh = np.ascontiguousarray(w.transpose(2, 3, 1, 0))                  # [KH, KW, 1, C]
        kwh = dict(strides=s, padding=1, groups=c)
        dy = rng.standard_normal((n, oh, oh, c)).astype(np.float32)

        def cnnc_step(xh=xh, wh=wh, b=b, dy=dy, kwh=kwh):
            nn.conv2d(xh, wh, b, **kwh)
            return nn.conv2d_grad(xh, wh, dy, **kwh)
        note, tstep = f"PyTorch skipped: {why_torch}", None
        if torch is not None:
            xt = torch.from_numpy(np.ascontiguousarray(xh.transpose(0, 3, 1, 2))).requires_grad_(True)
            wt = torch.from_numpy(w.copy()).requires_grad_(True)
            bt = torch.from_numpy(b.copy()).requires_grad_(True)
            dyt = torch.from_numpy(np.ascontiguousarray(dy.transpose(0, 3, 1, 2)))

            def tstep(xt=xt, wt=wt, bt=bt, dyt=dyt, s=s, c=c):
                xt.grad = wt.grad = bt.grad = None
                torch.nn.functional.conv2d(xt, wt, bt, stride=s, padding=1, groups=c).backward(dyt)
                return xt.grad, wt.grad, bt.grad
            got, want = cnnc_step(), tstep()
            d = max(float(np.abs(got[0] - want[0].numpy().transpose(0, 2, 3, 1)).max()),
                    float(np.abs(got[1] - want[1].numpy().transpose(2, 3, 1, 0)).max()) / max(n * oh * oh, 1))
            note = f"max|diff| dx, dw/pixels {d:.0e}"
        cands = []
        for t in threads:
            cands.append((("cnnc", t), lambda t=t: cnnc.set_num_threads(t), cnnc_step))
            if tstep is not None:
                cands.append((("torch", t), lambda t=t: torch.set_num_threads(t), tstep))
        med = _interleave(cands, reps)
        for t in threads:
            rows.append(_row("depthwise", f"train {case} b={n}", t, ours="conv2d + conv2d_grad NHWC",
                             ours_s=med["cnnc", t], ref="torch" if tstep is not None else None,
                             ref_s=med.get(("torch", t)), flop=3 * flop * n, note=note))
    return rows


# ---- report -------------------------------------------------------------------------------------

def describe_machine(ctx):
    """Lines naming the machine, the builds and the thread settings."""
    import cnnc
    cfg = cnnc.show_config(print_=False)
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    blas = ""
    try:
        b = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f" ({b.get('name', '?')} {b.get('version', '')})".replace(" )", ")")
    except Exception:  # numpy < 1.25 has no mode="dicts"
        pass
    versions = [f"numpy {np.__version__}{blas}"]
    for mod, label in (("onnxruntime", "onnxruntime"), ("onnx", "onnx"), ("torch", "torch")):
        m = sys.modules.get(mod)
        versions.append(f"{label} {m.__version__}" if m is not None else f"{label} -")
    load = " ".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    nt = ctx["numpy_threads"]
    return [
        f"machine: {cpu}, {cfg['cpu_count']} logical CPUs, load average {load}; Python {platform.python_version()}",
        f"cnnc {cfg['version']} (C core {cfg['c_core_version']}): SIMD {cfg['simd']} (supported "
        f"{', '.join(cfg['simd_supported'])}), thread pool {'on' if cfg['thread_pool'] else 'off'}, "
        f"GEMM blocking {cfg['gemm_blocking']}",
        "versions: " + ", ".join(versions),
        f"threads: each row sets cnnc, numpy's BLAS, ONNX Runtime (intra-op, spinning off) and torch to its "
        f"count{'' if nt.available else '; numpy.matmul* runs with its default thread count (no way to set it found)'}"
        f"; OPENBLAS_THREAD_TIMEOUT={os.environ.get('OPENBLAS_THREAD_TIMEOUT', '-')}, "
        f"CNNC_SPIN_US={os.environ.get('CNNC_SPIN_US', '-')}",
    ] + ([ctx["malloc"]] if ctx.get("malloc") else [])


COLUMNS = ("bench", "case", "thr", "cnnc path", "cnnc ms", "reference", "ref ms", "cnnc GF/s", "ref GF/s",
           "time", "speed", "notes")


def format_table(rows):
    """The rows as an aligned text table (times in ms, ratios cnnc/reference)."""
    def ms(s):
        return "-" if s is None else f"{1e3 * s:.3f}" if s < 0.01 else f"{1e3 * s:.2f}"

    def gf(r, s):
        return "-" if s is None or not r["flop"] else f"{r['flop'] / s / 1e9:.1f}"
    cells = [COLUMNS]
    for r in rows:
        both = r["ours_s"] is not None and r["ref_s"] is not None
        cells.append((r["bench"], r["case"], str(r["threads"]), r["ours"] or "-", ms(r["ours_s"]),
                      r["ref"] or "skipped", ms(r["ref_s"]), gf(r, r["ours_s"]), gf(r, r["ref_s"]),
                      f"{r['ours_s'] / r['ref_s']:.2f}" if both else "-",
                      f"{r['ref_s'] / r['ours_s']:.2f}" if both else "-", r["note"]))
    width = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    left = {0, 1, 3, 5, 11}
    lines = []
    for c in cells:
        lines.append("  ".join(v.ljust(width[i]) if i in left else v.rjust(width[i])
                               for i, v in enumerate(c)).rstrip())
    return "\n".join(lines)


def run(only=("gemm", "infer", "train"), threads=(1, 2), reps=10, models=MODELS, sizes=GEMM_SIZES,
        batches=INFER_BATCHES, out=print, malloc=None):
    """Run the benchmarks, print the configuration and the table through `out`; returns the rows
    (dicts: bench, case, threads, ours, ours_s, ref, ref_s, flop, note; times in seconds, None when
    skipped). Thread counts of cnnc, numpy's BLAS and torch are restored afterwards. `malloc`: a line on
    the allocator's settings for the header (the command line's keep_freed_memory)."""
    import cnnc
    ctx = {"numpy_threads": _NumpyThreads(), "malloc": malloc}
    threads = list(threads)
    saved = (cnnc.get_num_threads(), ctx["numpy_threads"].get(), sys.modules.get("torch"))
    saved_torch = saved[2].get_num_threads() if saved[2] is not None else None
    rows = []
    t0 = time.perf_counter()
    try:
        if "gemm" in only:
            rows += _bench_gemm(sizes, threads, reps, ctx)
        if "infer" in only:
            rows += _bench_infer(models, batches, threads, reps, ctx)
        if "train" in only:
            rows += _bench_train(models, threads, reps, ctx)
        if "depthwise" in only:
            rows += _bench_depthwise(threads, reps, ctx)
    finally:
        cnnc.set_num_threads(saved[0])
        if saved[1] is not None:
            ctx["numpy_threads"].set(saved[1])
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(saved_torch or os.cpu_count() or 1)
    for line in describe_machine(ctx):
        out(line)
    out(f"medians of {reps} interleaved repetitions ({time.perf_counter() - t0:.0f} s); time = cnnc / reference "
        f"(< 1: cnnc faster), speed = reference / cnnc; train GF/s count 3x the forward FLOP")
    out("")
    out(format_table(rows))
    return rows


# ---- command line -------------------------------------------------------------------------------

def _positive(v):
    n = int(v)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, received {v}")
    return n


def add_arguments(p):
    p.add_argument("--quick", action="store_true", help="3 repetitions (unless --reps): a smoke run")
    p.add_argument("--reps", type=_positive, default=None, help="timed repetitions per candidate (default 10)")
    p.add_argument("--threads", type=_positive, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    p.add_argument("--only", nargs="+", choices=["gemm", "infer", "train", "depthwise"], default=None,
                   help="run only these benchmarks (default gemm infer train)")
    p.add_argument("--models", nargs="+", choices=MODELS, default=MODELS, help="textbook CNNs (default both)")
    p.add_argument("--sizes", nargs="+", default=GEMM_SIZES, help="GEMM shapes MxNxK")
    p.add_argument("--batches", type=_positive, nargs="+", default=INFER_BATCHES,
                   help="inference batch sizes (default 1 64)")
    return p


def _argv(args):
    argv = ["--threads", *map(str, args.threads), "--models", *args.models, "--sizes", *args.sizes,
            "--batches", *map(str, args.batches)]
    if args.quick:
        argv.append("--quick")
    if args.reps:
        argv += ["--reps", str(args.reps)]
    if args.only:
        argv += ["--only", *args.only]
    return argv


# glibc's malloc gives each large block (above 128 KiB at first) fresh pages from the OS and returns them on
# free; PyTorch takes its tensors from malloc, so with the defaults each training step may fault in its
# activations anew, and its Chollet step measured 29-32 ms (1 thread) in a fresh process against 22-23 ms
# with freed memory kept. The command line keeps freed blocks (mallopt), for every candidate alike, so that
# PyTorch runs at its best whatever ran before it in the process; cnnc's own step time did not change.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_freed_memory():
    """Ask glibc's malloc to keep freed memory (blocks up to 32 MiB from the heap, no trimming). Returns a
    description for the table's header, or None where there is no glibc mallopt."""
    try:
        import ctypes
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return None
    if not (mallopt(_M_MMAP_THRESHOLD, 32 << 20) and mallopt(_M_TRIM_THRESHOLD, 1 << 30)):
        return None
    return "malloc keeps freed memory (mallopt: mmap threshold 32 MiB, trim threshold 1 GiB)"


def run_args(args):
    """Run from parsed arguments. OpenBLAS's workers busy-wait long after each call unless
    OPENBLAS_THREAD_TIMEOUT was set before numpy loaded; when it was not, the benchmark reruns
    itself in a child process that has it, so that numpy does not hold the cores while cnnc runs."""
    for spec in args.sizes:
        parts = spec.lower().split("x")
        if len(parts) != 3 or not all(p.isdigit() and int(p) > 0 for p in parts):
            raise SystemExit(f"cnnc bench: --sizes takes MxNxK, e.g. 1024x1024x1024, received {spec!r}")
    if "OPENBLAS_THREAD_TIMEOUT" not in os.environ:
        import cnnc
        root = os.path.dirname(os.path.dirname(os.path.abspath(cnnc.__file__)))
        env = dict(os.environ, OPENBLAS_THREAD_TIMEOUT="4",
                   PYTHONPATH=os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p))
        sys.stdout.flush()
        return subprocess.call([sys.executable, "-m", "cnnc.bench", *_argv(args)], env=env)
    malloc = keep_freed_memory()
    run(only=args.only or ("gemm", "infer", "train"), threads=args.threads,
        reps=args.reps or (3 if args.quick else 10), models=args.models, sizes=args.sizes, batches=args.batches,
        malloc=malloc or "malloc as the C library sets it")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="cnnc bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    return run_args(add_arguments(parser).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
