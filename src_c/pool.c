/* pool.c - 2-D max/average pooling, global pooling and max pooling across the depth axis.
 *
 * Threading: forward passes split over independent outputs (NHWC: rows (n, oh) or (n, channel block);
 * NCHW: (n, c) planes). Backward passes scatter-add, so they split over images (NHWC) or planes
 * (NCHW) and run sequentially inside each; every output element is therefore computed by one thread
 * in a fixed order and results do not depend on the thread count.
 */
#include "internal.h"
#include <math.h>
#include <stdatomic.h>

#define POOL_CBLOCK 64 /* channels per task / stack accumulator in NHWC global pooling */

static int valid_layout(int layout) { return layout == CNNC_NHWC || layout == CNNC_NCHW; }

static inline int64_t select_i64(int t, int64_t a, int64_t b) {
    int64_t m = -(int64_t)t;
    return (a & m) | (b & ~m);
}

/* One axis: output length of a window of k taps, dilation d, stride s over size + plo + phi. */
static int axis_output(int64_t size, int64_t k, int64_t s, int64_t d, int64_t plo, int64_t phi,
                       int ceil_mode, int64_t *out) {
    if (size < 1 || k < 1 || s < 1 || d < 1 || plo < 0 || phi < 0) return CNNC_EINVAL;
    if (k - 1 > (INT64_MAX - 1) / d) return CNNC_EOVERFLOW;
    int64_t ke = d * (k - 1) + 1;
    if (plo > INT64_MAX - size || phi > INT64_MAX - size - plo) return CNNC_EOVERFLOW;
    int64_t padded = size + plo + phi;
    if (ke > padded) return CNNC_EINVAL;
    int64_t span = padded - ke;
    int64_t o = (ceil_mode ? span / s + (span % s != 0) : span / s) + 1;
    /* PyTorch's rule: the last window must start inside the input or the left padding. */
    if (ceil_mode && o - 1 >= CNNC_CEIL_DIV(size + plo, s)) o--;
    *out = o;
    return CNNC_OK;
}

/* Taps i in [*lo, *hi) of output o whose position o*s - pad + i*d lies in [lo_bound, hi_bound). */
static inline void window_taps(int64_t o, int64_t s, int64_t d, int64_t k, int64_t pad,
                               int64_t lo_bound, int64_t hi_bound, int64_t *lo, int64_t *hi) {
    int64_t start = o * s - pad;
    int64_t a = lo_bound - start, b = hi_bound - start;
    int64_t l = a <= 0 ? 0 : (a + d - 1) / d;
    int64_t h = b <= 0 ? 0 : (b + d - 1) / d;
    if (h > k) h = k;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* oh, ow of p; validates every field and that the input and output element counts fit in int64. */
int cnnc_pool2d_output(const cnnc_pool2d_params *p, int64_t *oh, int64_t *ow) {
    if (!p || !oh || !ow) return CNNC_EINVAL;
    const cnnc_window2d *q = &p->win;
    if (q->n < 1 || q->c < 1 || !valid_layout(q->layout)) return CNNC_EINVAL;
    if (p->ceil_mode != 0 && p->ceil_mode != 1) return CNNC_EINVAL;
    int64_t h, w;
    int rc = axis_output(q->h, q->kh, q->sh, q->dh, q->pt, q->pb, p->ceil_mode, &h);
    if (rc != CNNC_OK) return rc;
    rc = axis_output(q->w, q->kw, q->sw, q->dw, q->pl, q->pr, p->ceil_mode, &w);
    if (rc != CNNC_OK) return rc;
    int64_t nc = cnnc_mul_ok(q->n, q->c);
    if (cnnc_mul_ok(cnnc_mul_ok(nc, q->h), q->w) < 0 || cnnc_mul_ok(cnnc_mul_ok(nc, h), w) < 0)
        return CNNC_EOVERFLOW;
    *oh = h;
    *ow = w;
    return CNNC_OK;
}

/* ---- max pooling ---------------------------------------------------------------------------------- */

typedef struct {
    const cnnc_window2d *q;
    int cip; /* count_include_pad (average pooling) */
    int64_t oh, ow;
    const float *x; /* forward: x; backward: dy */
    float *y;       /* forward: y; backward: dx */
    int64_t *am;    /* argmax (may be NULL) */
    uint8_t *tap;   /* tap indices (cnnc_max_pool2d_forward_taps) */
} window_job;

/* NHWC output row r = (n, oh) of x[N, H, W, C] -> y[N, OH, OW, C] (+ argmax[N, OH, OW, C]), taps
 * folded in scan order with max_takes: the first NaN wins, and so does the first of equal maxima. */
static void max_nhwc_row_exact(const cnnc_window2d *q, int64_t oh, int64_t ow, const float *restrict x,
                               float *restrict y, int64_t *restrict am, int64_t r) {
    const int64_t C = q->c;
    int64_t ni = r / oh, yo = r % oh, ilo, ihi;
    window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
    for (int64_t xo = 0; xo < ow; xo++) {
        int64_t jlo, jhi;
        window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
        float *restrict yr = y + (r * ow + xo) * C;
        int64_t *restrict ar = am ? am + (r * ow + xo) * C : NULL;
        int first = 1;
        for (int64_t i = ilo; i < ihi; i++) {
            int64_t ih = yo * q->sh - q->pt + i * q->dh;
            for (int64_t j = jlo; j < jhi; j++) {
                int64_t iw = xo * q->sw - q->pl + j * q->dw;
                int64_t base = ((ni * q->h + ih) * q->w + iw) * C;
                const float *restrict xr = x + base;
                if (first) {
                    memcpy(yr, xr, (size_t)C * sizeof(float));
                    if (ar)
                        for (int64_t ch = 0; ch < C; ch++) ar[ch] = base + ch;
                    first = 0;
                } else if (ar) {
                    for (int64_t ch = 0; ch < C; ch++) { /* branch-free select */
                        float v = xr[ch], bv = yr[ch];
                        int take = max_takes(v, bv);
                        yr[ch] = select_f(take, v, bv);
                        ar[ch] = select_i64(take, base + ch, ar[ch]);
                    }
                } else {
                    for (int64_t ch = 0; ch < C; ch++) {
                        float v = xr[ch], b = yr[ch];
                        yr[ch] = max_takes(v, b) ? v : b;
                    }
                }
            }
        }
        if (first) { /* the window holds padding only */
            for (int64_t ch = 0; ch < C; ch++) yr[ch] = -INFINITY;
            if (ar)
                for (int64_t ch = 0; ch < C; ch++) ar[ch] = -1;
        }
    }
}

/* The same row without argmax, with plain maxima (v > m ? v : m, which vectorises): equal to
 * max_takes' fold when no tap is NaN. Returns whether a tap was NaN (the row must then be redone). */
static int max_nhwc_row_fast(const cnnc_window2d *q, int64_t oh, int64_t ow, const float *restrict x,
                             float *restrict y, int64_t r) {
    const int64_t C = q->c, ni = r / oh, yo = r % oh;
    int64_t ilo, ihi;
    window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
    int nan = 0;
    for (int64_t xo = 0; xo < ow; xo++) {
        int64_t jlo, jhi;
        window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
        float *restrict yr = y + (r * ow + xo) * C;
        if (ilo >= ihi || jlo >= jhi) { /* the window holds padding only */
            for (int64_t ch = 0; ch < C; ch++) yr[ch] = -INFINITY;
            continue;
        }
        if (ihi - ilo == 2 && jhi - jlo == 2 && q->kh == 2 && q->kw == 2) { /* a whole 2x2 window */
            const int64_t ih = yo * q->sh - q->pt, iw = xo * q->sw - q->pl;
            const float *t = x + ((ni * q->h + ih) * q->w + iw) * C;
            nan |= pool2x2_fast(t, t + q->dw * C, t + q->dh * q->w * C, t + (q->dh * q->w + q->dw) * C, yr, C);
            continue;
        }
        int first = 1;
        for (int64_t i = ilo; i < ihi; i++) {
            const int64_t ih = yo * q->sh - q->pt + i * q->dh;
            for (int64_t j = jlo; j < jhi; j++) {
                const int64_t iw = xo * q->sw - q->pl + j * q->dw;
                const float *restrict xr = x + ((ni * q->h + ih) * q->w + iw) * C;
                int bad = 0;
                if (first) {
                    for (int64_t ch = 0; ch < C; ch++) {
                        const float v = xr[ch];
                        bad |= v != v;
                        yr[ch] = v;
                    }
                    first = 0;
                } else {
                    for (int64_t ch = 0; ch < C; ch++) {
                        const float v = xr[ch], m = yr[ch];
                        bad |= v != v;
                        yr[ch] = v > m ? v : m;
                    }
                }
                nan |= bad;
            }
        }
    }
    return nan;
}

/* NHWC x -> y (+ argmax); one task per output row (n, oh). */
static void max_fwd_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    for (int64_t r = begin; r < end; r++)
        if (jb->am || max_nhwc_row_fast(jb->q, jb->oh, jb->ow, jb->x, jb->y, r))
            max_nhwc_row_exact(jb->q, jb->oh, jb->ow, jb->x, jb->y, jb->am, r);
}

