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
    let profiler = Profiler::builder()
        .server("http://127.0.0.1:9")
        .service("heap-bench")
        .cpu(CpuMode::Off)
        .upload_interval(Duration::from_secs(1))
        .start()
        .expect("start the profiler");
    assert!(profiler.heap_active());
    workload::run("ours-on-jemalloc");
    drop(profiler);
}
