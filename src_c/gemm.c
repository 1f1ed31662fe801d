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

/* Whether a GEMM must open its own parallel region: with several threads, or when called inside
 * another region (its worksharing loops must bind to a team of its own, not to the caller's). Alone
 * on one thread it runs its loops directly: opening a region costs a system call even for one thread. */
static inline int own_region(int nt) {
#ifdef _OPENMP
    return nt > 1 || omp_in_parallel();
#else
    (void)nt;
    return 0;
#endif
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
} small_job;

/* The column chunks of a few-row GEMM, shared out to the threads of the GEMM's parallel region (or all
 * run by the caller, outside any region: own_region). */
static void small_chunks(const small_job *j) {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    const int64_t m = j->m, k = j->k, kc = j->kc;
    float *acc = j->acc_all + (int64_t)tid * m * j->sp.chunk;
    const cnnc_gemm_params params = {j->alpha, j->beta};
#pragma omp for schedule(dynamic, 1)
    for (int64_t t = 0; t < j->sp.nchunks; ++t) {
        const int64_t j0 = t * j->sp.chunk, w = CNNC_MIN(j->sp.chunk, j->n - j0);
        if (j->trans_b) {
            j->f.dots(m, w, k, j->a, j->lda, j->b + j0 * j->ldb, j->ldb, j->c + j0, j->ldc, &params);
            continue;
        }
        /* the packed path's k blocks, each added into C as its micro-kernel does: the same bits */
        for (int64_t pc = 0; pc < k; pc += kc) {
            const cnnc_gemm_params pp = {j->alpha, pc == 0 ? j->beta : 1.0f};
            j->f.rows(m, w, CNNC_MIN(kc, k - pc), j->a + pc, j->lda, j->b + pc * j->ldb + j0, j->ldb, acc,
                      j->c + j0, j->ldc, &pp);
        }
    }
}

static void small_gemm(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                       float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                       float *c, int64_t ldc, void *ws) {
    const cnnc_gemm_small_fns f = cnnc_gemm_small_for(&ctx->k);
    const small_plan sp = small_plan_of(ctx, m, n, k);
    float *arows = (float *)cnnc_align_ptr(ws), *acc_all = arows + m * k;
    if (trans_a) { /* A stored k x m */
        for (int64_t i = 0; i < m; ++i)
            for (int64_t p = 0; p < k; ++p) arows[i * k + p] = a[p * lda + i];
        a = arows;
        lda = k;
    }
    const small_job job = {f, sp, trans_b, m, n, k, alpha, beta, a, lda, b, ldb, c, ldc, acc_all,
                           CNNC_CEIL_DIV(k, CNNC_CEIL_DIV(k, ctx->k.kc)) /* as plan_of */};
    if (own_region(sp.nt)) {
#pragma omp parallel num_threads(sp.nt)
        small_chunks(&job);
    } else {
        small_chunks(&job);
    }
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
    float *bp, *ap_all; /* packed B (shared), packed A blocks (one per thread) */
} gemm_job;

/* The rounds of a packed GEMM, their packing and row-block loops shared out to the threads of the
 * GEMM's parallel region (or all run by the caller, outside any region: own_region). */
