/* dropout.c - inverted dropout with a counter-based generator.
 *
 * uniform(seed, i) = top 24 bits of mix(key + (i + 1) * golden) / 2^24, key = mix(seed), where mix is
 * splitmix64's finaliser; "uniform >= rate" is evaluated exactly in integers. The value depends only
 * on (seed, i), so masks are identical for any thread count and any split of the work.
 */
#include "internal.h"
#include <math.h>

#define DROPOUT_GOLDEN 0x9E3779B97F4A7C15ULL

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The 24 random bits of element i: uniform(seed, i) = bits24(key, i) / 2^24 in [0, 1). */
static inline uint32_t bits24(uint64_t key, int64_t i) {
    return (uint32_t)(mix64(key + ((uint64_t)i + 1u) * DROPOUT_GOLDEN) >> 40);
}

/* uniform >= rate  <=>  bits24 >= rate * 2^24 (exact)  <=>  bits24 >= ceil(rate * 2^24). */
static inline uint32_t keep_threshold(float rate) { return (uint32_t)ceil((double)rate * 16777216.0); }

static int rate_ok(float rate) { return rate >= 0.0f && rate < 1.0f; }

/* ---- the parallel loops' items ---------------------------------------------------------------- */
typedef struct {
    uint64_t key;
    uint32_t thr;
    float keep;
    const float *x; /* forward: x; backward: dy */
    float *y;       /* forward: y; backward: dx */
    uint8_t *mask;
    const uint8_t *mask_in;
} dropout_job;

static void dropout_task(void *arg, int64_t begin, int64_t end, int slot) {
    const dropout_job *jb = (const dropout_job *)arg;
    (void)slot;
    const uint64_t key = jb->key;
    const uint32_t thr = jb->thr;
    const float keep = jb->keep;
    const float *x = jb->x;
    float *y = jb->y;
    uint8_t *mask = jb->mask;
    for (int64_t i = begin; i < end; i++) {
        /* branch-free (the keep decision is random, so a branch would mispredict half the time) */
        const uint32_t kept = bits24(key, i) >= thr;
        const float v = x[i] / keep;
        uint32_t vb;
        memcpy(&vb, &v, sizeof vb);
        vb &= 0u - kept; /* +0.0f when dropped */
        memcpy(&y[i], &vb, sizeof vb);
        mask[i] = (uint8_t)kept;
    }
}

static void dropout_backward_task(void *arg, int64_t begin, int64_t end, int slot) {
    const dropout_job *jb = (const dropout_job *)arg;
    (void)slot;
    const float keep = jb->keep;
    const uint8_t *mask = jb->mask_in;
    const float *dy = jb->x;
    float *dx = jb->y;
    for (int64_t i = begin; i < end; i++) {
        const float v = dy[i] / keep;
        uint32_t vb;
        memcpy(&vb, &v, sizeof vb);
        vb &= 0u - (uint32_t)(mask[i] != 0);
        memcpy(&dx[i], &vb, sizeof vb);
    }
}

/* x[size] -> y[size], mask[size]: kept iff uniform(seed, i) >= rate; y = kept ? x / (1 - rate) : 0. */
int cnnc_dropout_forward(const cnnc_ctx *ctx, int64_t size, float rate, uint64_t seed,
                         const float *x, float *y, uint8_t *mask) {
    if (!ctx || size < 1 || !x || !y || !mask || !rate_ok(rate)) return CNNC_EINVAL;
    const uint64_t key = mix64(seed);
    const uint32_t thr = keep_threshold(rate);
    const float keep = 1.0f - rate;
    dropout_job jb = {key, thr, keep, x, y, mask, NULL};
    const int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(size, 4096));
    cnnc_parallel_for(ctx, nt, size, cnnc_grain(size, nt, 4096), dropout_task, &jb);
    return CNNC_OK;
}

/* dy[size], mask[size] -> dx[size] = mask ? dy / (1 - rate) : 0. */
int cnnc_dropout_backward(const cnnc_ctx *ctx, int64_t size, float rate, const uint8_t *mask,
                          const float *dy, float *dx) {
    if (!ctx || size < 1 || !mask || !dy || !dx || !rate_ok(rate)) return CNNC_EINVAL;
    const float keep = 1.0f - rate;
    dropout_job jb = {0, 0, keep, dy, dx, NULL, mask};
    const int nt = cnnc_threads(ctx, CNNC_CEIL_DIV(size, 4096));
    cnnc_parallel_for(ctx, nt, size, cnnc_grain(size, nt, 4096), dropout_backward_task, &jb);
    return CNNC_OK;
}
