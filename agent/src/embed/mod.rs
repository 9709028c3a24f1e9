//! Firewatch inside a service: CPU and heap profiles of the process itself,
//! shipped from background threads to a Firewatch (or Pyroscope) server.
//!
//! ```no_run
//! use firewatch_agent::embed::{Profiler, SamplingAllocator};
//!
//! #[global_allocator]
//! static ALLOC: SamplingAllocator = SamplingAllocator::system();
//!
//! fn main() -> Result<(), firewatch_agent::Error> {
//!     let profiler = Profiler::builder()
//!         .server("http://127.0.0.1:4040")
//!         .service("checkout")
//!         .label("version", env!("CARGO_PKG_VERSION"))
//!         .start()?;
//!     println!("CPU profiling by {:?}", profiler.cpu_mode());
//!     // ... the service runs ...
//!     profiler.stop();
//!     Ok(())
//! }
//! ```
//!
//! CPU: perf events on the process's own threads (user space only, which
//! `perf_event_paranoid` <= 2 allows without privilege; the host agent's
//! sampling, unwinding and symbolization), else in-process timer-signal
//! sampling ([`CpuMode`]). Heap: the [`SamplingAllocator`] hook, when it is
//! the global allocator. A failing server costs the service nothing but
//! the bounded buffer; the profiler's own threads are never sampled.

pub mod alloc;
mod heap;
mod signal;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc::{RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use firewatch_syntax::now_ns;

pub use alloc::SamplingAllocator;

use crate::Agent;
use crate::config::{Config, ServiceRule, Targets};
use crate::error::{Error, Result};
use crate::labels::{Labels, host_name};
use crate::metrics::Metrics;
use crate::ship::{Protocol, ShipConfig, Shipper, encode_payload};
use firewatch_profile::SERVICE_NAME;
use heap::HeapProfiles;
use signal::SignalSampler;

/// How CPU time is sampled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CpuMode {
    /// Perf events where permitted, else the signal fallback (the default).
    Auto,
    /// `perf_event_open` on the process's own threads; refusing is an error.
    PerfEvents,
    /// In-process `SIGPROF` timer sampling (pprof-rs).
    Signal,
    /// No CPU profiling.
    Off,
}

/// Configures and starts a [`Profiler`].
#[derive(Clone, Debug)]
pub struct Builder {
    server: String,
    service: Option<String>,
    labels: BTreeMap<String, String>,
    tenant: Option<String>,
    token: Option<String>,
    pyroscope: bool,
    cpu: CpuMode,
    heap: bool,
    frequency: u32,
    upload_interval: Duration,
    heap_interval_bytes: u64,
    buffer_bytes: usize,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            server: "http://127.0.0.1:4040".into(),
            service: None,
            labels: BTreeMap::new(),
            tenant: None,
            token: None,
            pyroscope: false,
            cpu: CpuMode::Auto,
            heap: true,
            frequency: 99,
            upload_interval: Duration::from_secs(10),
            heap_interval_bytes: 512 * 1024,
            buffer_bytes: 16 << 20,
        }
    }
}

impl Builder {
    /// The server's base URL (default `http://127.0.0.1:4040`).
    pub fn server(mut self, url: impl Into<String>) -> Self {
        self.server = url.into();
        self
    }

    /// The `service_name` label (default: the executable's name).
    pub fn service(mut self, name: impl Into<String>) -> Self {
        self.service = Some(name.into());
        self
    }

    /// Adds a series label (e.g. `version`).
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Tenant (`X-Scope-OrgID`) and bearer token.
    pub fn auth(mut self, tenant: Option<String>, token: Option<String>) -> Self {
        self.tenant = tenant;
        self.token = token;
        self
    }

    /// Push to a Grafana Pyroscope server instead of Firewatch's native ingest.
    pub fn pyroscope(mut self, yes: bool) -> Self {
        self.pyroscope = yes;
        self
    }

    /// How CPU time is sampled (default [`CpuMode::Auto`]).
    pub fn cpu(mut self, mode: CpuMode) -> Self {
        self.cpu = mode;
        self
    }

