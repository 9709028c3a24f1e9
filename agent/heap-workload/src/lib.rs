//! The allocation-heavy workload of the agent's heap-profiling benchmarks: a
//! map of strings to vectors built and dropped, and a string churned, as
//! request handlers do. The benchmarks differ only in their global
//! allocator; this crate is compiled once and linked into each, so they all
//! run the same machine code (compiled into each benchmark instead, the
//! workload would be inlined differently around each allocator, and that
//! difference would be measured as the allocator's).

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, DefaultHasher};
use std::hint::black_box;
use std::time::Instant;

/// One round; returns a checksum so nothing is optimised away.
pub fn round() -> u64 {
    // Fixed hash keys: the same probe sequence in every process, so
    // instruction counts compare between runs.
    let mut map: HashMap<String, Vec<u32>, BuildHasherDefault<DefaultHasher>> = HashMap::default();
    for i in 0..20_000u32 {
        let key = format!("key-{i}-{}", i % 97);
        let value: Vec<u32> = (0..(i % 64)).collect();
        map.insert(key, value);
    }
    let mut total: u64 = map.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
    let mut s = String::new();
    for i in 0..20_000u32 {
        s.push_str(&i.to_string());
        if s.len() > 4096 {
            total += s.len() as u64;
            s = String::new();
        }
    }
    total + s.len() as u64
}

/// CPU seconds this process has used, every thread (the profiler's
/// included): steadier than wall time on a shared machine, and it charges
/// the profiler's background work to the profiled program.
pub fn process_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and process-CPU seconds for `rounds` rounds (not inlined: the
/// instruction-count run of `embed_overhead.sh` collects inside it).
#[inline(never)]
pub fn timed(rounds: u32) -> (f64, f64) {
    let (t, c) = (Instant::now(), process_cpu());
    for _ in 0..rounds {
        black_box(round());
    }
    (t.elapsed().as_secs_f64(), process_cpu() - c)
}

/// Runs `runs` timed batches and prints each, one per line, for the
/// driving script (`embed_overhead.sh`).
pub fn main_with(label: &str, runs: u32, rounds: u32) {
    // A second thread, idle, as every service has: glibc's malloc takes
    // cheaper paths in a single-threaded process, and without it the
    // baseline would differ from the profiled run by the mere existence of
    // the profiler's thread rather than by the hook.
    std::thread::spawn(|| {
        loop {
            std::thread::park();
        }
    });
    // Warm up for about 1.5 s: the allocator's free lists, and with a
    // profiler running its first profiles (symbolization reads this
    // binary's debug information once per process, a cost a long-running
    // service pays once).
    let warm_secs: f64 = std::env::var("WARM_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.5);
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < warm_secs {
        black_box(round());
    }
    for _ in 0..runs {
        let (wall, cpu) = timed(rounds);
        println!("{label} {wall:.6} {cpu:.6}");
    }
}