static void max_fwd_nhwc(const cnnc_ctx *ctx, const cnnc_window2d *q, int64_t oh, int64_t ow,
                         const float *restrict x, float *restrict y, int64_t *restrict am) {
    const int64_t rows = q->n * oh;
    window_job jb = {q, 0, oh, ow, x, y, am};
    const int nt = cnnc_threads(ctx, rows);
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), max_fwd_nhwc_task, &jb);
}

/* Outputs o in [*lo, *hi) (of n) whose tap lands inside [0, size): 0 <= o * s + off < size. */
static inline void tap_outputs(int64_t off, int64_t s, int64_t size, int64_t n, int64_t *lo,
                               int64_t *hi) {
    int64_t l = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t h = size - off <= 0 ? 0 : (size - off + s - 1) / s;
    if (h > n) h = n;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* NCHW planes [pl_begin, pl_end) of x[N, C, H, W] -> y[N, C, OH, OW] (+ argmax), any window. Each
 * output row is updated tap by tap in (kh, kw) order with the inner loop over ow, so every output still
 * sees its taps in scan order (ties, NaN) while the inner loop stays simple. */
static void max_nchw_generic(const cnnc_window2d *q, int64_t oh, int64_t ow, const float *restrict x,
                             float *restrict y, int64_t *restrict am, int64_t pl_begin, int64_t pl_end) {
    const int64_t hw = q->h * q->w, sw = q->sw;
    for (int64_t pl = pl_begin; pl < pl_end; pl++) {
        const float *restrict xp = x + pl * hw;
        for (int64_t yo = 0; yo < oh; yo++) {
            int64_t ilo, ihi;
            window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
            float *restrict yr = y + (pl * oh + yo) * ow;
            int64_t *restrict ar = am ? am + (pl * oh + yo) * ow : NULL;
            for (int64_t xo = 0; xo < ow; xo++) yr[xo] = -INFINITY;
            if (ar) { /* start at each window's first tap inside the input (-1 if none) */
                for (int64_t xo = 0; xo < ow; xo++) {
                    int64_t jlo, jhi;
                    window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
                    ar[xo] = ilo < ihi && jlo < jhi
                        ? pl * hw + (yo * q->sh - q->pt + ilo * q->dh) * q->w + xo * sw - q->pl + jlo * q->dw
                        : -1;
                }
            }
            for (int64_t i = ilo; i < ihi; i++) {
                const int64_t ih = yo * q->sh - q->pt + i * q->dh;
                const float *restrict xrow = xp + ih * q->w;
                for (int64_t j = 0; j < q->kw; j++) {
                    const int64_t off = j * q->dw - q->pl;
                    int64_t lo, hi;
                    tap_outputs(off, sw, q->w, ow, &lo, &hi);
                    if (ar) {
                        const int64_t base = pl * hw + ih * q->w + off;
                        for (int64_t xo = lo; xo < hi; xo++) {
                            float v = xrow[xo * sw + off], b = yr[xo];
                            int take = max_takes(v, b); /* -inf start: ar already holds tap 1 */
                            yr[xo] = select_f(take, v, b);
                            ar[xo] = select_i64(take, base + xo * sw, ar[xo]);
                        }
                    } else {
                        /* y starts at -inf: a first tap of -inf leaves the same value */
                        for (int64_t xo = lo; xo < hi; xo++) {
                            float v = xrow[xo * sw + off], b = yr[xo];
                            yr[xo] = max_takes(v, b) ? v : b;
                        }
                    }
                }
            }
        }
    }
}

/* ---- NCHW max pooling without argmax (inference) ----
 * One loop per output row computes its whole window per output column: the kh * kw taps, read at stride
 * sw from the window's rows, folded in (kh, kw) scan order with v > c ? v : c (maxps). That equals
 * max_takes (the first of equal maxima wins) unless a tap is NaN, so the loop also checks every tap for
 * NaN, and a plane that holds one is recomputed by max_nchw_generic (the first NaN in scan order wins).
 * The common windows (3x3 and 2x2, stride 1 or 2, undilated) get their own instance with the window a
 * constant: the tap loops unroll and the column loop vectorises. Outputs whose window sticks out of the
 * input (padding, ceil_mode) take a scalar loop that skips the outside taps. */

/* yr[k], k < n: the maximum of the taps x0[i * rs + k * sw + j * dw], i < kh, j < kw, in that order;
 * returns whether a tap is NaN. Inlined with a constant window. */
static inline int max_cols(const float *restrict x0, int64_t rs, int64_t kh, int64_t kw, int64_t sw,
                           int64_t dw, float *restrict yr, int64_t n) {
    int nan = 0;
    for (int64_t k = 0; k < n; k++) {
        const float *xk = x0 + k * sw;
        /* each row's taps in kw order, then the rows in kh order (short dependency chains); every
         * tap is checked for NaN, two per isunordered (an odd last one with itself) */
        float m = 0.0f, pend = 0.0f;
        int paired = 1, bad = 0;
        for (int64_t i = 0; i < kh; i++) {
            float r = 0.0f;
            for (int64_t j = 0; j < kw; j++) {
                const float v = xk[i * rs + j * dw];
                r = j == 0 || v > r ? v : r;
                if (paired)
                    pend = v;
                else
                    bad |= isunordered(pend, v);
                paired = !paired;
            }
            m = i == 0 || r > m ? r : m;
        }
        if (!paired) bad |= isunordered(pend, pend);
        nan |= bad;
        yr[k] = m;
    }
    return nan;
}

/* max_cols for one window: the common ones with it constant (each its own function: its vector loop
 * gets the registers to itself), any other at run time. */
typedef int (*max_cols_fn)(const cnnc_window2d *q, const float *x0, float *yr, int64_t n);
static int max_cols_3x3s2(const cnnc_window2d *q, const float *x0, float *yr, int64_t n) {
    return max_cols(x0, q->dh * q->w, 3, 3, 2, 1, yr, n);
}
static int max_cols_3x3s1(const cnnc_window2d *q, const float *x0, float *yr, int64_t n) {
    return max_cols(x0, q->dh * q->w, 3, 3, 1, 1, yr, n);
}
static int max_cols_2x2s2(const cnnc_window2d *q, const float *x0, float *yr, int64_t n) {
    return max_cols(x0, q->dh * q->w, 2, 2, 2, 1, yr, n);
}
static int max_cols_2x2s1(const cnnc_window2d *q, const float *x0, float *yr, int64_t n) {
    return max_cols(x0, q->dh * q->w, 2, 2, 1, 1, yr, n);
}
static int max_cols_any(const cnnc_window2d *q, const float *x0, float *yr, int64_t n) {
    return max_cols(x0, q->dh * q->w, q->kh, q->kw, q->sw, q->dw, yr, n);
}
static max_cols_fn max_cols_for(const cnnc_window2d *q) {
    if (q->dw != 1 || q->kh != q->kw || (q->sw != 1 && q->sw != 2)) return max_cols_any;
    if (q->kh == 3) return q->sw == 2 ? max_cols_3x3s2 : max_cols_3x3s1;
    if (q->kh == 2) return q->sw == 2 ? max_cols_2x2s2 : max_cols_2x2s1;
    return max_cols_any;
}

/* The maximum of the taps inside the input of the window with rows [ilo, ihi) (row i at top + i * dh)
 * and first column c0, -inf if none; *nan |= a tap is NaN. */
static float max_window(const cnnc_window2d *q, const float *restrict xp, int64_t top, int64_t ilo,
                        int64_t ihi, int64_t c0, int *nan) {
    float m = -INFINITY;
    for (int64_t i = ilo; i < ihi; i++) {
        const float *xr = xp + (top + i * q->dh) * q->w;
        for (int64_t j = 0; j < q->kw; j++) {
            const int64_t t = c0 + j * q->dw;
            if (t < 0 || t >= q->w) continue;
            const float v = xr[t];
            *nan |= v != v;
            m = v > m ? v : m;
        }
    }
    return m;
}

/* One plane, inference: 0, or 1 when a tap is NaN (yp is then incomplete). */
static int max_nchw_plane_fast(const cnnc_window2d *q, int64_t oh, int64_t ow, const float *restrict xp,
                               float *restrict yp) {
    /* columns [ka, kb): windows inside the row, 0 <= k * sw - pl and k * sw - pl + (kw - 1) * dw < w */
    const int64_t sw = q->sw, last = q->w - 1 - (q->kw - 1) * q->dw + q->pl; /* k * sw <= last */
    const int64_t kb = CNNC_MAX(0, CNNC_MIN(ow, last < 0 ? 0 : last / sw + 1));
    const int64_t ka = CNNC_MIN(CNNC_CEIL_DIV(q->pl, sw), kb);
    const max_cols_fn cols = max_cols_for(q);
    int nan = 0;
    for (int64_t yo = 0; yo < oh && !nan; yo++) {
        float *restrict yr = yp + yo * ow;
        const int64_t top = yo * q->sh - q->pt;
        int64_t ilo, ihi, a = 0, b = 0; /* [a, b): the columns done by cols */
        if (q->dh == 1) { /* window_taps without its divisions */
            ihi = CNNC_MAX(0, CNNC_MIN(q->kh, q->h - top));
            ilo = CNNC_MIN(CNNC_MAX(0, -top), ihi);
        } else {
            window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
        }
        if (ilo == 0 && ihi == q->kh && ka < kb) {
            a = ka;
            b = kb;
            nan |= cols(q, xp + top * q->w + ka * sw - q->pl, yr + ka, kb - ka);
        }
        for (int64_t k = 0; k < a; k++) yr[k] = max_window(q, xp, top, ilo, ihi, k * sw - q->pl, &nan);
        for (int64_t k = b; k < ow; k++) yr[k] = max_window(q, xp, top, ilo, ihi, k * sw - q->pl, &nan);
    }
    return nan;
}

/* NCHW planes [pl_begin, pl_end) of x -> y, no argmax. */
static void max_nchw_planes(const cnnc_window2d *q, int64_t oh, int64_t ow, const float *restrict x,
                            float *restrict y, int64_t pl_begin, int64_t pl_end) {
    const int64_t hw = q->h * q->w;
    for (int64_t pl = pl_begin; pl < pl_end; pl++)
        if (max_nchw_plane_fast(q, oh, ow, x + pl * hw, y + pl * oh * ow))
            max_nchw_generic(q, oh, ow, x, y, NULL, pl, pl + 1);
}

static void max_fwd_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    if (jb->am)
        max_nchw_generic(jb->q, jb->oh, jb->ow, jb->x, jb->y, jb->am, begin, end);
    else
        max_nchw_planes(jb->q, jb->oh, jb->ow, jb->x, jb->y, begin, end);
}

