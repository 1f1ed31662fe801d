"""cnnc.metrics: hand-made batches, accumulation, reset, sample weights, ties, top-k, lookup."""
import numpy as np
import pytest

from cnnc import losses, metrics
from cnnc.metrics import (Accuracy, BinaryAccuracy, CategoricalAccuracy, Mean, MeanAbsoluteError,
                          MeanMetricWrapper, MeanSquaredError, SparseCategoricalAccuracy,
                          SparseTopKCategoricalAccuracy, TopKCategoricalAccuracy)

P = np.array([[0.1, 0.7, 0.2],     # argmax 1
              [0.5, 0.3, 0.2],     # argmax 0
              [0.2, 0.2, 0.6],     # argmax 2
              [0.4, 0.4, 0.2]])    # tie between 0 and 1: argmax 0 (first maximum)
LABELS = np.array([1, 1, 2, 1])    # hits: yes, no, yes, no (tie resolves to 0)
ONE_HOT = np.eye(3)[LABELS]


def test_categorical_accuracy_batch_and_ties():
    m = CategoricalAccuracy()
    assert m.name == "categorical_accuracy" and m.result() == 0.0
    m.update_state(ONE_HOT, P)
    assert m.result() == 0.5
    np.testing.assert_array_equal(metrics.categorical_accuracy(ONE_HOT, P), [1, 0, 1, 0])
    # a tie in y_true also resolves to the first maximum
    assert metrics.categorical_accuracy([[0.5, 0.5, 0.0]], [[0.9, 0.0, 0.1]]).tolist() == [1.0]


def test_accumulation_over_updates_and_reset():
    m = CategoricalAccuracy()
    m.update_state(ONE_HOT, P)                         # 2 / 4
    m.update_state(ONE_HOT[:1], P[:1])                 # 1 / 1
    m.update_state(ONE_HOT[1:2], P[1:2])               # 0 / 1
    assert m.result() == pytest.approx(3 / 6)
    m.reset_state()
    assert m.result() == 0.0
    m.update_state(ONE_HOT[:1], P[:1])
    assert m.result() == 1.0


def test_sample_weight():
    m = CategoricalAccuracy()
    m.update_state(ONE_HOT, P, sample_weight=np.array([1.0, 3.0, 0.5, 0.0]))
    assert m.result() == pytest.approx(1.5 / 4.5)
    m.update_state(ONE_HOT[1:2], P[1:2], sample_weight=[[1.0]])     # (N, 1) weights
    assert m.result() == pytest.approx(1.5 / 5.5)
    s = SparseCategoricalAccuracy()
    s.update_state(LABELS, P, sample_weight=[0.0, 0.0, 2.0, 0.0])
    assert s.result() == 1.0
    with pytest.raises(ValueError, match="sample_weight"):
        s.update_state(LABELS, P, sample_weight=[1.0, 2.0])


def test_sparse_categorical_accuracy_label_forms():
    for lab in (LABELS, LABELS[:, None], LABELS.astype(np.float32), LABELS.astype(np.uint8)):
        m = SparseCategoricalAccuracy()
        m.update_state(lab, P)
        assert m.result() == 0.5
    assert SparseCategoricalAccuracy().name == "sparse_categorical_accuracy"
    with pytest.raises(ValueError, match=r"y_true shape \(3,\) does not match y_pred shape \(4, 3\)"):
        SparseCategoricalAccuracy().update_state(LABELS[:3], P)
    with pytest.raises(ValueError, match=r"y_true shape \(4,\) does not match y_pred shape \(4, 3\)"):
        CategoricalAccuracy().update_state(LABELS, P)


