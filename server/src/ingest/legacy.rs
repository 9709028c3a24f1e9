//! Pyroscope's original ingest API: `POST /ingest` (also
//! `/pyroscope/ingest`), as its older SDKs and scripts send it.
//!
//! Parameters: `name` (`app[.type]{k=v,...}`, required), `from`, `until`
//! (see [`crate::time`]; default now), `sampleRate` (default 100),
//! `spyName` (stored as the label `pyroscope_spy`), `units`,
//! `aggregationType` (`sum` or `average`; accepted, the store averages
//! `inuse_*` types whatever it says) and `format`.
//!
//! Bodies:
//! - default (`format` absent, `folded`, `groups`): folded text,
//!   `a;b;c 123` per line;
//! - `format=lines`: one stack per line, each line counting 1;
//! - `format=pprof`: a pprof, raw or gzipped; its own sample types are
//!   kept and `name` only gives the application and labels;
//! - `multipart/form-data`: a pprof in the field `profile` and an optional
//!   `sample_type_config` (JSON `{"<type>": {"display-name": ...}}`, which
//!   selects and renames sample types); `prev_profile` is ignored;
//! - `trie`, `tree`, `jfr`, `speedscope`: refused with 415.
//!
//! Text formats are stored under the sample types of
//! [`super::profile_types`]'s table.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request, State};
use firewatch_profile::{Limits, Profile, SampleType, folded};
use serde::Deserialize;
use serde_json::{Value, json};

use super::decompress::decompress;
use super::limits::{check_labels, collect_labels, is_reserved, sanitize_label_name};
use super::profile_types::{self, LegacyShape, apply_shape, legacy_shape, rename_columns};
use super::{admit, blocking, decode_pprof, store_all};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::{self, Params};
use crate::selector::{PROFILE_NAME, SERVICE_NAME};
use crate::store::NewProfile;
use crate::time::{now_ms, parse_time};

/// The label that records a legacy client's `spyName`.
pub const SPY_LABEL: &str = "pyroscope_spy";

/// How the body of a legacy request is to be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFormat {
    /// `a;b;c 123` per line.
    Folded,
    /// `a;b;c` per line, each counting 1.
    Lines,
    /// A pprof body.
    Pprof,
    /// `multipart/form-data` with a pprof `profile` field.
    Multipart,
}

impl BodyFormat {
    /// Picks the format from `format` and `Content-Type`, in Pyroscope's order.
    pub fn choose(
        format: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<BodyFormat, ApiError> {
        let unsupported = |f: &str| {
            ApiError::UnsupportedMediaType(format!(
                "format {f:?} is not supported: send pprof (format=pprof or multipart), \
                 folded text (the default) or format=lines"
            ))
        };
        if content_type == Some("binary/octet-stream+trie") {
            return Err(unsupported("trie"));
        }
        let multipart = content_type.is_some_and(|c| c == "multipart/form-data");
        match format {
            Some(f @ ("trie" | "tree" | "jfr" | "speedscope")) => Err(unsupported(f)),
            Some("lines") => Ok(BodyFormat::Lines),
            _ if multipart => Ok(BodyFormat::Multipart),
            Some("pprof") => Ok(BodyFormat::Pprof),
            None | Some("folded" | "groups" | "collapsed") => Ok(BodyFormat::Folded),
            Some(other) => Err(ApiError::bad_request(format!(
                "unknown format {other:?}: expected pprof, lines or folded"
            ))),
        }
    }
}

/// The request's metadata, from its query parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct LegacyRequest {
    /// Parsed `name`.
    pub name: profile_types::LegacyName,
    /// `from`, Unix ms (None: not given).
    pub from_ms: Option<i64>,
    /// `until`, Unix ms (None: not given).
    pub until_ms: Option<i64>,
    /// `sampleRate`.
    pub sample_rate: u32,
    /// `spyName`, if given.
    pub spy_name: Option<String>,
    /// `units`, if given.
    pub units: Option<String>,
}

