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

static int geom_of(const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw, cnnc_pool_dx_geom *q) {
    const cnnc_window2d *w = &p->win;
    if (w->layout != CNNC_NHWC || p->groups != 1 || pkh < 1 || pkw < 1 || pkh > CNNC_POOL_MAX_TAPS ||
        pkw > CNNC_POOL_MAX_TAPS || pkh * pkw > CNNC_POOL_MAX_TAPS || p->cout < 1)
        return 0;
    int64_t oh, ow;
    if (cnnc_window2d_output(w, &oh, &ow) != CNNC_OK || pkh > oh || pkw > ow) return 0;
    /* the filter-sized block and the channel indices are per-thread scratch: bounded, so are the filters */
    if (w->kh * w->kw > PDX_MAX_FILTER || w->c > PDX_MAX_FILTER || w->kh * w->kw * w->c > PDX_MAX_FILTER ||
        p->cout > PDX_MAX_COUT)
        return 0;
    *q = (cnnc_pool_dx_geom){w->h, w->w, w->c, w->kh, w->kw, w->sh, w->sw, w->dh, w->dw, w->pt, w->pl,
                             oh, ow, p->cout, pkh, pkw, oh / pkh, ow / pkw};
    return 1;
}

/* The transposed filters wt, then per thread a filter-sized block f and cout + pkh * pkw channel indices. */
static int64_t slot_bytes(const cnnc_pool_dx_geom *q) {
    return CNNC_CEIL_DIV((q->kh * q->kw * q->cin + q->cout + q->pkh * q->pkw) * 4, CNNC_ALIGN) * CNNC_ALIGN;
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
    int32_t *idx = (int32_t *)(f + q->kh * q->kw * q->cin);
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
    /* wt[co][kh][kw][ci] = w[kh][kw][ci][co]; a non-finite weight would meet the zeros this path skips
     * (0 * inf is NaN in the dense sum): the caller then takes the dense path */
    float *wt = (float *)cnnc_align_ptr(ws);
    const int64_t CI = q.cin, CO = q.cout, taps_k = q.kh * q.kw;
    uint32_t nonfinite = 0;
    for (int64_t e = 0; e < taps_k; ++e)
        for (int64_t ci = 0; ci < CI; ++ci) {
            const float *src = w + (e * CI + ci) * CO;
            for (int64_t co = 0; co < CO; ++co) {
                uint32_t bits;
                memcpy(&bits, src + co, sizeof bits);
                nonfinite |= (bits & 0x7f800000u) == 0x7f800000u;
                wt[(co * taps_k + e) * CI + ci] = src[co];
            }
        }
    *finite = !nonfinite;
    if (nonfinite) return CNNC_OK;
    const int64_t n = p->win.n, nw = CI * CO * taps_k;
    pool_dx_job jb = {&q, g, wt, taps, dx, (char *)wt + CNNC_CEIL_DIV(nw * 4, CNNC_ALIGN) * CNNC_ALIGN,
                      cnnc_pool_dx_image_for(&ctx->k), 0};
    const int nt = cnnc_threads(ctx, n);
    cnnc_parallel_for(ctx, nt, n, cnnc_grain(n, nt, 1), pool_dx_task, &jb);
    return atomic_load(&jb.bad) ? CNNC_EINVAL : CNNC_OK;
}
