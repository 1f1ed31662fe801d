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
/* a if cond else b, as bit operations: compilers vectorise this where a conditional on a float
 * comparison stays a branch */
static inline float select_f(int cond, float a, float b) {
    const int32_t m = -(int32_t)(cond & 1);
    union { float f; int32_t u; } pa = {a}, pb = {b}, r;
    r.u = (pa.u & m) | (pb.u & ~m);
    return r.f;
}

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

// y[size] = act(x[size])
int cnnc_act_forward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x, float *y) {
    if (size < 0 || !x || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    const int64_t items = CNNC_CEIL_DIV(size, GRAIN);
    int nt = cnnc_threads(ctx, items);
    CNNC_PARALLEL_FOR(nt, for (int64_t t = 0; t < items; ++t) act_range(act, x, y, t * GRAIN, CNNC_MIN(size, (t + 1) * GRAIN)););
    return CNNC_OK;
}

// dx[size] = dy * act'(x)
int cnnc_act_backward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x, const float *y,
                      const float *dy, float *dx) {
    if (size < 0 || !x || !dy || !dx || !cnnc_act_valid(act)) return CNNC_EINVAL;
    const int64_t items = CNNC_CEIL_DIV(size, GRAIN);
    int nt = cnnc_threads(ctx, items);
    CNNC_PARALLEL_FOR(nt, for (int64_t t = 0; t < items; ++t) act_backward_range(act, x, y, dy, dx, t * GRAIN, CNNC_MIN(size, (t + 1) * GRAIN)););
    return CNNC_OK;
}

/* y[0:n] = act(y + b[0:n]) in place, on the calling thread (b may be NULL): one row of
 * cnnc_bias_act_rows, for callers that already split the work (no OpenMP region per call). */
void cnnc_bias_act_span(cnnc_act act, const float *b, float *y, int64_t n) {
    if (b)
        for (int64_t j = 0; j < n; ++j) y[j] += b[j];
    act_range(act, y, y, 0, n);
}

// y[rows, cols] = act(y + b[cols]) in place
int cnnc_bias_act_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *b, cnnc_act act,
                       float *y) {
    if (rows < 0 || cols <= 0 || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    const int64_t per = CNNC_MAX(1, GRAIN / cols), items = CNNC_CEIL_DIV(rows, per);
    int nt = cnnc_threads(ctx, items);
    CNNC_PARALLEL_FOR(nt, for (int64_t t = 0; t < items; ++t) {
        for (int64_t r = t * per; r < CNNC_MIN(rows, (t + 1) * per); ++r) cnnc_bias_act_span(act, b, y + r * cols, cols);
    });
    return CNNC_OK;
}

// y[N, C, P] = act(y + b[C]) in place
int cnnc_bias_act_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane, const float *b,
                         cnnc_act act, float *y) {
    if (n < 0 || c <= 0 || plane <= 0 || !y || !cnnc_act_valid(act)) return CNNC_EINVAL;
    const int64_t planes = n * c;
    int nt = cnnc_threads(ctx, planes * plane / GRAIN + 1);
    CNNC_PARALLEL_FOR(nt, for (int64_t q = 0; q < planes; ++q) {
        float *pp = y + q * plane;
        if (b) {
            const float bv = b[q % c];
            for (int64_t i = 0; i < plane; ++i) pp[i] += bv;
        }
        act_range(act, pp, pp, 0, plane);
    });
    return CNNC_OK;
}

#define COLBLOCK 64
// db[cols] = sum over rows of dy[rows, cols]
int cnnc_bias_grad_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *dy, float *db) {
    if (rows < 0 || cols <= 0 || !dy || !db) return CNNC_EINVAL;
    const int64_t blocks = CNNC_CEIL_DIV(cols, COLBLOCK);
    int nt = cnnc_threads(ctx, blocks);
    CNNC_PARALLEL_FOR(nt, for (int64_t cb = 0; cb < blocks; ++cb) {
        const int64_t j0 = cb * COLBLOCK, nj = CNNC_MIN(COLBLOCK, cols - j0);
        double acc[COLBLOCK] = {0.0};
        for (int64_t r = 0; r < rows; ++r) {
            const float *row = dy + r * cols + j0;
            for (int64_t j = 0; j < nj; ++j) acc[j] += row[j];
        }
        for (int64_t j = 0; j < nj; ++j) db[j0 + j] = (float)acc[j];
    });
    return CNNC_OK;
}

// db[C] = sum over n and p of dy[N, C, P]
int cnnc_bias_grad_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane, const float *dy,
                          float *db) {
    if (n < 0 || c <= 0 || plane <= 0 || !dy || !db) return CNNC_EINVAL;
    int nt = cnnc_threads(ctx, c);
    CNNC_PARALLEL_FOR(nt, for (int64_t ch = 0; ch < c; ++ch) {
        double acc = 0.0;
        for (int64_t i = 0; i < n; ++i) {
            const float *pp = dy + (i * c + ch) * plane;
            for (int64_t q = 0; q < plane; ++q) acc += pp[q];
        }
        db[ch] = (float)acc;
    });
    return CNNC_OK;
}

// y[rows, cols] = softmax (or log_softmax) of each row of x
int cnnc_softmax_forward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int logsm, const float *x,
                         float *y) {
    if (rows < 0 || cols <= 0 || !x || !y) return CNNC_EINVAL;
    int nt = cnnc_threads(ctx, rows * cols / GRAIN + 1);
    CNNC_PARALLEL_FOR(nt, for (int64_t r = 0; r < rows; ++r) {
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
    });
    return CNNC_OK;
}

// dx[rows, cols] from the forward output y and dy
int cnnc_softmax_backward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int logsm, const float *y,
                          const float *dy, float *dx) {
    if (rows < 0 || cols <= 0 || !y || !dy || !dx) return CNNC_EINVAL;
    int nt = cnnc_threads(ctx, rows * cols / GRAIN + 1);
    CNNC_PARALLEL_FOR(nt, for (int64_t r = 0; r < rows; ++r) {
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
    });
    return CNNC_OK;
}
