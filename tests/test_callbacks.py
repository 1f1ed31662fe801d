"""cnnc.callbacks and cnnc._progbar against a stub model (no training): every callback's behaviour.

The stub fit loop below drives the callbacks exactly as cnnc.models.Sequential.fit does:
CallbackList(user callbacks, add_history=True, add_progbar=verbose != 0, model=..., verbose, epochs,
steps, samples) -> on_train_begin -> start at model._resume_epoch (None -> initial_epoch) -> per epoch
on_epoch_begin / per batch on_train_batch_begin+end / optional on_test_* / on_epoch_end, stopping
when model.stop_training -> on_train_end.
"""
import io
import json
import os
import re
import warnings

import numpy as np
import pytest

from cnnc import _progbar, callbacks
from cnnc._progbar import Progbar, format_duration, format_eta, format_value
from cnnc.callbacks import (BackupAndRestore, Callback, CallbackList, CSVLogger, EarlyStopping,
                            History, LambdaCallback, LearningRateScheduler, ModelCheckpoint,
                            ProgbarLogger, ReduceLROnPlateau, TerminateOnNaN)


# --------------------------------------------------------------------------------------------------
# stub model and fit loop


class StubOptimizer:
    def __init__(self, learning_rate=0.01):
        self.learning_rate = learning_rate


class SaveFailed(OSError):
    pass


