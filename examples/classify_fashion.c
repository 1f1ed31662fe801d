/* classify_fashion.c - classify the Fashion-MNIST test set with a cnnc bundle, in plain C.
 *
 *   cnnc train ... -o fashion.cnnc && cnnc bundle fashion.cnnc fashion.cnnb
 *   make -C src_c example
 *   src_c/build/classify_fashion fashion.cnnb \
 *       /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz \
 *       /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz [--batch 100] [--threads N]
 *       [--latency] [--runs 200] [--limit N] [--dump OUT.f32]
 *
 * Reads the IDX images and labels (gzip'ed or not: zlib's gzread reads both), scales pixels to [0, 1],
 * runs them through the model in batches ([batch, 28, 28, 1] float32, NHWC; the last batch is smaller
 * and gets its own arena size), takes the argmax of output 0 and prints the accuracy and the time.
 * --latency also times batch-1 inference over --runs runs (median). --dump writes output 0 of every
 * image as raw little-endian float32 [images, classes]. --limit uses the first N images only.
 * Exit status: 0 on success, 1 when the cnnc library reports an error, 2 for usage or file errors. */
#define _POSIX_C_SOURCE 200809L
#include "cnnc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zlib.h>

#define PROG "classify_fashion"

static int usage(void) {
    fprintf(stderr, "usage: " PROG " MODEL.cnnb IMAGES.idx[.gz] LABELS.idx[.gz] [--batch N] [--threads N] "
                    "[--latency] [--runs N] [--limit N] [--dump OUT.f32]\n");
    return 2;
}

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int parse_int(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi) return 0;
    *out = v;
    return 1;
}

/* ---- IDX files: big-endian header (magic 0x0000 08 ndim, then ndim u32 sizes), then u8 data ---- */

static int gz_read_all(gzFile f, void *dst, int64_t n) {
    unsigned char *p = dst;
    while (n > 0) {
        unsigned chunk = n > (1 << 30) ? 1u << 30 : (unsigned)n;
        int got = gzread(f, p, chunk);
        if (got <= 0) return 0;
        p += got;
        n -= got;
    }
    return 1;
}

/* Read an IDX file of unsigned bytes with `ndim` dimensions; returns the data (malloc'ed) and dims. */
static unsigned char *read_idx(const char *path, int ndim, int64_t *dims) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, PROG ": cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    unsigned char head[4 + 4 * 3];
    unsigned char *data = NULL;
    if (!gz_read_all(f, head, 4 + 4 * ndim)) {
        fprintf(stderr, PROG ": %s: too short for an IDX header\n", path);
        goto fail;
    }
    if (head[0] || head[1] || head[2] != 0x08 || head[3] != ndim) {
        fprintf(stderr, PROG ": %s: not an IDX file of %d-D unsigned bytes (magic %02x%02x%02x%02x)\n", path, ndim,
                head[0], head[1], head[2], head[3]);
        goto fail;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; ++i) {
        const unsigned char *p = head + 4 + 4 * i;
        dims[i] = ((int64_t)p[0] << 24) | ((int64_t)p[1] << 16) | ((int64_t)p[2] << 8) | p[3];
        if (dims[i] > ((int64_t)1 << 31) / (n ? n : 1)) {
            fprintf(stderr, PROG ": %s: absurd dimensions\n", path);
            goto fail;
        }
        n *= dims[i];
    }
    data = malloc((size_t)(n ? n : 1));
    if (!data) {
        fprintf(stderr, PROG ": out of memory reading %s\n", path);
        goto fail;
    }
    if (!gz_read_all(f, data, n)) {
        fprintf(stderr, PROG ": %s: truncated (expected %lld bytes of data)\n", path, (long long)n);
        goto fail;
    }
    gzclose(f);
    return data;
fail:
    free(data);
    gzclose(f);
    return NULL;
}

/* ---- the model ---------------------------------------------------------------------------------- */

static int64_t numel(const int64_t *dims, int rank) {
    int64_t n = 1;
    for (int i = 0; i < rank; ++i) n *= dims[i];
    return n;
}

/* Report a cnnc error and say where it happened. */
static int cnnc_fail(const char *what, int64_t rc) {
    fprintf(stderr, PROG ": %s: %s\n", what, cnnc_strerror((int)rc));
    return 1;
}

typedef struct {
    cnnc_model *m;
    void *arena;
    int64_t arena_cap, prepared;
} runner;

