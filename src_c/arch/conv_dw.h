/* conv_dw.h - the row kernel of the direct weight gradient (conv_dw.c): one output row's contribution to
 * dw and db of a convolution with few taps. Portable source, compiled for any CPU by
 * arch/generic/f32_conv_dw.c; arch/avx2/f32_conv_dw.c does the same sums with AVX2 + FMA.
 *
 * acc[e * co + c] += sum over p < npix of xt[e][p * xstep] * dz[p * co + c]   (taps e < ntaps)
 * acc[ntaps * co + c] += sum over p < npix of dz[p * co + c]                    (the bias row)
 * Each sum runs over p in order, from zero, and is then added to acc. */
#ifndef CNNC_CONV_DW_H
#define CNNC_CONV_DW_H
#include <stdint.h>

#define DW_CB 32 /* output channels per block of the portable loops */

static inline void conv_dw_row(const float *const *xt, int64_t xstep, int64_t ntaps, const float *dz, int64_t npix,
                               int64_t co, float *acc) {
    for (int64_t c0 = 0; c0 < co; c0 += DW_CB) {
        const int64_t cn = co - c0 < DW_CB ? co - c0 : DW_CB;
        float r[DW_CB];
        for (int64_t e = 0; e <= ntaps; ++e) {
            for (int64_t c = 0; c < cn; ++c) r[c] = 0.0f;
            for (int64_t p = 0; p < npix; ++p) {
                const float *d = dz + p * co + c0;
                const float xv = e < ntaps ? xt[e][p * xstep] : 1.0f;
                if (e < ntaps)
                    for (int64_t c = 0; c < cn; ++c) r[c] += xv * d[c];
                else
                    for (int64_t c = 0; c < cn; ++c) r[c] += d[c];
            }
            float *a = acc + e * co + c0;
            for (int64_t c = 0; c < cn; ++c) a[c] += r[c];
        }
    }
}

#endif
