//! Writing BPF instructions by hand: the registers, helpers and opcodes
//! the agent's program uses, and an assembler with forward and backward
//! labels. Every part of the program is built with it, so that offsets the
//! verifier must see as constants are constants here too.

// Registers.
pub const R0: u8 = 0;
pub const R1: u8 = 1;
pub const R2: u8 = 2;
pub const R3: u8 = 3;
pub const R4: u8 = 4;
pub const R6: u8 = 6;
pub const R7: u8 = 7;
pub const R8: u8 = 8;
pub const R9: u8 = 9;
pub const FP: u8 = 10;

// Helpers.
pub const MAP_LOOKUP_ELEM: i32 = 1;
pub const KTIME_GET_NS: i32 = 5;
pub const GET_SMP_PROCESSOR_ID: i32 = 8;
pub const GET_CURRENT_PID_TGID: i32 = 14;
pub const PROBE_READ_USER: i32 = 112;
pub const RINGBUF_OUTPUT: i32 = 130;
pub const RINGBUF_NO_WAKEUP: i32 = 1;

// Opcodes.
pub const ALU64_K: u8 = 0x07;
pub const ALU64_X: u8 = 0x0f;
pub const ADD: u8 = 0x00;
pub const MUL: u8 = 0x20;
pub const OR: u8 = 0x40;
pub const AND: u8 = 0x50;
pub const LSH: u8 = 0x60;
pub const RSH: u8 = 0x70;
pub const MOV: u8 = 0xb0;
pub const LDX_DW: u8 = 0x79;
pub const LDX_W: u8 = 0x61;
pub const STX_DW: u8 = 0x7b;
pub const STX_W: u8 = 0x63;
pub const ST_W: u8 = 0x62;
pub const JA: u8 = 0x05;
pub const JEQ_K: u8 = 0x15;
pub const JNE_K: u8 = 0x55;
pub const JGT_K: u8 = 0x25;
pub const JGE_K: u8 = 0x35;
pub const JGE_X: u8 = 0x3d;
pub const JNE_X: u8 = 0x5d;
pub const CALL: u8 = 0x85;
pub const EXIT: u8 = 0x95;
pub const LD_DW_IMM: u8 = 0x18;
pub const PSEUDO_MAP_FD: u8 = 1;

/// A place in the program, bound once.
#[derive(Clone, Copy)]
pub struct Label(usize);

/// Instructions with forward and backward labels.
#[derive(Default)]
pub struct Asm {
    insns: Vec<u64>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Label)>,
}

impl Asm {
    /// One instruction from its fields.
    pub fn raw(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        let word = u64::from(code)
            | (u64::from(dst & 0xf) << 8)
            | (u64::from(src & 0xf) << 12)
            | (u64::from(off as u16) << 16)
            | (u64::from(imm as u32) << 32);
        self.insns.push(word);
    }

    /// A new label, bound later with [`Asm::bind`].
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Binds `l` to the next instruction.
    pub fn bind(&mut self, l: Label) {
        self.labels[l.0] = Some(self.insns.len());
    }

    /// A jump to `to`, comparing `dst` with the immediate `imm`.
    pub fn jump(&mut self, code: u8, dst: u8, imm: i32, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(code, dst, 0, 0, imm);
    }

    /// A jump to `to`, comparing `dst` with register `src`.
    pub fn jump_x(&mut self, code: u8, dst: u8, src: u8, to: Label) {
        self.fixups.push((self.insns.len(), to));
        self.raw(code, dst, src, 0, 0);
    }

    pub fn mov_k(&mut self, dst: u8, imm: i32) {
        self.raw(ALU64_K | MOV, dst, 0, 0, imm);
    }
    pub fn mov_x(&mut self, dst: u8, src: u8) {
        self.raw(ALU64_X | MOV, dst, src, 0, 0);
    }
    pub fn add_k(&mut self, dst: u8, imm: i32) {
        self.raw(ALU64_K | ADD, dst, 0, 0, imm);
    }
    pub fn add_x(&mut self, dst: u8, src: u8) {
        self.raw(ALU64_X | ADD, dst, src, 0, 0);
    }
    pub fn ldx(&mut self, dst: u8, src: u8, off: i16) {
        self.raw(LDX_DW, dst, src, off, 0);
    }
    pub fn stx(&mut self, dst: u8, off: i16, src: u8) {
        self.raw(STX_DW, dst, src, off, 0);
    }
    pub fn call(&mut self, helper: i32) {
        self.raw(CALL, 0, 0, 0, helper);
    }
    /// Loads map `fd`'s address into `dst` (two instruction slots).
    pub fn map_fd(&mut self, dst: u8, fd: i32) {
        self.raw(LD_DW_IMM, dst, PSEUDO_MAP_FD, 0, fd);
        self.raw(0, 0, 0, 0, 0);
    }
    /// `r0 = bpf_map_lookup_elem(map, fp + key)`, jumping to `absent` when
    /// the key is not there.
    pub fn lookup(&mut self, map: i32, key: i16, absent: Label) {
        self.map_fd(R1, map);
        self.mov_x(R2, FP);
        self.add_k(R2, i32::from(key));
        self.call(MAP_LOOKUP_ELEM);
        self.jump(JEQ_K, R0, 0, absent);
    }

