"""Keras-style training callbacks.

Same names, arguments, defaults and (Keras 3) behaviour as ``keras.callbacks``: Callback,
CallbackList, History, ProgbarLogger, EarlyStopping, ModelCheckpoint, BackupAndRestore,
LearningRateScheduler, ReduceLROnPlateau, CSVLogger, TerminateOnNaN, LambdaCallback.

Files written by ModelCheckpoint and BackupAndRestore are written atomically: to a temporary file in
the target's directory which is then renamed over the target, so an interrupted save never leaves a
half-written file behind (the previous good one, if any, stays in place).

The model these callbacks drive provides: ``stop_training``, ``optimizer.learning_rate``,
``get_weights()``/``set_weights()``, ``save(path)``, ``save_weights(path)``, ``history``, and for
BackupAndRestore ``_write_backup(path, epoch)``, ``_read_backup(path) -> epoch`` and the attribute
``_resume_epoch`` that ``fit`` reads right after ``on_train_begin``.
"""
import collections.abc
import contextlib
import csv
import glob
import inspect
import math
import numbers
import os
import sys
import tempfile
import warnings

import numpy as np

from ._progbar import Progbar, is_live_output

__all__ = [
    "Callback", "CallbackList", "History", "ProgbarLogger", "EarlyStopping", "ModelCheckpoint",
    "BackupAndRestore", "LearningRateScheduler", "ReduceLROnPlateau", "CSVLogger", "TerminateOnNaN",
    "LambdaCallback",
]

_HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
    "on_test_batch_begin", "on_test_batch_end", "on_predict_begin", "on_predict_end",
    "on_predict_batch_begin", "on_predict_batch_end",
)


# --------------------------------------------------------------------------------------------------
# helpers

_umask = None


def _default_file_mode():
    """0o666 minus the process umask: the mode open() would have given a new file."""
    global _umask
    if _umask is None:
        _umask = os.umask(0o022)
        os.umask(_umask)
    return 0o666 & ~_umask


def _file_suffix(path):
    """The extension kept on a temporary file: '.cnnc', or '.weights.cnnc' for such a name."""
    stem, ext = os.path.splitext(os.path.basename(path))
    stem_ext = os.path.splitext(stem)[1]
    if stem_ext == ".weights":
        return stem_ext + ext
    return ext


