/*
 * Ground-truth allocation workload for the agent's allocation probes.
 *
 * Two functions allocate through libc, chosen at random call by call (so
 * a fixed sample period cannot line up with a pattern):
 *   fw_alloc_big    malloc(n), then realloc to 2n  (about 70% of bytes, 50% of calls)
 *   fw_alloc_small  calloc(k, 16), or malloc(16k)  (about 30% of bytes, 50% of calls)
 * Each counts the calls it makes and the bytes they ask for; the totals
 * are printed at exit as
 *   "big_bytes small_bytes big_calls small_calls main_calls late_calls"
 * (the last two: calls of the main thread and of fw-late), the ground truth
 * the agent's alloc_space and alloc_objects are compared with. Bursts of calls alternate with short sleeps, to keep the sample
 * rate moderate. After a second, a thread named fw-late starts doing the
 * same, so that probes are seen to follow threads created later.
 *
 * Usage: alloc SECONDS        run for SECONDS of wall time
 *        alloc SECONDS --wait the same once a line (or the end) is read on
 *                             stdin: the tests start it when the agent's
 *                             probes are in place
 *        alloc --calls N      wait for a line (or the end) on stdin, then
 *                             make N malloc/free pairs as fast as possible
 *                             and print the nanoseconds per pair: the
 *                             benchmark starts the timed loop once the
 *                             probes are in place
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

static void *volatile sink;

struct tally {
    uint64_t big_bytes, small_bytes, big_calls, small_calls;
    uint64_t rng;
};

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t next(struct tally *t) {
    t->rng = t->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return t->rng >> 33;
}

__attribute__((noinline, noipa)) void fw_alloc_big(struct tally *t) {
    size_t n = 512 + next(t) % 1024;
    char *p = malloc(n);
    if (!p)
        abort();
    p[0] = 1;
    char *q = realloc(p, 2 * n);
    if (!q)
        abort();
    sink = q;
    free(q);
    t->big_bytes += 3 * n;
    t->big_calls += 2;
}

__attribute__((noinline, noipa)) void fw_alloc_small(struct tally *t) {
    size_t k = 16 + next(t) % 48;
    void *p = (next(t) & 1) ? calloc(k, 16) : malloc(k * 16);
    if (!p)
        abort();
    sink = p;
    free(p);
    t->small_bytes += k * 16;
    t->small_calls += 1;
}

struct run {
    double until;
    struct tally t;
};

__attribute__((noinline, noipa)) void fw_alloc_loop(struct run *r) {
    while (now() < r->until) {
        for (int i = 0; i < 100; i++) {
            /* Mean bytes per choice: big 3 * 1023.5, small 16 * 39.5; big is
             * chosen once in 3, for about 71% of the bytes and half the
             * calls. */
            if (next(&r->t) % 3 == 0)
                fw_alloc_big(&r->t);
            else
                fw_alloc_small(&r->t);
        }
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

static void *late_thread(void *arg) {
    pthread_setname_np(pthread_self(), "fw-late");
    fw_alloc_loop(arg);
    return NULL;
}

static void wait_for_go(void) {
    int c;
    while ((c = getchar()) != EOF && c != '\n')
        ;
}

static int bench(long calls) {
    wait_for_go();
    double t0 = now();
    for (long i = 0; i < calls; i++) {
        void *p = malloc(64);
        sink = p;
        free(p);
    }
    printf("%.1f\n", (now() - t0) * 1e9 / (double)calls);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--calls") == 0)
        return bench(atol(argv[2]));
    int wait = argc == 3 && strcmp(argv[2], "--wait") == 0;
    if (argc != 2 && !wait) {
        fprintf(stderr, "usage: %s SECONDS [--wait] | --calls N\n", argv[0]);
        return 2;
    }
    if (wait)
        wait_for_go();
    double until = now() + atof(argv[1]);
    struct run a = {until, {0, 0, 0, 0, 12345}}, b = {until, {0, 0, 0, 0, 67890}};
    struct timespec second = {1, 0};
    nanosleep(&second, NULL);
    pthread_t t;
    if (pthread_create(&t, NULL, late_thread, &b) != 0)
        return 1;
    fw_alloc_loop(&a);
    pthread_join(t, NULL);
    printf("%llu %llu %llu %llu %llu %llu\n", (unsigned long long)(a.t.big_bytes + b.t.big_bytes),
           (unsigned long long)(a.t.small_bytes + b.t.small_bytes),
           (unsigned long long)(a.t.big_calls + b.t.big_calls),
           (unsigned long long)(a.t.small_calls + b.t.small_calls),
           (unsigned long long)(a.t.big_calls + a.t.small_calls),
           (unsigned long long)(b.t.big_calls + b.t.small_calls));
    return 0;
}
