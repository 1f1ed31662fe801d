/* conv_pool_grad.c - the data gradient of a convolution whose output a max pool took (training runs the
 * two as one op, cnnc_conv2d_forward_pool): the gradient reaching the convolution's output is the
 * pooled gradient g at each window's chosen element (its tap) and zero elsewhere, so dx is a sum of
 * g-scaled filters over the chosen elements' input windows (arch/conv_pool_dx.h), skipping the zeros a
 * dense transposed convolution would multiply. Images run in parallel, each on one thread, so dx does
 * not depend on the thread count. */
#include "internal.h"

#include <stdatomic.h>

#define PDX_MAX_FILTER 16384 /* KH * KW * Cin */
#define PDX_MAX_COUT 8192
#define PDX_CB 64           /* output channels per block ...                                        */
#define PDX_EB 64           /* ... by at most this many filter elements: 16 KB of filters, in L1 ...  */
#define PDX_GROUP_INTS 8192 /* ... by a group of pooled outputs whose channel lists fill this many int32 */

static int geom_of(const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw, cnnc_pool_dx_geom *q) {
    const cnnc_window2d *w = &p->win;
    if (w->layout != CNNC_NHWC || p->groups != 1 || pkh < 1 || pkw < 1 || pkh > CNNC_POOL_MAX_TAPS ||
        pkw > CNNC_POOL_MAX_TAPS || pkh * pkw > CNNC_POOL_MAX_TAPS || p->cout < 1)
        return 0;
    int64_t oh, ow;
    if (cnnc_window2d_output(w, &oh, &ow) != CNNC_OK || pkh > oh || pkw > ow) return 0;
    /* the filters and the weight gradient's per-channel accumulators are copied whole into the
     * workspace: bounded */
    if (w->kh * w->kw > PDX_MAX_FILTER || w->c > PDX_MAX_FILTER || w->kh * w->kw * w->c > PDX_MAX_FILTER ||
        p->cout > PDX_MAX_COUT)
        return 0;
    *q = (cnnc_pool_dx_geom){w->h, w->w, w->c, w->kh, w->kw, w->sh, w->sw, w->dh, w->dw, w->pt, w->pl,
                             oh, ow, p->cout, pkh, pkw, oh / pkh, ow / pkw, CNNC_MIN(p->cout, PDX_CB),
                             CNNC_CEIL_DIV(w->kh * w->kw * w->c, PDX_EB), 1};
    q->pg = CNNC_MAX(1, CNNC_MIN(q->ph * q->pw, PDX_GROUP_INTS / (q->cb + 3 * pkh * pkw)));
    return 1;
}

/* The transposed filters wt, then per thread a block f and the channel lists of a group of outputs. */
static int64_t slot_bytes(const cnnc_pool_dx_geom *q) {
    return CNNC_CEIL_DIV((PDX_EB + q->pg * (q->cb + 3 * q->pkh * q->pkw)) * 4, CNNC_ALIGN) * CNNC_ALIGN;
}

int64_t cnnc_conv2d_pool_data_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh,
                                                   int64_t pkw) {
    cnnc_pool_dx_geom q;
    if (!ctx || !p || !geom_of(p, pkh, pkw, &q)) return -1;
    const int64_t n = q.cout * q.kh * q.kw * q.cin; /* bounded by geom_of */
    return CNNC_ALIGN + CNNC_CEIL_DIV(n * 4, CNNC_ALIGN) * CNNC_ALIGN + cnnc_threads(ctx, p->win.n) * slot_bytes(&q);
}

typedef struct {
    const cnnc_pool_dx_geom *q;
    const float *g, *wt;
    const uint8_t *taps;
    float *dx;
    char *scratch; /* slot_bytes per thread */
    cnnc_pool_dx_image_fn image;
    atomic_int bad;
} pool_dx_job;

static void pool_dx_task(void *arg, int64_t lo, int64_t hi, int slot) {
    pool_dx_job *jb = (pool_dx_job *)arg;
    const cnnc_pool_dx_geom *q = jb->q;
    const int64_t in = q->h * q->w * q->cin, out = q->ph * q->pw * q->cout;
    float *f = (float *)(jb->scratch + slot * slot_bytes(q));
    int32_t *idx = (int32_t *)(f + PDX_EB);
    for (int64_t n = lo; n < hi; ++n) {
        float *dx = jb->dx + n * in;
        memset(dx, 0, (size_t)in * sizeof(float));
        if (!jb->image(q, jb->g + n * out, jb->taps + n * out, jb->wt, dx, f, idx))
            atomic_store_explicit(&jb->bad, 1, memory_order_relaxed);
    }
}

