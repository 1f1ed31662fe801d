/* conv.c - Conv2D forward and backward through im2col + GEMM, for NHWC and NCHW, with groups.
 *
 * NHWC: images are processed in chunks whose column matrix stays under COL_BUDGET bytes (about an L2
 * cache, so the GEMM packs it from cache), one GEMM per chunk and group:
 * y[chunk*OH*OW, Cout_g] = col[chunk*OH*OW, K] * w_g[K, Cout_g], K = KH*KW*C_g; bias and activation
 * are applied to each chunk of y while it is still in cache.
 * NCHW: one GEMM per image and group: y_n[Cout_g, OH*OW] = w_g[Cout_g, K] * col[K, OH*OW].
 * 1x1 convolutions with stride 1 and no padding skip im2col: x already is the column matrix.
 * The chunking depends only on the shapes, never on the thread count, so the weight gradient (summed
 * over chunks/images with beta = 1) is bit-identical for any thread count. Convolutions too small to
 * repay waking threads run on one thread. */
#include "internal.h"
#include "winograd.h"

#define COL_BUDGET ((int64_t)1 << 20) /* bytes of im2col buffer per NHWC chunk */
#define SMALL_FLOPS 5e5                  /* below this many flops a convolution runs on one thread */

typedef struct {
    int64_t oh, ow, ohw, cg, cog, k; /* output size, per-group channels, GEMM depth */
    int pointwise;
    int64_t chunk; /* NHWC: images per im2col chunk */
} conv_shape;

static int conv_shape_of(const cnnc_conv2d_params *p, conv_shape *s) {
    const cnnc_window2d *w = &p->win;
    int rc = cnnc_window2d_output(w, &s->oh, &s->ow);
    if (rc) return rc;
    if (p->cout <= 0 || p->groups <= 0 || w->c % p->groups || p->cout % p->groups) return CNNC_EINVAL;
    s->ohw = s->oh * s->ow;
    s->cg = w->c / p->groups;
    s->cog = p->cout / p->groups;
    s->k = w->kh * w->kw * s->cg;
    s->pointwise = w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 && w->pt == 0 && w->pb == 0 &&
                   w->pl == 0 && w->pr == 0;
    /* Overflow guards for every product formed below. */
    if (cnnc_mul_ok(cnnc_mul_ok(w->n, s->ohw), CNNC_MAX(s->k, p->cout)) < 0 ||
        cnnc_mul_ok(cnnc_mul_ok(cnnc_mul_ok(w->n, w->h), w->w), w->c) < 0 ||
        cnnc_mul_ok(s->k, p->cout) < 0)
        return CNNC_EOVERFLOW;
    /* images per chunk: as many as the budget allows, then evened out (64 images at 60 per chunk run
     * as 2 x 32, not 60 + 4) */
    const int64_t per_image = s->ohw * s->k * (int64_t)sizeof(float);
    const int64_t most = CNNC_MAX(1, CNNC_MIN(w->n, COL_BUDGET / CNNC_MAX(per_image, 1)));
    s->chunk = CNNC_CEIL_DIV(w->n, CNNC_CEIL_DIV(w->n, most));
    return CNNC_OK;
}

/* The context a convolution's steps run with: the caller's, or a one-thread copy for small problems
 * (every step would otherwise fork and join threads for a few microseconds of work). */
static cnnc_ctx conv_ctx(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const conv_shape *s) {
    cnnc_ctx c = *ctx;
    if (2.0 * (double)p->win.n * (double)s->ohw * (double)s->k * (double)p->cout < SMALL_FLOPS) c.nthreads = 1;
    return c;
}

static int64_t add_ok(int64_t a, int64_t b) { return (a < 0 || b < 0 || a > INT64_MAX - b) ? -1 : a + b; }

static int64_t col_bytes(const cnnc_conv2d_params *p, const conv_shape *s) {
    if (s->pointwise) return 0;
    const int64_t rows = p->win.layout == CNNC_NHWC ? s->chunk * s->ohw : s->ohw;
    return add_ok(cnnc_mul_ok(cnnc_mul_ok(rows, s->k), (int64_t)sizeof(float)), CNNC_ALIGN);
}

