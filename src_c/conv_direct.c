/* conv_direct.c - forward convolutions with few input channels (an image network's first layer: 1 or 3
 * channels), without the column matrix. NCHW below; NHWC (the pixels as the GEMM's rows) further down.
 *
 * Such a convolution is the GEMM y_n[Cout, OH*OW] = w[Cout, K] * col[K, OH*OW] with a small depth
 * K = C*KH*KW (27 for a 3x3 RGB layer). Through im2col + cnnc_sgemm the column matrix is written, read
 * back and packed by the GEMM, and bias + activation then take another pass over y, which has left the
 * caches by then (64 channels of 111 x 111: 3 MB). Here a work item is a run of output pixels (flattened
 * oh * OW + ow, whole panels of the micro-kernel's NR columns): its panels of B are packed straight from x
 * into a buffer on the stack, then each block of MR output channels goes through all of them (MR output
 * planes written in long runs, which also suits a y that is not in cache) and gets its bias and
 * activation while those runs are in cache. The micro-kernel, packed panels and k blocks are those
 * cnnc_sgemm uses, so every output is the same sum in the same order, and bias and activation are
 * applied as conv.c does: the results are the im2col path's, bit for bit (bias and ReLU in the
 * micro-kernel's registers when K is one k block, as cnnc_sgemm applies them).
 *
 * Each work item is computed by one thread, so results do not depend on the thread count. */
#include "internal.h"

#define DIRECT_MAX_C 4   /* input channels at most */
#define DIRECT_MAX_K 256 /* taps C*KH*KW at most (two 16-pixel panels fit DIRECT_BUF) */
#define DIRECT_MAX_NR 16 /* micro-kernel tiles the stack buffers hold (every ISA table's so far) */
#define DIRECT_MAX_MR 16
#define DIRECT_BUF 8192  /* floats of packed B per work item, on the stack */

int cnnc_conv_direct_applies(const cnnc_conv2d_params *p) {
    const cnnc_window2d *w = &p->win;
    int64_t oh, ow;
    if ((w->layout != CNNC_NCHW && w->layout != CNNC_NHWC) || p->groups != 1 || p->cout < 1 || w->c < 1 ||
        w->c > DIRECT_MAX_C)
        return 0;
    if (w->kh < 1 || w->kw < 1 || w->kh > DIRECT_MAX_K || w->kw > DIRECT_MAX_K ||
        w->c * w->kh * w->kw > DIRECT_MAX_K)
        return 0;
    /* 1x1, stride 1, no padding: x already is the column matrix (conv.c's pointwise GEMM) */
    if (w->kh == 1 && w->kw == 1 && w->sh == 1 && w->sw == 1 && w->pt == 0 && w->pb == 0 && w->pl == 0 &&
        w->pr == 0)
        return 0;
    return cnnc_window2d_output(w, &oh, &ow) == CNNC_OK;
}

int cnnc_conv_direct_runs(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    /* NHWC: K in one of the table's k blocks (the micro-kernel takes all of it at once) */
    return ctx->k.nr <= DIRECT_MAX_NR && ctx->k.mr <= DIRECT_MAX_MR && 16 % ctx->k.nr == 0 &&
           cnnc_conv_direct_applies(p) &&
           (p->win.layout == CNNC_NCHW || p->win.c * p->win.kh * p->win.kw <= ctx->k.kc);
}

/* k blocks as cnnc_sgemm's plan: kc balanced over K (one block while K <= the table's kc). */
static int64_t direct_kc(const cnnc_ctx *ctx, int64_t k) { return CNNC_CEIL_DIV(k, CNNC_CEIL_DIV(k, ctx->k.kc)); }

/* The packed weights: ceil(Cout / MR) panels of MR x K (NCHW: A), or ceil(Cout / NR) panels of K x NR
 * (NHWC: B). */
int64_t cnnc_conv_direct_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    if (!ctx || !p || !cnnc_conv_direct_runs(ctx, p)) return -1;
    const int64_t k = p->win.c * p->win.kh * p->win.kw;
    const int64_t rows = p->win.layout == CNNC_NHWC ? CNNC_ROUND_UP(p->cout, ctx->k.nr)
                                                    : CNNC_ROUND_UP(p->cout, ctx->k.mr);
    const int64_t floats = cnnc_mul_ok(rows, k);
    if (floats < 0 || floats > (INT64_MAX - CNNC_ALIGN) / (int64_t)sizeof(float)) return -1;
    return floats * (int64_t)sizeof(float) + CNNC_ALIGN;
}

