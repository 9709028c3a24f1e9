#!/usr/bin/env bash
# Deep stacks on a real compiler, measured on this machine and printed as
# figures and ratios (a benchmark: it asserts nothing).
#
# The load: `cargo build -j2` (debug) of a small crate using regex, serde
# (derive) and serde_json, the versions in our own Cargo.lock, built
# offline from cargo's cache: a clean build keeps both cores busy with
# rustc, whose frames are large and whose stacks are deep.
#
#  1. Completeness: the share of rustc's samples (weighted by CPU time)
#     whose stack reaches a thread entry (no `[truncated stack]`), by the
#     agent, with and without the deep-stack machinery (`--no-deep-stacks`:
#     only the kernel's stack copy), next to `perf record -F 99
#     --call-graph dwarf,65528` on the same build (a sample counts as
#     complete when its outermost frame is a thread or process entry), and
#     perf's share of samples with an `[unknown]` frame.
#  2. Cost on the busy host: the agent profiling every process while the
#     crate is built again and again for SECONDS; its CPU (% of one core,
#     from /proc schedstat, after its first interval) and its peak RSS,
#     with and without the deep-stack machinery, ROUNDS times alternating;
#     the medians and the ratio on/off. Besides, the time the agent's BPF
#     program takes in the kernel on every sample (charged to the sampled
#     threads, not the agent), from the kernel's BPF statistics, turned on
#     for the run: per sample, and in % of one core.
#
# Usage: agent/benches/deep_stacks.sh [SECONDS] [ROUNDS]   (defaults: 60 3)
# Needs root, cargo with the crates above in its cache, and perf (Debian:
# linux-perf). AGENT=path measures that agent binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-60}
rounds=${2:-3}
((secs >= 20)) || { echo "SECONDS must be at least 20" >&2; exit 2; }
command -v perf >/dev/null || { echo "deep_stacks.sh needs perf" >&2; exit 1; }

source agent/benches/common.sh
bpf_stats_was=$(sysctl -n kernel.bpf_stats_enabled 2>/dev/null || echo 0)
sysctl -qw kernel.bpf_stats_enabled=1 || true
trap 'sysctl -qw kernel.bpf_stats_enabled="$bpf_stats_was" || true; cleanup' EXIT
# The program's runs and mean time (ns) as the agent logged them at its end.
program_stats() { sed -n 's/.*program on every sample.* runs=\([0-9]*\) mean_ns=\([0-9]*\).*/\1 \2/p' "$1" | tail -1; }
cli="${CARGO_TARGET_DIR:-target}/release/firewatch"
cargo build -q -j 2 --release -p firewatch
version() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock; }

crate="$work/crate"
mkdir -p "$crate/src"
cat >"$crate/Cargo.toml" <<EOF
[package]
name = "fw-deep-bench"
version = "0.1.0"
edition = "2021"

[dependencies]
regex = "=$(version regex)"
serde = { version = "=$(version serde)", features = ["derive"] }
serde_json = "=$(version serde_json)"
EOF
cat >"$crate/src/main.rs" <<'EOF'
#[derive(serde::Serialize, serde::Deserialize, Debug)]
struct Row { name: String, values: Vec<u32> }
fn main() {
    let re = regex::Regex::new(r"(\w+)=(\d+)").unwrap();
    let rows: Vec<Row> = re.captures_iter("a=1 b=2").map(|c| Row { name: c[1].to_owned(), values: vec![c[2].parse().unwrap()] }).collect();
    println!("{}", serde_json::to_string(&rows).unwrap());
}
EOF
build() { (cd "$crate" && cargo clean -q && CARGO_TARGET_DIR="$crate/target" cargo build -q --offline -j 2 >/dev/null 2>&1); }
echo "== warming cargo's cache for the crate"
build || { echo "cannot build the crate offline: are regex, serde and serde_json in cargo's cache?" >&2; exit 1; }

# Share (%) of CPU-weighted rustc stacks in the folded files on stdin
# without `[truncated stack]`.
complete_share() {
    awk '{ n = $NF; total += n; if ($0 !~ /\[truncated stack\]/) ok += n }
         END { printf "%.1f", total ? 100 * ok / total : 0 }'
}

