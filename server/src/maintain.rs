//! The server's background upkeep, for every program that runs a server
//! (`firewatch-server`, `firewatch up`): building rollups, applying
//! retention, and reading the storage figures of `/metrics`. Each task
//! runs until the stop channel turns true.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::time::now_ms;

/// Starts compaction every `compact_every`, retention keeping `retention`
/// (none: data is kept forever) and the storage figures; returns the tasks
/// to await after sending `true` on the stop channel.
pub fn spawn(
    store: &Store,
    metrics: &Arc<Metrics>,
    compact_every: Duration,
    retention: Option<Duration>,
    stop: &watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![
        spawn_compactor(store.clone(), metrics.clone(), compact_every, stop.clone()),
        spawn_storage_stats(store.clone(), metrics.clone(), stop.clone()),
    ];
    if let Some(keep) = retention {
        tasks.push(spawn_retention(
            store.clone(),
            metrics.clone(),
            keep,
            stop.clone(),
        ));
    }
    tasks
}

/// How often the storage figures of `/metrics` are read (counting blocks
/// may scan a large table, so never per scrape).
const STORAGE_STATS_INTERVAL: Duration = Duration::from_secs(60);

/// The schedule of an upkeep task: a tick now and every `period` (a late
/// run delays the next rather than bunching up), until the stop channel
/// changes.
struct Ticker {
    tick: tokio::time::Interval,
    stop: watch::Receiver<bool>,
}

impl Ticker {
    fn new(period: Duration, stop: watch::Receiver<bool>) -> Ticker {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ticker { tick, stop }
    }

    /// Waits for the next run; false once told to stop.
    async fn next(&mut self) -> bool {
        tokio::select! {
            _ = self.tick.tick() => true,
            _ = self.stop.changed() => false,
        }
    }
}

/// Reads the storage figures for `/metrics` now and every
/// [`STORAGE_STATS_INTERVAL`].
fn spawn_storage_stats(
    store: Store,
    metrics: Arc<Metrics>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = Ticker::new(STORAGE_STATS_INTERVAL, stop);
        while ticker.next().await {
            match store.stats().await {
                Ok(stats) => metrics.observe_store(&stats),
                Err(e) => tracing::warn!(error = %e, "cannot read storage figures"),
            }
        }
    })
}

/// Builds rollups every `period`, until told to stop.
fn spawn_compactor(
    store: Store,
    metrics: Arc<Metrics>,
    period: Duration,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticker = Ticker::new(period, stop);
        while ticker.next().await {
            let now = now_ms();
            let built = match store.compact(now).await {
                Ok(built) => {
                    if built > 0 {
                        tracing::debug!(built, "rollups built");
                    }
                    Some(built)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "compaction failed");
                    None
                }
            };
            metrics.compacted(built, store.compaction_lag_ms(now).await.ok());
        }
    })
}

/// Deletes data older than `keep`, at start and then every tenth of `keep`
/// (at most hourly, at least every second).
fn spawn_retention(
    store: Store,
    metrics: Arc<Metrics>,
    keep: Duration,
    stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let period = (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut ticker = Ticker::new(period, stop);
        while ticker.next().await {
            let cutoff = now_ms().saturating_sub(keep_ms);
            match store.apply_retention(cutoff).await {
                Ok(report) => {
                    if report.blocks > 0 || report.annotations > 0 {
                        tracing::info!(
                            blocks = report.blocks,
                            series = report.series,
                            dictionary_entries = report.dictionary_entries,
                            annotations = report.annotations,
                            "retention deleted old data"
                        );
                    }
                    metrics.retention(Some(&report));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "retention failed");
                    metrics.retention(None);
                }
            }
        }
    })
}