typedef struct {
    const cnnc_window2d *win;
    const cnnc_kernels *kt;
    int64_t cout, oh, ow, k, kc;
    const float *x, *ap, *b;
    cnnc_act act;
    float *y;
} direct_job;

/* d[j] = s[j * st], j < n; inlined with a constant st where it matters so the loop vectorises. */
static inline void gather_stride(float *restrict d, const float *restrict s, int64_t n, int64_t st) {
    for (int64_t j = 0; j < n; ++j) d[j] = s[j * st];
}

/* d[jj * ld + j] = s[j * st + jj], j < n, jj < kw: the kw taps of one window row; inlined with constant
 * kw and st, the loop over j vectorises (the taps share their loads). */
static inline void gather_taps(float *restrict d, int64_t ld, const float *restrict s, int64_t n, int64_t kw,
                               int64_t st) {
    for (int64_t j = 0; j < n; ++j)
        for (int64_t jj = 0; jj < kw; ++jj) d[jj * ld + j] = s[j * st + jj];
}

/* gather_taps for the first layers' common windows (undilated 3 wide at stride 1 or 2, 7 wide at stride
 * 2); 0 for any other. */
static int gather_row(const cnnc_window2d *q, float *restrict d, int64_t ld, const float *restrict s, int64_t n) {
    if (q->dw != 1) return 0;
    if (q->kw == 3 && q->sw == 1)
        gather_taps(d, ld, s, n, 3, 1);
    else if (q->kw == 3 && q->sw == 2)
        gather_taps(d, ld, s, n, 3, 2);
    else if (q->kw == 7 && q->sw == 2)
        gather_taps(d, ld, s, n, 7, 2);
    else
        return 0;
    return 1;
}

/* bp[t * NR + j] = tap t = (c, i, jj) of output pixel q0 + j (flattened oh * OW + ow) of image xn, j < nc;
 * 0 for a tap in the padding and for j >= nc. [lo[jj], hi[jj]): the output columns whose tap jj lies
 * inside the row. One run of pixels per output row the panel touches. */
static void pack_panel(const direct_job *jb, const float *restrict xn, int64_t q0, int64_t nc,
                       const int64_t *lo, const int64_t *hi, float *restrict bp) {
    const cnnc_window2d *q = jb->win;
    const int64_t nr = jb->kt->nr, sw = q->sw, taps = q->c * q->kh * q->kw;
    for (int64_t j0 = 0, oy = q0 / jb->ow, ox0 = q0 % jb->ow; j0 < nc; j0 += jb->ow - ox0, ++oy, ox0 = 0) {
        const int64_t len = CNNC_MIN(nc - j0, jb->ow - ox0); /* pixels j0.. of the panel: (oy, ox0..) */
        float *d = bp + j0;
        for (int64_t c = 0; c < q->c; ++c)
            for (int64_t i = 0; i < q->kh; ++i) {
                const int64_t ih = oy * q->sh - q->pt + i * q->dh;
                const float *xr = ih >= 0 && ih < q->h ? xn + (c * q->h + ih) * q->w : NULL;
                /* the whole run inside the row for every tap (lo falls, hi falls with jj): common windows
                 * in one loop */
                if (xr && ox0 >= lo[0] && ox0 + len <= hi[q->kw - 1] &&
                    gather_row(q, d, nr, xr + ox0 * sw - q->pl, len)) {
                    d += q->kw * nr;
                    continue;
                }
                for (int64_t jj = 0; jj < q->kw; ++jj, d += nr) {
                    /* d[0, len): zeros before a, x from a to e, zeros from e */
                    const int64_t a = xr ? CNNC_MAX(0, CNNC_MIN(len, lo[jj] - ox0)) : len;
                    const int64_t e = xr ? CNNC_MAX(a, CNNC_MIN(len, hi[jj] - ox0)) : len;
                    for (int64_t j = 0; j < a; ++j) d[j] = 0.0f;
                    if (e > a) {
                        const float *s = xr + (ox0 + a) * sw + jj * q->dw - q->pl;
                        if (sw == 1)
                            gather_stride(d + a, s, e - a, 1);
                        else if (sw == 2)
                            gather_stride(d + a, s, e - a, 2);
                        else
                            gather_stride(d + a, s, e - a, sw);
                    }
                    for (int64_t j = e; j < len; ++j) d[j] = 0.0f;
                }
            }
    }
    if (nc < nr)
        for (int64_t t = 0; t < taps; ++t)
            for (int64_t j = nc; j < nr; ++j) bp[t * nr + j] = 0.0f;
}

