//! Annotations over HTTP: marks on the timeline (deploys, incidents) that
//! the UI draws over its charts.
//!
//! - `POST /api/annotations` with `{"time": T, "text": "deploy 1.5",
//!   "labels": {"service_name": "checkout"}}` stores one and answers `201`
//!   with it and its id. `time` is Unix milliseconds (an integer, as in
//!   Grafana's annotation API) or a time in the server's syntax (a string:
//!   RFC 3339, `now-5m`, ...); absent, now.
//! - `GET /api/annotations?query=..&from=..&until=..` lists the tenant's
//!   annotations in the window (default the last hour) that concern the
//!   series `query` selects: an annotation is shown when every matcher on
//!   a label it has passes, so one without labels shows everywhere.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{StatusCode, Uri};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::{self, Params};
use crate::ingest::limits::truncated;
use crate::selector::{Labels, parse_query};
use crate::store::{Annotation, NewAnnotation};
use crate::time::{now_ms, parse_time};
use firewatch_syntax::is_label_name;

/// Longest annotation text, bytes.
pub const MAX_TEXT_BYTES: usize = 1_024;
/// Most labels on one annotation.
pub const MAX_LABELS: usize = 32;
/// Longest label name on an annotation, bytes.
pub const MAX_LABEL_NAME_BYTES: usize = 1_024;
/// Longest label value on an annotation, bytes.
pub const MAX_LABEL_VALUE_BYTES: usize = 1_024;

/// The annotation routes.
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/annotations", get(list).post(create))
}

/// The answer of `GET /api/annotations`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnnotationList {
    /// Ordered by time, at most [`crate::store::MAX_ANNOTATIONS`].
    pub annotations: Vec<Annotation>,
}

/// `POST /api/annotations`.
async fn create(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Annotation>), ApiError> {
    let body = http::body(body, state.limits.max_body_bytes)?;
    let new = parse_annotation(&body, tenant, now_ms())?;
    let stored = state.store.annotate(new).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// `GET /api/annotations`.
async fn list(
    State(state): State<AppState>,
    Tenant(tenant): Tenant,
    uri: Uri,
) -> Result<Json<AnnotationList>, ApiError> {
    let params = Params::from_uri(&uri)?;
    // Only the matchers matter; the profile type of `app.cpu` is ignored,
    // and the default one only lets the `{...}` form parse.
    let matchers = match params.get("query") {
        Some(query) => parse_query(query, Some("cpu"))?.matchers,
        None => Vec::new(),
    };
    let range = crate::query::requested_range(&params)?;
    let annotations = state
        .store
        .annotations(&tenant, &matchers, range.from_ms, range.until_ms)
        .await?;
    Ok(Json(AnnotationList { annotations }))
}

/// Reads and checks the body of `POST /api/annotations`. Fields other than
/// `time`, `text` and `labels` are ignored, so clients written for other
/// annotation APIs can add theirs.
pub fn parse_annotation(
    body: &[u8],
    tenant: String,
    now_ms: i64,
) -> Result<NewAnnotation, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::bad_request(
            "the request body must be a JSON object such as {\"text\": \"deploy 1.5\"}",
        ));
    };
    Ok(NewAnnotation {
        tenant,
        time_ms: time_field(fields.get("time"), now_ms)?,
        text: text_field(fields.get("text"))?,
        labels: labels_field(fields.get("labels"))?,
    })
}

fn time_field(value: Option<&Value>, now_ms: i64) -> Result<i64, ApiError> {
    let expected = "expected Unix milliseconds (a non-negative integer) or a time such as \
                    \"now-5m\" or \"2026-11-29T10:00:00Z\"";
    match value {
        None | Some(Value::Null) => Ok(now_ms),
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|t| *t >= 0)
            .ok_or_else(|| ApiError::bad_request(format!("field `time`: {expected}, got {n}"))),
        Some(Value::String(s)) => {
            parse_time(s, now_ms).map_err(|e| ApiError::bad_request(format!("field `time`: {e}")))
        }
        Some(other) => Err(ApiError::bad_request(format!(
            "field `time`: {expected}, got {other}"
        ))),
    }
}

fn text_field(value: Option<&Value>) -> Result<String, ApiError> {
    let text = match value {
        Some(Value::String(s)) => s,
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                "missing field `text` (what happened, 1 to 1024 bytes)",
            ));
        }
        Some(_) => return Err(ApiError::bad_request("field `text` must be a string")),
    };
    if text.is_empty() {
        return Err(ApiError::bad_request(format!(
            "field `text` is empty: expected 1 to {MAX_TEXT_BYTES} bytes"
        )));
    }
    if text.len() > MAX_TEXT_BYTES {
        return Err(ApiError::bad_request(format!(
            "field `text` is {} bytes, over the limit of {MAX_TEXT_BYTES}",
            text.len()
        )));
    }
    Ok(text.clone())
}

