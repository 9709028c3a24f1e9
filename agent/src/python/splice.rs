//! Putting a copied Python chain into a sample's native frames: the chain
//! is cut into one run of Python frames per call of the evaluation loop,
//! and each run takes the place of its call's frame.

use std::sync::Arc;

use super::interp::Code;
use super::layout::{Entry, Instr, Layout, LineTable};
use super::{Copy, OWNED_BY_CSTACK, PYTHON, PyProcess, Python, RawFrame, lines, program};
use crate::aggregate::{ANON, Frame, MARK_TRUNCATED, MARKER};
use crate::symbolize::{Line, Resolved};

/// Name of a frame whose code object could not be read.
const UNKNOWN_CODE: &str = "[unknown python function]";

impl Python {
    /// Where old frame index `i` of the last spliced sample went.
    pub fn moved(&self, i: usize) -> usize {
        self.moved.get(i).copied().unwrap_or(i)
    }

    /// Splices `copy` into `frames`; false when its runs and the native
    /// stack's evaluation-loop calls did not pair up one to one.
    pub(super) fn splice_copy(
        &mut self,
        pid: u32,
        copy: &Copy,
        frames: &mut Vec<Frame>,
        user_start: usize,
        is_trampoline: impl Fn(u64) -> bool,
    ) -> bool {
        let Python {
            procs,
            names,
            resolved,
            strings,
            epoch,
            segments,
            ids,
            out,
            moved,
            ..
        } = self;
        let Some(Some(p)) = procs.get_mut(&pid) else {
            return true;
        };
        let mut namer = Namer {
            names,
            resolved,
            strings,
            epoch: *epoch,
        };
        runs(p, &copy.frames, &mut namer, ids, segments);

        let (lo, hi) = p.loaded.image.eval;
        let is_eval = |f: &Frame| f.module == p.module && (lo..hi).contains(&f.addr);
        let user = frames.get(user_start..).unwrap_or_default();
        let evals = user.iter().filter(|f| is_eval(f)).count();
        let native_complete = user.last() != Some(&Frame::marker(MARK_TRUNCATED));
        let python_complete = copy.status == program::STATUS_COMPLETE;
        // Which run each call (counted from the leaf) gets: from the root
        // when both stacks are whole (a call entering or leaving shows on
        // the leaf side), else from the leaf, the end both copies share.
        let from_root = native_complete && python_complete;
        let shift = segments.len() as isize - evals as isize;
        let run_of = |k: usize| -> Option<usize> {
            let j = if from_root {
                k as isize + shift
            } else {
                k as isize
            };
            usize::try_from(j).ok().filter(|&j| j < segments.len())
        };

        out.clear();
        moved.clear();
        let mut k = 0;
        let mut replaced = false;
        for (i, f) in frames.iter().enumerate() {
            moved.push(out.len());
            if std::mem::take(&mut replaced) && f.module == ANON && is_trampoline(f.addr) {
                continue;
            }
            if i >= user_start && is_eval(f) {
                let run = run_of(k);
                k += 1;
                if let Some(&(a, b)) = run.and_then(|j| segments.get(j)) {
                    out.extend(ids[a..b].iter().map(|&id| Frame {
                        module: PYTHON,
                        addr: id,
                    }));
                    replaced = true;
                    continue;
                }
            }
            out.push(*f);
        }
        moved.push(out.len());
        std::mem::swap(frames, out);
        shift == 0
    }
}

/// Cuts the chain into runs, one per call of the evaluation loop (leaf
/// first, each run leaf first), naming each frame.
fn runs(
    p: &mut PyProcess,
    chain: &[RawFrame],
    namer: &mut Namer<'_>,
    ids: &mut Vec<u64>,
    segments: &mut Vec<(usize, usize)>,
) {
    ids.clear();
    segments.clear();
    let entry = p.loaded.image.layout().entry;
    let mut start = 0;
    for raw in chain {
        let byte = |b: u8| (raw.owner_word >> (8 * u32::from(b))) & 0xff;
        if let Entry::CStackOwned(b) = entry
            && byte(b) == OWNED_BY_CSTACK
        {
            // Below each call's frames: a call with none yet is a run too.
            segments.push((start, ids.len()));
            start = ids.len();
            continue;
        }
        ids.push(frame_id(p, raw, namer));
        let last = match entry {
            Entry::Every => true,
            Entry::Flag(b) => byte(b) != 0,
            Entry::CStackOwned(_) => false,
        };
        if last {
            segments.push((start, ids.len()));
            start = ids.len();
        }
    }
    if ids.len() > start {
        segments.push((start, ids.len()));
    }
}