/* The micro-kernel on a tile of m x n outputs at c (row stride ldc). An edge tile (m < MR or n < NR)
 * goes through a full tile on the stack (the kernel's fast path; the same arithmetic), then its valid
 * part is copied. */
static void tile(const direct_job *jb, int64_t kcur, const float *ap, const float *bp, float *c, int64_t ldc,
                 int64_t m, int64_t n, const cnnc_gemm_params *params) {
    const cnnc_kernels *kt = jb->kt;
    if (m == kt->mr && n == kt->nr) {
        kt->gemm_ukernel(kcur, ap, bp, c, ldc, m, n, params);
        return;
    }
    float t[DIRECT_MAX_MR * DIRECT_MAX_NR];
    if (params->beta != 0.0f) { /* a later k block adds to c */
        memset(t, 0, sizeof t);
        for (int64_t i = 0; i < m; ++i) memcpy(t + i * kt->nr, c + i * ldc, (size_t)n * sizeof(float));
    }
    kt->gemm_ukernel(kcur, ap, bp, t, kt->nr, kt->mr, kt->nr, params);
    for (int64_t i = 0; i < m; ++i) memcpy(c + i * ldc, t + i * kt->nr, (size_t)n * sizeof(float));
}

/* Output pixels per work item: as many whole 16-pixel panels as DIRECT_BUF floats of packed B hold (a
 * multiple of every nr; a function of the shape only). */
static int64_t direct_pixels(int64_t k) { return CNNC_MAX(16, DIRECT_BUF / k / 16 * 16); }

/* Items [t0, t1): item t = the pixels [p0, p1) of image t / per_image (P = direct_pixels per item), all
 * output channels. Its panels of B are packed first; then each block of MR output channels runs over
 * all of them (MR output rows written in long runs) and gets its bias and activation. */
static void direct_items(const direct_job *jb, int64_t t0, int64_t t1) {
    const cnnc_window2d *q = jb->win;
    const int64_t mr = jb->kt->mr, nr = jb->kt->nr, K = jb->k, ohw = jb->oh * jb->ow, co = jb->cout;
    const int64_t P = direct_pixels(K), per_image = CNNC_CEIL_DIV(ohw, P);
    const cnnc_gemm_epilogue ep = {jb->b, 1, jb->act}; /* per output channel: a row of the GEMM */
    /* a bias and at most a relu on one k block: in the micro-kernel's registers, as cnnc_sgemm does */
    const int in_kernel = jb->kc >= K && (jb->act.kind == CNNC_ACT_NONE || jb->act.kind == CNNC_ACT_RELU);
    const int epi = cnnc_epilogue_active(&ep) && !in_kernel;
    float bp[DIRECT_BUF];
    int64_t lo[DIRECT_MAX_K], hi[DIRECT_MAX_K];
    for (int64_t jj = 0; jj < q->kw; ++jj) { /* ox with 0 <= ox * sw + off < w */
        const int64_t off = jj * q->dw - q->pl;
        const int64_t a = off >= 0 ? 0 : (-off + q->sw - 1) / q->sw;
        const int64_t b = q->w - off <= 0 ? 0 : (q->w - off - 1) / q->sw + 1;
        lo[jj] = CNNC_MIN(a, jb->ow);
        hi[jj] = CNNC_MAX(lo[jj], CNNC_MIN(b, jb->ow));
    }
    for (int64_t t = t0; t < t1; ++t) {
        const int64_t n = t / per_image, p0 = (t % per_image) * P, p1 = CNNC_MIN(ohw, p0 + P);
        const float *xn = jb->x + n * q->c * q->h * q->w;
        float *yn = jb->y + n * co * ohw; /* channel o, pixel p at yn[o * ohw + p] */
        for (int64_t q0 = p0; q0 < p1; q0 += nr)
            pack_panel(jb, xn, q0, CNNC_MIN(nr, p1 - q0), lo, hi, bp + (q0 - p0) * K);
        for (int64_t i = 0; i < co; i += mr) {
            const int64_t m = CNNC_MIN(mr, co - i);
            float brow[DIRECT_MAX_MR] = {0.0f}; /* the block's biases, zero-padded to MR rows */
            for (int64_t r = 0; r < m && in_kernel && jb->b; ++r) brow[r] = jb->b[i + r];
            for (int64_t pc = 0; pc < K; pc += jb->kc) { /* cnnc_sgemm's k blocks, in its order */
                const int64_t kcur = CNNC_MIN(jb->kc, K - pc);
                cnnc_gemm_params params = {1.0f, pc == 0 ? 0.0f : 1.0f};
                if (in_kernel) {
                    params.bias_row = jb->b ? brow : NULL;
                    params.relu = jb->act.kind == CNNC_ACT_RELU;
                }
                const float *ab = jb->ap + CNNC_ROUND_UP(co, mr) * pc + i * kcur;
                for (int64_t q0 = p0; q0 < p1; q0 += nr)
                    tile(jb, kcur, ab, bp + (q0 - p0) * K + pc * nr, yn + i * ohw + q0, ohw, m,
                         CNNC_MIN(nr, p1 - q0), &params);
            }
            if (epi) cnnc_gemm_epilogue_block(&ep, yn, ohw, i, m, p0, p1 - p0);
        }
    }
}

