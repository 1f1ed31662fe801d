/* act.c - activations forward/backward, the fused bias + activation epilogue, bias gradients and
 * softmax / log-softmax. Elementwise loops are parallel over independent elements; reductions
 * (bias gradients, softmax rows) have a fixed order, so results do not depend on the thread count. */
#include "internal.h"
#include <math.h>

#define SELU_ALPHA 1.6732632423543772848170429916717f
#define SELU_SCALE 1.0507009873554804934193349852946f
#define GRAIN 4096 /* elements per parallel work item in elementwise loops */

int cnnc_act_valid(cnnc_act act) {
    if (act.kind < CNNC_ACT_NONE || act.kind > CNNC_ACT_CLIP) return 0;
    if (act.kind == CNNC_ACT_CLIP && !(act.alpha <= act.beta)) return 0;
    return 1;
}

static inline float sigmoidf(float v) {
    /* stable for large |v| */
    if (v >= 0.0f) return 1.0f / (1.0f + expf(-v));
    const float e = expf(v);
    return e / (1.0f + e);
}

float cnnc_act_scalar(cnnc_act act, float v) {
    switch (act.kind) {
    case CNNC_ACT_RELU: return v > 0.0f ? v : 0.0f;
    case CNNC_ACT_LEAKY_RELU: return v > 0.0f ? v : act.alpha * v;
    case CNNC_ACT_ELU: return v > 0.0f ? v : act.alpha * expm1f(v);
    case CNNC_ACT_SELU: return SELU_SCALE * (v > 0.0f ? v : SELU_ALPHA * expm1f(v));
    case CNNC_ACT_SIGMOID: return sigmoidf(v);
    case CNNC_ACT_TANH: return tanhf(v);
    case CNNC_ACT_HARD_SIGMOID: return fminf(fmaxf(act.alpha * v + act.beta, 0.0f), 1.0f);
    case CNNC_ACT_HARD_SWISH: return v * fminf(fmaxf(v / 6.0f + 0.5f, 0.0f), 1.0f);
    case CNNC_ACT_CLIP: return fminf(fmaxf(v, act.alpha), act.beta);
    default: return v;
    }
}

/* d act / d x at x (y = act(x) given for the kinds that use it). */
static inline float act_deriv(cnnc_act act, float v, float y) {
    switch (act.kind) {
    case CNNC_ACT_RELU: return v > 0.0f ? 1.0f : 0.0f;
    case CNNC_ACT_LEAKY_RELU: return v > 0.0f ? 1.0f : act.alpha;
    case CNNC_ACT_ELU: return v > 0.0f ? 1.0f : y + act.alpha;
    case CNNC_ACT_SELU: return v > 0.0f ? SELU_SCALE : y + SELU_SCALE * SELU_ALPHA;
    case CNNC_ACT_SIGMOID: return y * (1.0f - y);
    case CNNC_ACT_TANH: return 1.0f - y * y;
    case CNNC_ACT_HARD_SIGMOID: {
        const float t = act.alpha * v + act.beta;
        return (t > 0.0f && t < 1.0f) ? act.alpha : 0.0f;
    }
    case CNNC_ACT_HARD_SWISH:
        if (v < -3.0f) return 0.0f;
        if (v > 3.0f) return 1.0f;
        return v / 3.0f + 0.5f;
    case CNNC_ACT_CLIP: return (v > act.alpha && v < act.beta) ? 1.0f : 0.0f;
    default: return 1.0f;
    }
}

/* y[i] = act(x[i]) over [lo, hi) with one loop per kind so the simple ones vectorise. */
static void act_range(cnnc_act act, const float *x, float *y, int64_t lo, int64_t hi) {
    switch (act.kind) {
    case CNNC_ACT_NONE:
        if (x != y) memcpy(y + lo, x + lo, (size_t)(hi - lo) * sizeof(float));
        return;
    case CNNC_ACT_RELU:
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        return;
    case CNNC_ACT_LEAKY_RELU:
        for (int64_t i = lo; i < hi; ++i) y[i] = x[i] > 0.0f ? x[i] : act.alpha * x[i];
        return;
    case CNNC_ACT_CLIP:
        for (int64_t i = lo; i < hi; ++i) {
            const float v = x[i] < act.alpha ? act.alpha : x[i];
            y[i] = v > act.beta ? act.beta : v;
        }
        return;
    default:
        for (int64_t i = lo; i < hi; ++i) y[i] = cnnc_act_scalar(act, x[i]);
        return;
    }
}

