"""nn.im2col against the NumPy twin (exact: im2col only copies values and writes zeros)."""
import numpy as np
import pytest

import cnnc.nn as nn
import reference as ref

# n, h, w, c, kernel_size, strides, padding, dilations
CASES = [
    (1, 1, 1, 1, 1, 1, "valid", 1),
    (1, 5, 7, 3, 3, 1, "valid", 1),
    (3, 5, 7, 3, (2, 3), (2, 1), "same", 1),
    (1, 13, 13, 5, 5, 3, "same", 2),
    (3, 7, 13, 17, 3, (1, 3), ((0, 2), (1, 0)), (2, 1)),
    (1, 7, 5, 1, (5, 3), 2, (2, 1), 1),
    (1, 2, 1, 3, 3, 1, 1, 1),  # kernel larger than the input, fits once padded
    (3, 13, 7, 5, (1, 2), (3, 2), 2, (1, 2)),
    (1, 13, 13, 3, 6, 5, "same", 1),
    (1, 5, 5, 17, 1, 2, "valid", 1),
]


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
@pytest.mark.parametrize("case", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_im2col_matches_twin(case, data_format, rng):
    n, h, w, c, k, s, p, d = case
    shape = (n, h, w, c) if data_format == "NHWC" else (n, c, h, w)
    x = rng.standard_normal(shape).astype(np.float32)
    col = nn.im2col(x, k, strides=s, padding=p, dilations=d, data_format=data_format)
    assert col.dtype == np.float32
    want = ref.im2col(x, k, strides=s, padding=p, dilations=d, data_format=data_format)
    assert col.shape == want.shape
    assert np.array_equal(col, want)


def test_im2col_layouts_are_transposes(rng):
    """NCHW col[(c, kh, kw), (n, oh, ow)] is NHWC col[(n, oh, ow), (kh, kw, c)] reordered."""
    x = rng.standard_normal((3, 7, 5, 4)).astype(np.float32)
    kw = dict(strides=(2, 1), padding="same", dilations=(1, 2))
    a = nn.im2col(x, (3, 2), **kw)
    b = nn.im2col(x.transpose(0, 3, 1, 2), (3, 2), data_format="NCHW", **kw)
    rows = a.shape[0]
    perm = a.reshape(rows, 3, 2, 4).transpose(3, 1, 2, 0).reshape(4 * 3 * 2, rows)
    assert np.array_equal(perm, b)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_im2col_times_weights_is_conv(data_format, rng):
    """im2col + matmul reproduces conv2d (groups=1)."""
    x = rng.standard_normal((3, 13, 7, 5)).astype(np.float32)
    w = rng.standard_normal((3, 3, 5, 17)).astype(np.float32)
    kw = dict(strides=(2, 1), padding=((1, 0), (2, 1)), dilations=(1, 2))
    y = nn.conv2d(x, w, **kw)
    if data_format == "NHWC":
        col = nn.im2col(x, (3, 3), **kw)
        y2 = nn.matmul(col, w.reshape(-1, 17)).reshape(y.shape)
    else:
        col = nn.im2col(x.transpose(0, 3, 1, 2), (3, 3), data_format="NCHW", **kw)
        w2 = w.transpose(3, 2, 0, 1).reshape(17, -1)
        y2 = nn.matmul(w2, col).reshape(17, *y.shape[:3]).transpose(1, 2, 3, 0)
    ref.assert_close(y2, y, mag=ref.conv2d_mag(x, w, **kw))


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_im2col_integer_input_and_padding_zeros(data_format):
    x = np.arange(1, 1 + 2 * 3 * 3, dtype=np.int64).reshape(2, 3, 3, 1)
    if data_format == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    col = nn.im2col(x, 3, padding=1, data_format=data_format)
    assert col.dtype == np.float32
    assert np.array_equal(col, ref.im2col(x, 3, padding=1, data_format=data_format))
    # x holds no zeros, so the zeros of col are exactly the padding reads: per image, 9 windows x 9
    # taps = 81 reads, of which 4*4 (corners) + 4*6 (edges) + 9 (centre) = 49 hit x -> 32 zeros
    assert int((col == 0).sum()) == 2 * 32
