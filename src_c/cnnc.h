/*
 * cnnc.h - the one public header of the cnnc C core.
 *
 * Conventions (every function below follows them):
 *  - float32 data, row-major, densely packed unless a leading dimension says otherwise.
 *  - Every size, stride and index is int64_t.
 *  - Kernels never allocate. A call that needs scratch memory takes a workspace pointer and its size in
 *    bytes; the matching *_workspace_size function says how many bytes that call needs (it may be 0).
 *  - No global mutable state: the ISA function table and the thread count travel in a cnnc_ctx that the
 *    caller owns, so concurrent calls from several threads are safe.
 *  - Results are bit-identical for any thread count: no loop whose reduction order depends on it.
 *  - Outputs are overwritten (never accumulated into) unless the comment says otherwise.
 *  - Functions return CNNC_OK (0) or a negative error code; cnnc_strerror() describes it.
 */
#ifndef CNNC_H
#define CNNC_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CNNC_VERSION "0.1.0"

/* ---- errors ---------------------------------------------------------------------------------- */
enum {
    CNNC_OK = 0,
    CNNC_EINVAL = -1,     /* an argument is out of range (size <= 0, stride <= 0, bad enum...) */
    CNNC_EWORKSPACE = -2, /* the workspace is NULL or smaller than *_workspace_size says */
    CNNC_EOVERFLOW = -3,  /* a derived size does not fit in int64 */
    CNNC_EFORMAT = -4,    /* a bundle is malformed: truncated, corrupted, inconsistent */
    CNNC_EVERSION = -5,   /* a bundle of a format version this library does not read */
    CNNC_ENOMEM = -6,     /* out of memory (only cnnc_model_load allocates) */
    CNNC_ESTATE = -7      /* call order: cnnc_model_run before cnnc_model_arena_size, or without the constants
                             a bundle written without weights needs */
};
const char *cnnc_strerror(int code);

/* ---- layouts, ISAs, activations -------------------------------------------------------------- */
enum { CNNC_NHWC = 0, CNNC_NCHW = 1 };

enum { CNNC_ARCH_AUTO = -1, CNNC_ARCH_GENERIC = 0, CNNC_ARCH_AVX2 = 1, CNNC_ARCH_AVX512 = 2 };

enum {
    CNNC_ACT_NONE = 0,
    CNNC_ACT_RELU,         /* max(x, 0) */
    CNNC_ACT_LEAKY_RELU,   /* x > 0 ? x : alpha * x */
    CNNC_ACT_ELU,          /* x > 0 ? x : alpha * (exp(x) - 1) */
    CNNC_ACT_SELU,         /* scale * (x > 0 ? x : a * (exp(x) - 1)), fixed constants */
    CNNC_ACT_SIGMOID,      /* 1 / (1 + exp(-x)) */
    CNNC_ACT_TANH,
    CNNC_ACT_HARD_SIGMOID, /* max(0, min(1, alpha * x + beta)) */
    CNNC_ACT_HARD_SWISH,   /* x * max(0, min(1, x / 6 + 1 / 2)) */
    CNNC_ACT_CLIP          /* min(max(x, alpha), beta); relu6 is clip(0, 6) */
};
typedef struct {
    int kind;    /* CNNC_ACT_* */
    float alpha; /* leaky slope, elu alpha, hard_sigmoid slope, clip minimum */
    float beta;  /* hard_sigmoid offset, clip maximum */
} cnnc_act;

/* ---- context: ISA kernels + thread count ------------------------------------------------------ */
/* GEMM micro-kernel: C[m x n] = alpha * Ap * Bp + beta * C, where Ap is an MR x k panel packed
 * column by column (Ap[p * MR + i]) and Bp a k x NR panel packed row by row (Bp[p * NR + j]), both
 * zero-padded to full size. m <= MR and n <= NR give the valid part of the tile; edge tiles are
 * computed with the same arithmetic as full ones. beta == 0 means C is not read. alpha and beta come
 * through a params struct read after the k loop, so they never hold registers the loop needs. */
