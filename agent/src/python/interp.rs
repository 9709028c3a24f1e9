//! One CPython interpreter: what its file says (version, where
//! `_PyRuntime` and the evaluation loop are), and what the reader takes
//! from a running process: the kernel thread id of each Python thread with
//! its thread state, and each code object's name, file and line table.
//!
//! Every read from the process is bounded and checked: a pointer whose
//! object does not have the expected type (code, str, bytes) is refused,
//! never followed further.

use std::fs::File;
use std::sync::Arc;

use object::{Object, ObjectSegment, ObjectSymbol, SegmentFlags};

use super::layout::{self, LAYOUTS, Layout};
use crate::unwind::read_exact;

/// Python threads of one process, at most.
const MAX_THREADS: usize = 4096;
/// Longest name or file name kept, in bytes of characters.
const MAX_STR_BYTES: u64 = 1024;
/// Largest line table read.
const MAX_LINETABLE: u64 = 64 << 10;

/// What an interpreter's file tells the reader (read once per file).
#[derive(Debug)]
pub struct Image {
    /// Index in [`LAYOUTS`].
    pub layout: usize,
    /// `_PyEval_EvalFrameDefault` as file offsets `[start, end)`.
    pub eval: (u64, u64),
    /// Virtual addresses of `_PyRuntime`, `PyCode_Type`, `PyUnicode_Type`
    /// and `PyBytes_Type` in the file.
    runtime: u64,
    code_type: u64,
    str_type: u64,
    bytes_type: u64,
    /// `p_vaddr - p_offset` of the executable segment.
    exec_delta: u64,
}

/// Why a file holding an interpreter cannot be read.
#[derive(Debug)]
pub enum NotSupported {
    /// Not an interpreter (no `_PyRuntime` or evaluation loop).
    NotPython,
    /// An interpreter of a version without a layout here.
    Version(u8, u8),
}

impl Image {
    /// Reads the interpreter's symbols from `file` (named `name`, whose
    /// version is in its name before 3.11).
    pub fn read(file: &File, name: &str) -> Result<Image, NotSupported> {
        // SAFETY: read-only private mapping of a file the agent opened;
        // a truncated file yields parse errors, not undefined behavior, as
        // `object` bounds every access by the slice.
        let map = unsafe { memmap2::Mmap::map(file) }.map_err(|_| NotSupported::NotPython)?;
        let obj = object::File::parse(&*map).map_err(|_| NotSupported::NotPython)?;
        let (mut runtime, mut eval, mut version) = (None, None, None);
        let (mut code_type, mut str_type, mut bytes_type) = (None, None, None);
        for sym in obj.dynamic_symbols() {
            match sym.name() {
                Ok("_PyRuntime") => runtime = Some(sym.address()),
                Ok("_PyEval_EvalFrameDefault") => eval = Some((sym.address(), sym.size())),
                Ok("Py_Version") => version = Some(sym.address()),
                Ok("PyCode_Type") => code_type = Some(sym.address()),
                Ok("PyUnicode_Type") => str_type = Some(sym.address()),
                Ok("PyBytes_Type") => bytes_type = Some(sym.address()),
                _ => {}
            }
        }
        let (Some(runtime), Some((eval_at, eval_len)), Some(code_type), Some(str_type)) =
            (runtime, eval, code_type, str_type)
        else {
            return Err(NotSupported::NotPython);
        };
        // `Py_Version` (PY_VERSION_HEX) exists from 3.11; before, the
        // file's name says (python3.9, libpython3.10.so.1.0).
        let hex = version.and_then(|at| {
            obj.segments().find_map(|s| {
                let b = s.data_range(at, 4).ok().flatten()?;
                Some(u32::from_le_bytes(b.try_into().ok()?))
            })
        });
        let (major, minor) = match hex {
            Some(hex) => ((hex >> 24) as u8, (hex >> 16) as u8),
            None => version_in_name(name).ok_or(NotSupported::Version(0, 0))?,
        };
        let layout = layout::find((major, minor)).ok_or(NotSupported::Version(major, minor))?;
        let exec_delta = obj
            .segments()
            .find(|s| matches!(s.flags(), SegmentFlags::Elf { p_flags } if p_flags & 1 != 0))
            .map(|s| s.address().wrapping_sub(s.file_range().0))
            .ok_or(NotSupported::NotPython)?;
        Ok(Image {
            layout,
            eval: (
                eval_at.wrapping_sub(exec_delta),
                eval_at.wrapping_sub(exec_delta) + eval_len,
            ),
            runtime,
            code_type,
            str_type,
            bytes_type: bytes_type.unwrap_or(0),
            exec_delta,
        })
    }

