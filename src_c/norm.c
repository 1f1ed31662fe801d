/* norm.c - batch normalization (inference, training, backward).
 *
 * Data are viewed as x[outer, C, inner]: NHWC and 2-D inputs have inner = 1 (channels contiguous),
 * NCHW has outer = N, inner = H*W. Per-channel reductions use double accumulators and run in a fixed
 * order inside one task (a block of channels), so results do not depend on the thread count.
 */
#include "internal.h"
#include <math.h>

#define BN_CBLOCK 32   /* channels per task when inner == 1 */
#define BN_RBLOCK 64   /* rows per task when applying the affine map with inner == 1 */

static int bn_args(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner) {
    if (!ctx || outer < 1 || c < 1 || inner < 1) return CNNC_EINVAL;
    if (cnnc_mul_ok(cnnc_mul_ok(outer, c), inner) < 0) return CNNC_EOVERFLOW;
    return CNNC_OK;
}

/* Channel j's multiplier gamma / sqrt(var + eps), from invstd when given, else from var. */
static inline float bn_scale(int64_t j, const float *gamma, const float *var, const float *invstd,
                             float eps) {
    float inv = invstd ? invstd[j] : (float)(1.0 / sqrt((double)var[j] + (double)eps));
    return gamma[j] * inv;
}

/* Store channel j's statistics (double mean, biased variance) and update the moving averages. */
static inline void bn_store_stats(int64_t j, double mu, double var, float eps, float momentum,
                                  float *moving_mean, float *moving_var, float *save_mean,
                                  float *save_invstd) {
    save_mean[j] = (float)mu;
    save_invstd[j] = (float)(1.0 / sqrt(var + (double)eps));
    const double mo = (double)momentum;
    if (moving_mean) moving_mean[j] = (float)(mo * (double)moving_mean[j] + (1.0 - mo) * mu);
    if (moving_var) moving_var[j] = (float)(mo * (double)moving_var[j] + (1.0 - mo) * var);
}

/* ---- the parallel loops' items ---------------------------------------------------------------- */
typedef struct {
    int64_t outer, c, inner;
    const float *x, *gamma, *beta, *mean, *var, *invstd;
    float eps;
    float *y;
} bn_apply_job;

/* inner == 1: items are blocks of BN_RBLOCK rows, all channels. */
static void bn_apply_rows_task(void *arg, int64_t begin, int64_t end, int slot) {
    const bn_apply_job *jb = (const bn_apply_job *)arg;
    (void)slot;
    const int64_t outer = jb->outer, c = jb->c;
    const float *restrict x = jb->x;
    const float *gamma = jb->gamma, *beta = jb->beta, *mean = jb->mean, *var = jb->var;
    const float *invstd = jb->invstd;
    const float eps = jb->eps;
    float *restrict y = jb->y;
    for (int64_t t = begin; t < end; t++) {
        const int64_t r0 = t * BN_RBLOCK, r1 = CNNC_MIN(outer, r0 + BN_RBLOCK);
        float m[BN_CBLOCK], a[BN_CBLOCK], b[BN_CBLOCK];
        for (int64_t c0 = 0; c0 < c; c0 += BN_CBLOCK) {
            const int64_t cn = CNNC_MIN(BN_CBLOCK, c - c0);
            for (int64_t j = 0; j < cn; j++) {
                m[j] = mean[c0 + j];
                a[j] = bn_scale(c0 + j, gamma, var, invstd, eps);
                b[j] = beta[c0 + j];
            }
            for (int64_t r = r0; r < r1; r++) {
                const float *restrict xr = x + r * c + c0;
                float *restrict yr = y + r * c + c0;
                for (int64_t j = 0; j < cn; j++) yr[j] = (xr[j] - m[j]) * a[j] + b[j];
            }
        }
    }
}

