"""Tests of cnnc.datasets: the IDX reader/writer, the search order, downloads (from a local HTTP
server on 127.0.0.1 only -- never the network), the embedded Fashion-MNIST sample and, when Debian's
dataset-fashion-mnist is installed, the real data."""
import gzip
import hashlib
import http.server
import io
import os
import struct
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

from cnnc import datasets
from cnnc.datasets import _cache, fashion_mnist, mnist, read_idx, write_idx

DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"
HAVE_DEBIAN = all(os.path.isfile(os.path.join(DEBIAN_DIR, b + ".gz")) for b in _cache.FILES)
needs_debian = pytest.mark.skipif(
    not HAVE_DEBIAN, reason="Debian's dataset-fashion-mnist is not installed (no %s)" % DEBIAN_DIR)

DTYPES = ["uint8", "int8", "int16", "int32", "float32", "float64"]
SHAPES = [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 2)]


# ----------------------------------------------------------------------------- IDX round trips

def _random_array(rng, dtype, shape):
    dt = np.dtype(dtype)
    if dt.kind == "f":
        return (rng.standard_normal(shape) * 1e3).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "rank%d" % len(s))
@pytest.mark.parametrize("dtype", DTYPES)
def test_idx_round_trip(tmp_path, rng, dtype, shape, gz):
    a = _random_array(rng, dtype, shape)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    write_idx(path, a)
    with open(path, "rb") as f:
        assert (f.read(2) == b"\x1f\x8b") == gz
    b = read_idx(path)
    assert b.dtype == a.dtype and b.dtype.isnative and b.shape == a.shape
    assert b.flags.writeable and b.flags.c_contiguous
    np.testing.assert_array_equal(b, a)
    # a str path and an open file object give the same
    np.testing.assert_array_equal(read_idx(str(path)), a)
    with open(path, "rb") as f:
        np.testing.assert_array_equal(read_idx(f), a)


def test_idx_layout_is_big_endian_and_matches_the_spec():
    buf = io.BytesIO()
    write_idx(buf, np.array([[1, -2, 3]], dtype=np.int16))
    assert buf.getvalue() == (b"\x00\x00\x0b\x02" + struct.pack(">II", 1, 3)
                              + struct.pack(">hhh", 1, -2, 3))
    buf.seek(0)
    np.testing.assert_array_equal(read_idx(buf), [[1, -2, 3]])


def test_idx_writes_non_native_and_non_contiguous_input(tmp_path):
    a = np.arange(24, dtype=">f8").reshape(4, 6)[:, ::2]
    write_idx(tmp_path / "a", a)
    b = read_idx(tmp_path / "a")
    assert b.dtype == np.float64 and b.dtype.isnative
    np.testing.assert_array_equal(b, a)


def test_idx_zero_size_and_mnist_like(tmp_path):
    write_idx(tmp_path / "e", np.zeros((0, 28, 28), np.uint8))
    assert read_idx(tmp_path / "e").shape == (0, 28, 28)
    write_idx(tmp_path / "l.gz", np.arange(10, dtype=np.uint8))
    with open(tmp_path / "l.gz", "rb") as f:
        assert gzip.decompress(f.read())[:8] == b"\x00\x00\x08\x01\x00\x00\x00\x0a"


