//! Python functions in CPU stacks, without an SDK: for CPython 3.8 to 3.13
//! processes, each sample of a Python thread shows the Python functions
//! that were running (function, file, line) in place of the interpreter's
//! evaluation-loop frames, at their real position among the native frames.
//!
//! The frame chain is copied when the sample is taken, by a BPF program on
//! the same perf events ([`program`]), so it is the chain of that instant,
//! not one read later from a thread that has moved on. User space joins
//! each copy to its sample (same thread, same time), names code objects by
//! reading them from the process once ([`interp`]), and splices the
//! functions in: each call of the evaluation loop on the native stack gets
//! the Python frames it was running. A sample of a Python thread whose
//! chain was not copied keeps its native frames and is marked
//! `[python stack not read]`.

mod interp;
mod layout;
mod lines;
mod program;

use std::sync::Arc;

use hashbrown::{HashMap, HashSet};

use crate::aggregate::Frame;
use crate::bpf::join::{self, Joins, Stamped, word};
use crate::bpf::{self, asm};
use crate::metrics::Metrics;
use crate::sample::modules::Modules;
use crate::sample::procs::{self, Mapping};
use crate::sample::record::Sample;
use crate::symbolize::Resolved;
use crate::sys::EventFd;
use interp::{Code, Image, Loaded, NotSupported};
use layout::LAYOUTS;

/// Module id of Python frames (`addr` is a [`Python`] frame id).
pub const PYTHON: u32 = u32::MAX - 3;
/// Marker: a Python thread's sample whose Python frames were not copied.
pub const MARK_PYTHON_UNREAD: u64 = 4;

/// Python threads on the host, at most (the program's map).
const MAX_THREADS: u32 = 1 << 16;
/// Processes known to be Python's or not, at most.
const MAX_PROCESSES: u32 = 1 << 16;
/// Bytes of the notice ring (8 bytes and a header per notice).
const NOTICE_RING_BYTES: usize = 256 << 10;
/// A thread of a Python process not found in its thread list for this
/// long is taken for a native thread (until the next window).
const NATIVE_AFTER_NS: u64 = 1_000_000_000;
/// Copies not joined within this are dropped (their sample was lost).
const MAX_PENDING_NS: u64 = 2_000_000_000;
/// A process's thread list is read again at most this often when a thread
/// it does not know is sampled.
const RESCAN_NS: u64 = 20_000_000;
/// Distinct Python frames (function, file, line) named, at most; past it
/// the table starts over under a new epoch.
const MAX_NAMES: usize = 1 << 18;
/// Code objects and frames cached per process, at most.
const MAX_CODES: usize = 1 << 16;
/// Copies a thread's queue has room for before it grows (a second of
/// samples at 99 Hz and some).
const PENDING_PER_THREAD: usize = 128;
/// Copy buffers kept for reuse.
const SPARE_COPIES: usize = 256;
/// `FRAME_OWNED_BY_CSTACK`.
pub(crate) const OWNED_BY_CSTACK: u64 = 3;

/// One frame as the program copied it.
#[derive(Clone, Copy, Debug)]
struct RawFrame {
    code: u64,
    instr: u64,
    owner_word: u64,
}

/// One copied chain, leaf first.
struct Copy {
    time: u64,
    status: u32,
    frames: Vec<RawFrame>,
}

impl Stamped for Copy {
    fn time(&self) -> u64 {
        self.time
    }
}

/// A Python process as the reader knows it.
struct PyProcess {
    loaded: Loaded,
    /// The interpreter's module (for its evaluation-loop frames).
    module: u32,
    /// Python threads registered with the program, with when.
    tids: HashMap<u32, u64>,
    /// Other threads, with when first seen.
    native: HashMap<u32, u64>,
    last_scan: u64,
    codes: HashMap<u64, Option<Arc<Code>>>,
    /// (code object, bytecode unit) -> frame id.
    frames: HashMap<(u64, u32), u64>,
}

