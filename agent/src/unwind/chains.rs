//! Per thread, the steps of its last complete unwind: where each frame's
//! stack pointer was and the address it returns to. A later sample whose
//! stack copy ends inside one of these frames (same stack pointer, same
//! address) may take the frames above it from here, once the walk has
//! checked them against the thread's live stack (`walk`).
//!
//! Bounded by total steps: past the bound, the threads whose chains were
//! used least recently are forgotten. A thread's chain is forgotten when
//! it exits. Storing reuses the thread's buffer.

use hashbrown::HashMap;

/// One frame of an unwind: the stack pointer in that frame and its
/// address (the sampled IP for the first, return addresses after).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    /// Stack pointer while this frame runs (the caller's CFA, as unwound).
    pub sp: u64,
    /// The IP (first frame) or the return address into this frame.
    pub ra: u64,
}

struct Chain {
    pid: u32,
    steps: Vec<Step>,
    used: u64,
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
        self.clock += 1;
        let chain = self.by_tid.get_mut(&tid).filter(|c| c.pid == pid)?;
        chain.used = self.clock;
        // Stack pointers increase outward.
        let i = chain.steps.partition_point(|s| s.sp < at.sp);
        let rest = chain.steps.get(i..)?;
        (rest.first() == Some(&at)).then_some(rest)
    }

    /// Keeps `steps` (a complete unwind, leaf first) as thread `tid`'s chain.
    pub fn store(&mut self, pid: u32, tid: u32, steps: &[Step]) {
        self.clock += 1;
        let chain = self.by_tid.entry(tid).or_insert_with(|| Chain {
            pid,
            steps: Vec::new(),
            used: 0,
        });
        self.steps = self.steps - chain.steps.len() + steps.len();
        chain.pid = pid;
        chain.used = self.clock;
        chain.steps.clear();
        chain.steps.extend_from_slice(steps);
        if self.steps > self.max_steps {
            self.evict();
        }
    }

    /// Forgets a thread (it exited).
    pub fn forget(&mut self, tid: u32) {
        if let Some(c) = self.by_tid.remove(&tid) {
            self.steps -= c.steps.len();
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
            .map(|(&tid, c)| (c.used, tid, c.steps.len()))
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

    fn chain(sps: &[u64]) -> Vec<Step> {
        sps.iter().map(|&sp| Step { sp, ra: sp + 1 }).collect()
    }

    #[test]
    fn finds_the_outer_steps_from_a_matching_step() {
        let mut c = Chains::new(100);
        c.store(7, 70, &chain(&[100, 200, 300, 400]));
        let from = c.from(7, 70, Step { sp: 200, ra: 201 }).map(<[Step]>::len);
        assert_eq!(from, Some(3));
        // Same stack pointer, another address: not the same frame.
        assert!(c.from(7, 70, Step { sp: 200, ra: 999 }).is_none());
        // Another process reusing the thread id.
        assert!(c.from(8, 70, Step { sp: 200, ra: 201 }).is_none());
        assert!(c.has(7, 70) && !c.has(8, 70));
        c.forget(70);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn least_recently_used_chains_go_first() {
        let mut c = Chains::new(12);
        c.store(1, 1, &chain(&[1, 2, 3, 4]));
        c.store(1, 2, &chain(&[1, 2, 3, 4]));
        let _ = c.from(1, 1, Step { sp: 1, ra: 2 });
        c.store(1, 3, &chain(&[1, 2, 3, 4, 5]));
        assert!(c.has(1, 1) && c.has(1, 3) && !c.has(1, 2));
        assert!(c.steps <= 12);
    }
}
