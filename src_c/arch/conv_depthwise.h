/* conv_depthwise.h - the kernels of the direct depthwise convolution (conv_depthwise.c). Portable
 * source, compiled for any CPU by arch/generic/f32_conv_depthwise.c; arch/avx2/f32_conv_depthwise.c
 * does the same sums, in the same order, with AVX2 + FMA.
 *
 * dwc_row (NHWC, one input channel per output channel): npix pixels of c channels each,
 *   y[i * c + k] = sum over r < t->nr, then j < t->cn[i], of
 *                  t->xr[r][t->cx[i * t->kmax + j] + k] * w[t->wr[r] + t->cw[i * t->kmax + j] + k]
 * summed in that order from zero (no terms: zero). The taps are separable: row taps r (an input row
 * and its kernel row's offset in w) times pixel i's column taps j (offsets into that row and into w).
 * The forward's pixels are an output row's, reading x; the data gradient's are an input row's,
 * reading dy.
 *
 * dwc_plane_row (NCHW): y[i] = sum over t < nt of src[t][i] * wt[t], i < n, summed in order from zero.
 *
 * dwc_wgrad_span (the weight gradient, NHWC, one input channel per output channel):
 *   for p < npix in order: acc[k] += x[p * xstep + k] * dy[p * c + k], k < c. */
#ifndef CNNC_CONV_DEPTHWISE_H
#define CNNC_CONV_DEPTHWISE_H
#include "ukernels.h"

static inline void dwc_row(const cnnc_dwc_taps *t, int64_t npix, const float *w, int64_t c, float *y) {
    for (int64_t i = 0; i < npix; ++i) {
        float *restrict yi = y + i * c;
        for (int64_t k = 0; k < c; ++k) yi[k] = 0.0f;
        const int64_t *cx = t->cx + i * t->kmax, *cw = t->cw + i * t->kmax;
        for (int64_t r = 0; r < t->nr; ++r)
            for (int32_t j = 0; j < t->cn[i]; ++j) {
                const float *restrict xp = t->xr[r] + cx[j], *restrict wp = w + t->wr[r] + cw[j];
                for (int64_t k = 0; k < c; ++k) yi[k] += xp[k] * wp[k];
            }
    }
}

static inline void dwc_plane_row(int64_t nt, const float *const *src, const float *wt, int64_t n, float *y) {
    for (int64_t i = 0; i < n; ++i) y[i] = 0.0f;
    for (int64_t t = 0; t < nt; ++t) {
        const float *restrict s = src[t];
        const float v = wt[t];
        for (int64_t i = 0; i < n; ++i) y[i] += s[i] * v;
    }
}

static inline void dwc_wgrad_span(int64_t npix, const float *x, int64_t xstep, const float *dy, int64_t c,
                                  float *acc) {
    for (int64_t p = 0; p < npix; ++p) {
        const float *restrict xp = x + p * xstep, *restrict dp = dy + p * c;
        for (int64_t k = 0; k < c; ++k) acc[k] += xp[k] * dp[k];
    }
}

#endif
