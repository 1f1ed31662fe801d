"""The deployment runtime used from C (issue 7).

src_c/Makefile builds libcnnc.a and the example programs without Python; examples/classify_fashion.c
and examples/run_bundle.c must give the outputs of cnnc.deploy.Runtime, the model's predict and
cnnc.onnx.InferenceSession. The same programs built with AddressSanitizer + UBSan (leak checks on,
two threads: the thread pool is created and freed with each model) must run clean, and refuse malformed bundles with an error code and a message - never a
crash or a sanitizer report. tools/fuzz_bundle.c, built as a plain program, replays thousands of
corrupted bundles in one process.

Float comparisons use rtol=1e-5 with atol=1e-6: the C programs and the Python paths run the same
kernels, but softmax outputs near zero (1e-6 and below) make a pure relative bound meaningless.
"""
import gzip
import os
import re
import shutil
import struct
import subprocess
import tempfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from cnnc import deploy, layers, models, zoo
from cnnc.utils import set_random_seed
from cnnc.onnx._random import randomized_weights

ROOT = Path(__file__).resolve().parents[1]
SRC_C = ROOT / "src_c"
BUILDS = {"opt": "build", "asan": "build/asan"}
RTOL, ATOL = 1e-5, 1e-6
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "UndefinedBehaviorSanitizer", "runtime error:")
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1", "OMP_NUM_THREADS": "2"}

# ---- toolchain and builds -------------------------------------------------------------------------


def _toolchain_problem():
    """None, or why the C programs cannot be built here (the only reasons to skip)."""
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        return f"no C compiler ({cc!r} not found)"
    if not shutil.which("make"):
        return "no make"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        src.write_text("#include <zlib.h>\nint main(void) { return gzopen(\"\", \"rb\") != 0; }\n")
        r = subprocess.run([cc, str(src), "-o", str(Path(tmp) / "probe"), "-lz"], capture_output=True, text=True)
        if r.returncode != 0:
            return f"no zlib development files (zlib.h / -lz; Debian: zlib1g-dev): {r.stderr.strip()[:200]}"
    return None


_built = {}


