//! Allocation sampling of chosen processes: uprobes on `malloc`, `calloc`
//! and `realloc` of the libc each one maps ([`super::uprobe`]), one event
//! per function, thread and CPU, all writing into one ring per CPU that
//! [`super::Sampler::drain`] reads with the CPU rings, oldest record first.
//!
//! A sample is one allocation call: its size comes from the argument
//! registers (sampled with the unwinder's), its stack is unwound from the
//! copied user stack as a CPU sample's is (at a function's entry the frame
//! pointer chain says nothing: Debian's libc keeps no frame pointers), and
//! it is summed under the process's series as [`SampleKind::Alloc`]. With
//! one sample every `every` calls, the profile estimates `alloc_objects`
//! as samples x `every` and `alloc_space` as the sampled sizes x `every`.
//!
//! Processes are matched when the sampler opens and again at every window
//! cut, so a process started later is probed from the next interval on.
//! The events are not inherited (the kernel cannot copy a uprobe event
//! into a new task: see [`TaskSampling::inherit`]): a thread that appears
//! in a probed process is probed when the drain reads its `FORK` record,
//! so its first calls, up to a drain period's worth, are not seen. Child
//! processes are matched on their own, and an `exec` removes the probes
//! (the process is matched again as the program it became).

use std::ffi::CString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hashbrown::{HashMap, HashSet};

use super::State;
use super::events::{self, Output, Sampling, TaskSampling};
use super::procs;
use super::record::{Sample, SampleLayout};
use super::stacks::Stack;
use super::uprobe::{self, AllocFn, Uprobe};
use crate::aggregate::{Counts, SampleKind};
use crate::config::{AllocTargets, Config};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::unwind::{USER_REGS_COUNT, USER_REGS_MASK};
use perf_event::Counter;

/// The allocation samples' registers: SI and DI (`PERF_REG_X86_SI`, `_DI`:
/// the first two arguments) and the unwinder's BP, SP, IP.
pub const ALLOC_REGS_MASK: u64 = USER_REGS_MASK | (1 << 4) | (1 << 5);

/// Shortest time between two catch-ups of probed threads with `/proc`
/// after records were lost.
const RECONCILE_AFTER_LOSS: Duration = Duration::from_secs(1);

/// Rescans at which a process that could not be probed is tried: a process
/// caught while it starts (its libc being mapped) succeeds at the next.
const MAX_ATTEMPTS: u32 = 3;

/// How allocation samples are laid out.
pub const ALLOC_LAYOUT: SampleLayout = SampleLayout {
    // See `TaskSampling::sampling`: asking for the period would sample
    // every call.
    period: false,
    callchain: false,
    user_regs: USER_REGS_COUNT + 2,
};

/// The probes of every matched process and the rings they write into.
pub struct AllocEvents {
    targets: AllocTargets,
    setup: Setup,
    attached: HashMap<u32, Probed>,
    // Failed attempts per process; given up after `MAX_ATTEMPTS`.
    failed: HashMap<u32, u32>,
    own_pid: u32,
    last_reconcile: Instant,
}

/// What opening a probe takes.
struct Setup {
    cpus: Vec<usize>,
    pmu: u32,
    spec: TaskSampling,
    /// One ring per CPU, in the order of `cpus`.
    rings: Vec<perf_event::Sampler>,
}

impl Setup {
    /// Probes one thread of a process on every CPU, enabled; no event when
    /// any could not be opened (the thread ended meanwhile, most likely).
    fn thread(&self, p: &Probed, pid: u32, tid: u32) -> Vec<Counter> {
        let mut events = Vec::with_capacity(AllocFn::ALL.len() * self.cpus.len());
        for &offset in &p.offsets {
            let uprobe = || Uprobe::new(self.pmu, Arc::clone(&p.path), offset);
            match events::open_thread(tid, &self.cpus, uprobe, &self.spec, &self.rings) {
                Ok(opened) => events.extend(opened),
                Err(e) => {
                    tracing::debug!(pid, tid, error = %e, "cannot probe a new thread");
                    return Vec::new();
                }
            }
        }
        for event in &mut events {
            let _ = event.enable();
        }
        events
    }
}

