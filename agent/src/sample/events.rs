//! Opening sampling perf events: one per online CPU for every process
//! ([`open`]), or per thread and CPU for one process ([`open_process`]:
//! the embedded profiler's CPU, and the allocation probes).

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use perf_event::events::{Event, Hardware, Software};
use perf_event::{Builder, Clock, SampleFlag};

use super::record::SampleLayout;
use crate::error::{Error, Result};
use crate::unwind::{USER_REGS_COUNT, USER_REGS_MASK};

/// Which event drives sampling.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// Hardware CPU cycles (real hosts).
    Cycles,
    /// The `cpu-clock` software timer (VMs without a PMU).
    CpuClock,
}

/// The opened events, one per online CPU, disabled until [`CpuEvents::enable`].
pub struct CpuEvents {
    /// The samplers with their ring buffers, one per CPU.
    pub samplers: Vec<perf_event::Sampler>,
    /// Events of one process's other threads, writing into the sampler of
    /// their CPU (own-process scope only).
    pub followers: Vec<perf_event::Counter>,
    /// The event used.
    pub kind: EventKind,
    /// Which optional fields samples carry.
    pub layout: SampleLayout,
}

/// What [`open`] needs.
#[derive(Clone, Debug)]
pub struct EventOptions {
    /// The online CPUs (see [`online_cpus`]).
    pub cpus: Vec<usize>,
    /// Samples per second per CPU.
    pub frequency: u32,
    /// Bytes of user stack copied per sample.
    pub stack_bytes: u32,
    /// Ring buffer bytes per CPU (power of two).
    pub ring_bytes: usize,
    /// Ask for the kernel callchain.
    pub kernel_stacks: bool,
    /// Force `cpu-clock` even where hardware cycles exist.
    pub force_cpu_clock: bool,
    /// Sample only this process's threads, in user space (what
    /// `perf_event_paranoid` <= 2 allows without privilege), instead of
    /// every process.
    pub own_process: Option<u32>,
}

/// Opens the events on every online CPU: hardware cycles if the host has
/// them, else `cpu-clock`.
pub fn open(opts: &EventOptions) -> Result<CpuEvents> {
    if let Some(pid) = opts.own_process {
        return open_own_process(opts, pid);
    }
    let cpus = &opts.cpus;
    let first = *cpus
        .first()
        .ok_or_else(|| Error::Cpus(io::Error::new(io::ErrorKind::NotFound, "no online CPU")))?;
    let mut kind = if opts.force_cpu_clock {
        EventKind::CpuClock
    } else {
        EventKind::Cycles
    };
    let mut samplers = Vec::with_capacity(cpus.len());
    if kind == EventKind::Cycles {
        match open_one(opts, first, Hardware::CPU_CYCLES) {
            Ok(s) => samplers.push(s?),
            Err(e) if is_permission(&e) => return Err(permission_error()),
            Err(e) => {
                tracing::info!("hardware cycles unavailable ({e}); sampling with cpu-clock");
                kind = EventKind::CpuClock;
            }
        }
    }
    for &cpu in cpus {
        if kind == EventKind::Cycles && cpu == first {
            continue;
        }
        let opened = match kind {
            EventKind::Cycles => open_one(opts, cpu, Hardware::CPU_CYCLES),
            EventKind::CpuClock => open_one(opts, cpu, Software::CPU_CLOCK),
        };
        match opened {
            Ok(s) => samplers.push(s?),
            Err(e) if is_permission(&e) => return Err(permission_error()),
            Err(source) => return Err(Error::PerfOpen { cpu, source }),
        }
    }
    Ok(CpuEvents {
        samplers,
        followers: Vec::new(),
        kind,
        layout: SampleLayout {
            period: true,
            callchain: opts.kernel_stacks,
            user_regs: USER_REGS_COUNT,
        },
    })
}

/// `PERF_EVENT_IOC_SET_OUTPUT`: send an event's records to another event's
/// ring buffer (same CPU).
const PERF_EVENT_IOC_SET_OUTPUT: libc::c_ulong = 0x2405;

/// How often a sampling event samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampling {
    /// About this many samples per second (the kernel adjusts the period).
    Frequency(u32),
    /// One sample every this many events.
    Period(u64),
}

