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
pub mod uprobe;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::{HashMap, HashSet};

use crate::aggregate::{
    ANON, Aggregate, Counts, Frame, KERNEL, MARK_KERNEL, MARK_TRUNCATED, MARKER, SampleKind,
};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::labels::{Labeler, Labels, SeriesTable};
use crate::metrics::Metrics;
use crate::unwind::{self, Ending, UnwindCache};
use alloc::{AllocEvents, AllocState};
use events::{CpuEvents, EventKind, EventOptions};
use modules::{ModuleInfo, Modules};
use procs::{Mapping, Process, Threads};
use record::{Sample, SampleLayout};

/// Addresses at or above this are kernel addresses on x86_64.
const KERNEL_START: u64 = 0xffff_8000_0000_0000;
/// Records read per CPU per [`Sampler::drain`] call, so a flood cannot starve the loop.
const MAX_RECORDS_PER_DRAIN: usize = 8192;
/// Past this many modules, those no live process maps are forgotten.
const MODULE_GC_THRESHOLD: usize = 2048;
/// Largest perf record (the header's size field is 16 bits).
const MAX_RECORD_BYTES: usize = 1 << 16;

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
    cache: UnwindCache,
    frames: Vec<Frame>,
    metrics: Arc<Metrics>,
    window_start: SystemTime,
    max_frames: usize,
    alloc: AllocState,
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
            cache: UnwindCache::new_in(),
            frames: Vec::with_capacity(1024),
            metrics,
            window_start: SystemTime::now(),
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

    /// Waits up to `timeout` for the ring buffers to fill past their watermark.
    pub fn wait(&self, timeout: Duration) {
        self.events.wait(timeout);
    }

    /// Reads and handles what the ring buffers hold, oldest first across
    /// CPUs (so a process's `exec` or `mmap` on one CPU is seen before its
    /// samples on another); returns the number of records.
    pub fn drain(&mut self) -> usize {
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
                let d = self.labeler.describe(s.pid, &proc.comm);
                proc.wanted = Some(d.wanted);
                proc.series = Some(self.series.intern(d.labels));
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
        push_user_frames(
            proc,
            s,
            &mut self.modules,
            &mut self.cache,
            frames,
            &self.metrics,
        );
        if frames.is_empty() {
            frames.push(Frame::marker(MARK_KERNEL));
        }
        let thread = self.threads.id(s.pid, s.tid, &proc.comm);
        let cpu_ns = match self.kind {
            EventKind::CpuClock if s.period > 0 => s.period,
            _ => self.period_ns,
        };
        self.agg.add(
            SampleKind::Cpu,
            series,
            s.pid,
            thread,
            &self.frames,
            Counts {
                samples: 1,
                value: cpu_ns,
            },
        );
    }

    fn cut_window(&mut self) -> Window {
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
        }
    }
}

/// Appends the user stack of a sample to `frames`, leaf first (the IP,
/// then each return address), ending with [`MARK_TRUNCATED`] when it did
/// not unwind to the thread's entry. Nothing for a kernel thread or a
/// sample without a stack copy. Reads `/proc/PID/maps` once per process
/// when the IP is in no mapping it knows.
fn push_user_frames(
    proc: &mut Process,
    s: &Sample<'_>,
    modules: &mut Modules,
    cache: &mut UnwindCache,
    frames: &mut Vec<Frame>,
    metrics: &Metrics,
) {
    if s.abi == 0 || s.stack.is_empty() {
        return;
    }
    let ip = s.regs[2];
    if !proc.reloaded && proc.resolve(ip).module == ANON {
        // A mapping we have no record of (the process started while
        // its records were in flight): read /proc once.
        proc.reloaded = true;
        let mappings = procs::read_maps(s.pid, modules);
        if !mappings.is_empty() {
            proc.mappings = mappings;
            proc.unwinder = None;
        }
    }
    proc.unwinder(modules);
    let Process {
        unwinder: Some(unwinder),
        mappings,
        ..
    } = &*proc
    else {
        return;
    };
    let ending = unwind::unwind(unwinder, cache, s.regs, s.stack, |addr| {
        frames.push(resolve(mappings, addr));
    });
    if ending == Ending::Truncated {
        Metrics::add(&metrics.stacks_truncated, 1);
        frames.push(Frame::marker(MARK_TRUNCATED));
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

fn resolve(mappings: &[Mapping], addr: u64) -> Frame {
    let i = mappings.partition_point(|m| m.start <= addr);
    if let Some(m) = i.checked_sub(1).and_then(|i| mappings.get(i))
        && addr < m.end
    {
        return Frame {
            module: m.module,
            addr: addr - m.start + m.pgoff,
        };
    }
    Frame { module: ANON, addr }
}
