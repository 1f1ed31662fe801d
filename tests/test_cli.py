"""The `cnnc` command: demo and config run end to end."""
import os
import subprocess
import sys

import cnnc

from cnnc import cli


def run_cli(*args, cwd):
    # cwd outside the checkout, with the directory of the cnnc under test (installed or built in place)
    # first on the path, so the subprocess imports the same cnnc as the tests
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(cnnc.__file__)))
    return subprocess.run([sys.executable, "-m", "cnnc.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd, env=env)


def test_demo_prints_config_shapes_and_timings(tmp_path):
    r = run_cli("demo", "--batch", "3", "--repeat", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "SIMD path" in out and "thread" in out
    for shape in ("(3, 26, 26, 32)", "(3, 13, 13, 32)", "(3, 11, 11, 64)", "(3, 5, 5, 64)", "(3, 1600)",
                  "(3, 10)"):
        assert shape in out, shape
    assert "GFLOP/s" in out


def test_config_command(capsys):
    assert cli.main(["config"]) == 0
    out = capsys.readouterr().out
    assert "simd" in out and "thread_pool" in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_bad_batch_is_a_usage_error(tmp_path):
    r = run_cli("demo", "--batch", "0", cwd=tmp_path)
    assert r.returncode == 2
    assert "--batch" in r.stderr


def test_train_evaluate_predict_summary(tmp_path):
    import numpy as np
    model_path = tmp_path / "m.cnnc"
    r = run_cli("train", "--epochs", "1", "--verbose", "2", "--output", str(model_path), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Epoch 1/1" in r.stdout and "test accuracy:" in r.stdout and str(model_path) in r.stdout
    acc = float(r.stdout.split("test accuracy:")[1].split()[0])
    assert 0.3 < acc <= 1.0  # one epoch on the sample is far above chance (0.1)
    r = run_cli("evaluate", str(model_path), cwd=tmp_path)
    assert r.returncode == 0 and f"accuracy: {acc:.4f}" in r.stdout, r.stdout + r.stderr
    from cnnc.datasets import fashion_mnist
    _, (xte, yte) = fashion_mnist.load_sample()
    np.save(tmp_path / "imgs.npy", xte[:4])
    np.save(tmp_path / "one.npy", xte[0])
    r = run_cli("predict", str(model_path), str(tmp_path / "imgs.npy"), str(tmp_path / "one.npy"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 5 and "imgs.npy[3]: class" in lines[3] and "one.npy: class" in lines[4]
    r = run_cli("summary", str(model_path), cwd=tmp_path)
    assert r.returncode == 0 and "Total params: 93,322" in r.stdout


def test_predict_reads_image_files_through_pillow(tmp_path, monkeypatch, capsys):
    """PNG/JPEG go through Pillow when it is installed: exercised with a stand-in PIL module so the
    test does not depend on Pillow."""
    import types

    import numpy as np

    import cnnc
    from cnnc import zoo
    calls = []

    class FakeImage:
        def __init__(self, arr):
            self.arr = arr

        def convert(self, mode):
            calls.append(("convert", mode))
            return self

        def resize(self, size):
            calls.append(("resize", size))
            return FakeImage(np.full((size[1], size[0]), 200, np.uint8))

        def __array__(self, dtype=None, copy=None):
            return self.arr if dtype is None else self.arr.astype(dtype)

    image_mod = types.SimpleNamespace(open=lambda path: FakeImage(np.zeros((50, 40, 3), np.uint8)))
    monkeypatch.setitem(sys.modules, "PIL", types.SimpleNamespace(Image=image_mod))
    monkeypatch.setitem(sys.modules, "PIL.Image", image_mod)
    cnnc.utils.set_random_seed(0)
    model = zoo.chollet_cnn()
    path = tmp_path / "m.cnnc"
    model.save(path)
    assert cli.main(["predict", str(path), str(tmp_path / "shirt.png")]) == 0
    assert calls == [("convert", "L"), ("resize", (28, 28))]
    out = capsys.readouterr().out
    assert "shirt.png: class" in out
