"""Bad input raises a clear Python exception that names the offending argument (never a crash)."""
import re
import textwrap

import numpy as np
import pytest

import cnnc.nn as nn

X = np.ones((1, 5, 5, 6), np.float32)  # NHWC
W = np.ones((3, 3, 6, 4), np.float32)  # [KH, KW, C, Cout]
XC = np.ones((1, 6, 5, 5), np.float32)  # NCHW
WC = np.ones((4, 6, 3, 3), np.float32)  # [Cout, C, KH, KW]
DY = np.ones((1, 3, 3, 4), np.float32)  # valid output of X * W


def conv(**kw):
    args = dict(x=X, w=W)
    args.update(kw)
    return lambda: nn.conv2d(**args)


# (id, callable, exception, regex on the message)
CONV_CASES = [
    ("x_rank3", conv(x=X[0]), ValueError, r"\bx\b"),
    ("x_rank5", conv(x=X[None]), ValueError, r"\bx\b"),
    ("w_rank3", conv(w=W[0]), ValueError, r"\bw\b"),
    ("channel_mismatch", conv(w=np.ones((3, 3, 5, 4), np.float32)), ValueError, r"\b(w|x)\b"),
    ("channel_mismatch_nchw", lambda: nn.conv2d(XC, np.ones((4, 5, 3, 3)), data_format="NCHW"),
     ValueError, r"\b(w|x)\b"),
    ("layout_mixup", lambda: nn.conv2d(X, WC), ValueError, r"\b(w|x)\b|[Kk]ernel"),
    ("kernel_larger_than_input", conv(w=np.ones((7, 3, 6, 4))), ValueError, r"(?i)kernel|\bw\b"),
    ("dilated_kernel_too_large", conv(dilations=3), ValueError, r"(?i)kernel|dilation"),
    ("strides_zero", conv(strides=0), ValueError, "strides"),
    ("strides_negative", conv(strides=-1), ValueError, "strides"),
    ("strides_pair_zero", conv(strides=(1, 0)), ValueError, "strides"),
    ("strides_triple", conv(strides=(1, 1, 1)), ValueError, "strides"),
    ("dilations_zero", conv(dilations=0), ValueError, "dilations"),
    ("dilations_negative", conv(dilations=(-2, 1)), ValueError, "dilations"),
    ("groups_not_dividing_c", conv(w=np.ones((3, 3, 1, 4)), groups=4), ValueError, "groups"),
    ("groups_not_dividing_cout", conv(w=np.ones((3, 3, 3, 3)), groups=2), ValueError, "groups"),
    ("groups_zero", conv(groups=0), ValueError, "groups"),
    ("groups_negative", conv(groups=-2), ValueError, "groups"),
    ("padding_negative", conv(padding=-1), ValueError, "padding"),
    ("padding_negative_pair", conv(padding=((0, 0), (-1, 2))), ValueError, "padding"),
    ("padding_bad_string", conv(padding="full"), ValueError, "padding"),
    ("padding_2pow62", conv(padding=2 ** 62), ValueError, "padding"),
    ("padding_10pow30", conv(padding=10 ** 30), ValueError, "padding"),
    ("padding_huge_pair", conv(padding=((0, 2 ** 63 - 10), (0, 0))), ValueError, "padding"),
    ("strides_huge", conv(strides=10 ** 30), ValueError, "strides"),
    ("dilations_huge", conv(dilations=2 ** 62), ValueError, r"(?i)dilations|kernel"),
    ("data_format_bad", conv(data_format="NWHC"), ValueError, "data_format"),
    ("bias_wrong_size", conv(b=np.ones(5)), ValueError, r"\bb\b"),
    ("bias_2d", conv(b=np.ones((1, 4))), ValueError, r"\bb\b"),
    ("x_complex", conv(x=X.astype(np.complex64)), TypeError, r"\bx\b"),
    ("w_complex", conv(w=W.astype(np.complex128)), TypeError, r"\bw\b"),
    ("x_object", conv(x=X.astype(object)), TypeError, r"\bx\b"),
    ("x_str", conv(x=np.full(X.shape, "a")), TypeError, r"\bx\b"),
    ("b_str", conv(b=np.array(["1", "2", "3", "4"])), TypeError, r"\bb\b"),
    ("activation_unknown", conv(activation="swishy"), ValueError, "activation|relu"),
]


@pytest.mark.parametrize("fn,exc,match", [c[1:] for c in CONV_CASES], ids=[c[0] for c in CONV_CASES])
def test_conv2d_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


def grad(**kw):
    args = dict(x=X, w=W, dy=DY)
    args.update(kw)
    return lambda: nn.conv2d_grad(**args)


