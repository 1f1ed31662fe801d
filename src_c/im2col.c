/* im2col.c - sliding windows to column matrices and back, both layouts, with per-axis stride,
 * dilation and explicit (possibly asymmetric) zero padding. */
#include "internal.h"

int cnnc_window2d_output(const cnnc_window2d *p, int64_t *oh, int64_t *ow) {
    if (!p || p->n <= 0 || p->h <= 0 || p->w <= 0 || p->c <= 0 || p->kh <= 0 || p->kw <= 0 ||
        p->sh <= 0 || p->sw <= 0 || p->dh <= 0 || p->dw <= 0 || p->pt < 0 || p->pb < 0 || p->pl < 0 ||
        p->pr < 0 || (p->layout != CNNC_NHWC && p->layout != CNNC_NCHW))
        return CNNC_EINVAL;
    const int64_t lim = INT64_MAX / 4;
    if (p->h > lim - p->pt - p->pb || p->w > lim - p->pl - p->pr || p->kh > lim / p->dh ||
        p->kw > lim / p->dw)
        return CNNC_EOVERFLOW;
    const int64_t eh = p->dh * (p->kh - 1) + 1, ew = p->dw * (p->kw - 1) + 1;
    const int64_t ph = p->h + p->pt + p->pb, pw = p->w + p->pl + p->pr;
    if (eh > ph || ew > pw) return CNNC_EINVAL;
    *oh = (ph - eh) / p->sh + 1;
    *ow = (pw - ew) / p->sw + 1;
    return CNNC_OK;
}

/* Output positions o in [lo, hi) whose tap t reads an input inside [0, size): 0 <= o*s - pad + t*d < size. */
static inline void tap_range(int64_t size, int64_t t, int64_t s, int64_t pad, int64_t d, int64_t out,
                             int64_t *lo, int64_t *hi) {
    const int64_t off = t * d - pad; /* input = o*s + off */
    int64_t a = off >= 0 ? 0 : (-off + s - 1) / s;
    int64_t b = size - off <= 0 ? 0 : (size - off - 1) / s + 1;
    *lo = CNNC_MIN(a, out);
    *hi = CNNC_MAX(*lo, CNNC_MIN(b, out));
}

static inline void copy_floats(float *restrict dst, const float *restrict src, int64_t n) {
    switch (n) { /* short runs (one-channel windows: 3 or so) inline, not a library call each */
    case 4: dst[3] = src[3]; /* fall through */
    case 3: dst[2] = src[2]; /* fall through */
    case 2: dst[1] = src[1]; /* fall through */
    case 1: dst[0] = src[0]; /* fall through */
    case 0: return;
    default: memcpy(dst, src, (size_t)n * sizeof(float));
    }
}

/* The output row o whose tap t reads input row i (o*s - pad + t*d == i), if there is one. */
static inline int tap_output(int64_t i, int64_t t, int64_t s, int64_t pad, int64_t d, int64_t out,
                             int64_t *o) {
    const int64_t num = i + pad - t * d;
    if (num < 0 || (s > 1 && num % s)) return 0;
    *o = s > 1 ? num / s : num;
    return *o < out;
}

/* ---- the parallel loops' items ---------------------------------------------------------------- */
typedef struct {
    const cnnc_window2d *p;
    int64_t c0, cg, OH, OW;
    int64_t K;    /* NHWC: floats per row of col */
    int64_t cols; /* NCHW: floats per row of col (cnnc_im2col) */
    int runs;     /* NHWC: a window row's KW taps may be one copy */
    int64_t q0, q1, ldcol, oh_first, ow_first; /* cnnc_im2col_nchw_pixels */
    const float *x;
    float *col;
} im2col_job;

