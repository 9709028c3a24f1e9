//! What the sampler knows about each process and thread: executable
//! mappings (seeded from `/proc/PID/maps`, then kept current from `MMAP2`,
//! `COMM`, `FORK` and `EXIT` records), its unwinder, series and thread names.

use std::sync::Arc;

use hashbrown::HashMap;

use super::modules::{ModuleKey, Modules};
use crate::aggregate::{ANON, Frame};
use crate::unwind::Unwinder;

/// An executable mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    /// First address.
    pub start: u64,
    /// One past the last address.
    pub end: u64,
    /// File offset of `start`.
    pub pgoff: u64,
    /// Module id.
    pub module: u32,
}

/// One process.
#[derive(Default)]
pub struct Process {
    /// Executable file mappings, sorted by start, not overlapping.
    pub mappings: Vec<Mapping>,
    /// The unwinder over `mappings`; `None` until the first sample needs it.
    pub unwinder: Option<Unwinder>,
    /// Series id, once described.
    pub series: Option<u32>,
    /// Whether the targets select it, once known.
    pub wanted: Option<bool>,
    /// The main thread's name.
    pub comm: String,
    /// Exited; removed when the window is cut.
    pub exited: bool,
    /// `/proc/PID/maps` was re-read once after an address outside every mapping.
    pub reloaded: bool,
}

/// The length at which the kernel cuts a thread's name (`comm`).
const COMM_LEN: usize = 15;

impl Process {
    /// The process's name when `/proc` no longer says (it exited, or its
    /// executable link is out of reach): `comm`, or, when the kernel cut
    /// it at 15 bytes, the name of a mapped file that begins with it (the
    /// executable: `build-script-build`, not `build-script-bu`).
    pub fn fallback_name(&self, modules: &Modules) -> String {
        if self.comm.len() >= COMM_LEN {
            let whole = self
                .mappings
                .iter()
                .filter_map(|m| modules.info(m.module))
                .find(|info| {
                    info.name.len() > self.comm.len() && info.name.starts_with(&self.comm)
                });
            if let Some(info) = whole {
                return info.name.clone();
            }
        }
        self.comm.clone()
    }

    /// Adds a mapping, replacing any it overlaps, and keeps the unwinder in step.
    pub fn add_mapping(&mut self, m: Mapping, modules: &mut Modules) {
        let mut removed = false;
        self.mappings.retain(|old| {
            let overlaps = old.start < m.end && m.start < old.end;
            removed |= overlaps;
            !overlaps
        });
        let at = self.mappings.partition_point(|old| old.start < m.start);
        self.mappings.insert(at, m);
        if removed {
            // Rare (a library mapped over another): rebuild at the next sample.
            self.unwinder = None;
        } else if let Some(unwinder) = &mut self.unwinder
            && let Some(module) = unwind_module(&m, modules)
        {
            use framehop::Unwinder as _;
            unwinder.add_module(module);
        }
    }

    /// Forgets the address space (on `exec`).
    pub fn reset_for_exec(&mut self) {
        self.mappings.clear();
        self.unwinder = None;
        self.series = None;
        self.wanted = None;
        self.reloaded = false;
    }

    /// The unwinder, built from the mappings if needed.
    pub fn unwinder(&mut self, modules: &mut Modules) -> &Unwinder {
        self.unwinder.get_or_insert_with(|| {
            use framehop::Unwinder as _;
            let mut u = Unwinder::new();
            for m in &self.mappings {
                if let Some(module) = unwind_module(m, modules) {
                    u.add_module(module);
                }
            }
            u
        })
    }

    /// The executable mapping holding `addr`, if any.
    pub fn mapping(&self, addr: u64) -> Option<&Mapping> {
        mapping_at(&self.mappings, addr)
    }

    /// The frame for a lookup address: module and file offset, or [`ANON`]
    /// and the address (anonymous code, or no mapping known).
    pub fn resolve(&self, addr: u64) -> Frame {
        match self.mapping(addr) {
            Some(m) if m.module != ANON => Frame {
                module: m.module,
                addr: addr - m.start + m.pgoff,
            },
            _ => Frame { module: ANON, addr },
        }
    }
}

