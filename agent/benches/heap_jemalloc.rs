//! The heap benchmark's workload on jemalloc: the baseline for jemalloc's
//! own heap profiling, which `embed_overhead.sh` turns on through
//! `_RJEM_MALLOC_CONF` (`prof:true,lg_prof_sample:19`, one sample per
//! 512 KiB as ours). The label comes from `LABEL`.

// Declared like the other heap benchmarks' allocators.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use firewatch_heap_workload as workload;

fn main() {
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let label = std::env::var("LABEL").unwrap_or_else(|_| "jemalloc".into());
    workload::main_with(&label, runs, rounds);
}