GRAD_CASES = [
    ("dy_wrong_spatial", grad(dy=np.ones((1, 4, 3, 4))), ValueError, r"\bdy\b"),
    ("dy_wrong_channels", grad(dy=np.ones((1, 3, 3, 5))), ValueError, r"\bdy\b"),
    ("dy_wrong_batch", grad(dy=np.ones((2, 3, 3, 4))), ValueError, r"\bdy\b"),
    ("dy_wrong_rank", grad(dy=np.ones((3, 3, 4))), ValueError, r"\bdy\b"),
    ("dy_for_other_stride", grad(dy=DY, strides=2), ValueError, r"\bdy\b"),
    ("dy_nchw_order", grad(x=XC, w=WC, dy=DY, data_format="NCHW"), ValueError, r"\bdy\b"),
    ("dy_complex", grad(dy=DY.astype(np.complex64)), TypeError, r"\bdy\b"),
    ("grad_groups_bad", grad(groups=4), ValueError, "groups"),
    ("grad_strides_zero", grad(strides=0), ValueError, "strides"),
    ("grad_padding_huge", grad(padding=2 ** 62), ValueError, "padding"),
    ("grad_x_rank", grad(x=X[0]), ValueError, r"\bx\b"),
]


@pytest.mark.parametrize("fn,exc,match", [c[1:] for c in GRAD_CASES], ids=[c[0] for c in GRAD_CASES])
def test_conv2d_grad_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


OTHER_CASES = [
    # im2col
    ("im2col_kernel_zero", lambda: nn.im2col(X, 0), ValueError, "kernel_size"),
    ("im2col_kernel_negative", lambda: nn.im2col(X, (3, -1)), ValueError, "kernel_size"),
    ("im2col_kernel_huge", lambda: nn.im2col(X, 2 ** 62), ValueError, "kernel"),
    ("im2col_kernel_10pow30", lambda: nn.im2col(X, 10 ** 30), ValueError, "kernel"),
    ("im2col_kernel_too_large", lambda: nn.im2col(X, 6), ValueError, r"(?i)kernel"),
    ("im2col_padding_huge", lambda: nn.im2col(X, 3, padding=10 ** 30), ValueError, "padding"),
    ("im2col_strides_zero", lambda: nn.im2col(X, 3, strides=0), ValueError, "strides"),
    ("im2col_x_rank", lambda: nn.im2col(X[0], 3), ValueError, r"\bx\b"),
    ("im2col_x_complex", lambda: nn.im2col(X.astype(complex), 3), TypeError, r"\bx\b"),
    # matmul
    ("matmul_1d", lambda: nn.matmul(np.ones(3), np.ones((3, 2))), ValueError, r"\ba\b"),
    ("matmul_3d", lambda: nn.matmul(np.ones((3, 2)), np.ones((2, 2, 2))), ValueError, r"\bb\b"),
    ("matmul_complex", lambda: nn.matmul(np.ones((2, 2), complex), np.ones((2, 2))), TypeError,
     r"\ba\b"),
    ("matmul_object", lambda: nn.matmul(np.ones((2, 2)), np.ones((2, 2), object)), TypeError,
     r"\bb\b"),
    ("matmul_inner", lambda: nn.matmul(np.ones((2, 3)), np.ones((2, 3))), ValueError, r"\(2, 3\)"),
    # dense
    ("dense_x_rank1", lambda: nn.dense(np.ones(3), np.ones((3, 2))), ValueError, r"\bx\b"),
    ("dense_w_rank1", lambda: nn.dense(np.ones((2, 3)), np.ones(3)), ValueError, r"\bw\b"),
    ("dense_inner", lambda: nn.dense(np.ones((2, 3)), np.ones((4, 2))), ValueError, r"\b(w|x)\b"),
    ("dense_bias", lambda: nn.dense(np.ones((2, 3)), np.ones((3, 2)), np.ones(3)), ValueError,
     r"\bb\b"),
    ("dense_activation", lambda: nn.dense(np.ones((2, 3)), np.ones((3, 2)), activation="x"),
     ValueError, "relu"),
    ("dense_x_str", lambda: nn.dense(np.full((2, 3), "s"), np.ones((3, 2))), TypeError, r"\bx\b"),
    ("dense_grad_dy", lambda: nn.dense_grad(np.ones((2, 3)), np.ones((3, 2)), np.ones((2, 3))),
     ValueError, r"\bdy\b"),
    ("dense_grad_dy_rank", lambda: nn.dense_grad(np.ones((2, 5, 3)), np.ones((3, 2)),
                                                 np.ones((10, 2))), ValueError, r"\bdy\b"),
    # bias_add
    ("bias_add_size", lambda: nn.bias_add(np.ones((2, 3)), np.ones(2)), ValueError, r"\bb\b"),
    ("bias_add_nchw_size", lambda: nn.bias_add(XC, np.ones(5), data_format="NCHW"), ValueError,
     r"\bb\b"),
    ("bias_add_layout", lambda: nn.bias_add(XC, np.ones(6), data_format="CHW"), ValueError,
     "data_format"),
    # activations
    ("relu_complex", lambda: nn.relu(np.ones(3, complex)), TypeError, r"\bx\b"),
    ("sigmoid_object", lambda: nn.sigmoid(np.array([1, "a"], object)), TypeError, r"\bx\b"),
    ("tanh_grad_dy_shape", lambda: nn.tanh_grad(np.ones(3), np.ones(4)), ValueError, r"\bdy\b"),
    ("relu_grad_dy_complex", lambda: nn.relu_grad(np.ones(3), np.ones(3, complex)), TypeError,
     r"\bdy\b"),
    ("softmax_grad_dy_shape", lambda: nn.softmax_grad(np.ones((2, 3)), np.ones((3, 2))),
     ValueError, r"\bdy\b"),
    ("log_softmax_grad_dy_shape", lambda: nn.log_softmax_grad(np.ones((2, 3)), np.ones(3)),
     ValueError, r"\bdy\b"),
    ("softmax_str", lambda: nn.softmax(np.array(["a", "b"])), TypeError, r"\bx\b"),
]