fn unwind_module(
    m: &Mapping,
    modules: &mut Modules,
) -> Option<framehop::Module<crate::unwind::SectionBytes>> {
    let image = modules.image(m.module)?;
    let name = modules
        .info(m.module)
        .map(|i| i.name.as_str())
        .unwrap_or("");
    Some(image.module(name, m.start, m.end, m.pgoff))
}

/// Reads the executable mappings of `pid` from `/proc/PID/maps`.
pub fn read_maps(pid: u32, modules: &mut Modules) -> Vec<Mapping> {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/maps")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for line in text.lines() {
        if let Some(m) = parse_maps_line(line, pid, modules) {
            out.push(m);
        }
    }
    out.sort_by_key(|m| m.start);
    out
}

fn parse_maps_line(line: &str, pid: u32, modules: &mut Modules) -> Option<Mapping> {
    let mut fields = line.splitn(6, ' ');
    let range = fields.next()?;
    let perms = fields.next()?;
    let offset = fields.next()?;
    let dev = fields.next()?;
    let inode = fields.next()?;
    let path = fields.next().unwrap_or("").trim_start();
    if !perms.contains('x') {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = u64::from_str_radix(start, 16).ok()?;
    let end = u64::from_str_radix(end, 16).ok()?;
    let pgoff = u64::from_str_radix(offset, 16).ok()?;
    let module = mapping_module(
        pid,
        start,
        end,
        path,
        || {
            let (maj, min) = dev.split_once(':')?;
            let ino: u64 = inode.parse().ok()?;
            Some((
                u32::from_str_radix(maj, 16).ok()?,
                u32::from_str_radix(min, 16).ok()?,
                ino,
            ))
        },
        modules,
    )?;
    Some(Mapping {
        start,
        end,
        pgoff,
        module,
    })
}

/// The mapping of `mappings` (sorted by start) holding `addr`, if any.
pub fn mapping_at(mappings: &[Mapping], addr: u64) -> Option<&Mapping> {
    let i = mappings.partition_point(|m| m.start <= addr);
    i.checked_sub(1)
        .and_then(|i| mappings.get(i))
        .filter(|m| addr < m.end)
}

/// True for executable memory no ELF file backs: JIT compilers' code
/// (anonymous, a named anonymous region, or a `memfd` mapped twice), named
/// by perf maps if at all.
fn is_anonymous_code(path: &str) -> bool {
    path.is_empty()
        || path == "//anon"
        || path.starts_with("[anon")
        || path.starts_with("/memfd:")
        || path.starts_with("/dev/zero")
}

/// The module of a mapping named `path`: [`ANON`] for anonymous code, the
/// vDSO's, a file's; `None` for other special mappings (`[vsyscall]`).
pub fn mapping_module(
    pid: u32,
    start: u64,
    end: u64,
    path: &str,
    inode: impl FnOnce() -> Option<(u32, u32, u64)>,
    modules: &mut Modules,
) -> Option<u32> {
    if path == "[vdso]" {
        return Some(modules.vdso());
    }
    if is_anonymous_code(path) {
        return Some(ANON);
    }
    if !path.starts_with('/') {
        return None;
    }
    let key = match inode() {
        Some((maj, min, ino)) if ino != 0 => ModuleKey::Inode(maj, min, ino),
        _ => ModuleKey::Path(path.to_owned()),
    };
    Some(modules.file(key, pid, start, end, path))
}

/// Pids of every process in `/proc`.
pub fn list_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Reads a `comm` file (`/proc/PID/comm` or `/proc/PID/task/TID/comm`).
pub fn read_comm(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim_end_matches('\n').to_owned())
}

/// Thread names, interned; ids go into sample keys.
pub struct Threads {
    by_tid: HashMap<u32, u32>,
    ids: HashMap<Arc<str>, u32>,
    names: Vec<Arc<str>>,
}

/// Past this many distinct names, new names share id 0 (`""`).
const MAX_THREAD_NAMES: usize = 1 << 16;

impl Default for Threads {
    fn default() -> Self {
        let empty: Arc<str> = Arc::from("");
        let mut ids = HashMap::new();
        ids.insert(Arc::clone(&empty), 0);
        Threads {
            by_tid: HashMap::new(),
            ids,
            names: vec![empty],
        }
    }
}

impl Threads {
    /// Sets the name of `tid`.
    pub fn set(&mut self, tid: u32, name: &str) {
        let id = self.intern(name);
        self.by_tid.insert(tid, id);
    }

