"""Memory of cnnc's buffers: the per-layer estimate and the measurement it is checked against.

All buffers cnnc allocates go through one accounting point (cnnc._alloc), so the bytes alive at any
moment and the peak during a call are known exactly; `measure(fn)` reports that peak. The estimator
describes, layer by layer, the buffers the layers' forward and backward passes allocate (workspaces
sized by the same C `*_workspace_size` functions the kernels use) and replays them on the real
schedule of a training step (forward keeping what backward needs, loss, backward releasing each
layer's buffers once it is done, update) and of inference. From a model's second training step on,
those buffers are views of one block planned to the step's peak (cnnc._alloc.StepArena), held between
steps: the peak is the same, the memory stays with the model. Inference runs as one call into the C
runtime when every layer has a lowering there (its arena, planned by the runtime itself, holds the
intermediate tensors and the kernel workspace); otherwise layer by layer, each buffer released as soon
as the next layer has consumed it.
"""
import gc
import math
import re

import numpy as np

from . import _alloc, _core, _nn_core

__all__ = ["measure", "measure_call", "current_bytes", "estimate", "MemoryReport", "parse_bytes",
           "format_bytes", "max_batch_size"]

F32 = 4


# ---- measurement --------------------------------------------------------------------------------

def current_bytes():
    """Bytes of cnnc's buffers alive now (weights, optimizer state, activations, workspaces...)."""
    return _alloc.current_bytes()


def measure(fn, *args, **kwargs):
    """Run fn(*args, **kwargs) and return the peak bytes of cnnc's buffers alive during the call
    (buffers alive before the call included)."""
    return measure_call(fn, *args, **kwargs)[0]


def measure_call(fn, *args, **kwargs):
    """(peak bytes of cnnc's buffers during the call, fn's result)."""
    gc.collect()
    _alloc.reset_peak()
    result = fn(*args, **kwargs)
    return _alloc.peak_bytes(), result


# ---- units --------------------------------------------------------------------------------------

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "k": 10**3, "m": 10**6, "g": 10**9}


