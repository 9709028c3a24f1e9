//! Debug files on disk, by build id: those a tenant uploaded (kept until
//! deleted, within the tenant's quota) and those fetched from debuginfod
//! (shared, a cache bounded in bytes, least recently used out first).
//!
//! ```text
//! DIR/uploads/t-<tenant as hex>/<build id>.debug
//! DIR/debuginfod/<build id>.debug
//! DIR/tmp/                       files being received, renamed into place
//! ```
//!
//! A file is only renamed into place once it was read whole within the
//! size limit, parsed as ELF, carries the build id it is filed under and
//! has a symbol table or DWARF: nothing half-written or mislabelled is
//! ever used to name a frame.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use firewatch_profile::debug_file;

use super::SymbolsError;

/// The debug-file directories.
#[derive(Debug)]
pub(crate) struct DebugFiles {
    root: Option<PathBuf>,
    pub max_file_bytes: u64,
    tenant_quota_bytes: u64,
    cache_bytes: u64,
    /// Names temporary files uniquely within this process.
    next_tmp: AtomicU64,
}

/// How an upload ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stored {
    /// The file was new and is kept.
    New,
    /// A file with this build id was already held; the new one is dropped.
    AlreadyHeld,
}

impl DebugFiles {
    pub(crate) fn new(
        root: Option<PathBuf>,
        max_file_bytes: u64,
        tenant_quota_bytes: u64,
        cache_bytes: u64,
    ) -> DebugFiles {
        DebugFiles {
            root,
            max_file_bytes,
            tenant_quota_bytes,
            cache_bytes,
            next_tmp: AtomicU64::new(0),
        }
    }

    /// Whether there is a directory to keep files in.
    pub(crate) fn enabled(&self) -> bool {
        self.root.is_some()
    }

    fn root(&self) -> Result<&Path, SymbolsError> {
        self.root.as_deref().ok_or(SymbolsError::NoDirectory)
    }

    fn tenant_dir(&self, tenant: &str) -> Result<PathBuf, SymbolsError> {
        let mut name = String::from("t-");
        for b in tenant.bytes() {
            name.push_str(&format!("{b:02x}"));
        }
        Ok(self.root()?.join("uploads").join(name))
    }

    fn fetched_path(&self, build_id: &str) -> Result<PathBuf, SymbolsError> {
        Ok(self
            .root()?
            .join("debuginfod")
            .join(format!("{build_id}.debug")))
    }

    /// The uploaded debug file of `build_id` for `tenant`, if held.
    pub(crate) fn uploaded(&self, tenant: &str, build_id: &str) -> Option<PathBuf> {
        let path = self
            .tenant_dir(tenant)
            .ok()?
            .join(format!("{build_id}.debug"));
        path.is_file().then_some(path)
    }

    /// The fetched debug file of `build_id`, if cached; marks it used.
    pub(crate) fn fetched(&self, build_id: &str) -> Option<PathBuf> {
        let path = self.fetched_path(build_id).ok()?;
        let file = File::options().append(true).open(&path).ok()?;
        // The modification time orders the cache for eviction.
        let _ = file.set_modified(std::time::SystemTime::now());
        Some(path)
    }

