/* f32_gemm_smallm.c - portable C kernels for GEMMs with few rows (m <= 4): B is streamed once from
 * where it lies, never packed. The fallback path and the oracle for the vector ones; see
 * cnnc_gemm_small_fns in internal.h for the contracts. Every element is computed the same way
 * whatever block or thread computes it. */
#include "../ukernels.h"
#include <string.h>

// c[m x w] = alpha * a[m x k] * b[k x w] + beta * c; acc: m * w floats of scratch
void cnnc_f32_gemm_rows__generic(int64_t m, int64_t w, int64_t k, const float *restrict a, int64_t lda,
                                 const float *restrict b, int64_t ldb, float *restrict acc,
                                 float *restrict c, int64_t ldc, const cnnc_gemm_params *restrict params) {
    memset(acc, 0, (size_t)(m * w) * sizeof(float));
    for (int64_t p = 0; p < k; ++p) {
        const float *brow = b + p * ldb;
        for (int64_t i = 0; i < m; ++i) {
            const float av = a[i * lda + p];
            float *ar = acc + i * w;
            for (int64_t j = 0; j < w; ++j) ar[j] += av * brow[j];
        }
    }
    const float alpha = params->alpha, beta = params->beta;
    for (int64_t i = 0; i < m; ++i) {
        const float *ar = acc + i * w;
        float *cr = c + i * ldc;
        if (beta == 0.0f) for (int64_t j = 0; j < w; ++j) cr[j] = alpha * ar[j];
        else for (int64_t j = 0; j < w; ++j) cr[j] = alpha * ar[j] + beta * cr[j];
    }
}

// c[i, j] = alpha * sum_p a[i, p] * b[j, p] + beta * c[i, j]   (i < m, j < w: dot products along k)
void cnnc_f32_gemm_dots__generic(int64_t m, int64_t w, int64_t k, const float *restrict a, int64_t lda,
                                 const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc,
                                 const cnnc_gemm_params *restrict params) {
    const float alpha = params->alpha, beta = params->beta;
    for (int64_t i = 0; i < m; ++i) {
        const float *ar = a + i * lda;
        for (int64_t j = 0; j < w; ++j) {
            const float *br = b + j * ldb;
            /* four partial sums: a dependency chain per sum, not one for all of k */
            float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
            int64_t p = 0;
            for (; p + 4 <= k; p += 4) {
                s0 += ar[p] * br[p];
                s1 += ar[p + 1] * br[p + 1];
                s2 += ar[p + 2] * br[p + 2];
                s3 += ar[p + 3] * br[p + 3];
            }
            float s = (s0 + s2) + (s1 + s3);
            for (; p < k; ++p) s += ar[p] * br[p];
            float *cc = c + i * ldc + j;
            *cc = beta == 0.0f ? alpha * s : alpha * s + beta * *cc;
        }
    }
}
