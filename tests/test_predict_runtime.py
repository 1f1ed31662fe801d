"""Inference of a Sequential through the C runtime (predict, predict_on_batch, __call__, evaluate).

The reference is the model's layers run one by one in Python (Sequential._layer_forward), which shares
no code with the runtime's graph lowering, planner or arena. The runtime reads the weights at each call,
so training, set_weights and in-place edits must show up in the next prediction."""
import threading

import numpy as np
import pytest

import cnnc
from cnnc import _core, deploy, layers, models, zoo
from cnnc.deploy import BundleError, Runtime
from cnnc.deploy import _lower

RNG = np.random.default_rng(11)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def layerwise(m, x):
    return m._layer_forward(np.ascontiguousarray(x, dtype=np.float32), training=False)


def varied(fmt_="channels_last"):
    cl = fmt_ == "channels_last"
    m = models.Sequential([
        layers.Input((9, 8, 3) if cl else (3, 9, 8)),
        layers.Conv2D(5, 3, padding="same", activation="relu", data_format=fmt_),
        layers.BatchNormalization(axis=-1 if cl else 1),
        layers.DepthwiseConv2D(3, depth_multiplier=2, activation="tanh", data_format=fmt_),
        layers.MaxPooling2D(2, data_format=fmt_),
        layers.Dropout(0.3),
        layers.Flatten(data_format=fmt_),
        layers.Dense(6, activation="elu"),
        layers.Dense(4, activation="softmax"),
    ])
    m.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    bn = m.layers[1]
    bn.params["moving_mean"][:] = RNG.standard_normal(bn.params["moving_mean"].shape)
    bn.params["moving_variance"][:] = RNG.random(bn.params["moving_variance"].shape) + 0.5
    return m


def _forbid_layer_forward(m, monkeypatch):
    """Make every layer's forward raise: a prediction that still works ran in the C runtime."""
    def boom(*a, **k):
        raise AssertionError("a layer's forward ran")
    for layer in m.layers:
        monkeypatch.setattr(layer, "forward", boom)


@pytest.mark.parametrize("fmt_", ["channels_last", "channels_first"])
def test_predict_runs_in_the_c_runtime_and_matches_the_layers(fmt_, monkeypatch):
    m = varied(fmt_)
    x = RNG.standard_normal((7,) + m.input_shape[1:]).astype(np.float32)
    expected = layerwise(m, x)
    assert m._runner()[0] is not None
    _forbid_layer_forward(m, monkeypatch)
    close(m.predict(x, batch_size=3, verbose=0), expected)
    close(m.predict_on_batch(x), expected)
    close(m(x), expected)
    close(m.predict(x[:1], verbose=0), expected[:1])
    m.evaluate(x, np.arange(7) % 4, verbose=0)


@pytest.mark.parametrize("name", ["chollet", "geron"])
def test_textbook_models(name):
    cnnc.utils.set_random_seed(3)
    m = zoo.ARCHITECTURES[name]()
    x = RNG.random((5, 28, 28, 1), dtype=np.float32)
    close(m.predict(x, verbose=0), layerwise(m, x))


def test_training_uses_the_layers_and_inference_sees_the_new_weights():
    m = varied()
    x = RNG.standard_normal((16,) + m.input_shape[1:]).astype(np.float32)
    y = np.arange(16) % 4
    before = m.predict(x, verbose=0)
    m.fit(x, y, epochs=2, batch_size=8, verbose=0)
    after = m.predict(x, verbose=0)
    assert np.abs(after - before).max() > 1e-4
    close(after, layerwise(m, x))


def test_set_weights_and_in_place_edits_are_seen():
    m = varied()
    x = RNG.standard_normal((4,) + m.input_shape[1:]).astype(np.float32)
    m.predict(x, verbose=0)  # the runner exists from here on
    dense = m.layers[-2]
    k, b = dense.get_weights()
    dense.set_weights([k * 3.0, b + 1.0])
    close(m.predict(x, verbose=0), layerwise(m, x))
    m.layers[0].params["kernel"][...] *= -1.5  # in place
    bn = m.layers[1]
    bn.params["moving_variance"][...] = 4.0
    bn.params["gamma"][...] = RNG.standard_normal(bn.params["gamma"].shape)
    close(m.predict(x, verbose=0), layerwise(m, x))
    m.layers[-1].params["bias"] = np.full(4, 2.0, np.float32)  # a new array in the layer's dict
    close(m.predict(x, verbose=0), layerwise(m, x))


def test_structure_changes_rebuild_the_runner():
    m = models.Sequential([layers.Input((5, 5, 2)), layers.Conv2D(3, 3), layers.Flatten(), layers.Dense(4)])
    x = RNG.standard_normal((2, 5, 5, 2)).astype(np.float32)
    assert m.predict(x, verbose=0).shape == (2, 4)
    first = m._runner()[0]
    m.add(layers.Dense(3, activation="sigmoid"))
    y = m.predict(x, verbose=0)
    assert y.shape == (2, 3) and m._runner()[0] is not first
    close(y, layerwise(m, x))
    m.pop()
    close(m.predict(x, verbose=0), layerwise(m, x))