class _Unseekable(io.RawIOBase):
    """A pipe-like stream: no seek, no tell, no fileno, short reads."""

    def __init__(self, data):
        self._data = data

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), len(self._data), 5)
        b[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_reads_non_seekable_streams(tmp_path, gz):
    a = np.arange(60, dtype=np.int32).reshape(3, 4, 5)
    path = tmp_path / ("a.gz" if gz else "a")
    write_idx(path, a)
    np.testing.assert_array_equal(read_idx(_Unseekable(path.read_bytes())), a)


def test_idx_reads_from_wrapping_file_objects(tmp_path):
    """gzip.open() objects (whose fileno() is the compressed file's), zip members, and a BytesIO
    positioned after other data."""
    import zipfile
    a = np.arange(3 * 28 * 28, dtype=np.uint8).reshape(3, 28, 28)
    write_idx(tmp_path / "a.gz", a)
    write_idx(tmp_path / "a", a)
    with gzip.open(tmp_path / "a.gz", "rb") as f:
        np.testing.assert_array_equal(read_idx(f), a)
    with zipfile.ZipFile(tmp_path / "z.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.write(tmp_path / "a", "a")
    with zipfile.ZipFile(tmp_path / "z.zip") as z, z.open("a") as f:
        np.testing.assert_array_equal(read_idx(f), a)
    buf = io.BytesIO(b"prefix" + (tmp_path / "a").read_bytes())
    buf.seek(6)
    np.testing.assert_array_equal(read_idx(buf), a)
    with open(tmp_path / "a", "rb") as f:
        f.read(0)
        np.testing.assert_array_equal(read_idx(f), a)
        assert f.read() == b""  # read exactly to the end


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_idx_reads_a_named_pipe(tmp_path, gz):
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    write_idx(tmp_path / "a", a)
    data = (tmp_path / "a").read_bytes()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def feed():
        with open(fifo, "wb") as w:
            w.write(gzip.compress(data) if gz else data)
    t = threading.Thread(target=feed, daemon=True)
    t.start()
    np.testing.assert_array_equal(read_idx(fifo), a)
    t.join(5)


def test_idx_multi_member_gzip(tmp_path):
    raw = io.BytesIO()
    write_idx(raw, np.arange(12, dtype=np.uint8).reshape(3, 4))
    data = raw.getvalue()
    (tmp_path / "m.gz").write_bytes(gzip.compress(data[:9]) + gzip.compress(data[9:]))
    np.testing.assert_array_equal(read_idx(tmp_path / "m.gz"), np.arange(12).reshape(3, 4))


@pytest.mark.parametrize("a, err", [
    (np.zeros(3, np.int64), TypeError), (np.zeros(3, bool), TypeError),
    (np.zeros(3, np.float16), TypeError), (np.zeros(3, np.uint16), TypeError),
    (np.array(5, np.uint8), ValueError)])
def test_write_idx_rejects(tmp_path, a, err):
    with pytest.raises(err):
        write_idx(tmp_path / "x", a)


# ----------------------------------------------------------------------------- malformed IDX

def _idx_bytes(code=0x08, dims=(2, 3), data=None, magic01=b"\x00\x00"):
    head = magic01 + bytes([code, len(dims)]) + struct.pack(">%dI" % len(dims), *dims)
    if data is None:
        data = bytes(int(np.prod(dims)))
    return head + data


MALFORMED = {
    "empty": (b"", "truncated header"),
    "short_magic": (b"\x00\x00\x08", "truncated header"),
    "bad_magic": (b"\x1f\x00\x08\x01" + bytes(8), "bad magic"),
    "bad_magic_text": (b"P5\n28 28\n255\n" + bytes(20), "bad magic"),
    "bad_type": (_idx_bytes(code=0x0A), "unknown data type code 0x0A"),
    "bad_type_ff": (_idx_bytes(code=0xFF), "unknown data type code 0xFF"),
    "zero_dims": (b"\x00\x00\x08\x00", "zero dimensions"),
    "truncated_dims": (b"\x00\x00\x08\x03" + struct.pack(">II", 2, 2), "truncated header"),
    "truncated_data": (_idx_bytes(dims=(2, 3))[:-1], "truncated"),
    "truncated_data_f64": (_idx_bytes(0x0E, (4,), bytes(31)), "truncated"),
    "trailing_data": (_idx_bytes(dims=(2, 3)) + b"\x00", "trailing data"),
    "trailing_data_i32": (_idx_bytes(0x0C, (2,), bytes(9)), "trailing data"),
    "overflowing_dims": (_idx_bytes(0x0E, (0xFFFFFFFF,) * 4, b""), "absurd dimensions"),
    "dims_larger_than_file": (_idx_bytes(0x08, (60000, 28, 28), bytes(100)), "truncated"),
}


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_idx_malformed(tmp_path, case, gz):
    data, problem = MALFORMED[case]
    path = tmp_path / ("bad-%s%s" % (case, ".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    if gz and case == "dims_larger_than_file":
        problem = "absurd dimensions"  # 47 MB cannot come out of a ~100-byte gzip file
    with pytest.raises(ValueError) as ei:
        read_idx(path)
    msg = str(ei.value)
    assert str(path) in msg and problem in msg, msg
    # a stream of unknown length gets the same diagnosis (except the size-based one)
    if problem == "absurd dimensions" and case != "overflowing_dims":
        problem = "truncated"
    with pytest.raises(ValueError, match=problem):
        read_idx(_Unseekable(path.read_bytes()))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "bad_crc"])
def test_idx_corrupt_gzip(tmp_path, damage):
    good = gzip.compress(_idx_bytes(dims=(50, 40), data=bytes(range(200)) * 10))
    bad = {"truncated": good[:-12],
           "garbage": good + b"not gzip at all",
           "bad_crc": good[:-8] + bytes(4) + good[-4:]}[damage]
    path = tmp_path / "c.gz"
    path.write_bytes(bad)
    with pytest.raises(ValueError, match="corrupt gzip data") as ei:
        read_idx(path)
    assert str(path) in str(ei.value)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("stream", [False, True], ids=["file", "stream"])
def test_idx_does_not_allocate_from_untrusted_sizes(tmp_path, gz, stream):
    # the header promises 4 * 2**32 * 2**32 bytes... and 16 GB in the second case
    for dims, code in (((0xFFFF, 0xFFFF, 0xFFFF), 0x0E), ((4, 1 << 30), 0x0C)):
        data = _idx_bytes(code, dims, bytes(1000))
        if gz:
            data = gzip.compress(data)
        src = _Unseekable(data) if stream else tmp_path / "big"
        if not stream:
            src.write_bytes(data)
        tracemalloc.start()
        try:
            with pytest.raises(ValueError, match="truncated|absurd"):
                read_idx(src)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 8 << 20, peak


def test_idx_error_names_file_objects():
    f = io.BytesIO(b"\x00\x00\x08")
    with pytest.raises(ValueError, match="BytesIO"):
        read_idx(f)


# ----------------------------------------------------------------------------- synthetic sets

def make_set(directory, n_train=6, n_test=4, gz=True, seed=0, image_shape=(28, 28),
             files=_cache.FILES):
    """Write a tiny stand-in data set (four IDX files) and return its arrays."""
    os.makedirs(directory, exist_ok=True)
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train,) + image_shape, dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test,) + image_shape, dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for base in files:
        write_idx(os.path.join(directory, base + (".gz" if gz else "")), arrays[base])
    return ((arrays["train-images-idx3-ubyte"], arrays["train-labels-idx1-ubyte"]),
            (arrays["t10k-images-idx3-ubyte"], arrays["t10k-labels-idx1-ubyte"]))


