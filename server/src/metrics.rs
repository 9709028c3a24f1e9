//! The server's own metrics, served at `GET /metrics` in the Prometheus
//! (OpenMetrics) text format.
//!
//! Request counts, rejections and latencies are recorded by a middleware
//! around every route ([`track`]); ingest handlers count what they stored;
//! the background tasks of the binary record compaction, retention and the
//! storage figures ([`Metrics::observe_store`]), which are read on a timer
//! rather than per scrape since counting blocks can take a while.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::error::{ApiError, Rejection};
use crate::store::{RetentionReport, StoreStats};

/// Tenants that get series of their own in per-tenant metrics; the rest
/// are counted as `_other`, so clients naming tenants at will (with
/// authentication off) cannot grow the scrape without bound.
pub const MAX_TENANT_LABELS: usize = 1_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngestLabels {
    protocol: String,
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RejectLabels {
    endpoint: String,
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabels {
    tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: String,
}

fn latency_histogram() -> Histogram {
    // 2.5 ms to about 20 s.
    Histogram::new(exponential_buckets(0.0025, 2.0, 14))
}

/// Every metric of the server, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    ingested_profiles: Family<IngestLabels, Counter>,
    ingested_bytes: Family<IngestLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    rejected: Family<RejectLabels, Counter>,
    duration: Family<EndpointLabels, Histogram, fn() -> Histogram>,
    rate_limited: Family<TenantLabels, Counter>,
    storage_bytes: Gauge,
    storage_blocks: Gauge,
    storage_series: Gauge,
    compaction_runs: Family<ResultLabels, Counter>,
    rollups_built: Counter,
    compaction_lag: Gauge<f64, AtomicU64>,
    retention_runs: Family<ResultLabels, Counter>,
    retention_deleted: Family<KindLabels, Counter>,
    tenants: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Metrics {
        let mut r = Registry::with_prefix("firewatch");
        let m = Metrics {
            registry: Registry::default(),
            ingested_profiles: Family::default(),
            ingested_bytes: Family::default(),
            requests: Family::default(),
            rejected: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            rate_limited: Family::default(),
            storage_bytes: Gauge::default(),
            storage_blocks: Gauge::default(),
            storage_series: Gauge::default(),
            compaction_runs: Family::default(),
            rollups_built: Counter::default(),
            compaction_lag: Gauge::default(),
            retention_runs: Family::default(),
            retention_deleted: Family::default(),
            tenants: Mutex::new(HashSet::new()),
        };
        let info = Family::<VersionLabels, Gauge>::default();
        info.get_or_create(&VersionLabels {
            version: env!("CARGO_PKG_VERSION").to_owned(),
        })
        .set(1);
        r.register("build_info", "The server's version (always 1)", info);
        r.register(
            "ingested_profiles",
            "Profiles stored, by ingest protocol and tenant",
            m.ingested_profiles.clone(),
        );
        r.register(
            "ingested_bytes",
            "Request body bytes (as received) of stored ingest requests, by protocol and tenant",
            m.ingested_bytes.clone(),
        );
        r.register(
            "http_requests",
            "HTTP requests answered, by endpoint (route) and status code",
            m.requests.clone(),
        );
        r.register(
            "http_rejected_requests",
            "Requests answered with an error, by endpoint and reason",
            m.rejected.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer a request, by endpoint",
            m.duration.clone(),
        );
        r.register(
            "rate_limited_requests",
            "Ingest requests refused by the tenant's rate limit",
            m.rate_limited.clone(),
        );
        r.register(
            "storage_bytes",
            "Bytes the database occupies at rest, indexes included",
            m.storage_bytes.clone(),
        );
        r.register(
            "storage_blocks",
            "Blocks (stored profiles and rollups)",
            m.storage_blocks.clone(),
        );
        r.register("storage_series", "Series", m.storage_series.clone());
        r.register(
            "compaction_runs",
            "Compaction passes, by result",
            m.compaction_runs.clone(),
        );
        r.register(
            "compaction_rollups_built",
            "Rollups built by this server",
            m.rollups_built.clone(),
        );
        r.register(
            "compaction_lag_seconds",
            "How long the oldest dirty window has been ready to build",
            m.compaction_lag.clone(),
        );
        r.register(
            "retention_runs",
            "Retention passes, by result",
            m.retention_runs.clone(),
        );
        r.register(
            "retention_deleted",
            "What retention deleted: blocks, series, dictionary_entries, annotations",
            m.retention_deleted.clone(),
        );
        Metrics { registry: r, ..m }
    }

    /// The tenant's label: itself, or `_other` past [`MAX_TENANT_LABELS`].
    fn tenant_label(&self, tenant: &str) -> String {
        let Ok(mut seen) = self.tenants.lock() else {
            return "_other".into();
        };
        if seen.contains(tenant) || seen.len() < MAX_TENANT_LABELS {
            seen.insert(tenant.to_owned());
            tenant.to_owned()
        } else {
            "_other".into()
        }
    }

    /// Counts a stored ingest request.
    pub fn ingested(&self, protocol: &str, tenant: &str, profiles: usize, bytes: usize) {
        let labels = IngestLabels {
            protocol: protocol.to_owned(),
            tenant: self.tenant_label(tenant),
        };
        self.ingested_profiles
            .get_or_create(&labels)
            .inc_by(profiles as u64);
        self.ingested_bytes
            .get_or_create(&labels)
            .inc_by(bytes as u64);
    }

    /// Counts a request refused by a tenant's rate limit.
    pub fn rate_limited(&self, tenant: &str) {
        let tenant = self.tenant_label(tenant);
        self.rate_limited
            .get_or_create(&TenantLabels { tenant })
            .inc();
    }

    /// Records the storage figures.
    pub fn observe_store(&self, stats: &StoreStats) {
        let clamp = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.storage_bytes.set(clamp(stats.bytes));
        self.storage_blocks.set(clamp(stats.blocks));
        self.storage_series.set(clamp(stats.series));
    }

    /// Records a compaction pass: rollups built (`None`: it failed) and the
    /// lag after it.
    pub fn compacted(&self, built: Option<usize>, lag_ms: Option<i64>) {
        let result = if built.is_some() { "ok" } else { "error" };
        self.compaction_runs
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        if let Some(n) = built {
            self.rollups_built.inc_by(n as u64);
        }
        if let Some(ms) = lag_ms {
            self.compaction_lag.set(ms as f64 / 1000.0);
        }
    }

    /// Records a retention pass (`None`: it failed).
    pub fn retention(&self, report: Option<&RetentionReport>) {
        let result = if report.is_some() { "ok" } else { "error" };
        self.retention_runs
            .get_or_create(&ResultLabels {
                result: result.into(),
            })
            .inc();
        if let Some(r) = report {
            for (kind, n) in [
                ("blocks", r.blocks),
                ("series", r.series),
                ("dictionary_entries", r.dictionary_entries),
                ("annotations", r.annotations),
            ] {
                self.retention_deleted
                    .get_or_create(&KindLabels { kind: kind.into() })
                    .inc_by(n);
            }
        }
    }

    /// Counts an answered request.
    fn answered(&self, endpoint: &str, status: u16, reason: Option<&str>, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.to_owned(),
                code: status.to_string(),
            })
            .inc();
        if let Some(reason) = reason {
            self.rejected
                .get_or_create(&RejectLabels {
                    endpoint: endpoint.to_owned(),
                    reason: reason.to_owned(),
                })
                .inc();
        }
        self.duration
            .get_or_create(&EndpointLabels {
                endpoint: endpoint.to_owned(),
            })
            .observe(seconds);
    }

    /// The text exposition.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Middleware counting and timing every request by its route; requests
/// outside the API (the UI's files, unknown paths) are `other`.
pub async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "other".to_owned());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    let reason = match response.extensions().get::<Rejection>() {
        Some(Rejection(kind)) => Some(*kind),
        None if status.is_client_error() => Some("client_error"),
        None if status.is_server_error() => Some("server_error"),
        None => None,
    };
    state.metrics.answered(
        &endpoint,
        status.as_u16(),
        reason,
        start.elapsed().as_secs_f64(),
    );
    response
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
