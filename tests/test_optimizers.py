"""cnnc.optimizers: Keras 3 update rules against independent float64 formulas, clipping, schedules,
state round trips, configs and errors."""
import math

import numpy as np
import pytest

from cnnc import optimizers
from cnnc.optimizers import SGD, Adagrad, Adam, AdamW, ExponentialDecay, Optimizer, RMSprop

W0 = np.array([0.5, -1.25, 2.0, 0.0], dtype=np.float64)
GRADS = [np.array(g, dtype=np.float64) for g in (
    [0.3, -0.2, 1.5, 0.0],
    [-0.7, 0.4, 0.9, 0.25],
    [0.05, -1.1, -0.6, 2.0],
    [1.2, 0.3, 0.0, -0.4],
    [-0.2, 0.8, 0.35, 0.1],
)]


def run(opt, steps=len(GRADS), w0=W0):
    """Apply GRADS[:steps] to a float32 copy of w0; return the list of weights after each step."""
    w = w0.astype(np.float32)
    out = []
    for g in GRADS[:steps]:
        opt.apply_gradients([(g.astype(np.float32), w)])
        out.append(w.astype(np.float64))
    return out


def check(opt, reference, steps=len(GRADS)):
    got = run(opt, steps)
    want = reference(steps)
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=2e-6, err_msg=f"step {k + 1}")


# ---- independent float64 references (Keras 3 formulas) -------------------------------------------

def ref_sgd(lr, momentum=0.0, nesterov=False):
    def reference(steps):
        w, m, out = W0.copy(), np.zeros_like(W0), []
        for g in GRADS[:steps]:
            g = g.astype(np.float32).astype(np.float64)
            if momentum:
                m = momentum * m - lr * g
                w = w + (momentum * m - lr * g if nesterov else m)
            else:
                w = w - lr * g
            out.append(w.copy())
        return out
    return reference


def ref_rmsprop(lr, rho=0.9, momentum=0.0, eps=1e-7, centered=False):
    def reference(steps):
        w, v, m, mg, out = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), np.zeros_like(W0), []
        for g in GRADS[:steps]:
            g = g.astype(np.float32).astype(np.float64)
            v = rho * v + (1 - rho) * g * g
            if centered:
                mg = rho * mg + (1 - rho) * g
                denom = v - mg * mg + eps
            else:
                denom = v + eps
            inc = lr * g / np.sqrt(denom)
            if momentum > 0:
                m = momentum * m + inc
                w = w - m
            else:
                w = w - inc
            out.append(w.copy())
        return out
    return reference


def ref_adam(lr, b1=0.9, b2=0.999, eps=1e-7, amsgrad=False, weight_decay=0.0):
    def reference(steps):
        w, m, v, vhat, out = W0.copy(), np.zeros_like(W0), np.zeros_like(W0), np.zeros_like(W0), []
        for t, g in enumerate(GRADS[:steps], start=1):
            g = g.astype(np.float32).astype(np.float64)
            w = w - w * weight_decay * lr
            alpha = lr * math.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            m = m + (g - m) * (1 - b1)
            v = v + (g * g - v) * (1 - b2)
            if amsgrad:
                vhat = np.maximum(vhat, v)
                w = w - alpha * m / (np.sqrt(vhat) + eps)
            else:
                w = w - alpha * m / (np.sqrt(v) + eps)
            out.append(w.copy())
        return out
    return reference


def ref_adagrad(lr, init=0.1, eps=1e-7):
    def reference(steps):
        w, acc, out = W0.copy(), np.full_like(W0, init), []
        for g in GRADS[:steps]:
            g = g.astype(np.float32).astype(np.float64)
            acc = acc + g * g
            w = w - lr * g / np.sqrt(acc + eps)
            out.append(w.copy())
        return out
    return reference