def _atomic_write(path, write, keep_mode_of_existing=True):
    """Call write(tmp) on a fresh temporary file next to `path`, then rename it onto `path`.

    If write raises (or the process is interrupted by an exception), the temporary file is removed and
    `path` is untouched. Returns `path`.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".tmp-",
                               suffix=_file_suffix(path))
    os.close(fd)
    try:
        write(tmp)
        mode = _default_file_mode()
        if keep_mode_of_existing and os.path.exists(path):
            mode = os.stat(path).st_mode & 0o7777
        os.chmod(tmp, mode)
        with contextlib.suppress(OSError):  # best effort: make the bytes durable before the rename
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable (POSIX)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return path


def _to_float(value):
    """Python float for numbers and 0-d arrays; anything else unchanged."""
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and np.issubdtype(value.dtype, np.number):
        return float(value)
    return value


# metric names (after any 'val_' prefix) for which larger is better, besides anything containing 'acc'
_MAXIMIZED = {"auc", "precision", "recall", "f1", "f1_score", "fbeta", "fbeta_score", "iou",
              "mean_iou", "r2", "r2_score"}


def _resolve_mode(mode, monitor, owner):
    if mode not in ("auto", "min", "max"):
        warnings.warn(f"{owner} mode '{mode}' is unknown, fallback to auto mode.", stacklevel=3)
        mode = "auto"
    if mode == "auto":
        name = monitor[4:] if monitor.startswith("val_") else monitor
        name = name.lower()
        mode = "max" if ("acc" in name or name in _MAXIMIZED) else "min"
    return mode


def _print(*args):
    print(*args, flush=True)


# --------------------------------------------------------------------------------------------------
# base classes


class Callback:
    """Base class of the callbacks: every hook is a no-op.

    Attributes:
        model: the model being trained/evaluated (set by set_model).
        params: dict of the loop's parameters (verbose, epochs, steps, samples, ...).
    """

    def __init__(self):
        self.model = None
        self.params = {}

    def set_params(self, params):
        self.params = params

    def set_model(self, model):
        self.model = model

    def on_batch_begin(self, batch, logs=None):
        """Legacy alias: called by the default on_train_batch_begin."""

    def on_batch_end(self, batch, logs=None):
        """Legacy alias: called by the default on_train_batch_end."""

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_begin(self, batch, logs=None):
        self.on_batch_begin(batch, logs=logs)

    def on_train_batch_end(self, batch, logs=None):
        self.on_batch_end(batch, logs=logs)

    def on_test_batch_begin(self, batch, logs=None):
        pass

    def on_test_batch_end(self, batch, logs=None):
        pass

    def on_predict_batch_begin(self, batch, logs=None):
        pass

    def on_predict_batch_end(self, batch, logs=None):
        pass

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_test_begin(self, logs=None):
        pass

    def on_test_end(self, logs=None):
        pass

    def on_predict_begin(self, logs=None):
        pass

    def on_predict_end(self, logs=None):
        pass


class History(Callback):
    """Records the epoch-end logs: ``history[name]`` is the list of per-epoch values, ``epoch`` the
    list of epoch indices. ``model.fit`` returns it (and sets ``model.history`` to it)."""

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        self.epoch.append(epoch)
        for name, value in logs.items():
            self.history.setdefault(name, []).append(_to_float(value))
        if self.model is not None:
            self.model.history = self


class CallbackList(Callback):
    """Dispatches every hook to its callbacks, in order.

    The list is ``[*callbacks, ProgbarLogger, History]``: the default callbacks come after the user's,
    so they see the logs the user callbacks added to (e.g. 'learning_rate'). A ProgbarLogger or History
    already in `callbacks` is used instead of adding one.
    """

    def __init__(self, callbacks=None, add_history=False, add_progbar=False, model=None, **params):
        super().__init__()
        if callbacks is None:
            callbacks = []
        elif isinstance(callbacks, Callback) and not isinstance(callbacks, CallbackList):
            callbacks = [callbacks]
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError("callbacks must be cnnc.callbacks.Callback instances, got "
                                f"{type(cb).__name__}")
        self._history = next((cb for cb in self.callbacks if isinstance(cb, History)), None)
        self._progbar = next((cb for cb in self.callbacks if isinstance(cb, ProgbarLogger)), None)
        if self._progbar is None and add_progbar:
            self._progbar = ProgbarLogger()
            self.callbacks.append(self._progbar)
        if self._history is None and add_history:
            self._history = History()
            self.callbacks.append(self._history)
        self.set_model(model)
        self.set_params(params)

    def append(self, callback):
        self.callbacks.append(callback)
        if self.model is not None:
            callback.set_model(self.model)
        if self.params:
            callback.set_params(self.params)

    def __iter__(self):
        return iter(self.callbacks)

    def __len__(self):
        return len(self.callbacks)

    def set_params(self, params):
        self.params = params
        for cb in self.callbacks:
            cb.set_params(params)

    def set_model(self, model):
        if model is None:
            return
        self.model = model
        if self._history is not None:
            model.history = self._history
        for cb in self.callbacks:
            cb.set_model(model)

    @staticmethod
    def _batch_logs(logs):
        # a fresh dict of Python floats per batch (as Keras): callbacks may keep or change it freely
        return {k: _to_float(v) for k, v in (logs or {}).items()}

    def _call(self, hook, *args):
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, logs=None):
        self._call("on_train_begin", logs if logs is not None else {})

    def on_train_end(self, logs=None):
        self._call("on_train_end", logs if logs is not None else {})

    def on_epoch_begin(self, epoch, logs=None):
        self._call("on_epoch_begin", epoch, logs if logs is not None else {})

    def on_epoch_end(self, epoch, logs=None):
        # the same dict goes to every callback, so what one adds the next ones (History) see
        self._call("on_epoch_end", epoch, logs if logs is not None else {})

    def on_batch_begin(self, batch, logs=None):
        self.on_train_batch_begin(batch, logs)

    def on_batch_end(self, batch, logs=None):
        self.on_train_batch_end(batch, logs)

    def on_train_batch_begin(self, batch, logs=None):
        self._call("on_train_batch_begin", batch, logs if logs is not None else {})

    def on_train_batch_end(self, batch, logs=None):
        self._call("on_train_batch_end", batch, self._batch_logs(logs))

    def on_test_begin(self, logs=None):
        self._call("on_test_begin", logs if logs is not None else {})

    def on_test_end(self, logs=None):
        self._call("on_test_end", logs if logs is not None else {})

    def on_test_batch_begin(self, batch, logs=None):
        self._call("on_test_batch_begin", batch, logs if logs is not None else {})

    def on_test_batch_end(self, batch, logs=None):
        self._call("on_test_batch_end", batch, self._batch_logs(logs))

    def on_predict_begin(self, logs=None):
        self._call("on_predict_begin", logs if logs is not None else {})

    def on_predict_end(self, logs=None):
        self._call("on_predict_end", logs if logs is not None else {})

    def on_predict_batch_begin(self, batch, logs=None):
        self._call("on_predict_batch_begin", batch, logs if logs is not None else {})

    def on_predict_batch_end(self, batch, logs=None):
        self._call("on_predict_batch_end", batch, logs if logs is not None else {})


# --------------------------------------------------------------------------------------------------
# progress output


class ProgbarLogger(Callback):
    """Prints progress: the model adds one to fit/evaluate/predict when verbose != 0.

    Reads params 'verbose', 'epochs', 'steps' (steps per epoch / evaluation / prediction), and the
    optional 'samples' (samples per epoch) and 'batch_size' for the samples/s figure.

    * verbose=1 on a terminal: 'Epoch 3/5', then a bar redrawn in place with '\\r' showing the ETA and
      the running metrics; at the end of the epoch the bar's final line with the total time and the
      validation metrics.
    * verbose=2, or verbose=1 when the output is not a terminal: one line per epoch,
      'Epoch 3/5 - 12s - loss: 0.4123 - accuracy: 0.8510 - val_loss: 0.3900 - 5123 samples/s'.
    * verbose=0: nothing. 'auto' counts as 1 (the model normally resolves it before).

    evaluate shows the bar on a terminal with verbose=1, otherwise one summary line; predict shows
    the bar on a terminal with verbose=1 and nothing otherwise. `file` (cnnc extension) is the stream
    written to; None means sys.stdout at the time output starts.
    """

    def __init__(self, file=None):
        super().__init__()
        self.file = file
        self.verbose = 1
        self.epochs = 1
        self.target = None
        self.progbar = None
        self._called_in_fit = False
        self._reset_counts()

    def _reset_counts(self):
        self.seen = 0
        self._samples_seen = 0
        self._last_logs = {}

    def set_params(self, params):
        super().set_params(params)
        params = params or {}
        verbose = params.get("verbose", 1)
        if verbose == "auto" or verbose is None:
            verbose = 1
        self.verbose = int(verbose)
        self.epochs = params.get("epochs", 1)
        self.target = params.get("steps")

    def _stream(self):
        return sys.stdout if self.file is None else self.file

    def _live(self):
        return self.verbose == 1 and is_live_output(self._stream())

    def _new_progbar(self, summary_prefix=None, verbose=None):
        self._reset_counts()
        self.progbar = Progbar(self.target, verbose=self.verbose if verbose is None else verbose,
                               unit_name="step", file=self._stream(), summary_prefix=summary_prefix,
                               dynamic=self._live())

    def _count_samples(self, batch, logs):
        """Samples seen so far in this epoch/evaluation, or None if unknowable."""
        samples = self.params.get("samples") if self.params else None
        batch_size = self.params.get("batch_size") if self.params else None
        if "size" in logs:
            self._samples_seen += int(logs["size"])
        elif batch_size:
            self._samples_seen = (batch + 1) * int(batch_size)
            if samples is not None:
                self._samples_seen = min(self._samples_seen, int(samples))
        elif samples is not None and self.target:
            self._samples_seen = int(round(int(samples) * min(batch + 1, self.target) / self.target))
        else:
            return None
        return self._samples_seen

    def _update(self, batch, logs):
        logs = logs or {}
        self.seen = batch + 1
        samples = self._count_samples(batch, logs)
        values = [(k, v) for k, v in logs.items() if k not in ("size", "batch")]
        self.progbar.stateful_metrics.update(k for k, _ in values)
        self._last_logs = dict(values)
        self.progbar.update(self.seen, values, finalize=False, samples=samples)

    def _finalize(self, logs):
        logs = dict(logs) if logs else dict(self._last_logs)
        values = [(k, v) for k, v in logs.items() if k not in ("size", "batch")]
        self.progbar.stateful_metrics.update(k for k, _ in values)
        current = self.seen
        if self.target is not None and self.seen == 0:
            current = self.target
        samples = self._samples_seen if self._samples_seen else None
        self.progbar.update(current, values, finalize=True, samples=samples)
        self.progbar = None

    # fit
    def on_train_begin(self, logs=None):
        self._called_in_fit = True

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose == 0:
            return
        header = "Epoch %d/%s" % (epoch + 1, self.epochs)
        if self._live():
            stream = self._stream()
            stream.write(header + "\n")
            stream.flush()
        self._new_progbar(summary_prefix=header)

    def on_train_batch_end(self, batch, logs=None):
        if self.verbose and self.progbar is not None:
            self._update(batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        if self.verbose and self.progbar is not None:
            self._finalize(logs)

    def on_train_end(self, logs=None):
        self._called_in_fit = False

    # evaluate
    def on_test_begin(self, logs=None):
        if self.verbose and not self._called_in_fit:
            self._new_progbar()

    def on_test_batch_end(self, batch, logs=None):
        if self.verbose and not self._called_in_fit and self.progbar is not None:
            self._update(batch, logs)

    def on_test_end(self, logs=None):
        if self.verbose and not self._called_in_fit and self.progbar is not None:
            self._finalize(logs)

    # predict: a live bar only
    def on_predict_begin(self, logs=None):
        if self._live():
            self._new_progbar()

    def on_predict_batch_end(self, batch, logs=None):
        if self.progbar is not None and self._live():
            self.seen = batch + 1
            self.progbar.update(self.seen, finalize=False)

    def on_predict_end(self, logs=None):
        if self.progbar is not None and self._live():
            self.progbar.update(self.seen if self.seen else (self.target or 0), finalize=True)
        self.progbar = None


# --------------------------------------------------------------------------------------------------
# monitoring callbacks


class EarlyStopping(Callback):
    """Stop training when a monitored quantity has stopped improving.

    Args:
        monitor: the logs key watched ('val_loss').
        min_delta: an absolute change smaller than this is no improvement.
        patience: epochs without improvement after which training stops.
        verbose: 1 prints a message when stopping/restoring.
        mode: 'min', 'max' or 'auto' ('max' for accuracy-like names, 'min' otherwise).
        baseline: training stops if the model doesn't improve on it within `patience` epochs.
        restore_best_weights: restore the weights of the best epoch when stopping, or at the end of
            training if the best epoch was not the last.
        start_from_epoch: epochs to wait before monitoring starts.

    ``stopped_epoch`` is the (0-based) epoch at which training was stopped, 0 if it was not.
    """

    def __init__(self, monitor="val_loss", min_delta=0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        self.monitor = monitor
        self.min_delta = abs(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.start_from_epoch = start_from_epoch
        self.mode = _resolve_mode(mode, monitor, "EarlyStopping")
        self._reset()

    def _reset(self):
        self.wait = 0
        self.stopped_epoch = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = 0
        self._last_epoch = None
        self._restored = False

    def _is_improvement(self, value, reference):
        if self.mode == "min":
            return value + self.min_delta < reference
        return value - self.min_delta > reference

    def on_train_begin(self, logs=None):
        self._reset()

    def get_monitor_value(self, logs):
        logs = logs or {}
        value = logs.get(self.monitor)
        if value is None:
            warnings.warn(f"Early stopping conditioned on metric `{self.monitor}` which is not "
                          f"available. Available metrics are: {','.join(logs.keys())}", stacklevel=3)
            return None
        return float(value)

    def on_epoch_end(self, epoch, logs=None):
        self._last_epoch = epoch
        current = self.get_monitor_value(logs)
        if current is None or epoch < self.start_from_epoch:
            return
        if self.restore_best_weights and self.best_weights is None:
            # never set yet: the current weights are the best
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(current, self.best):
            self.best = current
            self.best_epoch = epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            # the wait only restarts when both the baseline and the previous best are beaten
            if self.baseline is None or self._is_improvement(current, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self._restore()

    def _restore(self):
        if self.verbose > 0:
            _print(f"Restoring model weights from the end of the best epoch: {self.best_epoch + 1}.")
        self.model.set_weights(self.best_weights)
        self._restored = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose > 0:
            _print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if (self.restore_best_weights and self.best_weights is not None and not self._restored
                and self.best_epoch != self._last_epoch):
            self._restore()


class ModelCheckpoint(Callback):
    """Save the model (or its weights) during training.

    Args:
        filepath: path or template formatted with ``epoch`` (1-based) and the logs' keys, e.g.
            ``'ckpt-{epoch:02d}-{val_loss:.2f}.cnnc'`` (and ``batch``, 1-based, with an int save_freq).
        monitor: the logs key compared for save_best_only.
        verbose: 1 prints a message for every save decision.
        save_best_only: save only when `monitor` improved on the best value seen.
        save_weights_only: model.save_weights(...) instead of model.save(...).
        mode: 'min', 'max' or 'auto'.
        save_freq: 'epoch', or an int: save every that many training batches.
        initial_value_threshold: the initial best value for save_best_only.

    Every file is written atomically (temporary file in the same directory, then renamed).
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto", save_freq="epoch", initial_value_threshold=None):
        super().__init__()
        self.filepath = os.fspath(filepath)
        self.monitor = monitor
        self.verbose = verbose
        self.save_best_only = save_best_only
        self.save_weights_only = save_weights_only
        if save_freq != "epoch" and (isinstance(save_freq, bool) or not isinstance(save_freq, int)
                                     or save_freq < 1):
            raise ValueError(f"Unrecognized save_freq: {save_freq!r}. Expected save_freq are 'epoch' "
                             "or a positive integer number of batches")
        self.save_freq = save_freq
        self.mode = _resolve_mode(mode, monitor, "ModelCheckpoint")
        self.initial_value_threshold = initial_value_threshold
        if initial_value_threshold is not None:
            self.best = float(initial_value_threshold)
        else:
            self.best = math.inf if self.mode == "min" else -math.inf
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1
        self._current_epoch = 0

    def _is_improvement(self, value, reference):
        return value < reference if self.mode == "min" else value > reference

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self._should_save_on_batch(batch):
            self._save_model(self._current_epoch, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._last_batch_seen = -1
        if self.save_freq == "epoch":
            self._save_model(epoch, None, logs)

    def _should_save_on_batch(self, batch):
        if self.save_freq == "epoch":
            return False
        if batch <= self._last_batch_seen:  # a new epoch started
            added = batch + 1
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            return True
        return False

    def _get_file_path(self, epoch, batch, logs):
        logs = logs or {}
        fields = dict(logs)
        fields["epoch"] = epoch + 1
        if batch is not None and "batch" not in logs:
            fields["batch"] = batch + 1
        try:
            return self.filepath.format(**fields)
        except KeyError as exc:
            raise KeyError(f'Failed to format this callback filepath: "{self.filepath}". Reason: '
                           f"{exc}. Available keys: {', '.join(fields)}") from None

    def _should_save(self, epoch, logs, filepath):
        if not self.save_best_only:
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: saving model to {filepath}")
            return True
        current = (logs or {}).get(self.monitor)
        if current is None:
            warnings.warn(f"Can save best model only with {self.monitor} available, skipping the "
                          "comparison and saving.", stacklevel=3)
            return True
        current = float(current)
        if self._is_improvement(current, self.best):
            if self.verbose > 0:
                _print(f"\nEpoch {epoch + 1}: {self.monitor} improved from {self.best:.5f} to "
                       f"{current:.5f}, saving model to {filepath}")
            self.best = current
            return True
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: {self.monitor} did not improve from {self.best:.5f}")
        return False

    def _save_model(self, epoch, batch, logs):
        filepath = self._get_file_path(epoch, batch, logs)
        if os.path.isdir(filepath):
            raise IsADirectoryError("Please specify a non-directory filepath for ModelCheckpoint. "
                                    f"Filepath used is an existing directory: {filepath}")
        if not self._should_save(epoch, logs, filepath):
            return
        save = self.model.save_weights if self.save_weights_only else self.model.save
        _atomic_write(filepath, save)


class BackupAndRestore(Callback):
    """Back up the training state so an interrupted ``fit`` resumes where it stopped.

    At the end of every epoch the model's weights, optimizer state, random state and the finished
    epoch are written (atomically) to ``backup_dir/latest.cnnc-backup``. At the start of ``fit``, if
    that file exists, the state is restored and ``fit`` continues after the last finished epoch. At the
    end of a completed ``fit`` the backup is deleted (unless delete_checkpoint=False).

    Args:
        backup_dir: directory for the backup; not to be shared with other runs or callbacks.
        save_freq: 'epoch', an int (also back up every that many batches: resuming from such a
            backup re-runs the interrupted epoch from the mid-epoch weights, as in Keras, so it is not
            bit-identical to an uninterrupted run), or False (never back up).
        delete_checkpoint: delete the backup when fit completes.
    """

    FILE_NAME = "latest.cnnc-backup"

    def __init__(self, backup_dir, save_freq="epoch", delete_checkpoint=True):
        super().__init__()
        if not backup_dir:
            raise ValueError("Empty `backup_dir` argument passed")
        if not (save_freq == "epoch" or save_freq is False
                or (isinstance(save_freq, int) and not isinstance(save_freq, bool) and save_freq >= 1)):
            raise ValueError(f"Invalid value for argument `save_freq`. Received: save_freq={save_freq!r}."
                             " Expected either 'epoch', a positive integer or False.")
        self.backup_dir = os.fspath(backup_dir)
        self.save_freq = save_freq
        self.delete_checkpoint = delete_checkpoint
        self._backup_path = os.path.join(self.backup_dir, self.FILE_NAME)
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1
        self._current_epoch = 0

    @property
    def backup_path(self):
        return self._backup_path

    def _remove_stale_temporaries(self):
        # left by a process killed in the middle of a backup; never valid
        pattern = os.path.join(glob.escape(self.backup_dir), "." + self.FILE_NAME + ".tmp-*")
        for path in glob.glob(pattern):
            with contextlib.suppress(OSError):
                os.remove(path)

    def on_train_begin(self, logs=None):
        self._batches_seen_since_last_saving = 0
        self._last_batch_seen = -1
        if os.path.isdir(self.backup_dir):
            self._remove_stale_temporaries()
        if os.path.exists(self._backup_path):
            last_finished = int(self.model._read_backup(self._backup_path))
            self.model._resume_epoch = last_finished + 1
            self._current_epoch = last_finished + 1
        else:
            self.model._resume_epoch = None

    def on_epoch_begin(self, epoch, logs=None):
        self._current_epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.save_freq == "epoch" or self.save_freq is False:
            return
        if batch <= self._last_batch_seen:
            added = batch + 1
        else:
            added = batch - self._last_batch_seen
        self._batches_seen_since_last_saving += added
        self._last_batch_seen = batch
        if self._batches_seen_since_last_saving >= self.save_freq:
            self._batches_seen_since_last_saving = 0
            # mid-epoch: the current epoch is not finished, resuming re-runs it
            self._save(self._current_epoch - 1)

    def on_epoch_end(self, epoch, logs=None):
        self._last_batch_seen = -1
        if self.save_freq == "epoch":
            self._save(epoch)

    def _save(self, finished_epoch):
        _atomic_write(self._backup_path,
                      lambda tmp: self.model._write_backup(tmp, finished_epoch),
                      keep_mode_of_existing=False)

    def on_train_end(self, logs=None):
        if not self.delete_checkpoint:
            return
        with contextlib.suppress(FileNotFoundError):
            os.remove(self._backup_path)
        if os.path.isdir(self.backup_dir):
            self._remove_stale_temporaries()
            with contextlib.suppress(OSError):  # only if nothing else is in it
                os.rmdir(self.backup_dir)


def _call_schedule(schedule, epoch, lr):
    """schedule(epoch, lr), or schedule(epoch) for one-argument schedules."""
    try:
        sig = inspect.signature(schedule)
    except (TypeError, ValueError):  # no signature (some builtins): try both
        try:
            return schedule(epoch, lr)
        except TypeError:
            return schedule(epoch)
    try:
        sig.bind(epoch, lr)
    except TypeError:
        return schedule(epoch)
    return schedule(epoch, lr)


class LearningRateScheduler(Callback):
    """At the start of every epoch sets ``model.optimizer.learning_rate = schedule(epoch, lr)``
    (``schedule(epoch)`` is accepted too); adds 'learning_rate' to the epoch-end logs."""

    def __init__(self, schedule, verbose=0):
        super().__init__()
        self.schedule = schedule
        self.verbose = verbose

    def on_epoch_begin(self, epoch, logs=None):
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None or not hasattr(optimizer, "learning_rate"):
            raise ValueError('Optimizer must have a "learning_rate" attribute.')
        lr = _call_schedule(self.schedule, epoch, float(optimizer.learning_rate))
        if isinstance(lr, np.ndarray) and lr.ndim == 0:
            lr = lr.item()
        if isinstance(lr, bool) or not isinstance(lr, numbers.Real):
            raise ValueError(f"The output of the `schedule` function should be a float. Got: {lr!r}")
        lr = float(lr)
        optimizer.learning_rate = lr
        if self.verbose > 0:
            _print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to {lr}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class ReduceLROnPlateau(Callback):
    """Multiply the learning rate by `factor` when `monitor` has not improved for `patience` epochs.

    Args:
        monitor, mode: the quantity watched and its direction ('auto': 'max' for accuracy-like names).
        factor: new_lr = lr * factor; must be < 1.
        patience: epochs without improvement before reducing.
        verbose: 1 prints a message when reducing.
        min_delta: threshold for a new best.
        cooldown: epochs to wait after a reduction before counting again.
        min_lr: lower bound of the learning rate.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0, **kwargs):
        super().__init__()
        if factor >= 1.0:
            raise ValueError(f"ReduceLROnPlateau does not support a factor >= 1.0. Received factor={factor}")
        if kwargs:
            raise TypeError(f"ReduceLROnPlateau got unexpected arguments: {', '.join(kwargs)}")
        self.monitor = monitor
        self.factor = factor
        self.patience = patience
        self.verbose = verbose
        self.min_delta = min_delta
        self.cooldown = cooldown
        self.min_lr = min_lr
        self.mode = _resolve_mode(mode, monitor, "ReduceLROnPlateau")
        self._reset()

    def _reset(self):
        self.best = math.inf if self.mode == "min" else -math.inf
        self.cooldown_counter = 0
        self.wait = 0

    def monitor_op(self, value, best):
        if self.mode == "min":
            return value < best - self.min_delta
        return value > best + self.min_delta

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs if logs is not None else {}
        logs["learning_rate"] = float(self.model.optimizer.learning_rate)
        current = logs.get(self.monitor)
        if current is None:
            warnings.warn(f"Learning rate reduction is conditioned on metric `{self.monitor}` which is "
                          f"not available. Available metrics are: {','.join(logs.keys())}.",
                          stacklevel=2)
            return
        current = float(current)
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self.monitor_op(current, self.best):
            self.best = current
            self.wait = 0
        elif not self.in_cooldown():
            self.wait += 1
            if self.wait >= self.patience:
                old_lr = float(self.model.optimizer.learning_rate)
                if old_lr > np.float32(self.min_lr):
                    new_lr = max(old_lr * self.factor, self.min_lr)
                    self.model.optimizer.learning_rate = new_lr
                    if self.verbose > 0:
                        _print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                               f"{new_lr}.")
                    self.cooldown_counter = self.cooldown
                    self.wait = 0


# --------------------------------------------------------------------------------------------------
# misc


class CSVLogger(Callback):
    """Stream the epoch-end logs to a CSV file: a header 'epoch,<sorted keys>' from the first epoch,
    then one row per epoch, flushed each epoch. append=True continues an existing file (no second
    header)."""

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        self.sep = separator
        self.filename = os.fspath(filename)
        self.append = append
        self.writer = None
        self.keys = None
        self.append_header = True
        self.csv_file = None

    def on_train_begin(self, logs=None):
        if self.append:
            self.append_header = True
            if os.path.exists(self.filename):
                with open(self.filename, "r", newline="") as f:
                    self.append_header = not bool(len(f.readline()))
            mode = "a"
        else:
            self.append_header = True
            mode = "w"
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        directory = os.path.dirname(os.path.abspath(self.filename))
        os.makedirs(directory, exist_ok=True)
        self.csv_file = open(self.filename, mode, newline="")
        self.writer = None
        self.keys = None

    @staticmethod
    def _handle_value(value):
        if isinstance(value, str):
            return value
        if isinstance(value, np.ndarray) and value.ndim == 0:
            return value.item()
        if isinstance(value, collections.abc.Iterable):
            return '"[%s]"' % ", ".join(map(str, value))
        return _to_float(value)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.csv_file is None:  # used without on_train_begin
            self.on_train_begin()
        if self.keys is None:
            self.keys = sorted(logs.keys())
            # validation metrics the model will produce, even if this epoch had none
            for name in getattr(self.model, "metrics_names", None) or []:
                if name.startswith("val_") and name not in self.keys:
                    self.keys.append(name)
        if self.writer is None:
            sep = self.sep

            class _Dialect(csv.excel):
                delimiter = sep

            self.writer = csv.DictWriter(self.csv_file, fieldnames=["epoch"] + self.keys,
                                         dialect=_Dialect, extrasaction="ignore")
            if self.append_header:
                self.writer.writeheader()
        row = {"epoch": epoch}
        row.update((key, self._handle_value(logs.get(key, "NA"))) for key in self.keys)
        self.writer.writerow(row)
        self.csv_file.flush()

    def on_train_end(self, logs=None):
        if self.csv_file is not None and not self.csv_file.closed:
            self.csv_file.close()
        self.writer = None


class TerminateOnNaN(Callback):
    """Stop training as soon as a training batch's loss is NaN or infinite."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None:
            return
        try:
            bad = not math.isfinite(float(loss))
        except (TypeError, ValueError):
            return
        if bad:
            _print(f"Batch {batch}: Invalid loss, terminating training")
            self.model.stop_training = True


class LambdaCallback(Callback):
    """A callback made of plain functions: on_epoch_begin(epoch, logs), on_epoch_end(epoch, logs),
    on_train_begin(logs), on_train_end(logs), on_train_batch_begin(batch, logs),
    on_train_batch_end(batch, logs); any other hook (on_test_begin=..., on_batch_end=...) as a keyword.
    """

    def __init__(self, on_epoch_begin=None, on_epoch_end=None, on_train_begin=None, on_train_end=None,
                 on_train_batch_begin=None, on_train_batch_end=None, **kwargs):
        super().__init__()
        allowed = set(_HOOKS) | {"on_batch_begin", "on_batch_end"}
        unknown = sorted(set(kwargs) - allowed)
        if unknown:
            raise TypeError(f"LambdaCallback got unknown hooks: {', '.join(unknown)}; known hooks are "
                            f"{', '.join(sorted(allowed))}")
        hooks = dict(kwargs)
        hooks.update(on_epoch_begin=on_epoch_begin, on_epoch_end=on_epoch_end,
                     on_train_begin=on_train_begin, on_train_end=on_train_end,
                     on_train_batch_begin=on_train_batch_begin, on_train_batch_end=on_train_batch_end)
        # legacy names (Keras): on_batch_begin/on_batch_end are the training-batch hooks
        for legacy, modern in (("on_batch_begin", "on_train_batch_begin"),
                               ("on_batch_end", "on_train_batch_end")):
            fn = hooks.pop(legacy, None)
            if fn is not None and hooks.get(modern) is None:
                hooks[modern] = fn
        for name, fn in hooks.items():
            if fn is not None:
                if not callable(fn):
                    raise TypeError(f"LambdaCallback {name} must be callable, got {type(fn).__name__}")
                setattr(self, name, fn)