impl LegacyRequest {
    /// Reads and checks the parameters.
    pub fn parse(params: &Params, now_ms: i64) -> Result<LegacyRequest, ApiError> {
        let name = profile_types::parse_legacy_name(params.require("name")?)
            .map_err(|m| ApiError::bad_request(format!("parameter `name`: {m}")))?;
        let time = |key: &str| -> Result<Option<i64>, ApiError> {
            params
                .get(key)
                .map(|t| parse_time(t, now_ms))
                .transpose()
                .map_err(|e| ApiError::bad_request(format!("parameter `{key}`: {e}")))
        };
        let (from_ms, until_ms) = (time("from")?, time("until")?);
        if let (Some(f), Some(u)) = (from_ms, until_ms)
            && u < f
        {
            return Err(ApiError::bad_request(format!(
                "`until` ({u} ms) is before `from` ({f} ms)"
            )));
        }
        let sample_rate = match params.get("sampleRate") {
            None => 100,
            Some(s) => s.parse::<u32>().ok().filter(|r| *r > 0).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "parameter `sampleRate`: expected a positive integer, got {s:?}"
                ))
            })?,
        };
        match params.get("aggregationType") {
            None | Some("sum" | "average" | "avg") => {}
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "parameter `aggregationType`: expected sum or average, got {other:?}"
                )));
            }
        }
        Ok(LegacyRequest {
            name,
            from_ms,
            until_ms,
            sample_rate,
            spy_name: params
                .get("spyName")
                .filter(|s| *s != "unknown")
                .map(str::to_owned),
            units: params.get("units").map(str::to_owned),
        })
    }

    /// The shape text formats are stored in.
    fn shape(&self) -> Result<LegacyShape, ApiError> {
        let kind = self.name.kind.as_deref().unwrap_or("cpu");
        legacy_shape(kind, self.units.as_deref(), self.sample_rate)
            .map_err(|m| ApiError::bad_request(format!("parameter `units`: {m}")))
    }
}

/// `POST /ingest` and `POST /pyroscope/ingest`.
pub async fn ingest(
    State(state): State<AppState>,
    tenant: Tenant,
    req: Request,
) -> Result<Json<Value>, ApiError> {
    let (parts, body) = req.into_parts();
    let params = Params::from_uri(&parts.uri)?;
    let meta = LegacyRequest::parse(&params, now_ms())?;
    let content_type = http::content_type(&parts.headers);
    let format = BodyFormat::choose(params.get("format"), content_type.as_deref())?;
    let req = Request::from_parts(parts, body);
    let limits = state.limits.profile_limits();
    let max_body = state.limits.max_body_bytes;

    let received: usize;
    let (mut profile, family) = match format {
        BodyFormat::Multipart => {
            let (bytes, config) = read_multipart(req, max_body).await?;
            received = bytes.len() + config.as_ref().map_or(0, |c| c.len());
            admit(&state, &tenant, received)?;
            let profile = blocking(bytes.len(), move || {
                let profile = decode_pprof(&bytes, &limits)?;
                match config {
                    Some(c) => apply_sample_type_config(&profile, &c),
                    None => Ok(profile),
                }
            })
            .await?;
            let family = profile_types::profile_family(&profile);
            (profile, family)
        }
        BodyFormat::Pprof => {
            let bytes = read_body(req, max_body).await?;
            received = bytes.len();
            admit(&state, &tenant, received)?;
            let profile = blocking(bytes.len(), move || decode_pprof(&bytes, &limits)).await?;
            let family = profile_types::profile_family(&profile);
            (profile, family)
        }
        BodyFormat::Folded | BodyFormat::Lines => {
            let shape = meta.shape()?;
            let bytes = read_body(req, max_body).await?;
            received = bytes.len();
            admit(&state, &tenant, received)?;
            let family = shape.family.to_owned();
            let profile = blocking(bytes.len(), move || {
                let counted_type = shape.sample_types[0].clone();
                let counted = if format == BodyFormat::Lines {
                    parse_lines(&bytes, counted_type, &limits)?
                } else {
                    let raw = decompress(&bytes, limits.max_decompressed_bytes)?;
                    folded::parse(&raw, counted_type, &limits)?
                };
                Ok(apply_shape(&counted, &shape))
            })
            .await?;
            (profile, family)
        }
    };

    if meta.from_ms.is_some() || meta.until_ms.is_some() || profile.time_nanos == 0 {
        let now = now_ms();
        let from = meta.from_ms.unwrap_or(now);
        let until = meta.until_ms.unwrap_or(now).max(from);
        profile.time_nanos = from.saturating_mul(1_000_000);
        profile.duration_nanos = (until - from).saturating_mul(1_000_000);
    }

    let mut pairs: Vec<(String, String)> = meta
        .name
        .labels
        .iter()
        .map(|(k, v)| (sanitize_label_name(k.clone()), v.clone()))
        .filter(|(k, _)| !is_reserved(k))
        .collect();
    if !pairs.iter().any(|(k, _)| k == SERVICE_NAME) {
        pairs.push((SERVICE_NAME.to_owned(), meta.name.app.clone()));
    }
    if !pairs.iter().any(|(k, _)| k == PROFILE_NAME) {
        pairs.push((PROFILE_NAME.to_owned(), family));
    }
    if let Some(spy) = &meta.spy_name
        && !pairs.iter().any(|(k, _)| k == SPY_LABEL)
    {
        pairs.push((SPY_LABEL.to_owned(), spy.clone()));
    }
    let labels = check_labels(collect_labels(pairs)?, &state.limits)?;
    let stored = store_all(
        &state,
        &tenant,
        "legacy",
        received,
        vec![NewProfile {
            tenant: tenant.0.clone(),
            labels,
            profile,
        }],
    )
    .await?;
    Ok(Json(json!({ "stored": stored > 0 })))
}