def parse_bytes(value):
    """Bytes from an int or a string like '2GB' (SI, as the textbook) or '1.5 GiB'."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if value <= 0:
            raise ValueError(f"memory_budget must be positive, received {value}")
        return int(value)
    if isinstance(value, float) and value > 0:
        return int(value)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(value))
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"memory_budget must be a number of bytes or a string like '2GB' or '512MiB', "
                         f"received {value!r}")
    n = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if n <= 0:
        raise ValueError(f"memory_budget must be positive, received {value!r}")
    return int(n)


def format_bytes(n):
    """SI units, as in the book: 12 MB, 1.2 GB."""
    n = float(n)
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= scale:
            v = n / scale
            return f"{v:.3g} {unit}" if v < 100 else f"{v:.0f} {unit}"
    return f"{int(n)} B"


# ---- per-layer profiles -------------------------------------------------------------------------

class _Profile:
    """The buffers one layer allocates for a batch.

    out: its output buffer (0 when the output is a view of the input).
    fwd_temp: transient bytes while the forward op runs (C workspace, kernel copies, the pre-activation
        of an unfused activation in inference).
    saved: bytes the forward keeps for backward besides its output (pre-activation, argmax, masks,
        statistics); holds_out / holds_in: whether the layer keeps its output / input for backward.
    bwd_temp: transient bytes while its backward runs; dz: the activation-gradient buffer;
        dx: the input gradient it returns; grads: its parameter gradients (kept until the update).
    co_alloc: bytes of the next layer's buffers that a fused op allocates before its workspace (alive
        with fwd_temp; the next layer's profile then holds them).
    """

    def __init__(self, **kw):
        self.out = self.fwd_temp = self.saved = self.bwd_temp = self.dz = self.dx = self.grads = 0
        self.co_alloc = 0
        self.holds_out = self.holds_in = False
        self.macs = 0
        self.__dict__.update(kw)

    @property
    def workspace(self):
        return max(self.fwd_temp, self.bwd_temp)


def _nbytes(shape, itemsize=F32):
    return int(np.prod([d for d in shape], dtype=np.int64)) * itemsize


def _conv_window(layer, in_shape):
    cf = layer.data_format == "channels_first"
    n, h, w, c = (in_shape[0], in_shape[2], in_shape[3], in_shape[1]) if cf else in_shape
    from ._checks import resolve_padding
    kh, kw = layer.kernel_size
    dh, dw = layer.dilation_rate
    sh, sw = layer.strides
    pads = resolve_padding(layer.padding, (h, w), (dh * (kh - 1) + 1, dw * (kw - 1) + 1), (sh, sw))
    return (n, h, w, c, kh, kw, sh, sw, dh, dw) + tuple(pads) + (1 if cf else 0,), c


def _activation_parts(act, out_bytes, training):
    """(extra forward bytes kept in training, transient forward bytes, dz bytes) of a layer's
    activation given how cnnc.layers apply it."""
    if act is None or act.is_linear:
        return 0, 0, 0
    fused = act.from_output and not act.softmax
    if fused:
        return 0, 0, out_bytes
    # the op writes z, then the activation writes y: z is kept in training, dropped in inference
    return (out_bytes, 0, out_bytes) if training else (0, out_bytes, out_bytes)


def _profile(layer, in_shape, out_shape, training, first):
    from . import layers as L
    b_in, b_out = _nbytes(in_shape), _nbytes(out_shape)
    pbytes = sum(w.nbytes for w in layer.params.values())
    gbytes = sum(layer.params[k].nbytes for k in layer.trainable_param_names())
    dx = 0 if first else b_in
    if isinstance(layer, (L.Conv2D, L.DepthwiseConv2D)):
        win, cin = _conv_window(layer, in_shape)
        groups = layer._groups(cin)
        cout = out_shape[1] if layer.data_format == "channels_first" else out_shape[3]
        ws_f = _core.conv2d_workspace_size(win, cout, groups, False)
        ws_b = _core.conv2d_workspace_size(win, cout, groups, True, not first)
        kbytes = layer.params[layer._kernel_name].nbytes
        kcopy = kbytes if layer.data_format == "channels_first" else 0
        keep, tmp, dz = _activation_parts(layer.activation, b_out, training)
        kh, kw = layer.kernel_size
        macs = _nbytes(out_shape[1:], 1) * kh * kw * (cin // groups)
        return _Profile(out=b_out, fwd_temp=ws_f + kcopy + tmp, saved=keep, holds_out=True, holds_in=True,
                        bwd_temp=ws_b + 2 * kcopy, dz=dz, dx=dx, grads=gbytes, macs=macs, params=pbytes)
    if isinstance(layer, L.Dense):
        k, n = layer.params["kernel"].shape
        m = _nbytes(in_shape, 1) // k
        ws, ws_b = _core.dense_workspace_size(m, k, n), _core.dense_workspace_size(m, k, n, True)
        act = layer.activation
        if act.softmax:  # the op applies softmax into a second buffer; the first is dropped
            keep, tmp, dz = 0, b_out, b_out
        else:
            keep, tmp, dz = _activation_parts(act, b_out, training)
        return _Profile(out=b_out, fwd_temp=ws + tmp, saved=keep, holds_out=True, holds_in=True, bwd_temp=ws_b,
                        dz=dz, dx=dx, grads=gbytes, macs=(m // in_shape[0]) * k * n, params=pbytes)
    if isinstance(layer, L.MaxPooling2D):  # training keeps a one-byte tap per output (else argmax + x)
        taps = layer.pool_size[0] * layer.pool_size[1] <= _core.POOL_MAX_TAPS
        saved = (_nbytes(out_shape, 1) if taps else _nbytes(out_shape, 8)) if training else 0
        return _Profile(out=b_out, saved=saved, holds_in=training and not taps, dx=dx, params=pbytes)
    if isinstance(layer, (L.AveragePooling2D, L.GlobalAveragePooling2D)):
        return _Profile(out=b_out, holds_in=training, dx=dx, params=pbytes)
    if isinstance(layer, L.GlobalMaxPooling2D):
        # backward recomputes the argmax: an int64 and a float32 output-sized scratch
        return _Profile(out=b_out, holds_in=training, dx=dx, bwd_temp=_nbytes(out_shape, 12), params=pbytes)
    if isinstance(layer, L.BatchNormalization):
        c = layer.params["moving_mean"].size
        stats = 2 * c * F32 if training and layer.trainable else 0
        return _Profile(out=b_out, saved=stats, holds_in=training and layer.trainable, dx=dx, grads=gbytes,
                        params=pbytes)
    if isinstance(layer, L.Dropout):
        if not training or layer.rate == 0.0:
            return _Profile(params=pbytes)
        return _Profile(out=b_out, saved=_nbytes(in_shape, 1), dx=dx, params=pbytes)
    if isinstance(layer, (L.Flatten, L.Reshape)):
        copy = isinstance(layer, L.Flatten) and layer.data_format == "channels_first" and len(in_shape) > 2
        return _Profile(out=b_out if copy else 0, dx=dx if copy else 0, params=pbytes)
    if isinstance(layer, L.ZeroPadding2D):
        return _Profile(out=b_out, dx=dx, params=pbytes)
    if isinstance(layer, L.InputLayer):
        return _Profile(params=pbytes)
    if hasattr(layer, "act"):  # Activation, ReLU, LeakyReLU, ELU, Softmax
        act = layer.act
        if act is None:  # ReLU's general NumPy path (its temporaries are NumPy's, not cnnc buffers)
            return _Profile(out=b_out, holds_in=True, dx=b_in, params=pbytes)
        return _Profile(out=b_out, holds_out=True, holds_in=not act.from_output, dx=b_in, params=pbytes)
    raise NotImplementedError(f"no memory profile for {type(layer).__name__}")


def _fuse_conv_pool(conv, pool, conv_p, pool_p, in_shape, mid_shape, out_shape, first):
    """The profiles of a convolution and the max pool after it when training runs them as one op
    (layers.pooling.conv_max_pool_pairs): the pooled output and its taps are allocated first, then the
    workspace (which holds the convolution's output unless its path pools on the fly); the
    convolution keeps only its input; the pool keeps its taps and, for a non-linear activation, its
    output. In backward the pool applies the activation's derivative into a pooled-size gradient g
    (none for a linear activation) and hands it to the convolution with the taps, both alive through
    the convolution's backward. That computes dx and dw from the chosen elements where those paths
    apply (_nn_core.conv2d_max_pool_dx, conv2d_max_pool_dw); otherwise it first scatters g into a
    gradient of its output's size for the dense paths."""
    win, cin = _conv_window(conv, in_shape)
    cout = mid_shape[1] if conv.data_format == "channels_first" else mid_shape[3]
    groups = conv._groups(cin)
    kcopy = conv.params[conv._kernel_name].nbytes if conv.data_format == "channels_first" else 0
    ws = _core.conv2d_pool_workspace_size(win, cout, groups, *pool.pool_size)
    b_pooled, b_taps = _nbytes(out_shape), _nbytes(out_shape, 1)
    linear = conv.activation.is_linear
    conv_p.out, conv_p.holds_out, conv_p.saved, conv_p.dz = 0, False, b_taps, 0
    conv_p.fwd_temp, conv_p.co_alloc = ws + kcopy, b_pooled + b_taps
    pool_p.out, pool_p.holds_out, pool_p.saved, pool_p.holds_in = b_pooled, not linear, 0, False
    pool_p.dz, pool_p.dx = 0, 0 if linear else b_pooled
    ws_dx = -1 if first else _nn_core.pool_dx_workspace_size(win, cout, groups, *pool.pool_size)
    ws_dw = _nn_core.pool_dw_workspace_size(win, cout, groups, *pool.pool_size)
    temps = [ws_dx, ws_dw]
    if ws_dw < 0 or (not first and ws_dx < 0):  # a dense path, from the scattered gradient
        conv_p.dz = _nbytes(mid_shape)
        temps.append(_core.conv2d_workspace_size(win, cout, groups, True, not first and ws_dx < 0) + 2 * kcopy)
    conv_p.bwd_temp = max(temps)


# ---- the report ---------------------------------------------------------------------------------

class MemoryReport:
    """Per-layer memory of a model for one batch, and the peaks of training and inference.

    rows: one dict per layer (name, type, output_shape, params, param_bytes, macs, output_bytes,
    saved_bytes, grad_bytes, optimizer_bytes, workspace_bytes); training_bytes / inference_bytes: the
    peak bytes of cnnc's buffers over a training step and over inference of one batch."""

    def __init__(self, model_name, batch_size, optimizer, rows, training_bytes, inference_bytes,
                 persistent, training_peak_at, inference_peak_at):
        self.model_name = model_name
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.rows = rows
        self.training_bytes = training_bytes
        self.inference_bytes = inference_bytes
        self.persistent = persistent
        self.training_peak_at = training_peak_at
        self.inference_peak_at = inference_peak_at
        # the C runtime's arena for this model's bundle (cnnc.deploy): (total, tensor plan, workspace)
        self.deploy_arena = None
        self.deploy_note = None

    @property
    def deploy_arena_bytes(self):
        """Bytes of the one arena the standalone C runtime asks for to run this batch (None when the
        model has a layer the C runtime does not run; deploy_note says which)."""
        return None if self.deploy_arena is None else self.deploy_arena[0]

    def to_dict(self):
        return {"model": self.model_name, "batch_size": self.batch_size, "optimizer": self.optimizer,
                "rows": [dict(r) for r in self.rows], "training_bytes": self.training_bytes,
                "inference_bytes": self.inference_bytes, "persistent": dict(self.persistent),
                "training_peak_at": self.training_peak_at, "inference_peak_at": self.inference_peak_at,
                "deploy_arena_bytes": self.deploy_arena_bytes}

    def __str__(self):
        cols = [("Layer (type)", 30), ("Output shape", 20), ("Params", 10), ("MACs/inst", 11),
                ("Output", 10), ("Saved", 10), ("Grads", 10), ("Optimizer", 10), ("Workspace", 10)]
        line = "-" * sum(w for _, w in cols)
        out = [f'Memory of "{self.model_name}" at batch size {self.batch_size} (optimizer: {self.optimizer}); '
               f"SI units", line, "".join(f"{h:<{w}}" for h, w in cols), line]
        biggest = max(range(len(self.rows)), key=lambda i: self.rows[i]["output_bytes"] +
                      self.rows[i]["saved_bytes"]) if self.rows else -1
        for i, r in enumerate(self.rows):
            name = f"{r['name']} ({r['type']})" + (" *" if i == biggest else "")
            shape = "(" + ", ".join("None" if d is None else str(d) for d in r["output_shape"]) + ")"
            vals = [name, shape, f"{r['params']:,}", _si_count(r["macs"]), format_bytes(r["output_bytes"]),
                    format_bytes(r["saved_bytes"]), format_bytes(r["grad_bytes"]),
                    format_bytes(r["optimizer_bytes"]), format_bytes(r["workspace_bytes"])]
            out.append("".join(f"{v:<{w}}" for v, (_, w) in zip(vals, cols)))
        out += [line,
                f"Training peak:  {format_bytes(self.training_bytes)} ({self.training_bytes:,} bytes; "
                f"at {self.training_peak_at})",
                f"Inference peak: {format_bytes(self.inference_bytes)} ({self.inference_bytes:,} bytes; "
                f"at {self.inference_peak_at})",
                f"Inference / training: {self.inference_bytes / max(self.training_bytes, 1):.1%}",
                (f"C runtime arena (cnnc.deploy bundle): {format_bytes(self.deploy_arena[0])} "
                 f"({self.deploy_arena[0]:,} bytes: tensor plan {self.deploy_arena[1]:,} + kernel workspace "
                 f"{self.deploy_arena[2]:,}; weights live in the bundle, inputs and outputs in the caller's buffers)"
                 if self.deploy_arena is not None else f"C runtime arena: not available ({self.deploy_note})"),
                "* the layer with the largest output + saved buffers", line]
        return "\n".join(out)

    def __repr__(self):
        return (f"<MemoryReport batch={self.batch_size} training={format_bytes(self.training_bytes)} "
                f"inference={format_bytes(self.inference_bytes)}>")


def _si_count(n):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g}{unit}"
    return str(int(n))


