#!/usr/bin/env bash
# What reading Python frames costs, measured on this machine and printed as
# figures and ratios (a benchmark: it asserts nothing).
#
#  1. A Python-heavy host: Debian's python3 and pyenv's 3.12 each running
#     the pure-Python loop of agent/tests/data/python_split.py on the two
#     cores, the agent profiling every process for SECONDS, with and
#     without Python support (--no-python), ROUNDS times alternating: its
#     CPU (% of one core, from /proc schedstat, after its first interval),
#     the medians and the ratio on/off; and the per-sample cost: the BPF
#     program's mean run time per sample (the kernel's statistics,
#     kernel.bpf_stats_enabled=1 for the run), and the agent's extra user
#     CPU per Python sample ((on - off) CPU / samples).
#  2. A host without Python: the same with two C busy loops, so the cost
#     the program adds to every other sample shows (its mean run time when
#     it finds no Python thread), and the agent's CPU on/off.
#
# Usage: agent/benches/python.sh [SECONDS] [ROUNDS]   (defaults: 30 3)
# Needs root, gcc, Debian's python3 and pyenv's 3.12. AGENT=path measures
# that agent binary.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-30}
rounds=${2:-3}
((secs >= 20)) || { echo "SECONDS must be at least 20" >&2; exit 2; }
py312=$(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1)
[[ -x ${py312:-} && -x /usr/bin/python3 ]] || { echo "python.sh needs /usr/bin/python3 and pyenv's 3.12" >&2; exit 1; }

source agent/benches/common.sh
script=agent/tests/data/python_split.py
cat >"$work/spin.c" <<'C'
int main(void) { volatile unsigned long x = 0; for (;;) x++; }
C
gcc -O1 -o "$work/spin" "$work/spin.c"

stats_was=$(cat /proc/sys/kernel/bpf_stats_enabled)
restore_stats() { echo "$stats_was" >/proc/sys/kernel/bpf_stats_enabled; cleanup; }
trap restore_stats EXIT
echo 1 >/proc/sys/kernel/bpf_stats_enabled

# round LOAD [agent args]: runs LOAD (python|c) on both cores and the agent
# for `secs`; prints its CPU (% of a core), samples and the program's mean
# run time (ns, 0 without the program).
round() {
    local load=$1
    shift
    local lpids=()
    if [[ $load == python ]]; then
        /usr/bin/python3 "$script" $((secs + 10)) >/dev/null &
        lpids+=($!)
        "$py312" "$script" $((secs + 10)) >/dev/null &
        lpids+=($!)
    else
        "$work/spin" & lpids+=($!)
        "$work/spin" & lpids+=($!)
    fi
    pids+=("${lpids[@]}")
    sleep 1
    local cpu
    cpu=$(agent_cpu "$secs" "$work/agent.log" "$@")
    kill "${lpids[@]}" 2>/dev/null || true
    wait "${lpids[@]}" 2>/dev/null || true
    local samples mean
    samples=$(sed -n 's/.*stopped.* samples=\([0-9]*\).*/\1/p' "$work/agent.log" | tail -1)
    mean=$(sed -n 's/.*mean_ns=\([0-9]*\).*/\1/p' "$work/agent.log" | tail -1)
    echo "$cpu ${samples:-0} ${mean:-0}"
}

for load in python c; do
    echo "== ${load} load on both cores, agent on every process for ${secs}s, ${rounds} rounds"
    rm -f "$work"/{on,off,mean,samples}
    for ((r = 1; r <= rounds; r++)); do
        read -r on samples mean < <(round "$load")
        read -r off _ _ < <(round "$load" --no-python)
        echo "   round $r: Python support on: ${on}% of a core (${samples} samples, program ${mean} ns/sample); off: ${off}%"
        echo "$on" >>"$work/on"; echo "$off" >>"$work/off"; echo "$mean" >>"$work/mean"; echo "$samples" >>"$work/samples"
    done
    m_on=$(median <"$work/on"); m_off=$(median <"$work/off")
    m_samples=$(median <"$work/samples")
    echo "   median: on ${m_on}% / off ${m_off}% of a core (ratio $(calc "%.2f" "$m_on / ($m_off + 1e-9)"))"
    echo "   per sample: program $(median <"$work/mean") ns in the kernel;" \
        "agent $(calc "%.1f" "($m_on - $m_off) / 100 * $secs * 1e9 / ($m_samples + 1e-9) / 1000") us more in user space"
done
