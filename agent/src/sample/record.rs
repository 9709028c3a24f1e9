//! A parser for the perf ring buffer records the agent asks for.
//!
//! It borrows from the record's bytes (no copy, no allocation) and checks
//! every length against the record, so a malformed or truncated record is
//! `None`, never a panic. Only the layouts the agent configures are parsed:
//! samples with `IP|TID|TIME|CPU[|PERIOD][|CALLCHAIN]|REGS_USER|STACK_USER`,
//! and `MMAP2`, `COMM`, `FORK`, `EXIT`, `LOST`, `LOST_SAMPLES`.

use crate::unwind::USER_REGS_COUNT;

/// Registers a sample may carry before the unwinder's BP, SP and IP: SI
/// and DI, the first two arguments of a probed function.
pub const MAX_ARG_REGS: usize = 2;

/// `PERF_RECORD_*` types.
pub mod kind {
    /// Lost records (ring buffer full).
    pub const LOST: u32 = 2;
    /// A thread's name changed (or the process exec'd).
    pub const COMM: u32 = 3;
    /// A thread or process exited.
    pub const EXIT: u32 = 4;
    /// A thread or process was created.
    pub const FORK: u32 = 7;
    /// A sample.
    pub const SAMPLE: u32 = 9;
    /// An executable mapping, with device and inode.
    pub const MMAP2: u32 = 10;
    /// Samples lost before reaching the ring buffer.
    pub const LOST_SAMPLES: u32 = 13;
}

/// `misc` bit of a `COMM` record caused by `exec`.
const MISC_COMM_EXEC: u16 = 1 << 13;
/// `misc` bit of an `MMAP2` record carrying a build ID instead of device and inode.
const MISC_MMAP_BUILD_ID: u16 = 1 << 14;
/// Callchain entries at or above this value are context markers.
const PERF_CONTEXT_MAX: u64 = (-4095i64) as u64;
/// The marker opening the kernel part of a callchain.
pub const PERF_CONTEXT_KERNEL: u64 = (-128i64) as u64;

/// Which optional sample fields the events were opened with.
#[derive(Clone, Copy, Debug)]
pub struct SampleLayout {
    /// `PERF_SAMPLE_PERIOD` is set.
    pub period: bool,
    /// `PERF_SAMPLE_CALLCHAIN` is set.
    pub callchain: bool,
    /// Number of registers in the `REGS_USER` mask: BP, SP and IP, after
    /// up to [`MAX_ARG_REGS`] argument registers.
    pub user_regs: usize,
}

/// One decoded record, borrowing the ring buffer's bytes.
#[derive(Debug)]
pub enum Record<'a> {
    /// A sample.
    Sample(Sample<'a>),
    /// A new executable mapping.
    Mmap2(Mmap2<'a>),
    /// A thread was named; `exec` when the whole process exec'd.
    Comm {
        /// Process id.
        pid: u32,
        /// Thread id.
        tid: u32,
        /// The new name, without the NUL.
        name: &'a [u8],
        /// Set when the name changed because of `exec`.
        exec: bool,
    },
    /// A thread (`pid == ppid`) or process was created.
    Fork {
        /// New thread's process id.
        pid: u32,
        /// Parent's process id.
        ppid: u32,
        /// New thread id.
        tid: u32,
        /// Parent thread id.
        ptid: u32,
    },
    /// A thread exited; the process too when `pid == tid`.
    Exit {
        /// Process id.
        pid: u32,
        /// Thread id.
        tid: u32,
    },
    /// Records lost because the ring buffer was full.
    Lost(u64),
    /// Any record the agent does not use.
    Other,
}

/// A sample record.
#[derive(Debug)]
pub struct Sample<'a> {
    /// The sampled instruction pointer (kernel or user).
    pub ip: u64,
    /// When, in `CLOCK_MONOTONIC` nanoseconds (every event is opened with
    /// that clock, so times compare with [`crate::sys::monotonic_ns`]).
    pub time: u64,
    /// Process id (0 for the idle task).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    /// The CPU the sample was taken on.
    pub cpu: u32,
    /// The event's period: nanoseconds for `cpu-clock`, events for hardware
    /// counters; 0 when not sampled.
    pub period: u64,
    /// The raw callchain (`u64` entries, little endian), empty without `CALLCHAIN`.
    pub callchain: &'a [u8],
    /// `PERF_SAMPLE_REGS_ABI_*`: 0 when the thread has no user space (kernel thread).
    pub abi: u64,
    /// The unwinder's user registers (BP, SP, IP on x86_64); zeros when `abi` is 0.
    pub regs: [u64; USER_REGS_COUNT],
    /// The registers sampled before them, in mask order (SI, DI for the
    /// allocation probes); zeros when not sampled.
    pub args: [u64; MAX_ARG_REGS],
    /// The copied user stack, starting at the user SP.
    pub stack: &'a [u8],
}

