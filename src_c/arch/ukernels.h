/* ukernels.h - the per-ISA GEMM micro-kernels (see cnnc_gemm_ukernel_fn in cnnc.h for the contract)
 * and packing helpers (see cnnc_gemm_gather_fn in internal.h). */
#ifndef CNNC_UKERNELS_H
#define CNNC_UKERNELS_H
#include "../cnnc.h"

void cnnc_f32_gemm_ukernel_6x8__generic(int64_t k, const float *ap, const float *bp, float *c,
                                        int64_t ldc, int64_t m, int64_t n,
                                        const cnnc_gemm_params *params);
void cnnc_f32_gemm_ukernel_6x16__avx2(int64_t k, const float *ap, const float *bp, float *c,
                                      int64_t ldc, int64_t m, int64_t n, const cnnc_gemm_params *params);
void cnnc_f32_gemm_ukernel_12x16__avx512(int64_t k, const float *ap, const float *bp, float *c,
                                         int64_t ldc, int64_t m, int64_t n, const cnnc_gemm_params *params);
/* Transposing packs for full panels: dst[p * W + i] = src[i * ld + p], i < W, p < kc. */
void cnnc_f32_pack_gather6__avx2(int64_t kc, const float *src, int64_t ld, float *dst);
void cnnc_f32_pack_gather12__avx2(int64_t kc, const float *src, int64_t ld, float *dst);
void cnnc_f32_pack_gather16__avx2(int64_t kc, const float *src, int64_t ld, float *dst);
/* Few-row GEMM kernels (m <= 4, B read in place; contracts at cnnc_gemm_small_fns in internal.h). */
void cnnc_f32_gemm_rows__generic(int64_t m, int64_t w, int64_t k, const float *a, int64_t lda,
                                 const float *b, int64_t ldb, float *acc, float *c, int64_t ldc,
                                 const cnnc_gemm_params *params);
void cnnc_f32_gemm_dots__generic(int64_t m, int64_t w, int64_t k, const float *a, int64_t lda,
                                 const float *b, int64_t ldb, float *c, int64_t ldc,
                                 const cnnc_gemm_params *params);
void cnnc_f32_gemm_rows__avx2(int64_t m, int64_t w, int64_t k, const float *a, int64_t lda,
                              const float *b, int64_t ldb, float *acc, float *c, int64_t ldc,
                              const cnnc_gemm_params *params);
void cnnc_f32_gemm_dots__avx2(int64_t m, int64_t w, int64_t k, const float *a, int64_t lda,
                              const float *b, int64_t ldb, float *c, int64_t ldc,
                              const cnnc_gemm_params *params);
/* Winograd F(2x2, 3x3)'s per-tile transforms over a block of <= 32 channels (arch/winograd_tx.h's
 * wg_in_block and wg_out_block; the contracts are there). */
int cnnc_f32_wg_in_block__generic(const float *const *dp, int64_t cn, float *dst, int64_t stride);
void cnnc_f32_wg_out_block__generic(const float *src, int64_t stride, int64_t cn, float o[4][32]);
int cnnc_f32_wg_in_block__avx2(const float *const *dp, int64_t cn, float *dst, int64_t stride);
void cnnc_f32_wg_out_block__avx2(const float *src, int64_t stride, int64_t cn, float o[4][32]);
/* The direct weight gradient's row kernel (arch/conv_dw.h's conv_dw_row; the contract is there). */
void cnnc_f32_conv_dw_row__generic(const float *const *xt, int64_t xstep, int64_t ntaps, const float *dz,
                                   int64_t npix, int64_t co, float *acc);
void cnnc_f32_conv_dw_row__avx2(const float *const *xt, int64_t xstep, int64_t ntaps, const float *dz,
                                int64_t npix, int64_t co, float *acc);
/* The data gradient of a convolution fused with a max pool, one image at a time (arch/conv_pool_dx.h's
 * pool_dx_image; the contract is there). */
typedef struct {
    int64_t h, w, cin, kh, kw, sh, sw, dh, dw, pt, pl; /* the convolution: NHWC, one group */
    int64_t oh, ow, cout, pkh, pkw, ph, pw;            /* its output; the pool's windows; the pooled size */
    int64_t cb, eb, pg; /* the blocks: output channels per block, blocks per filter, pooled outputs */
} cnnc_pool_dx_geom;
/* Element block k of a filter of filt floats in nb blocks of whole vectors, as even as they come (the
 * last one takes the tail): [*e0, *e0 + return). */
