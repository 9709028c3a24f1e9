//! The running agent: a sampling thread, a processing thread and a sender.
//!
//! The sampling thread only drains ring buffers and cuts a window every
//! upload interval; the processing thread symbolizes windows, builds and
//! compresses one pprof per series and hands them to the shipper (and the
//! dump directory). Aggregates travel back to the sampling thread for reuse.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::aggregate::{Aggregate, SampleKind};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics::{CpuCheck, Metrics, Snapshot, own_rss_bytes};
use crate::pprof;
use crate::prometheus::MetricsServer;
use crate::python::Waker;
use crate::sample::{Sampler, Window};
use crate::ship::{self, Protocol, ShipConfig, Shipper};
use crate::symbolize::Symbolizer;
use crate::sys::thread_cpu_time;

/// Longest time between two drains while allocations are probed: a program
/// allocating in a tight loop fills a ring with stack copies in a fraction
/// of a second.
const ALLOC_DRAIN: Duration = Duration::from_millis(50);

/// A running agent. Dropping it stops it without waiting for delivery;
/// [`Agent::stop`] flushes first.
pub struct Agent {
    stop: Arc<AtomicBool>,
    /// Wakes a sampling loop waiting on the Python reader's notices.
    waker: Option<Waker>,
    sampler: Option<JoinHandle<()>>,
    processor: Option<JoinHandle<Option<Shipper>>>,
    metrics: Arc<Metrics>,
    // Dropped (and stopped) with the agent.
    _metrics_server: Option<MetricsServer>,
}

impl Agent {
    /// Validates the configuration, opens the perf events (failing here if
    /// permission is missing) and starts the threads.
    pub fn start(config: Config) -> Result<Agent> {
        config.validate()?;
        if let Some(dir) = &config.dump_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::File {
                what: "cannot create the dump directory",
                path: dir.clone(),
                source,
            })?;
        }
        let metrics = Arc::new(Metrics::default());
        let shipper = if config.no_ship {
            None
        } else {
            Some(Shipper::start(
                ShipConfig::from_config(&config)?,
                Arc::clone(&metrics),
            )?)
        };
        let sampler = Sampler::open(&config, Arc::clone(&metrics))?;
        let metrics_server = match config.metrics_listen {
            Some(addr) => {
                let server = MetricsServer::start(addr, Arc::clone(&metrics))?;
                tracing::info!(address = %server.addr(), "serving the agent's metrics on /metrics");
                Some(server)
            }
            None => None,
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (windows_tx, windows_rx) = sync_channel::<Window>(2);
        let (recycle_tx, recycle_rx) = sync_channel::<Aggregate>(2);

        let processor = {
            let (config, metrics) = (config.clone(), Arc::clone(&metrics));
            spawn("fw-process", "processing", move || {
                process_loop(&config, &metrics, shipper, &windows_rx, &recycle_tx)
            })?
        };
        let waker = sampler.waker();
        let sampler = {
            let (stop, interval) = (Arc::clone(&stop), config.upload_interval);
            let drain = match config.alloc.is_empty() {
                true => sampler.drain_period(),
                false => sampler.drain_period().min(ALLOC_DRAIN),
            };
            spawn("fw-sample", "sampling", move || {
                sample_loop(sampler, interval, drain, &stop, &windows_tx, &recycle_rx);
            })?
        };
        Ok(Agent {
            stop,
            waker,
            sampler: Some(sampler),
            processor: Some(processor),
            metrics,
            _metrics_server: metrics_server,
        })
    }

    /// The agent's counters.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Stops sampling, ships the last window and waits up to `grace` for
    /// delivery of what is buffered. Returns the final counters.
    pub fn stop(mut self, grace: Duration) -> Snapshot {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sampler.take() {
            t.thread().unpark();
            if let Some(w) = &self.waker {
                w.wake();
            }
            let _ = t.join();
        }
        let shipper = self.processor.take().and_then(|t| t.join().ok()).flatten();
        if let Some(shipper) = shipper {
            let left = shipper.close(grace);
            if left > 0 {
                tracing::warn!(profiles = left, "stopping with profiles not delivered");
            }
        }
        self.metrics.snapshot()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.sampler.take() {
            t.thread().unpark();
            if let Some(w) = &self.waker {
                w.wake();
            }
            let _ = t.join();
        }
        if let Some(t) = self.processor.take() {
            let _ = t.join();
        }
    }
}

