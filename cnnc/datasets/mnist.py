"""The MNIST handwritten digits (LeCun, Cortes, Burges): 60000 training and 10000 test images.

``load_data()`` follows Keras' ``keras.datasets.mnist.load_data()`` convention but reads the four
original IDX files (see :mod:`cnnc.datasets`).
"""
from . import _cache

NAME = "mnist"

#: Base URLs tried in order when the files must be downloaded (IDX .gz files).
MIRRORS = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
]

#: SHA-256 and size of the official .gz files (the files served by both mirrors and, formerly,
#: yann.lecun.com). The MD5 sums of the same files, as published by torchvision, are
#: f68b3c2dcbeaaa9fbdd348bbdeb94873, d53e105ee54ea40749a09fcbcd1e9432,
#: 9fb629c4189551a2d022fa330f9573f3 and ec29112dd5afa0611ce80d1b7f02629c.
SHA256 = {
    "train-images-idx3-ubyte.gz": _cache.Digest(
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
    "train-labels-idx1-ubyte.gz": _cache.Digest(
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
    "t10k-images-idx3-ubyte.gz": _cache.Digest(
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
    "t10k-labels-idx1-ubyte.gz": _cache.Digest(
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
}

#: Directories searched after $CNNC_DATA/mnist and ~/.cnnc/datasets/mnist (none by default).
SYSTEM_DIRS = []


def load_data(*, data_dir=None, download=True, strict=True):
    """Load MNIST as ``((x_train, y_train), (x_test, y_test))``.

    x_train: uint8 (60000, 28, 28); y_train: uint8 (60000,) digits 0-9;
    x_test: uint8 (10000, 28, 28); y_test: uint8 (10000,).

    The four IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each plain or gzipped ``.gz``) are
    read from the first of these directories that holds all four:

    1. ``$CNNC_DATA/mnist`` -- only this subdirectory: files directly in ``$CNNC_DATA`` are not
       used, since MNIST and Fashion-MNIST share their file names;
    2. ``~/.cnnc/datasets/mnist`` (the download cache);
    3. the directories in ``SYSTEM_DIRS`` (none by default).

    Otherwise (and if ``download`` is true) the missing files are downloaded from ``MIRRORS`` into
    ``~/.cnnc/datasets/mnist``, checked against the SHA-256 sums in ``SHA256`` and moved into place
    atomically. A failed download raises :class:`cnnc.datasets.DownloadError`; with
    ``download=False`` a missing data set raises FileNotFoundError.

    Args:
        data_dir: read the four files from this directory only (no search, no download).
        download: whether to download the files when no directory holds them.
        strict: require exactly 60000 training and 10000 test images (the default). With
            ``strict=False`` any counts are accepted; images must still be uint8 (n, 28, 28) with
            as many uint8 labels (values 0-9). Every file is validated as IDX in both modes.
    """
    return _cache.load_dataset(NAME, MIRRORS, SHA256, SYSTEM_DIRS, data_dir=data_dir,
                               download=download, strict=strict)
