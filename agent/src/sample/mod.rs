//! The sampling loop's state: perf events, processes, unwinding, aggregation.
//!
//! [`Sampler::drain`] reads every CPU's ring buffer and turns each sample
//! into a stack in the current [`Aggregate`]. In steady state (known
//! processes, threads and stacks) it does no I/O and no heap allocation per
//! sample: records are parsed in place, stacks are unwound into a reused
//! buffer, and the aggregate keeps its capacity between windows.
//! `/proc` is read only when a process, thread or mapping is first seen.
//!
//! Allocation samples of probed processes ([`alloc`]) come through rings
//! of their own, drained in the same pass and turned into stacks by the
//! same process, module and unwinding state.

pub mod alloc;
pub mod events;
pub mod modules;
pub mod procs;
pub mod record;
mod records;
mod stacks;
pub mod uprobe;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::{HashMap, HashSet};

use crate::aggregate::{Aggregate, Counts, Frame, KERNEL, MARK_KERNEL, MARKER, SampleKind};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::labels::{Labeler, Labels, SeriesTable};
use crate::metrics::Metrics;
use crate::python::{PYTHON, Python, Waker};
use crate::symbolize::Resolved;
use crate::unwind::{self, Walker};
use alloc::{AllocEvents, AllocState};
use events::{CpuEvents, EventKind, EventOptions};
use modules::{ModuleInfo, Modules};
use procs::{Process, Threads};
use record::{Sample, SampleLayout};
use stacks::{Stack, Unwinding};

/// Addresses at or above this are kernel addresses on x86_64.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;
/// Records read per CPU per [`Sampler::drain`] call, so a flood cannot starve the loop.
const MAX_RECORDS_PER_DRAIN: usize = 8192;
/// Past this many modules, those no live process maps are forgotten.
const MODULE_GC_THRESHOLD: usize = 2048;
/// Largest perf record (the header's size field is 16 bits).
const MAX_RECORD_BYTES: usize = 1 << 16;
/// Drain period while stacks deeper than their copy are seen: their outer
/// frames are read from the live stack, the sooner after the sample the
/// likelier they are still there.
pub const DEEP_DRAIN: Duration = Duration::from_millis(20);
/// How long a sample whose frames past its copy wait for a later sample of
/// its thread may wait, at least (it is given up at the first window cut
/// after that).
const MAX_CONFIRM_WAIT: Duration = Duration::from_secs(1);
/// Bytes of live stacks read per second, at most (a few deep threads cost
/// a fraction of this once their chains are known).
const LIVE_BYTES_PER_SECOND: u64 = 16 << 20;
/// Steps of all threads' chains together, at most (16 bytes each).
const MAX_CHAIN_STEPS: usize = 1 << 20;

/// One upload interval's samples and what is needed to name them.
pub struct Window {
    /// Start, in nanoseconds since the Unix epoch.
    pub start_ns: i64,
    /// Length in nanoseconds.
    pub duration_ns: i64,
    /// Nominal sampling period (1e9 / frequency), in nanoseconds.
    pub period_ns: i64,
    /// Allocation calls per allocation sample.
    pub alloc_period: i64,
    /// The samples.
    pub agg: Aggregate,
    /// Every module the stacks refer to.
    pub modules: HashMap<u32, Arc<ModuleInfo>>,
    /// Every series the samples belong to.
    pub series: HashMap<u32, Arc<Labels>>,
    /// Every thread name the samples carry.
    pub threads: HashMap<u32, Arc<str>>,
    /// The names of the Python frames the stacks hold.
    pub python: HashMap<u64, Arc<Resolved>>,
}

/// Perf events on every CPU and everything needed to turn samples into stacks.
pub struct Sampler {
    events: CpuEvents,
    alloc: Option<AllocEvents>,
    scratch: Vec<u8>,
    // Timestamp of the next record of each ring (the CPU rings, then the
    // allocation rings), if any.
    heads: Vec<Option<u64>>,
    // How often the rings should be drained, from their size.
    drain_period: Duration,
    // When the last drain was, for the live-read budget.
    last_drain: std::time::Instant,
    // The last drain found stacks deeper than their copy.
    deep_seen: bool,
    state: State,
}

/// Which events a ring holds records of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    Cpu,
    Alloc,
}

