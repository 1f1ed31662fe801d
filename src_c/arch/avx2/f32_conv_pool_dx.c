/* f32_conv_pool_dx.c - the pooled convolution's data gradient (arch/conv_pool_dx.h) with AVX2 + FMA:
 * a block of up to 64 filter elements in up to eight registers summed over the output channels of one
 * tap, each term one fused multiply-add (fmaf past the last multiple of eight, the same rounding).
 * Called only after dispatch has seen AVX2 and FMA. */
#include "../ukernels.h"
#include <immintrin.h>
#include <math.h>

/* f[8 * v + l] for v < NV: NV accumulators, one chain of fused multiply-adds each. */
static inline __attribute__((always_inline)) void pdx_vectors(const int nv, int64_t n, const float *g,
                                                              const int32_t *co, int64_t cnt, const float *wb,
                                                              float *f) {
    __m256 a[8];
#pragma GCC unroll 8
    for (int v = 0; v < nv; ++v) a[v] = _mm256_setzero_ps();
    for (int64_t k = 0; k < cnt; ++k) {
        const __m256 gk = _mm256_broadcast_ss(g + co[k]);
        const float *w = wb + co[k] * n;
#pragma GCC unroll 8
        for (int v = 0; v < nv; ++v) a[v] = _mm256_fmadd_ps(gk, _mm256_loadu_ps(w + 8 * v), a[v]);
    }
#pragma GCC unroll 8
    for (int v = 0; v < nv; ++v) _mm256_storeu_ps(f + 8 * v, a[v]);
}

static inline void pdx_filter(int64_t n, const float *g, const int32_t *co, int64_t cnt, const float *wb,
                              float *f) {
    switch (n / 8) {
    case 1: pdx_vectors(1, n, g, co, cnt, wb, f); break;
    case 2: pdx_vectors(2, n, g, co, cnt, wb, f); break;
    case 3: pdx_vectors(3, n, g, co, cnt, wb, f); break;
    case 4: pdx_vectors(4, n, g, co, cnt, wb, f); break;
    case 5: pdx_vectors(5, n, g, co, cnt, wb, f); break;
    case 6: pdx_vectors(6, n, g, co, cnt, wb, f); break;
    case 7: pdx_vectors(7, n, g, co, cnt, wb, f); break;
    case 8: pdx_vectors(8, n, g, co, cnt, wb, f); break;
    default: break; /* n < 8 (a block is at most 64 floats) */
    }
    for (int64_t e = n / 8 * 8; e < n; ++e) {
        float a = 0.0f;
        for (int64_t k = 0; k < cnt; ++k) a = fmaf(g[co[k]], wb[co[k] * n + e], a);
        f[e] = a;
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
