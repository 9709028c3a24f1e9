//! Pyroscope's legacy query API over the store:
//!
//! - [`render`]: `GET /render`, one merged profile as flamebearer JSON,
//!   SVG, folded text or pprof.
//! - [`diff`]: `GET /render-diff`, two windows compared by share.
//! - [`labels`]: `GET /labels`, `GET /label-values`, `GET /api/v1/services`
//!   and Pyroscope's `GET /api/apps`.
//!
//! Routes are also served under `/pyroscope/` as Pyroscope serves them.

pub mod diff;
mod functions;
pub mod labels;
pub mod output;
pub mod render;
mod shape;

use axum::Router;
use axum::routing::get;

use crate::AppState;
use crate::error::ApiError;
use crate::http::Params;
use crate::selector::parse_query;
use crate::store::Selection;
use crate::time::{TimeRange, now_ms, parse_duration, parse_range};

/// The query routes.
pub fn routes() -> Router<AppState> {
    let mut router = Router::new()
        .route("/api/v1/services", get(labels::services))
        .route("/api/v1/activity", get(labels::activity))
        .route("/api/v1/functions", get(functions::functions))
        .route("/api/v1/sandwich", get(functions::sandwich))
        .route("/api/apps", get(labels::apps));
    for prefix in ["", "/pyroscope"] {
        router = router
            .route(&format!("{prefix}/render"), get(render::render))
            .route(&format!("{prefix}/render-diff"), get(diff::render_diff))
            .route(&format!("{prefix}/labels"), get(labels::label_names))
            .route(&format!("{prefix}/label-values"), get(labels::label_values));
    }
    router
}

/// Default `maxNodes`.
pub const DEFAULT_MAX_NODES: usize = 8_192;

/// Largest `maxNodes` accepted.
pub const MAX_MAX_NODES: usize = 1_000_000;

/// Reads `maxNodes` (also `max-nodes`, `max_nodes`).
pub fn max_nodes(params: &Params) -> Result<usize, ApiError> {
    match params.get_any(&["maxNodes", "max-nodes", "max_nodes"]) {
        None => Ok(DEFAULT_MAX_NODES),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=MAX_MAX_NODES).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "parameter `maxNodes`: expected an integer from 1 to {MAX_MAX_NODES}, got {text:?}"
                ))
            }),
    }
}

/// Reads `step` (a duration such as `10s`, `1m`), the timeline resolution.
pub fn step_ms(params: &Params) -> Result<Option<i64>, ApiError> {
    params
        .get("step")
        .map(|s| {
            parse_duration(s)
                .ok()
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .filter(|ms| *ms > 0)
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "parameter `step`: expected a duration such as 10s or 1m, got {s:?}"
                    ))
                })
        })
        .transpose()
}

/// A store selection from a query text (`app.cpu{...}` or `{...}` with a
/// profile type), for a tenant and a window.
pub fn selection(
    tenant: &str,
    query: &str,
    profile_type: Option<&str>,
    range: TimeRange,
) -> Result<Selection, ApiError> {
    let q = parse_query(query, profile_type)?;
    Ok(Selection {
        tenant: tenant.to_owned(),
        matchers: q.matchers,
        profile_type: q.profile_type,
        from_ms: range.from_ms,
        until_ms: range.until_ms,
    })
}

/// The query text and the selection a request names with `query`, `from`,
/// `until` (default: the last hour) and a profile type parameter.
pub fn requested_selection(tenant: &str, params: &Params) -> Result<(String, Selection), ApiError> {
    let query = params.require("query")?;
    let selection = selection(
        tenant,
        query,
        profile_type_param(params),
        requested_range(params)?,
    )?;
    Ok((query.to_owned(), selection))
}

/// The window a request names with `from` and `until` (default: the last
/// hour).
pub fn requested_range(params: &Params) -> Result<TimeRange, ApiError> {
    parse_range(
        params.get("from"),
        params.get("until"),
        "now-1h",
        ("from", "until"),
        now_ms(),
    )
    .map_err(ApiError::BadRequest)
}

/// Reads the profile type parameter (`profile_type`, also `profileType`
/// and `type`) used with the selector form of queries.
pub fn profile_type_param(params: &Params) -> Option<&str> {
    params.get_any(&["profile_type", "profileType", "type"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Uri;

    fn params(q: &str) -> Params {
        let uri: Uri = format!("/render?{q}").parse().unwrap();
        Params::from_uri(&uri).unwrap()
    }

    #[test]
    fn max_nodes_and_step() {
        assert_eq!(max_nodes(&params("")).unwrap(), DEFAULT_MAX_NODES);
        assert_eq!(max_nodes(&params("maxNodes=10")).unwrap(), 10);
        assert_eq!(max_nodes(&params("max-nodes=3")).unwrap(), 3);
        assert!(max_nodes(&params("maxNodes=0")).is_err());
        assert!(max_nodes(&params("maxNodes=-1")).is_err());
        assert_eq!(step_ms(&params("step=1m")).unwrap(), Some(60_000));
        assert_eq!(step_ms(&params("")).unwrap(), None);
        assert!(step_ms(&params("step=0")).is_err());
    }

    #[test]
    fn selections() {
        let range = TimeRange {
            from_ms: 0,
            until_ms: 10,
        };
        let s = selection("t", r#"app.alloc_space{env="x"}"#, None, range).unwrap();
        assert_eq!(s.profile_type.kind, "alloc_space");
        assert_eq!(s.matchers.len(), 2);
        let s = selection(
            "",
            r#"{service_name="app"}"#,
            Some("memory:alloc_space:bytes:space:bytes"),
            range,
        )
        .unwrap();
        assert_eq!(s.profile_type.unit.as_deref(), Some("bytes"));
        let e = selection("", r#"app.cpu{env="x""#, None, range).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("position"), "{e}");
    }
}