struct State {
    layout: SampleLayout,
    kind: EventKind,
    kernel_stacks: bool,
    period_ns: u64,
    procs: HashMap<u32, Process>,
    modules: Modules,
    threads: Threads,
    exited_threads: Vec<u32>,
    labeler: Labeler,
    series: SeriesTable,
    kernel_series: u32,
    agg: Aggregate,
    spare: Option<Aggregate>,
    unwinding: Unwinding,
    frames: Vec<Frame>,
    metrics: Arc<Metrics>,
    window_start: SystemTime,
    max_frames: usize,
    alloc: AllocState,
    /// Sampling has stopped: no later sample will confirm a waiting one.
    stopped: bool,
    /// Python frames, where the program that copies them could be loaded.
    python: Option<Python>,
}

fn new_aggregate(max_frames: usize) -> Aggregate {
    Aggregate::with_capacity(4 << 10, (64 << 10).min(max_frames), max_frames)
}

impl Sampler {
    /// Opens and enables the events on every CPU, then seeds the process
    /// table from `/proc`.
    pub fn open(config: &Config, metrics: Arc<Metrics>) -> Result<Sampler> {
        Sampler::open_with(config, metrics, false)
    }

    /// Like [`Sampler::open`], optionally forcing the `cpu-clock` event.
    pub fn open_with(
        config: &Config,
        metrics: Arc<Metrics>,
        force_cpu_clock: bool,
    ) -> Result<Sampler> {
        let cpus = events::online_cpus().map_err(Error::Cpus)?;
        let ring_bytes = config.ring_buffer_size(cpus.len());
        let mut events = events::open(&EventOptions {
            cpus: cpus.clone(),
            frequency: config.frequency,
            stack_bytes: config.stack_bytes,
            ring_bytes,
            kernel_stacks: config.kernel_stacks && !config.own_process,
            force_cpu_clock,
            own_process: config.own_process.then(std::process::id),
        })?;
        let labeler = Labeler::new(config);
        let mut series = SeriesTable::default();
        let kernel_series = series.intern(labeler.kernel_labels());
        let mut state = State {
            layout: events.layout,
            kind: events.kind,
            kernel_stacks: config.kernel_stacks,
            period_ns: 1_000_000_000 / u64::from(config.frequency.max(1)),
            procs: HashMap::new(),
            modules: Modules::new(unwind::read_own_vdso()),
            threads: Threads::default(),
            exited_threads: Vec::with_capacity(1024),
            labeler,
            series,
            kernel_series,
            agg: new_aggregate(config.max_frames_per_window),
            spare: Some(new_aggregate(config.max_frames_per_window)),
            unwinding: Unwinding::new(Walker::new(
                config.deep_stacks,
                config.max_stack_bytes,
                LIVE_BYTES_PER_SECOND,
                MAX_CHAIN_STEPS,
            )),
            frames: Vec::with_capacity(1024),
            metrics,
            window_start: SystemTime::now(),
            stopped: false,
            python: None,
            max_frames: config.max_frames_per_window,
            // Room for the thread and process events of probed processes,
            // so that the first ones allocate nothing in the loop.
            alloc: AllocState {
                every: config.alloc.every,
                ended: Vec::with_capacity(64),
                new_threads: Vec::with_capacity(256),
                gone_threads: Vec::with_capacity(256),
                ..AllocState::default()
            },
        };
        if config.python && !config.own_process {
            let fds: Vec<_> = events.samplers.iter().map(|s| s.as_raw_fd()).collect();
            match Python::open(&fds, cpus.len()) {
                Ok(p) => state.python = Some(p),
                Err(e) => tracing::warn!("Python functions will not show in stacks: {e}"),
            }
        }
        let mut alloc = AllocEvents::open(config, cpus)?;
        events.enable()?;
        state.seed();
        if let Some(alloc) = &mut alloc {
            alloc.rescan(&mut state);
            tracing::info!(
                processes = alloc.process_count(),
                events = alloc.event_count(),
                every = config.alloc.every,
                "allocation probes"
            );
        }
        tracing::info!(
            cpus = events.samplers.len(),
            event = ?events.kind,
            processes = state.procs.len(),
            modules = state.modules.len(),
            "sampling"
        );
        let rings = events.samplers.len() + alloc.as_mut().map_or(0, |a| a.rings_mut().len());
        Ok(Sampler {
            heads: vec![None; rings],
            events,
            alloc,
            scratch: Vec::with_capacity(MAX_RECORD_BYTES),
            drain_period: config.drain_period(ring_bytes),
            last_drain: std::time::Instant::now(),
            deep_seen: false,
            state,
        })
    }

    /// The event that drives sampling.
    pub fn event_kind(&self) -> EventKind {
        self.state.kind
    }