def test_binary_accuracy():
    y = np.array([[1.0], [0.0], [1.0], [0.0], [1.0]])
    p = np.array([[0.9], [0.6], [0.5], [0.1], [0.51]])    # > 0.5: 1, 1, 0, 0, 1
    m = BinaryAccuracy()
    m.update_state(y, p)
    assert m.name == "binary_accuracy" and m.result() == pytest.approx(3 / 5)
    m2 = BinaryAccuracy(threshold=0.55)
    m2.update_state(y[:, 0], p[:, 0])                     # (N,) against (N,) is one value per sample
    assert m2.result() == pytest.approx(2 / 5)            # > 0.55: 1, 1, 0, 0, 0
    m2.update_state([1.0], [0.9])
    assert m2.result() == pytest.approx(3 / 6)
    m3 = BinaryAccuracy(threshold=0.7)
    m3.update_state(y[:, 0], p)                           # (N,) labels against (N, 1) outputs
    assert m3.result() == pytest.approx(3 / 5)            # > 0.7: 1, 0, 0, 0, 0
    # several outputs per sample: each sample scores the fraction of its entries that match
    y2 = np.array([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    p2 = np.array([[0.9, 0.1, 0.2, 0.8], [0.7, 0.2, 0.3, 0.9]])
    np.testing.assert_allclose(metrics.binary_accuracy(y2, p2), [0.75, 0.5])
    m4 = BinaryAccuracy()
    m4.update_state(y2, p2, sample_weight=[3.0, 1.0])
    assert m4.result() == pytest.approx((3 * 0.75 + 0.5) / 4)


def test_accuracy_exact_equality():
    m = Accuracy()
    m.update_state([[1], [2], [3], [4]], [[1], [2], [0], [4]])
    assert m.name == "accuracy" and m.result() == 0.75
    m.update_state([1.0, 2.0], [1.0, 2.5])
    assert m.result() == pytest.approx(4 / 6)


def test_top_k():
    p = np.array([[0.5, 0.3, 0.1, 0.1],     # top-2: {0, 1}
                  [0.1, 0.2, 0.3, 0.4],     # top-2: {3, 2}
                  [0.4, 0.2, 0.2, 0.2],     # 2nd place tied by 1, 2, 3: all count as in the top 2
                  [0.25, 0.25, 0.25, 0.25]])
    labels = np.array([1, 1, 3, 2])          # hit, miss, hit (tie), hit (all tied)
    np.testing.assert_array_equal(metrics.sparse_top_k_categorical_accuracy(labels, p, k=2), [1, 0, 1, 1])
    m = SparseTopKCategoricalAccuracy(k=2)
    m.update_state(labels[:, None], p)
    assert m.name == "sparse_top_k_categorical_accuracy" and m.result() == 0.75
    t = TopKCategoricalAccuracy(k=2)
    t.update_state(np.eye(4)[labels], p)
    assert t.name == "top_k_categorical_accuracy" and t.result() == 0.75
    k1 = SparseTopKCategoricalAccuracy(k=1)
    k1.update_state(labels, p)
    assert k1.result() == 0.25               # k=1: only the all-tied last row has its target at the top
    default = TopKCategoricalAccuracy()      # k=5 >= 4 classes: everything is in the top k
    assert default.k == 5
    default.update_state(np.eye(4)[labels], p)
    assert default.result() == 1.0
    nan_row = SparseTopKCategoricalAccuracy(k=3)
    nan_row.update_state([0, 5], [[np.nan, 0.1, 0.2, 0.3], [0.1, 0.2, 0.3, 0.4]])    # non-finite / out of range
    assert nan_row.result() == 0.0
    with pytest.raises(ValueError, match="k must be a positive integer"):
        TopKCategoricalAccuracy(k=0)


def test_top_k_k1_tie_semantics():
    # in_top_k: a target tied with the maximum is in the top 1 (unlike argmax accuracy)
    p = np.array([[0.4, 0.4, 0.2]])
    assert metrics.sparse_top_k_categorical_accuracy([1], p, k=1).tolist() == [1.0]
    assert metrics.sparse_categorical_accuracy([1], p).tolist() == [0.0]


def test_mean():
    m = Mean()
    assert m.name == "mean" and m.result() == 0.0
    m.update_state([1.0, 2.0, 3.0])
    m.update_state(10.0)
    assert m.result() == pytest.approx(16 / 4)
    m.reset_state()
    m.update_state([1.0, 2.0, 3.0], sample_weight=[1.0, 0.0, 3.0])
    assert m.result() == pytest.approx(10 / 4)
    m.reset_state()
    m.update_state([[1.0, 3.0], [5.0, 7.0]])        # per-sample means 2 and 6
    m.update_state([[0.0, 0.0]], sample_weight=[2.0])
    assert m.result() == pytest.approx(8 / 4)
    named = Mean(name="loss")
    assert named(np.array([2.0, 4.0])) == 3.0        # __call__ updates and returns the result


def test_regression_metrics():
    y = np.array([[1.0, 2.0], [3.0, 4.0]])
    p = np.array([[1.5, 2.0], [2.0, 6.0]])
    m = MeanSquaredError()
    m.update_state(y, p)
    assert m.name == "mean_squared_error" and m.result() == pytest.approx((0.25 + 1 + 4) / 4)
    a = MeanAbsoluteError()
    a.update_state(y, p, sample_weight=[1.0, 0.0])
    assert a.name == "mean_absolute_error" and a.result() == pytest.approx(0.25)


# ---- lookup ------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss, cls", [
    (losses.CategoricalCrossentropy(), CategoricalAccuracy),
    ("categorical_crossentropy", CategoricalAccuracy),
    (losses.CategoricalCrossentropy(from_logits=True), CategoricalAccuracy),
    (losses.SparseCategoricalCrossentropy(), SparseCategoricalAccuracy),
    ("sparse_categorical_crossentropy", SparseCategoricalAccuracy),
    (losses.SparseCategoricalCrossentropy, SparseCategoricalAccuracy),
    (losses.BinaryCrossentropy(from_logits=True), BinaryAccuracy),
    ("binary_crossentropy", BinaryAccuracy),
])
def test_get_accuracy_by_loss(loss, cls):
    for name in ("accuracy", "acc", "Accuracy"):
        m = metrics.get(name, loss=loss, output_shape=(None, 1))
        assert type(m) is cls and m.name == "accuracy"


