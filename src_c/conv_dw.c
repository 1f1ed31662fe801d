/* conv_dw.c - the weight gradient of a convolution with few taps (an image network's first layer:
 * 1 or 3 input channels), without the column matrix.
 *
 * Through im2col + GEMM, dw[K, Cout] = col^T dy writes the column matrix (K floats per output pixel),
 * then the GEMM packs both it and dy, for a product with only K <= 32 rows: the copies cost more than
 * the arithmetic. Here each output row of each image goes once through a row kernel (arch/conv_dw.h)
 * that keeps up to nine taps' sums of eight output channels in registers, reading dy in place and the
 * input row through a zero-padded copy of its KH input rows; db is summed in the same pass.
 *
 * Determinism: the N*OH output rows are split into DW_GROUPS fixed groups (a function of the shape
 * only); a group's rows are summed in order into its own slot by one thread, and the slots are added in
 * group order. The result does not depend on the thread count. It differs from im2col + GEMM by rounding
 * (another order of the same sums). Padding is read as zeros and multiplied like any input, so
 * infinities and NaNs in dy propagate as in the direct sum. */
#include "internal.h"

#include <string.h>

#define DW_MAX_C 4     /* input channels at most */
#define DW_MAX_K 32    /* taps C*KH*KW at most: measured (1 thread, batch 64), 9, 25 and 27 taps ran
                          1.2-2.3x faster than im2col + GEMM, 49 (7x7x1 -> 64) 1.3x slower */
#define DW_GROUPS 64   /* fixed groups of output rows (fewer when there are fewer rows) */

typedef struct {
    int64_t oh, ow, k, groups, wp, slot; /* wp: floats of one padded input row; slot: floats per group */
} dw_shape;

static int dw_shape_of(const cnnc_conv2d_params *p, dw_shape *s) {
    const cnnc_window2d *w = &p->win;
    if (w->layout != CNNC_NHWC || p->groups != 1 || w->c > DW_MAX_C) return 0;
    if (cnnc_window2d_output(w, &s->oh, &s->ow)) return 0;
    if (w->kh * w->kw > DW_MAX_K || w->kh * w->kw * w->c > DW_MAX_K) return 0;
    s->k = w->kh * w->kw * w->c;
    const int64_t rows = cnnc_mul_ok(w->n, s->oh);
    if (rows < 0 || p->cout > INT64_MAX / (8 * (DW_MAX_K + 1) * DW_GROUPS)) return 0;
    s->groups = CNNC_MIN(rows, DW_GROUPS);
    /* the padded row: every input column the windows read, (OW - 1) * sw + (KW - 1) * dw + 1 of them */
    const int64_t cols = (s->ow - 1) * w->sw + (w->kw - 1) * w->dw + 1;
    if (cols > INT64_MAX / (8 * DW_MAX_C * 16)) return 0;
    s->wp = cols * w->c;
    s->slot = (s->k + 1) * p->cout;
    return 1;
}

int cnnc_conv_dw_direct_applies(const cnnc_conv2d_params *p) {
    dw_shape s;
    return p && dw_shape_of(p, &s);
}

/* The slots (groups x slot floats), then each thread's padded rows (KH x wp floats), each part aligned. */
static int64_t dw_rows_bytes(const cnnc_conv2d_params *p, const dw_shape *s) {
    return CNNC_ROUND_UP(p->win.kh * s->wp * (int64_t)sizeof(float), CNNC_ALIGN);
}

int64_t cnnc_conv_dw_direct_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    dw_shape s;
    if (!ctx || !p || !dw_shape_of(p, &s)) return -1;
    const int64_t slots = CNNC_ROUND_UP(s.groups * s.slot * (int64_t)sizeof(float), CNNC_ALIGN);
    return CNNC_ALIGN + slots + dw_rows_bytes(p, &s) * cnnc_threads(ctx, s.groups);
}

typedef struct {
    const cnnc_conv2d_params *p;
    const dw_shape *s;
    const float *x, *dy;
    float *slots;
    char *rows;
    int64_t rows_bytes;
    cnnc_conv_dw_row_fn row;
} dw_job;

static void dw_group_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const dw_job *jb = (const dw_job *)arg;
    const cnnc_window2d *w = &jb->p->win;
    const dw_shape *s = jb->s;
    const int64_t C = w->c, H = w->h, W = w->w, CO = jb->p->cout, KH = w->kh, KW = w->kw;
    const int64_t rows = w->n * s->oh, cols = s->wp / C;
    float *buf = (float *)(jb->rows + slot * jb->rows_bytes);
    const float *xt[DW_MAX_K];
    for (int64_t kh = 0; kh < KH; ++kh)
        for (int64_t kw = 0; kw < KW; ++kw)
            for (int64_t c = 0; c < C; ++c) xt[(kh * KW + kw) * C + c] = buf + kh * s->wp + kw * w->dw * C + c;
    for (int64_t g = lo; g < hi; ++g) {
        float *acc = jb->slots + g * s->slot;
        memset(acc, 0, (size_t)s->slot * sizeof(float));
        const int64_t r0 = g * rows / s->groups, r1 = (g + 1) * rows / s->groups;
        for (int64_t r = r0; r < r1; ++r) {
            const int64_t n = r / s->oh, oy = r % s->oh;
            for (int64_t kh = 0; kh < KH; ++kh) { /* input row oy*sh - pt + kh*dh, columns from -pl */
                const int64_t iy = oy * w->sh - w->pt + kh * w->dh;
                cnnc_pad_row(buf + kh * s->wp, iy < 0 || iy >= H ? NULL : jb->x + (n * H + iy) * W * C, cols,
                             w->pl, W, C);
            }
            jb->row(xt, w->sw * C, s->k, jb->dy + r * s->ow * CO, s->ow, CO, acc);
        }
    }
}

typedef struct {
    const dw_shape *s;
    const float *slots;
    float *dw, *db;
    int64_t k, co;
} dw_sum_job;

static void dw_sum_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const dw_sum_job *jb = (const dw_sum_job *)arg;
    (void)slot;
    const int64_t kco = jb->k * jb->co;
    for (int64_t i = lo; i < hi; ++i) {
        float t = 0.0f;
        for (int64_t g = 0; g < jb->s->groups; ++g) t += jb->slots[g * jb->s->slot + i];
        if (i < kco)
            jb->dw[i] = t;
        else if (jb->db)
            jb->db[i - kco] = t;
    }
}

int cnnc_conv_dw_direct(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *dy,
                        float *dw, float *db, void *ws, int64_t ws_size) {
    dw_shape s;
    if (!ctx || !p || !x || !dy || !dw || !dw_shape_of(p, &s)) return CNNC_EINVAL;
    const int64_t need = cnnc_conv_dw_direct_workspace_size(ctx, p);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    float *slots = (float *)cnnc_align_ptr(ws);
    char *rows = (char *)slots + CNNC_ROUND_UP(s.groups * s.slot * (int64_t)sizeof(float), CNNC_ALIGN);
    const int nt = cnnc_threads(ctx, s.groups);
    dw_job jb = {p, &s, x, dy, slots, rows, dw_rows_bytes(p, &s), cnnc_conv_dw_row_for(&ctx->k)};
    cnnc_parallel_for(ctx, nt, s.groups, 1, dw_group_task, &jb);
    dw_sum_job sj = {&s, slots, dw, db, s.k, p->cout};
    const int64_t total = s.slot;
    const int ns = cnnc_threads(ctx, total / 1024 + 1);
    cnnc_parallel_for(ctx, ns, total, cnnc_grain(total, ns, 256), dw_sum_task, &sj);
    return CNNC_OK;
}
