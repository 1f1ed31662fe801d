/* winograd.c - 3x3, stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3).
 *
 * Each 2x2 block of outputs ("tile") comes from a 4x4 block of input: with the transforms
 *   U = G g G^T (weights, 4x4 per input/output channel pair), V = B^T d B (input, 4x4 per tile and
 *   channel), y = A^T [U . V] A,
 * the 36 multiplications per tile and channel pair of a direct 3x3 convolution become 16, and the sum
 * over input channels of U . V is 16 independent GEMMs (one per position xi of the 4x4 block):
 *   M_xi[tiles, Cout] = V_xi[tiles, Cin] * U_xi[Cin, Cout].
 * Tiles are processed in chunks whose V and M stay under WG_BUDGET bytes (but of at least WG_MIN_CHUNK
 * tiles: each chunk's GEMMs repack U); the weight transform is done once per call. Both layouts use
 * the same GEMM orientation (the transforms gather and scatter). The data gradient of such a
 * convolution is one too (flipped, transposed filters, padding 2 - p): cnnc_winograd_data_grad.
 * Every output element is computed by one thread in a fixed order, so results do not depend on the
 * thread count; they differ from im2col + GEMM by rounding: the error is a few float32 ulps of the
 * largest |input| x |weight| products of the tile's 4x4 input block (not only of each output's own 3x3
 * window). The transforms would spread an infinity or NaN of the block to all four outputs of the tile
 * (inf - inf): a tile whose block holds one (seen as a non-finite sum of its transformed values, which
 * also catches the rare block whose transform overflows) is recomputed directly, so non-finite values
 * propagate exactly as in a direct convolution.
 * With a 2x2 max pool fused (cnnc_winograd_forward_pool_pk), each tile is one of the pool's windows:
 * the output transform pools its four outputs, and the tiles no window covers are not computed.
 * The per-tile transforms are arch/winograd_tx.h's, built per ISA.
 *
 * G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1], B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1],
 * A^T = [1 1 1 0; 0 1 -1 -1]. */
#include "winograd.h"
#include "arch/winograd_tx.h" /* WG_CB */

#include <stdatomic.h>

#define WG_BUDGET ((int64_t)2 << 20) /* bytes of V + M per chunk of tiles */
#define WG_MIN_CHUNK 128             /* tiles per chunk at least, whatever the budget */
#define WG_MIN_TILES 64               /* fewer tiles: the weight transform would not pay for itself */
#define WG_MIN_CHANNELS 16           /* output channels */
#define WG_MIN_IN_CHANNELS 32        /* measured: 16 -> 64 on 55x55 ran 1.07x (1 thread) to 1.4x (2) slower
                                        than im2col, 32 -> 128 on 27x27 1.15-1.3x faster */
#define WG_MIN_GRAD_CHANNELS 64       /* the data gradient: below, im2col was as fast or faster */
#define WG_MIN_FILL 0.7               /* outputs / (4 x tiles): below, too much of each tile is wasted */
#define CB WG_CB /* channels per block in the transforms (arch/winograd_tx.h) */

typedef struct {
    int64_t oh, ow, th, tw, tiles, cin, cout, chunk;
    int pool; /* 1: a 2x2 max pool follows, fused (tiles over the pooled windows only; NHWC) */
} wg_shape;

/* Tiles per chunk: V and M within the budget, but at least WG_MIN_CHUNK tiles (the GEMMs repack U per
 * chunk), balanced over the chunks. */
static void wg_set_chunk(wg_shape *s) {
    const int64_t per_tile = 16 * 4 * (s->cin + s->cout), tiles = CNNC_MAX(s->tiles, 1);
    s->chunk = CNNC_MIN(tiles, CNNC_MAX(WG_MIN_CHUNK, WG_BUDGET / per_tile));
    s->chunk = CNNC_CEIL_DIV(tiles, CNNC_CEIL_DIV(tiles, s->chunk)); /* even chunks */
}

/* The shape of a convolution Winograd runs, or 0 when it does not apply. */
static int wg_shape_of(const cnnc_conv2d_params *p, wg_shape *s) {
    const cnnc_window2d *w = &p->win;
    if (p->groups != 1 || w->kh != 3 || w->kw != 3 || w->sh != 1 || w->sw != 1 || w->dh != 1 || w->dw != 1)
        return 0;
    if (w->c < WG_MIN_IN_CHANNELS || p->cout < WG_MIN_CHANNELS) return 0;
    if (cnnc_window2d_output(w, &s->oh, &s->ow)) return 0;
    s->th = CNNC_CEIL_DIV(s->oh, 2);
    s->tw = CNNC_CEIL_DIV(s->ow, 2);
    s->cin = w->c;
    s->cout = p->cout;
    if (cnnc_mul_ok(cnnc_mul_ok(w->n, s->th), s->tw) < 0) return 0;
    s->tiles = w->n * s->th * s->tw;
    if (s->tiles < WG_MIN_TILES) return 0;
    /* measured (1 thread, batch 64): a 3x3 output (4 tiles for 9 outputs) ran 1.2x slower than im2col
     * forward and 1.8x in the gradient; 7x7 (0.77) and 11x11 (0.84) ran faster */
    if ((double)s->oh * (double)s->ow < WG_MIN_FILL * 4.0 * (double)s->th * (double)s->tw) return 0;
    /* bytes checked for overflow: U, and one tile's V + M */
    if (cnnc_mul_ok(cnnc_mul_ok(16 * 4, s->cin), s->cout) < 0 || s->cin + s->cout > INT64_MAX / 64) return 0;
    s->pool = 0;
    wg_set_chunk(s);
    return 1;
}

/* The shape of convolution p with a 2x2 max pool (stride 2, no padding, floor) fused: the convolution
 * is Winograd's (the rule above, on the convolution alone, so the fused op runs exactly when the
 * separate convolution would), NHWC. F(2x2, 3x3)'s tiles are the pool's windows; the tiles of the
 * last row or column of an odd-sized output lie outside every window and are not computed. */
