/* conv.c - Conv2D forward and backward through im2col + GEMM, for NHWC and NCHW, with groups.
 *
 * NHWC: images are processed in chunks whose column matrix stays under COL_BUDGET bytes (about an L2
 * cache, so the GEMM packs it from cache), one GEMM per chunk and group:
 * y[chunk*OH*OW, Cout_g] = col[chunk*OH*OW, K] * w_g[K, Cout_g], K = KH*KW*C_g; bias and activation
 * are applied to each chunk of y while it is still in cache.
 * NCHW: per image and group, the output pixels are taken in panels of P whose column matrix stays
 * under NCHW_COL_BUDGET bytes: col[K, P] = the panel's windows, then y_n[Cout_g, p0:p0+P] =
 * w_g[Cout_g, K] * col[K, P] (ldc = OH*OW). A whole-image column matrix of a large layer (VGG's first
 * layers: ~100 MB) would be written and packed far out of cache. The GEMM computes every element the
 * same way whatever its column block, so the result does not depend on P (nor on the thread count).
 * With enough panels (over all images and groups) for the threads, each thread takes whole panels
 * (its own column buffer, a one-thread GEMM): no barrier between panels. Otherwise the threads share
 * each panel's im2col and GEMM.
 * The backward pass still builds whole-image column matrices.
 * 1x1 convolutions with stride 1 and no padding skip im2col: x already is the column matrix.
 * Forward convolutions with at most 4 input channels skip it too (conv_direct.c: the GEMM's panels
 * packed straight from x, bias and activation while the output is in cache; the same bits).
 * The chunking depends only on the shapes, never on the thread count, so the weight gradient (summed
 * over chunks/images with beta = 1) is bit-identical for any thread count. Convolutions too small to
 * repay waking threads run on one thread. */
#include "internal.h"

#include <stdatomic.h>
#include "winograd.h"

#define COL_BUDGET ((int64_t)1 << 20) /* bytes of im2col buffer per NHWC chunk */
#define NCHW_COL_BUDGET ((int64_t)1 << 20) /* bytes of an NCHW column panel, forward */
#define NCHW_PANEL_MIN 256                    /* pixels per NCHW panel at least (repacking w_g per panel) */
#define SMALL_FLOPS 5e5                  /* below this many flops a convolution runs on one thread */

typedef struct {
    int64_t oh, ow, ohw, cg, cog, k; /* output size, per-group channels, GEMM depth */
    int pointwise;
    int64_t chunk; /* NHWC: images per im2col chunk */
    int64_t panel; /* NCHW forward: output pixels per column panel (ohw when one panel) */
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
    /* pixels per NCHW panel: within the budget (at least NCHW_PANEL_MIN), evened out, multiples of 16
     * (whole micro-tile columns) except for a single panel */
    s->panel = s->ohw;
    if (!s->pointwise && s->ohw * s->k * (int64_t)sizeof(float) > NCHW_COL_BUDGET) {
        const int64_t fit = CNNC_MAX(NCHW_PANEL_MIN, NCHW_COL_BUDGET / ((int64_t)sizeof(float) * s->k));
        const int64_t panels = CNNC_CEIL_DIV(s->ohw, fit);
        s->panel = CNNC_MIN(s->ohw, CNNC_ROUND_UP(CNNC_CEIL_DIV(s->ohw, panels), 16));
    }
    return CNNC_OK;
}

/* The context a convolution's steps run with: the caller's, or a one-thread copy for small problems
 * (every step would otherwise fork and join threads for a few microseconds of work). */
static cnnc_ctx conv_ctx(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const conv_shape *s) {
    cnnc_ctx c = *ctx;
    if (2.0 * (double)p->win.n * (double)s->ohw * (double)s->k * (double)p->cout < SMALL_FLOPS) c.nthreads = 1;
    return c;
}

/* NCHW: the column panel of pixels [q0, q0 + np) of one image (x = that image), ld = np; a whole-image
 * panel takes the whole-image im2col (fewer index computations per run). */
static int im2col_panel(const cnnc_ctx *ctx, const cnnc_window2d *one, const conv_shape *s, int64_t c0,
                        const float *x, int64_t q0, int64_t np, float *col) {
    if (np == s->ohw) return cnnc_im2col(ctx, one, c0, s->cg, x, col);
    return cnnc_im2col_nchw_pixels(ctx, one, c0, s->cg, x, q0, q0 + np, col, np);
}

