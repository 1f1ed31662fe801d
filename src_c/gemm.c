/* gemm.c - single-precision GEMM in BLIS's layering: loops over NC, KC and MC blocks in portable C,
 * packing of A and B panels, and an MR x NR micro-kernel from the context's table.
 *
 * Determinism: the K dimension is never split across threads, and every tile is computed by the same
 * micro-kernel on the same packed data whatever thread runs it, so the result is bit-identical for any
 * thread count. */
#include "internal.h"

typedef struct {
    int trans;
    const float *p;
    int64_t ld;
} cnnc_mat;

/* The two shapes of packing, for one panel of width W (MR rows of op(A) or NR columns of op(B)) and
 * depth kc; `w` <= W valid lines, the rest zero.
 * copy:   dst[p * W + i] = src[p * ld + i]  (a line of the panel is contiguous in memory)
 * gather: dst[p * W + i] = src[i * ld + p]  (transposing)
 * Full panels of the table's widths are specialised with compile-time sizes. */
static inline void copy_fixed(int64_t kc, const float *restrict src, int64_t ld, int64_t W,
                              float *restrict dst) {
    for (int64_t p = 0; p < kc; ++p) memcpy(dst + p * W, src + p * ld, (size_t)W * sizeof(float));
}

static void pack_copy(int64_t kc, const float *restrict src, int64_t ld, int64_t w, int64_t W,
                      float *restrict dst) {
    if (w == W && W == 6) copy_fixed(kc, src, ld, 6, dst);
    else if (w == W && W == 8) copy_fixed(kc, src, ld, 8, dst);
    else if (w == W && W == 12) copy_fixed(kc, src, ld, 12, dst);
    else if (w == W && W == 16) copy_fixed(kc, src, ld, 16, dst);
    else {
        for (int64_t p = 0; p < kc; ++p) {
            const float *s = src + p * ld;
            float *d = dst + p * W;
            int64_t i = 0;
            for (; i < w; ++i) d[i] = s[i];
            for (; i < W; ++i) d[i] = 0.0f;
        }
    }
}

static void pack_gather(int64_t kc, const float *restrict src, int64_t ld, int64_t w, int64_t W,
                        cnnc_gemm_gather_fn fast, float *restrict dst) {
    if (w == W && fast) {
        fast(kc, src, ld, dst);
        return;
    }
    /* blocks of 8 columns: each source line is read in runs, the panel is written in order */
    for (int64_t p0 = 0; p0 < kc; p0 += 8) {
        const int64_t pe = CNNC_MIN(kc, p0 + 8);
        for (int64_t i = 0; i < w; ++i) {
            const float *s = src + i * ld;
            for (int64_t p = p0; p < pe; ++p) dst[p * W + i] = s[p];
        }
        for (int64_t i = w; i < W; ++i)
            for (int64_t p = p0; p < pe; ++p) dst[p * W + i] = 0.0f;
    }
}

/* op(A)[ic:ic+mc, pc:pc+kc] -> MR-row panels, each stored column by column, zero-padded. */
static void pack_a(const cnnc_gemm_packers *pk, cnnc_mat a, int64_t ic, int64_t mc, int64_t pc,
                   int64_t kc, int64_t mr, float *dst) {
    for (int64_t i0 = 0; i0 < mc; i0 += mr, dst += mr * kc) {
        const int64_t rows = CNNC_MIN(mr, mc - i0);
        if (a.trans) /* A stored k x m */
            pack_copy(kc, a.p + pc * a.ld + ic + i0, a.ld, rows, mr, dst);
        else
            pack_gather(kc, a.p + (ic + i0) * a.ld + pc, a.ld, rows, mr, pk->gather_a, dst);
    }
}

