//! Names for frames the agents could not name: a stripped file's frames
//! arrive as build id + address ([`firewatch_profile::ObjectAddress`]) and
//! are stored so; each query names them from a debug file the tenant
//! uploaded (`PUT /api/debuginfo/{build_id}`) or one fetched from a
//! configured debuginfod, so a frame is named in every query from the
//! moment its debug file is here, whenever its samples were ingested.
//!
//! `files.rs` keeps the debug files on disk, `debuginfod.rs` fetches them,
//! `resolve.rs` turns addresses into names on a thread of its own. Names
//! found are cached in memory (bounded); so are build ids no server had
//! (for the retry period). A query waits for debuginfod at most
//! [`FETCH_WAIT`]; a fetch still running then names the next query's frames.

mod debuginfod;
mod files;
mod resolve;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use firewatch_profile::debug_file::DebugFileError;
use firewatch_profile::{FuncId, Function, Profile};
use serde::Serialize;
use thiserror::Error;

use self::debuginfod::Debuginfod;
pub use self::files::debug_file_build_id;
pub(crate) use self::files::{DebugFiles, Stored, count_within, write_failed};
use self::resolve::{Named, Resolver};

/// How long a query waits for debug files being fetched.
pub const FETCH_WAIT: Duration = Duration::from_secs(5);

/// Named addresses cached in memory at most (each holds its names, about
/// 100 bytes); past it the cache starts over.
const MAX_CACHED_ADDRESSES: usize = 1 << 18;

/// Names found per debug file and address; `None` when nothing names it.
#[derive(Default)]
struct NameCache {
    files: HashMap<Arc<PathBuf>, HashMap<u64, Option<Named>>>,
    /// Addresses held, over every file.
    len: usize,
}

/// Where debug files come from and how much of them is kept: the
/// `[debuginfo]` settings (`config/debuginfo.rs` reads them).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SymbolsOptions {
    /// Where uploaded and fetched debug files live; `None` (no directory
    /// set and storage not SQLite) refuses uploads and fetches nothing.
    pub dir: Option<PathBuf>,
    /// debuginfod servers asked, in order, for debug files by build id.
    pub debuginfod_urls: Vec<String>,
    /// Largest debug file uploaded or fetched.
    pub max_file_bytes: u64,
    /// Uploaded debug files one tenant may keep, in all.
    pub tenant_quota_bytes: u64,
    /// Debug files fetched from debuginfod kept on disk, in all (the least
    /// recently used go first).
    pub cache_bytes: u64,
    /// How long one debuginfod request may take.
    #[serde(serialize_with = "crate::config::ser_duration")]
    pub debuginfod_timeout: Duration,
    /// How long a build id no server had is not asked for again.
    #[serde(serialize_with = "crate::config::ser_duration")]
    pub debuginfod_retry: Duration,
}