async fn read_body(req: Request, limit: usize) -> Result<Bytes, ApiError> {
    http::body(Bytes::from_request(req, &()).await, limit)
}

/// Reads the `profile` and `sample_type_config` fields of a multipart body.
async fn read_multipart(req: Request, limit: usize) -> Result<(Bytes, Option<Bytes>), ApiError> {
    let mut multipart = Multipart::from_request(req, &())
        .await
        .map_err(|e| ApiError::bad_request(format!("invalid multipart body: {}", e.body_text())))?;
    let field_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("request body exceeds the limit of {limit} bytes"))
        } else {
            ApiError::bad_request(format!("invalid multipart body: {}", e.body_text()))
        }
    };
    let (mut profile, mut config) = (None, None);
    while let Some(field) = multipart.next_field().await.map_err(field_error)? {
        match field.name() {
            Some("profile") => profile = Some(field.bytes().await.map_err(field_error)?),
            Some("sample_type_config") => config = Some(field.bytes().await.map_err(field_error)?),
            _ => {}
        }
    }
    let profile = profile.ok_or_else(|| {
        ApiError::bad_request("multipart body has no `profile` field (the pprof profile)")
    })?;
    Ok((profile, config))
}

/// One entry of a multipart `sample_type_config`.
#[derive(Clone, Debug, Default, Deserialize)]
struct SampleTypeConfig {
    #[serde(default, rename = "display-name")]
    display_name: Option<String>,
}

/// Keeps the sample types `sample_type_config` names, renamed to their
/// `display-name` when one is given.
fn apply_sample_type_config(profile: &Profile, config: &[u8]) -> Result<Profile, ApiError> {
    let config: BTreeMap<String, SampleTypeConfig> = serde_json::from_slice(config)
        .map_err(|e| ApiError::bad_request(format!("invalid sample_type_config: {e}")))?;
    let columns: Vec<(usize, String)> = profile
        .sample_types()
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            let c = config.get(&t.kind)?;
            let kind = c
                .display_name
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| t.kind.clone());
            Some((i, kind))
        })
        .collect();
    if columns.is_empty() {
        let kinds: Vec<&str> = profile
            .sample_types()
            .iter()
            .map(|t| t.kind.as_str())
            .collect();
        return Err(ApiError::bad_request(format!(
            "sample_type_config names none of the profile's sample types ({})",
            kinds.join(", ")
        )));
    }
    Ok(rename_columns(profile, &columns))
}