typedef struct {
    float alpha, beta;
    /* The epilogue, on a tile's final k block only (NULL / 0 otherwise): then c = relu(c + bias) (relu
     * when relu is 1), bias[i] = bias_row[i] for row i of the tile or bias[j] = bias_col[j] for column
     * j (m or n values; at most one of the two). The bias is added to the rounded alpha * acc + beta * c,
     * then the relu applied (v > 0 ? v : 0), as separate passes would. A residual res (NULL: none) is
     * added between the two: c[i][j] = relu((v + bias) + res[i * ldr + j]), each add rounded. */
    const float *bias_row, *bias_col;
    int relu;
    const float *res;
    int64_t ldr;
} cnnc_gemm_params;
typedef void (*cnnc_gemm_ukernel_fn)(int64_t k, const float *ap, const float *bp, float *c,
                                     int64_t ldc, int64_t m, int64_t n, const cnnc_gemm_params *params);
typedef struct {
    int arch;                    /* CNNC_ARCH_* actually in use */
    int64_t mr, nr;              /* register tile */
    int64_t mc, kc, nc;          /* cache blocks (mc multiple of mr, nc multiple of nr) */
    cnnc_gemm_ukernel_fn gemm_ukernel;
} cnnc_kernels;

/* A thread pool: the threads a call's parallel loops run on (the calling thread is one of them).
 * Loops are shared out in chunks that threads claim as they come, and a call waits only for chunks
 * another thread has claimed: a thread the OS has not scheduled slows nothing down. Idle threads spin
 * for ~50 us, then sleep. One loop at a time: a call that finds the pool busy (another thread's call,
 * or a loop nested inside a loop) runs on its calling thread alone, with the same results. Free a pool
 * only when no call is using it. cnnc_pool_create returns NULL on failure, for nthreads outside
 * [1, 255], and in a build without threads (CNNC_NO_THREADS, or not POSIX). */
typedef struct cnnc_pool cnnc_pool;
cnnc_pool *cnnc_pool_create(int nthreads);
void cnnc_pool_free(cnnc_pool *pool);
int cnnc_pool_threads(const cnnc_pool *pool);   /* the pool's threads, caller included (NULL: 1) */

typedef struct {
    cnnc_kernels k;
    int nthreads;                /* threads a call may use (>= 1) ... */
    cnnc_pool *pool;             /* ... from this pool (NULL: the calling thread only) */
} cnnc_ctx;

/* Fill ctx for the requested ISA (CNNC_ARCH_AUTO: the best this CPU supports), with no pool. Returns the
 * arch used; a request the CPU cannot run falls back to the best supported one. */
int cnnc_ctx_init(cnnc_ctx *ctx, int arch, int nthreads);
int cnnc_cpu_supports(int arch);     /* 1 if this CPU (and this build) can run that ISA path */
int cnnc_avx512_emulated(void);      /* 1 in a test build whose AVX-512 kernels run emulated on AVX2 */
const char *cnnc_arch_name(int arch);
int cnnc_has_threads(void);          /* 1 if built with the thread pool */
int cnnc_default_threads(void);      /* OMP_NUM_THREADS if set, else the CPUs this process may use; 1 without threads */

/* ---- GEMM -------------------------------------------------------------------------------------- */
/* C[m x n] = alpha * op(A) * op(B) + beta * C, row-major; op(A) is m x k, op(B) is k x n.
 * trans_a: A is stored k x m (lda >= m) instead of m x k (lda >= k); likewise trans_b. */
int64_t cnnc_gemm_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k);
int cnnc_sgemm(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
               float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
               float *c, int64_t ldc, void *ws, int64_t ws_size);

