"""Callbacks driving real training: cnnc.models.Sequential.fit with tiny data (each test < 2 s).

The key test kills a training process after its third epoch (os._exit, no cleanup) and checks that a
second process with BackupAndRestore resumes at the fourth epoch and ends with weights bit-identical
to an uninterrupted run.
"""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import cnnc
from cnnc import callbacks, layers, models, utils

N_FEATURES = 6
N_CLASSES = 3


def make_data(n=48, seed=123):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, N_FEATURES)).astype(np.float32)
    y = utils.to_categorical(rng.integers(0, N_CLASSES, n), N_CLASSES)
    return x, y


def make_model(dropout=0.25, optimizer="adam"):
    model = models.Sequential([
        layers.Input(shape=(N_FEATURES,)),
        layers.Dense(16, activation="relu"),
        layers.Dropout(dropout),
        layers.Dense(N_CLASSES, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture(autouse=True)
def _seeded():
    utils.set_random_seed(0)


def weights_equal(a, b):
    return len(a) == len(b) and all(np.array_equal(u, v) for u, v in zip(a, b))


# --------------------------------------------------------------------------------------------------


def test_history_contents():
    x, y = make_data()
    model = make_model()
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_split=0.25)
    assert isinstance(history, callbacks.History)
    assert model.history is history
    assert history.epoch == [0, 1, 2]
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    for name, values in history.history.items():
        assert len(values) == 3, name
        assert all(isinstance(v, float) and np.isfinite(v) for v in values), name
    assert all(0.0 <= v <= 1.0 for v in history.history["accuracy"] + history.history["val_accuracy"])


def test_early_stopping_stops_a_real_fit_and_restores_best_weights():
    x, y = make_data()
    model = make_model()
    per_epoch = []
    keep = callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: per_epoch.append(model.get_weights()))
    # min_delta this large: only the first epoch counts as an improvement, so training stops at the
    # second (patience 0) and the weights of the first are restored
    stop = callbacks.EarlyStopping(monitor="loss", min_delta=1e9, patience=0, restore_best_weights=True)
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0, callbacks=[keep, stop])
    assert history.epoch == [0, 1]
    assert stop.stopped_epoch == 1 and stop.best_epoch == 0
    assert model.stop_training
    assert len(per_epoch) == 2 and not weights_equal(per_epoch[0], per_epoch[1])
    assert weights_equal(model.get_weights(), per_epoch[0])


def test_early_stopping_on_validation_metric_with_patience():
    x, y = make_data()
    model = make_model()
    stop = callbacks.EarlyStopping(monitor="val_accuracy", patience=2, min_delta=2.0)
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0, validation_split=0.25,
                        callbacks=[stop])
    assert stop.mode == "max"
    assert history.epoch == [0, 1, 2] and stop.stopped_epoch == 2


def test_model_checkpoint_files_load(tmp_path):
    x, y = make_data()
    model = make_model()
    template = str(tmp_path / "ckpt-{epoch:02d}-{val_loss:.2f}.cnnc")
    ckpt = callbacks.ModelCheckpoint(template)
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, validation_split=0.25,
                        callbacks=[ckpt])
    expected = ["ckpt-%02d-%.2f.cnnc" % (i + 1, v) for i, v in enumerate(history.history["val_loss"])]
    assert sorted(os.listdir(tmp_path)) == expected  # and no temporary files left
    last = models.load_model(tmp_path / expected[-1])
    assert weights_equal(last.get_weights(), model.get_weights())
    np.testing.assert_array_equal(last.predict(x, verbose=0), model.predict(x, verbose=0))
    first = models.load_model(str(tmp_path / expected[0]))
    assert not weights_equal(first.get_weights(), model.get_weights())


def test_model_checkpoint_best_only_and_weights_only(tmp_path):
    x, y = make_data()
    model = make_model()
    best = []
    record = callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: best.append((logs["loss"], model.get_weights())))
    ckpt_best = callbacks.ModelCheckpoint(tmp_path / "best.cnnc", monitor="loss", save_best_only=True)
    ckpt_w = callbacks.ModelCheckpoint(tmp_path / "w-{epoch}.weights.cnnc", save_weights_only=True)
    model.fit(x, y, batch_size=16, epochs=4, verbose=0, callbacks=[record, ckpt_best, ckpt_w])
    assert sorted(os.listdir(tmp_path)) == ["best.cnnc"] + ["w-%d.weights.cnnc" % i for i in range(1, 5)]
    best_loss, best_weights = min(best, key=lambda t: t[0])
    assert ckpt_best.best == pytest.approx(best_loss)
    assert weights_equal(models.load_model(tmp_path / "best.cnnc").get_weights(), best_weights)
    fresh = make_model()
    fresh.load_weights(tmp_path / "w-2.weights.cnnc")
    assert weights_equal(fresh.get_weights(), best[1][1])


def test_lr_scheduler_csv_logger_and_reduce_lr(tmp_path):
    x, y = make_data()
    model = make_model(optimizer="sgd")
    sched = callbacks.LearningRateScheduler(lambda epoch, lr: 0.1 * 0.5 ** epoch)
    csv_path = tmp_path / "log.csv"
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0,
                        callbacks=[sched, callbacks.CSVLogger(csv_path)])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.05, 0.025])
    assert float(model.optimizer.learning_rate) == pytest.approx(0.025)
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "epoch,accuracy,learning_rate,loss" and len(lines) == 4
    assert [int(l.split(",")[0]) for l in lines[1:]] == [0, 1, 2]

    model = make_model(optimizer="sgd")
    model.optimizer.learning_rate = 0.2
    plateau = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=0, min_delta=1e9)
    model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=[plateau])
    # first epoch sets the best; each later one "fails to improve" by 1e9 and halves the rate
    assert float(model.optimizer.learning_rate) == pytest.approx(0.05)


