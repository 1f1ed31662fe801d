"""The optimizers' updates of float32 variables in the C core (_core.optim_update, one call for all of a
step's variables) against their NumPy rules (optimizers.*._update, which a subclass overriding _update
keeps): the same bits, on every ISA path and thread count, over values that round, overflow, underflow
and carry inf or NaN."""
import numpy as np
import pytest

import cnnc
from cnnc import optimizers

# name: (class, keyword arguments)
RULES = {
    "sgd": (optimizers.SGD, {"learning_rate": 0.05}),
    "sgd momentum": (optimizers.SGD, {"learning_rate": 0.05, "momentum": 0.9}),
    "sgd nesterov": (optimizers.SGD, {"learning_rate": 0.05, "momentum": 0.7, "nesterov": True}),
    "rmsprop": (optimizers.RMSprop, {"learning_rate": 1e-3, "rho": 0.9}),
    "rmsprop momentum": (optimizers.RMSprop, {"learning_rate": 1e-3, "momentum": 0.5}),
    "rmsprop centered": (optimizers.RMSprop, {"learning_rate": 1e-3, "centered": True}),
    "rmsprop centered momentum": (optimizers.RMSprop, {"learning_rate": 2e-3, "centered": True, "momentum": 0.3}),
    "adam": (optimizers.Adam, {"learning_rate": 1e-3}),
    "adam amsgrad": (optimizers.Adam, {"learning_rate": 1e-3, "amsgrad": True}),
    "adamw": (optimizers.AdamW, {"learning_rate": 1e-3, "weight_decay": 0.01}),
    "adamw amsgrad, no decay": (optimizers.AdamW, {"learning_rate": 1e-3, "weight_decay": 0.0, "amsgrad": True}),
    "adagrad": (optimizers.Adagrad, {"learning_rate": 0.01}),
}

# sizes: scalars, a vector tail, more than one parallel item (16384 elements each), an empty variable
SHAPES = [(3, 3, 2, 5), (1,), (7,), (40000,), (130, 129), (0, 4), (64,)]


def _numpy_twin(cls):
    class Twin(cls):  # overriding _update keeps the NumPy rule
        def _update(self, i, g, v, lr):
            super()._update(i, g, v, lr)
    return Twin


def _data(rng, special):
    vs = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    gs = [(rng.standard_normal(s) * 0.5).astype(np.float32) for s in SHAPES]
    if special:
        g = gs[3]
        g[:12] = [0.0, -0.0, np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-40, -1e-45, 1e-20, 6e19, 1.0]
        vs[3][12:16] = [np.inf, np.nan, 3e38, 1e-42]
        gs[4][::97] = 0.0
    return vs, gs


def _run(opt, vs, gs, steps):
    vs = [v.copy() for v in vs]
    for k in range(steps):
        opt.apply_gradients([(g * np.float32(1 + 0.25 * k), v) for g, v in zip(gs, vs)])
    return vs, opt


def _bits_equal(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.parametrize("special", [False, True])
@pytest.mark.parametrize("name", sorted(RULES))
def test_same_bits_as_the_numpy_rule(name, special, rng, isa, isa_paths, threads):
    cls, kw = RULES[name]
    vs, gs = _data(rng, special)
    with np.errstate(all="ignore"):
        want, twin = _run(_numpy_twin(cls)(**kw), vs, gs, 3)
        assert twin._c_rule(0.1) is None
        for arch in isa_paths:
            isa(arch)
            for n in (1, 2, 3):
                threads(n)
                opt = cls(**kw)
                assert opt._c_rule(0.1) is not None
                got, opt = _run(opt, vs, gs, 3)
                for i, (a, b) in enumerate(zip(got, want)):
                    assert _bits_equal(a, b), (arch, n, "variable", i)
                for slot, arrays in twin._slots.items():
                    for i, (a, b) in enumerate(zip(opt._slots[slot], arrays)):
                        assert _bits_equal(a, b), (arch, n, slot, i)


def test_takes_the_c_path(monkeypatch):
    """Float32 C-contiguous variables go to one C call per step; others keep the NumPy rule."""
    from cnnc import _core
    calls = []
    real = _core.optim_update
    monkeypatch.setattr(_core, "optim_update", lambda kind, g, w, *a, **k: (calls.append(len(w)), real(kind, g, w, *a, **k)))
    rng = np.random.default_rng(0)
    v32 = [rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (5,), (2, 2))]
    v64 = rng.standard_normal((6,))
    strided = np.zeros((4, 6), np.float32)[:, ::2]  # not contiguous
    opt = optimizers.RMSprop(0.01)
    before = [v.copy() for v in v32] + [v64.copy(), strided.copy()]
    opt.apply_gradients([(np.ones_like(v), v) for v in v32 + [v64, strided]])
    assert calls == [3]
    for v, b in zip(v32 + [v64, strided], before):
        assert (v != b).all()  # every variable moved, the float64 and strided ones by NumPy


def test_subclass_rule_is_kept():
    class Halved(optimizers.SGD):
        def _update(self, i, g, v, lr):
            v -= np.float32(0.5) * g
    v = np.ones(5, np.float32)
    Halved(learning_rate=0.1).apply_gradients([(np.ones(5, np.float32), v)])
    assert np.array_equal(v, np.full(5, 0.5, np.float32))


def test_bad_calls_are_rejected():
    from cnnc import _core
    w = [np.zeros(4, np.float32)]
    with pytest.raises(TypeError, match="float32"):
        _core.optim_update("sgd", [np.zeros(4)], w, lr=0.1)
    with pytest.raises(ValueError, match="elements"):
        _core.optim_update("sgd", [np.zeros(3, np.float32)], w, lr=0.1)
    with pytest.raises(ValueError, match="update"):  # RMSprop without its velocity slot
        _core.optim_update("rmsprop", [np.zeros(4, np.float32)], w, lr=0.1)
    with pytest.raises(ValueError, match="arrays"):
        _core.optim_update("sgd", [np.zeros(4, np.float32)] * 2, w, lr=0.1)
    ro = np.zeros(4, np.float32)
    ro.flags.writeable = False
    with pytest.raises(TypeError, match="writable"):
        _core.optim_update("sgd", [np.zeros(4, np.float32)], [ro], lr=0.1)
