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
//! log_format = "text"          # or "json"
//! max_series_per_tenant = 10000
//! tokens_file = "/etc/firewatch/tokens.toml"   # more [[tokens]], kept apart
//! tls_cert = "/etc/firewatch/tls.crt"          # PEM; both or neither
//! tls_key = "/etc/firewatch/tls.key"
//! insecure_no_auth = false     # allow a non-loopback listen without tokens
//!
//! [[tokens]]                   # see `security.rs`
//! name = "agents"
//! token_sha256 = "..."
//! scope = "ingest"
//! tenant = "team-a"
//!
//! [limits]
//! ingest_rate_bytes_per_second = "8MiB"   # per tenant; absent: unlimited
//! ingest_burst_bytes = "32MiB"            # default: the rate, at least max_body_bytes
//! [limits.tenants.team-a]                 # overrides; "unlimited" lifts the limit
//! ingest_rate_bytes_per_second = "32MiB"
//! max_body_bytes = "16MiB"     # sizes: integers (bytes) or "64KiB", "16MiB", "1GiB"
//! max_decompressed_bytes = "16MiB"
//! max_samples = 100000
//! max_stack_depth = 2048
//! max_labels_per_series = 30
//! max_label_name_length = 1024
//! max_label_value_length = 2048
//! max_profiles_per_request = 1000
//!
//! [debuginfo]                  # see `debuginfo.rs`
//! dir = "/var/lib/firewatch/debuginfo"
//! debuginfod_urls = ["https://debuginfod.debian.net"]
//! max_file_bytes = "1GiB"
//! tenant_quota_bytes = "8GiB"
//! cache_bytes = "4GiB"
//! debuginfod_timeout = "30s"
//! debuginfod_retry = "10m"
//! ```

mod debuginfo;
mod security;
mod sizes;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use self::debuginfo::FileDebuginfo;
pub use self::security::is_loopback;
use self::security::{TokenEntry, check_exposure, read_tokens_file, resolve_tokens};
pub use self::sizes::parse_size;
use self::sizes::{FileTenantLimits, Size, print_rates, rate_limits, size};
use crate::auth::TokenSpec;
use crate::ingest::IngestLimits;
use crate::ratelimit::RateLimits;
use crate::serve::TlsFiles;
use crate::store::StoreOptions;
use crate::symbols::SymbolsOptions;
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
    /// Listening beyond this machine with authentication off, unasked.
    #[error(
        "refusing to listen on {listen} without authentication: anyone who can reach it could \
         read and write every tenant. Configure tokens ([[tokens]] in the config file, or \
         --tokens-file), listen on a loopback address (--listen 127.0.0.1:4040), or pass \
         --insecure-no-auth (FIREWATCH_INSECURE_NO_AUTH=true) to accept this"
    )]
    Exposed {
        /// The listen address.
        listen: String,
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
    /// Log format: text or json [default: text].
    #[arg(long, env = "FIREWATCH_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// TOML file of [[tokens]] (added to those of the config file); with
    /// tokens, every API request needs one.
    #[arg(long, env = "FIREWATCH_TOKENS_FILE", value_name = "PATH")]
    pub tokens_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (needs --tls-key).
    #[arg(long, env = "FIREWATCH_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FIREWATCH_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,
    /// Allow listening on a non-loopback address without tokens.
    #[arg(long, env = "FIREWATCH_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Ingest bytes per second per tenant, e.g. 8MiB [default: unlimited].
    #[arg(
        long,
        env = "FIREWATCH_INGEST_RATE_BYTES_PER_SECOND",
        value_name = "SIZE"
    )]
    pub ingest_rate_bytes_per_second: Option<String>,
    /// Ingest bytes a tenant may send at once [default: the rate, at least
    /// --max-body-bytes].
    #[arg(long, env = "FIREWATCH_INGEST_BURST_BYTES", value_name = "SIZE")]
    pub ingest_burst_bytes: Option<String>,
    /// Print the effective configuration as TOML and exit.
    #[arg(long)]
    pub print_config: bool,
    /// Where uploaded and fetched debug files are kept [default: debuginfo/
    /// beside a SQLite database; none for PostgreSQL].
    #[arg(long, env = "FIREWATCH_DEBUGINFO_DIR", value_name = "PATH")]
    pub debuginfo_dir: Option<PathBuf>,
    /// debuginfod servers to fetch debug files from by build id,
    /// space-separated [default: none].
    #[arg(
        long = "debuginfod-url",
        env = "FIREWATCH_DEBUGINFOD_URLS",
        value_name = "URLS"
    )]
    pub debuginfod_urls: Option<String>,
    /// Largest debug file uploaded or fetched [default: 1GiB].
    #[arg(long, env = "FIREWATCH_MAX_DEBUGINFO_BYTES", value_name = "SIZE")]
    pub max_debuginfo_bytes: Option<String>,
    /// Uploaded debug files one tenant may keep, in all [default: 8GiB].
    #[arg(
        long,
        env = "FIREWATCH_DEBUGINFO_TENANT_QUOTA_BYTES",
        value_name = "SIZE"
    )]
    pub debuginfo_tenant_quota_bytes: Option<String>,
    /// Fetched debug files kept on disk, in all [default: 4GiB].
    #[arg(long, env = "FIREWATCH_DEBUGINFO_CACHE_BYTES", value_name = "SIZE")]
    pub debuginfo_cache_bytes: Option<String>,
    /// How long one debuginfod request may take [default: 30s].
    #[arg(long, env = "FIREWATCH_DEBUGINFOD_TIMEOUT", value_name = "DURATION")]
    pub debuginfod_timeout: Option<String>,
    /// How long a build id no debuginfod server had is not asked for again
    /// [default: 10m].
    #[arg(long, env = "FIREWATCH_DEBUGINFOD_RETRY", value_name = "DURATION")]
    pub debuginfod_retry: Option<String>,
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
    log_format: Option<String>,
    tokens_file: Option<PathBuf>,
    #[serde(default)]
    tokens: Vec<TokenEntry>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    insecure_no_auth: Option<bool>,
    #[serde(default)]
    limits: FileLimits,
    #[serde(default)]
    debuginfo: FileDebuginfo,
    /// Where the file was read from, for messages.
    #[serde(skip)]
    path: Option<PathBuf>,
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
    ingest_rate_bytes_per_second: Option<Size>,
    ingest_burst_bytes: Option<Size>,
    #[serde(default)]
    tenants: BTreeMap<String, FileTenantLimits>,
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
    /// Log format.
    pub log_format: LogFormat,
    /// Ingest rate limits per tenant (printed within `[limits]`).
    #[serde(skip)]
    pub ingest_rate: RateLimits,
    /// Whether a non-loopback listen address without tokens is accepted.
    pub insecure_no_auth: bool,
    /// HTTPS certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// HTTPS private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Tokens, from the config file and the tokens file (digests only).
    pub tokens: Vec<TokenSpec>,
    /// Debug files for naming frames (`[debuginfo]`).
    pub debuginfo: SymbolsOptions,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

