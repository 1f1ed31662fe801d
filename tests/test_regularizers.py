"""cnnc.regularizers: penalties and gradients against the Keras formulas, lookup, configs, errors."""
import numpy as np
import pytest

from cnnc import regularizers
from cnnc.regularizers import L1, L1L2, L2

W = np.array([[0.5, -2.0, 0.0], [1.5, -0.25, 3.0]], dtype=np.float32)


def test_values_by_hand():
    abs_sum = 0.5 + 2.0 + 0.0 + 1.5 + 0.25 + 3.0
    sq_sum = 0.25 + 4.0 + 0.0 + 2.25 + 0.0625 + 9.0
    assert L1()(W) == pytest.approx(0.01 * abs_sum, rel=1e-12)
    assert L2()(W) == pytest.approx(0.01 * sq_sum, rel=1e-12)
    assert L1(0.3)(W) == pytest.approx(0.3 * abs_sum, rel=1e-12)
    assert L1L2(l1=0.2, l2=0.5)(W) == pytest.approx(0.2 * abs_sum + 0.5 * sq_sum, rel=1e-12)
    assert L1L2()(W) == 0.0
    assert isinstance(L2()(W), float)


def test_large_sum_is_accurate():
    w = np.full(1_000_003, 0.1, dtype=np.float32)
    assert L2(1.0)(w) == pytest.approx(1_000_003 * float(np.float32(0.1)) ** 2, rel=1e-9)


def test_gradients():
    g = L1L2(l1=0.2, l2=0.5).gradient(W)
    assert g.dtype == np.float32 and g.shape == W.shape
    np.testing.assert_allclose(g, 0.2 * np.sign(W) + 2 * 0.5 * W, rtol=1e-6)
    assert g[0, 2] == 0.0                                  # sign(0) = 0
    np.testing.assert_allclose(L1(0.1).gradient(W), 0.1 * np.sign(W), rtol=1e-6)
    np.testing.assert_allclose(L2(0.1).gradient(W), 0.2 * W, rtol=1e-6)
    np.testing.assert_array_equal(L1L2().gradient(W), np.zeros_like(W))


def test_gradient_matches_finite_differences():
    reg = L1L2(l1=0.3, l2=0.7)
    w = np.array([0.4, -1.1, 2.5], dtype=np.float64)
    h = 1e-6
    num = np.array([(reg(w + h * e) - reg(w - h * e)) / (2 * h) for e in np.eye(3)])
    np.testing.assert_allclose(reg.gradient(w), num, rtol=1e-5)


def test_defaults_and_get():
    assert L1().l1 == 0.01 and L2().l2 == 0.01 and (L1L2().l1, L1L2().l2) == (0.0, 0.0)
    assert regularizers.get(None) is None
    assert type(regularizers.get("l1")) is L1 and regularizers.get("l1").l1 == 0.01
    assert type(regularizers.get("L2")) is L2 and regularizers.get("l2").l2 == 0.01
    both = regularizers.get("l1_l2")
    assert type(both) is L1L2 and (both.l1, both.l2) == (0.01, 0.01)
    reg = L2(0.5)
    assert regularizers.get(reg) is reg
    assert type(regularizers.get(L1)) is L1
    with pytest.raises(ValueError, match="unknown regularizer 'l3'; choose one of l1, l2, l1_l2"):
        regularizers.get("l3")
    with pytest.raises(ValueError, match="unknown regularizer"):
        regularizers.get(0.01)


@pytest.mark.parametrize("reg", [L1(0.2), L2(0.03), L1L2(0.1, 0.2), L1L2()])
def test_config_round_trip(reg):
    ser = regularizers.serialize(reg)
    assert ser == {"class_name": type(reg).__name__, "config": reg.get_config()}
    again = regularizers.deserialize(ser)
    assert type(again) is type(reg) and again == reg
    assert regularizers.get(ser) == reg and type(reg).from_config(reg.get_config()) == reg
    assert regularizers.serialize(None) is None and regularizers.deserialize(None) is None


def test_errors():
    with pytest.raises(ValueError, match="l1"):
        L1(-0.1)
    with pytest.raises(ValueError, match="l2"):
        L2(float("inf"))
    with pytest.raises(ValueError, match="l2"):
        L1L2(l1=0.1, l2=-1)
    with pytest.raises(TypeError, match="l1"):
        L1("big")
    with pytest.raises(ValueError, match="unknown regularizer 'Nope'"):
        regularizers.deserialize({"class_name": "Nope", "config": {}})
