# bindings: pool (included by _core.pyx)
#
# Pooling geometry travels as one tuple, built by cnnc._nn_pool:
#     geom = (n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, layout, ceil_mode)
# with layout "NHWC" or "NCHW". Arrays must already have the sizes the geometry implies.

cdef int _layout_code(object layout) except -1:
    if layout == "NHWC":
        return CNNC_NHWC
    if layout == "NCHW":
        return CNNC_NCHW
    raise ValueError(f"internal: layout must be 'NHWC' or 'NCHW', received {layout!r}")


cdef int _pool_params(cnnc_pool2d_params *p, tuple geom) except -1:
    if len(geom) != 16:
        raise ValueError(f"internal: pooling geometry must have 16 fields, received {len(geom)}")
    (p.win.n, p.win.h, p.win.w, p.win.c, p.win.kh, p.win.kw, p.win.sh, p.win.sw,
     p.win.dh, p.win.dw, p.win.pt, p.win.pb, p.win.pl, p.win.pr) = geom[:14]
    p.win.layout = _layout_code(geom[14])
    p.ceil_mode = 1 if geom[15] else 0
    return 0


cdef int _need(object a, int64_t size, str name) except -1:
    # Internal contract check: the C core trusts array sizes, so verify them before every call.
    if a is not None and a.size != size:
        raise ValueError(f"internal: {name} has {a.size} elements, the C call needs {size}")
    return 0


cdef int _pool_sizes(cnnc_pool2d_params *p, tuple geom, object xlike, object ylike,
                     object argmax) except -1:
    """Fill p from geom and check x-sized / y-sized arrays against the C core's output size."""
    cdef int64_t oh = 0, ow = 0
    _pool_params(p, geom)
    _check(cnnc_pool2d_output(p, &oh, &ow), "pooling geometry")
    _need(xlike[1], p.win.n * p.win.h * p.win.w * p.win.c, xlike[0])
    _need(ylike[1], p.win.n * oh * ow * p.win.c, ylike[0])
    _need(argmax, p.win.n * oh * ow * p.win.c, "argmax")
    return 0


def pool2d_output(tuple geom):
    """(oh, ow) of a pooling geometry; ValueError if the window does not fit."""
    cdef cnnc_pool2d_params p
    cdef int64_t oh = 0, ow = 0
    _pool_params(&p, geom)
    _check(cnnc_pool2d_output(&p, &oh, &ow), "pool2d_output")
    return (oh, ow)


def max_pool2d_forward(tuple geom, x, y, argmax=None):
    cdef cnnc_pool2d_params p
    _pool_sizes(&p, geom, ("x", x), ("y", y), argmax)
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *xp = _cf(x, "x")
    cdef float *yp = _wf(y, "y")
    cdef int64_t *ap = _wi64_opt(argmax, "argmax")
    cdef int rc
    with nogil:
        rc = cnnc_max_pool2d_forward(&ctx, &p, xp, yp, ap)
    _check(rc, "max_pool2d")


def max_pool2d_backward(tuple geom, dy, argmax, dx):
    cdef cnnc_pool2d_params p
    _pool_sizes(&p, geom, ("dx", dx), ("dy", dy), argmax)
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *dyp = _cf(dy, "dy")
    cdef const int64_t *ap = _ci64(argmax, "argmax")
    cdef float *dxp = _wf(dx, "dx")
    cdef int rc
    with nogil:
        rc = cnnc_max_pool2d_backward(&ctx, &p, dyp, ap, dxp)
    _check(rc, "max_pool2d_grad")


POOL_MAX_TAPS = CNNC_POOL_MAX_TAPS


def max_pool2d_forward_taps(tuple geom, x, y, taps):
    cdef cnnc_pool2d_params p
    _pool_sizes(&p, geom, ("x", x), ("y", y), taps)
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *xp = _cf(x, "x")
    cdef float *yp = _wf(y, "y")
    cdef uint8_t *tp = _wu8(taps, "taps")
    cdef int rc
    with nogil:
        rc = cnnc_max_pool2d_forward_taps(&ctx, &p, xp, yp, tp)
    _check(rc, "max_pool2d")


def max_pool2d_backward_taps(tuple geom, dy, taps, dx):
    cdef cnnc_pool2d_params p
    _pool_sizes(&p, geom, ("dx", dx), ("dy", dy), taps)
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *dyp = _cf(dy, "dy")
    cdef const uint8_t *tp = _cu8(taps, "taps")
    cdef float *dxp = _wf(dx, "dx")
    cdef int rc
    with nogil:
        rc = cnnc_max_pool2d_backward_taps(&ctx, &p, dyp, tp, dxp)
    _check(rc, "max_pool2d_grad")


def avg_pool2d_forward(tuple geom, bint count_include_pad, x, y):
    cdef cnnc_pool2d_params p
    _pool_sizes(&p, geom, ("x", x), ("y", y), None)
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *xp = _cf(x, "x")
    cdef float *yp = _wf(y, "y")
    cdef int cip = 1 if count_include_pad else 0
    cdef int rc
    with nogil:
        rc = cnnc_avg_pool2d_forward(&ctx, &p, cip, xp, yp)
    _check(rc, "avg_pool2d")