static int64_t gemm_rows(const cnnc_conv2d_params *p, const conv_shape *s) {
    if (p->win.layout == CNNC_NCHW) return s->ohw;
    return s->pointwise ? p->win.n * s->ohw : s->chunk * s->ohw;
}

/* GEMM rows of the last NHWC chunk (it may hold fewer images than the others); gemm_rows otherwise. */
static int64_t last_gemm_rows(const cnnc_conv2d_params *p, const conv_shape *s) {
    if (p->win.layout == CNNC_NCHW || s->pointwise) return gemm_rows(p, s);
    const int64_t n = p->win.n, chunks = CNNC_CEIL_DIV(n, s->chunk);
    return (n - (chunks - 1) * s->chunk) * s->ohw;
}

int64_t cnnc_conv2d_workspace_size(const cnnc_ctx *caller, const cnnc_conv2d_params *p) {
    conv_shape s;
    if (!p || conv_shape_of(p, &s)) return -1;
    if (cnnc_winograd_applies(p)) return cnnc_winograd_workspace_size(caller, p);
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    /* the GEMM workspace is sized per shape (not monotonic): the largest over full and last chunk */
    int64_t g = 0;
    const int64_t rows[2] = {gemm_rows(p, &s), last_gemm_rows(p, &s)};
    for (int i = 0; i < 2; ++i) {
        const int64_t m = rows[i];
        g = CNNC_MAX(g, p->win.layout == CNNC_NHWC ? cnnc_gemm_workspace_size(ctx, m, s.cog, s.k)
                                                   : cnnc_gemm_workspace_size(ctx, s.cog, m, s.k));
    }
    return add_ok(col_bytes(p, &s), g);
}

int64_t cnnc_conv2d_backward_workspace_size(const cnnc_ctx *caller, const cnnc_conv2d_params *p) {
    conv_shape s;
    if (!p || conv_shape_of(p, &s)) return -1;
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    /* NHWC: dw[K, Cout_g] over depth m, dcol[m, K] over depth Cout_g;
     * NCHW: dw[Cout_g, K] over depth m, dcol[K, m] over depth Cout_g. Full and last chunk. */
    const int nhwc = p->win.layout == CNNC_NHWC;
    int64_t g = 0;
    const int64_t rows[2] = {gemm_rows(p, &s), last_gemm_rows(p, &s)};
    for (int i = 0; i < 2; ++i) {
        const int64_t m = rows[i];
        g = CNNC_MAX(g, CNNC_MAX(nhwc ? cnnc_gemm_workspace_size(ctx, s.k, s.cog, m)
                                      : cnnc_gemm_workspace_size(ctx, s.cog, s.k, m),
                                 nhwc ? cnnc_gemm_workspace_size(ctx, m, s.k, s.cog)
                                      : cnnc_gemm_workspace_size(ctx, s.k, m, s.cog)));
    }
    const int64_t im2col_ws = add_ok(col_bytes(p, &s), g);
    /* dx by Winograd runs first, then dw (and db) through im2col in the same workspace */
    if (cnnc_winograd_data_grad_applies(p)) {
        const int64_t wg = cnnc_winograd_data_grad_workspace_size(caller, p);
        return (wg < 0 || im2col_ws < 0) ? -1 : CNNC_MAX(wg, im2col_ws);
    }
    return im2col_ws;
}