static void gemm_rounds(const gemm_job *j) {
    int tid = 0;
#ifdef _OPENMP
    tid = omp_get_thread_num();
#endif
    const cnnc_gemm_packers *pk = &j->pk;
    const int64_t mr = j->mr, nr = j->nr, m = j->m, n = j->n, k = j->k, ldc = j->ldc;
    const int64_t MC = j->pl.mc, NC = j->pl.nc, KC = j->pl.kc, KD = j->pl.kd, nsplit = j->pl.nsplit;
    const int64_t ntasks = j->pl.mblocks * nsplit;
    float *bp = j->bp, *c = j->c;
    float *ap = j->ap_all + (int64_t)tid * MC * KC;
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t ncur = CNNC_MIN(NC, n - jc);
        const int64_t npanels = CNNC_CEIL_DIV(ncur, nr);
        for (int64_t kd = 0; kd < k; kd += KD) {
            const int64_t kend = CNNC_MIN(k, kd + KD), kblocks = CNNC_CEIL_DIV(kend - kd, KC);
            /* k block pc starts at bp + (pc - kd) * npanels * nr: all blocks but the last are KC deep.
             * Dynamic, like the row blocks: a thread that starts late finds less to do. */
#pragma omp for schedule(dynamic, 4)
            for (int64_t t = 0; t < kblocks * npanels; ++t) {
                const int64_t pc = kd + t / npanels * KC, jp = t % npanels, kcur = CNNC_MIN(KC, k - pc);
                pack_b_panel(pk, j->B, pc, kcur, jc + jp * nr, CNNC_MIN(nr, ncur - jp * nr), nr,
                             bp + (pc - kd) * npanels * nr + jp * nr * kcur);
            }
            /* implicit barrier: B is packed */
#pragma omp for schedule(dynamic, 1)
            for (int64_t task = 0; task < ntasks; ++task) {
                const int64_t ib = task / nsplit, js = task % nsplit;
                const int64_t jp0 = js * npanels / nsplit, jp1 = (js + 1) * npanels / nsplit;
                const int64_t ic = ib * MC, mcur = CNNC_MIN(MC, m - ic);
                for (int64_t pc = kd; pc < kend && jp0 < jp1; pc += KC) {
                    const int64_t kcur = CNNC_MIN(KC, k - pc);
                    const cnnc_gemm_params params = {j->alpha, pc == 0 ? j->beta : 1.0f};
                    const float *bblock = bp + (pc - kd) * npanels * nr;
                    pack_a(pk, j->A, ic, mcur, pc, kcur, mr, ap);
                    for (int64_t jp = jp0; jp < jp1; ++jp) {
                        const int64_t jj = jp * nr, ncols = CNNC_MIN(nr, ncur - jj);
                        const float *bpanel = bblock + jp * nr * kcur;
                        for (int64_t i = 0; i < mcur; i += mr)
                            j->ukernel(kcur, ap + i * kcur, bpanel, c + (ic + i) * ldc + jc + jj, ldc,
                                       CNNC_MIN(mr, mcur - i), ncols, &params);
                    }
                }
            }
            /* implicit barrier: B may be repacked */
        }
    }
}

// C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C
int cnnc_sgemm(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
               float *c, int64_t ldc, void *ws, int64_t ws_size) {
    if (m < 0 || n < 0 || k < 0) return CNNC_EINVAL;
    if (m == 0 || n == 0) return CNNC_OK;
    if (!c || ldc < n) return CNNC_EINVAL;
    if (k == 0 || alpha == 0.0f) {
        if (beta != 1.0f) scale_c(m, n, beta, c, ldc);
        return CNNC_OK;
    }
    if (!a || !b || lda < (trans_a ? m : k) || ldb < (trans_b ? k : n)) return CNNC_EINVAL;
    if (!ws || ws_size < cnnc_gemm_workspace_size(ctx, m, n, k)) return CNNC_EWORKSPACE;

    if (small_path(ctx, m)) {
        small_gemm(ctx, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, ws);
        return CNNC_OK;
    }

    const cnnc_kernels *kt = &ctx->k;
    const gemm_plan pl = plan_of(ctx, m, n, k);
    float *bp = (float *)cnnc_align_ptr(ws);
    const gemm_job job = {cnnc_gemm_packers_for(kt), kt->gemm_ukernel, kt->mr, kt->nr, pl, m, n, k, alpha, beta,
                          {trans_a, a, lda}, {trans_b, b, ldb}, c, ldc, bp, bp + pl.kd * pl.nc};
    /* Per round (an NC column block and a KD deep slice of it, usually all of k): the slice of B is
     * packed once, by all threads together; then the threads take row blocks (split into column slices
     * if rows are scarce) as they come, each running the round's whole k loop for its block. One
     * barrier per round, and a thread slowed down by a busy core simply takes fewer blocks. */
    if (own_region(pl.nt)) {
#pragma omp parallel num_threads(pl.nt)
        gemm_rounds(&job);
    } else {
        gemm_rounds(&job);
    }
    return CNNC_OK;
}
