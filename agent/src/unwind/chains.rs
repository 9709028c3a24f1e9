//! Per thread, the steps of its last complete unwind: where each frame's
//! stack pointer was, the address it returns to and the frame pointer,
//! with every word the unwind read from each step on. A later sample that
//! reaches one of these frames (same stack pointer, address and frame
//! pointer) may take the frames above it from here:
//!
//! - replayed ([`Chains::replay`]) when every word the chain's unwind read
//!   from there on holds, in that sample's copy or what was read with it,
//!   the value it held: the unwind is a function of the registers and
//!   those words, so it would find the same frames;
//! - or once the walk has checked them against the thread's live stack
//!   (`walk`), to be confirmed by a later sample.
//!
//! Bounded by total steps and words: past the bound, the threads whose
//! chains were used least recently are forgotten. A thread's chain is
//! forgotten when it exits. Storing reuses the thread's buffers.

use hashbrown::HashMap;

/// One frame of an unwind: the stack pointer in that frame and its
/// address (the sampled IP for the first, return addresses after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Stack pointer while this frame runs (the caller's CFA, as unwound).
    pub sp: u64,
    /// The IP (first frame) or the return address into this frame.
    pub ra: u64,
    /// The frame pointer (BP) while this frame runs, as unwound.
    pub bp: u64,
}

/// What a replay found.
pub enum Replay<'a> {
    /// The step is not one of the thread's chain.
    NoMatch,
    /// It is, but a word the chain read is not known for this sample or
    /// holds another value.
    Differs,
    /// The steps past it, and the words read from it on, with where each
    /// step's reads start (relative to the first).
    Same(&'a [Step], &'a [(u64, u64)], &'a [u32]),
}

struct Chain {
    pid: u32,
    steps: Vec<Step>,
    /// Every word the unwind read, in order.
    reads: Vec<(u64, u64)>,
    /// Per step, where the reads of the unwind from it start in `reads`.
    read_at: Vec<u32>,
    used: u64,
}

impl Chain {
    fn size(&self) -> usize {
        self.steps.len() + self.reads.len()
    }
}

/// The chains of every thread that needed one.
pub(super) struct Chains {
    by_tid: HashMap<u32, Chain>,
    steps: usize,
    max_steps: usize,
    clock: u64,
}

impl Chains {
    pub fn new(max_steps: usize) -> Chains {
        Chains {
            by_tid: HashMap::new(),
            steps: 0,
            max_steps,
            clock: 0,
        }
    }

    /// True when thread `tid` of `pid` has a chain (it once needed frames
    /// beyond its stack copy).
    pub fn has(&self, pid: u32, tid: u32) -> bool {
        self.by_tid.get(&tid).is_some_and(|c| c.pid == pid)
    }

    /// The steps of thread `tid` from the one equal to `at` outward, if its
    /// chain holds that step.
    pub fn from(&mut self, pid: u32, tid: u32, at: Step) -> Option<&[Step]> {
        let (chain, i) = self.find(pid, tid, at)?;
        chain.steps.get(i..)
    }

    /// Thread `tid`'s chain (of process `pid`) and the index of its step
    /// equal to `at`, marking the chain used.
    fn find(&mut self, pid: u32, tid: u32, at: Step) -> Option<(&Chain, usize)> {
        self.clock += 1;
        let chain = self.by_tid.get_mut(&tid).filter(|c| c.pid == pid)?;
        // Stack pointers increase outward.
        let i = chain.steps.partition_point(|s| s.sp < at.sp);
        if chain.steps.get(i) != Some(&at) {
            return None;
        }
        chain.used = self.clock;
        Some((chain, i))
    }

