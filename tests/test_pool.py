"""The thread pool behind the C core's parallel loops (src_c/threads.c).

tests/c/pool_check.c exercises the pool on its own - every item once, slots, nested loops, several
submitting threads, a stalled participant, create/free - built plainly and under ThreadSanitizer, which
also checks the pool's memory ordering. From Python: results do not depend on the pool's size, a
forked child computes with threads of its own, and Python threads share the process's pool.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest

import cnnc
from cnnc import _core, nn

ROOT = Path(__file__).resolve().parents[1]
needs_pool = pytest.mark.skipif(not _core.has_threads(), reason="built without threads")


def _build_and_run(extra_flags, env=None):
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        pytest.skip(f"no C compiler ({cc!r})")
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "pool_check"
        args = [cc, "-std=c11", "-pthread", "-Wall", "-Werror", *extra_flags, f"-I{ROOT / 'src_c'}",
                str(ROOT / "tests" / "c" / "pool_check.c"), str(ROOT / "src_c" / "threads.c"), "-o", str(exe)]
        r = subprocess.run(args, capture_output=True, text=True)
        if r.returncode != 0 and "-fsanitize=thread" in extra_flags:
            pytest.skip(f"ThreadSanitizer not available: {r.stderr[-300:]}")
        assert r.returncode == 0, r.stderr
        r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=600,
                           env=dict(os.environ, **(env or {})))
        assert r.returncode == 0 and r.stdout.strip() == "ok", (r.stdout[-2000:], r.stderr[-4000:])
        return r


@needs_pool
def test_pool_check_program():
    _build_and_run(["-O2"])


@needs_pool
def test_pool_check_program_spin_zero():
    """Workers that sleep at once (CNNC_SPIN_US=0) exercise the sleep and wake path on every loop."""
    _build_and_run(["-O2"], env={"CNNC_SPIN_US": "0"})


@needs_pool
def test_pool_check_program_thread_sanitizer():
    r = _build_and_run(["-O1", "-g", "-fsanitize=thread"], env={"TSAN_OPTIONS": "halt_on_error=1"})
    assert "ThreadSanitizer" not in r.stderr, r.stderr[-4000:]


def _mixed_ops(rng):
    x = rng.standard_normal((5, 13, 11, 7)).astype(np.float32)
    w = rng.standard_normal((3, 3, 7, 19)).astype(np.float32)
    y = nn.conv2d(x, w, padding="same", activation="relu")
    m = nn.matmul(rng.standard_normal((67, 300)).astype(np.float32),
                  rng.standard_normal((300, 45)).astype(np.float32))
    dx, dw, db = nn.conv2d_grad(x, w, np.ones_like(y), padding="same")
    return [y, m, dx, dw, db, nn.relu(rng.standard_normal(50001).astype(np.float32))]


@needs_pool
def test_results_do_not_depend_on_pool_size(threads):
    """Calls with 2 threads on pools of 2 and of 5 threads, and with 5 threads: the same bits."""
    threads(1)
    ref = _mixed_ops(np.random.default_rng(3))
    for n in (2, 5, 2):
        threads(n)
        for a, b in zip(ref, _mixed_ops(np.random.default_rng(3))):
            assert np.array_equal(a, b)
    assert _core.pool_threads() >= 5


@needs_pool
@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_forked_child_computes_with_its_own_threads(tmp_path):
    """A child forked after the parent's pool exists has none of its threads: it makes its own."""
    code = r"""
import os, sys, numpy as np, cnnc
from cnnc import _core, nn
def ops():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((5, 13, 11, 7)).astype(np.float32)
    w = rng.standard_normal((3, 3, 7, 19)).astype(np.float32)
    return [nn.conv2d(x, w, padding="same", activation="relu"),
            nn.relu(rng.standard_normal(50001).astype(np.float32))]
cnnc.set_num_threads(2)
ref = ops()
assert _core.pool_threads() == 2
pid = os.fork()
if pid == 0:
    ok = _core.pool_threads() == 1  # the parent's workers do not exist here
    out = ops()
    ok = ok and _core.pool_threads() == 2 and all(np.array_equal(a, b) for a, b in zip(ref, out))
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print("child", os.waitstatus_to_exitcode(status))
"""
    # run where this process imports cnnc from (an installed copy, or the built source tree)
    env = dict(os.environ, PYTHONPATH=str(Path(cnnc.__file__).resolve().parents[1]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env=env)
    assert r.returncode == 0 and "child 0" in r.stdout, (r.stdout, r.stderr[-3000:])


@needs_pool
def test_python_threads_share_the_pool(threads):
    """Four Python threads computing at once on one pool (calls that find it busy run on their own
    thread): every result equals the one-thread result."""
    threads(1)
    refs = [_mixed_ops(np.random.default_rng(s)) for s in range(4)]
    threads(2)
    errors = []

    def work(seed):
        try:
            for _ in range(3):
                out = _mixed_ops(np.random.default_rng(seed))
                if not all(np.array_equal(a, b) for a, b in zip(refs[seed], out)):
                    errors.append(f"thread {seed}: results differ")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    ts = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors, errors


def test_no_threads_build_reports_itself():
    cfg = cnnc.show_config(False)
    assert cfg["thread_pool"] == _core.has_threads()
    if not cfg["thread_pool"]:
        assert cfg["threads"] == 1