static int64_t add_ok(int64_t a, int64_t b) { return (a < 0 || b < 0 || a > INT64_MAX - b) ? -1 : a + b; }

/* The column buffer: forward NCHW takes one panel, backward NCHW one whole image. */
static int64_t col_bytes(const cnnc_conv2d_params *p, const conv_shape *s, int backward) {
    if (s->pointwise) return 0;
    const int64_t rows = p->win.layout == CNNC_NHWC ? s->chunk * s->ohw : backward ? s->ohw : s->panel;
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

/* NCHW forward with few output pixels: the product transposed, y_g^T[P, Cout_g] = col^T[P, K] * w_g^T[K, Cout_g],
 * when that wastes less of the micro-kernel's tiles. The pixels P are the GEMM's columns otherwise, and
 * 7 x 7 = 49 of them fill 49 of 64 columns of NR = 16 tiles; as rows they fill 49 of 54 (MR = 6). The
 * tiles go to a buffer, transposed into y afterwards. Every element is the same dot product over k in
 * the same k blocks, so the result is the untransposed product's, bit for bit. */
static int nchw_transposed(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const conv_shape *s) {
    if (p->win.layout != CNNC_NCHW || cnnc_conv_direct_runs(ctx, p)) return 0;
    const int64_t mr = ctx->k.mr, nr = ctx->k.nr, P = s->panel;
    if (P < mr || s->cog < nr) return 0;
    const double normal = (double)CNNC_ROUND_UP(P, nr) * (double)CNNC_ROUND_UP(s->cog, mr);
    const double transposed = (double)CNNC_ROUND_UP(P, mr) * (double)CNNC_ROUND_UP(s->cog, nr);
    return transposed < 0.95 * normal;
}

/* NCHW forward, not pointwise: the threads that take whole panels, or 0 when the panels are too few to
 * share out evenly (fewer than 2 per thread and not a multiple of the threads) and the threads work
 * inside each panel's im2col and GEMM instead. */
static int nchw_panel_threads(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const conv_shape *s) {
    if (p->win.layout != CNNC_NCHW || s->pointwise || nchw_transposed(ctx, p, s)) return 0;
    const int64_t tasks = p->win.n * p->groups * CNNC_CEIL_DIV(s->ohw, s->panel);
    const int nt = cnnc_threads(ctx, tasks);
    return nt > 1 && (tasks >= 2 * (int64_t)nt || tasks % nt == 0) ? nt : 0;
}

/* The GEMM workspace of the NCHW panels for ctx: the largest over full and last panel. */
static int64_t nchw_panel_gemm_ws(const cnnc_ctx *ctx, const conv_shape *s) {
    const int64_t cols[2] = {s->panel, s->ohw - (CNNC_CEIL_DIV(s->ohw, s->panel) - 1) * s->panel};
    int64_t g = 0;
    for (int i = 0; i < 2; ++i) g = CNNC_MAX(g, cnnc_gemm_workspace_size(ctx, s->cog, cols[i], s->k));
    return g;
}

/* Bytes of one thread's slot when threads take whole panels: its column panel, then its GEMM workspace,
 * each a multiple of CNNC_ALIGN. -1 on overflow. */
static int64_t nchw_panel_slot(const cnnc_ctx *ctx, const conv_shape *s) {
    cnnc_ctx one = *ctx;
    one.nthreads = 1;
    const int64_t colb = cnnc_mul_ok(cnnc_mul_ok(s->panel, s->k), (int64_t)sizeof(float));
    const int64_t g = nchw_panel_gemm_ws(&one, s);
    if (colb < 0 || g < 0 || colb > INT64_MAX / 2 - CNNC_ALIGN || g > INT64_MAX / 2 - CNNC_ALIGN) return -1;
    return CNNC_ROUND_UP(colb, CNNC_ALIGN) + CNNC_ROUND_UP(g, CNNC_ALIGN);
}

int64_t cnnc_conv2d_workspace_size(const cnnc_ctx *caller, const cnnc_conv2d_params *p) {
    conv_shape s;
    if (!p || conv_shape_of(p, &s)) return -1;
    if (cnnc_winograd_applies(p)) return cnnc_winograd_workspace_size(caller, p);
    if (cnnc_conv_direct_runs(caller, p)) return cnnc_conv_direct_workspace_size(caller, p);
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    if (cnnc_conv_depthwise_applies(p)) return cnnc_conv_depthwise_workspace_size(ctx, p);
    /* the GEMM workspace is sized per shape (not monotonic): the largest over full and last chunk */
    int64_t g = 0;
    if (p->win.layout == CNNC_NHWC) {
        const int64_t rows[2] = {gemm_rows(p, &s), last_gemm_rows(p, &s)};
        for (int i = 0; i < 2; ++i) g = CNNC_MAX(g, cnnc_gemm_workspace_size(ctx, rows[i], s.cog, s.k));
    } else {
        const int pt = nchw_panel_threads(ctx, p, &s);
        if (pt) {
            const int64_t slot = nchw_panel_slot(ctx, &s);
            return slot < 0 ? -1 : add_ok(cnnc_mul_ok(slot, pt), CNNC_ALIGN);
        }
        if (nchw_transposed(ctx, p, &s)) { /* the GEMM (rows: pixels) and its transposed output */
            const int64_t last = s.ohw - (CNNC_CEIL_DIV(s.ohw, s.panel) - 1) * s.panel;
            g = CNNC_MAX(cnnc_gemm_workspace_size(ctx, s.panel, s.cog, s.k),
                         cnnc_gemm_workspace_size(ctx, last, s.cog, s.k));
            g = add_ok(g, add_ok(cnnc_mul_ok(cnnc_mul_ok(s.panel, s.cog), (int64_t)sizeof(float)), CNNC_ALIGN));
        } else {
            g = nchw_panel_gemm_ws(ctx, &s);
        }
    }
    return add_ok(col_bytes(p, &s, 0), g);
}

int64_t cnnc_conv2d_backward_workspace_size(const cnnc_ctx *caller, const cnnc_conv2d_params *p, int need_dx) {
    conv_shape s;
    if (!p || conv_shape_of(p, &s)) return -1;
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    if (cnnc_conv_depthwise_grad_applies(p)) return cnnc_conv_depthwise_backward_workspace_size(ctx, p, need_dx);
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
    const int64_t im2col_ws = add_ok(col_bytes(p, &s, 1), g);
    /* dw (with db) directly or by Winograd runs first, then dx by Winograd, then what remains through
     * im2col (db, dx, and dw when Winograd's came out non-finite), each in the same workspace. Without dx,
     * a direct dw leaves nothing for im2col. */
    const int dw_direct = cnnc_conv_dw_direct_applies(p);
    const int dx_winograd = need_dx && cnnc_winograd_data_grad_applies(p);
    int64_t need = dw_direct && (!need_dx || dx_winograd) ? 0 : im2col_ws;
    if (need >= 0 && dw_direct) {
        const int64_t dd = cnnc_conv_dw_direct_workspace_size(caller, p);
        need = dd < 0 ? -1 : CNNC_MAX(dd, need);
    }
    if (need >= 0 && cnnc_winograd_weight_grad_applies(p)) {
        const int64_t wg = cnnc_winograd_weight_grad_workspace_size(caller, p);
        need = wg < 0 ? -1 : CNNC_MAX(wg, need);
    }
    if (need >= 0 && dx_winograd) {
        const int64_t wg = cnnc_winograd_data_grad_workspace_size(caller, p);
        need = wg < 0 ? -1 : CNNC_MAX(wg, need);
    }
    return need;
}

/* ---- weights packed once ------------------------------------------------------------------------
 * The forward GEMMs' weight operand, per group, as cnnc_gemm_pack_a_all / _b_all lay it out for ctx's
 * kernel table: NCHW, w_g[Cout_g, K] is op(A) (MR-row panels); NHWC, w_g[K, Cout_g] (row stride Cout)
 * is op(B) (NR-column panels). Groups follow one another, each ROUND_UP(Cout_g, W) * K floats. */
static int nchw_weights_a(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const conv_shape *s) {
    return p->win.layout == CNNC_NCHW && !nchw_transposed(ctx, p, s);
}

/* 0 when no GEMM of this convolution would pack its weights: NCHW ones with too few output channels to
 * pack as A (the few-row GEMM reads them in place). Winograd's: its transformed weights, packed. */
int64_t cnnc_conv2d_packed_floats(const cnnc_ctx *caller, const cnnc_conv2d_params *p) {
    conv_shape s;
    if (!caller || !p || conv_shape_of(p, &s)) return -1;
    if (cnnc_winograd_applies(p)) return cnnc_winograd_packed_floats(caller, p);
    if (cnnc_conv_depthwise_applies(p)) return 0; /* read in place */
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    const int a = nchw_weights_a(ctx, p, &s);
    if (a && s.cog <= cnnc_gemm_small_for(&ctx->k).max_m) return 0;
    const int64_t per = cnnc_gemm_packed_floats(s.cog, s.k, a ? ctx->k.mr : ctx->k.nr);
    return cnnc_mul_ok(per, p->groups);
}

int64_t cnnc_conv2d_pack_scratch_floats(const cnnc_conv2d_params *p) {
    return p && cnnc_winograd_applies(p) ? cnnc_winograd_pack_scratch_floats(p) : 0;
}

int cnnc_conv2d_pack_weights(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *w, float *scratch,
                             float *dst) {
    conv_shape s;
    if (!ctx || !p || !w || !dst) return CNNC_EINVAL;
    int rc = conv_shape_of(p, &s);
    if (rc) return rc;
    if (cnnc_winograd_applies(p)) return cnnc_winograd_pack_weights(ctx, p, w, scratch, dst);
    if (cnnc_conv_depthwise_applies(p)) return CNNC_OK; /* nothing to pack */
    const int64_t G = p->groups, CO = p->cout;
    const int a = nchw_weights_a(ctx, p, &s), nchw = p->win.layout == CNNC_NCHW;
    const int64_t per = cnnc_gemm_packed_floats(s.cog, s.k, a ? ctx->k.mr : ctx->k.nr);
    for (int64_t g = 0; g < G; ++g) {
        if (a) cnnc_gemm_pack_a_all(&ctx->k, 0, s.cog, s.k, w + g * s.cog * s.k, s.k, dst + g * per);
        else if (nchw) cnnc_gemm_pack_b_all(&ctx->k, 1, s.k, s.cog, w + g * s.cog * s.k, s.k, dst + g * per);
        else cnnc_gemm_pack_b_all(&ctx->k, 0, s.k, s.cog, w + g * s.cog, CO, dst + g * per);
    }
    return CNNC_OK;
}

/* Group g's packed weights in wpk (NULL: none); a: they are the GEMM's A (NCHW, not transposed). */
static const float *packed_group(const cnnc_ctx *ctx, const float *wpk, const conv_shape *s, int a, int64_t g) {
    return wpk ? wpk + g * cnnc_gemm_packed_floats(s->cog, s->k, a ? ctx->k.mr : ctx->k.nr) : NULL;
}

/* NCHW forward, threads taking whole panels: the (image, group, panel) tasks, each an im2col and a
 * one-thread GEMM in the participant's own slot of the workspace. */
typedef struct {
    const cnnc_ctx *c1; /* one thread */
    const cnnc_window2d *one;
    const conv_shape *s;
    const float *x, *w, *wpk, *b, *res;
    cnnc_act act;
    float *y;
    char *base;
    int64_t slot, colslot, npan, G, CO;
    atomic_int err;
} panel_job;

static void panel_task(void *arg, int64_t lo, int64_t hi, int tid) {
    panel_job *j = (panel_job *)arg;
    const conv_shape *s = j->s;
    const cnnc_window2d *one = j->one;
    const int64_t G = j->G, npan = j->npan, CO = j->CO, chw = one->c * one->h * one->w;
    float *colt = (float *)(j->base + tid * j->slot);
    void *gwst = j->base + tid * j->slot + j->colslot;
    for (int64_t t = lo; t < hi; ++t) {
        const int64_t n = t / (G * npan), g = (t / npan) % G, q0 = (t % npan) * s->panel;
        const int64_t np = CNNC_MIN(s->panel, s->ohw - q0);
        int r = im2col_panel(j->c1, one, s, g * s->cg, j->x + n * chw, q0, np, colt);
        const int64_t yoff = (n * CO + g * s->cog) * s->ohw + q0;
        const cnnc_gemm_epilogue ep = {j->b ? j->b + g * s->cog : NULL, 1, j->act, j->res ? j->res + yoff : NULL,
                                       s->ohw};
        if (!r)
            r = cnnc_sgemm_pk(j->c1, 0, 0, s->cog, np, s->k, 1.0f, j->w + g * s->cog * s->k, s->k,
                              packed_group(j->c1, j->wpk, s, 1, g), colt, np, NULL, 0.0f,
                              j->y + yoff, s->ohw, gwst, j->slot - j->colslot, &ep);
        if (r) atomic_store_explicit(&j->err, r, memory_order_relaxed);
    }
}

/* The transposed NCHW GEMM's output t[np, Cout_g] (ld Cout_g) into y_g[:, q0:q0+np] (y and res point at
 * pixel q0 of the group's first plane, planes ohw apart): y = t^T, or act(t^T + res) with a residual. */
typedef struct {
    const float *t, *res;
    float *y;
    int64_t np, cog, ohw;
    cnnc_act act;
} transpose_job;

#define TRANSPOSE_BLOCK 16 /* output channels per item: a 64-byte run of each row of t */

static void transpose_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const transpose_job *j = (const transpose_job *)arg;
    (void)slot;
    const int64_t np = j->np, cog = j->cog, ohw = j->ohw;
    const int64_t c0 = lo * TRANSPOSE_BLOCK, c1 = CNNC_MIN(cog, hi * TRANSPOSE_BLOCK);
    for (int64_t cb = c0; cb < c1; cb += TRANSPOSE_BLOCK) {
        const int64_t ce = CNNC_MIN(c1, cb + TRANSPOSE_BLOCK);
        for (int64_t q = 0; q < np; ++q) {
            const float *restrict tq = j->t + q * cog;
            for (int64_t co = cb; co < ce; ++co) j->y[co * ohw + q] = tq[co];
        }
    }
    if (j->res) { /* the residual and the activation, as the GEMM epilogue applies them */
        const cnnc_gemm_epilogue ep = {NULL, 0, j->act, j->res, ohw};
        cnnc_gemm_epilogue_block(&ep, j->y, ohw, c0, c1 - c0, 0, np);
    }
}

