/*
 * Deep stacks for the agent's tests and benchmark. Built with -O2
 * -fomit-frame-pointer: every frame is found through .eh_frame, and far
 * past the stack the kernel copies with a sample.
 *
 * Usage: deep fixed SECONDS
 *   Two threads each recurse DEPTH (2000) levels through fw_deep, about
 *   400 bytes a frame (about 800 KiB of stack), then spin in fw_deep_leaf
 *   until SECONDS have passed. Every sample in the leaf has exactly DEPTH
 *   fw_deep frames under fw_deep_thread.
 *
 * Usage: deep changing SECONDS
 *   Two threads each run rounds until SECONDS have passed. A round picks a
 *   pattern P (0..PATTERNS-1) and a depth D (200..2000), recurses D levels
 *   (level L calls fw_step_a, fw_step_b or fw_step_c as pattern(P, L)
 *   says: frames of 224, 336 and 480 bytes of locals), spins about 2 ms in
 *   fw_step_leaf and returns: the outer frames change every few
 *   milliseconds. A stack that really existed reads, from fw_round
 *   outward in, fw_step_X at level 0, 1, 2, ... exactly as pattern(P, L)
 *   for one P; the test computes pattern() the same way.
 *
 * Usage: deep huge SECONDS
 *   Two threads each call fw_huge, whose frame holds 600 KiB of locals
 *   (larger than the 512 KiB a frame rule of the agent's unwinding library
 *   can hold), which recurses HUGE_DEPTH (20) levels through fw_deep, then
 *   spins in fw_deep_leaf until SECONDS have passed.
 *
 * At exit it prints the number of rounds each thread ran.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEPTH 2000
#define PATTERNS 7
#define MIN_DEPTH 200
#define MAX_DEPTH 2000
#define HUGE_BYTES (600 << 10)
#define HUGE_DEPTH 20

static volatile uint64_t sink;
static double deadline;
static int changing, huge;

static double now(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t spin(uint64_t x, int rounds) {
    for (int i = 0; i < rounds; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        x ^= x >> 29;
    }
    return x;
}

/* ---- fixed depth ---------------------------------------------------- */

__attribute__((noinline, noipa)) uint64_t fw_deep_leaf(void) {
    uint64_t x = 1;
    while (now(CLOCK_MONOTONIC) < deadline)
        x = spin(x, 20000);
    return x;
}

__attribute__((noinline, noipa)) uint64_t fw_deep(int n) {
    volatile char pad[384];
    pad[0] = (char)n;
    pad[sizeof pad - 1] = (char)(n >> 8);
    uint64_t r = n > 1 ? fw_deep(n - 1) : fw_deep_leaf();
    /* Work after the call: the recursion is not a tail call. */
    return r + (uint64_t)pad[0] + (uint64_t)pad[sizeof pad - 1];
}

/* ---- one huge frame ------------------------------------------------- */

__attribute__((noinline, noipa)) uint64_t fw_huge(void) {
    volatile char pad[HUGE_BYTES];
    pad[0] = 1;
    pad[HUGE_BYTES - 1] = 2;
    uint64_t r = fw_deep(HUGE_DEPTH);
    return r + (uint64_t)pad[0] + (uint64_t)pad[HUGE_BYTES - 1];
}

/* ---- changing depth ------------------------------------------------- */

/* Which function runs at `level` in a round of pattern `p`: 0, 1 or 2. */
static int pattern(unsigned p, unsigned level) {
    uint32_t h = (p + 1u) * 2654435761u ^ (level + 1u) * 40503u;
    h ^= h >> 15;
    h *= 2246822519u;
    h ^= h >> 13;
    return (int)(h % 3u);
}

uint64_t fw_step_a(unsigned p, unsigned level, unsigned depth);
uint64_t fw_step_b(unsigned p, unsigned level, unsigned depth);
uint64_t fw_step_c(unsigned p, unsigned level, unsigned depth);

__attribute__((noinline, noipa)) uint64_t fw_step_leaf(unsigned p, unsigned depth) {
    double t0 = now(CLOCK_THREAD_CPUTIME_ID);
    uint64_t x = p + depth;
    while (now(CLOCK_THREAD_CPUTIME_ID) - t0 < 0.002)
        x = spin(x, 5000);
    return x;
}

static inline uint64_t next(unsigned p, unsigned level, unsigned depth) {
    if (level >= depth)
        return fw_step_leaf(p, depth);
    switch (pattern(p, level)) {
    case 0: return fw_step_a(p, level, depth);
    case 1: return fw_step_b(p, level, depth);
    default: return fw_step_c(p, level, depth);
    }
}

#define STEP(name, bytes)                                                    \
    __attribute__((noinline, noipa)) uint64_t name(unsigned p, unsigned level, \
                                                   unsigned depth) {         \
        volatile char pad[bytes];                                            \
        pad[0] = (char)level;                                                \
        pad[bytes - 1] = (char)p;                                            \
        uint64_t r = next(p, level + 1, depth);                              \
        return r + (uint64_t)pad[0] + (uint64_t)pad[bytes - 1];              \
    }

STEP(fw_step_a, 224)
STEP(fw_step_b, 336)
STEP(fw_step_c, 480)

__attribute__((noinline, noipa)) uint64_t fw_round(unsigned p, unsigned depth) {
    uint64_t r = next(p, 0, depth);
    return r + 1;
}

/* ---- threads -------------------------------------------------------- */

__attribute__((noinline, noipa)) void *fw_deep_thread(void *arg) {
    uint64_t *rounds = arg;
    if (huge) {
        sink += fw_huge();
        *rounds = 1;
        return NULL;
    }
    if (!changing) {
        sink += fw_deep(DEPTH);
        *rounds = 1;
        return NULL;
    }
    uint64_t seed = (uint64_t)(uintptr_t)arg;
    while (now(CLOCK_MONOTONIC) < deadline) {
        seed = spin(seed, 1);
        unsigned p = (unsigned)(seed >> 33) % PATTERNS;
        unsigned depth = MIN_DEPTH + (unsigned)(seed >> 40) % (MAX_DEPTH - MIN_DEPTH + 1);
        sink += fw_round(p, depth);
        *rounds += 1;
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 3 || (strcmp(argv[1], "fixed") && strcmp(argv[1], "changing") &&
                      strcmp(argv[1], "huge"))) {
        fprintf(stderr, "usage: deep fixed|changing|huge SECONDS\n");
        return 2;
    }
    changing = !strcmp(argv[1], "changing");
    huge = !strcmp(argv[1], "huge");
    deadline = now(CLOCK_MONOTONIC) + atof(argv[2]);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 8 << 20);
    pthread_t threads[2];
    uint64_t rounds[2] = {0, 0};
    for (int i = 0; i < 2; i++)
        if (pthread_create(&threads[i], &attr, fw_deep_thread, &rounds[i])) {
            perror("pthread_create");
            return 1;
        }
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    printf("%llu %llu\n", (unsigned long long)rounds[0], (unsigned long long)rounds[1]);
    return 0;
}