/* ---- im2col / col2im ----------------------------------------------------------------------------- */
typedef struct {
    int64_t n, h, w, c;         /* input: batch, height, width, channels */
    int64_t kh, kw;             /* kernel */
    int64_t sh, sw;             /* strides >= 1 */
    int64_t dh, dw;             /* dilations >= 1 */
    int64_t pt, pb, pl, pr;     /* explicit zero padding: top, bottom, left, right (>= 0) */
    int layout;                 /* CNNC_NHWC or CNNC_NCHW */
} cnnc_window2d;
/* Output height/width of the window; CNNC_EINVAL if the dilated kernel is larger than the padded input. */
int cnnc_window2d_output(const cnnc_window2d *p, int64_t *oh, int64_t *ow);

/* NHWC: x[N, H, W, C] -> col[N*OH*OW, KH*KW*cg], row (n, oh, ow), column (kh, kw, c), taking channels
 *       [c0, c0 + cg) of x.
 * NCHW: x[N, C, H, W] -> col[cg*KH*KW, N*OH*OW], row (c, kh, kw), column (n, oh, ow).
 * Padding reads as zero. */
int cnnc_im2col(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                const float *x, float *col);
/* The adjoint of cnnc_im2col: dx[.., c0:c0+cg] = sum of the col entries that read each input element.
 * Writes (does not accumulate into) channels [c0, c0 + cg) of dx; other channels are untouched. */
int cnnc_col2im(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                const float *col, float *dx);

/* ---- Conv2D ------------------------------------------------------------------------------------ */
/* Weights: NHWC w[KH, KW, C/groups, Cout]; NCHW w[Cout, C/groups, KH, KW]. Bias b[Cout] (may be NULL).
 * y: NHWC [N, OH, OW, Cout]; NCHW [N, Cout, OH, OW]. */
typedef struct {
    cnnc_window2d win;
    int64_t cout;
    int64_t groups;             /* divides c and cout */
} cnnc_conv2d_params;

int64_t cnnc_conv2d_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
/* The algorithm cnnc_conv2d_forward uses for these shapes (a function of the shapes only, never of the
 * thread count or ISA): Winograd F(2x2, 3x3) for 3x3 stride-1 undilated single-group convolutions with
 * at least 32 input and 16 output channels, at least 64 2x2 output tiles filled to 70% or more;
 * depthwise (each output element its KH*KW-term sum, read straight from x) for groups = C >= 2 with
 * kernels up to 16 x 16; direct for single-group convolutions with at most 4 input channels and
 * C*KH*KW <= 256, other than 1x1 stride 1 unpadded (the GEMM's panels packed straight from x: the same
 * results as im2col + GEMM); im2col + GEMM otherwise. */
enum { CNNC_CONV_IM2COL = 0, CNNC_CONV_WINOGRAD = 1, CNNC_CONV_DIRECT = 2, CNNC_CONV_DEPTHWISE = 3 };
int cnnc_conv2d_algorithm(const cnnc_conv2d_params *p);
/* The same for the data gradient dx of cnnc_conv2d_backward: depthwise for an NHWC depthwise forward
 * (each dx element gathered from the dy it reaches); Winograd when the stride-1 convolution of dy that
 * gives dx passes the rule above (paddings <= 2); else im2col + GEMM. */
int cnnc_conv2d_data_grad_algorithm(const cnnc_conv2d_params *p);
/* The same for the weight gradient dw: Winograd (F(3x3, 2x2)) exactly when the forward is Winograd's
 * (im2col + GEMM when Winograd's dw comes out non-finite: an infinity or NaN in x or dy, or an
 * overflow); depthwise for an NHWC depthwise forward; direct for NHWC single-group convolutions with at
 * most 4 input channels and 32 taps; else im2col + GEMM. db is a sum over dy. */
int cnnc_conv2d_weight_grad_algorithm(const cnnc_conv2d_params *p);
/* y = act(conv(x, w) + b) */
int cnnc_conv2d_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x,
                        const float *w, const float *b, cnnc_act act, float *y, void *ws,
                        int64_t ws_size);