static void direct_task(void *arg, int64_t t0, int64_t t1, int slot) {
    (void)slot;
    direct_items((const direct_job *)arg, t0, t1);
}

/* ---- NHWC ------------------------------------------------------------------------------------------
 * y[pixels, Cout] = col[pixels, K] * w[K, Cout]: the output pixels (over the whole batch) are the GEMM's
 * rows. A work item is a run of NHWC_PIXELS pixels: their MR-row panels of A are packed straight from x
 * (K = KH*KW*C in im2col's order (kh, kw, c)), then multiplied with every NR-column panel of the packed
 * weights, K in one k block, bias and ReLU in the micro-kernel's registers (other activations on the
 * tile after it), as cnnc_sgemm computes each tile of the im2col GEMM: the same bits. */
#define NHWC_PIXELS 96 /* output pixels per work item at most (a multiple of MR; fewer when K is large) */

typedef struct {
    const cnnc_window2d *win;
    const cnnc_kernels *kt;
    int64_t cout, oh, ow, k, pix; /* pix: output pixels per work item, pix * K <= DIRECT_BUF */
    const float *x, *bp, *b;
    cnnc_act act;
    float *y;
} nhwc_job;

/* d[t * MR + i] = tap t of output pixel (oy, ox0 + i) of image xn, i < len (a run within one output row);
 * zero for taps in the padding. Per tap, the len pixels' values lie sw * C apart: a run when C == 1 and
 * sw == 1 (a constant-size copy for a whole 6-row panel). */
static void nhwc_pack_run(const nhwc_job *jb, const float *restrict xn, int64_t oy, int64_t ox0, int64_t len,
                          float *restrict d) {
    const cnnc_window2d *q = jb->win;
    const int64_t mr = jb->kt->mr, C = q->c, st = q->sw * C;
    for (int64_t kh = 0; kh < q->kh; ++kh) {
        const int64_t ih = oy * q->sh - q->pt + kh * q->dh;
        for (int64_t kw = 0; kw < q->kw; ++kw) {
            const int64_t iw0 = ox0 * q->sw - q->pl + kw * q->dw, iw1 = iw0 + (len - 1) * q->sw;
            if (ih < 0 || ih >= q->h || iw0 < 0 || iw1 >= q->w) { /* some of it in the padding */
                for (int64_t c = 0; c < C; ++c, d += mr)
                    for (int64_t i = 0; i < len; ++i) {
                        const int64_t iw = iw0 + i * q->sw;
                        d[i] = ih >= 0 && ih < q->h && iw >= 0 && iw < q->w ? xn[(ih * q->w + iw) * C + c] : 0.0f;
                    }
                continue;
            }
            const float *src = xn + (ih * q->w + iw0) * C;
            if (st == 1) { /* one channel, stride 1 */
                if (len == 6)
                    memcpy(d, src, 6 * sizeof(float));
                else
                    for (int64_t i = 0; i < len; ++i) d[i] = src[i];
                d += mr;
                continue;
            }
            for (int64_t c = 0; c < C; ++c, d += mr)
                for (int64_t i = 0; i < len; ++i) d[i] = src[i * st + c];
        }
    }
}