CASES = {
    "sgd": (lambda: SGD(0.1), ref_sgd(0.1)),
    "sgd_momentum": (lambda: SGD(0.1, momentum=0.9), ref_sgd(0.1, 0.9)),
    "sgd_nesterov": (lambda: SGD(0.1, momentum=0.8, nesterov=True), ref_sgd(0.1, 0.8, True)),
    "rmsprop": (lambda: RMSprop(0.01), ref_rmsprop(0.01)),
    "rmsprop_momentum": (lambda: RMSprop(0.01, rho=0.8, momentum=0.5), ref_rmsprop(0.01, 0.8, 0.5)),
    "rmsprop_centered": (lambda: RMSprop(0.01, centered=True), ref_rmsprop(0.01, centered=True)),
    "rmsprop_centered_momentum": (lambda: RMSprop(0.02, rho=0.7, momentum=0.3, epsilon=1e-3, centered=True),
                                  ref_rmsprop(0.02, 0.7, 0.3, 1e-3, True)),
    "adam": (lambda: Adam(0.1), ref_adam(0.1)),
    "adam_betas": (lambda: Adam(0.05, beta_1=0.5, beta_2=0.9, epsilon=1e-3), ref_adam(0.05, 0.5, 0.9, 1e-3)),
    "adam_amsgrad": (lambda: Adam(0.1, amsgrad=True), ref_adam(0.1, amsgrad=True)),
    "adamw": (lambda: AdamW(0.1), ref_adam(0.1, weight_decay=0.004)),
    "adamw_decay_amsgrad": (lambda: AdamW(0.1, weight_decay=0.5, amsgrad=True),
                            ref_adam(0.1, amsgrad=True, weight_decay=0.5)),
    "adagrad": (lambda: Adagrad(0.1), ref_adagrad(0.1)),
    "adagrad_init": (lambda: Adagrad(0.3, initial_accumulator_value=1.0, epsilon=1e-3), ref_adagrad(0.3, 1.0, 1e-3)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_step_matches_formula(case):
    make, reference = CASES[case]
    check(make(), reference, steps=1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_several_steps_match_formula(case):
    make, reference = CASES[case]
    check(make(), reference)


def test_one_step_by_hand():
    # Values written out by hand for the first gradient.
    w = np.array([1.0, -2.0], dtype=np.float32)
    SGD(0.5).apply_gradients([(np.array([0.2, -0.4], np.float32), w)])
    np.testing.assert_allclose(w, [0.9, -1.8], rtol=1e-7)
    # Adam's first step moves each weight by lr * sign(g) (up to epsilon): m = 0.1 g, v = 0.001 g^2,
    # alpha = lr * sqrt(0.001) / 0.1.
    w = np.array([1.0, -2.0], dtype=np.float32)
    Adam(0.01).apply_gradients([(np.array([0.2, -0.4], np.float32), w)])
    np.testing.assert_allclose(w, [0.99, -1.99], rtol=1e-5)
    # Adagrad: acc = 0.1 + g^2; w -= lr g / sqrt(acc)
    w = np.array([1.0], dtype=np.float32)
    Adagrad(0.1).apply_gradients([(np.array([0.3], np.float32), w)])
    np.testing.assert_allclose(w, [1.0 - 0.1 * 0.3 / math.sqrt(0.19 + 1e-7)], rtol=1e-6)


def test_keras_defaults():
    s = SGD()
    assert (s.learning_rate, s.momentum, s.nesterov, s.name) == (0.01, 0.0, False, "SGD")
    r = RMSprop()
    assert (r.learning_rate, r.rho, r.momentum, r.epsilon, r.centered, r.name) == (0.001, 0.9, 0.0, 1e-7, False, "rmsprop")
    a = Adam()
    assert (a.learning_rate, a.beta_1, a.beta_2, a.epsilon, a.amsgrad, a.name) == (0.001, 0.9, 0.999, 1e-7, False, "adam")
    aw = AdamW()
    assert (aw.learning_rate, aw.weight_decay, aw.beta_1, aw.beta_2, aw.epsilon, aw.name) == (0.001, 0.004, 0.9, 0.999, 1e-7, "adamw")
    ag = Adagrad()
    assert (ag.learning_rate, ag.initial_accumulator_value, ag.epsilon, ag.name) == (0.001, 0.1, 1e-7, "adagrad")
    assert (a.clipnorm, a.clipvalue, a.global_clipnorm, a.iterations) == (None, None, None, 0)


# ---- mechanics ---------------------------------------------------------------------------------

def test_updates_in_place_and_counts_iterations():
    w = np.ones((2, 3), np.float32)
    view = w[0]
    opt = Adam(0.1)
    assert not opt.built
    opt.apply_gradients([(np.ones((2, 3), np.float32), w)])      # builds lazily
    assert opt.built and opt.iterations == 1
    assert w.dtype == np.float32 and np.all(w < 1) and np.shares_memory(view, w) and np.all(view == w[0])
    opt.apply_gradients(zip([np.ones((2, 3), np.float32)], [w]))
    assert opt.iterations == 2


def test_several_variables_and_gradient_left_untouched():
    a = np.array([1.0, 2.0], np.float32)
    b = np.array([[3.0]], np.float32)
    ga = np.array([0.5, -0.5], np.float32)
    gb = np.array([[2.0]], np.float64)            # other float dtypes are accepted
    ga0, gb0 = ga.copy(), gb.copy()
    opt = SGD(0.1, momentum=0.9)
    opt.build([a, b])
    opt.apply_gradients([(ga, a), (gb, b)])
    np.testing.assert_allclose(a, [0.95, 2.05], rtol=1e-6)
    np.testing.assert_allclose(b, [[2.8]], rtol=1e-6)
    assert b.dtype == np.float32
    np.testing.assert_array_equal(ga, ga0)
    np.testing.assert_array_equal(gb, gb0)


def test_none_gradient_skips_variable():
    a = np.ones(2, np.float32)
    b = np.ones(2, np.float32)
    opt = AdamW(0.1, weight_decay=0.5)
    opt.apply_gradients([(None, a), (np.ones(2, np.float32), b)])
    np.testing.assert_array_equal(a, 1.0)          # no update, no weight decay
    assert np.all(b < 1) and opt.iterations == 1


def test_apply_gradients_errors():
    a = np.ones(2, np.float32)
    opt = SGD(0.1)
    opt.build([a])
    with pytest.raises(ValueError, match="2 .*pairs.*built for 1"):
        opt.apply_gradients([(np.ones(2), a), (np.ones(2), a)])
    with pytest.raises(ValueError, match=r"gradient 0 has shape \(3,\).*\(2,\)"):
        opt.apply_gradients([(np.ones(3), a)])
    with pytest.raises(ValueError, match=r"variable 0 has shape \(3,\)"):
        opt.apply_gradients([(np.ones(3), np.ones(3, np.float32))])
    with pytest.raises(TypeError, match="pair"):
        opt.apply_gradients([a])
    with pytest.raises(TypeError, match="NumPy array"):
        SGD().build([[1.0, 2.0]])
    with pytest.raises(TypeError, match="floating"):
        SGD().build([np.ones(2, np.int32)])
    ro = np.ones(2, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        SGD().build([ro])


# ---- clipping ----------------------------------------------------------------------------------

def test_clipnorm_per_variable():
    a = np.zeros(2, np.float32)
    b = np.zeros(2, np.float32)
    opt = SGD(1.0, clipnorm=1.0)
    opt.apply_gradients([(np.array([3.0, 4.0], np.float32), a),       # norm 5 -> scaled by 1/5
                         (np.array([0.3, 0.4], np.float32), b)])      # norm 0.5 -> unchanged
    np.testing.assert_allclose(a, [-0.6, -0.8], rtol=1e-6)
    np.testing.assert_allclose(b, [-0.3, -0.4], rtol=1e-6)


def test_global_clipnorm():
    a = np.zeros(2, np.float32)
    b = np.zeros(1, np.float32)
    opt = SGD(1.0, global_clipnorm=2.0)
    ga, gb = np.array([3.0, 4.0], np.float32), np.array([12.0], np.float32)   # global norm 13
    opt.apply_gradients([(ga, a), (gb, b)])
    np.testing.assert_allclose(a, [-6 / 13, -8 / 13], rtol=1e-6)
    np.testing.assert_allclose(b, [-24 / 13], rtol=1e-6)
    np.testing.assert_array_equal(ga, [3.0, 4.0])                           # caller's array intact
    c = np.zeros(1, np.float32)
    SGD(1.0, global_clipnorm=20.0).apply_gradients([(np.array([5.0], np.float32), c)])
    np.testing.assert_allclose(c, [-5.0])


def test_clipvalue():
    a = np.zeros(4, np.float32)
    SGD(1.0, clipvalue=0.5).apply_gradients([(np.array([-2.0, -0.25, 0.5, 9.0], np.float32), a)])
    np.testing.assert_allclose(a, [0.5, 0.25, -0.5, -0.5])


def test_clipping_feeds_adam():
    # Adam with clipvalue sees the clipped gradient: compare against Adam on pre-clipped gradients.
    w1 = W0.astype(np.float32)
    w2 = W0.astype(np.float32)
    o1, o2 = Adam(0.1, clipvalue=0.5), Adam(0.1)
    for g in GRADS:
        o1.apply_gradients([(g.astype(np.float32), w1)])
        o2.apply_gradients([(np.clip(g, -0.5, 0.5).astype(np.float32), w2)])
    np.testing.assert_array_equal(w1, w2)


@pytest.mark.parametrize("kwargs", [dict(clipnorm=1.0, global_clipnorm=1.0), dict(clipnorm=1.0, clipvalue=1.0),
                                    dict(clipvalue=1.0, global_clipnorm=2.0)])
def test_only_one_clipping_option(kwargs):
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        SGD(**kwargs)


# ---- learning rate and schedules ---------------------------------------------------------------

def test_exponential_decay_values():
    s = ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5)
    assert s(0) == pytest.approx(0.1) and s(4) == pytest.approx(0.05) and s(2) == pytest.approx(0.1 * 0.5 ** 0.5)
    st = ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5, staircase=True)
    assert [st(i) for i in (0, 3, 4, 7, 8)] == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    assert optimizers.schedules.ExponentialDecay is ExponentialDecay
    assert isinstance(s, optimizers.schedules.LearningRateSchedule)


def test_schedule_drives_each_step():
    sched = ExponentialDecay(0.2, decay_steps=2, decay_rate=0.5)
    opt = SGD(sched)
    w = np.zeros(1, np.float32)
    expected = 0.0
    for step in range(5):
        assert opt.learning_rate == pytest.approx(0.2 * 0.5 ** (step / 2))
        opt.apply_gradients([(np.ones(1, np.float32), w)])
        expected -= 0.2 * 0.5 ** (step / 2)
        np.testing.assert_allclose(w, [expected], rtol=1e-6)


def test_callable_schedules():
    opt = SGD(lambda step: 0.1 / (1 + step))
    w = np.zeros(1, np.float32)
    for _ in range(3):
        opt.apply_gradients([(np.ones(1, np.float32), w)])
    np.testing.assert_allclose(w, [-(0.1 + 0.05 + 0.1 / 3)], rtol=1e-6)
    assert opt.learning_rate == pytest.approx(0.025)
    zero_arg = SGD(lambda: 0.5)                      # Keras 3 style: called without arguments
    assert zero_arg.learning_rate == 0.5


def test_learning_rate_setter():
    opt = SGD(0.1)
    w = np.zeros(1, np.float32)
    opt.apply_gradients([(np.ones(1, np.float32), w)])
    opt.learning_rate = 0.01
    assert opt.learning_rate == 0.01
    opt.apply_gradients([(np.ones(1, np.float32), w)])
    np.testing.assert_allclose(w, [-0.11], rtol=1e-6)
    # setting a number replaces a schedule
    sched_opt = Adam(ExponentialDecay(0.1, 10, 0.5))
    sched_opt.learning_rate = 0.003
    assert sched_opt.learning_rate == 0.003
    assert sched_opt.get_config()["learning_rate"] == 0.003
    sched_opt.learning_rate = np.float32(0.25)
    assert sched_opt.learning_rate == 0.25
    with pytest.raises(ValueError, match="learning_rate"):
        opt.learning_rate = -1.0
    assert opt.learning_rate == 0.01


# ---- state -------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_state_round_trip_resumes_bit_identically(case):
    make, _ = CASES[case]
    shapes = [(3, 2), (4,)]
    rng = np.random.default_rng(7)
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(6)]
    params = [rng.standard_normal(s).astype(np.float32) for s in shapes]

    a = make()
    a.build(params)
    for g in grads[:3]:
        a.apply_gradients(zip(g, params))
    state = a.get_state()
    saved = [p.copy() for p in params]
    assert state["iterations"].dtype == np.int64 and int(state["iterations"]) == 3
    for g in grads[3:]:
        a.apply_gradients(zip(g, params))

    b = make()
    resumed = [p.copy() for p in saved]
    b.build(resumed)
    b.set_state(state)
    assert b.iterations == 3
    for g in grads[3:]:
        b.apply_gradients(zip(g, resumed))
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p, q)
    assert a.get_state().keys() == b.get_state().keys()
    for k in state:
        np.testing.assert_array_equal(a.get_state()[k], b.get_state()[k])


