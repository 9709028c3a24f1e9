//! Names for frames: blazesym for ELF files (symbols, DWARF file:line and
//! inlined functions, demangled Rust and C++), `/proc/kallsyms` for the
//! kernel, `/tmp/perf-PID.map` for JIT code, and the vDSO's own symbol table.
//!
//! Runs on the processing thread, once per window, never in the sampling
//! loop. Results are cached per (module, offset) across windows, so a busy
//! host does not re-read debug information; blazesym caches parsed files by
//! path. A frame no source can name keeps its module and offset
//! (`libfoo.so+0x1a2b`); no frame is ever dropped.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use blazesym::symbolize::source::{Elf, Source};
use blazesym::symbolize::{Input, Symbolized};
use hashbrown::{HashMap, HashSet};

use crate::aggregate::{ANON, Frame, KERNEL, MARK_FULL, MARK_KERNEL, MARK_TRUNCATED, MARKER};
use crate::python::{MARK_PYTHON_UNREAD, PYTHON};
use crate::sample::Window;
use crate::sample::modules::ModuleInfo;
use kallsyms::Kallsyms;
use perfmap::PerfMaps;

mod kallsyms;
mod perfmap;

/// One function of a frame: a frame with inlined calls has several.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Function name (demangled), or `module+0xoffset`.
    pub name: Arc<str>,
    /// Source file, empty when unknown.
    pub file: Arc<str>,
    /// Line in `file`, 0 when unknown.
    pub line: u32,
}

/// A named frame: its functions, innermost (inlined-most) first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// At least one line.
    pub lines: Box<[Line]>,
    /// False when no symbol source knew the address.
    pub named: bool,
}

/// Names of one window's frames.
pub struct WindowNames {
    frames: HashMap<Frame, Arc<Resolved>>,
    anon: HashMap<(u32, u64), Arc<Resolved>>,
    unknown: Arc<Resolved>,
}

impl WindowNames {
    /// The names of a frame seen in process `pid`.
    pub fn get(&self, pid: u32, frame: Frame) -> &Arc<Resolved> {
        let found = if frame.module == ANON {
            self.anon.get(&(pid, frame.addr))
        } else {
            self.frames.get(&frame)
        };
        found.unwrap_or(&self.unknown)
    }
}

/// Turns frames into names, caching across windows.
pub struct Symbolizer {
    blaze: blazesym::symbolize::Symbolizer,
    // Read at the first kernel frame, again when modules change; `Some(None)`
    // if kallsyms is unreadable.
    kallsyms: Option<Option<Kallsyms>>,
    perf_maps: PerfMaps,
    cache: HashMap<Frame, Arc<Resolved>>,
    strings: HashSet<Arc<str>>,
    max_entries: usize,
    max_debug_bytes: u64,
    // Files blazesym parsed, with the last window that needed them.
    files: HashMap<PathBuf, u64>,
    window: u64,
    /// Hand back the pages of big files right after symbolizing them (not
    /// in a process the agent shares: its mappings are not the agent's).
    pub drop_file_pages: bool,
    /// Directories whose `.build-id/` trees hold separate debug files.
    pub debug_dirs: Vec<PathBuf>,
}

/// A file at least this large has its pages dropped right after it is
/// symbolized, when [`Symbolizer::drop_file_pages`] is set.
const BIG_FILE: u64 = 32 << 20;

/// Windows after which a file no new frame needed is dropped from
/// blazesym's cache (its frames stay named in ours).
const IDLE_WINDOWS: u64 = 3;

impl Default for Symbolizer {
    fn default() -> Self {
        Symbolizer::new(1 << 20, 48 << 20)
    }
}

impl Symbolizer {
    /// A symbolizer whose cache holds at most `max_entries` frames, reading
    /// DWARF only from files with at most `max_debug_bytes` of it (larger
    /// ones are named from their symbol table: no file:line or inlining, but
    /// bounded memory).
    pub fn new(max_entries: usize, max_debug_bytes: u64) -> Symbolizer {
        Symbolizer {
            blaze: new_blaze(),
            kallsyms: None,
            perf_maps: PerfMaps::default(),
            cache: HashMap::new(),
            strings: HashSet::new(),
            max_entries,
            max_debug_bytes,
            files: HashMap::new(),
            window: 0,
            drop_file_pages: false,
            debug_dirs: vec![PathBuf::from("/usr/lib/debug")],
        }
    }

