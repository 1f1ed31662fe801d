/* fuzz_bundle.c - libFuzzer harness for the bundle reader and runner (src_c/model.c).
 *
 * Each input is a bundle. The harness loads it (cnnc_model_load_msg), queries names and shapes, and
 * when it loads plans and runs it at one or two batch sizes on a fixed input pattern. Malformed input
 * must end in an error code with a message, never in a crash or a sanitizer report. A code out of the
 * documented set, or an error without a message, aborts (so the fuzzer reports it).
 *
 * A random mutation almost never keeps the CRC-32 and the file-size field right, so by default the
 * harness rewrites both before loading (the checksum path itself is covered by tests/test_deploy_c.py);
 * define CNNC_FUZZ_KEEP_CRC to fuzz the bytes exactly as given.
 *
 * Run it (clang with libFuzzer: apt-get install clang; Debian's clang-14 ships libclang_rt.fuzzer):
 *
 *   make -C src_c fuzz                                # -> src_c/build/fuzz/fuzz_bundle
 *   mkdir -p /tmp/bundle_corpus && python - <<'EOF'   # seeds: small bundles
 *   import glob, os
 *   from cnnc import deploy, layers, models
 *   m = models.Sequential([layers.Input((6, 6, 1)), layers.Conv2D(2, 3, activation="relu"),
 *                          layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(3, activation="softmax")])
 *   deploy.bundle(m, "/tmp/bundle_corpus/tiny.cnnb")
 *   for p in glob.glob(os.path.join("tests", "data", "onnx", "*.onnx")):
 *       deploy.bundle(p, "/tmp/bundle_corpus/" + os.path.basename(p) + ".cnnb")
 *   EOF
 *   src_c/build/fuzz/fuzz_bundle -max_total_time=300 -max_len=300000 -rss_limit_mb=2048 \
 *       -print_final_stats=1 /tmp/bundle_corpus_new /tmp/bundle_corpus
 *
 * (the first corpus folder receives the new inputs; crashes are written as crash-<sha1> in the
 * working folder, and re-run with `fuzz_bundle crash-<sha1>`).
 *
 * Built without libFuzzer (any C compiler, e.g. with -fsanitize=address,undefined; this is how
 * tests/test_deploy_c.py replays thousands of corrupted bundles in one process), main() below runs
 * the same checks on every file or folder named on the command line and prints one line per file:
 *     load=<code> arena=<bytes or code> run=<code> <path>
 * (arena/run are '-' when not reached). --fix-crc rewrites the size and checksum as the fuzzer does. */
#define _POSIX_C_SOURCE 200809L
#include "cnnc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ignore models whose tensors or arena would take more than this (a bundle may claim anything). */
#define FUZZ_MAX_BYTES ((int64_t)64 << 20)

typedef struct {
    int load, run;
    int64_t arena;   /* bytes, or an error code */
    int reached_arena, reached_run;
} outcome;

static uint32_t crc32_le(const uint8_t *p, size_t n) {
    uint32_t crc = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; ++i) {
        crc ^= p[i];
        for (int k = 0; k < 8; ++k) crc = (crc & 1) ? 0xEDB88320u ^ (crc >> 1) : crc >> 1;
    }
    return crc ^ 0xFFFFFFFFu;
}

/* Give a (mutated) bundle the file size and checksum the reader expects. */
static void fix_header(uint8_t *b, size_t n) {
    if (n < 32) return;
    uint64_t len = n;
    for (int i = 0; i < 8; ++i) b[16 + i] = (uint8_t)(len >> (8 * i));
    uint32_t crc = crc32_le(b + 32, n - 32);
    for (int i = 0; i < 4; ++i) b[24 + i] = (uint8_t)(crc >> (8 * i));
}

static int known_code(int64_t rc) {
    return rc == CNNC_OK || rc == CNNC_EINVAL || rc == CNNC_EWORKSPACE || rc == CNNC_EOVERFLOW ||
           rc == CNNC_EFORMAT || rc == CNNC_EVERSION || rc == CNNC_ENOMEM || rc == CNNC_ESTATE;
}

static void must(int cond, const char *what) {
    if (!cond) {
        fprintf(stderr, "fuzz_bundle: contract broken: %s\n", what);
        abort();
    }
}

/* Elements of an input (is_input) or output at batch b; -1 if refused or too large. */
static int64_t io_numel(const cnnc_model *m, int is_input, int i, int64_t b) {
    int64_t dims[8];
    int r = is_input ? cnnc_model_input_shape(m, i, b, dims) : cnnc_model_output_shape(m, i, b, dims);
    must(known_code(r < 0 ? r : 0) && r <= 8, "shape query result");
    if (r < 0) return -1;
    int64_t n = 1;
    for (int d = 0; d < r; ++d) {
        must(dims[d] >= 0, "negative dimension returned");
        if (dims[d] && n > FUZZ_MAX_BYTES / 4 / dims[d]) return -1;
        n *= dims[d];
    }
    return n;
}

