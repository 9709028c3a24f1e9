#!/usr/bin/env bash
# The embedded profiler's heap-sampling cost on an allocation-heavy
# workload (benches/embed/workload.rs), printed as figures and ratios (a
# benchmark: it asserts nothing):
#   bare      the system allocator, no hook (benches/heap_bare.rs)
#   hook-off  SamplingAllocator installed, no profiler running
#   sampled   heap profiling at the default mean of 512 KiB
# Runs alternate between the two binaries (3 timed batches per process,
# after a warm-up); medians over RUNS processes each.
# Wall time and the process's CPU time (every thread, the profiler's
# included) are both printed: on a shared machine the CPU time is the
# steadier figure. Then the CPU-profiling cost (benches/embed_cpu.rs).
#
# Usage: agent/benches/embed_overhead.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-7}

echo "== building (bench profile)"
bins=$(cargo bench -q -j 2 -p firewatch-agent --bench heap_bare --bench heap_sampled --bench embed_cpu \
    --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in ("heap_bare", "heap_sampled", "embed_cpu"):
        print(m["target"]["name"], m["executable"])')
bare=$(awk '$1 == "heap_bare" { print $2 }' <<<"$bins")
sampled=$(awk '$1 == "heap_sampled" { print $2 }' <<<"$bins")
cpu=$(awk '$1 == "embed_cpu" { print $2 }' <<<"$bins")

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "== heap: ${runs} alternating runs of each"
for ((r = 0; r < runs; r++)); do
    RUNS=3 "$bare" >>"$out"
    RUNS=3 "$sampled" >>"$out" 2>/dev/null
done
python3 - "$out" <<'PY'
import statistics, sys
wall, cpu = {}, {}
for line in open(sys.argv[1]):
    label, w, c = line.split()
    wall.setdefault(label, []).append(float(w))
    cpu.setdefault(label, []).append(float(c))
for name, times in (("wall", wall), ("process CPU", cpu)):
    base = statistics.median(times["bare"])
    print(f"   {name} time, median of {len(times['bare'])} batches:")
    for label in ("bare", "hook-off", "sampled"):
        m = statistics.median(times[label])
        note = "  (target < 3%)" if label == "sampled" else ""
        print(f"     {label:<9} {m:.4f} s  ratio to bare {m / base:.4f} ({(m / base - 1) * 100:+.2f}%){note}")
PY
if command -v valgrind >/dev/null; then
    # Instructions executed inside the timed loop (callgrind counts them
    # whatever else the machine is doing): the steadiest figure here.
    count() {
        valgrind --tool=callgrind --callgrind-out-file=/dev/null --toggle-collect='*workload*timed*' "$@" 2>&1 |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
    }
    ib=$(WARM_SECS=0.3 ROUNDS=6 RUNS=1 count "$bare")
    is=$(ONLY_SAMPLED=1 WARM_SECS=0.3 ROUNDS=6 RUNS=1 count "$sampled")
    echo "   instructions in 6 rounds (callgrind): bare ${ib}, sampled ${is}," \
        "ratio $(awk -v a="$is" -v b="$ib" 'BEGIN { printf "%.4f", a / b }') (target < 1.03)"
fi
echo "   (jemalloc's own profiling is not compared: the workspace does not build jemalloc)"
echo "== CPU"
RUNS=$runs "$cpu" 2>/dev/null
