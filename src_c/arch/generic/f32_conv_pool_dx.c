/* f32_conv_pool_dx.c - the pooled convolution's data gradient (arch/conv_pool_dx.h), portable build:
 * each term a multiply, then an add. */
#include "../ukernels.h"

static inline void pdx_filter(int64_t n, const float *g, const int32_t *co, int64_t cnt, const float *wb,
                              float *f) {
    for (int64_t e = 0; e < n; ++e) f[e] = 0.0f;
    for (int64_t k = 0; k < cnt; ++k) {
        const float a = g[co[k]];
        const float *w = wb + co[k] * n;
        for (int64_t e = 0; e < n; ++e) f[e] += a * w[e];
    }
}

static inline void pdx_add(int64_t n, const float *restrict f, float *restrict y) {
    for (int64_t i = 0; i < n; ++i) y[i] += f[i];
}

#include "../conv_pool_dx.h"

int cnnc_f32_pool_dx_image__generic(const cnnc_pool_dx_geom *q, const float *g, const uint8_t *taps,
                                    const float *wt, float *dx, float *f, int32_t *idx) {
    return pool_dx_image(q, g, taps, wt, dx, f, idx);
}
