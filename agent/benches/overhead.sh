#!/usr/bin/env bash
# The agent's overhead, measured on this machine, printed as figures and
# ratios (a benchmark: it asserts nothing).
#
#  1. The agent at 99 Hz for SECONDS while the ground-truth workload keeps
#     every core busy. Its CPU time over the whole run (start-up, sampling,
#     symbolization, compression, writing profiles), and separately its
#     fixed cost (start-up and the first interval, when it reads kallsyms and
#     the DWARF of every module it meets) and its marginal cost (CPU per
#     second from the end of the first interval to the end of the run, read
#     from /proc/PID/task/*/schedstat in nanoseconds). Its resident memory.
#  2. The usual alternative for the same profile, on the same load:
#     `perf record -F 99 --call-graph dwarf` for SECONDS, then `perf script`
#     and folding; their CPU seconds (getrusage, through bash's `time`).
#     With SCOPE=workload, `perf record` runs at the same time as the agent
#     in 1., on the same processes, so that both see the same load and take
#     the same samples (each tool's CPU is still its own process's); over
#     every process they run one after the other (each would profile the
#     other).
#     Printed: the whole-run ratio agent/perf, the steady-state ratio of
#     marginal costs, which the whole-run ratio tends to as runs get longer,
#     and from both, each side's fixed cost and the ratio for runs of 1 min,
#     5 min and 1 h.
#     perf has fixed costs too (start-up, the build-id pass at the end of
#     `perf record`, kallsyms and debug information in `perf script`), so
#     its marginal cost is measured the same way: `perf record`'s CPU over
#     the agent's marginal span (nanosecond counters), and `perf script`'s
#     CPU on the whole file minus its CPU on the first interval's samples
#     only (`--time 0%-N%`), per second after the first interval. Both read
#     kallsyms and the DWARF of what they meet (`perf script` prints inlined
#     functions); perf's side does less in one way: no file:line.
#  3. The workload's slowdown with the agent on vs off, over RUNS alternating
#     pairs (off, on, off, on, ...). Each run does a fixed amount of work with
#     every core busy (one two-thread workload per two cores), after a 3-s
#     untimed warm-up with the same workload; in the "on" runs the agent was
#     started before the warm-up with a 2-s upload interval, so the timed
#     run sees the agent in steady state (its first symbolization, a one-off
#     cost reported in 1., is over) and still cutting and shipping windows.
#     Two figures, each the median over the pairs of a per-pair ratio:
#     - wall time, on / off. Direct, but on a small machine shared with
#       other jobs it swings by several percent between runs of the same
#       binary, more than the effect measured;
#     - CPU time, (workload CPU on + agent CPU during the run) / workload
#       CPU off. The workload's own CPU time per unit of work captures what
#       sampling costs it (the kernel copying stacks in its context, cache
#       pollution) without the noise of other jobs taking cores; the agent's
#       CPU is added because, with every core busy, each second the agent
#       runs is taken from the workload. This is the steadier figure.
#
# 1. and 2. are repeated ROUNDS times, each round printed, then the
# medians (on a shared machine one round can be a fifth off another).
#
# Usage: agent/benches/overhead.sh [SECONDS] [RUNS] [ROUNDS]   (defaults: 60 11 3)
# Needs root, gcc and perf (Debian: linux-perf). Honours CARGO_TARGET_DIR.
# SCOPE=workload restricts both the agent and perf to the workload's
# processes (for machines shared with other jobs, whose processes would
# otherwise be profiled and symbolized too); the default is every process.
# AGENT=path runs that agent binary instead of building this one (to
# compare two builds with the same script). PERF_SCRIPT_TIMEOUT (default
# 600 s) bounds `perf script`; WORK_ITERATIONS (default 150) sizes a run.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-60}
runs=${2:-11}
rounds=${3:-3}
((secs >= 20)) || { echo "SECONDS must be at least 20" >&2; exit 2; }
((runs >= 1)) || { echo "RUNS must be at least 1" >&2; exit 2; }
((rounds >= 1)) || { echo "ROUNDS must be at least 1" >&2; exit 2; }
iterations=${WORK_ITERATIONS:-150}
scope=${SCOPE:-all}
script_timeout=${PERF_SCRIPT_TIMEOUT:-600}
cores=$(nproc)
instances=$(((cores + 1) / 2))

for tool in gcc perf; do
    command -v "$tool" >/dev/null || { echo "overhead.sh needs $tool" >&2; exit 1; }
done

