/* threads.c - the thread pool behind every parallel loop of the C core.
 *
 * Why not OpenMP: an OpenMP parallel region ends in a barrier that waits for every thread of the
 * team, including one the OS has not scheduled yet. When another process holds a core, each region
 * then waits for a time slice, and a training step of small layers (hundreds of regions) became ~5x
 * slower at 2 threads than at 1 (measured: 496 against 2,317 samples/s on the Chollet CNN with one
 * busy core). Here the caller takes part in its own loop and the workers claim chunks of it; the
 * caller waits only for chunks a worker has claimed, so a worker that never got the CPU costs nothing
 * but the chunks the caller ran in its place.
 *
 * One job at a time per pool. The state of the job a worker may join lives in one atomic word:
 *     seq (16 bits) | participants nt (8) | next chunk (20) | number of chunks (20)
 * A chunk is claimed by a compare-and-swap that advances `next`. A successful claim proves the job is
 * still the pool's current one (its owner publishes the next job only after every chunk is done), so
 * the claimer may then read the job's function and argument. seq changes with every job and only wakes
 * the workers. Worker w (1..threads-1) joins a job only if w < nt; the caller is participant 0. A job's
 * chunks are independent and each is run by exactly one participant, so results do not depend on
 * which thread ran what.
 *
 * Workers that find no job spin for a short while (a model runs its loops back to back), yielding the
 * CPU as they do, then sleep on a condition variable: they never keep spinning after a call returns.
 * A call that finds the pool busy (another thread's job, or a loop nested inside a job) runs serially. */
#define _GNU_SOURCE /* sched_getaffinity, clock_gettime, sysconf under -std=c11 */
#include "internal.h"

#include <stdlib.h>

/* OMP_NUM_THREADS (the variable users know; its first entry) when set to a positive number. */
static int threads_from_env(void) {
    const char *s = getenv("OMP_NUM_THREADS");
    if (!s) return 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 1) return 0;
    return v > CNNC_POOL_MAX_THREADS ? CNNC_POOL_MAX_THREADS : (int)v;
}

#if CNNC_HAVE_THREADS
#define SPIN_US_DEFAULT 50 /* how long an idle worker polls for the next job before it sleeps */

/* CNNC_SPIN_US: microseconds an idle worker polls before it sleeps (0 to 100000). */
static int spin_us_from_env(void) {
    const char *s = getenv("CNNC_SPIN_US");
    if (!s) return SPIN_US_DEFAULT;
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0) return SPIN_US_DEFAULT;
    return v > 100000 ? 100000 : (int)v;
}

#include <pthread.h>
#include <unistd.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>

#define SEQ_SHIFT 48
#define NT_SHIFT 40
#define NEXT_SHIFT 20
#define FIELD20 ((UINT64_C(1) << 20) - 1)
#define MAX_CHUNKS ((int64_t)FIELD20)

struct cnnc_pool {
    int nthreads; /* participants: the caller and nthreads - 1 workers */
    pthread_t *workers;
    int started;  /* workers created */
    int64_t spin_ns;
    atomic_int busy;
    _Atomic uint64_t word;
    atomic_llong done;  /* chunks of the current job finished */
    /* the current job; written by its owner before it publishes word, read by claimers after a claim */
    cnnc_range_fn fn;
    void *arg;
    int64_t n, grain;
    /* sleeping */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    atomic_int sleepers;
    atomic_int stop;
};

typedef struct {
    cnnc_pool *pool;
    int index;
} worker_arg;

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static inline int64_t word_next(uint64_t w) { return (int64_t)((w >> NEXT_SHIFT) & FIELD20); }
static inline int64_t word_chunks(uint64_t w) { return (int64_t)(w & FIELD20); }
static inline int word_nt(uint64_t w) { return (int)((w >> NT_SHIFT) & 0xff); }

/* Claim and run chunks of the current job as participant `slot` while any are left. */
static void run_chunks(cnnc_pool *p, int slot) {
    uint64_t w = atomic_load_explicit(&p->word, memory_order_acquire);
    for (;;) {
        const int64_t next = word_next(w);
        if (next >= word_chunks(w) || slot >= word_nt(w)) return;
        if (!atomic_compare_exchange_weak_explicit(&p->word, &w, w + (UINT64_C(1) << NEXT_SHIFT),
                                                   memory_order_acq_rel, memory_order_acquire))
            continue;
        const int64_t b = next * p->grain, e = CNNC_MIN(p->n, b + p->grain);
        p->fn(p->arg, b, e, slot);
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
        w = atomic_load_explicit(&p->word, memory_order_acquire);
    }
}

static void *worker_main(void *varg) {
    worker_arg *wa = (worker_arg *)varg;
    cnnc_pool *p = wa->pool;
    const int slot = wa->index;
    free(wa);
    uint64_t seen = 0; /* the sequence at creation: a job published before this thread ran is new to it */
    for (;;) {
        /* wait for a job newer than the last one seen: spin, then sleep */
        uint64_t w = atomic_load_explicit(&p->word, memory_order_acquire);
        if ((w >> SEQ_SHIFT) == seen && !atomic_load(&p->stop)) {
            const int64_t t0 = now_ns();
            for (unsigned i = 1;; ++i) {
                cpu_relax();
                w = atomic_load_explicit(&p->word, memory_order_acquire);
                if ((w >> SEQ_SHIFT) != seen || atomic_load_explicit(&p->stop, memory_order_relaxed)) break;
                if ((i & 63) == 0) {
                    if (now_ns() - t0 > p->spin_ns) break;
                    sched_yield(); /* a caller sharing this core gets it */
                }
            }
            if ((w >> SEQ_SHIFT) == seen) {
                pthread_mutex_lock(&p->mu);
                atomic_fetch_add(&p->sleepers, 1); /* seq_cst: pairs with the owner's publish */
                while ((atomic_load(&p->word) >> SEQ_SHIFT) == seen && !atomic_load(&p->stop))
                    pthread_cond_wait(&p->cv, &p->mu);
                atomic_fetch_sub(&p->sleepers, 1);
                pthread_mutex_unlock(&p->mu);
            }
        }
        if (atomic_load(&p->stop)) return NULL;
        w = atomic_load_explicit(&p->word, memory_order_acquire);
        seen = w >> SEQ_SHIFT;
        run_chunks(p, slot);
    }
}