/* NCHW x[N, C, H, W] -> y[N, C, OH, OW] (+ argmax); tasks of whole (n, c) planes. */
static void max_fwd_nchw(const cnnc_ctx *ctx, const cnnc_window2d *q, int64_t oh, int64_t ow,
                         const float *restrict x, float *restrict y, int64_t *restrict am) {
    const int64_t planes = q->n * q->c;
    window_job jb = {q, 0, oh, ow, x, y, am};
    const int nt = cnnc_threads(ctx, planes);
    cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), max_fwd_nchw_task, &jb);
}

/* x as p->win describes -> y[N, OH, OW, C] / [N, C, OH, OW]; argmax (may be NULL) of y's shape. */
int cnnc_max_pool2d_forward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *x,
                            float *y, int64_t *argmax) {
    int64_t oh, ow;
    if (!ctx || !x || !y) return CNNC_EINVAL;
    int rc = cnnc_pool2d_output(p, &oh, &ow);
    if (rc != CNNC_OK) return rc;
    if (p->win.layout == CNNC_NHWC)
        max_fwd_nhwc(ctx, &p->win, oh, ow, x, y, argmax);
    else
        max_fwd_nchw(ctx, &p->win, oh, ow, x, y, argmax);
    return CNNC_OK;
}

typedef struct {
    int64_t per_out, per_in;
    const float *dy;
    const int64_t *am;
    float *dx;
    atomic_int bad; /* set by any task that met a stray index */
} scatter_job;