class StubModel:
    """The model API the callbacks use. Weights are [w] with w = sum of (epoch + 1) over trained
    epochs, so they tell which epochs ran."""

    def __init__(self, lr=0.01):
        self.stop_training = False
        self.optimizer = StubOptimizer(lr)
        self.weights = [np.zeros(3), np.zeros((2, 2))]
        self.history = None
        self._resume_epoch = None
        self.saved = []            # (kind, path) per save call
        self.fail_save = False     # write some bytes, then raise
        self.fail_backup = False
        self.backups_read = []

    def get_weights(self):
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        self.weights = [np.array(w, copy=True) for w in weights]

    def train_epoch(self, epoch):
        for w in self.weights:
            w += epoch + 1

    def _payload(self, kind, extra=None):
        d = {"kind": kind, "weights": [w.tolist() for w in self.weights]}
        d.update(extra or {})
        return json.dumps(d).encode()

    def _write(self, path, kind, payload, fail):
        self.saved.append((kind, path))
        with open(path, "wb") as f:
            if fail:
                f.write(payload[: len(payload) // 2])
                f.flush()
                raise SaveFailed("disk full (simulated) while writing " + path)
            f.write(payload)

    def save(self, path):
        self._write(path, "model", self._payload("model"), self.fail_save)

    def save_weights(self, path):
        self._write(path, "weights", self._payload("weights"), self.fail_save)

    def _write_backup(self, path, epoch):
        self._write(path, "backup", self._payload("backup", {"epoch": epoch}), self.fail_backup)

    def _read_backup(self, path):
        with open(path, "rb") as f:
            d = json.loads(f.read())
        self.set_weights([np.array(w) for w in d["weights"]])
        self.backups_read.append(path)
        return d["epoch"]


def read_json(path):
    with open(path, "rb") as f:
        return json.loads(f.read())


def stub_fit(model, cbs=None, epochs=3, steps=3, losses=None, val_losses=None, accuracies=None,
             verbose=0, initial_epoch=0, samples=None, batch_logs=None, extra_params=None):
    """Drive callbacks like Sequential.fit. losses/val_losses/accuracies: per-epoch values (None: no
    such key). batch_logs(epoch, step) -> logs of a training batch (default: running loss)."""
    params = dict(verbose=verbose, epochs=epochs, steps=steps, samples=samples)
    params.update(extra_params or {})
    cbl = CallbackList(cbs, add_history=True, add_progbar=verbose != 0, model=model, **params)
    model.stop_training = False
    cbl.on_train_begin()
    start = model._resume_epoch if model._resume_epoch is not None else initial_epoch
    for epoch in range(start, epochs):
        cbl.on_epoch_begin(epoch)
        for step in range(steps):
            cbl.on_train_batch_begin(step)
            if batch_logs is not None:
                logs = batch_logs(epoch, step)
            else:
                logs = {"loss": np.float32(1.0 / (step + 1))}
                if accuracies is not None:
                    logs["accuracy"] = np.float32(0.5)
            cbl.on_train_batch_end(step, logs)
            if model.stop_training:
                break
        model.train_epoch(epoch)
        logs = {}
        if losses is not None:
            logs["loss"] = losses[epoch]
        if accuracies is not None:
            logs["accuracy"] = accuracies[epoch]
        if val_losses is not None:
            cbl.on_test_begin()
            for step in range(2):
                cbl.on_test_batch_begin(step)
                cbl.on_test_batch_end(step, {"loss": val_losses[epoch]})
            cbl.on_test_end({"loss": val_losses[epoch]})
            logs["val_loss"] = val_losses[epoch]
        cbl.on_epoch_end(epoch, logs)
        if model.stop_training:
            break
    cbl.on_train_end()
    return model.history


class Recorder(Callback):
    """Records every hook call as (name, tag, args...)."""

    def __init__(self, tag, events):
        super().__init__()
        self.tag = tag
        self.events = events

    def __getattribute__(self, name):
        if name in callbacks._HOOKS:
            def hook(*args, **kwargs):
                self.events.append((name, object.__getattribute__(self, "tag")) + args)
            return hook
        return object.__getattribute__(self, name)


class FakeStream(io.StringIO):
    """A text stream that says it is (or is not) a terminal."""

    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


class FakeClock:
    def __init__(self):
        self.t = 100.0

    def perf_counter(self):
        return self.t


@pytest.fixture
def clock(monkeypatch):
    c = FakeClock()
    monkeypatch.setattr(_progbar, "time", c)
    return c


def listdir(path):
    return sorted(os.listdir(path))


# --------------------------------------------------------------------------------------------------
# Callback, CallbackList, History


def test_base_callback_hooks_are_noops_and_setters():
    cb = Callback()
    assert cb.model is None and cb.params == {}
    m = StubModel()
    cb.set_model(m)
    cb.set_params({"epochs": 2})
    assert cb.model is m and cb.params == {"epochs": 2}
    for hook in callbacks._HOOKS:
        fn = getattr(cb, hook)
        if "batch" in hook or "epoch" in hook:
            assert fn(0) is None and fn(0, logs={"loss": 1.0}) is None
        else:
            assert fn() is None and fn(logs={}) is None


def test_legacy_on_batch_hooks_are_called_by_train_batch_hooks():
    seen = []

    class Legacy(Callback):
        def on_batch_begin(self, batch, logs=None):
            seen.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            seen.append(("end", batch, logs["loss"]))

    stub_fit(StubModel(), [Legacy()], epochs=1, steps=2)
    assert seen == [("begin", 0), ("end", 0, 1.0), ("begin", 1), ("end", 1, 0.5)]


def test_callback_list_order_defaults_and_params():
    events = []
    a, b = Recorder("a", events), Recorder("b", events)
    m = StubModel()
    cbl = CallbackList([a, b], add_history=True, add_progbar=True, model=m, verbose=0, epochs=2,
                       steps=5)
    kinds = [type(cb) for cb in cbl.callbacks]
    assert kinds == [Recorder, Recorder, ProgbarLogger, History]
    assert cbl.callbacks[0] is a and cbl.callbacks[1] is b
    assert m.history is cbl.callbacks[-1]
    for cb in cbl.callbacks:
        assert cb.model is m
        assert cb.params == {"verbose": 0, "epochs": 2, "steps": 5}
    cbl.on_train_begin()
    cbl.on_epoch_begin(0)
    cbl.on_train_batch_begin(0)
    cbl.on_train_batch_end(0, {"loss": 1.0})
    cbl.on_test_begin()
    cbl.on_test_batch_begin(0)
    cbl.on_test_batch_end(0, {"loss": 2.0})
    cbl.on_test_end({"loss": 2.0})
    cbl.on_epoch_end(0, {"loss": 1.0})
    cbl.on_train_end()
    cbl.on_predict_begin()
    cbl.on_predict_batch_begin(0)
    cbl.on_predict_batch_end(0, {"outputs": None})
    cbl.on_predict_end()
    names = [e[0] for e in events]
    assert names == [n for n in ("on_train_begin", "on_epoch_begin", "on_train_batch_begin",
                                 "on_train_batch_end", "on_test_begin", "on_test_batch_begin",
                                 "on_test_batch_end", "on_test_end", "on_epoch_end", "on_train_end",
                                 "on_predict_begin", "on_predict_batch_begin",
                                 "on_predict_batch_end", "on_predict_end") for _ in "ab"]
    assert [e[1] for e in events] == ["a", "b"] * 14
    assert ("on_train_batch_end", "a", 0, {"loss": 1.0}) in events
    assert ("on_epoch_end", "b", 0, {"loss": 1.0}) in events


def test_callback_list_reuses_given_history_and_progbar():
    h, p = History(), ProgbarLogger()
    m = StubModel()
    cbl = CallbackList([p, h], add_history=True, add_progbar=True, model=m)
    assert cbl.callbacks == [p, h]
    assert m.history is h
    cbl = CallbackList(None, add_history=False, add_progbar=False, model=m)
    assert cbl.callbacks == []
    single = Callback()
    assert CallbackList(single).callbacks == [single]


def test_callback_list_rejects_non_callbacks():
    with pytest.raises(TypeError, match="Callback"):
        CallbackList([object()])


def test_callback_list_append_sets_model_and_params():
    m = StubModel()
    cbl = CallbackList([], model=m, epochs=3)
    cb = Callback()
    cbl.append(cb)
    assert cb.model is m and cb.params == {"epochs": 3}
    assert len(cbl) == 1 and list(cbl) == [cb]


def test_callback_list_batch_logs_are_python_floats_and_copied():
    got = []

    class Keep(Callback):
        def on_train_batch_end(self, batch, logs=None):
            got.append(logs)
            logs["mutated"] = True

    cbl = CallbackList([Keep()], model=StubModel())
    original = {"loss": np.float32(0.25), "accuracy": np.array(0.5)}
    cbl.on_train_batch_end(0, original)
    assert got[0] == {"loss": 0.25, "accuracy": 0.5, "mutated": True}
    assert type(got[0]["loss"]) is float and type(got[0]["accuracy"]) is float
    assert "mutated" not in original


def test_history_sees_logs_changed_by_user_callbacks():
    class AddKey(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["extra"] = epoch * 10

    m = StubModel()
    h = stub_fit(m, [AddKey()], epochs=3, losses=[3.0, 2.0, 1.0], val_losses=[3.5, 2.5, 1.5])
    assert isinstance(h, History) and m.history is h
    assert h.epoch == [0, 1, 2]
    assert h.history == {"loss": [3.0, 2.0, 1.0], "val_loss": [3.5, 2.5, 1.5],
                         "extra": [0.0, 10.0, 20.0]}
    assert all(type(v) is float for vals in h.history.values() for v in vals)


def test_history_epoch_resets_per_training_run():
    h = History()
    h.set_model(StubModel())
    h.on_train_begin()
    h.on_epoch_end(0, {"loss": np.float64(1.0)})
    h.on_train_begin()
    h.on_epoch_end(5, {"loss": 2.0})
    assert h.epoch == [5]
    assert h.history == {"loss": [1.0, 2.0]}


# --------------------------------------------------------------------------------------------------
# EarlyStopping


def run_early_stopping(stopper, values, key="loss", model=None):
    """Keras-test style: weights = epoch index; returns (epochs trained, model)."""
    model = model or StubModel()
    stopper.set_model(model)
    stopper.on_train_begin()
    trained = 0
    for epoch, value in enumerate(values):
        trained += 1
        model.weights = [np.full(2, float(epoch))]
        stopper.on_epoch_end(epoch, {key: value})
        if model.stop_training:
            break
    stopper.on_train_end()
    return trained, model


@pytest.mark.parametrize("patience", [0, 1, 2, 3])
def test_early_stopping_patience(patience):
    losses = [10.0, 9.0, 8.0, 9.0, 8.9, 8.8, 8.7, 8.6, 8.5]
    stopper = EarlyStopping(monitor="loss", patience=patience)
    run_early_stopping(stopper, losses)
    assert stopper.stopped_epoch == max(patience, 1) + 2
    assert stopper.model.stop_training


def test_early_stopping_through_a_fit_loop():
    m = StubModel()
    es = EarlyStopping(monitor="val_loss", patience=1)
    h = stub_fit(m, [es], epochs=10, losses=[1.0] * 10,
                 val_losses=[1.0, 0.5, 0.6, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    assert h.epoch == [0, 1, 2]
    assert es.stopped_epoch == 2 and es.best == 0.5 and es.best_epoch == 1


def test_early_stopping_min_delta():
    # improvements of 0.01 < min_delta count as none
    stopper = EarlyStopping(monitor="loss", min_delta=0.05, patience=1)
    trained, _ = run_early_stopping(stopper, [1.0, 0.99, 0.98, 0.97])
    assert trained == 2 and stopper.stopped_epoch == 1
    # a negative min_delta means the same as its absolute value
    assert EarlyStopping(min_delta=-0.05).min_delta == 0.05
    stopper = EarlyStopping(monitor="loss", min_delta=0.005, patience=1)
    trained, _ = run_early_stopping(stopper, [1.0, 0.99, 0.98, 0.97])
    assert trained == 4 and stopper.stopped_epoch == 0


def test_early_stopping_modes():
    acc = [0.5, 0.6, 0.7, 0.7, 0.65, 0.8]
    for kwargs in ({"monitor": "accuracy"}, {"monitor": "val_accuracy"}, {"monitor": "acc"},
                   {"monitor": "accuracy", "mode": "max"}):
        key = kwargs["monitor"]
        stopper = EarlyStopping(patience=1, **kwargs)
        assert stopper.mode == "max"
        trained, _ = run_early_stopping(stopper, acc, key=key)
        assert trained == 4, kwargs
    # 'min' on an increasing accuracy stops as soon as the patience is used up
    stopper = EarlyStopping(monitor="accuracy", mode="min", patience=1)
    trained, _ = run_early_stopping(stopper, acc, key="accuracy")
    assert trained == 2
    assert EarlyStopping(monitor="val_loss").mode == "min"
    assert EarlyStopping(monitor="mse").mode == "min"
    assert EarlyStopping(monitor="val_auc").mode == "max"
    with pytest.warns(UserWarning, match="unknown"):
        assert EarlyStopping(monitor="loss", mode="bogus").mode == "min"


def test_early_stopping_baseline():
    # Keras semantics: the wait counts epochs that don't beat the baseline, a stop needs a
    # non-improving epoch after `patience` of them
    stopper = EarlyStopping(monitor="loss", patience=2, baseline=0.5)
    trained, _ = run_early_stopping(stopper, [0.9, 0.8, 0.85, 0.86, 0.87])
    assert trained == 3
    stopper = EarlyStopping(monitor="loss", patience=2)
    trained, _ = run_early_stopping(stopper, [0.9, 0.8, 0.85, 0.86, 0.87])
    assert trained == 4
    # beating the baseline resets the wait
    stopper = EarlyStopping(monitor="loss", patience=2, baseline=0.5)
    trained, _ = run_early_stopping(stopper, [0.9, 0.4, 0.45, 0.3, 0.35, 0.36, 0.37])
    assert trained == 6


def test_early_stopping_restore_best_weights_on_stop():
    stopper = EarlyStopping(monitor="val_loss", patience=2, restore_best_weights=True)
    trained, model = run_early_stopping(stopper, [0.2, 0.15, 0.1, 0.11, 0.12], key="val_loss")
    assert trained == 5
    assert stopper.best_epoch == 2
    np.testing.assert_array_equal(model.weights[0], [2.0, 2.0])
    # no epoch beats the baseline: trains `patience` epochs, restores the best of them
    stopper = EarlyStopping(monitor="val_loss", patience=5, baseline=0.5, restore_best_weights=True)
    trained, model = run_early_stopping(stopper, [0.9, 0.8, 0.7, 0.71, 0.72, 0.73], key="val_loss")
    assert trained == 5
    np.testing.assert_array_equal(model.weights[0], [2.0, 2.0])


def test_early_stopping_restores_at_train_end_when_best_is_not_last():
    set_calls = []
    model = StubModel()
    original_set = model.set_weights
    model.set_weights = lambda w: (set_calls.append(float(w[0][0])), original_set(w))
    stopper = EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    trained, model = run_early_stopping(stopper, [0.5, 0.3, 0.4, 0.45], model=model)
    assert trained == 4 and stopper.stopped_epoch == 0
    np.testing.assert_array_equal(model.weights[0], [1.0, 1.0])
    assert set_calls == [1.0]
    # best epoch is the last one: nothing to restore
    set_calls.clear()
    stopper = EarlyStopping(monitor="loss", patience=10, restore_best_weights=True)
    run_early_stopping(stopper, [0.5, 0.4, 0.3], model=model)
    assert set_calls == []
    np.testing.assert_array_equal(model.weights[0], [2.0, 2.0])
    # without restore_best_weights the last weights stay
    stopper = EarlyStopping(monitor="loss", patience=10)
    _, model = run_early_stopping(stopper, [0.5, 0.3, 0.4, 0.45])
    np.testing.assert_array_equal(model.weights[0], [3.0, 3.0])


def test_early_stopping_restore_in_fit_loop_and_verbose(capsys):
    m = StubModel()
    es = EarlyStopping(monitor="loss", patience=1, restore_best_weights=True, verbose=1)
    stub_fit(m, [es], epochs=6, losses=[5.0, 4.0, 4.5, 4.6, 1.0, 1.0])
    # epochs 0..2 ran; best epoch 1 -> weights after epochs 0 and 1: 1 + 2
    np.testing.assert_array_equal(m.weights[0], [3.0, 3.0, 3.0])
    out = capsys.readouterr().out
    assert "Epoch 3: early stopping" in out
    assert "Restoring model weights from the end of the best epoch: 2." in out


def test_early_stopping_start_from_epoch():
    losses = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    stopper = EarlyStopping(monitor="loss", patience=1, start_from_epoch=3)
    trained, _ = run_early_stopping(stopper, losses)
    # epochs 0-2 are ignored; epoch 3 is the first value (an improvement), epoch 4 stops
    assert trained == 5 and stopper.stopped_epoch == 4
    stopper = EarlyStopping(monitor="loss", patience=0, start_from_epoch=2)
    trained, _ = run_early_stopping(stopper, losses)
    assert trained == 4


def test_early_stopping_missing_monitor_warns_with_available_keys():
    m = StubModel()
    es = EarlyStopping(monitor="val_loss", patience=0)
    with pytest.warns(UserWarning, match=r"val_loss.*not available.*loss,accuracy"):
        h = stub_fit(m, [es], epochs=3, losses=[1.0, 2.0, 3.0], accuracies=[0.1, 0.2, 0.3])
    assert h.epoch == [0, 1, 2] and not m.stop_training


def test_early_stopping_is_reusable():
    stopper = EarlyStopping(monitor="loss", patience=0)
    run_early_stopping(stopper, [1.0, 2.0])
    assert stopper.stopped_epoch == 1
    trained, _ = run_early_stopping(stopper, [5.0, 4.0, 3.0])
    assert trained == 3 and stopper.stopped_epoch == 0 and stopper.best == 3.0


# --------------------------------------------------------------------------------------------------
# ModelCheckpoint


def test_checkpoint_template_every_epoch(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.cnnc"))
    stub_fit(m, [cp], epochs=3, losses=[1, 1, 1], val_losses=[0.512, 0.3, 0.25])
    assert listdir(tmp_path) == ["ckpt-01-0.51.cnnc", "ckpt-02-0.30.cnnc", "ckpt-03-0.25.cnnc"]
    # the model wrote a temporary file of the same directory and extension, renamed afterwards
    for kind, path in m.saved:
        assert kind == "model"
        assert os.path.dirname(path) == str(tmp_path) and path.endswith(".cnnc")
        assert not os.path.exists(path)
    assert read_json(tmp_path / "ckpt-03-0.25.cnnc")["weights"][0] == [6.0, 6.0, 6.0]
    assert read_json(tmp_path / "ckpt-01-0.51.cnnc")["weights"][0] == [1.0, 1.0, 1.0]


def test_checkpoint_accepts_pathlike_and_creates_directories(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "sub" / "dir" / "model.cnnc", verbose=1)
    stub_fit(m, [cp], epochs=2, losses=[1, 1])
    assert listdir(tmp_path / "sub" / "dir") == ["model.cnnc"]
    assert read_json(tmp_path / "sub" / "dir" / "model.cnnc")["weights"][0] == [3.0] * 3
    assert len(m.saved) == 2


def test_checkpoint_file_mode_is_a_normal_files_mode(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "m.cnnc")
    stub_fit(m, [cp], epochs=1, losses=[1])
    mode = os.stat(tmp_path / "m.cnnc").st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask


def test_checkpoint_save_best_only(tmp_path, capsys):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "best.cnnc", monitor="val_loss", save_best_only=True, verbose=1)
    stub_fit(m, [cp], epochs=5, losses=[1] * 5, val_losses=[0.5, 0.4, 0.45, 0.3, 0.35])
    assert [k for k, _ in m.saved] == ["model"] * 3  # epochs 0, 1, 3
    assert read_json(tmp_path / "best.cnnc")["weights"][0] == [10.0] * 3  # 1+2+3+4
    assert cp.best == 0.3
    out = capsys.readouterr().out
    assert "Epoch 1: val_loss improved from inf to 0.50000, saving model to" in out
    assert "Epoch 3: val_loss did not improve from 0.40000" in out


def test_checkpoint_save_best_only_max_mode_and_templates(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "acc-{epoch}-{accuracy:.1f}.cnnc", monitor="accuracy",
                         save_best_only=True)
    assert cp.mode == "max"
    stub_fit(m, [cp], epochs=4, losses=[1] * 4, accuracies=[0.5, 0.7, 0.6, 0.9])
    assert listdir(tmp_path) == ["acc-1-0.5.cnnc", "acc-2-0.7.cnnc", "acc-4-0.9.cnnc"]


def test_checkpoint_initial_value_threshold(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "b-{epoch}.cnnc", save_best_only=True, initial_value_threshold=0.4)
    stub_fit(m, [cp], epochs=4, losses=[1] * 4, val_losses=[0.5, 0.45, 0.35, 0.36])
    assert listdir(tmp_path) == ["b-3.cnnc"]


def test_checkpoint_save_best_only_missing_monitor_saves_with_warning(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "m.cnnc", monitor="val_loss", save_best_only=True)
    with pytest.warns(UserWarning, match="val_loss"):
        stub_fit(m, [cp], epochs=2, losses=[1, 1])
    assert len(m.saved) == 2


def test_checkpoint_weights_only(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "w-{epoch}.weights.cnnc", save_weights_only=True)
    stub_fit(m, [cp], epochs=2, losses=[1, 1])
    assert listdir(tmp_path) == ["w-1.weights.cnnc", "w-2.weights.cnnc"]
    assert [k for k, _ in m.saved] == ["weights", "weights"]
    assert all(p.endswith(".weights.cnnc") for _, p in m.saved)
    assert read_json(tmp_path / "w-2.weights.cnnc")["kind"] == "weights"


def test_checkpoint_int_save_freq_counts_batches_across_epochs(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "e{epoch}-b{batch}.cnnc", save_freq=2)
    stub_fit(m, [cp], epochs=3, steps=3, losses=[1, 1, 1])
    # batches 1..9 overall; every second one: (e1,b2) (e2,b1) (e2,b3) (e3,b2)
    assert listdir(tmp_path) == ["e1-b2.cnnc", "e2-b1.cnnc", "e2-b3.cnnc", "e3-b2.cnnc"]


def test_checkpoint_int_save_freq_with_batch_metrics(tmp_path):
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "b{batch}-{loss:.2f}.cnnc", save_freq=3)
    stub_fit(m, [cp], epochs=1, steps=3, losses=[1])
    assert listdir(tmp_path) == ["b3-0.33.cnnc"]


def test_checkpoint_bad_arguments(tmp_path):
    for bad in ("batch", 0, -1, 1.5, True):
        with pytest.raises(ValueError, match="save_freq"):
            ModelCheckpoint(tmp_path / "m.cnnc", save_freq=bad)
    m = StubModel()
    cp = ModelCheckpoint(tmp_path / "m-{val_acc}.cnnc")
    with pytest.raises(KeyError, match="val_acc"):
        stub_fit(m, [cp], epochs=1, losses=[1])
    (tmp_path / "adir").mkdir()
    with pytest.raises(IsADirectoryError):
        stub_fit(StubModel(), [ModelCheckpoint(tmp_path / "adir")], epochs=1, losses=[1])


def test_checkpoint_is_atomic_when_save_fails(tmp_path):
    m = StubModel()
    path = tmp_path / "model.cnnc"
    cp = ModelCheckpoint(path)
    stub_fit(m, [cp], epochs=1, losses=[1])
    good = path.read_bytes()
    assert json.loads(good)["weights"][0] == [1.0] * 3
    m.fail_save = True
    with pytest.raises(SaveFailed):
        stub_fit(m, [cp], epochs=3, losses=[1, 1, 1])
    # the partially written temporary file is gone, the previous good checkpoint is intact
    assert listdir(tmp_path) == ["model.cnnc"]
    assert path.read_bytes() == good
    failed_tmp = m.saved[-1][1]
    assert failed_tmp != str(path) and not os.path.exists(failed_tmp)


def test_checkpoint_failing_first_save_leaves_nothing(tmp_path):
    m = StubModel()
    m.fail_save = True
    cp = ModelCheckpoint(tmp_path / "ckpt-{epoch}.cnnc", save_weights_only=True)
    with pytest.raises(SaveFailed):
        stub_fit(m, [cp], epochs=2, losses=[1, 1])
    assert listdir(tmp_path) == []


def test_checkpoint_interrupt_during_save_is_atomic(tmp_path):
    class Interrupting(StubModel):
        def save(self, path):
            with open(path, "wb") as f:
                f.write(b"partial")
            raise KeyboardInterrupt

    m = Interrupting()
    with pytest.raises(KeyboardInterrupt):
        stub_fit(m, [ModelCheckpoint(tmp_path / "m.cnnc")], epochs=1, losses=[1])
    assert listdir(tmp_path) == []


# --------------------------------------------------------------------------------------------------
# BackupAndRestore


class Crash(Callback):
    def __init__(self, at_epoch):
        super().__init__()
        self.at_epoch = at_epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.at_epoch:
            raise RuntimeError("interrupted")


def test_backup_written_each_epoch_and_deleted_at_train_end(tmp_path):
    backup_dir = tmp_path / "backup"
    m = StubModel()
    seen = []

    class Peek(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, read_json(backup_dir / BackupAndRestore.FILE_NAME)["epoch"],
                         listdir(backup_dir)))

    br = BackupAndRestore(str(backup_dir))
    stub_fit(m, [br, Peek()], epochs=3, losses=[1, 1, 1])
    assert seen == [(e, e, [BackupAndRestore.FILE_NAME]) for e in range(3)]
    assert not backup_dir.exists()  # deleted at the end of a completed fit
    assert m._resume_epoch is None
    for kind, path in m.saved:
        assert kind == "backup" and os.path.dirname(path) == str(backup_dir)
        assert path != br.backup_path


def test_backup_restore_resumes_after_last_finished_epoch(tmp_path):
    backup_dir = tmp_path / "backup"
    m = StubModel()
    br = BackupAndRestore(backup_dir)
    with pytest.raises(RuntimeError, match="interrupted"):
        stub_fit(m, [br, Crash(at_epoch=2)], epochs=6, losses=[1] * 6)
    assert read_json(backup_dir / BackupAndRestore.FILE_NAME)["epoch"] == 2

    fresh = StubModel()  # a new process: fresh weights
    h = stub_fit(fresh, [BackupAndRestore(backup_dir)], epochs=6, losses=[1] * 6)
    assert fresh.backups_read == [os.path.join(str(backup_dir), BackupAndRestore.FILE_NAME)]
    assert fresh._resume_epoch == 3
    assert h.epoch == [3, 4, 5]
    reference = StubModel()
    stub_fit(reference, None, epochs=6, losses=[1] * 6)
    for a, b in zip(fresh.weights, reference.weights):
        np.testing.assert_array_equal(a, b)
    assert not backup_dir.exists()


def test_backup_without_backup_sets_resume_to_none(tmp_path):
    m = StubModel()
    m._resume_epoch = 4  # stale value from an earlier fit
    br = BackupAndRestore(tmp_path / "b")
    br.set_model(m)
    br.on_train_begin()
    assert m._resume_epoch is None and m.backups_read == []


def test_backup_keep_checkpoint_and_foreign_files(tmp_path):
    backup_dir = tmp_path / "b"
    m = StubModel()
    stub_fit(m, [BackupAndRestore(backup_dir, delete_checkpoint=False)], epochs=2, losses=[1, 1])
    assert listdir(backup_dir) == [BackupAndRestore.FILE_NAME]
    assert read_json(backup_dir / BackupAndRestore.FILE_NAME)["epoch"] == 1
    # a completed run's kept backup means a later fit starts after it (Keras semantics)
    m2 = StubModel()
    h = stub_fit(m2, [BackupAndRestore(backup_dir)], epochs=3, losses=[1] * 3)
    assert h.epoch == [2]
    # files that are not ours are never deleted
    backup_dir.mkdir()
    (backup_dir / "notes.txt").write_text("mine")
    stub_fit(StubModel(), [BackupAndRestore(backup_dir)], epochs=1, losses=[1])
    assert listdir(backup_dir) == ["notes.txt"]


def test_backup_write_is_atomic(tmp_path):
    backup_dir = tmp_path / "b"
    m = StubModel()

    class FailAt(Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 2:
                m.fail_backup = True

    with pytest.raises(SaveFailed):
        stub_fit(m, [FailAt(), BackupAndRestore(backup_dir)], epochs=5, losses=[1] * 5)
    # the epoch-1 backup is intact, no temporary files
    assert listdir(backup_dir) == [BackupAndRestore.FILE_NAME]
    assert read_json(backup_dir / BackupAndRestore.FILE_NAME)["epoch"] == 1
    m.fail_backup = False
    h = stub_fit(StubModel(), [BackupAndRestore(backup_dir)], epochs=5, losses=[1] * 5)
    assert h.epoch == [2, 3, 4]


def test_backup_removes_stale_temporaries(tmp_path):
    backup_dir = tmp_path / "b"
    backup_dir.mkdir()
    stale = backup_dir / ("." + BackupAndRestore.FILE_NAME + ".tmp-abc123.cnnc-backup")
    stale.write_bytes(b"half")
    m = StubModel()
    br = BackupAndRestore(backup_dir)
    br.set_model(m)
    br.on_train_begin()
    assert not stale.exists() and m._resume_epoch is None


def test_backup_int_save_freq(tmp_path):
    backup_dir = tmp_path / "b"
    m = StubModel()
    epochs_in_backup = []

    class Peek(Callback):
        def on_train_batch_end(self, batch, logs=None):
            p = backup_dir / BackupAndRestore.FILE_NAME
            epochs_in_backup.append(read_json(p)["epoch"] if p.exists() else None)

    stub_fit(m, [BackupAndRestore(backup_dir, save_freq=2), Peek()], epochs=2, steps=3,
             losses=[1, 1])
    # mid-epoch backups record the last *finished* epoch (-1 during the first one)
    assert epochs_in_backup == [None, -1, -1, 0, 0, 0]
    assert BackupAndRestore(backup_dir, save_freq=False).save_freq is False


def test_backup_bad_arguments():
    with pytest.raises(ValueError, match="backup_dir"):
        BackupAndRestore("")
    for bad in ("batch", 0, 2.5, True):
        with pytest.raises(ValueError, match="save_freq"):
            BackupAndRestore("/tmp/x", save_freq=bad)


# --------------------------------------------------------------------------------------------------
# learning-rate callbacks


def test_lr_scheduler_two_argument_schedule():
    m = StubModel(lr=0.1)
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return lr * 0.5 if epoch >= 1 else lr

    h = stub_fit(m, [LearningRateScheduler(schedule)], epochs=3, losses=[1] * 3)
    assert seen == [(0, 0.1), (1, 0.1), (2, 0.05)]
    assert m.optimizer.learning_rate == pytest.approx(0.025)
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])


def test_lr_scheduler_one_argument_schedule_and_verbose(capsys):
    m = StubModel(lr=1.0)
    h = stub_fit(m, [LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1), verbose=1)], epochs=2,
                 losses=[1, 1])
    assert h.history["learning_rate"] == pytest.approx([0.1, 0.05])
    assert type(m.optimizer.learning_rate) is float
    assert "Epoch 2: LearningRateScheduler setting learning rate to 0.05." in capsys.readouterr().out


