/* conv_depthwise.c - depthwise convolutions (one input channel per group: groups = C, Cout = C * m)
 * computed directly, without the column matrix.
 *
 * Through im2col + GEMM a depthwise convolution is C products of [pixels, KH*KW] by [KH*KW, m]: a
 * column matrix written and packed for GEMMs with one to a few columns. Here each output element is its
 * KH*KW-term sum, read straight from x:
 * - NHWC: an output row at a time, channels in vectors (arch/conv_depthwise.h's dwc_row), the taps that
 *   fall in the input (separable: the kernel rows whose input row exists times, per pixel, the kernel
 *   columns whose input column does) in (kh, kw) order. The data gradient is the same kernel over an
 *   input row, reading dy: input pixel (ih, iw) gathers the taps (kh, kw) of the outputs whose windows
 *   read it.
 * - NCHW (forward): a plane at a time, from a zero-padded copy of the input plane split into sh x sw
 *   phases (rows and columns by their remainder modulo the strides), in which every tap reads a
 *   contiguous run: the plane's outputs, rows laid end to end at the phases' row length (a few more
 *   columns than the output's, computed and dropped), are one sum of KH*KW such runs
 *   (dwc_plane_row), in vectors across row ends.
 * - The weight gradient (NHWC): dw[kh, kw] = the sum, over the output pixels whose window's (kh, kw)
 *   tap falls in the input, of x there times dy (dwc_wgrad_span), db in the same pass.
 * Bias, activation and a residual are cnnc_gemm_epilogue_block's, applied to each row (plane) while it
 * is in cache: the arithmetic of the GEMM paths' epilogue.
 *
 * Non-finite values propagate as through im2col, where padding is read as zeros and multiplied: the
 * forward marks NaN the outputs whose window has a padded tap with a non-finite weight (0 * inf); the
 * weight gradient, when a result comes out non-finite, marks NaN each dw[kh, kw, c] whose padded tap
 * meets a non-finite dy. The data gradient, like col2im, only ever takes the taps inside the input.
 *
 * Determinism: rows (planes) are independent tasks; the weight gradient's N*OH output rows are split
 * into DWC_CHUNKS fixed chunks (a function of the shape), each summed in order into its own slot by one
 * thread, and the slots are added in chunk order. Results do not depend on the thread count. */
#include "internal.h"

#include <math.h>

#define DWC_MAX_K 16  /* kernel height and width, and strides, at most */
#define DWC_CHUNKS 32 /* fixed chunks of output rows of the weight gradient */

typedef struct {
    int64_t oh, ow, m; /* output size; output channels per input channel */
} dwc_shape;

static int dwc_shape_of(const cnnc_conv2d_params *p, dwc_shape *s) {
    const cnnc_window2d *w = &p->win;
    if ((w->layout != CNNC_NHWC && w->layout != CNNC_NCHW) || p->groups < 2 || p->groups != w->c ||
        p->cout < 1 || p->cout % p->groups)
        return 0;
    if (w->kh < 1 || w->kw < 1 || w->kh > DWC_MAX_K || w->kw > DWC_MAX_K || w->sh > DWC_MAX_K || w->sw > DWC_MAX_K)
        return 0;
    if (cnnc_window2d_output(w, &s->oh, &s->ow) != CNNC_OK) return 0;
    s->m = p->cout / p->groups;
    /* every size formed below: tensors, per-thread padded planes, the weight gradient's slots */
    const int64_t hp = (s->oh - 1) * w->sh + (w->kh - 1) * w->dh + 1, wp = (s->ow - 1) * w->sw + (w->kw - 1) * w->dw + 1;
    if (cnnc_mul_ok(cnnc_mul_ok(cnnc_mul_ok(w->n, CNNC_MAX(w->h, s->oh)), CNNC_MAX(w->w, s->ow)), p->cout) < 0 ||
        cnnc_mul_ok(cnnc_mul_ok(hp + w->sh, wp + w->sw), 16 * CNNC_POOL_MAX_THREADS) < 0 ||
        cnnc_mul_ok(cnnc_mul_ok(DWC_CHUNKS * 8, DWC_MAX_K * DWC_MAX_K + 1), p->cout) < 0)
        return 0;
    return 1;
}

