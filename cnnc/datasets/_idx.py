"""Reader and writer for the IDX format (the format of the MNIST and Fashion-MNIST files).

An IDX file is a 4-byte magic number ``00 00 TT NN`` (``TT`` the element type, ``NN`` the number
of dimensions), then ``NN`` big-endian uint32 dimension sizes, then the elements in C order,
big-endian. Element types:

====  =========
0x08  uint8
0x09  int8
0x0B  int16
0x0C  int32
0x0D  float32
0x0E  float64
====  =========

:func:`read_idx` accepts plain or gzip-compressed files (recognised by their content, not their
name) and checks everything it reads: the magic number, the type code, the number of dimensions,
that the dimensions are sane, and that the data is exactly as long as the header says (neither
truncated nor followed by trailing bytes). Every problem raises :class:`ValueError` naming the file.
Nothing is allocated from a size read from the header before that size has been checked against
the real size of the file (plain files), or before the bytes have actually been decompressed (gzip
files, which are read in bounded chunks).

This module depends on NumPy and the standard library only (tools/make_embedded_sample.py loads it
directly, without importing the rest of cnnc).
"""
import gzip
import io
import os
import stat
import struct
import zlib

import numpy as np

__all__ = ["read_idx", "write_idx"]

# type code -> big-endian dtype of the elements on disk
_TYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
# (kind, itemsize) of an array to write -> type code
_CODES = {(dt.kind, dt.itemsize): code for code, dt in _TYPES.items()}

_CHUNK = 1 << 20          # read size for streams of unknown length
_MAX_DEFLATE_RATIO = 1032  # deflate cannot expand data by more than ~1032:1
_MAX_BYTES = (1 << 63) - 1


