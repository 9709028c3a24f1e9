//! The agent's plain calls into the C library, each behind a safe
//! function: clocks, its own resource use, an eventfd, waiting on
//! descriptors, memory advice, limits.
//!
//! The rest of the agent's unsafe code lives where the memory it touches
//! does: `bpf/` (the `bpf(2)` calls and a mapped ring buffer),
//! `sample/events.rs` (perf's rings), `unwind/live.rs` (reading another
//! process's stack into buffers it sizes), `unwind/elf.rs` (mapped files)
//! and `embed/` (the allocator hook and the timer signal).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Now on `CLOCK_MONOTONIC`, in nanoseconds: the clock the sampler's
/// events and the BPF program stamp their records with.
pub fn monotonic_ns() -> u64 {
    let ts = clock(libc::CLOCK_MONOTONIC);
    u64::try_from(ts.as_nanos()).unwrap_or(u64::MAX)
}

/// CPU time (user + system) the calling thread has used, with nanosecond
/// resolution (`/proc` counts in clock ticks, too coarse for one window's
/// work).
pub fn thread_cpu_time() -> Duration {
    clock(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn clock(id: libc::clockid_t) -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes to the timespec we own.
    if unsafe { libc::clock_gettime(id, &mut ts) } != 0 {
        return Duration::ZERO;
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// CPU time (user + system) this process has used, from `getrusage`
/// (microseconds, where `/proc/self/stat` counts clock ticks).
pub fn process_cpu_time() -> Option<Duration> {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes to the struct we own.
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return None;
    }
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec)
            .ok()?
            .checked_mul(1_000_000)?
            .checked_add(u64::try_from(t.tv_usec).ok()?)
    };
    let total = micros(usage.ru_utime)?.checked_add(micros(usage.ru_stime)?)?;
    Some(Duration::from_micros(total))
}

/// The size of a memory page.
pub fn page_size() -> Option<usize> {
    // SAFETY: sysconf has no preconditions.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()
}

/// The calling thread's id.
pub fn thread_id() -> i32 {
    // SAFETY: gettid has no preconditions.
    unsafe { libc::gettid() }
}

/// True when the process runs as root.
#[cfg(test)]
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Where the kernel mapped this process's vDSO, if it did.
pub fn vdso_base() -> Option<u64> {
    // SAFETY: getauxval has no preconditions.
    let base = unsafe { libc::getauxval(libc::AT_SYSINFO_EHDR) };
    (base != 0).then_some(base)
}

/// Hands the C allocator's free pages back to the system.
pub fn release_free_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the C allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Raises the soft limit of open files to the hard limit.
pub fn raise_open_files_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// Tells the kernel this process no longer needs the pages of
/// `[start, start + len)`, a mapping of a file it never wrote: they come
/// back from the file if read again. False when the kernel refused.
pub fn drop_file_pages(start: u64, len: u64) -> bool {
    let Ok(len) = usize::try_from(len) else {
        return false;
    };
    // SAFETY: the caller passes a whole read-only file mapping of this
    // process: dropping its pages loses nothing and frees no memory Rust
    // owns.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) == 0 }
}

/// Waits up to `timeout` (rounded up to a millisecond, so that a short
/// wait does not return at once) until one of `fds` is readable; marks
/// the readable ones in `ready` (as many as `fds`, at most 64 are
/// looked at).
pub fn wait_readable(fds: &[RawFd], timeout: Duration, ready: &mut [bool]) {
    let mut polled = [libc::pollfd {
        fd: -1,
        events: 0,
        revents: 0,
    }; 64];
    let n = fds.len().min(polled.len());
    for (p, &fd) in polled.iter_mut().zip(fds) {
        p.fd = fd;
        p.events = libc::POLLIN;
    }
    let ms = libc::c_int::try_from(timeout.as_micros().div_ceil(1000)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `polled` holds `n` initialised pollfd entries and outlives the call.
    unsafe { libc::poll(polled.as_mut_ptr(), n as libc::nfds_t, ms) };
    for (r, p) in ready.iter_mut().zip(&polled[..n]) {
        *r = p.revents & libc::POLLIN != 0;
    }
}

/// An eventfd: one thread wakes another's [`wait_readable`].
pub struct EventFd(OwnedFd);

impl EventFd {
    /// A non-blocking eventfd.
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd has no memory preconditions.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor the kernel just returned to us.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Makes the descriptor readable.
    pub fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes we own to our eventfd.
        unsafe { libc::write(self.fd(), (&one as *const u64).cast(), 8) };
    }

    /// Reads the count back to zero.
    pub fn clear(&self) {
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a u64 we own.
        unsafe { libc::read(self.fd(), (&mut count as *mut u64).cast(), 8) };
    }

    /// The descriptor, to wait on.
    pub fn fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_move_forward() {
        let (a, ta) = (monotonic_ns(), thread_cpu_time());
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        std::hint::black_box(x);
        assert!(monotonic_ns() > a && thread_cpu_time() > ta);
        assert!(process_cpu_time().is_some_and(|t| !t.is_zero()));
        assert!(page_size().is_some_and(|p| p.is_power_of_two()));
        assert!(thread_id() > 0);
    }

    #[test]
    fn an_eventfd_wakes_a_wait() {
        let e = EventFd::new().expect("eventfd");
        let mut ready = [false];
        wait_readable(&[e.fd()], Duration::from_millis(1), &mut ready);
        assert!(!ready[0]);
        e.signal();
        let started = std::time::Instant::now();
        wait_readable(&[e.fd()], Duration::from_secs(5), &mut ready);
        assert!(ready[0] && started.elapsed() < Duration::from_secs(1));
        e.clear();
        wait_readable(&[e.fd()], Duration::ZERO, &mut ready);
        assert!(!ready[0]);
    }

    #[test]
    fn a_short_wait_waits() {
        let e = EventFd::new().expect("eventfd");
        let started = std::time::Instant::now();
        wait_readable(&[e.fd()], Duration::from_micros(300), &mut [false]);
        assert!(started.elapsed() >= Duration::from_micros(300));
    }
}