# Agent on rustc only, during one clean build; prints the share.
agent_build() {
    rm -rf "$work/dump"
    : >"$work/agent.log"
    "$agent" --no-ship --dump-dir "$work/dump" --exe rustc --upload-interval 5s "$@" 2>"$work/agent.log" &
    local apid=$!
    pids+=("$apid")
    wait_log "$work/agent.log" "starting" "$apid" >/dev/null
    sleep 1
    build
    kill -INT "$apid"
    wait "$apid" || true
    for f in "$work"/dump/*.pb.zst; do "$cli" convert "$f" -o "$f.folded" >/dev/null 2>&1; done
    program_stats "$work/agent.log" >"$work/program.$#"
    cat "$work"/dump/*.folded | complete_share
}

echo "== 1. rustc's stacks during a clean build (cargo build -j2, debug)"
on=$(agent_build)
off=$(agent_build --no-deep-stacks)
perf record -q -F 99 --call-graph dwarf,65528 -o "$work/perf.data" -- \
    bash -c "$(declare -f build); crate=$crate; build" >/dev/null 2>&1
perf script --no-inline -i "$work/perf.data" --comm rustc -F comm,ip,sym 2>/dev/null | awk '
    function flush() { if (n) { total++; if (top ~ /^(_start|clone3?|__clone3?|start_thread|_dl_start_user)$/) ok++; if (unk) unknown++ } n = 0; unk = 0 }
    /^[ \t]*$/ { flush(); next }
    /^[^ \t]/ { flush(); next }
    { n++; top = $2; if ($2 == "[unknown]") unk = 1 }
    END { flush(); printf "%.1f %.1f %d\n", 100 * ok / total, 100 * unknown / total, total }' >"$work/perf.share"
read -r perf_ok perf_unknown perf_n <"$work/perf.share"
echo "   agent, deep stacks on:  ${on}% of rustc samples reach a thread entry (target >= 95%)"
echo "   agent, --no-deep-stacks: ${off}%"
read -r runs_on ns_on <"$work/program.0" || true
read -r runs_off ns_off <"$work/program.1" || true
echo "   the agent's program in the kernel: ${ns_on:-?} ns per sample with deep stacks (${runs_on:-?} runs), ${ns_off:-?} ns without"
echo "   perf record --call-graph dwarf,65528: ${perf_ok}% reach a thread entry, ${perf_unknown}% hold [unknown] (${perf_n} samples)"

echo "== 2. the agent on every process while cargo builds for ${secs}s, ${rounds} rounds"
# The cargo processes building the crate (their working directory).
crate_builds() {
    local p
    for p in $(pgrep -x cargo); do
        [[ $(readlink "/proc/$p/cwd" 2>/dev/null) == "$crate" ]] && echo "$p"
    done
    return 0
}
kib_peak() { sed -n 's/.*stopped.*rss_peak_kib=\([0-9]*\).*/\1/p' "$1" | tail -1; }
cost_round() {
    ( end=$((SECONDS + secs + 10)); while ((SECONDS < end)); do build; done ) &
    local bpid=$!
    pids+=("$bpid")
    sleep 2
    local cpu
    cpu=$(agent_cpu "$secs" "$work/cost.log" "$@")
    kill "$bpid" 2>/dev/null || true
    wait "$bpid" 2>/dev/null || true
    # The build the loop was running when stopped: the next round cleans
    # the same directory.
    local left
    left=$(crate_builds)
    [[ -z $left ]] || kill $left 2>/dev/null || true
    while [[ -n $(crate_builds) ]]; do sleep 0.2; done
    local runs ns
    read -r runs ns < <(program_stats "$work/cost.log") || true
    echo "$cpu $(($(kib_peak "$work/cost.log") / 1024)) $(calc "%.3f" "${runs:-0} * ${ns:-0} / ($secs * 1e7)")"
}
for ((r = 1; r <= rounds; r++)); do
    read -r cpu_on rss_on prog_on < <(cost_round)
    read -r cpu_off rss_off prog_off < <(cost_round --no-deep-stacks)
    echo "   round $r: deep stacks on: ${cpu_on}% of a core, peak RSS ${rss_on} MiB, program in the kernel ${prog_on}%;" \
        "off: ${cpu_off}%, ${rss_off} MiB, program ${prog_off}%"
    echo "$prog_on" >>"$work/prog_on"; echo "$prog_off" >>"$work/prog_off"
    echo "$cpu_on" >>"$work/cpu_on"; echo "$cpu_off" >>"$work/cpu_off"
    echo "$rss_on" >>"$work/rss_on"; echo "$rss_off" >>"$work/rss_off"
done
m_on=$(median <"$work/cpu_on"); m_off=$(median <"$work/cpu_off")
echo "   median: on ${m_on}% / off ${m_off}% of a core (ratio $(calc "%.2f" "$m_on / ($m_off + 1e-9)"); target <= 1%)," \
    "peak RSS on $(median <"$work/rss_on") MiB / off $(median <"$work/rss_off") MiB (target <= 100 MiB);" \
    "program in the kernel on $(median <"$work/prog_on")% / off $(median <"$work/prog_off")% of a core"
