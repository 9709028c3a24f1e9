//! The agent's own counters, and its CPU and memory self-check.
//!
//! Counters are relaxed atomics: cheap to bump from the sampling loop, read
//! by the log line each interval and by [`Metrics::snapshot`].

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Counters shared by the agent's threads.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Samples read from the ring buffers.
    pub samples: AtomicU64,
    /// Samples of processes the targets exclude.
    pub samples_skipped: AtomicU64,
    /// Samples the kernel reported lost (ring buffer full).
    pub samples_lost: AtomicU64,
    /// User stacks that did not unwind to the thread's entry.
    pub stacks_truncated: AtomicU64,
    /// User stacks whose copy ended before the thread's entry.
    pub stacks_copy_ended: AtomicU64,
    /// Of those, completed from the thread's live stack.
    pub stacks_live_completed: AtomicU64,
    /// Of those, completed from the thread's earlier unwind, checked against
    /// its live stack.
    pub stacks_chain_completed: AtomicU64,
    /// Of those, completed from the words read with the sample alone.
    pub stacks_sampled_completed: AtomicU64,
    /// Of those, left truncated: the live stack had changed or failed a check.
    pub stacks_live_refused: AtomicU64,
    /// Of those, left truncated: the live-read budget was spent.
    pub stacks_over_budget: AtomicU64,
    /// Bytes of live stacks read.
    pub live_stack_bytes: AtomicU64,
    /// Completed stacks a later sample of the thread confirmed.
    pub stacks_confirmed: AtomicU64,
    /// Completed stacks nothing confirmed: cut back to their copy and
    /// marked truncated.
    pub stacks_unconfirmed: AtomicU64,
    /// Samples of Python threads with their Python frames spliced in.
    pub python_stacks: AtomicU64,
    /// Samples of Python threads whose Python frames were not copied (kept native, marked).
    pub python_unread: AtomicU64,
    /// Of the spliced ones, those whose frame chain was cut or unreadable part way.
    pub python_partial: AtomicU64,
    /// Of the spliced ones, those whose runs of Python frames and evaluation-loop calls did not pair one to one.
    pub python_misaligned: AtomicU64,
    /// Samples folded into the "stack table full" marker.
    pub stacks_folded: AtomicU64,
    /// Records that could not be parsed.
    pub records_malformed: AtomicU64,
    /// Profiles built (one per series per interval).
    pub profiles_built: AtomicU64,
    /// Profiles accepted by the server.
    pub profiles_delivered: AtomicU64,
    /// Profiles the server refused with a 4xx (not retried).
    pub profiles_rejected: AtomicU64,
    /// Profiles dropped because the buffer was full (oldest first).
    pub profiles_dropped: AtomicU64,
    /// Bytes of those dropped profiles.
    pub bytes_dropped: AtomicU64,
    /// Delivery attempts that failed and were retried.
    pub send_retries: AtomicU64,
    /// Times the symbol caches were dropped to stay under the memory budget.
    pub cache_resets: AtomicU64,
    /// Intervals after start-up in which the agent used more CPU than its budget.
    pub cpu_over_budget: AtomicU64,
    /// Profiles waiting in the send buffer now (a gauge).
    pub buffer_profiles: AtomicU64,
    /// Bytes waiting in the send buffer now (a gauge).
    pub buffer_bytes: AtomicU64,
}