def avg_pool2d_backward(tuple geom, bint count_include_pad, dy, dx):
    cdef cnnc_pool2d_params p
    _pool_sizes(&p, geom, ("dx", dx), ("dy", dy), None)
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *dyp = _cf(dy, "dy")
    cdef float *dxp = _wf(dx, "dx")
    cdef int cip = 1 if count_include_pad else 0
    cdef int rc
    with nogil:
        rc = cnnc_avg_pool2d_backward(&ctx, &p, cip, dyp, dxp)
    _check(rc, "avg_pool2d_grad")


def global_avg_pool2d_forward(int64_t n, int64_t h, int64_t w, int64_t c, layout, x, y):
    cdef cnnc_ctx ctx = _ctx()
    _need(x, n * h * w * c, "x")
    _need(y, n * c, "y")
    cdef int lay = _layout_code(layout)
    cdef const float *xp = _cf(x, "x")
    cdef float *yp = _wf(y, "y")
    cdef int rc
    with nogil:
        rc = cnnc_global_avg_pool2d_forward(&ctx, n, h, w, c, lay, xp, yp)
    _check(rc, "global_avg_pool2d")


def global_avg_pool2d_backward(int64_t n, int64_t h, int64_t w, int64_t c, layout, dy, dx):
    cdef cnnc_ctx ctx = _ctx()
    _need(dx, n * h * w * c, "dx")
    _need(dy, n * c, "dy")
    cdef int lay = _layout_code(layout)
    cdef const float *dyp = _cf(dy, "dy")
    cdef float *dxp = _wf(dx, "dx")
    cdef int rc
    with nogil:
        rc = cnnc_global_avg_pool2d_backward(&ctx, n, h, w, c, lay, dyp, dxp)
    _check(rc, "global_avg_pool2d_grad")


def global_max_pool2d_forward(int64_t n, int64_t h, int64_t w, int64_t c, layout, x, y,
                              argmax=None):
    cdef cnnc_ctx ctx = _ctx()
    _need(x, n * h * w * c, "x")
    _need(y, n * c, "y")
    _need(argmax, n * c, "argmax")
    cdef int lay = _layout_code(layout)
    cdef const float *xp = _cf(x, "x")
    cdef float *yp = _wf(y, "y")
    cdef int64_t *ap = _wi64_opt(argmax, "argmax")
    cdef int rc
    with nogil:
        rc = cnnc_global_max_pool2d_forward(&ctx, n, h, w, c, lay, xp, yp, ap)
    _check(rc, "global_max_pool2d")


def global_max_pool2d_backward(int64_t n, int64_t h, int64_t w, int64_t c, dy, argmax, dx):
    cdef cnnc_ctx ctx = _ctx()
    _need(dx, n * h * w * c, "dx")
    _need(dy, n * c, "dy")
    _need(argmax, n * c, "argmax")
    cdef const float *dyp = _cf(dy, "dy")
    cdef const int64_t *ap = _ci64(argmax, "argmax")
    cdef float *dxp = _wf(dx, "dx")
    cdef int rc
    with nogil:
        rc = cnnc_global_max_pool2d_backward(&ctx, n, h, w, c, dyp, ap, dxp)
    _check(rc, "global_max_pool2d_grad")


def max_pool_depth_forward(int64_t rows, int64_t c, int64_t k, int64_t s, x, y, argmax=None):
    cdef cnnc_ctx ctx = _ctx()
    if rows < 1 or c < 1 or k < 1 or s < 1 or k > c:
        _check(-1, "max_pool (depth)")
    _need(x, rows * c, "x")
    _need(y, rows * ((c - k) // s + 1), "y")
    _need(argmax, rows * ((c - k) // s + 1), "argmax")
    cdef const float *xp = _cf(x, "x")
    cdef float *yp = _wf(y, "y")
    cdef int64_t *ap = _wi64_opt(argmax, "argmax")
    cdef int rc
    with nogil:
        rc = cnnc_max_pool_depth_forward(&ctx, rows, c, k, s, xp, yp, ap)
    _check(rc, "max_pool (depth)")


def max_pool_depth_backward(int64_t rows, int64_t c, int64_t k, int64_t s, dy, argmax, dx):
    cdef cnnc_ctx ctx = _ctx()
    if rows < 1 or c < 1 or k < 1 or s < 1 or k > c:
        _check(-1, "max_pool (depth)")
    _need(dx, rows * c, "dx")
    _need(dy, rows * ((c - k) // s + 1), "dy")
    _need(argmax, rows * ((c - k) // s + 1), "argmax")
    cdef const float *dyp = _cf(dy, "dy")
    cdef const int64_t *ap = _ci64(argmax, "argmax")
    cdef float *dxp = _wf(dx, "dx")
    cdef int rc
    with nogil:
        rc = cnnc_max_pool_depth_backward(&ctx, rows, c, k, s, dyp, ap, dxp)
    _check(rc, "max_pool_grad (depth)")
