"""Python threads started after the interpreter, each busy in a function of
its own, and the main thread waiting. Usage: python_threads.py SECONDS"""

import sys
import threading
import time


def busy(until):
    x = 0
    while time.monotonic() < until:
        for i in range(100):
            x += i
    return x


def worker_a(until):
    busy(until)


def worker_b(until):
    busy(until)


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 10.0
    print("ready", flush=True)
    until = time.monotonic() + seconds
    # Started late, so the agent meets them as new threads of a process
    # it already reads.
    time.sleep(1.0)
    threads = [threading.Thread(target=f, args=(until,)) for f in (worker_a, worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