/* Plan and run at batch b. */
static void run_batch(cnnc_model *m, int64_t b, outcome *out) {
    const int nin = cnnc_model_num_inputs(m), nout = cnnc_model_num_outputs(m);
    must(nin >= 1 && nout >= 1, "a loaded model has inputs and outputs");
    int64_t arena_bytes = cnnc_model_arena_size(m, b);
    must(known_code(arena_bytes < 0 ? arena_bytes : 0), "arena_size result");
    out->reached_arena = 1;
    out->arena = arena_bytes;
    if (arena_bytes < 0 || arena_bytes > FUZZ_MAX_BYTES) return;
    float **ins = calloc((size_t)nin, sizeof(float *)), **outs = calloc((size_t)nout, sizeof(float *));
    void *arena = malloc((size_t)(arena_bytes ? arena_bytes : 1));
    int ok = ins && outs && arena;
    int64_t total = 0;
    for (int i = 0; ok && i < nin; ++i) {
        int64_t n = io_numel(m, 1, i, b);
        ok = n >= 0 && (total += n) <= FUZZ_MAX_BYTES / 4 && (ins[i] = malloc((size_t)(n ? n : 1) * 4));
        for (int64_t j = 0; ok && j < n; ++j) ins[i][j] = (float)((j * 7 + i) % 13) / 13.0f - 0.25f;
    }
    for (int i = 0; ok && i < nout; ++i) {
        int64_t n = io_numel(m, 0, i, b);
        ok = n >= 0 && (total += n) <= FUZZ_MAX_BYTES / 4 && (outs[i] = malloc((size_t)(n ? n : 1) * 4));
    }
    if (ok) {
        int rc = cnnc_model_run(m, arena, arena_bytes, (const float *const *)ins, outs);
        must(known_code(rc), "run result");
        out->reached_run = 1;
        out->run = rc;
        /* with the weights packed once, a run gives the same bits */
        const int prc = cnnc_model_prepack(m, NULL);
        must(known_code(prc), "prepack result");
        if (rc == CNNC_OK && prc == CNNC_OK) {
            for (int i = 0; i < nout; ++i) {
                int64_t n = io_numel(m, 0, i, b);
                float *again = malloc((size_t)(n ? n : 1) * 4);
                if (!again) continue;
                float *keep = outs[i];
                outs[i] = again;
                must(cnnc_model_run(m, arena, arena_bytes, (const float *const *)ins, outs) == CNNC_OK,
                     "a run after prepack succeeds");
                must(memcmp(again, keep, (size_t)n * 4) == 0, "a run after prepack gives the same bits");
                outs[i] = keep;
                free(again);
            }
        }
    }
    for (int i = 0; ins && i < nin; ++i) free(ins[i]);
    for (int i = 0; outs && i < nout; ++i) free(outs[i]);
    free(ins); free(outs); free(arena);
}

static outcome exercise(const uint8_t *data, size_t size) {
    outcome out = {0, 0, 0, 0, 0};
    cnnc_model *m = (cnnc_model *)&out;  /* must be reset to NULL on failure */
    char msg[256];
    out.load = cnnc_model_load_msg(data, (int64_t)size, &m, msg, sizeof msg);
    must(known_code(out.load), "load result");
    if (out.load != CNNC_OK) {
        must(m == NULL, "a failed load leaves *model NULL");
        must(msg[0] != 0 && memchr(msg, 0, sizeof msg) != NULL, "a failed load explains itself");
        return out;
    }
    for (int i = 0; i < cnnc_model_num_inputs(m); ++i) must(cnnc_model_input_name(m, i) != NULL, "input name");
    for (int i = 0; i < cnnc_model_num_outputs(m); ++i) must(cnnc_model_output_name(m, i) != NULL, "output name");
    const int64_t fixed = cnnc_model_fixed_batch(m);
    if (fixed > 0) {
        run_batch(m, fixed, &out);
        must(cnnc_model_arena_size(m, fixed + 1) < 0, "a fixed-batch model refuses other batches");
    } else {
        outcome first = out;
        run_batch(m, 3, &first);
        run_batch(m, 1, &out);  /* after another batch: re-planning must work */
    }
    cnnc_model_set_threads(m, 2);
    cnnc_model_free(m);
    return out;
}

#ifdef CNNC_FUZZ_LIBFUZZER
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#ifdef CNNC_FUZZ_KEEP_CRC
    exercise(data, size);
#else
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy) return 0;
    memcpy(copy, data, size);
    fix_header(copy, size);
    exercise(copy, size);
    free(copy);
#endif
    return 0;
}
#else
#include <dirent.h>

static int fix_crc = 0;

static void one_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "fuzz_bundle: cannot open %s\n", path); exit(2); }
    uint8_t *buf = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (n == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) { fprintf(stderr, "fuzz_bundle: out of memory\n"); exit(2); }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    fclose(f);
    if (fix_crc) fix_header(buf, n);
    outcome o = exercise(buf, n);
    free(buf);
    printf("load=%d arena=", o.load);
    if (o.reached_arena) printf("%lld", (long long)o.arena); else printf("-");
    printf(" run=");
    if (o.reached_run) printf("%d", o.run); else printf("-");
    printf(" %s\n", path);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    for (int i = 1; i < argc; ++i) {
        if (!strcmp(argv[i], "--fix-crc")) { fix_crc = 1; continue; }
        DIR *d = opendir(argv[i]);
        if (!d) { one_file(argv[i]); continue; }
        char **names = NULL;
        size_t count = 0, cap = 0;
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            if (count == cap) {
                cap = cap ? 2 * cap : 256;
                char **nn = realloc(names, cap * sizeof *names);
                if (!nn) { fprintf(stderr, "fuzz_bundle: out of memory\n"); return 2; }
                names = nn;
            }
            size_t len = strlen(argv[i]) + strlen(e->d_name) + 2;
            if (!(names[count] = malloc(len))) { fprintf(stderr, "fuzz_bundle: out of memory\n"); return 2; }
            snprintf(names[count++], len, "%s/%s", argv[i], e->d_name);
        }
        closedir(d);
        qsort(names, count, sizeof *names, by_name);
        for (size_t k = 0; k < count; ++k) { one_file(names[k]); free(names[k]); }
        free(names);
    }
    return 0;
}
#endif
