//! The program that runs on every CPU sample, and the few `bpf(2)`
//! commands it needs, without a BPF library: maps (a hash, a per-CPU
//! array, a ring buffer), loading a program from instructions
//! ([`asm`]), attaching it to a perf event, and reading a ring buffer from
//! user space.
//!
//! A perf event runs one program, so the parts that need the moment of the
//! sample (the stack words past the kernel's copy, Python's frame chain)
//! are parts of one program, each falling through to the next.

pub mod asm;
pub mod join;

use crate::sys::{EventFd, page_size, wait_readable};

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// Map types used here.
pub const MAP_HASH: u32 = 1;
pub const MAP_PERCPU_ARRAY: u32 = 6;
pub const MAP_RINGBUF: u32 = 27;
/// Map flag: a hash map's entries are allocated as they are inserted.
pub const NO_PREALLOC: u32 = 1;

const PROG_TYPE_PERF_EVENT: u32 = 7;
/// `_IOW('$', 8, __u32)`.
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;

/// Record header bits of the ring buffer.
const RINGBUF_BUSY: u32 = 1 << 31;
const RINGBUF_DISCARD: u32 = 1 << 30;
const RINGBUF_HEADER: usize = 8;

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
}

#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The head of `struct bpf_prog_info`, up to the run statistics.
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    prog_type: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
    jited_prog_insns: u64,
    xlated_prog_insns: u64,
    load_time: u64,
    created_by_uid: u32,
    nr_map_ids: u32,
    map_ids: u64,
    name: [u8; 16],
    ifindex: u32,
    gpl_compatible_and_pad: u32,
    netns_dev: u64,
    netns_ino: u64,
    nr_jited_ksyms: u32,
    nr_jited_func_lens: u32,
    jited_ksyms: u64,
    jited_func_lens: u64,
    btf_id: u32,
    func_info_rec_size: u32,
    func_info: u64,
    nr_func_info: u32,
    nr_line_info: u32,
    line_info: u64,
    jited_line_info: u64,
    nr_jited_line_info: u32,
    line_info_rec_size: u32,
    jited_line_info_rec_size: u32,
    nr_prog_tags: u32,
    prog_tags: u64,
    run_time_ns: u64,
    run_cnt: u64,
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, initialized `repr(C)` attribute struct of
    // the size passed; the kernel reads (and for some commands writes) it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}

