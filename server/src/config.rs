//! The server's configuration: command-line flags, `FIREWATCH_*`
//! environment variables and a TOML file (`--config PATH`), in that order
//! of precedence, over built-in defaults.
//!
//! ```toml
//! listen = "0.0.0.0:4040"
//! storage = "postgres://firewatch@db/firewatch"
//! retention = "30d"            # "forever" keeps everything
//! compact_interval = "10s"
//! log = "info"
//! max_series_per_tenant = 10000
//!
//! [limits]
//! max_body_bytes = "16MiB"     # sizes: integers (bytes) or "64KiB", "16MiB", "1GiB"
//! max_decompressed_bytes = "16MiB"
//! max_samples = 100000
//! max_stack_depth = 2048
//! max_labels_per_series = 30
//! max_label_name_length = 1024
//! max_label_value_length = 2048
//! max_profiles_per_request = 1000
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::ingest::IngestLimits;
use crate::store::StoreOptions;
use crate::time::parse_duration;

/// Default `--listen`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:4040";
/// Default `--storage`.
pub const DEFAULT_STORAGE: &str = "sqlite://./firewatch-data/firewatch.db";
/// Default `--retention`.
pub const DEFAULT_RETENTION: &str = "30d";

/// Why the configuration could not be read.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong, with the line.
        message: String,
    },
    /// A value is out of range or malformed.
    #[error("invalid {name}: {message}")]
    Value {
        /// The setting.
        name: &'static str,
        /// What was wrong.
        message: String,
    },
    /// The storage directory could not be created.
    #[error("cannot create the storage directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// Command-line flags. Each may also come from the environment variable
/// shown, and otherwise from the config file, then the default.
#[derive(Debug, Default, Parser)]
#[command(
    name = "firewatch-server",
    version,
    about = "Firewatch's profile server"
)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "FIREWATCH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:4040].
    #[arg(long, env = "FIREWATCH_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Storage URL: sqlite://PATH or postgres://USER@HOST/DB
    /// [default: sqlite://./firewatch-data/firewatch.db].
    #[arg(long, env = "FIREWATCH_STORAGE", value_name = "URL")]
    pub storage: Option<String>,
    /// Delete data older than this (e.g. 30d, 12h), or "forever" [default: 30d].
    #[arg(long, env = "FIREWATCH_RETENTION", value_name = "DURATION")]
    pub retention: Option<String>,
    /// How often rollups are built [default: 10s].
    #[arg(long, env = "FIREWATCH_COMPACT_INTERVAL", value_name = "DURATION")]
    pub compact_interval: Option<String>,
    /// Log filter, e.g. "info" or "firewatch_server=debug" [default: info;
    /// RUST_LOG overrides].
    #[arg(long, env = "FIREWATCH_LOG", value_name = "FILTER")]
    pub log: Option<String>,
    /// Series one tenant may create [default: 10000].
    #[arg(long, env = "FIREWATCH_MAX_SERIES_PER_TENANT", value_name = "N")]
    pub max_series_per_tenant: Option<usize>,
    /// Largest request body, e.g. 16MiB [default: 16MiB].
    #[arg(long, env = "FIREWATCH_MAX_BODY_BYTES", value_name = "SIZE")]
    pub max_body_bytes: Option<String>,
    /// Largest profile after decompression [default: 16MiB].
    #[arg(long, env = "FIREWATCH_MAX_DECOMPRESSED_BYTES", value_name = "SIZE")]
    pub max_decompressed_bytes: Option<String>,
    /// Samples per profile [default: 100000].
    #[arg(long, env = "FIREWATCH_MAX_SAMPLES", value_name = "N")]
    pub max_samples: Option<usize>,
    /// Frames per stack [default: 2048].
    #[arg(long, env = "FIREWATCH_MAX_STACK_DEPTH", value_name = "N")]
    pub max_stack_depth: Option<usize>,
    /// Labels per series [default: 30].
    #[arg(long, env = "FIREWATCH_MAX_LABELS_PER_SERIES", value_name = "N")]
    pub max_labels_per_series: Option<usize>,
    /// Bytes per label name [default: 1024].
    #[arg(long, env = "FIREWATCH_MAX_LABEL_NAME_LENGTH", value_name = "N")]
    pub max_label_name_length: Option<usize>,
    /// Bytes per label value [default: 2048].
    #[arg(long, env = "FIREWATCH_MAX_LABEL_VALUE_LENGTH", value_name = "N")]
    pub max_label_value_length: Option<usize>,
    /// Profiles per push request [default: 1000].
    #[arg(long, env = "FIREWATCH_MAX_PROFILES_PER_REQUEST", value_name = "N")]
    pub max_profiles_per_request: Option<usize>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
}

