"""Profiles itself with Grafana's Python SDK (pyroscope-io) and pushes to a
Firewatch server, as an unchanged user program would.

Usage: python3 pyroscope_client.py SERVER_URL APP_NAME CPU_SECONDS

Burns about CPU_SECONDS of CPU time (process time, so a busy machine makes
the run longer, not the profile smaller; at most ten times that in wall
time) split 3:1 by work between firewatch_hot_py and firewatch_cold_py,
then shuts the SDK down, which sends what it has not sent yet.
"""

import sys
import time

import pyroscope

WORK = 20_000
CHECK_EVERY = 25


# Each function does its own work (no shared helper), so that the time is
# each one's self time.
def firewatch_hot_py():
    x = 0
    for i in range(3 * WORK):
        x += i * i
    return x


def firewatch_cold_py():
    x = 0
    for i in range(WORK):
        x += i * i
    return x


def main():
    url, app, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pyroscope.configure(
        application_name=app,
        server_address=url,
        sample_rate=100,
        tags={"env": "test"},
        enable_logging=True,
    )
    cpu_start, wall_start = time.process_time(), time.monotonic()
    rounds = 0
    # The clocks are read every CHECK_EVERY rounds only: reading the process
    # time is a system call, where a busy machine tends to preempt, and a
    # thread preempted at the same point of every round would be sampled
    # there out of proportion.
    while (
        time.process_time() - cpu_start < seconds
        and time.monotonic() - wall_start < 10 * seconds
    ):
        for _ in range(CHECK_EVERY):
            firewatch_hot_py()
            firewatch_cold_py()
        rounds += CHECK_EVERY
    cpu = time.process_time() - cpu_start
    wall = time.monotonic() - wall_start
    flushed = pyroscope.shutdown()
    print(f"rounds={rounds} cpu={cpu:.2f}s wall={wall:.2f}s shutdown={flushed}", flush=True)
    return 0 if flushed else 1


if __name__ == "__main__":
    sys.exit(main())