source agent/benches/common.sh
gcc -O2 -fomit-frame-pointer -g -pthread agent/tests/data/workload.c -o "$work/workload"

# Keeps every core busy for $1 seconds (the workload runs two threads).
busy() {
    for ((i = 0; i < instances; i++)); do
        "$work/workload" "$1" >/dev/null &
        pids+=($!)
    done
}

kib() { awk '/^'"$2"':/ { print $2 }' "/proc/$1/status"; }
# Seconds since the epoch, without starting a process (see wait_log).
now() { now=${EPOCHREALTIME/,/.}; }

# Starts `perf record` for SECONDS in the background (its CPU, user and
# system, goes to record.time when it ends); sets perf_pid (the background
# job) and perf_proc (perf itself, whose CPU is read while it runs).
perf_start() {
    TIMEFORMAT='%3U %3S'
    { time perf record -q -F 99 "${perf_scope[@]}" --call-graph dwarf -o "$work/perf.data" -- sleep "$secs" \
        >/dev/null 2>&1; } 2>"$work/record.time" &
    perf_pid=$!
    perf_proc=
    until [[ -n $perf_proc ]]; do
        kill -0 "$perf_pid" 2>/dev/null || { echo "perf record did not start" >&2; exit 1; }
        sleep 0.05
        perf_proc=$(pgrep -P "$perf_pid" -x perf || true)
    done
}
cat >"$work/fold.awk" <<'AWK'
function flush(   s, i) {
    if (n == 0) return
    s = comm
    for (i = n - 1; i >= 0; i--) s = s ";" stack[i]
    count[s]++
    n = 0
}
/^[ \t]*$/ { flush(); next }
/^[^ \t]/ { flush(); comm = $1; next }
{ sym = $2; sub(/\+0x[0-9a-f]+$/, "", sym); stack[n++] = sym }
END { flush(); for (s in count) print s, count[s] }
AWK
# `perf script` over the samples of the first $2 percent of the recording
# (all of it without $2) and folding; CPU (user and system) into $1.
perf_script() {
    local range=()
    [[ -n ${2:-} ]] && range=(--time "0%-$2%")
    TIMEFORMAT='%3U %3S'
    { time (timeout "$script_timeout" perf script -i "$work/perf.data" "${range[@]}" 2>/dev/null |
        awk -f "$work/fold.awk" >"$work/perf.folded"); } 2>"$1"
}