def test_state_is_a_copy_and_restores_learning_rate():
    w = np.ones(3, np.float32)
    opt = Adam(0.1)
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    state = opt.get_state()
    assert set(state) == {"iterations", "learning_rate", "momentum/0", "velocity/0"}
    m_before = state["momentum/0"].copy()
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    np.testing.assert_array_equal(state["momentum/0"], m_before)
    other = Adam(0.5)
    other.build([np.ones(3, np.float32)])
    other.set_state(state)
    assert other.learning_rate == 0.1


def test_set_state_errors():
    w = np.ones(3, np.float32)
    opt = Adam()
    opt.apply_gradients([(np.ones(3, np.float32), w)])
    state = opt.get_state()
    with pytest.raises(ValueError, match="not built"):
        Adam().set_state(state)
    wrong = Adam()
    wrong.build([np.ones(4, np.float32)])
    with pytest.raises(ValueError, match=r"momentum/0.*shape \(3,\).*\(4,\)"):
        wrong.set_state(state)
    sgd = SGD(momentum=0.5)
    sgd.build([w])
    with pytest.raises(ValueError, match="missing momentum/0"):
        sgd.set_state({"iterations": np.array(1)})
    with pytest.raises(ValueError, match="unexpected velocity/0"):
        sgd.set_state(state)
    two = Adam()
    two.build([w, w.copy()])
    with pytest.raises(ValueError, match="missing momentum/1"):
        two.set_state(state)
    with pytest.raises(ValueError, match="iterations"):
        opt.set_state(dict(state, iterations=np.array(1.5)))
    # a failed set_state leaves the optimizer unchanged
    assert wrong.iterations == 0 and np.all(wrong._slots["momentum"][0] == 0)