def test_lr_scheduler_accepts_numpy_and_defaults():
    m = StubModel(lr=1.0)
    stub_fit(m, [LearningRateScheduler(lambda e, lr=None: np.float32(0.5))], epochs=1, losses=[1])
    assert m.optimizer.learning_rate == 0.5 and type(m.optimizer.learning_rate) is float


def test_lr_scheduler_type_error_inside_schedule_is_not_swallowed():
    def schedule(epoch, lr):
        raise TypeError("bug in schedule")

    with pytest.raises(TypeError, match="bug in schedule"):
        stub_fit(StubModel(), [LearningRateScheduler(schedule)], epochs=1, losses=[1])


def test_lr_scheduler_rejects_non_float():
    with pytest.raises(ValueError, match="float"):
        stub_fit(StubModel(), [LearningRateScheduler(lambda e, lr: "fast")], epochs=1, losses=[1])
    m = StubModel()
    m.optimizer = object()
    with pytest.raises(ValueError, match="learning_rate"):
        stub_fit(m, [LearningRateScheduler(lambda e, lr: lr)], epochs=1, losses=[1])


def test_reduce_lr_on_plateau_patience_factor_and_logs():
    m = StubModel(lr=1.0)
    cb = ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_delta=0.0)
    h = stub_fit(m, [cb], epochs=7, losses=[1] * 7,
                 val_losses=[1.0, 0.9, 0.9, 0.9, 0.95, 0.99, 0.5])
    # epochs 2,3 don't improve -> reduce at epoch 3; 4,5 -> reduce at epoch 5
    assert m.optimizer.learning_rate == pytest.approx(0.25)
    # the logged rate is the one the epoch trained with (as Keras)
    assert h.history["learning_rate"] == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25])


