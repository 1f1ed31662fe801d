# bindings: norm (included by _core.pyx) - batch normalization and dropout
#
# Batch-norm data are viewed as x[outer, c, inner] (see cnnc.h); cnnc._nn_norm computes the three
# sizes and hands over C-contiguous float32 arrays of matching sizes.

def batch_norm_inference(int64_t outer, int64_t c, int64_t inner, x, gamma, beta, mean, var,
                         float eps, y):
    cdef cnnc_ctx ctx = _ctx()
    _need(x, outer * c * inner, "x")
    _need(y, outer * c * inner, "y")
    _need(gamma, c, "gamma")
    _need(beta, c, "beta")
    _need(mean, c, "mean")
    _need(var, c, "variance")
    cdef const float *xp = _cf(x, "x")
    cdef const float *gp = _cf(gamma, "gamma")
    cdef const float *bp = _cf(beta, "beta")
    cdef const float *mp = _cf(mean, "mean")
    cdef const float *vp = _cf(var, "variance")
    cdef float *yp = _wf(y, "y")
    cdef int rc
    with nogil:
        rc = cnnc_batch_norm_inference(&ctx, outer, c, inner, xp, gp, bp, mp, vp, eps, yp)
    _check(rc, "batch_norm")


def batch_norm_training(int64_t outer, int64_t c, int64_t inner, x, gamma, beta, float eps,
                        float momentum, moving_mean, moving_var, y, save_mean, save_invstd):
    cdef cnnc_ctx ctx = _ctx()
    _need(x, outer * c * inner, "x")
    _need(y, outer * c * inner, "y")
    _need(gamma, c, "gamma")
    _need(beta, c, "beta")
    _need(moving_mean, c, "moving_mean")
    _need(moving_var, c, "moving_variance")
    _need(save_mean, c, "batch_mean")
    _need(save_invstd, c, "batch_invstd")
    cdef const float *xp = _cf(x, "x")
    cdef const float *gp = _cf(gamma, "gamma")
    cdef const float *bp = _cf(beta, "beta")
    cdef float *mmp = _wf_opt(moving_mean, "moving_mean")
    cdef float *mvp = _wf_opt(moving_var, "moving_variance")
    cdef float *yp = _wf(y, "y")
    cdef float *smp = _wf(save_mean, "batch_mean")
    cdef float *sip = _wf(save_invstd, "batch_invstd")
    cdef int rc
    with nogil:
        rc = cnnc_batch_norm_training(&ctx, outer, c, inner, xp, gp, bp, eps, momentum, mmp, mvp,
                                      yp, smp, sip)
    _check(rc, "batch_norm_train")


def batch_norm_backward(int64_t outer, int64_t c, int64_t inner, x, dy, gamma, save_mean,
                        save_invstd, dx=None, dgamma=None, dbeta=None):
    cdef cnnc_ctx ctx = _ctx()
    _need(x, outer * c * inner, "x")
    _need(dy, outer * c * inner, "dy")
    _need(dx, outer * c * inner, "dx")
    _need(gamma, c, "gamma")
    _need(save_mean, c, "batch_mean")
    _need(save_invstd, c, "batch_invstd")
    _need(dgamma, c, "dgamma")
    _need(dbeta, c, "dbeta")
    cdef const float *xp = _cf(x, "x")
    cdef const float *dyp = _cf(dy, "dy")
    cdef const float *gp = _cf(gamma, "gamma")
    cdef const float *smp = _cf(save_mean, "batch_mean")
    cdef const float *sip = _cf(save_invstd, "batch_invstd")
    cdef float *dxp = _wf_opt(dx, "dx")
    cdef float *dgp = _wf_opt(dgamma, "dgamma")
    cdef float *dbp = _wf_opt(dbeta, "dbeta")
    cdef int rc
    with nogil:
        rc = cnnc_batch_norm_backward(&ctx, outer, c, inner, xp, dyp, gp, smp, sip, dxp, dgp, dbp)
    _check(rc, "batch_norm_grad")


cdef inline uint8_t *_wu8(object a, str name) except NULL:
    return <uint8_t *>_addr(a, _U8, True, name)


cdef inline const uint8_t *_cu8(object a, str name) except NULL:
    return <const uint8_t *>_addr(a, _U8, False, name)


def dropout_forward(float rate, uint64_t seed, x, y, mask):
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *xp = _cf(x, "x")
    cdef float *yp = _wf(y, "y")
    cdef uint8_t *mp = _wu8(mask, "mask")
    cdef int64_t size = x.size
    if y.size != size or mask.size != size:
        raise ValueError(f"internal: dropout sizes differ: x {size}, y {y.size}, mask {mask.size}")
    cdef int rc
    with nogil:
        rc = cnnc_dropout_forward(&ctx, size, rate, seed, xp, yp, mp)
    _check(rc, "dropout")


def dropout_backward(float rate, mask, dy, dx):
    cdef cnnc_ctx ctx = _ctx()
    cdef const uint8_t *mp = _cu8(mask, "mask")
    cdef const float *dyp = _cf(dy, "dy")
    cdef float *dxp = _wf(dx, "dx")
    cdef int64_t size = dy.size
    if dx.size != size or mask.size != size:
        raise ValueError(f"internal: dropout_grad sizes differ: dy {size}, dx {dx.size}, mask {mask.size}")
    cdef int rc
    with nogil:
        rc = cnnc_dropout_backward(&ctx, size, rate, mp, dyp, dxp)
    _check(rc, "dropout_grad")