impl Sample<'_> {
    /// The kernel part of the callchain, leaf first, without context markers.
    pub fn kernel_ips(&self) -> impl Iterator<Item = u64> + '_ {
        let mut in_kernel = false;
        self.callchain
            .chunks_exact(8)
            .filter_map(|c| c.try_into().ok().map(u64::from_le_bytes))
            .filter(move |&ip| {
                if ip >= PERF_CONTEXT_MAX {
                    in_kernel = ip == PERF_CONTEXT_KERNEL;
                    false
                } else {
                    in_kernel
                }
            })
    }
}

/// An `MMAP2` record.
#[derive(Debug)]
pub struct Mmap2<'a> {
    /// Process id.
    pub pid: u32,
    /// Start address of the mapping.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
    /// File offset of `start`.
    pub pgoff: u64,
    /// Device (major, minor) and inode of the file, when the record has them.
    pub inode: Option<(u32, u32, u64)>,
    /// `PROT_*` bits.
    pub prot: u32,
    /// The file's path (or `[vdso]`, `//anon`, ...), without the NUL.
    pub filename: &'a [u8],
}

/// The timestamp of a record given as one or two slices (a record may wrap
/// around the end of the ring). Samples carry it after IP, PID and TID; the
/// other records in their `sample_id_all` trailer (TID, TIME, CPU), 16 bytes
/// before the end.
pub fn time_of(ty: u32, parts: &[&[u8]]) -> Option<u64> {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let offset = if ty == kind::SAMPLE {
        16
    } else {
        len.checked_sub(16)?
    };
    let mut bytes = [0u8; 8];
    let mut filled = 0;
    let mut skip = offset;
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        let take = (part.len() - skip).min(8 - filled);
        bytes[filled..filled + take].copy_from_slice(&part[skip..skip + take]);
        filled += take;
        skip = 0;
        if filled == 8 {
            return Some(u64::from_le_bytes(bytes));
        }
    }
    None
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn bytes(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        self.bytes(8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.bytes(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }

    /// A NUL-terminated string, without the NUL (the rest of the record if none).
    fn c_str(&mut self) -> &'a [u8] {
        let s = self.0;
        let end = s.iter().position(|&b| b == 0).unwrap_or(s.len());
        &s[..end]
    }
}

/// The process id of a sample record, read without parsing the rest: the
/// sampling loop drops samples of processes it does not profile before
/// touching their stack copies (a cache miss each, 32 KiB apart).
pub fn sample_pid(body: &[u8]) -> Option<u32> {
    let bytes = body.get(8..12)?;
    Some(u32::from_le_bytes(bytes.try_into().ok()?))
}

/// Parses a record's body (the bytes after its 8-byte header).
pub fn parse<'a>(ty: u32, misc: u16, body: &'a [u8], layout: &SampleLayout) -> Option<Record<'a>> {
    let mut c = Cursor(body);
    Some(match ty {
        kind::SAMPLE => Record::Sample(parse_sample(&mut c, layout)?),
        kind::MMAP2 => {
            let pid = c.u32()?;
            let _tid = c.u32()?;
            let start = c.u64()?;
            let len = c.u64()?;
            let pgoff = c.u64()?;
            let (maj, min, ino) = (c.u32()?, c.u32()?, c.u64()?);
            let _ino_generation = c.u64()?;
            let prot = c.u32()?;
            let _flags = c.u32()?;
            let inode = (misc & MISC_MMAP_BUILD_ID == 0).then_some((maj, min, ino));
            Record::Mmap2(Mmap2 {
                pid,
                start,
                len,
                pgoff,
                inode,
                prot,
                filename: c.c_str(),
            })
        }
        kind::COMM => Record::Comm {
            pid: c.u32()?,
            tid: c.u32()?,
            name: c.c_str(),
            exec: misc & MISC_COMM_EXEC != 0,
        },
        kind::FORK => Record::Fork {
            pid: c.u32()?,
            ppid: c.u32()?,
            tid: c.u32()?,
            ptid: c.u32()?,
        },
        kind::EXIT => {
            let pid = c.u32()?;
            let _ppid = c.u32()?;
            let tid = c.u32()?;
            Record::Exit { pid, tid }
        }
        kind::LOST => {
            let _id = c.u64()?;
            Record::Lost(c.u64()?)
        }
        kind::LOST_SAMPLES => Record::Lost(c.u64()?),
        _ => Record::Other,
    })
}

