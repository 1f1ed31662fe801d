/* pool2x2.h - max pooling's rule and the 2x2 window kernels (pool.c, and the pools fused into the
 * direct and Winograd convolutions). Portable source: internal.h includes it for the portable build,
 * arch/avx2/f32_pool2x2.c builds pool2x2_window with AVX2 (the same comparisons and selects, eight
 * channels at a time: the same values and taps). */
#ifndef CNNC_POOL2X2_H
#define CNNC_POOL2X2_H
#include <stdint.h>
#include <string.h>

/* Max pooling's rule, NaN-propagating: v replaces the current best b when larger, or the first NaN
 * (pool.c, and the pools fused into convolutions in conv_direct.c). */
static inline int max_takes(float v, float b) { return (v > b) | ((v != v) & (b == b)); }

/* y[c] = the max of a 2x2 window's taps t00, t01, t10, t11 (in scan order) over n channels by the fast
 * rule v > m ? v : m, which is max_takes's choice when no tap is NaN; returns whether one was (the
 * caller then pools the window again with max_takes). One vectorisable loop. */
static inline int pool2x2_fast(const float *restrict t00, const float *restrict t01, const float *restrict t10,
                               const float *restrict t11, float *restrict y, int64_t n) {
    int nan = 0;
    for (int64_t c = 0; c < n; ++c) {
        const float a = t00[c], b = t01[c], d = t10[c], e = t11[c];
        nan |= (a != a) | (b != b) | (d != d) | (e != e);
        float m = a;
        m = b > m ? b : m;
        m = d > m ? d : m;
        y[c] = e > m ? e : m;
    }
    return nan;
}

/* Branch-free t ? a : b (t is 0 or 1). Max-pool updates are data dependent and mispredict badly as
 * branches, which the compiler otherwise tends to emit when an int64 argmax is updated too. */
static inline float select_f(int t, float a, float b) {
    uint32_t ua, ub, m = 0u - (uint32_t)t;
    memcpy(&ua, &a, sizeof ua);
    memcpy(&ub, &b, sizeof ub);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, sizeof a);
    return a;
}

/* Branch-free t ? a : b for taps (t is 0 or 1). */
static inline int32_t select_i32(int t, int32_t a, int32_t b) {
    const int32_t m = -(int32_t)t;
    return (a & m) | (b & ~m);
}

/* pool2x2_fast with each channel's tap (0..3 in scan order) into taps; returns 0, leaving y and taps
 * to max_takes (pool2x2_window), when a tap is NaN. One vectorisable loop. */
static inline int taps2x2_fast(const float *restrict a, const float *restrict b, const float *restrict d,
                               const float *restrict e, float *restrict y, uint8_t *restrict taps, int64_t n) {
    int nan = 0;
    for (int64_t c = 0; c < n; ++c) {
        const float va = a[c], vb = b[c], vd = d[c], ve = e[c];
        nan |= (va != va) | (vb != vb) | (vd != vd) | (ve != ve);
        float m = va;
        int32_t t = 0, k = vb > m; /* branch-free selects: these vectorise */
        t = select_i32(k, 1, t);
        m = select_f(k, vb, m);
        k = vd > m;
        t = select_i32(k, 2, t);
        m = select_f(k, vd, m);
        k = ve > m;
        taps[c] = (uint8_t)select_i32(k, 3, t);
        y[c] = select_f(k, ve, m);
    }
    return !nan;
}

/* y[c] = the max pool of one 2x2 window (taps t00, t01, t10, t11 in scan order) over n channels, as the
 * max pool chooses, and unless taps is NULL each channel's chosen tap (0..3): the values and taps
 * cnnc_max_pool2d_forward_taps gives a whole 2x2 window. The fast rule (pool2x2_fast, taps2x2_fast),
 * and when a tap is NaN the window again with max_takes (the first NaN, else the first of equal
 * values). */
static inline void pool2x2_window(const float *restrict t00, const float *restrict t01, const float *restrict t10,
                                  const float *restrict t11, float *restrict y, uint8_t *restrict taps, int64_t n) {
    if (taps ? taps2x2_fast(t00, t01, t10, t11, y, taps, n) : !pool2x2_fast(t00, t01, t10, t11, y, n)) return;
    const float *rest[3] = {t01, t10, t11};
    memcpy(y, t00, (size_t)n * sizeof(float));
    if (taps) memset(taps, 0, (size_t)n);
    for (int k = 0; k < 3; ++k)
        for (int64_t c = 0; c < n; ++c) {
            const int take = max_takes(rest[k][c], y[c]);
            y[c] = select_f(take, rest[k][c], y[c]);
            if (taps) taps[c] = (uint8_t)select_i32(take, k + 1, taps[c]);
        }
}

#endif