/* y = max_pool(act(conv(x, w) + b)) over pkh x pkw windows (stride = window, no padding, floor): the
 * bits of cnnc_conv2d_forward followed by cnnc_max_pool2d_forward. taps (y's shape; NULL: none; needs
 * pkh * pkw <= CNNC_POOL_MAX_TAPS): each output's chosen position in its window, as
 * cnnc_max_pool2d_forward_taps gives it, for training's backward. The NHWC direct path and Winograd
 * (2x2 windows) compute the convolution only where a window covers it and never write it out; other
 * paths write it to the workspace and pool it from there. */
int64_t cnnc_conv2d_pool_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw);
int cnnc_conv2d_forward_pool(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                             const float *x, const float *w, const float *b, cnnc_act act, float *y,
                             uint8_t *taps, void *ws, int64_t ws_size);
/* dx of cnnc_conv2d_forward_pool's convolution (NHWC, one group) from the pooled gradient: g[N, PH, PW,
 * Cout] is the gradient of the activation's input at each pooled output's chosen element (taps from
 * the forward), the convolution's output gradient being zero elsewhere. dx is the sum of g-scaled
 * filters over the chosen elements' input windows, zero terms skipped, images in parallel: it differs
 * from cnnc_conv2d_backward's dx by rounding only and does not depend on the thread count. A
 * non-finite weight (which would meet those zeros) sets *finite = 0 and leaves dx unwritten: take
 * cnnc_conv2d_backward then. CNNC_EINVAL for a tap outside its window. */
int64_t cnnc_conv2d_pool_data_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh,
                                                   int64_t pkw);
int cnnc_conv2d_pool_data_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                               const float *w, const float *g, const uint8_t *taps, float *dx, int *finite,
                               void *ws, int64_t ws_size);
/* dw and db (db may be NULL) of the same convolution from the same g and taps: dw sums g times the
 * input window of each pooled output's chosen element only (zero g skipped), where the dense weight
 * gradient also multiplies the zeros of the other elements. Output channels split over the threads,
 * each summed over the images in order: the result does not depend on the thread count and differs from
 * cnnc_conv2d_backward's dw and db by rounding only. Applies to NHWC single-group convolutions and pool
 * windows of 2 to CNNC_POOL_MAX_TAPS taps (the workspace size is -1 otherwise). A non-finite input
 * (which would meet those zeros) sets *finite = 0 and leaves dw and db unwritten: take
 * cnnc_conv2d_backward then. CNNC_EINVAL for a tap outside its window. */
int64_t cnnc_conv2d_pool_weight_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh,
                                                     int64_t pkw);
int cnnc_conv2d_pool_weight_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                 const float *x, const float *g, const uint8_t *taps, float *dw, float *db,
                                 int *finite, void *ws, int64_t ws_size);
/* Workspace of cnnc_conv2d_backward; need_dx = 0 when it is called without dx (dx NULL). */
int64_t cnnc_conv2d_backward_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int need_dx);
/* Gradients of y = conv(x, w) + b (no activation: apply its backward to dy first).
 * dx, dw, db may each be NULL to skip them. */
int cnnc_conv2d_backward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x,
                         const float *w, const float *dy, float *dx, float *dw, float *db,
                         void *ws, int64_t ws_size);

/* ---- Dense, bias, activations --------------------------------------------------------------------- */
/* dense: x[M, K] * w[K, N] + b[N] -> y[M, N] (w in the Keras layout), then act. */
int64_t cnnc_dense_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n);
int64_t cnnc_dense_backward_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n);
int cnnc_dense_forward(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n, const float *x,
                       const float *w, const float *b, cnnc_act act, float *y, void *ws,
                       int64_t ws_size);