/// Why a debug file was refused or could not be kept.
#[derive(Debug, Error)]
pub enum SymbolsError {
    /// No directory to keep debug files in.
    #[error("this server keeps no debug files: start it with --debuginfo-dir")]
    NoDirectory,
    /// The file is over the size limit.
    #[error("the debug file is larger than the limit of {limit} bytes (--max-debuginfo-bytes)")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The tenant's uploads would exceed its quota.
    #[error(
        "the tenant's debug files take {used} bytes; {size} more would exceed the quota of \
         {limit} bytes (--debuginfo-tenant-quota-bytes)"
    )]
    Quota {
        /// Bytes held.
        used: u64,
        /// Bytes of this file.
        size: u64,
        /// The quota.
        limit: u64,
    },
    /// Not a debug file: not ELF, no build id, or nothing that names functions.
    #[error(transparent)]
    DebugFile(#[from] DebugFileError),
    /// The file's build id is not the one it was sent as.
    #[error("the file's build id is {found:?}, not {expected:?} as the path says")]
    BuildIdMismatch {
        /// From the path.
        expected: String,
        /// From the file ("" when it has none).
        found: String,
    },
    /// A build id that is not 2 to 128 lowercase hex digits.
    #[error("invalid build id {0:?}: expected 2 to 128 lowercase hex digits")]
    BadBuildId(String),
    /// A debuginfod server failed.
    #[error("{url}: {message}")]
    Debuginfod {
        /// The request.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The file system failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// The server's symbolizer: debug files, debuginfod, names.
pub struct Symbols {
    files: Arc<DebugFiles>,
    debuginfod: Option<Arc<Debuginfod>>,
    resolver: Resolver,
    /// (debug file, address) -> its names, `None` when nothing names it.
    names: Mutex<NameCache>,
    /// Build ids being fetched now.
    fetching: Arc<Mutex<HashSet<String>>>,
}

impl Default for Symbols {
    fn default() -> Self {
        Symbols::new(SymbolsOptions::default())
    }
}

impl Symbols {
    /// A symbolizer with these options.
    pub fn new(options: SymbolsOptions) -> Symbols {
        let debuginfod =
            (options.dir.is_some() && !options.debuginfod_urls.is_empty()).then(|| {
                Arc::new(Debuginfod::new(
                    options.debuginfod_urls.clone(),
                    options.debuginfod_timeout,
                    options.debuginfod_retry,
                ))
            });
        Symbols {
            files: Arc::new(DebugFiles::new(
                options.dir,
                options.max_file_bytes,
                options.tenant_quota_bytes,
                options.cache_bytes,
            )),
            debuginfod,
            resolver: Resolver::new(),
            names: Mutex::new(NameCache::default()),
            fetching: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// The debug files on disk.
    pub(crate) fn files(&self) -> &DebugFiles {
        &self.files
    }

    /// Names the frames of `profile` that carry an object address and whose
    /// debug file `tenant` uploaded or a debuginfod server has; frames
    /// nothing names keep their `module+0xoffset` name.
    pub async fn name_frames(&self, tenant: &str, profile: &mut Profile) {
        if !self.files.enabled() {
            return;
        }
        let mut wanted: BTreeMap<String, Vec<(FuncId, u64)>> = BTreeMap::new();
        for (id, f) in profile.functions().enumerate() {
            if let Some(a) = f.address {
                wanted
                    .entry(a.build_id.to_owned())
                    .or_default()
                    .push((id as FuncId, a.address));
            }
        }
        if wanted.is_empty() {
            return;
        }
        let paths = self.debug_files(tenant, wanted.keys()).await;
        let mut with: Vec<Option<Named>> = vec![None; profile.function_count()];
        for (build_id, frames) in &wanted {
            let Some(path) = paths.get(build_id) else {
                continue;
            };
            for ((id, _), named) in frames.iter().zip(self.named(path, frames).await) {
                with[*id as usize] = named;
            }
        }
        if with.iter().all(Option::is_none) {
            return;
        }
        let functions: Vec<Option<Vec<Function<'_>>>> = with
            .iter()
            .map(|n| {
                n.as_ref().map(|lines| {
                    lines
                        .iter()
                        .map(|l| Function::named(&l.name, &l.file, 0))
                        .collect()
                })
            })
            .collect();
        *profile = profile.replace_functions(&functions);
    }

    /// The debug file of each build id that has one now: uploaded by the
    /// tenant, cached from debuginfod, or fetched within [`FETCH_WAIT`].
    async fn debug_files<'a>(
        &self,
        tenant: &str,
        build_ids: impl Iterator<Item = &'a String>,
    ) -> HashMap<String, Arc<PathBuf>> {
        let mut found = HashMap::new();
        let mut fetches = tokio::task::JoinSet::new();
        for id in build_ids {
            if let Some(p) = self
                .files
                .uploaded(tenant, id)
                .or_else(|| self.files.fetched(id))
            {
                found.insert(id.clone(), Arc::new(p));
                continue;
            }
            let Some(d) = &self.debuginfod else { continue };
            if d.recently_missed(id) {
                continue;
            }
            let started = self
                .fetching
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(id.clone());
            if !started {
                continue;
            }
            let (d, id, fetching) = (Arc::clone(d), id.clone(), Arc::clone(&self.fetching));
            let files = Arc::clone(&self.files);
            // A blocking task runs to its end even when the query stops
            // waiting: the file lands in the cache for the next query.
            let task = tokio::task::spawn_blocking(move || {
                let path = d.fetch(&files, &id);
                fetching
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                (id, path)
            });
            fetches.spawn(async move { task.await.ok() });
        }
        let deadline = tokio::time::Instant::now() + FETCH_WAIT;
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, fetches.join_next()).await {
            if let Ok(Some((id, Some(path)))) = done {
                found.insert(id, Arc::new(path));
            }
        }
        fetches.detach_all();
        found
    }

    /// The names of `frames`' addresses in the debug file at `path`.
    async fn named(&self, path: &Arc<PathBuf>, frames: &[(FuncId, u64)]) -> Vec<Option<Named>> {
        let mut out: Vec<Option<Named>> = Vec::with_capacity(frames.len());
        let mut missing: Vec<(usize, u64)> = Vec::new();
        {
            let names = self.names.lock().unwrap_or_else(|e| e.into_inner());
            let known = names.files.get(path);
            for (i, &(_, address)) in frames.iter().enumerate() {
                match known.and_then(|k| k.get(&address)) {
                    Some(n) => out.push(n.clone()),
                    None => {
                        out.push(None);
                        missing.push((i, address));
                    }
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        let addresses: Vec<u64> = missing.iter().map(|m| m.1).collect();
        let resolved = self.resolver.resolve((**path).clone(), addresses).await;
        let mut names = self.names.lock().unwrap_or_else(|e| e.into_inner());
        if names.len + missing.len() > MAX_CACHED_ADDRESSES {
            *names = NameCache::default();
        }
        names.len += missing.len();
        let known = names.files.entry(Arc::clone(path)).or_default();
        for ((i, address), named) in missing.into_iter().zip(resolved) {
            known.insert(address, named.clone());
            out[i] = named;
        }
        out
    }
}