    /// Heap profiling through [`SamplingAllocator`] (default on).
    pub fn heap(mut self, on: bool) -> Self {
        self.heap = on;
        self
    }

    /// CPU samples per second (default 99).
    pub fn frequency(mut self, hz: u32) -> Self {
        self.frequency = hz;
        self
    }

    /// How often profiles are cut and shipped (default 10 s).
    pub fn upload_interval(mut self, every: Duration) -> Self {
        self.upload_interval = every;
        self
    }

    /// Mean bytes allocated between heap samples (default 512 KiB).
    pub fn heap_interval_bytes(mut self, bytes: u64) -> Self {
        self.heap_interval_bytes = bytes;
        self
    }

    /// Bound of the buffer of undelivered profiles (default 16 MiB).
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }

    /// Starts profiling from background threads.
    pub fn start(self) -> Result<Profiler> {
        Profiler::start(self)
    }

    fn service_name(&self) -> String {
        self.service
            .clone()
            .or_else(exe_name)
            .unwrap_or_else(|| "unknown".into())
    }

    fn agent_config(&self) -> Config {
        let mut c = Config {
            server: self.server.clone(),
            pyroscope: self.pyroscope,
            frequency: self.frequency,
            upload_interval: self.upload_interval,
            kernel_stacks: false,
            targets: Targets {
                pids: vec![std::process::id()],
                ..Targets::default()
            },
            labels: self.labels.clone(),
            // Only this process is sampled: a rule on its executable
            // names it.
            services: vec![ServiceRule {
                service_name: self.service_name(),
                exe: Some(exe_name().unwrap_or_else(|| "*".into())),
                cgroup: None,
            }],
            tenant: self.tenant.clone(),
            token: self.token.clone(),
            buffer_bytes: self.buffer_bytes,
            ..Config::default()
        };
        c.own_process = true;
        c.shares_process = true;
        c
    }

    fn labels(&self) -> Labels {
        let mut l: Labels = self
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        l.insert(SERVICE_NAME.into(), self.service_name());
        l.insert("host".into(), host_name());
        l
    }
}

