//! Heap profiling by sampling: a [`GlobalAlloc`] wrapper that takes the
//! stack of about one allocation per `mean` bytes allocated (a Poisson
//! process over bytes, as tcmalloc and Go do), weighs each sampled
//! allocation by the inverse of its probability of being sampled, and keeps
//! the sampled ones that are still live until they are freed.
//!
//! The common path is a thread-local countdown per allocation and one
//! relaxed load from a per-size-class count per free (no tracked
//! allocation of that size class: nothing more to do). Only a sampled
//! allocation, or the free of one a 64 KiB counting filter cannot rule out,
//! takes the recorder's lock. The recorder's own allocations run under a
//! per-thread re-entrancy flag, so they are never sampled and never wait
//! for the lock they are made under. Threads of the profiler itself set the
//! flag for good ([`exclude_current_thread`]).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU16, AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use hashbrown::HashMap;

/// Deepest stack recorded for a sampled allocation.
pub const MAX_FRAMES: usize = 64;
/// Sampled allocations tracked at once; beyond it new ones count toward
/// `alloc_*` but not `inuse_*` (counted in [`HeapSnapshot::untracked`]).
pub const MAX_TRACKED: usize = 1 << 20;
/// Distinct stacks kept; beyond it samples are counted as dropped.
pub const MAX_STACKS: usize = 1 << 16;

const FILTER_SLOTS: usize = 1 << 16;

/// Wraps an allocator (the system's by default) with heap sampling.
/// Install it with `#[global_allocator]`; it samples nothing until a
/// [`crate::embed::Profiler`] with heap profiling starts.
///
/// ```no_run
/// use firewatch_agent::embed::SamplingAllocator;
///
/// #[global_allocator]
/// static ALLOC: SamplingAllocator = SamplingAllocator::system();
/// ```
pub struct SamplingAllocator<A = System> {
    inner: A,
}

impl SamplingAllocator<System> {
    /// Sampling around the system allocator.
    pub const fn system() -> Self {
        SamplingAllocator { inner: System }
    }
}

impl<A> SamplingAllocator<A> {
    /// Sampling around `inner` (e.g. a jemalloc or mimalloc allocator).
    pub const fn new(inner: A) -> Self {
        SamplingAllocator { inner }
    }
}