static int wg_pool_shape_of(const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw, wg_shape *s) {
    if (p->win.layout != CNNC_NHWC || pkh != 2 || pkw != 2 || !wg_shape_of(p, s)) return 0;
    s->th = s->oh / 2;
    s->tw = s->ow / 2;
    s->tiles = p->win.n * s->th * s->tw;
    s->pool = 1;
    wg_set_chunk(s);
    return 1;
}

int cnnc_winograd_pool_applies(const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw) {
    wg_shape s;
    return p && wg_pool_shape_of(p, pkh, pkw, &s);
}

int cnnc_winograd_applies(const cnnc_conv2d_params *p) {
    wg_shape s;
    return p && wg_shape_of(p, &s);
}

int cnnc_conv2d_algorithm(const cnnc_conv2d_params *p) {
    if (cnnc_winograd_applies(p)) return CNNC_CONV_WINOGRAD;
    if (p && cnnc_conv_depthwise_applies(p)) return CNNC_CONV_DEPTHWISE;
    return p && cnnc_conv_direct_applies(p) ? CNNC_CONV_DIRECT : CNNC_CONV_IM2COL;
}

static int64_t align_up(int64_t n) { return CNNC_ROUND_UP(n, CNNC_ALIGN); }

/* Bytes of U, V, M and the per-tile non-finite flags (each CNNC_ALIGN-aligned); the GEMM's workspace
 * follows them. */
static void wg_parts(const wg_shape *s, int64_t *u, int64_t *v, int64_t *m, int64_t *f) {
    *u = align_up(16 * 4 * s->cin * s->cout);
    *v = align_up(16 * 4 * s->chunk * s->cin);
    *m = align_up(16 * 4 * s->chunk * s->cout);
    *f = align_up(s->chunk);
}

/* The 16 GEMMs of a chunk run side by side, one thread each (a GEMM of a chunk is small: split over
 * threads, its packing and tile loops cost more in hand-offs than they save): one GEMM workspace per
 * participant, a multiple of CNNC_ALIGN. */
static int xi_threads(const cnnc_ctx *ctx) { return cnnc_threads(ctx, 16); }

/* One participant's GEMM workspace, a multiple of CNNC_ALIGN, for the chunks' GEMMs: [tiles, Cout] x
 * depth Cin (the convolutions), or with wgrad [Cin, Cout] x depth tiles (the weight gradient); the full
 * chunk and the last one. -1 on overflow. */
static int64_t gemm_slot_of(const cnnc_ctx *ctx, const wg_shape *s, int wgrad) {
    cnnc_ctx one = *ctx;
    one.nthreads = 1;
    const int64_t last = s->tiles - (CNNC_CEIL_DIV(s->tiles, s->chunk) - 1) * s->chunk;
    const int64_t a = wgrad ? cnnc_gemm_workspace_size(&one, s->cin, s->cout, s->chunk)
                            : cnnc_gemm_workspace_size(&one, s->chunk, s->cout, s->cin);
    const int64_t b = wgrad ? cnnc_gemm_workspace_size(&one, s->cin, s->cout, last)
                            : cnnc_gemm_workspace_size(&one, last, s->cout, s->cin);
    const int64_t g = CNNC_MAX(a, b);
    return (a < 0 || b < 0 || g > INT64_MAX / 256 - CNNC_ALIGN) ? -1 : CNNC_ROUND_UP(g, CNNC_ALIGN);
}

static int64_t gemm_slot(const cnnc_ctx *ctx, const wg_shape *s) { return gemm_slot_of(ctx, s, 0); }

static int64_t gemm_ws(const cnnc_ctx *ctx, const wg_shape *s) {
    const int64_t slot = gemm_slot(ctx, s);
    return slot < 0 ? -1 : slot * xi_threads(ctx);
}

static int64_t wg_workspace(const cnnc_ctx *ctx, const wg_shape *s) {
    int64_t u, v, m, f;
    wg_parts(s, &u, &v, &m, &f);
    const int64_t g = gemm_ws(ctx, s);
    if (g < 0 || g > INT64_MAX - u - v - m - f - CNNC_ALIGN) return -1;
    return CNNC_ALIGN + u + v + m + f + g;
}

int64_t cnnc_winograd_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    wg_shape s;
    if (!ctx || !p || !wg_shape_of(p, &s)) return -1;
    return wg_workspace(ctx, &s);
}

int64_t cnnc_winograd_pool_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh,
                                          int64_t pkw) {
    wg_shape s;
    if (!ctx || !p || !wg_pool_shape_of(p, pkh, pkw, &s)) return -1;
    return wg_workspace(ctx, &s);
}

/* Tap (i, j) of the 3x3 filter from input channel ci to output channel co of the convolution being
 * computed. Not transposed: w is that convolution's own kernel, NHWC [3, 3, Cin, Cout] or NCHW
 * [Cout, Cin, 3, 3]. Transposed (the data gradient of a convolution whose kernel w has Cout input and
 * Cin output channels): the tap is w's tap (2 - i, 2 - j) from co to ci. */
static inline float wtap(const float *w, int nchw, int transposed, int64_t CI, int64_t CO, int64_t ci, int64_t co,
                         int i, int j) {
    if (!transposed)
        return nchw ? w[((co * CI + ci) * 3 + i) * 3 + j] : w[((i * 3 + j) * CI + ci) * CO + co];
    const int ki = 2 - i, kj = 2 - j; /* w: [3, 3, CO, CI] (NHWC) or [CI, CO, 3, 3] (NCHW) */
    return nchw ? w[((ci * CO + co) * 3 + ki) * 3 + kj] : w[((ki * 3 + kj) * CO + co) * CI + ci];
}

/* U[xi][ci * Cout + co] = (G g G^T)[xi] for the filter g from ci to co (wtap); blocks of output
 * channels in the inner loops. */
typedef struct {
    const wg_shape *s;
    int nchw, transposed;
    const float *w;
    float *u;
} wt_job;