def assert_same(got, want):
    (a, b), (c, d) = got
    (e, f), (g, h) = want
    for x, y in ((a, e), (b, f), (c, g), (d, h)):
        assert x.dtype == np.uint8
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def env(tmp_path, monkeypatch):
    """An isolated world: HOME and CNNC_DATA in tmp_path, no system dirs, no network."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CNNC_DATA", raising=False)
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIRS", [])
    monkeypatch.setattr(mnist, "SYSTEM_DIRS", [])
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")

    def no_network(url, timeout):
        raise AssertionError("unexpected download of " + url)

    monkeypatch.setattr(_cache, "_urlopen", no_network)

    class Env:
        pass
    e = Env()
    e.tmp, e.home, e.mp = tmp_path, home, monkeypatch
    e.cache = lambda name: home / ".cnnc" / "datasets" / name
    return e


@pytest.mark.parametrize("mod", [mnist, fashion_mnist], ids=["mnist", "fashion"])
def test_search_order(env, mod):
    data = env.tmp / "data"
    system = env.tmp / "system"
    env.mp.setenv("CNNC_DATA", str(data))
    env.mp.setattr(mod, "SYSTEM_DIRS", [str(system)])
    want_env = make_set(data / mod.NAME, 3, 2, seed=1)
    want_home = make_set(env.cache(mod.NAME), 4, 3, seed=2, gz=False)
    want_sys = make_set(system, 5, 4, seed=3)
    assert_same(mod.load_data(strict=False), want_env)            # CNNC_DATA first
    env.mp.delenv("CNNC_DATA")
    assert_same(mod.load_data(strict=False), want_home)           # then ~/.cnnc
    env.mp.setenv("CNNC_DATA", str(data / "nowhere"))
    assert_same(mod.load_data(strict=False), want_home)           # a missing CNNC_DATA dir
    os.remove(env.cache(mod.NAME) / "t10k-labels-idx1-ubyte")
    assert_same(mod.load_data(strict=False), want_sys)            # incomplete dirs are skipped


def test_default_system_dir_is_debians():
    assert fashion_mnist.SYSTEM_DIRS == [DEBIAN_DIR]
    assert mnist.SYSTEM_DIRS == []


def test_files_directly_in_cnnc_data_are_not_used(env):
    make_set(env.tmp / "data", 3, 2)
    env.mp.setenv("CNNC_DATA", str(env.tmp / "data"))
    with pytest.raises(FileNotFoundError) as ei:
        fashion_mnist.load_data(download=False, strict=False)
    msg = str(ei.value)
    assert os.path.join(str(env.tmp / "data"), "fashion-mnist") in msg and "CNNC_DATA" in msg


def test_mixed_gz_and_plain_and_plain_preferred(env):
    d = env.tmp / "data" / "mnist"
    want = make_set(d, 3, 2, gz=False, files=_cache.FILES[:2])
    want_test = make_set(d, 3, 2, gz=True, files=_cache.FILES[2:])
    env.mp.setenv("CNNC_DATA", str(env.tmp / "data"))
    got = mnist.load_data(strict=False)
    assert_same(got, (want[0], want_test[1]))
    # a broken .gz next to a good plain file is not read
    (d / "train-images-idx3-ubyte.gz").write_bytes(b"junk")
    assert_same(mnist.load_data(strict=False), (want[0], want_test[1]))


def test_data_dir_argument(env):
    want = make_set(env.tmp / "mine", 3, 2)
    assert_same(fashion_mnist.load_data(data_dir=env.tmp / "mine", strict=False), want)
    with pytest.raises(FileNotFoundError, match="four"):
        fashion_mnist.load_data(data_dir=env.tmp / "empty")


def test_missing_without_download(env):
    with pytest.raises(FileNotFoundError) as ei:
        mnist.load_data(download=False)
    msg = str(ei.value)
    assert "download=False" in msg and "CNNC_DATA" in msg and str(env.cache("mnist")) in msg


def test_strict_counts_and_validation(env):
    d = env.tmp / "d"
    make_set(d, 3, 2)
    with pytest.raises(ValueError, match="expected 60000 .*strict=False"):
        mnist.load_data(data_dir=d)
    make_set(d, 3, 2, image_shape=(28, 27))
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        mnist.load_data(data_dir=d, strict=False)
    make_set(d, 3, 2)
    write_idx(d / "train-labels-idx1-ubyte.gz", np.array([0, 10, 9], np.uint8))
    with pytest.raises(ValueError, match="label 10 out of range"):
        mnist.load_data(data_dir=d, strict=False)
    make_set(d, 3, 2)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(3, np.uint8))
    with pytest.raises(ValueError, match="2 images but .* 3 labels"):
        mnist.load_data(data_dir=d, strict=False)
    write_idx(d / "t10k-labels-idx1-ubyte.gz", np.zeros(2, np.int32))
    with pytest.raises(ValueError, match="uint8"):
        mnist.load_data(data_dir=d, strict=False)
    (d / "t10k-labels-idx1-ubyte.gz").write_bytes(b"\x00\x00\x08\x01")
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte.gz.*truncated"):
        mnist.load_data(data_dir=d, strict=False)


# ----------------------------------------------------------------------------- downloads

class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        srv = self.server
        srv.hits.append(self.path)
        route = srv.routes.get(self.path)
        if route is None:
            self.send_error(404, "Not Found")
            return
        status, body, length = route
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A local HTTP server on 127.0.0.1: server.route(path, body, status, length) -> URL."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.routes, srv.hits = {}, []
    srv.base = "http://127.0.0.1:%d" % srv.server_address[1]

    def route(path, body, status=200, length=None):
        srv.routes[path] = (status, body, length)
        return srv.base + path
    srv.route = route
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    t.join(5)


@pytest.fixture
def remote(env, server):
    """Synthetic .gz files (5 train / 3 test images) published by `server` under /good/, with a
    digest table for them; env's real _urlopen restored so downloads reach 127.0.0.1."""
    env.mp.setattr(_cache, "_urlopen", _real_urlopen)
    src = env.tmp / "published"
    want = make_set(src, 5, 3, seed=7)
    digests = {}
    blobs = {}
    for base in _cache.FILES:
        blob = (src / (base + ".gz")).read_bytes()
        blobs[base + ".gz"] = blob
        digests[base + ".gz"] = _cache.Digest(hashlib.sha256(blob).hexdigest(), len(blob),
                                              hashlib.sha256(gzip.decompress(blob)).hexdigest())
        server.route("/good/" + base + ".gz", blob)

    class Remote:
        pass
    r = Remote()
    r.want, r.digests, r.blobs, r.server = want, digests, blobs, server
    r.good = server.base + "/good/"

    def use(mod, mirrors, digests=None):
        env.mp.setattr(mod, "MIRRORS", mirrors)
        env.mp.setattr(mod, "SHA256", digests or r.digests)
    r.use = use
    return r