    /// How often [`Sampler::drain`] should run for the rings to stay under
    /// half full at the configured frequency.
    pub fn drain_period(&self) -> Duration {
        self.drain_period
    }

    /// True when the last drain found stacks deeper than their copy: the
    /// next drain should come soon ([`DEEP_DRAIN`]), while their threads'
    /// outer frames are still on their stacks.
    pub fn wants_prompt_drain(&self) -> bool {
        self.deep_seen
    }

    /// True when the Python reader is on: the loop then waits on
    /// [`Sampler::wait_notices`].
    pub fn reads_python(&self) -> bool {
        self.state.python.is_some()
    }

    /// What wakes [`Sampler::wait_notices`] early (`None` without the
    /// Python reader).
    pub fn waker(&self) -> Option<Waker> {
        self.state.python.as_ref().map(Python::waker)
    }

    /// Waits up to `timeout` for threads the Python reader noticed, or a
    /// wake; true if there are notices (worth a drain now).
    pub fn wait_notices(&self, timeout: Duration) -> bool {
        self.state
            .python
            .as_ref()
            .is_some_and(|p| p.wait_notices(timeout))
    }

    /// Runs of the Python reader's program and their total time in
    /// nanoseconds (zeros unless `kernel.bpf_stats_enabled` is 1).
    pub fn python_run_stats(&self) -> Option<(u64, u64)> {
        self.state.python.as_ref().map(Python::run_stats)
    }

    /// Waits up to `timeout` for the ring buffers to fill past their watermark.
    pub fn wait(&self, timeout: Duration) {
        self.events.wait(timeout);
    }

    /// Reads and handles what the ring buffers hold, oldest first across
    /// CPUs (so a process's `exec` or `mmap` on one CPU is seen before its
    /// samples on another); returns the number of records.
    pub fn drain(&mut self) -> usize {
        let now = std::time::Instant::now();
        let elapsed = now.duration_since(self.last_drain).as_secs_f64();
        self.last_drain = now;
        self.state.unwinding.walker.refill(elapsed);
        let deep_before = self.state.unwinding.walker.stats().copy_ended;
        self.state.python_notices();
        let Sampler {
            events,
            alloc,
            scratch,
            heads,
            state,
            ..
        } = self;
        let cpu_rings = &mut events.samplers[..];
        let alloc_rings = alloc.as_mut().map_or(&mut [][..], AllocEvents::rings_mut);
        for (i, head) in heads.iter_mut().enumerate() {
            *head = ring(cpu_rings, alloc_rings, i).and_then(|(r, _)| peek_time(r));
        }
        let mut n = 0;
        for _ in 0..MAX_RECORDS_PER_DRAIN * heads.len() {
            let oldest = heads
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (t, i)))
                .min();
            let Some((_, i)) = oldest else {
                break;
            };
            let (Some((sampler, source)), Some(head)) =
                (ring(cpu_rings, alloc_rings, i), heads.get_mut(i))
            else {
                break;
            };
            if let Some(rec) = sampler.next_record() {
                let (ty, misc) = (rec.ty(), rec.misc());
                n += 1;
                // Before joining a wrapped record: most samples on a busy
                // host may be of processes not profiled.
                let first = rec.data().first().copied().unwrap_or_default();
                if source == Source::Alloc || !state.skip_excluded(ty, first) {
                    let body: &[u8] = match rec.data() {
                        [one] => one,
                        [a, b] => {
                            // The record wraps around the end of the ring: join
                            // the halves in a buffer sized for the largest record.
                            scratch.clear();
                            scratch.extend_from_slice(a);
                            scratch.extend_from_slice(b);
                            scratch
                        }
                        _ => &[],
                    };
                    state.handle(ty, misc, body, source);
                }
            }
            *head = peek_time(sampler);
        }
        if let Some(alloc) = alloc {
            alloc.follow_threads(state);
        }
        self.deep_seen = state.unwinding.walker.stats().copy_ended > deep_before;
        state.unwinding.report(&state.metrics);
        n
    }

    /// Ends the current window and starts the next one; then probes the
    /// allocations of processes that started matching since the last cut.
    pub fn cut_window(&mut self) -> Window {
        let window = self.state.cut_window();
        if let Some(alloc) = &mut self.alloc {
            alloc.rescan(&mut self.state);
        }
        window
    }

    /// Returns a window's aggregate for reuse, so windows do not allocate anew.
    pub fn recycle(&mut self, mut agg: Aggregate) {
        agg.clear();
        self.state.spare = Some(agg);
    }

    /// Stops sampling; records already written can still be drained.
    pub fn disable(&mut self) {
        self.state.stopped = true;
        self.events.disable();
        if let Some(alloc) = &mut self.alloc {
            alloc.disable();
        }
    }

    /// Number of allocation probe events open (0 when allocation sampling
    /// is off).
    pub fn alloc_event_count(&self) -> usize {
        self.alloc.as_ref().map_or(0, AllocEvents::event_count)
    }

    /// Allocation samples turned into stacks so far.
    pub fn alloc_sample_count(&self) -> u64 {
        self.state.alloc.samples
    }

    /// Number of processes whose allocations are probed.
    pub fn alloc_process_count(&self) -> usize {
        self.alloc.as_ref().map_or(0, AllocEvents::process_count)
    }

    /// Number of processes tracked.
    pub fn process_count(&self) -> usize {
        self.state.procs.len()
    }
}