/* ap[t * MR + i] = tap t of output pixel q0 + i (i < m; zero rows past m): one run per output row the
 * panel touches. */
static void nhwc_pack_a(const nhwc_job *jb, int64_t q0, int64_t m, float *restrict ap) {
    const cnnc_window2d *q = jb->win;
    const int64_t mr = jb->kt->mr, ohw = jb->oh * jb->ow;
    int64_t n = q0 / ohw, oy = (q0 - n * ohw) / jb->ow, ox = q0 - n * ohw - oy * jb->ow;
    for (int64_t i0 = 0; i0 < m;) {
        const int64_t len = CNNC_MIN(m - i0, jb->ow - ox);
        nhwc_pack_run(jb, jb->x + n * q->h * q->w * q->c, oy, ox, len, ap + i0);
        i0 += len;
        ox = 0;
        if (++oy == jb->oh) {
            oy = 0;
            ++n;
        }
    }
    if (m < mr)
        for (int64_t t = 0; t < jb->k; ++t)
            for (int64_t i = m; i < mr; ++i) ap[t * mr + i] = 0.0f;
}

/* Output pixels [p0, p1) into out (pixel p0's row; ldc = Cout), ap: a work item's packed A. */
static void nhwc_range(const nhwc_job *jb, int64_t p0, int64_t p1, float *out, float *ap) {
    const cnnc_kernels *kt = jb->kt;
    const int64_t mr = kt->mr, nr = kt->nr, K = jb->k, co = jb->cout;
    const int in_kernel = jb->act.kind == CNNC_ACT_NONE || jb->act.kind == CNNC_ACT_RELU;
    const cnnc_gemm_epilogue ep = {jb->b, 0, jb->act}; /* per output channel: a column */
    for (int64_t q0 = p0; q0 < p1; q0 += mr)
        nhwc_pack_a(jb, q0, CNNC_MIN(mr, p1 - q0), ap + (q0 - p0) * K);
    for (int64_t j = 0; j < co; j += nr) {
        const int64_t n = CNNC_MIN(nr, co - j);
        cnnc_gemm_params params = {1.0f, 0.0f};
        if (in_kernel) {
            params.bias_col = jb->b ? jb->b + j : NULL;
            params.relu = jb->act.kind == CNNC_ACT_RELU;
        }
        for (int64_t q0 = p0; q0 < p1; q0 += mr) {
            const int64_t m = CNNC_MIN(mr, p1 - q0);
            kt->gemm_ukernel(K, ap + (q0 - p0) * K, jb->bp + j * K, out + (q0 - p0) * co + j, co, m, n, &params);
            if (!in_kernel) cnnc_gemm_epilogue_block(&ep, out, co, q0 - p0, m, j, n);
        }
    }
}

static void nhwc_task(void *arg, int64_t t0, int64_t t1, int slot) {
    const nhwc_job *jb = (const nhwc_job *)arg;
    (void)slot;
    const int64_t total = jb->win->n * jb->oh * jb->ow;
    float ap[DIRECT_BUF];
    for (int64_t t = t0; t < t1; ++t) {
        const int64_t p0 = t * jb->pix, p1 = CNNC_MIN(total, p0 + jb->pix);
        nhwc_range(jb, p0, p1, jb->y + p0 * jb->cout, ap);
    }
}

/* ---- NHWC with a max pool fused: the pool's windows (pkh x pkw, stride = window, no padding) over the
 * convolution's output, which is never written out. A work item is one pooled row (n, po): the pkh
 * convolution rows under it are computed into a buffer on the stack (nhwc_range: the bits of the
 * unfused convolution) and pooled from there, taps in (kh, kw) order with max_takes (the max pool's
 * choice, the first NaN, the first of equal values). Output rows and columns no window covers are not
 * computed at all. */
#define POOL_BAND 16384 /* floats of convolution output per work item at most */

typedef struct {
    nhwc_job c;
    int64_t pkh, pkw, ph, pw;
    float *y;      /* pooled [N, PH, PW, Cout] */
    uint8_t *taps; /* y's shape: each output's position in its window (NULL: not wanted) */
} nhwc_pool_job;