_real_urlopen = _cache._urlopen


def _leftovers(directory):
    return sorted(p for p in os.listdir(directory) if not p.endswith("-ubyte.gz")) \
        if os.path.isdir(directory) else []


@pytest.mark.parametrize("mod", [mnist, fashion_mnist], ids=["mnist", "fashion"])
def test_download_success_and_cache(env, remote, mod):
    remote.use(mod, [remote.good])
    assert_same(mod.load_data(strict=False), remote.want)
    cache = env.cache(mod.NAME)
    assert sorted(os.listdir(cache)) == sorted(b + ".gz" for b in _cache.FILES)
    for name, blob in remote.blobs.items():
        assert (cache / name).read_bytes() == blob
    assert len(remote.server.hits) == 4
    # the second call reads the cache and does not download again
    env.mp.setattr(_cache, "_urlopen", lambda url, timeout: pytest.fail("downloaded " + url))
    assert_same(mod.load_data(strict=False), remote.want)


def test_download_only_missing_files(env, remote):
    remote.use(mnist, [remote.good])
    cache = env.cache("mnist")
    cache.mkdir(parents=True)
    (cache / "train-images-idx3-ubyte.gz").write_bytes(remote.blobs["train-images-idx3-ubyte.gz"])
    assert_same(mnist.load_data(strict=False), remote.want)
    assert sorted(remote.server.hits) == sorted("/good/%s.gz" % b for b in _cache.FILES[1:])


