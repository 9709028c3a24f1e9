//! Integration tests of the agent: real perf events on ground-truth
//! workloads (run as root), Debian's `perf` as the reference, shipping
//! against a loopback receiver, a counting allocator proving the sampling
//! path allocates nothing per sample, and allocation probes of a C program.

mod alloc;
mod alloc_stacks;
mod cli;
mod fidelity;
mod labels;
mod perf;
mod python;
mod receiver;
mod sampling;
mod ship;
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counts allocations made by threads that opted in with [`count_allocations`].
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

/// Where the first counted allocation was made, for the failure message.
static FIRST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

fn note() {
    if COUNTING.try_with(Cell::get).unwrap_or(false)
        && ALLOCATIONS.fetch_add(1, Ordering::Relaxed) == 0
    {
        // Not counted: the capture allocates.
        COUNTING.with(|c| c.set(false));
        let trace = std::backtrace::Backtrace::force_capture().to_string();
        if let Ok(mut first) = FIRST.lock() {
            *first = Some(trace);
        }
        COUNTING.with(|c| c.set(true));
    }
}

/// The backtrace of the first allocation counted since the process started,
/// if any.
pub fn first_allocation() -> String {
    FIRST
        .lock()
        .ok()
        .and_then(|f| f.clone())
        .unwrap_or_default()
}

// SAFETY: defers every operation to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Runs `f` and returns its result with the number of heap allocations it
/// made on this thread.
pub fn count_allocations<R>(f: impl FnOnce() -> R) -> (R, u64) {
    COUNTING.with(|c| c.set(true));
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let r = f();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    COUNTING.with(|c| c.set(false));
    (r, after - before)
}
