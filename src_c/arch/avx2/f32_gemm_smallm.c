/* f32_gemm_smallm.c - AVX2+FMA kernels for GEMMs with few rows (m <= 4): B is streamed once from
 * where it lies, never packed. Compiled with -mavx2 -mfma and called only after dispatch has seen
 * both features. See cnnc_gemm_small_fns in internal.h for the contracts.
 *
 * Arithmetic per element, whatever block or thread computes it:
 * rows: acc = 0; acc = fma(a[i,p], b[p,j], acc) for p = 0..k-1 in order; c = fma(beta, c, alpha * acc)
 *       (c = alpha * acc when beta == 0).
 * dots: 8 lane sums s_l = fma chain over p = l, l+8, ... (p < k8 = k rounded down to 8), reduced as
 *       ((s0+s4) + (s2+s6)) + ((s1+s5) + (s3+s7)), then fma over the tail p = k8..k-1 in order;
 *       c as above. */
#include "../ukernels.h"
#include <immintrin.h>
#include <math.h>
#include <string.h>

/* acc[M x w] (+)= a[M x (p0..p0+P)] * b[(p0..p0+P) x w], P = 1..4 terms per element in p order. */
static inline __attribute__((always_inline)) void rows_step(const int M, const int P, int64_t w,
                                                            const float *a, int64_t lda, int64_t p,
                                                            const float *b, int64_t ldb, float *acc) {
    __m256 av[4][4];
    float as[4][4];
    const float *bq[4];
    for (int q = 0; q < P; ++q) bq[q] = b + (p + q) * ldb;
    for (int i = 0; i < M; ++i)
        for (int q = 0; q < P; ++q) {
            as[i][q] = a[i * lda + p + q];
            av[i][q] = _mm256_set1_ps(as[i][q]);
        }
    int64_t j = 0;
    for (; j + 8 <= w; j += 8) {
        __m256 bv[4];
        for (int q = 0; q < P; ++q) bv[q] = _mm256_loadu_ps(bq[q] + j);
        for (int i = 0; i < M; ++i) {
            float *ar = acc + i * w + j;
            __m256 x = _mm256_loadu_ps(ar);
            for (int q = 0; q < P; ++q) x = _mm256_fmadd_ps(av[i][q], bv[q], x);
            _mm256_storeu_ps(ar, x);
        }
    }
    for (; j < w; ++j)
        for (int i = 0; i < M; ++i) {
            float x = acc[i * w + j];
            for (int q = 0; q < P; ++q) x = fmaf(as[i][q], bq[q][j], x);
            acc[i * w + j] = x;
        }
}

static inline __attribute__((always_inline)) void rows_m(const int M, int64_t w, int64_t k,
                                                         const float *a, int64_t lda, const float *b,
                                                         int64_t ldb, float *acc) {
    /* as many terms per step as registers allow: M broadcasts per term, P loads of b, M accumulators */
    const int P = M <= 2 ? 4 : 2;
    int64_t p = 0;
    for (; p + P <= k; p += P) rows_step(M, P, w, a, lda, p, b, ldb, acc);
    for (; p < k; ++p) rows_step(M, 1, w, a, lda, p, b, ldb, acc);
}

