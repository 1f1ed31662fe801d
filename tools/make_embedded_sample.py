#!/usr/bin/env python3
"""Make cnnc/datasets/data/fashion_mnist_sample.npz, the Fashion-MNIST sample shipped with cnnc.

The sample is stratified: 340 training images of each of the 10 classes (3400 in all), drawn from
the official 60000 training images, and 85 test images of each class (850 in all), drawn from the
official 10000 test images. Within each class the images are drawn without replacement by
``numpy.random.default_rng(SEED)`` with ``SEED = 20170825``; each split is then shuffled with the
same generator so that the classes are interleaved. The counts are the largest with a 4:1
train:test ratio that keep the file (np.savez_compressed) well under 2 MB (about 1.86 MB).

The .npz holds, all loaded with ``np.load(allow_pickle=False)``:

* ``x_train`` uint8 (3400, 28, 28), ``y_train`` uint8 (3400,)
* ``x_test``  uint8 (850, 28, 28),  ``y_test``  uint8 (850,)
* ``train_indices``, ``test_indices`` uint16: the position of each image in the official
  training / test set (so x_train == official_x_train[train_indices]).

Source: the Debian package dataset-fashion-mnist (``apt-get install dataset-fashion-mnist``),
which installs the four official IDX files in /usr/share/datasets/fashion-mnist. Command, run from
the repository root (it needs NumPy only, not a built cnnc)::

    python tools/make_embedded_sample.py

Options: ``--source DIR`` (another directory with the four IDX files, plain or .gz), ``--out PATH``,
``--seed``, ``--train-per-class``, ``--test-per-class``. The arrays are reproducible from the
same seed and source; the .npz bytes are not (zip entries carry a time stamp).
"""
import argparse
import importlib.util
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = 20170825
TRAIN_PER_CLASS = 340
TEST_PER_CLASS = 85
NUM_CLASSES = 10
MAX_BYTES = 2_000_000
DEFAULT_SOURCE = "/usr/share/datasets/fashion-mnist"
DEFAULT_OUT = os.path.join(ROOT, "cnnc", "datasets", "data", "fashion_mnist_sample.npz")
FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _load_idx_module():
    """cnnc/datasets/_idx.py loaded on its own: importing cnnc would need the C extension."""
    path = os.path.join(ROOT, "cnnc", "datasets", "_idx.py")
    spec = importlib.util.spec_from_file_location("_cnnc_idx", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _path(source, base):
    for p in (os.path.join(source, base), os.path.join(source, base + ".gz")):
        if os.path.isfile(p):
            return p
    raise SystemExit("error: %s (or %s.gz) not found in %s" % (base, base, source))


def stratified_indices(labels, per_class, rng):
    """per_class indices of each class (sorted within the class, without replacement), then all
    shuffled together."""
    picks = []
    for c in range(NUM_CLASSES):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise SystemExit("error: class %d has only %d images, %d wanted"
                             % (c, len(pool), per_class))
        picks.append(np.sort(rng.choice(pool, per_class, replace=False)))
    idx = np.concatenate(picks)
    rng.shuffle(idx)
    return idx


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--source", default=DEFAULT_SOURCE)
    ap.add_argument("--out", default=DEFAULT_OUT)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--train-per-class", type=int, default=TRAIN_PER_CLASS)
    ap.add_argument("--test-per-class", type=int, default=TEST_PER_CLASS)
    args = ap.parse_args(argv)

    idx = _load_idx_module()
    x_tr, y_tr, x_te, y_te = (idx.read_idx(_path(args.source, b)) for b in FILES)
    assert x_tr.shape == (60000, 28, 28) and y_tr.shape == (60000,), (x_tr.shape, y_tr.shape)
    assert x_te.shape == (10000, 28, 28) and y_te.shape == (10000,), (x_te.shape, y_te.shape)

    rng = np.random.default_rng(args.seed)
    i_tr = stratified_indices(y_tr, args.train_per_class, rng)
    i_te = stratified_indices(y_te, args.test_per_class, rng)

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp.npz"  # savez appends .npz to names without it
    np.savez_compressed(tmp,
                        x_train=x_tr[i_tr], y_train=y_tr[i_tr],
                        x_test=x_te[i_te], y_test=y_te[i_te],
                        train_indices=i_tr.astype(np.uint16),
                        test_indices=i_te.astype(np.uint16))
    os.replace(tmp, args.out)
    size = os.path.getsize(args.out)
    print("wrote %s: %d train + %d test images (%d + %d per class), seed %d, %d bytes"
          % (args.out, len(i_tr), len(i_te), args.train_per_class, args.test_per_class,
             args.seed, size))
    if size > MAX_BYTES:
        print("warning: %d bytes is over the %d-byte budget" % (size, MAX_BYTES), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