int cnnc_conv2d_pool_data_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                               const float *w, const float *g, const uint8_t *taps, float *dx, int *finite,
                               void *ws, int64_t ws_size) {
    cnnc_pool_dx_geom q;
    if (!ctx || !p || !w || !g || !taps || !dx || !finite || !geom_of(p, pkh, pkw, &q)) return CNNC_EINVAL;
    const int64_t need = cnnc_conv2d_pool_data_grad_workspace_size(ctx, p, pkh, pkw);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    /* wt: the filters w[kh][kw][ci][co] as [co][kh][kw][ci], in blocks (arch/conv_pool_dx.h); a non-finite
     * weight would meet the zeros this path skips (0 * inf is NaN in the dense sum): the caller then takes
     * the dense path */
    float *wt = (float *)cnnc_align_ptr(ws);
    const int64_t CO = q.cout, filt = q.kh * q.kw * q.cin;
    uint32_t nonfinite = 0;
    for (int64_t c0 = 0; c0 < CO; c0 += q.cb) {
        const int64_t cn = CNNC_MIN(q.cb, CO - c0);
        for (int64_t k = 0; k < q.eb; ++k) {
            int64_t e0;
            const int64_t en = cnnc_pool_dx_block(filt, q.eb, k, &e0);
            float *dst = wt + c0 * filt + cn * e0;
            for (int64_t e = 0; e < en; ++e) {
                const float *src = w + (e0 + e) * CO + c0;
                for (int64_t c = 0; c < cn; ++c) {
                    uint32_t bits;
                    memcpy(&bits, src + c, sizeof bits);
                    nonfinite |= (bits & 0x7f800000u) == 0x7f800000u;
                    dst[c * en + e] = src[c];
                }
            }
        }
    }
    *finite = !nonfinite;
    if (nonfinite) return CNNC_OK;
    const int64_t n = p->win.n, nw = filt * CO;
    pool_dx_job jb = {&q, g, wt, taps, dx, (char *)wt + CNNC_CEIL_DIV(nw * 4, CNNC_ALIGN) * CNNC_ALIGN,
                      cnnc_pool_dx_image_for(&ctx->k), 0};
    const int nt = cnnc_threads(ctx, n);
    cnnc_parallel_for(ctx, nt, n, cnnc_grain(n, nt, 1), pool_dx_task, &jb);
    return atomic_load(&jb.bad) ? CNNC_EINVAL : CNNC_OK;
}

/* ---- the weight gradient -------------------------------------------------------------------------
 * dw[kh, kw, ci, co] is the sum over the pooled outputs (n, py, px, co) of g times the input under the
 * chosen element's window: only the chosen elements, a pkh * pkw-th of the convolution's outputs, where
 * a dense dw (im2col + GEMM, Winograd) multiplies every output's gradient, zeros included. For each
 * output channel, the chosen windows' entries (their offset into x and their g, zeros skipped) stream
 * through a tile of accumulators (arch/ukernels.h's pool_dw_tile) that holds a block of the channel's
 * [KH, KW, Cin] gradient: with dilation 1 in width one kernel row of a window is one span of KW * Cin
 * floats of x, read in place. Output channels are split over the threads, each summing its channels
 * over all images in order: dw does not depend on the thread count, and differs from the dense paths by
 * rounding only (the zeros they add change nothing). A non-finite input (which would meet those zeros:
 * 0 * inf is NaN in the dense sum) sets *finite = 0: take cnnc_conv2d_backward then. */

#define PDW_REGS 12           /* the tile's accumulator vectors (8 floats) */
#define PDW_MIN_ENTRIES 64    /* images per chunk: enough for this many pooled outputs per channel ... */
#define PDW_CHUNK_BYTES 16384 /* ... while their input stays within this many bytes (or one image) */

