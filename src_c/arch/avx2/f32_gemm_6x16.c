/* f32_gemm_6x16.c - AVX2+FMA micro-kernel: 6 rows x 16 columns in 12 ymm accumulators. Compiled with
 * -mavx2 -mfma and called only after dispatch has seen both features. */
#include "../ukernels.h"
#include "../gemm_edge.h"
#include <immintrin.h>

#define MR 6
#define NR 16

/* The tile's epilogue (cnnc_gemm_params): a column bias (bc0, bc1), or a row bias, and the relu. */
typedef struct {
    int col_bias, row_bias, relu;
    __m256 bc0, bc1;
    const float *br; /* MR values when row_bias */
    const float *res; /* the residual's rows (NULL: none), ldr apart */
    int64_t ldr;
} epi;

static inline void store_row(float *crow, __m256 a0, __m256 a1, __m256 valpha, __m256 vbeta, int beta0,
                             const epi *e, int i) {
    __m256 v0 = _mm256_mul_ps(a0, valpha), v1 = _mm256_mul_ps(a1, valpha);
    if (!beta0) {
        v0 = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(crow), v0);
        v1 = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(crow + 8), v1);
    }
    if (e->col_bias) {
        v0 = _mm256_add_ps(v0, e->bc0);
        v1 = _mm256_add_ps(v1, e->bc1);
    } else if (e->row_bias) {
        const __m256 b = _mm256_broadcast_ss(e->br + i);
        v0 = _mm256_add_ps(v0, b);
        v1 = _mm256_add_ps(v1, b);
    }
    if (e->res) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(e->res + i * e->ldr));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(e->res + i * e->ldr + 8));
    }
    if (e->relu) { /* max(v, 0) takes 0 for NaN and for -0, as v > 0 ? v : 0 does */
        v0 = _mm256_max_ps(v0, _mm256_setzero_ps());
        v1 = _mm256_max_ps(v1, _mm256_setzero_ps());
    }
    _mm256_storeu_ps(crow, v0);
    _mm256_storeu_ps(crow + 8, v1);
}

/* c[m x n] = alpha * ap[MR x k] * bp[k x NR] + beta * c   (m <= MR, n <= NR) */
void cnnc_f32_gemm_ukernel_6x16__avx2(int64_t k, const float *restrict ap, const float *restrict bp,
                                      float *restrict c, int64_t ldc, int64_t m, int64_t n,
        const cnnc_gemm_params *restrict params) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    __m256 c40 = _mm256_setzero_ps(), c41 = _mm256_setzero_ps();
    __m256 c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (int64_t p = 0; p < k; ++p) {
        const __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);
        __m256 a;
        a = _mm256_broadcast_ss(ap + 0); c00 = _mm256_fmadd_ps(a, b0, c00); c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(ap + 1); c10 = _mm256_fmadd_ps(a, b0, c10); c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(ap + 2); c20 = _mm256_fmadd_ps(a, b0, c20); c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(ap + 3); c30 = _mm256_fmadd_ps(a, b0, c30); c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(ap + 4); c40 = _mm256_fmadd_ps(a, b0, c40); c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(ap + 5); c50 = _mm256_fmadd_ps(a, b0, c50); c51 = _mm256_fmadd_ps(a, b1, c51);
        ap += MR;
        bp += NR;
    }
    const __m256 valpha = _mm256_set1_ps(params->alpha), vbeta = _mm256_set1_ps(params->beta);
    const int beta0 = params->beta == 0.0f;
    epi e = {params->bias_col != NULL, params->bias_row != NULL, params->relu, _mm256_setzero_ps(),
             _mm256_setzero_ps(), NULL, params->res, params->ldr};
    float brow[MR] = {0.0f}, bcol[NR] = {0.0f}; /* the biases of an edge tile, zero-padded */
    if (e.col_bias) {
        const float *bc = edge_vector(params->bias_col, n, NR, bcol);
        e.bc0 = _mm256_loadu_ps(bc);
        e.bc1 = _mm256_loadu_ps(bc + 8);
    } else if (e.row_bias) {
        e.br = edge_vector(params->bias_row, m, MR, brow);
    }
    if (m == MR && n == NR) {
        store_row(c + 0 * ldc, c00, c01, valpha, vbeta, beta0, &e, 0);
        store_row(c + 1 * ldc, c10, c11, valpha, vbeta, beta0, &e, 1);
        store_row(c + 2 * ldc, c20, c21, valpha, vbeta, beta0, &e, 2);
        store_row(c + 3 * ldc, c30, c31, valpha, vbeta, beta0, &e, 3);
        store_row(c + 4 * ldc, c40, c41, valpha, vbeta, beta0, &e, 4);
        store_row(c + 5 * ldc, c50, c51, valpha, vbeta, beta0, &e, 5);
        return;
    }
    /* Edge tile: the same vector epilogue on a staging tile, then copy the valid part. */
    float tile[MR * NR] = {0.0f}, rtile[MR * NR]; /* the tile; its residual, zero-padded */
    if (e.res) {
        e.res = edge_tile(e.res, e.ldr, m, n, MR, NR, rtile);
        e.ldr = NR;
    }
    if (!beta0) edge_copy(c, ldc, tile, NR, m, n);
    store_row(tile + 0 * NR, c00, c01, valpha, vbeta, beta0, &e, 0);
    store_row(tile + 1 * NR, c10, c11, valpha, vbeta, beta0, &e, 1);
    store_row(tile + 2 * NR, c20, c21, valpha, vbeta, beta0, &e, 2);
    store_row(tile + 3 * NR, c30, c31, valpha, vbeta, beta0, &e, 3);
    store_row(tile + 4 * NR, c40, c41, valpha, vbeta, beta0, &e, 4);
    store_row(tile + 5 * NR, c50, c51, valpha, vbeta, beta0, &e, 5);
    edge_copy(tile, NR, c, ldc, m, n);
}
