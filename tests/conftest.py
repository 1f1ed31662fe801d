"""Shared fixtures for the cnnc core-op tests."""
import warnings
import zlib

import numpy as np
import pytest


@pytest.fixture
def rng(request):
    """A generator seeded from the test's id: reproducible, but different per test/parameter set."""
    return np.random.default_rng(zlib.crc32(request.node.nodeid.encode()))


@pytest.fixture
def threads():
    """set(n) changes cnnc's thread count for the test; the previous count is restored afterwards."""
    import cnnc

    old = cnnc.get_num_threads()

    def set_threads(n):
        cnnc.set_num_threads(n)
        assert cnnc.get_num_threads() == n

    yield set_threads
    cnnc.set_num_threads(old)


@pytest.fixture
def isa():
    """use(name) switches cnnc's ISA path ('generic', 'avx2', ...) for the test, skipping the test when
    this machine cannot run that path; the previous path is restored afterwards."""
    from cnnc import _core

    before = _core.arch_name()

    def use(name):
        with warnings.catch_warnings():  # the warning of a fallback: the test skips instead
            warnings.simplefilter("ignore", RuntimeWarning)
            got = _core._init_arch(name)
        if got != name:
            _core._init_arch(before)
            pytest.skip(f"{name} is not available here")

    yield use
    _core._init_arch(before)


@pytest.fixture
def isa_paths():
    """The ISA paths this CPU and build run, 'generic' first: a test loops over them with isa(name)."""
    from cnnc import _core

    return [a for a in ("generic", "avx2", "avx512") if _core.cpu_supports(a)]


@pytest.fixture
def run_py():
    """run(code, env=None, timeout=120) -> CompletedProcess of `python -c code` in a fresh process
    that imports the same cnnc as this one (so a crash fails the test instead of killing pytest)."""
    import os
    import subprocess
    import sys

    import cnnc

    root = os.path.dirname(os.path.dirname(os.path.abspath(cnnc.__file__)))

    def run(code, env=None, timeout=120):
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = root + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.update(env or {})
        return subprocess.run([sys.executable, "-c", code], env=full_env, cwd=root,
                              capture_output=True, text=True, timeout=timeout)

    return run
