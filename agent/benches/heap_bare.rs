//! The heap benchmark's workload on the bare system allocator (the
//! baseline of `embed_overhead.sh`).

// Declared like the sampled binary's, so both reach the allocator through
// the same `#[global_allocator]` shims and differ only in the hook.
#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

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
    workload::main_with("bare", runs, rounds);
}