def test_reduce_lr_on_plateau_cooldown_and_min_lr():
    m = StubModel(lr=1.0)
    cb = ReduceLROnPlateau(monitor="loss", factor=0.1, patience=1, cooldown=2, min_lr=0.005,
                           min_delta=0.0)
    lrs = []

    class Rec(Callback):
        def on_epoch_end(self, epoch, logs=None):
            lrs.append(m.optimizer.learning_rate)

    stub_fit(m, [cb, Rec()], epochs=10, losses=[1.0] * 10)
    # Keras semantics: reduce at 1 (cooldown=2); epoch 2 counts the cooldown down, epoch 3 ends it and
    # counts one epoch without improvement -> reduce; again at 5, clipped at min_lr
    assert lrs == pytest.approx([1.0, 0.1, 0.1, 0.01, 0.01, 0.005, 0.005, 0.005, 0.005, 0.005])


def test_reduce_lr_on_plateau_max_mode_and_min_delta():
    m = StubModel(lr=1.0)
    cb = ReduceLROnPlateau(monitor="val_accuracy", factor=0.5, patience=1)
    assert cb.mode == "max"
    # +0.00005 is below min_delta=1e-4: no improvement
    logs_seq = [0.5, 0.50005, 0.6]
    for epoch, v in enumerate(logs_seq):
        cb.set_model(m)
        if epoch == 0:
            cb.on_train_begin()
        cb.on_epoch_end(epoch, {"val_accuracy": v})
    assert m.optimizer.learning_rate == 0.5


