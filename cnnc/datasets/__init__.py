"""Data sets with a Keras-style interface: ``cnnc.datasets.mnist`` and ``.fashion_mnist``.

``load_data()`` returns ``((x_train, y_train), (x_test, y_test))`` as uint8 arrays, images of shape
(n, 28, 28). The data is read from the original IDX files, found in this order:

1. ``$CNNC_DATA/mnist`` or ``$CNNC_DATA/fashion-mnist`` (the subdirectory only);
2. ``~/.cnnc/datasets/mnist`` or ``~/.cnnc/datasets/fashion-mnist`` (the download cache);
3. for Fashion-MNIST, ``/usr/share/datasets/fashion-mnist`` (Debian's dataset-fashion-mnist);
4. otherwise the files are downloaded into the cache, with SHA-256 verification.

``fashion_mnist.load_sample()`` returns a small stratified sample of Fashion-MNIST that ships with
cnnc and works offline. ``read_idx`` and ``write_idx`` read and write IDX files of any supported
type (plain or gzipped).

Importing this package reads no file and touches no network.
"""
from . import fashion_mnist, mnist
from ._cache import DownloadError
from ._idx import read_idx, write_idx

__all__ = ["mnist", "fashion_mnist", "read_idx", "write_idx", "DownloadError"]