// y = act(conv(x, w) + b): NHWC x[N,H,W,C] w[KH,KW,C/g,Cout] -> y[N,OH,OW,Cout];
//                          NCHW x[N,C,H,W] w[Cout,C/g,KH,KW] -> y[N,Cout,OH,OW]
int cnnc_conv2d_forward(const cnnc_ctx *caller, const cnnc_conv2d_params *p, const float *x,
                        const float *w, const float *b, cnnc_act act, float *y, void *ws,
                        int64_t ws_size) {
    conv_shape s;
    if (!caller || !p || !x || !w || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    int rc = conv_shape_of(p, &s);
    if (rc) return rc;
    if (cnnc_winograd_applies(p)) return cnnc_winograd_forward(caller, p, x, w, b, act, y, ws, ws_size);
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    const int64_t need = cnnc_conv2d_workspace_size(caller, p);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    const cnnc_window2d *win = &p->win;
    const int64_t N = win->n, H = win->h, W = win->w, C = win->c, CO = p->cout, G = p->groups;
    const int64_t colb = col_bytes(p, &s);
    float *col = (float *)cnnc_align_ptr(ws);
    void *gws = (char *)ws + colb;
    const int64_t gws_size = ws_size - colb;

    if (win->layout == CNNC_NHWC) {
        if (s.pointwise) {
            for (int64_t g = 0; g < G && !rc; ++g)
                rc = cnnc_sgemm(ctx, 0, 0, N * H * W, s.cog, s.cg, 1.0f, x + g * s.cg, C, w + g * s.cog, CO,
                                0.0f, y + g * s.cog, CO, gws, gws_size);
        } else {
            for (int64_t n0 = 0; n0 < N && !rc; n0 += s.chunk) {
                cnnc_window2d cw = *win;
                cw.n = CNNC_MIN(s.chunk, N - n0);
                const int64_t m = cw.n * s.ohw;
                for (int64_t g = 0; g < G && !rc; ++g) {
                    rc = cnnc_im2col(ctx, &cw, g * s.cg, s.cg, x + n0 * H * W * C, col);
                    if (!rc)
                        rc = cnnc_sgemm(ctx, 0, 0, m, s.cog, s.k, 1.0f, col, s.k, w + g * s.cog, CO, 0.0f,
                                        y + n0 * s.ohw * CO + g * s.cog, CO, gws, gws_size);
                }
                if (!rc && (b || act.kind != CNNC_ACT_NONE))
                    rc = cnnc_bias_act_rows(ctx, m, CO, b, act, y + n0 * s.ohw * CO);
            }
        }
        if (!rc && s.pointwise && (b || act.kind != CNNC_ACT_NONE))
            rc = cnnc_bias_act_rows(ctx, N * s.ohw, CO, b, act, y);
    } else {
        cnnc_window2d one = *win;
        one.n = 1;
        for (int64_t n = 0; n < N && !rc; ++n) {
            const float *xn = x + n * C * H * W;
            float *yn = y + n * CO * s.ohw;
            for (int64_t g = 0; g < G && !rc; ++g) {
                const float *bmat = xn + g * s.cg * H * W;
                if (!s.pointwise) {
                    rc = cnnc_im2col(ctx, &one, g * s.cg, s.cg, xn, col);
                    bmat = col;
                }
                if (!rc)
                    rc = cnnc_sgemm(ctx, 0, 0, s.cog, s.ohw, s.k, 1.0f, w + g * s.cog * s.k, s.k, bmat, s.ohw,
                                    0.0f, yn + g * s.cog * s.ohw, s.ohw, gws, gws_size);
            }
        }
        if (!rc && (b || act.kind != CNNC_ACT_NONE)) rc = cnnc_bias_act_planes(ctx, N, CO, s.ohw, b, act, y);
    }
    return rc;
}

// dx, dw, db of y = conv(x, w) + b, shapes as in the forward
int cnnc_conv2d_backward(const cnnc_ctx *caller, const cnnc_conv2d_params *p, const float *x,
                         const float *w, const float *dy, float *dx, float *dw, float *db,
                         void *ws, int64_t ws_size) {
    conv_shape s;
    if (!caller || !p || !dy || (dw && !x) || (dx && !w)) return CNNC_EINVAL;
    int rc = conv_shape_of(p, &s);
    if (rc) return rc;
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    const int64_t need = cnnc_conv2d_backward_workspace_size(caller, p);
    if (need < 0) return CNNC_EOVERFLOW;
    if ((dx || dw) && (!ws || ws_size < need)) return CNNC_EWORKSPACE;
    if (dx && cnnc_winograd_data_grad_applies(p)) {
        rc = cnnc_winograd_data_grad(caller, p, w, dy, dx, ws, ws_size);
        if (rc) return rc;
        dx = NULL; /* done: the loops below compute dw and db */
    }
    const cnnc_window2d *win = &p->win;
    const int64_t N = win->n, H = win->h, W = win->w, C = win->c, CO = p->cout, G = p->groups;
    const int64_t colb = col_bytes(p, &s);
    float *col = (float *)cnnc_align_ptr(ws);
    void *gws = (char *)ws + colb;
    const int64_t gws_size = ws_size - colb;

    if (win->layout == CNNC_NHWC) {
        if (db) rc = cnnc_bias_grad_rows(ctx, N * s.ohw, CO, dy, db);
        if (s.pointwise) {
            const int64_t m = N * H * W;
            for (int64_t g = 0; g < G && !rc; ++g) {
                if (dw)
                    rc = cnnc_sgemm(ctx, 1, 0, s.cg, s.cog, m, 1.0f, x + g * s.cg, C, dy + g * s.cog, CO, 0.0f,
                                    dw + g * s.cog, CO, gws, gws_size);
                if (dx && !rc)
                    rc = cnnc_sgemm(ctx, 0, 1, m, s.cg, s.cog, 1.0f, dy + g * s.cog, CO, w + g * s.cog, CO, 0.0f,
                                    dx + g * s.cg, C, gws, gws_size);
            }
            return rc;
        }
        for (int64_t n0 = 0; n0 < N && !rc; n0 += s.chunk) {
            cnnc_window2d cw = *win;
            cw.n = CNNC_MIN(s.chunk, N - n0);
            const int64_t m = cw.n * s.ohw;
            const float *dyc = dy + n0 * s.ohw * CO;
            for (int64_t g = 0; g < G && !rc; ++g) {
                if (dw) {
                    rc = cnnc_im2col(ctx, &cw, g * s.cg, s.cg, x + n0 * H * W * C, col);
                    if (!rc)
                        rc = cnnc_sgemm(ctx, 1, 0, s.k, s.cog, m, 1.0f, col, s.k, dyc + g * s.cog, CO,
                                        n0 == 0 ? 0.0f : 1.0f, dw + g * s.cog, CO, gws, gws_size);
                }
                if (dx && !rc) {
                    rc = cnnc_sgemm(ctx, 0, 1, m, s.k, s.cog, 1.0f, dyc + g * s.cog, CO, w + g * s.cog, CO,
                                    0.0f, col, s.k, gws, gws_size);
                    if (!rc) rc = cnnc_col2im(ctx, &cw, g * s.cg, s.cg, col, dx + n0 * H * W * C);
                }
            }
        }
    } else {
        if (db) rc = cnnc_bias_grad_planes(ctx, N, CO, s.ohw, dy, db);
        cnnc_window2d one = *win;
        one.n = 1;
        for (int64_t n = 0; n < N && !rc; ++n) {
            const float *xn = x ? x + n * C * H * W : NULL;
            const float *dyn = dy + n * CO * s.ohw;
            float *dxn = dx ? dx + n * C * H * W : NULL;
            for (int64_t g = 0; g < G && !rc; ++g) {
                const float *dyg = dyn + g * s.cog * s.ohw, *wg = w ? w + g * s.cog * s.k : NULL;
                if (dw) {
                    const float *bmat = xn + g * s.cg * H * W;
                    if (!s.pointwise) {
                        rc = cnnc_im2col(ctx, &one, g * s.cg, s.cg, xn, col);
                        bmat = col;
                    }
                    if (!rc)
                        rc = cnnc_sgemm(ctx, 0, 1, s.cog, s.k, s.ohw, 1.0f, dyg, s.ohw, bmat, s.ohw,
                                        n == 0 ? 0.0f : 1.0f, dw + g * s.cog * s.k, s.k, gws, gws_size);
                }
                if (dx && !rc) {
                    float *dst = s.pointwise ? dxn + g * s.cg * H * W : col;
                    rc = cnnc_sgemm(ctx, 1, 0, s.k, s.ohw, s.cog, 1.0f, wg, s.k, dyg, s.ohw, 0.0f, dst, s.ohw,
                                    gws, gws_size);
                    if (!rc && !s.pointwise) rc = cnnc_col2im(ctx, &one, g * s.cg, s.cg, col, dxn);
                }
            }
        }
    }
    return rc;
}