    /// The rest of thread `tid`'s chain past the step equal to `at`, if
    /// every word the chain read from that step on has the same value in
    /// `now` (this sample's words, `None` where it does not know one).
    pub fn replay(
        &mut self,
        pid: u32,
        tid: u32,
        at: Step,
        mut now: impl FnMut(u64) -> Option<u64>,
    ) -> Replay<'_> {
        let Some((chain, i)) = self.find(pid, tid, at) else {
            return Replay::NoMatch;
        };
        let (Some(&from), Some(at_reads)) = (chain.read_at.get(i), chain.read_at.get(i..)) else {
            return Replay::Differs;
        };
        let reads = chain.reads.get(from as usize..).unwrap_or_default();
        if !reads.iter().all(|&(addr, was)| now(addr) == Some(was)) {
            return Replay::Differs;
        }
        Replay::Same(
            chain.steps.get(i + 1..).unwrap_or_default(),
            reads,
            at_reads,
        )
    }

    /// Keeps `steps` (a complete unwind, leaf first) as thread `tid`'s
    /// chain, with the words it read (`reads`) and where each step's
    /// start (`read_at`, one per step).
    pub fn store(
        &mut self,
        pid: u32,
        tid: u32,
        steps: &[Step],
        reads: &[(u64, u64)],
        read_at: &[u32],
    ) {
        self.clock += 1;
        let chain = self.by_tid.entry(tid).or_insert_with(|| Chain {
            pid,
            steps: Vec::new(),
            reads: Vec::new(),
            read_at: Vec::new(),
            used: 0,
        });
        self.steps = self.steps - chain.size() + steps.len() + reads.len();
        chain.pid = pid;
        chain.used = self.clock;
        chain.steps.clear();
        chain.steps.extend_from_slice(steps);
        chain.reads.clear();
        chain.reads.extend_from_slice(reads);
        chain.read_at.clear();
        chain.read_at.extend_from_slice(read_at);
        if self.steps > self.max_steps {
            self.evict();
        }
    }

    /// Forgets a thread (it exited).
    pub fn forget(&mut self, tid: u32) {
        if let Some(c) = self.by_tid.remove(&tid) {
            self.steps -= c.size();
        }
    }

    /// Number of threads with a chain.
    pub fn len(&self) -> usize {
        self.by_tid.len()
    }

    fn evict(&mut self) {
        // Rare: sort the threads by last use and drop the oldest until a
        // quarter of the bound is free.
        let mut ages: Vec<(u64, u32, usize)> = self
            .by_tid
            .iter()
            .map(|(&tid, c)| (c.used, tid, c.size()))
            .collect();
        ages.sort_unstable();
        for (_, tid, _) in ages {
            if self.steps <= self.max_steps / 4 * 3 {
                break;
            }
            self.forget(tid);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(sp: u64) -> Step {
        Step {
            sp,
            ra: sp + 1,
            bp: 0,
        }
    }

    fn chain(sps: &[u64]) -> Vec<Step> {
        sps.iter().map(|&sp| step(sp)).collect()
    }

    /// Stores a chain whose step k read the word at its stack pointer - 8.
    fn store(c: &mut Chains, pid: u32, tid: u32, sps: &[u64]) {
        let reads: Vec<(u64, u64)> = sps.iter().map(|&sp| (sp - 8, sp + 1)).collect();
        let at: Vec<u32> = (0..sps.len() as u32).collect();
        c.store(pid, tid, &chain(sps), &reads, &at);
    }

    #[test]
    fn finds_the_outer_steps_from_a_matching_step() {
        let mut c = Chains::new(100);
        store(&mut c, 7, 70, &[100, 200, 300, 400]);
        let from = c.from(7, 70, step(200)).map(<[Step]>::len);
        assert_eq!(from, Some(3));
        // Same stack pointer, another address: not the same frame.
        let other = Step {
            ra: 999,
            ..step(200)
        };
        assert!(c.from(7, 70, other).is_none());
        // Another process reusing the thread id.
        assert!(c.from(8, 70, step(200)).is_none());
        assert!(c.has(7, 70) && !c.has(8, 70));
        c.forget(70);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn replays_only_when_every_word_read_from_there_on_is_unchanged() {
        let mut c = Chains::new(100);
        store(&mut c, 7, 70, &[100, 200, 300, 400]);
        let same = |a: u64| Some(a + 9);
        match c.replay(7, 70, step(200), same) {
            Replay::Same(rest, reads, at) => {
                assert_eq!(rest, &chain(&[300, 400])[..]);
                assert_eq!(reads, &[(192, 201), (292, 301), (392, 401)]);
                assert_eq!(at, &[1, 2, 3]);
            }
            _ => panic!("no replay"),
        }
        // A word below the step does not matter; one above it does.
        let low_changed = |a: u64| if a == 92 { Some(0) } else { Some(a + 9) };
        assert!(matches!(
            c.replay(7, 70, step(200), low_changed),
            Replay::Same(..)
        ));
        let changed = |a: u64| if a == 392 { Some(0) } else { Some(a + 9) };
        assert!(matches!(
            c.replay(7, 70, step(200), changed),
            Replay::Differs
        ));
        let unknown = |a: u64| (a != 292).then_some(a + 9);
        assert!(matches!(
            c.replay(7, 70, step(200), unknown),
            Replay::Differs
        ));
        // Another frame pointer: another frame.
        let bp = Step { bp: 5, ..step(200) };
        assert!(matches!(c.replay(7, 70, bp, same), Replay::NoMatch));
    }

    #[test]
    fn least_recently_used_chains_go_first() {
        // Steps and words count alike: 8 per chain of 4.
        let mut c = Chains::new(24);
        store(&mut c, 1, 1, &[1000, 2000, 3000, 4000]);
        store(&mut c, 1, 2, &[1000, 2000, 3000, 4000]);
        let _ = c.from(1, 1, step(1000));
        store(&mut c, 1, 3, &[1000, 2000, 3000, 4000, 5000]);
        assert!(c.has(1, 1) && c.has(1, 3) && !c.has(1, 2));
        assert!(c.steps <= 24);
    }
}
