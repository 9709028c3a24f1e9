//! The heap benchmark's workload on the bare system allocator (the
//! baseline of `embed_overhead.sh`).

#[path = "embed/workload.rs"]
mod workload;

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
