#!/usr/bin/env bash
# The agent's overhead, measured on this machine, printed as figures and
# ratios (a benchmark: it asserts nothing).
#
#  1. The agent at 99 Hz profiling every process for SECONDS while the
#     ground-truth workload keeps every core busy: its CPU time (whole run:
#     start, sampling, symbolization, compression) as a percentage of one
#     core, and its resident memory.
#  2. The usual alternative for the same profile, on the same load:
#     `perf record -F 99 -a --call-graph dwarf` for SECONDS, then
#     `perf script` and folding; their CPU seconds, and the ratio agent/perf.
#  3. The workload's slowdown with the agent on vs off: wall time of a fixed
#     amount of work, median of RUNS runs each, alternating.
#
# Usage: agent/benches/overhead.sh [SECONDS] [RUNS]
# Needs root, gcc and perf (Debian: linux-perf). Honours CARGO_TARGET_DIR.
# SCOPE=workload restricts both the agent and perf to the workload's
# processes (for machines shared with other jobs, whose processes would
# otherwise be profiled and symbolized too); the default is every process.
# PERF_SCRIPT_TIMEOUT (default 600 s) bounds `perf script`.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-30}
runs=${2:-5}
((secs >= 15)) || { echo "SECONDS must be at least 15" >&2; exit 2; }
iterations=${WORK_ITERATIONS:-150}
scope=${SCOPE:-all}
script_timeout=${PERF_SCRIPT_TIMEOUT:-600}
target=${CARGO_TARGET_DIR:-target}
cores=$(nproc)

for tool in gcc perf; do
    command -v "$tool" >/dev/null || { echo "overhead.sh needs $tool" >&2; exit 1; }
done

echo "== building (release)"
cargo build -q -j 2 --release -p firewatch-agent
agent="$target/release/firewatch-agent"
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
gcc -O2 -fomit-frame-pointer -g -pthread agent/tests/data/workload.c -o "$work/workload"

# Keeps every core busy for $1 seconds (the workload runs two threads).
busy() {
    for ((i = 0; i < (cores + 1) / 2; i++)); do
        "$work/workload" "$1" >/dev/null &
        pids+=($!)
    done
}

kib() { awk '/^'"$2"':/ { print $2 }' "/proc/$1/status"; }
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); split($0, f, " "); printf "%.3f", (f[12] + f[13]) / hz }' "/proc/$1/stat"; }

busy $((2 * secs + 30))
agent_scope=()
perf_scope=(-a)
what="every process"
if [[ $scope == workload ]]; then
    read -ra agent_scope <<<"$(printf -- '--pid %s ' "${pids[@]}")"
    perf_scope=(-p "$(IFS=,; echo "${pids[*]}")")
    what="the workload's processes"
fi
echo "== 1. agent: 99 Hz, ${what}, ${secs}s, ${cores} cores busy"
sleep 1
RUST_LOG=info "$agent" --no-ship --dump-dir "$work/dump" --frequency 99 "${agent_scope[@]}" \
    --upload-interval 10s --duration "${secs}s" 2>"$work/agent.log" &
apid=$!
# Steady state: after start-up and the first interval's symbolization.
sleep 12
steady0=$(cpu_s "$apid")
sleep $((secs - 13))
steady1=$(cpu_s "$apid")
rss_kib=$(kib "$apid" VmRSS)
wait "$apid"
agent_cpu=$(sed -n 's/.*stopped.*cpu_seconds=\([0-9.]*\).*/\1/p' "$work/agent.log" | tail -1)
peak_kib=$(sed -n 's/.*rss_peak_kib=\([0-9]*\).*/\1/p' "$work/agent.log" | tail -1)
samples=$(sed -n 's/.*stopped.* samples=\([0-9]*\).*/\1/p' "$work/agent.log" | tail -1)
profiles=$(ls "$work/dump" | wc -l)
agent_pct=$(awk -v c="$agent_cpu" -v s="$secs" 'BEGIN { printf "%.3f", c / s * 100 }')
echo "   ${samples} samples, ${profiles} profiles written"
echo "   agent CPU: ${agent_cpu} s = ${agent_pct}% of one core over the whole run (target <= 0.5%)"
echo "   agent CPU from second 12 to $((secs - 1)) (steady: after start-up and the first interval):" \
    "$(awk -v a="$steady0" -v b="$steady1" -v s="$((secs - 13))" 'BEGIN { printf "%.3f%%", (b - a) / s * 100 }') of one core"
echo "   agent memory: RSS $((rss_kib / 1024)) MiB steady, $((peak_kib / 1024)) MiB peak (target <= 100 MiB)"

echo "== 2. perf record -F 99 ${perf_scope[0]} --call-graph dwarf + perf script + fold, ${secs}s, same load"
TIMEFORMAT='%3U %3S'
{ time perf record -q -F 99 "${perf_scope[@]}" --call-graph dwarf -o "$work/perf.data" -- sleep "$secs" \
    >/dev/null 2>&1; } 2>"$work/record.time"
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
{ time (timeout "$script_timeout" perf script -i "$work/perf.data" 2>/dev/null |
    awk -f "$work/fold.awk" >"$work/perf.folded"); } 2>"$work/script.time"
if (($(wc -l <"$work/perf.folded") == 0)); then
    echo "   perf script produced nothing within ${script_timeout}s: its figure below is a lower bound"
fi
read -r ru rs <"$work/record.time"
read -r su ss <"$work/script.time"
perf_cpu=$(awk -v a="$ru" -v b="$rs" -v c="$su" -v d="$ss" 'BEGIN { printf "%.3f", a + b + c + d }')
size=$(du -m "$work/perf.data" | cut -f1)
echo "   perf record: $(awk -v a="$ru" -v b="$rs" 'BEGIN { printf "%.3f", a + b }') s CPU, ${size} MB perf.data"
echo "   perf script + fold: $(awk -v a="$su" -v b="$ss" 'BEGIN { printf "%.3f", a + b }') s CPU, $(wc -l <"$work/perf.folded") stacks"
echo "   perf total: ${perf_cpu} s CPU"
echo "   ratio agent/perf: $(awk -v a="$agent_cpu" -v p="$perf_cpu" 'BEGIN { printf "%.3f", a / p }') (target <= 0.2)"
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
pids=()
wait 2>/dev/null || true

echo "== 3. workload slowdown, ${iterations} rounds of fixed work, median of ${runs} runs each"
timed() {
    local t0 t1
    t0=$(date +%s.%N)
    "$work/workload" --iterations "$iterations" >/dev/null
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f\n", b - a }'
}
off=()
on=()
slow_scope=()
[[ $scope == workload ]] && slow_scope=(--exe "$(basename "$work/workload")")
for ((r = 0; r < runs; r++)); do
    off+=("$(timed)")
    RUST_LOG=warn "$agent" --no-ship --dump-dir "$work/dump" --frequency 99 --upload-interval 10s \
        "${slow_scope[@]}" 2>/dev/null &
    apid=$!
    sleep 1
    on+=("$(timed)")
    kill -INT "$apid"
    wait "$apid" || true
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
moff=$(median "${off[@]}")
mon=$(median "${on[@]}")
echo "   off: ${off[*]} s (median ${moff})"
echo "   on:  ${on[*]} s (median ${mon})"
echo "   slowdown: $(awk -v a="$moff" -v b="$mon" 'BEGIN { printf "%+.2f%%", (b / a - 1) * 100 }') (target < 1%)"