class _Timeline:
    def __init__(self, base):
        self.live = base
        self.peak = base
        self.at = "start"

    def alloc(self, n, at):
        self.live += n
        if self.live > self.peak:
            self.peak, self.at = self.live, at

    def free(self, n):
        self.live -= n

    def transient(self, n, at):
        self.alloc(n, at)
        self.free(n)


def _optimizer_bytes(optimizer, params):
    """Slot arrays (per-variable state) plus the scratch buffer of the largest variable the NumPy rule
    updates (the C core updates float32 variables in place, without one: Optimizer._c_rule)."""
    if optimizer is None:
        return 0, 0
    names = optimizer._slot_names() if hasattr(optimizer, "_slot_names") else []
    slots = len(names) * sum(p.nbytes for p in params)
    in_c = hasattr(optimizer, "_c_rule") and optimizer._c_rule(0.0) is not None
    numpy_params = [p for p in params if not (in_c and p.dtype == np.float32 and p.flags.c_contiguous and p.size)]
    scratch = max((p.nbytes for p in numpy_params), default=0) if getattr(optimizer, "_uses_scratch", True) else 0
    return slots, scratch


def _training_peak(layers, prof, shapes, persistent):
    """Replay one training step of fit() and return (peak bytes, where).

    Activation buffers: a[0] is the gathered input batch (held by fit for the whole step), a[j] the
    output of layers[j-1]; a layer whose output is a view of its input (Flatten, Reshape) adds no
    buffer. A buffer lives while its producer keeps its output or a consumer keeps its input for
    backward; each layer drops what it keeps right after its own backward."""
    n = len(layers)
    sizes = [_nbytes(shapes[0])] + [p.out for p in prof]
    buf = list(range(n + 1))
    for j in range(1, n + 1):
        if sizes[j] == 0:
            buf[j] = buf[j - 1]
    holders = {k: set() for k in set(buf)}
    for i, p in enumerate(prof):
        if p.holds_in:
            holders[buf[i]].add(i)
        if p.holds_out:
            holders[buf[i + 1]].add(i)
    pinned = {buf[0], buf[n]}  # fit holds the batch and the model output for the whole step
    freed = set()
    tl = _Timeline(persistent)
    tl.alloc(sizes[0], "the input batch")
    for i, (layer, p) in enumerate(zip(layers, prof)):
        where = f"forward of {layer.name}"
        tl.alloc(p.out, where)
        tl.transient(p.fwd_temp + p.co_alloc, where)
        tl.alloc(p.saved, where)
        k = buf[i]  # the input: dropped now if nothing keeps it and the output is not a view of it
        if not holders[k] and k not in pinned and buf[i + 1] != k and k not in freed:
            tl.free(sizes[k])
            freed.add(k)
    dy = _nbytes(shapes[-1])
    tl.alloc(dy, "the loss gradient")
    for i in range(n - 1, -1, -1):
        layer, p = layers[i], prof[i]
        where = f"backward of {layer.name}"
        tl.alloc(p.dz, where)
        tl.alloc(p.dx, where)
        tl.alloc(p.grads, where)
        tl.transient(p.bwd_temp, where)
        tl.free(p.dz)
        if p.dx or i == 0:  # a view (Flatten's reshape) keeps the incoming gradient alive
            tl.free(dy)
            dy = p.dx
        tl.free(p.saved)
        for k in (buf[i], buf[i + 1]):
            holders[k].discard(i)
            if not holders[k] and k not in pinned and k not in freed:
                tl.free(sizes[k])
                freed.add(k)
    return tl.peak, tl.at