/* One NR-column panel of op(B)[pc:pc+kc, j0:j0+cols], stored row by row, zero-padded. */
static void pack_b_panel(const cnnc_gemm_packers *pk, cnnc_mat b, int64_t pc, int64_t kc, int64_t j0,
                         int64_t cols, int64_t nr, float *dst) {
    if (b.trans) /* B stored n x k */
        pack_gather(kc, b.p + j0 * b.ld + pc, b.ld, cols, nr, pk->gather_b, dst);
    else
        pack_copy(kc, b.p + pc * b.ld + j0, b.ld, cols, nr, dst);
}

/* ---- operands packed once (a layer's constant weights) -----------------------------------------
 * op(A) as MR-row panels (op(B) as NR-column panels) over the whole of k: panel r holds k x W floats at
 * r * W * k (W = mr or nr), zero past the last row (column). Rows [pc, pc + kc) of a panel are the run of
 * kc * W floats at pc * W: what the tile loop packs for that k block, so a call that takes the panels
 * computes the same tiles from the same numbers as one that packs them. */
int64_t cnnc_gemm_packed_floats(int64_t lines, int64_t k, int64_t w) {
    if (lines < 0 || k < 0 || w < 1) return -1;
    return cnnc_mul_ok(CNNC_ROUND_UP(lines, w), k);
}

void cnnc_gemm_pack_a_all(const cnnc_kernels *kt, int trans_a, int64_t m, int64_t k, const float *a, int64_t lda,
                          float *dst) {
    const cnnc_gemm_packers pk = cnnc_gemm_packers_for(kt);
    const cnnc_mat A = {trans_a, a, lda};
    if (m > 0 && k > 0) pack_a(&pk, A, 0, m, 0, k, kt->mr, dst);
}

void cnnc_gemm_pack_b_all(const cnnc_kernels *kt, int trans_b, int64_t k, int64_t n, const float *b, int64_t ldb,
                          float *dst) {
    const cnnc_gemm_packers pk = cnnc_gemm_packers_for(kt);
    const cnnc_mat B = {trans_b, b, ldb};
    for (int64_t j0 = 0; j0 < n && k > 0; j0 += kt->nr)
        pack_b_panel(&pk, B, 0, k, j0, CNNC_MIN(kt->nr, n - j0), kt->nr, dst + j0 * k);
}

/* Bytes of packed B one round may take. A round packs a kd x nc block of B (all of k when it fits), shared
 * by the threads (it lives in L3), and the k loop over its KC blocks runs inside each row block. */
#define B_BUDGET ((int64_t)4 << 20)

/* The blocking of one call, a function of the shape, the table and the thread count only.
 * kc is balanced (288 is one block of 288, not 256 + 32) and depends on k alone, so every element of C
 * sees the same sequence of k blocks, hence the same rounding, for any thread count. Row blocks (mc)
 * and column blocks (nc) only decide which thread computes a tile and when, never how. */
typedef struct {
    int64_t mc, nc, kc;   /* mc, nc: largest blocks; multiples of mr, nr */
    int64_t kd;           /* depth of B packed per round: a multiple of kc, or k */
    int64_t mblocks;      /* row blocks of about equal size */
    int64_t nsplit;       /* column slices per row block, > 1 only when there are fewer rows than threads */
    int nt;               /* threads */
} gemm_plan;

/* Threads: 1 for problems too small to be worth waking threads, else at most one per micro-tile. */
static int plan_threads(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k) {
    if ((double)m * n * k < 64.0 * 64.0 * 64.0) return 1;
    return cnnc_threads(ctx, CNNC_CEIL_DIV(m, ctx->k.mr) * CNNC_CEIL_DIV(n, ctx->k.nr));
}

