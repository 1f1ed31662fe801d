/* dropout.c - inverted dropout with a counter-based generator.
 *
 * uniform(seed, i) = top 24 bits of mix(key + (i + 1) * golden) / 2^24, key = mix(seed), where mix is
 * splitmix64's finaliser. The value depends only on (seed, i), so masks are identical for any thread
 * count and any split of the work.
 */
#include "internal.h"

#define DROPOUT_GOLDEN 0x9E3779B97F4A7C15ULL

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* uniform(seed, i) in [0, 1) with 24 random bits (exact in float). */
static inline float uniform_at(uint64_t key, int64_t i) {
    uint64_t r = mix64(key + ((uint64_t)i + 1u) * DROPOUT_GOLDEN);
    return (float)(r >> 40) * (1.0f / 16777216.0f);
}

static int rate_ok(float rate) { return rate >= 0.0f && rate < 1.0f; }

/* x[size] -> y[size], mask[size]: kept iff uniform(seed, i) >= rate; y = kept ? x / (1 - rate) : 0. */
int cnnc_dropout_forward(const cnnc_ctx *ctx, int64_t size, float rate, uint64_t seed,
                         const float *x, float *y, uint8_t *mask) {
    if (!ctx || size < 1 || !x || !y || !mask || !rate_ok(rate)) return CNNC_EINVAL;
    const uint64_t key = mix64(seed);
    const float keep = 1.0f - rate;
    int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(size, 4096));
    (void)nt; /* unused without OpenMP */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < size; i++) {
        const int kept = uniform_at(key, i) >= rate;
        mask[i] = (uint8_t)kept;
        y[i] = kept ? x[i] / keep : 0.0f;
    }
    return CNNC_OK;
}

/* dy[size], mask[size] -> dx[size] = mask ? dy / (1 - rate) : 0. */
int cnnc_dropout_backward(const cnnc_ctx *ctx, int64_t size, float rate, const uint8_t *mask,
                          const float *dy, float *dx) {
    if (!ctx || size < 1 || !mask || !dy || !dx || !rate_ok(rate)) return CNNC_EINVAL;
    const float keep = 1.0f - rate;
    int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(size, 4096));
    (void)nt; /* unused without OpenMP */
    #pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t i = 0; i < size; i++) dx[i] = mask[i] ? dy[i] / keep : 0.0f;
    return CNNC_OK;
}