static void im2col_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const im2col_job *jb = (const im2col_job *)arg;
    (void)slot;
    const cnnc_window2d *p = jb->p;
    const int64_t H = p->h, W = p->w, C = p->c, KH = p->kh, KW = p->kw;
    const int64_t c0 = jb->c0, cg = jb->cg, OH = jb->OH, OW = jb->OW, K = jb->K;
    const int runs = jb->runs;
    const float *restrict x = jb->x;
    float *restrict col = jb->col;
    for (int64_t r = begin; r < end; ++r) { /* one output row (n, oh): OW rows of col */
        const int64_t n = r / OH, oh = r % OH;
        float *dst = col + r * OW * K;
        for (int64_t ow = 0; ow < OW; ++ow) {
            const int64_t iw0 = ow * p->sw - p->pl;
            const int run = runs && iw0 >= 0 && iw0 + KW <= W;
            for (int64_t kh = 0; kh < KH; ++kh) {
                const int64_t ih = oh * p->sh - p->pt + kh * p->dh;
                if (ih < 0 || ih >= H) {
                    memset(dst, 0, (size_t)(KW * cg) * sizeof(float));
                    dst += KW * cg;
                    continue;
                }
                const float *xrow = x + (n * H + ih) * W * C + c0;
                if (run) {
                    copy_floats(dst, xrow + iw0 * C, KW * cg);
                    dst += KW * cg;
                    continue;
                }
                for (int64_t kw = 0; kw < KW; ++kw, dst += cg) {
                    const int64_t iw = iw0 + kw * p->dw;
                    if (iw < 0 || iw >= W) memset(dst, 0, (size_t)cg * sizeof(float));
                    else copy_floats(dst, xrow + iw * C, cg);
                }
            }
        }
    }
}

static void im2col_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const im2col_job *jb = (const im2col_job *)arg;
    (void)slot;
    const cnnc_window2d *p = jb->p;
    const int64_t H = p->h, W = p->w, C = p->c, KH = p->kh, KW = p->kw;
    const int64_t c0 = jb->c0, OH = jb->OH, OW = jb->OW, cols = jb->cols;
    const float *restrict x = jb->x;
    float *restrict col = jb->col;
    for (int64_t r = begin; r < end; ++r) {
        const int64_t c = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW;
        int64_t lo, hi; /* the ow whose input column is inside the image */
        tap_range(W, kw, p->sw, p->pl, p->dw, OW, &lo, &hi);
        float *dst = col + r * cols;
        for (int64_t n = 0; n < p->n; ++n) {
            const float *xp = x + (n * C + c0 + c) * H * W;
            for (int64_t oh = 0; oh < OH; ++oh, dst += OW) {
                const int64_t ih = oh * p->sh - p->pt + kh * p->dh;
                if (ih < 0 || ih >= H) {
                    memset(dst, 0, (size_t)OW * sizeof(float));
                    continue;
                }
                const float *xrow = xp + ih * W + kw * p->dw - p->pl;
                for (int64_t ow = 0; ow < lo; ++ow) dst[ow] = 0.0f;
                if (p->sw == 1) copy_floats(dst + lo, xrow + lo, hi - lo);
                else for (int64_t ow = lo; ow < hi; ++ow) dst[ow] = xrow[ow * p->sw];
                for (int64_t ow = hi; ow < OW; ++ow) dst[ow] = 0.0f;
            }
        }
    }
}

static void im2col_pixels_task(void *arg, int64_t begin, int64_t end, int slot) {
    const im2col_job *jb = (const im2col_job *)arg;
    (void)slot;
    const cnnc_window2d *p = jb->p;
    const int64_t H = p->h, W = p->w, KH = p->kh, KW = p->kw;
    const int64_t c0 = jb->c0, OW = jb->OW, q0 = jb->q0, q1 = jb->q1, ldcol = jb->ldcol;
    const int64_t oh_first = jb->oh_first, ow_first = jb->ow_first;
    const float *restrict x = jb->x;
    float *restrict col = jb->col;
    for (int64_t r = begin; r < end; ++r) {
        const int64_t c = r / (KH * KW), kh = (r / KW) % KH, kw = r % KW;
        int64_t lo, hi; /* the ow whose input column is inside the image */
        tap_range(W, kw, p->sw, p->pl, p->dw, OW, &lo, &hi);
        const float *xp = x + (c0 + c) * H * W;
        float *dst = col + r * ldcol;
        /* one run per output row oh: ow in [ow0, ow1), the first and last runs possibly partial */
        for (int64_t q = q0, oh = oh_first, ow0 = ow_first; q < q1; ++oh, ow0 = 0) {
            const int64_t ow1 = CNNC_MIN(OW, ow0 + (q1 - q));
            const int64_t ih = oh * p->sh - p->pt + kh * p->dh;
            const int64_t a = CNNC_MAX(ow0, CNNC_MIN(lo, ow1)), b = CNNC_MAX(a, CNNC_MIN(hi, ow1));
            if (ih < 0 || ih >= H) {
                memset(dst, 0, (size_t)(ow1 - ow0) * sizeof(float));
            } else { /* dst[ow - ow0]: zeros before a, x in [a, b), zeros from b */
                const float *xrow = xp + ih * W + kw * p->dw - p->pl;
                for (int64_t ow = ow0; ow < a; ++ow) dst[ow - ow0] = 0.0f;
                if (p->sw == 1) {
                    if (b > a) copy_floats(dst + (a - ow0), xrow + a, b - a);
                } else {
                    for (int64_t ow = a; ow < b; ++ow) dst[ow - ow0] = xrow[ow * p->sw];
                }
                for (int64_t ow = b; ow < ow1; ++ow) dst[ow - ow0] = 0.0f;
            }
            dst += ow1 - ow0;
            q += ow1 - ow0;
        }
    }
}