/* dx[i] = dy[i] * act'(x[i]) over [lo, hi): the same products as act_deriv (bit for bit), with one
 * branch-free loop per common kind so they vectorise (a data-dependent branch per element cost ~6 ns
 * an element on random signs). */
/* select_f (internal.h): a if cond else b as bit operations, which compilers vectorise */
static void act_backward_range(cnnc_act act, const float *restrict x, const float *restrict y,
                               const float *restrict dy, float *restrict dx, int64_t lo, int64_t hi) {
    switch (act.kind) {
    case CNNC_ACT_RELU:
        for (int64_t i = lo; i < hi; ++i) dx[i] = select_f(x[i] > 0.0f, dy[i] * 1.0f, dy[i] * 0.0f);
        return;
    case CNNC_ACT_LEAKY_RELU:
        for (int64_t i = lo; i < hi; ++i) dx[i] = select_f(x[i] > 0.0f, dy[i] * 1.0f, dy[i] * act.alpha);
        return;
    case CNNC_ACT_CLIP:
        for (int64_t i = lo; i < hi; ++i)
            dx[i] = select_f((x[i] > act.alpha) & (x[i] < act.beta), dy[i] * 1.0f, dy[i] * 0.0f);
        return;
    case CNNC_ACT_SIGMOID:
        if (!y) break;
        for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * (y[i] * (1.0f - y[i]));
        return;
    case CNNC_ACT_TANH:
        if (!y) break;
        for (int64_t i = lo; i < hi; ++i) dx[i] = dy[i] * (1.0f - y[i] * y[i]);
        return;
    case CNNC_ACT_ELU:
        if (!y) break;
        for (int64_t i = lo; i < hi; ++i) dx[i] = select_f(x[i] > 0.0f, dy[i] * 1.0f, dy[i] * (y[i] + act.alpha));
        return;
    default: break;
    }
    for (int64_t i = lo; i < hi; ++i) {
        const float yi = y ? y[i] : cnnc_act_scalar(act, x[i]);
        dx[i] = dy[i] * act_deriv(act, x[i], yi);
    }
}

/* ---- the parallel loops' items ---------------------------------------------------------------- */
typedef struct {
    cnnc_act act;
    const float *x; /* input (bias for the bias_act loops) */
    float *y;       /* output (in place for the bias_act loops) */
    const float *y_in, *dy;
    int64_t cols, plane;
} act_job;

static void act_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const act_job *j = (const act_job *)arg;
    (void)slot;
    act_range(j->act, j->x, j->y, lo, hi);
}

static void act_backward_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const act_job *j = (const act_job *)arg;
    (void)slot;
    act_backward_range(j->act, j->x, j->y_in, j->dy, j->y, lo, hi);
}

static void bias_act_rows_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const act_job *j = (const act_job *)arg;
    (void)slot;
    for (int64_t r = lo; r < hi; ++r) cnnc_bias_act_span(j->act, j->x, j->y + r * j->cols, j->cols);
}

static void bias_act_planes_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const act_job *j = (const act_job *)arg;
    (void)slot;
    const int64_t plane = j->plane;
    for (int64_t q = lo; q < hi; ++q) {
        float *pp = j->y + q * plane;
        if (j->x) {
            const float bv = j->x[q % j->cols];
            for (int64_t i = 0; i < plane; ++i) pp[i] += bv;
        }
        act_range(j->act, pp, pp, 0, plane);
    }
}

#define COLBLOCK 64 /* columns per item of cnnc_bias_grad_rows */
typedef struct {
    const float *dy;
    float *db;
    int64_t rows, cols, plane; /* bias_grad_planes: n, c, plane */
} sum_job;

static void bias_grad_rows_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const sum_job *jb = (const sum_job *)arg;
    (void)slot;
    const int64_t rows = jb->rows, cols = jb->cols;
    for (int64_t cb = lo; cb < hi; ++cb) {
        const int64_t j0 = cb * COLBLOCK, nj = CNNC_MIN(COLBLOCK, cols - j0);
        double acc[COLBLOCK] = {0.0};
        for (int64_t r = 0; r < rows; ++r) {
            const float *row = jb->dy + r * cols + j0;
            for (int64_t j = 0; j < nj; ++j) acc[j] += row[j];
        }
        for (int64_t j = 0; j < nj; ++j) jb->db[j0 + j] = (float)acc[j];
    }
}