static void scatter_task(void *arg, int64_t begin, int64_t end, int slot) {
    scatter_job *jb = (scatter_job *)arg;
    (void)slot;
    const int64_t per_out = jb->per_out, per_in = jb->per_in;
    const float *restrict dy = jb->dy;
    const int64_t *restrict am = jb->am;
    float *restrict dx = jb->dx;
    int bad = 0;
    for (int64_t g = begin; g < end; g++) {
        const int64_t lo = g * per_in, hi = lo + per_in;
        memset(dx + lo, 0, (size_t)per_in * sizeof(float));
        const float *restrict d = dy + g * per_out;
        const int64_t *restrict a = am + g * per_out;
        for (int64_t i = 0; i < per_out; i++) {
            int64_t t = a[i];
            if (t >= lo && t < hi)
                dx[t] += d[i];
            else if (t != -1)
                bad = 1;
        }
    }
    if (bad) atomic_fetch_or_explicit(&jb->bad, 1, memory_order_relaxed);
}

/* Scatter dy[groups * per_out] into dx[groups * per_in]: group g's argmax must lie in its own block of
 * dx (or be -1). Groups are images or planes; one task per group. Returns CNNC_EINVAL on a stray index. */
static int scatter_groups(const cnnc_ctx *ctx, int64_t groups, int64_t per_out, int64_t per_in,
                          const float *restrict dy, const int64_t *restrict am, float *restrict dx) {
    scatter_job jb = {per_out, per_in, dy, am, dx, 0};
    const int nt = cnnc_threads(ctx, groups);
    cnnc_parallel_for(ctx, nt, groups, cnnc_grain(groups, nt, 1), scatter_task, &jb);
    return atomic_load_explicit(&jb.bad, memory_order_relaxed) ? CNNC_EINVAL : CNNC_OK;
}

/* dy, argmax of y's shape -> dx of x's shape: dx = 0, dx[argmax[i]] += dy[i]. */
int cnnc_max_pool2d_backward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *dy,
                             const int64_t *argmax, float *dx) {
    int64_t oh, ow;
    if (!ctx || !dy || !argmax || !dx) return CNNC_EINVAL;
    int rc = cnnc_pool2d_output(p, &oh, &ow);
    if (rc != CNNC_OK) return rc;
    const cnnc_window2d *q = &p->win;
    if (q->layout == CNNC_NHWC)
        return scatter_groups(ctx, q->n, oh * ow * q->c, q->h * q->w * q->c, dy, argmax, dx);
    return scatter_groups(ctx, q->n * q->c, oh * ow, q->h * q->w, dy, argmax, dx);
}

/* ---- max pooling with tap indices (training) ---------------------------------------------------------
 * What training keeps for the backward pass: for each output, the position of its chosen element in
 * its window, i * KW + j, as one byte (CNNC_POOL_NO_TAP for a window of padding only), instead of an
 * int64 index into x: an eighth of the memory, and the forward keeps the inference kernel's shape
 * (one vectorisable pass over the channels). The choice is the argmax's: taps folded in (kh, kw) order
 * with max_takes. The backward adds dy in output order per image (NHWC) or plane (NCHW), as
 * scatter_task does: the same bits as the argmax backward. */
#define TAP_CBLOCK 64

static void max_taps_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    const cnnc_window2d *q = jb->q;
    const int64_t oh = jb->oh, ow = jb->ow, C = q->c;
    uint8_t *taps = jb->tap;
    for (int64_t r = begin; r < end; r++) {
        const int64_t ni = r / oh, yo = r % oh;
        int64_t ilo, ihi;
        window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
        for (int64_t xo = 0; xo < ow; xo++) {
            int64_t jlo, jhi;
            window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
            float *restrict yr = jb->y + (r * ow + xo) * C;
            uint8_t *restrict tr = taps + (r * ow + xo) * C;
            if (ilo >= ihi || jlo >= jhi) { /* the window holds padding only */
                for (int64_t ch = 0; ch < C; ch++) yr[ch] = -INFINITY;
                memset(tr, CNNC_POOL_NO_TAP, (size_t)C);
                continue;
            }
            if (ihi - ilo == 2 && jhi - jlo == 2 && q->kh == 2 && q->kw == 2) { /* a whole 2x2 window */
                const int64_t ih = yo * q->sh - q->pt, iw = xo * q->sw - q->pl;
                const float *t0 = jb->x + ((ni * q->h + ih) * q->w + iw) * C, *t1 = t0 + q->dw * C;
                const float *t2 = t0 + q->dh * q->w * C, *t3 = t2 + q->dw * C;
                if (taps2x2_fast(t0, t1, t2, t3, yr, tr, C)) continue; /* else a NaN: the general loop */
            }
            for (int64_t c0 = 0; c0 < C; c0 += TAP_CBLOCK) {
                const int64_t cn = CNNC_MIN(TAP_CBLOCK, C - c0);
                float m[TAP_CBLOCK];
                int32_t t[TAP_CBLOCK];
                int first = 1;
                for (int64_t i = ilo; i < ihi; i++) {
                    const int64_t ih = yo * q->sh - q->pt + i * q->dh;
                    for (int64_t j = jlo; j < jhi; j++) {
                        const int64_t iw = xo * q->sw - q->pl + j * q->dw;
                        const float *restrict xr = jb->x + ((ni * q->h + ih) * q->w + iw) * C + c0;
                        const int32_t tap = (int32_t)(i * q->kw + j);
                        if (first) {
                            for (int64_t ch = 0; ch < cn; ch++) {
                                m[ch] = xr[ch];
                                t[ch] = tap;
                            }
                            first = 0;
                            continue;
                        }
                        for (int64_t ch = 0; ch < cn; ch++) { /* branch-free, vectorisable */
                            const float v = xr[ch], b = m[ch];
                            const int take = max_takes(v, b);
                            m[ch] = select_f(take, v, b);
                            t[ch] = select_i32(take, tap, t[ch]);
                        }
                    }
                }
                for (int64_t ch = 0; ch < cn; ch++) {
                    yr[c0 + ch] = m[ch];
                    tr[c0 + ch] = (uint8_t)t[ch];
                }
            }
        }
    }
}

static void max_taps_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    const cnnc_window2d *q = jb->q;
    const int64_t oh = jb->oh, ow = jb->ow, hw = q->h * q->w;
    uint8_t *taps = jb->tap;
    for (int64_t pl = begin; pl < end; pl++) {
        const float *restrict xp = jb->x + pl * hw;
        for (int64_t yo = 0; yo < oh; yo++) {
            int64_t ilo, ihi;
            window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
            for (int64_t xo = 0; xo < ow; xo++) {
                int64_t jlo, jhi;
                window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
                float m = -INFINITY;
                int32_t t = CNNC_POOL_NO_TAP;
                for (int64_t i = ilo; i < ihi; i++) {
                    const int64_t ih = yo * q->sh - q->pt + i * q->dh;
                    for (int64_t j = jlo; j < jhi; j++) {
                        const float v = xp[ih * q->w + xo * q->sw - q->pl + j * q->dw];
                        if (t == CNNC_POOL_NO_TAP || max_takes(v, m)) {
                            m = v;
                            t = (int32_t)(i * q->kw + j);
                        }
                    }
                }
                const int64_t o = (pl * oh + yo) * ow + xo;
                jb->y[o] = m;
                taps[o] = (uint8_t)t;
            }
        }
    }
}