/* dx[M, K] = dy * w^T; dw[K, N] = x^T * dy; db[N] = column sums of dy. Any output may be NULL. */
int cnnc_dense_backward(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n, const float *x,
                        const float *w, const float *dy, float *dx, float *dw, float *db, void *ws,
                        int64_t ws_size);

/* y[rows, cols] = act(y + b[cols]) in place (b may be NULL): the fused bias + activation epilogue.
 * For NCHW data call it with rows = N*C planes via cnnc_bias_act_planes. */
int cnnc_bias_act_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *b, cnnc_act act,
                       float *y);
/* y[N, C, P] = act(y + b[C]) in place, P = plane size. */
int cnnc_bias_act_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane, const float *b,
                         cnnc_act act, float *y);
/* db[cols] = sum over rows of dy[rows, cols] (fixed summation order, double accumulators). */
int cnnc_bias_grad_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *dy, float *db);
/* db[C] = sum over n and plane of dy[N, C, P]. */
int cnnc_bias_grad_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane, const float *dy,
                          float *db);

/* Elementwise activation: y[i] = act(x[i]); x == y allowed. */
int cnnc_act_forward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x, float *y);
/* dx[i] = dy[i] * act'(x[i]). Needs x; y (the forward output) may be NULL, in which case kinds that
 * are cheaper from y (sigmoid, tanh, elu...) recompute it. dx == dy allowed. */
int cnnc_act_backward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x,
                      const float *y, const float *dy, float *dx);

/* Softmax / log-softmax over the last axis of x[rows, cols] (max-subtracted, stable). */
int cnnc_softmax_forward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int logsm, const float *x,
                         float *y);
/* From the forward output y: softmax dx = y * (dy - sum(dy * y)); log_softmax dx = dy - exp(y) * sum(dy). */
int cnnc_softmax_backward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int logsm, const float *y,
                          const float *dy, float *dx);

/* ---- Optimizers ---------------------------------------------------------------------------------- */
/* One update of float32 variables w[v][n[v]] (v < nvars) from their gradients g[v] and the rule's
 * slots s0[v].. (each the variable's size), in place, as cnnc.optimizers' rules (Keras 3's) do it in
 * float32 (the scalars are float32 too); start: nvars int64 of scratch. A slot the rule does not use
 * may be NULL (the array, or an entry):
 *   SGD      s0: momentum (NULL: none)   m = momentum*m - lr*g; w += m, nesterov: w += momentum*m - lr*g
 *                                        (no momentum: w -= lr*g)
 *   RMSPROP  s0: velocity, s1: momentum (NULL: none), s2: average gradient (NULL: not centered)
 *   ADAM     s0: first moment, s1: second moment, s2: its running maximum (NULL: not amsgrad); lr is the
 *            step's bias-corrected rate; weight_decay: first w -= w*decay (AdamW, decay = rate * lr)
 *   ADAGRAD  s0: accumulator. */
typedef enum { CNNC_OPTIM_SGD = 0, CNNC_OPTIM_RMSPROP = 1, CNNC_OPTIM_ADAM = 2, CNNC_OPTIM_ADAGRAD = 3 } cnnc_optim_kind;
typedef struct {
    int kind;                                /* cnnc_optim_kind */
    int nesterov, weight_decay;              /* SGD; ADAM (AdamW) */
    float lr, momentum, epsilon;             /* momentum: SGD, RMSPROP */
    float rho, one_minus_rho;                /* RMSPROP */
    float one_minus_beta1, one_minus_beta2;  /* ADAM */
    float decay;                             /* ADAM with weight_decay */
} cnnc_optim_rule;
int cnnc_optim_update(const cnnc_ctx *ctx, const cnnc_optim_rule *r, int64_t nvars, const int64_t *n,
                      const float *const *g, float *const *w, float *const *s0, float *const *s1, float *const *s2,
                      int64_t *start);