typedef struct {
    const cnnc_window2d *p;
    int64_t c0, cg, OH, OW;
    int64_t K;    /* NHWC: floats per row of col */
    int64_t cols; /* NCHW: floats per row of col */
    const float *col;
    float *dx;
} col2im_job;

static void col2im_nhwc_task(void *arg, int64_t begin, int64_t end, int slot) {
    const col2im_job *jb = (const col2im_job *)arg;
    (void)slot;
    const cnnc_window2d *p = jb->p;
    const int64_t H = p->h, W = p->w, C = p->c, KH = p->kh, KW = p->kw;
    const int64_t c0 = jb->c0, cg = jb->cg, OH = jb->OH, OW = jb->OW, K = jb->K;
    const float *restrict col = jb->col;
    float *restrict dx = jb->dx;
    for (int64_t r = begin; r < end; ++r) {
        const int64_t n = r / H, ih = r % H;
        float *drow = dx + (n * H + ih) * W * C + c0;
        if (cg == C) memset(drow, 0, (size_t)(W * C) * sizeof(float));
        else for (int64_t iw = 0; iw < W; ++iw) memset(drow + iw * C, 0, (size_t)cg * sizeof(float));
        for (int64_t kh = 0; kh < KH; ++kh) {
            int64_t oh;
            if (!tap_output(ih, kh, p->sh, p->pt, p->dh, OH, &oh)) continue;
            for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t lo, hi;
                tap_range(W, kw, p->sw, p->pl, p->dw, OW, &lo, &hi);
                const float *s = col + ((n * OH + oh) * OW) * K + (kh * KW + kw) * cg;
                for (int64_t ow = lo; ow < hi; ++ow) {
                    float *d = drow + (ow * p->sw - p->pl + kw * p->dw) * C;
                    const float *sc = s + ow * K;
                    for (int64_t c = 0; c < cg; ++c) d[c] += sc[c];
                }
            }
        }
    }
}

static void col2im_nchw_task(void *arg, int64_t begin, int64_t end, int slot) {
    const col2im_job *jb = (const col2im_job *)arg;
    (void)slot;
    const cnnc_window2d *p = jb->p;
    const int64_t H = p->h, W = p->w, C = p->c, KH = p->kh, KW = p->kw;
    const int64_t c0 = jb->c0, cg = jb->cg, OH = jb->OH, OW = jb->OW, cols = jb->cols;
    const float *restrict col = jb->col;
    float *restrict dx = jb->dx;
    for (int64_t r = begin; r < end; ++r) {
        const int64_t n = r / (cg * H), c = (r / H) % cg, ih = r % H;
        float *d = dx + ((n * C + c0 + c) * H + ih) * W;
        memset(d, 0, (size_t)W * sizeof(float));
        for (int64_t kh = 0; kh < KH; ++kh) {
            int64_t oh;
            if (!tap_output(ih, kh, p->sh, p->pt, p->dh, OH, &oh)) continue;
            for (int64_t kw = 0; kw < KW; ++kw) {
                int64_t lo, hi;
                tap_range(W, kw, p->sw, p->pl, p->dw, OW, &lo, &hi);
                const float *s = col + ((c * KH + kh) * KW + kw) * cols + (n * OH + oh) * OW;
                float *dd = d + kw * p->dw - p->pl;
                if (p->sw == 1) for (int64_t ow = lo; ow < hi; ++ow) dd[ow] += s[ow];
                else for (int64_t ow = lo; ow < hi; ++ow) dd[ow * p->sw] += s[ow];
            }
        }
    }
}

