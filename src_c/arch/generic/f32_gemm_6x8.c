/* f32_gemm_6x8.c - the portable C micro-kernel: the fallback path and the oracle for the fast ones. */
#include "../ukernels.h"

#define MR 6
#define NR 8

/* c[m x n] = alpha * ap[MR x k] * bp[k x NR] + beta * c   (m <= MR, n <= NR) */
void cnnc_f32_gemm_ukernel_6x8__generic(int64_t k, const float *restrict ap, const float *restrict bp,
                                        float *restrict c, int64_t ldc, int64_t m, int64_t n,
        const cnnc_gemm_params *restrict params) {
    float acc[MR][NR] = {{0.0f}};
    for (int64_t p = 0; p < k; ++p) {
        for (int i = 0; i < MR; ++i) {
            const float a = ap[i];
            for (int j = 0; j < NR; ++j) acc[i][j] += a * bp[j];
        }
        ap += MR;
        bp += NR;
    }
    /* Epilogue: one arithmetic for every element, full tile or edge. */
    const float alpha = params->alpha, beta = params->beta;
    const float *br = params->bias_row, *bc = params->bias_col;
    const int relu = params->relu;
    for (int64_t i = 0; i < m; ++i) {
        float *crow = c + i * ldc;
        if (beta == 0.0f) {
            for (int64_t j = 0; j < n; ++j) crow[j] = alpha * acc[i][j];
        } else {
            for (int64_t j = 0; j < n; ++j) crow[j] = alpha * acc[i][j] + beta * crow[j];
        }
        if (br)
            for (int64_t j = 0; j < n; ++j) crow[j] += br[i];
        if (bc)
            for (int64_t j = 0; j < n; ++j) crow[j] += bc[j];
        if (params->res)
            for (int64_t j = 0; j < n; ++j) crow[j] += params->res[i * params->ldr + j];
        if (relu)
            for (int64_t j = 0; j < n; ++j) crow[j] = crow[j] > 0.0f ? crow[j] : 0.0f;
    }
}
