/* f32_optim.c - the optimizers' update rules on one span (arch/optim.h), AVX2 build: eight floats
 * per operation, the same bits. Called only after dispatch has seen AVX2. */
#include "../ukernels.h"
#include "../optim.h"

void cnnc_f32_optim_span__avx2(const cnnc_optim_rule *r, int64_t n, const float *g, float *w, float *s0, float *s1,
                               float *s2) {
    optim_span(r, n, g, w, s0, s1, s2);
}
