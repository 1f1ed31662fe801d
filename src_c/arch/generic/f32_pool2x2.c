/* f32_pool2x2.c - a 2x2 max-pool window over a run of channels (arch/pool2x2.h's pool2x2_window),
 * portable build. */
#include "../ukernels.h"
#include "../pool2x2.h"

void cnnc_f32_pool2x2_window__generic(const float *t00, const float *t01, const float *t10, const float *t11, float *y,
                                      uint8_t *taps, int64_t n) {
    pool2x2_window(t00, t01, t10, t11, y, taps, n);
}