static void weight_transform_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const wt_job *jb = (const wt_job *)arg;
    (void)slot;
    const wg_shape *s = jb->s;
    const int nchw = jb->nchw, transposed = jb->transposed;
    const float *restrict w = jb->w;
    float *restrict u = jb->u;
    const int64_t CI = s->cin, CO = s->cout, plane = CI * CO;
    for (int64_t ci = lo; ci < hi; ++ci) {
        for (int64_t c0 = 0; c0 < CO; c0 += CB) {
            const int64_t cn = CNNC_MIN(CB, CO - c0);
            float g[9][CB], t[12][CB];
            for (int e = 0; e < 9; ++e) {
                if (!nchw && !transposed)
                    memcpy(g[e], w + (e * CI + ci) * CO + c0, (size_t)cn * sizeof(float));
                else
                    for (int64_t c = 0; c < cn; ++c) g[e][c] = wtap(w, nchw, transposed, CI, CO, ci, c0 + c, e / 3, e % 3);
            }
            for (int j = 0; j < 3; ++j) /* t = G g */
                for (int64_t c = 0; c < cn; ++c) {
                    const float g0 = g[j][c], g1 = g[3 + j][c], g2 = g[6 + j][c];
                    t[j][c] = g0;
                    t[3 + j][c] = 0.5f * (g0 + g1 + g2);
                    t[6 + j][c] = 0.5f * (g0 - g1 + g2);
                    t[9 + j][c] = g2;
                }
            for (int i = 0; i < 4; ++i) { /* U = t G^T */
                float *o = u + ci * CO + c0 + (int64_t)(i * 4) * plane;
                for (int64_t c = 0; c < cn; ++c) {
                    const float a0 = t[3 * i][c], a1 = t[3 * i + 1][c], a2 = t[3 * i + 2][c];
                    o[c] = a0;
                    o[plane + c] = 0.5f * (a0 + a1 + a2);
                    o[2 * plane + c] = 0.5f * (a0 - a1 + a2);
                    o[3 * plane + c] = a2;
                }
            }
        }
    }
}

static void weight_transform(const cnnc_ctx *ctx, const wg_shape *s, int nchw, int transposed,
                             const float *restrict w, float *restrict u) {
    wt_job jb = {s, nchw, transposed, w, u};
    cnnc_parallel_for(ctx, cnnc_threads(ctx, s->cin), s->cin, 1, weight_transform_task, &jb);
}

/* Tile number -> image, first output row and column. */
static inline void tile_pos(const wg_shape *s, int64_t t, int64_t *n, int64_t *oy, int64_t *ox) {
    const int64_t per = s->th * s->tw;
    *n = t / per;
    const int64_t r = t % per;
    *oy = 2 * (r / s->tw);
    *ox = 2 * (r % s->tw);
}

/* V[xi][(t - t0) * Cin + ci] = (B^T d B)[xi] for the 4x4 input block d of tile t, channel ci;
 * bad[t - t0] = 1 when the block holds an infinity or NaN. */
typedef struct {
    const wg_shape *s;
    const cnnc_window2d *win;
    const float *x;
    int64_t t0;
    float *v;
    unsigned char *bad;
    cnnc_winograd_fns fns;
} it_job;

/* Pointers to cn channels (from c0) of npts points at element offsets off[] (channel 0; -1: outside,
 * read as zeros): NHWC reads them in place (a channel run), NCHW gathers them (channel stride cstep)
 * into d. */
static inline void block_channels(const float *restrict x, const int64_t *off, int npts, int nchw, int64_t cstep,
                                  int64_t c0, int64_t cn, float (*d)[CB], const float **dp) {
    static const float zeros[CB];
    for (int e = 0; e < npts; ++e) {
        if (off[e] < 0) {
            dp[e] = zeros;
        } else if (!nchw) {
            dp[e] = x + off[e] + c0;
        } else {
            for (int64_t c = 0; c < cn; ++c) d[e][c] = x[off[e] + (c0 + c) * cstep];
            dp[e] = d[e];
        }
    }
}

/* Tile t's block (V at v[xi * stride + ci]); returns 1 when the block holds an infinity or NaN. */
static int input_tile(const wg_shape *s, const cnnc_window2d *win, const float *restrict x, int64_t t,
                      float *restrict v, int64_t stride, const cnnc_winograd_fns *fns) {
    const int64_t CI = s->cin, H = win->h, W = win->w;
    const int nchw = win->layout == CNNC_NCHW;
    const int64_t cstep = nchw ? H * W : 1;
    int64_t n, oy, ox;
    tile_pos(s, t, &n, &oy, &ox);
    const int64_t iy0 = oy - win->pt, ix0 = ox - win->pl;
    int64_t off[16]; /* element offset of each input of the block (channel 0); -1: padding */
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) {
            const int64_t iy = iy0 + i, ix = ix0 + j;
            off[i * 4 + j] = (iy < 0 || iy >= H || ix < 0 || ix >= W) ? -1
                             : nchw ? (n * CI * H + iy) * W + ix
                                    : ((n * H + iy) * W + ix) * CI;
        }
    int nonfinite = 0;
    for (int64_t c0 = 0; c0 < CI; c0 += CB) {
        const int64_t cn = CNNC_MIN(CB, CI - c0);
        float d[16][CB]; /* the block's 16 inputs, cn channels each; padding reads zeros */
        const float *dp[16];
        block_channels(x, off, 16, nchw, cstep, c0, cn, d, dp);
        nonfinite |= fns->in_block(dp, cn, v + c0, stride);
    }
    return nonfinite;
}

static void input_transform_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const it_job *jb = (const it_job *)arg;
    (void)slot;
    const int64_t CI = jb->s->cin, stride = jb->s->chunk * CI;
    for (int64_t k = lo; k < hi; ++k)
        jb->bad[k] = (unsigned char)input_tile(jb->s, jb->win, jb->x, jb->t0 + k, jb->v + k * CI, stride, &jb->fns);
}