/* inner > 1: items are (outer, channel) planes. */
static void bn_apply_planes_task(void *arg, int64_t begin, int64_t end, int slot) {
    const bn_apply_job *jb = (const bn_apply_job *)arg;
    (void)slot;
    const int64_t c = jb->c, inner = jb->inner;
    const float *restrict x = jb->x;
    const float *gamma = jb->gamma, *beta = jb->beta, *mean = jb->mean, *var = jb->var;
    const float *invstd = jb->invstd;
    const float eps = jb->eps;
    float *restrict y = jb->y;
    for (int64_t pl = begin; pl < end; pl++) {
        const int64_t j = pl % c;
        const float m = mean[j], a = bn_scale(j, gamma, var, invstd, eps), b = beta[j];
        const float *restrict xp = x + pl * inner;
        float *restrict yp = y + pl * inner;
        for (int64_t i = 0; i < inner; i++) yp[i] = (xp[i] - m) * a + b;
    }
}

typedef struct {
    int64_t outer, c, inner;
    const float *x;
    double count;
    float eps, momentum;
    float *moving_mean, *moving_var, *save_mean, *save_invstd;
} bn_stats_job;

/* inner == 1: items are blocks of BN_CBLOCK channels. */
static void bn_stats_cblocks_task(void *arg, int64_t begin, int64_t end, int slot) {
    const bn_stats_job *jb = (const bn_stats_job *)arg;
    (void)slot;
    const int64_t outer = jb->outer, c = jb->c;
    const float *x = jb->x;
    const double count = jb->count;
    const float eps = jb->eps, momentum = jb->momentum;
    float *moving_mean = jb->moving_mean, *moving_var = jb->moving_var;
    float *save_mean = jb->save_mean, *save_invstd = jb->save_invstd;
    for (int64_t t = begin; t < end; t++) {
        const int64_t c0 = t * BN_CBLOCK, cn = CNNC_MIN(BN_CBLOCK, c - c0);
        double s[BN_CBLOCK] = {0}, q[BN_CBLOCK] = {0};
        for (int64_t r = 0; r < outer; r++)
            for (int64_t j = 0; j < cn; j++) s[j] += x[r * c + c0 + j];
        for (int64_t j = 0; j < cn; j++) s[j] /= count;
        for (int64_t r = 0; r < outer; r++)
            for (int64_t j = 0; j < cn; j++) {
                double d = x[r * c + c0 + j] - s[j];
                q[j] += d * d;
            }
        for (int64_t j = 0; j < cn; j++)
            bn_store_stats(c0 + j, s[j], q[j] / count, eps, momentum, moving_mean, moving_var,
                           save_mean, save_invstd);
    }
}

/* inner > 1: items are channels. */
static void bn_stats_channels_task(void *arg, int64_t begin, int64_t end, int slot) {
    const bn_stats_job *jb = (const bn_stats_job *)arg;
    (void)slot;
    const int64_t outer = jb->outer, c = jb->c, inner = jb->inner;
    const float *x = jb->x;
    const double count = jb->count;
    const float eps = jb->eps, momentum = jb->momentum;
    float *moving_mean = jb->moving_mean, *moving_var = jb->moving_var;
    float *save_mean = jb->save_mean, *save_invstd = jb->save_invstd;
    for (int64_t j = begin; j < end; j++) {
        double s = 0.0, q = 0.0;
        for (int64_t o = 0; o < outer; o++) {
            const float *restrict xp = x + (o * c + j) * inner;
            for (int64_t i = 0; i < inner; i++) s += xp[i];
        }
        s /= count;
        for (int64_t o = 0; o < outer; o++) {
            const float *restrict xp = x + (o * c + j) * inner;
            for (int64_t i = 0; i < inner; i++) {
                double d = xp[i] - s;
                q += d * d;
            }
        }
        bn_store_stats(j, s, q / count, eps, momentum, moving_mean, moving_var, save_mean,
                       save_invstd);
    }
}

typedef struct {
    int64_t outer, c, inner;
    const float *x, *dy, *gamma, *save_mean, *save_invstd;
    double count;
    float *dx, *dgamma, *dbeta;
} bn_grad_job;