/// What each event of [`open_process`] records.
#[derive(Clone, Copy, Debug)]
pub struct TaskSampling {
    /// Frequency or period. Samples carry their period only with a
    /// frequency: with a fixed period, a software or probe event asked for
    /// its period writes a sample at every event (the kernel's
    /// `perf_swevent_event`), whatever the period.
    pub sampling: Sampling,
    /// The `REGS_USER` mask.
    pub regs_mask: u64,
    /// Bytes of user stack copied per sample.
    pub stack_bytes: u32,
    /// Also record `MMAP2`, `COMM`, `FORK` and `EXIT`: needed when no
    /// host-wide event reports them (the embedded profiler's own process).
    pub side_band: bool,
    /// Follow the threads and child processes created later (`inherit`).
    /// Not for uprobes: to copy a uprobe event into a new task the kernel
    /// reads the probe's path again, at the address the opener gave, in
    /// the memory of the task that clones; that fails, and so does the
    /// task's `clone` (EFAULT): the traced program could no longer start a
    /// thread.
    pub inherit: bool,
    /// Leave a thread when it execs, so that a probe does not follow a
    /// process into another program.
    pub remove_on_exec: bool,
}

/// Where the events of [`open_process`] write their records.
#[derive(Clone, Copy)]
pub enum Output<'a> {
    /// Per CPU, the main thread's event owns a new ring of this many bytes.
    NewRings(usize),
    /// Into existing rings, one per CPU, in the order of the CPUs given.
    Into(&'a [perf_event::Sampler]),
}

/// The events [`open_process`] opened.
#[derive(Default)]
pub struct ProcessEvents {
    /// Ring owners, one per CPU (none with [`Output::Into`]).
    pub samplers: Vec<perf_event::Sampler>,
    /// Every other event with its thread id, its records redirected into
    /// the ring of its CPU.
    pub followers: Vec<(u32, perf_event::Counter)>,
}

/// Opens `event()` on every thread of `pid`, on each of `cpus`, disabled.
///
/// Each event is a per-task event on one CPU. Per CPU, either the main
/// thread's event owns a new ring and the other threads' events write into
/// it, or every event writes into a ring given: only events of the same
/// CPU may share a ring. With [`TaskSampling::inherit`], threads and child
/// processes created later are followed into the same rings (a per-task
/// event on any CPU would need no more than one descriptor per thread, but
/// the kernel refuses to map the ring of an inherited per-task event);
/// without it, [`open_thread`] adds threads as they appear. A thread that
/// ends while its events are opened is skipped; the main thread's failure
/// is an error.
pub fn open_process<E: Event>(
    pid: u32,
    cpus: &[usize],
    event: impl Fn() -> E,
    spec: &TaskSampling,
    output: Output<'_>,
) -> Result<ProcessEvents> {
    let threads: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .map(|dir| {
            dir.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&tid| tid != pid)
                .collect()
        })
        .unwrap_or_default();
    let mut out = ProcessEvents::default();
    for (i, &cpu) in cpus.iter().enumerate() {
        let mut b = task_builder(spec, pid, cpu, event());
        if let Output::NewRings(bytes) = output {
            // The agent drains on a timer; the watermark serves callers of
            // `Sampler::wait`.
            b.wakeup_watermark(bytes / 2);
        }
        let main = b.build().map_err(open_error(cpu))?;
        let ring = match output {
            Output::NewRings(bytes) => {
                out.samplers
                    .push(main.sampled(bytes).map_err(ring_error(cpu, bytes))?);
                out.samplers.last()
            }
            Output::Into(rings) => {
                let ring = ring_of(rings, i, cpu)?;
                redirect(&main, ring).map_err(open_error(cpu))?;
                out.followers.push((pid, main));
                Some(ring)
            }
        };
        let Some(ring) = ring else {
            continue;
        };
        for &tid in &threads {
            let counter = match task_builder(spec, tid, cpu, event()).build() {
                Ok(counter) => counter,
                // A thread may end between the listing and here.
                Err(e) => {
                    tracing::debug!(pid, tid, cpu, error = %e, "no event on a thread");
                    continue;
                }
            };
            redirect(&counter, ring).map_err(open_error(cpu))?;
            out.followers.push((tid, counter));
        }
    }
    Ok(out)
}

/// Opens `event()` on one thread, on each of `cpus`, disabled, writing
/// into `rings` (one per CPU): a thread that appeared after
/// [`open_process`] without [`TaskSampling::inherit`].
pub fn open_thread<E: Event>(
    tid: u32,
    cpus: &[usize],
    event: impl Fn() -> E,
    spec: &TaskSampling,
    rings: &[perf_event::Sampler],
) -> Result<Vec<perf_event::Counter>> {
    let mut out = Vec::with_capacity(cpus.len());
    for (i, &cpu) in cpus.iter().enumerate() {
        let ring = ring_of(rings, i, cpu)?;
        let counter = task_builder(spec, tid, cpu, event())
            .build()
            .map_err(open_error(cpu))?;
        redirect(&counter, ring).map_err(open_error(cpu))?;
        out.push(counter);
    }
    Ok(out)
}