int cnnc_conv_depthwise_applies(const cnnc_conv2d_params *p) {
    dwc_shape s;
    return p && dwc_shape_of(p, &s);
}

int cnnc_conv_depthwise_grad_applies(const cnnc_conv2d_params *p) {
    return cnnc_conv_depthwise_applies(p) && p->win.layout == CNNC_NHWC;
}

static int64_t align_up(int64_t n) { return CNNC_ROUND_UP(n, CNNC_ALIGN); }

/* A table of column taps for n pixels of KW taps at most: counts, then the two offset arrays. */
static int64_t cols_bytes(int64_t n, int64_t kw) {
    return align_up(n * (int64_t)sizeof(int32_t)) + 2 * align_up(n * kw * (int64_t)sizeof(int64_t));
}

typedef struct {
    int32_t *cn;
    int64_t *cx, *cw;
} dwc_cols;

static dwc_cols cols_at(void *base, int64_t n, int64_t kw) {
    char *b = (char *)base;
    dwc_cols c = {(int32_t *)b, NULL, NULL};
    b += align_up(n * (int64_t)sizeof(int32_t));
    c.cx = (int64_t *)b;
    c.cw = (int64_t *)(b + align_up(n * kw * (int64_t)sizeof(int64_t)));
    return c;
}

/* The forward's column taps: output column ow reads input column ow * sw - pl + kw * dw. */
static void forward_cols(const cnnc_conv2d_params *p, const dwc_shape *s, dwc_cols c) {
    const cnnc_window2d *w = &p->win;
    for (int64_t ow = 0; ow < s->ow; ++ow) {
        int32_t j = 0;
        for (int64_t kw = 0; kw < w->kw; ++kw) {
            const int64_t iw = ow * w->sw - w->pl + kw * w->dw;
            if (iw < 0 || iw >= w->w) continue;
            c.cx[ow * w->kw + j] = iw * w->c;
            c.cw[ow * w->kw + j] = kw * p->cout;
            ++j;
        }
        c.cn[ow] = j;
    }
}

/* The data gradient's column taps: input column iw is read by output column (iw + pl - kw * dw) / sw
 * when that divides exactly and lies in the output. */
static void data_grad_cols(const cnnc_conv2d_params *p, const dwc_shape *s, dwc_cols c) {
    const cnnc_window2d *w = &p->win;
    for (int64_t iw = 0; iw < w->w; ++iw) {
        int32_t j = 0;
        for (int64_t kw = 0; kw < w->kw; ++kw) {
            const int64_t t = iw + w->pl - kw * w->dw;
            if (t < 0 || t % w->sw || t / w->sw >= s->ow) continue;
            c.cx[iw * w->kw + j] = (t / w->sw) * p->cout;
            c.cw[iw * w->kw + j] = kw * p->cout;
            ++j;
        }
        c.cn[iw] = j;
    }
}

/* NCHW: one thread's floats: the padded input plane in sh x sw phases of hq x wq, then the outputs at
 * row length wq. */
static int64_t plane_floats(const cnnc_conv2d_params *p, const dwc_shape *s, int64_t *hq, int64_t *wq) {
    const cnnc_window2d *w = &p->win;
    *hq = CNNC_CEIL_DIV((s->oh - 1) * w->sh + (w->kh - 1) * w->dh + 1, w->sh);
    *wq = CNNC_CEIL_DIV((s->ow - 1) * w->sw + (w->kw - 1) * w->dw + 1, w->sw);
    return CNNC_ROUND_UP(w->sh * w->sw * *hq * *wq, 16) + s->oh * *wq;
}

int64_t cnnc_conv_depthwise_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    dwc_shape s;
    if (!ctx || !p || !dwc_shape_of(p, &s)) return -1;
    if (p->win.layout == CNNC_NHWC) return CNNC_ALIGN + cols_bytes(s.ow, p->win.kw);
    int64_t hq, wq;
    const int64_t slot = align_up(plane_floats(p, &s, &hq, &wq) * (int64_t)sizeof(float));
    return CNNC_ALIGN + slot * cnnc_threads(ctx, p->win.n * p->cout);
}

/* ---- forward ------------------------------------------------------------------------------------ */