/* inner == 1: items are blocks of BN_CBLOCK channels. */
static void bn_grad_cblocks_task(void *arg, int64_t begin, int64_t end, int slot) {
    const bn_grad_job *jb = (const bn_grad_job *)arg;
    (void)slot;
    const int64_t outer = jb->outer, c = jb->c;
    const float *x = jb->x, *dy = jb->dy, *gamma = jb->gamma;
    const float *save_mean = jb->save_mean, *save_invstd = jb->save_invstd;
    const double count = jb->count;
    float *dx = jb->dx, *dgamma = jb->dgamma, *dbeta = jb->dbeta;
    for (int64_t t = begin; t < end; t++) {
        const int64_t c0 = t * BN_CBLOCK, cn = CNNC_MIN(BN_CBLOCK, c - c0);
        double sd[BN_CBLOCK] = {0}, sx[BN_CBLOCK] = {0}, m[BN_CBLOCK], iv[BN_CBLOCK];
        for (int64_t j = 0; j < cn; j++) {
            m[j] = save_mean[c0 + j];
            iv[j] = save_invstd[c0 + j];
        }
        for (int64_t r = 0; r < outer; r++) {
            const float *restrict xr = x + r * c + c0, *restrict dr = dy + r * c + c0;
            for (int64_t j = 0; j < cn; j++) {
                sd[j] += dr[j];
                sx[j] += (double)dr[j] * (((double)xr[j] - m[j]) * iv[j]);
            }
        }
        for (int64_t j = 0; j < cn; j++) {
            if (dbeta) dbeta[c0 + j] = (float)sd[j];
            if (dgamma) dgamma[c0 + j] = (float)sx[j];
        }
        if (dx) {
            float fm[BN_CBLOCK], fi[BN_CBLOCK], k1[BN_CBLOCK], k2[BN_CBLOCK], k3[BN_CBLOCK];
            for (int64_t j = 0; j < cn; j++) {
                fm[j] = (float)m[j];
                fi[j] = (float)iv[j];
                k1[j] = gamma[c0 + j] * fi[j];
                k2[j] = (float)(sd[j] / count);
                k3[j] = (float)(sx[j] / count);
            }
            for (int64_t r = 0; r < outer; r++) {
                const float *restrict xr = x + r * c + c0, *restrict dr = dy + r * c + c0;
                float *restrict o = dx + r * c + c0;
                for (int64_t j = 0; j < cn; j++)
                    o[j] = k1[j] * (dr[j] - k2[j] - (xr[j] - fm[j]) * fi[j] * k3[j]);
            }
        }
    }
}

/* inner > 1: items are channels. */
static void bn_grad_channels_task(void *arg, int64_t begin, int64_t end, int slot) {
    const bn_grad_job *jb = (const bn_grad_job *)arg;
    (void)slot;
    const int64_t outer = jb->outer, c = jb->c, inner = jb->inner;
    const float *x = jb->x, *dy = jb->dy, *gamma = jb->gamma;
    const float *save_mean = jb->save_mean, *save_invstd = jb->save_invstd;
    const double count = jb->count;
    float *dx = jb->dx, *dgamma = jb->dgamma, *dbeta = jb->dbeta;
    for (int64_t j = begin; j < end; j++) {
        const double m = save_mean[j], iv = save_invstd[j];
        double sd = 0.0, sx = 0.0;
        for (int64_t o = 0; o < outer; o++) {
            const float *restrict xp = x + (o * c + j) * inner, *restrict dp = dy + (o * c + j) * inner;
            for (int64_t i = 0; i < inner; i++) {
                sd += dp[i];
                sx += (double)dp[i] * (((double)xp[i] - m) * iv);
            }
        }
        if (dbeta) dbeta[j] = (float)sd;
        if (dgamma) dgamma[j] = (float)sx;
        if (dx) {
            const float fm = save_mean[j], fi = save_invstd[j], k1 = gamma[j] * fi;
            const float k2 = (float)(sd / count), k3 = (float)(sx / count);
            for (int64_t o = 0; o < outer; o++) {
                const float *restrict xp = x + (o * c + j) * inner, *restrict dp = dy + (o * c + j) * inner;
                float *restrict op = dx + (o * c + j) * inner;
                for (int64_t i = 0; i < inner; i++) op[i] = k1 * (dp[i] - k2 - (xp[i] - fm) * fi * k3);
            }
        }
    }
}

