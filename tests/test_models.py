"""Sequential: the textbook models, compile/fit/evaluate/predict, determinism, save/load."""
import json
import zipfile
from functools import partial

import numpy as np
import pytest

import cnnc
from cnnc import layers, models, zoo


def _data(rng, n=96, shape=(10, 10, 1), classes=3):
    """A learnable toy problem: the class is which image third holds the bright blob."""
    y = rng.integers(0, classes, n)
    x = rng.random((n,) + shape).astype(np.float32) * 0.2
    w = shape[1] // classes
    for i, c in enumerate(y):
        x[i, :, c * w:(c + 1) * w, :] += 0.8
    return x, y


def _small_cnn(shape=(10, 10, 1), classes=3, dropout=False):
    cnnc.utils.clear_session()
    model = models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=shape),
        layers.MaxPooling2D(2),
        layers.Flatten(),
    ] + ([layers.Dropout(0.3)] if dropout else []) + [
        layers.Dense(8, activation="relu"),
        layers.Dense(classes, activation="softmax"),
    ])
    return model


def test_chollet_summary_matches_the_book(capsys):
    cnnc.utils.clear_session()
    model = zoo.chollet_cnn()
    model.summary()
    out = capsys.readouterr().out
    for shape, params in [("(None, 26, 26, 32)", "320"), ("(None, 13, 13, 32)", "0"),
                          ("(None, 11, 11, 64)", "18496"), ("(None, 5, 5, 64)", "0"),
                          ("(None, 3, 3, 64)", "36928"), ("(None, 576)", "0"), ("(None, 64)", "36928"),
                          ("(None, 10)", "650")]:
        assert any(shape in line and line.rstrip().endswith(params) for line in out.splitlines()), shape
    assert "Total params: 93,322" in out
    assert "Trainable params: 93,322" in out and "Non-trainable params: 0" in out
    assert "conv2d (Conv2D)" in out and "max_pooling2d (MaxPooling2D)" in out
    assert model.count_params() == 93322


def test_chollet_model_written_with_add():
    model = models.Sequential()
    model.add(layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.MaxPooling2D((2, 2)))
    model.add(layers.Conv2D(64, (3, 3), activation="relu"))
    model.add(layers.Flatten())
    model.add(layers.Dense(64, activation="relu"))
    model.add(layers.Dense(10, activation="softmax"))
    assert model.count_params() == 93322
    assert model.output_shape == (None, 10)


def test_geron_model_with_partial():
    DefaultConv2D = partial(layers.Conv2D, kernel_size=3, activation="relu", padding="SAME")
    model = models.Sequential([
        DefaultConv2D(filters=64, kernel_size=7, input_shape=[28, 28, 1]),
        layers.MaxPooling2D(pool_size=2),
        DefaultConv2D(filters=128), DefaultConv2D(filters=128), layers.MaxPooling2D(pool_size=2),
        DefaultConv2D(filters=256), DefaultConv2D(filters=256), layers.MaxPooling2D(pool_size=2),
        layers.Flatten(),
        layers.Dense(units=128, activation="relu"), layers.Dropout(0.5),
        layers.Dense(units=64, activation="relu"), layers.Dropout(0.5),
        layers.Dense(units=10, activation="softmax"),
    ])
    assert model.count_params() == 1413834
    assert zoo.geron_cnn().count_params() == 1413834
    assert model.output_shape == (None, 10)


def test_input_layer_and_lazy_build(rng):
    m1 = models.Sequential([layers.Input(shape=(10, 10, 1)), layers.Flatten(), layers.Dense(3)])
    assert m1.built and m1.layers[0].name.startswith("flatten")
    m2 = models.Sequential([layers.Flatten(), layers.Dense(3)])
    assert not m2.built
    with pytest.raises(ValueError, match="not built"):
        m2.summary()
    y = m2.predict(rng.random((2, 4, 5)), verbose=0)
    assert y.shape == (2, 3) and m2.built and m2.count_params() == 63