/// Parses `format=lines`: one stack per line (`a;b;c`, root first), each
/// line counting 1.
pub fn parse_lines(
    bytes: &[u8],
    sample_type: SampleType,
    limits: &Limits,
) -> Result<Profile, ApiError> {
    Ok(firewatch_profile::folded::parse_lines(
        bytes,
        sample_type,
        limits,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Uri;

    fn params(q: &str) -> Params {
        let uri: Uri = format!("/ingest?{q}").parse().unwrap();
        Params::from_uri(&uri).unwrap()
    }

    #[test]
    fn formats_in_pyroscope_order() {
        use BodyFormat::*;
        assert_eq!(BodyFormat::choose(None, None).unwrap(), Folded);
        assert_eq!(BodyFormat::choose(Some("lines"), None).unwrap(), Lines);
        assert_eq!(BodyFormat::choose(Some("pprof"), None).unwrap(), Pprof);
        let mp = Some("multipart/form-data");
        assert_eq!(BodyFormat::choose(Some("pprof"), mp).unwrap(), Multipart);
        assert_eq!(BodyFormat::choose(None, mp).unwrap(), Multipart);
        for f in ["trie", "tree", "jfr", "speedscope"] {
            let e = BodyFormat::choose(Some(f), None).unwrap_err();
            assert_eq!(e.status(), 415);
            assert!(e.to_string().contains("not supported"), "{e}");
        }
        let e = BodyFormat::choose(None, Some("binary/octet-stream+trie")).unwrap_err();
        assert_eq!(e.status(), 415);
        assert_eq!(
            BodyFormat::choose(Some("xml"), None).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn request_parameters() {
        let now = 1_700_000_000_000;
        let r = LegacyRequest::parse(
            &params("name=app.wall%7Benv%3Dprod%7D&from=1700000000&until=now&sampleRate=99&spyName=pyspy"),
            now,
        )
        .unwrap();
        assert_eq!(r.name.app, "app");
        assert_eq!(r.name.kind.as_deref(), Some("wall"));
        assert_eq!((r.from_ms, r.until_ms), (Some(now), Some(now)));
        assert_eq!(r.sample_rate, 99);
        assert_eq!(r.spy_name.as_deref(), Some("pyspy"));

        for (q, needle) in [
            ("from=now", "`name`"),
            ("name=a&sampleRate=0", "sampleRate"),
            ("name=a&from=yesterday", "`from`"),
            ("name=a&from=now&until=now-1h", "before"),
            ("name=a&aggregationType=max", "aggregationType"),
        ] {
            let e = LegacyRequest::parse(&params(q), now).unwrap_err();
            assert!(e.to_string().contains(needle), "{q}: {e}");
        }
    }

    #[test]
    fn lines_count_one_each() {
        let limits = Limits::default();
        let p = parse_lines(
            b"a;b\na;b\n\na;c\r\n",
            SampleType::new("samples", "count"),
            &limits,
        )
        .unwrap();
        assert_eq!(p.total(0), 3);
        assert_eq!(p.stack_count(), 2);
        let tight = Limits {
            max_samples: 2,
            ..Limits::default()
        };
        let e = parse_lines(b"a\nb\nc\n", SampleType::new("s", "count"), &tight).unwrap_err();
        assert_eq!(e.status(), 422);
    }

    #[test]
    fn sample_type_config_selects_and_renames() {
        let mut p = Profile::new(vec![
            SampleType::new("contentions", "count"),
            SampleType::new("delay", "nanoseconds"),
        ]);
        p.add_named_sample(&["lock"], &[3, 900]);
        let c = br#"{"contentions":{"display-name":"mutex_count","units":"lock_samples"},
                     "delay":{"display-name":"mutex_duration","units":"lock_nanoseconds"}}"#;
        let r = apply_sample_type_config(&p, c).unwrap();
        let kinds: Vec<_> = r.sample_types().iter().map(|t| t.kind.as_str()).collect();
        assert_eq!(kinds, ["mutex_count", "mutex_duration"]);
        assert_eq!(profile_types::profile_family(&r), "mutex");
        assert!(apply_sample_type_config(&p, br#"{"x":{}}"#).is_err());
        assert!(apply_sample_type_config(&p, b"nope").is_err());
    }
}
