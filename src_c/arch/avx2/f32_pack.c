/* f32_pack.c - AVX2 packing for the 6x16 micro-kernel and for the AVX-512 12x16 one's A panels: the
 * transposing (gathering) cases, where the portable loops move one float per load and store. The
 * contiguous cases (a row of the panel is contiguous in memory) are plain fixed-size copies and stay in
 * gemm.c. Compiled with -mavx2 -mfma and called only after dispatch has seen both features. Packing only
 * moves data: results do not depend on which packer ran. */
#include "../ukernels.h"
#include <immintrin.h>

/* Remainder columns p in [p0, kc): the scalar definition. */
static inline void gather_tail(int64_t p0, int64_t kc, const float *src, int64_t ld, int64_t w, float *dst) {
    for (int64_t p = p0; p < kc; ++p)
        for (int64_t i = 0; i < w; ++i) dst[p * w + i] = src[i * ld + p];
}

// dst[kc, 6] = src[6, kc]^T  (src rows ld floats apart)
void cnnc_f32_pack_gather6__avx2(int64_t kc, const float *restrict src, int64_t ld, float *restrict dst) {
    const float *s0 = src, *s1 = src + ld, *s2 = src + 2 * ld, *s3 = src + 3 * ld, *s4 = src + 4 * ld,
                *s5 = src + 5 * ld;
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        const __m256 r0 = _mm256_loadu_ps(s0 + p), r1 = _mm256_loadu_ps(s1 + p);
        const __m256 r2 = _mm256_loadu_ps(s2 + p), r3 = _mm256_loadu_ps(s3 + p);
        const __m256 r4 = _mm256_loadu_ps(s4 + p), r5 = _mm256_loadu_ps(s5 + p);
        /* t01 lo: r0[0] r1[0] r0[1] r1[1] | r0[4] r1[4] r0[5] r1[5]; hi: columns 2, 3 | 6, 7 */
        const __m256 t01l = _mm256_unpacklo_ps(r0, r1), t01h = _mm256_unpackhi_ps(r0, r1);
        const __m256 t23l = _mm256_unpacklo_ps(r2, r3), t23h = _mm256_unpackhi_ps(r2, r3);
        const __m256 t45l = _mm256_unpacklo_ps(r4, r5), t45h = _mm256_unpackhi_ps(r4, r5);
        /* u_j: rows 0..3 of column j | of column j + 4 */
        const __m256 u0 = _mm256_shuffle_ps(t01l, t23l, 0x44), u1 = _mm256_shuffle_ps(t01l, t23l, 0xEE);
        const __m256 u2 = _mm256_shuffle_ps(t01h, t23h, 0x44), u3 = _mm256_shuffle_ps(t01h, t23h, 0xEE);
        float *d = dst + p * 6;
        const __m128 a4 = _mm256_castps256_ps128(t45l), b4 = _mm256_castps256_ps128(t45h);
        const __m128 a4h = _mm256_extractf128_ps(t45l, 1), b4h = _mm256_extractf128_ps(t45h, 1);
        _mm_storeu_ps(d + 0, _mm256_castps256_ps128(u0));
        _mm_storel_pi((__m64 *)(d + 4), a4);
        _mm_storeu_ps(d + 6, _mm256_castps256_ps128(u1));
        _mm_storeh_pi((__m64 *)(d + 10), a4);
        _mm_storeu_ps(d + 12, _mm256_castps256_ps128(u2));
        _mm_storel_pi((__m64 *)(d + 16), b4);
        _mm_storeu_ps(d + 18, _mm256_castps256_ps128(u3));
        _mm_storeh_pi((__m64 *)(d + 22), b4);
        _mm_storeu_ps(d + 24, _mm256_extractf128_ps(u0, 1));
        _mm_storel_pi((__m64 *)(d + 28), a4h);
        _mm_storeu_ps(d + 30, _mm256_extractf128_ps(u1, 1));
        _mm_storeh_pi((__m64 *)(d + 34), a4h);
        _mm_storeu_ps(d + 36, _mm256_extractf128_ps(u2, 1));
        _mm_storel_pi((__m64 *)(d + 40), b4h);
        _mm_storeu_ps(d + 42, _mm256_extractf128_ps(u3, 1));
        _mm_storeh_pi((__m64 *)(d + 46), b4h);
    }
    gather_tail(p, kc, src, ld, 6, dst);
}