# ---- config ------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip(case):
    make, _ = CASES[case]
    opt = make()
    cfg = opt.get_config()
    again = type(opt).from_config(cfg)
    assert again.get_config() == cfg
    ser = optimizers.serialize(opt)
    assert ser["class_name"] == type(opt).__name__
    for clone in (optimizers.deserialize(ser), optimizers.get(ser), Optimizer.from_config(ser)):
        assert type(clone) is type(opt) and clone.get_config() == cfg
    np.testing.assert_array_equal(run(make())[-1], run(again)[-1])


def test_config_with_schedule_and_clipping():
    opt = RMSprop(ExponentialDecay(0.01, 100, 0.9, staircase=True), clipnorm=2.0, name="mine")
    cfg = opt.get_config()
    assert cfg["learning_rate"] == {"class_name": "ExponentialDecay", "config": {
        "initial_learning_rate": 0.01, "decay_steps": 100, "decay_rate": 0.9, "staircase": True,
        "name": "ExponentialDecay"}}
    assert cfg["clipnorm"] == 2.0 and cfg["name"] == "mine"
    again = RMSprop.from_config(cfg)
    assert isinstance(again._schedule, ExponentialDecay) and again.get_config() == cfg


def test_from_config_accepts_inert_keras_keys():
    cfg = dict(Adam(0.01).get_config(), use_ema=False, ema_momentum=0.99, ema_overwrite_frequency=None,
               loss_scale_factor=None, gradient_accumulation_steps=None, weight_decay=None)
    assert Adam.from_config(cfg).learning_rate == 0.01
    with pytest.raises(ValueError, match="use_ema"):
        Adam.from_config(dict(cfg, use_ema=True))
    with pytest.raises(ValueError, match="Adam.from_config"):
        Optimizer.from_config(Adam().get_config())


