//! Firewatch's server: ingests profiles (native, Pyroscope push and legacy
//! ingest), stores them in SQLite or PostgreSQL, and answers queries with
//! flamegraphs, diffs and pprof exports; it also keeps annotations (deploy
//! markers) and serves the web UI.
//!
//! [`app`] builds the HTTP application over a [`Store`]; the binary
//! (`src/main.rs`) adds configuration, background compaction and
//! retention, and graceful shutdown; [`serve`] serves it over HTTP or
//! HTTPS. Tests drive [`app`] directly.

#![forbid(unsafe_code)]
pub mod annotate;
pub mod auth;
pub mod config;
pub mod debuginfo;
pub mod error;
pub mod http;
pub mod ingest;
pub mod maintain;
pub mod metrics;
pub mod query;
pub mod ratelimit;
pub mod selector;
pub mod serve;
pub mod store;
pub mod symbols;
pub mod time;
pub mod web;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::middleware::from_fn_with_state;
use axum::routing::get;
use tower_http::trace::TraceLayer;

use crate::auth::Auth;
use crate::error::ApiError;
pub use crate::ingest::IngestLimits;
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimiter, RateLimits};
pub use crate::serve::serve;
pub use crate::store::Store;
use crate::store::{Merged, Selection};
use crate::symbols::Symbols;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// Where profiles are stored and read.
    pub store: Store,
    /// Bounds on ingest requests.
    pub limits: IngestLimits,
    /// Tokens; off when there are none.
    pub auth: Arc<Auth>,
    /// Ingest bytes per second per tenant.
    pub rate: Arc<RateLimiter>,
    /// The server's own metrics.
    pub metrics: Arc<Metrics>,
    /// Debug files and the names they give unnamed frames.
    pub symbols: Arc<Symbols>,
}

impl AppState {
    /// State over a store with the given ingest limits, without
    /// authentication or rate limits.
    pub fn new(store: Store, limits: IngestLimits) -> AppState {
        AppState {
            store,
            limits,
            auth: Arc::new(Auth::disabled()),
            rate: Arc::new(RateLimiter::default()),
            metrics: Arc::new(Metrics::new()),
            symbols: Arc::new(Symbols::default()),
        }
    }

    /// With this symbolizer (debug files, debuginfod).
    pub fn with_symbols(self, symbols: Symbols) -> AppState {
        AppState {
            symbols: Arc::new(symbols),
            ..self
        }
    }

    /// The merged profile of a selection, with the frames a debug file
    /// names now named: every query reads profiles through here.
    pub async fn select(
        &self,
        selection: &Selection,
        step_ms: Option<i64>,
    ) -> Result<Merged, ApiError> {
        let mut merged = self.store.select(selection, step_ms).await?;
        self.symbols
            .name_frames(&selection.tenant, &mut merged.profile)
            .await;
        Ok(merged)
    }

    /// With these tokens (authentication is on when there is one).
    pub fn with_auth(self, auth: Auth) -> AppState {
        AppState {
            auth: Arc::new(auth),
            ..self
        }
    }

    /// With these ingest rate limits.
    pub fn with_rate_limits(self, limits: RateLimits) -> AppState {
        AppState {
            rate: Arc::new(RateLimiter::new(limits)),
            ..self
        }
    }
}

/// The HTTP application: every route, the web UI, authentication, the
/// body limit, metrics and request tracing.
///
/// Health endpoints and the UI's files are public; every API route sits
/// behind the authentication middleware of its group, which resolves the
/// request's tenant (see [`auth`]).
pub fn app(state: AppState) -> Router {
    let body_limit = state.limits.max_body_bytes;
    let s = &state;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .merge(ingest::routes().route_layer(from_fn_with_state(s.clone(), auth::require_ingest)))
        .merge(debuginfo::routes().route_layer(from_fn_with_state(s.clone(), auth::require_ingest)))
        .merge(query::routes().route_layer(from_fn_with_state(s.clone(), auth::require_query)))
        .merge(
            annotate::routes()
                .route_layer(from_fn_with_state(s.clone(), auth::require_read_or_write)),
        )
        .merge(
            Router::new()
                .route("/metrics", get(metrics::serve))
                .route_layer(from_fn_with_state(s.clone(), auth::require_admin)),
        )
        // The UI's files, and the JSON 404 for every other path.
        .fallback(web::fallback)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(from_fn_with_state(state.clone(), metrics::track))
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