def test_terminate_on_nan_stops_mid_epoch():
    x, y = make_data()
    model = make_model()
    batches = []

    class PoisonLoss(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batches.append(batch)
            if batch == 1:
                logs["loss"] = float("nan")

    history = model.fit(x, y, batch_size=8, epochs=3, verbose=0,
                        callbacks=[PoisonLoss(), callbacks.TerminateOnNaN()])
    assert model.stop_training
    assert batches == [0, 1] and history.epoch == [0]


def test_progbar_output_of_fit_and_evaluate(capsys):
    x, y = make_data()
    model = make_model()
    model.fit(x, y, batch_size=16, epochs=2, verbose=2, validation_split=0.25)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    pattern = (r"^Epoch {}/2 - \S+ - loss: \d+\.\d{{4}} - accuracy: \d\.\d{{4}} - val_loss: \d+\.\d{{4}} - "
               r"val_accuracy: \d\.\d{{4}} - [\d.]+ samples/s$")
    for i, line in enumerate(lines):
        assert re.match(pattern.format(i + 1), line), line
    model.evaluate(x, y, batch_size=16, verbose=2)
    out = capsys.readouterr().out
    assert re.match(r"^3/3 - \S+ - loss: \d+\.\d{4} - accuracy: \d\.\d{4} - [\d.]+ samples/s\n$", out), out
    model.predict(x, verbose=2)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


# --------------------------------------------------------------------------------------------------
# BackupAndRestore across a killed process

SCRIPT = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    from cnnc import callbacks, layers, models, utils

    mode, backup_dir, out_path = sys.argv[1:4]
    utils.set_random_seed(0)
    rng = np.random.default_rng(123)
    x = rng.standard_normal((40, 6)).astype(np.float32)
    y = utils.to_categorical(rng.integers(0, 3, 40), 3)
    model = models.Sequential([
        layers.Input(shape=(6,)),
        layers.Dense(12, activation="relu"),
        layers.Dropout(0.3),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])

    class Killer(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:  # the third epoch, after BackupAndRestore wrote its backup
                sys.stdout.flush()
                os._exit(17)

    begun = []
    cbs = [callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: begun.append(epoch))]
    if mode != "plain":
        cbs.append(callbacks.BackupAndRestore(backup_dir))
    if mode == "kill":
        cbs.append(Killer())
    history = model.fit(x, y, batch_size=8, epochs=6, shuffle=True, verbose=0, callbacks=cbs)
    np.savez(out_path, *model.get_weights())
    print(json.dumps({"begun": begun, "history_epochs": history.epoch,
                      "loss": history.history["loss"]}))
""")


def run_script(tmp_path, mode, backup_dir, out_name):
    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnc.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    return subprocess.run([sys.executable, str(script), mode, str(backup_dir), str(tmp_path / out_name)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def load_weights_npz(path):
    with np.load(path) as z:
        return [z["arr_%d" % i] for i in range(len(z.files))]


def test_backup_and_restore_resumes_after_killed_process(tmp_path):
    import json

    backup_dir = tmp_path / "backup"
    killed = run_script(tmp_path, "kill", backup_dir, "killed.npz")
    assert killed.returncode == 17, killed.stderr
    assert not (tmp_path / "killed.npz").exists()
    assert os.listdir(backup_dir) == [callbacks.BackupAndRestore.FILE_NAME]  # no temporary files

    resumed = run_script(tmp_path, "resume", backup_dir, "resumed.npz")
    assert resumed.returncode == 0, resumed.stderr
    info = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert info["begun"] == [3, 4, 5]  # resumed at the fourth epoch
    assert info["history_epochs"] == [3, 4, 5]
    assert not backup_dir.exists()  # deleted once fit completed

    plain = run_script(tmp_path, "plain", tmp_path / "unused", "plain.npz")
    assert plain.returncode == 0, plain.stderr
    reference = json.loads(plain.stdout.strip().splitlines()[-1])
    assert reference["begun"] == [0, 1, 2, 3, 4, 5]
    # the resumed epochs trained exactly as the uninterrupted ones did
    assert info["loss"] == reference["loss"][3:]
    resumed_w = load_weights_npz(tmp_path / "resumed.npz")
    plain_w = load_weights_npz(tmp_path / "plain.npz")
    assert len(resumed_w) == len(plain_w) == 4
    for a, b in zip(resumed_w, plain_w):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_backup_and_restore_in_process_after_exception(tmp_path):
    x, y = make_data()
    backup_dir = tmp_path / "backup"

    class Crash(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                raise RuntimeError("crash")

    model = make_model()
    with pytest.raises(RuntimeError, match="crash"):
        model.fit(x, y, batch_size=16, epochs=4, verbose=0,
                  callbacks=[callbacks.BackupAndRestore(backup_dir), Crash()])
    assert os.listdir(backup_dir) == [callbacks.BackupAndRestore.FILE_NAME]
    saved = model.get_weights()
    fresh = make_model()
    restored = []
    check = callbacks.LambdaCallback(
        on_train_begin=lambda logs: restored.append(weights_equal(fresh.get_weights(), saved)))
    history = fresh.fit(x, y, batch_size=16, epochs=4, verbose=0,
                        callbacks=[callbacks.BackupAndRestore(backup_dir, delete_checkpoint=False), check])
    assert restored == [True]
    assert history.epoch == [2, 3]
    assert os.listdir(backup_dir) == [callbacks.BackupAndRestore.FILE_NAME]