def test_get():
    for name, cls in [("sgd", SGD), ("SGD", SGD), ("RMSprop", RMSprop), ("adam", Adam), ("Adam", Adam),
                      ("adamw", AdamW), ("AdamW", AdamW), ("adagrad", Adagrad), ("ADAGRAD", Adagrad)]:
        assert type(optimizers.get(name)) is cls
    opt = Adam()
    assert optimizers.get(opt) is opt
    assert type(optimizers.get(SGD)) is SGD
    with pytest.raises(ValueError) as err:
        optimizers.get("nope")
    assert str(err.value) == "unknown optimizer 'nope'; choose one of adagrad, adam, adamw, rmsprop, sgd"
    with pytest.raises(ValueError, match="unknown optimizer"):
        optimizers.get(3)


# ---- argument errors ---------------------------------------------------------------------------

@pytest.mark.parametrize("make, arg", [
    (lambda: SGD(-0.1), "learning_rate"),
    (lambda: SGD(float("nan")), "learning_rate"),
    (lambda: SGD(momentum=1.5), "momentum"),
    (lambda: SGD(momentum=-0.1), "momentum"),
    (lambda: RMSprop(rho=1.1), "rho"),
    (lambda: RMSprop(momentum=2), "momentum"),
    (lambda: RMSprop(epsilon=-1), "epsilon"),
    (lambda: Adam(beta_1=1.0), "beta_1"),
    (lambda: Adam(beta_2=-0.5), "beta_2"),
    (lambda: Adam(epsilon=-1e-7), "epsilon"),
    (lambda: AdamW(weight_decay=-0.1), "weight_decay"),
    (lambda: AdamW(weight_decay=None), "weight_decay"),
    (lambda: Adagrad(initial_accumulator_value=-1), "initial_accumulator_value"),
    (lambda: Adam(clipnorm=0), "clipnorm"),
    (lambda: Adam(clipvalue=-1), "clipvalue"),
    (lambda: Adam(global_clipnorm=float("inf")), "global_clipnorm"),
    (lambda: ExponentialDecay(0.1, 0, 0.5), "decay_steps"),
])
def test_argument_errors(make, arg):
    with pytest.raises(ValueError, match=arg):
        make()