typedef struct {
    const cnnc_conv2d_params *p;
    const dwc_shape *s;
    cnnc_dwc_fns f;
    const float *x, *w, *b, *res;
    cnnc_act act;
    float *y;
    dwc_cols cols;       /* NHWC */
    int wbad;            /* a weight is not finite */
    char *planes;        /* NCHW: per-slot padded planes */
    int64_t plane_slot, hq, wq;
} fwd_job;

/* The outputs of row oh whose windows have a padded tap with a non-finite weight: NaN (0 * inf), as
 * the column matrix's zeros give them. */
static void mark_padded_nan(const fwd_job *j, int64_t oh, float *yrow) {
    const cnnc_conv2d_params *p = j->p;
    const cnnc_window2d *w = &p->win;
    const int64_t CO = p->cout;
    for (int64_t ow = 0; ow < j->s->ow; ++ow)
        for (int64_t kh = 0; kh < w->kh; ++kh) {
            const int64_t ih = oh * w->sh - w->pt + kh * w->dh;
            for (int64_t kw = 0; kw < w->kw; ++kw) {
                const int64_t iw = ow * w->sw - w->pl + kw * w->dw;
                if (ih >= 0 && ih < w->h && iw >= 0 && iw < w->w) continue;
                const float *wt = j->w + (kh * w->kw + kw) * CO;
                for (int64_t co = 0; co < CO; ++co)
                    if (!isfinite(wt[co])) yrow[ow * CO + co] = NAN;
            }
        }
}

/* The row taps of row r of image n: the kernel rows kh, in order, with their row of src and offset into w.
 * Forward (grad 0): output row r reads input row r * sh - pt + kh * dh of x when it lies in [0, H). Data
 * gradient (grad 1): input row r is read by output row (r + pt - kh * dh) / sh of dy when that divides
 * exactly and lies in [0, OH). Returns their count. */
static int64_t row_taps(const cnnc_conv2d_params *p, const dwc_shape *s, int grad, int64_t n, int64_t r,
                        const float *src, const float **xr, int64_t *wr) {
    const cnnc_window2d *w = &p->win;
    const int64_t rows = grad ? s->oh : w->h, len = grad ? s->ow * p->cout : w->w * w->c;
    int64_t nr = 0;
    for (int64_t kh = 0; kh < w->kh; ++kh) {
        int64_t t = grad ? r + w->pt - kh * w->dh : r * w->sh - w->pt + kh * w->dh;
        if (grad) {
            if (t < 0 || t % w->sh) continue;
            t /= w->sh;
        }
        if (t < 0 || t >= rows) continue;
        xr[nr] = src + (n * rows + t) * len;
        wr[nr++] = kh * w->kw * p->cout;
    }
    return nr;
}

static void nhwc_rows_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const fwd_job *j = (const fwd_job *)arg;
    const cnnc_conv2d_params *p = j->p;
    const cnnc_window2d *w = &p->win;
    const dwc_shape *s = j->s;
    const int64_t C = w->c, CO = p->cout, m = s->m;
    (void)slot;
    for (int64_t row = lo; row < hi; ++row) {
        const int64_t n = row / s->oh, oh = row % s->oh;
        const float *xr[DWC_MAX_K];
        int64_t wr[DWC_MAX_K];
        const int64_t nr = row_taps(p, s, 0, n, oh, j->x, xr, wr);
        const cnnc_dwc_taps t = {xr, wr, nr, j->cols.cn, j->cols.cx, j->cols.cw, w->kw};
        float *yrow = j->y + row * s->ow * CO;
        if (m == 1) {
            j->f.row(&t, s->ow, j->w, C, yrow);
        } else { /* output channel c * m + i reads input channel c */
            for (int64_t ow = 0; ow < s->ow; ++ow) {
                float *restrict yi = yrow + ow * CO;
                for (int64_t co = 0; co < CO; ++co) yi[co] = 0.0f;
                for (int64_t r = 0; r < nr; ++r)
                    for (int32_t q = 0; q < t.cn[ow]; ++q) {
                        const float *restrict xp = xr[r] + t.cx[ow * w->kw + q];
                        const float *restrict wp = j->w + wr[r] + t.cw[ow * w->kw + q];
                        for (int64_t c = 0; c < C; ++c)
                            for (int64_t i = 0; i < m; ++i) yi[c * m + i] += xp[c] * wp[c * m + i];
                    }
            }
        }
        if (j->wbad) mark_padded_nan(j, oh, yrow);
        const cnnc_gemm_epilogue ep = {j->b, 0, j->act, j->res ? j->res + row * s->ow * CO : NULL, CO};
        if (cnnc_epilogue_active(&ep)) cnnc_gemm_epilogue_block(&ep, yrow, CO, 0, s->ow, 0, CO);
    }
}