    /// The layout of this version.
    pub fn layout(&self) -> &'static Layout {
        &LAYOUTS[self.layout]
    }
}

/// `(3, 9)` from `python3.9`, `libpython3.10.so.1.0`, `python3.8d`.
fn version_in_name(name: &str) -> Option<(u8, u8)> {
    let rest = &name[name.rfind("python")? + "python".len()..];
    let (major, rest) = rest.split_once('.')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    Some((major.parse().ok()?, rest.get(..digits)?.parse().ok()?))
}

/// An interpreter as loaded in one process.
#[derive(Debug)]
pub struct Loaded {
    pub pid: u32,
    pub image: Arc<Image>,
    /// Added to the file's virtual addresses to get the process's.
    bias: u64,
    /// Before 3.11: where glibc's thread descriptor holds the kernel thread
    /// id, once found.
    pthread_tid: Option<u64>,
}

/// Bytes of a thread descriptor searched for its kernel thread id.
const PTHREAD_SEARCH: usize = 1024;
/// Where glibc (2.26 and later, x86_64) keeps it: tried first.
const GLIBC_PTHREAD_TID: usize = 0x2d0;

/// A code object's names, read once.
#[derive(Debug)]
pub struct Code {
    pub name: Arc<str>,
    pub file: Arc<str>,
    pub first_line: i32,
    pub linetable: Box<[u8]>,
    /// Address of its first bytecode unit in the process (3.11+).
    pub bytecode: u64,
}

impl Loaded {
    /// The interpreter of `image` mapped by the process's executable
    /// mapping starting at `start` with file offset `pgoff`.
    pub fn new(pid: u32, image: Arc<Image>, start: u64, pgoff: u64) -> Loaded {
        let bias = start.wrapping_sub(pgoff).wrapping_sub(image.exec_delta);
        Loaded {
            pid,
            image,
            bias,
            pthread_tid: None,
        }
    }

    fn word(&self, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        read_exact(self.pid, addr, &mut b).then(|| u64::from_le_bytes(b))
    }

    fn has_type(&self, obj: u64, ty: u64) -> bool {
        obj != 0 && self.word(obj + layout::OBJECT_TYPE) == Some(self.bias.wrapping_add(ty))
    }

    /// Each Python thread of the main interpreter: (kernel thread id,
    /// thread state address).
    pub fn threads(&mut self) -> Vec<(u32, u64)> {
        let l = self.image.layout();
        let runtime = self.bias.wrapping_add(self.image.runtime);
        let mut states = Vec::new();
        let interp = self.word(runtime + l.runtime_main_interp).unwrap_or(0);
        let mut t = match interp {
            0 => 0,
            i => self.word(i + l.interp_threads_head).unwrap_or(0),
        };
        while t != 0 && states.len() < MAX_THREADS {
            states.push(t);
            t = self.word(t + l.thread_next).unwrap_or(0);
        }
        let mut out = Vec::with_capacity(states.len());
        match l.thread_id {
            layout::ThreadId::Native(off) => {
                for &t in &states {
                    if let Some(tid) = self.word(t + off).and_then(|v| u32::try_from(v).ok())
                        && tid != 0
                    {
                        out.push((tid, t));
                    }
                }
            }
            layout::ThreadId::Pthread(off) => {
                let pthreads: Vec<(u64, u64)> = states
                    .iter()
                    .filter_map(|&t| Some((self.word(t + off)?, t)))
                    .filter(|&(p, _)| p != 0)
                    .collect();
                if self.pthread_tid.is_none() {
                    self.pthread_tid = self.find_pthread_tid(&pthreads);
                }
                let Some(at) = self.pthread_tid else {
                    return out;
                };
                for (p, t) in pthreads {
                    let mut b = [0u8; 4];
                    if read_exact(self.pid, p + at, &mut b) {
                        let tid = u32::from_le_bytes(b);
                        if tid != 0 {
                            out.push((tid, t));
                        }
                    }
                }
            }
        }
        out
    }

