//! Pyroscope's push API: `POST /push.v1.PusherService/Push`, a Connect
//! unary call, so that Pyroscope's SDKs and Grafana Alloy can point at
//! Firewatch unchanged.
//!
//! - Body: a `PushRequest` (`proto/push.proto`) as protobuf
//!   (`Content-Type: application/proto`) or Connect JSON
//!   (`application/json`: camelCase names, bytes as base64), optionally
//!   `Content-Encoding: gzip`. The tenant is the one authentication resolved
//!   (`X-Scope-OrgID`).
//! - Each series' labels: `service_name` (defaults to `unknown_service`),
//!   `__name__` (inferred from the sample types when absent) and user
//!   labels; other labels starting with `__` are dropped.
//! - Each sample's `raw_profile` is a pprof, gzip-compressed or not.
//! - Every profile of the request is stored, or none.
//!
//! Success is an empty `PushResponse`; failures are Connect errors
//! ([`ConnectError`]).

use std::marker::PhantomData;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use firewatch_profile::Limits;
use prost::Message;
use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, de};

use super::decompress::decompress;
use super::limits::{IngestLimits, check_labels, collect_labels, is_reserved, sanitize_label_name};
use super::profile_types::profile_family;
use super::{admit, blocking, decode_pprof, store_all};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::{ApiError, ConnectError};
use crate::http;
use crate::selector::{Labels, PROFILE_NAME, SERVICE_NAME};
use crate::store::NewProfile;

/// Types generated from `proto/push.proto`.
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/push.v1.rs"));
}

/// The service name of series that carry none.
pub const DEFAULT_SERVICE_NAME: &str = "unknown_service";

/// Label entries one series may carry on the wire, before reserved labels
/// are dropped and the label limit is checked: a bound on memory only.
const MAX_WIRE_LABELS: usize = 1_024;

/// How the request body is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    /// `application/proto`.
    Proto,
    /// `application/json`.
    Json,
}

impl Codec {
    fn from_headers(headers: &HeaderMap) -> Result<Codec, ApiError> {
        match http::content_type(headers).as_deref() {
            Some("application/proto" | "application/protobuf" | "application/x-protobuf") => {
                Ok(Codec::Proto)
            }
            Some("application/json") => Ok(Codec::Json),
            Some(other) => Err(ApiError::UnsupportedMediaType(format!(
                "unsupported Content-Type {other:?}: use application/proto or application/json"
            ))),
            None => Err(ApiError::UnsupportedMediaType(
                "missing Content-Type: use application/proto or application/json".into(),
            )),
        }
    }
}

/// One series of a decoded request: its labels as sent, and its profiles'
/// raw bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RawSeries {
    /// Label pairs in order.
    pub labels: Vec<(String, String)>,
    /// `raw_profile` of each sample.
    pub profiles: Vec<Vec<u8>>,
}

/// `POST /push.v1.PusherService/Push`.
pub async fn push(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ConnectError> {
    let codec = Codec::from_headers(&headers)?;
    let encoding = http::content_encoding(&headers)?;
    let body = http::body(body, state.limits.max_body_bytes)?;
    admit(&state, &tenant, body.len())?;
    let bytes = body.len();
    http::check_encoding(encoding, &body)?;
    let limits = state.limits.clone();
    let owner = tenant.0.clone();
    let profiles = blocking(body.len(), move || {
        let series = decode_request(&body, codec, &limits)?;
        to_profiles(owner, series, &limits)
    })
    .await?;
    store_all(&state, &tenant, "push", bytes, profiles).await?;
    Ok(match codec {
        Codec::Proto => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/proto")],
            proto::PushResponse {}.encode_to_vec(),
        )
            .into_response(),
        Codec::Json => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            "{}",
        )
            .into_response(),
    })
}