// SAFETY: every call is forwarded to `inner` with the same arguments; the
// bookkeeping around it never touches the memory handed out.
//
// The common case is kept to a handful of instructions with the call to
// `inner` in tail position: an allocation decrements a thread-local
// countdown, a free loads one per-size-class count. Everything else
// (sampling off, first use on a thread, re-entrancy, a sample due, a free
// that may be of a tracked allocation) is in out-of-line cold functions.
unsafe impl<A: GlobalAlloc> GlobalAlloc for SamplingAllocator<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if countdown(layout.size()) {
            // SAFETY: forwarded as is.
            unsafe { self.inner.alloc(layout) }
        } else {
            // SAFETY: forwarded as is.
            unsafe { alloc_due(layout, false, &self.inner) }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if countdown(layout.size()) {
            // SAFETY: forwarded as is.
            unsafe { self.inner.alloc_zeroed(layout) }
        } else {
            // SAFETY: forwarded as is.
            unsafe { alloc_due(layout, true, &self.inner) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if maybe_tracked(layout.size()) {
            // SAFETY: forwarded as is.
            unsafe { dealloc_tracked(ptr, layout, &self.inner) }
        } else {
            // SAFETY: forwarded as is.
            unsafe { self.inner.dealloc(ptr, layout) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !maybe_tracked(layout.size()) & countdown(new_size) {
            // SAFETY: forwarded as is.
            unsafe { self.inner.realloc(ptr, layout, new_size) }
        } else {
            // SAFETY: forwarded as is.
            unsafe { realloc_slow(ptr, layout, new_size, &self.inner) }
        }
    }
}

// The uncommon cases, out of line so that what callers inline stays small.
// The allocator comes last so the caller's arguments stay in the registers
// they arrived in, and the common path needs no moves before its branch.

#[cold]
#[inline(never)]
unsafe fn alloc_due<A: GlobalAlloc>(layout: Layout, zeroed: bool, inner: &A) -> *mut u8 {
    // SAFETY: the caller's contract is `GlobalAlloc::alloc`'s.
    let p = unsafe {
        if zeroed {
            inner.alloc_zeroed(layout)
        } else {
            inner.alloc(layout)
        }
    };
    due(p, layout.size());
    p
}

#[cold]
#[inline(never)]
unsafe fn dealloc_tracked<A: GlobalAlloc>(ptr: *mut u8, layout: Layout, inner: &A) {
    // Forget it before the memory can be handed out again.
    on_free(ptr);
    // SAFETY: the caller's contract is `GlobalAlloc::dealloc`'s.
    unsafe { inner.dealloc(ptr, layout) }
}

#[cold]
#[inline(never)]
unsafe fn realloc_slow<A: GlobalAlloc>(
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
    inner: &A,
) -> *mut u8 {
    // `realloc` has counted `new_size` off already (`&` evaluates both sides).
    if maybe_tracked(layout.size()) {
        on_free(ptr);
    }
    // SAFETY: the caller's contract is `GlobalAlloc::realloc`'s.
    let p = unsafe { inner.realloc(ptr, layout, new_size) };
    if STATE.with(|s| s.countdown.get() <= 0) {
        due(p, new_size);
    }
    p
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static MEAN_BYTES: AtomicU64 = AtomicU64::new(512 * 1024);
// Tracked allocations per exact size below 2 KiB (larger frees, rarer and
// costlier in any allocator, always ask the filter): most frees are of
// sizes no tracked allocation has, and one load from this 4 KiB table
// rules them out without touching the 64 KiB filter. Exact sizes matter: a
// service's small objects come in a few sizes, and one tracked object of a
// popular size sends every free of that size to the filter.
const CLASSES: usize = 2048;
static CLASS_LIVE: [AtomicU16; CLASSES] = [const { AtomicU16::new(0) }; CLASSES];
static FILTER: [AtomicU8; FILTER_SLOTS] = [const { AtomicU8::new(0) }; FILTER_SLOTS];
static RECORDER: Mutex<Option<Recorder>> = Mutex::new(None);

struct ThreadState {
    // Bytes until the next sample; armed on first use.
    countdown: Cell<i64>,
    rng: Cell<u64>,
    busy: Cell<bool>,
}

thread_local! {
    // Const-initialised and without a destructor: usable from the
    // allocator at any point of a thread's life, teardown included.
    static STATE: ThreadState = const {
        ThreadState { countdown: Cell::new(0), rng: Cell::new(0), busy: Cell::new(false) }
    };
}

/// Starts sampling about one allocation per `mean_bytes` allocated.
pub(crate) fn enable(mean_bytes: u64) {
    MEAN_BYTES.store(mean_bytes.max(1), Relaxed);
    ENABLED.store(true, Relaxed);
}

/// Starts sampling and tells whether the hook is live: this thread's next
/// allocation must arm its countdown, which only happens when
/// [`SamplingAllocator`] is the global allocator. Stops again if not.
pub(crate) fn install_check(mean_bytes: u64) -> bool {
    enable(mean_bytes);
    // Zero the countdown so the next allocation goes through `due`, which
    // arms the thread: only the installed hook does that.
    STATE.with(|s| {
        s.rng.set(0);
        s.countdown.set(0);
    });
    drop(std::hint::black_box(Box::new([0u8; 64])));
    let armed = STATE.try_with(|s| s.rng.get() != 0).unwrap_or(false);
    if !armed {
        ENABLED.store(false, Relaxed);
    }
    armed
}

/// Stops sampling and forgets everything recorded.
pub(crate) fn disable() {
    ENABLED.store(false, Relaxed);
    let _busy = Busy::enter();
    let mut rec = lock();
    *rec = None;
    for slot in &FILTER {
        slot.store(0, Relaxed);
    }
    for class in &CLASS_LIVE {
        class.store(0, Relaxed);
    }
}

/// The mean sampling interval in bytes.
pub fn mean_bytes() -> u64 {
    MEAN_BYTES.load(Relaxed)
}

/// Never samples the calling thread's allocations again (the profiler's
/// own threads call this, so its work stays out of the service's profile).
pub fn exclude_current_thread() {
    let _ = STATE.try_with(|s| s.busy.set(true));
}

fn lock() -> MutexGuard<'static, Option<Recorder>> {
    // A panic while holding the lock cannot leave the maps half-updated in
    // a way that matters for sampling: keep going.
    RECORDER.lock().unwrap_or_else(|e| e.into_inner())
}

// Sets the thread's re-entrancy flag for its lifetime (unless it was
// already set, in which case it leaves it set).
struct Busy {
    was: bool,
}

impl Busy {
    fn enter() -> Busy {
        let was = STATE.try_with(|s| s.busy.replace(true)).unwrap_or(true);
        Busy { was }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if !self.was {
            let _ = STATE.try_with(|s| s.busy.set(false));
        }
    }
}

// While sampling is off (or the thread is excluded) a thread looks at the
// switch again after this many bytes: turning sampling on reaches every
// thread within this much of its allocation.
const RECHECK_BYTES: i64 = 64 * 1024;

/// Counts `size` bytes off the thread's countdown; false when the
/// allocation must go through [`due`] (a sample is due, or the countdown
/// only served to look at the switch again).
#[inline(always)]
fn countdown(size: usize) -> bool {
    // `Layout` keeps sizes within `isize::MAX`, and a countdown is positive
    // until it reaches `due`, so this cannot overflow.
    STATE.with(|s| {
        let left = s.countdown.get().wrapping_sub(size as i64);
        s.countdown.set(left);
        left > 0
    })
}

#[cold]
#[inline(never)]
fn due(ptr: *mut u8, size: usize) {
    let sample = STATE.with(|s| {
        if !ENABLED.load(Relaxed) {
            // Disarmed: when sampling resumes the thread starts a fresh
            // interval instead of taking this countdown's end as a sample.
            s.rng.set(0);
            s.countdown.set(RECHECK_BYTES);
            return false;
        }
        if s.rng.get() == 0 {
            s.rng.set(seed(s));
            s.countdown.set(next_interval(s));
            return false;
        }
        s.countdown.set(next_interval(s));
        !s.busy.get()
    });
    if sample && !ptr.is_null() {
        record(ptr, size);
    }
}

#[inline]
fn size_class(size: usize) -> Option<usize> {
    (size < CLASSES).then_some(size)
}

/// Whether a free of `size` bytes may be of a tracked allocation.
#[inline(always)]
fn maybe_tracked(size: usize) -> bool {
    match size_class(size) {
        Some(class) => CLASS_LIVE[class].load(Relaxed) != 0,
        None => true,
    }
}

// Inlined into the (out-of-line) free paths: most frees that get here are
// of a size some tracked allocation has, and the filter rules them out.
#[inline(always)]
fn on_free(ptr: *mut u8) {
    let slot = &FILTER[slot_of(ptr as usize)];
    if slot.load(Relaxed) != 0 {
        forget(ptr, slot);
    }
}

#[cold]
#[inline(never)]
fn forget(ptr: *mut u8, slot: &AtomicU8) {
    if STATE.with(|s| s.busy.get()) {
        return;
    }
    let _busy = Busy::enter();
    let mut rec = lock();
    if let Some(rec) = rec.as_mut()
        && let Some(live) = rec.live.remove(&(ptr as usize))
    {
        slot.fetch_sub(1, Relaxed);
        if let Some(class) = live.class {
            CLASS_LIVE[usize::from(class)].fetch_sub(1, Relaxed);
        }
        let s = &mut rec.stacks[live.stack as usize];
        s.inuse_objects -= live.objects;
        s.inuse_bytes -= live.bytes;
    }
}

#[cold]
fn record(ptr: *mut u8, size: usize) {
    let _busy = Busy::enter();
    let mut ips = [0usize; MAX_FRAMES];
    let mut n = 0;
    // SAFETY: the unsynchronized walk is safe as long as no other walk
    // runs concurrently on this thread, which the busy flag guarantees; it
    // does not allocate.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            ips[n] = frame.ip() as usize;
            n += 1;
            n < MAX_FRAMES
        });
    }
    let mean = MEAN_BYTES.load(Relaxed) as f64;
    let size_f = size as f64;
    // P(sampled) for a Poisson process over bytes: an allocation of `size`
    // bytes holds at least one sample point with probability 1 - e^(-size/mean).
    let p = -(-size_f / mean).exp_m1();
    let (objects, bytes) = if p > 0.0 {
        (1.0 / p, size_f / p)
    } else {
        (0.0, 0.0)
    };
    let mut guard = lock();
    let rec = guard.get_or_insert_with(Recorder::default);
    let Some(stack) = rec.stack_id(&ips[..n]) else {
        rec.dropped += 1;
        return;
    };
    let s = &mut rec.stacks[stack as usize];
    s.alloc_objects += objects;
    s.alloc_bytes += bytes;
    s.inuse_objects += objects;
    s.inuse_bytes += bytes;
    let slot = &FILTER[slot_of(ptr as usize)];
    let class = size_class(size);
    let class_full = class.is_some_and(|c| CLASS_LIVE[c].load(Relaxed) == u16::MAX);
    if rec.live.len() < MAX_TRACKED && slot.load(Relaxed) < u8::MAX && !class_full {
        rec.live.insert(
            ptr as usize,
            Live {
                stack,
                objects,
                bytes,
                class: class.and_then(|c| u16::try_from(c).ok()),
            },
        );
        if let Some(class) = class {
            CLASS_LIVE[class].fetch_add(1, Relaxed);
        }
        slot.fetch_add(1, Relaxed);
    } else {
        // Never freed as far as we know: keep `inuse` honest by not
        // counting it as live.
        s.inuse_objects -= objects;
        s.inuse_bytes -= bytes;
        rec.untracked += 1;
    }
}

