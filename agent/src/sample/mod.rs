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
mod program;
pub mod record;
mod records;
mod stacks;
pub mod uprobe;
mod window;

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hashbrown::HashMap;

use crate::aggregate::{Aggregate, Counts, Frame, KERNEL, MARK_KERNEL, SampleKind};
use crate::bpf;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::labels::{Labeler, SeriesTable};
use crate::metrics::Metrics;
use crate::python::{Python, Waker};
use crate::unwind::{self, SampledWords, Walker};
use alloc::{AllocEvents, AllocState};
use events::{CpuEvents, EventKind, EventOptions};
use modules::Modules;
use procs::{Process, Threads};
use record::{Sample, SampleLayout};
use stacks::{Stack, Unwinding};
pub use window::Window;

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
/// Drain period while stacks deeper than their copy are completed from
/// what was read with their samples alone: nothing is read later, but the
/// records of those reads must not fill their ring.
pub const SAMPLED_DRAIN: Duration = Duration::from_millis(100);
/// How long a sample whose frames past its copy wait for a later sample of
/// its thread may wait, at least (it is given up at the first window cut
/// after that).
const MAX_CONFIRM_WAIT: Duration = Duration::from_secs(1);
/// Bytes of live stacks read per second, at most (a few deep threads cost
/// a fraction of this once their chains are known).
const LIVE_BYTES_PER_SECOND: u64 = 16 << 20;
/// Steps of all threads' chains together, at most (16 bytes each).
const MAX_CHAIN_STEPS: usize = 1 << 20;

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
    // The last drain found stacks deeper than their copy, and read live
    // stacks for some of them.
    deep_seen: bool,
    live_seen: bool,
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
    /// The program on every CPU sample ([`program`]).
    program: Option<bpf::Program>,
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
            program: None,
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
            match Python::open(cpus.len(), state.period_ns) {
                Ok(p) => state.python = Some(p),
                Err(e) => tracing::warn!("Python functions will not show in stacks: {e}"),
            }
        }
        if config.deep_stacks && !config.own_process {
            match SampledWords::open(cpus.len(), config.stack_bytes, state.period_ns) {
                Ok(w) => state.unwinding.words = Some(w),
                Err(e) => tracing::warn!(
                    "stack words past the kernel's copy will not be read with each sample: {e}"
                ),
            }
        }
        let fds: Vec<_> = events.samplers.iter().map(|s| s.as_raw_fd()).collect();
        state.program = program::load(&fds, &mut state.unwinding.words, &mut state.python);
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
            live_seen: false,
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

    /// How soon the next drain should come, when the last one found
    /// stacks deeper than their copy: soon ([`DEEP_DRAIN`]) when some were
    /// read from the live stack, while their threads' outer frames are
    /// still there; else, when all were completed from what was read with
    /// their samples, [`SAMPLED_DRAIN`].
    pub fn prompt_drain(&self) -> Option<Duration> {
        match (self.live_seen, self.deep_seen) {
            (true, _) => Some(DEEP_DRAIN),
            (false, true) => Some(SAMPLED_DRAIN),
            (false, false) => None,
        }
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

    /// Runs of the program on every sample and their total time in
    /// nanoseconds (zeros unless `kernel.bpf_stats_enabled` is 1).
    pub fn program_run_stats(&self) -> Option<(u64, u64)> {
        self.state.program.as_ref().map(bpf::Program::run_stats)
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
        let before = self.state.unwinding.walker.stats();
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
        let after = state.unwinding.walker.stats();
        self.deep_seen = after.copy_ended > before.copy_ended;
        self.live_seen = after.copy_ended - after.sampled_completed
            > before.copy_ended - before.sampled_completed;
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

    /// Looks at the threads the Python reader noticed, before the samples
    /// that follow them are read.
    fn python_notices(&mut self) {
        let Some(py) = &mut self.python else {
            return;
        };
        py.poll();
        let notices = py.take_notices();
        let now = crate::sys::monotonic_ns();
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