def test_get_accuracy_by_output_shape():
    assert type(metrics.get("accuracy", loss="mse", output_shape=(None, 1))) is BinaryAccuracy
    assert type(metrics.get("accuracy", loss="mse", output_shape=(None, 10))) is CategoricalAccuracy
    assert type(metrics.get("acc", output_shape=(32, 5, 5, 1))) is BinaryAccuracy
    assert type(metrics.get("accuracy")) is CategoricalAccuracy
    assert type(metrics.get("accuracy", loss=lambda t, p: 0.0, output_shape=(None, 1))) is BinaryAccuracy


def test_get_names():
    for name, cls in [("categorical_accuracy", CategoricalAccuracy), ("binary_accuracy", BinaryAccuracy),
                      ("sparse_categorical_accuracy", SparseCategoricalAccuracy),
                      ("top_k_categorical_accuracy", TopKCategoricalAccuracy),
                      ("sparse_top_k_categorical_accuracy", SparseTopKCategoricalAccuracy),
                      ("mse", MeanSquaredError), ("mean_squared_error", MeanSquaredError),
                      ("mae", MeanAbsoluteError), ("mean_absolute_error", MeanAbsoluteError)]:
        m = metrics.get(name)
        assert type(m) is cls and m.name == name
    assert metrics.get("CategoricalAccuracy").name == "categorical_accuracy"
    assert metrics.get("TopKCategoricalAccuracy").k == 5
    ce = metrics.get("categorical_crossentropy")
    ce.update_state(ONE_HOT, P)
    assert ce.name == "categorical_crossentropy"
    assert ce.result() == pytest.approx(losses.CategoricalCrossentropy()(ONE_HOT, P))
    mse = metrics.get("mse")
    mse.update_state([[1.0], [3.0]], [[2.0], [3.0]])
    assert mse.result() == pytest.approx(0.5)


def test_get_instances_callables_and_errors():
    m = SparseTopKCategoricalAccuracy(k=3, name="top3")
    assert metrics.get(m) is m
    assert type(metrics.get(BinaryAccuracy)) is BinaryAccuracy
    wrapped = metrics.get(losses.mean_absolute_error)
    assert isinstance(wrapped, MeanMetricWrapper) and wrapped.name == "mean_absolute_error"
    wrapped.update_state([[0.0, 0.0]], [[1.0, 3.0]])
    assert wrapped.result() == 2.0
    as_loss = metrics.get(losses.BinaryCrossentropy(name="bce"))
    assert as_loss.name == "bce"
    with pytest.raises(ValueError) as err:
        metrics.get("precision")
    assert "unknown metric 'precision'" in str(err.value)
    for choice in ("accuracy", "categorical_accuracy", "mse", "top_k_categorical_accuracy"):
        assert choice in str(err.value)
    with pytest.raises(ValueError, match="unknown metric"):
        metrics.get(42)


@pytest.mark.parametrize("metric", [CategoricalAccuracy(name="ca"), BinaryAccuracy(threshold=0.3),
                                    TopKCategoricalAccuracy(k=2), SparseTopKCategoricalAccuracy(k=3),
                                    SparseCategoricalAccuracy(), Accuracy(), Mean(name="m"), MeanSquaredError(),
                                    MeanMetricWrapper(metrics.top_k_categorical_accuracy, name="t3", k=3)])
def test_config_round_trip(metric):
    ser = metrics.serialize(metric)
    again = metrics.deserialize(ser)
    assert type(again) is type(metric) and again.get_config() == metric.get_config()
    assert again.name == metric.name


def test_unserializable_wrapper():
    with pytest.raises(ValueError, match="cannot be serialized"):
        MeanMetricWrapper(lambda t, p: np.zeros(len(t)), name="custom").get_config()