#[inline(always)]
fn slot_of(addr: usize) -> usize {
    // Allocations are at least 8-aligned: drop the low bits, then mix.
    let x = (addr >> 4) as u64;
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 48) as usize & (FILTER_SLOTS - 1)
}

fn seed(s: &ThreadState) -> u64 {
    let here = s as *const ThreadState as u64;
    let t = firewatch_syntax::now_ns() as u64;
    (here ^ t.rotate_left(17)).wrapping_mul(0x2545_f491_4f6c_dd1d) | 1
}

// Exponentially distributed with mean MEAN_BYTES (xorshift64* uniform).
fn next_interval(s: &ThreadState) -> i64 {
    let mut x = s.rng.get();
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s.rng.set(x);
    let u = ((x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let mean = MEAN_BYTES.load(Relaxed) as f64;
    (-u.ln() * mean).min(i64::MAX as f64) as i64 + 1
}

#[derive(Default)]
struct Recorder {
    ids: HashMap<Box<[usize]>, u32>,
    stacks: Vec<StackStats>,
    live: HashMap<usize, Live>,
    dropped: u64,
    untracked: u64,
}

impl Recorder {
    fn stack_id(&mut self, ips: &[usize]) -> Option<u32> {
        if let Some(&id) = self.ids.get(ips) {
            return Some(id);
        }
        if self.stacks.len() >= MAX_STACKS {
            return None;
        }
        let id = self.stacks.len() as u32;
        self.ids.insert(ips.into(), id);
        self.stacks.push(StackStats {
            ips: ips.into(),
            ..StackStats::default()
        });
        Some(id)
    }
}

#[derive(Clone, Copy)]
struct Live {
    stack: u32,
    objects: f64,
    bytes: f64,
    class: Option<u16>,
}

#[derive(Clone, Default)]
struct StackStats {
    ips: Box<[usize]>,
    alloc_objects: f64,
    alloc_bytes: f64,
    inuse_objects: f64,
    inuse_bytes: f64,
}

/// One stack's estimates: allocations since the previous snapshot, and
/// what is live now.
#[derive(Clone, Debug, PartialEq)]
pub struct HeapStack {
    /// Return addresses, innermost first (the allocator's own frames included).
    pub ips: Box<[usize]>,
    /// Estimated allocations since the previous snapshot.
    pub alloc_objects: f64,
    /// Estimated bytes allocated since the previous snapshot.
    pub alloc_bytes: f64,
    /// Estimated live allocations.
    pub inuse_objects: f64,
    /// Estimated live bytes.
    pub inuse_bytes: f64,
}

/// What the recorder holds at one moment.
#[derive(Clone, Debug, Default)]
pub struct HeapSnapshot {
    /// Stacks with any allocation since the previous snapshot or anything live.
    pub stacks: Vec<HeapStack>,
    /// Sampled allocations dropped because the stack table was full.
    pub dropped: u64,
    /// Sampled allocations not tracked until freed (tracking table full).
    pub untracked: u64,
    /// Sampled allocations live now.
    pub tracked: usize,
}

/// Takes the allocations since the previous call and the live estimates,
/// resetting the former.
pub fn snapshot() -> HeapSnapshot {
    let _busy = Busy::enter();
    let mut guard = lock();
    let Some(rec) = guard.as_mut() else {
        return HeapSnapshot::default();
    };
    let mut out = HeapSnapshot {
        stacks: Vec::new(),
        dropped: std::mem::take(&mut rec.dropped),
        untracked: std::mem::take(&mut rec.untracked),
        tracked: rec.live.len(),
    };
    for s in &mut rec.stacks {
        if s.alloc_objects == 0.0 && s.inuse_objects <= 0.0 {
            continue;
        }
        out.stacks.push(HeapStack {
            ips: s.ips.clone(),
            alloc_objects: std::mem::take(&mut s.alloc_objects),
            alloc_bytes: std::mem::take(&mut s.alloc_bytes),
            inuse_objects: s.inuse_objects.max(0.0),
            inuse_bytes: s.inuse_bytes.max(0.0),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_spread() {
        let mut seen = hashbrown::HashSet::new();
        for i in 0..1000usize {
            seen.insert(slot_of(0x7f00_0000_0000 + i * 16));
        }
        assert!(seen.len() > 990, "{}", seen.len());
    }

    #[test]
    fn intervals_average_to_the_mean() {
        let s = ThreadState {
            countdown: Cell::new(0),
            rng: Cell::new(12345),
            busy: Cell::new(false),
        };
        MEAN_BYTES.store(1000, Relaxed);
        let n = 200_000;
        let sum: i64 = (0..n).map(|_| next_interval(&s)).sum();
        let mean = sum as f64 / n as f64;
        assert!((mean - 1000.0).abs() < 15.0, "{mean}");
        MEAN_BYTES.store(512 * 1024, Relaxed);
    }
}
