/* conv_pool_dx.h - the data gradient of a convolution whose output went through a max pool (fused in
 * training: conv_pool_grad.c), one image. Portable source; each arch file first defines
 *     static inline void pdx_filter(int64_t n, const float *g, const int32_t *co, int64_t cnt,
 *                                   const float *wb, float *f)
 *         f[e] = sum over k < cnt, in order, of g[co[k]] * wb[co[k] * n + e]   (e < n <= 64)
 *     static inline void pdx_add(int64_t n, const float *f, float *y)            (y[i] += f[i])
 * and then includes this header.
 *
 * The gradient reaching the convolution's output is zero except at the element each pooled output
 * chose (its tap), where it is g. So dx is a sum over the pooled windows and their taps: the output
 * channels whose tap is t (and whose g is not zero) add up their g-scaled filters (wt[co] is
 * [KH, KW, Cin], filt floats) into one block, which is then added to dx over the input window of the
 * window's output at tap t.
 *
 * Blocked so that the filters read stay in L1: the output channels in blocks of q->cb, each filter in
 * q->eb blocks of whole vectors as even as they come (cnnc_pool_dx_block: at most 64 floats, the last one
 * taking the filter's tail), and the transposed filters wt laid out block by block (the channel block
 * from c0, cn channels, at c0 * filt; its element block from e0, en elements, at + cn * e0, as
 * [cn][en]); each filter block is summed over a group of q->pg pooled outputs before the next is read.
 * Order: groups of outputs, channel blocks, element blocks, outputs (py, px) of the group, taps; each
 * block's sum over its channels in order. dx was zeroed by the caller. Returns 0 if a tap lies outside
 * its window (dx then holds no meaning), else 1. f: 64 floats of scratch; idx: q->pg * (q->cb +
 * 3 * pkh * pkw) int32 of scratch. */
#ifndef CNNC_CONV_POOL_DX_H
#define CNNC_CONV_POOL_DX_H
#include "ukernels.h"

static inline int64_t pdx_min(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t pdx_max(int64_t a, int64_t b) { return a > b ? a : b; }

/* f (elements [e0, e0 + n) of a filter) into dx over the window whose top-left input is (iy0, ix0). */
static inline void pdx_scatter(const cnnc_pool_dx_geom *q, const float *f, int64_t e0, int64_t n, int64_t iy0,
                               int64_t ix0, float *dx) {
    const int64_t CI = q->cin, R = q->kw * CI, e1 = e0 + n;
    const int whole = q->dw == 1 && ix0 >= 0 && ix0 + q->kw <= q->w; /* a kernel row is one span of dx */
    for (int64_t i = e0 / R; i * R < e1; ++i) {
        const int64_t iy = iy0 + i * q->dh;
        if (iy < 0 || iy >= q->h) continue;
        float *d = dx + iy * q->w * CI;
        const int64_t a = pdx_max(e0, i * R), b = pdx_min(e1, (i + 1) * R); /* this row's part */
        if (whole) {
            pdx_add(b - a, f + (a - e0), d + ix0 * CI + (a - i * R));
            continue;
        }
        for (int64_t j = (a - i * R) / CI; i * R + j * CI < b; ++j) {
            const int64_t ix = ix0 + j * q->dw;
            const int64_t s = pdx_max(a, i * R + j * CI), t = pdx_min(b, i * R + (j + 1) * CI);
            if (ix >= 0 && ix < q->w) pdx_add(t - s, f + (s - e0), d + ix * CI + (s - i * R - j * CI));
        }
    }
}

static inline int pool_dx_image(const cnnc_pool_dx_geom *q, const float *g, const uint8_t *taps, const float *wt,
                                float *dx, float *f, int32_t *idx) {
    const int64_t CO = q->cout, ntaps = q->pkh * q->pkw, filt = q->kh * q->kw * q->cin, npix = q->ph * q->pw;
    const int64_t per = q->cb + 3 * ntaps; /* one output's scratch: its lists, and each tap's start, count */
    for (int64_t p0 = 0; p0 < npix; p0 += q->pg) {
        const int64_t np = pdx_min(q->pg, npix - p0);
        for (int64_t c0 = 0; c0 < CO; c0 += q->cb) {
            const int64_t cn = pdx_min(q->cb, CO - c0);
            /* each output's channels of the block with g != 0, by tap, in order (a counting sort without
             * branches on the data: each bucket has one spare slot for the writes of channels whose g is
             * zero); channels as indices from c0 */
            for (int64_t p = 0; p < np; ++p) {
                const float *gp = g + (p0 + p) * CO + c0;
                const uint8_t *tp = taps + (p0 + p) * CO + c0;
                int32_t *list = idx + p * per, *start = list + q->cb + ntaps, *cnt = start + ntaps;
                for (int64_t t = 0; t < ntaps; ++t) cnt[t] = 0;
                for (int64_t c = 0; c < cn; ++c) {
                    if (tp[c] >= ntaps) return 0;
                    cnt[tp[c]] += gp[c] != 0.0f;
                }
                int32_t end[256];
                for (int64_t t = 0, s = 0; t < ntaps; ++t) {
                    start[t] = end[t] = (int32_t)s;
                    s += cnt[t] + 1;
                }
                for (int64_t c = 0; c < cn; ++c) {
                    const int t = tp[c];
                    list[end[t]] = (int32_t)c;
                    end[t] += gp[c] != 0.0f;
                }
            }
            for (int64_t k = 0; k < q->eb; ++k) {
                int64_t e0;
                const int64_t en = cnnc_pool_dx_block(filt, q->eb, k, &e0);
                const float *wb = wt + c0 * filt + cn * e0;
                for (int64_t p = 0; p < np; ++p) {
                    const int64_t py = (p0 + p) / q->pw, px = (p0 + p) % q->pw;
                    const float *gp = g + (p0 + p) * CO + c0;
                    const int32_t *list = idx + p * per, *start = list + q->cb + ntaps, *cnt = start + ntaps;
                    for (int64_t t = 0; t < ntaps; ++t) {
                        if (!cnt[t]) continue;
                        pdx_filter(en, gp, list + start[t], cnt[t], wb, f);
                        const int64_t oy = py * q->pkh + t / q->pkw, ox = px * q->pkw + t % q->pkw;
                        pdx_scatter(q, f, e0, en, oy * q->sh - q->pt, ox * q->sw - q->pl, dx);
                    }
                }
            }
        }
    }
    return 1;
}

#endif