def test_models_the_runtime_cannot_run_use_the_layers():
    class Doubled(layers.Dense):  # a subclass defined outside cnnc: its forward must be honoured
        def forward(self, x, training=False):
            return super().forward(x, training) * 2.0

    m = models.Sequential([layers.Input((6,)), Doubled(3)])
    x = RNG.standard_normal((4, 6)).astype(np.float32)
    runner, why = m._runner()
    assert runner is None and "Doubled" in why and "outside cnnc" in why
    k, b = m.layers[0].get_weights()
    close(m.predict(x, verbose=0), 2.0 * (x @ k + b))
    with pytest.raises(BundleError, match="outside cnnc"):
        deploy.bundle_bytes(m)

    t = models.Sequential([layers.Input((3, 3, 2)), layers.ReLU(threshold=0.5), layers.Flatten()])
    assert t._runner()[0] is None
    x = RNG.standard_normal((2, 3, 3, 2)).astype(np.float32)
    close(t.predict(x, verbose=0), np.where(x > 0.5, x, 0).reshape(2, -1))
    r = t.memory_estimate(2)
    assert r.deploy_arena_bytes is None and "threshold" in r.deploy_note
    assert "re_lu" in r.inference_peak_at


def test_other_input_shapes_get_the_layers_checks():
    m = varied()
    with pytest.raises(ValueError, match="expects 3 input channels, received 4"):
        m.predict(np.zeros((2, 9, 8, 4), np.float32), verbose=0)
    # a spatial size the layers accept (the Dense still gets 90 features) runs layer by layer
    x = RNG.standard_normal((2, 9, 9, 3)).astype(np.float32)
    close(m.predict(x, verbose=0), layerwise(m, x))


def test_threads_give_identical_predictions():
    m = varied()
    x = RNG.standard_normal((6,) + m.input_shape[1:]).astype(np.float32)
    prev = cnnc.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            cnnc.set_num_threads(t)
            outs.append(m.predict(x, verbose=0))
    finally:
        cnnc.set_num_threads(prev)
    np.testing.assert_array_equal(outs[0], outs[1])


def test_concurrent_predictions_with_different_batch_sizes():
    m = varied()
    xs = [RNG.standard_normal((b,) + m.input_shape[1:]).astype(np.float32) for b in (1, 5, 13)]
    expected = [layerwise(m, x) for x in xs]
    errors = []

    def work(i):
        try:
            for _ in range(30):
                close(m.predict_on_batch(xs[i]), expected[i])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_memory_estimate_describes_the_runtime_call():
    m = zoo.chollet_cnn()
    r = m.memory_estimate(8)
    assert "C runtime" in r.inference_peak_at
    params = sum(w.nbytes for layer in m.layers for w in layer.params.values())
    assert r.inference_bytes == params + 8 * 10 * 4 + r.deploy_arena_bytes
    assert r.deploy_arena_bytes == Runtime(deploy.bundle_bytes(m)).arena_size(8)


# ---- bundles written without their weights ---------------------------------------------------------

def test_external_constants_bundle():
    m = varied()
    g = _lower.from_sequential(m)
    full, ext = g.to_bytes(), g.to_bytes(external_consts=True)
    assert len(ext) < len(full) - 4 * sum(w.size for layer in m.layers for w in layer.params.values()) // 2
    with pytest.raises(BundleError, match="without its weights"):
        Runtime(ext)
    bm = _core.BundleModel(np.frombuffer(ext, np.uint8))
    assert bm.external_consts
    shapes = bm.const_shapes()
    consts = [np.ascontiguousarray(f(), dtype=np.float32) for f in g.const_sources()]
    assert [c.shape for c in consts] == shapes
    sizes = [c.size for c in consts]
    x = RNG.standard_normal((3,) + m.input_shape[1:]).astype(np.float32)
    out = np.empty((3, 4), np.float32)
    arena = np.empty(int(bm.prepare(3)[0]), np.uint8)
    with pytest.raises(ValueError, match="must supply its constants"):
        bm.run([x], [out], arena)
    with pytest.raises(ValueError, match="constants expected"):
        bm.run([x], [out], arena, consts[:-1], sizes[:-1])
    bad = list(consts)
    bad[0] = np.zeros(consts[0].size + 1, np.float32)
    with pytest.raises(ValueError, match="constant 0 has"):
        bm.run([x], [out], arena, bad, sizes)
    bm.run([x], [out], arena, consts, sizes)
    close(out, Runtime(full).run(x))
    close(out, layerwise(m, x))
    # the full bundle runs with replaced constants too: scaling the last layer's bias moves the logits
    fm = _core.BundleModel(np.frombuffer(full, np.uint8))
    fm.prepare(3)
    consts2 = list(consts)
    consts2[-1] = consts[-1] + 5.0 * np.arange(4, dtype=np.float32)
    out2 = np.empty((3, 4), np.float32)
    fm.run([x], [out2], arena, consts2, sizes)
    assert np.abs(out2 - out).max() > 0.1
