"""Sequential models: build, compile, fit, evaluate, predict, summary, save and load."""
import json
import math
import os
import sys
import tempfile
import time
import zipfile

import numpy as np

from . import __version__, _alloc, _core, utils
from . import layers as layers_mod
from .layers.base import Layer, _format_shape, unique_name
from .layers.core import InputLayer

__all__ = ["Sequential", "load_model"]

FORMAT_NAME = "cnnc"
FORMAT_VERSION = 1


def _as_input_array(x, name):
    if x is None:
        raise ValueError(f"{name} is required")
    arr = np.asarray(x)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, received an array of dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a batch axis, received a scalar")
    return np.ascontiguousarray(arr, dtype=np.float32)


def _as_target_array(y, name):
    arr = np.asarray(y)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, received an array of dtype {arr.dtype}")
    if arr.ndim == 0:
        raise ValueError(f"{name} must have a batch axis, received a scalar")
    return arr if arr.dtype.kind in "iu" else np.ascontiguousarray(arr, dtype=np.float32)


def _resolve_verbose(verbose):
    if verbose == "auto":
        return 1 if getattr(sys.stdout, "isatty", lambda: False)() else 2
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 'auto', 0, 1 or 2, received {verbose!r}")
    return verbose


def _batch_size(batch_size):
    if batch_size is None:
        return 32
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, received {batch_size!r}")
    return int(batch_size)