/// The reader: the program and its maps, the processes, the copies waiting
/// for their samples, and the names of Python frames.
pub struct Python {
    threads: bpf::Map,
    proc_kinds: bpf::Map,
    scratch: bpf::Map,
    ring: bpf::Ring,
    notices: bpf::Ring,
    noticed: Vec<(u32, u32)>,
    waker: Waker,
    images: HashMap<u32, Option<Arc<Image>>>,
    /// `None`: checked, not a Python process we can read.
    procs: HashMap<u32, Option<Box<PyProcess>>>,
    pending: Joins<Copy>,
    spare: Vec<Vec<RawFrame>>,
    names: HashMap<(Arc<str>, Arc<str>, u32), u64>,
    resolved: Vec<Arc<Resolved>>,
    strings: HashSet<Arc<str>>,
    epoch: u64,
    // Reused per sample.
    segments: Vec<(usize, usize)>,
    ids: Vec<u64>,
    out: Vec<Frame>,
    moved: Vec<usize>,
}

impl Python {
    /// Creates the maps the program's Python part uses; the error says why
    /// Python frames are unavailable.
    pub fn open(cpus: usize, period_ns: u64) -> Result<Python, String> {
        let threads = bpf::Map::create(bpf::MAP_HASH, 4, 16, MAX_THREADS, 0, "fw_py_threads")
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EPERM) => format!("{e}: reading Python frames needs CAP_BPF (or root)"),
                _ => format!("creating the thread map: {e}"),
            })?;
        let proc_kinds = bpf::Map::create(bpf::MAP_HASH, 4, 4, MAX_PROCESSES, 0, "fw_py_procs")
            .map_err(|e| format!("creating the process map: {e}"))?;
        let record = program::record_capacity() as u32;
        let scratch = bpf::Map::create(bpf::MAP_PERCPU_ARRAY, 4, record, 1, 0, "fw_pyscratch")
            .map_err(|e| format!("creating the scratch map: {e}"))?;
        let ring_bytes = (cpus.max(1) * (256 << 10))
            .next_power_of_two()
            .min(64 << 20);
        let ring = bpf::Ring::create(ring_bytes, "fw_py_ring")
            .map_err(|e| format!("creating the ring buffer: {e}"))?;
        let notices = bpf::Ring::create(NOTICE_RING_BYTES, "fw_py_notices")
            .map_err(|e| format!("creating the notice ring: {e}"))?;
        Ok(Python {
            threads,
            proc_kinds,
            scratch,
            ring,
            notices,
            noticed: Vec::with_capacity(256),
            waker: Waker::new().map_err(|e| format!("creating an eventfd: {e}"))?,
            images: HashMap::new(),
            // Room for the processes of a busy host, so that looking at a
            // new one allocates nothing.
            procs: HashMap::with_capacity(4096),
            pending: Joins::new(256, PENDING_PER_THREAD, join::slack(period_ns)),
            // Buffers for the copies waiting for their samples, reused: in
            // steady state a copy allocates nothing.
            spare: (0..SPARE_COPIES)
                .map(|_| Vec::with_capacity(64))
                .collect::<Vec<_>>(),
            names: HashMap::new(),
            resolved: Vec::new(),
            strings: HashSet::new(),
            epoch: 1,
            segments: Vec::with_capacity(64),
            ids: Vec::with_capacity(256),
            out: Vec::with_capacity(1024),
            moved: Vec::with_capacity(1024),
        })
    }

    /// Appends the program's Python part to `a` ([`program`]); it jumps
    /// to `done` when finished.
    pub fn emit(&self, a: &mut asm::Asm, done: asm::Label) {
        let maps = program::Maps {
            threads: self.threads.raw_fd(),
            procs: self.proc_kinds.raw_fd(),
            scratch: self.scratch.raw_fd(),
            copies: self.ring.raw_fd(),
            notices: self.notices.raw_fd(),
        };
        program::emit(a, LAYOUTS, &maps, done);
    }

    /// True when `pid` was looked at and found not to run an interpreter
    /// we read.
    pub fn known_other(&self, pid: u32) -> bool {
        matches!(self.procs.get(&pid), Some(None))
    }

    /// Forgets what is known of `pid` (it exited, exec'd, or mapped an
    /// interpreter): a later sample makes it looked at again.
    pub fn forget_process(&mut self, pid: u32) {
        let _ = self.proc_kinds.delete(&pid.to_ne_bytes());
        if let Some(Some(p)) = self.procs.remove(&pid) {
            for tid in p.tids.into_keys().chain(p.native.into_keys()) {
                let _ = self.threads.delete(&tid.to_ne_bytes());
                self.drop_pending(tid);
            }
        }
    }

    /// A thread exited.
    pub fn thread_exited(&mut self, pid: u32, tid: u32) {
        if let Some(Some(p)) = self.procs.get_mut(&pid)
            && (p.tids.remove(&tid).is_some() | p.native.remove(&tid).is_some())
        {
            let _ = self.threads.delete(&tid.to_ne_bytes());
        }
        self.drop_pending(tid);
    }

    /// Drops the copies waiting for samples of `tid`, keeping their buffers.
    fn drop_pending(&mut self, tid: u32) {
        let spare = &mut self.spare;
        self.pending.remove(tid, |c| spare.push(c.frames));
    }

    /// Waits up to `timeout` for the program to notice a thread it does
    /// not know, or for [`Waker::wake`]; true if it noticed one (worth a
    /// drain now, not at the next timed one).
    pub fn wait_notices(&self, timeout: std::time::Duration) -> bool {
        self.notices.wait(timeout, &self.waker.0)
    }

    /// What ends a [`Python::wait_notices`] early, from another thread.
    pub fn waker(&self) -> Waker {
        self.waker.clone()
    }

    /// The (process, thread) pairs noticed since the last call, each once.
    pub fn take_notices(&mut self) -> Vec<(u32, u32)> {
        let mut out = std::mem::take(&mut self.noticed);
        out.clear();
        self.notices.consume(|data| {
            let Some(b) = data.get(..8).and_then(|b| <[u8; 8]>::try_from(b).ok()) else {
                return;
            };
            let w = u64::from_le_bytes(b);
            if out.len() == out.capacity() {
                // Most notices repeat (every sample of a thread not yet
                // looked at): fold them rather than grow; past that, the
                // rest are noticed again at the thread's next sample.
                out.sort_unstable();
                out.dedup();
                if out.len() == out.capacity() {
                    return;
                }
            }
            out.push(((w >> 32) as u32, w as u32));
        });
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Gives back the buffer of [`Self::take_notices`].
    pub fn notices_handled(&mut self, buf: Vec<(u32, u32)>) {
        self.noticed = buf;
    }

    /// Marks `pid` as a process whose samples need no look (excluded, or
    /// the idle task): the program stops copying its threads' frames.
    pub fn ignore_process(&mut self, pid: u32) {
        self.forget_process(pid);
        self.procs.insert(pid, None);
        let _ = self
            .proc_kinds
            .update(&pid.to_ne_bytes(), &0u32.to_ne_bytes());
    }

    /// Looks at a noticed thread: whether its process runs an interpreter
    /// we read (from `mappings`, read fresh from `/proc`), and if so which
    /// of its threads are Python threads.
    pub fn notice(&mut self, pid: u32, tid: u32, modules: &mut Modules, now: u64) {
        if !self.procs.contains_key(&pid) {
            let mappings = procs::read_maps(pid, modules);
            self.prepare(pid, &mappings, modules);
        }
        self.ensure_thread(pid, tid, now);
    }

    /// Reads the copies the program has written.
    pub fn poll(&mut self) {
        let Python {
            ring,
            pending,
            spare,
            ..
        } = self;
        ring.consume(|data| {
            let word = |at| word(data, at);
            let (Some(ids), Some(time), Some(meta), Some(cpu)) =
                (word(0), word(8), word(16), word(24))
            else {
                return;
            };
            let (count, status) = ((meta & 0xffff_ffff) as usize, (meta >> 32) as u32);
            let mut frames = spare.pop().unwrap_or_default();
            frames.clear();
            for i in 0..count.min(program::MAX_FRAMES) {
                let at = program::RECORD_HEADER + i * program::FRAME_BYTES;
                let (Some(code), Some(instr), Some(owner_word)) =
                    (word(at), word(at + 8), word(at + 16))
                else {
                    break;
                };
                frames.push(RawFrame {
                    code,
                    instr,
                    owner_word,
                });
            }
            pending.push(
                ids as u32,
                cpu as u32,
                Copy {
                    time,
                    status,
                    frames,
                },
            );
        });
    }

    /// Drops copies no sample claimed in time, and what is known of
    /// processes gone without an exit record the sampler saw (those the
    /// targets exclude, or whose record was lost); call once per window.
    pub fn expire(&mut self, now: u64) {
        let (kinds, threads) = (&self.proc_kinds, &self.threads);
        self.procs.retain(|pid, p| {
            let live = std::path::Path::new(&format!("/proc/{pid}")).exists();
            if !live {
                let _ = kinds.delete(&pid.to_ne_bytes());
                // Its exit record was lost, or never looked at.
                for tid in p.iter().flat_map(|p| p.tids.keys().chain(p.native.keys())) {
                    let _ = threads.delete(&tid.to_ne_bytes());
                }
            }
            live
        });
        let spare = &mut self.spare;
        self.pending
            .expire(now.saturating_sub(MAX_PENDING_NS), |c| spare.push(c.frames));
        spare.truncate(SPARE_COPIES);
        for p in self.procs.values_mut().flatten() {
            // Code objects can be freed and their addresses reused: names
            // are read again each window.
            p.codes.clear();
            p.frames.clear();
            // Threads taken for native ones are looked at again.
            let threads = &self.threads;
            p.native.retain(|tid, first| {
                let registered = now.saturating_sub(*first) >= NATIVE_AFTER_NS;
                if registered {
                    let _ = threads.delete(&tid.to_ne_bytes());
                }
                !registered
            });
        }
        if self.resolved.len() > MAX_NAMES {
            self.names.clear();
            self.resolved.clear();
            self.strings.clear();
            self.epoch += 1;
        }
    }

    /// The name of a Python frame id, if it is of the current epoch.
    pub fn resolved(&self, id: u64) -> Option<&Arc<Resolved>> {
        if id >> 32 != self.epoch {
            return None;
        }
        self.resolved.get((id & 0xffff_ffff) as usize)
    }
}

