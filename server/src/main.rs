//! `firewatch-server`: reads the configuration, opens the store, serves
//! HTTP or HTTPS, builds rollups, applies retention and reads the storage
//! figures for `/metrics` in the background, and shuts down gracefully on
//! SIGINT/SIGTERM (in-flight requests finish, then the store closes).

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use firewatch_server::auth::Auth;
use firewatch_server::config::{Cli, Config, LogFormat};
use firewatch_server::metrics::Metrics;
use firewatch_server::time::now_ms;
use firewatch_server::{AppState, Store, app, serve};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

/// How often the storage figures of `/metrics` are read (counting blocks
/// may scan a large table, so never per scrape).
const STORAGE_STATS_INTERVAL: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_tracing(&config.log, config.log_format)?;
    config.check_exposure()?;
    let tls = config.tls();
    if let Some(files) = &tls {
        // Before anything else, so a bad certificate fails the start.
        serve::load_tls(files)?;
    }
    config.prepare_storage()?;
    let storage = redact(&config.storage);
    let store = Store::open(&config.storage, config.store_options())
        .await
        .with_context(|| format!("cannot open storage {storage}"))?;
    let listener = std::net::TcpListener::bind(&config.listen)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    let auth = Auth::new(&config.tokens);
    if auth.is_enabled() {
        tracing::info!(tokens = config.tokens.len(), "authentication is on");
    } else {
        tracing::warn!(
            "authentication is off: anyone who can reach {addr} can read and write every tenant"
        );
    }
    if config.ingest_rate.is_enabled() {
        tracing::info!(limits = ?config.ingest_rate, "ingest rate limits are on");
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(%storage, "firewatch-server listening on {scheme}://{addr}");

    let state = AppState::new(store.clone(), config.limits.clone())
        .with_auth(auth)
        .with_rate_limits(config.ingest_rate.clone());
    let metrics = state.metrics.clone();
    let (stop, stopped) = watch::channel(false);
    let mut tasks = vec![
        spawn_compactor(
            store.clone(),
            metrics.clone(),
            config.compact_interval,
            stopped.clone(),
        ),
        spawn_storage_stats(store.clone(), metrics.clone(), stopped.clone()),
    ];
    match config.retention {
        Some(keep) => tasks.push(spawn_retention(store.clone(), metrics, keep, stopped)),
        None => tracing::info!("retention is off: data is kept forever"),
    }

    serve(listener, app(state), tls, shutdown_signal())
        .await
        .context("server failed")?;

    tracing::info!("shutting down");
    let _ = stop.send(true);
    for task in tasks {
        let _ = task.await;
    }
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

fn init_tracing(filter: &str, format: LogFormat) -> anyhow::Result<()> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => {
            EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        // Fields at the top level of each object, as log collectors expect.
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    Ok(())
}

/// Reads the storage figures for `/metrics` now and every
/// [`STORAGE_STATS_INTERVAL`].
fn spawn_storage_stats(
    store: Store,
    metrics: Arc<Metrics>,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(STORAGE_STATS_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
            match store.stats().await {
                Ok(stats) => metrics.observe_store(&stats),
                Err(e) => tracing::warn!(error = %e, "cannot read storage figures"),
            }
        }
    })
}

/// Builds rollups every `every`, until told to stop.
fn spawn_compactor(
    store: Store,
    metrics: Arc<Metrics>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
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
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    let every = (keep / 10).clamp(Duration::from_secs(1), Duration::from_secs(3600));
    let keep_ms = i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.changed() => break,
            }
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

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}

/// A storage URL without its password, for logs.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
}
