//! Firewatch embedded in a service, end to end: a child process of this
//! test binary (the "service", with [`SamplingAllocator`] as its global
//! allocator) runs a known allocation or CPU pattern under
//! `firewatch_agent::embed::Profiler`, ships to a real server on loopback,
//! and the test reads the shares back through `/render`.
//!
//! The parent never starts a profiler, so the server it runs in process is
//! never sampled: the hook only counts down once a profiler is on.

#[path = "../it/support.rs"]
#[allow(dead_code)]
mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use firewatch_agent::embed::{CpuMode, Profiler, SamplingAllocator};

#[global_allocator]
static ALLOC: SamplingAllocator = SamplingAllocator::system();

const CHILD: &str = "FIREWATCH_EMBED_CHILD";
const SERVER: &str = "FIREWATCH_EMBED_SERVER";

/// Runs test `name` of this binary as a child process against `base`.
fn run_child(name: &str, base: &str, extra: &[(&str, &str)]) {
    let exe = std::env::current_exe().expect("test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", name, "--ignored", "--nocapture"])
        .env(CHILD, "1")
        .env(SERVER, base);
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run the child service");
    assert!(
        out.status.success(),
        "child {name} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn folded(base: &str, service: &str, profile_type: &str) -> BTreeMap<String, i64> {
    let url = format!(
        "{base}/render?query=%7Bservice_name%3D%22{service}%22%7D&profile_type={profile_type}&from=now-10m&until=now%2B1m&format=folded"
    );
    let mut resp = ureq::get(&url).call().expect("render");
    let text = resp.body_mut().read_to_string().expect("body");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        if let Some((stack, v)) = line.rsplit_once(' ') {
            out.insert(stack.to_owned(), v.parse().unwrap_or(0));
        }
    }
    out
}

/// Share (0..1) of the total whose stack passes through `function`.
fn share(stacks: &BTreeMap<String, i64>, function: &str) -> f64 {
    let total: i64 = stacks.values().sum();
    let hit: i64 = stacks
        .iter()
        .filter(|(s, _)| s.split(';').any(|f| f.ends_with(function)))
        .map(|(_, v)| v)
        .sum();
    if total == 0 {
        0.0
    } else {
        hit as f64 / total as f64
    }
}

fn in_child() -> Option<String> {
    std::env::var(CHILD).ok()?;
    std::env::var(SERVER).ok()
}

// ------------------------------------------------------------------ heap

const HEAP_SERVICE: &str = "embed-heap-test";
const KIB: usize = 1024;

/// 70% of the bytes, half of them kept.
#[inline(never)]
fn allocate_hot(keep: &mut Vec<Vec<u8>>, size: usize, i: usize) {
    let v = std::hint::black_box(vec![1u8; size]);
    if i.is_multiple_of(2) {
        keep.push(v);
    }
}

/// 30% of the bytes, all kept.
#[inline(never)]
fn allocate_cold(keep: &mut Vec<Vec<u8>>, size: usize) {
    keep.push(std::hint::black_box(vec![2u8; size]));
}

#[test]
#[ignore = "runs as the child service of heap_profile_matches_the_allocation_pattern"]
fn heap_child() {
    let Some(server) = in_child() else { return };
    let profiler = Profiler::builder()
        .server(server)
        .service(HEAP_SERVICE)
        .cpu(CpuMode::Off)
        .heap_interval_bytes(64 * KIB as u64)
        .upload_interval(Duration::from_millis(700))
        .start()
        .expect("start the profiler");
    assert!(
        profiler.heap_active(),
        "the sampling allocator is installed"
    );
    let mut keep = Vec::new();
    // 7 hot for every 3 cold allocations of the same sizes: 70% / 30% of
    // bytes; sizes spread from 1 to 32 KiB.
    for i in 0..8_000 {
        let size = 1 + (i * 7919) % (32 * KIB);
        for _ in 0..7 {
            allocate_hot(&mut keep, size, i);
        }
        for _ in 0..3 {
            allocate_cold(&mut keep, size);
        }
    }
    std::thread::sleep(Duration::from_millis(1600));
    profiler.stop();
    drop(keep);
}

