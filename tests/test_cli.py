"""The `cnnc` command: demo and config run end to end."""
import subprocess
import sys

from cnnc import cli


def run_cli(*args, cwd):
    # cwd outside the checkout, so the installed cnnc is imported rather than the source tree
    return subprocess.run([sys.executable, "-m", "cnnc.cli", *args], capture_output=True, text=True,
                          timeout=120, cwd=cwd)


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
    assert "simd" in out and "openmp" in out


def test_no_command_prints_help(capsys):
    assert cli.main([]) == 0
    assert "demo" in capsys.readouterr().out


def test_bad_batch_is_a_usage_error(tmp_path):
    r = run_cli("demo", "--batch", "0", cwd=tmp_path)
    assert r.returncode == 2
    assert "--batch" in r.stderr