/// Decompresses and decodes a push request body into its series, checking
/// counts against the limits before building anything large.
pub fn decode_request(
    body: &[u8],
    codec: Codec,
    limits: &IngestLimits,
) -> Result<Vec<RawSeries>, ApiError> {
    let raw = decompress(body, limits.max_body_bytes).map_err(|e| match ApiError::from(e) {
        ApiError::TooLarge(m) => ApiError::TooLarge(format!("push request: {m}")),
        other => other,
    })?;
    let series = match codec {
        Codec::Proto => {
            precheck(&raw, limits)?;
            let request = proto::PushRequest::decode(&*raw)
                .map_err(|e| ApiError::bad_request(format!("malformed PushRequest: {e}")))?;
            request
                .series
                .into_iter()
                .map(|s| RawSeries {
                    labels: s.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                    profiles: s.samples.into_iter().map(|x| x.raw_profile).collect(),
                })
                .collect()
        }
        Codec::Json => {
            let request: JsonPushRequest = serde_json::from_slice(&raw)
                .map_err(|e| ApiError::bad_request(format!("malformed PushRequest JSON: {e}")))?;
            let mut out = Vec::with_capacity(request.series.len());
            for (i, s) in request.series.into_iter().enumerate() {
                let mut profiles = Vec::with_capacity(s.samples.len());
                for (j, sample) in s.samples.into_iter().enumerate() {
                    let text = sample.raw_profile.unwrap_or_default();
                    profiles.push(base64_decode(&text).map_err(|e| {
                        ApiError::bad_request(format!(
                            "series {i}, sample {j}: rawProfile is not base64: {e}"
                        ))
                    })?);
                }
                out.push(RawSeries {
                    labels: s
                        .labels
                        .into_iter()
                        .map(|l| (l.name.unwrap_or_default(), l.value.unwrap_or_default()))
                        .collect(),
                    profiles,
                });
            }
            out
        }
    };
    let total: usize = series.iter().map(|s| s.profiles.len()).sum();
    if total > limits.max_profiles_per_request {
        return Err(too_many_profiles(total, limits));
    }
    Ok(series)
}

fn too_many_profiles(count: usize, limits: &IngestLimits) -> ApiError {
    ApiError::Unprocessable(format!(
        "{count} profiles in one push request, over the limit of {}",
        limits.max_profiles_per_request
    ))
}

/// Turns decoded series into profiles to store: labels cleaned and checked,
/// every raw profile decoded within the limits.
pub fn to_profiles(
    tenant: String,
    series: Vec<RawSeries>,
    limits: &IngestLimits,
) -> Result<Vec<NewProfile>, ApiError> {
    let profile_limits: Limits = limits.profile_limits();
    let mut out = Vec::new();
    for (i, s) in series.into_iter().enumerate() {
        if s.profiles.is_empty() {
            continue;
        }
        let labels =
            series_labels(s.labels, limits).map_err(|e| e.context(&format!("series {i}")))?;
        for (j, raw) in s.profiles.iter().enumerate() {
            let profile = decode_pprof(raw, &profile_limits).map_err(|e| {
                e.context(&format!(
                    "series {i} ({SERVICE_NAME}={}), sample {j}",
                    labels.get(SERVICE_NAME).map(String::as_str).unwrap_or("")
                ))
            })?;
            let mut labels = labels.clone();
            if !labels.contains_key(PROFILE_NAME) {
                labels.insert(PROFILE_NAME.to_owned(), profile_family(&profile));
                labels =
                    check_labels(labels, limits).map_err(|e| e.context(&format!("series {i}")))?;
            }
            out.push(NewProfile {
                tenant: tenant.clone(),
                labels,
                profile,
            });
        }
    }
    Ok(out)
}

/// A series' labels: dots in names made underscores, reserved ones
/// dropped, `service_name` defaulted, then checked against the limits.
fn series_labels(pairs: Vec<(String, String)>, limits: &IngestLimits) -> Result<Labels, ApiError> {
    let kept = pairs
        .into_iter()
        .map(|(name, value)| (sanitize_label_name(name), value))
        .filter(|(name, _)| !is_reserved(name));
    let mut labels = collect_labels(kept)?;
    if labels.get(SERVICE_NAME).is_none_or(String::is_empty) {
        labels.insert(SERVICE_NAME.to_owned(), DEFAULT_SERVICE_NAME.to_owned());
    }
    check_labels(labels, limits)
}

