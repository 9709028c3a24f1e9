//! The heap benchmark's workload on the bare system allocator (the
//! baseline of `embed_overhead.sh`).

// Declared like the sampled binary's, so both reach the allocator through
// the same `#[global_allocator]` shims and differ only in the hook.
#[global_allocator]
static ALLOC: std::alloc::System = std::alloc::System;

use firewatch_heap_workload as workload;

fn main() {
    workload::run("bare");
}
