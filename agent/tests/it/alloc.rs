//! The sampling path (ring-buffer read, parse, unwind, aggregate) makes no
//! heap allocation per sample once the workload's processes, threads and
//! stacks are known.

use std::sync::Arc;
use std::time::{Duration, Instant};

use firewatch_agent::config::{Config, Targets};
use firewatch_agent::metrics::Metrics;
use firewatch_agent::sample::Sampler;

use crate::count_allocations;
use crate::support::{Workload, c_workload};

#[test]
fn sampling_path_makes_no_heap_allocation_per_sample_in_steady_state() {
    let w = Workload::start(c_workload(), 7.0);
    steady_state_allocations(w.pid(), false);
}

/// The same for Python samples: copies joined, frames named and spliced
/// without allocating once the code objects are known.
#[test]
fn python_samples_make_no_heap_allocation_in_steady_state() {
    // A fixed set of stacks (two hot lines), all seen in the warm-up: a
    // function first sampled later is a first sight, which allocates.
    let program = "import time\ndef hot(t):\n    while time.monotonic() < t:\n        pass\nhot(time.monotonic() + 10)\n";
    let mut w = std::process::Command::new("/usr/bin/python3")
        .args(["-c", program])
        .spawn()
        .expect("start python3");
    std::thread::sleep(Duration::from_millis(300));
    let python = steady_state_allocations(w.id(), true);
    let _ = w.kill();
    let _ = w.wait();
    assert!(python >= 300, "only {python} samples with Python frames");
}

/// Samples `pid` at 999 Hz, warms up, then counts the heap allocations of
/// 2.5 s of drains (asserting none); returns the Python stacks spliced.
fn steady_state_allocations(pid: u32, python: bool) -> u64 {
    let config = Config {
        frequency: 999,
        targets: Targets {
            pids: vec![pid],
            ..Targets::default()
        },
        ..Config::default()
    };
    let metrics = Arc::new(Metrics::default());
    let mut sampler =
        Sampler::open(&config, Arc::clone(&metrics)).expect("perf events open (root)");
    let sampled = || {
        let m = metrics.snapshot();
        m.samples - m.samples_skipped
    };

    // Warm up: the workload's mappings, threads and stacks become known.
    let warm_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < warm_until {
        sampler.wait(Duration::from_millis(20));
        sampler.drain();
    }

    let before = sampled();
    let spliced_before = metrics.snapshot().python_stacks;
    let mut allocations = 0;
    let measure_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < measure_until {
        sampler.wait(Duration::from_millis(20));
        let (_, n) = count_allocations(|| sampler.drain());
        allocations += n;
    }
    let samples = sampled() - before;
    let spliced = metrics.snapshot().python_stacks - spliced_before;
    eprintln!(
        "{samples} samples drained with {allocations} heap allocations ({spliced} with Python frames)"
    );
    assert!(samples >= 300, "too few samples to judge: {samples}");
    assert_eq!(
        allocations,
        0,
        "heap allocations on the sampling path over {samples} samples; the first at {}",
        crate::first_allocation()
    );
    assert_eq!(spliced > 0, python, "Python stacks: {spliced}");
    spliced
}