static void bias_grad_planes_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const sum_job *jb = (const sum_job *)arg;
    (void)slot;
    const int64_t n = jb->rows, c = jb->cols, plane = jb->plane;
    for (int64_t ch = lo; ch < hi; ++ch) {
        double acc = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const float *pp = jb->dy + (i * c + ch) * plane;
            for (int64_t q = 0; q < plane; ++q) acc += pp[q];
        }
        jb->db[ch] = (float)acc;
    }
}

typedef struct {
    const float *x; /* forward: x; backward: y */
    float *y;       /* forward: y; backward: dx */
    const float *dy;
    int64_t cols;
    int logsm;
} softmax_job;

static void softmax_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const softmax_job *jb = (const softmax_job *)arg;
    (void)slot;
    const float *x = jb->x;
    float *y = jb->y;
    const int64_t cols = jb->cols;
    const int logsm = jb->logsm;
    for (int64_t r = lo; r < hi; ++r) {
        const float *xr = x + r * cols;
        float *yr = y + r * cols;
        float mx = xr[0];
        for (int64_t j = 1; j < cols; ++j) mx = xr[j] > mx ? xr[j] : mx;
        double sum = 0.0;
        if (logsm) {
            for (int64_t j = 0; j < cols; ++j) sum += expf(xr[j] - mx);
            const float logsum = (float)log(sum); /* (x - max) - log(sum): exact near the max */
            for (int64_t j = 0; j < cols; ++j) yr[j] = (xr[j] - mx) - logsum;
        } else {
            for (int64_t j = 0; j < cols; ++j) {
                yr[j] = expf(xr[j] - mx);
                sum += yr[j];
            }
            const float inv = (float)(1.0 / sum);
            for (int64_t j = 0; j < cols; ++j) yr[j] *= inv;
        }
    }
}

static void softmax_backward_task(void *arg, int64_t lo, int64_t hi, int slot) {
    const softmax_job *jb = (const softmax_job *)arg;
    (void)slot;
    const float *y = jb->x, *dy = jb->dy;
    float *dx = jb->y;
    const int64_t cols = jb->cols;
    const int logsm = jb->logsm;
    for (int64_t r = lo; r < hi; ++r) {
        const float *yr = y + r * cols, *dyr = dy + r * cols;
        float *dxr = dx + r * cols;
        double s = 0.0;
        if (logsm) {
            for (int64_t j = 0; j < cols; ++j) s += dyr[j];
            for (int64_t j = 0; j < cols; ++j) dxr[j] = dyr[j] - expf(yr[j]) * (float)s;
        } else {
            for (int64_t j = 0; j < cols; ++j) s += (double)dyr[j] * yr[j];
            for (int64_t j = 0; j < cols; ++j) dxr[j] = yr[j] * (dyr[j] - (float)s);
        }
    }
}

// y[size] = act(x[size])
int cnnc_act_forward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x, float *y) {
    if (size < 0 || !x || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    act_job j = {act, x, y, NULL, NULL, 0};
    const int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(size, GRAIN));
    cnnc_parallel_for(ctx, nt, size, cnnc_grain(size, nt, GRAIN), act_task, &j);
    return CNNC_OK;
}

// dx[size] = dy * act'(x)
int cnnc_act_backward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x, const float *y,
                      const float *dy, float *dx) {
    if (size < 0 || !x || !dy || !dx || !cnnc_act_valid(act)) return CNNC_EINVAL;
    act_job j = {act, x, dx, y, dy, 0};
    const int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(size, GRAIN));
    cnnc_parallel_for(ctx, nt, size, cnnc_grain(size, nt, GRAIN), act_backward_task, &j);
    return CNNC_OK;
}

/* y[0:n] = act(y + b[0:n]) in place, on the calling thread (b may be NULL): one row of
 * cnnc_bias_act_rows, for callers that already split the work (no parallel loop per call). */
void cnnc_bias_act_span(cnnc_act act, const float *b, float *y, int64_t n) {
    if (b)
        for (int64_t j = 0; j < n; ++j) y[j] += b[j];
    act_range(act, y, y, 0, n);
}

