//! The unwind of one sample, frame by frame, from the stack copy and, where
//! the copy ends before the thread's entry, from the thread's live stack.
//!
//! Why each frame is right:
//!
//! - Frames unwound from the copy use only what the kernel copied at the
//!   sample: the registers and the stack bytes, read with the unwind rules
//!   of the code they are in.
//! - Past the copy, the walk first reads the words the program read with
//!   the sample ([`super::sampled`]): the thread's memory at that instant,
//!   as good as the copy.
//! - A step equal to one of the thread's last complete unwind (stack
//!   pointer, address, frame pointer) takes that unwind's later frames when
//!   every word it read from there on holds the same value in the copy or
//!   in what was read with the sample ([`Chains::replay`]): the unwind is a
//!   function of the registers and those words.
//! - Past the copy, the walk reads the thread's stack as it is now, shortly
//!   after the sample, and keeps what it finds only if the stack still
//!   holds what the sample saw where the two meet (the last
//!   [`OVERLAP_BYTES`] of the copy must be unchanged: had the thread
//!   returned past them and called elsewhere, they would have been
//!   overwritten), every frame moves the stack pointer up, every return
//!   address lies in executable code right after a call instruction, and
//!   the walk reaches the thread's entry. Anything less and every live
//!   frame is dropped: the stack ends at the copy, marked truncated.
//! - Even then the live frames are only candidates: a later sample of the
//!   thread must confirm them ([`super::confirm`]), which rules out a
//!   thread that had returned past the copy and left its last bytes as
//!   they were.
//! - A thread's last complete unwind ([`super::chains`]) saves reading its
//!   whole stack again: when the live walk has gone at least [`NEAR_BYTES`]
//!   past the copy with every frame equal to the chain's, and the chain's
//!   farther return addresses are still in the live stack where the chain
//!   says (a sample of them, read in one call), the rest is taken from the
//!   chain, and confirmed like live frames.

use framehop::x86_64::UnwindRegsX86_64;
use framehop::{FrameAddress, Unwinder as _};

use super::chains::{Chains, Replay, Step};
use super::confirm::{OVERLAP_BYTES, Unconfirmed};
use super::large::LargeRule;
use super::live::{LiveStack, read_words};
use super::memory::Memory;
use super::{MAX_USER_FRAMES, USER_REGS_COUNT, UnwindCache, Unwinder};
use crate::sys::monotonic_ns;

/// How far past the copy the live walk must agree with a thread's chain
/// before the rest of the chain is taken.
const NEAR_BYTES: u64 = 8 << 10;
/// Return addresses of the rest of a chain read to check it, at most.
const SPARSE_CHECKS: usize = 16;
/// Words a complete walk read this far below the end of its copy, and
/// above, are published to be read with the thread's next samples: a
/// sample up to this much deeper still finds the words past its copy.
const PUBLISH_BELOW: u64 = 24 << 10;
/// Words one walk notes, at most (a 2,000-frame stack reads about as many).
const MAX_TRACE: usize = 16 << 10;
/// Replays of a thread's chain refused in one walk before it stops trying.
const MAX_REPLAY_MISSES: u32 = 4;

/// How an unwind ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The walk reached the thread's entry.
    Complete,
    /// The walk stopped early: stack copy too short and the live stack not
    /// usable, missing unwind information, or the depth limit.
    Truncated,
}

/// The sample a walk unwinds.
pub struct Sampled<'a> {
    /// Process id.
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// BP, SP and IP at the sample.
    pub regs: [u64; USER_REGS_COUNT],
    /// The stack copy, starting at SP.
    pub stack: &'a [u8],
    /// Words past the copy read with the sample, sorted by address.
    pub words: &'a [(u64, u64)],
    /// Bytes past the copy read with the sample, and where they start.
    pub dense: &'a [u8],
    pub dense_at: u64,
}