class Sequential:
    """A linear stack of layers, with Keras' API."""

    def __init__(self, layers=None, name=None, trainable=True):
        self.name = name or unique_name("sequential")
        self._layers = []
        self._batch_input_shape = None
        self._input_layer = None
        self.built = False
        self.trainable = bool(trainable)
        self.optimizer = None
        self.loss = None
        self._metric_specs = []
        self.metrics = []
        self.stop_training = False
        self.history = None
        self._resume_epoch = None
        self._compile_config = None
        for layer in layers or []:
            self.add(layer)

    # ---- structure ------------------------------------------------------------------------------
    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        if isinstance(layer, InputLayer):
            if self._layers or self._input_layer is not None:
                raise ValueError("an Input can only be the first element of a Sequential model")
            self._input_layer = layer
            self._batch_input_shape = layer._batch_input_shape
            return
        if not isinstance(layer, Layer):
            raise TypeError(f"Sequential.add expects a cnnc layer, received {type(layer).__name__}")
        if any(l.name == layer.name for l in self._layers):
            raise ValueError(f"a layer named '{layer.name}' is already in model '{self.name}'; layer names must "
                             f"be unique")
        if not self._layers and self._batch_input_shape is None and layer._batch_input_shape is not None:
            self._batch_input_shape = layer._batch_input_shape
        self._layers.append(layer)
        if self._batch_input_shape is not None:
            # Build as we go, so shape errors show up at the layer that causes them.
            shape = (None,) + tuple(self._batch_input_shape[1:])
            for l in self._layers[:-1]:
                shape = l.compute_output_shape(shape)
            if not layer.built:
                layer.build(shape)
            self.built = all(l.built for l in self._layers)

    def pop(self):
        if not self._layers:
            raise ValueError("there are no layers to pop")
        return self._layers.pop()

    def build(self, input_shape=None):
        """Create every layer's weights for inputs of this shape (batch axis included, may be None)."""
        if input_shape is None:
            if self._batch_input_shape is None:
                raise ValueError(f"model '{self.name}' has no input shape: pass input_shape= to the first layer, "
                                 f"start with Input(shape=...), or call build(input_shape)")
            input_shape = self._batch_input_shape
        if not self._layers:
            raise ValueError(f"model '{self.name}' has no layers")
        shape = (None,) + tuple(input_shape[1:])
        if self._batch_input_shape is None:
            self._batch_input_shape = tuple(input_shape)
        for layer in self._layers:
            if layer.built:
                layer.check_input_shape(shape)
            else:
                layer.build(shape)
            shape = layer.compute_output_shape(shape)
        self.built = True

    def _ensure_built(self, x):
        if not self.built:
            self.build((None,) + x.shape[1:])
        want = self.input_shape
        got = (None,) + x.shape[1:]
        if len(want) != len(got):
            raise ValueError(f"model '{self.name}' expects inputs of shape {_format_shape(want)}, received "
                             f"{_format_shape(got)}")
        key = (tuple(self._layers), want, got)
        if self.__dict__.get("_checked_input") == key:  # this shape already went through every layer
            return
        shape = got
        for layer in self._layers:
            layer.check_input_shape(shape)
            shape = layer.compute_output_shape(shape)
        self._checked_input = key

    @property
    def input_shape(self):
        if self._batch_input_shape is None:
            raise AttributeError(f"model '{self.name}' has no defined input shape yet")
        return (None,) + tuple(self._batch_input_shape[1:])

    @property
    def output_shape(self):
        shape = self.input_shape
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
        return shape

    def count_params(self):
        self._require_built("count_params")
        return int(sum(l.count_params() for l in self._layers))

    def _require_built(self, what):
        if not self.built:
            raise ValueError(f"model '{self.name}' is not built yet, so {what} is not available: give the first "
                             f"layer input_shape=, start with Input(shape=...), call build(), or fit/predict once")

    @property
    def weights(self):
        return [w for l in self._layers for w in l.weights]

    @property
    def trainable_weights(self):
        return [w for l in self._layers if self.trainable for w in l.trainable_weights]

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        weights = list(weights)
        n = len(self.weights)
        if len(weights) != n:
            raise ValueError(f"model '{self.name}' has {n} weight arrays, received {len(weights)}")
        i = 0
        for l in self._layers:
            k = len(l.params)
            l.set_weights(weights[i:i + k])
            i += k

    # ---- memory ---------------------------------------------------------------------------------
    def memory_estimate(self, batch_size=32, optimizer=None):
        """Per-layer memory for one batch and the peaks of a training step and of inference
        (cnnc.memory.MemoryReport); optimizer defaults to the compiled one."""
        from . import memory
        return memory.estimate(self, batch_size, optimizer)

    def max_batch_size(self, memory_budget, training=True, optimizer=None):
        """The largest batch whose estimated peak fits memory_budget (bytes, or '2GB', '512MiB')."""
        from . import memory
        return memory.max_batch_size(self, memory_budget, training=training, optimizer=optimizer)

    # ---- summary --------------------------------------------------------------------------------
    def summary(self, line_length=65, print_fn=None):
        """Print Keras' table: layer name (type), output shape, parameter count, then the totals."""
        self._require_built("summary()")
        cols = (29, 26, line_length - 55)
        lines = [f'Model: "{self.name}"', "_" * line_length,
                 f"{'Layer (type)':<{cols[0]}}{'Output Shape':<{cols[1]}}Param #", "=" * line_length]
        shape = self.input_shape
        rows = []
        for layer in self._layers:
            shape = layer.compute_output_shape(shape)
            name = f"{layer.name} ({type(layer).__name__})"
            shp = _format_shape(shape)
            rows.append(f"{name:<{cols[0] - 1}} {shp:<{cols[1] - 1}} {layer.count_params()}")
        lines.append(("\n" + "_" * line_length + "\n").join(rows))
        trainable = sum(w.size for l in self._layers if self.trainable for w in l.trainable_weights)
        total = self.count_params()
        lines += ["=" * line_length, f"Total params: {total:,}", f"Trainable params: {trainable:,}",
                  f"Non-trainable params: {total - trainable:,}", "_" * line_length]
        text = "\n".join(lines)
        (print_fn or print)(text)

    # ---- compile --------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, **kwargs):
        """Choose the optimizer, loss and metrics (by name, class or instance), as in Keras."""
        from . import losses, optimizers
        unsupported = set(kwargs) - {"run_eagerly", "jit_compile", "steps_per_execution"}
        if unsupported:
            raise TypeError(f"compile: unsupported argument(s) {', '.join(sorted(unsupported))}")
        if loss is None:
            raise ValueError("compile needs a loss, e.g. loss='categorical_crossentropy'")
        self.optimizer = optimizers.get(optimizer)
        self.loss = losses.get(loss)
        if metrics is None:
            metrics = []
        elif isinstance(metrics, (str, dict)) or not isinstance(metrics, (list, tuple)):
            metrics = [metrics]
        self._metric_specs = list(metrics)
        self.metrics = []
        self._optimizer_built = False

    def _check_compiled(self, what):
        if self.optimizer is None or self.loss is None:
            raise RuntimeError(f"model '{self.name}' must be compiled before {what}: call "
                               f"model.compile(optimizer=..., loss=...)")

    def _build_metrics(self):
        from . import metrics as metrics_mod
        if len(self.metrics) != len(self._metric_specs):
            self.metrics = [metrics_mod.get(m, loss=self.loss, output_shape=self.output_shape)
                            for m in self._metric_specs]

    def _build_optimizer(self):
        if not getattr(self, "_optimizer_built", False):
            self.optimizer.build(self._trainable_vars())
            self._optimizer_built = True

    def _trainable_vars(self):
        return [l.params[k] for l in self._layers if self.trainable for k in l.trainable_param_names()]

    # ---- the steps ------------------------------------------------------------------------------
    def _forward(self, x, training):
        if not training:
            y = self._runtime_forward(x)
            if y is not None:
                return y
        return self._layer_forward(x, training)

    def _layer_forward(self, x, training):
        """The layers' forward passes one by one (training, and inference the C runtime cannot run).
        Training runs a convolution and the max pool after it as one op where it can
        (layers.pooling.conv_max_pool_pairs); _backward then takes that into account."""
        fused = layers_mod.pooling.conv_max_pool_pairs(self._layers) if training else frozenset()
        if training:
            self._fused_convs = fused
        i, n = 0, len(self._layers)
        while i < n:
            layer = self._layers[i]
            if i in fused:
                x = layer.forward_max_pool(self._layers[i + 1], x)
                i += 2
            else:
                x = layer.forward(x, training=training)
                i += 1
        return x

    def _runner(self):
        """(runner, reason): the C-runtime runner of this model's current structure, or None and why
        not (a layer without a C lowering); rebuilt when the layers or the input shape change."""
        key = (tuple(self._layers), self.input_shape)
        cached = self.__dict__.get("_runner_cache")
        if cached is None or cached[0] != key:
            from .deploy import BundleError
            from .deploy.runtime import SequentialRunner
            try:
                cached = (key, SequentialRunner(self), None)
            except BundleError as exc:
                cached = (key, None, str(exc))
            self._runner_cache = cached
        return cached[1], cached[2]

    def _runtime_forward(self, x):
        """Inference of one batch in the C runtime: one call for the whole model, no per-layer Python
        (None when the model or this input cannot take that path; the layers then run one by one)."""
        runner = self._runner()[0]
        if runner is None or x.shape[1:] != runner.input_shape or not x.shape[0]:
            return None
        consts = runner.consts()
        if consts is None:
            self._runner_cache = None
            runner = self._runner()[0]
            consts = runner.consts() if runner is not None else None
            if consts is None:
                return None
        return runner.run(x, consts)

    def _final_activation(self):
        last = self._layers[-1]
        act = getattr(last, "activation", None) or getattr(last, "act", None)
        if act is None or not hasattr(act, "softmax"):
            return None
        if isinstance(last, layers_mod.Softmax) and last.axis not in (-1,):
            return None
        if getattr(last, "data_format", "channels_last") == "channels_first" and act.softmax:
            return None
        return "softmax" if act.softmax else act.name

    def _loss_gradient(self, y, out):
        """(dy, is_preactivation): the fused softmax/sigmoid + loss gradient when it applies."""
        final = self._final_activation()
        g, pre = None, False
        if final == "softmax" and hasattr(self.loss, "fused_softmax_gradient"):
            g = self.loss.fused_softmax_gradient(y, out)
        elif final == "sigmoid" and hasattr(self.loss, "fused_sigmoid_gradient"):
            g = self.loss.fused_sigmoid_gradient(y, out)
        if g is not None:
            pre = True
        else:
            g = self.loss.gradient(y, out)
        g = np.ascontiguousarray(g, dtype=np.float32)
        return (_alloc.track(g) if g.base is None else g), pre

    def _backward(self, dy, preactivation, release=False):
        """Backward through every layer; with release, each layer drops what its forward kept as
        soon as its own backward is done (its gradients stay until the update)."""
        n = len(self._layers)
        fused = self.__dict__.get("_fused_convs", frozenset())
        pooled = None
        for i in range(n - 1, -1, -1):
            layer = self._layers[i]
            if i - 1 in fused:  # the pool of a fused pair: its convolution takes the pooled gradient
                pooled, dy = layer._backward_fused(dy), None
            else:
                kw = {"need_dx": i > 0}
                if i == n - 1 and preactivation:
                    kw["preactivation"] = True
                if pooled is not None:
                    kw["pooled"], pooled = pooled, None
                dy = layer.backward(dy, **kw)
                del kw  # the pooled gradient and taps go as soon as the convolution is done
            if release:
                layer._release_cache()

    def _regularization_loss(self):
        return sum(l.regularization_loss() for l in self._layers if l.trainable)

    def _train_step(self, x, y):
        arena = self.__dict__.get("_step_arena")
        if arena is None:
            arena = self._step_arena = _alloc.StepArena()
        with arena.step(_core.effective_threads()):  # workspaces depend on the thread count
            return self._train_step_body(x, y)

    def release_training_memory(self):
        """Free the memory block the training steps reuse (cnnc._alloc.StepArena). Training keeps
        it between steps, so that each step does not fault in its buffers again; the next step
        after this call allocates afresh and plans a new block."""
        arena = self.__dict__.get("_step_arena")
        if arena is not None:
            arena.release()

    def _train_step_body(self, x, y):
        out = self._forward(x, training=True)
        loss = float(self.loss(y, out)) + self._regularization_loss()
        self._backward(*self._loss_gradient(y, out), release=True)
        grads_and_vars = []
        if self.trainable:
            for layer in self._layers:
                if not layer.trainable:
                    continue
                layer.add_regularization_grads()
                for k in layer.trainable_param_names():
                    grads_and_vars.append((layer.grads[k], layer.params[k]))
        if grads_and_vars:
            self.optimizer.apply_gradients(grads_and_vars)
        del grads_and_vars
        for layer in self._layers:  # between steps only weights and optimizer state stay alive
            layer._release()
        return loss, out

    def _check_xy(self, x, y, what):
        x = _as_input_array(x, "x")
        y = _as_target_array(y, "y")
        if len(x) != len(y):
            raise ValueError(f"{what}: x and y must hold the same number of samples, received {len(x)} and {len(y)}")
        if len(x) == 0:
            raise ValueError(f"{what}: x is empty")
        return x, y

    def _prepare(self, x, y, what):
        self._check_compiled(what)
        x, y = self._check_xy(x, y, what)
        self._ensure_built(x)
        self._build_metrics()
        return x, y

    def _logs(self, loss_sum, count):
        logs = {"loss": loss_sum / max(count, 1)}
        for m in self.metrics:
            logs[m.name] = float(m.result())
        return logs

    def _reset_metrics(self):
        for m in self.metrics:
            m.reset_state()

    # ---- fit / evaluate / predict ---------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0):
        """Train for `epochs` epochs; returns the History."""
        from .callbacks import CallbackList
        x, y = self._prepare(x, y, "fit")
        bs = _batch_size(batch_size)
        verbose = _resolve_verbose(verbose)
        if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be a non-negative int, received {epochs!r}")
        if not 0.0 <= float(validation_split) < 1.0:
            raise ValueError(f"validation_split must be in [0, 1), received {validation_split!r}")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a tuple (x_val, y_val)")
            xv, yv = self._check_xy(validation_data[0], validation_data[1], "validation_data")
        elif validation_split > 0:
            n_val = int(len(x) * float(validation_split))
            if n_val < 1 or n_val >= len(x):
                raise ValueError(f"validation_split={validation_split} leaves no samples for training or "
                                 f"validation with {len(x)} samples")
            x, xv, y, yv = x[:-n_val], x[-n_val:], y[:-n_val], y[-n_val:]
        else:
            xv = yv = None
        self._build_optimizer()
        n = len(x)
        steps = math.ceil(n / bs)
        cbs = CallbackList(callbacks, add_history=True, add_progbar=verbose != 0, model=self, verbose=verbose,
                           epochs=epochs, steps=steps, samples=n, batch_size=bs)
        self.stop_training = False
        self._resume_epoch = None
        cbs.on_train_begin()
        start = self._resume_epoch if self._resume_epoch is not None else int(initial_epoch)
        self._resume_epoch = None
        logs = {}
        for epoch in range(start, epochs):
            self._reset_metrics()
            cbs.on_epoch_begin(epoch)
            order = utils.get_rng().permutation(n) if shuffle else None
            loss_sum, seen = 0.0, 0
            for step in range(steps):
                sl = slice(step * bs, min(n, (step + 1) * bs))
                if order is None:
                    xb, yb = x[sl], y[sl]
                else:
                    idx = order[sl]
                    xb, yb = _alloc.track(x[idx]), y[idx]
                cbs.on_train_batch_begin(step)
                loss, out = self._train_step(xb, yb)
                for m in self.metrics:
                    m.update_state(yb, out)
                loss_sum += loss * len(xb)
                seen += len(xb)
                logs = self._logs(loss_sum, seen)
                cbs.on_train_batch_end(step, logs)
                if self.stop_training:
                    break
            epoch_logs = dict(logs)
            if xv is not None:
                val = self._evaluate_arrays(xv, yv, bs, cbs)
                epoch_logs.update({"val_" + k: v for k, v in val.items()})
            cbs.on_epoch_end(epoch, epoch_logs)
            logs = epoch_logs
            if self.stop_training:
                break
        cbs.on_train_end(logs)
        return self.history

    def _evaluate_arrays(self, x, y, bs, cbs):
        self._reset_metrics()
        cbs.on_test_begin()
        loss_sum, seen = 0.0, 0
        logs = {}
        for step in range(math.ceil(len(x) / bs)):
            xb, yb = x[step * bs:(step + 1) * bs], y[step * bs:(step + 1) * bs]
            cbs.on_test_batch_begin(step)
            out = self._forward(xb, training=False)
            loss_sum += (float(self.loss(yb, out)) + self._regularization_loss()) * len(xb)
            seen += len(xb)
            for m in self.metrics:
                m.update_state(yb, out)
            logs = self._logs(loss_sum, seen)
            cbs.on_test_batch_end(step, logs)
        cbs.on_test_end(logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", callbacks=None, return_dict=False):
        """Loss and metrics on (x, y): a scalar loss, or [loss, *metrics] when metrics were compiled."""
        from .callbacks import CallbackList
        x, y = self._prepare(x, y, "evaluate")
        bs = _batch_size(batch_size)
        verbose = _resolve_verbose(verbose)
        cbs = CallbackList(callbacks, add_progbar=verbose != 0, model=self, verbose=verbose,
                           steps=math.ceil(len(x) / bs), samples=len(x))
        logs = self._evaluate_arrays(x, y, bs, cbs)
        if return_dict:
            return logs
        values = list(logs.values())
        return values[0] if len(values) == 1 else values

    def predict(self, x, batch_size=None, verbose="auto", callbacks=None):
        """Outputs for x, computed in batches in inference mode."""
        from .callbacks import CallbackList
        x = _as_input_array(x, "x")
        if len(x) == 0:
            raise ValueError("predict: x is empty")
        self._ensure_built(x)
        bs = _batch_size(batch_size)
        verbose = _resolve_verbose(verbose)
        steps = math.ceil(len(x) / bs)
        cbs = CallbackList(callbacks, add_progbar=verbose == 1, model=self, verbose=verbose, steps=steps)
        cbs.on_predict_begin()
        outs = []
        for step in range(steps):
            cbs.on_predict_batch_begin(step)
            outs.append(self._forward(x[step * bs:(step + 1) * bs], training=False))
            cbs.on_predict_batch_end(step, {"outputs": outs[-1]})
        cbs.on_predict_end()
        return outs[0] if len(outs) == 1 else np.concatenate(outs)

    def __call__(self, x, training=False):
        x = _as_input_array(x, "x")
        self._ensure_built(x)
        return self._forward(x, training=training)

    def predict_on_batch(self, x):
        return self(x)

    def _one_batch(self, x, y, what, step, return_dict):
        x, y = self._prepare(x, y, what)
        self._reset_metrics()
        loss, out = step(x, y)
        for m in self.metrics:
            m.update_state(y, out)
        logs = self._logs(loss, 1)
        if return_dict:
            return logs
        return logs["loss"] if not self.metrics else list(logs.values())

    def train_on_batch(self, x, y, return_dict=False):
        """One training step on this batch; the loss (and metrics) on it."""
        def step(xb, yb):
            self._build_optimizer()  # after _prepare has built the model from the batch
            return self._train_step(xb, yb)
        return self._one_batch(x, y, "train_on_batch", step, return_dict)

    def test_on_batch(self, x, y, return_dict=False):
        """The loss (and metrics) on this batch, in inference mode."""
        def step(xb, yb):
            out = self._forward(xb, training=False)
            return float(self.loss(yb, out)) + self._regularization_loss(), out
        return self._one_batch(x, y, "test_on_batch", step, return_dict)

    # ---- config ---------------------------------------------------------------------------------
    def get_config(self):
        cfg = {"name": self.name, "trainable": self.trainable,
               "layers": [layers_mod.serialize(l) for l in self._layers]}
        if self._batch_input_shape is not None:
            cfg["batch_input_shape"] = [None if d is None else int(d) for d in self._batch_input_shape]
        return cfg

    @classmethod
    def from_config(cls, config):
        if not isinstance(config, dict) or "layers" not in config:
            raise ValueError("a Sequential config is a dict with a 'layers' list")
        model = cls(name=config.get("name"), trainable=config.get("trainable", True))
        bis = config.get("batch_input_shape")
        if bis is not None:
            model._batch_input_shape = tuple(bis)
        for d in config["layers"]:
            model.add(layers_mod.deserialize(d))
        if bis is not None and not model.built:
            model.build(tuple(bis))
        return model

    def _compile_state(self):
        from . import losses, optimizers
        if self.optimizer is None:
            return None
        metrics = []
        for m in self._metric_specs:
            if isinstance(m, str):
                metrics.append(m)
            elif hasattr(m, "get_config"):
                metrics.append({"class_name": type(m).__name__, "config": m.get_config()})
        return {"optimizer": optimizers.serialize(self.optimizer), "loss": losses.serialize(self.loss),
                "metrics": metrics}

    # ---- save / load ----------------------------------------------------------------------------
    def save(self, filepath, overwrite=True, include_optimizer=True):
        """Save architecture, weights and optimizer state in one file (cnnc's zip format, no pickle).
        The file is written to a temporary name and renamed, so a crash never leaves half a file.
        A path ending in .onnx exports the model to ONNX instead (cnnc.onnx.export)."""
        self._require_built("save()")
        path = os.fspath(filepath)
        if path.lower().endswith(".onnx"):
            if not overwrite and os.path.exists(path):
                raise FileExistsError(path)
            from .onnx import export
            export(self, path)
            return
        _write_model_file(self, path, overwrite, include_optimizer, None)

    def save_weights(self, filepath, overwrite=True):
        """Save only the weights (a zip of .npy arrays)."""
        self._require_built("save_weights()")
        path = os.fspath(filepath)
        if not overwrite and os.path.exists(path):
            raise FileExistsError(path)
        entries = {f"weights/{i}.npy": w for i, w in enumerate(self.weights)}
        meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "weights",
                "weights": [list(w.shape) for w in self.weights]}
        _atomic_zip(path, meta, entries)

    def load_weights(self, filepath):
        meta, arrays = _read_zip(os.fspath(filepath))
        n = len(meta.get("weights", []))
        self._require_built("load_weights()")
        self.set_weights([arrays[f"weights/{i}.npy"] for i in range(n)])

    # hooks for BackupAndRestore
    def _write_backup(self, path, epoch):
        _write_model_file(self, os.fspath(path), True, True, {"epoch": int(epoch), "rng": _rng_states(self)})

    def _read_backup(self, path):
        meta, arrays = _read_zip(os.fspath(path))
        _restore_weights(self, meta, arrays)
        _restore_optimizer(self, meta, arrays)
        state = meta.get("training_state")
        if not state:
            raise ValueError(f"{path} holds no training state")
        _set_rng_states(self, state["rng"])
        return int(state["epoch"])