fn spawn<T: Send + 'static>(
    thread: &str,
    name: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>> {
    std::thread::Builder::new()
        .name(thread.into())
        .spawn(move || {
            // Embedded in a service, the agent's own allocations stay out
            // of the service's heap profile.
            crate::embed::alloc::exclude_current_thread();
            let _own = crate::metrics::own_thread();
            f()
        })
        .map_err(|source| Error::Thread { name, source })
}

/// Drains the Python reader's notices call for come at least this far apart.
const NOTICE_GAP: Duration = Duration::from_millis(20);

/// Drains the rings every `drain` and cuts a window every `interval`.
///
/// The loop sleeps on a timer rather than polling the rings: a ring's
/// wake-up watermark fires per bytes written on each CPU (not per bytes
/// waiting), so polling would wake the loop once per CPU per watermark,
/// while every wake-up drains every ring anyway. On a timer the loop wakes
/// when the rings are about half full (see `Config::drain_period`), at most
/// once a second, whatever the number of CPUs.
fn sample_loop(
    mut sampler: Sampler,
    interval: Duration,
    drain: Duration,
    stop: &AtomicBool,
    windows: &SyncSender<Window>,
    recycled: &Receiver<Aggregate>,
) {
    let mut window_end = Instant::now() + interval;
    let mut last_drain = Instant::now();
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if stopping {
            sampler.disable();
        } else {
            let now = Instant::now();
            // Sooner after a drain that found stacks deeper than their
            // copy (`Sampler::prompt_drain`).
            let drain = match sampler.prompt_drain() {
                Some(soon) => drain.min(soon),
                None => drain,
            };
            // Parked rather than asleep: stopping unparks the loop, which
            // may wait up to a second between drains. With the Python
            // reader on, the loop waits on its notices instead (stopping
            // wakes that wait too): a thread it does not know yet is
            // looked at within milliseconds, so few of its samples go
            // without their Python frames; never sooner than NOTICE_GAP
            // after the last drain, whatever the notices.
            let deadline = now + window_end.saturating_duration_since(now).min(drain);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() || stop.load(Ordering::Relaxed) {
                    break;
                }
                if !sampler.reads_python() {
                    std::thread::park_timeout(left);
                } else if sampler.wait_notices(left) {
                    let gap = NOTICE_GAP.saturating_sub(last_drain.elapsed());
                    std::thread::sleep(gap.min(left));
                    break;
                }
            }
        }
        last_drain = Instant::now();
        sampler.drain();
        if let Ok(agg) = recycled.try_recv() {
            sampler.recycle(agg);
        }
        let now = Instant::now();
        if stopping || now >= window_end {
            window_end += interval;
            if window_end < now {
                window_end = now + interval;
            }
            // Blocks if the processing thread is two windows behind: the
            // ring buffers then fill and the kernel counts what is lost.
            if windows.send(sampler.cut_window()).is_err() || stopping {
                if let Some((runs, ns)) = sampler.program_run_stats()
                    && runs > 0
                {
                    tracing::info!(
                        runs,
                        mean_ns = ns / runs,
                        "the program on every sample (kernel statistics)"
                    );
                }
                return;
            }
        }
    }
}

