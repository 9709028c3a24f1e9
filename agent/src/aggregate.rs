//! Sums samples per (kind, series, pid, thread, stack) within one upload
//! interval: CPU samples and allocation samples share the stack table, so
//! a stack seen by both is stored and symbolized once.
//!
//! Stacks are interned into one flat frame array; counts live in a hash map
//! keyed by four `u32`s. Both keep their capacity across [`Aggregate::clear`],
//! so once the sampler has seen a workload's stacks, adding a sample
//! allocates nothing. Past `max_frames` distinct frames a new stack is
//! folded into a marker stack and counted, so a window's memory is bounded.

use std::hash::BuildHasher;

use hashbrown::{HashMap, HashTable};

/// Module id of kernel frames (`addr` is the kernel address).
pub const KERNEL: u32 = u32::MAX;
/// Module id of frames outside any file mapping (`addr` is the address; JIT code).
pub const ANON: u32 = u32::MAX - 1;
/// Module id of marker frames (`addr` is one of the `MARK_*` values).
pub const MARKER: u32 = u32::MAX - 2;

/// Marker: the user stack could not be unwound to the thread's entry.
pub const MARK_TRUNCATED: u64 = 1;
/// Marker: time in the kernel, with kernel stacks turned off.
pub const MARK_KERNEL: u64 = 2;
/// Marker: the window's stack table was full.
pub const MARK_FULL: u64 = 3;

/// One frame: a module and an offset in it (file offset for files, address
/// for the kernel and anonymous memory), already adjusted for lookup
/// (return addresses minus one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Frame {
    /// Module id ([`KERNEL`], [`ANON`], [`MARKER`], or a file module).
    pub module: u32,
    /// Offset or address.
    pub addr: u64,
}

impl Frame {
    /// A marker frame.
    pub const fn marker(mark: u64) -> Frame {
        Frame {
            module: MARKER,
            addr: mark,
        }
    }
}

/// Which profile a sample belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SampleKind {
    /// CPU time.
    Cpu,
    /// Calls of the allocation functions of probed processes.
    Alloc,
}

/// What a sample is summed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleKey {
    /// The profile it belongs to.
    pub kind: SampleKind,
    /// Series (label set) id.
    pub series: u32,
    /// Process id (0 when sample labels are off).
    pub pid: u32,
    /// Thread name id (0 when sample labels are off).
    pub thread: u32,
    /// Stack id in this aggregate.
    pub stack: u32,
}

/// Summed values of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Number of samples.
    pub samples: u64,
    /// For CPU samples, the CPU time they stand for in nanoseconds; for
    /// allocation samples, the bytes the sampled calls asked for (the
    /// profile scales both counts by the sample period).
    pub value: u64,
}

const HASHER: foldhash::fast::FixedState = foldhash::fast::FixedState::with_seed(0xf12e_3a7c);

/// One window's samples.
pub struct Aggregate {
    frames: Vec<Frame>,
    // Stack `i` is `frames[starts[i] .. starts[i] + lens[i]]`, leaf first.
    starts: Vec<u32>,
    lens: Vec<u16>,
    index: HashTable<u32>,
    counts: HashMap<SampleKey, Counts, foldhash::fast::FixedState>,
    max_frames: usize,
    folded: u64,
}

impl Aggregate {
    /// An empty aggregate with room for `stacks` stacks and `frames` frames,
    /// refusing new stacks past `max_frames` frames.
    pub fn with_capacity(stacks: usize, frames: usize, max_frames: usize) -> Aggregate {
        Aggregate {
            frames: Vec::with_capacity(frames),
            starts: Vec::with_capacity(stacks),
            lens: Vec::with_capacity(stacks),
            index: HashTable::with_capacity(stacks),
            counts: HashMap::with_capacity_and_hasher(stacks, HASHER),
            max_frames,
            folded: 0,
        }
    }