static void transpose_out(const cnnc_ctx *ctx, int64_t np, int64_t cog, int64_t ohw, const float *t, float *y,
                          const float *res, cnnc_act act) {
    transpose_job j = {t, res, y, np, cog, ohw, act};
    const int64_t items = CNNC_CEIL_DIV(cog, TRANSPOSE_BLOCK);
    const int nt = (double)np * (double)cog < 16384.0 ? 1 : cnnc_threads(ctx, items);
    cnnc_parallel_for(ctx, nt, items, cnnc_grain(items, nt, 1), transpose_task, &j);
}

// y = act(conv(x, w) + b): NHWC x[N,H,W,C] w[KH,KW,C/g,Cout] -> y[N,OH,OW,Cout];
//                          NCHW x[N,C,H,W] w[Cout,C/g,KH,KW] -> y[N,Cout,OH,OW]
int cnnc_conv2d_forward(const cnnc_ctx *caller, const cnnc_conv2d_params *p, const float *x,
                        const float *w, const float *b, cnnc_act act, float *y, void *ws,
                        int64_t ws_size) {
    return cnnc_conv2d_forward_pk(caller, p, x, w, NULL, b, act, y, ws, ws_size);
}

int cnnc_conv2d_forward_pk(const cnnc_ctx *caller, const cnnc_conv2d_params *p, const float *x, const float *w,
                           const float *wpk, const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size) {
    return cnnc_conv2d_forward_res(caller, p, x, w, wpk, b, NULL, act, y, ws, ws_size);
}