def test_fit_learns_and_reports(rng):
    cnnc.utils.set_random_seed(0)
    x, y = _data(rng)
    model = _small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=8, batch_size=16, verbose=0, validation_split=0.25)
    assert set(hist.history) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(hist.history["loss"]) == 8 and hist.epoch == list(range(8))
    assert hist.history["loss"][-1] < hist.history["loss"][0]
    loss, acc = model.evaluate(x, y, verbose=0)
    assert acc > 0.8 and np.isfinite(loss)  # chance is 1/3
    assert isinstance(model.evaluate(x, y, verbose=0, return_dict=True), dict)
    p = model.predict(x, batch_size=7, verbose=0)
    np.testing.assert_allclose(p, model.predict(x, batch_size=96, verbose=0), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(p.sum(1), 1, rtol=1e-5)


def test_one_hot_labels_and_uint8_images(rng):
    cnnc.utils.set_random_seed(0)
    x, y = _data(rng)
    model = _small_cnn()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy", metrics=["accuracy"])
    h = model.fit((x * 255).astype(np.uint8), cnnc.utils.to_categorical(y, 3), epochs=2, verbose=0,
                  validation_data=((x * 255).astype(np.uint8), cnnc.utils.to_categorical(y, 3)))
    assert "val_accuracy" in h.history


def test_train_and_test_on_batch(rng):
    x, y = _data(rng, n=16)
    model = _small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    loss, acc = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= acc <= 1
    assert isinstance(model.test_on_batch(x, y, return_dict=True), dict)
    np.testing.assert_array_equal(model.predict_on_batch(x), model.predict(x, verbose=0))


def test_train_on_batch_builds_a_lazy_model_first(rng):
    x, y = _data(rng, n=16)
    model = models.Sequential([layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.train_on_batch(x, y)
    before = model.get_weights()
    model.train_on_batch(x, y)
    assert model.optimizer.iterations == 2
    assert all(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_frozen_layer_keeps_its_weights(rng):
    x, y = _data(rng, n=32)
    model = _small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.layers[0].trainable = False
    before = model.layers[0].get_weights()
    other = model.layers[-1].get_weights()
    model.fit(x, y, epochs=1, verbose=0)
    for a, b in zip(before, model.layers[0].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(other, model.layers[-1].get_weights()))


def _train_weights(seed, rng_data, threads=None, dropout=True):
    if threads:
        cnnc.set_num_threads(threads)
    cnnc.utils.set_random_seed(seed)
    x, y = rng_data
    model = _small_cnn(dropout=dropout)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    return model.get_weights()


def test_same_seed_gives_bit_identical_weights_for_any_thread_count(rng, threads):
    data = _data(rng)
    w1 = _train_weights(7, data, threads=1)
    w2 = _train_weights(7, data, threads=2)
    w3 = _train_weights(7, data, threads=2)
    for a, b, c in zip(w1, w2, w3):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    w4 = _train_weights(8, data, threads=2)
    assert not all(np.array_equal(a, b) for a, b in zip(w1, w4))


def test_save_load_round_trip_is_exact(tmp_path, rng):
    cnnc.utils.set_random_seed(3)
    x, y = _data(rng)
    model = _small_cnn()
    model.add(layers.Activation("linear"))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    path = tmp_path / "m.cnnc"
    model.save(path)
    loaded = models.load_model(path)
    assert [l.name for l in loaded.layers] == [l.name for l in model.layers]
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(model.predict(x, verbose=0), loaded.predict(x, verbose=0))
    # optimizer state came along: one more epoch gives identical weights
    model.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert loaded.get_config() == model.get_config()
    # weights only
    wpath = tmp_path / "w.weights"
    model.save_weights(wpath)
    other = _small_cnn()
    other.add(layers.Activation("linear"))
    other.load_weights(wpath)
    for a, b in zip(model.get_weights(), other.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_load_rejects_bad_files_without_running_code(tmp_path):
    bad = tmp_path / "bad.cnnc"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a cnnc model file"):
        models.load_model(bad)
    # a pickled object array inside the file is refused (np.load with allow_pickle=False)
    model = _small_cnn()
    good = tmp_path / "good.cnnc"
    model.save(good)
    evil = tmp_path / "evil.cnnc"
    import io
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(evil, "w") as zout:
        for name in zin.namelist():
            zout.writestr(name, buf.getvalue() if name == "weights/0.npy" else zin.read(name))
    with pytest.raises(ValueError, match="not a plain array"):
        models.load_model(evil)
    # unknown layer classes are rejected, not imported
    meta_bad = tmp_path / "meta.cnnc"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(meta_bad, "w") as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name == "model.json":
                meta = json.loads(data)
                meta["model"]["config"]["layers"][0]["class_name"] = "os.system"
                data = json.dumps(meta).encode()
            zout.writestr(name, data)
    with pytest.raises(ValueError, match="unknown layer class"):
        models.load_model(meta_bad)


def test_compile_and_fit_errors(rng):
    model = _small_cnn()
    x, y = _data(rng, n=8)
    with pytest.raises(RuntimeError, match="compiled"):
        model.fit(x, y, verbose=0)
    with pytest.raises(ValueError, match="unknown optimizer 'nope'"):
        model.compile(optimizer="nope", loss="mse")
    with pytest.raises(ValueError, match="loss"):
        model.compile(optimizer="sgd", loss="nope")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="same number of samples"):
        model.fit(x, y[:5], verbose=0)
    with pytest.raises(ValueError, match="batch_size"):
        model.fit(x, y, batch_size=0, verbose=0)
    with pytest.raises(ValueError, match=r"Conv2D 'conv2d' expects 1 input channel, received 3"):
        model.fit(np.repeat(x, 3, axis=-1), y, verbose=0)
    with pytest.raises(TypeError, match="x must hold real numbers"):
        model.fit(np.array([["a"]] * 8), y, verbose=0)


def test_verbose_two_prints_one_line_per_epoch(rng, capsys):
    x, y = _data(rng, n=32)
    model = _small_cnn()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=8, verbose=2)
    lines = [l for l in capsys.readouterr().out.splitlines() if l.strip()]
    assert len(lines) == 3 and all(l.startswith(f"Epoch {i + 1}/3") for i, l in enumerate(lines))
    assert "loss:" in lines[0] and "accuracy:" in lines[0]


def test_only_training_keeps_activations(rng):
    """A training forward keeps what backward needs; a finished training step releases it (only
    weights and optimizer state stay alive); predict() holds no layer inputs/outputs at all, so each
    buffer is freed once the next layer is done."""
    x, y = _data(rng, n=16)
    model = _small_cnn(dropout=True)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model._forward(x, training=True)
    assert model.layers[0]._x is not None and model.layers[1]._taps is not None

    def assert_released():
        for layer in model.layers:
            assert not layer.grads, layer.name
            for attr in ("_x", "_y", "_z", "_argmax", "_taps", "_mask"):
                assert getattr(layer, attr, None) is None, (layer.name, attr)

    model.train_on_batch(x, y)
    assert_released()
    model.predict(x, verbose=0)
    assert_released()


def test_memory_measure_sees_weights_and_step_buffers(rng):
    import gc

    from cnnc import memory
    x, y = _data(rng, n=32)
    model = _small_cnn()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    weights = sum(w.nbytes for w in model.weights)
    gc.collect()  # earlier tests' garbage must not leave the count during this one
    assert memory.current_bytes() >= weights
    base = memory.current_bytes()
    peak = memory.measure(model.fit, x, y, batch_size=32, epochs=1, verbose=0)
    after = memory.current_bytes()
    # Adam keeps two slots per weight; the step itself needed at least the first conv's output
    assert after - base >= 2 * weights
    assert peak - after >= 32 * 8 * 8 * 4 * 4
    del model
    gc.collect()
    assert memory.current_bytes() <= base - weights