/// A copy of every counter at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// See [`Metrics::samples`].
    pub samples: u64,
    /// See [`Metrics::samples_skipped`].
    pub samples_skipped: u64,
    /// See [`Metrics::samples_lost`].
    pub samples_lost: u64,
    /// See [`Metrics::stacks_truncated`].
    pub stacks_truncated: u64,
    /// See [`Metrics::stacks_copy_ended`].
    pub stacks_copy_ended: u64,
    /// See [`Metrics::stacks_live_completed`].
    pub stacks_live_completed: u64,
    /// See [`Metrics::stacks_chain_completed`].
    pub stacks_chain_completed: u64,
    /// See [`Metrics::stacks_sampled_completed`].
    pub stacks_sampled_completed: u64,
    /// See [`Metrics::stacks_live_refused`].
    pub stacks_live_refused: u64,
    /// See [`Metrics::stacks_over_budget`].
    pub stacks_over_budget: u64,
    /// See [`Metrics::live_stack_bytes`].
    pub live_stack_bytes: u64,
    /// See [`Metrics::stacks_confirmed`].
    pub stacks_confirmed: u64,
    /// See [`Metrics::stacks_unconfirmed`].
    pub stacks_unconfirmed: u64,
    /// See [`Metrics::python_stacks`].
    pub python_stacks: u64,
    /// See [`Metrics::python_unread`].
    pub python_unread: u64,
    /// See [`Metrics::python_partial`].
    pub python_partial: u64,
    /// See [`Metrics::python_misaligned`].
    pub python_misaligned: u64,
    /// See [`Metrics::stacks_folded`].
    pub stacks_folded: u64,
    /// See [`Metrics::records_malformed`].
    pub records_malformed: u64,
    /// See [`Metrics::profiles_built`].
    pub profiles_built: u64,
    /// See [`Metrics::profiles_delivered`].
    pub profiles_delivered: u64,
    /// See [`Metrics::profiles_rejected`].
    pub profiles_rejected: u64,
    /// See [`Metrics::profiles_dropped`].
    pub profiles_dropped: u64,
    /// See [`Metrics::bytes_dropped`].
    pub bytes_dropped: u64,
    /// See [`Metrics::send_retries`].
    pub send_retries: u64,
    /// See [`Metrics::cache_resets`].
    pub cache_resets: u64,
    /// See [`Metrics::cpu_over_budget`].
    pub cpu_over_budget: u64,
    /// See [`Metrics::buffer_profiles`].
    pub buffer_profiles: u64,
    /// See [`Metrics::buffer_bytes`].
    pub buffer_bytes: u64,
}

impl Metrics {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> Snapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            samples: r(&self.samples),
            samples_skipped: r(&self.samples_skipped),
            samples_lost: r(&self.samples_lost),
            stacks_truncated: r(&self.stacks_truncated),
            stacks_copy_ended: r(&self.stacks_copy_ended),
            stacks_live_completed: r(&self.stacks_live_completed),
            stacks_chain_completed: r(&self.stacks_chain_completed),
            stacks_sampled_completed: r(&self.stacks_sampled_completed),
            stacks_live_refused: r(&self.stacks_live_refused),
            stacks_over_budget: r(&self.stacks_over_budget),
            live_stack_bytes: r(&self.live_stack_bytes),
            stacks_confirmed: r(&self.stacks_confirmed),
            stacks_unconfirmed: r(&self.stacks_unconfirmed),
            python_stacks: r(&self.python_stacks),
            python_unread: r(&self.python_unread),
            python_partial: r(&self.python_partial),
            python_misaligned: r(&self.python_misaligned),
            stacks_folded: r(&self.stacks_folded),
            records_malformed: r(&self.records_malformed),
            profiles_built: r(&self.profiles_built),
            profiles_delivered: r(&self.profiles_delivered),
            profiles_rejected: r(&self.profiles_rejected),
            profiles_dropped: r(&self.profiles_dropped),
            bytes_dropped: r(&self.bytes_dropped),
            send_retries: r(&self.send_retries),
            cache_resets: r(&self.cache_resets),
            cpu_over_budget: r(&self.cpu_over_budget),
            buffer_profiles: r(&self.buffer_profiles),
            buffer_bytes: r(&self.buffer_bytes),
        }
    }
}

/// CPU time (user + system) this process has used.
pub fn own_cpu_time() -> Option<std::time::Duration> {
    crate::sys::process_cpu_time()
}

/// Resident memory of this process in bytes, from `/proc/self/statm`.
pub fn own_rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let page = u64::try_from(crate::sys::page_size()?).ok()?;
    Some(pages * page)
}

// The profiler's own threads. Embedded in a service, or in `firewatch up`
// beside the server, the process's CPU is mostly not the agent's: its
// budget is checked on these threads alone. A thread that ends adds its
// total to `RETIRED_NS`.
static OWN_THREADS: Mutex<Vec<i32>> = Mutex::new(Vec::new());
static RETIRED_NS: AtomicU64 = AtomicU64::new(0);

/// Counts the calling thread as the agent's until the guard drops (each
/// agent thread holds one for its whole life).
pub(crate) struct OwnThread {
    tid: i32,
}

/// Registers the calling thread as one of the agent's.
pub(crate) fn own_thread() -> OwnThread {
    let tid = crate::sys::thread_id();
    OWN_THREADS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(tid);
    OwnThread { tid }
}

impl Drop for OwnThread {
    fn drop(&mut self) {
        let ns = u64::try_from(crate::sys::thread_cpu_time().as_nanos()).unwrap_or(u64::MAX);
        let mut live = OWN_THREADS.lock().unwrap_or_else(|e| e.into_inner());
        RETIRED_NS.fetch_add(ns, Ordering::Relaxed);
        live.retain(|&t| t != self.tid);
    }
}

