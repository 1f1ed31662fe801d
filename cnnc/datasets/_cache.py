"""Locating, downloading and loading the four IDX files of an MNIST-style data set.

Search order (the first directory that holds all four files wins)::

    1. $CNNC_DATA/<name>            only when the CNNC_DATA environment variable is set
    2. ~/.cnnc/datasets/<name>      the download cache
    3. system directories           e.g. /usr/share/datasets/fashion-mnist for Fashion-MNIST
    4. download from the mirrors into ~/.cnnc/datasets/<name>

``<name>`` is ``mnist`` or ``fashion-mnist``. Files placed directly in $CNNC_DATA (not in the
subdirectory) are *not* used: both data sets have the same file names, so a flat directory could
not tell them apart. Each file may be stored plain or gzipped (``name`` or ``name.gz``); when both
exist the plain one is read. ``~`` is the home directory as ``os.path.expanduser`` sees it
(``$HOME`` on POSIX).

Downloads fetch the official ``.gz`` files, check their size and SHA-256 against a hard-coded
table, and are atomic: each file is streamed into a temporary file in the cache directory,
verified, and only then renamed into place with ``os.replace``; on any failure the temporary file
is removed. Only missing files are downloaded.

Only NumPy and the standard library are used; urllib is imported on the first download only.
"""
import hashlib
import os
import tempfile
import zlib
from collections import namedtuple

import numpy as np

from ._idx import read_idx

ENV_VAR = "CNNC_DATA"
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
TRAIN_COUNT, TEST_COUNT = 60000, 10000
IMAGE_SHAPE = (28, 28)
NUM_CLASSES = 10
DOWNLOAD_TIMEOUT = 60.0  # seconds, per connection attempt / read
_CHUNK = 1 << 16

#: Expected digests of one downloadable file: the SHA-256 and byte size of the official .gz file,
#: and optionally the SHA-256 of its decompressed content. A download passes if its SHA-256 is the
#: official one, or (when raw_sha256 is known) if it decompresses to exactly the official content,
#: so a mirror that re-compressed the same data is accepted too.
Digest = namedtuple("Digest", ["sha256", "size", "raw_sha256"], defaults=[None])


class DownloadError(OSError):
    """A data set file could not be downloaded or failed its checksum."""


class _Mismatch(Exception):
    pass


def _urlopen(url, timeout):
    """Open a URL for reading (a module attribute so that tests can replace it)."""
    import urllib.request
    return urllib.request.urlopen(url, timeout=timeout)


def cache_dir(name):
    """The download cache of data set ``name``: ~/.cnnc/datasets/<name>."""
    return os.path.join(os.path.expanduser("~"), ".cnnc", "datasets", name)


def search_dirs(name, system_dirs=()):
    """The directories searched for data set ``name``, in order (see the module docstring)."""
    dirs = []
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append(os.path.join(os.path.expanduser(env), name))
    dirs.append(cache_dir(name))
    dirs.extend(os.fspath(d) for d in system_dirs)
    return dirs


def _find(directory, base):
    plain = os.path.join(directory, base)
    if os.path.isfile(plain):
        return plain
    if os.path.isfile(plain + ".gz"):
        return plain + ".gz"
    return None


def find_files(directory):
    """{base name: path} of the four files in ``directory``, or None unless all four are there."""
    found = {}
    for base in FILES:
        path = _find(directory, base)
        if path is None:
            return None
        found[base] = path
    return found


def locate(name, system_dirs=()):
    """{base name: path} from the first searched directory holding all four files, or None."""
    for d in search_dirs(name, system_dirs):
        found = find_files(d)
        if found is not None:
            return found
    return None


def _manual_help(name, system_dirs):
    lines = ["To install the data by hand, put the four files (%s; each plain or gzipped as .gz) "
             "in one of these directories:" % ", ".join(FILES),
             "  $%s/%s  (set the %s environment variable to a directory of your choice)"
             % (ENV_VAR, name, ENV_VAR),
             "  %s" % cache_dir(name)]
    lines += ["  %s" % os.fspath(d) for d in system_dirs]
    return "\n".join(lines)


def _fetch_one(url, directory, fname, digest):
    """Download url to directory/fname through a verified temporary file; returns the path."""
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".%s." % fname, suffix=".part")
    try:
        h = hashlib.sha256()
        got = 0
        cap = 2 * digest.size + (1 << 20)  # runaway guard; the exact check is the digest
        with os.fdopen(fd, "wb") as out, _urlopen(url, DOWNLOAD_TIMEOUT) as resp:
            while True:
                chunk = resp.read(_CHUNK)
                if not chunk:
                    break
                got += len(chunk)
                if got > cap:
                    raise _Mismatch("the server sent more than %d bytes (expected %d)"
                                    % (cap, digest.size))
                h.update(chunk)
                out.write(chunk)
            announced = _content_length(resp)
            if announced is not None and got != announced:
                raise _Mismatch("incomplete download: the server announced %d bytes but sent %d"
                                % (announced, got))
            out.flush()
            os.fsync(out.fileno())
        sha = h.hexdigest()
        if sha != digest.sha256 and not (digest.raw_sha256 and
                                         _raw_sha256(tmp) == digest.raw_sha256):
            raise _Mismatch("SHA-256 checksum mismatch: got %s (%d bytes), expected %s (%d bytes)"
                            % (sha, got, digest.sha256, digest.size))
        final = os.path.join(directory, fname)
        os.replace(tmp, final)
        return final
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _content_length(resp):
    headers = getattr(resp, "headers", None)
    value = headers.get("Content-Length") if headers is not None else None
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _raw_sha256(path):
    """SHA-256 of a gzip file's decompressed content, or None if it is not valid gzip."""
    h = hashlib.sha256()
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        with open(path, "rb") as f:
            while True:
                chunk = f.read(1 << 20)
                if not chunk:
                    break
                while chunk and not d.eof:  # bounded output per call: no zip bomb
                    h.update(d.decompress(chunk, 1 << 22))
                    chunk = d.unconsumed_tail
        if not d.eof:
            return None
    except zlib.error:
        return None
    return h.hexdigest()