static void input_transform(const cnnc_ctx *ctx, const wg_shape *s, const cnnc_window2d *win,
                            const float *restrict x, int64_t t0, int64_t nt_tiles, float *restrict v,
                            unsigned char *restrict bad) {
    it_job jb = {s, win, x, t0, v, bad, cnnc_winograd_fns_for(&ctx->k)};
    const int nt = cnnc_threads(ctx, nt_tiles);
    cnnc_parallel_for(ctx, nt, nt_tiles, cnnc_grain(nt_tiles, nt, 1), input_transform_task, &jb);
}

/* Output (oy, ox) of image n, channel co, computed directly (the sum over the 3x3 window and the input
 * channels), for a tile the non-finite test flagged. */
static float direct_out(const wg_shape *s, const cnnc_window2d *win, const float *restrict x,
                        const float *restrict w, int transposed, int64_t n, int64_t oy, int64_t ox, int64_t co) {
    const int64_t CI = s->cin, CO = s->cout, H = win->h, W = win->w;
    const int nchw = win->layout == CNNC_NCHW;
    float acc = 0.0f;
    for (int kh = 0; kh < 3; ++kh) {
        const int64_t iy = oy - win->pt + kh;
        if (iy < 0 || iy >= H) continue;
        for (int kw = 0; kw < 3; ++kw) {
            const int64_t ix = ox - win->pl + kw;
            if (ix < 0 || ix >= W) continue;
            for (int64_t ci = 0; ci < CI; ++ci) {
                const float xv = nchw ? x[((n * CI + ci) * H + iy) * W + ix] : x[((n * H + iy) * W + ix) * CI + ci];
                const float wv = wtap(w, nchw, transposed, CI, CO, ci, co, kh, kw);
                acc += xv * wv;
            }
        }
    }
    return acc;
}

/* The outputs of tile t computed directly (direct_out). */
static void direct_tile(const wg_shape *s, const cnnc_window2d *win, const float *restrict x,
                        const float *restrict w, int transposed, int64_t t, float *restrict y) {
    const int64_t CO = s->cout, OH = s->oh, OW = s->ow;
    const int nchw = win->layout == CNNC_NCHW;
    int64_t n, oy, ox;
    tile_pos(s, t, &n, &oy, &ox);
    for (int64_t i = 0; i < 2 && oy + i < OH; ++i)
        for (int64_t j = 0; j < 2 && ox + j < OW; ++j)
            for (int64_t co = 0; co < CO; ++co)
                y[nchw ? ((n * CO + co) * OH + oy + i) * OW + ox + j : ((n * OH + oy + i) * OW + ox + j) * CO + co] =
                    direct_out(s, win, x, w, transposed, n, oy + i, ox + j, co);
}

/* Pooled (s->pool): tile t's four outputs computed directly into buf [4][Cout], given their bias and
 * activation, and max pooled into y's pixel t (its taps too unless taps is NULL). */
static void direct_tile_pool(const wg_shape *s, const cnnc_window2d *win, const float *restrict x,
                             const float *restrict w, const float *b, cnnc_act act, int64_t t, float *restrict buf,
                             float *restrict y, uint8_t *taps) {
    const int64_t CO = s->cout;
    int64_t n, oy, ox;
    tile_pos(s, t, &n, &oy, &ox);
    for (int q = 0; q < 4; ++q) {
        for (int64_t co = 0; co < CO; ++co)
            buf[q * CO + co] = direct_out(s, win, x, w, 0, n, oy + q / 2, ox + q % 2, co);
        if (b || act.kind != CNNC_ACT_NONE) cnnc_bias_act_span(act, b, buf + q * CO, CO);
    }
    pool2x2_window(buf, buf + CO, buf + 2 * CO, buf + 3 * CO, y + t * CO, taps ? taps + t * CO : NULL, CO);
}

/* NHWC: bias and activation on the output pixels of tile t (while they are in cache). */
static void tile_epilogue(const wg_shape *s, const float *b, cnnc_act act, int64_t t, float *y) {
    int64_t n, oy, ox;
    tile_pos(s, t, &n, &oy, &ox);
    for (int64_t i = 0; i < 2 && oy + i < s->oh; ++i)
        for (int64_t j = 0; j < 2 && ox + j < s->ow; ++j)
            cnnc_bias_act_span(act, b, y + ((n * s->oh + oy + i) * s->ow + ox + j) * s->cout, s->cout);
}

/* y's 2x2 block of tile t, channel co = A^T m A for m = M[..][(t - t0) * Cout + co]; the parts of the
 * block past the output's last row or column are dropped. */
typedef struct {
    const wg_shape *s;
    int nchw;
    const float *m, *b;
    cnnc_act act;
    int64_t t0;
    float *y;
    uint8_t *taps; /* pooled: the pool's taps, y's shape (NULL: not wanted) */
    cnnc_winograd_fns fns;
} ot_job;

