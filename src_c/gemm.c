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

/* op(A)[ic:ic+mc, pc:pc+kc] -> MR-row panels, each stored column by column, zero-padded. */
static void pack_a(cnnc_mat a, int64_t ic, int64_t mc, int64_t pc, int64_t kc, int64_t mr, float *dst) {
    for (int64_t i0 = 0; i0 < mc; i0 += mr) {
        const int64_t rows = CNNC_MIN(mr, mc - i0);
        if (a.trans) { /* A stored k x m: row p of the panel is contiguous in memory */
            for (int64_t p = 0; p < kc; ++p) {
                const float *src = a.p + (pc + p) * a.ld + ic + i0;
                float *d = dst + p * mr;
                int64_t i = 0;
                for (; i < rows; ++i) d[i] = src[i];
                for (; i < mr; ++i) d[i] = 0.0f;
            }
        } else {
            for (int64_t i = 0; i < rows; ++i) {
                const float *src = a.p + (ic + i0 + i) * a.ld + pc;
                for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = src[p];
            }
            for (int64_t i = rows; i < mr; ++i)
                for (int64_t p = 0; p < kc; ++p) dst[p * mr + i] = 0.0f;
        }
        dst += mr * kc;
    }
}

/* One NR-column panel of op(B)[pc:pc+kc, j0:j0+cols], stored row by row, zero-padded. */
static void pack_b_panel(cnnc_mat b, int64_t pc, int64_t kc, int64_t j0, int64_t cols, int64_t nr,
                         float *dst) {
    if (b.trans) { /* B stored n x k */
        for (int64_t j = 0; j < cols; ++j) {
            const float *src = b.p + (j0 + j) * b.ld + pc;
            for (int64_t p = 0; p < kc; ++p) dst[p * nr + j] = src[p];
        }
        for (int64_t j = cols; j < nr; ++j)
            for (int64_t p = 0; p < kc; ++p) dst[p * nr + j] = 0.0f;
    } else {
        for (int64_t p = 0; p < kc; ++p) {
            const float *src = b.p + (pc + p) * b.ld + j0;
            float *d = dst + p * nr;
            int64_t j = 0;
            for (; j < cols; ++j) d[j] = src[j];
            for (; j < nr; ++j) d[j] = 0.0f;
        }
    }
}

static void blocks(const cnnc_kernels *kt, int64_t m, int64_t n, int64_t k, int64_t *mc, int64_t *nc,
                   int64_t *kc) {
    *kc = CNNC_MIN(k, kt->kc);
    *nc = CNNC_MIN(CNNC_ROUND_UP(n, kt->nr), kt->nc);
    *mc = CNNC_MIN(CNNC_ROUND_UP(m, kt->mr), kt->mc);
}

/* Threads one GEMM uses: at most one per (MC-row block, NR panel) pair of the first column block,
 * and 1 for problems too small to be worth waking threads. The workspace is sized with the same count,
 * so it holds exactly the A panels the call packs. */
static int gemm_threads(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k, int64_t MC, int64_t NC) {
    if ((double)m * n * k < 64.0 * 64.0 * 64.0) return 1;
    return cnnc_threads(ctx, CNNC_CEIL_DIV(m, MC) * CNNC_CEIL_DIV(NC, ctx->k.nr));
}

int64_t cnnc_gemm_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k) {
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    int64_t mc, nc, kc;
    blocks(&ctx->k, m, n, k, &mc, &nc, &kc);
    const int64_t nt = gemm_threads(ctx, m, n, k, mc, nc);
    return (int64_t)sizeof(float) * (kc * nc + nt * mc * kc) + 2 * CNNC_ALIGN;
}

static void scale_c(int64_t m, int64_t n, float beta, float *c, int64_t ldc) {
    for (int64_t i = 0; i < m; ++i) {
        float *row = c + i * ldc;
        if (beta == 0.0f) memset(row, 0, (size_t)n * sizeof(float));
        else for (int64_t j = 0; j < n; ++j) row[j] *= beta;
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

    const cnnc_kernels *kt = &ctx->k;
    const int64_t mr = kt->mr, nr = kt->nr;
    int64_t MC, NC, KC;
    blocks(kt, m, n, k, &MC, &NC, &KC);
    float *bp = (float *)cnnc_align_ptr(ws);
    float *ap_all = bp + KC * NC;
    const cnnc_mat A = {trans_a, a, lda}, B = {trans_b, b, ldb};
    const cnnc_gemm_ukernel_fn ukernel = kt->gemm_ukernel;

    /* Work per (NC, KC) block: MC-row blocks, split further along the NR panels when there are fewer
     * row blocks than threads. */
    const int64_t mblocks = CNNC_CEIL_DIV(m, MC);
    const int nt = gemm_threads(ctx, m, n, k, MC, NC);
    (void)nt; /* unused without OpenMP */

#pragma omp parallel num_threads(nt) if (nt > 1)
    {
        int tid = 0, T = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        T = omp_get_num_threads();
#endif
        float *ap = ap_all + (int64_t)tid * MC * KC;
        for (int64_t jc = 0; jc < n; jc += NC) {
            const int64_t ncur = CNNC_MIN(NC, n - jc);
            const int64_t npanels = CNNC_CEIL_DIV(ncur, nr);
            const int64_t nsplit = mblocks >= T ? 1 : CNNC_MIN(npanels, CNNC_CEIL_DIV(T, mblocks));
            for (int64_t pc = 0; pc < k; pc += KC) {
                const int64_t kcur = CNNC_MIN(KC, k - pc);
                const cnnc_gemm_params params = {alpha, pc == 0 ? beta : 1.0f};
#pragma omp for schedule(static)
                for (int64_t jp = 0; jp < npanels; ++jp)
                    pack_b_panel(B, pc, kcur, jc + jp * nr, CNNC_MIN(nr, ncur - jp * nr), nr,
                                 bp + jp * nr * kcur);
                /* implicit barrier: B is packed */
#pragma omp for schedule(static)
                for (int64_t task = 0; task < mblocks * nsplit; ++task) {
                    const int64_t ib = task / nsplit, js = task % nsplit;
                    const int64_t jp0 = js * npanels / nsplit, jp1 = (js + 1) * npanels / nsplit;
                    if (jp0 >= jp1) continue;
                    const int64_t ic = ib * MC, mcur = CNNC_MIN(MC, m - ic);
                    pack_a(A, ic, mcur, pc, kcur, mr, ap);
                    for (int64_t jp = jp0; jp < jp1; ++jp) {
                        const int64_t j = jp * nr, ncols = CNNC_MIN(nr, ncur - j);
                        const float *bpanel = bp + jp * nr * kcur;
                        for (int64_t i = 0; i < mcur; i += mr)
                            ukernel(kcur, ap + i * kcur, bpanel, c + (ic + i) * ldc + jc + j, ldc,
                                    CNNC_MIN(mr, mcur - i), ncols, &params);
                    }
                }
                /* implicit barrier: B may be repacked */
            }
        }
    }
    return CNNC_OK;
}