/// Counts series, samples and labels on the wire before decoding, so that
/// a small body cannot make the decoder build millions of empty messages.
fn precheck(buf: &[u8], limits: &IngestLimits) -> Result<(), ApiError> {
    let (mut series, mut samples) = (0usize, 0usize);
    for_each_field(buf, |field, payload| {
        if field != 1 {
            return Ok(());
        }
        series += 1;
        let mut labels = 0usize;
        for_each_field(payload.unwrap_or_default(), |f, _| {
            match f {
                1 => labels += 1,
                2 => samples += 1,
                _ => {}
            }
            Ok(())
        })?;
        if labels > MAX_WIRE_LABELS {
            return Err(ApiError::Unprocessable(format!(
                "series {} has {labels} labels, over the limit of {MAX_WIRE_LABELS}",
                series - 1
            )));
        }
        Ok(())
    })?;
    let max = limits.max_profiles_per_request;
    if series > max {
        return Err(ApiError::Unprocessable(format!(
            "{series} series in one push request, over the limit of {max}"
        )));
    }
    if samples > max {
        return Err(too_many_profiles(samples, limits));
    }
    Ok(())
}

/// Calls `f(field number, payload)` for every field of a PushRequest
/// message (or one nested in it), without decoding it.
fn for_each_field<'b>(
    buf: &'b [u8],
    f: impl FnMut(u64, Option<&'b [u8]>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    firewatch_profile::pprof::for_each_field(
        buf,
        |m| ApiError::bad_request(format!("malformed PushRequest: {m}")),
        f,
    )
}

/// Connect JSON accepts standard and URL-safe base64, padded or not.
fn base64_decode(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    use base64::alphabet;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let standard = GeneralPurpose::new(&alphabet::STANDARD, config);
    standard.decode(text).or_else(|e| {
        GeneralPurpose::new(&alphabet::URL_SAFE, config)
            .decode(text)
            .map_err(|_| e)
    })
}

// Connect JSON of the request: proto3 JSON names (lowerCamelCase, the
// original names also accepted), nulls read as defaults, lists bounded.

#[derive(Deserialize)]
struct JsonPushRequest {
    #[serde(default, deserialize_with = "bounded::<_, _, 100_000>")]
    series: Vec<JsonSeries>,
}

#[derive(Deserialize)]
struct JsonSeries {
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_WIRE_LABELS>")]
    labels: Vec<JsonLabel>,
    #[serde(default, deserialize_with = "bounded::<_, _, 100_000>")]
    samples: Vec<JsonSample>,
}