static gemm_plan plan_of(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k) {
    const cnnc_kernels *kt = &ctx->k;
    gemm_plan pl;
    pl.kc = CNNC_CEIL_DIV(k, CNNC_CEIL_DIV(k, kt->kc));
    const int64_t nc_fit = CNNC_MAX(256, B_BUDGET / ((int64_t)sizeof(float) * k)) / kt->nr * kt->nr;
    pl.nc = CNNC_MIN(CNNC_ROUND_UP(n, kt->nr), CNNC_MAX(kt->nr, CNNC_MIN(kt->nc, nc_fit)));
    pl.kd = CNNC_MIN(k, CNNC_MAX(1, B_BUDGET / ((int64_t)sizeof(float) * pl.nc * pl.kc)) * pl.kc);
    const int64_t mpanels = CNNC_CEIL_DIV(m, kt->mr), npanels = CNNC_CEIL_DIV(pl.nc, kt->nr);
    (void)npanels;
    pl.nt = plan_threads(ctx, m, n, k);
    /* as many row blocks as the table's mc needs, rounded up to a multiple of the thread count */
    int64_t mb = CNNC_ROUND_UP(CNNC_CEIL_DIV(m, kt->mc), pl.nt);
    mb = CNNC_MIN(mb, mpanels);
    pl.mc = CNNC_ROUND_UP(CNNC_CEIL_DIV(m, mb), kt->mr);
    pl.mblocks = CNNC_CEIL_DIV(m, pl.mc);
    pl.nsplit = pl.mblocks >= pl.nt ? 1 : CNNC_MIN(npanels, CNNC_CEIL_DIV(pl.nt, pl.mblocks));
    return pl;
}

/* ---- few rows: no packing of B ------------------------------------------------------------------
 * With m <= small.max_m (below the micro-kernel's tile) packing B would cost as much as the product:
 * each element of B is used m times. B is read in place instead, in column chunks: the rows kernel
 * (B stored k x n) streams rows of B through an m x chunk accumulator, one k block (the packed path's
 * kc blocks) at a time, each block added into C as the micro-kernel adds it: the rows kernel does each
 * element's arithmetic in the micro-kernel's order, so its results are bit-identical to the packed
 * path's. The dots kernel (B stored n x k) takes dot products along k (8 lane sums). Threads take whole chunks; every element of C is computed the same way
 * whatever the chunk, so results are bit-identical for any thread count. op(A) is copied to m x k rows
 * when A is stored transposed (the dots kernel reads rows of A with vector loads). */
#define SMALL_CHUNK 4096 /* columns per chunk at most: whole rows of B stream in order; the m x 16 KiB
                            accumulator stays in L1/L2 */

typedef struct {
    int64_t chunk, nchunks; /* columns per chunk (a multiple of 8 unless one chunk), chunks */
    int nt;
} small_plan;

static int small_path(const cnnc_ctx *ctx, int64_t m) { return m <= cnnc_gemm_small_for(&ctx->k).max_m; }

static small_plan small_plan_of(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k) {
    small_plan sp;
    /* threads: one per 64 columns at most, and none for products too small to pay for waking them */
    sp.nt = (double)m * n * k < 64.0 * 64.0 * 64.0 ? 1 : cnnc_threads(ctx, CNNC_CEIL_DIV(n, 64));
    const int64_t chunks = CNNC_MAX(CNNC_CEIL_DIV(n, SMALL_CHUNK), sp.nt);
    sp.chunk = chunks == 1 ? n : CNNC_MIN(n, CNNC_ROUND_UP(CNNC_CEIL_DIV(n, chunks), 8));
    sp.nchunks = CNNC_CEIL_DIV(n, sp.chunk);
    return sp;
}

/* op(A) as m x k rows (when stored transposed) and one m x chunk accumulator per thread. */
static int64_t small_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k) {
    const small_plan sp = small_plan_of(ctx, m, n, k);
    return (int64_t)sizeof(float) * (m * k + (int64_t)sp.nt * m * sp.chunk) + CNNC_ALIGN;
}