def _rng_states(model):
    states = {"global": utils.rng_state()}
    for l in model._layers:
        r = getattr(l, "_seed_rng", None)
        if r is not None:
            states[l.name] = r.bit_generator.state
    return states


def _set_rng_states(model, states):
    utils.set_rng_state(states["global"])
    for l in model._layers:
        r = getattr(l, "_seed_rng", None)
        if r is not None and l.name in states:
            r.bit_generator.state = states[l.name]


def _npy_bytes(arr):
    import io
    buf = io.BytesIO()
    np.save(buf, np.asarray(arr, order="C"), allow_pickle=False)  # keeps 0-d arrays 0-d
    return buf.getvalue()


def _atomic_zip(path, meta, entries):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cnnc-", suffix=".tmp")
    os.close(fd)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("model.json", json.dumps(meta, indent=1))
            for name, arr in entries.items():
                z.writestr(name, _npy_bytes(arr))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _write_model_file(model, path, overwrite, include_optimizer, training_state):
    if not overwrite and os.path.exists(path):
        raise FileExistsError(path)
    entries = {}
    weights = []
    for l in model._layers:
        for k, w in l.params.items():
            fname = f"weights/{len(weights)}.npy"
            weights.append({"layer": l.name, "name": k, "shape": list(w.shape), "file": fname})
            entries[fname] = w
    meta = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "kind": "model", "cnnc_version": __version__,
            "model": {"class_name": "Sequential", "config": model.get_config()}, "weights": weights,
            "compile": model._compile_state() if include_optimizer else None, "optimizer_state": []}
    if include_optimizer and model.optimizer is not None and getattr(model, "_optimizer_built", False):
        for key, arr in model.optimizer.get_state().items():
            fname = f"optimizer/{len(meta['optimizer_state'])}.npy"
            meta["optimizer_state"].append({"key": key, "file": fname})
            entries[fname] = np.asarray(arr)
    if training_state is not None:
        meta["training_state"] = training_state
    _atomic_zip(path, meta, entries)


