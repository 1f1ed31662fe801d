/* conv_pool_dx.h - the data gradient of a convolution whose output went through a max pool (fused in
 * training: conv_pool_grad.c), one image. Portable source; each arch file first defines
 *     static inline void pdx_filter(int64_t filt, const float *g, const int32_t *co, int64_t cnt,
 *                                   const float *wt, float *f)
 *         f[e] = sum over k < cnt, in order, of g[co[k]] * wt[co[k] * filt + e]   (e < filt)
 *     static inline void pdx_add(int64_t n, const float *f, float *y)            (y[i] += f[i])
 * and then includes this header.
 *
 * The gradient reaching the convolution's output is zero except at the element each pooled output
 * chose (its tap), where it is g. So dx is a sum over the pooled windows and their taps: the output
 * channels whose tap is t (and whose g is not zero) add up their g-scaled filters into one filter-sized
 * block (wt[co] is [KH, KW, Cin]), which is then added to dx over the input window of the window's
 * output at tap t. Windows in (py, px) order, taps in order. dx was zeroed by the caller. Returns 0 if a
 * tap lies outside its window (dx then holds no meaning), else 1. f: filt floats of scratch; idx:
 * cout + pkh * pkw int32 of scratch. */
#ifndef CNNC_CONV_POOL_DX_H
#define CNNC_CONV_POOL_DX_H
#include "ukernels.h"

static inline int pool_dx_image(const cnnc_pool_dx_geom *q, const float *g, const uint8_t *taps, const float *wt,
                                float *dx, float *f, int32_t *idx) {
    const int64_t CI = q->cin, KW = q->kw, CO = q->cout, row = q->w * CI, ntaps = q->pkh * q->pkw;
    const int64_t filt = q->kh * KW * CI;
    for (int64_t py = 0; py < q->ph; ++py)
        for (int64_t px = 0; px < q->pw; ++px) {
            const float *gp = g + (py * q->pw + px) * CO;
            const uint8_t *tp = taps + (py * q->pw + px) * CO;
            /* the channels with g != 0 by tap, in order (a counting sort without branches on the data:
             * each bucket has one spare slot for the writes of channels whose g is zero) */
            int32_t cnt[256], end[256];
            for (int64_t t = 0; t < ntaps; ++t) cnt[t] = 0;
            for (int64_t co = 0; co < CO; ++co) {
                if (tp[co] >= ntaps) return 0;
                cnt[tp[co]] += gp[co] != 0.0f;
            }
            for (int64_t t = 0, s = 0; t < ntaps; ++t) {
                end[t] = (int32_t)s;
                s += cnt[t] + 1;
            }
            for (int64_t co = 0; co < CO; ++co) {
                const int t = tp[co];
                idx[end[t]] = (int32_t)co;
                end[t] += gp[co] != 0.0f;
            }
            for (int64_t t = 0; t < ntaps; ++t) {
                if (!cnt[t]) continue;
                pdx_filter(filt, gp, idx + end[t] - cnt[t], cnt[t], wt, f);
                const int64_t oy = py * q->pkh + t / q->pkw, ox = px * q->pkw + t % q->pkw;
                const int64_t iy0 = oy * q->sh - q->pt, ix0 = ox * q->sw - q->pl;
                const int whole = q->dw == 1 && ix0 >= 0 && ix0 + KW <= q->w; /* a kernel row is one span */
                for (int64_t i = 0; i < q->kh; ++i) {
                    const int64_t iy = iy0 + i * q->dh;
                    if (iy < 0 || iy >= q->h) continue;
                    float *d = dx + iy * row;
                    const float *fr = f + i * KW * CI;
                    if (whole) {
                        pdx_add(KW * CI, fr, d + ix0 * CI);
                        continue;
                    }
                    for (int64_t j = 0; j < KW; ++j) {
                        const int64_t ix = ix0 + j * q->dw;
                        if (ix >= 0 && ix < q->w) pdx_add(CI, fr + j * CI, d + ix * CI);
                    }
                }
            }
        }
    return 1;
}

#endif