/* y = max_pool(act(conv(x, w) + b)) over pkh x pkw windows (stride = window, no padding, floor): the
 * NHWC direct path computes the pooled rows straight from x, Winograd with 2x2 windows pools each tile
 * in its output transform; otherwise the convolution goes to the
 * workspace and is pooled from there. The same bits as the two ops. */
static int64_t pool_conv_bytes(const cnnc_conv2d_params *p) {
    int64_t oh, ow;
    if (cnnc_window2d_output(&p->win, &oh, &ow) != CNNC_OK) return -1;
    const int64_t n = cnnc_mul_ok(cnnc_mul_ok(cnnc_mul_ok(p->win.n, oh), ow), p->cout);
    return n < 0 || n > (INT64_MAX - 2 * CNNC_ALIGN) / (int64_t)sizeof(float) ? -1
                                                                             : n * (int64_t)sizeof(float) + CNNC_ALIGN;
}

int64_t cnnc_conv2d_pool_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw) {
    if (!ctx || !p) return -1;
    if (cnnc_winograd_pool_applies(p, pkh, pkw)) return cnnc_winograd_pool_workspace_size(ctx, p, pkh, pkw);
    if (cnnc_conv_direct_pool_runs(ctx, p, pkh, pkw)) return cnnc_conv_direct_workspace_size(ctx, p);
    const int64_t y = pool_conv_bytes(p), w = cnnc_conv2d_workspace_size(ctx, p);
    return y < 0 || w < 0 ? -1 : add_ok(y, w);
}

