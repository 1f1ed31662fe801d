/* run_bundle.c - run any cnnc bundle on raw float32 input, write raw float32 output.
 *
 *   run_bundle MODEL.cnnb [--input IN.f32] [--output OUT.f32] [--batch N] [--threads N] [--repeat N]
 *
 * IN.f32 holds the model's inputs for one batch, dense little-endian float32, input 0 then input 1...
 * (without --input the inputs are a fixed pseudo-random pattern in [0, 1)). OUT.f32 receives the
 * outputs the same way. --repeat N runs the batch N more times and prints the median time of one run.
 * Exit status: 0 on success, 1 when the cnnc library reports an error, 2 for usage or file errors.
 *
 * Build: make -C src_c example  (-> src_c/build/run_bundle). Used by tests/test_deploy_c.py and
 * tools/bench_deploy.py. */
#define _POSIX_C_SOURCE 200809L
#include "cnnc.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Refuse tensors or arenas past this many bytes (a bundle may claim anything). */
#define MAX_BYTES ((int64_t)1 << 30)

static int usage(void) {
    fprintf(stderr, "usage: run_bundle MODEL.cnnb [--input IN.f32] [--output OUT.f32] [--batch N] "
                    "[--threads N] [--repeat N]\n");
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

/* Whole file into a malloc'ed buffer; NULL (and a message) on failure. */
static unsigned char *read_file(const char *path, int64_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "run_bundle: cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    unsigned char *buf = NULL;
    int64_t cap = 0, n = 0;
    for (;;) {
        if (n == cap) {
            cap = cap ? 2 * cap : 1 << 16;
            unsigned char *nb = realloc(buf, (size_t)cap);
            if (!nb) { fprintf(stderr, "run_bundle: out of memory reading %s\n", path); free(buf); fclose(f); return NULL; }
            buf = nb;
        }
        size_t got = fread(buf + n, 1, (size_t)(cap - n), f);
        n += (int64_t)got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { fprintf(stderr, "run_bundle: error reading %s\n", path); free(buf); return NULL; }
    *len = n;
    return buf;
}

static int parse_int(const char *s, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo) return 0;
    *out = v;
    return 1;
}

/* Elements of an input/output at this batch; -1 if the library refuses or it is too large. */
static int64_t io_numel(const cnnc_model *m, int is_input, int i, int64_t batch) {
    int64_t dims[8];
    int r = is_input ? cnnc_model_input_shape(m, i, batch, dims) : cnnc_model_output_shape(m, i, batch, dims);
    if (r < 0) {
        fprintf(stderr, "run_bundle: %s %d shape: %s\n", is_input ? "input" : "output", i, cnnc_strerror(r));
        return -1;
    }
    int64_t n = 1;
    for (int d = 0; d < r; ++d) {
        if (dims[d] != 0 && n > MAX_BYTES / 4 / dims[d]) {
            fprintf(stderr, "run_bundle: %s %d is larger than %lld bytes\n", is_input ? "input" : "output", i,
                    (long long)MAX_BYTES);
            return -1;
        }
        n *= dims[d];
    }
    return n;
}

int main(int argc, char **argv) {
    const char *model_path = NULL, *in_path = NULL, *out_path = NULL;
    int64_t batch = 0, threads = 0, repeat = 0;
    for (int i = 1; i < argc; ++i) {
        const char *a = argv[i];
        int has_val = i + 1 < argc;
        if (!strcmp(a, "--input") && has_val) in_path = argv[++i];
        else if (!strcmp(a, "--output") && has_val) out_path = argv[++i];
        else if (!strcmp(a, "--batch") && has_val) { if (!parse_int(argv[++i], 1, &batch)) return usage(); }
        else if (!strcmp(a, "--threads") && has_val) { if (!parse_int(argv[++i], 1, &threads) || threads > 4096) return usage(); }
        else if (!strcmp(a, "--repeat") && has_val) { if (!parse_int(argv[++i], 0, &repeat) || repeat > 1000000) return usage(); }
        else if (a[0] == '-' || model_path) return usage();
        else model_path = a;
    }
    if (!model_path) return usage();

    int64_t len = 0;
    unsigned char *bytes = read_file(model_path, &len);
    if (!bytes) return 2;
    cnnc_model *m = NULL;
    char msg[512];
    int rc = cnnc_model_load_msg(bytes, len, &m, msg, sizeof msg);
    free(bytes);  /* the model keeps its own copy */
    if (rc != CNNC_OK) {
        fprintf(stderr, "run_bundle: cannot load %s: %s: %s\n", model_path, cnnc_strerror(rc), msg);
        return 1;
    }
    int status = 1;
    const int nin = cnnc_model_num_inputs(m), nout = cnnc_model_num_outputs(m);
    float **ins = calloc((size_t)(nin > 0 ? nin : 1), sizeof(float *));
    float **outs = calloc((size_t)(nout > 0 ? nout : 1), sizeof(float *));
    int64_t *in_n = calloc((size_t)(nin > 0 ? nin : 1), sizeof(int64_t));
    int64_t *out_n = calloc((size_t)(nout > 0 ? nout : 1), sizeof(int64_t));
    unsigned char *raw_in = NULL, *arena = NULL;
    double *times = NULL;
    if (!ins || !outs || !in_n || !out_n) { fprintf(stderr, "run_bundle: out of memory\n"); goto done; }

    if (cnnc_model_fixed_batch(m) > 0) {
        if (batch && batch != cnnc_model_fixed_batch(m)) {
            fprintf(stderr, "run_bundle: the model takes only batch %lld, asked for %lld\n",
                    (long long)cnnc_model_fixed_batch(m), (long long)batch);
            goto done;
        }
        batch = cnnc_model_fixed_batch(m);
    } else if (!batch) {
        batch = 1;
    }
    if (threads && (rc = cnnc_model_set_threads(m, (int)threads)) != CNNC_OK) {
        fprintf(stderr, "run_bundle: set_threads: %s\n", cnnc_strerror(rc));
        goto done;
    }
    int64_t total_in = 0;
    for (int i = 0; i < nin; ++i) {
        if ((in_n[i] = io_numel(m, 1, i, batch)) < 0) goto done;
        total_in += in_n[i];
        if (total_in > MAX_BYTES / 4) { fprintf(stderr, "run_bundle: inputs too large\n"); goto done; }
        if (!(ins[i] = malloc((size_t)(in_n[i] ? in_n[i] : 1) * sizeof(float)))) { fprintf(stderr, "run_bundle: out of memory\n"); goto done; }
    }
    for (int i = 0; i < nout; ++i) {
        if ((out_n[i] = io_numel(m, 0, i, batch)) < 0) goto done;
        if (!(outs[i] = malloc((size_t)(out_n[i] ? out_n[i] : 1) * sizeof(float)))) { fprintf(stderr, "run_bundle: out of memory\n"); goto done; }
    }
    if (in_path) {
        int64_t got = 0;
        if (!(raw_in = read_file(in_path, &got))) { status = 2; goto done; }
        if (got != total_in * 4) {
            fprintf(stderr, "run_bundle: %s has %lld bytes; the model's inputs at batch %lld take %lld\n", in_path,
                    (long long)got, (long long)batch, (long long)(total_in * 4));
            status = 2;
            goto done;
        }
        int64_t at = 0;
        for (int i = 0; i < nin; ++i) {
            memcpy(ins[i], raw_in + at, (size_t)in_n[i] * 4);
            at += in_n[i] * 4;
        }
    } else {
        uint32_t s = 12345u;  /* xorshift: the same pattern on every run */
        for (int i = 0; i < nin; ++i)
            for (int64_t j = 0; j < in_n[i]; ++j) {
                s ^= s << 13; s ^= s >> 17; s ^= s << 5;
                ins[i][j] = (float)(s >> 8) / 16777216.0f;
            }
    }

    int64_t need = cnnc_model_arena_size(m, batch);
    if (need < 0) { fprintf(stderr, "run_bundle: arena_size(batch %lld): %s\n", (long long)batch, cnnc_strerror((int)need)); goto done; }
    if (need > MAX_BYTES) { fprintf(stderr, "run_bundle: the arena would take %lld bytes\n", (long long)need); goto done; }
    if (!(arena = malloc((size_t)(need ? need : 1)))) { fprintf(stderr, "run_bundle: out of memory (arena)\n"); goto done; }
    /* the bundle's weights never change: packed for the convolutions' GEMMs once, not at every run */
    if (cnnc_model_external_consts(m) == 0 && (rc = cnnc_model_prepack(m, NULL)) != CNNC_OK) { fprintf(stderr, "run_bundle: prepack: %s\n", cnnc_strerror(rc)); goto done; }
    if ((rc = cnnc_model_run(m, arena, need, (const float *const *)ins, outs)) != CNNC_OK) {
        fprintf(stderr, "run_bundle: run: %s\n", cnnc_strerror(rc));
        goto done;
    }
    if (repeat > 0) {
        if (!(times = malloc((size_t)repeat * sizeof(double)))) { fprintf(stderr, "run_bundle: out of memory\n"); goto done; }
        for (int64_t r = 0; r < repeat; ++r) {
            double t0 = now_s();
            if ((rc = cnnc_model_run(m, arena, need, (const float *const *)ins, outs)) != CNNC_OK) {
                fprintf(stderr, "run_bundle: run: %s\n", cnnc_strerror(rc));
                goto done;
            }
            times[r] = now_s() - t0;
        }
        qsort(times, (size_t)repeat, sizeof(double), cmp_double);
        printf("batch %lld: median %.4f ms, min %.4f ms over %lld runs\n", (long long)batch,
               1e3 * times[repeat / 2], 1e3 * times[0], (long long)repeat);
    }
    if (out_path) {
        FILE *f = fopen(out_path, "wb");
        if (!f) { fprintf(stderr, "run_bundle: cannot write %s: %s\n", out_path, strerror(errno)); status = 2; goto done; }
        int ok = 1;
        for (int i = 0; i < nout; ++i) ok &= fwrite(outs[i], 4, (size_t)out_n[i], f) == (size_t)out_n[i];
        ok &= fclose(f) == 0;
        if (!ok) { fprintf(stderr, "run_bundle: error writing %s\n", out_path); status = 2; goto done; }
    }
    for (int i = 0; i < nout; ++i) {
        int64_t dims[8];
        int r = cnnc_model_output_shape(m, i, batch, dims);
        printf("output %d %s: [", i, cnnc_model_output_name(m, i));
        for (int d = 0; d < r; ++d) printf(d ? ", %lld" : "%lld", (long long)dims[d]);
        printf("]\n");
    }
    status = 0;
done:
    for (int i = 0; ins && i < nin; ++i) free(ins[i]);
    for (int i = 0; outs && i < nout; ++i) free(outs[i]);
    free(ins); free(outs); free(in_n); free(out_n); free(raw_in); free(arena); free(times);
    cnnc_model_free(m);
    return status;
}
