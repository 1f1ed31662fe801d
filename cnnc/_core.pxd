# Declarations of the C core (src_c/cnnc.h) for the Cython bindings.
from libc.stdint cimport int64_t, uint64_t, uint8_t

cdef extern from "cnnc.h" nogil:
    enum:
        CNNC_OK
        CNNC_NHWC
        CNNC_NCHW
        CNNC_ARCH_AUTO
        CNNC_ARCH_GENERIC
        CNNC_ARCH_AVX2
        CNNC_ARCH_AVX512
        CNNC_ACT_NONE
        CNNC_ACT_RELU
        CNNC_ACT_LEAKY_RELU
        CNNC_ACT_ELU
        CNNC_ACT_SELU
        CNNC_ACT_SIGMOID
        CNNC_ACT_TANH
        CNNC_ACT_HARD_SIGMOID
        CNNC_ACT_HARD_SWISH
        CNNC_ACT_CLIP
    const char *CNNC_VERSION

    ctypedef struct cnnc_act:
        int kind
        float alpha
        float beta

    ctypedef struct cnnc_kernels:
        int arch
        int64_t mr, nr, mc, kc, nc

    ctypedef struct cnnc_pool:
        pass

    ctypedef struct cnnc_ctx:
        cnnc_kernels k
        int nthreads
        cnnc_pool *pool

    cnnc_pool *cnnc_pool_create(int nthreads)
    void cnnc_pool_free(cnnc_pool *pool)
    int cnnc_pool_threads(const cnnc_pool *pool)

    const char *cnnc_strerror(int code)
    int cnnc_ctx_init(cnnc_ctx *ctx, int arch, int nthreads)

    int cnnc_cpu_supports(int arch)
    int cnnc_avx512_emulated()
    const char *cnnc_arch_name(int arch)
    int cnnc_has_threads()
    int cnnc_default_threads()

    int64_t cnnc_gemm_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t n, int64_t k)
    int cnnc_sgemm(const cnnc_ctx *ctx, int trans_a, int trans_b, int64_t m, int64_t n, int64_t k,
                   float alpha, const float *a, int64_t lda, const float *b, int64_t ldb, float beta,
                   float *c, int64_t ldc, void *ws, int64_t ws_size)

    ctypedef struct cnnc_window2d:
        int64_t n, h, w, c
        int64_t kh, kw
        int64_t sh, sw
        int64_t dh, dw
        int64_t pt, pb, pl, pr
        int layout
    int cnnc_window2d_output(const cnnc_window2d *p, int64_t *oh, int64_t *ow)
    int cnnc_im2col(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                    const float *x, float *col)
    int cnnc_col2im(const cnnc_ctx *ctx, const cnnc_window2d *p, int64_t c0, int64_t cg,
                    const float *col, float *dx)

    ctypedef struct cnnc_conv2d_params:
        cnnc_window2d win
        int64_t cout
        int64_t groups
    int64_t cnnc_conv2d_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p)
    int cnnc_conv2d_algorithm(const cnnc_conv2d_params *p)
    int cnnc_conv2d_data_grad_algorithm(const cnnc_conv2d_params *p)
    int cnnc_conv2d_weight_grad_algorithm(const cnnc_conv2d_params *p)
    int cnnc_conv2d_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x,
                            const float *w, const float *b, cnnc_act act, float *y, void *ws,
                            int64_t ws_size)
    int64_t cnnc_conv2d_pool_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh,
                                            int64_t pkw)
    int cnnc_conv2d_forward_pool(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                 const float *x, const float *w, const float *b, cnnc_act act, float *y,
                                 uint8_t *taps, void *ws, int64_t ws_size)
    int64_t cnnc_conv2d_pool_data_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p,
                                                      int64_t pkh, int64_t pkw)
    int cnnc_conv2d_pool_data_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                   const float *w, const float *g, const uint8_t *taps, float *dx, int *finite,
                                   void *ws, int64_t ws_size)
    int64_t cnnc_conv2d_pool_weight_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p,
                                                         int64_t pkh, int64_t pkw)
    int cnnc_conv2d_pool_weight_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                     const float *x, const float *g, const uint8_t *taps, float *dw, float *db,
                                     int *finite, void *ws, int64_t ws_size)
    int64_t cnnc_conv2d_backward_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int need_dx)
    int cnnc_conv2d_backward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x,
                             const float *w, const float *dy, float *dx, float *dw, float *db,
                             void *ws, int64_t ws_size)

    int64_t cnnc_dense_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n)
    int cnnc_dense_forward(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n, const float *x,
                           const float *w, const float *b, cnnc_act act, float *y, void *ws,
                           int64_t ws_size)
    int64_t cnnc_dense_backward_workspace_size(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n)
    int cnnc_dense_backward(const cnnc_ctx *ctx, int64_t m, int64_t k, int64_t n, const float *x,
                            const float *w, const float *dy, float *dx, float *dw, float *db,
                            void *ws, int64_t ws_size)
    int cnnc_bias_act_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *b,
                           cnnc_act act, float *y)
    int cnnc_bias_act_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane,
                             const float *b, cnnc_act act, float *y)
    int cnnc_bias_grad_rows(const cnnc_ctx *ctx, int64_t rows, int64_t cols, const float *dy,
                            float *db)
    int cnnc_bias_grad_planes(const cnnc_ctx *ctx, int64_t n, int64_t c, int64_t plane,
                              const float *dy, float *db)
    int cnnc_act_forward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x, float *y)
    int cnnc_act_backward(const cnnc_ctx *ctx, cnnc_act act, int64_t size, const float *x,
                          const float *y, const float *dy, float *dx)
    int cnnc_softmax_forward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int log,
                             const float *x, float *y)
    int cnnc_softmax_backward(const cnnc_ctx *ctx, int64_t rows, int64_t cols, int log,
                              const float *y, const float *dy, float *dx)

    ctypedef struct cnnc_pool2d_params:
        cnnc_window2d win
        int ceil_mode
    int cnnc_pool2d_output(const cnnc_pool2d_params *p, int64_t *oh, int64_t *ow)
    int cnnc_max_pool2d_forward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *x,
                                float *y, int64_t *argmax)
    int cnnc_max_pool2d_backward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *dy,
                                 const int64_t *argmax, float *dx)
    int CNNC_POOL_MAX_TAPS
    int cnnc_max_pool2d_forward_taps(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *x,
                                     float *y, uint8_t *taps)
    int cnnc_max_pool2d_backward_taps(const cnnc_ctx *ctx, const cnnc_pool2d_params *p, const float *dy,
                                      const uint8_t *taps, float *dx)
    int cnnc_avg_pool2d_forward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p,
                                int count_include_pad, const float *x, float *y)
    int cnnc_avg_pool2d_backward(const cnnc_ctx *ctx, const cnnc_pool2d_params *p,
                                 int count_include_pad, const float *dy, float *dx)
    int cnnc_global_avg_pool2d_forward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w,
                                       int64_t c, int layout, const float *x, float *y)
    int cnnc_global_avg_pool2d_backward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w,
                                        int64_t c, int layout, const float *dy, float *dx)
    int cnnc_global_max_pool2d_forward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w,
                                       int64_t c, int layout, const float *x, float *y,
                                       int64_t *argmax)
    int cnnc_global_max_pool2d_backward(const cnnc_ctx *ctx, int64_t n, int64_t h, int64_t w,
                                        int64_t c, const float *dy, const int64_t *argmax,
                                        float *dx)
    int cnnc_max_pool_depth_forward(const cnnc_ctx *ctx, int64_t rows, int64_t c, int64_t k,
                                    int64_t s, const float *x, float *y, int64_t *argmax)
    int cnnc_max_pool_depth_backward(const cnnc_ctx *ctx, int64_t rows, int64_t c, int64_t k,
                                     int64_t s, const float *dy, const int64_t *argmax, float *dx)

    int cnnc_batch_norm_inference(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                                  const float *x, const float *gamma, const float *beta,
                                  const float *mean, const float *var, float eps, float *y)
    int cnnc_batch_norm_training(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                                 const float *x, const float *gamma, const float *beta, float eps,
                                 float momentum, float *moving_mean, float *moving_var, float *y,
                                 float *save_mean, float *save_invstd)
    int cnnc_batch_norm_backward(const cnnc_ctx *ctx, int64_t outer, int64_t c, int64_t inner,
                                 const float *x, const float *dy, const float *gamma,
                                 const float *save_mean, const float *save_invstd, float *dx,
                                 float *dgamma, float *dbeta)

    int cnnc_dropout_forward(const cnnc_ctx *ctx, int64_t size, float rate, uint64_t seed,
                             const float *x, float *y, uint8_t *mask)
    int cnnc_dropout_backward(const cnnc_ctx *ctx, int64_t size, float rate, const uint8_t *mask,
                              const float *dy, float *dx)

    # deployment runtime (model.c)
    ctypedef struct cnnc_model:
        pass
    int cnnc_model_load_msg(const void *bytes, int64_t len, cnnc_model **model, char *msg, int64_t msg_size)
    void cnnc_model_free(cnnc_model *model)
    int cnnc_model_set_pool(cnnc_model *model, cnnc_pool *pool)
    int cnnc_model_set_threads(cnnc_model *model, int nthreads)
    int cnnc_model_set_arch(cnnc_model *model, int arch)
    int cnnc_model_num_inputs(const cnnc_model *model)
    int cnnc_model_num_outputs(const cnnc_model *model)
    const char *cnnc_model_input_name(const cnnc_model *model, int i)
    const char *cnnc_model_output_name(const cnnc_model *model, int i)
    int cnnc_model_input_shape(const cnnc_model *model, int i, int64_t batch, int64_t *dims)
    int cnnc_model_output_shape(const cnnc_model *model, int i, int64_t batch, int64_t *dims)
    int64_t cnnc_model_fixed_batch(const cnnc_model *model)
    int64_t cnnc_model_arena_size(cnnc_model *model, int64_t batch)
    int64_t cnnc_model_plan_bytes(const cnnc_model *model)
    int64_t cnnc_model_workspace_bytes(const cnnc_model *model)
    int cnnc_model_run(const cnnc_model *model, void *arena, int64_t arena_size, const float *const *inputs,
                       float *const *outputs)
    int cnnc_model_num_consts(const cnnc_model *model)
    int cnnc_model_const_shape(const cnnc_model *model, int i, int64_t *dims)
    int cnnc_model_external_consts(const cnnc_model *model)
    int cnnc_model_run_consts(const cnnc_model *model, void *arena, int64_t arena_size,
                              const float *const *inputs, float *const *outputs, const float *const *consts)
    int cnnc_model_prepack(cnnc_model *model, const float *const *consts)
    int64_t cnnc_model_packed_bytes(const cnnc_model *model)

    enum:
        CNNC_OPTIM_SGD
        CNNC_OPTIM_RMSPROP
        CNNC_OPTIM_ADAM
        CNNC_OPTIM_ADAGRAD

    ctypedef struct cnnc_optim_rule:
        int kind
        int nesterov, weight_decay
        float lr, momentum, epsilon
        float rho, one_minus_rho
        float one_minus_beta1, one_minus_beta2
        float decay

    int cnnc_optim_update(const cnnc_ctx *ctx, const cnnc_optim_rule *r, int64_t nvars, const int64_t *n,
                          const float *const *g, float *const *w, float *const *s0, float *const *s1,
                          float *const *s2, int64_t *start)
