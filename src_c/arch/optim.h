/* optim.h - the optimizers' update rules on one span of a float32 variable (contract: cnnc.h's
 * cnnc_optim_update). Portable source, compiled for any CPU by arch/generic/f32_optim.c and with AVX2 by
 * arch/avx2/f32_optim.c: each element takes exactly the float32 operations of cnnc.optimizers' NumPy
 * rules, in their order and each rounded (a statement per operation: no compiler fuses a multiply and
 * an add, the build does not contract), so every build gives NumPy's bits; only the vector width differs.
 * s0..s2 point at the span's first element of each slot (NULL where the rule has none). */
#ifndef CNNC_OPTIM_H
#define CNNC_OPTIM_H
#include "../cnnc.h"
#include <math.h>

static inline void sgd_range(const cnnc_optim_rule *r, const float *restrict g, float *restrict w, float *restrict m,
                             int64_t lo, int64_t hi) {
    const float lr = r->lr, mu = r->momentum;
    if (!m) {
        for (int64_t i = lo; i < hi; ++i) {
            const float step = g[i] * lr;
            w[i] -= step; /* w -= lr*g */
        }
    } else if (r->nesterov) {
        for (int64_t i = lo; i < hi; ++i) {
            const float step = g[i] * lr;
            float mi = m[i] * mu;
            mi -= step; /* m = momentum*m - lr*g */
            m[i] = mi;
            float wi = w[i] - step;
            const float look = mi * mu;
            wi += look; /* w += momentum*m - lr*g */
            w[i] = wi;
        }
    } else {
        for (int64_t i = lo; i < hi; ++i) {
            const float step = g[i] * lr;
            float mi = m[i] * mu;
            mi -= step;
            m[i] = mi;
            w[i] += mi; /* w += m */
        }
    }
}

static inline void rmsprop_range(const cnnc_optim_rule *r, const float *restrict g, float *restrict w,
                          float *restrict vel, float *restrict mom, float *restrict avg, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
        const float gi = g[i];
        float v = vel[i] * r->rho;
        float t = gi * gi;
        t *= r->one_minus_rho;
        v += t; /* v = rho*v + (1-rho)*g^2 */
        vel[i] = v;
        float den;
        if (avg) {
            float a = avg[i] * r->rho;
            const float ga = gi * r->one_minus_rho;
            a += ga; /* mg = rho*mg + (1-rho)*g */
            avg[i] = a;
            const float a2 = a * a;
            den = v - a2;
            den += r->epsilon; /* v - mg^2 + eps */
        } else {
            den = v + r->epsilon; /* v + eps */
        }
        den = sqrtf(den);
        float inc = gi / den;
        inc *= r->lr; /* inc = lr*g/sqrt(denominator) */
        if (mom) {
            float m = mom[i] * r->momentum;
            m += inc;
            mom[i] = m;
            w[i] -= m;
        } else {
            w[i] -= inc;
        }
    }
}

static inline void adam_range(const cnnc_optim_rule *r, const float *restrict g, float *restrict w, float *restrict m,
                       float *restrict vel, float *restrict vhat, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
        float wi = w[i];
        if (r->weight_decay) {
            const float d = wi * r->decay;
            wi -= d; /* AdamW: w -= w*weight_decay*lr */
        }
        const float gi = g[i];
        float t = gi - m[i];
        t *= r->one_minus_beta1;
        const float mi = m[i] + t; /* m += (g-m)(1-b1) */
        m[i] = mi;
        t = gi * gi;
        t -= vel[i];
        t *= r->one_minus_beta2;
        float v = vel[i] + t; /* v += (g^2-v)(1-b2) */
        vel[i] = v;
        if (vhat) {
            const float h = vhat[i];
            v = h >= v || h != h ? h : v; /* np.maximum(vhat, v): a NaN in either wins */
            vhat[i] = v;
        }
        float den = sqrtf(v);
        den += r->epsilon;
        float inc = mi / den;
        inc *= r->lr; /* lr is alpha here */
        wi -= inc;    /* w -= alpha*m/(sqrt(v)+eps) */
        w[i] = wi;
    }
}

static inline void adagrad_range(const cnnc_optim_rule *r, const float *restrict g, float *restrict w,
                          float *restrict acc, int64_t lo, int64_t hi) {
    for (int64_t i = lo; i < hi; ++i) {
        const float gi = g[i];
        const float g2 = gi * gi;
        const float a = acc[i] + g2; /* acc += g^2 */
        acc[i] = a;
        float den = a + r->epsilon;
        den = sqrtf(den);
        float inc = gi / den;
        inc *= r->lr;
        w[i] -= inc; /* w -= lr*g/sqrt(acc+eps) */
    }
}

static inline void optim_span(const cnnc_optim_rule *r, int64_t n, const float *g, float *w, float *s0, float *s1,
                              float *s2) {
    switch (r->kind) {
    case CNNC_OPTIM_SGD: sgd_range(r, g, w, s0, 0, n); break;
    case CNNC_OPTIM_RMSPROP: rmsprop_range(r, g, w, s0, s1, s2, 0, n); break;
    case CNNC_OPTIM_ADAM: adam_range(r, g, w, s0, s1, s2, 0, n); break;
    case CNNC_OPTIM_ADAGRAD: adagrad_range(r, g, w, s0, 0, n); break;
    default: break;
    }
}

#endif
