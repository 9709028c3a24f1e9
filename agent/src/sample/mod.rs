//! The sampling loop's state: perf events, processes, unwinding, aggregation.
//!
//! [`Sampler::drain`] reads every CPU's ring buffer and turns each sample
//! into a stack in the current [`Aggregate`]. In steady state (known
//! processes, threads and stacks) it does no I/O and no heap allocation per
//! sample: records are parsed in place, stacks are unwound into a reused
//! buffer, and the aggregate keeps its capacity between windows.
//! `/proc` is read only when a process, thread or mapping is first seen.

pub mod events;
pub mod modules;
pub mod procs;
pub mod record;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hashbrown::{HashMap, HashSet};

use crate::aggregate::{
    ANON, Aggregate, Counts, Frame, KERNEL, MARK_KERNEL, MARK_TRUNCATED, MARKER,
};
use crate::config::Config;
use crate::error::Result;
use crate::labels::{Labeler, Labels, SeriesTable};
use crate::metrics::Metrics;
use crate::unwind::{self, Ending, UnwindCache};
use events::{CpuEvents, EventKind, EventOptions};
use modules::{ModuleInfo, Modules};
use procs::{Mapping, Process, Threads};
use record::{Record, Sample, SampleLayout};

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
    scratch: Vec<u8>,
    // Timestamp of the next record of each CPU's ring, if any.
    heads: Vec<Option<u64>>,
    state: State,
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
        let mut events = events::open(&EventOptions {
            frequency: config.frequency,
            stack_bytes: config.stack_bytes,
            ring_bytes: config.ring_buffer_size(),
            kernel_stacks: config.kernel_stacks,
            force_cpu_clock,
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
        };
        events.enable()?;
        state.seed();
        tracing::info!(
            cpus = events.samplers.len(),
            event = ?events.kind,
            processes = state.procs.len(),
            modules = state.modules.len(),
            "sampling"
        );
        Ok(Sampler {
            heads: vec![None; events.samplers.len()],
            events,
            scratch: Vec::with_capacity(MAX_RECORD_BYTES),
            state,
        })
    }

    /// The event that drives sampling.
    pub fn event_kind(&self) -> EventKind {
        self.state.kind
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
            scratch,
            heads,
            state,
        } = self;
        let samplers = &mut events.samplers;
        for (head, sampler) in heads.iter_mut().zip(samplers.iter_mut()) {
            *head = peek_time(sampler);
        }
        let mut n = 0;
        for _ in 0..MAX_RECORDS_PER_DRAIN * samplers.len() {
            let oldest = heads
                .iter()
                .enumerate()
                .filter_map(|(i, t)| t.map(|t| (t, i)))
                .min();
            let Some((_, i)) = oldest else {
                break;
            };
            let (Some(sampler), Some(head)) = (samplers.get_mut(i), heads.get_mut(i)) else {
                break;
            };
            if let Some(rec) = sampler.next_record() {
                let (ty, misc) = (rec.ty(), rec.misc());
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
                state.handle(ty, misc, body);
                n += 1;
            }
            *head = peek_time(sampler);
        }
        n
    }

    /// Ends the current window and starts the next one.
    pub fn cut_window(&mut self) -> Window {
        self.state.cut_window()
    }

    /// Returns a window's aggregate for reuse, so windows do not allocate anew.
    pub fn recycle(&mut self, mut agg: Aggregate) {
        agg.clear();
        self.state.spare = Some(agg);
    }

    /// Stops sampling; records already written can still be drained.
    pub fn disable(&mut self) {
        self.events.disable();
    }

    /// Number of processes tracked.
    pub fn process_count(&self) -> usize {
        self.state.procs.len()
    }
}