    /// Gives `tid` the name of `parent`.
    pub fn inherit(&mut self, tid: u32, parent: u32) {
        if let Some(&id) = self.by_tid.get(&parent) {
            self.by_tid.insert(tid, id);
        }
    }

    /// Forgets `tid`.
    pub fn remove(&mut self, tid: u32) {
        self.by_tid.remove(&tid);
    }

    /// The name id of `tid`, reading `/proc` on first sight (`fallback`,
    /// the process's name, if the thread is already gone).
    pub fn id(&mut self, pid: u32, tid: u32, fallback: &str) -> u32 {
        if let Some(&id) = self.by_tid.get(&tid) {
            return id;
        }
        let name = read_comm(&format!("/proc/{pid}/task/{tid}/comm"))
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| fallback.to_owned());
        let id = self.intern(&name);
        self.by_tid.insert(tid, id);
        id
    }

    /// The name behind an id.
    pub fn name(&self, id: u32) -> Arc<str> {
        self.names
            .get(id as usize)
            .cloned()
            .unwrap_or_else(|| Arc::from(""))
    }

    /// Number of threads with a known name.
    pub fn len(&self) -> usize {
        self.by_tid.len()
    }

    /// True when no thread is known.
    pub fn is_empty(&self) -> bool {
        self.by_tid.is_empty()
    }

    fn intern(&mut self, name: &str) -> u32 {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        if self.names.len() >= MAX_THREAD_NAMES {
            return 0;
        }
        let id = self.names.len() as u32;
        let name: Arc<str> = Arc::from(name);
        self.names.push(Arc::clone(&name));
        self.ids.insert(name, id);
        id
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_maps_have_our_executable_and_resolve_addresses() {
        let mut modules = Modules::new(None);
        let maps = read_maps(std::process::id(), &mut modules);
        assert!(!maps.is_empty());
        let p = Process {
            mappings: maps,
            ..Process::default()
        };
        let here = own_maps_have_our_executable_and_resolve_addresses as *const () as usize as u64;
        let f = p.resolve(here);
        assert_ne!(f.module, ANON);
        let info = modules.info(f.module).expect("module");
        assert!(
            std::env::current_exe()
                .expect("exe")
                .to_string_lossy()
                .ends_with(&info.name)
        );
        assert_eq!(p.resolve(8).module, ANON);
    }

    #[test]
    fn a_name_the_kernel_cut_is_completed_from_the_mapped_executable() {
        let mut modules = Modules::new(None);
        let exe = std::env::current_exe().expect("exe");
        let exe = exe
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        // The test binary's name has a hash: longer than the kernel keeps.
        assert!(exe.len() > COMM_LEN, "{exe}");
        let p = Process {
            mappings: read_maps(std::process::id(), &mut modules),
            comm: exe[..COMM_LEN].to_owned(),
            ..Process::default()
        };
        assert_eq!(p.fallback_name(&modules), exe);
        let short = Process {
            comm: "sh".into(),
            ..p
        };
        assert_eq!(short.fallback_name(&modules), "sh");
    }

    #[test]
    fn overlapping_mapping_replaces_the_old_one() {
        let mut modules = Modules::new(None);
        let mut p = Process::default();
        let m = |start, end, module| Mapping {
            start,
            end,
            pgoff: 0,
            module,
        };
        p.add_mapping(m(0x1000, 0x3000, 1), &mut modules);
        p.add_mapping(m(0x5000, 0x6000, 2), &mut modules);
        p.add_mapping(m(0x2000, 0x4000, 3), &mut modules);
        let starts: Vec<u64> = p.mappings.iter().map(|m| m.start).collect();
        assert_eq!(starts, vec![0x2000, 0x5000]);
        assert_eq!(p.resolve(0x2100).module, 3);
        assert_eq!(p.resolve(0x1100).module, ANON);
    }

    #[test]
    fn thread_names_are_interned_and_inherited() {
        let mut t = Threads::default();
        t.set(10, "worker");
        t.inherit(11, 10);
        assert_eq!(t.id(1, 10, ""), t.id(1, 11, ""));
        let id = t.id(1, 11, "");
        assert_eq!(&*t.name(id), "worker");
        t.remove(11);
        assert_eq!(t.len(), 1);
        let gone = t.id(u32::MAX, u32::MAX, "proc-name");
        assert_eq!(&*t.name(gone), "proc-name");
    }
}