static inline int64_t cnnc_pool_dx_block(int64_t filt, int64_t nb, int64_t k, int64_t *e0) {
    const int64_t nv = (filt + 7) / 8, e1 = 8 * ((k + 1) * nv / nb);
    *e0 = 8 * (k * nv / nb);
    return (e1 < filt ? e1 : filt) - *e0;
}
int cnnc_f32_pool_dx_image__generic(const cnnc_pool_dx_geom *q, const float *g, const uint8_t *taps,
                                    const float *wt, float *dx, float *f, int32_t *idx);
int cnnc_f32_pool_dx_image__avx2(const cnnc_pool_dx_geom *q, const float *g, const uint8_t *taps,
                                 const float *wt, float *dx, float *f, int32_t *idx);
/* The weight gradient of a convolution fused with a max pool (conv_pool_grad.c): one tile of
 * accumulators, cb output channels by ns segments of 8 * nv floats of their [KH, KW, Cin] gradient
 * rows. For j < cb, s < ns, l < 8 * nv, in order of p < npix:
 *     acc[j * accstride + s * accseg + l] += g[p * ld + j] * x[base[p] + tapoff[taps[p * ld + j]] + s * segstep + l]
 * (g and taps point at the tile's first channel; every tap indexes tapoff). The AVX2 kernel fuses each
 * multiply-add and takes ns * nv * cb <= 12 with ns = 1 or nv = 1 (its registers), the portable one
 * rounds the product, then the sum, and takes any shape; each returns 0 for a shape it does not take. */
typedef struct {
    int64_t ns, nv, cb, npix, ld, segstep, accstride, accseg;
    const int64_t *base, *tapoff;
    const uint8_t *taps;
    const float *g, *x;
    float *acc;
} cnnc_pool_dw_tile;
int cnnc_f32_pool_dw_tile__generic(const cnnc_pool_dw_tile *t);
int cnnc_f32_pool_dw_tile__avx2(const cnnc_pool_dw_tile *t);
/* The direct depthwise convolution's kernels (arch/conv_depthwise.h; the contracts are there). The taps
 * of dwc_row's pixels: row taps times each pixel's column taps. */
typedef struct {
    const float *const *xr; /* row taps: nr rows of the input read */
    const int64_t *wr;      /* each row tap's offset into w (floats) */
    int64_t nr;
    const int32_t *cn;      /* column taps of pixel i: cn[i] of them, ... */
    const int64_t *cx, *cw; /* ... at cx[i * kmax + j] into the row and cw[i * kmax + j] into w (floats) */
    int64_t kmax;
} cnnc_dwc_taps;
void cnnc_f32_dwc_row__generic(const cnnc_dwc_taps *t, int64_t npix, const float *w, int64_t c, float *y);
void cnnc_f32_dwc_row__avx2(const cnnc_dwc_taps *t, int64_t npix, const float *w, int64_t c, float *y);
void cnnc_f32_dwc_plane_row__generic(int64_t nt, const float *const *src, const float *wt, int64_t n, float *y);
void cnnc_f32_dwc_plane_row__avx2(int64_t nt, const float *const *src, const float *wt, int64_t n, float *y);
void cnnc_f32_dwc_wgrad_span__generic(int64_t npix, const float *x, int64_t xstep, const float *dy, int64_t c,
                                      float *acc);
void cnnc_f32_dwc_wgrad_span__avx2(int64_t npix, const float *x, int64_t xstep, const float *dy, int64_t c,
                                   float *acc);
/* The optimizers' update rules on one span of a variable (arch/optim.h). */
void cnnc_f32_optim_span__generic(const cnnc_optim_rule *r, int64_t n, const float *g, float *w, float *s0, float *s1,
                                  float *s2);
void cnnc_f32_optim_span__avx2(const cnnc_optim_rule *r, int64_t n, const float *g, float *w, float *s0, float *s1,
                               float *s2);
/* A 2x2 max-pool window over n channels (arch/pool2x2.h's pool2x2_window). */
void cnnc_f32_pool2x2_window__generic(const float *t00, const float *t01, const float *t10, const float *t11, float *y,
                                      uint8_t *taps, int64_t n);
void cnnc_f32_pool2x2_window__avx2(const float *t00, const float *t01, const float *t10, const float *t11, float *y,
                                   uint8_t *taps, int64_t n);
#endif
