/* dense.c - fully connected layers as GEMMs, weights in the Keras layout w[K, N]. */
#include "internal.h"

int64_t cnnc_dense_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n) {
    return cnnc_gemm_workspace_size(ctx, m, n, k);
}

/* The larger of the two backward GEMMs (dx, dw). */
int64_t cnnc_dense_backward_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n) {
    return CNNC_MAX(cnnc_gemm_workspace_size(ctx, m, k, n), cnnc_gemm_workspace_size(ctx, k, n, m));
}

// y[M, N] = act(x[M, K] * w[K, N] + b[N])
int cnnc_dense_forward(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n, const float *x,
                       const float *w, const float *b, cnnc_act act, float *y, void *ws,
                       int64_t ws_size) {
    if (m <= 0 || k <= 0 || n <= 0 || !x || !w || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    const cnnc_gemm_epilogue ep = {b, 0, act}; /* bias + activation per output tile */
    return cnnc_sgemm_ep(ctx, 0, 0, m, n, k, 1.0f, x, k, w, n, 0.0f, y, n, ws, ws_size, &ep);
}

// dx[M, K] = dy * w^T; dw[K, N] = x^T * dy; db[N] = sum_rows dy
int cnnc_dense_backward(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n, const float *x,
                        const float *w, const float *dy, float *dx, float *dw, float *db, void *ws,
                        int64_t ws_size) {
    if (m <= 0 || k <= 0 || n <= 0 || !dy || (dx && !w) || (dw && !x)) return CNNC_EINVAL;
    int rc = CNNC_OK;
    if (dx) rc = cnnc_sgemm(ctx, 0, 1, m, k, n, 1.0f, dy, n, w, n, 0.0f, dx, k, ws, ws_size);
    if (!rc && dw) rc = cnnc_sgemm(ctx, 1, 0, k, n, m, 1.0f, x, k, dy, n, 0.0f, dw, n, ws, ws_size);
    if (!rc && db) rc = cnnc_bias_grad_rows(ctx, m, n, dy, db);
    return rc;
}