int cnnc_conv2d_forward_pool(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                             const float *x, const float *w, const float *b, cnnc_act act, float *y,
                             uint8_t *taps, void *ws, int64_t ws_size) {
    return cnnc_conv2d_forward_pool_pk(ctx, p, pkh, pkw, x, w, NULL, b, act, y, taps, ws, ws_size);
}

int cnnc_conv2d_forward_pool_pk(const cnnc_ctx *caller, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                const float *x, const float *w, const float *wpk, const float *b, cnnc_act act,
                                float *y, uint8_t *taps, void *ws, int64_t ws_size) {
    conv_shape s;
    if (!caller || !p || !x || !w || !y || !cnnc_act_valid(act) || pkh < 1 || pkw < 1 ||
        (taps && (pkh > CNNC_POOL_MAX_TAPS || pkw > CNNC_POOL_MAX_TAPS || pkh * pkw > CNNC_POOL_MAX_TAPS)))
        return CNNC_EINVAL;
    int rc = conv_shape_of(p, &s);
    if (rc) return rc;
    const int64_t need = cnnc_conv2d_pool_workspace_size(caller, p, pkh, pkw);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    if (cnnc_winograd_pool_applies(p, pkh, pkw))
        return cnnc_winograd_forward_pool_pk(caller, p, pkh, pkw, x, w, wpk, b, act, y, taps, ws, ws_size);
    const cnnc_ctx cc = conv_ctx(caller, p, &s);
    if (cnnc_conv_direct_pool_runs(&cc, p, pkh, pkw))
        return cnnc_conv_direct_pool_forward_pk(&cc, p, pkh, pkw, x, w, wpk, b, act, y, taps, ws, ws_size);
    const int64_t yb = pool_conv_bytes(p);
    float *conv = (float *)cnnc_align_ptr(ws);
    rc = cnnc_conv2d_forward_res(caller, p, x, w, wpk, b, NULL, act, conv, (char *)ws + yb, ws_size - yb);
    if (rc) return rc;
    cnnc_pool2d_params q = {{0}};
    q.win = p->win;
    q.win.h = s.oh;
    q.win.w = s.ow;
    q.win.c = p->cout;
    q.win.kh = pkh;
    q.win.kw = pkw;
    q.win.sh = pkh;
    q.win.sw = pkw;
    q.win.dh = q.win.dw = 1;
    q.win.pt = q.win.pb = q.win.pl = q.win.pr = 0;
    q.ceil_mode = 0;
    return taps ? cnnc_max_pool2d_forward_taps(caller, &q, conv, y, taps)
                : cnnc_max_pool2d_forward(caller, &q, conv, y, NULL);
}

