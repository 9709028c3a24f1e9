"""Python called back from C called from Python: libc's qsort, through
ctypes, compares with a Python function. Usage: python_callback.py SECONDS"""

import ctypes
import sys
import time

COMPARE = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)
)


def compare(a, b):
    x = 0
    for i in range(100):
        x += i
    return a[0] - b[0]


def sort_many(seconds):
    libc = ctypes.CDLL("libc.so.6")
    n = 1000
    values = (ctypes.c_int * n)()
    callback = COMPARE(compare)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for i in range(n):
            values[i] = (i * 7919) % n
        libc.qsort(values, n, ctypes.sizeof(ctypes.c_int), callback)


if __name__ == "__main__":
    print("ready", flush=True)
    sort_many(float(sys.argv[1]) if len(sys.argv) > 1 else 10.0)
