//! Opening one sampling perf event per online CPU, for every process.

use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use perf_event::events::{Event, Hardware, Software};
use perf_event::{Builder, SampleFlag};

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
    /// The event used.
    pub kind: EventKind,
    /// Which optional fields samples carry.
    pub layout: SampleLayout,
}

/// What [`open`] needs.
#[derive(Clone, Debug)]
pub struct EventOptions {
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
}

/// Opens the events on every online CPU: hardware cycles if the host has
/// them, else `cpu-clock`.
pub fn open(opts: &EventOptions) -> Result<CpuEvents> {
    let cpus = online_cpus().map_err(Error::Cpus)?;
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
            Ok(s) => samplers.push(s),
            Err(e) if is_permission(&e) => return Err(permission_error()),
            Err(e) => {
                tracing::info!("hardware cycles unavailable ({e}); sampling with cpu-clock");
                kind = EventKind::CpuClock;
            }
        }
    }
    for &cpu in &cpus {
        if kind == EventKind::Cycles && cpu == first {
            continue;
        }
        let opened = match kind {
            EventKind::Cycles => open_one(opts, cpu, Hardware::CPU_CYCLES),
            EventKind::CpuClock => open_one(opts, cpu, Software::CPU_CLOCK),
        };
        match opened {
            Ok(s) => samplers.push(s),
            Err(e) if is_permission(&e) => return Err(permission_error()),
            Err(source) => return Err(Error::PerfOpen { cpu, source }),
        }
    }
    Ok(CpuEvents {
        samplers,
        kind,
        layout: SampleLayout {
            callchain: opts.kernel_stacks,
            user_regs: USER_REGS_COUNT,
        },
    })
}

fn open_one(opts: &EventOptions, cpu: usize, event: impl Event) -> io::Result<perf_event::Sampler> {
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
        .wakeup_watermark(opts.ring_bytes / 4);
    if opts.kernel_stacks {
        b.exclude_callchain_user(true).sample_max_stack(max_stack());
    }
    b.build()?.sampled(opts.ring_bytes)
}

impl CpuEvents {
    /// Starts sampling on every CPU.
    pub fn enable(&mut self) -> Result<()> {
        for (cpu, s) in self.samplers.iter_mut().enumerate() {
            s.enable()
                .map_err(|source| Error::PerfOpen { cpu, source })?;
        }
        Ok(())
    }

    /// Stops sampling on every CPU (records already written stay readable).
    pub fn disable(&mut self) {
        for s in &mut self.samplers {
            let _ = s.disable();
        }
    }

    /// Waits until a ring buffer passes its watermark or `timeout` elapses.
    pub fn wait(&self, timeout: Duration) {
        let mut fds: [libc::pollfd; 64] = [libc::pollfd {
            fd: -1,
            events: 0,
            revents: 0,
        }; 64];
        let n = self.samplers.len().min(fds.len());
        for (slot, s) in fds.iter_mut().zip(&self.samplers) {
            slot.fd = s.as_raw_fd();
            slot.events = libc::POLLIN;
        }
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: `fds` holds `n` initialised pollfd entries and outlives the call.
        unsafe {
            libc::poll(fds.as_mut_ptr(), n as libc::nfds_t, ms);
        }
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
