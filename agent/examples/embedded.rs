//! A service profiling itself: CPU and heap profiles shipped to a Firewatch
//! server every 10 s.
//!
//! ```sh
//! cargo run --release -p firewatch-agent --example embedded -- http://127.0.0.1:4040 30
//! ```
//!
//! Then open the server's UI and pick the `embedded-example` service (CPU,
//! and the `alloc_space` / `inuse_space` types for the heap).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use firewatch_agent::embed::{Profiler, SamplingAllocator};

// Every allocation goes through the sampling hook; it costs one atomic
// load until a profiler with heap profiling starts.
#[global_allocator]
static ALLOC: SamplingAllocator = SamplingAllocator::system();

fn main() -> Result<(), firewatch_agent::Error> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let mut args = std::env::args().skip(1);
    let server = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:4040".into());
    let seconds: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(30);

    let profiler = Profiler::builder()
        .server(server)
        .service("embedded-example")
        .label("version", env!("CARGO_PKG_VERSION"))
        .start()?;
    println!(
        "profiling this process: CPU by {:?}, heap {}",
        profiler.cpu_mode(),
        if profiler.heap_active() { "on" } else { "off" }
    );

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut cache: HashMap<u64, String> = HashMap::new();
    let mut round = 0u64;
    while Instant::now() < deadline {
        round += 1;
        std::hint::black_box(checksum(round));
        remember(&mut cache, round);
    }
    println!("done after {round} rounds; {} entries cached", cache.len());
    profiler.stop();
    Ok(())
}

/// CPU-bound work.
#[inline(never)]
fn checksum(seed: u64) -> u64 {
    let mut x = seed;
    for _ in 0..200_000 {
        x = x.rotate_left(7) ^ x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    x
}

/// Allocation: a growing cache (live memory) and temporary strings.
#[inline(never)]
fn remember(cache: &mut HashMap<u64, String>, round: u64) {
    let text = format!("{round:>width$}", width = 64 + (round % 512) as usize);
    if round.is_multiple_of(4) {
        cache.insert(round, text);
    }
}