pub(crate) fn ser_duration<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
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
            Some(path) => FileConfig {
                path: Some(path.clone()),
                ..read_file(path)?
            },
            None => FileConfig::default(),
        };
        Config::resolve(cli, file)
    }

    /// Merges flags over a parsed file over defaults.
    pub fn resolve(cli: &Cli, mut file: FileConfig) -> Result<Config, ConfigError> {
        let limits = ingest_limits(cli, &mut file.limits)?;
        let file_rate = (
            file.limits.ingest_rate_bytes_per_second,
            file.limits.ingest_burst_bytes,
            file.limits.tenants,
        );
        let retention = match layer(
            cli.retention.clone(),
            file.retention,
            DEFAULT_RETENTION.into(),
        )
        .trim()
        {
            "forever" | "off" | "none" | "0" => None,
            text => Some(parse_duration(text).map_err(|e| value("retention", e.to_string()))?),
        };
        let compact_interval = parse_duration(&layer(
            cli.compact_interval.clone(),
            file.compact_interval,
            "10s".into(),
        ))
        .map_err(|e| value("compact_interval", e.to_string()))?;
        if compact_interval.is_zero() {
            return Err(value("compact_interval", "must be positive".into()));
        }
        let log_format = match cli
            .log_format
            .clone()
            .or(file.log_format)
            .as_deref()
            .map(str::trim)
        {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(value(
                    "log_format",
                    format!("expected text or json, got {other:?}"),
                ));
            }
        };
        let ingest_rate = rate_limits(cli, file_rate, limits.max_body_bytes)?;
        let tls_cert = cli.tls_cert.clone().or(file.tls_cert);
        let tls_key = cli.tls_key.clone().or(file.tls_key);
        if tls_cert.is_some() != tls_key.is_some() {
            return Err(value(
                "tls_cert",
                "give both a certificate (--tls-cert) and its key (--tls-key)".into(),
            ));
        }
        let tokens = tokens(cli, file.path.as_deref(), file.tokens, file.tokens_file)?;
        let storage = layer(cli.storage.clone(), file.storage, DEFAULT_STORAGE.into());
        let debuginfo = debuginfo::resolve(cli, file.debuginfo, &storage)?;
        Ok(Config {
            listen: layer(cli.listen.clone(), file.listen, DEFAULT_LISTEN.into()),
            storage,
            retention,
            compact_interval,
            log: layer(cli.log.clone(), file.log, "info".into()),
            max_series_per_tenant: layer(
                cli.max_series_per_tenant,
                file.max_series_per_tenant,
                StoreOptions::default().max_series_per_tenant,
            ),
            limits,
            log_format,
            ingest_rate,
            insecure_no_auth: cli.insecure_no_auth || file.insecure_no_auth.unwrap_or(false),
            tls_cert,
            tls_key,
            tokens,
            debuginfo,
        })
    }

    /// The HTTPS files, when both are set.
    pub fn tls(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
        })
    }

    /// Refuses a listen address other machines can reach while
    /// authentication is off, unless `insecure_no_auth` says so.
    pub fn check_exposure(&self) -> Result<(), ConfigError> {
        check_exposure(&self.listen, &self.tokens, self.insecure_no_auth)
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
        let Ok(mut table) = toml::Table::try_from(self) else {
            return String::new();
        };
        // The rates as the file writes them, so the output reads back.
        if let Some(toml::Value::Table(limits)) = table.get_mut("limits") {
            print_rates(&self.ingest_rate, limits);
        }
        toml::to_string(&table).unwrap_or_default()
    }
}