    /// The sampled thread's entry in `map` (keyed by thread id, its value
    /// holding the process id as a u32 at `pid_at`): `r6` = pid/tid,
    /// `r7` = the value; jumps to `absent` when the thread is not there or
    /// the entry is another process's (a thread id reused since). Uses
    /// the stack slot `tid_slot`.
    pub fn lookup_thread(&mut self, map: i32, tid_slot: i16, pid_at: i16, absent: Label) {
        self.call(GET_CURRENT_PID_TGID);
        self.mov_x(R6, R0);
        self.raw(STX_W, FP, R0, tid_slot, 0);
        self.lookup(map, tid_slot, absent);
        self.mov_x(R7, R0);
        self.raw(LDX_W, R1, R7, pid_at, 0);
        self.mov_x(R2, R6);
        self.raw(ALU64_K | RSH, R2, 0, 0, 32);
        self.jump_x(JNE_X, R1, R2, absent);
    }

    /// `r8` = the per-CPU record of `scratch` (a per-CPU array of one,
    /// looked up with the zero written at `zero_slot`; `absent` if it is
    /// not there), its head stamped: pid/tid (`r6`, from
    /// [`Asm::lookup_thread`]) at 0, the `CLOCK_MONOTONIC` time at 8, the
    /// CPU (a u32) at `cpu_at`.
    pub fn start_record(&mut self, scratch: i32, zero_slot: i16, cpu_at: i16, absent: Label) {
        self.raw(ST_W, FP, 0, zero_slot, 0);
        self.lookup(scratch, zero_slot, absent);
        self.mov_x(R8, R0);
        self.stx(R8, 0, R6);
        self.call(KTIME_GET_NS);
        self.stx(R8, 8, R0);
        self.call(GET_SMP_PROCESSOR_ID);
        self.raw(STX_W, R8, R0, cpu_at, 0);
    }

    /// `*(u64 *)(fp + slot) = *(u64 *)(src + off)` through
    /// `bpf_probe_read_user`, jumping to `fail` if it faults.
    pub fn read_user(&mut self, slot: i16, len: i32, src: u8, fail: Label) {
        self.mov_x(R3, src);
        self.mov_x(R1, FP);
        self.add_k(R1, i32::from(slot));
        self.mov_k(R2, len);
        self.call(PROBE_READ_USER);
        self.jump(JNE_K, R0, 0, fail);
    }

    /// `exit` with `r0 = 1`: the kernel goes on to write the sample (zero
    /// would drop it).
    pub fn keep_sample(&mut self) {
        self.mov_k(R0, 1);
        self.raw(EXIT, 0, 0, 0, 0);
    }

    /// The instructions, every jump resolved.
    pub fn finish(mut self) -> Vec<u64> {
        for (at, l) in std::mem::take(&mut self.fixups) {
            let target = self.labels[l.0].unwrap_or(at + 1);
            let off = target as i64 - at as i64 - 1;
            let word = &mut self.insns[at];
            *word = (*word & !(0xffff << 16)) | (u64::from(off as i16 as u16) << 16);
        }
        self.insns
    }
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
        let back = a.label();
        a.bind(back);
        a.jump_x(JNE_X, R1, R2, back);
        let insns = a.finish();
        assert_eq!((insns[0] >> 16) as u16 as i16, 1);
        // dst register and immediate of the third instruction.
        assert_eq!((insns[2] >> 8) & 0xf, 0);
        assert_eq!((insns[2] >> 32) as u32, 1);
        // A jump to itself: offset -1.
        assert_eq!((insns[3] >> 16) as u16 as i16, -1);
    }
}