typedef struct {
    cnnc_gemm_small_fns f;
    small_plan sp;
    int trans_b;
    int64_t m, n, k;
    float alpha, beta;
    const float *a;
    int64_t lda;
    const float *b;
    int64_t ldb;
    float *c;
    int64_t ldc;
    float *acc_all;
    int64_t kc;
    const cnnc_gemm_epilogue *ep; /* NULL: none */
} small_job;

/* Column chunks [lo, hi) of a few-row GEMM, on participant `slot` (its own accumulator). */
static void small_chunks(void *arg, int64_t lo, int64_t hi, int slot) {
    const small_job *j = (const small_job *)arg;
    const int64_t m = j->m, k = j->k, kc = j->kc;
    float *acc = j->acc_all + (int64_t)slot * m * j->sp.chunk;
    const cnnc_gemm_params params = {j->alpha, j->beta};
    for (int64_t t = lo; t < hi; ++t) {
        const int64_t j0 = t * j->sp.chunk, w = CNNC_MIN(j->sp.chunk, j->n - j0);
        if (j->trans_b) {
            j->f.dots(m, w, k, j->a, j->lda, j->b + j0 * j->ldb, j->ldb, j->c + j0, j->ldc, &params);
        } else {
            /* the packed path's k blocks, each added into C as its micro-kernel does: the same bits */
            for (int64_t pc = 0; pc < k; pc += kc) {
                const cnnc_gemm_params pp = {j->alpha, pc == 0 ? j->beta : 1.0f};
                j->f.rows(m, w, CNNC_MIN(kc, k - pc), j->a + pc, j->lda, j->b + pc * j->ldb + j0, j->ldb, acc,
                          j->c + j0, j->ldc, &pp);
            }
        }
        if (j->ep) cnnc_gemm_epilogue_block(j->ep, j->c, j->ldc, 0, m, j0, w);
    }
}

static void small_gemm(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc, void *ws, const cnnc_gemm_epilogue *ep) {
    const cnnc_gemm_small_fns f = cnnc_gemm_small_for(&ctx->k);
    const small_plan sp = small_plan_of(ctx, m, n, k);
    float *arows = (float *)cnnc_align_ptr(ws), *acc_all = arows + m * k;
    if (trans_a) { /* A stored k x m */
        for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < k; ++p) arows[i * k + p] = a[p * lda + i];
        a = arows;
        lda = k;
    }
    small_job job = {f, sp, trans_b, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc, acc_all,
                     CNNC_CEIL_DIV(k, CNNC_CEIL_DIV(k, ctx->k.kc)) /* as plan_of */, ep};
    cnnc_parallel_for(ctx, sp.nt, sp.nchunks, 1, small_chunks, &job);
}

/* Exactly what cnnc_sgemm takes for these sizes: packed B (kd x nc) and one packed A block (mc x kc) per
 * thread, plus alignment slack. Not monotonic in m, n, k (k = 256 is one block of 256, k = 257 two of
 * 129): a caller that reuses one workspace for several shapes sizes it as the maximum over them. */
int64_t cnnc_gemm_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k) {
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    if (small_path(ctx, m)) return small_workspace_size(ctx, m, n, k);
    const gemm_plan pl = plan_of(ctx, m, n, k);
    return (int64_t)sizeof(float) * (pl.kd * pl.nc + (int64_t)pl.nt * pl.mc * pl.kc) + CNNC_ALIGN;
}

