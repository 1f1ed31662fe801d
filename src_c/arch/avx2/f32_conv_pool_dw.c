/* f32_conv_pool_dw.c - the pooled convolution's weight-gradient tile (contract: arch/ukernels.h's
 * cnnc_f32_pool_dw_tile__avx2) with AVX2 + FMA: ns * nv * cb <= 12 accumulators stay in registers while
 * the pooled outputs stream by; per output and channel, one broadcast of g and ns * nv fused
 * multiply-adds with x read in place. One instance per shape (ns, nv, cb), so that the accumulators are
 * registers. Called only after dispatch has seen AVX2 and FMA. */
#include "../ukernels.h"
#include <immintrin.h>

#define PDW_REGS 12

static inline __attribute__((always_inline)) void tile(const int ns, const int nv, const int cb,
                                                       const cnnc_pool_dw_tile *t) {
    __m256 a[PDW_REGS];
    float *acc = t->acc;
#pragma GCC unroll 12
    for (int j = 0; j < cb; ++j)
#pragma GCC unroll 12
        for (int s = 0; s < ns; ++s)
#pragma GCC unroll 12
            for (int v = 0; v < nv; ++v)
                a[(j * ns + s) * nv + v] = _mm256_loadu_ps(acc + j * t->accstride + s * t->accseg + 8 * v);
    const int64_t *base = t->base, *tapoff = t->tapoff, ld = t->ld, step = t->segstep;
    const uint8_t *tp = t->taps;
    const float *g = t->g, *x = t->x;
    for (int64_t p = 0; p < t->npix; ++p) {
        const float *xp = x + base[p];
#pragma GCC unroll 12
        for (int j = 0; j < cb; ++j) {
            const __m256 gj = _mm256_broadcast_ss(g + p * ld + j);
            const float *r = xp + tapoff[tp[p * ld + j]];
#pragma GCC unroll 12
            for (int s = 0; s < ns; ++s)
#pragma GCC unroll 12
                for (int v = 0; v < nv; ++v)
                    a[(j * ns + s) * nv + v] =
                        _mm256_fmadd_ps(gj, _mm256_loadu_ps(r + s * step + 8 * v), a[(j * ns + s) * nv + v]);
        }
    }
#pragma GCC unroll 12
    for (int j = 0; j < cb; ++j)
#pragma GCC unroll 12
        for (int s = 0; s < ns; ++s)
#pragma GCC unroll 12
            for (int v = 0; v < nv; ++v)
                _mm256_storeu_ps(acc + j * t->accstride + s * t->accseg + 8 * v, a[(j * ns + s) * nv + v]);
}

#define T(NS, NV, CB) \
    case (NS) * 256 + (NV) * 16 + (CB): tile(NS, NV, CB, t); return 1;

int cnnc_f32_pool_dw_tile__avx2(const cnnc_pool_dw_tile *t) {
    if (t->ns > 12 || t->nv > 12 || t->cb > 12) return 0;
    switch (t->ns * 256 + t->nv * 16 + t->cb) {
        T(1, 1, 1) T(1, 1, 2) T(1, 1, 3) T(1, 1, 4) T(1, 1, 5) T(1, 1, 6)
        T(1, 1, 7) T(1, 1, 8) T(1, 1, 9) T(1, 1, 10) T(1, 1, 11) T(1, 1, 12)
        T(2, 1, 1) T(2, 1, 2) T(2, 1, 3) T(2, 1, 4) T(2, 1, 5)
        T(2, 1, 6) T(3, 1, 1) T(3, 1, 2) T(3, 1, 3) T(3, 1, 4) T(4, 1, 1)
        T(4, 1, 2) T(4, 1, 3) T(5, 1, 1) T(5, 1, 2) T(6, 1, 1) T(6, 1, 2)
        T(7, 1, 1) T(8, 1, 1) T(9, 1, 1) T(10, 1, 1) T(11, 1, 1) T(12, 1, 1)
        T(1, 2, 1) T(1, 2, 2) T(1, 2, 3) T(1, 2, 4) T(1, 2, 5) T(1, 2, 6)
        T(1, 3, 1) T(1, 3, 2) T(1, 3, 3) T(1, 3, 4) T(1, 4, 1) T(1, 4, 2)
        T(1, 4, 3) T(1, 5, 1) T(1, 5, 2) T(1, 6, 1) T(1, 6, 2) T(1, 7, 1)
        T(1, 8, 1) T(1, 9, 1) T(1, 10, 1) T(1, 11, 1) T(1, 12, 1)
    default: return 0; /* a shape outside the contract */
    }
}