// NHWC: x[N, H, W, C] -> col[N*OH*OW, KH*KW*cg]      NCHW: x[N, C, H, W] -> col[cg*KH*KW, N*OH*OW]
int cnnc_im2col(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                const float *restrict x, float *restrict col) {
    int64_t OH, OW;
    int rc = cnnc_window2d_output(p, &OH, &OW);
    if (rc) return rc;
    if (c0 < 0 || cg <= 0 || c0 + cg > p->c || !x || !col) return CNNC_EINVAL;
    const int64_t C = p->c, KH = p->kh, KW = p->kw;
    if (p->layout == CNNC_NHWC) {
        const int64_t rows = p->n * OH, K = KH * KW * cg;
        /* with unit stride along w, all channels and no dilation, the KW taps of a window row are
         * adjacent in x: one copy of KW*C floats when the whole run is inside the image */
        const int runs = p->dw == 1 && cg == C;
        im2col_job jb = {p, c0, cg, OH, OW, K, 0, runs, 0, 0, 0, 0, 0, x, col};
        const int nt = cnnc_threads(ctx, rows);
        cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), im2col_nhwc_task, &jb);
    } else {
        const int64_t rows = cg * KH * KW, cols = p->n * OH * OW;
        im2col_job jb = {p, c0, cg, OH, OW, 0, cols, 0, 0, 0, 0, 0, 0, x, col};
        const int nt = cnnc_threads(ctx, rows);
        cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), im2col_nchw_task, &jb);
    }
    return CNNC_OK;
}

/* One image, NCHW, output pixels q in [q0, q1) (q = oh * OW + ow) only:
 * col[r * ldcol + q - q0] for rows r = (c, kh, kw) of channels [c0, c0 + cg), x = x[C, H, W]. The same
 * values as the whole-image cnnc_im2col with p->n = 1, a block of its columns. */
int cnnc_im2col_nchw_pixels(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                            const float *restrict x, int64_t q0, int64_t q1, float *restrict col,
                            int64_t ldcol) {
    int64_t OH, OW;
    int rc = cnnc_window2d_output(p, &OH, &OW);
    if (rc) return rc;
    if (p->layout != CNNC_NCHW || c0 < 0 || cg <= 0 || c0 + cg > p->c || !x || !col || q0 < 0 ||
        q1 <= q0 || q1 > OH * OW || ldcol < q1 - q0)
        return CNNC_EINVAL;
    const int64_t KH = p->kh, KW = p->kw, rows = cg * KH * KW;
    const int64_t oh_first = q0 / OW, ow_first = q0 % OW;
    im2col_job jb = {p, c0, cg, OH, OW, 0, 0, 0, q0, q1, ldcol, oh_first, ow_first, x, col};
    const int nt = cnnc_threads(ctx, rows);
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), im2col_pixels_task, &jb);
    return CNNC_OK;
}

/* col2im: every element of dx is 0 plus its col entries added in (kh, kw) order, whatever the loop
 * nesting: per input row, the (kh, kw) loops are outermost and each adds a run of output columns. */
// col -> dx[.., c0:c0+cg]
int cnnc_col2im(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                const float *restrict col, float *restrict dx) {
    int64_t OH, OW;
    int rc = cnnc_window2d_output(p, &OH, &OW);
    if (rc) return rc;
    if (c0 < 0 || cg <= 0 || c0 + cg > p->c || !col || !dx) return CNNC_EINVAL;
    const int64_t H = p->h, KH = p->kh, KW = p->kw;
    if (p->layout == CNNC_NHWC) {
        const int64_t K = KH * KW * cg, rows = p->n * H;
        col2im_job jb = {p, c0, cg, OH, OW, K, 0, col, dx};
        const int nt = cnnc_threads(ctx, rows);
        cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, 1), col2im_nhwc_task, &jb);
    } else {
        const int64_t cols = p->n * OH * OW, planes = p->n * cg;
        col2im_job jb = {p, c0, cg, OH, OW, 0, cols, col, dx};
        const int nt = cnnc_threads(ctx, planes * H);
        cnnc_parallel_for(ctx, nt, planes * H, cnnc_grain(planes * H, nt, 1), col2im_nchw_task, &jb);
    }
    return CNNC_OK;
}