typedef struct {
    cnnc_pool_dx_geom q;
    int64_t n, nseg, seglen, lp, nvt;        /* kernel-row segments, their floats, rounded up to 8 */
    int64_t ns, nv, cb;                      /* the tile: segments, vectors per segment, channels */
    int64_t hp, wp;                          /* rows and columns of the image as read (padded copy or x) */
    int copy;                                /* read through a zero-padded copy (padding, or segments
                                                not a multiple of 8 floats, whose tiles read past them) */
    int64_t chunk, ppi;                      /* images per chunk; pooled outputs per image */
    int64_t row;                             /* floats of one channel's accumulators: nseg * lp */
} pdw_shape;

static int pdw_shape_of(const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw, pdw_shape *s) {
    if (!geom_of(p, pkh, pkw, &s->q) || pkh * pkw < 2) return 0;
    const cnnc_pool_dx_geom *q = &s->q;
    const cnnc_window2d *w = &p->win;
    s->n = w->n;
    const int64_t C = q->cin;
    s->nseg = q->dw == 1 ? q->kh : q->kh * q->kw; /* with dilation 1 in width a kernel row is one span */
    s->seglen = q->dw == 1 ? q->kw * C : C;
    s->lp = CNNC_ROUND_UP(s->seglen, 8);
    s->nvt = s->lp / 8;
    s->row = s->nseg * s->lp;
    /* the tile: up to 12 vectors of one segment; several segments of one vector each (equally spaced
     * when dilation is 1 in width), as many channels as the registers hold */
    s->ns = s->nvt == 1 && q->dw == 1 ? CNNC_MIN(s->nseg, PDW_REGS) : 1;
    s->nv = CNNC_MIN(s->nvt, PDW_REGS);
    s->cb = PDW_REGS / (s->ns * s->nv);
    s->copy = w->pt || w->pb || w->pl || w->pr || s->lp != s->seglen;
    /* what the pooled windows read: rows and columns from the top-left padding on */
    const int64_t rows = (q->ph * q->pkh - 1) * q->sh + (q->kh - 1) * q->dh + 1;
    const int64_t cols = (q->pw * q->pkw - 1) * q->sw + (q->kw - 1) * q->dw + 1;
    s->hp = s->copy ? rows : q->h;
    s->wp = s->copy ? cols : q->w;
    s->ppi = q->ph * q->pw;
    const int64_t img = cnnc_mul_ok(cnnc_mul_ok(s->hp, s->wp), C);
    if (img < 0 || img > INT64_MAX / 64 || s->ppi > INT64_MAX / 64) return 0;
    int64_t chunk = CNNC_CEIL_DIV(PDW_MIN_ENTRIES, s->ppi);
    chunk = CNNC_MIN(chunk, CNNC_MAX(1, PDW_CHUNK_BYTES / (img * 4)));
    s->chunk = CNNC_MAX(1, CNNC_MIN(chunk, w->n));
    return cnnc_mul_ok(s->chunk, img) >= 0 && cnnc_mul_ok(q->cout, s->row) >= 0 &&
           cnnc_mul_ok(s->chunk, s->ppi) >= 0;
}

/* Per thread: the padded chunk (with 8 floats to spare), the chunk's window offsets, the channels' db
 * sums, the taps' offsets. */
static int64_t pdw_slot_bytes(const pdw_shape *s) {
    int64_t b = s->copy ? CNNC_ROUND_UP((s->chunk * s->hp * s->wp * s->q.cin + 8) * 4, CNNC_ALIGN) : 0;
    return b + CNNC_ROUND_UP(s->chunk * s->ppi * 8, CNNC_ALIGN) + CNNC_ROUND_UP(s->q.cout * 8, CNNC_ALIGN) +
           CNNC_ROUND_UP(CNNC_POOL_MAX_TAPS * 8, CNNC_ALIGN);
}

static int pdw_threads(const cnnc_ctx *ctx, const pdw_shape *s) {
    return cnnc_threads(ctx, CNNC_CEIL_DIV(s->q.cout, CNNC_MIN(s->cb, 8)));
}

int64_t cnnc_conv2d_pool_weight_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh,
                                                     int64_t pkw) {
    pdw_shape s;
    if (!ctx || !p || !pdw_shape_of(p, pkh, pkw, &s)) return -1;
    const int64_t acc = CNNC_ROUND_UP(s.q.cout * s.row * 4, CNNC_ALIGN), slot = pdw_slot_bytes(&s);
    const int nt = pdw_threads(ctx, &s);
    if (slot > (INT64_MAX - acc) / 2 / nt) return -1;
    return CNNC_ALIGN + acc + nt * slot;
}

