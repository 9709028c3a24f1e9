//! Embedded CPU profiling's cost on a CPU-bound program: the same work
//! timed with no profiler, with perf events on the process's threads, and
//! with the timer-signal fallback, at 99 Hz, alternating runs in one
//! process (medians and ratios printed; it asserts nothing). Each run
//! starts its profiler, lets it settle, then times about a second of work.

use std::hint::black_box;
use std::time::{Duration, Instant};

use firewatch_agent::embed::{CpuMode, Profiler};

fn work() -> u64 {
    let mut x = 1u64;
    for i in 0..600_000_000u64 {
        x = black_box(x.rotate_left(5) ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    }
    x
}

/// CPU seconds of every thread of this process (the profiler's included).
fn process_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer for the call.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// Wall and process-CPU seconds of the work.
fn timed() -> (f64, f64) {
    let (t, c) = (Instant::now(), process_cpu());
    black_box(work());
    (t.elapsed().as_secs_f64(), process_cpu() - c)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let runs: usize = std::env::var("RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let modes = [
        ("off", CpuMode::Off),
        ("perf-events", CpuMode::PerfEvents),
        ("signal", CpuMode::Signal),
    ];
    let mut times: Vec<Vec<(f64, f64)>> = vec![Vec::new(); modes.len()];
    timed();
    for _ in 0..runs {
        for (k, (_, mode)) in modes.iter().enumerate() {
            let profiler = (*mode != CpuMode::Off).then(|| {
                Profiler::builder()
                    .server("http://127.0.0.1:9")
                    .service("cpu-bench")
                    .cpu(*mode)
                    .heap(false)
                    .frequency(99)
                    .upload_interval(Duration::from_secs(1))
                    .start()
            });
            let profiler = match profiler.transpose() {
                Ok(p) => p,
                Err(e) => {
                    println!("{}: cannot start ({e}); skipped", modes[k].0);
                    continue;
                }
            };
            // Past start-up (events opened, this process's maps read): the
            // steady cost is what a long-running service pays.
            std::thread::sleep(Duration::from_millis(300));
            times[k].push(timed());
            drop(profiler);
        }
    }
    println!("embedded CPU profiling at 99 Hz, {runs} alternating runs of a CPU-bound loop:");
    for (what, pick) in [("wall", 0), ("process CPU", 1)] {
        let series = |k: usize| -> Vec<f64> {
            times[k]
                .iter()
                .map(|t| if pick == 0 { t.0 } else { t.1 })
                .collect()
        };
        let base = median(series(0));
        println!("  {what} time, medians:");
        for (k, (name, _)) in modes.iter().enumerate() {
            if times[k].is_empty() {
                continue;
            }
            let m = median(series(k));
            println!(
                "    {name:<12} {m:.4} s  ratio to off {:.4}  ({:+.2}%; target < 1%)",
                m / base,
                (m / base - 1.0) * 100.0
            );
        }
    }
}
