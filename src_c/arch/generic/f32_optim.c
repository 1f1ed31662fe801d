/* f32_optim.c - the optimizers' update rules on one span (arch/optim.h), portable build. */
#include "../ukernels.h"
#include "../optim.h"

void cnnc_f32_optim_span__generic(const cnnc_optim_rule *r, int64_t n, const float *g, float *w, float *s0, float *s1,
                                  float *s2) {
    optim_span(r, n, g, w, s0, s1, s2);
}