@pytest.mark.parametrize("make, arg", [
    (lambda: SGD("fast"), "learning_rate"),
    (lambda: SGD(nesterov="yes"), "nesterov"),
    (lambda: Adam(amsgrad=1), "amsgrad"),
    (lambda: RMSprop(centered=None), "centered"),
])
def test_argument_type_errors(make, arg):
    with pytest.raises(TypeError, match=arg):
        make()


def test_slot_names_in_state():
    w = np.ones(2, np.float32)

    def keys(opt):
        opt.build([w])
        return set(opt.get_state()) - {"iterations", "learning_rate"}
    assert keys(SGD()) == set()
    assert keys(SGD(momentum=0.9)) == {"momentum/0"}
    assert keys(RMSprop()) == {"velocity/0"}
    assert keys(RMSprop(momentum=0.5, centered=True)) == {"velocity/0", "momentum/0", "average_gradient/0"}
    assert keys(Adam(amsgrad=True)) == {"momentum/0", "velocity/0", "velocity_hat/0"}
    assert keys(AdamW()) == {"momentum/0", "velocity/0"}
    assert keys(Adagrad()) == {"accumulator/0"}
    acc = Adagrad(initial_accumulator_value=0.25)
    acc.build([w])
    np.testing.assert_array_equal(acc.get_state()["accumulator/0"], [0.25, 0.25])
    sched = SGD(ExponentialDecay(0.1, 10, 0.5))
    sched.build([w])
    assert "learning_rate" not in sched.get_state()


def test_plain_callable_schedule_config_warns():
    opt = SGD(lambda step: 0.5)
    with pytest.warns(RuntimeWarning, match="cannot be serialized"):
        cfg = opt.get_config()
    assert cfg["learning_rate"] == 0.5