def test_reduce_lr_on_plateau_validation_and_missing_monitor():
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=1.0)
    with pytest.raises(ValueError, match="factor"):
        ReduceLROnPlateau(factor=2)
    m = StubModel()
    with pytest.warns(UserWarning, match=r"val_loss.*not available.*loss"):
        stub_fit(m, [ReduceLROnPlateau(patience=0)], epochs=2, losses=[1, 1])
    assert m.optimizer.learning_rate == 0.01


# --------------------------------------------------------------------------------------------------
# CSVLogger, TerminateOnNaN, LambdaCallback


def test_csv_logger_content(tmp_path):
    path = tmp_path / "log.csv"
    m = StubModel()
    rows = []

    class ReadBack(Callback):  # the row is flushed by the time later callbacks run
        def on_epoch_end(self, epoch, logs=None):
            rows.append(path.read_text().count("\n"))

    stub_fit(m, [CSVLogger(str(path)), ReadBack()], epochs=3, losses=[0.5, 0.25, 0.125],
             accuracies=[0.1, 0.2, 0.3], val_losses=[0.6, 0.3, 0.2])
    assert rows == [2, 3, 4]
    lines = path.read_text().splitlines()
    assert lines == ["epoch,accuracy,loss,val_loss", "0,0.1,0.5,0.6", "1,0.2,0.25,0.3",
                     "2,0.3,0.125,0.2"]