static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i) {
        float *row = c + i * ldc;
        if (beta == 0.0f) memset(row, 0, (size_t)n * sizeof(float));
        else for (int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
}

typedef struct {
    cnnc_gemm_packers pk;
    cnnc_gemm_ukernel_fn ukernel;
    int64_t mr, nr;
    gemm_plan pl;
    int64_t m, n, k;
    float alpha, beta;
    cnnc_mat A, B;
    float *c;
    int64_t ldc;
    float *bp, *ap_all; /* packed B (shared), packed A blocks (one per participant) */
    const float *apk, *bpk; /* op(A), op(B) packed once for all calls (cnnc_gemm_pack_a_all / _b_all), or NULL */
    int64_t jc, ncur, npanels, kd, kend; /* the current round */
    const cnnc_gemm_epilogue *ep;        /* NULL: none */
    int in_kernel;                       /* the micro-kernel applies ep (bias, residual, at most a relu) */
} gemm_job;

/* Panels [lo, hi) of the round's slice of B (all its KC blocks x NR-column panels). Block pc starts at
 * bp + (pc - kd) * npanels * nr: all blocks but the last are KC deep. */
static void pack_b_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const gemm_job *j = (const gemm_job *)arg;
    (void)slot;
    const int64_t nr = j->nr, npanels = j->npanels, KC = j->pl.kc;
    for (int64_t t = lo; t < hi; ++t) {
        const int64_t pc = j->kd + t / npanels * KC, jp = t % npanels, kcur = CNNC_MIN(KC, j->k - pc);
        pack_b_panel(&j->pk, j->B, pc, kcur, j->jc + jp * nr, CNNC_MIN(nr, j->ncur - jp * nr), nr,
                     j->bp + (pc - j->kd) * npanels * nr + jp * nr * kcur);
    }
}

/* Tasks [lo, hi) of the round: a row block (or a column slice of one), through the round's whole k
 * loop, with A packed into the participant's own block. */
static void tiles_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const gemm_job *j = (const gemm_job *)arg;
    const int64_t mr = j->mr, nr = j->nr, m = j->m, k = j->k, ldc = j->ldc;
    const int64_t MC = j->pl.mc, KC = j->pl.kc, nsplit = j->pl.nsplit, npanels = j->npanels;
    const int64_t jc = j->jc, ncur = j->ncur, kd = j->kd, kend = j->kend;
    float *ap = j->ap_all + (int64_t)slot * MC * KC, *c = j->c;
    for (int64_t task = lo; task < hi; ++task) {
        const int64_t ib = task / nsplit, js = task % nsplit;
        const int64_t jp0 = js * npanels / nsplit, jp1 = (js + 1) * npanels / nsplit;
        const int64_t ic = ib * MC, mcur = CNNC_MIN(MC, m - ic);
        for (int64_t pc = kd; pc < kend && jp0 < jp1; pc += KC) {
            const int64_t kcur = CNNC_MIN(KC, k - pc);
            const cnnc_gemm_params params = {j->alpha, pc == 0 ? j->beta : 1.0f};
            const float *bblock = j->bp + (pc - kd) * npanels * nr;
            const float *apk = j->apk ? j->apk + ic * k + pc * mr : NULL; /* this row block's panels */
            /* these tiles are final: the epilogue too, in the micro-kernel's registers when it can */
            const int last = j->ep && pc + kcur == k;
            const int in_kernel = last && j->in_kernel;
            if (!apk) pack_a(&j->pk, j->A, ic, mcur, pc, kcur, mr, ap);
            for (int64_t jp = jp0; jp < jp1; ++jp) {
                const int64_t jj = jp * nr, ncols = CNNC_MIN(nr, ncur - jj);
                const float *bpanel = j->bpk ? j->bpk + (jc + jj) * k + pc * nr : bblock + jp * nr * kcur;
                for (int64_t i = 0; i < mcur; i += mr) {
                    const int64_t rows = CNNC_MIN(mr, mcur - i);
                    cnnc_gemm_params tp = params;
                    if (in_kernel) {
                        const float *bias = j->ep->bias;
                        tp.bias_row = bias && j->ep->bias_per_row ? bias + ic + i : NULL;
                        tp.bias_col = bias && !j->ep->bias_per_row ? bias + jc + jj : NULL;
                        tp.relu = j->ep->act.kind == CNNC_ACT_RELU;
                        tp.res = j->ep->res ? j->ep->res + (ic + i) * j->ep->ldr + jc + jj : NULL;
                        tp.ldr = j->ep->ldr;
                    }
                    j->ukernel(kcur, apk ? apk + i * k : ap + i * kcur, bpanel, c + (ic + i) * ldc + jc + jj, ldc, rows, ncols, &tp);
                    if (last && !in_kernel) cnnc_gemm_epilogue_block(j->ep, c, ldc, ic + i, rows, jc + jj, ncols);
                }
            }
        }
    }
}

// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C
int cnnc_sgemm(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
               float *c, int64_t ldc, void *ws, int64_t ws_size) {
    return cnnc_sgemm_ep(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws, ws_size, NULL);
}

int cnnc_sgemm_ep(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc,
                  void *ws, int64_t ws_size, const cnnc_gemm_epilogue *ep) {
    return cnnc_sgemm_pk(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, NULL, b, ldb, NULL, beta, c, ldc, ws, ws_size,
                         ep);
}

int cnnc_sgemm_pk(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                  const float *a, int64_t lda, const float *apk, const float *b, int64_t ldb, const float *bpk,
                  float beta, float *c, int64_t ldc, void *ws, int64_t ws_size, const cnnc_gemm_epilogue *ep) {
    if (!cnnc_epilogue_active(ep)) ep = NULL;
    if (ep && !cnnc_act_valid(ep->act)) return CNNC_EINVAL;
    if (m < 0 || n < 0 || k < 0) return CNNC_EINVAL;
    if (m == 0 || n == 0) return CNNC_OK;
    if (!c || ldc < n) return CNNC_EINVAL;
    if (k == 0 || alpha == 0.0f) {
        if (beta != 1.0f) scale_c(m, n, beta, c, ldc);
        if (ep) cnnc_gemm_epilogue_block(ep, c, ldc, 0, m, 0, n);
        return CNNC_OK;
    }
    if (!a || !b || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n)) return CNNC_EINVAL;
    if (!ws || ws_size < cnnc_gemm_workspace_size(ctx, m, n, k)) return CNNC_EWORKSPACE;

    if (small_path(ctx, m)) {
        small_gemm(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws, ep);
        return CNNC_OK;
    }

    const cnnc_kernels *kt = &ctx->k;
    const gemm_plan pl = plan_of(ctx, m, n, k);
    float *bp = (float *)cnnc_align_ptr(ws);
    gemm_job job = {cnnc_gemm_packers_for(kt), kt->gemm_ukernel, kt->mr, kt->nr, pl, m, n, k, alpha, beta,
                    {trans_a, a, lda}, {trans_b, b, ldb}, c, ldc, bp, bp + pl.kd * pl.nc, apk, bpk, 0, 0, 0, 0, 0, ep,
                    ep && (ep->act.kind == CNNC_ACT_NONE || ep->act.kind == CNNC_ACT_RELU)};
    /* Per round (an NC column block and a KD deep slice of it, usually all of k): the slice of B is
     * packed once, by all threads together; then the threads take row blocks (split into column slices
     * if rows are scarce) as they come, each running the round's whole k loop for its block. A thread
     * slowed down by a busy core simply takes fewer blocks. */
    for (int64_t jc = 0; jc < n; jc += pl.nc) {
        job.jc = jc;
        job.ncur = CNNC_MIN(pl.nc, n - jc);
        job.npanels = CNNC_CEIL_DIV(job.ncur, kt->nr);
        for (int64_t kd = 0; kd < k; kd += pl.kd) {
            job.kd = kd;
            job.kend = CNNC_MIN(k, kd + pl.kd);
            const int64_t kblocks = CNNC_CEIL_DIV(job.kend - kd, pl.kc);
            if (!bpk) cnnc_parallel_for(ctx, pl.nt, kblocks * job.npanels, 4, pack_b_task, &job);
            cnnc_parallel_for(ctx, pl.nt, pl.mblocks * pl.nsplit, 1, tiles_task, &job);
        }
    }
    return CNNC_OK;
}
