//! Records the program wrote as a sample was taken, waiting for that
//! sample: per thread, oldest first. A record and its sample are
//! written in the same interrupt, so they are joined by thread, CPU and
//! time (within less than half the sampling period: two samples of one
//! thread on one CPU are a period apart, while on two CPUs they can be
//! microseconds apart); a record whose sample never comes (lost, or of a
//! thread user space does not unwind) is dropped once a later sample of
//! the thread on that CPU passes it, or when it expires.

use std::collections::VecDeque;

use hashbrown::HashMap;

/// A record stamped with when it was written (`CLOCK_MONOTONIC`, ns).
pub trait Stamped {
    fn time(&self) -> u64;
}

/// Records waiting for their samples, by thread (with their CPU).
pub struct Joins<T> {
    by_tid: HashMap<u32, VecDeque<(u32, T)>>,
    per_thread: usize,
    slack: u64,
}

/// How far apart a record and its sample may be stamped, for events
/// sampling every `period_ns`: 2 ms, or less than half the period.
pub fn slack(period_ns: u64) -> u64 {
    (period_ns / 2).saturating_sub(1).min(2_000_000)
}

impl<T: Stamped> Joins<T> {
    /// Room for `threads` threads of `per_thread` records each before the
    /// maps grow, for records stamped within `slack` ns of their samples
    /// ([`slack`]).
    pub fn new(threads: usize, per_thread: usize, slack: u64) -> Joins<T> {
        Joins {
            by_tid: HashMap::with_capacity(threads),
            per_thread,
            slack,
        }
    }

    /// Adds a record of thread `tid` on CPU `cpu`.
    pub fn push(&mut self, tid: u32, cpu: u32, record: T) {
        let per_thread = self.per_thread;
        self.by_tid
            .entry(tid)
            .or_insert_with(|| VecDeque::with_capacity(per_thread))
            .push_back((cpu, record));
    }

    /// True when records of `tid` on `cpu` wait.
    pub fn has(&self, tid: u32, cpu: u32) -> bool {
        self.by_tid
            .get(&tid)
            .is_some_and(|q| q.iter().any(|&(c, _)| c == cpu))
    }

    /// The record of the sample of `tid` on `cpu` at `time`; the older
    /// ones, whose samples will not come, go to `dropped`.
    pub fn take(&mut self, tid: u32, cpu: u32, time: u64, mut dropped: impl FnMut(T)) -> Option<T> {
        let slack = self.slack;
        let q = self.by_tid.get_mut(&tid)?;
        // Samples come oldest first across CPUs: a record this much older
        // than this sample, on any CPU, has lost its own.
        while q.front().is_some_and(|(_, r)| r.time() + slack < time) {
            if let Some((_, r)) = q.pop_front() {
                dropped(r);
            }
        }
        // Records of two CPUs may be committed a little out of order.
        let at = q
            .iter()
            .position(|(c, r)| *c == cpu && r.time() <= time + slack)?;
        q.remove(at).map(|(_, r)| r)
    }

    /// Drops every record of `tid` into `dropped`.
    pub fn remove(&mut self, tid: u32, mut dropped: impl FnMut(T)) {
        if let Some(q) = self.by_tid.remove(&tid) {
            q.into_iter().for_each(|(_, r)| dropped(r));
        }
    }

    /// Drops records written before `before` into `dropped`.
    pub fn expire(&mut self, before: u64, mut dropped: impl FnMut(T)) {
        self.by_tid.retain(|_, q| {
            while q.front().is_some_and(|(_, r)| r.time() < before) {
                if let Some((_, r)) = q.pop_front() {
                    dropped(r);
                }
            }
            !q.is_empty()
        });
    }
}

/// The little-endian word at `at` in a record, if the record holds it.
pub fn word(data: &[u8], at: usize) -> Option<u64> {
    let bytes = data.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct R(u64);
    impl Stamped for R {
        fn time(&self) -> u64 {
            self.0
        }
    }

    #[test]
    fn joins_by_cpu_and_time_and_drops_what_was_passed() {
        let mut j = Joins::new(1, 4, 10);
        for t in [100, 200, 300] {
            j.push(7, 0, R(t));
        }
        // On another CPU, microseconds after the first: its own record.
        j.push(7, 1, R(102));
        let mut dropped = Vec::new();
        assert_eq!(
            j.take(7, 1, 103, |r| dropped.push(r.0)).map(|r| r.0),
            Some(102)
        );
        // A sample at 205: the record of 100 is passed, 200 is its own.
        let got = j.take(7, 0, 205, |r| dropped.push(r.0));
        assert_eq!((got.map(|r| r.0), dropped.clone()), (Some(200), vec![100]));
        // A sample long before the next record: none.
        assert!(j.take(7, 0, 250, |r| dropped.push(r.0)).is_none());
        assert!(j.has(7, 0) && !j.has(7, 1) && !j.has(8, 0));
        j.expire(1000, |r| dropped.push(r.0));
        assert_eq!(dropped, vec![100, 300]);
        assert!(!j.has(7, 0));
        assert_eq!(slack(10_101_010), 2_000_000);
        assert_eq!(slack(100_000), 49_999);
        assert_eq!(word(&[1, 0, 0, 0, 0, 0, 0, 0, 9], 0), Some(1));
        assert_eq!(word(&[1, 0, 0], 0), None);
    }
}