#[derive(Deserialize)]
struct JsonLabel {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct JsonSample {
    #[serde(default, rename = "rawProfile", alias = "raw_profile")]
    raw_profile: Option<String>,
    #[serde(default, rename = "ID", alias = "id")]
    #[allow(dead_code)]
    id: Option<String>,
}

/// A list of at most `N` entries (`null` reads as empty).
fn bounded<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct Bounded<T, const N: usize>(PhantomData<T>);
    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for Bounded<T, N> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "a list of at most {N} entries")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Vec<T>, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Vec<T>, D2::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut out = Vec::new();
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(de::Error::custom(format!("more than {N} entries")));
                }
                out.push(item);
            }
            Ok(out)
        }
    }
    d.deserialize_option(Bounded::<T, N>(PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use firewatch_profile::{Profile, SampleType, gzip};

    fn pprof() -> Vec<u8> {
        let mut p = Profile::new(vec![
            SampleType::new("samples", "count"),
            SampleType::new("cpu", "nanoseconds"),
        ]);
        p.add_named_sample(&["main", "work"], &[2, 20_000_000]);
        p.to_pprof_bytes()
    }

    fn request(labels: &[(&str, &str)], samples: Vec<Vec<u8>>) -> proto::PushRequest {
        proto::PushRequest {
            series: vec![proto::RawProfileSeries {
                labels: labels
                    .iter()
                    .map(|(n, v)| proto::LabelPair {
                        name: n.to_string(),
                        value: v.to_string(),
                    })
                    .collect(),
                samples: samples
                    .into_iter()
                    .map(|raw_profile| proto::RawSample {
                        raw_profile,
                        id: String::new(),
                    })
                    .collect(),
            }],
        }
    }

    #[test]
    fn decodes_protobuf_and_gzip() {
        let limits = IngestLimits::default();
        let req = request(
            &[
                ("service_name", "api"),
                ("__name__", "process_cpu"),
                ("__delta__", "false"),
            ],
            vec![gzip(&pprof()), pprof()],
        );
        let body = gzip(&req.encode_to_vec());
        let series = decode_request(&body, Codec::Proto, &limits).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].profiles.len(), 2);
        let profiles = to_profiles("t".into(), series, &limits).unwrap();
        assert_eq!(profiles.len(), 2);
        let labels: Vec<_> = profiles[0].labels.keys().map(String::as_str).collect();
        assert_eq!(labels, ["__name__", "service_name"]);
        assert_eq!(profiles[1].profile.total(1), 20_000_000);
        assert_eq!(profiles[0].tenant, "t");
    }

    #[test]
    fn decodes_connect_json() {
        let limits = IngestLimits::default();
        let b64 = base64::engine::general_purpose::STANDARD.encode(pprof());
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gzip(&pprof()));
        let body = format!(
            r#"{{"series":[{{"labels":[{{"name":"service_name","value":"web"}},{{"name":"env","value":"prod"}}],
               "samples":[{{"rawProfile":"{b64}","ID":"x"}},{{"raw_profile":"{url_safe}"}}]}},
               {{"labels":null,"samples":null}}]}}"#
        );
        let series = decode_request(body.as_bytes(), Codec::Json, &limits).unwrap();
        let profiles = to_profiles(String::new(), series, &limits).unwrap();
        assert_eq!(profiles.len(), 2);
        assert_eq!(
            profiles[0].labels.get("env").map(String::as_str),
            Some("prod")
        );
        assert_eq!(
            profiles[0].labels.get("__name__").map(String::as_str),
            Some("process_cpu")
        );
    }

    #[test]
    fn defaults_the_service_name() {
        let limits = IngestLimits::default();
        let series = vec![RawSeries {
            labels: vec![("env".into(), "x".into())],
            profiles: vec![pprof()],
        }];
        let p = to_profiles(String::new(), series, &limits).unwrap();
        assert_eq!(p[0].labels.get(SERVICE_NAME).unwrap(), DEFAULT_SERVICE_NAME);
    }

    #[test]
    fn refuses_bad_input_with_the_place_named() {
        let limits = IngestLimits::default();
        let e = decode_request(b"\x0a\xff", Codec::Proto, &limits).unwrap_err();
        assert!(e.to_string().contains("malformed PushRequest"), "{e}");
        let e = decode_request(b"{\"series\":[", Codec::Json, &limits).unwrap_err();
        assert!(e.to_string().contains("JSON"), "{e}");
        let body = r#"{"series":[{"samples":[{"rawProfile":"!!!"}]}]}"#;
        let e = decode_request(body.as_bytes(), Codec::Json, &limits).unwrap_err();
        assert!(e.to_string().contains("series 0, sample 0"), "{e}");

        let req = request(
            &[("service_name", "api")],
            vec![pprof(), b"garbage".to_vec()],
        );
        let series = decode_request(&req.encode_to_vec(), Codec::Proto, &limits).unwrap();
        let e = to_profiles(String::new(), series, &limits).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("series 0 (service_name=api), sample 1: malformed pprof"),
            "{e}"
        );
    }

    #[test]
    fn counts_are_checked_on_the_wire() {
        let limits = IngestLimits {
            max_profiles_per_request: 3,
            ..IngestLimits::default()
        };
        let req = request(&[("service_name", "api")], vec![Vec::new(); 4]);
        let e = decode_request(&req.encode_to_vec(), Codec::Proto, &limits).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().contains("4 profiles"), "{e}");
        // Thousands of empty series in a few bytes each.
        let many = [0x0a, 0x00].repeat(10);
        let e = decode_request(&many, Codec::Proto, &limits).unwrap_err();
        assert!(e.to_string().contains("10 series"), "{e}");
    }

    #[test]
    fn a_bomb_is_too_large() {
        let limits = IngestLimits {
            max_body_bytes: 1 << 20,
            ..IngestLimits::default()
        };
        let bomb = gzip(&vec![0u8; 8 << 20]);
        let e = decode_request(&bomb, Codec::Proto, &limits).unwrap_err();
        assert_eq!(e.status(), 413);
    }
}
