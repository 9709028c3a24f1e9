# Shared by the agent's shell benchmarks (sourced, from the repository's
# root): the agent to measure, a scratch directory, and small helpers.
#
# Sets `agent` (AGENT=path, or this tree's release build, built now; honours
# CARGO_TARGET_DIR), `work` (a directory removed on exit) and `pids` (add
# the background processes to kill on exit).

if [[ -n ${AGENT:-} ]]; then
    agent=$AGENT
    echo "== agent: $agent"
else
    echo "== building (release)"
    cargo build -q -j 2 --release -p firewatch-agent
    agent="${CARGO_TARGET_DIR:-target}/release/firewatch-agent"
fi
work=$(mktemp -d)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# CPU seconds of every live thread of a process, from nanosecond counters
# (threads may end while they are read); bash builtins only (see wait_log).
cpu_ns_s() {
    local f ns sum=0
    for f in /proc/"$1"/task/*/schedstat; do
        { read -r ns _ <"$f"; } 2>/dev/null && sum=$((sum + ns))
    done
    printf "%d.%06d" $((sum / 1000000000)) $((sum % 1000000000 / 1000))
}
# The median of the numbers on standard input, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# calc FORMAT EXPRESSION: awk arithmetic, printed with FORMAT.
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
# wait_log FILE TEXT PID: waits until FILE holds TEXT; fails with the file
# on stderr if process PID ends first. Polls with bash builtins only (no
# grep, no sleep): an agent profiling every process would otherwise sample,
# label and symbolize a new process every tenth of a second, a cost of the
# benchmark counted as the agent's.
wait_log() {
    local lines tick
    mkfifo "$work/tick.$$"
    exec {tick}<>"$work/tick.$$"
    until mapfile -t lines <"$1" 2>/dev/null && [[ ${lines[*]} == *"$2"* ]]; do
        kill -0 "$3" 2>/dev/null || { cat "$1" >&2; return 1; }
        read -rt 0.1 -u "$tick" || true
    done
    exec {tick}>&-
    rm -f "$work/tick.$$"
}
# agent_cpu SECONDS LOG [AGENT ARGS]: runs the agent on every process for
# SECONDS (>= 20), logging to LOG, and prints its CPU in % of one core from
# its first window (10 s) to two seconds before its end.
agent_cpu() {
    local secs=$1 log=$2
    shift 2
    : >"$log"
    "$agent" --no-ship --dump-dir "$work/cpu-dump" --upload-interval 10s --duration "${secs}s" "$@" 2>"$log" &
    local apid=$!
    wait_log "$log" "window shipped" "$apid"
    local c0 t0 c1 t1
    c0=$(cpu_ns_s "$apid"); t0=${EPOCHREALTIME/,/.}
    sleep $((secs - 12))
    c1=$(cpu_ns_s "$apid"); t1=${EPOCHREALTIME/,/.}
    wait "$apid"
    rm -rf "$work/cpu-dump"
    calc "%.3f" "($c1 - $c0) / ($t1 - $t0) * 100"
}
