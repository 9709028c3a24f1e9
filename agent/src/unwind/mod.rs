//! User-stack unwinding: from the copy the kernel takes with each sample,
//! and past its end from the thread's live stack.
//!
//! - [`elf`]: executable files mapped once, their unwind sections handed
//!   to framehop as slices, their entry functions and code.
//! - [`walk`]: the unwind of one sample, frame by frame ([`Walker`]).
//! - `live`: the thread's stack read from its process (`process_vm_readv`).
//! - `confirm`: frames from past the copy wait for a later sample of the
//!   thread to confirm them.
//! - `large`: the rules of frames too large for framehop's, from gimli.
//! - `chains`: per thread, the frames of its last complete unwind and the
//!   words it read, which a later sample replays when those words are
//!   unchanged, or reuses once they are checked against the live stack.
//! - `sampled`: the program's part that reads, with each sample, the bytes
//!   right past the copy and the words earlier unwinds of the thread read,
//!   and their records in user space.
//! - `memory`: what a walk reads (copy, then what was read with the
//!   sample, then the live stack), every word traced.
//!
//! Each process gets a framehop unwinder over its modules; addresses
//! outside every module (JIT code, binaries without unwind tables) fall
//! back to frame pointers. Unwinding allocates nothing in steady state:
//! framehop runs with `MustNotAllocateDuringUnwind`, frames go to
//! caller-owned buffers and the live-stack buffer and chains keep their
//! capacity.

mod chains;
mod confirm;
pub mod elf;
mod large;
mod live;
mod memory;
mod sampled;
pub mod walk;

use framehop::MustNotAllocateDuringUnwind;
use framehop::x86_64::{CacheX86_64, UnwinderX86_64};

pub use confirm::{Unconfirmed, Verdict};
pub use elf::{Backing, ElfImage, LoadSegment, SectionBytes, read_own_vdso};
pub use large::LargeRule;
pub use live::read_exact;
pub use sampled::SampledWords;
pub use walk::{Ending, Sampled, Space, WalkStats, Walker};

/// framehop's unwinder for one process.
pub type Unwinder = UnwinderX86_64<SectionBytes, MustNotAllocateDuringUnwind>;
/// framehop's rule cache, shared by every process's unwinder.
pub type UnwindCache = CacheX86_64<MustNotAllocateDuringUnwind>;

/// The user registers the sampler asks the kernel for: BP, SP and IP
/// (`PERF_REG_X86_BP`, `_SP`, `_IP`), in that order in each sample.
pub const USER_REGS_MASK: u64 = (1 << 6) | (1 << 7) | (1 << 8);
/// Number of registers in [`USER_REGS_MASK`].
pub const USER_REGS_COUNT: usize = 3;
/// Frames beyond this depth are cut and the stack marked truncated.
pub const MAX_USER_FRAMES: usize = 8192;
