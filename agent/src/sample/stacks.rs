//! A sample's user stack as frames: the walk of [`crate::unwind`] over the
//! sampled process's mappings, and what it tells the walk about them; and
//! the samples whose frames from past the stack copy wait for a later
//! sample of their thread to confirm them ([`crate::unwind::Unconfirmed`]).

use hashbrown::HashMap;

use super::modules::Modules;
use super::procs::{self, Mapping, Process};
use super::record::Sample;
use crate::aggregate::{ANON, Aggregate, Counts, Frame, MARK_TRUNCATED, SampleKind};
use crate::metrics::Metrics;
use crate::unwind::{
    Ending, LargeRule, Sampled, SampledWords, Space, Unconfirmed, UnwindCache, Verdict, WalkStats,
    Walker,
};

/// Samples waiting for confirmation, at most; past it a sample's frames
/// from past its copy are dropped at once.
const MAX_WAITING: usize = 4096;

/// Where a waiting sample goes once judged.
struct Waiting {
    check: Unconfirmed,
    /// Frames kept if the check fails (kernel frames and those from the copy).
    keep: usize,
    frames: Vec<Frame>,
    kind: SampleKind,
    series: u32,
    pid: u32,
    thread: u32,
    counts: Counts,
}

/// The stack of a sample being added, as the sampler knows it.
pub(super) struct Stack<'a> {
    pub kind: SampleKind,
    pub series: u32,
    pub thread: u32,
    pub frames: &'a [Frame],
    pub counts: Counts,
}

/// The sampler's unwinding state: framehop's rule cache, the walker (its
/// live-stack buffer and per-thread chains) and a buffer of addresses.
pub(super) struct Unwinding {
    pub cache: UnwindCache,
    pub walker: Walker,
    /// The words past the copy read with each sample, when the program's
    /// part that reads them is loaded.
    pub words: Option<SampledWords>,
    addrs: Vec<u64>,
    reported: WalkStats,
    /// The last `push_user_frames` took frames from past the copy: what
    /// must confirm them, and how many frames to keep if nothing does.
    last: Option<(Unconfirmed, usize)>,
    waiting: HashMap<u32, Vec<Waiting>>,
    waiting_count: usize,
    /// Per (pid, return address) in JIT code: whether it returns into
    /// CPython's perf trampoline (read once from the process).
    trampolines: HashMap<(u32, u64), bool>,
}

impl Unwinding {
    pub fn new(walker: Walker) -> Unwinding {
        Unwinding {
            cache: UnwindCache::new_in(),
            walker,
            words: None,
            addrs: Vec::with_capacity(1024),
            reported: WalkStats::default(),
            last: None,
            waiting: HashMap::new(),
            waiting_count: 0,
            trampolines: HashMap::new(),
        }
    }

    /// Forgets what is kept of a thread that exited.
    pub fn thread_exited(&mut self, tid: u32) {
        self.walker.forget(tid);
        if let Some(w) = &mut self.words {
            w.forget(tid);
        }
    }

    /// Adds sample `s` with `stack` (its frames from [`Self::push_user_frames`])
    /// to `agg`, or keeps it until a later sample of its thread judges the
    /// frames the walk took from past the copy. First settles the thread's
    /// waiting samples that `s` can judge.
    pub fn add(
        &mut self,
        agg: &mut Aggregate,
        s: &Sample<'_>,
        stack: Stack<'_>,
        metrics: &Metrics,
    ) {
        self.settle(agg, s, metrics);
        let Some((check, keep)) = self.last.take() else {
            agg.add(
                stack.kind,
                stack.series,
                s.pid,
                stack.thread,
                stack.frames,
                stack.counts,
            );
            return;
        };
        let mut w = Waiting {
            check,
            keep,
            frames: stack.frames.to_vec(),
            kind: stack.kind,
            series: stack.series,
            pid: s.pid,
            thread: stack.thread,
            counts: stack.counts,
        };
        if self.waiting_count < MAX_WAITING {
            self.waiting_count += 1;
            self.waiting.entry(s.tid).or_default().push(w);
        } else {
            self.judged(agg, s.tid, &mut w, false, metrics);
        }
    }

    /// Judges the waiting samples of `s`'s thread taken before the live
    /// reads `s` came after.
    fn settle(&mut self, agg: &mut Aggregate, s: &Sample<'_>, metrics: &Metrics) {
        // Most samples: nothing waits, no lookup.
        if self.waiting_count == 0 {
            return;
        }
        let Some(mut list) = self.waiting.remove(&s.tid) else {
            return;
        };
        let sp = s.regs[1];
        list.retain_mut(|w| {
            match w.check.judge(s.pid, s.time, sp, s.stack) {
                Verdict::TooEarly => return true,
                Verdict::Confirmed => self.judged(agg, s.tid, w, true, metrics),
                Verdict::Refuted => self.judged(agg, s.tid, w, false, metrics),
            }
            self.waiting_count -= 1;
            false
        });
        if !list.is_empty() {
            self.waiting.insert(s.tid, list);
        }
    }