/// Labels as series carry them: valid names, none starting with `__`; a
/// label with an empty value is no label.
fn labels_field(value: Option<&Value>) -> Result<Labels, ApiError> {
    let fields: &Map<String, Value> = match value {
        None | Some(Value::Null) => return Ok(Labels::new()),
        Some(Value::Object(fields)) => fields,
        Some(_) => {
            return Err(ApiError::bad_request(
                "field `labels` must be a JSON object of label names to string values",
            ));
        }
    };
    if fields.len() > MAX_LABELS {
        return Err(ApiError::bad_request(format!(
            "field `labels` has {} labels, over the limit of {MAX_LABELS}",
            fields.len()
        )));
    }
    let mut labels = Labels::new();
    for (name, value) in fields {
        if name.len() > MAX_LABEL_NAME_BYTES {
            return Err(ApiError::bad_request(format!(
                "field `labels`: label name {:?}... is {} bytes, over the limit of {MAX_LABEL_NAME_BYTES}",
                truncated(name),
                name.len()
            )));
        }
        if !is_label_name(name) {
            return Err(ApiError::bad_request(format!(
                "field `labels`: invalid label name {name:?}: expected [a-zA-Z_][a-zA-Z0-9_]*"
            )));
        }
        // `__name__` too: it names a profile family, which an annotation is not.
        if name.starts_with("__") {
            return Err(ApiError::bad_request(format!(
                "field `labels`: label name {name:?} is reserved (names starting with `__`)"
            )));
        }
        let Value::String(value) = value else {
            return Err(ApiError::bad_request(format!(
                "field `labels`: the value of label {name:?} must be a string"
            )));
        };
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(ApiError::bad_request(format!(
                "field `labels`: the value of label {name:?} is {} bytes, over the limit of {MAX_LABEL_VALUE_BYTES}",
                value.len()
            )));
        }
        if !value.is_empty() {
            labels.insert(name.clone(), value.clone());
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_410_400_000;

    fn parse(body: &str) -> Result<NewAnnotation, ApiError> {
        parse_annotation(body.as_bytes(), "t".into(), NOW)
    }

    fn error(body: &str) -> String {
        let e = parse(body).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        e.to_string()
    }

    #[test]
    fn times_in_both_forms() {
        assert_eq!(parse(r#"{"text":"x"}"#).unwrap().time_ms, NOW);
        assert_eq!(parse(r#"{"text":"x","time":null}"#).unwrap().time_ms, NOW);
        assert_eq!(parse(r#"{"text":"x","time":1234}"#).unwrap().time_ms, 1234);
        assert_eq!(
            parse(r#"{"text":"x","time":"now-1m"}"#).unwrap().time_ms,
            NOW - 60_000
        );
        assert_eq!(
            parse(r#"{"text":"x","time":"2025-11-29T10:00:00Z"}"#)
                .unwrap()
                .time_ms,
            NOW
        );
        for bad in ["-1", "1.5", "\"yesterday\"", "true"] {
            let e = error(&format!(r#"{{"text":"x","time":{bad}}}"#));
            assert!(e.contains("`time`"), "{e}");
        }
    }

    #[test]
    fn text_is_required_and_bounded() {
        assert!(error(r#"{"time":1}"#).contains("missing field `text`"));
        assert!(error(r#"{"text":""}"#).contains("empty"));
        assert!(error(r#"{"text":7}"#).contains("`text`"));
        let e = error(&format!(r#"{{"text":"{}"}}"#, "x".repeat(1025)));
        assert!(e.contains("1025 bytes, over the limit of 1024"), "{e}");
        assert_eq!(
            parse(&format!(r#"{{"text":"{}"}}"#, "x".repeat(1024)))
                .unwrap()
                .text
                .len(),
            1024
        );
    }

    #[test]
    fn labels_are_checked() {
        let a = parse(
            r#"{"text":"x","labels":{"service_name":"a","env":"","deploy":"1.5"},"tags":["t"]}"#,
        )
        .unwrap();
        assert_eq!(a.labels.len(), 2);
        assert_eq!(a.labels["deploy"], "1.5");
        assert!(
            error(r#"{"text":"x","labels":{"a-b":"1"}}"#).contains("invalid label name \"a-b\"")
        );
        assert!(error(r#"{"text":"x","labels":{"__x":"1"}}"#).contains("reserved"));
        assert!(error(r#"{"text":"x","labels":{"__name__":"1"}}"#).contains("reserved"));
        assert!(error(r#"{"text":"x","labels":{"a":1}}"#).contains("must be a string"));
        assert!(error(r#"{"text":"x","labels":["a"]}"#).contains("`labels`"));
        let many: Vec<String> = (0..33).map(|i| format!("\"l{i}\":\"v\"")).collect();
        let e = error(&format!(
            r#"{{"text":"x","labels":{{{}}}}}"#,
            many.join(",")
        ));
        assert!(e.contains("33 labels, over the limit of 32"), "{e}");
        let e = error(&format!(
            r#"{{"text":"x","labels":{{"a":"{}"}}}}"#,
            "v".repeat(1025)
        ));
        assert!(e.contains("1025 bytes, over the limit of 1024"), "{e}");
    }

    #[test]
    fn bodies_that_are_not_objects() {
        assert!(error("not json").contains("not JSON"));
        assert!(error("[1]").contains("JSON object"));
    }
}