def test_download_checksum_mismatch(env, remote):
    bad = dict(remote.digests)
    bad["t10k-images-idx3-ubyte.gz"] = _cache.Digest("0" * 64, 1234, "1" * 64)
    remote.use(fashion_mnist, [remote.good], bad)
    with pytest.raises(datasets.DownloadError) as ei:
        fashion_mnist.load_data(strict=False)
    msg = str(ei.value)
    assert "t10k-images-idx3-ubyte.gz" in msg and "checksum mismatch" in msg
    assert remote.good + "t10k-images-idx3-ubyte.gz" in msg and "0" * 64 in msg
    assert "CNNC_DATA" in msg and str(env.cache("fashion-mnist")) in msg
    cache = env.cache("fashion-mnist")
    assert not (cache / "t10k-images-idx3-ubyte.gz").exists()
    assert _leftovers(cache) == []  # no temporary file left behind


def test_download_server_errors_list_every_url(env, remote, server):
    m1 = server.base + "/broken/"
    m2 = server.base + "/missing/"
    server.route("/broken/train-images-idx3-ubyte.gz", b"oops", status=500)
    remote.use(mnist, [m1, m2])
    with pytest.raises(datasets.DownloadError) as ei:
        mnist.load_data(strict=False)
    msg = str(ei.value)
    assert "train-images-idx3-ubyte.gz" in msg
    assert m1 + "train-images-idx3-ubyte.gz" in msg and "500" in msg
    assert m2 + "train-images-idx3-ubyte.gz" in msg and "404" in msg
    assert "CNNC_DATA" in msg
    assert os.listdir(env.cache("mnist")) == []