/* dst[j * ds] = column j of the 8 x 8 block at src (rows ld floats apart), j < 8. */
static inline void transpose8(const float *src, int64_t ld, float *dst, int64_t ds) {
    const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld);
    const __m256 r2 = _mm256_loadu_ps(src + 2 * ld), r3 = _mm256_loadu_ps(src + 3 * ld);
    const __m256 r4 = _mm256_loadu_ps(src + 4 * ld), r5 = _mm256_loadu_ps(src + 5 * ld);
    const __m256 r6 = _mm256_loadu_ps(src + 6 * ld), r7 = _mm256_loadu_ps(src + 7 * ld);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    _mm256_storeu_ps(dst + 0 * ds, _mm256_permute2f128_ps(u0, u4, 0x20));
    _mm256_storeu_ps(dst + 1 * ds, _mm256_permute2f128_ps(u1, u5, 0x20));
    _mm256_storeu_ps(dst + 2 * ds, _mm256_permute2f128_ps(u2, u6, 0x20));
    _mm256_storeu_ps(dst + 3 * ds, _mm256_permute2f128_ps(u3, u7, 0x20));
    _mm256_storeu_ps(dst + 4 * ds, _mm256_permute2f128_ps(u0, u4, 0x31));
    _mm256_storeu_ps(dst + 5 * ds, _mm256_permute2f128_ps(u1, u5, 0x31));
    _mm256_storeu_ps(dst + 6 * ds, _mm256_permute2f128_ps(u2, u6, 0x31));
    _mm256_storeu_ps(dst + 7 * ds, _mm256_permute2f128_ps(u3, u7, 0x31));
}

// dst[kc, 16] = src[16, kc]^T  (src rows ld floats apart)
void cnnc_f32_pack_gather16__avx2(int64_t kc, const float *restrict src, int64_t ld, float *restrict dst) {
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        transpose8(src + p, ld, dst + p * 16, 16);
        transpose8(src + 8 * ld + p, ld, dst + p * 16 + 8, 16);
    }
    gather_tail(p, kc, src, ld, 16, dst);
}

/* dst[j * ds] = column j of the 4 x 8 block at src (rows ld floats apart; 4 floats a column), j < 8. */
static inline void transpose4x8(const float *src, int64_t ld, float *dst, int64_t ds) {
    const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + ld);
    const __m256 r2 = _mm256_loadu_ps(src + 2 * ld), r3 = _mm256_loadu_ps(src + 3 * ld);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    /* u_j: column j | column j + 4 */
    const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    _mm_storeu_ps(dst + 0 * ds, _mm256_castps256_ps128(u0));
    _mm_storeu_ps(dst + 1 * ds, _mm256_castps256_ps128(u1));
    _mm_storeu_ps(dst + 2 * ds, _mm256_castps256_ps128(u2));
    _mm_storeu_ps(dst + 3 * ds, _mm256_castps256_ps128(u3));
    _mm_storeu_ps(dst + 4 * ds, _mm256_extractf128_ps(u0, 1));
    _mm_storeu_ps(dst + 5 * ds, _mm256_extractf128_ps(u1, 1));
    _mm_storeu_ps(dst + 6 * ds, _mm256_extractf128_ps(u2, 1));
    _mm_storeu_ps(dst + 7 * ds, _mm256_extractf128_ps(u3, 1));
}

// dst[kc, 12] = src[12, kc]^T  (src rows ld floats apart): the A panels of the AVX-512 12x16 table
void cnnc_f32_pack_gather12__avx2(int64_t kc, const float *restrict src, int64_t ld, float *restrict dst) {
    int64_t p = 0;
    for (; p + 8 <= kc; p += 8) {
        transpose8(src + p, ld, dst + p * 12, 12);
        transpose4x8(src + 8 * ld + p, ld, dst + p * 12 + 8, 12);
    }
    gather_tail(p, kc, src, ld, 12, dst);
}