# One round of 1. and 2.; appends its figures to the arrays of the summary.
round() {
    rm -rf "$work/dump"
    busy $((2 * secs + 30))
    agent_scope=()
    perf_scope=(-a)
    what="every process"
    if [[ $scope == workload ]]; then
        read -ra agent_scope <<<"$(printf -- '--pid %s ' "${pids[@]}")"
        perf_scope=(-p "$(IFS=,; echo "${pids[*]}")")
        what="the workload's processes"
    fi


    if [[ $scope == workload ]]; then
        # Both tools sample the same processes over the same seconds, so that
        # they see the same load and take the same samples: on a machine shared
        # with other jobs, two runs one after the other can differ by a third.
        echo "== 1. (round $1) agent and perf record at the same time: 99 Hz, ${what}, ${secs}s, ${cores} cores busy"
    else
        # Every process: each tool would profile the other, so one after the other.
        echo "== 1. (round $1) agent: 99 Hz, ${what}, ${secs}s, ${cores} cores busy"
    fi
    sleep 1
    [[ $scope == workload ]] && perf_start
    now
    t_start=$now
    RUST_LOG=info "$agent" --no-ship --dump-dir "$work/dump" --frequency 99 "${agent_scope[@]}" \
        --upload-interval 10s --duration "${secs}s" 2>"$work/agent.log" &
    apid=$!
    # The marginal cost is measured from the end of the first interval's
    # processing (its log line) to one second before the agent stops.
    wait_log "$work/agent.log" "window shipped" "$apid" || exit 1
    steady0=$(cpu_ns_s "$apid")
    [[ $scope == workload ]] && rec0=$(cpu_ns_s "$perf_proc")
    now
    t0=$now
    sleep "$(calc "%.3f" "$secs - 1 - ($t0 - $t_start)")"
    steady1=$(cpu_ns_s "$apid")
    [[ $scope == workload ]] && rec1=$(cpu_ns_s "$perf_proc")
    now
    t1=$now
    rss_kib=$(kib "$apid" VmRSS)
    wait "$apid"
    first=$(calc "%.3f" "$t0 - $t_start")
    span=$(calc "%.3f" "$t1 - $t0")
    agent_cpu=$(sed -n 's/.*stopped.*cpu_seconds=\([0-9.]*\).*/\1/p' "$work/agent.log" | tail -1)
    peak_kib=$(sed -n 's/.*stopped.*rss_peak_kib=\([0-9]*\).*/\1/p' "$work/agent.log" | tail -1)
    agent_samples=$(sed -n 's/.*window shipped.* samples=\([0-9]*\).*/\1/p' "$work/agent.log" | awk '{ s += $1 } END { print s + 0 }')
    profiles=$(find "$work/dump" -type f | wc -l)
    steady_rate=$(calc "%.6f" "($steady1 - $steady0) / $span")
    echo "   agent: ${agent_samples} workload samples, ${profiles} profiles written"
    echo "   agent CPU, whole run: ${agent_cpu} s = $(calc "%.3f" "$agent_cpu / $secs * 100")% of one core (target <= 0.5%)"
    echo "   agent CPU, start-up and first interval: $(calc "%.3f" "$steady0") s" \
        "(of which $(calc "%.3f" "$steady0 - $steady_rate * $first") s above the marginal rate)"
    echo "   agent CPU, marginal (from $(calc "%.0f" "$first") s to $(calc "%.0f" "$t1 - $t_start") s):" \
        "$(calc "%.3f" "$steady_rate * 1000") ms per second = $(calc "%.3f" "$steady_rate * 100")% of one core"
    echo "   agent memory: RSS $((rss_kib / 1024)) MiB at the end, $((peak_kib / 1024)) MiB peak (target <= 100 MiB)"

    if [[ $scope == workload ]]; then
        echo "== 2. (round $1) perf record -F 99 ${perf_scope[0]} --call-graph dwarf (same run as 1.) + perf script + fold"
    else
        echo "== 2. (round $1) perf record -F 99 ${perf_scope[0]} --call-graph dwarf + perf script + fold, ${secs}s, same load"
        # The same seconds of its run as the agent's marginal span.
        perf_start
        sleep "$first"
        rec0=$(cpu_ns_s "$perf_proc")
        sleep "$span"
        rec1=$(cpu_ns_s "$perf_proc")
    fi
    wait "$perf_pid"
    # Its marginal cost: the whole file against only the first interval's
    # samples (where perf script, too, reads kallsyms and debug information).
    perf_script "$work/script_first.time" "$(calc "%.1f" "$first / $secs * 100")"
    perf_script "$work/script.time"
    if (($(wc -l <"$work/perf.folded") == 0)); then
        echo "   perf script produced nothing within ${script_timeout}s: its figure below is a lower bound"
    fi
    read -r ru rs <"$work/record.time"
    read -r su ss <"$work/script.time"
    read -r fu fs <"$work/script_first.time"
    perf_cpu=$(calc "%.3f" "$ru + $rs + $su + $ss")
    perf_rate=$(calc "%.6f" "($rec1 - $rec0) / $span + ($su + $ss - $fu - $fs) / ($secs - $first)")
    perf_samples=$(awk '{ s += $NF } END { print s + 0 }' "$work/perf.folded")
    size=$(du -m "$work/perf.data" | cut -f1)
    echo "   perf: ${perf_samples} samples"
    echo "   perf record: $(calc "%.3f" "$ru + $rs") s CPU, ${size} MB perf.data"
    echo "   perf script + fold: $(calc "%.3f" "$su + $ss") s CPU, $(wc -l <"$work/perf.folded") stacks"
    echo "   perf total: ${perf_cpu} s CPU"
    echo "   perf, marginal: $(calc "%.3f" "$perf_rate * 1000") ms per second" \
        "(perf record $(calc "%.3f" "($rec1 - $rec0) / $span * 1000") over the agent's marginal span," \
        "perf script + fold $(calc "%.3f" "($su + $ss - $fu - $fs) / ($secs - $first) * 1000") after the first interval)"
    echo "   ratio agent/perf, whole run: $(calc "%.3f" "$agent_cpu / $perf_cpu") (target <= 0.2)"
    echo "   ratio agent/perf, steady state (marginal CPU per second of each): $(calc "%.3f" "$steady_rate / $perf_rate")"
    # Each side as a fixed cost plus its marginal rate, for runs of other lengths.
    agent_fixed=$(calc "%.6f" "$agent_cpu - $steady_rate * $secs")
    perf_fixed=$(calc "%.6f" "$perf_cpu - $perf_rate * $secs")
    horizons=""
    for d in 60 300 3600; do
        horizons+=" ${d} s: $(calc "%.3f" "($agent_fixed + $steady_rate * $d) / ($perf_fixed + $perf_rate * $d)"),"
    done
    echo "   ratio agent/perf for runs of other lengths (each side's fixed cost, $(calc "%.3f" "$agent_fixed") s" \
        "and $(calc "%.3f" "$perf_fixed") s, plus its marginal rate):${horizons%,}"
    whole+=("$(calc "%.4f" "$agent_cpu / $perf_cpu")")
    steady+=("$(calc "%.4f" "$steady_rate / $perf_rate")")
    long+=("$(calc "%.4f" "($agent_fixed + $steady_rate * 300) / ($perf_fixed + $perf_rate * 300)")")
    core+=("$(calc "%.4f" "$agent_cpu / $secs * 100")")
    marginal+=("$(calc "%.4f" "$steady_rate * 1000")")
    fixed+=("$(calc "%.4f" "$agent_fixed")")
    perf_total+=("$perf_cpu")
    peak+=("$((peak_kib / 1024))")
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    pids=()
    wait 2>/dev/null || true
}