/// One probed process.
struct Probed {
    /// The libc to probe, as `/proc/PID/map_files/...`.
    path: Arc<CString>,
    /// File offsets of [`AllocFn::ALL`] in it.
    offsets: [u64; 3],
    /// Each thread's events (one per function and CPU).
    threads: HashMap<u32, Vec<Counter>>,
}

/// What the sampling state keeps about probed processes.
#[derive(Default)]
pub(super) struct AllocState {
    /// File offsets of [`AllocFn::ALL`] in each probed libc, by module id.
    pub(super) fns: HashMap<u32, [u64; 3]>,
    /// Probed processes: their `MMAP2`, `COMM`, `FORK` and `EXIT` records
    /// are kept even when the CPU targets exclude them.
    pub(super) pids: HashSet<u32>,
    /// Probed processes that exited or exec'd since the last rescan.
    pub(super) ended: Vec<u32>,
    /// Threads (pid, tid) that appeared in probed processes.
    pub(super) new_threads: Vec<(u32, u32)>,
    /// Threads (pid, tid) of probed processes that exited.
    pub(super) gone_threads: Vec<(u32, u32)>,
    /// A CPU ring lost records since the last catch-up: thread records of
    /// probed processes may be among them.
    pub(super) records_lost: bool,
    /// Calls per sample.
    pub(super) every: u64,
    /// Allocation samples summed into windows.
    pub(super) samples: u64,
    /// Samples at an address that is no probed function's entry.
    pub(super) unknown: u64,
}

impl AllocEvents {
    /// The rings, one on each of `cpus` (the online CPUs), if the
    /// configuration names any process; the processes are probed by
    /// [`AllocEvents::rescan`].
    pub(super) fn open(config: &Config, cpus: Vec<usize>) -> Result<Option<AllocEvents>> {
        if config.alloc.is_empty() {
            return Ok(None);
        }
        let pmu = uprobe::pmu_type().map_err(Error::UprobesUnavailable)?;
        let rings = events::open_rings(&cpus, config.ring_buffer_size(cpus.len()))?;
        Ok(Some(AllocEvents {
            targets: config.alloc.clone(),
            setup: Setup {
                cpus,
                pmu,
                spec: TaskSampling {
                    sampling: Sampling::Period(config.alloc.every),
                    regs_mask: ALLOC_REGS_MASK,
                    stack_bytes: config.stack_bytes,
                    // The host-wide CPU events report every process's records.
                    side_band: false,
                    inherit: false,
                    remove_on_exec: true,
                },
                rings,
            },
            attached: HashMap::new(),
            failed: HashMap::new(),
            own_pid: std::process::id(),
            last_reconcile: Instant::now(),
        }))
    }

    /// The rings, one per CPU.
    pub(super) fn rings_mut(&mut self) -> &mut [perf_event::Sampler] {
        &mut self.setup.rings
    }

    /// Number of probe events open (per function, thread and CPU).
    pub fn event_count(&self) -> usize {
        self.attached
            .values()
            .flat_map(|p| p.threads.values())
            .map(Vec::len)
            .sum()
    }

    /// Number of processes probed.
    pub fn process_count(&self) -> usize {
        self.attached.len()
    }

    /// Stops every probe (records already written stay readable).
    pub fn disable(&mut self) {
        for p in self.attached.values_mut() {
            for event in p.threads.values_mut().flatten() {
                let _ = event.disable();
            }
        }
    }

    /// Probes the threads that appeared in probed processes and closes the
    /// events of those that ended, as their records were read; after lost
    /// records, at most once a second, lists the threads in `/proc`. Called
    /// after each drain; opens events only when a thread appears.
    pub(super) fn follow_threads(&mut self, state: &mut State) {
        if state.alloc.records_lost && self.last_reconcile.elapsed() >= RECONCILE_AFTER_LOSS {
            state.alloc.records_lost = false;
            self.reconcile_threads();
        }
        for (pid, tid) in state.alloc.new_threads.drain(..) {
            let Some(p) = self.attached.get_mut(&pid) else {
                continue;
            };
            if !p.threads.contains_key(&tid) {
                let events = self.setup.thread(p, pid, tid);
                if !events.is_empty() {
                    p.threads.insert(tid, events);
                }
            }
        }
        for (pid, tid) in state.alloc.gone_threads.drain(..) {
            if let Some(p) = self.attached.get_mut(&pid) {
                p.threads.remove(&tid);
            }
        }
    }