int cnnc_max_pool2d_forward_taps(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *x, float *y,
                                 uint8_t *taps) {
    int64_t oh, ow;
    if (!ctx || !x || !y || !taps) return CNNC_EINVAL;
    int rc = cnnc_pool2d_output(p, &oh, &ow);
    if (rc != CNNC_OK) return rc;
    const cnnc_window2d *q = &p->win;
    if (q->kh * q->kw > CNNC_POOL_MAX_TAPS) return CNNC_EINVAL;
    window_job jb = {q, 0, oh, ow, x, y, NULL, taps};
    const int64_t rows = q->layout == CNNC_NHWC ? q->n * oh : q->n * q->c;
    const int nt = cnnc_threads(ctx, rows);
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1),
                      q->layout == CNNC_NHWC ? max_taps_nhwc_task : max_taps_nchw_task, &jb);
    return CNNC_OK;
}

typedef struct {
    const cnnc_window2d *q;
    int64_t oh, ow;
    const float *dy;
    const uint8_t *taps;
    float *dx;
    atomic_int bad; /* set by any task that met a tap outside its window or the input */
} taps_bwd_job;

/* The input element (offset within the image or plane, in units of C) of tap t of output (yo, xo);
 * -1 when t is not a tap of the window inside the input. off[t]: tap t's offset from the window's
 * origin (-1 past the window), so a window inside the input needs no division. */
static inline int64_t tap_at(const cnnc_window2d *q, const int64_t *off, int64_t yo, int64_t xo, int32_t t) {
    if (off[t] < 0) return -1;
    const int64_t ih0 = yo * q->sh - q->pt, iw0 = xo * q->sw - q->pl;
    if (ih0 >= 0 && ih0 + (q->kh - 1) * q->dh < q->h && iw0 >= 0 && iw0 + (q->kw - 1) * q->dw < q->w)
        return ih0 * q->w + iw0 + off[t];
    const int64_t ih = ih0 + (t / q->kw) * q->dh, iw = iw0 + (t % q->kw) * q->dw;
    return ih >= 0 && ih < q->h && iw >= 0 && iw < q->w ? ih * q->w + iw : -1;
}

/* NHWC windows that do not overlap and lie inside the input: each input element of a window takes dy
 * where it is the chosen tap, else 0 (+ 0, as dx = 0 then dx += dy gives), one vectorisable pass per
 * tap; the elements no window covers are zeroed. Returns 0 when a tap byte is invalid. */
static int taps_bwd_nhwc_disjoint(const cnnc_window2d *q, int64_t oh, int64_t ow, const float *restrict dy,
                                  const uint8_t *restrict tp, float *restrict dx) {
    const int64_t C = q->c, W = q->w, nt = q->kh * q->kw;
    int bad = 0;
    memset(dx, 0, (size_t)(q->h * W * C) * sizeof(float));
    for (int64_t yo = 0; yo < oh; yo++)
        for (int64_t xo = 0; xo < ow; xo++) {
            const int64_t o = (yo * ow + xo) * C;
            const float *restrict d = dy + o;
            const uint8_t *restrict t = tp + o;
            unsigned hi = 0; /* 1 + the largest tap other than CNNC_POOL_NO_TAP (255 + 1 wraps to 0) */
            for (int64_t ch = 0; ch < C; ch++) {
                const unsigned v = (uint8_t)(t[ch] + 1u);
                hi = v > hi ? v : hi;
            }
            bad |= hi > (unsigned)nt;
            for (int64_t i = 0; i < q->kh; i++)
                for (int64_t j = 0; j < q->kw; j++) {
                    const int32_t tap = (int32_t)(i * q->kw + j);
                    float *restrict dr = dx + ((yo * q->sh + i * q->dh) * W + xo * q->sw + j * q->dw) * C;
                    for (int64_t ch = 0; ch < C; ch++) dr[ch] = select_f(t[ch] == tap, 0.0f + d[ch], 0.0f);
                }
        }
    return !bad;
}

static void taps_bwd_task(void *arg, int64_t begin, int64_t end, int slot) {
    taps_bwd_job *jb = (taps_bwd_job *)arg;
    (void)slot;
    const cnnc_window2d *q = jb->q;
    const int64_t oh = jb->oh, ow = jb->ow, hw = q->h * q->w, nhwc = q->layout == CNNC_NHWC;
    const int64_t C = nhwc ? q->c : 1;
    int64_t off[256];
    for (int32_t t = 0; t < 256; t++)
        off[t] = t < q->kh * q->kw ? (t / q->kw) * q->dh * q->w + (t % q->kw) * q->dw : -1;
    /* no padding, windows disjoint: every window inside the input */
    const int disjoint = nhwc && q->pt == 0 && q->pl == 0 && (q->kh - 1) * q->dh + 1 <= q->sh &&
                         (q->kw - 1) * q->dw + 1 <= q->sw && (oh - 1) * q->sh + (q->kh - 1) * q->dh < q->h &&
                         (ow - 1) * q->sw + (q->kw - 1) * q->dw < q->w;
    int bad = 0;
    for (int64_t g = begin; g < end; g++) { /* an image (NHWC) or a plane (NCHW) */
        float *restrict dx = jb->dx + g * hw * C;
        const float *restrict dy = jb->dy + g * oh * ow * C;
        const uint8_t *restrict tp = jb->taps + g * oh * ow * C;
        if (disjoint) {
            bad |= !taps_bwd_nhwc_disjoint(q, oh, ow, dy, tp, dx);
            continue;
        }
        memset(dx, 0, (size_t)(hw * C) * sizeof(float));
        for (int64_t yo = 0; yo < oh; yo++)
            for (int64_t xo = 0; xo < ow; xo++) {
                const int64_t o = (yo * ow + xo) * C;
                for (int64_t ch = 0; ch < C; ch++) {
                    const int32_t t = tp[o + ch];
                    if (t == CNNC_POOL_NO_TAP) continue;
                    const int64_t at = tap_at(q, off, yo, xo, t);
                    if (at < 0) {
                        bad = 1;
                        continue;
                    }
                    dx[at * C + ch] += dy[o + ch];
                }
            }
    }
    if (bad) atomic_store_explicit(&jb->bad, 1, memory_order_relaxed);
}

int cnnc_max_pool2d_backward_taps(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *dy,
                                  const uint8_t *taps, float *dx) {
    int64_t oh, ow;
    if (!ctx || !dy || !taps || !dx) return CNNC_EINVAL;
    int rc = cnnc_pool2d_output(p, &oh, &ow);
    if (rc != CNNC_OK) return rc;
    const cnnc_window2d *q = &p->win;
    if (q->kh * q->kw > CNNC_POOL_MAX_TAPS) return CNNC_EINVAL;
    taps_bwd_job jb = {q, oh, ow, dy, taps, dx, 0};
    const int64_t groups = q->layout == CNNC_NHWC ? q->n : q->n * q->c;
    const int nt = cnnc_threads(ctx, groups);
    cnnc_parallel_for(ctx, nt, groups, cnnc_grain(groups, nt, 1), taps_bwd_task, &jb);
    return atomic_load_explicit(&jb.bad, memory_order_relaxed) ? CNNC_EINVAL : CNNC_OK;
}

/* ---- average pooling ------------------------------------------------------------------------------ */