static void output_transform_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const ot_job *jb = (const ot_job *)arg;
    (void)slot;
    const wg_shape *s = jb->s;
    const int nchw = jb->nchw;
    const float *restrict m = jb->m, *b = jb->b;
    const cnnc_act act = jb->act;
    const int64_t t0 = jb->t0;
    float *restrict y = jb->y;
    const int epilogue = !nchw && (b || act.kind != CNNC_ACT_NONE);
    const int64_t CO = s->cout, OH = s->oh, OW = s->ow, stride = s->chunk * CO;
    if (s->pool) { /* NHWC: bias and activation on each output, then the 2x2 max into pixel t0 + k */
        for (int64_t k = lo; k < hi; ++k) {
            const float *src = m + k * CO;
            for (int64_t c0 = 0; c0 < CO; c0 += CB) {
                const int64_t cn = CNNC_MIN(CB, CO - c0);
                float o[4][CB];
                jb->fns.out_block(src + c0, stride, cn, o);
                if (epilogue) { /* the four outputs as rows of a block: one call, relu inline */
                    const cnnc_gemm_epilogue ep = {b ? b + c0 : NULL, 0, act, NULL, 0};
                    cnnc_gemm_epilogue_block(&ep, o[0], CB, 0, 4, 0, cn);
                }
                jb->fns.pool2x2(o[0], o[1], o[2], o[3], y + (t0 + k) * CO + c0,
                                jb->taps ? jb->taps + (t0 + k) * CO + c0 : NULL, cn);
            }
        }
        return;
    }
    for (int64_t k = lo; k < hi; ++k) {
        int64_t n, oy, ox;
        tile_pos(s, t0 + k, &n, &oy, &ox);
        const int rows = oy + 1 < OH ? 2 : 1, cols = ox + 1 < OW ? 2 : 1;
        const float *src = m + k * CO;
        for (int64_t c0 = 0; c0 < CO; c0 += CB) {
            const int64_t cn = CNNC_MIN(CB, CO - c0);
            float o[4][CB];
            jb->fns.out_block(src + c0, stride, cn, o);
            for (int i = 0; i < rows; ++i)
                for (int j = 0; j < cols; ++j) {
                    if (nchw) {
                        float *yo = y + ((n * CO + c0) * OH + oy + i) * OW + ox + j;
                        for (int64_t c = 0; c < cn; ++c) yo[c * OH * OW] = o[2 * i + j][c];
                    } else {
                        memcpy(y + ((n * OH + oy + i) * OW + ox + j) * CO + c0, o[2 * i + j], (size_t)cn * sizeof(float));
                    }
                }
        }
        if (epilogue) tile_epilogue(s, b, act, t0 + k, y);
    }
}

static void output_transform(const cnnc_ctx *ctx, const wg_shape *s, int nchw, const float *restrict m,
                             const float *b, cnnc_act act, int64_t t0, int64_t nt_tiles, float *restrict y,
                             uint8_t *taps) {
    ot_job jb = {s, nchw, m, b, act, t0, y, taps, cnnc_winograd_fns_for(&ctx->k)};
    const int nt = cnnc_threads(ctx, nt_tiles);
    cnnc_parallel_for(ctx, nt, nt_tiles, cnnc_grain(nt_tiles, nt, 1), output_transform_task, &jb);
}

/* GEMMs xi in [lo, hi) of a chunk: M[xi] = V[xi] U[xi], each on one thread with the participant's own
 * workspace. */
typedef struct {
    cnnc_ctx one; /* the caller's, one thread */
    int64_t nt_tiles, chunk, ci, co, slot_bytes;
    const float *v, *u;
    const float *upk; /* U_xi packed once (cnnc_winograd_pack_weights), or NULL */
    float *m;
    char *gws;
    atomic_int err;
} xi_job;

static void xi_task(void *arg, int64_t lo, int64_t hi, int slot) {
    xi_job *j = (xi_job *)arg;
    const int64_t CI = j->ci, CO = j->co, per = cnnc_gemm_packed_floats(CO, CI, j->one.k.nr);
    for (int64_t xi = lo; xi < hi; ++xi) {
        const int rc = cnnc_sgemm_pk(&j->one, 0, 0, j->nt_tiles, CO, CI, 1.0f, j->v + xi * j->chunk * CI, CI, NULL,
                                     j->u + xi * CI * CO, CO, j->upk ? j->upk + xi * per : NULL, 0.0f,
                                     j->m + xi * j->chunk * CO, CO, j->gws + slot * j->slot_bytes, j->slot_bytes,
                                     NULL);
        if (rc) atomic_store_explicit(&j->err, rc, memory_order_relaxed);
    }
}

/* The convolution p (shape s: wg_shape_of or wg_pool_shape_of) of x with the filters
 * wtap(w, .., transposed, ..); pooled when s.pool, with the pool's taps unless taps is NULL. */
static int wg_run(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, wg_shape s, const float *x, const float *w,
                  int transposed, const float *upk, const float *b, cnnc_act act, float *y, uint8_t *taps, void *ws,
                  int64_t ws_size) {
    const int64_t need = wg_workspace(ctx, &s);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    if (!s.tiles) return CNNC_OK; /* pooled to nothing */
    int64_t ub, vb, mb, fb;
    wg_parts(&s, &ub, &vb, &mb, &fb);
    float *u = (float *)cnnc_align_ptr(ws);
    float *v = (float *)((char *)u + ub);
    float *m = (float *)((char *)v + vb);
    unsigned char *bad = (unsigned char *)m + mb;
    char *gws = (char *)cnnc_align_ptr(bad + fb);
    const int nchw = p->win.layout == CNNC_NCHW;
    const int64_t CI = s.cin, CO = s.cout, slot_bytes = gemm_slot(ctx, &s);

    /* U itself is needed unless it comes packed, and every chunk's GEMMs take it so (a chunk of too few
     * tiles takes the few-row GEMM, which reads U in place) */
    const int64_t last = s.tiles - (CNNC_CEIL_DIV(s.tiles, s.chunk) - 1) * s.chunk;
    const int64_t few = cnnc_gemm_small_for(&ctx->k).max_m;
    if (!upk || s.chunk <= few || last <= few) weight_transform(ctx, &s, nchw, transposed, w, u);
    int rc = CNNC_OK;
    for (int64_t t0 = 0; t0 < s.tiles && !rc; t0 += s.chunk) {
        const int64_t nt_tiles = CNNC_MIN(s.chunk, s.tiles - t0);
        input_transform(ctx, &s, &p->win, x, t0, nt_tiles, v, bad);
        xi_job xj = {*ctx, nt_tiles, s.chunk, CI, CO, slot_bytes, v, u, upk, m, gws, CNNC_OK};
        xj.one.nthreads = 1;
        cnnc_parallel_for(ctx, xi_threads(ctx), 16, 1, xi_task, &xj);
        rc = atomic_load(&xj.err);
        if (rc) break;
        output_transform(ctx, &s, nchw, m, b, act, t0, nt_tiles, y, taps);
        for (int64_t k = 0; k < nt_tiles; ++k)
            if (bad[k] && s.pool) { /* M is free now: the scratch of the tile's four outputs */
                direct_tile_pool(&s, &p->win, x, w, b, act, t0 + k, m, y, taps);
            } else if (bad[k]) {
                direct_tile(&s, &p->win, x, w, transposed, t0 + k, y);
                if (!nchw && (b || act.kind != CNNC_ACT_NONE)) tile_epilogue(&s, b, act, t0 + k, y);
            }
    }
    if (!rc && nchw && (b || act.kind != CNNC_ACT_NONE))
        rc = cnnc_bias_act_planes(ctx, p->win.n, CO, s.oh * s.ow, b, act, y);
    return rc;
}