def download(name, mirrors, digests, system_dirs=()):
    """Download the files of ``name`` missing from its cache directory; returns find_files().

    ``mirrors`` is a sequence of base URLs tried in order for each file; ``digests`` maps each
    ``<file>.gz`` to a :data:`Digest`. Raises DownloadError when a file cannot be had from any
    mirror (the message names the file, every URL tried with its error, and how to install the
    files by hand).
    """
    directory = cache_dir(name)
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise DownloadError("cannot create the cache directory %s for %s: %s\n%s"
                            % (directory, name, exc, _manual_help(name, system_dirs))) from exc
    for base in FILES:
        if _find(directory, base) is not None:
            continue
        fname = base + ".gz"
        digest = digests[fname]
        tried = []
        for mirror in mirrors:
            url = mirror if mirror.endswith("/") else mirror + "/"
            url += fname
            try:
                _fetch_one(url, directory, fname, digest)
                break
            except _Mismatch as exc:
                tried.append("  %s: %s" % (url, exc))
            except Exception as exc:  # URLError, HTTPError, socket timeouts, IncompleteRead...
                tried.append("  %s: %s: %s" % (url, type(exc).__name__, exc))
        else:
            raise DownloadError(
                "could not download %s of the %s data set; URLs tried:\n%s\n"
                "No partial file was left in %s.\n%s"
                % (fname, name, "\n".join(tried) if tried else "  (no mirrors configured)",
                   directory, _manual_help(name, system_dirs)))
    return find_files(directory)


def fetch(name, mirrors, digests, system_dirs=(), download_missing=True):
    """{base name: path} of the four files: found by locate(), else downloaded (if allowed)."""
    found = locate(name, system_dirs)
    if found is not None:
        return found
    if not download_missing:
        raise FileNotFoundError(
            "the %s data set was not found (looked in: %s) and download=False.\n%s"
            % (name, ", ".join(search_dirs(name, system_dirs)), _manual_help(name, system_dirs)))
    return download(name, mirrors, digests, system_dirs)


def load_files(files, name, strict=True):
    """Read and check the four files; returns ((x_train, y_train), (x_test, y_test)).

    Always checked: images are uint8 of shape (n, 28, 28), labels uint8 of shape (n,) with the same
    n and values below 10. With strict=True the counts must also be 60000 (train) and 10000 (test).
    """
    out = []
    for split, expected in (("train", TRAIN_COUNT), ("t10k", TEST_COUNT)):
        ipath = files["%s-images-idx3-ubyte" % split]
        lpath = files["%s-labels-idx1-ubyte" % split]
        x = read_idx(ipath)
        y = read_idx(lpath)
        if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != IMAGE_SHAPE:
            raise ValueError("%s: expected %s images as uint8 (n, 28, 28), got %s %s"
                             % (ipath, name, x.dtype, x.shape))
        if y.dtype != np.uint8 or y.ndim != 1:
            raise ValueError("%s: expected %s labels as uint8 (n,), got %s %s"
                             % (lpath, name, y.dtype, y.shape))
        if x.shape[0] != y.shape[0]:
            raise ValueError("%s has %d images but %s has %d labels"
                             % (ipath, x.shape[0], lpath, y.shape[0]))
        if strict and x.shape[0] != expected:
            raise ValueError("%s: expected %d %s images, got %d (pass strict=False to accept "
                             "other counts)" % (ipath, expected, name, x.shape[0]))
        if y.size and int(y.max()) >= NUM_CLASSES:
            raise ValueError("%s: label %d out of range 0..%d"
                             % (lpath, int(y.max()), NUM_CLASSES - 1))
        out.append((x, y))
    return tuple(out)


def load_dataset(name, mirrors, digests, system_dirs=(), data_dir=None, download=True,
                 strict=True):
    """The common body of mnist.load_data and fashion_mnist.load_data."""
    if data_dir is not None:
        files = find_files(os.fspath(data_dir))
        if files is None:
            raise FileNotFoundError("%s does not hold the four %s files (%s; each plain or .gz)"
                                    % (os.fspath(data_dir), name, ", ".join(FILES)))
    else:
        files = fetch(name, mirrors, digests, system_dirs, download_missing=download)
    return load_files(files, name, strict=strict)
