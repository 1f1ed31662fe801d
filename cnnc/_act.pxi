# Activation / bias / softmax bindings (included by _core.pyx).

ACT_KINDS = {"none": CNNC_ACT_NONE, "relu": CNNC_ACT_RELU, "leaky_relu": CNNC_ACT_LEAKY_RELU,
             "elu": CNNC_ACT_ELU, "selu": CNNC_ACT_SELU, "sigmoid": CNNC_ACT_SIGMOID,
             "tanh": CNNC_ACT_TANH, "hard_sigmoid": CNNC_ACT_HARD_SIGMOID,
             "hard_swish": CNNC_ACT_HARD_SWISH, "clip": CNNC_ACT_CLIP}


def act_forward(x, y, int kind, float alpha=0.0, float beta=0.0):
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_act act = _make_act(kind, alpha, beta)
    cdef const float *px = _cf(x, "x")
    cdef float *py = _wf(y, "y")
    cdef int64_t size = x.size
    cdef int rc
    with nogil:
        rc = cnnc_act_forward(&ctx, act, size, px, py)
    _check(rc, "activation")


def act_backward(x, y, dy, dx, int kind, float alpha=0.0, float beta=0.0):
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_act act = _make_act(kind, alpha, beta)
    cdef const float *px = _cf(x, "x")
    cdef const float *py = _cf_opt(y, "y")
    cdef const float *pdy = _cf(dy, "dy")
    cdef float *pdx = _wf(dx, "dx")
    cdef int64_t size = x.size
    cdef int rc
    with nogil:
        rc = cnnc_act_backward(&ctx, act, size, px, py, pdy, pdx)
    _check(rc, "activation gradient")


def bias_act(y, b, int64_t n, int64_t c, int64_t plane, int kind, float alpha=0.0, float beta=0.0):
    """In place: y = act(y + b) with channels last (plane == 1: y is [n, c]) or planes [n, c, plane]."""
    cdef cnnc_ctx ctx = _ctx()
    cdef cnnc_act act = _make_act(kind, alpha, beta)
    cdef const float *pb = _cf_opt(b, "b")
    cdef float *py = _wf(y, "y")
    cdef int rc
    with nogil:
        if plane == 1:
            rc = cnnc_bias_act_rows(&ctx, n, c, pb, act, py)
        else:
            rc = cnnc_bias_act_planes(&ctx, n, c, plane, pb, act, py)
    _check(rc, "bias_add")


def bias_grad(dy, db, int64_t n, int64_t c, int64_t plane):
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *pdy = _cf(dy, "dy")
    cdef float *pdb = _wf(db, "db")
    cdef int rc
    with nogil:
        if plane == 1:
            rc = cnnc_bias_grad_rows(&ctx, n, c, pdy, pdb)
        else:
            rc = cnnc_bias_grad_planes(&ctx, n, c, plane, pdy, pdb)
    _check(rc, "bias gradient")


def softmax_forward(x, y, int64_t rows, int64_t cols, bint log):
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *px = _cf(x, "x")
    cdef float *py = _wf(y, "y")
    cdef int rc
    with nogil:
        rc = cnnc_softmax_forward(&ctx, rows, cols, log, px, py)
    _check(rc, "softmax")


def softmax_backward(y, dy, dx, int64_t rows, int64_t cols, bint log):
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *py = _cf(y, "y")
    cdef const float *pdy = _cf(dy, "dy")
    cdef float *pdx = _wf(dx, "dx")
    cdef int rc
    with nogil:
        rc = cnnc_softmax_backward(&ctx, rows, cols, log, py, pdy, pdx)
    _check(rc, "softmax gradient")