int cnnc_winograd_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                          const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size) {
    return cnnc_winograd_forward_pk(ctx, p, x, w, NULL, b, act, y, ws, ws_size);
}

int cnnc_winograd_forward_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                             const float *upk, const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size) {
    wg_shape s;
    if (!ctx || !p || !x || !w || !y || !cnnc_act_valid(act) || !wg_shape_of(p, &s)) return CNNC_EINVAL;
    return wg_run(ctx, p, s, x, w, 0, upk, b, act, y, NULL, ws, ws_size);
}

int cnnc_winograd_forward_pool_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                  const float *x, const float *w, const float *upk, const float *b, cnnc_act act,
                                  float *y, uint8_t *taps, void *ws, int64_t ws_size) {
    wg_shape s;
    if (!ctx || !p || !x || !w || !y || !cnnc_act_valid(act) || !wg_pool_shape_of(p, pkh, pkw, &s))
        return CNNC_EINVAL;
    return wg_run(ctx, p, s, x, w, 0, upk, b, act, y, taps, ws, ws_size);
}

/* U packed once: the 16 matrices U_xi [Cin, Cout] as B panels (cnnc_gemm_pack_b_all), one after another. */
int64_t cnnc_winograd_packed_floats(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    wg_shape s;
    if (!ctx || !p || !wg_shape_of(p, &s)) return -1;
    return cnnc_mul_ok(16, cnnc_gemm_packed_floats(s.cout, s.cin, ctx->k.nr));
}

int64_t cnnc_winograd_pack_scratch_floats(const cnnc_conv2d_params *p) {
    wg_shape s;
    if (!p || !wg_shape_of(p, &s)) return -1;
    return 16 * s.cin * s.cout; /* U; checked against overflow by wg_shape_of */
}

int cnnc_winograd_pack_weights(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *w, float *u,
                               float *dst) {
    wg_shape s;
    if (!ctx || !p || !w || !u || !dst || !wg_shape_of(p, &s)) return CNNC_EINVAL;
    weight_transform(ctx, &s, p->win.layout == CNNC_NCHW, 0, w, u);
    const int64_t CI = s.cin, CO = s.cout, per = cnnc_gemm_packed_floats(CO, CI, ctx->k.nr);
    for (int xi = 0; xi < 16; ++xi) cnnc_gemm_pack_b_all(&ctx->k, 0, CI, CO, u + xi * CI * CO, CO, dst + xi * per);
    return CNNC_OK;
}

/* The data gradient of convolution p as a convolution: dy [N, OH, OW, Cout] with the flipped,
 * transposed filters and padding 2 - p (stride 1), giving dx [N, H, W, Cin]. 0 when a padding exceeds
 * 2 (the gradient would need cropping) or the problem is not Winograd's. */
static int data_grad_params(const cnnc_conv2d_params *p, cnnc_conv2d_params *t) {
    const cnnc_window2d *w = &p->win;
    int64_t oh, ow;
    if (!p || p->groups != 1 || w->kh != 3 || w->kw != 3 || w->sh != 1 || w->sw != 1 || w->dh != 1 ||
        w->dw != 1 || w->pt > 2 || w->pb > 2 || w->pl > 2 || w->pr > 2 || cnnc_window2d_output(w, &oh, &ow))
        return 0;
    /* measured (1 thread, batch 64, with dW): 32 <-> 64 channels on 13x13 ran 1.13x slower than im2col,
     * 64 <-> 128 on 14x14 the same, 128 and 256 channels 1.05-1.3x faster */
    if (w->c < WG_MIN_GRAD_CHANNELS || p->cout < WG_MIN_GRAD_CHANNELS) return 0;
    *t = *p;
    t->win.h = oh;
    t->win.w = ow;
    t->win.c = p->cout;
    t->win.pt = 2 - w->pt;
    t->win.pb = 2 - w->pb;
    t->win.pl = 2 - w->pl;
    t->win.pr = 2 - w->pr;
    t->cout = w->c;
    wg_shape s;
    return wg_shape_of(t, &s);
}

int cnnc_winograd_data_grad_applies(const cnnc_conv2d_params *p) {
    cnnc_conv2d_params t;
    return p && data_grad_params(p, &t);
}

int cnnc_conv2d_data_grad_algorithm(const cnnc_conv2d_params *p) {
    if (p && cnnc_conv_depthwise_grad_applies(p)) return CNNC_CONV_DEPTHWISE;
    return cnnc_winograd_data_grad_applies(p) ? CNNC_CONV_WINOGRAD : CNNC_CONV_IM2COL;
}

int64_t cnnc_winograd_data_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    cnnc_conv2d_params t;
    if (!ctx || !p || !data_grad_params(p, &t)) return -1;
    return cnnc_winograd_workspace_size(ctx, &t);
}

int cnnc_winograd_data_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *w, const float *dy,
                            float *dx, void *ws, int64_t ws_size) {
    cnnc_conv2d_params t;
    wg_shape s;
    if (!ctx || !p || !w || !dy || !dx || !data_grad_params(p, &t) || !wg_shape_of(&t, &s)) return CNNC_EINVAL;
    const cnnc_act none = {CNNC_ACT_NONE, 0.0f, 0.0f};
    return wg_run(ctx, &t, s, dy, w, 1, NULL, NULL, none, dx, NULL, ws, ws_size);
}