def test_csv_logger_append_and_separator(tmp_path):
    path = tmp_path / "log.tsv"
    stub_fit(StubModel(), [CSVLogger(path, separator="\t")], epochs=2, losses=[1.0, 2.0])
    stub_fit(StubModel(), [CSVLogger(path, separator="\t", append=True)], epochs=1, losses=[3.0])
    assert path.read_text().splitlines() == ["epoch\tloss", "0\t1.0", "1\t2.0", "0\t3.0"]
    # append to a missing / empty file writes the header
    other = tmp_path / "new.csv"
    stub_fit(StubModel(), [CSVLogger(other, append=True)], epochs=1, losses=[1.0])
    assert other.read_text().splitlines() == ["epoch,loss", "0,1.0"]
    # without append the file is overwritten
    stub_fit(StubModel(), [CSVLogger(path)], epochs=1, losses=[9.0])
    assert path.read_text().splitlines() == ["epoch,loss", "0,9.0"]


def test_csv_logger_missing_keys_and_iterables(tmp_path):
    path = tmp_path / "log.csv"
    cb = CSVLogger(path)
    cb.set_model(StubModel())
    cb.on_train_begin()
    cb.on_epoch_end(0, {"loss": np.float32(0.5), "vec": np.array([1, 2])})
    cb.on_epoch_end(1, {"other": 1})
    cb.on_train_end()
    assert path.read_text().splitlines() == ['epoch,loss,vec', '0,0.5,"""[1, 2]"""', "1,NA,NA"]


def test_terminate_on_nan(capsys):
    for bad in (float("nan"), float("inf"), np.float32("-inf")):
        m = StubModel()
        logs = lambda epoch, step, bad=bad: {"loss": bad if (epoch, step) == (1, 1) else 0.5}
        h = stub_fit(m, [TerminateOnNaN()], epochs=5, steps=3, losses=[1] * 5, batch_logs=logs)
        assert m.stop_training
        assert h.epoch == [0, 1]
        assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    m = StubModel()
    stub_fit(m, [TerminateOnNaN()], epochs=2, losses=[1, 1],
             batch_logs=lambda e, s: {"accuracy": float("nan")})
    assert not m.stop_training


def test_lambda_callback():
    events = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: events.append("train_begin"),
        on_train_end=lambda logs: events.append("train_end"),
        on_epoch_begin=lambda epoch, logs: events.append(("epoch_begin", epoch)),
        on_epoch_end=lambda epoch, logs: events.append(("epoch_end", epoch, logs["loss"])),
        on_train_batch_begin=lambda batch, logs: events.append(("batch_begin", batch)),
        on_train_batch_end=lambda batch, logs: events.append(("batch_end", batch)),
        on_test_begin=lambda logs: events.append("test_begin"),
    )
    stub_fit(StubModel(), [cb], epochs=2, steps=1, losses=[0.5, 0.25], val_losses=[1, 1])
    assert events == ["train_begin", ("epoch_begin", 0), ("batch_begin", 0), ("batch_end", 0),
                      "test_begin", ("epoch_end", 0, 0.5), ("epoch_begin", 1), ("batch_begin", 0),
                      ("batch_end", 0), "test_begin", ("epoch_end", 1, 0.25), "train_end"]


def test_lambda_callback_legacy_names_defaults_and_errors():
    got = []
    cb = LambdaCallback(on_batch_end=lambda batch, logs: got.append(batch))
    stub_fit(StubModel(), [cb], epochs=1, steps=2, losses=[1])
    assert got == [0, 1]
    LambdaCallback().on_epoch_end(0, {})  # unset hooks are no-ops
    with pytest.raises(TypeError, match="on_epoch_ending"):
        LambdaCallback(on_epoch_ending=print)
    with pytest.raises(TypeError, match="callable"):
        LambdaCallback(on_epoch_end=3)


