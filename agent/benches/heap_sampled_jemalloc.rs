//! The heap benchmark's workload with `SamplingAllocator` around jemalloc
//! and a profiler sampling the heap at its default rate: our sampling on
//! the allocator jemalloc's own profiling is compared on.

use std::time::Duration;

use firewatch_agent::embed::{CpuMode, Profiler, SamplingAllocator};

use firewatch_heap_workload as workload;

#[global_allocator]
static ALLOC: SamplingAllocator<tikv_jemallocator::Jemalloc> =
    SamplingAllocator::new(tikv_jemallocator::Jemalloc);

fn main() {
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let profiler = Profiler::builder()
        .server("http://127.0.0.1:9")
        .service("heap-bench")
        .cpu(CpuMode::Off)
        .upload_interval(Duration::from_secs(1))
        .start()
        .expect("start the profiler");
    assert!(profiler.heap_active());
    workload::main_with("ours-on-jemalloc", runs, rounds);
    drop(profiler);
}
