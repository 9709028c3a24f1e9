//! Sizes as the configuration spells them (`16MiB`, `1048576`), and the
//! ingest rate limits built from them.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{Cli, ConfigError, value};
use crate::ratelimit::{Rate, RateLimits};

/// A tenant's overrides of the ingest rate.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileTenantLimits {
    pub(super) ingest_rate_bytes_per_second: Option<Size>,
    pub(super) ingest_burst_bytes: Option<Size>,
}

/// A size in the file: bytes, or text with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Size {
    Bytes(u64),
    Text(String),
}

/// The ingest rate limits: a default from the flags or `[limits]`, and
/// per-tenant overrides from `[limits.tenants.<id>]`.
pub(super) fn rate_limits(
    cli: &Cli,
    (file_rate, file_burst, file_tenants): (
        Option<Size>,
        Option<Size>,
        BTreeMap<String, FileTenantLimits>,
    ),
    max_body: usize,
) -> Result<RateLimits, ConfigError> {
    const RATE: &str = "ingest_rate_bytes_per_second";
    const BURST: &str = "ingest_burst_bytes";
    let optional =
        |name: &'static str, flag: &Option<String>, file: Option<&Size>| match (flag, file) {
            (Some(text), _) => rate_size(name, text).map(Some),
            (None, Some(Size::Bytes(b))) => Ok(Some(*b)),
            (None, Some(Size::Text(text))) => rate_size(name, text).map(Some),
            (None, None) => Ok(None),
        };
    let make = |rate: Option<u64>, burst: Option<u64>| match rate {
        None | Some(0) => None,
        // A burst below the rate could never be refilled past itself; the
        // default lets any request within max_body_bytes through.
        Some(r) => Some(Rate {
            bytes_per_second: r,
            burst_bytes: burst.unwrap_or(r.max(max_body as u64)).max(1),
        }),
    };
    let rate = optional(RATE, &cli.ingest_rate_bytes_per_second, file_rate.as_ref())?;
    let burst = optional(BURST, &cli.ingest_burst_bytes, file_burst.as_ref())?;
    let mut tenants = BTreeMap::new();
    for (tenant, t) in &file_tenants {
        let t_rate = optional(RATE, &None, t.ingest_rate_bytes_per_second.as_ref())?;
        let t_burst = optional(BURST, &None, t.ingest_burst_bytes.as_ref())?;
        let id = crate::http::check_tenant(tenant)
            .map_err(|e| value("limits.tenants", e.to_string()))?;
        tenants.insert(id, make(t_rate.or(rate), t_burst.or(burst)));
    }
    Ok(RateLimits {
        default: make(rate, burst),
        tenants,
    })
}

/// A rate or burst: a size, or `unlimited` (0).
fn rate_size(name: &'static str, text: &str) -> Result<u64, ConfigError> {
    if matches!(text.trim(), "unlimited" | "off" | "none") {
        return Ok(0);
    }
    parse_size(text)
        .map(|n| n as u64)
        .map_err(|m| value(name, m))
}

/// A size setting: the flag (or its variable), else the file, else the default.
pub(super) fn size(
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

/// Writes rate limits into a `[limits]` table as the file spells them.
pub(super) fn print_rates(rates: &RateLimits, limits: &mut toml::Table) {
    let rate = |r: Option<Rate>, limits: &mut toml::Table| match r {
        Some(r) => {
            let int = |v: u64| toml::Value::Integer(i64::try_from(v).unwrap_or(i64::MAX));
            limits.insert(
                "ingest_rate_bytes_per_second".into(),
                int(r.bytes_per_second),
            );
            limits.insert("ingest_burst_bytes".into(), int(r.burst_bytes));
        }
        None => {
            limits.insert(
                "ingest_rate_bytes_per_second".into(),
                toml::Value::String("unlimited".into()),
            );
        }
    };
    rate(rates.default, limits);
    if !rates.tenants.is_empty() {
        let mut tenants = toml::Table::new();
        for (tenant, r) in &rates.tenants {
            let mut t = toml::Table::new();
            rate(*r, &mut t);
            tenants.insert(tenant.clone(), toml::Value::Table(t));
        }
        limits.insert("tenants".into(), toml::Value::Table(tenants));
    }
}

/// Parses a size (`16MiB`, `16MB`, `1048576`: see `firewatch-syntax`).
pub fn parse_size(text: &str) -> Result<usize, String> {
    firewatch_syntax::parse_size(text).map_err(|e| e.to_string())
}
