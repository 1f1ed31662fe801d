"""`cnnc bench` runs end to end on a tiny subset and prints its table; no timing is ever asserted."""
import importlib.util
import platform
import sys

import pytest

from cnnc import bench
from cnnc.bench import COLUMNS
from test_cli import run_cli

HAS = {m: importlib.util.find_spec(m) is not None for m in ("torch", "onnx", "onnxruntime")}


def _table(lines):
    """The table's header and data rows, split on the column separator."""
    start = next(i for i, l in enumerate(lines) if l.startswith("bench "))
    return lines[start].split(), [l for l in lines[start + 1:] if l.strip()]


def test_quick_subset_table(capsys):
    rows = bench.run(threads=[1], reps=1, models=["chollet"], sizes=["48x40x32"], batches=[2])
    out = capsys.readouterr().out.splitlines()
    assert any(l.startswith("cnnc ") and "SIMD" in l for l in out)
    assert any(l.startswith("versions: numpy") for l in out)
    header, lines = _table(out)
    assert " ".join(header).startswith("bench case thr cnnc path cnnc ms reference ref ms")
    assert [(r["bench"], r["case"], r["threads"]) for r in rows] == [
        ("gemm", "48x40x32", 1), ("infer", "chollet b=2", 1), ("train", "chollet b=64", 1)]
    assert len(lines) == len(rows)
    for r, line in zip(rows, lines):
        case = r["case"].split()
        assert line.split()[:len(case) + 2] == [r["bench"], *case, str(r["threads"])]
        assert r["ours_s"] > 0 and r["flop"] > 0
    gemm, infer, train = rows
    assert gemm["ref"].startswith("numpy.matmul") and gemm["ref_s"] > 0
    if HAS["onnx"] and HAS["onnxruntime"]:
        assert infer["ref"] == "onnxruntime" and infer["ref_s"] > 0 and "max|diff|" in infer["note"]
    else:
        assert infer["ref"] is None and "ONNX Runtime skipped" in infer["note"]
        assert "skipped" in lines[1]
    if HAS["torch"]:
        assert train["ref"] == "torch" and train["ref_s"] > 0
        loss_cnnc, loss_torch = (float(train["note"].split()[i]) for i in (3, 5))
        assert loss_cnnc == pytest.approx(loss_torch, rel=1e-4)  # same network, same initial weights
    else:
        assert train["ref"] is None and "PyTorch skipped" in train["note"]


def test_missing_optional_libraries_are_skipped(monkeypatch, capsys):
    for name in ("torch", "onnxruntime"):
        monkeypatch.setitem(sys.modules, name, None)  # `import name` now raises ImportError
    rows = bench.run(only=("infer", "train"), threads=[1], reps=1, models=["chollet"], batches=[1])
    out = capsys.readouterr().out
    infer, train = rows
    assert infer["ref_s"] is None and "onnxruntime" in infer["note"] and infer["ours_s"] > 0
    assert train["ref_s"] is None and "torch" in train["note"] and train["ours_s"] > 0
    assert out.count("skipped") >= 2 and 'cnnc[bench]' in out


def test_geron_has_a_torch_twin():
    torch = pytest.importorskip("torch")
    import numpy as np
    model = bench._model("geron")
    net = bench._torch_net(torch, model).eval()
    x = np.random.default_rng(0).random((2, 28, 28, 1), dtype=np.float32)
    with torch.no_grad():
        y = torch.softmax(net(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())), 1).numpy()
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-5)


def test_cli_bench_quick_gemm(tmp_path):
    r = run_cli("bench", "--quick", "--only", "gemm", "--sizes", "32x16x8", "--threads", "1", "2", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    header, lines = _table(r.stdout.splitlines())
    assert len(header) >= len(COLUMNS) and [l.split()[:3] for l in lines] == [["gemm", "32x16x8", "1"],
                                                                              ["gemm", "32x16x8", "2"]]
    assert "OPENBLAS_THREAD_TIMEOUT=4" in r.stdout  # rerun in a child process with the timeout set
    if platform.libc_ver()[0] == "glibc":
        assert "malloc keeps freed memory" in r.stdout


def test_cli_bench_bad_sizes(tmp_path):
    r = run_cli("bench", "--only", "gemm", "--sizes", "12x3", cwd=tmp_path)
    assert r.returncode != 0 and "MxNxK" in r.stderr


def test_depthwise_rows(monkeypatch, capsys):
    """`--only depthwise`: an inference row against ONNX Runtime and a training row against PyTorch per
    layer, each reference's results checked against cnnc's first."""
    monkeypatch.setattr(bench, "DEPTHWISE", [(8, 12, 1), (16, 9, 2)])
    rows = bench.run(only=("depthwise",), threads=[1], reps=1)
    assert [r["case"] for r in rows] == ["infer 8x12x12 s1 b=1", f"train 8x12x12 s1 b={bench.DEPTHWISE_TRAIN_BATCH}",
                                         "infer 16x9x9 s2 b=1", f"train 16x9x9 s2 b={bench.DEPTHWISE_TRAIN_BATCH}"]
    for r in rows:
        assert r["ours_s"] > 0 and r["flop"] > 0
        ref = "onnxruntime" if r["case"].startswith("infer") else "torch"
        if HAS[ref]:
            assert r["ref"] == ref and r["ref_s"] > 0
            assert float(r["note"].split()[-1]) < 1e-4, r["note"]
        else:
            assert r["ref"] is None and "skipped" in r["note"]
    assert "depthwise" in capsys.readouterr().out