/// A running embedded profiler; stops (shipping what it holds, for up to
/// a second) when dropped.
pub struct Profiler {
    cpu: CpuMode,
    heap: bool,
    agent: Option<Agent>,
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Profiler {
    /// Configuration with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// How CPU time is being sampled: [`CpuMode::PerfEvents`],
    /// [`CpuMode::Signal`] or [`CpuMode::Off`].
    pub fn cpu_mode(&self) -> CpuMode {
        self.cpu
    }

    /// Whether heap profiles are being taken (heap profiling was asked for
    /// and [`SamplingAllocator`] is the global allocator).
    pub fn heap_active(&self) -> bool {
        self.heap
    }

    fn start(b: Builder) -> Result<Profiler> {
        let mut cpu = b.cpu;
        let mut agent = None;
        if matches!(cpu, CpuMode::Auto | CpuMode::PerfEvents) {
            match Agent::start(b.agent_config()) {
                Ok(a) => {
                    agent = Some(a);
                    cpu = CpuMode::PerfEvents;
                }
                Err(e @ (Error::PerfPermission { .. } | Error::PerfOpen { .. }))
                    if cpu == CpuMode::Auto =>
                {
                    tracing::info!(
                        "perf events unavailable ({e}); sampling CPU with a timer signal"
                    );
                    cpu = CpuMode::Signal;
                }
                Err(e) => return Err(e),
            }
        }
        let heap = b.heap && alloc::install_check(b.heap_interval_bytes);
        if b.heap && !heap {
            tracing::warn!(
                "heap profiling asked for, but SamplingAllocator is not the global allocator: \
                 no heap profiles (see firewatch_agent::embed::SamplingAllocator)"
            );
        }
        let (stop_tx, stop_rx) = channel::<()>();
        let (ready_tx, ready_rx) = channel::<Result<()>>();
        let worker = Worker {
            labels: Arc::new(b.labels()),
            protocol: if b.pyroscope {
                Protocol::Pyroscope
            } else {
                Protocol::Native
            },
            interval: b.upload_interval,
            frequency: b.frequency,
            signal: cpu == CpuMode::Signal,
            heap,
            ship: ShipConfig {
                server: b.server.clone(),
                protocol: if b.pyroscope {
                    Protocol::Pyroscope
                } else {
                    Protocol::Native
                },
                tenant: b.tenant.clone(),
                token: b.token.clone(),
                tls_ca_file: None,
                buffer_bytes: b.buffer_bytes,
                retry_min: Duration::from_millis(500),
                retry_max: Duration::from_secs(300),
                request_timeout: Duration::from_secs(30),
            },
        };
        let thread = std::thread::Builder::new()
            .name("fw-embed".into())
            .spawn(move || worker.run(&stop_rx, &ready_tx))
            .map_err(|source| Error::Thread {
                name: "embedded profiler",
                source,
            })?;
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let _ = thread.join();
                alloc::disable();
                return Err(e);
            }
            Err(_) => {
                let _ = thread.join();
                alloc::disable();
                return Err(Error::Config(
                    "the embedded profiler's thread stopped at start".into(),
                ));
            }
        }
        tracing::info!(cpu = ?cpu, heap, "embedded profiler started");
        Ok(Profiler {
            cpu,
            heap,
            agent,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// Stops profiling, ships the last profiles (waiting up to a second for
    /// the server) and turns heap sampling off.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(a) = self.agent.take() {
            a.stop(Duration::from_secs(1));
        }
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.heap {
            alloc::disable();
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        self.shutdown();
    }
}

struct Worker {
    labels: Arc<Labels>,
    protocol: Protocol,
    interval: Duration,
    frequency: u32,
    signal: bool,
    heap: bool,
    ship: ShipConfig,
}

impl Worker {
    fn run(self, stop: &std::sync::mpsc::Receiver<()>, ready: &Sender<Result<()>>) {
        alloc::exclude_current_thread();
        let _own = crate::metrics::own_thread();
        let metrics = Arc::new(Metrics::default());
        let started = (|| {
            let shipper = Shipper::start(self.ship.clone(), Arc::clone(&metrics))?;
            let sampler = if self.signal {
                Some(SignalSampler::start(self.frequency)?)
            } else {
                None
            };
            Ok((shipper, sampler))
        })();
        let (shipper, mut sampler) = match started {
            Ok(x) => {
                let _ = ready.send(Ok(()));
                x
            }
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let mut heap = HeapProfiles::new();
        let mut window_start = now_ns();
        let mut next = Instant::now() + self.interval;
        loop {
            let stopping = match stop.recv_timeout(next.saturating_duration_since(Instant::now())) {
                Err(RecvTimeoutError::Timeout) => false,
                Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
            };
            next += self.interval;
            let end = now_ns();
            if let Some(s) = sampler.as_mut() {
                match s.cut() {
                    Ok(Some(p)) => self.submit(&shipper, &p),
                    Ok(None) => {}
                    Err(e) => tracing::warn!("in-process CPU sampling: {e}"),
                }
            }
            if self.heap {
                let snap = alloc::snapshot();
                if snap.dropped > 0 || snap.untracked > 0 {
                    tracing::debug!(
                        dropped = snap.dropped,
                        untracked = snap.untracked,
                        "heap samples not kept"
                    );
                }
                if let Some(p) = heap.profile(&snap, window_start, end - window_start) {
                    self.submit(&shipper, &p);
                }
            }
            window_start = end;
            if stopping {
                break;
            }
        }
        drop(sampler);
        let left = shipper.close(Duration::from_secs(1));
        if left > 0 {
            tracing::warn!(
                profiles = left,
                "embedded profiler stopped with profiles not delivered"
            );
        }
    }

    fn submit(&self, shipper: &Shipper, p: &firewatch_profile::Profile) {
        match encode_payload(Arc::clone(&self.labels), &p.to_pprof(), self.protocol) {
            Ok(payload) => shipper.submit(payload),
            Err(e) => tracing::warn!("cannot encode a profile: {e}"),
        }
    }
}

fn exe_name() -> Option<String> {
    let exe = std::env::current_exe().ok()?;
    Some(exe.file_name()?.to_string_lossy().into_owned())
}