/* The zero-padded plane of x's channel in phases: phase (e, f), row r, column q holds input
 * (r * sh + e - pt, q * sw + f - pl). */
static void pad_plane(const cnnc_window2d *w, int64_t hq, int64_t wq, const float *xin, float *dst) {
    const int64_t sh = w->sh, sw = w->sw;
    int64_t q0[DWC_MAX_K], q1[DWC_MAX_K], x0[DWC_MAX_K];
    for (int64_t f = 0; f < sw; ++f) { /* phase f's columns q0 <= q < q1 lie in the input */
        const int64_t a = w->pl - f, last = w->w - 1 + w->pl - f;
        q0[f] = CNNC_MIN(wq, a > 0 ? CNNC_CEIL_DIV(a, sw) : 0);
        q1[f] = last < 0 ? q0[f] : CNNC_MAX(q0[f], CNNC_MIN(wq, last / sw + 1));
        x0[f] = q0[f] * sw + f - w->pl;
    }
    /* plain loops throughout: rows are short, and a library call per run costs more than the copy */
    for (int64_t e = 0; e < sh; ++e) /* rows of padding */
        for (int64_t r = 0; r < hq; ++r) {
            const int64_t ih = r * sh + e - w->pt;
            if (ih >= 0 && ih < w->h) continue;
            for (int64_t f = 0; f < sw; ++f) {
                float *restrict d = dst + ((e * sw + f) * hq + r) * wq;
                for (int64_t q = 0; q < wq; ++q) d[q] = 0.0f;
            }
        }
    for (int64_t ih = 0; ih < w->h && ih + w->pt < sh * hq; ++ih) { /* input rows, in memory order */
        const int64_t e = (ih + w->pt) % sh, r = (ih + w->pt) / sh;
        for (int64_t f = 0; f < sw; ++f) {
            float *restrict d = dst + ((e * sw + f) * hq + r) * wq;
            const int64_t a = q0[f], n = q1[f] - a;
            const float *restrict xr = xin + ih * w->w + (n > 0 ? x0[f] : 0); /* x0 is in the row when n > 0 */
            for (int64_t q = 0; q < a; ++q) d[q] = 0.0f;
            if (sw == 1)
                for (int64_t q = 0; q < n; ++q) d[a + q] = xr[q];
            else if (sw == 2)
                for (int64_t q = 0; q < n; ++q) d[a + q] = xr[2 * q];
            else
                for (int64_t q = 0; q < n; ++q) d[a + q] = xr[q * sw];
            for (int64_t q = a + n; q < wq; ++q) d[q] = 0.0f;
        }
    }
}

