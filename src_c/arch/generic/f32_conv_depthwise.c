/* f32_conv_depthwise.c - the depthwise convolution's kernels (arch/conv_depthwise.h), portable build. */
#include "../ukernels.h"
#include "../conv_depthwise.h"

void cnnc_f32_dwc_row__generic(const cnnc_dwc_taps *t, int64_t npix, const float *w, int64_t c, float *y) {
    dwc_row(t, npix, w, c, y);
}

void cnnc_f32_dwc_plane_row__generic(int64_t nt, const float *const *src, const float *wt, int64_t n, float *y) {
    dwc_plane_row(nt, src, wt, n, y);
}

void cnnc_f32_dwc_wgrad_span__generic(int64_t npix, const float *x, int64_t xstep, const float *dy, int64_t c,
                                      float *acc) {
    dwc_wgrad_span(npix, x, xstep, dy, c, acc);
}