impl State {
    fn seed(&mut self) {
        // Targets naming only pids skip every other process anyway: no need
        // to list (and stat) every process on the host.
        let pids = match self.labeler.only_pids() {
            Some(pids) => pids
                .iter()
                .copied()
                .filter(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists())
                .collect(),
            None => procs::list_pids(),
        };
        for pid in pids {
            if self.labeler.wanted_by_pid(pid) == Some(false) {
                continue;
            }
            let p = self.load_process(pid);
            self.procs.insert(pid, p);
        }
    }

    fn load_process(&mut self, pid: u32) -> Process {
        Process {
            mappings: procs::read_maps(pid, &mut self.modules),
            comm: procs::read_comm(&format!("/proc/{pid}/comm")).unwrap_or_default(),
            ..Process::default()
        }
    }

    fn on_sample(&mut self, s: &Sample<'_>) {
        Metrics::add(&self.metrics.samples, 1);
        let kernel_thread = s.abi == 0;
        if self.labeler.wanted_by_pid(s.pid) == Some(false) {
            Metrics::add(&self.metrics.samples_skipped, 1);
            return;
        }
        if !self.procs.contains_key(&s.pid) {
            let p = self.load_process(s.pid);
            self.procs.insert(s.pid, p);
        }
        let Some(proc) = self.procs.get_mut(&s.pid) else {
            return;
        };
        if proc.wanted.is_none() {
            if kernel_thread {
                proc.wanted = Some(self.labeler.wanted_by_pid(s.pid) == Some(true));
                proc.series = Some(self.kernel_series);
            } else if self.labeler.wanted_by_pid(s.pid) == Some(false) {
                proc.wanted = Some(false);
            } else {
                let d = self
                    .labeler
                    .describe(s.pid, &proc.fallback_name(&self.modules));
                proc.wanted = Some(d.wanted);
                proc.series = Some(self.series.intern(d.labels));
            }
            if proc.wanted == Some(false)
                && let Some(py) = &mut self.python
            {
                py.ignore_process(s.pid);
            }
        }
        if proc.wanted != Some(true) {
            Metrics::add(&self.metrics.samples_skipped, 1);
            return;
        }
        let series = proc.series.unwrap_or(self.kernel_series);

        let frames = &mut self.frames;
        frames.clear();
        if self.kernel_stacks {
            for (i, ip) in s.kernel_ips().enumerate() {
                let addr = if i == 0 { ip } else { ip.wrapping_sub(1) };
                frames.push(Frame {
                    module: KERNEL,
                    addr,
                });
            }
        } else if s.ip >= KERNEL_START {
            frames.push(Frame::marker(MARK_KERNEL));
        }
        let user_start = frames.len();
        self.unwinding
            .push_user_frames(proc, s, &mut self.modules, frames, &self.metrics);
        let unwinding = &self.unwinding;
        if let Some(py) = &mut self.python
            && py.splice(s, frames, user_start, &self.metrics, |addr| {
                unwinding.returns_into_trampoline(s.pid, addr)
            })
        {
            self.unwinding.frames_moved(|i| py.moved(i));
        }
        if frames.is_empty() {
            frames.push(Frame::marker(MARK_KERNEL));
        }
        let thread = self.threads.id(s.pid, s.tid, &proc.comm);
        let cpu_ns = match self.kind {
            EventKind::CpuClock if s.period > 0 => s.period,
            _ => self.period_ns,
        };
        let stack = Stack {
            kind: SampleKind::Cpu,
            series,
            thread,
            frames: &self.frames,
            counts: Counts {
                samples: 1,
                value: cpu_ns,
            },
        };
        self.unwinding.add(&mut self.agg, s, stack, &self.metrics);
    }

