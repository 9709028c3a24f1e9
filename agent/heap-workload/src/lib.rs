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

/// The environment variable `name` parsed, or `default` when unset or
/// malformed (the benchmarks' knobs).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// With `seed` > 0, leaves between 1 and 200 blocks of 16 to 4096 bytes
/// allocated for good, chosen by `seed`. Instruction counts of an
/// allocation-heavy loop move by a few percent with where its blocks fall
/// (how often the allocator merges and splits free chunks), and two
/// binaries differ in that by accident: the driving script takes medians
/// over several seeds for each allocator instead of one arbitrary layout.
fn shape_heap(seed: u64) {
    if seed == 0 {
        return;
    }
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..1 + next() % 200 {
        let size = 16 + (next() % 4081) as usize;
        std::mem::forget(black_box(vec![0u8; size]));
    }
}

/// Runs `RUNS` (default 1) timed batches of `ROUNDS` (default 40) rounds
/// after a warm-up of `WARM_SECS` (default 1.5), with the heap shaped by
/// `LAYOUT_SEED` (default 0: as it comes), and prints each batch,
/// one per line, for the driving script (`embed_overhead.sh`).
pub fn run(label: &str) {
    let runs: u32 = env_or("RUNS", 1);
    let rounds: u32 = env_or("ROUNDS", 40);
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
    shape_heap(env_or("LAYOUT_SEED", 0));
    let warm_secs: f64 = env_or("WARM_SECS", 1.5);
    let warm = Instant::now();
    while warm.elapsed().as_secs_f64() < warm_secs {
        black_box(round());
    }
    for _ in 0..runs {
        let (wall, cpu) = timed(rounds);
        println!("{label} {wall:.6} {cpu:.6}");
    }
}