/* Divisor of one window: taps inside the input, or (count_include_pad) inside the padded input. */
static inline int64_t avg_count(const cnnc_window2d *q, int cip, int64_t yo, int64_t xo,
                                int64_t ilo, int64_t ihi, int64_t jlo, int64_t jhi) {
    if (!cip) return (ihi - ilo) * (jhi - jlo);
    int64_t a, b, c, d;
    window_taps(yo, q->sh, q->dh, q->kh, q->pt, -q->pt, q->h + q->pb, &a, &b);
    window_taps(xo, q->sw, q->dw, q->kw, q->pl, -q->pl, q->w + q->pr, &c, &d);
    return (b - a) * (d - c);
}

/* NHWC x[N, H, W, C] -> y[N, OH, OW, C]; one task per output row (n, oh). */
static void avg_fwd_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    const cnnc_window2d *q = jb->q;
    const int cip = jb->cip;
    const int64_t oh = jb->oh, ow = jb->ow, C = q->c;
    const float *restrict x = jb->x;
    float *restrict y = jb->y;
    for (int64_t r = begin; r < end; r++) {
        int64_t ni = r / oh, yo = r % oh, ilo, ihi;
        window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
        for (int64_t xo = 0; xo < ow; xo++) {
            int64_t jlo, jhi;
            window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
            float *restrict yr = y + (r * ow + xo) * C;
            memset(yr, 0, (size_t)C * sizeof(float));
            for (int64_t i = ilo; i < ihi; i++) {
                int64_t ih = yo * q->sh - q->pt + i * q->dh;
                for (int64_t j = jlo; j < jhi; j++) {
                    int64_t iw = xo * q->sw - q->pl + j * q->dw;
                    const float *restrict xr = x + ((ni * q->h + ih) * q->w + iw) * C;
                    for (int64_t ch = 0; ch < C; ch++) yr[ch] += xr[ch];
                }
            }
            int64_t cnt = avg_count(q, cip, yo, xo, ilo, ihi, jlo, jhi);
            if (cnt > 0) {
                float fc = (float)cnt;
                for (int64_t ch = 0; ch < C; ch++) yr[ch] /= fc;
            }
        }
    }
}

static void avg_fwd_nhwc(const cnnc_ctx *ctx, const cnnc_window2d *q, int cip, int64_t oh,
                         int64_t ow, const float *restrict x, float *restrict y) {
    const int64_t rows = q->n * oh;
    window_job jb = {q, cip, oh, ow, x, y, NULL};
    const int nt = cnnc_threads(ctx, rows);
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), avg_fwd_nhwc_task, &jb);
}

/* NCHW x[N, C, H, W] -> y[N, C, OH, OW]; one task per (n, c) plane. Sums are formed tap by tap in
 * (kh, kw) order like the NHWC path, with the inner loop over ow. */
static void avg_fwd_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    const cnnc_window2d *q = jb->q;
    const int cip = jb->cip;
    const int64_t oh = jb->oh, ow = jb->ow, hw = q->h * q->w, sw = q->sw;
    const float *restrict x = jb->x;
    float *restrict y = jb->y;
    for (int64_t pl = begin; pl < end; pl++) {
        const float *restrict xp = x + pl * hw;
        for (int64_t yo = 0; yo < oh; yo++) {
            int64_t ilo, ihi;
            window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
            float *restrict yr = y + (pl * oh + yo) * ow;
            for (int64_t xo = 0; xo < ow; xo++) yr[xo] = 0.0f;
            for (int64_t i = ilo; i < ihi; i++) {
                const float *restrict xrow = xp + (yo * q->sh - q->pt + i * q->dh) * q->w;
                for (int64_t j = 0; j < q->kw; j++) {
                    const int64_t off = j * q->dw - q->pl;
                    int64_t lo, hi;
                    tap_outputs(off, sw, q->w, ow, &lo, &hi);
                    for (int64_t xo = lo; xo < hi; xo++) yr[xo] += xrow[xo * sw + off];
                }
            }
            for (int64_t xo = 0; xo < ow; xo++) {
                int64_t jlo, jhi;
                window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
                int64_t cnt = avg_count(q, cip, yo, xo, ilo, ihi, jlo, jhi);
                yr[xo] = cnt > 0 ? yr[xo] / (float)cnt : 0.0f;
            }
        }
    }
}

static void avg_fwd_nchw(const cnnc_ctx *ctx, const cnnc_window2d *q, int cip, int64_t oh,
                         int64_t ow, const float *restrict x, float *restrict y) {
    const int64_t planes = q->n * q->c;
    window_job jb = {q, cip, oh, ow, x, y, NULL};
    const int nt = cnnc_threads(ctx, planes);
    cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), avg_fwd_nchw_task, &jb);
}

/* x as p->win describes -> y[N, OH, OW, C] / [N, C, OH, OW]. */
int cnnc_avg_pool2d_forward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, int count_include_pad,
                            const float *x, float *y) {
    int64_t oh, ow;
    if (!ctx || !x || !y || (count_include_pad != 0 && count_include_pad != 1)) return CNNC_EINVAL;
    int rc = cnnc_pool2d_output(p, &oh, &ow);
    if (rc != CNNC_OK) return rc;
    if (p->win.layout == CNNC_NHWC)
        avg_fwd_nhwc(ctx, &p->win, count_include_pad, oh, ow, x, y);
    else
        avg_fwd_nchw(ctx, &p->win, count_include_pad, oh, ow, x, y);
    return CNNC_OK;
}

/* NHWC: one task per image. */
static void avg_bwd_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    const cnnc_window2d *q = jb->q;
    const int cip = jb->cip;
    const int64_t oh = jb->oh, ow = jb->ow, C = q->c, per_in = q->h * q->w * C;
    const float *dy = jb->x;
    float *dx = jb->y;
    for (int64_t ni = begin; ni < end; ni++) {
        float *restrict dxi = dx + ni * per_in;
        memset(dxi, 0, (size_t)per_in * sizeof(float));
        for (int64_t yo = 0; yo < oh; yo++) {
            int64_t ilo, ihi;
            window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
            for (int64_t xo = 0; xo < ow; xo++) {
                int64_t jlo, jhi;
                window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
                int64_t cnt = avg_count(q, cip, yo, xo, ilo, ihi, jlo, jhi);
                if (cnt <= 0) continue;
                const float fc = (float)cnt;
                const float *restrict dr = dy + ((ni * oh + yo) * ow + xo) * C;
                for (int64_t i = ilo; i < ihi; i++) {
                    int64_t ih = yo * q->sh - q->pt + i * q->dh;
                    for (int64_t j = jlo; j < jhi; j++) {
                        int64_t iw = xo * q->sw - q->pl + j * q->dw;
                        float *restrict xr = dxi + (ih * q->w + iw) * C;
                        for (int64_t ch = 0; ch < C; ch++) xr[ch] += dr[ch] / fc;
                    }
                }
            }
        }
    }
}

