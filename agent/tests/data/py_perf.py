# Two Python functions share the CPU about 80/20 for SECONDS (argv[1]),
# for the agent's test of Python 3.12's perf trampoline (`-X perf`).
import sys
import time


def hot_loop(n):
    x = 0
    for i in range(n):
        x += i * i
    return x


def cold_loop(n):
    x = 0
    for i in range(n):
        x += i ^ 7
    return x


end = time.monotonic() + float(sys.argv[1] if len(sys.argv) > 1 else 5)
acc = 0
while time.monotonic() < end:
    acc += hot_loop(40000)
    acc += cold_loop(10000)
print(acc > 0)