fn ring_of(rings: &[perf_event::Sampler], i: usize, cpu: usize) -> Result<&perf_event::Sampler> {
    rings.get(i).ok_or_else(|| Error::PerfOpen {
        cpu,
        source: io::Error::new(io::ErrorKind::NotFound, "no ring for this CPU"),
    })
}

/// The error for a failure to open or link an event on `cpu`.
/// Mapping a ring fails with EPERM past the locked-memory allowance: not
/// the permission problem `open_error` describes.
fn ring_error(cpu: usize, bytes: usize) -> impl Fn(io::Error) -> Error {
    move |source| match source.raw_os_error() {
        Some(libc::EPERM) | Some(libc::ENOMEM) => Error::RingMap {
            cpu,
            bytes,
            mlock_kb: std::fs::read_to_string("/proc/sys/kernel/perf_event_mlock_kb")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".to_owned()),
            source,
        },
        _ => Error::PerfOpen { cpu, source },
    }
}

fn open_error(cpu: usize) -> impl Fn(io::Error) -> Error {
    move |source| match is_permission(&source) {
        true => permission_error(),
        false => Error::PerfOpen { cpu, source },
    }
}

/// Sends the records of `event` to the ring of `ring` (same CPU).
fn redirect(event: &perf_event::Counter, ring: &perf_event::Sampler) -> io::Result<()> {
    // SAFETY: both descriptors are open perf events owned by the caller's
    // values; the ioctl only links them.
    let rc = unsafe {
        libc::ioctl(
            event.as_raw_fd(),
            PERF_EVENT_IOC_SET_OUTPUT as _,
            ring.as_raw_fd(),
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Rings that record nothing themselves, one per CPU: the events of
/// [`open_process`] with [`Output::Into`] write into them, whichever
/// process they follow, so processes can come and go without a ring of
/// their own. Needs the right to observe every process (root or
/// `CAP_PERFMON`), as the host agent has.
pub fn open_rings(cpus: &[usize], ring_bytes: usize) -> Result<Vec<perf_event::Sampler>> {
    cpus.iter()
        .map(|&cpu| {
            let mut b = Builder::new(Software::DUMMY);
            b.any_pid()
                .one_cpu(cpu)
                .clockid(Clock::MONOTONIC)
                .wakeup_watermark(ring_bytes / 2);
            b.build()
                .map_err(open_error(cpu))?
                .sampled(ring_bytes)
                .map_err(ring_error(cpu, ring_bytes))
        })
        .collect()
}

/// The embedded profiler's own process: hardware cycles where the host has
/// them, else `cpu-clock`, into one new ring per CPU.
fn open_own_process(opts: &EventOptions, pid: u32) -> Result<CpuEvents> {
    let cpus = &opts.cpus;
    let first = *cpus
        .first()
        .ok_or_else(|| Error::Cpus(io::Error::new(io::ErrorKind::NotFound, "no online CPU")))?;
    let spec = TaskSampling {
        sampling: Sampling::Frequency(opts.frequency),
        regs_mask: USER_REGS_MASK,
        stack_bytes: opts.stack_bytes,
        side_band: true,
        inherit: true,
        remove_on_exec: false,
    };
    let mut kind = if opts.force_cpu_clock {
        EventKind::CpuClock
    } else {
        EventKind::Cycles
    };
    if kind == EventKind::Cycles
        && let Err(e) = task_builder(&spec, pid, first, Hardware::CPU_CYCLES).build()
    {
        if is_permission(&e) {
            return Err(permission_error());
        }
        tracing::info!("hardware cycles unavailable ({e}); sampling with cpu-clock");
        kind = EventKind::CpuClock;
    }
    let output = Output::NewRings(opts.ring_bytes);
    let events = match kind {
        EventKind::Cycles => open_process(pid, cpus, || Hardware::CPU_CYCLES, &spec, output),
        EventKind::CpuClock => open_process(pid, cpus, || Software::CPU_CLOCK, &spec, output),
    }?;
    Ok(CpuEvents {
        samplers: events.samplers,
        followers: events.followers.into_iter().map(|(_, e)| e).collect(),
        kind,
        layout: SampleLayout {
            period: true,
            callchain: false,
            user_regs: USER_REGS_COUNT,
        },
    })
}

fn task_builder(spec: &TaskSampling, tid: u32, cpu: usize, event: impl Event) -> Builder<'static> {
    let mut flags = SampleFlag::IP
        | SampleFlag::TID
        | SampleFlag::TIME
        | SampleFlag::CPU
        | SampleFlag::REGS_USER
        | SampleFlag::STACK_USER;
    if let Sampling::Frequency(_) = spec.sampling {
        flags |= SampleFlag::PERIOD;
    }
    let mut b = Builder::new(event);
    b.observe_pid(tid as libc::pid_t)
        .one_cpu(cpu)
        .inherit(spec.inherit)
        .exclude_kernel(true)
        .exclude_hv(true)
        .sample(flags)
        .sample_regs_user(spec.regs_mask)
        .sample_stack_user(spec.stack_bytes)
        .sample_id_all(true)
        .clockid(Clock::MONOTONIC)
        .remove_on_exec(spec.remove_on_exec);
    match spec.sampling {
        Sampling::Frequency(hz) => b.sample_frequency(u64::from(hz)),
        Sampling::Period(n) => b.sample_period(n),
    };
    if spec.side_band {
        b.mmap(true)
            .mmap2(true)
            .comm(true)
            .comm_exec(true)
            .task(true);
    }
    b
}

// The ring's mapping error is already an `Error`: it must not be taken for
// the event's (EPERM means different things for the two).
fn open_one(
    opts: &EventOptions,
    cpu: usize,
    event: impl Event,
) -> io::Result<Result<perf_event::Sampler>> {
    let mut flags = SampleFlag::IP
        | SampleFlag::TID
        | SampleFlag::TIME
        | SampleFlag::CPU
        | SampleFlag::PERIOD
        | SampleFlag::REGS_USER
        | SampleFlag::STACK_USER;
    if opts.kernel_stacks {
        flags |= SampleFlag::CALLCHAIN;
    }
    let mut b = Builder::new(event);
    b.any_pid()
        .one_cpu(cpu)
        .sample_frequency(u64::from(opts.frequency))
        .include_kernel()
        .exclude_idle(true)
        .sample(flags)
        .sample_regs_user(USER_REGS_MASK)
        .sample_stack_user(opts.stack_bytes)
        .mmap(true)
        .mmap2(true)
        .comm(true)
        .comm_exec(true)
        .task(true)
        .sample_id_all(true)
        .clockid(Clock::MONOTONIC)
        // The agent drains on a timer (see `agent.rs`); the watermark only
        // serves callers of `Sampler::wait`.
        .wakeup_watermark(opts.ring_bytes / 2);
    if opts.kernel_stacks {
        b.exclude_callchain_user(true).sample_max_stack(max_stack());
    }
    Ok(b.build()?
        .sampled(opts.ring_bytes)
        .map_err(ring_error(cpu, opts.ring_bytes)))
}

impl CpuEvents {
    /// Starts sampling on every CPU.
    pub fn enable(&mut self) -> Result<()> {
        for (cpu, s) in self.samplers.iter_mut().enumerate() {
            s.enable()
                .map_err(|source| Error::PerfOpen { cpu, source })?;
        }
        for f in &mut self.followers {
            f.enable()
                .map_err(|source| Error::PerfOpen { cpu: 0, source })?;
        }
        Ok(())
    }

    /// Stops sampling on every CPU (records already written stay readable).
    pub fn disable(&mut self) {
        for f in &mut self.followers {
            let _ = f.disable();
        }
        for s in &mut self.samplers {
            let _ = s.disable();
        }
    }

    /// Waits until a ring buffer passes its watermark or `timeout` elapses.
    pub fn wait(&self, timeout: Duration) {
        let mut fds = [-1; 64];
        let n = self.samplers.len().min(fds.len());
        for (slot, s) in fds.iter_mut().zip(&self.samplers) {
            *slot = s.as_raw_fd();
        }
        crate::sys::wait_readable(&fds[..n], timeout, &mut [false; 64]);
    }
}

fn is_permission(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

fn permission_error() -> Error {
    let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned());
    Error::PerfPermission { paranoid }
}

fn max_stack() -> u16 {
    std::fs::read_to_string("/proc/sys/kernel/perf_event_max_stack")
        .ok()
        .and_then(|s| s.trim().parse::<u16>().ok())
        .unwrap_or(127)
        .min(127)
}

/// Online CPUs from `/sys/devices/system/cpu/online` (e.g. `0-3,6`).
pub fn online_cpus() -> io::Result<Vec<usize>> {
    let text = std::fs::read_to_string("/sys/devices/system/cpu/online")?;
    parse_cpu_list(&text).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unreadable CPU list {text:?}"),
        )
    })
}

fn parse_cpu_list(text: &str) -> Option<Vec<usize>> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.parse().ok()?, b.parse().ok()?);
                if b < a || b - a > 65536 {
                    return None;
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().ok()?),
        }
    }
    Some(cpus)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists() {
        assert_eq!(parse_cpu_list("0-3,6\n"), Some(vec![0, 1, 2, 3, 6]));
        assert_eq!(parse_cpu_list("0"), Some(vec![0]));
        assert_eq!(parse_cpu_list("3-1"), None);
        assert!(!online_cpus().expect("cpu list").is_empty());
    }
}
