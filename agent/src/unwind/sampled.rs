//! Stack words past the kernel's copy, read at the moment of the sample.
//!
//! The kernel copies at most 64 KiB of user stack with a sample; the
//! frames above it are the thread's memory, and memory read later may no
//! longer be the stack of that sample (`confirm` deals with that). For a
//! thread whose stack has gone past its copy before, user space knows
//! which words the unwind read up there: it publishes their addresses per
//! thread ([`SampledWords::publish`]), and the program's part built here
//! reads them in the perf event's overflow handler, the same interrupt in
//! which the kernel copies the stack, into a record stamped with the
//! thread and the time. The walk reads past the copy from that record
//! first: its words are what the thread's stack held at the sample, as
//! much a fact as the copy. A word it needs and the record lacks (the
//! thread's outer frames are not those of the last unwind) sends the walk
//! to the live stack, as before.

use std::io;

use hashbrown::HashMap;

use crate::bpf::asm::*;
use crate::bpf::join::{self, Joins, Stamped, word};
use crate::bpf::{MAP_HASH, MAP_PERCPU_ARRAY, Map, NO_PREALLOC, Ring};

/// Words read per sample, at most.
pub const MAX_WORDS: usize = 1024;
/// Bytes read right past the copy with a sample taken in user mode (whose
/// stack pointer the program sees), in chunks: the frames there are the
/// ones most likely to differ from the last unwind's.
const DENSE_BYTES: usize = 12 << 10;
const DENSE_CHUNK: usize = 4 << 10;
/// A published word no walk of its thread has read for this many walks
/// goes at the next change.
const MAX_AGE: u8 = 64;
/// Threads with published addresses, at most.
const MAX_THREADS: u32 = 4096;
/// Bytes before the dense bytes of a record: pid/tid, time, word count,
/// dense length, dense start, CPU.
const RECORD_HEADER: usize = 40;
/// Where a record's words start.
const WORDS_AT: usize = RECORD_HEADER + DENSE_BYTES;
/// Bytes per word in a record: its address and its value.
const WORD_BYTES: usize = 16;
/// Bytes of a published value: pid, count, then the addresses.
const VALUE_BYTES: usize = 8 + 8 * MAX_WORDS;
/// Records no sample claimed within this are dropped.
const MAX_PENDING_NS: u64 = 2_000_000_000;
/// Record buffers kept for reuse.
const SPARE: usize = 48;
/// Offsets in the perf-event program's context (`struct pt_regs` of the
/// interrupted code, x86-64): the code segment and the stack pointer.
const CTX_CS: i16 = 136;
const CTX_SP: i16 = 152;

// Stack slots of the part (offsets from the frame pointer).
const SLOT_TID: i16 = -8;
const SLOT_ZERO: i16 = -16;
const SLOT_CTX: i16 = -24;

/// The addresses published for one thread, sorted, and per address how
/// many walks of the thread ago one last read it.
#[derive(Default)]
struct Published {
    pid: u32,
    addrs: Vec<u64>,
    ages: Vec<u8>,
}

/// The stack read with one sample past its copy.
#[derive(Default)]
pub struct Words {
    time: u64,
    /// (address, value) pairs, sorted by address.
    pub words: Vec<(u64, u64)>,
    /// Where `dense` starts.
    pub dense_at: u64,
    /// The bytes right past the copy.
    pub dense: Vec<u8>,
}

impl Stamped for Words {
    fn time(&self) -> u64 {
        self.time
    }
}

/// The maps behind the program's stack-words part, and the records it
/// wrote waiting for their samples.
pub struct SampledWords {
    addrs: Map,
    scratch: Map,
    ring: Ring,
    copy_bytes: u32,
    pending: Joins<Words>,
    spare: Vec<Words>,
    published: HashMap<u32, Published>,
    merged: Vec<(u64, u8)>,
    value: Vec<u8>,
}

impl SampledWords {
    /// Creates the maps, for samples every `period_ns` that copy
    /// `copy_bytes` of user stack (`cpus` sizes the ring).
    pub fn open(cpus: usize, copy_bytes: u32, period_ns: u64) -> io::Result<SampledWords> {
        let addrs = Map::create(
            MAP_HASH,
            4,
            VALUE_BYTES as u32,
            MAX_THREADS,
            NO_PREALLOC,
            "fw_stack_addrs",
        )?;
        let record = (WORDS_AT + MAX_WORDS * WORD_BYTES) as u32;
        let scratch = Map::create(MAP_PERCPU_ARRAY, 4, record, 1, 0, "fw_stack_scratch")?;
        let ring_bytes = (cpus.max(1) * (1 << 20)).next_power_of_two().min(64 << 20);
        let ring = Ring::create(ring_bytes, "fw_stack_words")?;
        Ok(SampledWords {
            addrs,
            scratch,
            ring,
            copy_bytes,
            pending: Joins::new(64, 8, join::slack(period_ns)),
            spare: (0..SPARE)
                .map(|_| Words {
                    words: Vec::with_capacity(MAX_WORDS),
                    dense: Vec::with_capacity(DENSE_BYTES),
                    ..Words::default()
                })
                .collect(),
            published: HashMap::with_capacity(64),
            merged: Vec::with_capacity(MAX_WORDS),
            value: vec![0; VALUE_BYTES],
        })
    }