static void nchw_planes_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const fwd_job *j = (const fwd_job *)arg;
    const cnnc_conv2d_params *p = j->p;
    const cnnc_window2d *w = &p->win;
    const dwc_shape *s = j->s;
    const int64_t CO = p->cout, ohw = s->oh * s->ow, ntaps = w->kh * w->kw;
    const int64_t hq = j->hq, wq = j->wq;
    float *pad = (float *)(j->planes + slot * j->plane_slot);
    float *wide = pad + CNNC_ROUND_UP(w->sh * w->sw * hq * wq, 16);
    const float *src[DWC_MAX_K * DWC_MAX_K];
    for (int64_t kh = 0; kh < w->kh; ++kh) /* tap (kh, kw) of output (r, i) is its phase's (r + a, i + b) */
        for (int64_t kw = 0; kw < w->kw; ++kw) {
            const int64_t rr = kh * w->dh, cc = kw * w->dw;
            src[kh * w->kw + kw] = pad + (((rr % w->sh) * w->sw + cc % w->sw) * hq + rr / w->sh) * wq + cc / w->sw;
        }
    for (int64_t pl = lo; pl < hi; ++pl) {
        const int64_t n = pl / CO, co = pl % CO;
        pad_plane(w, hq, wq, j->x + (n * w->c + co / s->m) * w->h * w->w, pad);
        float *yp = j->y + pl * ohw;
        j->f.plane_row(ntaps, src, j->w + co * ntaps, (s->oh - 1) * wq + s->ow, wide);
        for (int64_t oh = 0; oh < s->oh; ++oh) {
            float *restrict yr = yp + oh * s->ow;
            const float *restrict wr = wide + oh * wq;
            for (int64_t i = 0; i < s->ow; ++i) yr[i] = wr[i];
        }
        const cnnc_gemm_epilogue ep = {j->b, 1, j->act, j->res ? j->res + n * CO * ohw : NULL, ohw};
        if (cnnc_epilogue_active(&ep)) cnnc_gemm_epilogue_block(&ep, j->y + n * CO * ohw, ohw, co, 1, 0, ohw);
    }
}

static int all_finite(const float *v, int64_t n) {
    for (int64_t i = 0; i < n; ++i)
        if (!isfinite(v[i])) return 0;
    return 1;
}

int cnnc_conv_depthwise_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x,
                                const float *w, const float *b, const float *res, cnnc_act act, float *y, void *ws,
                                int64_t ws_size) {
    dwc_shape s;
    if (!ctx || !p || !x || !w || !y || !cnnc_act_valid(act) || !dwc_shape_of(p, &s)) return CNNC_EINVAL;
    const int64_t need = cnnc_conv_depthwise_workspace_size(ctx, p);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    const cnnc_window2d *win = &p->win;
    fwd_job j = {p, &s, cnnc_dwc_fns_for(&ctx->k), x, w, b, res, act, y, {NULL, NULL, NULL}, 0, NULL, 0, 0, 0};
    void *base = cnnc_align_ptr(ws);
    if (win->layout == CNNC_NHWC) {
        j.cols = cols_at(base, s.ow, win->kw);
        forward_cols(p, &s, j.cols);
        j.wbad = !all_finite(w, win->kh * win->kw * p->cout);
        const int64_t rows = win->n * s.oh;
        const int nt = cnnc_threads(ctx, rows);
        cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), nhwc_rows_task, &j);
    } else {
        j.planes = (char *)base;
        j.plane_slot = align_up(plane_floats(p, &s, &j.hq, &j.wq) * (int64_t)sizeof(float));
        const int64_t planes = win->n * p->cout;
        const int nt = cnnc_threads(ctx, planes);
        cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), nchw_planes_task, &j);
    }
    return CNNC_OK;
}

/* ---- backward (NHWC) ---------------------------------------------------------------------------- */

/* Floats of one chunk's slot: the KH*KW rows of dw, then db's. */
static int64_t wgrad_slot(const cnnc_conv2d_params *p) { return (p->win.kh * p->win.kw + 1) * p->cout; }

static int64_t wgrad_chunks(const cnnc_conv2d_params *p, const dwc_shape *s) {
    return CNNC_MIN(p->win.n * s->oh, DWC_CHUNKS);
}

int64_t cnnc_conv_depthwise_backward_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p,
                                                    int need_dx) {
    dwc_shape s;
    if (!ctx || !p || !dwc_shape_of(p, &s) || p->win.layout != CNNC_NHWC) return -1;
    const int64_t slots = align_up(wgrad_chunks(p, &s) * wgrad_slot(p) * (int64_t)sizeof(float));
    return CNNC_ALIGN + slots + (need_dx ? cols_bytes(p->win.w, p->win.kw) : 0);
}

typedef struct {
    const cnnc_conv2d_params *p;
    const dwc_shape *s;
    cnnc_dwc_fns f;
    const float *x, *w, *dy;
    float *dx, *dw, *db;
    dwc_cols cols;
    float *slots;
    int64_t chunks, slot;
} bwd_job;