/* y = act(y + res) over n elements: the residual add and the activation as the separate ops do them. */
static int add_res_act(const cnnc_ctx *ctx, int64_t n, const float *res, cnnc_act act, float *y) {
    for (int64_t i = 0; i < n; ++i) y[i] += res[i];
    return act.kind == CNNC_ACT_NONE ? CNNC_OK : cnnc_act_forward(ctx, act, n, y, y);
}

int cnnc_conv2d_forward_res(const cnnc_ctx *caller, const cnnc_conv2d_params *p, const float *x, const float *w,
                            const float *wpk, const float *b, const float *res, cnnc_act act, float *y, void *ws,
                            int64_t ws_size) {
    conv_shape s;
    if (!caller || !p || !x || !w || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    int rc = conv_shape_of(p, &s);
    if (rc) return rc;
    const cnnc_act none = {CNNC_ACT_NONE, 0.0f, 0.0f};
    const int64_t ysize = p->win.n * s.ohw * p->cout;
    if (cnnc_winograd_applies(p)) {
        rc = cnnc_winograd_forward_pk(caller, p, x, w, wpk, b, res ? none : act, y, ws, ws_size);
        return rc || !res ? rc : add_res_act(caller, ysize, res, act, y);
    }
    const cnnc_ctx cc = conv_ctx(caller, p, &s), *ctx = &cc;
    if (cnnc_conv_depthwise_applies(p)) return cnnc_conv_depthwise_forward(ctx, p, x, w, b, res, act, y, ws, ws_size);
    if (cnnc_conv_direct_runs(ctx, p)) {
        rc = cnnc_conv_direct_forward_pk(ctx, p, x, w, wpk, b, res ? none : act, y, ws, ws_size);
        return rc || !res ? rc : add_res_act(caller, ysize, res, act, y);
    }
    if (res && p->win.layout == CNNC_NHWC) { /* residual connections come from ONNX graphs: NCHW */
        rc = cnnc_conv2d_forward_res(caller, p, x, w, wpk, b, NULL, none, y, ws, ws_size);
        return rc ? rc : add_res_act(caller, ysize, res, act, y);
    }
    const int64_t need = cnnc_conv2d_workspace_size(caller, p);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    const cnnc_window2d *win = &p->win;
    const int64_t N = win->n, H = win->h, W = win->w, C = win->c, CO = p->cout, G = p->groups;
    const int64_t colb = col_bytes(p, &s, 0);
    float *col = (float *)cnnc_align_ptr(ws);
    void *gws = (char *)ws + colb;
    const int64_t gws_size = ws_size - colb;

    /* bias and activation: applied by the GEMMs to each output tile as it is finished (the group's
     * slice of the bias: per output column in NHWC, per output row in NCHW) */
    if (win->layout == CNNC_NHWC) {
        if (s.pointwise) {
            for (int64_t g = 0; g < G && !rc; ++g) {
                const cnnc_gemm_epilogue ep = {b ? b + g * s.cog : NULL, 0, act};
                rc = cnnc_sgemm_pk(ctx, 0, 0, N * H * W, s.cog, s.cg, 1.0f, x + g * s.cg, C, NULL, w + g * s.cog, CO,
                                   packed_group(ctx, wpk, &s, 0, g), 0.0f, y + g * s.cog, CO, gws, gws_size, &ep);
            }
        } else {
            for (int64_t n0 = 0; n0 < N && !rc; n0 += s.chunk) {
                cnnc_window2d cw = *win;
                cw.n = CNNC_MIN(s.chunk, N - n0);
                const int64_t m = cw.n * s.ohw;
                for (int64_t g = 0; g < G && !rc; ++g) {
                    const int64_t yoff = n0 * s.ohw * CO + g * s.cog;
                    const cnnc_gemm_epilogue ep = {b ? b + g * s.cog : NULL, 0, act};
                    rc = cnnc_im2col(ctx, &cw, g * s.cg, s.cg, x + n0 * H * W * C, col);
                    if (!rc)
                        rc = cnnc_sgemm_pk(ctx, 0, 0, m, s.cog, s.k, 1.0f, col, s.k, NULL, w + g * s.cog, CO,
                                           packed_group(ctx, wpk, &s, 0, g), 0.0f, y + yoff, CO, gws, gws_size,
                                           &ep);
                }
            }
        }
    } else if (nchw_panel_threads(ctx, p, &s)) {
        /* threads take whole panels: (image, group, panel) tasks, each im2col + a one-thread GEMM */
        cnnc_window2d one = *win;
        one.n = 1;
        cnnc_ctx c1 = *ctx;
        c1.nthreads = 1;
        const int pt = nchw_panel_threads(ctx, p, &s);
        const int64_t slot = nchw_panel_slot(ctx, &s);
        const int64_t colslot = CNNC_ROUND_UP(s.panel * s.k * (int64_t)sizeof(float), CNNC_ALIGN);
        const int64_t npan = CNNC_CEIL_DIV(s.ohw, s.panel), tasks = N * G * npan;
        panel_job j = {&c1, &one, &s, x, w, wpk, b, res, act, y, (char *)cnnc_align_ptr(ws), slot, colslot, npan, G, CO, CNNC_OK};
        cnnc_parallel_for(ctx, pt, tasks, 1, panel_task, &j);
        rc = atomic_load(&j.err);
    } else {
        cnnc_window2d one = *win;
        one.n = 1;
        /* transposed: the GEMM's output buffer, then the GEMM's workspace */
        const int tr = nchw_transposed(ctx, p, &s);
        float *tb = (float *)cnnc_align_ptr(gws);
        char *tws = (char *)tb + (tr ? s.panel * s.cog * (int64_t)sizeof(float) : 0);
        const int64_t tws_size = gws_size - (tws - (char *)gws);
        for (int64_t n = 0; n < N && !rc; ++n) {
            const float *xn = x + n * C * H * W;
            float *yn = y + n * CO * s.ohw;
            for (int64_t g = 0; g < G && !rc; ++g) {
                const float *wg = w + g * s.cog * s.k, *wgp = packed_group(ctx, wpk, &s, !tr, g);
                float *yg = yn + g * s.cog * s.ohw;
                const float *rg = res ? res + (n * CO + g * s.cog) * s.ohw : NULL;
                const cnnc_gemm_epilogue ep = {b ? b + g * s.cog : NULL, 1, act, rg, s.ohw};
                if (tr) { /* y_g^T = col^T * w_g^T into tb, then transposed into y */
                    const cnnc_gemm_epilogue ept = {ep.bias, 0, res ? none : act};
                    for (int64_t q0 = 0; q0 < s.ohw && !rc; q0 += s.panel) {
                        const int64_t np = CNNC_MIN(s.panel, s.ohw - q0);
                        const float *a = xn + g * s.cg * H * W + q0; /* pointwise: x_g is col (panel = ohw) */
                        int64_t lda = s.ohw;
                        if (!s.pointwise) {
                            rc = im2col_panel(ctx, &one, &s, g * s.cg, xn, q0, np, col);
                            a = col;
                            lda = np;
                        }
                        if (!rc)
                            rc = cnnc_sgemm_pk(ctx, 1, 1, np, s.cog, s.k, 1.0f, a, lda, NULL, wg, s.k, wgp, 0.0f, tb,
                                               s.cog, tws, tws_size, &ept);
                        if (!rc) transpose_out(ctx, np, s.cog, s.ohw, tb, yg + q0, rg ? rg + q0 : NULL, act);
                    }
                    continue;
                }
                if (s.pointwise) {
                    rc = cnnc_sgemm_pk(ctx, 0, 0, s.cog, s.ohw, s.k, 1.0f, wg, s.k, wgp, xn + g * s.cg * H * W,
                                       s.ohw, NULL, 0.0f, yg, s.ohw, gws, gws_size, &ep);
                    continue;
                }
                for (int64_t q0 = 0; q0 < s.ohw && !rc; q0 += s.panel) {
                    const int64_t np = CNNC_MIN(s.panel, s.ohw - q0);
                    const cnnc_gemm_epilogue epq = {ep.bias, 1, act, rg ? rg + q0 : NULL, s.ohw};
                    rc = im2col_panel(ctx, &one, &s, g * s.cg, xn, q0, np, col);
                    if (!rc)
                        rc = cnnc_sgemm_pk(ctx, 0, 0, s.cog, np, s.k, 1.0f, wg, s.k, wgp, col, np, NULL, 0.0f,
                                           yg + q0, s.ohw, gws, gws_size, &epq);
                }
            }
        }
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
    const int64_t need = cnnc_conv2d_backward_workspace_size(caller, p, dx != NULL);
    if (need < 0) return CNNC_EOVERFLOW;
    if ((dx || dw) && (!ws || ws_size < need)) return CNNC_EWORKSPACE;
    if (cnnc_conv_depthwise_grad_applies(p) && (dx || dw)) {
        rc = cnnc_conv_depthwise_backward(ctx, p, x, w, dy, dx, dw, db, ws, ws_size);
        if (rc || !db || dw) return rc;
        return cnnc_bias_grad_rows(ctx, p->win.n * s.ohw, p->cout, dy, db); /* dx only, and db */
    }
    if (dw && x && cnnc_conv_dw_direct_applies(p)) {
        rc = cnnc_conv_dw_direct(caller, p, x, dy, dw, db, ws, ws_size);
        if (rc) return rc;
        dw = db = NULL; /* done: what remains is dx */
    }
    if (dw && x && cnnc_winograd_weight_grad_applies(p)) {
        int finite = 0;
        rc = cnnc_winograd_weight_grad(caller, p, x, dy, dw, &finite, ws, ws_size);
        if (rc) return rc;
        if (finite) dw = NULL; /* done; otherwise computed again below, directly */
    }
    if (dx && cnnc_winograd_data_grad_applies(p)) {
        rc = cnnc_winograd_data_grad(caller, p, w, dy, dx, ws, ws_size);
        if (rc) return rc;
        dx = NULL; /* done: the loops below compute dw and db */
    }
    if (!dx && !dw && !db) return CNNC_OK; /* nothing left for im2col (whose workspace may be absent) */
    const cnnc_window2d *win = &p->win;
    const int64_t N = win->n, H = win->h, W = win->w, C = win->c, CO = p->cout, G = p->groups;
    const int64_t colb = col_bytes(p, &s, 1);
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
