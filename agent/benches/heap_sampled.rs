//! The heap benchmark's workload with `SamplingAllocator` as the global
//! allocator and a profiler sampling the heap at its default rate (one
//! sample per 512 KiB allocated), shipping to a server that is not there:
//! the cost measured is the hook, the sampling and the periodic profile
//! building, with delivery retried in the background.

use std::time::Duration;

use firewatch_agent::embed::{CpuMode, Profiler, SamplingAllocator};

#[path = "embed/workload.rs"]
mod workload;

#[global_allocator]
static ALLOC: SamplingAllocator = SamplingAllocator::system();

fn main() {
    let runs = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let rounds = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let mean = std::env::var("MEAN_BYTES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512 * 1024);
    // The hook installed but no profiler: one relaxed load per call
    // (`ONLY_SAMPLED=1` skips it, for instruction counts of one phase).
    if std::env::var_os("ONLY_SAMPLED").is_none() {
        workload::main_with("hook-off", runs, rounds);
    }
    let profiler = Profiler::builder()
        .server("http://127.0.0.1:9")
        .service("heap-bench")
        .cpu(CpuMode::Off)
        .heap_interval_bytes(mean)
        .upload_interval(Duration::from_secs(1))
        .start()
        .expect("start the profiler");
    assert!(profiler.heap_active());
    workload::main_with("sampled", runs, rounds);
    drop(profiler);
}
