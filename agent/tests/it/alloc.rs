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
    let w = Workload::start(c_workload(), 6.0);
    let config = Config {
        frequency: 999,
        targets: Targets {
            pids: vec![w.pid()],
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
    let warm_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < warm_until {
        sampler.wait(Duration::from_millis(20));
        sampler.drain();
    }

    let before = sampled();
    let mut allocations = 0;
    let measure_until = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < measure_until {
        sampler.wait(Duration::from_millis(20));
        let (_, n) = count_allocations(|| sampler.drain());
        allocations += n;
    }
    let samples = sampled() - before;
    drop(w);
    eprintln!("{samples} samples drained with {allocations} heap allocations");
    assert!(samples >= 300, "too few samples to judge: {samples}");
    assert_eq!(
        allocations, 0,
        "heap allocations on the sampling path over {samples} samples"
    );
}