    /// Drops every cache (ours, the kernel's symbols and blazesym's parsed
    /// files).
    pub fn reset(&mut self) {
        self.blaze = new_blaze();
        self.kallsyms = None;
        self.perf_maps = PerfMaps::default();
        self.cache = HashMap::new();
        self.strings = HashSet::new();
        self.files = HashMap::new();
        crate::sys::release_free_memory();
    }

    /// Drops blazesym's parsed data of files no recent window needed; the
    /// processing loop calls this when memory is above half its budget.
    pub fn evict_idle_files(&mut self) {
        let (window, mut evicted) = (self.window, 0);
        let blaze = &mut self.blaze;
        self.files.retain(|path, last| {
            let keep = *last + IDLE_WINDOWS > window;
            if !keep {
                let _ = blaze.evict(&blazesym::symbolize::evict::Evict::Elf(
                    blazesym::symbolize::evict::Elf::new(path.clone()),
                ));
                evicted += 1;
            }
            keep
        });
        if evicted > 0 {
            crate::sys::release_free_memory();
        }
    }

    /// Frames in the cache.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// Names every frame of a window.
    pub fn symbolize(&mut self, w: &Window) -> WindowNames {
        if self.cache.len() > self.max_entries {
            self.reset();
        }
        self.window += 1;
        self.perf_maps.next_window();
        let mut wanted: HashSet<Frame> = HashSet::new();
        let mut has_anon = false;
        for f in w.agg.all_frames() {
            if f.module == ANON {
                has_anon = true;
            } else if f.module == PYTHON {
                // Named by the sampler, which read the code objects.
            } else if !self.cache.contains_key(f) {
                wanted.insert(*f);
            }
        }
        let mut by_module: HashMap<u32, Vec<u64>> = HashMap::new();
        for f in wanted {
            by_module.entry(f.module).or_default().push(f.addr);
        }
        for (module, mut addrs) in by_module {
            addrs.sort_unstable();
            let t0 = crate::sys::thread_cpu_time();
            let resolved = match module {
                MARKER => addrs.iter().map(|&a| self.marker(a)).collect(),
                KERNEL => self.kernel(&addrs),
                _ => match w.modules.get(&module) {
                    Some(info) => self.module(info, &addrs),
                    None => addrs
                        .iter()
                        .map(|&a| Arc::new(self.unnamed("[unknown]", a)))
                        .collect(),
                },
            };
            if self.drop_file_pages
                && let Some(info) = w.modules.get(&module)
                && info.file_len() > BIG_FILE
            {
                // Symbolizing touched much of a big file: see `filepages`.
                crate::filepages::drop_read_only_file_pages();
            }
            let cpu = crate::sys::thread_cpu_time().saturating_sub(t0);
            tracing::debug!(
                module = module_name(w, module),
                frames = addrs.len(),
                cpu_us = u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX),
                "symbolized"
            );
            for (addr, r) in addrs.into_iter().zip(resolved) {
                self.cache.insert(Frame { module, addr }, r);
            }
        }

