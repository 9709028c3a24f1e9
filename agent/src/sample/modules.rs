//! Executable files mapped by profiled processes, each known once.
//!
//! A module is identified by device and inode (or by path when the kernel
//! gives none), so a library mapped by a thousand processes is opened,
//! mapped and parsed once. The file is opened when first seen (through
//! `/proc/PID/map_files`, which works for deleted files and other mount
//! namespaces), so a process that exits before its samples are symbolized
//! still gets names. Parsing for unwinding happens at the module's first
//! sample.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use hashbrown::{HashMap, HashSet};

use crate::unwind::{ElfImage, LoadSegment};

/// What symbolization needs to know about a module; shared with windows.
pub struct ModuleInfo {
    /// The path as the process saw it.
    pub path: String,
    /// The file name, for `name+0xoffset` frames.
    pub name: String,
    /// The open file, if it could be opened.
    pub file: Option<File>,
    /// The GNU build ID, once the file was parsed.
    pub build_id: OnceLock<Vec<u8>>,
    /// Uncompressed size of its DWARF sections, once the file was parsed.
    pub debug_bytes: OnceLock<u64>,
    /// Its loadable segments, once the file was parsed: they turn a file
    /// offset into the address debug files know it by.
    pub segments: OnceLock<Box<[LoadSegment]>>,
    /// The vDSO's image (it has no file).
    pub vdso: Option<Arc<ElfImage>>,
}

impl ModuleInfo {
    /// The file's size in bytes (0 when unknown).
    pub fn file_len(&self) -> u64 {
        self.file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map_or(0, |m| m.len())
    }

    /// The loadable segment holding file offset `offset`, once parsed.
    pub fn segment_of(&self, offset: u64) -> Option<LoadSegment> {
        self.segments
            .get()?
            .iter()
            .find(|s| offset >= s.offset && offset - s.offset < s.filesz)
            .copied()
    }

    /// A path through which the file can be read now: the original path if
    /// it still names the same file, else our open descriptor.
    pub fn readable_path(&self) -> Option<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let file = self.file.as_ref()?;
        let ours = file.metadata().ok()?;
        match std::fs::metadata(&self.path) {
            Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => {
                Some(PathBuf::from(&self.path))
            }
            _ => Some(PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()))),
        }
    }
}

/// How the kernel identifies a mapped file.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ModuleKey {
    /// Device major, minor and inode.
    Inode(u32, u32, u64),
    /// The path, when the record has no inode.
    Path(String),
    /// The vDSO.
    Vdso,
}

struct Entry {
    info: Arc<ModuleInfo>,
    // None: not parsed yet; Some(None): not an ELF file we can use.
    image: Option<Option<Arc<ElfImage>>>,
}

/// Every module seen, by id. Ids are never reused.
pub struct Modules {
    keys: HashMap<ModuleKey, u32>,
    entries: HashMap<u32, Entry>,
    next: u32,
    vdso: Option<Arc<ElfImage>>,
}

impl Modules {
    /// An empty table; `vdso` is the host's vDSO image, if readable.
    pub fn new(vdso: Option<ElfImage>) -> Modules {
        Modules {
            keys: HashMap::new(),
            entries: HashMap::new(),
            next: 0,
            vdso: vdso.map(Arc::new),
        }
    }

    /// Number of modules known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no module is known.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The id of the vDSO module.
    pub fn vdso(&mut self) -> u32 {
        let image = self.vdso.clone();
        self.intern(ModuleKey::Vdso, "[vdso]", || None, image)
    }

    /// The id of the file mapped at `start..end` by `pid`, opening it on first sight.
    pub fn file(&mut self, key: ModuleKey, pid: u32, start: u64, end: u64, path: &str) -> u32 {
        let open = || {
            let map_file = format!("/proc/{pid}/map_files/{start:x}-{end:x}");
            File::open(map_file)
                .or_else(|_| File::open(format!("/proc/{pid}/root{path}")))
                .or_else(|_| File::open(path))
                .ok()
        };
        self.intern(key, path, open, None)
    }

    fn intern(
        &mut self,
        key: ModuleKey,
        path: &str,
        open: impl FnOnce() -> Option<File>,
        vdso: Option<Arc<ElfImage>>,
    ) -> u32 {
        if let Some(&id) = self.keys.get(&key) {
            return id;
        }
        let id = self.next;
        self.next += 1;
        let path = path.trim_end_matches(" (deleted)");
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        let build_id = OnceLock::new();
        let (file, image) = match &vdso {
            Some(v) => {
                if let Some(b) = &v.build_id {
                    let _ = build_id.set(b.clone());
                }
                (None, Some(Some(Arc::clone(v))))
            }
            None => {
                let file = open();
                // Without a file there is nothing to parse, ever.
                let image = if file.is_none() { Some(None) } else { None };
                (file, image)
            }
        };
        let info = ModuleInfo {
            path: path.to_owned(),
            name,
            file,
            build_id,
            debug_bytes: OnceLock::new(),
            segments: OnceLock::new(),
            vdso,
        };
        self.entries.insert(
            id,
            Entry {
                info: Arc::new(info),
                image,
            },
        );
        self.keys.insert(key, id);
        id
    }

    /// The module's metadata.
    pub fn info(&self, id: u32) -> Option<&Arc<ModuleInfo>> {
        self.entries.get(&id).map(|e| &e.info)
    }

    /// The module's parsed image, parsing it on first use.
    pub fn image(&mut self, id: u32) -> Option<Arc<ElfImage>> {
        let entry = self.entries.get_mut(&id)?;
        if entry.image.is_none() {
            let image = entry
                .info
                .file
                .as_ref()
                .and_then(ElfImage::from_file)
                .map(Arc::new);
            if let Some(image) = &image {
                if let Some(b) = image.build_id.clone() {
                    let _ = entry.info.build_id.set(b);
                }
                let _ = entry.info.debug_bytes.set(image.debug_bytes);
                let _ = entry.info.segments.set(image.load_segments().into());
            }
            entry.image = Some(image);
        }
        entry.image.clone().flatten()
    }

    /// Forgets every module not in `live` (their files close once no window
    /// refers to them any more).
    pub fn retain(&mut self, live: &HashSet<u32>) {
        self.entries.retain(|id, _| live.contains(id));
        self.keys.retain(|_, id| live.contains(id));
    }
}
