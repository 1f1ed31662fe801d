"""Worked examples from the textbooks, checked exactly.

Rosebrock, "Deep Learning for Computer Vision with Python", tables 11.1-11.3: a 5x5 image convolved
with the Laplacian kernel. Géron, "Hands-On Machine Learning", fig. 14-7: 'same' padding with input
width 13, filter 6, stride 5. Krizhevsky's first AlexNet layer: 227x227x3 input, 11x11 filters,
stride 4 -> 55x55 outputs, 11*11*3 = 363 values per patch.
"""
import numpy as np
import pytest

import cnnc.nn as nn
import reference as ref

IMAGE = np.array([[95, 242, 186, 152, 39],
                  [39, 14, 220, 153, 180],
                  [5, 247, 212, 54, 46],
                  [46, 77, 133, 110, 74],
                  [156, 35, 74, 93, 116]])
LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]])
VALID = np.array([[692, -315, -6], [-680, -194, 305], [153, -59, -86]])
STRIDE2 = np.array([[692, -6], [153, -86]])
PADDED_FIRST_ROW = np.array([-99, -673, -130, -230, 176])


def _conv(image, kernel, data_format, dtype=np.float32, **kw):
    if data_format == "NHWC":
        x, w = image[None, :, :, None], kernel[:, :, None, None]
        return nn.conv2d(x.astype(dtype), w.astype(dtype), data_format="NHWC", **kw)[0, :, :, 0]
    x, w = image[None, None], kernel[None, None]
    return nn.conv2d(x.astype(dtype), w.astype(dtype), data_format="NCHW", **kw)[0, 0]


@pytest.mark.parametrize("dtype", [np.float32, np.int64, np.float64])
@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_rosebrock_laplacian(data_format, dtype):
    y = _conv(IMAGE, LAPLACIAN, data_format, dtype)
    assert y.dtype == np.float32
    assert np.array_equal(y, VALID)
    y2 = _conv(IMAGE, LAPLACIAN, data_format, dtype, strides=2)
    assert np.array_equal(y2, STRIDE2)
    yp = _conv(IMAGE, LAPLACIAN, data_format, dtype, padding=1)
    assert yp.shape == (5, 5)
    assert np.array_equal(yp[0], PADDED_FIRST_ROW)
    assert np.array_equal(yp[1:4, 1:4], VALID)  # the interior is the valid result
    # 'same' with an odd kernel and stride 1 is the symmetric padding of 1
    assert np.array_equal(_conv(IMAGE, LAPLACIAN, data_format, dtype, padding="same"), yp)


def test_rosebrock_twin():
    """The reference twin reproduces the book too (guards the twin itself)."""
    assert np.array_equal(ref.conv2d(IMAGE[None, :, :, None], LAPLACIAN[:, :, None, None])[0, :, :, 0],
                          VALID)
    assert np.array_equal(ref.conv2d(IMAGE[None, :, :, None], LAPLACIAN[:, :, None, None],
                                     strides=2)[0, :, :, 0], STRIDE2)
    assert np.array_equal(ref.conv2d(IMAGE[None, None], LAPLACIAN[None, None], padding=1,
                                     data_format="NCHW")[0, 0, 0], PADDED_FIRST_ROW)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_rosebrock_multichannel_batch(data_format):
    """The same example stacked: 3 images in a batch, 2 output filters (Laplacian and its negation)
    over a 2-channel input whose second channel is zero; still exact."""
    x = np.zeros((3, 5, 5, 2), np.float32)
    x[..., 0] = IMAGE
    w = np.zeros((3, 3, 2, 2), np.float32)
    w[:, :, 0, 0] = LAPLACIAN
    w[:, :, 0, 1] = -LAPLACIAN
    w[:, :, 1, :] = 7.0  # multiplies zeros
    if data_format == "NCHW":
        x, w = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
    y = nn.conv2d(x, w, data_format=data_format)
    if data_format == "NCHW":
        y = y.transpose(0, 2, 3, 1)
    for n in range(3):
        assert np.array_equal(y[n, :, :, 0], VALID)
        assert np.array_equal(y[n, :, :, 1], -VALID)


@pytest.mark.parametrize("data_format", ["NHWC", "NCHW"])
def test_geron_same_padding(data_format):
    """Input width 13, filter width 6, stride 5, 'same': ceil(13 / 5) = 3 outputs; total padding
    (3 - 1) * 5 + 6 - 13 = 3, split 1 left and 2 right."""
    assert ref.same_pad_1d(13, 6, 5, 1) == (1, 2)
    row = np.arange(1, 14, dtype=np.float32)
    k = np.ones(6, np.float32)
    if data_format == "NHWC":
        x, w = row.reshape(1, 1, 13, 1), k.reshape(1, 6, 1, 1)
    else:
        x, w = row.reshape(1, 1, 1, 13), k.reshape(1, 1, 1, 6)
    y = nn.conv2d(x, w, strides=5, padding="same", data_format=data_format)
    assert y.shape == ((1, 1, 3, 1) if data_format == "NHWC" else (1, 1, 1, 3))
    # windows over the padded row [0, 1..13, 0, 0]: [0,1..5], [5..10], [10..13, 0, 0]
    assert np.array_equal(y.reshape(-1), [sum(range(1, 6)), sum(range(5, 11)), sum(range(10, 14))])
    # == explicit padding (left 1, right 2)
    explicit = ((0, 0), (1, 2))
    assert np.array_equal(nn.conv2d(x, w, strides=5, padding=explicit, data_format=data_format), y)
    # the square 13x13 version has a 3x3 output
    x2 = np.ones((1, 13, 13, 1), np.float32)
    w2 = np.ones((6, 6, 1, 1), np.float32)
    assert nn.conv2d(x2, w2, strides=5, padding="same").shape == (1, 3, 3, 1)


def test_alexnet_im2col_shapes():
    x = np.zeros((1, 227, 227, 3), np.float32)
    x[0, :11, :11, :] = 1.0
    col = nn.im2col(x, 11, strides=4)
    assert col.shape == (3025, 363)
    assert np.all(col[0] == 1.0) and col[1].sum() == 7 * 11 * 3  # 2nd window overlaps 7 columns
    colc = nn.im2col(x.transpose(0, 3, 1, 2), 11, strides=4, data_format="NCHW")
    assert colc.shape == (363, 3025)
    assert np.all(colc[:, 0] == 1.0)
    assert np.array_equal(colc, ref.im2col(x.transpose(0, 3, 1, 2), 11, strides=4,
                                           data_format="NCHW"))