static void data_grad_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const bwd_job *j = (const bwd_job *)arg;
    const cnnc_conv2d_params *p = j->p;
    const cnnc_window2d *w = &p->win;
    const dwc_shape *s = j->s;
    const int64_t C = w->c, m = s->m;
    (void)slot;
    for (int64_t row = lo; row < hi; ++row) {
        const int64_t n = row / w->h, ih = row % w->h;
        const float *dr[DWC_MAX_K];
        int64_t wr[DWC_MAX_K];
        const int64_t nr = row_taps(p, s, 1, n, ih, j->dy, dr, wr);
        const cnnc_dwc_taps t = {dr, wr, nr, j->cols.cn, j->cols.cx, j->cols.cw, w->kw};
        float *dxrow = j->dx + row * w->w * C;
        if (m == 1) {
            j->f.row(&t, w->w, j->w, C, dxrow);
            continue;
        }
        for (int64_t iw = 0; iw < w->w; ++iw) { /* input channel c gathers output channels c * m + i */
            float *restrict di = dxrow + iw * C;
            for (int64_t c = 0; c < C; ++c) di[c] = 0.0f;
            for (int64_t r = 0; r < nr; ++r)
                for (int32_t q = 0; q < t.cn[iw]; ++q) {
                    const float *restrict dp = dr[r] + t.cx[iw * w->kw + q];
                    const float *restrict wp = j->w + wr[r] + t.cw[iw * w->kw + q];
                    for (int64_t c = 0; c < C; ++c)
                        for (int64_t i = 0; i < m; ++i) di[c] += dp[c * m + i] * wp[c * m + i];
                }
        }
    }
}

/* Output columns [*lo, *hi) whose tap kw falls in the input. */
static void tap_span(const cnnc_window2d *w, const dwc_shape *s, int64_t kw, int64_t *lo, int64_t *hi) {
    const int64_t a = w->pl - kw * w->dw, b = w->w - 1 + w->pl - kw * w->dw;
    *lo = a > 0 ? CNNC_CEIL_DIV(a, w->sw) : 0;
    *hi = b < 0 ? 0 : CNNC_MIN(s->ow, b / w->sw + 1);
}

static void weight_grad_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const bwd_job *j = (const bwd_job *)arg;
    const cnnc_conv2d_params *p = j->p;
    const cnnc_window2d *w = &p->win;
    const dwc_shape *s = j->s;
    const int64_t C = w->c, CO = p->cout, m = s->m, rows = w->n * s->oh;
    int64_t span[DWC_MAX_K][2]; /* each tap column's output columns [span[kw][0], span[kw][1]) */
    for (int64_t kw = 0; kw < w->kw; ++kw) tap_span(w, s, kw, &span[kw][0], &span[kw][1]);
    (void)slot;
    for (int64_t g = lo; g < hi; ++g) {
        float *acc = j->slots + g * j->slot, *accb = acc + w->kh * w->kw * CO;
        memset(acc, 0, (size_t)j->slot * sizeof(float));
        const int64_t r0 = g * rows / j->chunks, r1 = (g + 1) * rows / j->chunks;
        for (int64_t row = r0; row < r1; ++row) {
            const int64_t n = row / s->oh, oh = row % s->oh;
            const float *dyr = j->dy + row * s->ow * CO;
            for (int64_t kh = 0; kh < w->kh; ++kh) {
                const int64_t ih = oh * w->sh - w->pt + kh * w->dh;
                if (ih < 0 || ih >= w->h) continue;
                const float *xrow = j->x + (n * w->h + ih) * w->w * C;
                for (int64_t kw = 0; kw < w->kw; ++kw) {
                    const int64_t a = span[kw][0], b = span[kw][1];
                    if (b <= a) continue;
                    const float *xp = xrow + (a * w->sw - w->pl + kw * w->dw) * C, *dp = dyr + a * CO;
                    float *t = acc + (kh * w->kw + kw) * CO;
                    if (m == 1) {
                        j->f.wgrad_span(b - a, xp, w->sw * C, dp, C, t);
                        continue;
                    }
                    for (int64_t q = 0; q < b - a; ++q) {
                        const float *restrict xq = xp + q * w->sw * C, *restrict dq = dp + q * CO;
                        for (int64_t c = 0; c < C; ++c)
                            for (int64_t i = 0; i < m; ++i) t[c * m + i] += xq[c] * dq[c * m + i];
                    }
                }
            }
            for (int64_t q = 0; q < s->ow; ++q) {
                const float *restrict dq = dyr + q * CO;
                for (int64_t co = 0; co < CO; ++co) accb[co] += dq[co];
            }
        }
    }
}