    /// Empties the aggregate, keeping its capacity.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.starts.clear();
        self.lens.clear();
        self.index.clear();
        self.counts.clear();
        self.folded = 0;
    }

    /// True when no sample was added.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Samples folded into the marker stack because the table was full.
    pub fn folded(&self) -> u64 {
        self.folded
    }

    /// Number of distinct stacks.
    pub fn stack_count(&self) -> usize {
        self.starts.len()
    }

    /// Total frames stored.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// The frames of a stack, leaf first. Empty for an unknown id.
    pub fn stack(&self, id: u32) -> &[Frame] {
        let i = id as usize;
        match (self.starts.get(i), self.lens.get(i)) {
            (Some(&start), Some(&len)) => {
                let start = start as usize;
                self.frames.get(start..start + len as usize).unwrap_or(&[])
            }
            _ => &[],
        }
    }

    /// Every (key, counts), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&SampleKey, &Counts)> + '_ {
        self.counts.iter()
    }

    /// Every frame of every stack (with repeats).
    pub fn all_frames(&self) -> &[Frame] {
        &self.frames
    }

    /// Adds a sample. `stack` is leaf first and at most `u16::MAX` frames
    /// (longer stacks are cut at the root end).
    pub fn add(
        &mut self,
        kind: SampleKind,
        series: u32,
        pid: u32,
        thread: u32,
        stack: &[Frame],
        counts: Counts,
    ) {
        let stack = &stack[..stack.len().min(u16::MAX as usize)];
        let id = self.intern(stack);
        let key = SampleKey {
            kind,
            series,
            pid,
            thread,
            stack: id,
        };
        let slot = self.counts.entry(key).or_default();
        slot.samples = slot.samples.saturating_add(counts.samples);
        slot.value = slot.value.saturating_add(counts.value);
    }

    fn intern(&mut self, stack: &[Frame]) -> u32 {
        let hash = HASHER.hash_one(stack);
        let (frames, starts, lens) = (&self.frames, &self.starts, &self.lens);
        let slice_of = |id: u32| {
            let start = starts[id as usize] as usize;
            &frames[start..start + lens[id as usize] as usize]
        };
        if let Some(&id) = self.index.find(hash, |&id| slice_of(id) == stack) {
            return id;
        }
        if self.frames.len() + stack.len() > self.max_frames
            || self.starts.len() >= u32::MAX as usize
        {
            self.folded += 1;
            return self.intern_full_marker();
        }
        self.insert(hash, stack)
    }

    fn intern_full_marker(&mut self) -> u32 {
        let marker = [Frame::marker(MARK_FULL)];
        let hash = HASHER.hash_one(&marker[..]);
        let (frames, starts, lens) = (&self.frames, &self.starts, &self.lens);
        let found = self.index.find(hash, |&id| {
            let start = starts[id as usize] as usize;
            frames[start..start + lens[id as usize] as usize] == marker
        });
        match found {
            Some(&id) => id,
            None => self.insert(hash, &marker),
        }
    }

    fn insert(&mut self, hash: u64, stack: &[Frame]) -> u32 {
        let id = self.starts.len() as u32;
        self.starts.push(self.frames.len() as u32);
        self.lens.push(stack.len() as u16);
        self.frames.extend_from_slice(stack);
        let (frames, starts, lens) = (&self.frames, &self.starts, &self.lens);
        self.index.insert_unique(hash, id, |&id| {
            let start = starts[id as usize] as usize;
            HASHER.hash_one(&frames[start..start + lens[id as usize] as usize])
        });
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(module: u32, addr: u64) -> Frame {
        Frame { module, addr }
    }

    #[test]
    fn same_stack_sums_and_distinct_keys_stay_apart() {
        let mut a = Aggregate::with_capacity(4, 16, 1000);
        let s1 = [f(1, 10), f(1, 20)];
        let one = Counts {
            samples: 1,
            value: 10,
        };
        let cpu = SampleKind::Cpu;
        a.add(cpu, 0, 7, 1, &s1, one);
        a.add(cpu, 0, 7, 1, &s1, one);
        a.add(cpu, 0, 8, 1, &s1, one);
        a.add(cpu, 0, 7, 1, &[f(2, 5)], one);
        // The same stack in another profile: a key of its own, no new stack.
        a.add(SampleKind::Alloc, 0, 7, 1, &s1, one);
        assert_eq!(a.stack_count(), 2);
        let mut rows: Vec<(SampleKind, u32, u64)> =
            a.iter().map(|(k, c)| (k.kind, k.pid, c.samples)).collect();
        rows.sort();
        assert_eq!(
            rows,
            vec![
                (cpu, 7, 1),
                (cpu, 7, 2),
                (cpu, 8, 1),
                (SampleKind::Alloc, 7, 1)
            ]
        );
        let id = a.iter().find(|(k, _)| k.pid == 8).map(|(k, _)| k.stack);
        assert_eq!(a.stack(id.unwrap_or(99)), &s1);
    }

    #[test]
    fn full_table_folds_into_a_counted_marker() {
        let mut a = Aggregate::with_capacity(4, 4, 3);
        let one = Counts {
            samples: 1,
            value: 1,
        };
        let cpu = SampleKind::Cpu;
        a.add(cpu, 0, 0, 0, &[f(1, 1), f(1, 2)], one);
        a.add(cpu, 0, 0, 0, &[f(1, 3), f(1, 4)], one);
        a.add(cpu, 0, 0, 0, &[f(1, 5), f(1, 6)], one);
        assert_eq!(a.folded(), 2);
        let marker = a
            .iter()
            .find(|(k, _)| a.stack(k.stack) == [Frame::marker(MARK_FULL)])
            .map(|(_, c)| c.samples);
        assert_eq!(marker, Some(2));
        a.clear();
        assert!(a.is_empty());
        assert_eq!(a.folded(), 0);
    }
}
