# GEMM bindings (included by _core.pyx).

def gemm(a, b, c, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb,
         int64_t ldc, float alpha=1.0, float beta=0.0):
    """c = alpha * op(a) @ op(b) + beta * c on float32 buffers with the given leading dimensions."""
    cdef cnnc_ctx ctx = _ctx()
    cdef const float *pa = _cf(a, "a")
    cdef const float *pb = _cf(b, "b")
    cdef float *pc = _wf(c, "c")
    ws = _workspace(cnnc_gemm_workspace_size(&ctx, m, n, k))
    cdef void *pw = _wsptr(ws)
    cdef int64_t nws = ws.shape[0]
    cdef int rc
    with nogil:
        rc = cnnc_sgemm(&ctx, trans_a, trans_b, m, n, k, alpha, pa, lda, pb, ldb, beta, pc, ldc, pw, nws)
    _check(rc, "matmul")


def gemm_workspace_size(int64_t m, int64_t n, int64_t k):
    cdef cnnc_ctx ctx = _ctx()
    return cnnc_gemm_workspace_size(&ctx, m, n, k)
