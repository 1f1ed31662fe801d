/* internal.h - helpers shared by the C core's .c files; not part of the public API. */
#ifndef CNNC_INTERNAL_H
#define CNNC_INTERNAL_H

#include "cnnc.h"
#include "arch/ukernels.h"
#include <string.h>


#define CNNC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CNNC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CNNC_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define CNNC_ROUND_UP(a, b) (CNNC_CEIL_DIV(a, b) * (b))
#define CNNC_ALIGN 64

/* Threads: the pool behind the parallel loops (threads.c). Built unless CNNC_NO_THREADS is defined,
 * on POSIX systems (pthreads). */
#if !defined(CNNC_NO_THREADS) && (defined(__unix__) || defined(__APPLE__))
#define CNNC_HAVE_THREADS 1
#else
#define CNNC_HAVE_THREADS 0
#endif

/* Participants a parallel loop over `work` independent items may use: never more than the context
 * allows or its pool has, never more than the items. Per-thread scratch is sized by this count. */
static inline int cnnc_threads(const cnnc_ctx *ctx, int64_t work) {
    int nt = ctx->nthreads < 1 ? 1 : ctx->nthreads;
    const int np = cnnc_pool_threads(ctx->pool);
    if (nt > np) nt = np;
    if (work < (int64_t)nt) nt = work < 1 ? 1 : (int)work;
    return nt;
}

/* A parallel loop: fn(arg, begin, end, slot) is called on disjoint ranges that cover [0, n), in
 * chunks of `grain` items (the last may be shorter; a call may also get the whole range at once, on
 * one thread), by at most nt participants (nt from cnnc_threads); slot in [0, nt) names the
 * participant, for per-thread scratch, and no two concurrent calls share a slot. Chunks are handed
 * out as participants ask for them (the caller is one of them); the call returns when all are done.
 * With nt == 1, no pool, or a pool already running a loop (a nested call, or another thread's),
 * fn(arg, 0, n, 0) runs on the caller. Items must not depend on each other or on who runs them:
 * then results are bit-identical for any thread count. */
typedef void (*cnnc_range_fn)(void *arg, int64_t begin, int64_t end, int slot);
void cnnc_parallel_for(const cnnc_ctx *ctx, int nt, int64_t n, int64_t grain, cnnc_range_fn fn, void *arg);
#define CNNC_POOL_MAX_THREADS 255


/* A chunk size for n items on nt participants: about 8 chunks per participant (a late thread finds
 * work left, a descheduled one leaves little behind), never below min_grain items. */
static inline int64_t cnnc_grain(int64_t n, int nt, int64_t min_grain) {
    const int64_t g = CNNC_CEIL_DIV(n, 8 * (int64_t)(nt < 1 ? 1 : nt));
    return CNNC_MAX(g, CNNC_MAX(min_grain, 1));
}

/* One NHWC input row as a window reads it: d[j * c + ch] for cols columns j = padded column (input column
 * j - pl), zeros where j - pl is outside [0, w); src the input row (NULL: a row of padding only). */
static inline void cnnc_pad_row(float *d, const float *src, int64_t cols, int64_t pl, int64_t w, int64_t c) {
    if (!src) {
        memset(d, 0, (size_t)(cols * c) * sizeof(float));
        return;
    }
    const int64_t lo = CNNC_MIN(pl, cols), hi = CNNC_MAX(lo, CNNC_MIN(cols, w + pl));
    if (lo) memset(d, 0, (size_t)(lo * c) * sizeof(float));
    if (hi > lo) memcpy(d + lo * c, src + (lo - pl) * c, (size_t)((hi - lo) * c) * sizeof(float));
    if (cols > hi) memset(d + hi * c, 0, (size_t)((cols - hi) * c) * sizeof(float));
}

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

/* Winograd's per-tile transforms over a block of <= 32 channels (contracts: arch/winograd_tx.h), built
 * for the context's ISA; dispatch.c picks them. */
typedef void (*cnnc_pool2x2_fn)(const float *t00, const float *t01, const float *t10, const float *t11, float *y,
                                uint8_t *taps, int64_t n);
typedef struct {
    int (*in_block)(const float *const *dp, int64_t cn, float *dst, int64_t stride);
    void (*out_block)(const float *src, int64_t stride, int64_t cn, float o[4][32]);
    cnnc_pool2x2_fn pool2x2; /* the pooled output transform's windows */
} cnnc_winograd_fns;
cnnc_winograd_fns cnnc_winograd_fns_for(const cnnc_kernels *k);

/* The direct weight gradient's row kernel (contract: arch/conv_dw.h), built for the context's ISA. */
typedef void (*cnnc_conv_dw_row_fn)(const float *const *xt, int64_t xstep, int64_t ntaps, const float *dz,
                                    int64_t npix, int64_t co, float *acc);
cnnc_conv_dw_row_fn cnnc_conv_dw_row_for(const cnnc_kernels *k);

