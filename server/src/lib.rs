//! Firewatch's server: ingests profiles (native, Pyroscope push and legacy
//! ingest), stores them in SQLite or PostgreSQL, and answers queries with
//! flamegraphs, diffs and pprof exports; it also keeps annotations (deploy
//! markers) and serves the web UI.
//!
//! [`app`] builds the HTTP application over a [`Store`]; the binary
//! (`src/main.rs`) adds configuration, background compaction and
//! retention, and graceful shutdown. Tests drive [`app`] directly.

pub mod annotate;
pub mod config;
pub mod error;
pub mod http;
pub mod ingest;
pub mod query;
pub mod selector;
pub mod store;
pub mod time;
pub mod web;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::error::ApiError;
pub use crate::ingest::IngestLimits;
pub use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where profiles are stored and read.
    pub store: Store,
    /// Bounds on ingest requests.
    pub limits: IngestLimits,
}

impl AppState {
    /// State over a store with the given ingest limits.
    pub fn new(store: Store, limits: IngestLimits) -> AppState {
        AppState { store, limits }
    }
}

/// The HTTP application: every route, the web UI, the body limit and
/// request tracing.
pub fn app(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(ingest::routes())
        .merge(query::routes())
        .merge(annotate::routes())
        // The UI's files, and the JSON 404 for every other path.
        .fallback(web::fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// `GET /healthz`: the process is up.
async fn healthz() -> &'static str {
    "ok\n"
}

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(5);

/// `GET /readyz`: the store answers.
async fn readyz(State(state): State<AppState>) -> Result<&'static str, ApiError> {
    match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
        Ok(Ok(_)) => Ok("ready\n"),
        Ok(Err(e)) => Err(ApiError::Unavailable(format!("storage is not ready: {e}"))),
        Err(_) => Err(ApiError::Unavailable(format!(
            "storage did not answer within {} s",
            READY_TIMEOUT.as_secs()
        ))),
    }
}