impl State {
    fn seed(&mut self) {
        for pid in procs::list_pids() {
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

    fn handle(&mut self, ty: u32, misc: u16, body: &[u8]) {
        match record::parse(ty, misc, body, &self.layout) {
            None => Metrics::add(&self.metrics.records_malformed, 1),
            Some(Record::Sample(s)) => self.on_sample(&s),
            Some(Record::Mmap2(m)) => {
                if m.prot & libc::PROT_EXEC as u32 == 0
                    || self.labeler.wanted_by_pid(m.pid) == Some(false)
                {
                    return;
                }
                let path = String::from_utf8_lossy(m.filename);
                let end = m.start.saturating_add(m.len);
                let module = procs::mapping_module(
                    m.pid,
                    m.start,
                    end,
                    &path,
                    || m.inode,
                    &mut self.modules,
                );
                if let Some(module) = module {
                    let mapping = Mapping {
                        start: m.start,
                        end,
                        pgoff: m.pgoff,
                        module,
                    };
                    let p = self.procs.entry(m.pid).or_default();
                    p.add_mapping(mapping, &mut self.modules);
                }
            }
            Some(Record::Comm {
                pid,
                tid,
                name,
                exec,
            }) => {
                if self.labeler.wanted_by_pid(pid) == Some(false) {
                    return;
                }
                let name = String::from_utf8_lossy(name);
                self.threads.set(tid, &name);
                if pid == tid || exec {
                    let p = self.procs.entry(pid).or_default();
                    if exec {
                        p.reset_for_exec();
                    }
                    p.comm = name.into_owned();
                }
            }
            Some(Record::Fork {
                pid,
                ppid,
                tid,
                ptid,
            }) => {
                if self.labeler.wanted_by_pid(pid) == Some(false) {
                    return;
                }
                self.threads.inherit(tid, ptid);
                if pid != ppid {
                    let child = match self.procs.get(&ppid) {
                        Some(parent) => Process {
                            mappings: parent.mappings.clone(),
                            series: parent.series,
                            wanted: parent.wanted,
                            comm: parent.comm.clone(),
                            ..Process::default()
                        },
                        None => self.load_process(pid),
                    };
                    self.procs.insert(pid, child);
                }
            }
            Some(Record::Exit { pid, tid }) => {
                if self.labeler.wanted_by_pid(pid) == Some(false) {
                    return;
                }
                self.exited_threads.push(tid);
                if pid == tid
                    && let Some(p) = self.procs.get_mut(&pid)
                {
                    p.exited = true;
                }
            }
            Some(Record::Lost(n)) => Metrics::add(&self.metrics.samples_lost, n),
            Some(Record::Other) => {}
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
        if !kernel_thread && !s.stack.is_empty() {
            let ip = s.regs[2];
            if !proc.reloaded && proc.resolve(ip).module == ANON {
                // A mapping we have no record of (the process started while
                // its records were in flight): read /proc once.
                proc.reloaded = true;
                let mappings = procs::read_maps(s.pid, &mut self.modules);
                if !mappings.is_empty() {
                    proc.mappings = mappings;
                    proc.unwinder = None;
                }
            }
            proc.unwinder(&mut self.modules);
            let Process {
                unwinder: Some(unwinder),
                mappings,
                ..
            } = &*proc
            else {
                return;
            };
            let ending = unwind::unwind(unwinder, &mut self.cache, s.regs, s.stack, |addr| {
                frames.push(resolve(mappings, addr));
            });
            if ending == Ending::Truncated {
                Metrics::add(&self.metrics.stacks_truncated, 1);
                frames.push(Frame::marker(MARK_TRUNCATED));
            }
        }
        if frames.is_empty() {
            frames.push(Frame::marker(MARK_KERNEL));
        }
        let thread = self.threads.id(s.pid, s.tid, &proc.comm);
        let cpu_ns = match self.kind {
            EventKind::CpuClock if s.period > 0 => s.period,
            _ => self.period_ns,
        };
        self.agg.add(
            series,
            s.pid,
            thread,
            &self.frames,
            Counts { samples: 1, cpu_ns },
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
            agg,
            modules,
            series,
            threads,
        }
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