/// CPU time the agent's own threads have used (those alive and those
/// ended), from the scheduler's nanosecond counters.
pub fn own_threads_cpu_time() -> std::time::Duration {
    let live = OWN_THREADS.lock().unwrap_or_else(|e| e.into_inner());
    let mut ns = RETIRED_NS.load(Ordering::Relaxed);
    for tid in live.iter() {
        let run = std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
            .unwrap_or(0);
        ns = ns.saturating_add(run);
    }
    std::time::Duration::from_nanos(ns)
}

/// The agent's CPU against its budget, interval by interval. The start-up
/// (the first sight of every process: reading and indexing their symbol
/// files) is measured apart and only reported; after it, the first
/// interval over budget is a warning that says what to do, and every one
/// is counted in [`Metrics::cpu_over_budget`].
pub struct CpuCheck {
    last_cpu: std::time::Duration,
    last_at: Instant,
    budget_percent: f64,
    started: Instant,
    start_up: std::time::Duration,
    in_start_up: bool,
    warned: bool,
}

/// How long the start-up is measured apart.
pub const START_UP: std::time::Duration = std::time::Duration::from_secs(30);

impl CpuCheck {
    /// Starts measuring now; the first `start_up` is not judged.
    pub fn new(budget_percent: f64, start_up: std::time::Duration) -> CpuCheck {
        let now = Instant::now();
        CpuCheck {
            last_cpu: own_threads_cpu_time(),
            last_at: now,
            budget_percent,
            started: now,
            start_up,
            in_start_up: true,
            warned: false,
        }
    }

    /// CPU used since the last call, in percent of one core; judged
    /// against the budget once the start-up is over.
    pub fn check(&mut self, metrics: &Metrics) -> f64 {
        let cpu = own_threads_cpu_time();
        let now = Instant::now();
        let wall = now.duration_since(self.last_at).as_secs_f64();
        let used = cpu.saturating_sub(self.last_cpu).as_secs_f64();
        self.last_cpu = cpu;
        self.last_at = now;
        let percent = if wall > 0.0 { used / wall * 100.0 } else { 0.0 };
        if self.in_start_up {
            if now.duration_since(self.started) >= self.start_up {
                self.in_start_up = false;
                tracing::info!(
                    cpu_seconds = format_args!("{:.2}", cpu.as_secs_f64()),
                    "start-up over (first sight of every process); the CPU budget applies from now"
                );
            }
            return percent;
        }
        // Over less than a second (the last window when the agent stops) a
        // few milliseconds of work read as a large share: not judged.
        if percent > self.budget_percent && wall >= 1.0 {
            Metrics::add(&metrics.cpu_over_budget, 1);
            if !self.warned {
                self.warned = true;
                tracing::warn!(
                    cpu_percent = format_args!("{percent:.2}"),
                    budget_percent = self.budget_percent,
                    "the agent used more CPU than its budget over the last interval: lower \
                     --frequency, narrow the targets (--pid, --exe, --cgroup), or raise \
                     cpu_budget_percent; further intervals over budget are counted in \
                     firewatch_agent_cpu_over_budget_total, not logged"
                );
            } else {
                tracing::debug!(
                    cpu_percent = format_args!("{percent:.2}"),
                    "over the CPU budget"
                );
            }
        }
        percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Busy for `d` of this thread's CPU.
    fn spin(d: std::time::Duration) {
        let t = Instant::now();
        let mut x = 0u64;
        while t.elapsed() < d {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
        }
    }

    #[test]
    fn start_up_is_apart_and_the_rest_is_counted() {
        let _me = own_thread();
        let m = Metrics::default();
        let mut cpu = CpuCheck::new(1.0, std::time::Duration::from_millis(1100));
        spin(std::time::Duration::from_millis(1100));
        assert!(cpu.check(&m) > 50.0, "a busy start-up is measured");
        assert_eq!(m.snapshot().cpu_over_budget, 0, "but not judged");
        for i in 1..=2 {
            spin(std::time::Duration::from_millis(1050));
            cpu.check(&m);
            assert_eq!(m.snapshot().cpu_over_budget, i);
        }
        assert!(cpu.warned, "warned once");
    }

    #[test]
    fn self_measurements_are_readable() {
        assert!(own_rss_bytes().is_some_and(|b| b > 0));
        assert!(own_cpu_time().is_some());
        let m = Metrics::default();
        Metrics::add(&m.samples, 3);
        assert_eq!(m.snapshot().samples, 3);
    }
}