/* ---- Pooling ------------------------------------------------------------------------------------- */
typedef struct {
    cnnc_window2d win;          /* c = channels; kh/kw = pool size */
    int ceil_mode;              /* 1: output size rounds up (a window must start inside input or left pad) */
} cnnc_pool2d_params;
int cnnc_pool2d_output(const cnnc_pool2d_params *p, int64_t *oh, int64_t *ow);

/* Max pooling; padding never wins (acts as -inf). NaN propagates. argmax (may be NULL) receives, for
 * each output, the flat index into x of the chosen element (-1 if the window holds no input element,
 * in which case y is -inf). Ties pick the first element in (kh, kw) order. */
int cnnc_max_pool2d_forward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *x,
                            float *y, int64_t *argmax);
/* dx = 0, then dx[argmax[i]] += dy[i]. */
int cnnc_max_pool2d_backward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *dy,
                             const int64_t *argmax, float *dx);
/* Max pooling for training: y as cnnc_max_pool2d_forward, and for each output the position of the
 * chosen element in its window, i * kw + j (taps in (kh, kw) order, padding included), as one byte;
 * CNNC_POOL_NO_TAP where the window holds padding only. Windows of at most CNNC_POOL_MAX_TAPS taps
 * (CNNC_EINVAL otherwise: use the argmax). The backward computes dx = 0, then adds each dy to its chosen
 * element in output order: the bits of cnnc_max_pool2d_backward with the argmax of the same forward.
 * A tap outside its window or the input gives CNNC_EINVAL. */
#define CNNC_POOL_NO_TAP 255
#define CNNC_POOL_MAX_TAPS 255
int cnnc_max_pool2d_forward_taps(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *x, float *y,
                                 uint8_t *taps);
int cnnc_max_pool2d_backward_taps(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *dy,
                                  const uint8_t *taps, float *dx);
/* Average pooling. count_include_pad = 1: divide by the number of window positions inside the padded
 * input; 0: by the number of real input elements (0 -> output 0). */
int cnnc_avg_pool2d_forward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, int count_include_pad,
                            const float *x, float *y);
int cnnc_avg_pool2d_backward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, int count_include_pad,
                             const float *dy, float *dx);

/* Global pooling over H and W: x[N, H, W, C] or [N, C, H, W] -> y[N, C]. */
int cnnc_global_avg_pool2d_forward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                   int layout, const float *x, float *y);
int cnnc_global_avg_pool2d_backward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                    int layout, const float *dy, float *dx);
/* argmax (may be NULL): flat index into x per output. */
int cnnc_global_max_pool2d_forward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                   int layout, const float *x, float *y, int64_t *argmax);
/* dx = 0, then dx[argmax[i]] += dy[i]; dx has n*h*w*c elements. */
int cnnc_global_max_pool2d_backward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w, int64_t c,
                                    const float *dy, const int64_t *argmax, float *dx);

/* Max pooling across the last (depth) axis: x[rows, C] -> y[rows, OC], OC = (C - k) / s + 1,
 * y[r, o] = max(x[r, o*s : o*s + k]). argmax as above (flat index into x). */
int cnnc_max_pool_depth_forward(const cnnc_ctx *ctx, int64_t rows, int64_t c, int64_t k, int64_t s,
                                const float *x, float *y, int64_t *argmax);
int cnnc_max_pool_depth_backward(const cnnc_ctx *ctx, int64_t rows, int64_t c, int64_t k, int64_t s,
                                 const float *dy, const int64_t *argmax, float *dx);

/* ---- Batch normalization --------------------------------------------------------------------------- */
/* Per-channel statistics over N, H and W (NHWC: x viewed as [outer, C, inner=1]; NCHW: [N, C, H*W]).
 * Shapes below are given as (outer, c, inner): NHWC (N*H*W, C, 1), NCHW (N, C, H*W); a 2-D input [N, C]
 * is (N, C, 1). */
