/* f32_gemm_12x16.c - AVX-512 micro-kernel: 12 rows x 16 columns in 12 zmm accumulators. Compiled with
 * AVX-512 F/DQ/BW/VL + FMA and called only after dispatch has seen those features (see intrin.h for the
 * emulated test build).
 *
 * Each k step loads one 16-float row of the B panel and broadcasts 12 values of the A panel, so a tile
 * takes 13 loads per 12 FMAs (the AVX2 6x16 kernel: 8 per 12 FMAs of half the width). NR = 16 is the
 * AVX2 table's, so the B panels, packed weights and direct convolution's panels are shared.
 *
 * Every element of C is the AVX2 kernel's sequence of operations: an FMA chain over k from zero, then
 * alpha *, beta * c + (fused), bias +, residual +, max(., 0). The two paths give the same bits. */
#include "../ukernels.h"
#include "../gemm_edge.h"
#include "intrin.h"

#define MR 12
#define NR 16

/* The tile's epilogue (cnnc_gemm_params): a column bias (bc), or a row bias, and the relu. */
typedef struct {
    int col_bias, row_bias, relu;
    __m512 bc;
    const float *br;  /* MR values when row_bias */
    const float *res; /* the residual's rows (NULL: none), ldr apart */
    int64_t ldr;
} epi;

static inline void store_row(float *crow, __m512 a, __m512 valpha, __m512 vbeta, int beta0, const epi *e,
                             int i) {
    __m512 v = _mm512_mul_ps(a, valpha);
    if (!beta0) v = _mm512_fmadd_ps(vbeta, _mm512_loadu_ps(crow), v);
    if (e->col_bias) v = _mm512_add_ps(v, e->bc);
    else if (e->row_bias) v = _mm512_add_ps(v, _mm512_set1_ps(e->br[i]));
    if (e->res) v = _mm512_add_ps(v, _mm512_loadu_ps(e->res + i * e->ldr));
    if (e->relu) v = _mm512_max_ps(v, _mm512_setzero_ps()); /* 0 for NaN and -0, as v > 0 ? v : 0 */
    _mm512_storeu_ps(crow, v);
}

/* c[m x n] = alpha * ap[MR x k] * bp[k x NR] + beta * c   (m <= MR, n <= NR) */
void cnnc_f32_gemm_ukernel_12x16__avx512(int64_t k, const float *restrict ap, const float *restrict bp,
                                         float *restrict c, int64_t ldc, int64_t m, int64_t n,
                                         const cnnc_gemm_params *restrict params) {
    __m512 acc[MR];
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k; ++p) {
        const __m512 b = _mm512_loadu_ps(bp);
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) acc[i] = _mm512_fmadd_ps(_mm512_set1_ps(ap[i]), b, acc[i]);
        ap += MR;
        bp += NR;
    }
    const __m512 valpha = _mm512_set1_ps(params->alpha), vbeta = _mm512_set1_ps(params->beta);
    const int beta0 = params->beta == 0.0f;
    epi e = {params->bias_col != NULL, params->bias_row != NULL, params->relu, _mm512_setzero_ps(), NULL,
             params->res, params->ldr};
    float brow[MR] = {0.0f}, bcol[NR] = {0.0f}; /* the biases of an edge tile, zero-padded */
    if (e.col_bias) e.bc = _mm512_loadu_ps(edge_vector(params->bias_col, n, NR, bcol));
    else if (e.row_bias) e.br = edge_vector(params->bias_row, m, MR, brow);
    if (m == MR && n == NR) {
#pragma GCC unroll 12
        for (int i = 0; i < MR; ++i) store_row(c + i * ldc, acc[i], valpha, vbeta, beta0, &e, i);
        return;
    }
    /* Edge tile: the same vector epilogue on a staging tile, then copy the valid part. */
    float tile[MR * NR] = {0.0f}, rtile[MR * NR]; /* the tile; its residual, zero-padded */
    if (e.res) {
        e.res = edge_tile(e.res, e.ldr, m, n, MR, NR, rtile);
        e.ldr = NR;
    }
    if (!beta0) edge_copy(c, ldc, tile, NR, m, n);
#pragma GCC unroll 12
    for (int i = 0; i < MR; ++i) store_row(tile + i * NR, acc[i], valpha, vbeta, beta0, &e, i);
    edge_copy(tile, NR, c, ldc, m, n);
}