impl Python {
    /// Replaces the evaluation-loop frames of sample `s` (user frames from
    /// `user_start` in `frames`) with the Python frames that were running.
    /// True when the frames changed: [`Self::moved`] then tells where each
    /// old frame went.
    /// `is_trampoline` tells CPython's perf trampolines (`-X perf`) among
    /// JIT frames: one that calls a replaced evaluation-loop frame is
    /// dropped, the function it stands for being there by name.
    pub fn splice(
        &mut self,
        s: &Sample<'_>,
        frames: &mut Vec<Frame>,
        user_start: usize,
        metrics: &Metrics,
        is_trampoline: impl Fn(u64) -> bool,
    ) -> bool {
        let Some(Some(p)) = self.procs.get(&s.pid) else {
            return false;
        };
        let Some(&since) = p.tids.get(&s.tid) else {
            return false;
        };
        let Some(copy) = self.take(s.tid, s.cpu, s.time) else {
            // Taken before the thread was known: no copy was due.
            if s.time > since {
                Metrics::add(&metrics.python_unread, 1);
                frames.push(Frame::marker(MARK_PYTHON_UNREAD));
            }
            return false;
        };
        if copy.status != program::STATUS_COMPLETE {
            Metrics::add(&metrics.python_partial, 1);
        }
        Metrics::add(&metrics.python_stacks, 1);
        let aligned = self.splice_copy(s.pid, &copy, frames, user_start, is_trampoline);
        if !aligned {
            Metrics::add(&metrics.python_misaligned, 1);
        }
        self.spare.push(copy.frames);
        true
    }