    /// Adds the waiting samples (of thread `tid` only, when given) whose
    /// live stacks were read before `read_before` (`CLOCK_MONOTONIC` ns),
    /// with their frames from past the copy dropped: the thread exited, or
    /// was not sampled again in time, or the agent is stopping.
    pub fn give_up(
        &mut self,
        agg: &mut Aggregate,
        tid: Option<u32>,
        read_before: u64,
        metrics: &Metrics,
    ) {
        let tids: Vec<u32> = match tid {
            Some(t) => vec![t],
            None => self.waiting.keys().copied().collect(),
        };
        for t in tids {
            let Some(mut list) = self.waiting.remove(&t) else {
                continue;
            };
            list.retain_mut(|w| {
                if w.check.read_at >= read_before {
                    return true;
                }
                self.waiting_count -= 1;
                self.judged(agg, t, w, false, metrics);
                false
            });
            if !list.is_empty() {
                self.waiting.insert(t, list);
            }
        }
    }

    fn judged(
        &mut self,
        agg: &mut Aggregate,
        tid: u32,
        w: &mut Waiting,
        confirmed: bool,
        metrics: &Metrics,
    ) {
        if confirmed {
            Metrics::add(&metrics.stacks_confirmed, 1);
        } else {
            Metrics::add(&metrics.stacks_unconfirmed, 1);
            Metrics::add(&metrics.stacks_truncated, 1);
            w.frames.truncate(w.keep);
            w.frames.push(Frame::marker(MARK_TRUNCATED));
            // Later samples must not splice on frames nothing confirmed.
            self.walker.forget(tid);
        }
        agg.add(w.kind, w.series, w.pid, w.thread, &w.frames, w.counts);
    }

    /// True when the JIT frame at lookup address `addr` (a return address
    /// minus one) in process `pid` was found to be in CPython's perf
    /// trampoline.
    pub fn returns_into_trampoline(&self, pid: u32, addr: u64) -> bool {
        self.trampolines
            .get(&(pid, addr.wrapping_add(1)))
            .copied()
            .unwrap_or(false)
    }

    /// The last pushed stack's frames moved (Python frames were spliced
    /// in): `to` gives each old index's new one.
    pub fn frames_moved(&mut self, to: impl Fn(usize) -> usize) {
        if let Some((_, keep)) = &mut self.last {
            *keep = to(*keep);
        }
    }

    /// Adds what the walker counted since the last call to the metrics.
    pub fn report(&mut self, metrics: &Metrics) {
        let now = self.walker.stats();
        let was = std::mem::replace(&mut self.reported, now);
        for (counter, now, was) in [
            (&metrics.stacks_copy_ended, now.copy_ended, was.copy_ended),
            (
                &metrics.stacks_live_completed,
                now.live_completed,
                was.live_completed,
            ),
            (
                &metrics.stacks_chain_completed,
                now.chain_completed,
                was.chain_completed,
            ),
            (
                &metrics.stacks_sampled_completed,
                now.sampled_completed,
                was.sampled_completed,
            ),
            (
                &metrics.stacks_live_refused,
                now.live_refused,
                was.live_refused,
            ),
            (
                &metrics.stacks_over_budget,
                now.over_budget,
                was.over_budget,
            ),
            (&metrics.live_stack_bytes, now.live_bytes, was.live_bytes),
        ] {
            Metrics::add(counter, now - was);
        }
    }

