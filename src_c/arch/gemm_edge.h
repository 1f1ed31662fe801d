/* gemm_edge.h - the edge tiles of the vector GEMM micro-kernels (m < MR or n < NR valid rows and
 * columns). A kernel runs its full-tile epilogue on a zero-padded MR x NR staging tile, then copies the
 * valid part out, so that edge elements get the full tile's arithmetic. These helpers stage and copy;
 * included by each ISA's kernel file (plain C, compiled with that file's flags). */
#ifndef CNNC_ARCH_GEMM_EDGE_H
#define CNNC_ARCH_GEMM_EDGE_H
#include <stdint.h>
#include <string.h>

/* b's first `have` values, zero-padded to `full` in pad (returned), or b itself when it is full. */
static inline const float *edge_vector(const float *b, int64_t have, int64_t full, float *pad) {
    if (have >= full) return b;
    for (int64_t j = 0; j < have; ++j) pad[j] = b[j];
    return pad;
}

/* The m x n block at src (rows lds apart) to dst (rows ldd apart). */
static inline void edge_copy(const float *src, int64_t lds, float *dst, int64_t ldd, int64_t m, int64_t n) {
    for (int64_t i = 0; i < m; ++i)
        for (int64_t j = 0; j < n; ++j) dst[i * ldd + j] = src[i * lds + j];
}

/* The m x n block at src (rows lds apart) as an mr x nr tile in pad (returned), zero elsewhere. */
static inline const float *edge_tile(const float *src, int64_t lds, int64_t m, int64_t n, int64_t mr, int64_t nr,
                                     float *pad) {
    memset(pad, 0, (size_t)(mr * nr) * sizeof(float));
    edge_copy(src, lds, pad, nr, m, n);
    return pad;
}
#endif
