//! Frames read past a sample's stack copy are believed only once a later
//! sample of the same thread confirms them.
//!
//! The live stack is read a little after the sample. Its outer frames
//! could have changed in between only if the thread returned past the end
//! of the copy: then it either came back down before the read, writing new
//! frames over the last bytes of the copy (the walk's overlap check sees
//! them), or was still above them at the read, leaving them as they were
//! and the outer frames new. The walk cannot tell that second case from a
//! thread that stayed below. A later sample can: if the thread, sampled
//! after the read, is at or below the start of the overlap and those bytes
//! still hold what the copy held, it did not come back down through them
//! after the read either (it would have rewritten them); and the return
//! addresses the walk read past the copy, read again then, must be
//! unchanged (a thread that came back down after the read rewrote them
//! with those of the stack it has now). Otherwise the frames past the copy
//! are dropped and the stack is marked truncated.
//!
//! What remains assumed: a thread that leaves those bytes (up to
//! [`OVERLAP_BYTES`]: return addresses, saved registers and locals of
//! several frames) and comes back writes them differently.

use super::live::{read_exact, read_words};

/// Bytes at the end of a copy compared with the live stack when the walk
/// goes past it, and again when a later sample confirms the walk.
pub const OVERLAP_BYTES: u64 = 4096;

/// A walk's frames from past its copy, waiting for a later sample of the
/// thread.
#[derive(Clone, Debug)]
pub struct Unconfirmed {
    /// When the walk finished reading the live stack (`CLOCK_MONOTONIC`, ns).
    pub read_at: u64,
    /// Where the compared bytes start.
    pub start: u64,
    /// The copy's bytes from `start` to its end.
    pub bytes: Vec<u8>,
    /// Addresses the walk found inside the copy: the stack to keep if the
    /// rest is not confirmed.
    pub copy_frames: usize,
    /// Where the walk read each return address past the copy, and what.
    pub slots: Vec<(u64, u64)>,
}

/// What a later sample says of an [`Unconfirmed`] walk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The sample was taken before the live stack was read: no evidence.
    TooEarly,
    /// The frames stand.
    Confirmed,
    /// The frames go.
    Refuted,
}

impl Unconfirmed {
    /// Judges this walk by a later sample of the same thread of process
    /// `pid`, taken at `time` with stack pointer `sp` and stack copy
    /// `stack`; reads the compared bytes from the process when the copy
    /// does not hold them.
    pub fn judge(&self, pid: u32, time: u64, sp: u64, stack: &[u8]) -> Verdict {
        if time <= self.read_at {
            return Verdict::TooEarly;
        }
        if sp > self.start {
            return Verdict::Refuted;
        }
        let same = match usize::try_from(self.start - sp)
            .ok()
            .and_then(|o| stack.get(o..o.checked_add(self.bytes.len())?))
        {
            Some(copied) => copied == self.bytes.as_slice(),
            None => {
                let mut now = vec![0u8; self.bytes.len()];
                read_exact(pid, self.start, &mut now) && now == self.bytes
            }
        };
        match same && self.slots_unchanged(pid) {
            true => Verdict::Confirmed,
            false => Verdict::Refuted,
        }
    }

    fn slots_unchanged(&self, pid: u32) -> bool {
        const BATCH: usize = 64;
        let mut addrs = [0u64; BATCH];
        let mut now = [0u64; BATCH];
        self.slots.chunks(BATCH).all(|chunk| {
            for (a, &(slot, _)) in addrs.iter_mut().zip(chunk) {
                *a = slot;
            }
            read_words(pid, &addrs[..chunk.len()], &mut now)
                && chunk.iter().zip(now).all(|(&(_, was), is)| was == is)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(start: u64, bytes: &[u8]) -> Unconfirmed {
        Unconfirmed {
            read_at: 100,
            start,
            bytes: bytes.to_vec(),
            copy_frames: 3,
            slots: Vec::new(),
        }
    }

    #[test]
    fn needs_a_sample_after_the_read() {
        let u = walk(0x1010, &[1, 2, 3, 4]);
        let stack = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(u.judge(1, 100, 0x1000, &stack), Verdict::TooEarly);
        assert_eq!(u.judge(1, 101, 0x1000, &stack), Verdict::Confirmed);
    }

    #[test]
    fn refutes_a_thread_above_the_overlap_or_changed_bytes() {
        let u = walk(0x1010, &[1, 2, 3, 4]);
        assert_eq!(u.judge(1, 200, 0x1011, &[1, 2, 3, 4]), Verdict::Refuted);
        let stack = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 9, 4];
        assert_eq!(u.judge(1, 200, 0x1000, &stack), Verdict::Refuted);
    }

    #[test]
    fn reads_the_process_when_the_copy_is_short() {
        let here = [7u8; 64];
        let u = walk(here.as_ptr() as u64, &here);
        let me = std::process::id();
        assert_eq!(u.judge(me, 200, u.start - 8, &[0; 8]), Verdict::Confirmed);
        let u = walk(here.as_ptr() as u64, &[8u8; 64]);
        assert_eq!(u.judge(me, 200, u.start - 8, &[0; 8]), Verdict::Refuted);
    }

    #[test]
    fn rereads_the_return_addresses_past_the_copy() {
        let words: Vec<u64> = (0..100).collect();
        let mut u = walk(0x1010, &[1]);
        u.slots = words.iter().map(|w| (w as *const u64 as u64, *w)).collect();
        let stack = [0u8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let me = std::process::id();
        assert_eq!(u.judge(me, 200, 0x1000, &stack), Verdict::Confirmed);
        u.slots[90].1 = 7;
        assert_eq!(u.judge(me, 200, 0x1000, &stack), Verdict::Refuted);
    }
}
