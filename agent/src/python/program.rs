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

/// Frames copied per sample, at most.
pub const MAX_FRAMES: usize = 128;
/// Bytes of a record before its frames: pid/tid, time, count and status.
pub const RECORD_HEADER: usize = 24;
/// Bytes per frame in a record: code, instruction pointer, owner word.
pub const FRAME_BYTES: usize = 24;
/// Room on the program's stack for the head of one frame: every layout's
/// `frame_read` fits.
const FRAME_ROOM: i16 = 112;

/// How a walk ended.
pub const STATUS_COMPLETE: u32 = 0;
pub const STATUS_UNREADABLE: u32 = 1;
pub const STATUS_CUT: u32 = 2;

// Registers.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const FP: u8 = 10;

// Helpers.
const MAP_LOOKUP_ELEM: i32 = 1;
const KTIME_GET_NS: i32 = 5;
const GET_CURRENT_PID_TGID: i32 = 14;
const PROBE_READ_USER: i32 = 112;
const RINGBUF_OUTPUT: i32 = 130;
const RINGBUF_NO_WAKEUP: i32 = 1;

// Opcodes.
const ALU64_K: u8 = 0x07;
const ALU64_X: u8 = 0x0f;
const ADD: u8 = 0x00;
const MUL: u8 = 0x20;
const RSH: u8 = 0x70;
const MOV: u8 = 0xb0;
const LDX_DW: u8 = 0x79;
const LDX_W: u8 = 0x61;
const STX_DW: u8 = 0x7b;
const STX_W: u8 = 0x63;
const ST_W: u8 = 0x62;
const JA: u8 = 0x05;
const JEQ_K: u8 = 0x15;
const JNE_K: u8 = 0x55;
const JGT_K: u8 = 0x25;
const JNE_X: u8 = 0x5d;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LD_DW_IMM: u8 = 0x18;
const PSEUDO_MAP_FD: u8 = 1;

// Stack slots (offsets from the frame pointer).
const SLOT_TID: i16 = -8;
const SLOT_TGID: i16 = -12;
const SLOT_ZERO: i16 = -16;
const SLOT_WORD: i16 = -24;
const SLOT_FRAME: i16 = -24 - FRAME_ROOM;

#[derive(Clone, Copy)]
struct Label(usize);

/// Instructions with forward and backward labels.
#[derive(Default)]
struct Asm {
    insns: Vec<u64>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        let word = u64::from(code)
            | (u64::from(dst & 0xf) << 8)
            | (u64::from(src & 0xf) << 12)
            | (u64::from(off as u16) << 16)
            | (u64::from(imm as u32) << 32);
        self.insns.push(word);
    }

    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(code, dst, 0, 0, imm);
    }

    fn mov_k(&mut self, dst: u8, imm: i32) {
        self.raw(ALU64_K | MOV, dst, 0, 0, imm);
    }
    fn mov_x(&mut self, dst: u8, src: u8) {
        self.raw(ALU64_X | MOV, dst, src, 0, 0);
    }
    fn add_k(&mut self, dst: u8, imm: i32) {
        self.raw(ALU64_K | ADD, dst, 0, 0, imm);
    }
    fn ldx(&mut self, dst: u8, src: u8, off: i16) {
        self.raw(LDX_DW, dst, src, off, 0);
    }
    fn stx(&mut self, dst: u8, off: i16, src: u8) {
        self.raw(STX_DW, dst, src, off, 0);
    }
    fn call(&mut self, helper: i32) {
        self.raw(CALL, 0, 0, 0, helper);
    }
    fn map_fd(&mut self, dst: u8, fd: i32) {
        self.raw(LD_DW_IMM, dst, PSEUDO_MAP_FD, 0, fd);
        self.raw(0, 0, 0, 0, 0);
    }
    /// `r0 = bpf_map_lookup_elem(map, fp + key)`, jumping to `absent` when
    /// the key is not there.
    fn lookup(&mut self, map: i32, key: i16, absent: Label) {
        self.map_fd(R1, map);
        self.mov_x(R2, FP);
        self.add_k(R2, i32::from(key));
        self.call(MAP_LOOKUP_ELEM);
        self.jump(JEQ_K, R0, 0, absent);
    }

    /// `*(u64 *)(fp + slot) = *(u64 *)(src + off)` through
    /// `bpf_probe_read_user`, jumping to `fail` if it faults.
    fn read_user(&mut self, slot: i16, len: i32, src: u8, fail: Label) {
        self.mov_x(R3, src);
        self.mov_x(R1, FP);
        self.add_k(R1, i32::from(slot));
        self.mov_k(R2, len);
        self.call(PROBE_READ_USER);
        self.jump(JNE_K, R0, 0, fail);
    }

    fn finish(mut self) -> Vec<u64> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self.labels[l.0].unwrap_or(at + 1);
            let off = target as i64 - at as i64 - 1;
            let word = &mut self.insns[at];
            *word = (*word & !(0xffff << 16)) | (u64::from(off as i16 as u16) << 16);
        }
        self.insns
    }
}

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

/// The program's instructions.
pub fn build(layouts: &[Layout], maps: &Maps) -> Vec<u64> {
    let mut a = Asm::default();
    let done = a.label();
    let miss = a.label();
    let out = a.label();
    let complete = a.label();
    let unreadable = a.label();
    let cut = a.label();

    a.call(GET_CURRENT_PID_TGID);
    a.mov_x(R6, R0);
    a.raw(STX_W, FP, R0, SLOT_TID, 0);
    a.lookup(maps.threads, SLOT_TID, miss);
    a.mov_x(R7, R0);
    // A thread id of another process (reused since): not this thread.
    a.raw(LDX_W, R1, R7, 12, 0);
    a.mov_x(R2, R6);
    a.raw(ALU64_K | RSH, R2, 0, 0, 32);
    a.fixups.push((a.insns.len(), miss));
    a.raw(JNE_X, R1, R2, 0, 0);
    a.raw(ST_W, FP, 0, SLOT_ZERO, 0);
    a.lookup(maps.scratch, SLOT_ZERO, done);
    a.mov_x(R8, R0);
    a.stx(R8, 0, R6);
    a.call(KTIME_GET_NS);
    a.stx(R8, 8, R0);
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

    a.bind(done);
    // Nonzero: the kernel goes on to write the sample.
    a.mov_k(R0, 1);
    a.raw(EXIT, 0, 0, 0, 0);
    a.finish()
}

/// Bytes of the scratch record the program fills.
pub const fn record_capacity() -> usize {
    RECORD_HEADER + MAX_FRAMES * FRAME_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        let mut a = Asm::default();
        let l = a.label();
        a.jump(JA, 0, 0, l);
        a.mov_k(R0, 0);
        a.bind(l);
        a.mov_k(R0, 1);
        let insns = a.finish();
        assert_eq!((insns[0] >> 16) as u16 as i16, 1);
        // dst register and immediate of the last instruction.
        assert_eq!((insns[2] >> 8) & 0xf, 0);
        assert_eq!((insns[2] >> 32) as u32, 1);
    }
}
