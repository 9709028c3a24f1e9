//! The three ways profiles come in, all landing in the same store:
//!
//! - [`native`]: `POST /api/v1/ingest`, Firewatch's agent (pprof, zstd).
//! - [`push`]: `POST /push.v1.PusherService/Push`, Pyroscope's push API
//!   (Connect, protobuf or JSON) used by its SDKs and Grafana Alloy.
//! - [`legacy`]: `POST /ingest` (and `/pyroscope/ingest`), Pyroscope's
//!   original API (folded, lines, pprof, multipart).
//!
//! Every path decodes within [`IngestLimits`] on a blocking thread, checks
//! the series labels, and hands all the profiles of one request to one
//! [`Store::ingest`](crate::store::Store::ingest) call, so a request is
//! stored whole or not at all.

pub mod decompress;
pub mod legacy;
pub mod limits;
pub mod native;
pub mod profile_types;
pub mod push;

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use firewatch_profile::{Limits, Profile};

pub use limits::IngestLimits;

use crate::AppState;
use crate::auth::Tenant;
use crate::error::ApiError;
use crate::store::NewProfile;

/// The ingest routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/ingest", post(native::ingest))
        .route("/push.v1.PusherService/Push", post(push::push))
        .route("/ingest", post(legacy::ingest))
        .route("/pyroscope/ingest", post(legacy::ingest))
}

/// Bodies smaller than this are decoded on the request's own task: the
/// work is shorter than a hop to the blocking pool.
const INLINE_DECODE_BYTES: usize = 16 << 10;

/// Runs CPU-bound decoding off the async workers (inline when small).
pub(crate) async fn blocking<T, F>(size_hint: usize, work: F) -> Result<T, ApiError>
where
    F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    T: Send + 'static,
{
    if size_hint < INLINE_DECODE_BYTES {
        work()
    } else {
        tokio::task::spawn_blocking(work).await?
    }
}

/// Decodes one pprof profile (raw, gzip or zstd, told by magic number).
pub(crate) fn decode_pprof(bytes: &[u8], limits: &Limits) -> Result<Profile, ApiError> {
    if bytes.is_empty() {
        return Err(ApiError::bad_request(
            "empty body: expected a pprof profile",
        ));
    }
    let raw = decompress::decompress(bytes, limits.max_decompressed_bytes)?;
    Ok(Profile::from_pprof_bytes(&raw, limits)?)
}

/// Decodes one pprof body off the async workers.
pub(crate) async fn decode_pprof_body(body: Bytes, limits: Limits) -> Result<Profile, ApiError> {
    blocking(body.len(), move || decode_pprof(&body, &limits)).await
}

/// Charges a request body to its tenant's ingest rate: a 429 naming the
/// limit and the wait when the tenant is over it.
pub(crate) fn admit(state: &AppState, tenant: &Tenant, bytes: usize) -> Result<(), ApiError> {
    let result = state
        .rate
        .admit(tenant.as_str(), bytes as u64, std::time::Instant::now());
    if let Err(ApiError::RateLimited { .. }) = &result {
        state.metrics.rate_limited(tenant.as_str());
    }
    result
}

/// Stores the profiles of one request in one atomic call; profiles without
/// samples are skipped. Returns how many were stored. `bytes` is the
/// request body's size, for the ingest metrics of `protocol`.
pub(crate) async fn store_all(
    state: &AppState,
    tenant: &Tenant,
    protocol: &str,
    bytes: usize,
    mut profiles: Vec<NewProfile>,
) -> Result<usize, ApiError> {
    profiles.retain(|p| !p.profile.is_empty());
    let count = profiles.len();
    if count > 0 {
        state.store.ingest(profiles).await?;
        tracing::debug!(profiles = count, protocol, "stored");
    }
    state
        .metrics
        .ingested(protocol, tenant.as_str(), count, bytes);
    Ok(count)
}
