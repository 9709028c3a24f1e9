"""A pure-Python CPU workload: one thread spends about 70 % of its CPU time
in `heavy` and 30 % in `light`, alternating in short slices, and prints the
measured split (thread CPU time) when done. Usage: python_split.py SECONDS

The slices vary at random (7 and 3 ms on average): a fixed 10 ms cycle
would alias with a 99 Hz sampler and the scheduler's tick on a busy host,
and the sampled split would measure that, not the program."""

import random
import sys
import time


def spin(until):
    x = 0
    while time.thread_time() < until:
        for i in range(200):
            x += i * i
    return x


def heavy(slice_s):
    return spin(time.thread_time() + slice_s)


def light(slice_s):
    return spin(time.thread_time() + slice_s)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 15.0
    print("ready", flush=True)
    spent = {"heavy": 0.0, "light": 0.0}
    rng = random.Random(1)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.thread_time()
        heavy(rng.uniform(0.002, 0.012))
        t1 = time.thread_time()
        light(rng.uniform(0.001, 0.005))
        t2 = time.thread_time()
        spent["heavy"] += t1 - t0
        spent["light"] += t2 - t1
    total = spent["heavy"] + spent["light"]
    print(f"heavy {spent['heavy'] / total:.4f} light {spent['light'] / total:.4f}", flush=True)


if __name__ == "__main__":
    main()
