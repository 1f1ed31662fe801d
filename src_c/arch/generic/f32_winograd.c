/* f32_winograd.c - Winograd F(2x2, 3x3)'s per-tile transforms (arch/winograd_tx.h), portable build. */
#include "../ukernels.h"
#include "../winograd_tx.h"

int cnnc_f32_wg_in_block__generic(const float *const *dp, int64_t cn, float *dst, int64_t stride) {
    return wg_in_block(dp, cn, dst, stride);
}

void cnnc_f32_wg_out_block__generic(const float *src, int64_t stride, int64_t cn, float o[4][WG_CB]) {
    wg_out_block(src, stride, cn, o);
}