/* x[outer, C, inner] -> y = (x - mean) * gamma * invstd + beta, invstd given or 1/sqrt(var + eps). */
static void bn_apply(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                     const float *restrict x, const float *gamma, const float *beta,
                     const float *mean, const float *var, const float *invstd, float eps,
                     float *restrict y) {
    bn_apply_job jb = {outer, c, inner, x, gamma, beta, mean, var, invstd, eps, y};
    if (inner == 1) {
        const int64_t tasks = CNNC_CEIL_DIV(outer, BN_RBLOCK);
        const int nt = cnnc_threads(ctx, tasks);
        cnnc_parallel_for(ctx, nt, tasks, cnnc_grain(tasks, nt, 1), bn_apply_rows_task, &jb);
    } else {
        const int64_t planes = outer * c;
        const int nt = cnnc_threads(ctx, planes);
        cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, 1), bn_apply_planes_task, &jb);
    }
}

/* x[outer, C, inner], gamma/beta/mean/var[C] -> y[outer, C, inner]. */
int cnnc_batch_norm_inference(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                              const float *x, const float *gamma, const float *beta,
                              const float *mean, const float *var, float eps, float *y) {
    int rc = bn_args(ctx, outer, c, inner);
    if (rc != CNNC_OK) return rc;
    if (!x || !gamma || !beta || !mean || !var || !y || !(eps >= 0.0f) || isinf(eps))
        return CNNC_EINVAL;
    bn_apply(ctx, outer, c, inner, x, gamma, beta, mean, var, NULL, eps, y);
    return CNNC_OK;
}

/* x[outer, C, inner], gamma/beta[C] -> y[outer, C, inner], save_mean/save_invstd[C]; moving_mean and
 * moving_var[C] (may be NULL) updated in place. Two passes per channel: mean, then squared deviations. */
int cnnc_batch_norm_training(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                             const float *x, const float *gamma, const float *beta, float eps,
                             float momentum, float *moving_mean, float *moving_var, float *y,
                             float *save_mean, float *save_invstd) {
    int rc = bn_args(ctx, outer, c, inner);
    if (rc != CNNC_OK) return rc;
    if (!x || !gamma || !beta || !y || !save_mean || !save_invstd) return CNNC_EINVAL;
    if (!(eps >= 0.0f) || isinf(eps) || !(momentum >= 0.0f && momentum <= 1.0f)) return CNNC_EINVAL;
    const double count = (double)outer * (double)inner;
    bn_stats_job jb = {outer, c, inner, x, count, eps, momentum, moving_mean, moving_var, save_mean,
                       save_invstd};
    if (inner == 1) {
        const int64_t tasks = CNNC_CEIL_DIV(c, BN_CBLOCK);
        const int nt = cnnc_threads(ctx, tasks);
        cnnc_parallel_for(ctx, nt, tasks, 1, bn_stats_cblocks_task, &jb);
    } else {
        const int nt = cnnc_threads(ctx, c);
        cnnc_parallel_for(ctx, nt, c, 1, bn_stats_channels_task, &jb);
    }
    bn_apply(ctx, outer, c, inner, x, gamma, beta, save_mean, NULL, save_invstd, eps, y);
    return CNNC_OK;
}

/* x, dy[outer, C, inner], gamma/save_mean/save_invstd[C] -> dx[outer, C, inner], dgamma/dbeta[C]
 * (each may be NULL). With xhat = (x - mean) * invstd and M = outer * inner:
 * dbeta = sum(dy), dgamma = sum(dy * xhat), dx = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M). */
int cnnc_batch_norm_backward(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                             const float *x, const float *dy, const float *gamma,
                             const float *save_mean, const float *save_invstd, float *dx,
                             float *dgamma, float *dbeta) {
    int rc = bn_args(ctx, outer, c, inner);
    if (rc != CNNC_OK) return rc;
    if (!x || !dy || !save_mean || !save_invstd || (dx && !gamma)) return CNNC_EINVAL;
    const double count = (double)outer * (double)inner;
    bn_grad_job jb = {outer, c, inner, x, dy, gamma, save_mean, save_invstd, count, dx, dgamma, dbeta};
    if (inner == 1) {
        const int64_t tasks = CNNC_CEIL_DIV(c, BN_CBLOCK);
        const int nt = cnnc_threads(ctx, tasks);
        cnnc_parallel_for(ctx, nt, tasks, 1, bn_grad_cblocks_task, &jb);
    } else {
        const int nt = cnnc_threads(ctx, c);
        cnnc_parallel_for(ctx, nt, c, 1, bn_grad_channels_task, &jb);
    }
    return CNNC_OK;
}