whole=() steady=() long=() core=() marginal=() fixed=() perf_total=() peak=()
for ((k = 1; k <= rounds; k++)); do
    round "$k"
done
# med NAME [FORMAT]: the median of array NAME (3 decimals by default).
med() { local -n values=$1; calc "${2:-%.3f}" "$(printf '%s\n' "${values[@]}" | median)"; }
echo "== 1. and 2., median of ${rounds} round(s)"
echo "   agent CPU, whole run: $(med core)% of one core (target <= 0.5%); fixed cost $(med fixed) s," \
    "marginal $(med marginal) ms per second; peak RSS $(med peak %.0f) MiB (target <= 100 MiB)"
echo "   perf total: $(med perf_total) s CPU"
echo "   ratio agent/perf, whole run: $(med whole) (target <= 0.2; each round: ${whole[*]})"
echo "   ratio agent/perf, steady state: $(med steady); for a run of 300 s: $(med long)"

echo "== 3. workload slowdown: ${instances} workload(s) x ${iterations} rounds of fixed work, agent on vs off, ${runs} alternating pairs"
# Prints "wall_seconds cpu_seconds" of one batch of fixed work on every core.
batch() {
    local t
    TIMEFORMAT='%3R %3U %3S'
    t=$({ time (for ((i = 0; i < instances; i++)); do
        "$work/workload" --iterations "$iterations" >/dev/null &
    done
        wait); } 2>&1)
    read -r real user sys <<<"$t"
    calc "%.3f %.3f" "$real, $user + $sys"
    echo
}
# In a subshell, so that `wait` does not wait for the agent too.
warm_up() {
    (for ((i = 0; i < instances; i++)); do "$work/workload" 3 >/dev/null & done
        wait)
}
slow_scope=()
[[ $scope == workload ]] && slow_scope=(--exe "$(basename "$work/workload")")
walls=()
cpus=()
offs=()
ons=()
for ((r = 0; r < runs; r++)); do
    warm_up
    read -r off_wall off_cpu <<<"$(batch)"
    RUST_LOG=warn "$agent" --no-ship --dump-dir "$work/dump" --frequency 99 --upload-interval 2s \
        "${slow_scope[@]}" 2>/dev/null &
    apid=$!
    warm_up
    a0=$(cpu_ns_s "$apid")
    read -r on_wall on_cpu <<<"$(batch)"
    a1=$(cpu_ns_s "$apid")
    kill -INT "$apid"
    wait "$apid" || true
    offs+=("$off_wall")
    ons+=("$on_wall")
    walls+=("$(calc "%.5f" "$on_wall / $off_wall")")
    cpus+=("$(calc "%.5f" "($on_cpu + $a1 - $a0) / $off_cpu")")
done
echo "   wall off: ${offs[*]} s"
echo "   wall on:  ${ons[*]} s"
echo "   slowdown, wall time (median of on/off per pair): $(calc "%+.2f%%" "($(printf '%s\n' "${walls[@]}" | median) - 1) * 100")"
echo "   slowdown, CPU time (median of (workload on + agent) / workload off per pair):" \
    "$(calc "%+.2f%%" "($(printf '%s\n' "${cpus[@]}" | median) - 1) * 100") (target < 1%)"