    /// Makes each probed process's probed threads those `/proc` lists: the
    /// catch-up for thread records read late (the sampling thread waits
    /// while the processing thread is behind) or lost (a full ring).
    fn reconcile_threads(&mut self) {
        self.last_reconcile = Instant::now();
        for (&pid, p) in &mut self.attached {
            let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                continue;
            };
            let live: HashSet<u32> = dir
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            p.threads.retain(|tid, _| live.contains(tid));
            for tid in live {
                if !p.threads.contains_key(&tid) {
                    tracing::debug!(pid, tid, "probing a thread no record announced yet");
                    let events = self.setup.thread(p, pid, tid);
                    if !events.is_empty() {
                        p.threads.insert(tid, events);
                    }
                }
            }
        }
    }

    /// Drops the probes of processes that ended or exec'd, catches up with
    /// the threads of the others, and probes every matching process not
    /// probed yet. Reads `/proc`: called when the sampler opens and once per
    /// window, never per sample.
    pub(super) fn rescan(&mut self, state: &mut State) {
        if state.alloc.unknown > 0 {
            tracing::warn!(
                samples = state.alloc.unknown,
                "allocation samples at no probed function's entry were dropped"
            );
            state.alloc.unknown = 0;
        }
        let ended = std::mem::take(&mut state.alloc.ended);
        let alive = |pid: u32| Path::new(&format!("/proc/{pid}")).exists();
        self.attached.retain(|&pid, _| {
            let keep = alive(pid) && !ended.contains(&pid);
            if !keep {
                state.alloc.pids.remove(&pid);
                tracing::debug!(pid, "allocation probes removed");
            }
            keep
        });
        self.failed
            .retain(|&pid, _| alive(pid) && !ended.contains(&pid));
        self.reconcile_threads();
        let candidates = if self.targets.executables.is_empty() {
            self.targets.pids.clone()
        } else {
            procs::list_pids()
        };
        for pid in candidates {
            let attempts = self.failed.get(&pid).copied().unwrap_or(0);
            let skip = pid == self.own_pid
                || self.attached.contains_key(&pid)
                || attempts >= MAX_ATTEMPTS
                || !alive(pid);
            if skip {
                continue;
            }
            let exe = exe_name(pid);
            if !self.targets.matches(pid, exe.as_deref()) {
                continue;
            }
            let t0 = Instant::now();
            match self.attach(pid, state) {
                Ok(n) => tracing::info!(
                    pid,
                    exe = exe.as_deref().unwrap_or(""),
                    events = n,
                    every = self.targets.every,
                    ms = t0.elapsed().as_millis(),
                    "sampling allocations"
                ),
                Err(e) if attempts + 1 < MAX_ATTEMPTS => {
                    tracing::debug!("{e}; trying again at the next interval");
                    self.failed.insert(pid, attempts + 1);
                }
                Err(e) => {
                    tracing::warn!("{e}");
                    self.failed.insert(pid, MAX_ATTEMPTS);
                }
            }
        }
    }

    /// Probes the allocation functions of `pid`'s libc on every thread and
    /// CPU; returns the number of events.
    fn attach(&mut self, pid: u32, state: &mut State) -> Result<usize> {
        let fail = |reason: String| Error::AllocProbe { pid, reason };
        let (module, start, end) = state
            .libc_of(pid)
            .ok_or_else(|| fail("it maps no libc (a static binary?)".to_owned()))?;
        let image = state
            .modules
            .image(module)
            .ok_or_else(|| fail("its libc is not a readable ELF file".to_owned()))?;
        let mut offsets = [0u64; 3];
        for (slot, f) in offsets.iter_mut().zip(AllocFn::ALL) {
            *slot = image
                .exported_function_offset(f.symbol())
                .ok_or_else(|| fail(format!("its libc exports no {}", f.symbol())))?;
        }
        // The mapping's own link names the mapped file whatever the
        // process's mount namespace, and even after a package upgrade
        // replaced the file on disk.
        let path = CString::new(format!("/proc/{pid}/map_files/{start:x}-{end:x}"))
            .map_err(|e| fail(e.to_string()))?;
        let path = Arc::new(path);
        let mut threads: HashMap<u32, Vec<Counter>> = HashMap::new();
        for offset in offsets {
            let setup = &self.setup;
            let events = events::open_process(
                pid,
                &setup.cpus,
                || Uprobe::new(setup.pmu, Arc::clone(&path), offset),
                &setup.spec,
                Output::Into(&setup.rings),
            )
            .map_err(|e| match e {
                Error::PerfPermission { .. } => fail(
                    "permission denied: a uprobe needs CAP_SYS_ADMIN since Linux 6.16 \
                     (CAP_PERFMON before); run the agent as root or add CAP_SYS_ADMIN \
                     (see the packaged unit's drop-in)"
                        .to_owned(),
                ),
                e => fail(e.to_string()),
            })?;
            for (tid, event) in events.followers {
                threads.entry(tid).or_default().push(event);
            }
        }
        for event in threads.values_mut().flatten() {
            event
                .enable()
                .map_err(|e| fail(format!("cannot enable a probe: {e}")))?;
        }
        state.alloc.fns.insert(module, offsets);
        state.alloc.pids.insert(pid);
        let probed = Probed {
            path,
            offsets,
            threads,
        };
        let n = probed.threads.values().map(Vec::len).sum();
        self.attached.insert(pid, probed);
        Ok(n)
    }
}

