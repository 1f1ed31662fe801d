/* f32_conv_depthwise.c - the depthwise convolution's kernels (contracts: arch/conv_depthwise.h) with
 * AVX2 + FMA: channels (NHWC) or output columns (NCHW) eight to a vector, up to four vectors of sums in
 * registers, each sum over its terms in the contract's order; the last few channels through masked
 * loads and stores. Called only after dispatch has seen AVX2 and FMA. */
#include "../ukernels.h"
#include "../conv_depthwise.h"
#include <immintrin.h>

static inline __m256i tail_mask(int64_t left) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

void cnnc_f32_dwc_row__avx2(const cnnc_dwc_taps *t, int64_t npix, const float *w, int64_t c, float *y) {
    const int64_t nr = t->nr;
    for (int64_t i = 0; i < npix; ++i) {
        const int64_t *cx = t->cx + i * t->kmax, *cw = t->cw + i * t->kmax;
        const int64_t cn = t->cn[i];
        float *yi = y + i * c;
        int64_t k = 0;
        for (; k + 32 <= c; k += 32) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
            for (int64_t r = 0; r < nr; ++r) {
                const float *xr = t->xr[r] + k, *wr = w + t->wr[r] + k;
                for (int64_t j = 0; j < cn; ++j) {
                    const float *xp = xr + cx[j], *wp = wr + cw[j];
                    a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp), _mm256_loadu_ps(wp), a0);
                    a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 8), _mm256_loadu_ps(wp + 8), a1);
                    a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 16), _mm256_loadu_ps(wp + 16), a2);
                    a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 24), _mm256_loadu_ps(wp + 24), a3);
                }
            }
            _mm256_storeu_ps(yi + k, a0);
            _mm256_storeu_ps(yi + k + 8, a1);
            _mm256_storeu_ps(yi + k + 16, a2);
            _mm256_storeu_ps(yi + k + 24, a3);
        }
        for (; k < c; k += 8) {
            const int full = k + 8 <= c;
            const __m256i m = tail_mask(c - k);
            __m256 a = _mm256_setzero_ps();
            for (int64_t r = 0; r < nr; ++r) {
                const float *xr = t->xr[r] + k, *wr = w + t->wr[r] + k;
                for (int64_t j = 0; j < cn; ++j) {
                    const __m256 xv = full ? _mm256_loadu_ps(xr + cx[j]) : _mm256_maskload_ps(xr + cx[j], m);
                    const __m256 wv = full ? _mm256_loadu_ps(wr + cw[j]) : _mm256_maskload_ps(wr + cw[j], m);
                    a = _mm256_fmadd_ps(xv, wv, a);
                }
            }
            if (full) _mm256_storeu_ps(yi + k, a);
            else _mm256_maskstore_ps(yi + k, m, a);
        }
    }
}

void cnnc_f32_dwc_plane_row__avx2(int64_t nt, const float *const *src, const float *wt, int64_t n, float *y) {
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t t = 0; t < nt; ++t) {
            const float *s = src[t] + i;
            const __m256 v = _mm256_broadcast_ss(wt + t);
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(s), v, a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(s + 8), v, a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(s + 16), v, a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(s + 24), v, a3);
        }
        _mm256_storeu_ps(y + i, a0);
        _mm256_storeu_ps(y + i + 8, a1);
        _mm256_storeu_ps(y + i + 16, a2);
        _mm256_storeu_ps(y + i + 24, a3);
    }
    for (; i < n; i += 8) {
        const int full = i + 8 <= n;
        const __m256i m = tail_mask(n - i);
        __m256 a = _mm256_setzero_ps();
        for (int64_t t = 0; t < nt; ++t) {
            const __m256 s = full ? _mm256_loadu_ps(src[t] + i) : _mm256_maskload_ps(src[t] + i, m);
            a = _mm256_fmadd_ps(s, _mm256_broadcast_ss(wt + t), a);
        }
        if (full) _mm256_storeu_ps(y + i, a);
        else _mm256_maskstore_ps(y + i, m, a);
    }
}

void cnnc_f32_dwc_wgrad_span__avx2(int64_t npix, const float *x, int64_t xstep, const float *dy, int64_t c,
                                   float *acc) {
    int64_t k = 0;
    for (; k + 32 <= c; k += 32) {
        __m256 a0 = _mm256_loadu_ps(acc + k), a1 = _mm256_loadu_ps(acc + k + 8);
        __m256 a2 = _mm256_loadu_ps(acc + k + 16), a3 = _mm256_loadu_ps(acc + k + 24);
        for (int64_t p = 0; p < npix; ++p) {
            const float *xp = x + p * xstep + k, *dp = dy + p * c + k;
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(xp), _mm256_loadu_ps(dp), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 8), _mm256_loadu_ps(dp + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 16), _mm256_loadu_ps(dp + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(xp + 24), _mm256_loadu_ps(dp + 24), a3);
        }
        _mm256_storeu_ps(acc + k, a0);
        _mm256_storeu_ps(acc + k + 8, a1);
        _mm256_storeu_ps(acc + k + 16, a2);
        _mm256_storeu_ps(acc + k + 24, a3);
    }
    for (; k < c; k += 8) {
        const int full = k + 8 <= c;
        const __m256i m = tail_mask(c - k);
        __m256 a = full ? _mm256_loadu_ps(acc + k) : _mm256_maskload_ps(acc + k, m);
        for (int64_t p = 0; p < npix; ++p) {
            const float *xp = x + p * xstep + k, *dp = dy + p * c + k;
            const __m256 xv = full ? _mm256_loadu_ps(xp) : _mm256_maskload_ps(xp, m);
            const __m256 dv = full ? _mm256_loadu_ps(dp) : _mm256_maskload_ps(dp, m);
            a = _mm256_fmadd_ps(xv, dv, a);
        }
        if (full) _mm256_storeu_ps(acc + k, a);
        else _mm256_maskstore_ps(acc + k, m, a);
    }
}