        let mut frames = HashMap::new();
        for f in w.agg.all_frames() {
            if f.module == PYTHON {
                if let Some(r) = w.python.get(&f.addr) {
                    frames.entry(*f).or_insert_with(|| Arc::clone(r));
                }
            } else if let Some(r) = self.cache.get(f) {
                frames.entry(*f).or_insert_with(|| Arc::clone(r));
            }
        }
        let anon = if has_anon {
            self.anon(w)
        } else {
            HashMap::new()
        };
        WindowNames {
            frames,
            anon,
            unknown: Arc::new(self.unnamed("[unknown]", 0)),
        }
    }

    fn intern(&mut self, s: &str) -> Arc<str> {
        if let Some(x) = self.strings.get(s) {
            return Arc::clone(x);
        }
        let x: Arc<str> = Arc::from(s);
        self.strings.insert(Arc::clone(&x));
        x
    }

    fn resolved(&mut self, name: &str) -> Resolved {
        let empty = self.intern("");
        Resolved {
            lines: Box::new([Line {
                name: self.intern(name),
                file: empty,
                line: 0,
            }]),
            named: true,
        }
    }

    fn unnamed(&mut self, module: &str, offset: u64) -> Resolved {
        let mut name = String::with_capacity(module.len() + 20);
        let _ = write!(name, "{module}+0x{offset:x}");
        let mut r = self.resolved(&name);
        r.named = false;
        r
    }

    fn marker(&mut self, mark: u64) -> Arc<Resolved> {
        let name = match mark {
            MARK_TRUNCATED => firewatch_profile::TRUNCATED,
            MARK_KERNEL => "[kernel]",
            MARK_FULL => "[stack table full]",
            MARK_PYTHON_UNREAD => "[python stack not read]",
            _ => "[unknown]",
        };
        Arc::new(self.resolved(name))
    }

    fn kernel(&mut self, addrs: &[u64]) -> Vec<Arc<Resolved>> {
        // Taken out while `self` interns the names, put back after.
        let kallsyms = match self.kallsyms.take() {
            Some(Some(k)) if k.stale() => Kallsyms::load(),
            Some(k) => k,
            None => Kallsyms::load(),
        };
        let resolved = addrs
            .iter()
            .map(|&a| {
                Arc::new(match kallsyms.as_ref().and_then(|k| k.find(a)) {
                    Some(name) => self.resolved(name),
                    None => self.unnamed(KERNEL_MODULE, a),
                })
            })
            .collect();
        self.kallsyms = Some(kallsyms);
        resolved
    }

    fn module(&mut self, info: &ModuleInfo, offsets: &[u64]) -> Vec<Arc<Resolved>> {
        if let Some(vdso) = &info.vdso {
            let symbols = vdso.function_symbols();
            return offsets
                .iter()
                .map(|&off| {
                    let svma = vdso.offset_to_svma(off);
                    let i = symbols.partition_point(|s| s.0 <= svma);
                    let hit = i
                        .checked_sub(1)
                        .and_then(|i| symbols.get(i))
                        .filter(|s| s.1 == 0 || svma < s.0 + s.1);
                    Arc::new(match hit {
                        Some((_, _, name)) => self.resolved(name),
                        None => self.unnamed(&info.name, off),
                    })
                })
                .collect();
        }
        let Some(path) = info.readable_path() else {
            return offsets
                .iter()
                .map(|&o| Arc::new(self.unnamed(&info.name, o)))
                .collect();
        };
        self.files.insert(path.clone(), self.window);
        if let Some(debug) = self.debug_file(info) {
            return self.module_with_debug_file(info, &path, &debug, offsets);
        }
        let mut elf = Elf::new(&path);
        elf.debug_syms = info
            .debug_bytes
            .get()
            .is_none_or(|&b| b <= self.max_debug_bytes);
        let with_dwarf = elf.debug_syms;
        let mut lines = self.blaze_lines(&Source::Elf(elf), Input::FileOffset(offsets));
        // Debug information built with line tables only (Rust's
        // `line-tables-only`) names functions without their path; the symbol
        // table has the full, demangled name of the outer function.
        let unqualified = lines
            .iter()
            .flatten()
            .filter_map(|l| l.last())
            .any(|(name, _, _)| !name.contains("::"));
        if unqualified && with_dwarf {
            let mut elf_only = Elf::new(&path);
            elf_only.debug_syms = false;
            let symtab = self.blaze_lines(&Source::Elf(elf_only), Input::FileOffset(offsets));
            for (l, t) in lines.iter_mut().zip(symtab) {
                let Some((outer, _, _)) = t.and_then(|t| t.into_iter().last()) else {
                    continue;
                };
                match l.as_mut().and_then(|l| l.last_mut()) {
                    Some(last) if !last.0.contains("::") && outer.contains("::") => last.0 = outer,
                    Some(_) => {}
                    None => *l = Some(vec![(outer, String::new(), 0)]),
                }
            }
        }
        self.resolve_lines(offsets, lines, &info.name)
    }

    /// The separate debug file of a module, by build id, in the debug
    /// directories (`DIR/.build-id/ab/cdef….debug`, where distributions
    /// install their debug packages), if there is one.
    fn debug_file(&self, info: &ModuleInfo) -> Option<PathBuf> {
        let id = info.build_id.get().filter(|b| b.len() >= 2)?;
        let hex = crate::pprof::hex(Some(id));
        self.debug_dirs
            .iter()
            .map(|d| d.join(format!(".build-id/{}/{}.debug", &hex[..2], &hex[2..])))
            .find(|p| p.is_file())
    }

    /// Names a module's frames from its separate debug file, which holds
    /// no code, so addresses go by the module's own virtual addresses;
    /// what it does not name is looked up in the module itself.
    fn module_with_debug_file(
        &mut self,
        info: &ModuleInfo,
        path: &PathBuf,
        debug: &PathBuf,
        offsets: &[u64],
    ) -> Vec<Arc<Resolved>> {
        self.files.insert(debug.clone(), self.window);
        let vaddrs: Vec<u64> = offsets
            .iter()
            .map(|&o| {
                info.segment_of(o)
                    .map_or(u64::MAX, |s| s.vaddr.wrapping_add(o - s.offset))
            })
            .collect();
        let mut elf = Elf::new(debug);
        elf.debug_syms = std::fs::metadata(debug).is_ok_and(|m| m.len() <= self.max_debug_bytes);
        let mut lines = self.blaze_lines(&Source::Elf(elf), Input::VirtOffset(&vaddrs));
        let missing: Vec<u64> = offsets
            .iter()
            .zip(&lines)
            .filter(|(_, l)| l.is_none())
            .map(|(&o, _)| o)
            .collect();
        if !missing.is_empty() {
            let mut elf = Elf::new(path);
            elf.debug_syms = false;
            let mut found = self
                .blaze_lines(&Source::Elf(elf), Input::FileOffset(&missing))
                .into_iter();
            for l in lines.iter_mut().filter(|l| l.is_none()) {
                *l = found.next().flatten();
            }
        }
        self.resolve_lines(offsets, lines, &info.name)
    }

    /// blazesym's answers as owned (name, file, line) lists, innermost first,
    /// one per address (`None` where it knows nothing).
    fn blaze_lines(
        &self,
        src: &Source<'_>,
        input: Input<&[u64]>,
    ) -> Vec<Option<Vec<(String, String, u32)>>> {
        let n = input.as_inner_ref().len();
        match self.blaze.symbolize(src, input) {
            Ok(results) => results.into_iter().map(lines_of).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "symbolization failed");
                vec![None; n]
            }
        }
    }

    fn resolve_lines(
        &mut self,
        addrs: &[u64],
        lines: Vec<Option<Vec<(String, String, u32)>>>,
        module: &str,
    ) -> Vec<Arc<Resolved>> {
        addrs
            .iter()
            .zip(lines.into_iter().chain(std::iter::repeat(None)))
            .map(|(&addr, lines)| {
                Arc::new(match lines {
                    Some(lines) if !lines.is_empty() => Resolved {
                        lines: lines
                            .iter()
                            .map(|(n, f, l)| Line {
                                name: self.intern(n),
                                file: self.intern(f),
                                line: *l,
                            })
                            .collect(),
                        named: true,
                    },
                    _ => self.unnamed(module, addr),
                })
            })
            .collect()
    }

    fn anon(&mut self, w: &Window) -> HashMap<(u32, u64), Arc<Resolved>> {
        let mut wanted: HashSet<(u32, u64)> = HashSet::new();
        for (key, _) in w.agg.iter() {
            for f in w.agg.stack(key.stack) {
                if f.module == ANON {
                    wanted.insert((key.pid, f.addr));
                }
            }
        }
        let mut out = HashMap::new();
        for (pid, addr) in wanted {
            let r = match self.perf_maps.lookup(pid, addr) {
                Some(name) => self.resolved(&name),
                None => self.unnamed("[anon]", addr),
            };
            out.insert((pid, addr), Arc::new(r));
        }
        out
    }
}