    /// Appends the program's part to `a`: for a thread with published
    /// addresses, one record of the bytes right past the copy and the
    /// words at those addresses; then it jumps to `next`.
    pub fn emit(&self, a: &mut Asm, next: Label) {
        let words = a.label();
        let out = a.label();
        let top = a.label();
        let next_word = a.label();
        a.stx(FP, SLOT_CTX, R1);
        a.lookup_thread(self.addrs.raw_fd(), SLOT_TID, 0, next);
        a.start_record(self.scratch.raw_fd(), SLOT_ZERO, 32, next);
        a.raw(ST_W, R8, 0, 20, 0);

        // Interrupted in user mode: the bytes right past the copy, a chunk
        // at a time until one faults.
        a.ldx(R2, FP, SLOT_CTX);
        a.ldx(R3, R2, CTX_CS);
        a.raw(ALU64_K | AND, R3, 0, 0, 3);
        a.jump(JNE_K, R3, 3, words);
        a.ldx(R3, R2, CTX_SP);
        a.add_k(R3, self.copy_bytes as i32);
        a.stx(R8, 24, R3);
        for k in 0..DENSE_BYTES / DENSE_CHUNK {
            let at = (k * DENSE_CHUNK) as i32;
            a.mov_x(R1, R8);
            a.add_k(R1, RECORD_HEADER as i32 + at);
            a.mov_k(R2, DENSE_CHUNK as i32);
            a.ldx(R3, R8, 24);
            a.add_k(R3, at);
            a.call(PROBE_READ_USER);
            a.jump(JNE_K, R0, 0, words);
            a.raw(ST_W, R8, 0, 20, at + DENSE_CHUNK as i32);
        }

        // Each word: its address from the map, its value from the thread's
        // memory; a word that faults (its page gone: a stack segment
        // unmapped since) keeps its address with the low bit set.
        a.bind(words);
        a.raw(LDX_W, R9, R7, 4, 0);
        a.mov_k(R6, 0);
        a.bind(top);
        a.jump(JGE_K, R6, MAX_WORDS as i32, out);
        a.jump_x(JGE_X, R6, R9, out);
        a.mov_x(R3, R6);
        a.raw(ALU64_K | LSH, R3, 0, 0, 3);
        a.add_x(R3, R7);
        a.ldx(R3, R3, 8);
        a.mov_x(R1, R6);
        a.raw(ALU64_K | LSH, R1, 0, 0, 4);
        a.add_x(R1, R8);
        a.stx(R1, WORDS_AT as i16, R3);
        a.add_k(R1, (WORDS_AT + 8) as i32);
        a.mov_k(R2, 8);
        a.call(PROBE_READ_USER);
        a.jump(JEQ_K, R0, 0, next_word);
        a.mov_x(R1, R6);
        a.raw(ALU64_K | LSH, R1, 0, 0, 4);
        a.add_x(R1, R8);
        a.ldx(R3, R1, WORDS_AT as i16);
        a.raw(ALU64_K | OR, R3, 0, 0, 1);
        a.stx(R1, WORDS_AT as i16, R3);
        a.bind(next_word);
        a.add_k(R6, 1);
        a.jump(JA, 0, 0, top);

        a.bind(out);
        a.raw(STX_W, R8, R6, 16, 0);
        a.mov_x(R3, R6);
        a.raw(ALU64_K | LSH, R3, 0, 0, 4);
        a.add_k(R3, WORDS_AT as i32);
        a.mov_x(R2, R8);
        a.map_fd(R1, self.ring.raw_fd());
        a.mov_k(R4, RINGBUF_NO_WAKEUP);
        a.call(RINGBUF_OUTPUT);
        a.jump(JA, 0, 0, next);
    }

    /// Reads the records the program has written.
    pub fn poll(&mut self) {
        let SampledWords {
            ring,
            pending,
            spare,
            ..
        } = self;
        ring.consume(|data| {
            let field = |at| word(data, at);
            let (Some(ids), Some(time), Some(lens), Some(dense_at), Some(cpu)) =
                (field(0), field(8), field(16), field(24), field(32))
            else {
                return;
            };
            let count = ((lens & 0xffff_ffff) as usize).min(MAX_WORDS);
            let dense_len = ((lens >> 32) as usize).min(DENSE_BYTES);
            let mut w = spare.pop().unwrap_or_default();
            w.time = time;
            w.dense_at = dense_at;
            w.dense.clear();
            w.dense.extend_from_slice(
                data.get(RECORD_HEADER..RECORD_HEADER + dense_len)
                    .unwrap_or_default(),
            );
            w.words.clear();
            let words = data.get(WORDS_AT..).unwrap_or_default();
            for pair in words.chunks_exact(WORD_BYTES).take(count) {
                let (addr, value) = pair.split_at(8);
                let (Ok(addr), Ok(value)) = (addr.try_into(), value.try_into()) else {
                    break;
                };
                let (addr, value) = (u64::from_le_bytes(addr), u64::from_le_bytes(value));
                // Addresses are 8-aligned: the low bit marks a fault.
                if addr & 1 == 0 {
                    w.words.push((addr, value));
                }
            }
            pending.push(ids as u32, cpu as u32, w);
        });
    }