/* Inference: y = gamma * (x - mean) / sqrt(var + eps) + beta. */
int cnnc_batch_norm_inference(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                              const float *x, const float *gamma, const float *beta,
                              const float *mean, const float *var, float eps, float *y);
/* Training: batch mean and biased variance; y normalised with them; save_mean[c], save_invstd[c]
 * (1/sqrt(var + eps)) written for backward; moving_mean/moving_var (may be NULL) updated in place as
 * moving = momentum * moving + (1 - momentum) * batch (the Keras/ONNX convention, biased variance). */
int cnnc_batch_norm_training(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                             const float *x, const float *gamma, const float *beta, float eps,
                             float momentum, float *moving_mean, float *moving_var, float *y,
                             float *save_mean, float *save_invstd);
/* Backward of the training forward: dx, dgamma, dbeta (any may be NULL). */
int cnnc_batch_norm_backward(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                             const float *x, const float *dy, const float *gamma,
                             const float *save_mean, const float *save_invstd, float *dx,
                             float *dgamma, float *dbeta);

/* ---- Dropout ------------------------------------------------------------------------------------- */
/* Inverted dropout with a counter-based generator: element i is kept iff uniform(seed, i) >= rate;
 * mask[i] = 1 (kept) or 0; y = kept ? x / (1 - rate) : 0. 0 <= rate < 1. The mask depends only on
 * (seed, i): identical for any thread count. */
int cnnc_dropout_forward(const cnnc_ctx *ctx, int64_t size, float rate, uint64_t seed,
                         const float *x, float *y, uint8_t *mask);
/* dx = mask ? dy / (1 - rate) : 0 */
int cnnc_dropout_backward(const cnnc_ctx *ctx, int64_t size, float rate, const uint8_t *mask,
                          const float *dy, float *dx);

/* ---- Deployment runtime: bundles ------------------------------------------------------------------ */
/* A bundle (written by cnnc.deploy.bundle) holds an inference graph of float32 ops, its weights in the
 * layouts the kernels read (batch norm folded, dense weights as [K, N]) and the static memory plan:
 * the offset of every intermediate tensor in one arena, tensors sharing memory once their last reader
 * is done. Layout: docs in cnnc/deploy/_format.py. A cnnc_model is immutable after load except for the
 * batch it is prepared for (cnnc_model_arena_size) and its thread count.
 *
 *   cnnc_model *m;  char msg[256];
 *   if (cnnc_model_load_msg(bytes, len, &m, msg, sizeof msg) != CNNC_OK) { puts(msg); ... }
 *   int64_t need = cnnc_model_arena_size(m, batch);     // < 0: an error code
 *   void *arena = malloc(need);
 *   cnnc_model_run(m, arena, need, inputs, outputs);   // no allocation, no global state
 *   cnnc_model_free(m);
 *
 * After cnnc_model_arena_size, concurrent cnnc_model_run calls on one model with distinct arenas and
 * outputs are safe. */
typedef struct cnnc_model cnnc_model;

/* Parse and validate a bundle (the bytes are copied: the caller may free them after the call).
 * Returns CNNC_OK, CNNC_EFORMAT, CNNC_EVERSION or CNNC_ENOMEM; never reads outside [bytes, bytes+len).
 * The _msg variant writes a one-line explanation into msg (NUL-terminated, at most msg_size bytes). */
int cnnc_model_load(const void *bytes, int64_t len, cnnc_model **model);
int cnnc_model_load_msg(const void *bytes, int64_t len, cnnc_model **model, char *msg, int64_t msg_size);
void cnnc_model_free(cnnc_model *model);

/* ISA path and threads (default: the best ISA this CPU has, cnnc_default_threads()). Changing them
 * changes the workspace a run needs: call cnnc_model_arena_size again afterwards. With more than one
 * thread, cnnc_model_arena_size creates the model's own thread pool (freed with the model), unless
 * cnnc_model_set_pool gave it the caller's: a process running several models can share one pool, which
 * must then outlive the model's runs (pool NULL: back to an own pool). */
