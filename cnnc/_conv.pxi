# im2col / Conv2D / Dense bindings (included by _core.pyx).
# `win` is the tuple (n, h, w, c, kh, kw, sh, sw, dh, dw, pt, pb, pl, pr, layout).

cdef cnnc_window2d _window(tuple win) except *:
    cdef cnnc_window2d p
    (p.n, p.h, p.w, p.c, p.kh, p.kw, p.sh, p.sw, p.dh, p.dw, p.pt, p.pb, p.pl, p.pr, p.layout) = win
    return p


cdef cnnc_conv2d_params _conv_params(tuple win, int64_t cout, int64_t groups) except *:
    cdef cnnc_conv2d_params p
    p.win = _window(win)
    p.cout = cout
    p.groups = groups
    return p


def im2col(x, col, tuple win, int64_t c0, int64_t cg):
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_window2d p = _window(win)
    cdef const float *px = _cf(x, "x")
    cdef float *pc = _wf(col, "col")
    cdef int rc
    with nogil:
        rc = cnnc_im2col(&ctx, &p, c0, cg, px, pc)
    _check(rc, "im2col")


def col2im(col, dx, tuple win, int64_t c0, int64_t cg):
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_window2d p = _window(win)
    cdef const float *pc = _cf(col, "col")
    cdef float *px = _wf(dx, "dx")
    cdef int rc
    with nogil:
        rc = cnnc_col2im(&ctx, &p, c0, cg, pc, px)
    _check(rc, "col2im")


def conv2d_workspace_size(tuple win, int64_t cout, int64_t groups, bint backward=False, bint need_dx=True):
    """Bytes of workspace a conv2d forward (or backward, computing dx or not) call needs with the current
    thread count."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    if backward:
        return cnnc_conv2d_backward_workspace_size(&ctx, &p, need_dx)
    return cnnc_conv2d_workspace_size(&ctx, &p)


def conv2d_algorithm(tuple win, int64_t cout, int64_t groups, bint data_grad=False, bint weight_grad=False):
    """'winograd', 'depthwise', 'direct' or 'im2col': how conv2d_forward (data_grad: conv2d_backward's dx,
    weight_grad: its dw) computes this convolution."""
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    cdef int algo
    if data_grad:
        algo = cnnc_conv2d_data_grad_algorithm(&p)
    elif weight_grad:
        algo = cnnc_conv2d_weight_grad_algorithm(&p)
    else:
        algo = cnnc_conv2d_algorithm(&p)
    return {1: "winograd", 2: "direct", 3: "depthwise"}.get(algo, "im2col")


def conv2d_forward(x, w, b, y, tuple win, int64_t cout, int64_t groups, int act_kind=0,
                   float act_alpha=0.0, float act_beta=0.0):
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    cdef cnnc_act act = _make_act(act_kind, act_alpha, act_beta)
    cdef const float *px = _cf(x, "x")
    cdef const float *pw = _cf(w, "w")
    cdef const float *pb = _cf_opt(b, "b")
    cdef float *py = _wf(y, "y")
    ws = _workspace(cnnc_conv2d_workspace_size(&ctx, &p))
    cdef void *pws = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int rc
    with nogil:
        rc = cnnc_conv2d_forward(&ctx, &p, px, pw, pb, act, py, pws, nws)
    _check(rc, "conv2d")


def conv2d_pool_workspace_size(tuple win, int64_t cout, int64_t groups, int64_t pkh, int64_t pkw):
    """Bytes of workspace a conv2d_pool_forward call needs with the current thread count."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    return cnnc_conv2d_pool_workspace_size(&ctx, &p, pkh, pkw)


def conv2d_pool_forward(x, w, b, y, taps, tuple win, int64_t cout, int64_t groups, int64_t pkh, int64_t pkw,
                        int act_kind=0, float act_alpha=0.0, float act_beta=0.0):
    """y = max_pool(act(conv(x, w) + b)) over pkh x pkw windows (stride = window, valid), and the
    pool's taps into taps (uint8, y's shape) unless taps is None."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    cdef cnnc_act act = _make_act(act_kind, act_alpha, act_beta)
    cdef const float *px = _cf(x, "x")
    cdef const float *pw = _cf(w, "w")
    cdef const float *pb = _cf_opt(b, "b")
    cdef float *py = _wf(y, "y")
    cdef uint8_t *pt = NULL
    if taps is not None:
        pt = _wu8(taps, "taps")
    ws = _workspace(cnnc_conv2d_pool_workspace_size(&ctx, &p, pkh, pkw))
    cdef void *pws = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int rc
    with nogil:
        rc = cnnc_conv2d_forward_pool(&ctx, &p, pkh, pkw, px, pw, pb, act, py, pt, pws, nws)
    _check(rc, "conv2d_max_pool")


def conv2d_pool_data_grad_workspace_size(tuple win, int64_t cout, int64_t groups, int64_t pkh, int64_t pkw):
    """Bytes of workspace conv2d_pool_data_grad needs; -1 when it does not apply (NHWC, one group only)."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    return cnnc_conv2d_pool_data_grad_workspace_size(&ctx, &p, pkh, pkw)