    fn cut_window(&mut self) -> Window {
        // Samples still waiting for a later sample of their thread stay for
        // the next window, unless they have waited too long or sampling
        // has stopped.
        let read_before = match self.stopped {
            true => u64::MAX,
            false => unwind::monotonic_ns().saturating_sub(MAX_CONFIRM_WAIT.as_nanos() as u64),
        };
        self.unwinding
            .give_up(&mut self.agg, None, read_before, &self.metrics);
        let now = SystemTime::now();
        let next = self
            .spare
            .take()
            .unwrap_or_else(|| new_aggregate(self.max_frames));
        let agg = std::mem::replace(&mut self.agg, next);
        Metrics::add(&self.metrics.stacks_folded, agg.folded());

        let mut modules = HashMap::new();
        for f in agg.all_frames() {
            if f.module < MARKER
                && !modules.contains_key(&f.module)
                && let Some(info) = self.modules.info(f.module)
            {
                modules.insert(f.module, Arc::clone(info));
            }
        }
        let mut python = HashMap::new();
        if let Some(py) = &mut self.python {
            for f in agg.all_frames().iter().filter(|f| f.module == PYTHON) {
                if let Some(r) = py.resolved(f.addr) {
                    python.entry(f.addr).or_insert_with(|| Arc::clone(r));
                }
            }
            py.expire(unwind::monotonic_ns());
        }
        let mut series = HashMap::new();
        let mut threads = HashMap::new();
        for (key, _) in agg.iter() {
            if let Some(labels) = self.series.get(key.series) {
                series
                    .entry(key.series)
                    .or_insert_with(|| Arc::clone(labels));
            }
            threads
                .entry(key.thread)
                .or_insert_with(|| self.threads.name(key.thread));
        }

        // Housekeeping, now that this window's samples are all read.
        self.procs.retain(|_, p| !p.exited);
        for tid in self.exited_threads.drain(..) {
            self.threads.remove(tid);
        }
        if self.modules.len() > MODULE_GC_THRESHOLD {
            let live: HashSet<u32> = self
                .procs
                .values()
                .flat_map(|p| p.mappings.iter().map(|m| m.module))
                .collect();
            self.modules.retain(&live);
            self.alloc.fns.retain(|module, _| live.contains(module));
        }

        let start = self.window_start;
        self.window_start = now;
        let nanos = |t: SystemTime| {
            t.duration_since(UNIX_EPOCH)
                .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
                .unwrap_or(0)
        };
        let duration = now.duration_since(start).unwrap_or_default();
        Window {
            start_ns: nanos(start),
            duration_ns: i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
            period_ns: self.period_ns as i64,
            alloc_period: i64::try_from(self.alloc.every).unwrap_or(i64::MAX),
            agg,
            modules,
            series,
            threads,
            python,
        }
    }

    /// Looks at the threads the Python reader noticed, before the samples
    /// that follow them are read.
    fn python_notices(&mut self) {
        let Some(py) = &mut self.python else {
            return;
        };
        py.poll();
        let notices = py.take_notices();
        let now = unwind::monotonic_ns();
        for &(pid, tid) in &notices {
            if pid == 0 || self.labeler.wanted_by_pid(pid) == Some(false) {
                py.ignore_process(pid);
            } else {
                py.notice(pid, tid, &mut self.modules, now);
            }
        }
        py.notices_handled(notices);
    }
}

/// Ring `i` of the CPU rings followed by the allocation rings.
fn ring<'a>(
    cpu: &'a mut [perf_event::Sampler],
    alloc: &'a mut [perf_event::Sampler],
    i: usize,
) -> Option<(&'a mut perf_event::Sampler, Source)> {
    match i.checked_sub(cpu.len()) {
        None => cpu.get_mut(i).map(|r| (r, Source::Cpu)),
        Some(j) => alloc.get_mut(j).map(|r| (r, Source::Alloc)),
    }
}

/// The timestamp of the next record in a ring, leaving it there.
fn peek_time(sampler: &mut perf_event::Sampler) -> Option<u64> {
    let rec = sampler.next_record()?;
    let t = record::time_of(rec.ty(), rec.data()).unwrap_or(0);
    // Not dropping the record keeps the ring's tail where it is.
    std::mem::forget(rec);
    Some(t)
}