/* Prepare the model for batch b, growing the arena when that batch needs more. */
static int prepare(runner *r, int64_t b) {
    if (r->prepared == b) return CNNC_OK;
    r->prepared = 0;
    int64_t need = cnnc_model_arena_size(r->m, b);
    if (need < 0) return (int)need;
    if (need > r->arena_cap) {
        free(r->arena);
        r->arena = malloc((size_t)need);
        r->arena_cap = r->arena ? need : 0;
        if (!r->arena) return CNNC_ENOMEM;
    }
    const int rc = cnnc_model_prepack(r->m, NULL); /* the weights never change: packed once */
    if (rc != CNNC_OK) return rc;
    r->prepared = b;
    return CNNC_OK;
}

static int run(runner *r, const float *x, float *y) {
    const float *ins[1] = {x};
    float *outs[1] = {y};
    return cnnc_model_run(r->m, r->arena, r->arena_cap, ins, outs);
}

int main(int argc, char **argv) {
    const char *paths[3] = {NULL, NULL, NULL}, *dump_path = NULL;
    int npaths = 0, latency = 0;
    int64_t batch = 100, threads = 0, runs = 200, limit = -1;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--batch") && has_val) { if (!parse_int(argv[++i], 1, 1 << 20, &batch)) return usage(); }
        else if (!strcmp(a, "--threads") && has_val) { if (!parse_int(argv[++i], 1, 4096, &threads)) return usage(); }
        else if (!strcmp(a, "--runs") && has_val) { if (!parse_int(argv[++i], 1, 1 << 24, &runs)) return usage(); }
        else if (!strcmp(a, "--limit") && has_val) { if (!parse_int(argv[++i], 1, INT64_MAX, &limit)) return usage(); }
        else if (!strcmp(a, "--dump") && has_val) dump_path = argv[++i];
        else if (!strcmp(a, "--latency")) latency = 1;
        else if (a[0] == '-' || npaths == 3) return usage();
        else paths[npaths++] = a;
    }
    if (npaths != 3) return usage();

    /* data */
    int64_t idims[3], ldims[1];
    unsigned char *pixels = read_idx(paths[1], 3, idims);
    if (!pixels) return 2;
    unsigned char *labels = read_idx(paths[2], 1, ldims);
    if (!labels) { free(pixels); return 2; }
    int64_t n = idims[0];
    const int64_t image = idims[1] * idims[2];
    if (ldims[0] != n) {
        fprintf(stderr, PROG ": %lld images but %lld labels\n", (long long)n, (long long)ldims[0]);
        free(pixels); free(labels);
        return 2;
    }
    if (limit > 0 && limit < n) n = limit;

    /* model: read the whole file, load (the library copies it), then the bytes can go */
    int status = 1;
    runner r = {NULL, NULL, 0, 0};
    float *x = NULL, *y = NULL, *dump = NULL;
    double *times = NULL;
    FILE *f = fopen(paths[0], "rb");
    unsigned char *bytes = NULL;
    long flen = -1;
    if (f && fseek(f, 0, SEEK_END) == 0) flen = ftell(f);
    if (!f || flen < 0 || fseek(f, 0, SEEK_SET) != 0 || !(bytes = malloc((size_t)(flen ? flen : 1))) ||
        fread(bytes, 1, (size_t)flen, f) != (size_t)flen) {
        fprintf(stderr, PROG ": cannot read %s: %s\n", paths[0], f ? "read error" : strerror(errno));
        if (f) fclose(f);
        free(bytes); free(pixels); free(labels);
        return 2;
    }
    fclose(f);
    char msg[512];
    int rc = cnnc_model_load_msg(bytes, flen, &r.m, msg, sizeof msg);
    free(bytes);
    if (rc != CNNC_OK) {
        fprintf(stderr, PROG ": cannot load %s: %s: %s\n", paths[0], cnnc_strerror(rc), msg);
        free(pixels); free(labels);
        return 1;
    }
    if (threads && (rc = cnnc_model_set_threads(r.m, (int)threads)) != CNNC_OK) { cnnc_fail("set_threads", rc); goto done; }

    /* shapes: one input of 28*28 values per image ([b,28,28,1] NHWC, or [b,1,28,28] / [b,784]: same bytes) */
    int64_t dims[8];
    if (cnnc_model_num_inputs(r.m) != 1 || cnnc_model_num_outputs(r.m) < 1) {
        fprintf(stderr, PROG ": the model has %d inputs and %d outputs; expected one input\n",
                cnnc_model_num_inputs(r.m), cnnc_model_num_outputs(r.m));
        goto done;
    }
    const int64_t fixed = cnnc_model_fixed_batch(r.m);
    if (fixed > 0) batch = fixed;  /* partial batches are padded with zeros */
    if (batch > n) batch = fixed > 0 ? fixed : n;
    int rank = cnnc_model_input_shape(r.m, 0, fixed > 0 ? fixed : 1, dims);
    if (rank < 0) { cnnc_fail("input shape", rank); goto done; }
    const int64_t per_image = numel(dims, rank) / (fixed > 0 ? fixed : 1);
    if (rank < 2 || per_image != image) {
        fprintf(stderr, PROG ": model input '%s' has shape [", cnnc_model_input_name(r.m, 0));
        for (int d = 0; d < rank; ++d) fprintf(stderr, d ? ", %lld" : "%lld", (long long)dims[d]);
        fprintf(stderr, "] per batch; the images are %lldx%lld\n", (long long)idims[1], (long long)idims[2]);
        goto done;
    }
    rank = cnnc_model_output_shape(r.m, 0, fixed > 0 ? fixed : 1, dims);
    if (rank < 0) { cnnc_fail("output shape", rank); goto done; }
    const int64_t classes = numel(dims, rank) / (fixed > 0 ? fixed : 1);
    if (classes < 1) { fprintf(stderr, PROG ": the model has an empty output\n"); goto done; }
    printf("model %s: input '%s' %lld values per image, output '%s' %lld classes, %d thread(s)\n", paths[0],
           cnnc_model_input_name(r.m, 0), (long long)per_image, cnnc_model_output_name(r.m, 0), (long long)classes,
           threads ? (int)threads : cnnc_default_threads());

    x = malloc((size_t)(batch * image) * sizeof(float));
    y = malloc((size_t)(batch * classes) * sizeof(float));
    if (dump_path) dump = malloc((size_t)(n * classes) * sizeof(float));
    if (!x || !y || (dump_path && !dump)) { fprintf(stderr, PROG ": out of memory\n"); goto done; }

    /* accuracy: batches of `batch`, the last one smaller (or zero-padded for a fixed-batch model) */
    int64_t correct = 0;
    double t_run = 0.0;
    for (int64_t start = 0; start < n; start += batch) {
        const int64_t cnt = n - start < batch ? n - start : batch;
        const int64_t b = fixed > 0 ? fixed : cnt;
        for (int64_t i = 0; i < cnt * image; ++i) x[i] = pixels[start * image + i] / 255.0f;
        for (int64_t i = cnt * image; i < b * image; ++i) x[i] = 0.0f;
        if ((rc = prepare(&r, b)) != CNNC_OK) { cnnc_fail("arena_size", rc); goto done; }
        double t0 = now_s();
        if ((rc = run(&r, x, y)) != CNNC_OK) { cnnc_fail("run", rc); goto done; }
        t_run += now_s() - t0;
        for (int64_t i = 0; i < cnt; ++i) {
            const float *row = y + i * classes;
            int64_t best = 0;
            for (int64_t c = 1; c < classes; ++c)
                if (row[c] > row[best]) best = c;
            correct += best == labels[start + i];
        }
        if (dump) memcpy(dump + start * classes, y, (size_t)(cnt * classes) * sizeof(float));
    }
    printf("accuracy %.4f (%lld / %lld)\n", (double)correct / (double)n, (long long)correct, (long long)n);
    printf("inference %.3f s for %lld images in batches of %lld: %.0f images/s\n", t_run, (long long)n,
           (long long)batch, t_run > 0 ? (double)n / t_run : 0.0);

    if (dump) {
        FILE *out = fopen(dump_path, "wb");
        int ok = out && fwrite(dump, sizeof(float), (size_t)(n * classes), out) == (size_t)(n * classes);
        if (out) ok &= fclose(out) == 0;
        if (!ok) { fprintf(stderr, PROG ": cannot write %s\n", dump_path); status = 2; goto done; }
    }

    if (latency) {
        const int64_t b = fixed > 0 ? fixed : 1;
        if ((rc = prepare(&r, b)) != CNNC_OK) { cnnc_fail("arena_size", rc); goto done; }
        if (!(times = malloc((size_t)runs * sizeof(double)))) { fprintf(stderr, PROG ": out of memory\n"); goto done; }
        for (int64_t i = 0; i < b * image; ++i) x[i] = pixels[i % (n * image)] / 255.0f;
        for (int64_t i = 0; i < 10; ++i)  /* warm-up */
            if ((rc = run(&r, x, y)) != CNNC_OK) { cnnc_fail("run", rc); goto done; }
        for (int64_t i = 0; i < runs; ++i) {
            double t0 = now_s();
            if ((rc = run(&r, x, y)) != CNNC_OK) { cnnc_fail("run", rc); goto done; }
            times[i] = now_s() - t0;
        }
        qsort(times, (size_t)runs, sizeof(double), cmp_double);
        printf("latency batch %lld: median %.4f ms, min %.4f ms over %lld runs\n", (long long)b,
               1e3 * times[runs / 2], 1e3 * times[0], (long long)runs);
    }
    status = 0;
done:
    free(x); free(y); free(dump); free(times); free(r.arena);
    free(pixels); free(labels);
    cnnc_model_free(r.m);
    return status;
}
