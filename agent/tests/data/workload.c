/*
 * Ground-truth workload for the agent's tests and benchmark.
 *
 * Two threads (the main thread and one pthread) each alternate between
 * fw_hot (about 3 ms of thread CPU time) and fw_cold (about 1 ms, spent in
 * libc's qsort calling back fw_cmp), so about 75% / 25% of the CPU time is
 * in each. Both functions measure their own thread CPU time; the totals are
 * printed at exit as "hot_seconds cold_seconds", the ground truth a
 * profile's shares are compared with.
 *
 * Usage: workload SECONDS        run for SECONDS of wall time
 *        workload --iterations N  run N rounds of fixed work per thread
 *                                 (benchmarks: the wall time is the figure)
 *
 * Built with -O2 -fomit-frame-pointer: unwinding needs .eh_frame.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static volatile uint64_t sink;

static double clock_of(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Spins for `budget` seconds of thread CPU time, or for `chunks` fixed
 * chunks of work when `chunks` is not 0; returns the thread CPU time spent. */
__attribute__((noinline, noipa)) double fw_hot(double budget, int chunks) {
    double t0 = clock_of(CLOCK_THREAD_CPUTIME_ID);
    uint64_t x = (uint64_t)(t0 * 1e9) | 1;
    for (int done = 1;; done++) {
        for (int i = 0; i < 100000; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            x ^= x >> 29;
        }
        sink += x;
        if (chunks ? done >= chunks : clock_of(CLOCK_THREAD_CPUTIME_ID) - t0 >= budget)
            break;
    }
    return clock_of(CLOCK_THREAD_CPUTIME_ID) - t0;
}

__attribute__((noinline, noipa)) int fw_cmp(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* Sorts with libc's qsort (no frame pointers in Debian's libc) for `budget`
 * seconds of thread CPU time, or `chunks` sorts; returns the time spent. */
__attribute__((noinline, noipa)) double fw_cold(double budget, int chunks) {
    static __thread uint32_t data[2048];
    double t0 = clock_of(CLOCK_THREAD_CPUTIME_ID);
    uint32_t x = 12345;
    for (int done = 1;; done++) {
        for (int i = 0; i < 2048; i++) {
            x = x * 1103515245u + 12345u;
            data[i] = x;
        }
        qsort(data, 2048, sizeof data[0], fw_cmp);
        sink += data[0];
        if (chunks ? done >= chunks : clock_of(CLOCK_THREAD_CPUTIME_ID) - t0 >= budget)
            break;
    }
    return clock_of(CLOCK_THREAD_CPUTIME_ID) - t0;
}

struct run {
    double until;    /* wall-clock deadline (CLOCK_MONOTONIC), or 0 */
    long iterations; /* fixed number of rounds, or 0 */
    double hot, cold;
};

__attribute__((noinline, noipa)) void fw_worker(struct run *r) {
    for (long round = 0;; round++) {
        if (r->iterations ? round >= r->iterations : clock_of(CLOCK_MONOTONIC) >= r->until)
            break;
        /* Fixed-work rounds (benchmarks) use fixed chunk counts instead. */
        r->hot += fw_hot(0.003, r->iterations ? 30 : 0);
        r->cold += fw_cold(0.001, r->iterations ? 6 : 0);
    }
}

static void *thread_main(void *arg) {
    fw_worker(arg);
    return NULL;
}

int main(int argc, char **argv) {
    struct run a = {0}, b = {0};
    if (argc == 3 && strcmp(argv[1], "--iterations") == 0) {
        a.iterations = b.iterations = atol(argv[2]);
    } else if (argc == 2) {
        a.until = b.until = clock_of(CLOCK_MONOTONIC) + atof(argv[1]);
    } else {
        fprintf(stderr, "usage: %s SECONDS | --iterations N\n", argv[0]);
        return 2;
    }
    pthread_t t;
    if (pthread_create(&t, NULL, thread_main, &b) != 0)
        return 1;
    fw_worker(&a);
    pthread_join(t, NULL);
    printf("%.6f %.6f\n", a.hot + b.hot, a.cold + b.cold);
    return 0;
}
