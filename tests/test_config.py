"""show_config, the thread count, and the CNNC_ARCH / OMP_NUM_THREADS environment variables."""
import json
import textwrap

import numpy as np
import pytest

import cnnc


def test_show_config_keys_and_types(capsys):
    cfg = cnnc.show_config()
    printed = capsys.readouterr().out
    assert isinstance(cfg, dict)
    assert isinstance(cfg["version"], str) and cfg["version"]
    assert cfg["version"] == cnnc.__version__
    assert isinstance(cfg["thread_pool"], bool)
    assert isinstance(cfg["threads"], int) and not isinstance(cfg["threads"], bool)
    assert cfg["threads"] == cnnc.get_num_threads() >= 1
    assert cfg["simd"] in ("generic", "avx2", "avx512")
    for key in ("version", "thread_pool", "threads", "simd"):
        assert key in printed
    assert cfg["simd"] in printed and cfg["version"] in printed


def test_thread_count_round_trip(threads, capsys):
    pool = cnnc.show_config()["thread_pool"]
    threads(1)
    assert cnnc.get_num_threads() == 1
    if pool:
        threads(2)
        assert cnnc.get_num_threads() == 2
        threads(3)  # more threads than cores is allowed
        assert cnnc.get_num_threads() == 3
        assert cnnc.show_config()["threads"] == 3
    threads(1)
    assert cnnc.get_num_threads() == 1


@pytest.mark.parametrize("bad", [0, -1, -8])
def test_set_num_threads_rejects_non_positive(bad, threads):
    before = cnnc.get_num_threads()
    with pytest.raises(ValueError):
        cnnc.set_num_threads(bad)
    assert cnnc.get_num_threads() == before


CHILD = textwrap.dedent("""
    import json, warnings
    warnings.simplefilter("always")
    with warnings.catch_warnings(record=True) as caught:
        import cnnc
        import cnnc.nn as nn
    import numpy as np
    cfg = cnnc.show_config()
    r = np.random.default_rng(5)
    x = r.standard_normal((2, 9, 11, 5)).astype(np.float32)
    w = r.standard_normal((3, 3, 5, 19)).astype(np.float32)
    y = nn.conv2d(x, w, padding="same", strides=(1, 2), activation="tanh")
    yc = nn.conv2d(x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1), data_format="NCHW", dilations=2)
    m = nn.matmul(r.standard_normal((37, 300)), r.standard_normal((300, 29)))
    dx, dw, db = nn.conv2d_grad(x, w, np.ones_like(y), padding="same", strides=(1, 2))
    print("JSON" + json.dumps(dict(
        simd=cfg["simd"], threads=cfg["threads"], thread_pool=cfg["thread_pool"],
        warnings=[(w.category.__name__, str(w.message)) for w in caught],
        y=y.tolist(), yc=yc.tolist(), m=m.tolist(), dx=dx.tolist(), dw=dw.tolist())))
""")


_CACHE = {}


def _child(run_py, **env):
    """Run CHILD with the extra environment; results are cached per environment (each child costs
    an interpreter start-up)."""
    key = tuple(sorted(env.items()))
    if key not in _CACHE:
        _CACHE[key] = _run_child(run_py, env)
    return _CACHE[key]


def _run_child(run_py, env):
    proc = run_py(CHILD, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("JSON")][-1]
    out = json.loads(line[4:])
    return out, proc


def _compare(a, b, key):
    x, y = np.asarray(a[key], np.float64), np.asarray(b[key], np.float64)
    assert x.shape == y.shape
    # different micro-kernels sum in different orders: float32 rounding, relative to the magnitude
    scale = np.abs(y).max() + 1e-30
    assert np.allclose(x, y, rtol=1e-4, atol=1e-5 * scale), key


def test_cnnc_arch_generic_matches_default(run_py):
    default, _ = _child(run_py, CNNC_ARCH="")
    generic, _ = _child(run_py, CNNC_ARCH="generic")
    assert generic["simd"] == "generic"
    assert not [w for w in generic["warnings"] if w[0] == "RuntimeWarning"]
    for key in ("y", "yc", "m", "dx", "dw"):
        _compare(generic, default, key)


@pytest.mark.parametrize("arch", ["avx2", "avx512"])
def test_cnnc_arch_explicit(arch, run_py):
    """A supported ISA is honoured; an unsupported one warns and falls back. Either way it works."""
    out, _ = _child(run_py, CNNC_ARCH=arch)
    warned = [w for w in out["warnings"] if w[0] == "RuntimeWarning"]
    if out["simd"] == arch:
        assert not warned
    else:
        assert warned, f"CNNC_ARCH={arch} fell back to {out['simd']} without a RuntimeWarning"
    generic, _ = _child(run_py, CNNC_ARCH="generic")
    for key in ("y", "m"):
        _compare(out, generic, key)


def test_cnnc_arch_bogus_warns_and_works(run_py):
    out, proc = _child(run_py, CNNC_ARCH="bogus")
    warned = [w for w in out["warnings"] if w[0] == "RuntimeWarning"]
    assert warned, (out["warnings"], proc.stderr)
    assert any("bogus" in w[1] or "CNNC_ARCH" in w[1] for w in warned)
    assert out["simd"] in ("generic", "avx2", "avx512")
    generic, _ = _child(run_py, CNNC_ARCH="generic")
    _compare(out, generic, "y")


def test_omp_num_threads_sets_default(run_py):
    out, _ = _child(run_py, OMP_NUM_THREADS="1")
    assert out["threads"] == 1
    if out["thread_pool"]:
        out2, _ = _child(run_py, OMP_NUM_THREADS="2")
        assert out2["threads"] == 2
        # and the results do not depend on it
        for key in ("y", "yc", "m", "dx", "dw"):
            assert out[key] == out2[key], key


def test_thread_limit_applies_to_the_calling_thread_only():
    import threading

    from cnnc import _config, _core
    cnnc.set_num_threads(2)
    seen = {}

    def other():
        seen["other"] = _core.effective_threads()

    with _config.thread_limit(1):
        assert _core.effective_threads() == 1
        with _config.thread_limit(2):
            assert _core.effective_threads() == 2
        assert _core.effective_threads() == 1
        t = threading.Thread(target=other)
        t.start()
        t.join()
    assert seen["other"] == 2 and _core.effective_threads() == 2
    with pytest.raises(ValueError, match="thread_limit"):
        with _config.thread_limit(0):
            pass
