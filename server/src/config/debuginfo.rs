//! `[debuginfo]`: where the debug files that name frames the agents could
//! not name come from, and how much of them the server keeps.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::sizes::{Size, size};
use super::{Cli, ConfigError, sqlite_path, value};
use crate::symbols::SymbolsOptions;
use crate::time::parse_duration;

/// The file's `[debuginfo]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDebuginfo {
    dir: Option<PathBuf>,
    debuginfod_urls: Option<Vec<String>>,
    max_file_bytes: Option<Size>,
    tenant_quota_bytes: Option<Size>,
    cache_bytes: Option<Size>,
    debuginfod_timeout: Option<String>,
    debuginfod_retry: Option<String>,
}

/// The effective `[debuginfo]` settings: flags over the file over defaults.
pub(super) fn resolve(
    cli: &Cli,
    file: FileDebuginfo,
    storage: &str,
) -> Result<SymbolsOptions, ConfigError> {
    let bytes = |name: &'static str, flag: &Option<String>, file: Option<Size>, default: u64| {
        size(name, flag, file, default as usize).map(|n| n as u64)
    };
    let duration = |name: &'static str, flag: &Option<String>, file: Option<String>, d: &str| {
        let text = flag.clone().or(file).unwrap_or_else(|| d.to_owned());
        parse_duration(&text).map_err(|e| value(name, e.to_string()))
    };
    let urls = match &cli.debuginfod_urls {
        Some(text) => text.split_whitespace().map(str::to_owned).collect(),
        None => file.debuginfod_urls.unwrap_or_default(),
    };
    for url in &urls {
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(value(
                "debuginfod_urls",
                format!("expected http:// or https:// URLs, got {url:?}"),
            ));
        }
    }
    let config = SymbolsOptions {
        dir: cli
            .debuginfo_dir
            .clone()
            .or(file.dir)
            .or_else(|| default_dir(storage)),
        debuginfod_urls: urls
            .into_iter()
            .map(|u| u.trim_end_matches('/').to_owned())
            .collect(),
        max_file_bytes: bytes(
            "max_file_bytes",
            &cli.max_debuginfo_bytes,
            file.max_file_bytes,
            1 << 30,
        )?,
        tenant_quota_bytes: bytes(
            "tenant_quota_bytes",
            &cli.debuginfo_tenant_quota_bytes,
            file.tenant_quota_bytes,
            8 << 30,
        )?,
        cache_bytes: bytes(
            "cache_bytes",
            &cli.debuginfo_cache_bytes,
            file.cache_bytes,
            4 << 30,
        )?,
        debuginfod_timeout: duration(
            "debuginfod_timeout",
            &cli.debuginfod_timeout,
            file.debuginfod_timeout,
            "30s",
        )?,
        debuginfod_retry: duration(
            "debuginfod_retry",
            &cli.debuginfod_retry,
            file.debuginfod_retry,
            "10m",
        )?,
    };
    if config.max_file_bytes == 0 || config.debuginfod_timeout.is_zero() {
        return Err(value(
            "debuginfo",
            "max_file_bytes and debuginfod_timeout must be positive".into(),
        ));
    }
    Ok(config)
}

/// `debuginfo/` beside a SQLite database.
fn default_dir(storage: &str) -> Option<PathBuf> {
    let db = sqlite_path(storage)?;
    let parent = db.parent().unwrap_or(Path::new(""));
    Some(parent.join("debuginfo"))
}