/// The id of a frame's (function, file, line).
fn frame_id(p: &mut PyProcess, raw: &RawFrame, namer: &mut Namer<'_>) -> u64 {
    if p.codes.len() >= super::MAX_CODES {
        p.codes.clear();
        p.frames.clear();
    }
    let (loaded, layout) = (&p.loaded, p.loaded.image.layout());
    let code = p
        .codes
        .entry(raw.code)
        .or_insert_with(|| loaded.code(raw.code).map(Arc::new));
    let Some(code) = code else {
        return namer.id(UNKNOWN_CODE, "", 0);
    };
    // 3.11 and 3.12 point at the last instruction begun (one before the
    // first at a function's start), 3.13 at the current one; before 3.11
    // the frame holds `f_lasti` (-1 before the first instruction).
    let unit = match layout.instr {
        Instr::Pointer => {
            (raw.instr.wrapping_sub(code.bytecode) / 2).min(u64::from(u32::MAX)) as u32
        }
        Instr::LastiBytes | Instr::LastiUnits => (raw.instr as u32 as i32).max(0) as u32,
    };
    if let Some(&id) = p.frames.get(&(raw.code, unit)) {
        return id;
    }
    let id = name_code(code, layout, unit, namer);
    p.frames.insert((raw.code, unit), id);
    id
}

fn name_code(code: &Code, layout: &Layout, unit: u32, namer: &mut Namer<'_>) -> u64 {
    let table = &code.linetable;
    let line = match (layout.lines, layout.instr) {
        (LineTable::Locations, _) => lines::line_of(table, code.first_line, unit),
        (LineTable::Lnotab, _) => lines::lnotab_line(table, code.first_line, unit),
        (LineTable::Pep626, Instr::LastiUnits) => {
            lines::pep626_line(table, code.first_line, unit.saturating_mul(2))
        }
        (LineTable::Pep626, _) => lines::pep626_line(table, code.first_line, unit),
    };
    let line = line
        .or_else(|| u32::try_from(code.first_line).ok())
        .unwrap_or(0);
    namer.id_arc(&code.name, &code.file, line)
}

/// Interns (function, file, line) into frame ids of the current epoch.
struct Namer<'a> {
    names: &'a mut hashbrown::HashMap<(Arc<str>, Arc<str>, u32), u64>,
    resolved: &'a mut Vec<Arc<Resolved>>,
    strings: &'a mut hashbrown::HashSet<Arc<str>>,
    epoch: u64,
}

impl Namer<'_> {
    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(x) = self.strings.get(s) {
            return Arc::clone(x);
        }
        let x: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&x));
        x
    }

    fn id(&mut self, name: &str, file: &str, line: u32) -> u64 {
        let (name, file) = (self.intern(name), self.intern(file));
        self.id_arc(&name, &file, line)
    }

    fn id_arc(&mut self, name: &Arc<str>, file: &Arc<str>, line: u32) -> u64 {
        let key = (Arc::clone(name), Arc::clone(file), line);
        if let Some(&id) = self.names.get(&key) {
            return id;
        }
        let id = (self.epoch << 32) | self.resolved.len() as u64;
        self.resolved.push(Arc::new(Resolved {
            lines: Box::new([Line {
                name: Arc::clone(name),
                file: Arc::clone(file),
                line,
            }]),
            named: true,
        }));
        self.names.insert(key, id);
        id
    }
}

const _: () = assert!(super::MARK_PYTHON_UNREAD != MARK_TRUNCATED && MARKER > PYTHON);