#define REDUCE_BLOCK 256 /* slot elements per reduction item */

static void reduce_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const bwd_job *j = (const bwd_job *)arg;
    const int64_t taps = j->p->win.kh * j->p->win.kw * j->p->cout;
    (void)slot;
    for (int64_t e = lo * REDUCE_BLOCK; e < CNNC_MIN(hi * REDUCE_BLOCK, j->slot); ++e) {
        float v = j->slots[e];
        for (int64_t g = 1; g < j->chunks; ++g) v += j->slots[g * j->slot + e];
        j->slots[e] = v; /* chunk 0's slot ends up holding the sums */
        if (e < taps) {
            if (j->dw) j->dw[e] = v;
        } else if (j->db) {
            j->db[e - taps] = v;
        }
    }
}

/* dw[kh, kw, c] = NaN where a padded tap meets a non-finite dy (0 * inf through the column matrix). */
static void mark_padded_wgrad(const cnnc_conv2d_params *p, const dwc_shape *s, const float *dy, float *dw) {
    const cnnc_window2d *w = &p->win;
    const int64_t CO = p->cout;
    for (int64_t row = 0; row < w->n * s->oh; ++row) {
        const int64_t oh = row % s->oh;
        for (int64_t ow = 0; ow < s->ow; ++ow) {
            const float *d = dy + (row * s->ow + ow) * CO;
            for (int64_t co = 0; co < CO; ++co) {
                if (isfinite(d[co])) continue;
                for (int64_t kh = 0; kh < w->kh; ++kh)
                    for (int64_t kw = 0; kw < w->kw; ++kw) {
                        const int64_t ih = oh * w->sh - w->pt + kh * w->dh, iw = ow * w->sw - w->pl + kw * w->dw;
                        if (ih < 0 || ih >= w->h || iw < 0 || iw >= w->w) dw[(kh * w->kw + kw) * CO + co] = NAN;
                    }
            }
        }
    }
}

int cnnc_conv_depthwise_backward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x,
                                 const float *w, const float *dy, float *dx, float *dw, float *db, void *ws,
                                 int64_t ws_size) {
    dwc_shape s;
    if (!ctx || !p || !dy || (dw && !x) || (dx && !w) || !dwc_shape_of(p, &s) || p->win.layout != CNNC_NHWC)
        return CNNC_EINVAL;
    if (!dx && !dw) return CNNC_OK; /* db alone: cnnc_bias_grad_rows' */
    const int64_t need = cnnc_conv_depthwise_backward_workspace_size(ctx, p, dx != NULL);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    const cnnc_window2d *win = &p->win;
    char *base = (char *)cnnc_align_ptr(ws);
    bwd_job j = {p, &s, cnnc_dwc_fns_for(&ctx->k), x, w, dy, dx, dw, db, {NULL, NULL, NULL},
                 (float *)base, wgrad_chunks(p, &s), wgrad_slot(p)};
    if (dw) {
        const int nt = cnnc_threads(ctx, j.chunks);
        cnnc_parallel_for(ctx, nt, j.chunks, 1, weight_grad_task, &j);
        const int64_t items = CNNC_CEIL_DIV(j.slot, REDUCE_BLOCK);
        const int nr = j.slot * j.chunks < 65536 ? 1 : cnnc_threads(ctx, items);
        cnnc_parallel_for(ctx, nr, items, cnnc_grain(items, nr, 1), reduce_task, &j);
        if (!all_finite(j.slots, j.slot)) mark_padded_wgrad(p, &s, dy, dw);
    }
    if (dx) {
        j.cols = cols_at(base + align_up(j.chunks * j.slot * (int64_t)sizeof(float)), win->w, win->kw);
        data_grad_cols(p, &s, j.cols);
        const int64_t rows = win->n * win->h;
        const int nt = cnnc_threads(ctx, rows);
        cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), data_grad_task, &j);
    }
    return CNNC_OK;
}
