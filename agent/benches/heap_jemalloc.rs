//! The heap benchmark's workload on jemalloc: the baseline for jemalloc's
//! own heap profiling, which `embed_overhead.sh` turns on through
//! `_RJEM_MALLOC_CONF` (`prof:true,lg_prof_sample:19`, one sample per
//! 512 KiB as ours). The label comes from `LABEL`.

// Declared like the other heap benchmarks' allocators.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use firewatch_heap_workload as workload;

fn main() {
    let label: String = workload::env_or("LABEL", "jemalloc".into());
    workload::run(&label);
}
