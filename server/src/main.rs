//! `firewatch-server`: reads the configuration, opens the store, serves
//! HTTP, builds rollups and applies retention in the background, and shuts
//! down gracefully on SIGINT/SIGTERM (in-flight requests finish, then the
//! store closes).

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use firewatch_server::config::{Cli, Config};
use firewatch_server::time::now_ms;
use firewatch_server::{AppState, Store, app};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load(&cli)?;
    if cli.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    init_tracing(&config.log)?;
    config.prepare_storage()?;
    let storage = redact(&config.storage);
    let store = Store::open(&config.storage, config.store_options())
        .await
        .with_context(|| format!("cannot open storage {storage}"))?;
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(%storage, "firewatch-server listening on http://{addr}");

    let (stop, stopped) = watch::channel(false);
    let mut tasks = vec![spawn_compactor(
        store.clone(),
        config.compact_interval,
        stopped.clone(),
    )];
    match config.retention {
        Some(keep) => tasks.push(spawn_retention(store.clone(), keep, stopped)),
        None => tracing::info!("retention is off: data is kept forever"),
    }

    let state = AppState::new(store.clone(), config.limits.clone());
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
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

fn init_tracing(filter: &str) -> anyhow::Result<()> {
    let filter = match EnvFilter::try_from_default_env() {
        Ok(f) => f,
        Err(_) => {
            EnvFilter::try_new(filter).with_context(|| format!("invalid log filter {filter:?}"))?
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    Ok(())
}

/// Builds rollups every `every`, until told to stop.
fn spawn_compactor(
    store: Store,
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
            match store.compact(now_ms()).await {
                Ok(0) => {}
                Ok(built) => tracing::debug!(built, "rollups built"),
                Err(e) => tracing::warn!(error = %e, "compaction failed"),
            }
        }
    })
}

/// Deletes data older than `keep`, at start and then every tenth of `keep`
/// (at most hourly, at least every second).
fn spawn_retention(
    store: Store,
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
                Ok(report) if report.blocks > 0 || report.annotations > 0 => tracing::info!(
                    blocks = report.blocks,
                    series = report.series,
                    dictionary_entries = report.dictionary_entries,
                    annotations = report.annotations,
                    "retention deleted old data"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "retention failed"),
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