impl State {
    /// The module and address range of the libc `pid` maps, from
    /// `/proc/PID/maps` read now: the probe names the mapping by its exact
    /// range, which the records read so far may not show yet.
    fn libc_of(&mut self, pid: u32) -> Option<(u32, u64, u64)> {
        let mappings = procs::read_maps(pid, &mut self.modules);
        let found = mappings
            .iter()
            .find(|m| {
                self.modules
                    .info(m.module)
                    .is_some_and(|i| uprobe::is_libc(&i.name))
            })
            .map(|m| (m.module, m.start, m.end));
        let p = self.procs.entry(pid).or_insert_with(|| procs::Process {
            comm: procs::read_comm(&format!("/proc/{pid}/comm")).unwrap_or_default(),
            ..procs::Process::default()
        });
        p.mappings = mappings;
        p.unwinder = None;
        found
    }

    /// Turns an allocation sample into a stack with its size, under the
    /// process's series.
    pub(super) fn on_alloc_sample(&mut self, s: &Sample<'_>) {
        Metrics::add(&self.metrics.samples, 1);
        if s.abi == 0 {
            // A probe fires in user space; no registers means no call to read.
            self.alloc.unknown += 1;
            return;
        }
        if !self.procs.contains_key(&s.pid) {
            let p = self.load_process(s.pid);
            self.procs.insert(s.pid, p);
        }
        let Some(proc) = self.procs.get_mut(&s.pid) else {
            return;
        };
        if proc.series.is_none() {
            let d = self
                .labeler
                .describe(s.pid, &proc.fallback_name(&self.modules));
            proc.wanted = Some(d.wanted);
            proc.series = Some(self.series.intern(d.labels));
        }
        let Some(series) = proc.series else {
            return;
        };
        self.frames.clear();
        self.unwinding.push_user_frames(
            proc,
            s,
            &mut self.modules,
            &mut self.frames,
            &self.metrics,
        );
        // The sampled IP is the probed function's entry.
        let entry = proc.resolve(s.regs[2]);
        let called = self
            .alloc
            .fns
            .get(&entry.module)
            .and_then(|offsets| AllocFn::at(offsets, entry.addr));
        let Some(called) = called else {
            self.alloc.unknown += 1;
            return;
        };
        let [si, di] = s.args;
        let Some(bytes) = called.requested(di, si) else {
            return;
        };
        let thread = self.threads.id(s.pid, s.tid, &proc.comm);
        self.alloc.samples += 1;
        let stack = Stack {
            kind: SampleKind::Alloc,
            series,
            thread,
            frames: &self.frames,
            counts: Counts {
                samples: 1,
                value: bytes,
            },
        };
        self.unwinding.add(&mut self.agg, s, stack, &self.metrics);
    }
}

/// The basename of a process's executable.
fn exe_name(pid: u32) -> Option<String> {
    let path = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let name = path.file_name()?.to_string_lossy();
    Some(name.trim_end_matches(" (deleted)").to_owned())
}