    /// A new temporary file to receive a debug file into.
    pub(crate) fn temporary(&self) -> Result<(PathBuf, File), SymbolsError> {
        let dir = self.root()?.join("tmp");
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let n = self.next_tmp.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("{}-{n}", std::process::id()));
        let file = File::create(&path).map_err(|e| io("create", &path, e))?;
        Ok((path, file))
    }

    /// Bytes `tenant`'s uploads take now.
    pub(crate) fn tenant_bytes(&self, tenant: &str) -> u64 {
        self.tenant_dir(tenant).map_or(0, |d| dir_bytes(&d))
    }

    /// Checks a received file and files it as `tenant`'s upload of
    /// `build_id`, or drops it when one is already held. The temporary
    /// file is gone either way.
    pub(crate) fn keep_upload(
        &self,
        tenant: &str,
        build_id: &str,
        tmp: &Path,
    ) -> Result<(Stored, u64), SymbolsError> {
        let result = (|| {
            let size = check_debug_file(tmp, build_id)?;
            if self.uploaded(tenant, build_id).is_some() {
                return Ok((Stored::AlreadyHeld, size));
            }
            let used = self.tenant_bytes(tenant);
            if used.saturating_add(size) > self.tenant_quota_bytes {
                return Err(SymbolsError::Quota {
                    used,
                    size,
                    limit: self.tenant_quota_bytes,
                });
            }
            let dir = self.tenant_dir(tenant)?;
            std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
            let dest = dir.join(format!("{build_id}.debug"));
            std::fs::rename(tmp, &dest).map_err(|e| io("rename", &dest, e))?;
            Ok((Stored::New, size))
        })();
        let _ = std::fs::remove_file(tmp);
        result
    }

    /// Checks a fetched file and files it in the debuginfod cache, evicting
    /// the least recently used files past the cache's bound.
    pub(crate) fn keep_fetched(&self, build_id: &str, tmp: &Path) -> Result<PathBuf, SymbolsError> {
        let result = (|| {
            check_debug_file(tmp, build_id)?;
            let dest = self.fetched_path(build_id)?;
            if let Some(dir) = dest.parent() {
                std::fs::create_dir_all(dir).map_err(|e| io("create", dir, e))?;
            }
            std::fs::rename(tmp, &dest).map_err(|e| io("rename", &dest, e))?;
            self.evict(&dest);
            Ok(dest)
        })();
        let _ = std::fs::remove_file(tmp);
        result
    }

    /// Deletes the oldest fetched files until the cache fits its bound,
    /// never `keep` (the file just fetched).
    fn evict(&self, keep: &Path) {
        let Some(dir) = keep.parent() else { return };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = entries
            .filter_map(|e| {
                let e = e.ok()?;
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        files.sort();
        for (_, len, path) in files {
            if total <= self.cache_bytes {
                break;
            }
            if path != keep && std::fs::remove_file(&path).is_ok() {
                tracing::info!(path = %path.display(), "debug-file cache full: evicted");
                total = total.saturating_sub(len);
            }
        }
    }
}

/// Total size of the files in a directory (not recursive).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .filter_map(|e| e.ok()?.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    })
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> SymbolsError {
    SymbolsError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Checks that `path` is an ELF file with build id `build_id` that can
/// name functions (a symbol table or DWARF); returns its size.
fn check_debug_file(path: &Path, build_id: &str) -> Result<u64, SymbolsError> {
    let (found, size) = debug_file_build_id(path)?;
    if found != build_id {
        return Err(SymbolsError::BuildIdMismatch {
            expected: build_id.to_owned(),
            found,
        });
    }
    Ok(size)
}

/// The GNU build id (lowercase hex) and size of an ELF file that can name
/// functions (it has a symbol table or DWARF): a debug file as the server
/// accepts it.
pub fn debug_file_build_id(path: &Path) -> Result<(String, u64), SymbolsError> {
    let file = File::open(path).map_err(|e| io("open", path, e))?;
    let size = file.metadata().map_err(|e| io("read", path, e))?.len();
    Ok((debug_file::build_id(file)?, size))
}

/// Counts `n` more bytes of a file being received, failing past `limit`
/// bytes in all (before they are written).
pub(crate) fn count_within(written: &mut u64, n: usize, limit: u64) -> Result<(), SymbolsError> {
    *written = written.saturating_add(n as u64);
    if *written > limit {
        return Err(SymbolsError::TooLarge { limit });
    }
    Ok(())
}

/// Why writing a file being received failed.
pub(crate) fn write_failed(source: std::io::Error) -> SymbolsError {
    SymbolsError::Io {
        action: "write",
        path: PathBuf::from("(temporary file)"),
        source,
    }
}

/// Writes `chunk` to a file being received, failing past `limit` bytes in all.
pub(crate) fn append_within(
    file: &mut File,
    written: &mut u64,
    chunk: &[u8],
    limit: u64,
) -> Result<(), SymbolsError> {
    count_within(written, chunk.len(), limit)?;
    file.write_all(chunk).map_err(write_failed)
}
