"""Fashion-MNIST (Zalando Research): 28x28 grey images of clothing in 10 classes.

``load_data()`` follows Keras' ``keras.datasets.fashion_mnist.load_data()`` convention and reads
the four original IDX files (see :mod:`cnnc.datasets`); ``load_sample()`` returns a small
stratified sample that ships inside cnnc and needs no download.
"""
from . import _cache

NAME = "fashion-mnist"

#: Label -> class name, in the order of the Keras documentation.
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

#: Base URLs tried in order when the files must be downloaded (IDX .gz files).
MIRRORS = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
]

#: SHA-256 and size of the official .gz files (as published for the S3 bucket; MD5 sums
#: 8d4fb7e6c68d591d4c3dfef9ec88bf0d, 25c81989df183df01b3e8a0aad5dffbe,
#: bef4ecab320f06d8554ea6380940ec79, bb300cfdad3c16e7a12a480ee83cd310), and the SHA-256 of their
#: decompressed content, computed from Debian's dataset-fashion-mnist package (whose .gz files are
#: the same data re-compressed without the file name in the gzip header). A downloaded file is
#: accepted if it matches either.
SHA256 = {
    "train-images-idx3-ubyte.gz": _cache.Digest(
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888"),
    "train-labels-idx1-ubyte.gz": _cache.Digest(
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9"),
    "t10k-images-idx3-ubyte.gz": _cache.Digest(
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b"),
    "t10k-labels-idx1-ubyte.gz": _cache.Digest(
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34"),
}

#: Directories searched after $CNNC_DATA/fashion-mnist and ~/.cnnc/datasets/fashion-mnist:
#: where Debian's dataset-fashion-mnist package installs the files.
SYSTEM_DIRS = ["/usr/share/datasets/fashion-mnist"]

SAMPLE_FILE = "fashion_mnist_sample.npz"


def load_data(*, data_dir=None, download=True, strict=True):
    """Load Fashion-MNIST as ``((x_train, y_train), (x_test, y_test))``.

    x_train: uint8 (60000, 28, 28); y_train: uint8 (60000,) class indices 0-9 (see
    ``CLASS_NAMES``); x_test: uint8 (10000, 28, 28); y_test: uint8 (10000,).

    The four IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each plain or gzipped ``.gz``) are
    read from the first of these directories that holds all four:

    1. ``$CNNC_DATA/fashion-mnist`` -- only this subdirectory: files directly in ``$CNNC_DATA``
       are not used, since MNIST and Fashion-MNIST share their file names;
    2. ``~/.cnnc/datasets/fashion-mnist`` (the download cache);
    3. the directories in ``SYSTEM_DIRS``: ``/usr/share/datasets/fashion-mnist``, where Debian's
       ``dataset-fashion-mnist`` package puts them.

    Otherwise (and if ``download`` is true) the missing files are downloaded from ``MIRRORS`` into
    ``~/.cnnc/datasets/fashion-mnist``, checked against the SHA-256 sums in ``SHA256`` and moved
    into place atomically. A failed download raises :class:`cnnc.datasets.DownloadError`; with
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


def load_sample():
    """The Fashion-MNIST sample shipped with cnnc: ``((x_train, y_train), (x_test, y_test))``.

    A stratified random sample of the real data set (equal counts per class, drawn with a fixed
    seed from the official training and test sets by tools/make_embedded_sample.py), for examples,
    tests and quick experiments without a download. Same conventions as :func:`load_data`: x uint8
    (n, 28, 28), y uint8 (n,). Fresh arrays are returned on every call.
    """
    import importlib.resources

    import numpy as np

    res = importlib.resources.files(__package__).joinpath("data").joinpath(SAMPLE_FILE)
    with res.open("rb") as f, np.load(f, allow_pickle=False) as z:
        x_train, y_train = z["x_train"], z["y_train"]
        x_test, y_test = z["x_test"], z["y_test"]
    for x, y in ((x_train, y_train), (x_test, y_test)):
        if (x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28)
                or y.dtype != np.uint8 or y.shape != (x.shape[0],)):
            raise ValueError("%s is damaged: unexpected arrays %s %s / %s %s"
                             % (SAMPLE_FILE, x.dtype, x.shape, y.dtype, y.shape))
    return (x_train, y_train), (x_test, y_test)