    /// The offset in the threads' descriptors (`pthread_t`) that holds
    /// each one's kernel thread id: one where every descriptor holds a
    /// distinct thread of the process, glibc's own offset first.
    fn find_pthread_tid(&self, pthreads: &[(u64, u64)]) -> Option<u64> {
        let tasks: Vec<u32> = std::fs::read_dir(format!("/proc/{}/task", self.pid))
            .ok()?
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        let descriptors: Vec<Vec<u8>> = pthreads
            .iter()
            .take(64)
            .filter_map(|&(p, _)| {
                let mut b = vec![0u8; PTHREAD_SEARCH];
                read_exact(self.pid, p, &mut b).then_some(b)
            })
            .collect();
        if descriptors.is_empty() {
            return None;
        }
        let holds_tids = |at: usize| {
            let mut seen = Vec::with_capacity(descriptors.len());
            descriptors.iter().all(|d| {
                let tid = d
                    .get(at..at + 4)
                    .and_then(|b| b.try_into().ok())
                    .map(u32::from_le_bytes);
                match tid {
                    Some(t) if tasks.contains(&t) && !seen.contains(&t) => {
                        seen.push(t);
                        true
                    }
                    _ => false,
                }
            })
        };
        std::iter::once(GLIBC_PTHREAD_TID)
            .chain((0..PTHREAD_SEARCH - 4).step_by(4))
            .find(|&at| holds_tids(at))
            .map(|at| at as u64)
    }

    /// The code object at `addr`, if it is one.
    pub fn code(&self, addr: u64) -> Option<Code> {
        let l = self.image.layout();
        if !self.has_type(addr, self.image.code_type) {
            return None;
        }
        let head_len = [
            l.code_filename,
            l.code_name,
            l.code_linetable,
            l.code_firstlineno,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
            + 8;
        let mut head = vec![0u8; head_len as usize];
        if !read_exact(self.pid, addr, &mut head) {
            return None;
        }
        let word = |off: u64| {
            let at = off as usize;
            head.get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        let first_line = head
            .get(l.code_firstlineno as usize..l.code_firstlineno as usize + 4)
            .and_then(|b| b.try_into().ok())
            .map(i32::from_le_bytes)?;
        let name = self.string(word(l.code_name)?)?;
        let file = self.string(word(l.code_filename)?)?;
        let linetable = self.bytes(word(l.code_linetable)?).unwrap_or_default();
        Some(Code {
            name: name.into(),
            file: file.into(),
            first_line,
            linetable,
            bytecode: addr + l.code_bytecode,
        })
    }

    /// A `str` object's text (compact strings: every string a code object
    /// names is one).
    fn string(&self, addr: u64) -> Option<String> {
        let l = self.image.layout();
        if !self.has_type(addr, self.image.str_type) {
            return None;
        }
        let len = self.word(addr + layout::STR_LENGTH)?;
        let state = self.word(addr + layout::STR_STATE)? as u32;
        let (kind, compact, ascii) = ((state >> 2) & 7, state >> 5 & 1, state >> 6 & 1);
        if compact == 0 || !matches!(kind, 1 | 2 | 4) {
            return None;
        }
        let data = addr
            + if ascii == 1 {
                l.ascii_header
            } else {
                l.compact_header
            };
        let bytes = len.checked_mul(u64::from(kind))?.min(MAX_STR_BYTES);
        let mut buf = vec![0u8; bytes as usize];
        if !read_exact(self.pid, data, &mut buf) {
            return None;
        }
        Some(match kind {
            1 => buf.iter().map(|&b| char::from(b)).collect(),
            2 => buf
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .map(|u| char::from_u32(u32::from(u)).unwrap_or('\u{fffd}'))
                .collect(),
            _ => buf
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .map(|u| char::from_u32(u).unwrap_or('\u{fffd}'))
                .collect(),
        })
    }

    /// A `bytes` object's contents, up to [`MAX_LINETABLE`].
    fn bytes(&self, addr: u64) -> Option<Box<[u8]>> {
        if self.image.bytes_type != 0 && !self.has_type(addr, self.image.bytes_type) {
            return None;
        }
        let len = self.word(addr + layout::VAR_SIZE)?;
        if len > MAX_LINETABLE {
            return None;
        }
        let mut buf = vec![0u8; len as usize];
        read_exact(self.pid, addr + layout::BYTES_DATA, &mut buf).then(|| buf.into())
    }
}
