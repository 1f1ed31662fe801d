/* internal.h - helpers shared by the C core's .c files; not part of the public API. */
#ifndef CNNC_INTERNAL_H
#define CNNC_INTERNAL_H

#include "cnnc.h"
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#define CNNC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CNNC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CNNC_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define CNNC_ROUND_UP(a, b) (CNNC_CEIL_DIV(a, b) * (b))
#define CNNC_ALIGN 64

/* Threads a parallel loop over `work` independent items may use: never more than the context allows,
 * never more than the items, and 1 when already inside an OpenMP parallel region. Loops use it with
 * CNNC_PARALLEL_FOR (below). Static scheduling over items whose results do not depend on each other
 * keeps results bit-identical for any thread count. */
static inline int cnnc_threads(const cnnc_ctx *ctx, int64_t work) {
    int nt = ctx->nthreads < 1 ? 1 : ctx->nthreads;
#ifdef _OPENMP
    if (omp_in_parallel()) nt = 1;
#else
    nt = 1;
#endif
    if (work < (int64_t)nt) nt = work < 1 ? 1 : (int)work;
    return nt;
}

/* A parallel loop over independent items:
 *     int nt = cnnc_threads(ctx, work);
 *     CNNC_PARALLEL_FOR(nt, for (int64_t i = 0; i < work; ++i) { ... });
 * OpenMP (static schedule) only when nt > 1: entering a parallel region costs a futex system call
 * (~0.5 us measured) even when an if() clause keeps it on one thread, which small calls and
 * per-tile loops cannot afford. The loop is compiled twice; it must not contain # directives.
 * CNNC_PARALLEL_FOR_OR also or-reduces an int variable over the threads. */
#define CNNC_PRAGMA(x) _Pragma(#x)
#ifdef _OPENMP
#define CNNC_PARALLEL_FOR(nt, ...)                                                       \
    do {                                                                                 \
        if ((nt) > 1) {                                                                  \
            CNNC_PRAGMA(omp parallel for num_threads(nt) schedule(static)) __VA_ARGS__   \
        } else {                                                                         \
            __VA_ARGS__                                                                  \
        }                                                                                \
    } while (0)
#define CNNC_PARALLEL_FOR_OR(nt, var, ...)                                                              \
    do {                                                                                                \
        if ((nt) > 1) {                                                                                 \
            CNNC_PRAGMA(omp parallel for num_threads(nt) schedule(static) reduction(| : var)) __VA_ARGS__ \
        } else {                                                                                        \
            __VA_ARGS__                                                                                 \
        }                                                                                               \
    } while (0)
#else
#define CNNC_PARALLEL_FOR(nt, ...) do { (void)(nt); __VA_ARGS__ } while (0)
#define CNNC_PARALLEL_FOR_OR(nt, var, ...) do { (void)(nt); __VA_ARGS__ } while (0)
#endif

/* Align a workspace pointer up to CNNC_ALIGN bytes. */
static inline void *cnnc_align_ptr(void *p) {
    uintptr_t u = (uintptr_t)p;
    return (void *)((u + (CNNC_ALIGN - 1)) & ~(uintptr_t)(CNNC_ALIGN - 1));
}

/* Multiply two non-negative int64 values; returns -1 on overflow. */
static inline int64_t cnnc_mul_ok(int64_t a, int64_t b) {
    if (a < 0 || b < 0) return -1;
    if (a != 0 && b > INT64_MAX / a) return -1;
    return a * b;
}

/* GEMM packing helpers that the ISA table of cnnc.h does not carry: full-panel transposing packs,
 * dst[p * W + i] = src[i * ld + p] for i < W, p < kc, with W = mr (gather_a) or nr (gather_b). NULL
 * means the portable loops of gemm.c. dispatch.c picks them from the context's kernels. */
typedef void (*cnnc_gemm_gather_fn)(int64_t kc, const float *src, int64_t ld, float *dst);
typedef struct {
    cnnc_gemm_gather_fn gather_a, gather_b;
} cnnc_gemm_packers;
cnnc_gemm_packers cnnc_gemm_packers_for(const cnnc_kernels *k);

/* GEMMs with few rows (m <= max_m) skip packing: B is read once, in place.
 * rows: c[m x w] = alpha * a[m x k] * b[k x w] + beta * c, a[i, p] = a[i * lda + p], b[p, j] =
 *       b[p * ldb + j]; acc is m * w floats of scratch. For B stored k x n (no transpose).
 * dots: c[i, j] = alpha * sum_p a[i * lda + p] * b[j * ldb + p] + beta * c[i, j], i < m, j < w: dot
 *       products along k, for B stored n x k (transposed).
 * beta == 0 means c is not read. Each element of c is computed the same way whatever w, j offset or
 * thread, so results do not depend on how the columns are split. dispatch.c picks them per ISA. */
typedef void (*cnnc_gemm_rows_fn)(int64_t m, int64_t w, int64_t k, const float *a, int64_t lda,
                                  const float *b, int64_t ldb, float *acc, float *c, int64_t ldc,
                                  const cnnc_gemm_params *params);
typedef void (*cnnc_gemm_dots_fn)(int64_t m, int64_t w, int64_t k, const float *a, int64_t lda,
                                  const float *b, int64_t ldb, float *c, int64_t ldc,
                                  const cnnc_gemm_params *params);
typedef struct {
    int64_t max_m;   /* 0: no few-row path */
    cnnc_gemm_rows_fn rows;
    cnnc_gemm_dots_fn dots;
} cnnc_gemm_small_fns;
cnnc_gemm_small_fns cnnc_gemm_small_for(const cnnc_kernels *k);

/* NCHW im2col of one image x[C, H, W] for the output pixels q in [q0, q1) only (q = oh * OW + ow):
 * col[r * ldcol + q - q0], rows r = (c, kh, kw) of channels [c0, c0 + cg); p->n is not used. A block of
 * columns of cnnc_im2col's matrix, so a convolution can work in cache-sized panels of pixels. */
int cnnc_im2col_nchw_pixels(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                            const float *x, int64_t q0, int64_t q1, float *col, int64_t ldcol);

/* act(v) for one value: the scalar definition every vector path must agree with. */
float cnnc_act_scalar(cnnc_act act, float v);
int cnnc_act_valid(cnnc_act act);
/* y[0:n] = act(y + b[0:n]) in place on the calling thread (b may be NULL; act must be valid): the
 * arithmetic of one row of cnnc_bias_act_rows. */
void cnnc_bias_act_span(cnnc_act act, const float *b, float *y, int64_t n);

#endif