/// A setting's layers: the flag (or its environment variable), else the
/// file, else the default.
fn layer<T>(flag: Option<T>, file: Option<T>, default: T) -> T {
    flag.or(file).unwrap_or(default)
}

/// The ingest limits, each at least 1.
fn ingest_limits(cli: &Cli, l: &mut FileLimits) -> Result<IngestLimits, ConfigError> {
    let d = IngestLimits::default();
    let limits = IngestLimits {
        max_body_bytes: size(
            "max_body_bytes",
            &cli.max_body_bytes,
            l.max_body_bytes.take(),
            d.max_body_bytes,
        )?,
        max_decompressed_bytes: size(
            "max_decompressed_bytes",
            &cli.max_decompressed_bytes,
            l.max_decompressed_bytes.take(),
            d.max_decompressed_bytes,
        )?,
        max_samples: layer(cli.max_samples, l.max_samples, d.max_samples),
        max_stack_depth: layer(cli.max_stack_depth, l.max_stack_depth, d.max_stack_depth),
        max_labels_per_series: layer(
            cli.max_labels_per_series,
            l.max_labels_per_series,
            d.max_labels_per_series,
        ),
        max_label_name_length: layer(
            cli.max_label_name_length,
            l.max_label_name_length,
            d.max_label_name_length,
        ),
        max_label_value_length: layer(
            cli.max_label_value_length,
            l.max_label_value_length,
            d.max_label_value_length,
        ),
        max_profiles_per_request: layer(
            cli.max_profiles_per_request,
            l.max_profiles_per_request,
            d.max_profiles_per_request,
        ),
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
    Ok(limits)
}

/// The tokens of the config file and of the tokens file (the flag's, else
/// the config file's), each remembered with where it was read.
fn tokens(
    cli: &Cli,
    config_path: Option<&Path>,
    in_file: Vec<TokenEntry>,
    tokens_file: Option<PathBuf>,
) -> Result<Vec<TokenSpec>, ConfigError> {
    let origin =
        config_path.map_or_else(|| "the config file".to_owned(), |p| p.display().to_string());
    let mut entries: Vec<(String, TokenEntry)> =
        in_file.into_iter().map(|t| (origin.clone(), t)).collect();
    if let Some(path) = cli.tokens_file.clone().or(tokens_file) {
        let origin = path.display().to_string();
        entries.extend(
            read_tokens_file(&path)?
                .into_iter()
                .map(|t| (origin.clone(), t)),
        );
    }
    resolve_tokens(&entries)
}

pub(crate) fn value(name: &'static str, message: String) -> ConfigError {
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

#[cfg(test)]
mod tests;