def conv2d_pool_data_grad(w, g, taps, dx, tuple win, int64_t cout, int64_t groups, int64_t pkh, int64_t pkw):
    """dx of a convolution fused with a max pool, from the pooled gradient g and the taps; False (dx
    unwritten) when a weight is not finite."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    cdef const float *pw = _cf(w, "w")
    cdef const float *pg = _cf(g, "g")
    cdef const uint8_t *pt = _cu8(taps, "taps")
    cdef float *pdx = _wf(dx, "dx")
    ws = _workspace(cnnc_conv2d_pool_data_grad_workspace_size(&ctx, &p, pkh, pkw))
    cdef void *pws = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int finite = 0
    cdef int rc
    with nogil:
        rc = cnnc_conv2d_pool_data_grad(&ctx, &p, pkh, pkw, pw, pg, pt, pdx, &finite, pws, nws)
    _check(rc, "conv2d_max_pool_grad")
    return bool(finite)


def conv2d_pool_weight_grad_workspace_size(tuple win, int64_t cout, int64_t groups, int64_t pkh, int64_t pkw):
    """Bytes of workspace conv2d_pool_weight_grad needs; -1 when it does not apply (NHWC, one group,
    pool windows of 2 or more taps)."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    return cnnc_conv2d_pool_weight_grad_workspace_size(&ctx, &p, pkh, pkw)


def conv2d_pool_weight_grad(x, g, taps, dw, db, tuple win, int64_t cout, int64_t groups, int64_t pkh, int64_t pkw):
    """dw and db of a convolution fused with a max pool, from the pooled gradient g and the taps; False
    (dw, db unwritten) when an input is not finite."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    cdef const float *px = _cf(x, "x")
    cdef const float *pg = _cf(g, "g")
    cdef const uint8_t *pt = _cu8(taps, "taps")
    cdef float *pdw = _wf(dw, "dw")
    cdef float *pdb = _wf_opt(db, "db")
    ws = _workspace(cnnc_conv2d_pool_weight_grad_workspace_size(&ctx, &p, pkh, pkw))
    cdef void *pws = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int finite = 0
    cdef int rc
    with nogil:
        rc = cnnc_conv2d_pool_weight_grad(&ctx, &p, pkh, pkw, px, pg, pt, pdw, pdb, &finite, pws, nws)
    _check(rc, "conv2d_max_pool_grad")
    return bool(finite)


def conv2d_backward(x, w, dy, dx, dw, db, tuple win, int64_t cout, int64_t groups):
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_conv2d_params p = _conv_params(win, cout, groups)
    cdef const float *px = _cf(x, "x")
    cdef const float *pw = _cf(w, "w")
    cdef const float *pdy = _cf(dy, "dy")
    cdef float *pdx = _wf_opt(dx, "dx")
    cdef float *pdw = _wf_opt(dw, "dw")
    cdef float *pdb = _wf_opt(db, "db")
    ws = _workspace(cnnc_conv2d_backward_workspace_size(&ctx, &p, pdx != NULL))
    cdef void *pws = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int rc
    with nogil:
        rc = cnnc_conv2d_backward(&ctx, &p, px, pw, pdy, pdx, pdw, pdb, pws, nws)
    _check(rc, "conv2d_grad")


def dense_workspace_size(int64_t m, int64_t k, int64_t n, bint backward=False):
    """Bytes of workspace a dense forward (or backward) call needs with the current thread count."""
    cdef cnnc_ctx ctx = _ctx()
    if backward:
        return cnnc_dense_backward_workspace_size(&ctx, m, k, n)
    return cnnc_dense_workspace_size(&ctx, m, k, n)


def dense_forward(x, w, b, y, int64_t m, int64_t k, int64_t n, int act_kind=0, float act_alpha=0.0,
                  float act_beta=0.0):
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_act act = _make_act(act_kind, act_alpha, act_beta)
    cdef const float *px = _cf(x, "x")
    cdef const float *pw = _cf(w, "w")
    cdef const float *pb = _cf_opt(b, "b")
    cdef float *py = _wf(y, "y")
    ws = _workspace(cnnc_dense_workspace_size(&ctx, m, k, n))
    cdef void *pws = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int rc
    with nogil:
        rc = cnnc_dense_forward(&ctx, m, k, n, px, pw, pb, act, py, pws, nws)
    _check(rc, "dense")


def dense_backward(x, w, dy, dx, dw, db, int64_t m, int64_t k, int64_t n):
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *px = _cf(x, "x")
    cdef const float *pw = _cf(w, "w")
    cdef const float *pdy = _cf(dy, "dy")
    cdef float *pdx = _wf_opt(dx, "dx")
    cdef float *pdw = _wf_opt(dw, "dw")
    cdef float *pdb = _wf_opt(db, "db")
    ws = _workspace(cnnc_dense_backward_workspace_size(&ctx, m, k, n))
    cdef void *pws = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int rc
    with nogil:
        rc = cnnc_dense_backward(&ctx, m, k, n, px, pw, pdy, pdx, pdw, pdb, pws, nws)
    _check(rc, "dense_grad")