    /// Appends the user stack of a sample to `frames`, leaf first (the IP,
    /// then each return address), ending with [`MARK_TRUNCATED`] when it
    /// did not unwind to the thread's entry. Nothing for a kernel thread or
    /// a sample without a stack copy. Reads `/proc/PID/maps` once per
    /// process when the IP is in no mapping it knows.
    pub fn push_user_frames(
        &mut self,
        proc: &mut Process,
        s: &Sample<'_>,
        modules: &mut Modules,
        frames: &mut Vec<Frame>,
        metrics: &Metrics,
    ) {
        self.last = None;
        if s.abi == 0 || s.stack.is_empty() {
            return;
        }
        let ip = s.regs[2];
        if !proc.reloaded && proc.mapping(ip).is_none() {
            // A mapping we have no record of (the process started while
            // its records were in flight): read /proc once.
            proc.reloaded = true;
            let mappings = procs::read_maps(s.pid, modules);
            if !mappings.is_empty() {
                proc.mappings = mappings;
                proc.unwinder = None;
            }
        }
        proc.unwinder(modules);
        let Process {
            unwinder: Some(unwinder),
            mappings,
            ..
        } = &*proc
        else {
            return;
        };
        let words = self
            .words
            .as_mut()
            .and_then(|w| w.take(s.tid, s.cpu, s.time));
        let sampled = Sampled {
            pid: s.pid,
            tid: s.tid,
            regs: s.regs,
            stack: s.stack,
            words: words.as_ref().map_or(&[], |w| &w.words),
            dense: words.as_ref().map_or(&[], |w| &w.dense),
            dense_at: words.as_ref().map_or(0, |w| w.dense_at),
        };
        let mut space = ProcessSpace {
            pid: s.pid,
            mappings,
            modules,
            trampolines: &mut self.trampolines,
        };
        self.addrs.clear();
        let user_start = frames.len();
        let ending = self.walker.walk(
            unwinder,
            &mut self.cache,
            &mut space,
            &sampled,
            &mut self.addrs,
        );
        if let Some(sw) = &mut self.words {
            if let Some(addrs) = self.walker.take_published() {
                sw.publish(s.pid, s.tid, addrs);
            }
            if let Some(w) = words {
                sw.give_back(w);
            }
        }
        frames.extend(self.addrs.iter().map(|&a| proc.resolve(a)));
        self.last = self.walker.take_unconfirmed().map(|u| {
            let keep = user_start + u.copy_frames;
            (u, keep)
        });
        if ending == Ending::Truncated {
            Metrics::add(&metrics.stacks_truncated, 1);
            frames.push(Frame::marker(MARK_TRUNCATED));
        }
    }
}

/// A process's mappings and the files behind them, as the walk sees them.
struct ProcessSpace<'a> {
    pid: u32,
    mappings: &'a [Mapping],
    modules: &'a mut Modules,
    trampolines: &'a mut HashMap<(u32, u64), bool>,
}

/// Return addresses in JIT code checked for CPython's trampoline, at most.
const MAX_TRAMPOLINE_CHECKS: usize = 1 << 16;
/// CPython's perf trampoline around the return address of its call:
/// `sub $8,%rsp; call *%rcx` before, `add $8,%rsp; ret` after.
const TRAMPOLINE_BEFORE: [u8; 6] = [0x48, 0x83, 0xec, 0x08, 0xff, 0xd1];
const TRAMPOLINE_AFTER: [u8; 5] = [0x48, 0x83, 0xc4, 0x08, 0xc3];

impl ProcessSpace<'_> {
    fn mapping(&self, addr: u64) -> Option<Mapping> {
        procs::mapping_at(self.mappings, addr).copied()
    }
}

impl Space for ProcessSpace<'_> {
    fn is_return_address(&mut self, ra: u64) -> bool {
        // The call instruction ends right before `ra`, so `ra - 1` is in
        // the caller's mapping even where `ra` starts the next one.
        let Some(m) = self.mapping(ra.wrapping_sub(1)) else {
            return false;
        };
        if m.module == ANON {
            return true;
        }
        let offset = ra - m.start + m.pgoff;
        self.modules
            .image(m.module)
            .is_some_and(|image| image.follows_call(offset))
    }

    fn is_python_trampoline(&mut self, ra: u64) -> bool {
        if self
            .mapping(ra.wrapping_sub(1))
            .is_none_or(|m| m.module != ANON)
        {
            return false;
        }
        if let Some(&known) = self.trampolines.get(&(self.pid, ra)) {
            return known;
        }
        let mut code = [0u8; 11];
        let found = crate::unwind::read_exact(self.pid, ra.wrapping_sub(6), &mut code)
            && code[..6] == TRAMPOLINE_BEFORE
            && code[6..] == TRAMPOLINE_AFTER;
        if self.trampolines.len() >= MAX_TRAMPOLINE_CHECKS {
            self.trampolines.clear();
        }
        self.trampolines.insert((self.pid, ra), found);
        found
    }

    fn large_frame(&mut self, addr: u64) -> Option<LargeRule> {
        let m = self.mapping(addr).filter(|m| m.module != ANON)?;
        let offset = addr - m.start + m.pgoff;
        self.modules.image(m.module)?.large_frame_rule(offset)
    }

    fn is_entry(&mut self, addr: u64) -> bool {
        let Some(m) = self.mapping(addr).filter(|m| m.module != ANON) else {
            return false;
        };
        let offset = addr - m.start + m.pgoff;
        self.modules
            .image(m.module)
            .is_some_and(|image| image.is_entry(offset))
    }
}