/// What the walk asks of the sampled process.
pub trait Space {
    /// True when `ra` lies in executable code of the process right after a
    /// call instruction (for JIT code, whose bytes are not at hand: in an
    /// executable mapping).
    fn is_return_address(&mut self, ra: u64) -> bool;
    /// True when the code at lookup address `addr` belongs to a function a
    /// thread or process starts in.
    fn is_entry(&mut self, addr: u64) -> bool;
    /// The rule of the frame at lookup address `addr` when framehop's
    /// rules cannot hold it ([`super::large`]).
    fn large_frame(&mut self, addr: u64) -> Option<LargeRule>;
    /// True when `ra` returns into a copy of CPython's perf trampoline
    /// (`sub $8,%rsp; call *%rcx; add $8,%rsp; ret`, Python 3.12+ with
    /// `-X perf`): JIT code with no unwind information and no frame
    /// pointer of its own.
    fn is_python_trampoline(&mut self, ra: u64) -> bool;
}

/// Counters of the walks that went past their copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalkStats {
    /// Walks whose copy ended before the thread's entry.
    pub copy_ended: u64,
    /// Of those, completed with frames read from the live stack.
    pub live_completed: u64,
    /// Of those, completed with frames of the thread's chain.
    pub chain_completed: u64,
    /// Of those, completed from words read with the sample alone.
    pub sampled_completed: u64,
    /// Of those, left truncated: the live stack had changed, failed a check,
    /// or could not be read.
    pub live_refused: u64,
    /// Of those, left truncated because the live-read budget was spent.
    pub over_budget: u64,
    /// Bytes read from live stacks.
    pub live_bytes: u64,
}

/// Unwinds samples; owns the buffers and per-thread chains that make it
/// allocation-free in steady state.
pub struct Walker {
    live: LiveStack,
    chains: Chains,
    steps: Vec<Step>,
    follow: Vec<Step>,
    deep: bool,
    unconfirmed: Option<Unconfirmed>,
    /// Every word the last walk read, with its value.
    trace: Vec<(u64, u64)>,
    /// Per step of the last walk, where its reads start in `trace`.
    read_at: Vec<u32>,
    /// The addresses to publish after the last walk.
    published: Vec<u64>,
    publish: bool,
    budget: f64,
    budget_max: f64,
    budget_rate: f64,
    stats: WalkStats,
}

/// Where the walk left the copy.
struct Splice {
    /// Index in `steps` of the frame the copy ended in.
    at: usize,
    /// How many steps of `follow` the live walk has matched, while it
    /// matches them.
    matched: Option<usize>,
}

