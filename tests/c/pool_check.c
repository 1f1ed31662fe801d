/* pool_check.c - the thread pool of src_c/threads.c on its own (tests/test_pool.py builds and runs it,
 * also under ThreadSanitizer). Prints "ok" and exits 0, or names the first failed check and exits 1.
 *
 * Checked: every item of a loop is run exactly once, for many sizes, grains and participant counts;
 * slots stay below the participant count and no two chunks run at once on one slot; a loop nested in
 * a loop runs on its caller; several threads submitting loops to one pool at once all get complete
 * results; a participant stalled inside a chunk delays only the call that waits for that chunk; pools
 * are created and freed repeatedly; bad arguments are refused. */
#include "internal.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static int failures;
#define CHECK(cond, ...)                                              \
    do {                                                              \
        if (!(cond)) {                                                \
            fprintf(stderr, "FAILED %s:%d: ", __FILE__, __LINE__);    \
            fprintf(stderr, __VA_ARGS__);                             \
            fputc('\n', stderr);                                      \
            failures++;                                               \
        }                                                             \
    } while (0)

typedef struct {
    atomic_int *hits;      /* per item */
    atomic_int *busy;      /* per slot: chunks running on it now */
    int nt;
    atomic_int bad_slot, overlap;
    const cnnc_ctx *nested; /* when set, each chunk runs a nested loop on this context */
    atomic_int nested_total;
} cover_job;

static void count_task(void *arg, int64_t lo, int64_t hi, int slot) {
    atomic_int *total = (atomic_int *)arg;
    (void)slot;
    atomic_fetch_add(total, (int)(hi - lo));
}

static void cover_task(void *arg, int64_t lo, int64_t hi, int slot) {
    cover_job *j = (cover_job *)arg;
    if (slot < 0 || slot >= j->nt) {
        atomic_store(&j->bad_slot, 1);
        return;
    }
    if (atomic_fetch_add(&j->busy[slot], 1) != 0) atomic_store(&j->overlap, 1);
    for (int64_t i = lo; i < hi; ++i) atomic_fetch_add(&j->hits[i], 1);
    if (j->nested) {
        atomic_int total;
        atomic_init(&total, 0);
        cnnc_parallel_for(j->nested, 2, 100, 7, count_task, &total);
        atomic_fetch_add(&j->nested_total, atomic_load(&total));
    }
    atomic_fetch_sub(&j->busy[slot], 1);
}

/* One loop of n items; returns 0 when every item ran once and slots behaved. */
static int cover_once(const cnnc_ctx *ctx, int nt, int64_t n, int64_t grain, const cnnc_ctx *nested) {
    cover_job j;
    j.hits = (atomic_int *)calloc((size_t)(n > 0 ? n : 1), sizeof(atomic_int));
    j.busy = (atomic_int *)calloc(256, sizeof(atomic_int));
    j.nt = nt < 1 ? 1 : nt;
    atomic_init(&j.bad_slot, 0);
    atomic_init(&j.overlap, 0);
    j.nested = nested;
    atomic_init(&j.nested_total, 0);
    cnnc_parallel_for(ctx, nt, n, grain, cover_task, &j);
    int bad = 0;
    for (int64_t i = 0; i < n; ++i)
        if (atomic_load(&j.hits[i]) != 1) {
            CHECK(0, "n=%lld grain=%lld nt=%d: item %lld ran %d times", (long long)n, (long long)grain, nt,
                  (long long)i, atomic_load(&j.hits[i]));
            bad = 1;
            break;
        }
    CHECK(!atomic_load(&j.bad_slot), "n=%lld nt=%d: a slot outside [0, nt)", (long long)n, nt);
    CHECK(!atomic_load(&j.overlap), "n=%lld nt=%d: two chunks at once on one slot", (long long)n, nt);
    if (nested) {
        /* each chunk's nested loop counted all 100 items */
        const int64_t chunks_max = n; /* at most one nested loop per item */
        const int got = atomic_load(&j.nested_total);
        CHECK(got % 100 == 0 && got >= 100 && got <= 100 * chunks_max, "nested loops counted %d", got);
    }
    free(j.hits);
    free(j.busy);
    return bad;
}

/* ---- several submitters at once ---- */
typedef struct {
    const cnnc_ctx *ctx;
    int id, rounds, ok;
} submitter;

static void *submit_main(void *arg) {
    submitter *s = (submitter *)arg;
    s->ok = 1;
    for (int r = 0; r < s->rounds; ++r) {
        atomic_int total;
        atomic_init(&total, 0);
        const int64_t n = 1 + (s->id * 131 + r * 17) % 5000;
        cnnc_parallel_for(s->ctx, 2 + (r % 3), n, 1 + r % 64, count_task, &total);
        if (atomic_load(&total) != n) s->ok = 0;
    }
    return NULL;
}

/* ---- a stalled participant ---- */
typedef struct {
    atomic_int release, stalled_runs, other_runs;
} stall_job;

