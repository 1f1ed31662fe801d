/* f32_conv_pool_dx.c - the pooled convolution's data gradient (arch/conv_pool_dx.h) with AVX2 + FMA:
 * 64 filter elements in eight registers summed over the output channels of one tap, each term one
 * fused multiply-add (fmaf past the last multiple of eight, the same rounding). Called only after
 * dispatch has seen AVX2 and FMA. */
#include "../ukernels.h"
#include <immintrin.h>
#include <math.h>

static inline void pdx_filter(int64_t filt, const float *g, const int32_t *co, int64_t cnt, const float *wt,
                              float *f) {
    int64_t e0 = 0;
    for (; e0 + 64 <= filt; e0 += 64) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int64_t k = 0; k < cnt; ++k) {
            const __m256 v = _mm256_broadcast_ss(g + co[k]);
            const float *w = wt + co[k] * filt + e0;
            a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 8), a1);
            a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 16), a2);
            a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 24), a3);
            a4 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 32), a4);
            a5 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 40), a5);
            a6 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 48), a6);
            a7 = _mm256_fmadd_ps(v, _mm256_loadu_ps(w + 56), a7);
        }
        _mm256_storeu_ps(f + e0, a0);
        _mm256_storeu_ps(f + e0 + 8, a1);
        _mm256_storeu_ps(f + e0 + 16, a2);
        _mm256_storeu_ps(f + e0 + 24, a3);
        _mm256_storeu_ps(f + e0 + 32, a4);
        _mm256_storeu_ps(f + e0 + 40, a5);
        _mm256_storeu_ps(f + e0 + 48, a6);
        _mm256_storeu_ps(f + e0 + 56, a7);
    }
    for (; e0 + 8 <= filt; e0 += 8) {
        __m256 a = _mm256_setzero_ps();
        for (int64_t k = 0; k < cnt; ++k)
            a = _mm256_fmadd_ps(_mm256_broadcast_ss(g + co[k]), _mm256_loadu_ps(wt + co[k] * filt + e0), a);
        _mm256_storeu_ps(f + e0, a);
    }
    for (; e0 < filt; ++e0) {
        float a = 0.0f;
        for (int64_t k = 0; k < cnt; ++k) a = fmaf(g[co[k]], wt[co[k] * filt + e0], a);
        f[e0] = a;
    }
}

static inline void pdx_add(int64_t n, const float *restrict f, float *restrict y) {
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(f + i)));
    for (; i < n; ++i) y[i] += f[i];
}

#include "../conv_pool_dx.h"

int cnnc_f32_pool_dx_image__avx2(const cnnc_pool_dx_geom *q, const float *g, const uint8_t *taps,
                                 const float *wt, float *dx, float *f, int32_t *idx) {
    return pool_dx_image(q, g, taps, wt, dx, f, idx);
}
