/* optim.c - the optimizers' update rules over a model's float32 variables in one call
 * (cnnc_optim_update): the variables' elements as one index space, split into contiguous ranges that
 * run in parallel, each range's spans through the ISA's kernel (arch/optim.h). Elementwise: the same
 * bits for any thread count and ISA. */
#include "internal.h"

#define OPTIM_GRAIN 16384 /* elements per parallel item: enough work to pay for handing it out */

typedef struct {
    const cnnc_optim_rule *r;
    int64_t nvars;
    const int64_t *n, *start; /* sizes; first element of each variable in the index space */
    const float *const *g;
    float *const *w, *const *s0, *const *s1, *const *s2;
    cnnc_optim_span_fn span;
} optim_job;

static float *at(float *const *s, int64_t v, int64_t off) { return s && s[v] ? s[v] + off : NULL; }

static void optim_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const optim_job *j = (const optim_job *)arg;
    (void)slot;
    int64_t v = 0;
    while (j->start[v] + j->n[v] <= lo) ++v; /* the variable holding element lo */
    for (; v < j->nvars && j->start[v] < hi; ++v) {
        const int64_t a = CNNC_MAX(lo, j->start[v]) - j->start[v], b = CNNC_MIN(hi, j->start[v] + j->n[v]) - j->start[v];
        if (b > a)
            j->span(j->r, b - a, j->g[v] + a, j->w[v] + a, at(j->s0, v, a), at(j->s1, v, a), at(j->s2, v, a));
    }
}

int cnnc_optim_update(const cnnc_ctx *ctx, const cnnc_optim_rule *r, int64_t nvars, const int64_t *n,
                      const float *const *g, float *const *w, float *const *s0, float *const *s1, float *const *s2,
                      int64_t *start) {
    if (!ctx || !r || nvars < 0 || (nvars && (!n || !g || !w || !start))) return CNNC_EINVAL;
    const int need0 = r->kind != CNNC_OPTIM_SGD, need1 = r->kind == CNNC_OPTIM_ADAM;
    if (r->kind < CNNC_OPTIM_SGD || r->kind > CNNC_OPTIM_ADAGRAD || (nvars && ((need0 && !s0) || (need1 && !s1))))
        return CNNC_EINVAL;
    int64_t total = 0;
    for (int64_t v = 0; v < nvars; ++v) {
        if (n[v] < 0 || n[v] > INT64_MAX - total) return CNNC_EINVAL;
        if (n[v] && (!g[v] || !w[v] || (need0 && !s0[v]) || (need1 && !s1[v]))) return CNNC_EINVAL;
        start[v] = total;
        total += n[v];
    }
    if (!total) return CNNC_OK;
    optim_job j = {r, nvars, n, start, g, w, s0, s1, s2, cnnc_optim_span_for(&ctx->k)};
    const int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(total, OPTIM_GRAIN));
    cnnc_parallel_for(ctx, nt, total, cnnc_grain(total, nt, OPTIM_GRAIN), optim_task, &j);
    return CNNC_OK;
}