int cnnc_model_set_threads(cnnc_model *model, int nthreads);
int cnnc_model_set_pool(cnnc_model *model, cnnc_pool *pool);
int cnnc_model_set_arch(cnnc_model *model, int arch);   /* returns the arch in use */

/* Inputs and outputs: count, name, rank and shape for a batch size (dims[0..rank-1]). */
int cnnc_model_num_inputs(const cnnc_model *model);
int cnnc_model_num_outputs(const cnnc_model *model);
const char *cnnc_model_input_name(const cnnc_model *model, int i);
const char *cnnc_model_output_name(const cnnc_model *model, int i);
int cnnc_model_input_shape(const cnnc_model *model, int i, int64_t batch, int64_t dims[8]);
int cnnc_model_output_shape(const cnnc_model *model, int i, int64_t batch, int64_t dims[8]);
/* 0 when the batch size is free; otherwise the only batch size the model accepts. */
int64_t cnnc_model_fixed_batch(const cnnc_model *model);

/* Prepare the model for a batch size and return the arena bytes a run needs (intermediate tensors
 * at their planned offsets, then the largest kernel workspace), or a negative error code. */
int64_t cnnc_model_arena_size(cnnc_model *model, int64_t batch);
/* The parts of that figure: bytes of the tensor plan and of the workspace. */
int64_t cnnc_model_plan_bytes(const cnnc_model *model);
int64_t cnnc_model_workspace_bytes(const cnnc_model *model);
/* Run one batch (the size given to the last cnnc_model_arena_size). inputs[i] and outputs[i] are
 * dense float32 arrays of the shapes above; arena is arena_size bytes, at least 4-byte aligned
 * (malloc's alignment is fine; CNNC_EINVAL otherwise). */
int cnnc_model_run(const cnnc_model *model, void *arena, int64_t arena_size, const float *const *inputs,
                   float *const *outputs);

/* Constants supplied by the caller: weights that change between runs (a model still training), or
 * that live elsewhere (a bundle written without them: cnnc_model_external_consts returns 1, and
 * cnnc_model_run returns CNNC_ESTATE for it). The constants are numbered in the order of the bundle's
 * value table; consts[i] points to the dense float32 array of cnnc_model_const_shape(model, i), in the
 * layout the bundle stores (cnnc/deploy/_format.py); consts = NULL runs with the bundle's own. */
int cnnc_model_num_consts(const cnnc_model *model);
int cnnc_model_const_shape(const cnnc_model *model, int i, int64_t dims[8]);  /* returns the rank */
int cnnc_model_external_consts(const cnnc_model *model);
int cnnc_model_run_consts(const cnnc_model *model, void *arena, int64_t arena_size, const float *const *inputs,
                          float *const *outputs, const float *const *consts);

/* Weights packed once. By default every run packs each convolution's weights into the GEMM's panels
 * again (they may change between runs). For weights that no longer change, cnnc_model_prepack packs
 * them once, from consts (as cnnc_model_run_consts takes them; NULL: the bundle's own), for the kernels
 * and the batch size prepared (call it after cnnc_model_arena_size); later runs use these packed
 * copies instead of the convolutions' weights they are given, with the same results, bit for bit. Call
 * it again after the weights change. It allocates cnnc_model_packed_bytes(model) bytes (freed with the
 * model, or by the next cnnc_model_prepack) and must not run concurrently with runs of the model.
 * Returns CNNC_OK, CNNC_ESTATE (not prepared, or no constants for an external-consts bundle),
 * CNNC_EINVAL or CNNC_ENOMEM. */
int cnnc_model_prepack(cnnc_model *model, const float *const *consts);
int64_t cnnc_model_packed_bytes(const cnnc_model *model);

#ifdef __cplusplus
}
#endif
#endif /* CNNC_H */