    /// Finds out once whether `pid` runs an interpreter we can read, and
    /// tells the program.
    fn prepare(&mut self, pid: u32, mappings: &[Mapping], modules: &mut Modules) {
        let mut found = None;
        for m in mappings {
            let Some(info) = modules.info(m.module) else {
                continue;
            };
            if !info.name.contains("python") {
                continue;
            }
            let image = self.images.entry(m.module).or_insert_with(|| {
                let file = info.file.as_ref()?;
                match Image::read(file, &info.name) {
                    Ok(image) => Some(Arc::new(image)),
                    Err(NotSupported::Version(major, minor)) => {
                        tracing::info!(
                            path = info.path,
                            version = format!("{major}.{minor}"),
                            "Python interpreter of a version whose frames are not read (3.8 to 3.13 are)"
                        );
                        None
                    }
                    Err(NotSupported::NotPython) => None,
                }
            });
            if let Some(image) = image {
                found = Some((
                    Loaded::new(pid, Arc::clone(image), m.start, m.pgoff),
                    m.module,
                ));
                break;
            }
        }
        let kind: u32 = found.is_some().into();
        let _ = self
            .proc_kinds
            .update(&pid.to_ne_bytes(), &kind.to_ne_bytes());
        let Some((loaded, module)) = found else {
            self.procs.insert(pid, None);
            return;
        };
        tracing::info!(
            pid,
            version = ?loaded.image.layout().version,
            "reading the Python frames of a process"
        );
        self.procs.insert(
            pid,
            Some(Box::new(PyProcess {
                loaded,
                module,
                tids: HashMap::new(),
                native: HashMap::new(),
                last_scan: 0,
                codes: HashMap::new(),
                frames: HashMap::new(),
            })),
        );
    }