def _build(kind):
    """Build (incrementally: make tracks header dependencies) into src_c/<BUILDS[kind]>/."""
    if kind not in _built:
        problem = _toolchain_problem()
        if problem:
            pytest.skip(problem)
        args = ["make", "-C", str(SRC_C), "-j2", f"BUILD={BUILDS[kind]}"]
        if kind == "asan":
            args += ["SANITIZE=address,undefined", "lib-static", "example", "fuzz-replay"]
        else:
            args += ["all", "example"]
        r = subprocess.run(args, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        _built[kind] = SRC_C / BUILDS[kind]
    return _built[kind]


def _run(kind, prog, *args, timeout=120):
    exe = _build(kind) / prog
    env = dict(os.environ)
    if kind == "asan":
        env.update(SAN_ENV)
    r = subprocess.run([str(exe), *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout)
    for marker in SANITIZER_MARKERS:
        assert marker not in r.stderr, f"{prog} {args}: sanitizer report:\n{r.stderr[-4000:]}"
    assert r.returncode >= 0, f"{prog} {args}: killed by signal {-r.returncode}:\n{r.stderr[-2000:]}"
    return r


# ---- data and models -----------------------------------------------------------------------------


def write_idx(path, array, gz):
    """An IDX file of unsigned bytes (the MNIST format), gzip'ed or not."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    data = struct.pack(">BBBB", 0, 0, 8, a.ndim) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(data)


def _set_size_and_crc(b):
    """Give edited bundle bytes the file size and checksum the reader expects."""
    b = bytearray(b)
    b[16:24] = struct.pack("<Q", len(b))
    b[24:28] = struct.pack("<I", zlib.crc32(bytes(b[32:])) & 0xFFFFFFFF)
    return bytes(b)


def tiny_model():
    set_random_seed(3)
    m = models.Sequential([layers.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="relu"), layers.MaxPooling2D(2),
                           layers.Flatten(), layers.Dense(3, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
    return m


@pytest.fixture(scope="module")
def fashion_case(tmp_path_factory):
    """A chollet CNN saved as .cnnc and bundled from that file, 300 IDX test images and labels."""
    tmp = tmp_path_factory.mktemp("fashion")
    set_random_seed(0)
    model = zoo.chollet_cnn()
    model.compile("rmsprop", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    # a quick fit so the weights are not just their initial values
    xt = rng.random((64, 28, 28, 1), dtype=np.float32)
    model.fit(xt, rng.integers(0, 10, 64), epochs=1, batch_size=32, verbose=0)
    model.save(str(tmp / "fashion.cnnc"))
    deploy.bundle(str(tmp / "fashion.cnnc"), tmp / "fashion.cnnb")
    images = rng.integers(0, 256, (300, 28, 28), dtype=np.uint8)
    images[:, 10:18, 10:18] = 255  # some structure, some saturated pixels
    labels = rng.integers(0, 10, 300).astype(np.uint8)
    write_idx(tmp / "images.idx3.gz", images, gz=True)
    write_idx(tmp / "labels.idx1", labels, gz=False)
    x = (images.astype(np.float32) / np.float32(255.0))[..., None]
    return tmp, model, x, labels


@pytest.fixture(scope="module")
def squeezenet_case(tmp_path_factory):
    onnx = pytest.importorskip("onnx")
    path = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx"
    if not path.exists():
        pytest.skip(f"{path} is not in this onnx package")
    tmp = tmp_path_factory.mktemp("squeezenet")
    data = randomized_weights(onnx.load(str(path))).SerializeToString()
    deploy.bundle(data, tmp / "sq.cnnb")
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    x.tofile(tmp / "x.f32")
    from cnnc.onnx import InferenceSession
    sess = InferenceSession(data)
    expected = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    assert expected.std() > 1e-4  # the check below means something
    return tmp, x, expected


# ---- the programs against the Python paths ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["opt", "asan"])
def test_classify_fashion_matches_runtime_and_predict(kind, fashion_case):
    tmp, model, x, labels = fashion_case
    dump = tmp / f"out_{kind}.f32"
    r = _run(kind, "classify_fashion", tmp / "fashion.cnnb", tmp / "images.idx3.gz", tmp / "labels.idx1",
             "--batch", 128, "--threads", 2, "--dump", dump)  # 128 + 128 + a partial batch of 44
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    got = np.fromfile(dump, dtype=np.float32).reshape(300, 10)
    runtime = deploy.Runtime(tmp / "fashion.cnnb").run(x)
    np.testing.assert_allclose(got, runtime, rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(got, model.predict(x, verbose=0), rtol=RTOL, atol=ATOL)
    correct = int((got.argmax(axis=1) == labels).sum())
    assert f"accuracy {correct / 300:.4f} ({correct} / 300)" in r.stdout
    assert re.search(r"inference [0-9.]+ s for 300 images in batches of 128", r.stdout)


def test_classify_fashion_latency_and_batch_one(fashion_case):
    tmp, _, x, _ = fashion_case
    dump = tmp / "out_b1.f32"
    r = _run("opt", "classify_fashion", tmp / "fashion.cnnb", tmp / "images.idx3.gz", tmp / "labels.idx1",
             "--batch", 1, "--limit", 20, "--latency", "--runs", 5, "--dump", dump)
    assert r.returncode == 0, r.stderr
    assert re.search(r"latency batch 1: median [0-9.]+ ms, min [0-9.]+ ms over 5 runs", r.stdout)
    got = np.fromfile(dump, dtype=np.float32).reshape(20, 10)
    np.testing.assert_allclose(got, deploy.Runtime(tmp / "fashion.cnnb").run(x[:20]), rtol=RTOL, atol=ATOL)


def test_classify_fashion_reports_bad_input(fashion_case, tmp_path):
    tmp, *_ = fashion_case
    write_idx(tmp_path / "labels.idx1", np.zeros(7, np.uint8), gz=False)
    r = _run("opt", "classify_fashion", tmp / "fashion.cnnb", tmp / "images.idx3.gz", tmp_path / "labels.idx1")
    assert r.returncode == 2 and "300 images but 7 labels" in r.stderr
    (tmp_path / "bad.cnnb").write_bytes(b"CNNCBNDL" + bytes(100))
    r = _run("opt", "classify_fashion", tmp_path / "bad.cnnb", tmp / "images.idx3.gz", tmp / "labels.idx1")
    assert r.returncode == 1
    assert "cannot load" in r.stderr and "bundle format version 0" in r.stderr
    sq = deploy.bundle_bytes(tiny_model())  # 6x6 inputs: not 28x28 images
    (tmp_path / "tiny.cnnb").write_bytes(sq)
    r = _run("opt", "classify_fashion", tmp_path / "tiny.cnnb", tmp / "images.idx3.gz", tmp / "labels.idx1")
    assert r.returncode == 1 and "the images are 28x28" in r.stderr


@pytest.mark.parametrize("kind", ["opt", "asan"])
def test_run_bundle_onnx_squeezenet_matches_inference_session(kind, squeezenet_case):
    tmp, x, expected = squeezenet_case
    out = tmp / f"y_{kind}.f32"
    r = _run(kind, "run_bundle", tmp / "sq.cnnb", "--input", tmp / "x.f32", "--output", out)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert "output 0 softmaxout_1: [1, 1000, 1, 1]" in r.stdout
    got = np.fromfile(out, dtype=np.float32).reshape(expected.shape)
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    r = _run(kind, "run_bundle", tmp / "sq.cnnb", "--batch", 2)  # a fixed-batch model
    assert r.returncode == 1 and "takes only batch 1" in r.stderr


def test_run_bundle_batches_and_threads(tmp_path):
    """Batch 5 through run_bundle equals Runtime, for 1 and 2 threads; a short input file is refused."""
    m = tiny_model()
    (tmp_path / "t.cnnb").write_bytes(deploy.bundle_bytes(m))
    x = np.random.default_rng(2).random((5, 6, 6, 1), dtype=np.float32)
    x.tofile(tmp_path / "x.f32")
    expected = deploy.Runtime(tmp_path / "t.cnnb").run(x)
    for threads in (1, 2):
        r = _run("opt", "run_bundle", tmp_path / "t.cnnb", "--input", tmp_path / "x.f32", "--batch", 5,
                 "--threads", threads, "--output", tmp_path / "y.f32", "--repeat", 3)
        assert r.returncode == 0, r.stderr
        assert "median" in r.stdout
        got = np.fromfile(tmp_path / "y.f32", dtype=np.float32).reshape(5, 3)
        np.testing.assert_allclose(got, expected, rtol=RTOL, atol=ATOL)
    r = _run("opt", "run_bundle", tmp_path / "t.cnnb", "--input", tmp_path / "x.f32", "--batch", 6)
    assert r.returncode == 2 and "take 864" in r.stderr


def test_bundle_without_weights_loads_but_needs_its_constants(tmp_path):
    """A bundle written without weights (what predict uses internally): cnnc_model_run refuses it
    with CNNC_ESTATE and its message, under ASan + UBSan."""
    g = deploy._lower.from_sequential(tiny_model())
    (tmp_path / "ext.cnnb").write_bytes(g.to_bytes(external_consts=True))
    r = _run("asan", "run_bundle", tmp_path / "ext.cnnb")
    assert r.returncode == 1, r.stderr
    assert "run: model not ready" in r.stderr and "cnnc_model_run_consts" in r.stderr
    assert "ERROR: AddressSanitizer" not in r.stderr and "runtime error" not in r.stderr


def _new_ops_model():
    """ONNX model using the ops lowered to max/min, sqrt and broadcasting matmul: BatchNormalization and
    Clip with run-time parameters, MatMul by a 1-D operand and by a lower-rank one."""
    from onnx import TensorProto, helper
    f = TensorProto.FLOAT
    nodes = [helper.make_node("BatchNormalization", ["x", "scale", "bias", "mean", "var"], ["bn"], epsilon=1e-3),
             helper.make_node("Clip", ["bn", "lo", "hi"], ["c"]),
             helper.make_node("MatMul", ["c", "w"], ["v"]),
             helper.make_node("MatMul", ["c", "z"], ["u"])]
    inputs = [("x", ["N", 3, 4, 5]), ("scale", [3]), ("bias", [3]), ("mean", [3]), ("var", [3]), ("lo", []),
              ("hi", []), ("w", [5]), ("z", [3, 5, 2])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(n, f, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, f, None) for n in ("c", "v", "u")])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]).SerializeToString()
    rng = np.random.default_rng(5)
    feeds = {n: rng.standard_normal([2 if d == "N" else d for d in s]).astype(np.float32) for n, s in inputs}
    feeds["var"] = np.abs(feeds["var"]) + np.float32(0.1)
    feeds["lo"], feeds["hi"] = np.float32(-0.7), np.float32(0.9)
    return data, feeds


@pytest.mark.parametrize("kind", ["opt", "asan"])
def test_run_bundle_new_ops_match_runtime_and_session(kind, tmp_path):
    pytest.importorskip("onnx")
    from cnnc.onnx import InferenceSession
    data, feeds = _new_ops_model()
    (tmp_path / "m.cnnb").write_bytes(deploy.bundle_bytes(data))
    np.concatenate([v.reshape(-1) for v in feeds.values()]).tofile(tmp_path / "in.f32")
    r = _run(kind, "run_bundle", tmp_path / "m.cnnb", "--input", tmp_path / "in.f32", "--batch", 2,
             "--output", tmp_path / "out.f32")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    ref = InferenceSession(data).run(None, feeds)
    got = np.fromfile(tmp_path / "out.f32", dtype=np.float32)
    assert got.size == sum(a.size for a in ref)
    runtime = deploy.Runtime(tmp_path / "m.cnnb").run(dict(feeds))
    at = 0
    for want, rt in zip(ref, runtime):
        np.testing.assert_allclose(got[at:at + want.size].reshape(want.shape), want, rtol=RTOL, atol=ATOL)
        np.testing.assert_allclose(got[at:at + want.size].reshape(want.shape), rt, rtol=RTOL, atol=ATOL)
        at += want.size
    assert (ref[0] == np.float32(0.9)).any() and (ref[0] != np.float32(0.9)).any()  # the clip binds somewhere


# ---- malformed bundles under ASan + UBSan ----------------------------------------------------------


def _malformed_cases(good):
    """(label, bytes, expected words in the message) for run_bundle."""
    n = len(good)
    woff = struct.unpack_from("<q", good, 64)[0]
    cases = []
    for cut in sorted({0, 1, 7, 8, 31, 32, 79, 80, 81, 200, woff - 1, woff, woff + 1, n - 5, n - 1}):
        cases.append((f"truncated at {cut}", good[:cut], ""))
        if cut >= 32:  # the size and checksum rewritten: the section bounds must catch it
            cases.append((f"truncated at {cut}, header fixed", _set_size_and_crc(good[:cut]), ""))
    for version in (0, 2, 0xFFFFFFFF):
        b = bytearray(good)
        b[8:12] = struct.pack("<I", version)
        cases.append((f"version {version}", bytes(b), "version"))

    def edit(offset, fmt, value):
        b = bytearray(good)
        struct.pack_into(fmt, b, offset, value)
        return _set_size_and_crc(b)

    for field, off in (("values", 32), ("ops", 36), ("inputs", 40), ("outputs", 44)):
        for value in (0, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF):
            if field == "ops" and value == 0:
                continue  # no ops is structurally fine; the outputs are then never computed (checked)
            cases.append((f"{value} {field}", edit(off, "<I", value), ""))
    cases.append(("external-constants flag on a bundle with weights", edit(28, "<I", 1), "weights"))
    cases.append(("unknown header flag 2", edit(28, "<I", 2), "flags"))
    cases.append(("fixed batch -1", edit(48, "<q", -1), "batch"))
    cases.append(("plan batch 0", edit(56, "<q", 0), "batch"))
    cases.append(("weights offset past the end", edit(64, "<q", n + 64), "weights"))
    cases.append(("weights size too large", edit(72, "<q", 1 << 62), "weights"))
    v0 = 80  # value 0: the graph input
    cases.append(("value kind 9", edit(v0, "<i", 9), "value 0"))
    cases.append(("rank 9", edit(v0 + 8, "<i", 9), "value 0"))
    cases.append(("batch axis 5 of rank 4", edit(v0 + 12, "<i", 5), "value 0"))
    cases.append(("dimension 2**62", edit(v0 + 16 + 8, "<q", 1 << 62), ""))
    cases.append(("negative dimension", edit(v0 + 24, "<q", -3), "bad dimension"))
    for pos in range(33, n, 97):  # plain corruption: the checksum catches it
        b = bytearray(good)
        b[pos] ^= 0xFF
        cases.append((f"byte {pos} flipped", bytes(b), "checksum"))
    return cases


def test_malformed_bundles_fail_cleanly_under_asan(tmp_path):
    good = deploy.bundle_bytes(tiny_model())
    (tmp_path / "good.cnnb").write_bytes(good)
    r = _run("asan", "run_bundle", tmp_path / "good.cnnb")
    assert r.returncode == 0 and r.stderr == "", r.stderr
    cases = _malformed_cases(good)
    for i, (_, data, _) in enumerate(cases):
        (tmp_path / f"bad{i}.cnnb").write_bytes(data)

    def one(i):
        return _run("asan", "run_bundle", tmp_path / f"bad{i}.cnnb", timeout=60)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(one, range(len(cases))))
    for (label, _, words), res in zip(cases, results):
        assert res.returncode == 1, f"{label}: exit {res.returncode}\n{res.stdout}\n{res.stderr}"
        m = re.search(r"cannot load \S+: ([^:]+): (.+)", res.stderr)
        assert m and m.group(2).strip(), f"{label}: no error message: {res.stderr!r}"
        assert words in m.group(2), f"{label}: {res.stderr!r}"


def _replay(tmp_path, files, fix_crc=False):
    """Run the fuzz harness (plain ASan build) over files; returns {path: (load, arena, run)}."""
    folder = tmp_path / ("fixed" if fix_crc else "raw")
    folder.mkdir(exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    r = _run("asan", "fuzz_replay", *(["--fix-crc"] if fix_crc else []), folder, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    out = {}
    for line in r.stdout.splitlines():
        load, arena, run, path = line.split(" ", 3)
        out[Path(path).name] = (int(load[5:]), arena[6:], run[4:])
    assert set(out) == set(files)
    return out


def test_every_byte_flip_and_truncation_under_asan(tmp_path):
    """Every single-byte corruption and every truncation of a small bundle: with the checksum left as
    it is, each one fails to load; with size and checksum rewritten (deeper parsing), none crashes, and a
    bundle that loads and plans also runs."""
    good = deploy.bundle_bytes(tiny_model())
    files = {"good": good}
    for pos in range(len(good)):
        b = bytearray(good)
        b[pos] ^= 0xFF if pos % 2 else 0x01
        files[f"flip{pos:05d}"] = bytes(b)
    for cut in range(len(good)):
        files[f"cut{cut:05d}"] = good[:cut]
    raw = _replay(tmp_path, files)
    fixed = _replay(tmp_path, files, fix_crc=True)
    for result in (raw.pop("good"), fixed.pop("good")):
        assert result[0] == 0 and int(result[1]) > 0 and result[2] == "0", result
    loaded_raw = [k for k, v in raw.items() if v[0] == 0]
    assert not loaded_raw, f"corrupted bundles that loaded: {loaded_raw[:10]}"
    assert all(v[0] != 0 for k, v in fixed.items() if k.startswith("cut"))
    bad_runs = [(k, v) for k, v in fixed.items() if v[2] not in ("0", "-")]
    assert not bad_runs, f"bundles that loaded and planned but failed to run: {bad_runs[:10]}"
    # flips in the weights give valid models, flips elsewhere mostly fail: both kinds occur
    n_loaded = sum(v[0] == 0 for v in fixed.values())
    assert 0 < n_loaded < len(fixed)


@pytest.mark.parametrize("name, stride", [("torch_mobilenet", 5), ("torch_squeezenet", 11)])
def test_structure_flips_of_onnx_bundles_under_asan(tmp_path, name, stride):
    """Bundles of the PyTorch-exported test models (concat, residual adds, squeeze-excitation muls,
    clips...): a sample of single-byte corruptions of everything before the weights, size and checksum
    rewritten. None crashes; whatever loads and plans also runs."""
    path = ROOT / "tests" / "data" / "onnx" / f"{name}.onnx"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    fixed = _structure_flips(tmp_path, deploy.bundle_bytes(str(path)), stride)
    assert any(v[0] != 0 for v in fixed.values())


def _structure_flips(tmp_path, good, stride=1):
    """Replay every stride-th single-byte corruption before the weights of a bundle, size and checksum
    rewritten; asserts that whatever loads and plans also runs; returns the replay results."""
    woff = struct.unpack_from("<q", good, 64)[0]
    files = {}
    for pos in range(32, woff, stride):
        b = bytearray(good)
        b[pos] ^= 0xFF if pos % 2 else 0x01
        files[f"flip{pos:05d}"] = bytes(b)
    fixed = _replay(tmp_path, files, fix_crc=True)
    bad_runs = [(k, v) for k, v in fixed.items() if v[2] not in ("0", "-")]
    assert not bad_runs, f"bundles that loaded and planned but failed to run: {bad_runs[:10]}"
    return fixed


def test_structure_flips_of_a_bundle_with_the_newer_ops_under_asan(tmp_path):
    """Every single-byte corruption before the weights of the bundle of _new_ops_model (max/min, sqrt,
    broadcasting matmul, aliases of 1-D operands), size and checksum rewritten: none crashes; whatever
    loads and plans also runs."""
    pytest.importorskip("onnx")
    fixed = _structure_flips(tmp_path, deploy.bundle_bytes(_new_ops_model()[0]))
    n_loaded = sum(v[0] == 0 for v in fixed.values())
    assert 0 < n_loaded < len(fixed)


def _crafted_bundles():
    """Bundles that are well formed but absurd, one per bug the sanitizers found in src_c/model.c:
    (label, bytes, words expected in the load message, or None when the bundle must load and run)."""
    from cnnc.deploy import _format as F
    big = (1 << 63) - 1
    out = []
    # 20 tensors of 2**59 bytes alive at once: the arena plan passes INT64_MAX
    g = F.Graph()
    x = g.input("x", (1, 1 << 57), 0)
    vs = [g.op(F.OP_ACT, [x], (1, 1 << 57), 0, ints=[1], floats=[0, 0]) for _ in range(20)]
    w = vs[0]
    for v in vs[1:]:
        w = g.op(F.OP_BINARY, [w, v], (1, 1 << 57), 0, ints=[F.BIN_ADD])
    g.set_outputs([("y", w)])
    g.plan = lambda batch: ({}, 0)  # the writer's plan (Python ints) would not fit the file's int64
    out.append(("arena plan overflow", g.to_bytes(), "overflows"))
    # pads of 2**62 on each side: x + lo + hi overflows
    g = F.Graph()
    y = g.op(F.OP_PAD, [g.input("x", (1, 4), 0)], (1, 8), 0, ints=[0, 0, 1 << 62, 0, 1 << 62], floats=[0.0])
    g.set_outputs([("y", y)])
    out.append(("pad overflow", g.to_bytes(), "pads"))
    # conv padding and pooling strides of INT64_MAX: the window arithmetic overflows
    g = F.Graph()
    wc = g.const(np.ones((1, 1, 1, 1), np.float32))
    y = g.op(F.OP_CONV, [g.input("x", (1, 4, 4, 1), 0), wc, -1], (1, 4, 4, 1), 0,
             ints=[1, 1, 1, 1, big, big, 0, 0, 1, 0, 0], floats=[0, 0])
    g.set_outputs([("y", y)])
    out.append(("conv padding INT64_MAX", g.to_bytes(), "bad window"))
    g = F.Graph()
    y = g.op(F.OP_MAXPOOL, [g.input("x", (1, 4, 4, 1), 0)], (1, 1, 1, 1), 0,
             ints=[1, 1, big, big, 1, 1, 0, 0, 0, 0, 1, 0])
    g.set_outputs([("y", y)])
    out.append(("pool stride INT64_MAX", g.to_bytes(), "bad window"))
    # concat of one input 64 times along an axis of 2**58: the output size overflows
    g = F.Graph()
    x = g.input("x", (1, 1 << 58), -1)
    y = g.op(F.OP_CONCAT, [x] * 64, (1, 1 << 58), -1, ints=[1])
    g.set_outputs([("y", y)])
    g.plan = lambda batch: ({}, 0)
    out.append(("concat size overflow", g.to_bytes(), "op 0"))
    # LRN of size 2**40 over 3 channels: valid, must not loop 2**40 times per element
    g = F.Graph()
    y = g.op(F.OP_LRN, [g.input("x", (1, 3, 2, 2), 0)], (1, 3, 2, 2), 0, ints=[1 << 40], floats=[1e-4, 0.75, 1.0])
    g.set_outputs([("y", y)])
    out.append(("lrn of an absurd size", g.to_bytes(), None))
    # the binary kinds max/min, the unary op: valid ones run, out-of-range kinds are refused
    for kind, words in ((F.BIN_MAX, None), (F.BIN_MIN, None), (F.BIN_MIN + 1, "unknown binary kind"),
                        (-1, "unknown binary kind"), (1 << 62, "unknown binary kind")):
        g = F.Graph()
        x = g.input("x", (1, 3, 4), 0)
        y = g.op(F.OP_BINARY, [x, g.const(np.ones((3, 1), np.float32))], (1, 3, 4), 0, ints=[kind])
        g.set_outputs([("y", y)])
        out.append((f"binary kind {kind}", g.to_bytes(), words))
    for kind, words in ((F.UN_SQRT, None), (F.UN_SQRT + 1, "unknown unary kind"), (-5, "unknown unary kind")):
        g = F.Graph()
        y = g.op(F.OP_UNARY, [g.input("x", (1, 5), 0)], (1, 5), 0, ints=[kind])
        g.set_outputs([("y", y)])
        out.append((f"unary kind {kind}", g.to_bytes(), words))
    g = F.Graph()
    y = g.op(F.OP_UNARY + 1, [g.input("x", (1, 5), 0)], (1, 5), 0, ints=[0])
    g.set_outputs([("y", y)])
    out.append(("op code past the last", g.to_bytes(), "unknown op code"))
    # matmul whose batch dims do not broadcast (3 against 2), and one whose output drops a batch dim
    for b_dims, y_dims, words in (((2, 5, 2), (3, 4, 2), "do not broadcast"), ((1, 3, 5, 2), (3, 4, 2), "output shape"),
                                  ((1, 3, 5, 2), (1, 3, 4, 2), None)):
        g = F.Graph()
        y = g.op(F.OP_MATMUL, [g.input("x", (3, 4, 5), -1), g.const(np.ones(b_dims, np.float32))], y_dims, -1)
        g.set_outputs([("y", y)])
        out.append((f"matmul [3, 4, 5] @ {list(b_dims)} -> {list(y_dims)}", g.to_bytes(), words))
    return out


def test_crafted_absurd_bundles_under_asan(tmp_path):
    for i, (label, data, words) in enumerate(_crafted_bundles()):
        (tmp_path / f"c{i}.cnnb").write_bytes(data)
        r = _run("asan", "run_bundle", tmp_path / f"c{i}.cnnb", timeout=30)
        if words is None:
            assert r.returncode == 0, f"{label}: {r.stderr}"
        else:
            assert r.returncode == 1 and "cannot load" in r.stderr and words in r.stderr, f"{label}: {r.stderr!r}"
