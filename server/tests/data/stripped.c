/* A program built with debug information, then split: the tests strip it
 * and keep the debug information apart (objcopy --only-keep-debug), as
 * distributions ship binaries, so only a debug file can name its frames.
 * `step` is inlined into `hot_loop`, so names come with an inlined call. */
#include <stdio.h>

static volatile unsigned long sink;

static inline __attribute__((always_inline)) unsigned long step(unsigned long x)
{
    return x * 2654435761u + (x >> 7);
}

__attribute__((noinline)) void hot_loop(unsigned long n)
{
    unsigned long x = sink;
    for (unsigned long i = 0; i < n; i++)
        x = step(x + i);
    sink = x;
}

__attribute__((noinline)) void cold_loop(unsigned long n)
{
    unsigned long x = sink;
    for (unsigned long i = 0; i < n; i++)
        x ^= x << 13 ^ i;
    sink = x;
}

int main(int argc, char **argv)
{
    (void)argv;
    /* Runs until killed; with an argument, one round (for the build check). */
    do {
        hot_loop(7000000);
        cold_loop(3000000);
    } while (argc < 2);
    printf("%lu\n", sink);
    return 0;
}