# --------------------------------------------------------------------------------------------------
# Progbar


def test_format_helpers():
    assert format_eta(12.4) == "12s" and format_eta(75) == "1:15" and format_eta(3725) == "1:02:05"
    assert format_duration(12.4) == "12s" and format_duration(2.34) == "2.3s"
    assert format_duration(0.25) == "250ms" and format_duration(125) == "2:05"
    assert format_value(0.41234) == "0.4123" and format_value(np.float32(0.5)) == "0.5000"
    assert format_value(1e-5) == "1.0000e-05" and format_value(0) == "0.0000"
    assert format_value(float("nan")) == "nan" and format_value("x") == "x"


def test_progbar_live_uses_carriage_return_eta_and_rate(clock):
    out = FakeStream(tty=True)
    bar = Progbar(10, width=10, file=out, interval=0, stateful_metrics=["loss"])
    clock.t += 2.0
    bar.update(1, [("loss", 0.5)], samples=32)
    assert out.getvalue() == "\r 1/10 [>.........] - ETA: 18s - loss: 0.5000 - 16.0 samples/s"
    clock.t += 2.0
    bar.update(5, {"loss": 0.25}, samples=160)
    # padded with a space to blank the rest of the longer previous line
    assert out.getvalue().endswith("\r 5/10 [====>.....] - ETA: 4s - loss: 0.2500 - 40.0 samples/s ")
    clock.t += 16.0
    bar.update(10, [("loss", 0.125), ("val_loss", 0.2)], finalize=True, samples=320)
    last = out.getvalue().split("\r")[-1]
    assert last == "10/10 [==========] - 20s 2s/step - loss: 0.1250 - val_loss: 0.2000 - 16.0 samples/s\n"
    assert out.getvalue().count("\n") == 1
    bar.update(10, finalize=True)  # nothing after the final line
    assert out.getvalue().count("\n") == 1


def test_progbar_live_pads_shorter_lines_and_throttles(clock):
    out = FakeStream(tty=True)
    bar = Progbar(100, file=out, interval=1.0, stateful_metrics=["loss"])
    bar.update(1, [("loss", 123456.0)])
    first = out.getvalue()
    clock.t += 0.5
    bar.update(2, [("loss", 1.0)])  # within the interval: not drawn
    assert out.getvalue() == first
    clock.t += 0.6
    bar.update(3, [("loss", 1.0)])
    second = out.getvalue()[len(first):]
    assert second.startswith("\r") and len(second) - 1 == len(first) - 1
    assert second.rstrip().endswith("loss: 1.0000")


def test_progbar_averages_non_stateful_values(clock):
    out = FakeStream(tty=False)
    bar = Progbar(4, file=out, verbose=1)
    bar.update(1, [("loss", 1.0)])
    bar.update(4, [("loss", 0.0)])  # weight 3
    assert out.getvalue() == "4/4 - 0ms - loss: 0.2500\n"


def test_progbar_summary_mode_writes_one_line(clock):
    for tty, verbose in ((False, 1), (True, 2), (False, 2)):
        out = FakeStream(tty=tty)
        bar = Progbar(3, file=out, verbose=verbose, summary_prefix="Epoch 2/4",
                      stateful_metrics=["loss"])
        for i in range(1, 4):
            clock.t += 1
            bar.update(i, [("loss", 1.0 / i)], finalize=False, samples=10 * i)
        assert out.getvalue() == ""
        bar.update(3, [("loss", 0.3333), ("val_loss", 0.5)], finalize=True, samples=30)
        assert out.getvalue() == "Epoch 2/4 - 3.0s - loss: 0.3333 - val_loss: 0.5000 - 10.0 samples/s\n"


def test_progbar_silent_and_unknown_target(clock):
    out = FakeStream(tty=True)
    bar = Progbar(5, file=out, verbose=0)
    bar.update(1, [("loss", 1.0)])
    bar.update(5, finalize=True)
    assert out.getvalue() == ""
    bar = Progbar(None, file=out, interval=0)
    bar.add(3, [("loss", 1.0)])
    assert "      3/Unknown" in out.getvalue()


# --------------------------------------------------------------------------------------------------
# ProgbarLogger


class Tick(Callback):
    """Advances the fake clock by one second per training/test batch."""

    def __init__(self, clock):
        super().__init__()
        self.clock = clock

    def on_train_batch_begin(self, batch, logs=None):
        self.clock.t += 1.0

    def on_test_batch_begin(self, batch, logs=None):
        self.clock.t += 0.5


def fit_with_progbar(stream, verbose, clock, epochs=2, steps=4, samples=128, val=True, **kw):
    m = StubModel()
    p = ProgbarLogger(file=stream)
    stub_fit(m, [Tick(clock), p], epochs=epochs, steps=steps, losses=[0.5, 0.25, 0.125][:epochs],
             accuracies=[0.8, 0.85, 0.9][:epochs], val_losses=[0.6, 0.3, 0.2][:epochs] if val else None,
             verbose=verbose, samples=samples, **kw)
    return stream.getvalue()


ONE_LINE = re.compile(r"^Epoch (\d+)/(\d+) - \d+(\.\d)?m?s - loss: \d\.\d{4} - accuracy: \d\.\d{4} - "
                      r"val_loss: \d\.\d{4} - \d+(\.\d)? samples/s$")


@pytest.mark.parametrize("tty,verbose", [(False, 1), (True, 2), (False, 2), (False, "auto")])
def test_progbar_logger_one_line_per_epoch(tty, verbose, clock):
    out = fit_with_progbar(FakeStream(tty=tty), verbose, clock, epochs=3)
    assert "\r" not in out
    lines = out.splitlines()
    assert len(lines) == 3
    for i, line in enumerate(lines):
        m = ONE_LINE.match(line)
        assert m, line
        assert (m.group(1), m.group(2)) == (str(i + 1), "3")
    # 4 batches of 1 s and 2 validation batches of 0.5 s; 128 samples
    assert lines[1] == ("Epoch 2/3 - 5.0s - loss: 0.2500 - accuracy: 0.8500 - val_loss: 0.3000 - "
                        "25.6 samples/s")


def test_progbar_logger_samples_per_second(clock):
    # 4 steps of 1 s each, 128 samples per epoch -> 32 samples/s
    m = StubModel()
    out = FakeStream(tty=False)
    stub_fit(m, [Tick(clock), ProgbarLogger(file=out)], epochs=1, steps=4, losses=[0.5], verbose=2,
             samples=128)
    assert out.getvalue() == "Epoch 1/1 - 4.0s - loss: 0.5000 - 32.0 samples/s\n"
    # exact sample counts from batch_size (last batch partial): 100 samples in 4 s
    out = FakeStream(tty=False)
    stub_fit(StubModel(), [Tick(clock), ProgbarLogger(file=out)], epochs=1, steps=4, losses=[0.5],
             verbose=2, samples=100, extra_params={"batch_size": 32})
    assert out.getvalue().endswith(" - 25.0 samples/s\n")
    # no sample count known: no rate
    out = FakeStream(tty=False)
    stub_fit(StubModel(), [Tick(clock), ProgbarLogger(file=out)], epochs=1, steps=4, losses=[0.5],
             verbose=2)
    assert out.getvalue() == "Epoch 1/1 - 4.0s - loss: 0.5000\n"


