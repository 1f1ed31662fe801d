/* f32_conv_dw.c - the direct weight gradient's row kernel (arch/conv_dw.h), portable build. */
#include "../ukernels.h"
#include "../conv_dw.h"

void cnnc_f32_conv_dw_row__generic(const float *const *xt, int64_t xstep, int64_t ntaps, const float *dz,
                                   int64_t npix, int64_t co, float *acc) {
    conv_dw_row(xt, xstep, ntaps, dz, npix, co, acc);
}
