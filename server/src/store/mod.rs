//! Durable storage of profiles, and the reads queries need.
//!
//! # Layout
//! Modelled on Pyroscope v2 / Parca (a per-tenant symbol and stack
//! dictionary, samples as compact columns of stack ids and values) and on
//! Pyroscope's original storage (pre-aggregated blocks per series at several
//! time resolutions, so a long range reads few blocks):
//!
//! - `functions`: (tenant, name, file, line) -> id, interned once.
//! - `stack_nodes`: a trie of call paths, (tenant, parent node, function) ->
//!   node id; a stack is the id of its leaf node.
//! - `series`: (tenant, labels) -> id.
//! - `blocks`: one row per stored profile (tier 0, as ingested) or per
//!   rollup (tiers 1-3: 10 minutes, 1 hour, 1 day of a series merged), with
//!   the block's value totals for timelines; the payload lives in `blobs`,
//!   sorted stack ids and values per sample type as varints (`blob.rs`).
//! - `annotations`: a tenant's marks on the timeline (time, text, labels),
//!   read by the UI (`annotate.rs`).
//! - `dirty`: rollup windows that need (re)building because a profile
//!   landed in them; the compactor (`compact.rs`) clears them.
//!
//! A query covers its range with the coarsest clean blocks that fit and
//! reads finer ones only at the edges (`plan.rs`), so its cost grows with the
//! number of tiers, not with the length of the range.
//!
//! Backends (`sqlite.rs`, `postgres.rs`) implement `backend::Backend`, a
//! narrow set of reads and one write transaction; everything above it is
//! shared.

mod annotate;
mod backend;
pub mod blob;
mod compact;
mod dict;
mod plan;
mod postgres;
mod select;
mod sql;
mod sqlite;
mod write;

use std::sync::Arc;

use firewatch_profile::{Profile, SampleType};
use thiserror::Error;

pub use self::annotate::{Annotation, MAX_ANNOTATIONS, NewAnnotation, concerns};
pub use crate::selector::Labels;
use crate::selector::{Matcher, ProfileType};

/// Everything storage can fail with.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Schema migration failed at startup.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The storage URL is not one we can open.
    #[error("unsupported storage URL {0:?}: expected sqlite://PATH or postgres://...")]
    BadUrl(String),
    /// A per-tenant bound was reached (e.g. series per tenant).
    #[error("{what} exceeds the limit of {limit}")]
    LimitExceeded {
        /// What was counted.
        what: &'static str,
        /// The limit in force.
        limit: u64,
    },
    /// A stored block could not be decoded (corruption or a newer format).
    #[error("corrupt block {block}: {detail}")]
    Corrupt {
        /// Block id.
        block: i64,
        /// What was wrong.
        detail: String,
    },
    /// A stored row does not read as what it must be: a column's JSON, or
    /// an id outside what the store addresses.
    #[error("corrupt {table} row {id}: {detail}")]
    CorruptRow {
        /// The table.
        table: &'static str,
        /// The row's id.
        id: i64,
        /// What was wrong.
        detail: String,
    },
    /// A stored annotation could not be read back.
    #[error("corrupt annotation {id}: {detail}")]
    CorruptAnnotation {
        /// Annotation id.
        id: i64,
        /// What was wrong.
        detail: String,
    },
    /// The store is shutting down.
    #[error("storage is shutting down")]
    Closed,
    /// A write kept finding the store changed under it (retention on
    /// another server); the client may retry.
    #[error("storage is busy: its structure kept changing during the write")]
    Contended,
}

impl StoreError {
    /// Whether running the transaction again may succeed: PostgreSQL
    /// aborted it as a deadlock or serialization failure.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Database(sqlx::Error::Database(e)) => {
                matches!(e.code().as_deref(), Some("40P01" | "40001"))
            }
            _ => false,
        }
    }
}

/// Result alias for storage.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Bounds and tuning for a store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Series one tenant may create (existing series keep ingesting).
    pub max_series_per_tenant: usize,
    /// How long after a rollup window ends it is built (late profiles
    /// re-dirty it anyway; this only avoids rebuilding on every arrival).
    pub rollup_delay_ms: i64,
    /// Maximum read connections (SQLite) or pool size (PostgreSQL).
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_series_per_tenant: 10_000,
            rollup_delay_ms: 60_000,
            max_connections: 8,
        }
    }
}

/// One profile to store, already decoded and checked against ingest limits.
#[derive(Clone, Debug)]
pub struct NewProfile {
    /// Tenant (`X-Scope-OrgID`); "" for the default tenant.
    pub tenant: String,
    /// Series labels; must include `service_name`.
    pub labels: Labels,
    /// The samples, any number of sample types. `time_nanos` places the
    /// profile in time (0 means "now"), `duration_nanos` its length.
    pub profile: Profile,
}

