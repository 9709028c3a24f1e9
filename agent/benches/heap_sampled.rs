//! The heap benchmark's workload with `SamplingAllocator` as the global
//! allocator and a profiler sampling the heap at its default rate (one
//! sample per 512 KiB allocated), shipping to a server that is not there:
//! the cost measured is the hook, the sampling and the periodic profile
//! building, with delivery retried in the background.

use std::time::Duration;

use firewatch_agent::embed::{CpuMode, Profiler, SamplingAllocator};

use firewatch_heap_workload as workload;

#[global_allocator]
static ALLOC: SamplingAllocator = SamplingAllocator::system();

fn main() {
    let mean = workload::env_or("MEAN_BYTES", 512 * 1024);
    // `PHASE=hook-off`: the hook installed but no profiler (a countdown
    // per allocation, a table load per free). `PHASE=sampled` (the
    // default): heap profiling on. One phase per process, so neither runs
    // on a heap the other has shaped.
    if std::env::var("PHASE").as_deref() == Ok("hook-off") {
        workload::run("hook-off");
        return;
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
    workload::run("sampled");
    drop(profiler);
}