/* NCHW: one task per (n, c) plane. */
static void avg_bwd_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const window_job *jb = (const window_job *)arg;
    (void)slot;
    const cnnc_window2d *q = jb->q;
    const int cip = jb->cip;
    const int64_t oh = jb->oh, ow = jb->ow, hw = q->h * q->w;
    const float *dy = jb->x;
    float *dx = jb->y;
    for (int64_t pl = begin; pl < end; pl++) {
        float *restrict dxp = dx + pl * hw;
        memset(dxp, 0, (size_t)hw * sizeof(float));
        for (int64_t yo = 0; yo < oh; yo++) {
            int64_t ilo, ihi;
            window_taps(yo, q->sh, q->dh, q->kh, q->pt, 0, q->h, &ilo, &ihi);
            for (int64_t xo = 0; xo < ow; xo++) {
                int64_t jlo, jhi;
                window_taps(xo, q->sw, q->dw, q->kw, q->pl, 0, q->w, &jlo, &jhi);
                int64_t cnt = avg_count(q, cip, yo, xo, ilo, ihi, jlo, jhi);
                if (cnt <= 0) continue;
                const float g = dy[(pl * oh + yo) * ow + xo] / (float)cnt;
                for (int64_t i = ilo; i < ihi; i++) {
                    int64_t ih = yo * q->sh - q->pt + i * q->dh;
                    for (int64_t j = jlo; j < jhi; j++) dxp[ih * q->w + xo * q->sw - q->pl + j * q->dw] += g;
                }
            }
        }
    }
}

/* dy of y's shape -> dx of x's shape: each window spreads dy / count over its taps inside the input. */
int cnnc_avg_pool2d_backward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, int count_include_pad,
                             const float *dy, float *dx) {
    int64_t oh, ow;
    if (!ctx || !dy || !dx || (count_include_pad != 0 && count_include_pad != 1)) return CNNC_EINVAL;
    int rc = cnnc_pool2d_output(p, &oh, &ow);
    if (rc != CNNC_OK) return rc;
    const cnnc_window2d *q = &p->win;
    const int cip = count_include_pad;
    if (q->layout == CNNC_NHWC) {
        window_job jb = {q, cip, oh, ow, dy, dx, NULL};
        const int nt = cnnc_threads(ctx, q->n);
        cnnc_parallel_for(ctx, nt, q->n, 1, avg_bwd_nhwc_task, &jb);
    } else {
        const int64_t planes = q->n * q->c;
        window_job jb = {q, cip, oh, ow, dy, dx, NULL};
        const int nt = cnnc_threads(ctx, planes);
        cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), avg_bwd_nchw_task, &jb);
    }
    return CNNC_OK;
}

/* ---- global pooling ------------------------------------------------------------------------------- */

static int global_args(int64_t n, int64_t h, int64_t w, int64_t c, int layout) {
    if (n < 1 || h < 1 || w < 1 || c < 1 || !valid_layout(layout)) return CNNC_EINVAL;
    if (cnnc_mul_ok(cnnc_mul_ok(cnnc_mul_ok(n, h), w), c) < 0) return CNNC_EOVERFLOW;
    return CNNC_OK;
}

typedef struct {
    int64_t hw, c, nb; /* nb: channel blocks per image (NHWC) */
    float fhw;         /* (float)hw (average backward) */
    const float *x;    /* forward: x; backward: dy */
    float *y;          /* forward: y; backward: dx */
    int64_t *argmax;
} global_job;

/* NHWC: one task per (n, channel block). */
static void global_avg_fwd_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const global_job *jb = (const global_job *)arg;
    (void)slot;
    const int64_t hw = jb->hw, c = jb->c, nb = jb->nb;
    const float *x = jb->x;
    float *y = jb->y;
    for (int64_t t = begin; t < end; t++) {
        int64_t ni = t / nb, c0 = (t % nb) * POOL_CBLOCK, cn = CNNC_MIN(POOL_CBLOCK, c - c0);
        double acc[POOL_CBLOCK] = {0};
        const float *restrict xi = x + ni * hw * c + c0;
        for (int64_t p = 0; p < hw; p++)
            for (int64_t j = 0; j < cn; j++) acc[j] += xi[p * c + j];
        for (int64_t j = 0; j < cn; j++) y[ni * c + c0 + j] = (float)(acc[j] / (double)hw);
    }
}

/* NCHW: one task per (n, c) plane. */
static void global_avg_fwd_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const global_job *jb = (const global_job *)arg;
    (void)slot;
    const int64_t hw = jb->hw;
    const float *x = jb->x;
    float *y = jb->y;
    for (int64_t pl = begin; pl < end; pl++) {
        const float *restrict xp = x + pl * hw;
        double acc = 0.0;
        for (int64_t p = 0; p < hw; p++) acc += xp[p];
        y[pl] = (float)(acc / (double)hw);
    }
}

/* x[N, H, W, C] or [N, C, H, W] -> y[N, C]: mean over H*W in a double accumulator (fixed order). */
int cnnc_global_avg_pool2d_forward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                   int layout, const float *x, float *y) {
    if (!ctx || !x || !y) return CNNC_EINVAL;
    int rc = global_args(n, h, w, c, layout);
    if (rc != CNNC_OK) return rc;
    const int64_t hw = h * w;
    if (layout == CNNC_NHWC) {
        const int64_t nb = CNNC_CEIL_DIV(c, POOL_CBLOCK), tasks = n * nb;
        global_job jb = {hw, c, nb, 0.0f, x, y, NULL};
        const int nt = cnnc_threads(ctx, tasks);
        cnnc_parallel_for(ctx, nt, tasks, cnnc_grain(tasks, nt, 1), global_avg_fwd_nhwc_task, &jb);
    } else {
        const int64_t planes = n * c;
        global_job jb = {hw, c, 0, 0.0f, x, y, NULL};
        const int nt = cnnc_threads(ctx, planes);
        cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), global_avg_fwd_nchw_task, &jb);
    }
    return CNNC_OK;
}

/* NHWC: one task per (n, h, w) row of C values. */
static void global_avg_bwd_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const global_job *jb = (const global_job *)arg;
    (void)slot;
    const int64_t hw = jb->hw, c = jb->c;
    const float fhw = jb->fhw;
    const float *dy = jb->x;
    float *dx = jb->y;
    for (int64_t r = begin; r < end; r++) {
        const float *restrict d = dy + (r / hw) * c;
        float *restrict o = dx + r * c;
        for (int64_t j = 0; j < c; j++) o[j] = d[j] / fhw;
    }
}

/* NCHW: one task per (n, c) plane. */
static void global_avg_bwd_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const global_job *jb = (const global_job *)arg;
    (void)slot;
    const int64_t hw = jb->hw;
    const float fhw = jb->fhw;
    const float *dy = jb->x;
    float *dx = jb->y;
    for (int64_t pl = begin; pl < end; pl++) {
        const float g = dy[pl] / fhw;
        float *restrict o = dx + pl * hw;
        for (int64_t p = 0; p < hw; p++) o[p] = g;
    }
}

/* dy[N, C] -> dx[N, H, W, C] or [N, C, H, W] = dy / (H*W) broadcast. */
int cnnc_global_avg_pool2d_backward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                    int layout, const float *dy, float *dx) {
    if (!ctx || !dy || !dx) return CNNC_EINVAL;
    int rc = global_args(n, h, w, c, layout);
    if (rc != CNNC_OK) return rc;
    const int64_t hw = h * w;
    const float fhw = (float)hw;
    if (layout == CNNC_NHWC) {
        const int64_t rows = n * hw;
        global_job jb = {hw, c, 0, fhw, dy, dx, NULL};
        const int nt = cnnc_threads(ctx, rows);
        cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), global_avg_bwd_nhwc_task, &jb);
    } else {
        const int64_t planes = n * c;
        global_job jb = {hw, c, 0, fhw, dy, dx, NULL};
        const int nt = cnnc_threads(ctx, planes);
        cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), global_avg_bwd_nchw_task, &jb);
    }
    return CNNC_OK;
}