int cnnc_conv_direct_pool_runs(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw) {
    int64_t oh, ow;
    return p->win.layout == CNNC_NHWC && pkh >= 1 && pkw >= 1 && cnnc_conv_direct_runs(ctx, p) &&
           cnnc_window2d_output(&p->win, &oh, &ow) == CNNC_OK && pkh <= oh && pkw <= ow &&
           pkh * ow <= POOL_BAND / p->cout;
}

static void nhwc_pool_task(void *arg, int64_t t0, int64_t t1, int slot) {
    const nhwc_pool_job *jb = (const nhwc_pool_job *)arg;
    (void)slot;
    const int64_t co = jb->c.cout, ow = jb->c.ow, oh = jb->c.oh, pix = jb->c.pix;
    const int64_t pkh = jb->pkh, pkw = jb->pkw, ph = jb->ph, pw = jb->pw;
    float ap[DIRECT_BUF], band[POOL_BAND];
    const cnnc_pool2x2_fn pool2x2 = cnnc_pool2x2_for(jb->c.kt);
    for (int64_t t = t0; t < t1; ++t) {
        const int64_t ni = t / ph, po = t % ph;
        const int64_t b0 = (ni * oh + po * pkh) * ow, b1 = b0 + pkh * ow;
        for (int64_t p0 = b0; p0 < b1; p0 += pix)
            nhwc_range(&jb->c, p0, CNNC_MIN(b1, p0 + pix), band + (p0 - b0) * co, ap);
        const int64_t row = (ni * ph + po) * pw * co;
        float *yr = jb->y + row;
        uint8_t *tr = jb->taps ? jb->taps + row : NULL;
        /* 2x2 windows by pool2x2_window (one max instruction per tap unless a NaN is met); other
         * windows with max_takes, whose first NaN wins */
        if (pkh == 2 && pkw == 2) {
            for (int64_t pc = 0; pc < pw; ++pc) {
                const float *t = band + pc * 2 * co;
                pool2x2(t, t + co, t + ow * co, t + (ow + 1) * co, yr + pc * co, tr ? tr + pc * co : NULL, co);
            }
            continue;
        }
        for (int64_t pc = 0; pc < pw; ++pc) {
            float *restrict yo = yr + pc * co;
            uint8_t *restrict to = tr ? tr + pc * co : NULL;
            memcpy(yo, band + pc * pkw * co, (size_t)co * sizeof(float));
            if (to) memset(to, 0, (size_t)co);
            for (int64_t i = 0; i < pkh; ++i)
                for (int64_t j = i == 0; j < pkw; ++j) {
                    const float *restrict v = band + (i * ow + pc * pkw + j) * co;
                    if (!to) {
                        for (int64_t c = 0; c < co; ++c) yo[c] = select_f(max_takes(v[c], yo[c]), v[c], yo[c]);
                        continue;
                    }
                    const int32_t tap = (int32_t)(i * pkw + j);
                    for (int64_t c = 0; c < co; ++c) {
                        const int take = max_takes(v[c], yo[c]);
                        yo[c] = select_f(take, v[c], yo[c]);
                        to[c] = (uint8_t)select_i32(take, tap, to[c]);
                    }
                }
        }
    }
}

int cnnc_conv_direct_pool_forward_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                     const float *x, const float *w, const float *wpk, const float *b,
                                     cnnc_act act, float *y, uint8_t *taps, void *ws, int64_t ws_size) {
    if (!ctx || !p || !x || !w || !y || !cnnc_act_valid(act) || !cnnc_conv_direct_pool_runs(ctx, p, pkh, pkw) ||
        (taps && pkh * pkw > CNNC_POOL_MAX_TAPS))
        return CNNC_EINVAL;
    const int64_t need = cnnc_conv_direct_workspace_size(ctx, p);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    nhwc_pool_job jb = {{&p->win, &ctx->k, p->cout, 0, 0, p->win.c * p->win.kh * p->win.kw, 0, x, NULL, b, act, NULL},
                        pkh, pkw, 0, 0, y, taps};
    int rc = cnnc_window2d_output(&p->win, &jb.c.oh, &jb.c.ow);
    if (rc) return rc;
    jb.ph = jb.c.oh / pkh;
    jb.pw = jb.c.ow / pkw;
    const int64_t mr = ctx->k.mr;
    jb.c.pix = CNNC_MAX(mr, CNNC_MIN(NHWC_PIXELS, DIRECT_BUF / jb.c.k) / mr * mr);
    float *bp = (float *)cnnc_align_ptr(ws);
    if (!wpk) cnnc_gemm_pack_b_all(&ctx->k, 0, jb.c.k, p->cout, w, p->cout, bp);
    jb.c.bp = wpk ? wpk : bp;
    const int64_t items = p->win.n * jb.ph;
    const int nt = cnnc_threads(ctx, items);
    cnnc_parallel_for(ctx, nt, items, cnnc_grain(items, nt, 1), nhwc_pool_task, &jb);
    return CNNC_OK;
}