/* Chunk 0 waits until the test releases it; the others just count. */
static void stall_task(void *arg, int64_t lo, int64_t hi, int slot) {
    stall_job *j = (stall_job *)arg;
    (void)slot;
    for (int64_t i = lo; i < hi; ++i) {
        if (i == 0) {
            while (!atomic_load(&j->release)) sched_yield();
            atomic_fetch_add(&j->stalled_runs, 1);
        } else {
            atomic_fetch_add(&j->other_runs, 1);
        }
    }
}

typedef struct {
    const cnnc_ctx *ctx;
    stall_job *job;
    atomic_int done;
} stall_caller;

static void *stall_main(void *arg) {
    stall_caller *c = (stall_caller *)arg;
    cnnc_parallel_for(c->ctx, 2, 64, 1, stall_task, c->job);
    atomic_store(&c->done, 1);
    return NULL;
}

int main(void) {
    CHECK(cnnc_pool_create(0) == NULL, "a pool of 0 threads");
    CHECK(cnnc_pool_create(256) == NULL, "a pool of 256 threads");
    CHECK(cnnc_pool_threads(NULL) == 1, "no pool has 1 thread");
    cnnc_pool_free(NULL);

    for (int round = 0; round < 20; ++round) { /* create and free, idle and after work */
        cnnc_pool *p = cnnc_pool_create(1 + round % 4);
        CHECK(p != NULL, "pool_create(%d)", 1 + round % 4);
        if (!p) break;
        if (round % 2) {
            cnnc_ctx c = {0};
            c.nthreads = 4;
            c.pool = p;
            atomic_int total;
            atomic_init(&total, 0);
            cnnc_parallel_for(&c, 4, 1000, 3, count_task, &total);
            CHECK(atomic_load(&total) == 1000, "count %d", atomic_load(&total));
        }
        cnnc_pool_free(p);
    }

    const int sizes[] = {3, 4, 8};
    for (int si = 0; si < 3; ++si) {
        cnnc_pool *p = cnnc_pool_create(sizes[si]);
        CHECK(p && cnnc_pool_threads(p) == sizes[si], "pool of %d", sizes[si]);
        if (!p) continue;
        cnnc_ctx ctx = {0};
        ctx.nthreads = sizes[si];
        ctx.pool = p;
        CHECK(cnnc_threads(&ctx, 1000) == sizes[si], "cnnc_threads caps at the pool");
        ctx.nthreads = 100;
        CHECK(cnnc_threads(&ctx, 1000) == sizes[si], "cnnc_threads: no more than the pool has");
        CHECK(cnnc_threads(&ctx, 2) == 2, "cnnc_threads: no more than the items");
        const int64_t ns[] = {0, 1, 2, 3, 7, 64, 1000, 4097, 100003};
        const int64_t grains[] = {1, 2, 5, 64, 100000};
        for (int a = 0; a < 9; ++a)
            for (int b = 0; b < 5; ++b)
                for (int nt = 1; nt <= sizes[si]; ++nt)
                    for (int rep = 0; rep < 3; ++rep) cover_once(&ctx, nt, ns[a], grains[b], NULL);
        /* a loop inside a loop runs on its caller, completely */
        cnnc_ctx nested = ctx;
        cover_once(&ctx, sizes[si], 50, 1, &nested);

        /* four threads submitting to the one pool */
        pthread_t th[4];
        submitter sub[4];
        for (int i = 0; i < 4; ++i) {
            sub[i] = (submitter){&ctx, i, 200, 0};
            pthread_create(&th[i], NULL, submit_main, &sub[i]);
        }
        for (int i = 0; i < 4; ++i) {
            pthread_join(th[i], NULL);
            CHECK(sub[i].ok, "submitter %d got an incomplete loop", i);
        }
        cnnc_pool_free(p);
    }

    /* A participant stalls in chunk 0. The loop cannot return before chunk 0 is done, but the other
     * 63 chunks all run meanwhile: the caller does not wait for a worker before taking work itself. */
    {
        cnnc_pool *p = cnnc_pool_create(2);
        cnnc_ctx ctx = {0};
        ctx.nthreads = 2;
        ctx.pool = p;
        stall_job job;
        atomic_init(&job.release, 0);
        atomic_init(&job.stalled_runs, 0);
        atomic_init(&job.other_runs, 0);
        stall_caller call = {&ctx, &job};
        atomic_init(&call.done, 0);
        pthread_t t;
        pthread_create(&t, NULL, stall_main, &call);
        for (int spin = 0; atomic_load(&job.other_runs) < 63 && spin < 20000000; ++spin) sched_yield();
        CHECK(atomic_load(&job.other_runs) == 63, "while chunk 0 stalls, %d of 63 other chunks ran",
              atomic_load(&job.other_runs));
        CHECK(!atomic_load(&call.done), "the loop returned before its stalled chunk finished");
        atomic_store(&job.release, 1);
        pthread_join(t, NULL);
        CHECK(atomic_load(&call.done) && atomic_load(&job.stalled_runs) == 1, "stalled chunk ran once");
        cnnc_pool_free(p);
    }

    if (failures) return 1;
    puts("ok");
    return 0;
}
