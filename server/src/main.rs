//! `firewatch-server`: reads the configuration, opens the store, serves
//! HTTP or HTTPS, builds rollups, applies retention and reads the storage
//! figures for `/metrics` in the background, and shuts down gracefully on
//! SIGINT/SIGTERM (in-flight requests finish, then the store closes).

#![forbid(unsafe_code)]
use std::io::IsTerminal;

use anyhow::Context;
use clap::Parser;
use firewatch_server::auth::Auth;
use firewatch_server::config::{Cli, Config, LogFormat};
use firewatch_server::symbols::Symbols;
use firewatch_server::{AppState, Store, app, maintain, serve};
use tokio::sync::watch;
use tracing_subscriber::EnvFilter;

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
        .with_rate_limits(config.ingest_rate.clone())
        .with_symbols(Symbols::new(config.debuginfo.clone()));
    match (
        &config.debuginfo.dir,
        config.debuginfo.debuginfod_urls.is_empty(),
    ) {
        (Some(dir), true) => tracing::info!(dir = %dir.display(), "debug files: uploads kept"),
        (Some(dir), false) => tracing::info!(
            dir = %dir.display(),
            debuginfod = ?config.debuginfo.debuginfod_urls,
            "debug files: uploads kept, missing ones fetched"
        ),
        (None, _) => tracing::info!("debug files: none kept (no --debuginfo-dir)"),
    }
    let metrics = state.metrics.clone();
    let (stop, stopped) = watch::channel(false);
    if config.retention.is_none() {
        tracing::info!("retention is off: data is kept forever");
    }
    let tasks = maintain::spawn(
        &store,
        &metrics,
        config.compact_interval,
        config.retention,
        &stopped,
    );

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
