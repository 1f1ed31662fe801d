/* f32_conv_pool_dw.c - the pooled convolution's weight-gradient tile (contract: arch/ukernels.h's
 * cnnc_f32_pool_dw_tile__generic), portable build: each term a multiply, then an add. */
#include "../ukernels.h"

int cnnc_f32_pool_dw_tile__generic(const cnnc_pool_dw_tile *t) {
    const int64_t len = 8 * t->nv;
    for (int64_t j = 0; j < t->cb; ++j)
        for (int64_t s = 0; s < t->ns; ++s) {
            float *a = t->acc + j * t->accstride + s * t->accseg;
            for (int64_t p = 0; p < t->npix; ++p) {
                const float g = t->g[p * t->ld + j];
                const float *r = t->x + t->base[p] + t->tapoff[t->taps[p * t->ld + j]] + s * t->segstep;
                for (int64_t l = 0; l < len; ++l) a[l] += g * r[l];
            }
        }
    return 1;
}