    /// The words read with the sample of `tid` on `cpu` at `time`, if any.
    pub fn take(&mut self, tid: u32, cpu: u32, time: u64) -> Option<Words> {
        if !self.published.contains_key(&tid) && !self.pending.has(tid, cpu) {
            return None;
        }
        for polled in [false, true] {
            if polled {
                self.poll();
            }
            let taken = self.pending.take(tid, cpu, time, recycle(&mut self.spare));
            if taken.is_some() {
                return taken;
            }
        }
        None
    }

    /// Hands a record's buffer back for reuse.
    pub fn give_back(&mut self, w: Words) {
        recycle(&mut self.spare)(w);
    }

    /// Adds `addrs` (sorted, distinct) to the words read with thread
    /// `tid`'s samples, from the walk of one of them. What was published
    /// before stays while there is room and some walk of the last
    /// [`MAX_AGE`] read it (a thread's samples come from more than one
    /// depth and call path); past [`MAX_WORDS`] the lowest of `addrs` are
    /// kept.
    pub fn publish(&mut self, pid: u32, tid: u32, addrs: &[u64]) {
        // Unaligned reads are not a frame's slots (and the record marks
        // faults in the low bit).
        let fresh = addrs
            .iter()
            .copied()
            .filter(|&a| a & 7 == 0)
            .take(MAX_WORDS);
        let mut merged = std::mem::take(&mut self.merged);
        merged.clear();
        merged.extend(fresh.clone().map(|a| (a, 0u8)));
        if let Some(p) = self.published.get_mut(&tid).filter(|p| p.pid == pid) {
            let mut missing = false;
            for age in &mut p.ages {
                *age = age.saturating_add(1);
            }
            for a in fresh {
                match p.addrs.binary_search(&a) {
                    Ok(i) => p.ages[i] = 0,
                    Err(_) => missing = true,
                }
            }
            if !missing && p.ages.iter().all(|&g| g <= MAX_AGE) {
                // The common case once a thread's words have settled.
                self.merged = merged;
                return;
            }
            let room = MAX_WORDS - merged.len();
            let kept = p.addrs.iter().zip(&p.ages);
            merged.extend(
                kept.filter(|&(a, &g)| g <= MAX_AGE && addrs.binary_search(a).is_err())
                    .map(|(&a, &g)| (a, g))
                    .take(room),
            );
            merged.sort_unstable();
        }
        self.value[..4].copy_from_slice(&pid.to_ne_bytes());
        self.value[4..8].copy_from_slice(&(merged.len() as u32).to_ne_bytes());
        for (slot, (a, _)) in self.value[8..].chunks_exact_mut(8).zip(&merged) {
            slot.copy_from_slice(&a.to_ne_bytes());
        }
        let room = self.published.len() < MAX_THREADS as usize;
        if room || self.published.contains_key(&tid) {
            match self.addrs.update(&tid.to_ne_bytes(), &self.value) {
                Ok(()) => {
                    let p = self.published.entry(tid).or_default();
                    p.pid = pid;
                    p.addrs.clear();
                    p.addrs.extend(merged.iter().map(|&(a, _)| a));
                    p.ages.clear();
                    p.ages.extend(merged.iter().map(|&(_, g)| g));
                }
                Err(e) => tracing::debug!(tid, "publishing stack addresses: {e}"),
            }
        }
        self.merged = merged;
    }

    /// Forgets a thread: it exited.
    pub fn forget(&mut self, tid: u32) {
        if self.published.remove(&tid).is_some() {
            let _ = self.addrs.delete(&tid.to_ne_bytes());
        }
        self.pending.remove(tid, recycle(&mut self.spare));
    }

    /// Drops records no sample claimed in time; call once per window.
    pub fn expire(&mut self, now: u64) {
        self.pending
            .expire(now.saturating_sub(MAX_PENDING_NS), recycle(&mut self.spare));
    }
}

/// Keeps a record's buffers for reuse, up to [`SPARE`] of them.
fn recycle(spare: &mut Vec<Words>) -> impl FnMut(Words) + '_ {
    |w| {
        if spare.len() < SPARE {
            spare.push(w);
        }
    }
}