/// The config file's layout (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<String>,
    storage: Option<String>,
    retention: Option<String>,
    compact_interval: Option<String>,
    log: Option<String>,
    max_series_per_tenant: Option<usize>,
    #[serde(default)]
    limits: FileLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLimits {
    max_body_bytes: Option<Size>,
    max_decompressed_bytes: Option<Size>,
    max_samples: Option<usize>,
    max_stack_depth: Option<usize>,
    max_labels_per_series: Option<usize>,
    max_label_name_length: Option<usize>,
    max_label_value_length: Option<usize>,
    max_profiles_per_request: Option<usize>,
}

/// A size in the file: bytes, or text with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Size {
    Bytes(u64),
    Text(String),
}

/// The effective configuration.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Config {
    /// Address to listen on.
    pub listen: String,
    /// Storage URL.
    pub storage: String,
    /// How long data is kept; `None` keeps it forever.
    #[serde(serialize_with = "ser_retention")]
    pub retention: Option<Duration>,
    /// How often rollups are built.
    #[serde(serialize_with = "ser_duration")]
    pub compact_interval: Duration,
    /// Log filter.
    pub log: String,
    /// Series one tenant may create.
    pub max_series_per_tenant: usize,
    /// Ingest limits.
    pub limits: IngestLimits,
}

fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format!("{}ms", d.as_millis()))
}

fn ser_retention<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_str("forever"),
    }
}

impl Config {
    /// Resolves flags (and their environment variables), the config file
    /// they name, and defaults.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        Config::resolve(cli, file)
    }

    /// Merges flags over a parsed file over defaults.
    pub fn resolve(cli: &Cli, file: FileConfig) -> Result<Config, ConfigError> {
        let d = IngestLimits::default();
        let l = file.limits;
        let limits = IngestLimits {
            max_body_bytes: size(
                "max_body_bytes",
                &cli.max_body_bytes,
                l.max_body_bytes,
                d.max_body_bytes,
            )?,
            max_decompressed_bytes: size(
                "max_decompressed_bytes",
                &cli.max_decompressed_bytes,
                l.max_decompressed_bytes,
                d.max_decompressed_bytes,
            )?,
            max_samples: cli.max_samples.or(l.max_samples).unwrap_or(d.max_samples),
            max_stack_depth: cli
                .max_stack_depth
                .or(l.max_stack_depth)
                .unwrap_or(d.max_stack_depth),
            max_labels_per_series: cli
                .max_labels_per_series
                .or(l.max_labels_per_series)
                .unwrap_or(d.max_labels_per_series),
            max_label_name_length: cli
                .max_label_name_length
                .or(l.max_label_name_length)
                .unwrap_or(d.max_label_name_length),
            max_label_value_length: cli
                .max_label_value_length
                .or(l.max_label_value_length)
                .unwrap_or(d.max_label_value_length),
            max_profiles_per_request: cli
                .max_profiles_per_request
                .or(l.max_profiles_per_request)
                .unwrap_or(d.max_profiles_per_request),
        };
        for (name, v) in [
            ("max_body_bytes", limits.max_body_bytes),
            ("max_decompressed_bytes", limits.max_decompressed_bytes),
            ("max_samples", limits.max_samples),
            ("max_stack_depth", limits.max_stack_depth),
            ("max_labels_per_series", limits.max_labels_per_series),
            ("max_label_name_length", limits.max_label_name_length),
            ("max_label_value_length", limits.max_label_value_length),
            ("max_profiles_per_request", limits.max_profiles_per_request),
        ] {
            if v == 0 {
                return Err(value(name, "must be at least 1".into()));
            }
        }
        let retention_text = cli
            .retention
            .clone()
            .or(file.retention)
            .unwrap_or_else(|| DEFAULT_RETENTION.to_owned());
        let retention = match retention_text.trim() {
            "forever" | "off" | "none" | "0" => None,
            text => Some(parse_duration(text).map_err(|e| value("retention", e.to_string()))?),
        };
        let compact_interval = parse_duration(
            &cli.compact_interval
                .clone()
                .or(file.compact_interval)
                .unwrap_or_else(|| "10s".to_owned()),
        )
        .map_err(|e| value("compact_interval", e.to_string()))?;
        if compact_interval.is_zero() {
            return Err(value("compact_interval", "must be positive".into()));
        }
        let max_series_per_tenant = cli
            .max_series_per_tenant
            .or(file.max_series_per_tenant)
            .unwrap_or(StoreOptions::default().max_series_per_tenant);
        Ok(Config {
            listen: cli
                .listen
                .clone()
                .or(file.listen)
                .unwrap_or_else(|| DEFAULT_LISTEN.to_owned()),
            storage: cli
                .storage
                .clone()
                .or(file.storage)
                .unwrap_or_else(|| DEFAULT_STORAGE.to_owned()),
            retention,
            compact_interval,
            log: cli
                .log
                .clone()
                .or(file.log)
                .unwrap_or_else(|| "info".to_owned()),
            max_series_per_tenant,
            limits,
        })
    }

    /// Options for opening the store.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            max_series_per_tenant: self.max_series_per_tenant,
            ..StoreOptions::default()
        }
    }

    /// Creates the parent directory of a `sqlite://` database file.
    pub fn prepare_storage(&self) -> Result<(), ConfigError> {
        let Some(path) = sqlite_path(&self.storage) else {
            return Ok(());
        };
        let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) else {
            return Ok(());
        };
        std::fs::create_dir_all(parent).map_err(|source| ConfigError::CreateDir {
            path: parent.to_owned(),
            source,
        })
    }

    /// The configuration as TOML (sizes in bytes, durations in ms).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).unwrap_or_default()
    }
}

