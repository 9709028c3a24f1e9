//! The BPF program that copies a Python thread's frame chain at the moment
//! of each CPU sample, and the few instructions it is written in.
//!
//! It runs in the perf event's overflow handler, before the kernel writes
//! the sample: it looks the sampled thread up in the map of Python threads
//! (thread id -> thread state and layout), follows the thread state to its
//! current frame and walks the `previous` links, copying three words of
//! each frame (code object, instruction, the word holding the frame's
//! owner) into a ring-buffer record stamped with the thread and
//! `CLOCK_MONOTONIC` time, which user space joins to the sample. A sample
//! of a thread it does not know, in a process not known to be other than
//! Python, becomes a notice that wakes the sampling loop, so that user
//! space looks at the process or thread within milliseconds rather than
//! at the next drain. The walk is
//! unrolled per layout, so every offset is a constant the verifier sees and
//! there is no loop to bound.

use super::layout::Layout;
use crate::bpf::asm::*;

/// Frames copied per sample, at most.
pub const MAX_FRAMES: usize = 128;
/// Bytes of a record before its frames: pid/tid, time, count and status,
/// CPU.
pub const RECORD_HEADER: usize = 32;
/// Bytes per frame in a record: code, instruction pointer, owner word.
pub const FRAME_BYTES: usize = 24;
/// Room on the program's stack for the head of one frame: every layout's
/// `frame_read` fits.
const FRAME_ROOM: i16 = 112;

/// How a walk ended.
pub const STATUS_COMPLETE: u32 = 0;
pub const STATUS_UNREADABLE: u32 = 1;
pub const STATUS_CUT: u32 = 2;

// Stack slots (offsets from the frame pointer).
const SLOT_TID: i16 = -8;
const SLOT_TGID: i16 = -12;
const SLOT_ZERO: i16 = -16;
const SLOT_WORD: i16 = -24;
const SLOT_FRAME: i16 = -24 - FRAME_ROOM;

/// The maps the program uses, by descriptor.
pub struct Maps {
    /// u32 thread id -> [thread state u64, layout index u32, process id u32].
    pub threads: i32,
    /// u32 process id -> u32: 1 for a Python process, 0 for any other.
    pub procs: i32,
    /// A per-CPU array of one record, where the copy is built.
    pub scratch: i32,
    /// The copies.
    pub copies: i32,
    /// Notices (the `pid_tgid` word) of samples of a thread the maps do not
    /// know, in a process not known to be other than Python.
    pub notices: i32,
}

/// Layout index of a thread known not to run Python code.
pub const LAYOUT_NONE: u32 = 0xff;

/// Appends the program's Python part to `a`: it jumps to `done` when
/// finished.
pub fn emit(a: &mut Asm, layouts: &[Layout], maps: &Maps, done: Label) {
    let miss = a.label();
    let out = a.label();
    let complete = a.label();
    let unreadable = a.label();
    let cut = a.label();

    a.lookup_thread(maps.threads, SLOT_TID, 12, miss);
    a.start_record(maps.scratch, SLOT_ZERO, 24, done);
    a.mov_k(R6, 0);

    let starts: Vec<Label> = layouts.iter().map(|_| a.label()).collect();
    a.raw(LDX_W, R1, R7, 8, 0);
    for (i, start) in starts.iter().enumerate() {
        a.jump(JEQ_K, R1, i as i32, *start);
    }
    // LAYOUT_NONE, or any other.
    a.jump(JA, 0, 0, done);

    for (layout, start) in layouts.iter().zip(starts) {
        a.bind(start);
        // The current frame: through the thread state's pointers.
        a.ldx(R9, R7, 0);
        for &off in layout.current_frame {
            a.jump(JEQ_K, R9, 0, complete);
            a.add_k(R9, i32::from(off));
            a.read_user(SLOT_WORD, 8, R9, unreadable);
            a.ldx(R9, FP, SLOT_WORD);
        }
        for i in 0..MAX_FRAMES {
            a.jump(JEQ_K, R9, 0, complete);
            a.read_user(
                SLOT_FRAME,
                layout.frame_read.min(i32::from(FRAME_ROOM)),
                R9,
                unreadable,
            );
            let at = (RECORD_HEADER + i * FRAME_BYTES) as i16;
            for (k, field) in [layout.frame_code, layout.frame_instr, layout.frame_owner]
                .into_iter()
                .enumerate()
            {
                a.ldx(R1, FP, SLOT_FRAME + field);
                a.stx(R8, at + 8 * k as i16, R1);
            }
            a.ldx(R9, FP, SLOT_FRAME + layout.frame_previous);
            a.add_k(R6, 1);
        }
        a.jump(JA, 0, 0, cut);
    }

    for (label, status) in [
        (complete, STATUS_COMPLETE),
        (unreadable, STATUS_UNREADABLE),
        (cut, STATUS_CUT),
    ] {
        a.bind(label);
        a.mov_k(R4, status as i32);
        a.jump(JA, 0, 0, out);
    }

    a.bind(out);
    a.jump(JGT_K, R6, MAX_FRAMES as i32, done);
    a.raw(STX_W, R8, R6, 16, 0);
    a.raw(STX_W, R8, R4, 20, 0);
    a.mov_x(R3, R6);
    a.raw(ALU64_K | MUL, R3, 0, 0, FRAME_BYTES as i32);
    a.add_k(R3, RECORD_HEADER as i32);
    a.mov_x(R2, R8);
    a.map_fd(R1, maps.copies);
    a.mov_k(R4, RINGBUF_NO_WAKEUP);
    a.call(RINGBUF_OUTPUT);
    a.jump(JA, 0, 0, done);

    // Not a known thread: say so, unless the process is known not to be
    // Python's.
    a.bind(miss);
    let notice = a.label();
    a.mov_x(R1, R6);
    a.raw(ALU64_K | RSH, R1, 0, 0, 32);
    a.raw(STX_W, FP, R1, SLOT_TGID, 0);
    a.lookup(maps.procs, SLOT_TGID, notice);
    a.raw(LDX_W, R1, R0, 0, 0);
    a.jump(JEQ_K, R1, 0, done);
    a.bind(notice);
    a.stx(FP, SLOT_WORD, R6);
    a.map_fd(R1, maps.notices);
    a.mov_x(R2, FP);
    a.add_k(R2, i32::from(SLOT_WORD));
    a.mov_k(R3, 8);
    // Adaptive wake-up: a notice is worth waking the loop for.
    a.mov_k(R4, 0);
    a.call(RINGBUF_OUTPUT);
    a.jump(JA, 0, 0, done);
}

/// Bytes of the scratch record the program fills.
pub const fn record_capacity() -> usize {
    RECORD_HEADER + MAX_FRAMES * FRAME_BYTES
}