typedef struct {
    const pdw_shape *s;
    const cnnc_window2d *w;
    const float *x, *g;
    const uint8_t *taps;
    float *acc, *dw, *db;
    char *scratch;
    int64_t slot_bytes;
    cnnc_pool_dw_tile_fn tile;
} pdw_job;

/* Images [n0, n0 + nb) into buf: the rows and columns the windows read, padding as zeros. */
static void pdw_copy(const pdw_shape *s, const cnnc_window2d *w, const float *x, int64_t n0, int64_t nb, float *buf) {
    const int64_t C = s->q.cin, H = s->q.h, W = s->q.w;
    for (int64_t b = 0; b < nb; ++b)
        for (int64_t r = 0; r < s->hp; ++r) {
            const int64_t iy = r - w->pt;
            cnnc_pad_row(buf + (b * s->hp + r) * s->wp * C, iy < 0 || iy >= H ? NULL : x + ((n0 + b) * H + iy) * W * C,
                         s->wp, w->pl, W, C);
        }
    memset(buf + nb * s->hp * s->wp * C, 0, 8 * sizeof(float));
}

static void pdw_task(void *arg, int64_t lo, int64_t hi, int slot) {
    pdw_job *jb = (pdw_job *)arg;
    const pdw_shape *s = jb->s;
    const cnnc_pool_dx_geom *q = &s->q;
    const int64_t C = q->cin, CO = q->cout, ntaps = q->pkh * q->pkw;
    char *sp = jb->scratch + slot * jb->slot_bytes;
    float *buf = NULL;
    if (s->copy) {
        buf = (float *)sp;
        sp += CNNC_ROUND_UP((s->chunk * s->hp * s->wp * C + 8) * 4, CNNC_ALIGN);
    }
    int64_t *base = (int64_t *)sp;
    sp += CNNC_ROUND_UP(s->chunk * s->ppi * 8, CNNC_ALIGN);
    double *dbs = (double *)sp;
    sp += CNNC_ROUND_UP(CO * 8, CNNC_ALIGN);
    int64_t *tapoff = (int64_t *)sp;
    for (int64_t t = 0; t < ntaps; ++t) tapoff[t] = ((t / q->pkw) * q->sh * s->wp + (t % q->pkw) * q->sw) * C;
    for (int64_t co = lo; co < hi; ++co) dbs[co] = 0.0;
    memset(jb->acc + lo * s->row, 0, (size_t)((hi - lo) * s->row) * sizeof(float));
    const int64_t nblk = CNNC_CEIL_DIV(hi - lo, s->cb); /* the channels in blocks as even as they come */
    for (int64_t n0 = 0; n0 < s->n; n0 += s->chunk) {
        const int64_t nb = CNNC_MIN(s->chunk, s->n - n0), ne = nb * s->ppi;
        const float *xb = jb->x + n0 * q->h * q->w * C;
        if (s->copy) {
            pdw_copy(s, jb->w, jb->x, n0, nb, buf);
            xb = buf;
        }
        for (int64_t b = 0; b < nb; ++b)
            for (int64_t py = 0; py < q->ph; ++py)
                for (int64_t px = 0; px < q->pw; ++px)
                    base[(b * q->ph + py) * q->pw + px] =
                        ((b * s->hp + py * q->pkh * q->sh) * s->wp + px * q->pkw * q->sw) * C;
        const float *g = jb->g + n0 * s->ppi * CO;
        const uint8_t *tp = jb->taps + n0 * s->ppi * CO;
        for (int64_t e = 0; e < ne; ++e)
            for (int64_t co = lo; co < hi; ++co) dbs[co] += g[e * CO + co];
        for (int64_t k = 0; k < nblk; ++k) {
            const int64_t c0 = lo + k * (hi - lo) / nblk, cb = lo + (k + 1) * (hi - lo) / nblk - c0;
            cnnc_pool_dw_tile t = {s->ns, s->nv, cb, ne, CO, q->dh * s->wp * C, s->row, s->lp,
                                   base, tapoff, tp + c0, g + c0, NULL, NULL};
            for (int64_t e = 0; e < s->nseg; e += s->ns) {
                t.ns = CNNC_MIN(s->ns, s->nseg - e);
                const int64_t kh = q->dw == 1 ? e : e / q->kw, kw = q->dw == 1 ? 0 : e % q->kw;
                for (int64_t v = 0; v < s->nvt; v += s->nv) {
                    t.nv = CNNC_MIN(s->nv, s->nvt - v);
                    t.x = xb + (kh * q->dh * s->wp + kw * q->dw) * C + 8 * v;
                    t.acc = jb->acc + c0 * s->row + e * s->lp + 8 * v;
                    if (!jb->tile(&t)) cnnc_f32_pool_dw_tile__generic(&t); /* not taken: the shapes
                                                                               above are the AVX2 kernel's */
                }
            }
        }
    }
    /* the channels' columns of dw ([KH, KW, Cin, Cout]: segment e, float l is row e * seglen + l) */
    for (int64_t co = lo; co < hi; ++co) {
        const float *a = jb->acc + co * s->row;
        for (int64_t e = 0; e < s->nseg; ++e)
            for (int64_t l = 0; l < s->seglen; ++l) jb->dw[(e * s->seglen + l) * CO + co] = a[e * s->lp + l];
        if (jb->db) jb->db[co] = (float)dbs[co];
    }
}