@pytest.mark.parametrize("fn,exc,match", [c[1:] for c in OTHER_CASES],
                         ids=[c[0] for c in OTHER_CASES])
def test_other_ops_bad_input(fn, exc, match):
    with pytest.raises(exc, match=match):
        fn()


# Crash-prone requests, re-run in a child process: a segfault or abort there fails the test.
SUBPROCESS_CASES = [
    ("conv_padding_2pow62", "nn.conv2d(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), padding=2**62)",
     "ValueError", "padding"),
    ("conv_padding_10pow30", "nn.conv2d(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), "
                             "padding=((10**30, 0), (0, 0)))", "ValueError", "padding"),
    ("conv_nchw_padding_huge", "nn.conv2d(np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3)), "
                               "padding=(2**62, 2**62), data_format='NCHW')", "ValueError", "padding"),
    ("conv_grad_padding_huge", "nn.conv2d_grad(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), "
                               "np.ones((1, 3, 3, 2)), padding=2**62)", "ValueError", "padding"),
    ("im2col_kernel_2pow62", "nn.im2col(np.ones((1, 5, 5, 2)), (2**62, 1), padding=2**62)",
     "ValueError", "(?i)kernel|padd"),
    ("im2col_kernel_10pow30", "nn.im2col(np.ones((1, 5, 5, 2)), 10**30)", "ValueError",
     "kernel"),
    ("im2col_dilation_huge", "nn.im2col(np.ones((1, 5, 5, 2)), 3, dilations=2**61, padding=2**62)",
     "ValueError", "(?i)dilations|kernel|padd"),
    # per-axis sizes fit in int64 but the output's element count does not
    ("conv_padding_2pow31", "nn.conv2d(np.ones((1, 5, 5, 2)), np.ones((3, 3, 2, 2)), padding=2**31)",
     "ValueError", "(?i)padding|shape|too large"),
    ("im2col_padding_2pow40", "nn.im2col(np.ones((1, 5, 5, 2)), 3, padding=2**40)",
     "ValueError", "(?i)padding|shape|too large"),
    ("conv_grad_dy_too_small", "nn.conv2d_grad(np.ones((2, 9, 9, 3)), np.ones((3, 3, 3, 4)), "
                               "np.ones((1, 1, 1, 1)))", "ValueError", "dy"),
    ("conv_grad_dy_too_big", "nn.conv2d_grad(np.ones((1, 4, 4, 3)), np.ones((3, 3, 3, 4)), "
                             "np.ones((1, 4, 4, 4)))", "ValueError", "dy"),
    ("conv_grad_dy_nchw", "nn.conv2d_grad(np.ones((1, 3, 9, 9)), np.ones((4, 3, 3, 3)), "
                          "np.ones((1, 7, 7, 4)), data_format='NCHW')", "ValueError", "dy"),
    ("dense_grad_dy_small", "nn.dense_grad(np.ones((64, 32)), np.ones((32, 16)), np.ones((1, 16)))",
     "ValueError", "dy"),
]


@pytest.mark.parametrize("stmt,exc_name,match", [c[1:] for c in SUBPROCESS_CASES],
                         ids=[c[0] for c in SUBPROCESS_CASES])
def test_crash_prone_cases_in_subprocess(stmt, exc_name, match, run_py):
    code = textwrap.dedent(f"""
        import numpy as np
        import cnnc.nn as nn
        try:
            {stmt}
        except Exception as exc:
            print("RAISED", type(exc).__name__, exc)
        else:
            print("NO EXCEPTION")
    """)
    proc = run_py(code)
    assert proc.returncode == 0, f"child died with {proc.returncode}: {proc.stderr[-2000:]}"
    out = proc.stdout
    assert f"RAISED {exc_name}" in out, out + proc.stderr[-2000:]
    assert re.search(match, out), out
