#!/usr/bin/env bash
# The embedded profiler's heap-sampling cost on an allocation-heavy
# workload (agent/heap-workload: the same machine code in every binary),
# printed as figures and ratios (a benchmark: it asserts nothing):
#   bare      the system allocator, no hook (benches/heap_bare.rs)
#   hook-off  SamplingAllocator installed, no profiler running
#   sampled   heap profiling at the default mean of 512 KiB
# and, on jemalloc (benches/heap_jemalloc.rs, heap_sampled_jemalloc.rs):
#   jemalloc          jemalloc, no profiling
#   jemalloc-prof     jemalloc's own heap profiling, one sample per 512 KiB
#                     (prof:true,lg_prof_sample:19)
#   ours-on-jemalloc  SamplingAllocator around jemalloc, default rate
# Three figures for each:
#   - wall and process CPU time (every thread, the profiler's included):
#     runs alternate between the variants, 3 timed batches per process
#     after a warm-up, one variant per process; medians over RUNS
#     processes, with the middle half of the batches to show the spread
#     (on a shared machine it can be wider than the effect);
#   - instructions executed in the timed loop (callgrind, when valgrind is
#     installed): the median over five heap layouts (LAYOUT_SEED), the
#     figure that other jobs on the machine do not move.
# Then the CPU-profiling cost (benches/embed_cpu.rs).
#
# Usage: agent/benches/embed_overhead.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/../.."
runs=${1:-7}

echo "== building (bench profile)"
names="heap_bare heap_sampled heap_jemalloc heap_sampled_jemalloc embed_cpu"
bins=$(cargo bench -q -j 2 -p firewatch-agent $(printf -- '--bench %s ' $names) \
    --no-run --message-format=json 2>/dev/null |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] in sys.argv[1:]:
        print(m["target"]["name"], m["executable"])' $names)
bare=$(awk '$1 == "heap_bare" { print $2 }' <<<"$bins")
sampled=$(awk '$1 == "heap_sampled" { print $2 }' <<<"$bins")
cpu=$(awk '$1 == "embed_cpu" { print $2 }' <<<"$bins")
je=$(awk '$1 == "heap_jemalloc" { print $2 }' <<<"$bins")
je_ours=$(awk '$1 == "heap_sampled_jemalloc" { print $2 }' <<<"$bins")
je_prof="prof:true,prof_active:true,lg_prof_sample:19"

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "== heap: ${runs} alternating runs of each"
for ((r = 0; r < runs; r++)); do
    RUNS=3 "$bare" >>"$out"
    PHASE=hook-off RUNS=3 "$sampled" >>"$out" 2>/dev/null
    PHASE=sampled RUNS=3 "$sampled" >>"$out" 2>/dev/null
    RUNS=3 "$je" >>"$out"
    LABEL=jemalloc-prof _RJEM_MALLOC_CONF=$je_prof RUNS=3 "$je" >>"$out"
    RUNS=3 "$je_ours" >>"$out" 2>/dev/null
done
python3 - "$out" <<'PY'
import statistics, sys
wall, cpu = {}, {}
for line in open(sys.argv[1]):
    label, w, c = line.split()
    wall.setdefault(label, []).append(float(w))
    cpu.setdefault(label, []).append(float(c))
groups = (("bare", ("hook-off", "sampled")), ("jemalloc", ("jemalloc-prof", "ours-on-jemalloc")))
for name, times in (("wall", wall), ("process CPU", cpu)):
    print(f"   {name} time, median of {len(times['bare'])} batches:")
    for base_label, others in groups:
        base = statistics.median(times[base_label])
        for label in (base_label, *others):
            m = statistics.median(times[label])
            q1, _, q3 = statistics.quantiles(times[label], n=4)
            note = "  (target < 3%)" if label == "sampled" else ""
            print(f"     {label:<16} {m:.4f} s  ratio to {base_label} {m / base:.4f} ({(m / base - 1) * 100:+.2f}%)"
                  f"  middle half {q1:.3f}-{q3:.3f} s{note}")
PY
if command -v valgrind >/dev/null; then
    # Instructions executed inside the timed loop (callgrind counts them
    # whatever else the machine is doing): the steadiest figure here.
    # count VAR=VALUE... BINARY
    count() {
        env "${@:1:$#-1}" valgrind --tool=callgrind --callgrind-out-file=/dev/null \
            --toggle-collect='*workload*timed*' "${!#}" 2>&1 |
            sed -n 's/.*Collected : \([0-9]*\).*/\1/p'
    }
    # The median over five heap layouts (LAYOUT_SEED, see heap-workload):
    # where blocks fall moves the count by a few percent, more than the
    # hook costs, and differs between binaries by accident.
    med5() {
        for seed in 1 2 3 4 5; do
            count LAYOUT_SEED=$seed WARM_SECS=0.3 ROUNDS=6 RUNS=1 "$@"
        done | sort -n | sed -n 3p
    }
    ib=$(med5 "$bare")
    io=$(med5 PHASE=hook-off "$sampled")
    is=$(med5 PHASE=sampled "$sampled")
    ij=$(med5 "$je")
    ip=$(med5 _RJEM_MALLOC_CONF=$je_prof "$je")
    ioj=$(med5 "$je_ours")
    ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f (%+.2f%%)", a / b, (a / b - 1) * 100 }'; }
    echo "   instructions in the timed loop, 6 rounds (callgrind, median over 5 heap layouts; the steadiest figure):"
    echo "     bare              ${ib}"
    echo "     hook-off          ${io}  ratio to bare $(ratio "$io" "$ib")"
    echo "     sampled           ${is}  ratio to bare $(ratio "$is" "$ib")  (target < 3%)"
    echo "     jemalloc          ${ij}"
    echo "     jemalloc-prof     ${ip}  ratio to jemalloc $(ratio "$ip" "$ij")"
    echo "     ours-on-jemalloc  ${ioj}  ratio to jemalloc $(ratio "$ioj" "$ij")"
fi
echo "== CPU"
RUNS=$runs "$cpu" 2>/dev/null
