#!/usr/bin/env bash
# What allocation probes cost a program, measured on this machine and
# printed as figures and ratios (a benchmark: it asserts nothing).
#
# The program (agent/tests/data/alloc.c, `--calls N`) makes N malloc(64) +
# free pairs in a tight loop, one thread, and prints the nanoseconds per
# pair; only malloc is probed, so the difference on vs off is the cost of
# one probed call. RUNS alternating pairs of runs per sample period:
#   off  the program alone;
#   on   the agent probes it (`--alloc-pid`, `--alloc-every N`), started
#        before the timed loop: the program waits for a line on stdin, sent
#        once the agent logs that its events are open.
# Printed per period: the medians of ns per call off and on, their
# difference (what one call pays: the trap into the kernel on every call,
# plus the register and stack copy of the calls sampled, 1 in N), the
# median over pairs of on/off (the slowdown of a program that does nothing
# but allocate: real programs pay it per allocation, not per instruction),
# the allocation samples and lost records of the last "on" run, and the
# agent's CPU during it (reading, unwinding and summing the samples; its
# upload interval is longer than the run, so no symbolization is counted).
#
# Usage: agent/benches/alloc_uprobe.sh [CALLS] [RUNS]   (defaults: 2000000 7)
# EVERY="1 97 997" lists the periods measured. Needs root and gcc.
# Honours CARGO_TARGET_DIR; AGENT=path runs that agent binary instead of
# building this one.
set -euo pipefail
cd "$(dirname "$0")/../.."

calls=${1:-2000000}
runs=${2:-7}
everies=${EVERY:-"1 97 997"}
((calls >= 1000)) || { echo "CALLS must be at least 1000" >&2; exit 2; }
((runs >= 1)) || { echo "RUNS must be at least 1" >&2; exit 2; }
command -v gcc >/dev/null || { echo "alloc_uprobe.sh needs gcc" >&2; exit 1; }

source agent/benches/common.sh
gcc -O2 -fomit-frame-pointer -g -pthread agent/tests/data/alloc.c -o "$work/alloc"

# Waits until the program has started (exec'd, its libraries mapped) and
# blocks on its go signal.
ready() {
    until [[ $(readlink "/proc/$1/exe" 2>/dev/null) == "$work/alloc" ]] &&
        [[ $(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) == S ]]; do
        sleep 0.01
    done
}

# One timed run; prints ns per call. With a period ($1 other than "off"),
# the agent probes the program; its figures go to $work/last.
run() {
    local every=$1 go="$work/go"
    rm -f "$go" && mkfifo "$go"
    "$work/alloc" --calls "$calls" <"$go" >"$work/out" &
    local prog=$!
    pids+=("$prog")
    exec 3>"$go"
    ready "$prog"
    local apid="" a0=0
    if [[ $every != off ]]; then
        RUST_LOG=info "$agent" --no-ship --dump-dir "$work/dump" --pid "$prog" \
            --alloc-pid "$prog" --alloc-every "$every" --upload-interval 10m \
            --duration 10m 2>"$work/agent.log" &
        apid=$!
        pids+=("$apid")
        # Logged once every event, the probes included, is open.
        until grep -qs "cpus=" "$work/agent.log"; do
            kill -0 "$apid" 2>/dev/null || { cat "$work/agent.log" >&2; exit 1; }
            sleep 0.05
        done
        grep -q "sampling allocations" "$work/agent.log" || { cat "$work/agent.log" >&2; exit 1; }
        a0=$(cpu_ns_s "$apid")
    fi
    echo go >&3
    exec 3>&-
    wait "$prog"
    if [[ -n $apid ]]; then
        local a1
        a1=$(cpu_ns_s "$apid")
        kill -TERM "$apid"
        wait "$apid" || true
        local samples lost
        samples=$(grep "window shipped" "$work/agent.log" | tail -1 | sed -n 's/.*alloc_samples=\([0-9]*\).*/\1/p')
        lost=$(grep " stopped " "$work/agent.log" | sed -n 's/.* lost=\([0-9]*\).*/\1/p')
        echo "${samples:-0} ${lost:-0} $(calc "%.0f" "($a1 - $a0) * 1000")" >"$work/last"
    fi
    cat "$work/out"
}

echo "== allocation probes: ${calls} malloc+free pairs per run, ${runs} alternating pairs per period"
printf "%-7s %12s %12s %14s %10s %9s %7s %14s\n" every "off ns/call" "on ns/call" "added ns/call" slowdown samples lost "agent CPU ms"
for every in $everies; do
    : >"$work/off"
    : >"$work/on"
    : >"$work/ratio"
    for ((i = 0; i < runs; i++)); do
        off=$(run off)
        on=$(run "$every")
        echo "$off" >>"$work/off"
        echo "$on" >>"$work/on"
        calc "%.4f\n" "$on / $off" >>"$work/ratio"
    done
    off=$(median <"$work/off")
    on=$(median <"$work/on")
    ratio=$(median <"$work/ratio")
    read -r samples lost agent_ms <"$work/last"
    printf "%-7s %12.1f %12.1f %14.1f %9.1fx %9s %7s %14s\n" "$every" "$off" "$on" \
        "$(calc "%.1f" "$on - $off")" "$ratio" "$samples" "$lost" "$agent_ms"
done
echo "(median over runs; slowdown is the median of on/off per pair; samples, lost and"
echo " agent CPU are of the last run with the probes, which makes ${calls} probed calls)"