/* The pooled convolution's data gradient for one image (contract: arch/conv_pool_dx.h), built for the
 * context's ISA. */
typedef int (*cnnc_pool_dx_image_fn)(const cnnc_pool_dx_geom *q, const float *g, const uint8_t *taps,
                                     const float *wt, float *dx, float *f, int32_t *idx);
cnnc_pool_dx_image_fn cnnc_pool_dx_image_for(const cnnc_kernels *k);
/* The pooled convolution's weight-gradient tile (contract: arch/ukernels.h), built for the context's ISA. */
typedef int (*cnnc_pool_dw_tile_fn)(const cnnc_pool_dw_tile *t);
cnnc_pool_dw_tile_fn cnnc_pool_dw_tile_for(const cnnc_kernels *k);
/* A 2x2 max-pool window over n channels (contract: arch/pool2x2.h's pool2x2_window), built for the
 * context's ISA. */
cnnc_pool2x2_fn cnnc_pool2x2_for(const cnnc_kernels *k);
/* The optimizers' update rules on one span (contract: arch/optim.h), built for the context's ISA. */
typedef void (*cnnc_optim_span_fn)(const cnnc_optim_rule *r, int64_t n, const float *g, float *w, float *s0,
                                   float *s1, float *s2);
cnnc_optim_span_fn cnnc_optim_span_for(const cnnc_kernels *k);
/* The depthwise convolution's kernels for a kernel table (arch/conv_depthwise.h). */
typedef struct {
    void (*row)(const cnnc_dwc_taps *t, int64_t npix, const float *w, int64_t c, float *y);
    void (*plane_row)(int64_t nt, const float *const *src, const float *wt, int64_t n, float *y);
    void (*wgrad_span)(int64_t npix, const float *x, int64_t xstep, const float *dy, int64_t c, float *acc);
} cnnc_dwc_fns;
cnnc_dwc_fns cnnc_dwc_fns_for(const cnnc_kernels *k);

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

/* NCHW forward convolutions with few input channels, the column matrix packed straight from x
 * (conv_direct.c). applies: the shape rule (what cnnc_conv2d_algorithm reports); runs: that rule for
 * ctx's micro-kernel. Bit-identical to the im2col path. */
int cnnc_conv_direct_applies(const cnnc_conv2d_params *p);
/* dw (and db, when not NULL) of an NHWC single-group convolution with at most 4 input channels and 32
 * taps, without the column matrix (conv_dw.c). */
int cnnc_conv_dw_direct_applies(const cnnc_conv2d_params *p);
int64_t cnnc_conv_dw_direct_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
int cnnc_conv_dw_direct(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *dy,
                        float *dw, float *db, void *ws, int64_t ws_size);
int cnnc_conv_direct_runs(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
/* Depthwise convolutions (groups = C, Cout = m * C, kernels up to 16 x 16) computed directly
 * (conv_depthwise.c): the forward in NHWC and NCHW (applies), the backward in NHWC (grad_applies; db
 * only with dw). The forward takes a residual res (NULL: none) as cnnc_gemm_epilogue does. They use
 * every thread ctx allows: conv.c hands them its context for the shape (one thread for small ones). */
int cnnc_conv_depthwise_applies(const cnnc_conv2d_params *p);
int cnnc_conv_depthwise_grad_applies(const cnnc_conv2d_params *p);
int64_t cnnc_conv_depthwise_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
int cnnc_conv_depthwise_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                                const float *b, const float *res, cnnc_act act, float *y, void *ws,
                                int64_t ws_size);
int64_t cnnc_conv_depthwise_backward_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p,
                                                    int need_dx);
int cnnc_conv_depthwise_backward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x,
                                 const float *w, const float *dy, float *dx, float *dw, float *db, void *ws,
                                 int64_t ws_size);
int64_t cnnc_conv_direct_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
int cnnc_conv_direct_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                             const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size);
int cnnc_conv_direct_forward_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                                const float *wpk, const float *b, cnnc_act act, float *y, void *ws,
                                int64_t ws_size);
/* The NHWC direct path with a max pool of pkh x pkw windows (stride = window, no padding, floor) fused:
 * y = max_pool(act(conv(x, w) + b)) and the taps (NULL: none), the convolution's output never written
 * (conv_direct.c); runs when
 * the direct path does and pkh output rows fit its stack buffer. Its workspace is the direct path's. */
int cnnc_conv_direct_pool_runs(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw);
int cnnc_conv_direct_pool_forward_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                     const float *x, const float *w, const float *wpk, const float *b,
                                     cnnc_act act, float *y, uint8_t *taps, void *ws, int64_t ws_size);