def _read_zip(path):
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ValueError(f"{path} is not a cnnc model file: {exc}") from None
    with z:
        try:
            meta = json.loads(z.read("model.json").decode("utf-8"))
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path} is not a cnnc model file (no readable model.json: {exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ValueError(f"{path} is not a cnnc model file")
        if meta.get("format_version", 0) > FORMAT_VERSION:
            raise ValueError(f"{path} was written by a newer cnnc (format version {meta['format_version']})")
        arrays = {}
        import io
        for name in z.namelist():
            if name.endswith(".npy"):
                try:
                    arrays[name] = np.load(io.BytesIO(z.read(name)), allow_pickle=False)
                except ValueError as exc:
                    raise ValueError(f"{path}: entry {name} is not a plain array: {exc}") from None
    return meta, arrays


def _restore_weights(model, meta, arrays):
    specs = meta.get("weights", [])
    flat = [w for l in model._layers for w in l.params.values()]
    if len(specs) != len(flat):
        raise ValueError(f"the file holds {len(specs)} weight arrays but the model has {len(flat)}")
    model.set_weights([arrays[s["file"]] for s in specs])


def _restore_optimizer(model, meta, arrays):
    specs = meta.get("optimizer_state") or []
    if not specs or model.optimizer is None:
        return
    model._build_optimizer()
    model.optimizer.set_state({s["key"]: arrays[s["file"]] for s in specs})


def load_model(filepath, compile=True):
    """Load a model saved with model.save(). Reads JSON and plain arrays only: no code from the file
    is executed."""
    from . import losses, optimizers
    path = os.fspath(filepath)
    meta, arrays = _read_zip(path)
    if meta.get("kind") != "model":
        raise ValueError(f"{path} holds weights only; build the model and call load_weights()")
    spec = meta.get("model", {})
    if spec.get("class_name") != "Sequential":
        raise ValueError(f"{path}: unsupported model class {spec.get('class_name')!r}")
    model = Sequential.from_config(spec["config"])
    if not model.built:
        raise ValueError(f"{path}: the saved model has no input shape")
    _restore_weights(model, meta, arrays)
    comp = meta.get("compile")
    if compile and comp:
        model.compile(optimizer=optimizers.deserialize(comp["optimizer"]), loss=losses.deserialize(comp["loss"]),
                      metrics=[_metric_from_spec(m) for m in comp.get("metrics", [])])
        _restore_optimizer(model, meta, arrays)
    return model


def _metric_from_spec(m):
    if isinstance(m, str):
        return m
    from . import metrics
    return metrics.deserialize(m) if hasattr(metrics, "deserialize") else m["class_name"]