/// A read: which series, which sample type, which window.
#[derive(Clone, Debug)]
pub struct Selection {
    /// Tenant whose data is read; no other tenant's data is ever visible.
    pub tenant: String,
    /// Label conditions on series.
    pub matchers: Vec<Matcher>,
    /// Which sample type to read.
    pub profile_type: ProfileType,
    /// Window start, Unix milliseconds, inclusive.
    pub from_ms: i64,
    /// Window end, Unix milliseconds, exclusive.
    pub until_ms: i64,
}

/// The merged profile of a selection, and its timeline.
#[derive(Clone, Debug)]
pub struct Merged {
    /// One column: the selected sample type, summed over series and time.
    pub profile: Profile,
    /// Totals over time.
    pub timeline: Timeline,
    /// How many series matched.
    pub series: usize,
}

/// Totals of the selected sample type per step (Pyroscope's layout).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    /// Start of the first step, Unix seconds.
    pub start_time: i64,
    /// Step length, seconds.
    pub duration_delta: i64,
    /// One total per step.
    pub samples: Vec<i64>,
}

/// A service and the profile types stored for it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ServiceInfo {
    /// `service_name`.
    pub name: String,
    /// Profile type ids, `name:kind:unit:period_kind:period_unit` as Pyroscope writes them.
    pub profile_types: Vec<String>,
}

/// What a retention pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RetentionReport {
    /// Blocks (profiles and rollups) deleted.
    pub blocks: u64,
    /// Series with no data left, deleted.
    pub series: u64,
    /// Dictionary entries (functions and stack nodes) no longer referenced, deleted.
    pub dictionary_entries: u64,
    /// Annotations older than the cutoff, deleted.
    pub annotations: u64,
}

/// The store: a backend plus the shared, in-memory dictionary and series index.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Box<dyn backend::Backend>,
    state: tokio::sync::RwLock<dict::State>,
    write_lock: tokio::sync::Mutex<()>,
    pending: std::sync::Mutex<Vec<write::Pending>>,
    options: StoreOptions,
}

/// The sample types rollups and queries understand as "average over the
/// range" rather than "sum" (live heap is a level, not a flow).
pub fn is_gauge(kind: &str) -> bool {
    kind.starts_with("inuse_")
}

/// Brings the in-memory series index up to date when the database changed
/// since it was last read (series written through another server): one
/// small read of the `epochs` counters when nothing changed.
async fn sync_if_changed(inner: &Inner) -> Result<()> {
    let epochs = inner.backend.epochs().await?;
    if inner.state.read().await.needs_sync(&epochs) {
        inner
            .state
            .write()
            .await
            .sync(inner.backend.as_ref())
            .await?;
    }
    Ok(())
}

/// Pyroscope-style id of a sample type in a profile family.
pub fn profile_type_id(name: &str, t: &SampleType, period: Option<&SampleType>) -> String {
    let (pk, pu) = period
        .map(|p| (p.kind.as_str(), p.unit.as_str()))
        .unwrap_or((&t.kind, &t.unit));
    format!("{name}:{}:{}:{pk}:{pu}", t.kind, t.unit)
}

/// Storage size and counts, for `/metrics` and benchmarks.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    /// Bytes the database occupies at rest, indexes included.
    pub bytes: u64,
    /// Blocks of every tier.
    pub blocks: u64,
    /// Series.
    pub series: u64,
}

impl Store {
    /// Opens (creating and migrating if needed) `sqlite://PATH` or `postgres://...`.
    pub async fn open(url: &str, options: StoreOptions) -> Result<Store> {
        let backend: Box<dyn backend::Backend> = if url.starts_with("sqlite:") {
            Box::new(sqlite::SqliteBackend::open(url, options.max_connections).await?)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Box::new(postgres::PostgresBackend::open(url, options.max_connections).await?)
        } else {
            return Err(StoreError::BadUrl(url.to_owned()));
        };
        let mut state = dict::State::new();
        state.sync(backend.as_ref()).await?;
        Ok(Store {
            inner: Arc::new(Inner {
                backend,
                state: tokio::sync::RwLock::new(state),
                write_lock: tokio::sync::Mutex::new(()),
                pending: std::sync::Mutex::new(Vec::new()),
                options,
            }),
        })
    }

    /// Stores profiles durably: when this returns `Ok`, every profile is
    /// committed and survives a crash of the process; on `Err`, none of them
    /// was stored. Profiles without samples are skipped.
    pub async fn ingest(&self, profiles: Vec<NewProfile>) -> Result<()> {
        write::ingest(&self.inner, profiles).await
    }

