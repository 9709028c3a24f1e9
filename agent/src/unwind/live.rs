//! A thread's stack read from its process with `process_vm_readv`, from a
//! given address upward, a chunk at a time as the unwinder asks for it.
//!
//! A read far above what has been read (a frame whose caller runs on
//! another stack: segmented stacks such as `stacker`'s, coroutines, signal
//! stacks) starts a new window there instead of reading everything in
//! between; a walk may switch windows [`MAX_WINDOWS`] - 1 times.
//!
//! The buffer keeps its capacity between samples, so reading allocates only
//! when a stack deeper than any before is read. Reads are bounded (at most
//! `max_bytes` per sample) and stop at the end of the mapping: the remote
//! side is split at page boundaries, so a read that runs into unmapped
//! memory returns the pages before it.

/// The first read; later ones double, up to [`MAX_CHUNK`].
const FIRST_CHUNK: usize = 16 << 10;
/// The largest single read.
const MAX_CHUNK: usize = 256 << 10;
const PAGE: u64 = 4096;
/// Remote iovecs of one read: one per page of the largest chunk, plus one
/// for a chunk that does not start on a page boundary.
const MAX_IOVECS: usize = (MAX_CHUNK / PAGE as usize) + 1;
/// A read this far past the end of what has been read starts a new window.
const FAR: u64 = 64 << 10;
/// How far below the read that starts a window the window starts.
const WINDOW_SLACK: u64 = 4096;
/// Windows one walk may read.
const MAX_WINDOWS: u32 = 4;

/// The live stack of one thread, from `base` up.
pub(super) struct LiveStack {
    pid: u32,
    base: u64,
    buf: Vec<u8>,
    max_bytes: usize,
    ended: bool,
    windows: u32,
    /// Bytes read from processes so far.
    pub bytes_read: u64,
    /// `process_vm_readv` calls so far.
    pub reads: u64,
}

impl LiveStack {
    pub fn new(max_bytes: usize) -> LiveStack {
        LiveStack {
            pid: 0,
            base: 0,
            buf: Vec::new(),
            max_bytes,
            ended: true,
            windows: 0,
            bytes_read: 0,
            reads: 0,
        }
    }

    /// Starts reading process `pid`'s memory at `base`.
    pub fn start(&mut self, pid: u32, base: u64) {
        self.windows = 1;
        self.window(pid, base);
    }

    fn window(&mut self, pid: u32, base: u64) {
        self.pid = pid;
        self.base = base;
        self.buf.clear();
        self.ended = false;
    }

    /// Bytes at `[addr, addr + len)`, reading more of the stack as needed.
    pub fn bytes(&mut self, addr: u64, len: usize) -> Option<&[u8]> {
        let start = usize::try_from(addr.checked_sub(self.base)?).ok()?;
        let end = start.checked_add(len)?;
        while self.buf.len() < end {
            if !self.fetch() {
                return None;
            }
        }
        self.buf.get(start..end)
    }

    /// The 8 bytes at `addr`, as the unwinder reads them; may start a new
    /// window at `addr`.
    pub fn read_u64(&mut self, addr: u64) -> Result<u64, ()> {
        let read_to = self.base.saturating_add(self.buf.len() as u64);
        let unreachable = self.ended || addr.saturating_add(8) > self.base + self.max_bytes as u64;
        if addr >= read_to && (addr - read_to >= FAR || unreachable) && self.windows < MAX_WINDOWS {
            self.windows += 1;
            // From a little below: the frame's saved registers lie under
            // its return address.
            self.window(self.pid, addr.saturating_sub(WINDOW_SLACK) & !7);
        }
        let bytes = self.bytes(addr, 8).ok_or(())?;
        Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| ())?))
    }

    /// Reads the next chunk; false when nothing more can be read.
    fn fetch(&mut self) -> bool {
        let have = self.buf.len();
        let room = self.max_bytes.saturating_sub(have);
        if self.ended || room == 0 {
            return false;
        }
        let want = have.clamp(FIRST_CHUNK, MAX_CHUNK).min(room);
        self.buf.reserve(want);
        let Some(remote) = self.base.checked_add(have as u64) else {
            return false;
        };
        let local = &mut self.buf.spare_capacity_mut()[..want];
        let n = read_process(self.pid, remote, local);
        self.reads += 1;
        if n == 0 {
            self.ended = true;
            return false;
        }
        self.bytes_read += n as u64;
        // SAFETY: read_process initialised the first `n` bytes of the
        // spare capacity, and n <= want <= spare capacity.
        unsafe { self.buf.set_len(have + n) };
        if n < want {
            self.ended = true;
        }
        true
    }
}

