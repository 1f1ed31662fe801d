/* f32_winograd.c - Winograd F(2x2, 3x3)'s per-tile transforms (contracts: arch/winograd_tx.h) with AVX2
 * intrinsics, eight channels at a time; the remaining channels take the portable loops. The same
 * additions in the same order as the portable build, so the same bits (and the same non-finite test:
 * a channel's sum s is infinite or NaN exactly when s - s is NaN). Called only after dispatch has seen
 * AVX2. */
#include "../ukernels.h"
#include "../winograd_tx.h"
#include <immintrin.h>

#define ADD _mm256_add_ps
#define SUB _mm256_sub_ps

int cnnc_f32_wg_in_block__avx2(const float *const *dp, int64_t cn, float *dst, int64_t stride) {
    __m256 badv = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= cn; c += 8) {
        __m256 t[16];
        for (int j = 0; j < 4; ++j) { /* t = B^T d */
            const __m256 d0 = _mm256_loadu_ps(dp[j] + c), d1 = _mm256_loadu_ps(dp[4 + j] + c);
            const __m256 d2 = _mm256_loadu_ps(dp[8 + j] + c), d3 = _mm256_loadu_ps(dp[12 + j] + c);
            t[j] = SUB(d0, d2);
            t[4 + j] = ADD(d1, d2);
            t[8 + j] = SUB(d2, d1);
            t[12 + j] = SUB(d1, d3);
        }
        __m256 part[4];
        for (int i = 0; i < 4; ++i) { /* V = t B */
            const __m256 t0 = t[4 * i], t1 = t[4 * i + 1], t2 = t[4 * i + 2], t3 = t[4 * i + 3];
            const __m256 a0 = SUB(t0, t2), a1 = ADD(t1, t2), a2 = SUB(t2, t1), a3 = SUB(t1, t3);
            float *o = dst + 4 * i * stride + c;
            _mm256_storeu_ps(o, a0);
            _mm256_storeu_ps(o + stride, a1);
            _mm256_storeu_ps(o + 2 * stride, a2);
            _mm256_storeu_ps(o + 3 * stride, a3);
            part[i] = ADD(ADD(a0, a1), ADD(a2, a3));
        }
        const __m256 sum = ADD(ADD(part[0], part[1]), ADD(part[2], part[3]));
        const __m256 z = SUB(sum, sum);
        badv = _mm256_or_ps(badv, _mm256_cmp_ps(z, z, _CMP_UNORD_Q));
    }
    int bad = _mm256_movemask_ps(badv) != 0;
    if (c < cn) {
        const float *rest[16];
        for (int e = 0; e < 16; ++e) rest[e] = dp[e] + c;
        bad |= wg_in_block(rest, cn - c, dst + c, stride);
    }
    return bad;
}

void cnnc_f32_wg_out_block__avx2(const float *src, int64_t stride, int64_t cn, float o[4][WG_CB]) {
    int64_t c = 0;
    for (; c + 8 <= cn; c += 8) {
        __m256 r[8];
        for (int j = 0; j < 4; ++j) { /* r = A^T m */
            const __m256 a0 = _mm256_loadu_ps(src + j * stride + c), a1 = _mm256_loadu_ps(src + (4 + j) * stride + c);
            const __m256 a2 = _mm256_loadu_ps(src + (8 + j) * stride + c);
            const __m256 a3 = _mm256_loadu_ps(src + (12 + j) * stride + c);
            r[j] = ADD(ADD(a0, a1), a2);
            r[4 + j] = SUB(SUB(a1, a2), a3);
        }
        for (int i = 0; i < 2; ++i) { /* o = r A */
            const __m256 b0 = r[4 * i], b1 = r[4 * i + 1], b2 = r[4 * i + 2], b3 = r[4 * i + 3];
            _mm256_storeu_ps(o[2 * i] + c, ADD(ADD(b0, b1), b2));
            _mm256_storeu_ps(o[2 * i + 1] + c, SUB(SUB(b1, b2), b3));
        }
    }
    if (c < cn) {
        float t[4][WG_CB];
        wg_out_block(src + c, stride, cn - c, t);
        for (int q = 0; q < 4; ++q) memcpy(o[q] + c, t[q], (size_t)(cn - c) * sizeof(float));
    }
}