void cnnc_f32_gemm_rows__avx2(int64_t m, int64_t w, int64_t k, const float *restrict a, int64_t lda,
                              const float *restrict b, int64_t ldb, float *restrict acc,
                              float *restrict c, int64_t ldc, const cnnc_gemm_params *restrict params) {
    memset(acc, 0, (size_t)(m * w) * sizeof(float));
    switch (m) {
    case 1: rows_m(1, w, k, a, lda, b, ldb, acc); break;
    case 2: rows_m(2, w, k, a, lda, b, ldb, acc); break;
    case 3: rows_m(3, w, k, a, lda, b, ldb, acc); break;
    default: rows_m(4, w, k, a, lda, b, ldb, acc); break;
    }
    const float alpha = params->alpha, beta = params->beta;
    const __m256 valpha = _mm256_set1_ps(alpha), vbeta = _mm256_set1_ps(beta);
    const int beta0 = beta == 0.0f;
    for (int64_t i = 0; i < m; ++i) {
        const float *ar = acc + i * w;
        float *cr = c + i * ldc;
        int64_t j = 0;
        for (; j + 8 <= w; j += 8) {
            __m256 v = _mm256_mul_ps(valpha, _mm256_loadu_ps(ar + j));
            if (!beta0) v = _mm256_fmadd_ps(vbeta, _mm256_loadu_ps(cr + j), v);
            _mm256_storeu_ps(cr + j, v);
        }
        for (; j < w; ++j) cr[j] = beta0 ? alpha * ar[j] : fmaf(beta, cr[j], alpha * ar[j]);
    }
}

static inline float hsum8(__m256 v) {
    /* lanes l and l+4, then (0,2)+(1,3) of the four sums: ((s0+s4)+(s2+s6)) + ((s1+s5)+(s3+s7)) */
    const __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 s = _mm_add_ps(h, _mm_movehl_ps(h, h)); /* s0 = h0 + h2, s1 = h1 + h3 */
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_shuffle_ps(s, s, 1)));
}

/* c[M x J] for J columns (rows of b) at once: M*J vector accumulators. */
static inline __attribute__((always_inline)) void dots_block(const int M, const int J, int64_t k,
                                                             const float *a, int64_t lda, const float *b,
                                                             int64_t ldb, float *c, int64_t ldc,
                                                             float alpha, float beta) {
    __m256 acc[4][8];
    for (int i = 0; i < M; ++i)
        for (int q = 0; q < J; ++q) acc[i][q] = _mm256_setzero_ps();
    const int64_t k8 = k & ~(int64_t)7;
    for (int64_t p = 0; p < k8; p += 8) {
        __m256 av[4];
        for (int i = 0; i < M; ++i) av[i] = _mm256_loadu_ps(a + i * lda + p);
        for (int q = 0; q < J; ++q) {
            const __m256 bv = _mm256_loadu_ps(b + q * ldb + p);
            for (int i = 0; i < M; ++i) acc[i][q] = _mm256_fmadd_ps(av[i], bv, acc[i][q]);
        }
    }
    for (int i = 0; i < M; ++i)
        for (int q = 0; q < J; ++q) {
            float s = hsum8(acc[i][q]);
            for (int64_t p = k8; p < k; ++p) s = fmaf(a[i * lda + p], b[q * ldb + p], s);
            float *cc = c + i * ldc + q;
            *cc = beta == 0.0f ? alpha * s : fmaf(beta, *cc, alpha * s);
        }
}

static inline __attribute__((always_inline)) void dots_m(const int M, int64_t w, int64_t k,
                                                         const float *a, int64_t lda, const float *b,
                                                         int64_t ldb, float *c, int64_t ldc, float alpha,
                                                         float beta) {
    const int J = M == 1 ? 8 : M == 2 ? 4 : M == 3 ? 3 : 2; /* M*J accumulators, at most 9 */
    int64_t j = 0;
    for (; j + J <= w; j += J) dots_block(M, J, k, a, lda, b + j * ldb, ldb, c + j, ldc, alpha, beta);
    for (; j < w; ++j) dots_block(M, 1, k, a, lda, b + j * ldb, ldb, c + j, ldc, alpha, beta);
}

void cnnc_f32_gemm_dots__avx2(int64_t m, int64_t w, int64_t k, const float *restrict a, int64_t lda,
                              const float *restrict b, int64_t ldb, float *restrict c, int64_t ldc,
                              const cnnc_gemm_params *restrict params) {
    const float alpha = params->alpha, beta = params->beta;
    switch (m) {
    case 1: dots_m(1, w, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
    case 2: dots_m(2, w, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
    case 3: dots_m(3, w, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
    default: dots_m(4, w, k, a, lda, b, ldb, c, ldc, alpha, beta); break;
    }
}