    /// The merged profile and timeline of a selection. `step_ms` picks the
    /// timeline resolution (at least 10 s, at most 10,000 points); `None`
    /// chooses about 1,000 points.
    pub async fn select(&self, selection: &Selection, step_ms: Option<i64>) -> Result<Merged> {
        select::select(&self.inner, selection, step_ms).await
    }

    /// Each service's timeline of a selection's type, from block totals
    /// only, busiest first (ties by name), with the type; `None` when no
    /// series has it.
    pub async fn activity(
        &self,
        selection: &Selection,
        step_ms: Option<i64>,
    ) -> Result<Option<(SampleType, Vec<(String, Timeline)>)>> {
        select::activity(&self.inner, selection, step_ms).await
    }

    /// Label names of the tenant's series that pass `matchers`, sorted.
    pub async fn label_names(&self, tenant: &str, matchers: &[Matcher]) -> Result<Vec<String>> {
        self.matching(tenant, matchers, |labels, out| {
            out.extend(labels.keys().cloned())
        })
        .await
    }

    /// Values of one label over the tenant's series that pass `matchers`, sorted.
    pub async fn label_values(
        &self,
        tenant: &str,
        name: &str,
        matchers: &[Matcher],
    ) -> Result<Vec<String>> {
        self.matching(tenant, matchers, |labels, out| {
            out.extend(labels.get(name).cloned())
        })
        .await
    }

    async fn matching(
        &self,
        tenant: &str,
        matchers: &[Matcher],
        mut collect: impl FnMut(&Labels, &mut std::collections::BTreeSet<String>),
    ) -> Result<Vec<String>> {
        sync_if_changed(&self.inner).await?;
        let state = self.inner.state.read().await;
        let mut out = std::collections::BTreeSet::new();
        if let Some(&t) = state.tenants.get(tenant) {
            for s in state.series.values() {
                if s.tenant == t && crate::selector::matches_all(matchers, &s.labels) {
                    collect(&s.labels, &mut out);
                }
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The tenant's services with their profile types, sorted by name.
    pub async fn services(&self, tenant: &str) -> Result<Vec<ServiceInfo>> {
        sync_if_changed(&self.inner).await?;
        let state = self.inner.state.read().await;
        let mut by_service: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        if let Some(&t) = state.tenants.get(tenant) {
            for s in state.series.values().filter(|s| s.tenant == t) {
                let service = s
                    .labels
                    .get(crate::selector::SERVICE_NAME)
                    .cloned()
                    .unwrap_or_default();
                let name = s
                    .labels
                    .get(crate::selector::PROFILE_NAME)
                    .cloned()
                    .unwrap_or_else(|| "unknown".into());
                let types = by_service.entry(service).or_default();
                for st in &s.sample_types {
                    types.insert(profile_type_id(&name, st, s.period_type.as_ref()));
                }
            }
        }
        Ok(by_service
            .into_iter()
            .map(|(name, types)| ServiceInfo {
                name,
                profile_types: types.into_iter().collect(),
            })
            .collect())
    }

    /// Builds the rollups whose windows ended at least `rollup_delay_ms`
    /// before `now_ms`; returns how many it built. Safe to run on several
    /// servers at once: a window is built by one of them.
    pub async fn compact(&self, now_ms: i64) -> Result<usize> {
        compact::compact(&self.inner, now_ms).await
    }

    /// How far compaction is behind at `now_ms`, in milliseconds: how long
    /// the oldest dirty window has been ready to build (0 when none is).
    pub async fn compaction_lag_ms(&self, now_ms: i64) -> Result<i64> {
        let oldest = self.inner.backend.oldest_dirty_end().await?;
        Ok(oldest.map_or(0, |end| {
            (now_ms - self.inner.options.rollup_delay_ms - end).max(0)
        }))
    }

    /// Deletes every block that ends before `cutoff_ms` and every annotation
    /// before it, then the series and dictionary entries nothing references
    /// any more.
    pub async fn apply_retention(&self, cutoff_ms: i64) -> Result<RetentionReport> {
        compact::retention(&self.inner, cutoff_ms).await
    }

    /// Whether the database answers (a trivial query).
    pub async fn ping(&self) -> Result<()> {
        self.inner.backend.ping().await
    }

    /// Size at rest and counts.
    pub async fn stats(&self) -> Result<StoreStats> {
        self.inner.backend.stats().await
    }

    /// Waits for a running write, then closes connections.
    pub async fn close(&self) {
        let _writer = self.inner.write_lock.lock().await;
        self.inner.backend.close().await;
    }
}
