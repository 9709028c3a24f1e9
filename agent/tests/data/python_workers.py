"""Worker processes forked by multiprocessing (a pre-forking server's
shape), each busy in a Python function. Usage: python_workers.py SECONDS"""

import multiprocessing
import sys
import time


def crunch(seconds):
    until = time.monotonic() + seconds
    x = 0
    while time.monotonic() < until:
        for i in range(100):
            x += i
    return x


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    ctx = multiprocessing.get_context("fork")
    print("ready", flush=True)
    time.sleep(1.0)
    with ctx.Pool(2) as pool:
        pool.map(crunch, [seconds - 1.0] * 2)


if __name__ == "__main__":
    main()
