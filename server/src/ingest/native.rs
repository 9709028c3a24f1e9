//! Firewatch's own ingest: `POST /api/v1/ingest?service_name=...&<label>=<value>`.
//!
//! - Every query parameter is a series label; `service_name` is required,
//!   names are `[a-zA-Z_][a-zA-Z0-9_]*`, none may repeat, and names
//!   starting with `__` are refused except `__name__` (the profile family,
//!   inferred from the sample types when absent).
//! - The body is one pprof profile, compressed with zstd
//!   (`Content-Encoding: zstd`, what the agent sends), gzip, or not at all;
//!   compression is also recognised by magic number.
//! - The tenant is the one authentication resolved (`X-Scope-OrgID`).
//! - The profile's `time_nanos` places it in time (0: now).
//!
//! 200 `{"stored":true}` once the profile is committed (`false` for a
//! profile without samples, which is accepted and not stored); errors are
//! `{"error":"..."}` with 400, 413, 415, 422 or 429.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, Uri};
use serde_json::{Value, json};

use super::limits::{check_labels, collect_labels};
use super::profile_types::profile_family;
use super::{admit, decode_pprof_body, store_all};
use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::http::{self, Params};
use crate::selector::PROFILE_NAME;
use crate::store::NewProfile;

/// `POST /api/v1/ingest`.
pub async fn ingest(
    State(state): State<AppState>,
    tenant: Tenant,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let Params(pairs) = Params::from_uri(&uri)?;
    if pairs.len() > state.limits.max_labels_per_series {
        return Err(ApiError::Unprocessable(format!(
            "{} labels per series, over the limit of {}",
            pairs.len(),
            state.limits.max_labels_per_series
        )));
    }
    let labels = check_labels(collect_labels(pairs)?, &state.limits)?;
    let encoding = http::content_encoding(&headers)?;
    let body = http::body(body, state.limits.max_body_bytes)?;
    admit(&state, &tenant, body.len())?;
    let bytes = body.len();
    http::check_encoding(encoding, &body)?;
    let profile = decode_pprof_body(body, state.limits.profile_limits()).await?;
    let mut labels = labels;
    if !labels.contains_key(PROFILE_NAME) {
        labels.insert(PROFILE_NAME.to_owned(), profile_family(&profile));
        labels = check_labels(labels, &state.limits)?;
    }
    let stored = store_all(
        &state,
        &tenant,
        "native",
        bytes,
        vec![NewProfile {
            tenant: tenant.0.clone(),
            labels,
            profile,
        }],
    )
    .await?;
    Ok(Json(json!({ "stored": stored > 0 })))
}