def test_download_connection_refused(env, remote):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    dead = "http://127.0.0.1:%d/" % port
    remote.use(mnist, [dead])
    with pytest.raises(datasets.DownloadError, match="URLError") as ei:
        mnist.load_data(strict=False)
    assert dead + "train-images-idx3-ubyte.gz" in str(ei.value)


@pytest.mark.parametrize("first", ["404", "wrong_content", "truncated"])
def test_download_falls_back_to_second_mirror(env, remote, server, first):
    m1 = server.base + "/m1/"
    for base in _cache.FILES:
        blob = remote.blobs[base + ".gz"]
        if first == "wrong_content":
            server.route("/m1/%s.gz" % base, blob[:-1] + b"X")
        elif first == "truncated":  # announces more bytes than it sends
            server.route("/m1/%s.gz" % base, blob[:len(blob) // 2], length=len(blob))
    remote.use(fashion_mnist, [m1, remote.good])
    assert_same(fashion_mnist.load_data(strict=False), remote.want)
    hits = server.hits
    assert sum(h.startswith("/m1/") for h in hits) == 4
    assert sum(h.startswith("/good/") for h in hits) == 4
    assert _leftovers(env.cache("fashion-mnist")) == []


def test_download_truncated_response_leaves_nothing(env, remote, server):
    blob = remote.blobs["train-images-idx3-ubyte.gz"]
    server.route("/t/train-images-idx3-ubyte.gz", blob[:100], length=len(blob))
    remote.use(mnist, [server.base + "/t/"])
    with pytest.raises(datasets.DownloadError, match="incomplete download.* 100"):
        mnist.load_data(strict=False)
    assert os.listdir(env.cache("mnist")) == []


def test_download_accepts_recompressed_same_content(env, remote, server):
    # a mirror that re-gzipped the official content (like Debian's files) is accepted
    for base in _cache.FILES:
        raw = gzip.decompress(remote.blobs[base + ".gz"])
        server.route("/re/%s.gz" % base, gzip.compress(raw, compresslevel=1, mtime=12345))
    remote.use(mnist, [server.base + "/re/"])
    assert_same(mnist.load_data(strict=False), remote.want)
    # but not different content, even if it is valid gzip
    env.mp.setattr(_cache, "cache_dir", lambda name: str(env.tmp / "cache2"))
    server.route("/re/t10k-labels-idx1-ubyte.gz", gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x03"
                                                                b"\x01\x02\x03"))
    with pytest.raises(datasets.DownloadError, match="checksum mismatch"):
        mnist.load_data(strict=False)
    assert _leftovers(env.tmp / "cache2") == []


def test_download_runaway_server_is_cut_off(env, remote, server):
    small = dict(remote.digests)
    small["train-images-idx3-ubyte.gz"] = _cache.Digest("0" * 64, 10)
    server.route("/big/train-images-idx3-ubyte.gz", bytes(3 << 20))
    remote.use(mnist, [server.base + "/big/"], small)
    with pytest.raises(datasets.DownloadError, match="more than"):
        mnist.load_data(strict=False)
    assert os.listdir(env.cache("mnist")) == []


def test_download_is_atomic(env, remote):
    """Files are written to a temporary file in the cache dir and renamed only once verified."""
    remote.use(mnist, [remote.good])
    cache = str(env.cache("mnist"))
    calls = []
    real_replace = os.replace

    def spy(src, dst):
        src, dst = os.fspath(src), os.fspath(dst)
        assert os.path.dirname(src) == cache == os.path.dirname(dst)
        assert os.path.basename(src).startswith(".") and src.endswith(".part")
        assert not os.path.exists(dst)  # nothing visible under the final name before this
        name = os.path.basename(dst)
        assert hashlib.sha256(open(src, "rb").read()).hexdigest() == remote.digests[name].sha256
        calls.append(name)
        real_replace(src, dst)

    env.mp.setattr(_cache.os, "replace", spy)
    assert_same(mnist.load_data(strict=False), remote.want)
    assert sorted(calls) == sorted(b + ".gz" for b in _cache.FILES)
    assert _leftovers(cache) == []


def test_download_interrupted_leaves_nothing(env, remote):
    """An exception in the middle of the stream (even KeyboardInterrupt) removes the temp file."""
    remote.use(mnist, [remote.good])

    class Exploding(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 10:
                raise KeyboardInterrupt
            return super().read(min(n, 11))

    env.mp.setattr(_cache, "_urlopen", lambda url, timeout: Exploding(b"x" * 100))
    with pytest.raises(KeyboardInterrupt):
        mnist.load_data(strict=False)
    assert os.listdir(env.cache("mnist")) == []


def test_download_cache_dir_not_creatable(env, remote):
    remote.use(mnist, [remote.good])
    (env.home / ".cnnc").write_text("a file, not a directory")
    with pytest.raises(datasets.DownloadError, match="cannot create the cache directory"):
        mnist.load_data(strict=False)


def test_official_digest_tables():
    for mod in (mnist, fashion_mnist):
        assert sorted(mod.SHA256) == sorted(b + ".gz" for b in _cache.FILES)
        for d in mod.SHA256.values():
            assert len(d.sha256) == 64 and int(d.sha256, 16) >= 0 and d.size > 0
    assert mnist.MIRRORS == ["https://ossci-datasets.s3.amazonaws.com/mnist/",
                             "https://storage.googleapis.com/cvdf-datasets/mnist/"]
    assert fashion_mnist.MIRRORS[0].startswith("http://fashion-mnist.s3-website.eu-central-1")


# ----------------------------------------------------------------------------- import cost

def test_import_is_cheap():
    code = ("import sys, builtins, io\n"
            "import cnnc\n"
            "opened = []\n"
            "real = builtins.open\n"
            "builtins.open = io.open = lambda *a, **k: (opened.append(a[0]), real(*a, **k))[1]\n"
            "before = set(sys.modules)\n"
            "import cnnc.datasets\n"
            "new = set(sys.modules) - before\n"
            "assert 'urllib.request' not in new and 'http.client' not in new, new\n"
            "assert not opened, opened\n"
            "print('ok')\n")
    # the directory holding the cnnc package this test imported
    top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(datasets.__file__))))
    envv = dict(os.environ, PYTHONPATH=top)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=top, env=envv, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


