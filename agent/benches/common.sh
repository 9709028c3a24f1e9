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
# (threads may end while they are read).
cpu_ns_s() { { cat /proc/"$1"/task/*/schedstat 2>/dev/null || true; } | awk '{ s += $1 } END { printf "%.6f", s / 1e9 }'; }
# The median of the numbers on standard input, one per line.
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# calc FORMAT EXPRESSION: awk arithmetic, printed with FORMAT.
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