def test_progbar_logger_live_bar_on_terminal(clock):
    m = StubModel()
    out = FakeStream(tty=True)
    stub_fit(m, [Tick(clock), ProgbarLogger(file=out)], epochs=2, steps=4, losses=[0.5, 0.25],
             accuracies=[0.8, 0.9], val_losses=[0.6, 0.3], verbose=1, samples=128)
    text = out.getvalue()
    assert text.startswith("Epoch 1/2\n\r")
    epochs = text.split("Epoch 2/2\n")
    assert len(epochs) == 2
    for chunk in epochs:
        updates = chunk.split("\r")[1:]
        assert len(updates) == 5  # 4 batches + the final line
        assert re.match(r"1/4 \[={6}>\.{23}\] - ETA: 3s - loss: 1\.0000 - accuracy: 0\.5000 - "
                        r"32\.0 samples/s", updates[0]), updates[0]
        assert "ETA: 1s" in updates[2]
        final = updates[-1]
        assert final.endswith("\n") and final.count("\n") == 1
        assert "ETA" not in final
        # 4 s of batches + 1 s of validation
        assert re.match(r"4/4 \[={30}\] - 5\.0s 1s/step - loss: 0\.\d{4} - accuracy: 0\.\d{4} - "
                        r"val_loss: 0\.\d{4} - 25\.6 samples/s *\n$", final), final
    # intermediate updates are not newline-terminated
    assert all(not u.endswith("\n") for u in text.split("\r")[1:] if "val_loss" not in u)


def test_progbar_logger_shows_logs_added_by_user_callbacks(clock):
    m = StubModel(lr=0.5)
    out = FakeStream(tty=False)
    stub_fit(m, [LearningRateScheduler(lambda e, lr: lr), ProgbarLogger(file=out)], epochs=1,
             losses=[0.5], verbose=2)
    assert "learning_rate: 0.5000" in out.getvalue()
    # and the default ProgbarLogger comes after user callbacks too
    cbl = CallbackList([LearningRateScheduler(lambda e, lr: lr)], add_progbar=True,
                       add_history=True, model=m)
    assert isinstance(cbl.callbacks[1], ProgbarLogger)


def test_progbar_logger_verbose_zero_is_silent(clock, capsys):
    out = FakeStream(tty=True)
    m = StubModel()
    p = ProgbarLogger(file=out)
    p.set_model(m)
    p.set_params({"verbose": 0, "epochs": 2, "steps": 3})
    p.on_train_begin()
    p.on_epoch_begin(0)
    p.on_train_batch_end(0, {"loss": 1.0})
    p.on_epoch_end(0, {"loss": 1.0})
    p.on_train_end()
    p.on_test_begin()
    p.on_test_batch_end(0, {"loss": 1.0})
    p.on_test_end({"loss": 1.0})
    p.on_predict_begin()
    p.on_predict_batch_end(0, {})
    p.on_predict_end()
    assert out.getvalue() == ""
    # fit with verbose=0 adds no ProgbarLogger and prints nothing
    stub_fit(StubModel(), None, epochs=2, losses=[1, 1], verbose=0)
    assert capsys.readouterr().out == ""


def test_progbar_logger_defaults_to_current_stdout(clock, capsys):
    stub_fit(StubModel(), None, epochs=2, losses=[1.0, 0.5], verbose=2, samples=10)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[1].startswith("Epoch 2/2 - ") and "loss: 0.5000" in out[1]


def drive_evaluate(p, clock, steps=3, final_logs=None):
    p.on_test_begin()
    for step in range(steps):
        clock.t += 0.5
        p.on_test_batch_begin(step)
        p.on_test_batch_end(step, {"loss": 1.0 / (step + 1), "accuracy": 0.5})
    p.on_test_end(final_logs if final_logs is not None else {"loss": 0.6, "accuracy": 0.75})


@pytest.mark.parametrize("tty,verbose", [(False, 1), (True, 2)])
def test_progbar_logger_evaluate_summary_line(tty, verbose, clock):
    out = FakeStream(tty=tty)
    cbl = CallbackList(None, add_progbar=True, model=StubModel(), verbose=verbose, steps=3,
                       samples=90)
    p = cbl.callbacks[0]
    p.file = out
    drive_evaluate(cbl, clock)
    assert out.getvalue() == "3/3 - 1.5s - loss: 0.6000 - accuracy: 0.7500 - 60.0 samples/s\n"


def test_progbar_logger_evaluate_live_and_fallback_logs(clock):
    out = FakeStream(tty=True)
    p = ProgbarLogger(file=out)
    p.set_params({"verbose": 1, "steps": 3})
    drive_evaluate(p, clock, final_logs={})  # no final logs: the last batch's are shown
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n")
    assert text.split("\r")[-1].startswith("3/3 [====") and "loss: 0.3333" in text.split("\r")[-1]


def test_progbar_logger_silent_for_validation_inside_fit(clock):
    out = FakeStream(tty=False)
    text = fit_with_progbar(out, 2, clock, epochs=1)
    assert len(text.splitlines()) == 1  # the validation pass printed nothing of its own


def test_progbar_logger_predict_bar_only_on_terminal(clock):
    for tty, verbose, expect in ((True, 1, True), (False, 1, False), (True, 2, False)):
        out = FakeStream(tty=tty)
        p = ProgbarLogger(file=out)
        p.set_params({"verbose": verbose, "steps": 2})
        p.on_predict_begin()
        for step in range(2):
            p.on_predict_batch_begin(step)
            p.on_predict_batch_end(step, {"outputs": np.zeros(3)})
        p.on_predict_end()
        text = out.getvalue()
        if expect:
            assert "\r" in text and text.endswith("\n") and "2/2 [====" in text
            assert "outputs" not in text
        else:
            assert text == ""


def test_progbar_logger_stopped_mid_epoch(clock):
    out = FakeStream(tty=False)
    m = StubModel()
    logs = lambda epoch, step: {"loss": float("nan") if step == 1 else 0.5}
    stub_fit(m, [TerminateOnNaN(), ProgbarLogger(file=out)], epochs=3, steps=4, losses=[1] * 3,
             verbose=2, batch_logs=logs)
    lines = [l for l in out.getvalue().splitlines() if l.startswith("Epoch")]
    assert len(lines) == 1 and lines[0].startswith("Epoch 1/3 - ")


def test_module_exports():
    for name in callbacks.__all__:
        assert isinstance(getattr(callbacks, name), type)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CallbackList([EarlyStopping(), ModelCheckpoint("x.cnnc"), TerminateOnNaN()])