typedef struct {
    const float *x;
    const uint8_t *taps;
    int64_t img, out, ntaps;
    atomic_int nonfinite, badtap;
} pdw_scan_job;

/* The images' inputs all finite, their taps all inside the window. */
static void pdw_scan_task(void *arg, int64_t lo, int64_t hi, int slot) {
    pdw_scan_job *jb = (pdw_scan_job *)arg;
    (void)slot;
    const uint32_t *u = (const uint32_t *)(const void *)(jb->x + lo * jb->img);
    int64_t n = (hi - lo) * jb->img;
    uint32_t bad = 0;
    for (int64_t i = 0; i < n; ++i) bad |= (~u[i] & 0x7f800000u) == 0; /* exponent all ones */
    if (bad) atomic_store_explicit(&jb->nonfinite, 1, memory_order_relaxed);
    const uint8_t *t = jb->taps + lo * jb->out;
    n = (hi - lo) * jb->out;
    uint8_t most = 0;
    for (int64_t i = 0; i < n; ++i) most = t[i] > most ? t[i] : most;
    if (most >= jb->ntaps) atomic_store_explicit(&jb->badtap, 1, memory_order_relaxed);
}

int cnnc_conv2d_pool_weight_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                 const float *x, const float *g, const uint8_t *taps, float *dw, float *db,
                                 int *finite, void *ws, int64_t ws_size) {
    pdw_shape s;
    if (!ctx || !p || !x || !g || !taps || !dw || !finite || !pdw_shape_of(p, pkh, pkw, &s)) return CNNC_EINVAL;
    const int64_t need = cnnc_conv2d_pool_weight_grad_workspace_size(ctx, p, pkh, pkw);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    const int64_t img = s.q.h * s.q.w * s.q.cin;
    pdw_scan_job sj = {x, taps, img, s.ppi * s.q.cout, pkh * pkw, 0, 0};
    const int ns = cnnc_threads(ctx, s.n * img / 65536 + 1);
    cnnc_parallel_for(ctx, ns, s.n, cnnc_grain(s.n, ns, 1), pdw_scan_task, &sj);
    if (atomic_load(&sj.badtap)) return CNNC_EINVAL;
    *finite = !atomic_load(&sj.nonfinite);
    if (!*finite) return CNNC_OK;
    float *acc = (float *)cnnc_align_ptr(ws);
    pdw_job jb = {&s, &p->win, x, g, taps, acc, dw, db,
                  (char *)acc + CNNC_ROUND_UP(s.q.cout * s.row * 4, CNNC_ALIGN), pdw_slot_bytes(&s),
                  cnnc_pool_dw_tile_for(&ctx->k)};
    /* one contiguous range of channels per thread: each reads every image once */
    const int nt = pdw_threads(ctx, &s);
    cnnc_parallel_for(ctx, nt, s.q.cout, CNNC_CEIL_DIV(s.q.cout, nt), pdw_task, &jb);
    return CNNC_OK;
}