/* ---- the weight gradient: F(3x3, 2x2) ------------------------------------------------------------
 * dw[k][l] (ci -> co) = sum over images and outputs (i, j) of dy[i][j] x[i + k - pt][j + l - pl]. Per
 * tile it is a correlation of the tile's 4x4 input block d with its 2x2 block of dy, giving 3x3: the
 * forward's algebra transposed (differentiate sum y* . A^T[(G g G^T) . (B^T d B)]A by g):
 *   dw = G^T [ sum over tiles of (A dy A^T) . (B^T d B) ] G.
 * V = B^T d B is the forward's input transform (the same tiles, over dy's 2x2 blocks); E = A dy A^T
 * takes 2x2 to 4x4 by additions (dy past the output's last row or column reads 0); the sum over tiles
 * of V . E at each of the 16 positions xi is a GEMM, M_xi[Cin, Cout] += V_xi^T E_xi, accumulated chunk
 * by chunk; the output transform G^T m G runs once per channel pair. 16 multiplications per tile and
 * channel pair instead of 36. Each M_xi is one thread's, its chunks added in order: the result does not
 * depend on the thread count. It differs from im2col + GEMM by rounding; an infinity or NaN in x or dy
 * (or an overflow) leaves some dw non-finite, and then the caller computes dw directly instead
 * (cnnc_winograd_weight_grad's *finite), so non-finite values propagate exactly as there.
 * A = [1 0; 1 1; 1 -1; 0 -1], so E's rows and columns are (a, a + b, a - b, -b) of a pair (a, b). */

/* E[xi][(t - t0) * Cout + co] for tile t of dy. */
typedef struct {
    const wg_shape *s;
    const cnnc_window2d *win;
    const float *x, *dy;
    int64_t t0;
    float *v, *e;
    cnnc_winograd_fns fns;
} wgrad_tx_job;

static void grad_tile(const wg_shape *s, int nchw, const float *restrict dy, int64_t t, float *restrict e,
                      int64_t stride) {
    const int64_t CO = s->cout, OH = s->oh, OW = s->ow, plane = OH * OW;
    int64_t n, oy, ox;
    tile_pos(s, t, &n, &oy, &ox);
    int64_t off[4]; /* element offset of dy's 2x2 block (channel 0); -1: past the output */
    for (int q = 0; q < 4; ++q) {
        const int64_t i = oy + q / 2, j = ox + q % 2;
        off[q] = (i >= OH || j >= OW) ? -1 : nchw ? n * CO * plane + i * OW + j : ((n * OH + i) * OW + j) * CO;
    }
    for (int64_t c0 = 0; c0 < CO; c0 += CB) {
        const int64_t cn = CNNC_MIN(CB, CO - c0);
        float g[4][CB], r[8][CB];
        const float *gp[4];
        block_channels(dy, off, 4, nchw, plane, c0, cn, g, gp);
        for (int j = 0; j < 2; ++j) /* r = A g: the 4x2 rows from the 2x2 block's columns */
            for (int64_t c = 0; c < cn; ++c) {
                const float a = gp[j][c], b = gp[2 + j][c];
                r[j][c] = a;
                r[2 + j][c] = a + b;
                r[4 + j][c] = a - b;
                r[6 + j][c] = -b;
            }
        for (int i = 0; i < 4; ++i) { /* E = r A^T */
            float *o = e + c0 + (int64_t)(4 * i) * stride;
            for (int64_t c = 0; c < cn; ++c) {
                const float a = r[2 * i][c], b = r[2 * i + 1][c];
                o[c] = a;
                o[stride + c] = a + b;
                o[2 * stride + c] = a - b;
                o[3 * stride + c] = -b;
            }
        }
    }
}

static void wgrad_tx_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const wgrad_tx_job *jb = (const wgrad_tx_job *)arg;
    (void)slot;
    const wg_shape *s = jb->s;
    const int64_t CI = s->cin, CO = s->cout;
    const int nchw = jb->win->layout == CNNC_NCHW;
    for (int64_t k = lo; k < hi; ++k) {
        (void)input_tile(s, jb->win, jb->x, jb->t0 + k, jb->v + k * CI, s->chunk * CI, &jb->fns);
        grad_tile(s, nchw, jb->dy, jb->t0 + k, jb->e + k * CO, s->chunk * CO);
    }
}

/* M_xi (+)= V_xi^T E_xi for xi in [lo, hi), one thread each. */
typedef struct {
    cnnc_ctx one;
    int64_t nt_tiles, chunk, ci, co, slot_bytes;
    float beta;
    const float *v, *e;
    float *m;
    char *gws;
    atomic_int err;
} wgrad_gemm_job;

static void wgrad_gemm_task(void *arg, int64_t lo, int64_t hi, int slot) {
    wgrad_gemm_job *j = (wgrad_gemm_job *)arg;
    const int64_t CI = j->ci, CO = j->co;
    for (int64_t xi = lo; xi < hi; ++xi) {
        const int rc = cnnc_sgemm(&j->one, 1, 0, CI, CO, j->nt_tiles, 1.0f, j->v + xi * j->chunk * CI, CI,
                                  j->e + xi * j->chunk * CO, CO, j->beta, j->m + xi * CI * CO, CO,
                                  j->gws + slot * j->slot_bytes, j->slot_bytes);
        if (rc) atomic_store_explicit(&j->err, rc, memory_order_relaxed);
    }
}

/* dw from M: G^T m G per channel pair, rows ci in [lo, hi); counts the non-finite results. */
typedef struct {
    const wg_shape *s;
    int nchw;
    const float *m;
    float *dw;
    atomic_int nonfinite;
} wgrad_out_job;