/// The module name of kernel frames no symbol names.
const KERNEL_MODULE: &str = "[kernel.kallsyms]";

/// A module's name for logs.
fn module_name(w: &Window, module: u32) -> &str {
    match module {
        KERNEL => KERNEL_MODULE,
        MARKER => "[marker]",
        _ => w
            .modules
            .get(&module)
            .map_or("[unknown]", |m| m.name.as_str()),
    }
}

fn new_blaze() -> blazesym::symbolize::Symbolizer {
    blazesym::symbolize::Symbolizer::builder()
        .enable_code_info(true)
        .enable_inlined_fns(true)
        .enable_demangling(true)
        .enable_auto_reload(false)
        .build()
}

/// A blazesym result as (name, file, line), innermost first.
pub(crate) fn lines_of(s: Symbolized<'_>) -> Option<Vec<(String, String, u32)>> {
    let sym = s.into_sym()?;
    let file_of = |ci: Option<&blazesym::symbolize::CodeInfo<'_>>| {
        ci.map(|c| {
            (
                c.to_path().to_string_lossy().into_owned(),
                c.line.unwrap_or(0),
            )
        })
        .unwrap_or_default()
    };
    // blazesym lists the outer function first, then the inlined chain.
    let mut lines = Vec::with_capacity(1 + sym.inlined.len());
    let (file, line) = file_of(sym.code_info.as_deref());
    lines.push((sym.name.into_owned(), file, line));
    for f in sym.inlined.iter() {
        let (file, line) = file_of(f.code_info.as_ref());
        lines.push((f.name.to_string(), file, line));
    }
    lines.reverse();
    Some(lines)
}