cnnc_pool *cnnc_pool_create(int nthreads) {
    if (nthreads < 1 || nthreads > CNNC_POOL_MAX_THREADS) return NULL;
    cnnc_pool *p = (cnnc_pool *)calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = nthreads;
    p->spin_ns = (int64_t)spin_us_from_env() * 1000;
    atomic_init(&p->busy, 0);
    atomic_init(&p->word, 0);
    atomic_init(&p->done, 0);
    atomic_init(&p->sleepers, 0);
    atomic_init(&p->stop, 0);
    if (pthread_mutex_init(&p->mu, NULL) != 0) { free(p); return NULL; }
    if (pthread_cond_init(&p->cv, NULL) != 0) { pthread_mutex_destroy(&p->mu); free(p); return NULL; }
    if (nthreads > 1) {
        p->workers = (pthread_t *)calloc((size_t)nthreads - 1, sizeof *p->workers);
        if (!p->workers) { cnnc_pool_free(p); return NULL; }
        for (int i = 1; i < nthreads; ++i) {
            worker_arg *wa = (worker_arg *)malloc(sizeof *wa);
            if (!wa) break;
            wa->pool = p;
            wa->index = i;
            if (pthread_create(&p->workers[i - 1], NULL, worker_main, wa) != 0) { free(wa); break; }
            p->started++;
        }
        if (p->started != nthreads - 1) { cnnc_pool_free(p); return NULL; }
    }
    return p;
}

void cnnc_pool_free(cnnc_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->started; ++i) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

int cnnc_pool_threads(const cnnc_pool *p) { return p ? p->nthreads : 1; }

int cnnc_has_threads(void) { return 1; }

int cnnc_default_threads(void) {
    int n = threads_from_env();
    if (n > 0) return n;
#if defined(__linux__)
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0) n = CPU_COUNT(&set);
#endif
    if (n < 1) n = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    return n > CNNC_POOL_MAX_THREADS ? CNNC_POOL_MAX_THREADS : n;
}

void cnnc_parallel_for(const cnnc_ctx *ctx, int nt, int64_t n, int64_t grain, cnnc_range_fn fn, void *arg) {
    if (n <= 0) return;
    cnnc_pool *p = ctx->pool;
    if (grain < 1) grain = 1;
    if (nt > 1 && p && n > grain) {
        if (nt > p->nthreads) nt = p->nthreads;
        if (CNNC_CEIL_DIV(n, grain) > MAX_CHUNKS) grain = CNNC_CEIL_DIV(n, MAX_CHUNKS);
        int expected = 0;
        if (nt > 1 && atomic_compare_exchange_strong(&p->busy, &expected, 1)) {
            const int64_t chunks = CNNC_CEIL_DIV(n, grain);
            p->fn = fn;
            p->arg = arg;
            p->n = n;
            p->grain = grain;
            atomic_store_explicit(&p->done, 0, memory_order_relaxed);
            const uint64_t seq = ((atomic_load_explicit(&p->word, memory_order_relaxed) >> SEQ_SHIFT) + 1) & 0xffff;
            /* seq_cst: either a worker about to sleep sees the new seq, or this sees it asleep */
            atomic_store(&p->word, (seq << SEQ_SHIFT) | ((uint64_t)nt << NT_SHIFT) | (uint64_t)chunks);
            if (atomic_load(&p->sleepers) > 0) {
                pthread_mutex_lock(&p->mu);
                pthread_cond_broadcast(&p->cv);
                pthread_mutex_unlock(&p->mu);
            }
            run_chunks(p, 0);
            /* every chunk is claimed; wait for the ones other threads are still running */
            for (unsigned i = 1; atomic_load_explicit(&p->done, memory_order_acquire) < chunks; ++i) {
                cpu_relax();
                if ((i & 255) == 0) sched_yield();
            }
            atomic_store_explicit(&p->busy, 0, memory_order_release);
            return;
        }
    }
    fn(arg, 0, n, 0);
}

#else /* no threads: every loop runs on the caller */

struct cnnc_pool {
    int nthreads;
};

cnnc_pool *cnnc_pool_create(int nthreads) {
    (void)nthreads;
    return NULL;
}
void cnnc_pool_free(cnnc_pool *p) { (void)p; }
int cnnc_pool_threads(const cnnc_pool *p) { return p ? p->nthreads : 1; }

int cnnc_has_threads(void) { return 0; }

int cnnc_default_threads(void) {
    (void)threads_from_env;
    return 1;
}

void cnnc_parallel_for(const cnnc_ctx *ctx, int nt, int64_t n, int64_t grain, cnnc_range_fn fn, void *arg) {
    (void)ctx;
    (void)nt;
    (void)grain;
    if (n > 0) fn(arg, 0, n, 0);
}
#endif
