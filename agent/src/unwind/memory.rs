//! The memory a walk reads: the stack copy, the stack read with the sample
//! past it (`sampled`), then, once the walk has turned to it, the thread's
//! live stack. Every word read is noted with its value: the trace a
//! thread's chain keeps, and from which the words to read with the
//! thread's next samples are published.

use super::live::LiveStack;

/// What the unwinder reads for one walk.
pub(super) struct Memory<'a> {
    pub copy: &'a [u8],
    pub sp: u64,
    pub copy_end: u64,
    pub live: &'a mut LiveStack,
    pub live_on: bool,
    /// The last step wanted a word past the copy before the live stack was on.
    pub beyond: bool,
    /// The last step read the live stack.
    pub touched: bool,
    /// Words read with the sample past the copy, sorted by address.
    pub words: &'a [(u64, u64)],
    /// Bytes read with the sample right past the copy, from `dense_at`.
    pub dense: &'a [u8],
    pub dense_at: u64,
    /// Some step read what was read with the sample.
    pub used_sampled: bool,
    /// Every word read, in order, with its value (up to the capacity).
    pub trace: &'a mut Vec<(u64, u64)>,
}

impl Memory<'_> {
    /// The word at `addr` for the unwinder.
    pub fn read(&mut self, addr: u64) -> Result<u64, ()> {
        let value = match self.fact(addr) {
            Some(v) => Ok(v),
            None if addr.saturating_add(8) <= self.copy_end => Err(()),
            None if !self.live_on => {
                self.beyond = true;
                Err(())
            }
            None => {
                self.touched = true;
                self.live.read_u64(addr)
            }
        }?;
        if self.trace.len() < self.trace.capacity() {
            self.trace.push((addr, value));
        }
        Ok(value)
    }

    /// The word at `addr` as the thread's memory held it at the sample:
    /// from the copy or from what was read with the sample; `None` when
    /// neither has it.
    pub fn fact(&mut self, addr: u64) -> Option<u64> {
        let word = |bytes: &[u8], at: u64| {
            let o = usize::try_from(addr.checked_sub(at)?).ok()?;
            let b = bytes.get(o..o.checked_add(8)?)?;
            Some(u64::from_le_bytes(b.try_into().ok()?))
        };
        if let Some(v) = word(self.copy, self.sp) {
            return Some(v);
        }
        let v = word(self.dense, self.dense_at).or_else(|| {
            let i = self.words.binary_search_by_key(&addr, |&(a, _)| a).ok()?;
            Some(self.words[i].1)
        })?;
        self.used_sampled = true;
        Some(v)
    }
}