impl Walker {
    /// A walker reading at most `max_live_bytes` of one thread's stack per
    /// sample and `live_bytes_per_second` overall (`deep` false: never past
    /// the copy), keeping chains of at most `max_chain_steps` steps in all.
    pub fn new(
        deep: bool,
        max_live_bytes: usize,
        live_bytes_per_second: u64,
        max_chain_steps: usize,
    ) -> Walker {
        let rate = live_bytes_per_second as f64;
        Walker {
            live: LiveStack::new(max_live_bytes),
            chains: Chains::new(max_chain_steps),
            steps: Vec::with_capacity(1024),
            follow: Vec::new(),
            deep,
            unconfirmed: None,
            trace: Vec::with_capacity(MAX_TRACE),
            read_at: Vec::with_capacity(1024),
            published: Vec::with_capacity(MAX_TRACE),
            publish: false,
            budget: rate,
            budget_max: rate,
            budget_rate: rate,
            stats: WalkStats::default(),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> WalkStats {
        let mut s = self.stats;
        s.live_bytes = self.live.bytes_read;
        s
    }

    /// Number of threads with a chain.
    pub fn chains(&self) -> usize {
        self.chains.len()
    }

    /// Adds `seconds` worth of live-read budget (up to one second's worth).
    pub fn refill(&mut self, seconds: f64) {
        self.budget = (self.budget + seconds * self.budget_rate).min(self.budget_max);
    }

    /// What the last walk took from past its copy and a later sample of
    /// the thread must confirm ([`super::confirm`]); `None` when it took
    /// nothing from there.
    pub fn take_unconfirmed(&mut self) -> Option<Unconfirmed> {
        self.unconfirmed.take()
    }

    /// The addresses of the stack words the last walk read near and past
    /// its copy (sorted, distinct), when it went past its copy: the words
    /// to read with the thread's next samples.
    pub fn take_published(&mut self) -> Option<&[u64]> {
        if !std::mem::take(&mut self.publish) {
            return None;
        }
        self.published.sort_unstable();
        self.published.dedup();
        Some(&self.published)
    }

    /// Forgets a thread's chain: it exited, or frames taken from it were
    /// not confirmed.
    pub fn forget(&mut self, tid: u32) {
        self.chains.forget(tid);
    }

    /// Unwinds `s`, appending each frame's lookup address (the IP, then
    /// each return address minus one) to `out`, leaf first.
    pub fn walk(
        &mut self,
        unwinder: &Unwinder,
        cache: &mut UnwindCache,
        space: &mut impl Space,
        s: &Sampled<'_>,
        out: &mut Vec<u64>,
    ) -> Ending {
        self.unconfirmed = None;
        self.publish = false;
        self.trace.clear();
        self.read_at.clear();
        let [bp, sp, ip] = s.regs;
        let copy_end = sp.saturating_add(s.stack.len() as u64);
        let mut regs = UnwindRegsX86_64::new(ip, sp, bp);
        let mut addr = FrameAddress::from_instruction_pointer(ip);
        let out_start = out.len();
        self.steps.clear();
        self.steps.push(Step { sp, ra: ip, bp });
        self.read_at.push(0);
        out.push(ip);
        let live_before = self.live.bytes_read;
        let mut mem = Memory {
            copy: s.stack,
            sp,
            copy_end,
            live: &mut self.live,
            live_on: false,
            beyond: false,
            touched: false,
            words: s.words,
            dense: s.dense,
            dense_at: s.dense_at,
            used_sampled: false,
            trace: &mut self.trace,
        };
        let mut splice: Option<Splice> = None;
        let mut from_chain = false;
        let mut replayed = false;
        let mut replay_misses = 0;
        // The live stack no longer holds the end of the copy: the walk goes
        // on only to learn where the words past the copy are, for the
        // program to read them with the thread's next samples; none of its
        // frames past the copy is kept.
        let mut hints_only = false;
        let ending = loop {
            if self.steps.len() >= MAX_USER_FRAMES {
                break Ending::Truncated;
            }
            let saved = regs;
            mem.beyond = false;
            mem.touched = false;
            let result = if addr.is_return_address() && space.is_python_trampoline(addr.address()) {
                trampoline_step(&mut regs, &mut |a| mem.read(a))
            } else {
                match space.large_frame(addr.address_for_lookup()) {
                    Some(rule) => large_step(rule, &mut regs, &mut |a| mem.read(a)),
                    None => unwinder
                        .unwind_frame(addr, &mut regs, cache, &mut |a| mem.read(a))
                        .map_err(|_| ()),
                }
            };
            match result {
                Ok(Some(ra)) => {
                    let Some(next) = FrameAddress::from_return_address(ra) else {
                        break Ending::Truncated;
                    };
                    let prev_sp = self.steps.last().map_or(sp, |p| p.sp);
                    if mem.touched && !(regs.sp() > prev_sp && space.is_return_address(ra)) {
                        break Ending::Truncated;
                    }
                    let step = Step {
                        sp: regs.sp(),
                        ra,
                        bp: regs.bp(),
                    };
                    self.steps.push(step);
                    self.read_at.push(mem.trace.len() as u32);
                    out.push(ra.wrapping_sub(1));
                    addr = next;
                    if !mem.live_on && replay_misses < MAX_REPLAY_MISSES {
                        match self.chains.replay(s.pid, s.tid, step, |a| mem.fact(a)) {
                            Replay::NoMatch => {}
                            Replay::Differs => replay_misses += 1,
                            Replay::Same(rest, reads, at) => {
                                let base = mem.trace.len() as u32;
                                let first = at.first().copied().unwrap_or_default();
                                if self.steps.len() + rest.len() <= MAX_USER_FRAMES
                                    && mem.trace.len() + reads.len() <= mem.trace.capacity()
                                {
                                    mem.trace.extend_from_slice(reads);
                                    let later = at.iter().skip(1);
                                    self.read_at.extend(later.map(|&a| base + (a - first)));
                                    self.steps.extend_from_slice(rest);
                                    out.extend(rest.iter().map(|s| s.ra.wrapping_sub(1)));
                                    replayed = true;
                                    break Ending::Complete;
                                }
                            }
                        }
                    }
                    if let Some(splice) = &mut splice
                        && follow_chain(
                            splice,
                            &self.follow,
                            step,
                            copy_end,
                            s.pid,
                            &mut self.steps,
                            out,
                        )
                    {
                        from_chain = true;
                        break Ending::Complete;
                    }
                }
                Ok(None) => break Ending::Complete,
                Err(_) => {
                    regs = saved;
                    if mem.beyond && !mem.live_on && self.deep {
                        self.stats.copy_ended += 1;
                        if self.budget <= 0.0 {
                            self.stats.over_budget += 1;
                            break Ending::Truncated;
                        }
                        let at = self.steps.len() - 1;
                        let start = copy_end.saturating_sub(OVERLAP_BYTES).max(sp);
                        mem.live.start(s.pid, start);
                        mem.live_on = true;
                        let copied = usize::try_from(start - sp)
                            .ok()
                            .and_then(|o| s.stack.get(o..));
                        let same =
                            match (copied, mem.live.bytes(start, (copy_end - start) as usize)) {
                                (Some(a), Some(b)) => a == b,
                                _ => false,
                            };
                        let matched = self.steps.get(at).and_then(|&here| {
                            let rest = self.chains.from(s.pid, s.tid, here)?;
                            self.follow.clear();
                            self.follow.extend_from_slice(rest);
                            Some(1)
                        });
                        splice = Some(Splice { at, matched });
                        hints_only |= !same;
                        continue;
                    }
                    let last = out.last().copied().unwrap_or(ip);
                    break if space.is_entry(last) {
                        Ending::Complete
                    } else {
                        Ending::Truncated
                    };
                }
            }
        };
        let ending = match hints_only {
            true => Ending::Truncated,
            false => ending,
        };
        self.publish = splice.is_some() || mem.used_sampled;
        let used_sampled = mem.used_sampled;
        // A walk whose trace was cut cannot be replayed: its chain is not
        // kept.
        let traced = self.trace.len() < self.trace.capacity();
        self.published.clear();
        if self.publish {
            let floor = copy_end.saturating_sub(PUBLISH_BELOW).max(sp);
            self.published.extend(
                self.trace
                    .iter()
                    .map(|&(a, _)| a)
                    .filter(|&a| a >= floor && a & 7 == 0),
            );
        }
        let spent = self.live.bytes_read - live_before;
        self.budget -= spent as f64;
        match (&splice, ending) {
            (Some(sp_), Ending::Truncated) => {
                // Every live frame goes: the stack ends where the copy did.
                self.stats.live_refused += 1;
                out.truncate(out_start + sp_.at + 1);
                self.steps.truncate(sp_.at + 1);
            }
            (Some(sp_), Ending::Complete) => {
                let start = copy_end.saturating_sub(OVERLAP_BYTES).max(sp);
                self.unconfirmed = Some(Unconfirmed {
                    read_at: monotonic_ns(),
                    start,
                    bytes: usize::try_from(start - sp)
                        .ok()
                        .and_then(|o| s.stack.get(o..))
                        .map_or_else(Vec::new, <[u8]>::to_vec),
                    copy_frames: sp_.at + 1,
                    slots: self
                        .steps
                        .get(sp_.at + 1..)
                        .unwrap_or_default()
                        .iter()
                        .map(|st| (st.sp.wrapping_sub(8), st.ra))
                        .filter(|&(slot, _)| slot >= copy_end)
                        .collect(),
                });
                // A chain followed from the live stack was not read past
                // the point it was joined: the thread keeps its old chain.
                match from_chain {
                    true => self.stats.chain_completed += 1,
                    false => {
                        self.stats.live_completed += 1;
                        self.store_chain(s, traced);
                    }
                }
            }
            (None, Ending::Complete) if used_sampled => {
                self.stats.copy_ended += 1;
                self.stats.sampled_completed += 1;
                self.store_chain(s, traced);
            }
            (None, Ending::Complete) if replayed || self.chains.has(s.pid, s.tid) => {
                self.store_chain(s, traced);
            }
            (None, _) => {}
        }
        self.follow.clear();
        ending
    }

    fn store_chain(&mut self, s: &Sampled<'_>, traced: bool) {
        match traced {
            true => self
                .chains
                .store(s.pid, s.tid, &self.steps, &self.trace, &self.read_at),
            false => self.chains.forget(s.tid),
        }
    }
}

/// Follows the thread's chain while the live walk matches it; once the walk
/// is [`NEAR_BYTES`] past the copy and a sample of the chain's farther
/// return addresses is still in place, appends the rest of the chain and
/// returns true. The walk that leaves the chain (or fails the check) goes
/// on without it.
fn follow_chain(
    splice: &mut Splice,
    follow: &[Step],
    step: Step,
    copy_end: u64,
    pid: u32,
    steps: &mut Vec<Step>,
    out: &mut Vec<u64>,
) -> bool {
    let Some(matched) = splice.matched else {
        return false;
    };
    if follow.get(matched) != Some(&step) {
        splice.matched = None;
        return false;
    }
    let matched = matched + 1;
    splice.matched = Some(matched);
    let Some(rest) = follow.get(matched..) else {
        return false;
    };
    if rest.is_empty()
        || step.sp < copy_end.saturating_add(NEAR_BYTES)
        || steps.len() + rest.len() > MAX_USER_FRAMES
    {
        return false;
    }
    // Return-address slots at doubling distances, and the last one.
    let mut slots = [0u64; SPARSE_CHECKS];
    let mut want = [0u64; SPARSE_CHECKS];
    let mut n = 0;
    let mut i = 0usize;
    while i < rest.len() && n < SPARSE_CHECKS - 1 {
        slots[n] = rest[i].sp.wrapping_sub(8);
        want[n] = rest[i].ra;
        n += 1;
        i = i * 2 + 1;
    }
    if let Some(last) = rest.last() {
        slots[n] = last.sp.wrapping_sub(8);
        want[n] = last.ra;
        n += 1;
    }
    let mut got = [0u64; SPARSE_CHECKS];
    if !read_words(pid, &slots[..n], &mut got) || got[..n] != want[..n] {
        splice.matched = None;
        return false;
    }
    steps.extend_from_slice(rest);
    out.extend(rest.iter().map(|s| s.ra.wrapping_sub(1)));
    true
}

/// One step through a frame framehop cannot hold: the CFA from SP or BP,
/// the return address right below it, BP restored where it was saved.
fn large_step(
    rule: LargeRule,
    regs: &mut UnwindRegsX86_64,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Option<u64>, ()> {
    let base = if rule.from_bp { regs.bp() } else { regs.sp() };
    let cfa = base.checked_add_signed(rule.offset).ok_or(())?;
    let ra = read(cfa.checked_sub(8).ok_or(())?)?;
    let bp = match rule.bp_at {
        Some(at) => read(cfa.checked_add_signed(at).ok_or(())?)?,
        None => regs.bp(),
    };
    if ra == 0 {
        return Ok(None);
    }
    if cfa <= regs.sp() {
        return Err(());
    }
    regs.set_sp(cfa);
    regs.set_bp(bp);
    regs.set_ip(ra);
    Ok(Some(ra))
}

/// One step through CPython's perf trampoline, stopped in its call: the
/// return address above the 8 bytes it subtracted.
fn trampoline_step(
    regs: &mut UnwindRegsX86_64,
    read: &mut impl FnMut(u64) -> Result<u64, ()>,
) -> Result<Option<u64>, ()> {
    let sp = regs.sp();
    let ra = read(sp.checked_add(8).ok_or(())?)?;
    if ra == 0 {
        return Ok(None);
    }
    regs.set_sp(sp.checked_add(16).ok_or(())?);
    regs.set_ip(ra);
    Ok(Some(ra))
}
