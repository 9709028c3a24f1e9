//! The whole agent on ground-truth workloads: shares, whole stacks, names,
//! labels, and what reaches the server.

use std::path::Path;
use std::time::Duration;

use firewatch_agent::Agent;
use firewatch_agent::config::{Config, Targets};

use crate::receiver::{Receiver, Request};
use crate::support::{Stack, Workload, c_workload, decode_pprof, rust_workload, split, stacks};

/// Test frequency: higher than the default 99 Hz for more samples per second.
pub const TEST_HZ: u32 = 499;
const SECONDS: f64 = 4.0;

pub fn agent_config(server: &str, pid: u32) -> Config {
    Config {
        server: server.to_owned(),
        frequency: TEST_HZ,
        upload_interval: Duration::from_secs(1),
        targets: Targets {
            pids: vec![pid],
            ..Targets::default()
        },
        host: Some("test-host".into()),
        retry_min: Duration::from_millis(50),
        retry_max: Duration::from_secs(1),
        ..Config::default()
    }
}

pub struct Observed {
    pub stacks: Vec<Stack>,
    pub truth: (f64, f64),
    pub requests: Vec<Request>,
    pub pid: u32,
}

/// Runs `workload` under the agent and collects what the agent shipped.
pub fn observe(workload: &Path) -> Observed {
    let receiver = Receiver::new();
    let w = Workload::start(workload, SECONDS);
    let pid = w.pid();
    let agent = Agent::start(agent_config(&receiver.url(), pid))
        .expect("the agent starts (tests run as root)");
    let truth = w.finish(Duration::from_secs_f64(SECONDS + 60.0));
    let m = agent.stop(Duration::from_secs(10));
    let requests = receiver.requests();
    assert_eq!(m.profiles_rejected, 0);
    assert_eq!(m.profiles_dropped, 0);
    assert_eq!(
        m.profiles_delivered as usize,
        requests.len(),
        "every profile built was delivered"
    );
    let stacks = requests
        .iter()
        .flat_map(|r| stacks(&decode_pprof(&r.body)))
        .collect();
    Observed {
        stacks,
        truth,
        requests,
        pid,
    }
}

/// The checks both workloads must pass.
fn check(o: &Observed, hot: &str, cold: &str, binary: &str) {
    let (hot_pct, cold_pct, n) = split(&o.stacks, hot, cold);
    let truth_pct = o.truth.0 * 100.0 / (o.truth.0 + o.truth.1);
    eprintln!(
        "{binary}: {n} samples; agent {hot} {hot_pct:.1}% / {cold} {cold_pct:.1}%; ground truth {truth_pct:.1}%"
    );
    assert!(n >= 300, "too few samples of the workload: {n}");
    assert!(
        (hot_pct - truth_pct).abs() <= 3.0,
        "{hot}: agent {hot_pct:.1}% vs ground truth {truth_pct:.1}%"
    );

    // Every stack through the workload's functions reaches the thread's entry.
    let entries = ["main", "start_thread"];
    let broken: Vec<&Stack> = o
        .stacks
        .iter()
        .filter(|s| s.has(hot) || s.has(cold))
        .filter(|s| !entries.iter().any(|e| s.has(e)))
        .collect();
    assert!(
        broken.is_empty(),
        "{} of the hot stacks do not reach main/start_thread, e.g. {:?}",
        broken.len(),
        broken
            .first()
            .map(|s| s.frames.iter().map(|f| &f.name).collect::<Vec<_>>())
    );
    let both_threads = entries
        .iter()
        .all(|e| o.stacks.iter().any(|s| s.has(e) && s.has(hot)));
    assert!(
        both_threads,
        "samples from both the main thread and the spawned thread"
    );

    // Frames of our own binary are named.
    let (mut ours, mut named) = (0i64, 0i64);
    for s in &o.stacks {
        for f in s.frames.iter().filter(|f| f.module == binary) {
            ours += s.samples;
            if f.named() {
                named += s.samples;
            }
        }
    }
    assert!(ours > 0, "no frame of {binary}");
    let pct = named as f64 * 100.0 / ours as f64;
    assert!(pct >= 99.0, "only {pct:.2}% of {binary}'s frames are named");

    // Sample labels: pid and thread name on every sample.
    assert!(o.stacks.iter().all(|s| s.pid == Some(i64::from(o.pid))));
    assert!(
        o.stacks
            .iter()
            .all(|s| s.thread.as_deref().is_some_and(|t| !t.is_empty()))
    );
}

#[test]
fn c_workload_profile_matches_ground_truth_with_whole_named_stacks() {
    let path = c_workload();
    let binary = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let o = observe(path);
    check(&o, "fw_hot", "fw_cold", &binary);

    // Through Debian's libc (no frame pointers): comparator under qsort under fw_cold.
    let through_libc = o
        .stacks
        .iter()
        .filter(|s| s.has("fw_cmp"))
        .all(|s| s.has("fw_cold") && s.frames.iter().any(|f| f.module.starts_with("libc")));
    assert!(
        through_libc,
        "fw_cmp stacks go through libc's qsort to fw_cold"
    );

    // Kernel frames, when sampled in the kernel, are named from kallsyms.
    let kernel: Vec<_> = o
        .stacks
        .iter()
        .flat_map(|s| s.frames.iter())
        .filter(|f| f.module == "[kernel.kallsyms]")
        .collect();
    if !kernel.is_empty() {
        let named = kernel.iter().filter(|f| f.named()).count();
        assert!(
            named * 10 >= kernel.len() * 9,
            "{named} of {} kernel frames named",
            kernel.len()
        );
    }

    // What the native ingest received: protocol, series labels, sample types.
    let r = &o.requests[0];
    assert_eq!(r.path, "/api/v1/ingest");
    assert_eq!(r.header("content-encoding"), Some("zstd"));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.google.protobuf")
    );
    assert_eq!(
        r.query.first().map(|(k, _)| k.as_str()),
        Some("service_name")
    );
    assert_eq!(r.param("host"), Some("test-host"));
    let exe = r.param("exe").unwrap_or_default();
    assert!(
        binary.starts_with(exe) && !exe.is_empty(),
        "exe label {exe:?}"
    );
    assert_eq!(r.param("service_name"), Some(exe));
    let p = decode_pprof(&r.body);
    let s = |i: i64| p.string_table[i as usize].clone();
    let types: Vec<(String, String)> = p
        .sample_type
        .iter()
        .map(|t| (s(t.r#type), s(t.unit)))
        .collect();
    assert_eq!(
        types,
        vec![
            ("samples".into(), "count".into()),
            ("cpu".into(), "nanoseconds".into())
        ]
    );
    assert_eq!(p.period, 1_000_000_000 / i64::from(TEST_HZ));
    assert!(p.time_nanos > 0 && p.duration_nanos > 0);
}

#[test]
fn rust_workload_profile_matches_ground_truth_with_whole_named_stacks() {
    let path = rust_workload();
    let binary = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default()
        .to_owned();
    let o = observe(path);
    check(
        &o,
        "fw_rust_workload::fw_rust_hot",
        "fw_rust_workload::fw_rust_cold",
        &binary,
    );
}