def estimate(model, batch_size=32, optimizer=None, deploy=True):
    """The MemoryReport of a built Sequential for one batch (optimizer: the compiled one by default;
    a name or an optimizer object otherwise)."""
    from . import optimizers as opt_mod
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, received {batch_size!r}")
    model._require_built("memory_estimate()")
    opt = optimizer if optimizer is not None else model.optimizer
    if isinstance(opt, str) or isinstance(opt, dict):
        opt = opt_mod.get(opt)
    b = int(batch_size)
    layers = model.layers
    shapes = [(b,) + tuple(model.input_shape[1:])]
    for layer in layers:
        shapes.append((b,) + tuple(layer.compute_output_shape((None,) + shapes[-1][1:])[1:]))
    trainable = [layer.params[k] for layer in layers if model.trainable for k in layer.trainable_param_names()]
    param_bytes = sum(w.nbytes for layer in layers for w in layer.params.values())
    slot_bytes, scratch = _optimizer_bytes(opt, trainable)
    slot_factor = slot_bytes / max(sum(p.nbytes for p in trainable), 1)

    train_prof = [_profile(l, shapes[i], shapes[i + 1], True, i == 0) for i, l in enumerate(layers)]
    from .layers.pooling import conv_max_pool_pairs
    for i in conv_max_pool_pairs(layers):
        _fuse_conv_pool(layers[i], layers[i + 1], train_prof[i], train_prof[i + 1], shapes[i], shapes[i + 1],
                        shapes[i + 2], i == 0)
    infer_prof = [_profile(l, shapes[i], shapes[i + 1], False, i == 0) for i, l in enumerate(layers)]

    # the last layer gets the gradient of its pre-activation when the loss fuses softmax/sigmoid
    if model.loss is not None and train_prof:
        final = model._final_activation()
        if (final == "softmax" and hasattr(model.loss, "fused_softmax_gradient")) or \
                (final == "sigmoid" and hasattr(model.loss, "fused_sigmoid_gradient")):
            train_prof[-1].dz = 0
    training_peak, training_at = _training_peak(layers, train_prof, shapes, param_bytes + slot_bytes + scratch)

    # inference runs in the C runtime when every layer has a lowering there: the model's weights, the
    # constants derived from them for the call (folded batch norm, channels_first kernels), the output
    # and one arena (tensor plan + kernel workspace). Otherwise layer by layer: only two consecutive
    # activations alive. The user's input is not cnnc's buffer.
    runner, runner_note = model._runner()
    deploy_arena = None
    if runner is not None:
        plan, ws = runner.arena_parts(b)
        deploy_arena = (plan + ws, plan, ws)
        own = {id(w) for layer in layers for w in layer.params.values()}
        derived = sum(a.nbytes for a in runner.consts() if id(a) not in own)
        inference_peak = param_bytes + derived + _nbytes(shapes[-1]) + plan + ws
        inference_at = "inference in the C runtime (one call for the model)"
    else:
        ti = _Timeline(param_bytes)
        prev = 0
        for layer, p in zip(layers, infer_prof):
            where = f"inference of {layer.name}"
            ti.alloc(p.out, where)
            ti.transient(p.fwd_temp, where)
            if p.out:
                ti.free(prev)
                prev = p.out
        inference_peak, inference_at = ti.peak, ti.at

    rows = []
    for i, (layer, p) in enumerate(zip(layers, train_prof)):
        gb = p.grads
        rows.append({
            "name": layer.name, "type": type(layer).__name__, "output_shape": (None,) + shapes[i + 1][1:],
            "params": int(sum(w.size for w in layer.params.values())), "param_bytes": int(p.params),
            "macs": int(p.macs), "output_bytes": int(_nbytes(shapes[i + 1])),
            "saved_bytes": int(p.saved + (p.out if p.holds_out else 0)), "grad_bytes": int(gb),
            "optimizer_bytes": int(round(gb * slot_factor)),
            "workspace_bytes": int(max(p.workspace, infer_prof[i].workspace)),
        })
    name = type(opt).__name__ if opt is not None else "none"
    report = MemoryReport(model.name, b, name, rows, int(training_peak), int(inference_peak),
                          {"params": param_bytes, "optimizer_slots": slot_bytes, "optimizer_scratch": scratch},
                          training_at, inference_at)
    if deploy:
        report.deploy_arena = deploy_arena
        report.deploy_note = runner_note
    return report


def max_batch_size(model, memory_budget, training=True, optimizer=None, limit=2**20):
    """The largest batch whose estimated peak fits memory_budget (bytes or a string like '2GB');
    0 when not even one sample fits."""
    budget = parse_bytes(memory_budget)

    def peak(bsz):
        r = estimate(model, bsz, optimizer, deploy=False)
        return r.training_bytes if training else r.inference_bytes

    if peak(1) > budget:
        return 0
    lo, hi = 1, 2
    while hi <= limit and peak(hi) <= budget:
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if peak(mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo
