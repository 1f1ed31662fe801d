/* winograd.h - the Winograd F(2x2, 3x3) convolution path (winograd.c); internal, used by conv.c. */
#ifndef CNNC_WINOGRAD_H
#define CNNC_WINOGRAD_H

#include "internal.h"

/* 1 when cnnc_conv2d_forward runs this convolution with Winograd: 3x3 kernel, stride 1, dilation 1,
 * one group, at least 16 input and output channels and 64 output tiles (2x2 blocks). A function of the
 * shapes only, never of the thread count or ISA. */
int cnnc_winograd_applies(const cnnc_conv2d_params *p);
/* Workspace of cnnc_winograd_forward (-1 when it does not apply or overflows). */
int64_t cnnc_winograd_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
/* y = act(conv(x, w) + b), the contract of cnnc_conv2d_forward. */
int cnnc_winograd_forward(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                          const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size);
/* The transformed weights packed once: U_xi [Cin, Cout] for the 16 positions xi, each as the GEMMs'
 * B panels for ctx's kernel table (cnnc_gemm_pack_b_all). Packing takes scratch for U
 * (cnnc_winograd_pack_scratch_floats). cnnc_winograd_forward_pk takes them (upk; NULL: none) and gives
 * cnnc_winograd_forward's results bit for bit. */
int64_t cnnc_winograd_packed_floats(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
int64_t cnnc_winograd_pack_scratch_floats(const cnnc_conv2d_params *p);
int cnnc_winograd_pack_weights(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *w, float *u,
                               float *dst);
int cnnc_winograd_forward_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *w,
                             const float *upk, const float *b, cnnc_act act, float *y, void *ws, int64_t ws_size);

/* y = max_pool(act(conv(x, w) + b)) over 2x2 windows (stride 2, no padding, floor): the tiles are the
 * windows; applies when the convolution is Winograd's, NHWC, and pkh = pkw = 2. y is the pooled
 * [N, OH / 2, OW / 2, Cout]; the bits of cnnc_winograd_forward_pk followed by the max pool, and its taps
 * (as cnnc_max_pool2d_forward_taps; NULL: none). */
int cnnc_winograd_pool_applies(const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw);
int64_t cnnc_winograd_pool_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh,
                                          int64_t pkw);
int cnnc_winograd_forward_pool_pk(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, int64_t pkh, int64_t pkw,
                                  const float *x, const float *w, const float *upk, const float *b, cnnc_act act,
                                  float *y, uint8_t *taps, void *ws, int64_t ws_size);

/* The data gradient dx of convolution p (same shapes and layouts as cnnc_conv2d_backward) by Winograd:
 * a stride-1 convolution of dy with the flipped, transposed filters. Applies when p is a 3x3 stride-1
 * undilated single-group convolution with paddings <= 2 and that convolution passes the forward rule
 * (its input channels are p's output channels and its tiles cover dx). */
int cnnc_winograd_data_grad_applies(const cnnc_conv2d_params *p);
int64_t cnnc_winograd_data_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
int cnnc_winograd_data_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *w, const float *dy,
                            float *dx, void *ws, int64_t ws_size);

/* The weight gradient dw of convolution p (cnnc_conv2d_backward's shapes and layouts) by F(3x3, 2x2):
 * applies exactly when the forward does (cnnc_winograd_applies). *finite = 0 when some dw came out
 * infinite or NaN (an infinity or NaN in x or dy, or an overflow): dw is then not the direct sum's, and
 * the caller computes it directly. */
int cnnc_winograd_weight_grad_applies(const cnnc_conv2d_params *p);
int64_t cnnc_winograd_weight_grad_workspace_size(const cnnc_ctx *ctx, const cnnc_conv2d_params *p);
int cnnc_winograd_weight_grad(const cnnc_ctx *ctx, const cnnc_conv2d_params *p, const float *x, const float *dy,
                              float *dw, int *finite, void *ws, int64_t ws_size);

#endif