static void wgrad_out_task(void *arg, int64_t lo, int64_t hi, int slot) {
    wgrad_out_job *jb = (wgrad_out_job *)arg;
    (void)slot;
    const int64_t CI = jb->s->cin, CO = jb->s->cout, plane = CI * CO;
    const float *restrict m = jb->m;
    float *restrict dw = jb->dw;
    uint32_t bad = 0;
    for (int64_t ci = lo; ci < hi; ++ci)
        for (int64_t c0 = 0; c0 < CO; c0 += CB) {
            const int64_t cn = CNNC_MIN(CB, CO - c0);
            float r[12][CB], o[9][CB];
            for (int j = 0; j < 4; ++j) { /* r = G^T m */
                const float *a0 = m + j * plane + ci * CO + c0, *a1 = a0 + 4 * plane;
                const float *a2 = a0 + 8 * plane, *a3 = a0 + 12 * plane;
                for (int64_t c = 0; c < cn; ++c) {
                    const float h = 0.5f * (a1[c] + a2[c]);
                    r[j][c] = a0[c] + h;
                    r[4 + j][c] = 0.5f * (a1[c] - a2[c]);
                    r[8 + j][c] = h + a3[c];
                }
            }
            for (int k = 0; k < 3; ++k) /* dw = r G */
                for (int64_t c = 0; c < cn; ++c) {
                    const float b0 = r[4 * k][c], b1 = r[4 * k + 1][c], b2 = r[4 * k + 2][c], b3 = r[4 * k + 3][c];
                    const float h = 0.5f * (b1 + b2);
                    o[3 * k][c] = b0 + h;
                    o[3 * k + 1][c] = 0.5f * (b1 - b2);
                    o[3 * k + 2][c] = h + b3;
                }
            for (int e = 0; e < 9; ++e) {
                for (int64_t c = 0; c < cn; ++c) {
                    uint32_t bits;
                    memcpy(&bits, &o[e][c], sizeof bits);
                    bad |= (bits & 0x7f800000u) == 0x7f800000u;
                }
                if (!jb->nchw)
                    memcpy(dw + e * plane + ci * CO + c0, o[e], (size_t)cn * sizeof(float));
                else /* [Cout, Cin, 3, 3] */
                    for (int64_t c = 0; c < cn; ++c) dw[((c0 + c) * CI + ci) * 9 + e] = o[e][c];
            }
        }
    if (bad) atomic_fetch_add_explicit(&jb->nonfinite, 1, memory_order_relaxed);
}

/* M (16 Cin Cout, wg_parts' u), V (v), E (chunk Cout: wg_parts' m), then the GEMM slots. */
static int64_t wgrad_workspace(const cnnc_ctx *ctx, const wg_shape *s) {
    int64_t u, v, m, f;
    wg_parts(s, &u, &v, &m, &f);
    const int64_t slot = gemm_slot_of(ctx, s, 1);
    if (slot < 0) return -1;
    const int64_t g = slot * xi_threads(ctx);
    if (g > INT64_MAX - u - v - m - CNNC_ALIGN) return -1;
    return CNNC_ALIGN + u + v + m + g;
}

int cnnc_winograd_weight_grad_applies(const cnnc_conv2d_params *p) {
    wg_shape s;
    return p && wg_shape_of(p, &s);
}

int cnnc_conv2d_weight_grad_algorithm(const cnnc_conv2d_params *p) {
    if (cnnc_winograd_weight_grad_applies(p)) return CNNC_CONV_WINOGRAD;
    if (p && cnnc_conv_depthwise_grad_applies(p)) return CNNC_CONV_DEPTHWISE;
    return p && cnnc_conv_dw_direct_applies(p) ? CNNC_CONV_DIRECT : CNNC_CONV_IM2COL;
}

int64_t cnnc_winograd_weight_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p) {
    wg_shape s;
    if (!ctx || !p || !wg_shape_of(p, &s)) return -1;
    return wgrad_workspace(ctx, &s);
}

int cnnc_winograd_weight_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *dy,
                              float *dw, int *finite, void *ws, int64_t ws_size) {
    wg_shape s;
    if (!ctx || !p || !x || !dy || !dw || !finite || !wg_shape_of(p, &s)) return CNNC_EINVAL;
    const int64_t need = wgrad_workspace(ctx, &s);
    if (need < 0) return CNNC_EOVERFLOW;
    if (!ws || ws_size < need) return CNNC_EWORKSPACE;
    int64_t ub, vb, eb, fb;
    wg_parts(&s, &ub, &vb, &eb, &fb);
    float *m = (float *)cnnc_align_ptr(ws);
    float *v = (float *)((char *)m + ub);
    float *e = (float *)((char *)v + vb);
    char *gws = (char *)e + eb;
    const int64_t slot_bytes = gemm_slot_of(ctx, &s, 1);
    const int nchw = p->win.layout == CNNC_NCHW;
    for (int64_t t0 = 0; t0 < s.tiles; t0 += s.chunk) {
        const int64_t nt_tiles = CNNC_MIN(s.chunk, s.tiles - t0);
        wgrad_tx_job tj = {&s, &p->win, x, dy, t0, v, e, cnnc_winograd_fns_for(&ctx->k)};
        const int nt = cnnc_threads(ctx, nt_tiles);
        cnnc_parallel_for(ctx, nt, nt_tiles, cnnc_grain(nt_tiles, nt, 1), wgrad_tx_task, &tj);
        wgrad_gemm_job gj = {*ctx, nt_tiles, s.chunk, s.cin, s.cout, slot_bytes, t0 ? 1.0f : 0.0f, v, e, m, gws,
                             CNNC_OK};
        gj.one.nthreads = 1;
        cnnc_parallel_for(ctx, xi_threads(ctx), 16, 1, wgrad_gemm_task, &gj);
        const int rc = atomic_load(&gj.err);
        if (rc) return rc;
    }
    wgrad_out_job oj = {&s, nchw, m, dw, 0};
    cnnc_parallel_for(ctx, cnnc_threads(ctx, s.cin), s.cin, 1, wgrad_out_task, &oj);
    *finite = atomic_load(&oj.nonfinite) == 0;
    return CNNC_OK;
}
