/* f32_conv_dw.c - the direct weight gradient's row kernel (contract: arch/conv_dw.h) with AVX2 + FMA:
 * eight output channels per vector, up to nine taps (and the bias row) in registers, each tap's value
 * broadcast per pixel. Channels past the last multiple of eight take the portable loops. Called only
 * after dispatch has seen AVX2 and FMA. */
#include "../ukernels.h"
#include "../conv_dw.h"
#include <immintrin.h>
#include <math.h>

#define DW_TAPS 9

void cnnc_f32_conv_dw_row__avx2(const float *const *xt, int64_t xstep, int64_t ntaps, const float *dz,
                                int64_t npix, int64_t co, float *acc) {
    int64_t c0 = 0;
    for (; c0 + 8 <= co; c0 += 8) {
        for (int64_t e0 = 0; e0 < ntaps; e0 += DW_TAPS) {
            const int64_t ne = ntaps - e0 < DW_TAPS ? ntaps - e0 : DW_TAPS;
            const float *x[DW_TAPS];
            for (int64_t e = 0; e < DW_TAPS; ++e) x[e] = xt[e0 + (e < ne ? e : 0)];
            __m256 a[DW_TAPS], s = _mm256_setzero_ps();
            for (int e = 0; e < DW_TAPS; ++e) a[e] = _mm256_setzero_ps();
            if (ne == DW_TAPS) {
                for (int64_t p = 0; p < npix; ++p) {
                    const __m256 d = _mm256_loadu_ps(dz + p * co + c0);
                    const int64_t o = p * xstep;
                    s = _mm256_add_ps(s, d);
                    for (int e = 0; e < DW_TAPS; ++e) a[e] = _mm256_fmadd_ps(_mm256_broadcast_ss(x[e] + o), d, a[e]);
                }
            } else {
                for (int64_t p = 0; p < npix; ++p) {
                    const __m256 d = _mm256_loadu_ps(dz + p * co + c0);
                    const int64_t o = p * xstep;
                    s = _mm256_add_ps(s, d);
                    for (int64_t e = 0; e < ne; ++e) a[e] = _mm256_fmadd_ps(_mm256_broadcast_ss(x[e] + o), d, a[e]);
                }
            }
            for (int64_t e = 0; e < ne; ++e) {
                float *t = acc + (e0 + e) * co + c0;
                _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), a[e]));
            }
            if (e0 == 0) {
                float *t = acc + ntaps * co + c0;
                _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), s));
            }
        }
    }
    if (c0 < co) { /* the rest: a sub-block of dz and acc with its own row stride */
        for (int64_t e = 0; e <= ntaps; ++e) {
            float r[8] = {0};
            const int64_t cn = co - c0;
            for (int64_t p = 0; p < npix; ++p) {
                const float *d = dz + p * co + c0;
                if (e < ntaps) {
                    const float xv = xt[e][p * xstep];
                    for (int64_t c = 0; c < cn; ++c) r[c] = fmaf(xv, d[c], r[c]);
                } else {
                    for (int64_t c = 0; c < cn; ++c) r[c] += d[c];
                }
            }
            for (int64_t c = 0; c < cn; ++c) acc[e * co + c0 + c] += r[c];
        }
    }
}