fn parse_sample<'a>(c: &mut Cursor<'a>, layout: &SampleLayout) -> Option<Sample<'a>> {
    let ip = c.u64()?;
    let pid = c.u32()?;
    let tid = c.u32()?;
    let time = c.u64()?;
    let cpu = c.u32()?;
    let _reserved = c.u32()?;
    let period = if layout.period { c.u64()? } else { 0 };
    let callchain = if layout.callchain {
        let nr = usize::try_from(c.u64()?).ok()?;
        c.bytes(nr.checked_mul(8)?)?
    } else {
        &[]
    };
    let abi = c.u64()?;
    let mut regs = [0u64; USER_REGS_COUNT];
    let mut args = [0u64; MAX_ARG_REGS];
    if abi != 0 {
        // The kernel writes registers by ascending number, and BP, SP, IP
        // (6, 7, 8) are the highest the agent asks for: they come last,
        // after the argument registers (SI 4, DI 5) when those are sampled.
        let extra = layout.user_regs.saturating_sub(USER_REGS_COUNT);
        for i in 0..layout.user_regs {
            let value = c.u64()?;
            let slot = match i.checked_sub(extra) {
                Some(r) => regs.get_mut(r),
                None => args.get_mut(i),
            };
            if let Some(slot) = slot {
                *slot = value;
            }
        }
    }
    let size = usize::try_from(c.u64()?).ok()?;
    let stack = if size == 0 {
        &[][..]
    } else {
        let data = c.bytes(size)?;
        let dyn_size = usize::try_from(c.u64()?).ok()?;
        data.get(..dyn_size.min(size))?
    };
    Some(Sample {
        ip,
        time,
        pid,
        tid,
        cpu,
        period,
        callchain,
        abi,
        regs,
        args,
        stack,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn push64(v: &mut Vec<u8>, x: u64) {
        v.extend_from_slice(&x.to_le_bytes());
    }

    fn sample_bytes(abi: u64, stack: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        push64(&mut v, 0xffff_ffff_8100_0000); // ip
        v.extend_from_slice(&7u32.to_le_bytes());
        v.extend_from_slice(&8u32.to_le_bytes());
        push64(&mut v, 123); // time
        push64(&mut v, 1); // cpu + res
        push64(&mut v, 10_101_010); // period
        push64(&mut v, 4); // callchain nr
        push64(&mut v, PERF_CONTEXT_KERNEL);
        push64(&mut v, 0xffff_ffff_8100_0000);
        push64(&mut v, 0xffff_ffff_8100_0100);
        push64(&mut v, (-512i64) as u64); // PERF_CONTEXT_USER
        push64(&mut v, abi);
        if abi != 0 {
            for r in [0x10, 0x7ff0_0000, 0x40_1000] {
                push64(&mut v, r);
            }
        }
        if stack.is_empty() {
            push64(&mut v, 0);
        } else {
            push64(&mut v, 16);
            let mut data = stack.to_vec();
            data.resize(16, 0);
            v.extend_from_slice(&data);
            push64(&mut v, stack.len() as u64);
        }
        v
    }

    const LAYOUT: SampleLayout = SampleLayout {
        period: true,
        callchain: true,
        user_regs: 3,
    };

    #[test]
    fn user_sample_with_stack() {
        let bytes = sample_bytes(2, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let Some(Record::Sample(s)) = parse(kind::SAMPLE, 0, &bytes, &LAYOUT) else {
            panic!("not a sample");
        };
        assert_eq!((s.pid, s.tid, s.period, s.abi), (7, 8, 10_101_010, 2));
        assert_eq!(s.regs, [0x10, 0x7ff0_0000, 0x40_1000]);
        assert_eq!(s.stack, &[1, 2, 3, 4, 5, 6, 7, 8]);
        let k: Vec<u64> = s.kernel_ips().collect();
        assert_eq!(k, vec![0xffff_ffff_8100_0000, 0xffff_ffff_8100_0100]);
    }

    #[test]
    fn argument_registers_come_before_the_unwinders() {
        let mut v = Vec::new();
        push64(&mut v, 0x7f00_0000_1000); // ip
        v.extend_from_slice(&7u32.to_le_bytes());
        v.extend_from_slice(&8u32.to_le_bytes());
        push64(&mut v, 123); // time
        push64(&mut v, 1); // cpu + res
        push64(&mut v, 2); // abi
        for r in [3, 4096, 0x10, 0x7ff0_0000, 0x7f00_0000_1000] {
            push64(&mut v, r); // SI, DI, BP, SP, IP
        }
        push64(&mut v, 0); // no stack
        let layout = SampleLayout {
            period: false,
            callchain: false,
            user_regs: 5,
        };
        let Some(Record::Sample(s)) = parse(kind::SAMPLE, 0, &v, &layout) else {
            panic!("not a sample");
        };
        assert_eq!(s.args, [3, 4096]);
        assert_eq!(s.regs, [0x10, 0x7ff0_0000, 0x7f00_0000_1000]);
        assert!(parse(kind::SAMPLE, 0, &v[..v.len() - 16], &layout).is_none());
    }

    #[test]
    fn kernel_thread_sample_has_no_regs_and_no_stack() {
        let bytes = sample_bytes(0, &[]);
        let Some(Record::Sample(s)) = parse(kind::SAMPLE, 0, &bytes, &LAYOUT) else {
            panic!("not a sample");
        };
        assert_eq!(s.abi, 0);
        assert!(s.stack.is_empty());
    }

    #[test]
    fn truncated_records_are_refused_not_panicking() {
        let bytes = sample_bytes(2, &[1; 8]);
        for n in 0..bytes.len() {
            let _ = parse(kind::SAMPLE, 0, &bytes[..n], &LAYOUT);
            let _ = parse(kind::MMAP2, 0, &bytes[..n], &LAYOUT);
            let _ = parse(kind::COMM, 0, &bytes[..n], &LAYOUT);
        }
        assert!(parse(kind::SAMPLE, 0, &bytes[..bytes.len() - 1], &LAYOUT).is_none());
    }

    #[test]
    fn time_is_read_across_a_wrap() {
        let bytes = sample_bytes(0, &[]);
        assert_eq!(time_of(kind::SAMPLE, &[&bytes]), Some(123));
        let (a, b) = bytes.split_at(19);
        assert_eq!(time_of(kind::SAMPLE, &[a, b]), Some(123));
        let mut comm = vec![0u8; 16];
        comm.extend_from_slice(&[1, 0, 0, 0, 2, 0, 0, 0]);
        comm.extend_from_slice(&77u64.to_le_bytes());
        comm.extend_from_slice(&[0; 8]);
        let (a, b) = comm.split_at(30);
        assert_eq!(time_of(kind::COMM, &[a, b]), Some(77));
        assert_eq!(time_of(kind::COMM, &[&comm[..10]]), None);
    }

    #[test]
    fn mmap2_and_comm() {
        let mut v = Vec::new();
        v.extend_from_slice(&5u32.to_le_bytes());
        v.extend_from_slice(&5u32.to_le_bytes());
        push64(&mut v, 0x1000);
        push64(&mut v, 0x2000);
        push64(&mut v, 0x3000);
        v.extend_from_slice(&8u32.to_le_bytes());
        v.extend_from_slice(&1u32.to_le_bytes());
        push64(&mut v, 42);
        push64(&mut v, 0);
        v.extend_from_slice(&5u32.to_le_bytes());
        v.extend_from_slice(&2u32.to_le_bytes());
        v.extend_from_slice(b"/usr/bin/x\0\0\0\0\0\0");
        let Some(Record::Mmap2(m)) = parse(kind::MMAP2, 0, &v, &LAYOUT) else {
            panic!("not mmap2");
        };
        assert_eq!(
            (m.pid, m.start, m.len, m.pgoff),
            (5, 0x1000, 0x2000, 0x3000)
        );
        assert_eq!(m.inode, Some((8, 1, 42)));
        assert_eq!(m.filename, b"/usr/bin/x");

        let mut v = Vec::new();
        v.extend_from_slice(&5u32.to_le_bytes());
        v.extend_from_slice(&6u32.to_le_bytes());
        v.extend_from_slice(b"worker\0\0");
        let Some(Record::Comm { name, exec, .. }) = parse(kind::COMM, MISC_COMM_EXEC, &v, &LAYOUT)
        else {
            panic!("not comm");
        };
        assert_eq!((name, exec), (&b"worker"[..], true));
    }
}