fn process_loop(
    config: &Config,
    metrics: &Metrics,
    shipper: Option<Shipper>,
    windows: &Receiver<Window>,
    recycle: &SyncSender<Aggregate>,
) -> Option<Shipper> {
    let mut symbolizer = Symbolizer::new(1 << 20, config.max_debug_info_bytes);
    symbolizer.drop_file_pages = !config.shares_process;
    symbolizer.debug_dirs = config.debug_dirs.clone();
    let mut cpu = CpuCheck::new(config.cpu_budget_percent, crate::metrics::START_UP);
    let protocol = if config.pyroscope {
        Protocol::Pyroscope
    } else {
        Protocol::Native
    };
    let mut dump_seq = 0u64;
    for window in windows {
        let t0 = thread_cpu_time();
        let names = symbolizer.symbolize(&window);
        let t1 = thread_cpu_time();
        let profiles = pprof::build(&window, &names, config.sample_labels);
        let t2 = thread_cpu_time();
        let samples: u64 = profiles.iter().map(|p| p.samples).sum();
        let alloc_samples: u64 = profiles
            .iter()
            .filter(|p| p.kind == SampleKind::Alloc)
            .map(|p| p.samples)
            .sum();
        Metrics::add(&metrics.profiles_built, profiles.len() as u64);
        for p in &profiles {
            if let Some(dir) = &config.dump_dir {
                dump_seq += 1;
                dump(dir, p, dump_seq);
            }
            if let Some(shipper) = &shipper {
                match ship::encode_payload(Arc::clone(&p.labels), &p.profile, protocol) {
                    Ok(payload) => shipper.submit(payload),
                    Err(e) => tracing::error!(error = %e, "cannot encode a profile"),
                }
            }
        }
        let t3 = thread_cpu_time();
        let _ = recycle.try_send(window.agg);
        let cpu_percent = cpu.check(metrics);
        if !config.shares_process {
            // The files symbolization and unwinding read stay mapped, their
            // pages need not stay resident (see `filepages`).
            crate::filepages::drop_read_only_file_pages();
        }
        let mut rss = own_rss_bytes().unwrap_or(0);
        if config.shares_process {
            symbolizer.evict_idle_files();
        } else if rss > config.memory_budget_bytes / 2 {
            symbolizer.evict_idle_files();
            rss = own_rss_bytes().unwrap_or(0);
        }
        if !config.shares_process && rss > config.memory_budget_bytes {
            symbolizer.reset();
            Metrics::add(&metrics.cache_resets, 1);
            tracing::warn!(
                rss,
                budget = config.memory_budget_bytes,
                "over the memory budget: dropped the symbol caches"
            );
        }
        let m = metrics.snapshot();
        let pending = shipper.as_ref().map(|s| s.pending().0).unwrap_or(0);
        tracing::info!(
            samples,
            alloc_samples,
            profiles = profiles.len(),
            lost = m.samples_lost,
            truncated = m.stacks_truncated,
            beyond_copy = m.stacks_copy_ended,
            live = m.stacks_live_completed,
            chained = m.stacks_chain_completed,
            sampled = m.stacks_sampled_completed,
            refused = m.stacks_live_refused + m.stacks_over_budget,
            confirmed = m.stacks_confirmed,
            unconfirmed = m.stacks_unconfirmed,
            python = m.python_stacks,
            python_unread = m.python_unread,
            delivered = m.profiles_delivered,
            rejected = m.profiles_rejected,
            dropped = m.profiles_dropped,
            pending,
            cpu_percent = format_args!("{cpu_percent:.2}"),
            symbolize_ms = format_args!("{:.1}", (t1 - t0).as_secs_f64() * 1e3),
            build_ms = format_args!("{:.1}", (t2 - t1).as_secs_f64() * 1e3),
            encode_ms = format_args!("{:.1}", (t3 - t2).as_secs_f64() * 1e3),
            rss_mib = rss >> 20,
            "window shipped"
        );
    }
    shipper
}

/// Writes a profile as `START-SEQ-SERVICE.pb.zst`, or
/// `START-SEQ-SERVICE.alloc.pb.zst` for an allocation profile (no `.`
/// survives in `SERVICE`, so the two cannot be confused).
fn dump(dir: &Path, p: &pprof::SeriesProfile, seq: u64) {
    let service = p
        .labels
        .get(firewatch_profile::SERVICE_NAME)
        .map_or("unknown", String::as_str);
    let safe: String = service
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let kind = match p.kind {
        SampleKind::Cpu => "",
        SampleKind::Alloc => ".alloc",
    };
    let path = dir.join(format!(
        "{}-{seq}-{safe}{kind}.pb.zst",
        p.profile.time_nanos
    ));
    let result = firewatch_profile::zstd(&firewatch_profile::pprof::encode(&p.profile), 3)
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|bytes| std::fs::write(&path, bytes));
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot write a profile");
    }
}

/// Raises the soft limit of open files to the hard limit: the agent holds
/// perf events per CPU and maps every executable it profiles. For the
/// programs that run the host agent; an embedding service keeps its limits.
pub fn raise_fd_limit() {
    crate::sys::raise_open_files_limit();
}