/// A size setting: the flag (or its variable), else the file, else the default.
fn size(
    name: &'static str,
    flag: &Option<String>,
    file: Option<Size>,
    default: usize,
) -> Result<usize, ConfigError> {
    match (flag, file) {
        (Some(text), _) => parse_size(text).map_err(|m| value(name, m)),
        (None, Some(Size::Bytes(b))) => {
            usize::try_from(b).map_err(|_| value(name, "too large".into()))
        }
        (None, Some(Size::Text(text))) => parse_size(&text).map_err(|m| value(name, m)),
        (None, None) => Ok(default),
    }
}

fn value(name: &'static str, message: String) -> ConfigError {
    ConfigError::Value { name, message }
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// The file of a `sqlite://PATH` or `sqlite:PATH` URL (query string
/// removed), `None` for other URLs and in-memory databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// Parses `1048576`, `64KiB`, `16MiB`, `1GiB` (also `KB`, `MB`, `GB` as
/// powers of 1000, and `K`/`M`/`G` as powers of 1024).
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("expected a size such as 16MiB, got {text:?}"))?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        "KB" | "kB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => return Err(format!("unknown size unit {other:?} (use KiB, MiB or GiB)")),
    };
    n.checked_mul(factor)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| format!("size {text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults() {
        let c = Config::resolve(&Cli::default(), FileConfig::default()).unwrap();
        assert_eq!(c.listen, DEFAULT_LISTEN);
        assert_eq!(c.storage, DEFAULT_STORAGE);
        assert_eq!(c.retention, Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(c.compact_interval, Duration::from_secs(10));
        assert_eq!(c.limits, IngestLimits::default());
    }

    #[test]
    fn flags_win_over_the_file() {
        let f = file(
            r#"
            listen = "0.0.0.0:9"
            storage = "postgres://u@h/db"
            retention = "forever"
            [limits]
            max_body_bytes = "1MiB"
            max_samples = 5
            "#,
        );
        let cli = Cli::try_parse_from([
            "firewatch-server",
            "--listen",
            "127.0.0.1:1",
            "--max-samples",
            "7",
        ])
        .unwrap();
        let c = Config::resolve(&cli, f).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1");
        assert_eq!(c.storage, "postgres://u@h/db");
        assert_eq!(c.retention, None);
        assert_eq!(c.limits.max_body_bytes, 1 << 20);
        assert_eq!(c.limits.max_samples, 7);
    }

    #[test]
    fn bad_values_are_named() {
        let e = toml::from_str::<FileConfig>("listne = 1").unwrap_err();
        assert!(e.to_string().contains("listne"), "{e}");
        let cli = Cli {
            retention: Some("30 days".into()),
            ..Cli::default()
        };
        let e = Config::resolve(&cli, FileConfig::default()).unwrap_err();
        assert!(e.to_string().starts_with("invalid retention"), "{e}");
        let e = Config::resolve(&Cli::default(), file("[limits]\nmax_samples = 0")).unwrap_err();
        assert!(e.to_string().contains("max_samples"), "{e}");
    }

    #[test]
    fn sizes_and_paths() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("2 KB"), Ok(2000));
        assert!(parse_size("1TB").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(
            sqlite_path("sqlite://./data/fw.db?mode=rwc"),
            Some(PathBuf::from("./data/fw.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    #[test]
    fn prepares_the_sqlite_directory() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("a/b/fw.db");
        let cli = Cli {
            storage: Some(format!("sqlite://{}", db.display())),
            ..Cli::default()
        };
        let c = Config::resolve(&cli, FileConfig::default()).unwrap();
        c.prepare_storage().unwrap();
        assert!(dir.path().join("a/b").is_dir());
        assert!(
            c.to_toml().contains("max_samples = 100000"),
            "{}",
            c.to_toml()
        );
    }
}