#[test]
fn heap_profile_matches_the_allocation_pattern() {
    if in_child().is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = support::Server::start(&dir.path().join("embed.db"), 0);
    run_child("heap_child", &server.base, &[]);
    let alloc = folded(
        &server.base,
        HEAP_SERVICE,
        "memory:alloc_space:bytes:space:bytes",
    );
    let (hot, cold) = (
        share(&alloc, "allocate_hot"),
        share(&alloc, "allocate_cold"),
    );
    println!(
        "alloc_space: allocate_hot {:.1}%, allocate_cold {:.1}% (expected 70 / 30)",
        hot * 100.0,
        cold * 100.0
    );
    assert!(
        (hot - 0.70).abs() <= 0.05,
        "alloc_space share of allocate_hot: {hot:.3}"
    );
    assert!(
        (cold - 0.30).abs() <= 0.05,
        "alloc_space share of allocate_cold: {cold:.3}"
    );
    let objects = folded(
        &server.base,
        HEAP_SERVICE,
        "memory:alloc_objects:count:space:bytes",
    );
    let hot_o = share(&objects, "allocate_hot");
    assert!(
        (hot_o - 0.70).abs() <= 0.05,
        "alloc_objects share of allocate_hot: {hot_o:.3}"
    );
    // Live: hot keeps half of its 70% (35 parts), cold all of its 30.
    let inuse = folded(
        &server.base,
        HEAP_SERVICE,
        "memory:inuse_space:bytes:space:bytes",
    );
    let (hot_i, cold_i) = (
        share(&inuse, "allocate_hot"),
        share(&inuse, "allocate_cold"),
    );
    println!(
        "inuse_space: allocate_hot {:.1}%, allocate_cold {:.1}% (expected 53.8 / 46.2)",
        hot_i * 100.0,
        cold_i * 100.0
    );
    assert!(
        (hot_i - 35.0 / 65.0).abs() <= 0.05,
        "inuse_space share of allocate_hot: {hot_i:.3}"
    );
    assert!(
        (cold_i - 30.0 / 65.0).abs() <= 0.05,
        "inuse_space share of allocate_cold: {cold_i:.3}"
    );
    server.stop();
}

// ------------------------------------------------------------------- CPU

/// About 80% of the CPU time.
#[inline(never)]
fn spin_hot(rounds: u64) -> u64 {
    spin(rounds * 4)
}

/// About 20%.
#[inline(never)]
fn spin_cold(rounds: u64) -> u64 {
    spin(rounds)
}

#[inline(never)]
fn spin(n: u64) -> u64 {
    let mut x = n;
    for _ in 0..n {
        x = std::hint::black_box(x.rotate_left(5) ^ 0x9e37_79b9_7f4a_7c15);
    }
    x
}

#[test]
#[ignore = "runs as the child service of the embedded CPU tests"]
fn cpu_child() {
    let Some(server) = in_child() else { return };
    let mode = match std::env::var("FIREWATCH_EMBED_MODE").as_deref() {
        Ok("signal") => CpuMode::Signal,
        _ => CpuMode::PerfEvents,
    };
    let service = std::env::var("FIREWATCH_EMBED_SERVICE").expect("service");
    let profiler = Profiler::builder()
        .server(server)
        .service(service)
        .cpu(mode)
        .heap(false)
        .upload_interval(Duration::from_secs(1))
        .start()
        .expect("start the profiler");
    assert_eq!(profiler.cpu_mode(), mode);
    let until = std::time::Instant::now() + Duration::from_secs(4);
    let mut acc = 0u64;
    while std::time::Instant::now() < until {
        acc ^= spin_hot(200_000);
        acc ^= spin_cold(200_000);
    }
    std::hint::black_box(acc);
    profiler.stop();
}

fn cpu_mode_shows_the_hot_function(mode: &str) {
    if in_child().is_some() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let server = support::Server::start(&dir.path().join("embed.db"), 0);
    let service = format!("embed-cpu-{mode}");
    run_child(
        "cpu_child",
        &server.base,
        &[
            ("FIREWATCH_EMBED_MODE", mode),
            ("FIREWATCH_EMBED_SERVICE", &service),
        ],
    );
    let cpu = folded(
        &server.base,
        &service,
        "process_cpu:cpu:nanoseconds:cpu:nanoseconds",
    );
    let samples: i64 = cpu.values().sum();
    assert!(samples > 0, "{mode}: no CPU profile stored");
    let (hot, cold) = (share(&cpu, "spin_hot"), share(&cpu, "spin_cold"));
    // The rest of the process's CPU is the test harness and the profiler's
    // own threads (unoptimised in a test build): compare the two known
    // functions with each other.
    let split = hot / (hot + cold).max(f64::MIN_POSITIVE);
    println!(
        "{mode}: spin_hot {:.1}%, spin_cold {:.1}% of the process's CPU; hot/(hot+cold) {:.1}% (expected 80)",
        hot * 100.0,
        cold * 100.0,
        split * 100.0
    );
    // What the test asks of each mode: the known hot function is found,
    // and is the hotter of the two. (On a loaded machine a timer signal
    // gets few samples per run, so the split itself is only printed.)
    assert!(hot > 0.3, "{mode}: spin_hot is {hot:.3} of the CPU profile");
    assert!(hot > cold, "{mode}: spin_hot {hot:.3}, spin_cold {cold:.3}");
    server.stop();
}

#[test]
fn cpu_by_perf_events_shows_the_hot_function() {
    cpu_mode_shows_the_hot_function("perf");
}

#[test]
fn cpu_by_signal_shows_the_hot_function() {
    cpu_mode_shows_the_hot_function("signal");
}