void cnnc_gemm_epilogue_block(const cnnc_gemm_epilogue *ep, float *c, int64_t ldc, int64_t i0, int64_t rows,
                              int64_t j0, int64_t cols) {
    const float *b = ep->bias;
    const int per_row = ep->bias_per_row;
    const int kind = ep->act.kind;
    if (ep->res || kind == CNNC_ACT_NONE || kind == CNNC_ACT_RELU) {
        /* the common cases inline (a call per row of a micro-tile costs more than the arithmetic): the
         * bias, the residual, then the activation, each rounded as a pass of its own would round it (for
         * relu, the operations of act_range) */
        for (int64_t i = i0; i < i0 + rows; ++i) {
            float *restrict y = c + i * ldc + j0;
            if (b && per_row) {
                const float bv = b[i];
                for (int64_t j = 0; j < cols; ++j) y[j] += bv;
            } else if (b) {
                const float *restrict bj = b + j0;
                for (int64_t j = 0; j < cols; ++j) y[j] += bj[j];
            }
            if (ep->res) {
                const float *restrict r = ep->res + i * ep->ldr + j0;
                for (int64_t j = 0; j < cols; ++j) y[j] += r[j];
            }
            if (kind == CNNC_ACT_RELU)
                for (int64_t j = 0; j < cols; ++j) y[j] = y[j] > 0.0f ? y[j] : 0.0f;
            else if (kind != CNNC_ACT_NONE)
                act_range(ep->act, y, y, 0, cols);
        }
        return;
    }
    for (int64_t i = i0; i < i0 + rows; ++i) {
        float *y = c + i * ldc + j0;
        if (b && per_row) {
            const float bv = b[i];
            for (int64_t j = 0; j < cols; ++j) y[j] += bv;
            act_range(ep->act, y, y, 0, cols);
        } else {
            cnnc_bias_act_span(ep->act, b ? b + j0 : NULL, y, cols);
        }
    }
}

// y[rows, cols] = act(y + b[cols]) in place
int cnnc_bias_act_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *b, cnnc_act act,
                       float *y) {
    if (rows < 0 || cols <= 0 || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    const int64_t per = CNNC_MAX(1, GRAIN / cols);
    act_job j = {act, b, y, NULL, NULL, cols};
    const int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(rows, per));
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, per), bias_act_rows_task, &j);
    return CNNC_OK;
}

// y[N, C, P] = act(y + b[C]) in place
int cnnc_bias_act_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane, const float *b,
                         cnnc_act act, float *y) {
    if (n < 0 || c <= 0 || plane <= 0 || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    const int64_t planes = n * c;
    act_job j = {act, b, y, NULL, NULL, c, plane};
    const int nt = cnnc_threads(ctx, planes * plane / GRAIN + 1);
    cnnc_parallel_for(ctx, nt, planes, cnnc_grain(planes, nt, CNNC_CEIL_DIV(GRAIN, plane)), bias_act_planes_task, &j);
    return CNNC_OK;
}

// db[cols] = sum over rows of dy[rows, cols]
int cnnc_bias_grad_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *dy, float *db) {
    if (rows < 0 || cols <= 0 || !dy || !db) return CNNC_EINVAL;
    const int64_t blocks = CNNC_CEIL_DIV(cols, COLBLOCK);
    sum_job j = {dy, db, rows, cols, 0};
    cnnc_parallel_for(ctx, cnnc_threads(ctx, blocks), blocks, 1, bias_grad_rows_task, &j);
    return CNNC_OK;
}

// db[C] = sum over n and p of dy[N, C, P]
int cnnc_bias_grad_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane, const float *dy,
                          float *db) {
    if (n < 0 || c <= 0 || plane <= 0 || !dy || !db) return CNNC_EINVAL;
    sum_job j = {dy, db, n, c, plane};
    cnnc_parallel_for(ctx, cnnc_threads(ctx, c), c, 1, bias_grad_planes_task, &j);
    return CNNC_OK;
}

// y[rows, cols] = softmax (or log_softmax) of each row of x
int cnnc_softmax_forward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int logsm, const float *x,
                         float *y) {
    if (rows < 0 || cols <= 0 || !x || !y) return CNNC_EINVAL;
    softmax_job jb = {x, y, NULL, cols, logsm};
    const int nt = cnnc_threads(ctx, rows * cols / GRAIN + 1);
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, CNNC_CEIL_DIV(GRAIN, cols)), softmax_task, &jb);
    return CNNC_OK;
}

// dx[rows, cols] from the forward output y and dy
int cnnc_softmax_backward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int logsm, const float *y,
                          const float *dy, float *dx) {
    if (rows < 0 || cols <= 0 || !y || !dy || !dx) return CNNC_EINVAL;
    softmax_job jb = {y, dx, dy, cols, logsm};
    const int nt = cnnc_threads(ctx, rows * cols / GRAIN + 1);
    cnnc_parallel_for(ctx, nt, rows, cnnc_grain(rows, nt, CNNC_CEIL_DIV(GRAIN, cols)), softmax_backward_task, &jb);
    return CNNC_OK;
}
