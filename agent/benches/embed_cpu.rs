//! Embedded CPU profiling's cost on a CPU-bound program: the same work
//! timed with no profiler, with perf events on the process's threads, and
//! with the timer-signal fallback, at 99 Hz, alternating runs in one
//! process (medians and ratios printed; it asserts nothing). Each run
//! starts its profiler and works untimed (about 3 s) until it has shipped
//! its first profiles (the one-off reading of this binary's debug
//! information and symbolization of the loop, which a long-running service
//! pays once), then times about two seconds of work, during which the
//! profiler keeps sampling, symbolizing and shipping every second (ten
//! times as often as by default). `ITERATIONS` sizes the timed work
//! (default 3.6e9, about 2 s here). `VERBOSE=1` prints every run and the
//! profiler's logs.

use std::hint::black_box;
use std::time::{Duration, Instant};

use firewatch_agent::embed::{CpuMode, Profiler};

fn work(iterations: u64) -> u64 {
    let mut x = 1u64;
    for i in 0..iterations {
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

/// This thread's user and system CPU seconds.
fn thread_cpu() -> (f64, f64) {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid out-pointer for the call.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (secs(ru.ru_utime), secs(ru.ru_stime))
}

/// Picks one figure of a run.
type Figure = fn(&Run) -> f64;

/// One timed run.
#[derive(Clone, Copy)]
struct Run {
    wall: f64,
    /// Every thread's CPU.
    process: f64,
    /// The working thread's user and system CPU.
    user: f64,
    system: f64,
}

/// Times the work.
fn timed(iterations: u64) -> Run {
    let (t, c, (u, s)) = (Instant::now(), process_cpu(), thread_cpu());
    black_box(work(iterations));
    let (u1, s1) = thread_cpu();
    Run {
        wall: t.elapsed().as_secs_f64(),
        process: process_cpu() - c,
        user: u1 - u,
        system: s1 - s,
    }
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
    let iterations: u64 = std::env::var("ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3_600_000_000);
    let modes = [
        ("off", CpuMode::Off),
        ("perf-events", CpuMode::PerfEvents),
        ("signal", CpuMode::Signal),
    ];
    let mut times: Vec<Vec<Run>> = vec![Vec::new(); modes.len()];
    if std::env::var_os("VERBOSE").is_some() {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter("info")
            .init();
    }
    timed(iterations / 4);
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
            // Past start-up and the first three profiles (events opened,
            // maps and debug information read, the work loop's addresses
            // symbolized): the steady cost is what a long-running service
            // pays. The same untimed work runs with the profiler off.
            black_box(work(iterations * 3 / 2));
            let r = timed(iterations);
            if std::env::var_os("VERBOSE").is_some() {
                eprintln!(
                    "{} wall {:.4} process {:.4} user {:.4} system {:.4}",
                    modes[k].0, r.wall, r.process, r.user, r.system
                );
            }
            times[k].push(r);
            drop(profiler);
        }
    }
    println!("embedded CPU profiling at 99 Hz, {runs} alternating runs of a CPU-bound loop:");
    let series = |k: usize, f: Figure| -> Vec<f64> { times[k].iter().map(f).collect() };
    let figures: [(&str, Figure); 2] = [("wall", |r| r.wall), ("process CPU", |r| r.process)];
    for (what, f) in figures {
        let base = median(series(0, f));
        println!("  {what} time, medians:");
        for (k, (name, _)) in modes.iter().enumerate() {
            if times[k].is_empty() {
                continue;
            }
            let m = median(series(k, f));
            println!(
                "    {name:<12} {m:.4} s  ratio to off {:.4}  ({:+.2}%; target < 1%)",
                m / base,
                (m / base - 1.0) * 100.0
            );
        }
    }
    // Shares of the same run's own user time: both sides of each ratio
    // slow down together when other jobs take the machine, so these hold
    // still where the times above swing by more than the effect.
    println!(
        "  within each run, as a share of the working thread's user time (medians; steady under machine noise):"
    );
    println!("    mode         profiler threads' CPU   working thread's system time");
    for (k, (name, _)) in modes.iter().enumerate() {
        if times[k].is_empty() {
            continue;
        }
        let others = median(series(k, |r| (r.process - r.user - r.system) / r.user));
        let system = median(series(k, |r| r.system / r.user));
        println!(
            "    {name:<12} {:>10.3}%             {:>10.3}%",
            others * 100.0,
            system * 100.0
        );
    }
    println!(
        "    (perf events: the kernel takes samples in the working thread's system time; the \
         signal fallback's handler runs in its user time, counted only in the figures above)"
    );
}