    /// Registers the process's Python threads with the program when `tid`
    /// is one it does not know (the thread list is read at most every
    /// [`RESCAN_NS`]); a thread still not in it after [`NATIVE_AFTER_NS`]
    /// is registered as native, so the program stops noticing it.
    fn ensure_thread(&mut self, pid: u32, tid: u32, now: u64) {
        let Some(Some(p)) = self.procs.get_mut(&pid) else {
            return;
        };
        if p.tids.contains_key(&tid) || (p.last_scan != 0 && now < p.last_scan + RESCAN_NS) {
            return;
        }
        p.last_scan = now.max(1);
        let layout = p.loaded.image.layout as u32;
        for (t, state) in p.loaded.threads() {
            if p.tids.contains_key(&t) {
                continue;
            }
            if self
                .threads
                .update(&t.to_ne_bytes(), &thread_value(state, layout, pid))
                .is_ok()
            {
                p.tids.insert(t, now);
                p.native.remove(&t);
            }
        }
        if p.tids.contains_key(&tid) {
            return;
        }
        let first = *p.native.entry(tid).or_insert(now);
        if now.saturating_sub(first) >= NATIVE_AFTER_NS {
            let value = thread_value(0, program::LAYOUT_NONE, pid);
            let _ = self.threads.update(&tid.to_ne_bytes(), &value);
        }
    }

    /// The copy taken with the sample of `tid` at `time`.
    fn take(&mut self, tid: u32, cpu: u32, time: u64) -> Option<Copy> {
        for polled in [false, true] {
            if polled {
                self.poll();
            }
            let spare = &mut self.spare;
            let taken = self.pending.take(tid, cpu, time, |c| spare.push(c.frames));
            if taken.is_some() {
                return taken;
            }
        }
        None
    }
}

/// Ends a wait for notices from another thread (an eventfd).
#[derive(Clone)]
pub struct Waker(Arc<EventFd>);

impl Waker {
    fn new() -> std::io::Result<Waker> {
        Ok(Waker(Arc::new(EventFd::new()?)))
    }

    /// Wakes the wait, now or at its next call.
    pub fn wake(&self) {
        self.0.signal();
    }
}

/// The value of a thread in the program's map.
fn thread_value(state: u64, layout: u32, pid: u32) -> [u8; 16] {
    let mut value = [0u8; 16];
    value[..8].copy_from_slice(&state.to_ne_bytes());
    value[8..12].copy_from_slice(&layout.to_ne_bytes());
    value[12..].copy_from_slice(&pid.to_ne_bytes());
    value
}

mod splice;