# ----------------------------------------------------------------------------- embedded sample

SAMPLE_PATH = os.path.join(os.path.dirname(fashion_mnist.__file__), "data",
                           fashion_mnist.SAMPLE_FILE)


def test_class_names():
    assert fashion_mnist.CLASS_NAMES == (
        "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
        "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_sample_shapes_dtypes_and_stratification():
    assert os.path.getsize(SAMPLE_PATH) <= 2_000_000
    (x_tr, y_tr), (x_te, y_te) = fashion_mnist.load_sample()
    assert x_tr.dtype == y_tr.dtype == x_te.dtype == y_te.dtype == np.uint8
    assert x_tr.shape == (3400, 28, 28) and y_tr.shape == (3400,)
    assert x_te.shape == (850, 28, 28) and y_te.shape == (850,)
    np.testing.assert_array_equal(np.bincount(y_tr, minlength=10), [340] * 10)
    np.testing.assert_array_equal(np.bincount(y_te, minlength=10), [85] * 10)
    assert y_tr.max() == 9 and y_te.max() == 9
    # classes are interleaved, not in blocks; the images are real, varied pictures
    assert len(set(y_tr[:30].tolist())) > 5
    assert 50 < x_tr.mean() < 100 and x_tr.max() == 255 and x_tr.min() == 0
    assert len({x.tobytes() for x in x_tr}) == len(x_tr)
    # fresh, writable arrays on every call
    x_tr[0] = 0
    assert fashion_mnist.load_sample()[0][0][0].any()


def test_sample_npz_has_no_pickles():
    with np.load(SAMPLE_PATH, allow_pickle=False) as z:
        assert sorted(z.files) == ["test_indices", "train_indices", "x_test", "x_train",
                                   "y_test", "y_train"]
        for k in z.files:
            assert z[k].dtype != object
        assert len(set(z["train_indices"].tolist())) == 3400
        assert len(set(z["test_indices"].tolist())) == 850


@pytest.fixture(scope="module")
def real_fashion():
    if not HAVE_DEBIAN:
        pytest.skip("Debian's dataset-fashion-mnist is not installed (no %s)" % DEBIAN_DIR)
    return fashion_mnist.load_data(data_dir=DEBIAN_DIR)


@needs_debian
def test_real_fashion_mnist_load_data(real_fashion, monkeypatch, tmp_path):
    (x_tr, y_tr), (x_te, y_te) = real_fashion
    assert x_tr.shape == (60000, 28, 28) and y_tr.shape == (60000,)
    assert x_te.shape == (10000, 28, 28) and y_te.shape == (10000,)
    assert x_tr.dtype == y_tr.dtype == x_te.dtype == y_te.dtype == np.uint8
    np.testing.assert_array_equal(np.bincount(y_tr), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(y_te), [1000] * 10)
    assert y_tr[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the well-known first labels
    # the default search finds the Debian directory when nothing else is set up
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("CNNC_DATA", raising=False)
    monkeypatch.setattr(_cache, "_urlopen", lambda url, timeout: pytest.fail("downloaded " + url))
    assert _cache.locate(fashion_mnist.NAME, fashion_mnist.SYSTEM_DIRS) == {
        b: os.path.join(DEBIAN_DIR, b + ".gz") for b in _cache.FILES}


@needs_debian
def test_debian_files_hold_the_official_content():
    for base in _cache.FILES:
        with open(os.path.join(DEBIAN_DIR, base + ".gz"), "rb") as f:
            raw = gzip.decompress(f.read())
        assert hashlib.sha256(raw).hexdigest() == fashion_mnist.SHA256[base + ".gz"].raw_sha256


@needs_debian
def test_sample_matches_the_real_data(real_fashion):
    (x_tr, y_tr), (x_te, y_te) = real_fashion
    (sx_tr, sy_tr), (sx_te, sy_te) = fashion_mnist.load_sample()
    with np.load(SAMPLE_PATH, allow_pickle=False) as z:
        i_tr, i_te = z["train_indices"].astype(np.intp), z["test_indices"].astype(np.intp)
    np.testing.assert_array_equal(sx_tr, x_tr[i_tr])
    np.testing.assert_array_equal(sy_tr, y_tr[i_tr])
    np.testing.assert_array_equal(sx_te, x_te[i_te])
    np.testing.assert_array_equal(sy_te, y_te[i_te])
    # independently of the stored indices: a few sample images are found in the real sets
    flat_tr, flat_te = x_tr.reshape(60000, -1), x_te.reshape(10000, -1)
    for k in (0, 1, 1234, 3399):
        hits = np.flatnonzero((flat_tr == sx_tr[k].ravel()).all(axis=1))
        assert len(hits) >= 1 and (y_tr[hits] == sy_tr[k]).any()
    for k in (0, 849):
        hits = np.flatnonzero((flat_te == sx_te[k].ravel()).all(axis=1))
        assert len(hits) >= 1 and (y_te[hits] == sy_te[k]).any()


@needs_debian
def test_make_embedded_sample_tool_is_reproducible(tmp_path):
    """The tool, run again with its defaults, makes the same arrays as the shipped file."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tool = os.path.join(root, "tools", "make_embedded_sample.py")
    if not os.path.isfile(tool):
        pytest.skip("tools/make_embedded_sample.py is not in this tree")
    out = tmp_path / "s.npz"
    r = subprocess.run([sys.executable, tool, "--out", str(out)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    with np.load(out, allow_pickle=False) as a, np.load(SAMPLE_PATH, allow_pickle=False) as b:
        assert sorted(a.files) == sorted(b.files)
        for k in a.files:
            np.testing.assert_array_equal(a[k], b[k])