/* NHWC: one task per (n, channel block). */
static void global_max_fwd_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const global_job *jb = (const global_job *)arg;
    (void)slot;
    const int64_t hw = jb->hw, c = jb->c, nb = jb->nb;
    const float *x = jb->x;
    float *y = jb->y;
    int64_t *argmax = jb->argmax;
    for (int64_t t = begin; t < end; t++) {
        int64_t ni = t / nb, c0 = (t % nb) * POOL_CBLOCK, cn = CNNC_MIN(POOL_CBLOCK, c - c0);
        const int64_t base = ni * hw * c + c0;
        const float *restrict xi = x + base;
        float *restrict yr = y + ni * c + c0;
        int64_t *restrict ar = argmax ? argmax + ni * c + c0 : NULL;
        for (int64_t j = 0; j < cn; j++) yr[j] = xi[j];
        if (ar) {
            for (int64_t j = 0; j < cn; j++) ar[j] = base + j;
            for (int64_t p = 1; p < hw; p++)
                for (int64_t j = 0; j < cn; j++)
                    if (max_takes(xi[p * c + j], yr[j])) {
                        yr[j] = xi[p * c + j];
                        ar[j] = base + p * c + j;
                    }
        } else {
            for (int64_t p = 1; p < hw; p++)
                for (int64_t j = 0; j < cn; j++) {
                    float v = xi[p * c + j], b = yr[j];
                    yr[j] = max_takes(v, b) ? v : b;
                }
        }
    }
}

/* NCHW: one task per (n, c) plane. */
static void global_max_fwd_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const global_job *jb = (const global_job *)arg;
    (void)slot;
    const int64_t hw = jb->hw;
    const float *x = jb->x;
    float *y = jb->y;
    int64_t *argmax = jb->argmax;
    for (int64_t pl = begin; pl < end; pl++) {
        const float *restrict xp = x + pl * hw;
        float best = xp[0];
        int64_t at = 0;
        for (int64_t p = 1; p < hw; p++)
            if (max_takes(xp[p], best)) {
                best = xp[p];
                at = p;
            }
        y[pl] = best;
        if (argmax) argmax[pl] = pl * hw + at;
    }
}

/* x[N, H, W, C] or [N, C, H, W] -> y[N, C] (+ argmax[N, C], flat index into x); NaN propagates,
 * ties pick the first element in (h, w) order. */
int cnnc_global_max_pool2d_forward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                   int layout, const float *x, float *y, int64_t *argmax) {
    if (!ctx || !x || !y) return CNNC_EINVAL;
    int rc = global_args(n, h, w, c, layout);
    if (rc != CNNC_OK) return rc;
    const int64_t hw = h * w;
    if (layout == CNNC_NHWC) {
        const int64_t nb = CNNC_CEIL_DIV(c, POOL_CBLOCK), tasks = n * nb;
        global_job jb = {hw, c, nb, 0.0f, x, y, argmax};
        const int nt = cnnc_threads(ctx, tasks);
        cnnc_parallel_for(ctx, nt, tasks, cnnc_grain(tasks, nt, 1), global_max_fwd_nhwc_task, &jb);
    } else {
        const int64_t planes = n * c;
        global_job jb = {hw, c, 0, 0.0f, x, y, argmax};
        const int nt = cnnc_threads(ctx, planes);
        cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), global_max_fwd_nchw_task, &jb);
    }
    return CNNC_OK;
}

/* dy[N, C], argmax[N, C] -> dx (n*h*w*c elements, either layout): dx = 0, dx[argmax[i]] += dy[i]. */
int cnnc_global_max_pool2d_backward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                    const float *dy, const int64_t *argmax, float *dx) {
    if (!ctx || !dy || !argmax || !dx) return CNNC_EINVAL;
    int rc = global_args(n, h, w, c, CNNC_NHWC);
    if (rc != CNNC_OK) return rc;
    /* Whatever the layout, output (n, c) reads only image n's block of x. */
    return scatter_groups(ctx, n, c, h * w * c, dy, argmax, dx);
}

/* ---- max pooling across depth --------------------------------------------------------------------- */

static int depth_args(int64_t rows, int64_t c, int64_t k, int64_t s, int64_t *oc) {
    if (rows < 1 || c < 1 || k < 1 || s < 1 || k > c) return CNNC_EINVAL;
    if (cnnc_mul_ok(rows, c) < 0) return CNNC_EOVERFLOW;
    *oc = (c - k) / s + 1;
    return CNNC_OK;
}

typedef struct {
    int64_t c, k, s, oc;
    const float *x;
    float *y;
    int64_t *argmax;
} depth_job;

/* One task per row. */
static void max_depth_fwd_task(void *arg, int64_t begin, int64_t end, int slot) {
    const depth_job *jb = (const depth_job *)arg;
    (void)slot;
    const int64_t c = jb->c, k = jb->k, s = jb->s, oc = jb->oc;
    const float *x = jb->x;
    float *y = jb->y;
    int64_t *argmax = jb->argmax;
    for (int64_t r = begin; r < end; r++) {
        const float *restrict xr = x + r * c;
        for (int64_t o = 0; o < oc; o++) {
            int64_t at = o * s;
            float best = xr[at];
            for (int64_t i = o * s + 1; i < o * s + k; i++)
                if (max_takes(xr[i], best)) {
                    best = xr[i];
                    at = i;
                }
            y[r * oc + o] = best;
            if (argmax) argmax[r * oc + o] = r * c + at;
        }
    }
}

/* x[rows, C] -> y[rows, OC] (+ argmax[rows, OC]), OC = (C - k) / s + 1. */
int cnnc_max_pool_depth_forward(const cnnc_ctx *ctx, int64_t rows, int64_t c, int64_t k, int64_t s,
                                const float *x, float *y, int64_t *argmax) {
    int64_t oc;
    if (!ctx || !x || !y) return CNNC_EINVAL;
    int rc = depth_args(rows, c, k, s, &oc);
    if (rc != CNNC_OK) return rc;
    depth_job jb = {c, k, s, oc, x, y, argmax};
    const int nt = cnnc_threads(ctx, rows);
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), max_depth_fwd_task, &jb);
    return CNNC_OK;
}

/* dy[rows, OC], argmax[rows, OC] -> dx[rows, C]: dx = 0, dx[argmax[i]] += dy[i]. */
int cnnc_max_pool_depth_backward(const cnnc_ctx *ctx, int64_t rows, int64_t c, int64_t k, int64_t s,
                                 const float *dy, const int64_t *argmax, float *dx) {
    int64_t oc;
    if (!ctx || !dy || !argmax || !dx) return CNNC_EINVAL;
    int rc = depth_args(rows, c, k, s, &oc);
    if (rc != CNNC_OK) return rc;
    return scatter_groups(ctx, rows, oc, c, dy, argmax, dx);
}