class _Prefixed(io.RawIOBase):
    """A read-only stream that returns ``prefix`` and then the rest of ``f``.

    Lets the reader sniff the first bytes of a non-seekable stream and still hand the whole
    stream to gzip."""

    def __init__(self, prefix, f):
        self._prefix = prefix
        self._f = f

    def readable(self):
        return True

    def readinto(self, b):
        view = memoryview(b).cast("B")
        if self._prefix:
            n = min(len(view), len(self._prefix))
            view[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._f.read(len(view))
        if not data:
            return 0
        view[:len(data)] = data
        return len(data)


def _describe(source):
    if isinstance(source, (str, bytes, os.PathLike)):
        return os.fsdecode(source)
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<%s object>" % type(source).__name__


def _read_exact(f, n):
    """Up to n bytes; fewer only at end of stream. Bounded chunks: n is never preallocated."""
    parts = []
    got = 0
    while got < n:
        data = f.read(min(n - got, _CHUNK))
        if not data:
            break
        parts.append(data)
        got += len(data)
    return b"".join(parts)


def _remaining_size(f):
    """Bytes left in a seekable binary stream from its current position, or None if unknown.

    os.fstat is trusted only for real files: a wrapper such as gzip.GzipFile reports the
    fileno() of the compressed file underneath, whose size is not the size of its content."""
    try:
        raw = f.raw if isinstance(f, (io.BufferedReader, io.BufferedRandom)) else f
        if isinstance(raw, io.FileIO):
            st = os.fstat(f.fileno())
            return st.st_size - f.tell() if stat.S_ISREG(st.st_mode) else None
        if f.seekable():
            pos = f.tell()
            end = f.seek(0, io.SEEK_END)
            f.seek(pos)
            return end - pos
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        pass
    return None


def read_idx(source):
    """Read an IDX array from a path or a binary file object (plain or gzip-compressed).

    Returns a new, writable NumPy array in native byte order with the file's dtype (uint8, int8,
    int16, int32, float32 or float64) and shape. Raises ValueError naming the file for a bad magic
    number, an unknown type code, zero dimensions, dimensions that are absurd (their byte count
    overflows or exceeds what the file could hold), truncated data, trailing data, or corrupt gzip
    data. A file object is read from its current position and is not closed.
    """
    name = _describe(source)
    if isinstance(source, (str, bytes, os.PathLike)):
        with open(source, "rb") as f:
            return _read_stream(f, name)
    return _read_stream(source, name)


def _read_stream(f, name):
    def fail(problem):
        raise ValueError("%s: not a valid IDX file: %s" % (name, problem))

    size = _remaining_size(f)  # of the file as stored (compressed, if it is gzip)
    head = _read_exact(f, 2)
    if head == b"\x1f\x8b":
        stream = gzip.GzipFile(fileobj=_Prefixed(head, f), mode="rb")
        # decompressed size is unknown; bound it by what deflate can produce from `size` bytes
        limit = None if size is None else size * _MAX_DEFLATE_RATIO
        exact = None
        try:
            return _read_body(stream, b"", limit, exact, fail)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            fail("corrupt gzip data (%s: %s)" % (type(exc).__name__, exc))
    return _read_body(f, head, size, size, fail)


def _read_body(f, head, limit, exact, fail):
    """Parse the header and the data from stream f; `head` holds bytes already read from it.

    limit: an upper bound on the (decompressed) byte count, or None if unknown.
    exact: the exact byte count of the IDX content (plain files of known size), or None."""
    magic = head + _read_exact(f, 4 - len(head))
    if len(magic) < 4:
        fail("truncated header (%d bytes; the magic number alone has 4)" % len(magic))
    if magic[0] != 0 or magic[1] != 0:
        fail("bad magic number 0x%s (must start with two zero bytes; is this an IDX file?)"
             % magic.hex())
    code, ndim = magic[2], magic[3]
    if code not in _TYPES:
        fail("unknown data type code 0x%02X (known: %s)"
             % (code, ", ".join("0x%02X" % c for c in sorted(_TYPES))))
    if ndim == 0:
        fail("zero dimensions")
    raw_dims = _read_exact(f, 4 * ndim)
    if len(raw_dims) < 4 * ndim:
        fail("truncated header: %d dimensions announced but the file ends after %d bytes"
             % (ndim, 4 + len(raw_dims)))
    dims = struct.unpack(">%dI" % ndim, raw_dims)
    dtype = _TYPES[code]
    header = 4 + 4 * ndim
    count = 1
    for d in dims:
        count *= d  # Python int: cannot overflow
    nbytes = count * dtype.itemsize
    if nbytes > _MAX_BYTES:
        fail("absurd dimensions %s: %d bytes of data overflow a 64-bit size" % (dims, nbytes))
    if limit is not None and header + nbytes > limit:
        if exact is not None:
            fail("dimensions %s need %d bytes of data but the file has only %d after the header "
                 "(truncated data or absurd dimensions)" % (dims, nbytes, exact - header))
        fail("absurd dimensions %s: %d bytes of data is more than a file of this size can hold"
             % (dims, nbytes))
    if exact is not None:
        # plain file of known size: the size is checked, so allocating is safe
        if header + nbytes < exact:
            fail("trailing data: %d bytes after the %d bytes of data that dimensions %s need"
                 % (exact - header - nbytes, nbytes, dims))
        buf = np.empty(nbytes, dtype=np.uint8)
        got = _readinto_all(f, buf)
        if got < nbytes:  # the file shrank while being read
            fail("truncated data: %d of %d bytes" % (got, nbytes))
    else:
        # unknown length: grow the buffer with the bytes that actually arrive
        buf = bytearray()
        while len(buf) <= nbytes:
            data = f.read(min(_CHUNK, nbytes + 1 - len(buf)))
            if not data:
                break
            buf += data
        if len(buf) < nbytes:
            fail("truncated data: dimensions %s need %d bytes but only %d are present"
                 % (dims, nbytes, len(buf)))
        if len(buf) > nbytes:
            fail("trailing data after the %d bytes that dimensions %s need" % (nbytes, dims))
        buf = np.frombuffer(buf, dtype=np.uint8)  # writable: it views a bytearray
    arr = buf.view(dtype).reshape(dims)
    if dtype.byteorder not in ("=", "|"):
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def _readinto_all(f, buf):
    view = memoryview(buf)
    got = 0
    readinto = getattr(f, "readinto", None)
    while got < len(view):
        if readinto is not None:
            n = readinto(view[got:got + _CHUNK * 16])
        else:
            data = f.read(min(len(view) - got, _CHUNK * 16))
            n = len(data)
            view[got:got + n] = data
        if not n:
            break
        got += n
    return got


def write_idx(path, array):
    """Write ``array`` as an IDX file; gzip-compressed if ``path`` ends in ``.gz``.

    ``path`` may also be a binary file object (written uncompressed at its current position).
    Supported dtypes: uint8, int8, int16, int32, float32, float64 (any byte order); arrays of
    at least one dimension, each dimension below 2**32. The gzip output is reproducible
    (its header carries no time stamp and no file name).
    """
    arr = np.asarray(array)
    key = (arr.dtype.kind, arr.dtype.itemsize)
    if key not in _CODES or arr.dtype.kind not in "uif":
        raise TypeError("write_idx: unsupported dtype %s (supported: uint8, int8, int16, int32, "
                        "float32, float64)" % arr.dtype)
    if not 1 <= arr.ndim <= 255:
        raise ValueError("write_idx: IDX arrays need 1 to 255 dimensions, got %d" % arr.ndim)
    if any(d >= 1 << 32 for d in arr.shape):
        raise ValueError("write_idx: dimension sizes must be below 2**32, got %s" % (arr.shape,))
    code = _CODES[key]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">%dI" % arr.ndim, *arr.shape)
    data = np.ascontiguousarray(arr, dtype=_TYPES[code]).tobytes()
    if not isinstance(path, (str, bytes, os.PathLike)):
        path.write(header)
        path.write(data)
        return
    if os.fsdecode(path).endswith(".gz"):
        with open(path, "wb") as raw, \
                gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
            f.write(header)
            f.write(data)
    else:
        with open(path, "wb") as f:
            f.write(header)
            f.write(data)