/// Reads `local.len()` bytes of process `pid` at `remote` into `local`;
/// returns how many were read (0 on any error), stopping at the first page
/// that cannot be read.
pub(super) fn read_process(
    pid: u32,
    remote: u64,
    local: &mut [std::mem::MaybeUninit<u8>],
) -> usize {
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut remote_iov = [empty; MAX_IOVECS];
    let mut count = 0;
    let mut at = remote;
    let end = remote.saturating_add(local.len() as u64);
    while at < end && count < MAX_IOVECS {
        let page_end = (at / PAGE + 1).saturating_mul(PAGE).min(end);
        remote_iov[count] = libc::iovec {
            iov_base: at as *mut libc::c_void,
            iov_len: (page_end - at) as usize,
        };
        count += 1;
        at = page_end;
    }
    let len = usize::try_from(at - remote).unwrap_or(0).min(local.len());
    let local_iov = libc::iovec {
        iov_base: local.as_mut_ptr().cast(),
        iov_len: len,
    };
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return 0;
    };
    // SAFETY: the local iovec covers memory we own and may write; the
    // remote iovecs only name addresses in the other process, which the
    // kernel checks. Nothing else is touched.
    let n =
        unsafe { libc::process_vm_readv(pid, &local_iov, 1, remote_iov.as_ptr(), count as _, 0) };
    usize::try_from(n).unwrap_or(0).min(len)
}

/// Reads `out.len()` bytes of process `pid` at `addr` (at most one
/// largest chunk); false unless all were read.
pub fn read_exact(pid: u32, addr: u64, out: &mut [u8]) -> bool {
    // SAFETY: `u8` and `MaybeUninit<u8>` have the same layout, and the
    // kernel only writes initialized bytes into the buffer.
    let local = unsafe {
        std::slice::from_raw_parts_mut(
            out.as_mut_ptr().cast::<std::mem::MaybeUninit<u8>>(),
            out.len(),
        )
    };
    read_process(pid, addr, local) == out.len()
}

/// Reads one 8-byte word of each address in `slots` from process `pid`
/// into `out`, in one call; false unless every word was read.
pub(super) fn read_words(pid: u32, slots: &[u64], out: &mut [u64]) -> bool {
    const MAX: usize = 64;
    if slots.len() > MAX || out.len() < slots.len() {
        return false;
    }
    let empty = libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    };
    let mut remote = [empty; MAX];
    for (iov, &addr) in remote.iter_mut().zip(slots) {
        *iov = libc::iovec {
            iov_base: addr as *mut libc::c_void,
            iov_len: 8,
        };
    }
    let local = libc::iovec {
        iov_base: out.as_mut_ptr().cast(),
        iov_len: slots.len() * 8,
    };
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: `out` holds at least `slots.len()` words we own; the remote
    // addresses are checked by the kernel.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, remote.as_ptr(), slots.len() as _, 0) };
    usize::try_from(n).is_ok_and(|n| n == slots.len() * 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory_and_stops_at_unmapped_pages() {
        let data: Vec<u64> = (0..20_000u64).collect();
        let base = data.as_ptr() as u64;
        let mut live = LiveStack::new(1 << 20);
        live.start(std::process::id(), base);
        assert_eq!(live.read_u64(base + 8 * 7), Ok(7));
        assert_eq!(live.read_u64(base + 8 * 19_999), Ok(19_999));
        // Beyond every mapping: nothing, no panic.
        live.start(std::process::id(), 8);
        assert_eq!(live.read_u64(8), Err(()));
    }

    #[test]
    fn reads_scattered_words() {
        let a = [11u64, 22, 33];
        let slots = [a.as_ptr() as u64, a.as_ptr() as u64 + 16];
        let mut out = [0u64; 2];
        assert!(read_words(std::process::id(), &slots, &mut out));
        assert_eq!(out, [11, 33]);
        assert!(!read_words(std::process::id(), &[16], &mut out));
    }

    #[test]
    fn reads_are_bounded() {
        let data = vec![1u8; 64 << 10];
        let mut live = LiveStack::new(16 << 10);
        live.start(std::process::id(), data.as_ptr() as u64);
        assert!(live.bytes(data.as_ptr() as u64, 16 << 10).is_some());
        assert!(live.bytes(data.as_ptr() as u64 + (16 << 10), 8).is_none());
    }

    #[test]
    fn a_far_read_starts_a_new_window() {
        let mut mem = vec![2u8; 4 << 20];
        mem[..64].fill(1);
        let a = mem.as_ptr() as u64;
        let b = a + (3 << 20);
        let mut live = LiveStack::new(64 << 10);
        live.start(std::process::id(), a);
        assert_eq!(live.read_u64(a), Ok(0x0101_0101_0101_0101));
        assert_eq!(live.read_u64(b), Ok(0x0202_0202_0202_0202));
        assert_eq!(live.read_u64(b - 64), Ok(0x0202_0202_0202_0202));
        assert!(
            live.bytes_read < (1 << 20),
            "read {} bytes",
            live.bytes_read
        );
    }
}
