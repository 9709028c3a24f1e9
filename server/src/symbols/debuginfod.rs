//! The debuginfod client: `GET URL/buildid/ID/debuginfo` from each
//! configured server in turn, the body read within the size limit into a
//! temporary file, and a negative cache so that a build id no server has
//! is asked for again only after the retry period.

use std::collections::HashMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::SymbolsError;
use super::files::{DebugFiles, append_within};

/// Negative-cache entries kept at most; past it the oldest half goes.
const MAX_MISSES: usize = 100_000;

pub(crate) struct Debuginfod {
    urls: Vec<String>,
    http: ureq::Agent,
    retry: Duration,
    /// Build ids no server had, with when they were last asked for.
    misses: Mutex<HashMap<String, Instant>>,
}

impl Debuginfod {
    pub(crate) fn new(urls: Vec<String>, timeout: Duration, retry: Duration) -> Debuginfod {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .user_agent(concat!("firewatch-server/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Debuginfod {
            urls,
            http,
            retry,
            misses: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `build_id` was missed within the retry period.
    pub(crate) fn recently_missed(&self, build_id: &str) -> bool {
        let misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        misses
            .get(build_id)
            .is_some_and(|at| at.elapsed() < self.retry)
    }

    fn note_miss(&self, build_id: &str) {
        let mut misses = self.misses.lock().unwrap_or_else(|e| e.into_inner());
        if misses.len() >= MAX_MISSES {
            let mut ages: Vec<Instant> = misses.values().copied().collect();
            ages.sort_unstable();
            let cut = ages[ages.len() / 2];
            misses.retain(|_, at| *at > cut);
        }
        misses.insert(build_id.to_owned(), Instant::now());
    }

    /// Fetches the debug file of `build_id` into the cache (blocking).
    /// `None` when no server has a usable one; the miss is remembered.
    pub(crate) fn fetch(&self, files: &DebugFiles, build_id: &str) -> Option<PathBuf> {
        for base in &self.urls {
            match self.fetch_from(files, base, build_id) {
                Ok(Some(path)) => {
                    tracing::info!(
                        build_id,
                        server = base,
                        "debug file fetched from debuginfod"
                    );
                    return Some(path);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(build_id, server = base, error = %e, "debuginfod fetch failed")
                }
            }
        }
        self.note_miss(build_id);
        None
    }

    fn fetch_from(
        &self,
        files: &DebugFiles,
        base: &str,
        build_id: &str,
    ) -> Result<Option<PathBuf>, SymbolsError> {
        let url = format!("{base}/buildid/{build_id}/debuginfo");
        let fail = |message: String| SymbolsError::Debuginfod {
            url: url.clone(),
            message,
        };
        let mut response = self
            .http
            .get(&url)
            .call()
            .map_err(|e| fail(e.to_string()))?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(fail(format!("status {status}"))),
        }
        let limit = files.max_file_bytes;
        let (tmp, mut file) = files.temporary()?;
        let copied = (|| {
            let mut reader = response
                .body_mut()
                .with_config()
                .limit(limit.saturating_add(1))
                .reader();
            let mut buf = vec![0u8; 1 << 16];
            let mut written = 0u64;
            loop {
                let n = reader.read(&mut buf).map_err(|e| fail(e.to_string()))?;
                if n == 0 {
                    return Ok(());
                }
                append_within(&mut file, &mut written, &buf[..n], limit)?;
            }
        })();
        drop(file);
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        files.keep_fetched(build_id, &tmp).map(Some)
    }
}