static int nhwc_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                        const float *wpk, const float *b, cnnc_act act, float *y, void *ws) {
    nhwc_job jb = {&p->win, &ctx->k, p->cout, 0, 0, p->win.c * p->win.kh * p->win.kw, 0, x, NULL, b, act, y};
    int rc = cnnc_window2d_output(&p->win, &jb.oh, &jb.ow);
    if (rc) return rc;
    const int64_t mr = ctx->k.mr;
    jb.pix = CNNC_MAX(mr, CNNC_MIN(NHWC_PIXELS, DIRECT_BUF / jb.k) / mr * mr); /* K <= 256: >= 30 pixels */
    /* the weights w[K, Cout] as cnnc_sgemm packs B (one k block): cnnc_gemm_pack_b_all's layout */
    float *bp = (float *)cnnc_align_ptr(ws);
    if (!wpk) cnnc_gemm_pack_b_all(&ctx->k, 0, jb.k, p->cout, w, p->cout, bp);
    jb.bp = wpk ? wpk : bp;
    const int64_t items = CNNC_CEIL_DIV(p->win.n * jb.oh * jb.ow, jb.pix);
    const int nt = cnnc_threads(ctx, items);
    cnnc_parallel_for(ctx, nt, items, cnnc_grain(items, nt, 1), nhwc_task, &jb);
    return CNNC_OK;
}

/* y = act(conv(x, w) + b) as conv.c computes it; cnnc_conv_direct_runs(ctx, p) must hold. */
int cnnc_conv_direct_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                             const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size) {
    return cnnc_conv_direct_forward_pk(ctx, p, x, w, NULL, b, act, y, ws, ws_size);
}

int cnnc_conv_direct_forward_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                                const float *wpk, const float *b, cnnc_act act, float *y, void *ws,
                                int64_t ws_size) {
    if (!ctx || !p || !x || !w || !y || !cnnc_act_valid(act) || !cnnc_conv_direct_runs(ctx, p))
        return CNNC_EINVAL;
    const int64_t need = cnnc_conv_direct_workspace_size(ctx, p);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    if (p->win.layout == CNNC_NHWC) return nhwc_forward(ctx, p, x, w, wpk, b, act, y, ws);
    direct_job jb = {&p->win, &ctx->k, p->cout, 0, 0, p->win.c * p->win.kh * p->win.kw, 0, x, NULL, b, act, y};
    int rc = cnnc_window2d_output(&p->win, &jb.oh, &jb.ow);
    if (rc) return rc;
    jb.kc = direct_kc(ctx, jb.k);
    /* the weights w[Cout, K] as cnnc_sgemm packs A: per k block, MR-row panels column by column. With
     * one k block that is cnnc_gemm_pack_a_all's layout: weights packed once (wpk) serve as they are. */
    float *ap = (float *)cnnc_align_ptr(ws);
    const int64_t mr = ctx->k.mr, rows = CNNC_ROUND_UP(p->cout, mr);
    const int prepacked = wpk && jb.kc == jb.k;
    for (int64_t pc = 0; pc < jb.k && !prepacked; pc += jb.kc) {
        const int64_t kcur = CNNC_MIN(jb.kc, jb.k - pc);
        float *blk = ap + rows * pc;
        for (int64_t i = 0; i < rows; ++i)
            for (int64_t t = 0; t < kcur; ++t)
                blk[(i / mr) * mr * kcur + t * mr + i % mr] = i < p->cout ? w[i * jb.k + pc + t] : 0.0f;
    }
    jb.ap = prepacked ? wpk : ap;
    const int64_t items = p->win.n * CNNC_CEIL_DIV(jb.oh * jb.ow, direct_pixels(jb.k));
    cnnc_parallel_for(ctx, cnnc_threads(ctx, items), items, 1, direct_task, &jb);
    return CNNC_OK;
}