/* A convolution's forward weights packed once (conv.c): per group, the GEMM operand w_g as
 * cnnc_gemm_pack_a_all (NCHW: w_g[Cout_g, K] is A; B when the GEMM runs transposed) or
 * cnnc_gemm_pack_b_all (NHWC: w_g[K, Cout_g] is B) lays it out for ctx's kernel table, groups one after
 * another; for a Winograd convolution its transformed weights (cnnc_winograd_pack_weights, with
 * cnnc_conv2d_pack_scratch_floats of scratch). cnnc_conv2d_forward_pk takes them (wpk; NULL: none) and
 * gives cnnc_conv2d_forward's results bit for bit; wpk must come from a context with the same mr and nr
 * and from parameters that take the same algorithm (Winograd or not: that depends on the batch). */
int64_t cnnc_conv2d_packed_floats(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
int64_t cnnc_conv2d_pack_scratch_floats(const cnnc_conv2d_params *p);
int cnnc_conv2d_pack_weights(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *w, float *scratch,
                             float *dst);
int cnnc_conv2d_forward_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                           const float *wpk, const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size);
/* y = act((conv(x, w) + b) + res), res of y's shape (a residual connection; NULL: none) with the
 * roundings of the separate ops: the NCHW GEMM paths add it in their epilogue (in the micro-kernel's
 * registers with a relu or none), Winograd, the direct path and NHWC in a pass after the convolution.
 * res must not overlap y. */
int cnnc_conv2d_forward_res(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                            const float *wpk, const float *b, const float *res, cnnc_act act, float *y, void *ws,
                            int64_t ws_size);

/* cnnc_conv2d_forward_pool (cnnc.h) with the weights packed once (wpk as cnnc_conv2d_forward_pk): the
 * model runtime's conv op with a pool fused. */
int cnnc_conv2d_forward_pool_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                const float *x, const float *w, const float *wpk, const float *b, cnnc_act act,
                                float *y, uint8_t *taps, void *ws, int64_t ws_size);

/* act(v) for one value: the scalar definition every vector path must agree with. */
float cnnc_act_scalar(cnnc_act act, float v);
int cnnc_act_valid(cnnc_act act);
/* y[0:n] = act(y + b[0:n]) in place on the calling thread (b may be NULL; act must be valid): the
 * arithmetic of one row of cnnc_bias_act_rows. */
void cnnc_bias_act_span(cnnc_act act, const float *b, float *y, int64_t n);

/* What a GEMM applies to its output once an element is final, while its tile is still in cache:
 * C[i, j] = act(C[i, j] + bias), with bias[i] (per row) or bias[j] (per column), or none (bias NULL).
 * The arithmetic is exactly cnnc_bias_act_rows' (per column) or cnnc_bias_act_planes' (per row).
 * With a residual: C[i, j] = act((C[i, j] + bias) + res[i, j]), the roundings of a bias add, then an
 * elementwise add, then the activation as separate passes. */
typedef struct {
    const float *bias;
    int bias_per_row;
    cnnc_act act;
    const float *res; /* NULL, or a residual added after the bias, before the activation: res[i * ldr + j] */
    int64_t ldr;
} cnnc_gemm_epilogue;
/* max_takes, select_f, select_i32 and the 2x2 window kernels: arch/pool2x2.h (also built per ISA). */
#include "arch/pool2x2.h"

static inline int cnnc_epilogue_active(const cnnc_gemm_epilogue *ep) {
    return ep && (ep->bias || ep->act.kind != CNNC_ACT_NONE || ep->res);
}
/* The epilogue on the block C[i0:i0+rows, j0:j0+cols] (c points at C[0, 0]). */
void cnnc_gemm_epilogue_block(const cnnc_gemm_epilogue *ep, float *c, int64_t ldc, int64_t i0, int64_t rows,
                              int64_t j0, int64_t cols);
/* cnnc_sgemm followed by the epilogue (NULL: none), applied tile by tile. */
int cnnc_sgemm_ep(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                  void *ws, int64_t ws_size, const cnnc_gemm_epilogue *ep);

/* GEMM operands packed once for all calls (a layer's constant weights, gemm.c): op(A) [m x k] as
 * MR-row panels, or op(B) [k x n] as NR-column panels, each panel over the whole of k (k x W floats at
 * r * W * k, W = mr or nr; zero past the last row or column). Packed for one kernel table's mr / nr:
 * only a context with the same may use them. cnnc_sgemm_pk takes them in place of packing (apk / bpk,
 * NULL: pack as usual; a and b are still needed, by the few-row path) and computes exactly the tiles
 * cnnc_sgemm_ep computes, bit for bit. */
int64_t cnnc_gemm_packed_floats(int64_t lines, int64_t k, int64_t w);
void cnnc_gemm_pack_a_all(const cnnc_kernels *kt, int trans_a, int64_t m, int64_t k, const float *a, int64_t lda,
                          float *dst);
void cnnc_gemm_pack_b_all(const cnnc_kernels *kt, int trans_b, int64_t k, int64_t n, const float *b, int64_t ldb,
                          float *dst);
int cnnc_sgemm_pk(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *apk, const float *b, int64_t ldb, const float *bpk,
                  float beta, float *c, int64_t ldc, void *ws, int64_t ws_size, const cnnc_gemm_epilogue *ep);

#endif