fn owned(rc: libc::c_long) -> io::Result<OwnedFd> {
    let fd = RawFd::try_from(rc).map_err(|_| io::Error::other("bpf returned no descriptor"))?;
    // SAFETY: the kernel just returned this descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// A BPF map.
pub struct Map {
    fd: OwnedFd,
}

impl Map {
    /// Creates a map.
    pub fn create(
        map_type: u32,
        key_size: u32,
        value_size: u32,
        max_entries: u32,
        map_flags: u32,
        name: &str,
    ) -> io::Result<Map> {
        let mut attr = MapCreate {
            map_type,
            key_size,
            value_size,
            max_entries,
            map_flags,
            map_name: name16(name),
            ..MapCreate::default()
        };
        Ok(Map {
            fd: owned(sys_bpf(BPF_MAP_CREATE, &mut attr)?)?,
        })
    }

    /// The descriptor, for programs that refer to the map.
    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Inserts or replaces `key`'s value.
    pub fn update(&self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let mut attr = MapElem {
            map_fd: self.raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value.as_ptr() as u64,
            flags: 0,
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map(|_| ())
    }

    /// Removes `key`; absent keys are not an error.
    pub fn delete(&self, key: &[u8]) -> io::Result<()> {
        let mut attr = MapElem {
            map_fd: self.raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: 0,
            flags: 0,
        };
        match sys_bpf(BPF_MAP_DELETE_ELEM, &mut attr) {
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// A loaded perf-event program.
pub struct Program {
    fd: OwnedFd,
}

impl Program {
    /// Loads `insns` (8 bytes each) as a perf-event program; the error
    /// carries the verifier's log.
    pub fn load(insns: &[u64], name: &str) -> Result<Program, String> {
        let license = b"Dual MIT/GPL\0";
        let mut log = vec![0u8; 1 << 20];
        let mut attr = ProgLoad {
            prog_type: PROG_TYPE_PERF_EVENT,
            insn_cnt: insns.len() as u32,
            insns: insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name16(name),
            ..ProgLoad::default()
        };
        if let Ok(rc) = sys_bpf(BPF_PROG_LOAD, &mut attr) {
            return owned(rc)
                .map(|fd| Program { fd })
                .map_err(|e| e.to_string());
        }
        // Again with the verifier's log, only to say why.
        attr.log_level = 1;
        attr.log_size = log.len() as u32;
        attr.log_buf = log.as_mut_ptr() as u64;
        let err = match sys_bpf(BPF_PROG_LOAD, &mut attr) {
            Ok(rc) => {
                return owned(rc)
                    .map(|fd| Program { fd })
                    .map_err(|e| e.to_string());
            }
            Err(e) => e,
        };
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        let text = String::from_utf8_lossy(&log[..end]);
        let tail: Vec<&str> = text.lines().rev().take(12).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        Err(format!("{err}: {}", tail.join(" | ")))
    }

    /// Runs the program on each overflow of the perf event `event`.
    pub fn attach(&self, event: RawFd) -> io::Result<()> {
        // SAFETY: plain ioctl on descriptors we hold; the argument is the
        // program's descriptor by value.
        let rc = unsafe { libc::ioctl(event, PERF_EVENT_IOC_SET_BPF, self.fd.as_raw_fd()) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Runs and total run time in nanoseconds, as the kernel counts them
    /// while `kernel.bpf_stats_enabled` is 1 (zeros otherwise).
    pub fn run_stats(&self) -> (u64, u64) {
        let mut info = ProgInfo::default();
        let mut attr = InfoByFd {
            bpf_fd: self.fd.as_raw_fd() as u32,
            info_len: std::mem::size_of::<ProgInfo>() as u32,
            info: &mut info as *mut ProgInfo as u64,
        };
        match sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr) {
            Ok(_) => (info.run_cnt, info.run_time_ns),
            Err(_) => (0, 0),
        }
    }
}

/// The user-space side of a ring-buffer map: records are read in place.
pub struct Ring {
    _map: Map,
    consumer: *mut u8,
    producer: *mut u8,
    page: usize,
    size: usize,
}

// SAFETY: the mappings are owned by the `Ring` and only touched through
// `&mut self`.
unsafe impl Send for Ring {}

impl Ring {
    /// Creates a ring buffer of `size` bytes (a power of two, at least a
    /// page) and maps it.
    pub fn create(size: usize, name: &str) -> io::Result<Ring> {
        let map = Map::create(MAP_RINGBUF, 0, 0, size as u32, 0, name)?;
        let page = page_size().ok_or_else(|| io::Error::other("no page size"))?;
        let fd = map.raw_fd();
        // SAFETY: mapping the map's descriptor as the kernel documents:
        // one writable consumer page at offset 0, then the producer page
        // and the data twice over, read-only.
        let consumer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if consumer == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: as above.
        let producer = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                page + 2 * size,
                libc::PROT_READ,
                libc::MAP_SHARED,
                fd,
                page as libc::off_t,
            )
        };
        if producer == libc::MAP_FAILED {
            let err = io::Error::last_os_error();
            // SAFETY: unmapping what we just mapped.
            unsafe { libc::munmap(consumer, page) };
            return Err(err);
        }
        Ok(Ring {
            _map: map,
            consumer: consumer.cast(),
            producer: producer.cast(),
            page,
            size,
        })
    }

    /// The map's descriptor, for the program.
    pub fn raw_fd(&self) -> RawFd {
        self._map.raw_fd()
    }

    /// The consumer or producer position at the start of its page.
    fn position(&self, producer: bool) -> &AtomicU64 {
        let ptr = if producer {
            self.producer
        } else {
            self.consumer
        };
        // SAFETY: positions are 8-byte aligned u64s at the start of their
        // page, mapped as long as `self`; the kernel updates them
        // atomically.
        unsafe { &*(ptr as *const AtomicU64) }
    }

    /// Waits up to `timeout` for a record (the program's adaptive wake-up:
    /// the first record written after the reader caught up wakes it) or
    /// for `wake` to be signalled (then cleared).
    pub fn wait(&self, timeout: std::time::Duration, wake: &EventFd) -> bool {
        if self.has_data() {
            return true;
        }
        let mut ready = [false; 2];
        wait_readable(&[self.raw_fd(), wake.fd()], timeout, &mut ready);
        if ready[1] {
            wake.clear();
        }
        self.has_data()
    }

    /// True when records wait to be read.
    pub fn has_data(&self) -> bool {
        let cons = self.position(false).load(Ordering::Acquire);
        self.position(true).load(Ordering::Acquire) > cons
    }

    /// Hands each committed record (its data, without the header) to `f`,
    /// oldest first, and releases them; returns how many were read.
    pub fn consume(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut pos = self.position(false).load(Ordering::Acquire);
        let end = self.position(true).load(Ordering::Acquire);
        let mut n = 0;
        while pos < end {
            let at = (pos as usize) & (self.size - 1);
            // SAFETY: the data area starts one page into the producer
            // mapping and is mapped twice, so a record starting anywhere
            // in the first copy is contiguous.
            let base = unsafe { self.producer.add(self.page + at) };
            // SAFETY: record headers are 8-byte aligned in the data area,
            // and the kernel sets their length word atomically.
            let len_word = unsafe { &*(base as *const AtomicU32) }.load(Ordering::Acquire);
            if len_word & RINGBUF_BUSY != 0 {
                break;
            }
            let len = (len_word & !(RINGBUF_BUSY | RINGBUF_DISCARD)) as usize;
            if len > self.size {
                // Never written by the kernel: stop rather than read past.
                break;
            }
            if len_word & RINGBUF_DISCARD == 0 {
                // SAFETY: the record's data follows its header within the
                // doubled mapping (len <= size).
                let data = unsafe { std::slice::from_raw_parts(base.add(RINGBUF_HEADER), len) };
                f(data);
                n += 1;
            }
            pos += ((len + RINGBUF_HEADER + 7) & !7) as u64;
            self.position(false).store(pos, Ordering::Release);
        }
        n
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        // SAFETY: unmapping the two mappings made in `create`.
        unsafe {
            libc::munmap(self.consumer.cast(), self.page);
            libc::munmap(self.producer.cast(), self.page + 2 * self.size);
        }
    }
}
