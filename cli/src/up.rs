//! `firewatch up`: the server (SQLite in a local directory) and the agent
//! profiling this host, in one process, for a first look at one machine.
//!
//! The server runs on a tokio runtime; the agent runs its own threads and
//! ships to the server over loopback HTTP, exactly as a remote agent would.
//! The main thread waits for the first profile, prints where to look, and
//! on SIGINT or SIGTERM stops the agent first (its last window still has a
//! server to go to), then the server.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use firewatch_agent::Agent;
use firewatch_agent::metrics::Metrics;
use firewatch_server::config::{Cli as ServerCli, Config, FileConfig};
use firewatch_server::symbols::Symbols;
use firewatch_server::{AppState, Store, app, maintain};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::client::{Client, ServerArgs, Service};
use crate::error::{Error, Result};
use crate::printable;

/// Flags of `firewatch up`.
#[derive(Clone, Debug, clap::Args)]
pub(crate) struct UpArgs {
    /// Address to serve the UI and API on; loopback only, as there is no
    /// authentication.
    #[arg(long, default_value = "127.0.0.1:4040", value_name = "ADDR")]
    pub listen: String,
    /// Where the database lives (created if missing).
    #[arg(long, default_value = "./firewatch-data", value_name = "DIR")]
    pub data_dir: PathBuf,
    /// How often the agent ships profiles; short, so the first flamegraph
    /// shows within seconds.
    #[arg(long, default_value = "5s", value_name = "DURATION", value_parser = duration)]
    pub upload_interval: Duration,
    /// Log filter for the server and the agent, e.g. `info` (`RUST_LOG` overrides).
    #[arg(long, default_value = "warn", value_name = "FILTER")]
    pub log: String,
}

fn duration(text: &str) -> std::result::Result<Duration, String> {
    firewatch_syntax::parse_duration(text).map_err(|e| e.to_string())
}

/// How long the agent may take to deliver its last window on the way out.
const AGENT_GRACE: Duration = Duration::from_secs(5);
/// How long the server may take to finish in-flight requests on the way out.
const SERVER_GRACE: Duration = Duration::from_secs(10);
/// When to stop waiting for the first profile and say so.
const FIRST_PROFILE_PATIENCE: Duration = Duration::from_secs(60);
/// Services listed at start; the UI lists them all.
const MAX_SERVICES_SHOWN: usize = 20;

/// Runs until SIGINT or SIGTERM.
pub(crate) fn run(args: &UpArgs) -> Result<()> {
    let addr = loopback_address(&args.listen)?;
    crate::init_tracing(&args.log)?;
    firewatch_agent::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fw-server")
        .enable_all()
        .build()
        .map_err(|e| Error::Up(format!("cannot start the server's runtime: {e}")))?;
    let server = runtime.block_on(Server::start(addr, &args.data_dir))?;
    let base = format!("http://{}", server.addr);
    println!(
        "Firewatch is serving on {base}/ (data in {}).",
        args.data_dir.display()
    );
    println!(
        "Authentication is off, so it listens on loopback ({}) only.",
        server.addr.ip()
    );

    let agent = match Agent::start(firewatch_agent::Config {
        server: base.clone(),
        upload_interval: args.upload_interval,
        // The process is the server's too: the agent checks its CPU budget
        // on its own threads, and bounds its caches without looking at the
        // process's memory.
        shares_process: true,
        ..firewatch_agent::Config::default()
    }) {
        Ok(agent) => {
            println!(
                "Profiling this host; waiting for the first profiles (the agent ships every {} s)...",
                args.upload_interval.as_secs_f64()
            );
            Some(agent)
        }
        Err(e) => {
            // The server is useful without the agent: other hosts' agents
            // and Pyroscope clients can send to it.
            eprintln!("firewatch: the agent cannot start: {e}");
            if matches!(e, firewatch_agent::Error::PerfPermission { .. }) {
                eprintln!(
                    "firewatch: to profile this host, run `firewatch up` as root (e.g. with sudo)."
                );
            }
            println!(
                "The server keeps running without profiling this host: the UI at {base}/ shows \
                 data sent by other clients (firewatch-agent, Pyroscope SDKs, the ingest API)."
            );
            None
        }
    };

    let client = Client::new(&ServerArgs {
        server: base.clone(),
        token: None,
        tenant: None,
    })?;
    let delivered = agent.as_ref().map(Agent::metrics);
    let outcome = runtime.block_on(async {
        tokio::select! {
            signal = stop_signal() => Ok(signal),
            result = announce(client, base.clone(), delivered) => result.map(|()| "no signal"),
            served = server.finished() => Err(served),
        }
    });
    // On an error the agent is dropped on the way out, which stops it.
    let signal = outcome?;
    println!("\n{signal} received: stopping (Ctrl-C again to quit at once).");
    // A second signal during the grace periods ends the process.
    runtime.spawn(async {
        let _ = stop_signal().await;
        std::process::exit(130);
    });
    if let Some(agent) = agent {
        let m = agent.stop(AGENT_GRACE);
        tracing::info!(
            profiles = m.profiles_built,
            delivered = m.profiles_delivered,
            "agent stopped"
        );
    }
    runtime.block_on(server.stop())?;
    println!("Stopped.");
    Ok(())
}

/// `listen` as one address, refused unless every address it names is
/// loopback: `up` has no authentication.
fn loopback_address(listen: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = listen
        .to_socket_addrs()
        .map_err(|e| {
            Error::Usage(format!(
                "--listen {listen:?}: {e}; expected e.g. 127.0.0.1:4040"
            ))
        })?
        .collect();
    match addrs.first() {
        Some(addr) if addrs.iter().all(|a| a.ip().is_loopback()) => Ok(*addr),
        _ => Err(Error::Usage(format!(
            "--listen {listen:?}: `firewatch up` has no authentication, so it listens on a \
             loopback address only (e.g. 127.0.0.1:4040); run firewatch-server for a server \
             other machines reach"
        ))),
    }
}

/// The server, its background tasks and how to stop them.
struct Server {
    addr: SocketAddr,
    store: Store,
    stop: watch::Sender<bool>,
    serve: JoinHandle<std::io::Result<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Server {
    /// Opens the store under `data_dir`, binds `addr` and starts serving,
    /// with compaction and retention as `firewatch-server` runs them.
    async fn start(addr: SocketAddr, data_dir: &Path) -> Result<Server> {
        let storage = format!("sqlite://{}", data_dir.join("firewatch.db").display());
        let config = Config::resolve(
            &ServerCli {
                listen: Some(addr.to_string()),
                storage: Some(storage.clone()),
                ..ServerCli::default()
            },
            FileConfig::default(),
        )
        .map_err(|e| Error::Up(e.to_string()))?;
        config
            .prepare_storage()
            .map_err(|e| Error::Up(e.to_string()))?;
        let store = Store::open(&config.storage, config.store_options())
            .await
            .map_err(|e| Error::Up(format!("cannot open the database {storage}: {e}")))?;
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            Error::Up(format!(
                "cannot listen on {addr}: {e} (is Firewatch already running there? choose \
                 another address with --listen)"
            ))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Up(format!("cannot listen on {addr}: {e}")))?;
        let (stop, stopped) = watch::channel(false);
        let state = AppState::new(store.clone(), config.limits.clone())
            .with_symbols(Symbols::new(config.debuginfo.clone()));
        let tasks = maintain::spawn(
            &store,
            &state.metrics,
            config.compact_interval,
            config.retention,
            &stopped,
        );
        let mut shutdown = stopped;
        let serve = tokio::spawn(async move {
            axum::serve(listener, app(state))
                .with_graceful_shutdown(async move {
                    let _ = shutdown.wait_for(|stop| *stop).await;
                })
                .await
        });
        tracing::info!(%addr, %storage, "server listening");
        Ok(Server {
            addr,
            store,
            stop,
            serve,
            tasks,
        })
    }

    /// Resolves only if serving ends on its own, which is a failure.
    async fn finished(&self) -> Error {
        loop {
            if self.serve.is_finished() {
                return Error::Up("the server stopped unexpectedly".into());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops accepting, lets in-flight requests finish, stops the
    /// background tasks and closes the store.
    async fn stop(self) -> Result<()> {
        let _ = self.stop.send(true);
        match tokio::time::timeout(SERVER_GRACE, self.serve).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(Error::Up(format!("the server failed: {e}"))),
            Ok(Err(e)) => return Err(Error::Up(format!("the server failed: {e}"))),
            Err(_) => tracing::warn!("requests still open after the grace period were cut"),
        }
        for task in self.tasks {
            let _ = task.await;
        }
        self.store.close().await;
        Ok(())
    }
}

/// Waits for the agent's first profile to be stored (when the agent runs),
/// then prints the UI's address and a link per service; a slow agent is
/// not an error, only said so.
///
/// The agent counts a profile delivered once the server acknowledged it,
/// which it does after commit: waiting on that counter, rather than on the
/// service list alone, keeps a database left by an earlier run from
/// passing for this run's first profile.
async fn announce(client: Client, base: String, agent: Option<Arc<Metrics>>) -> Result<()> {
    let client = Arc::new(client);
    let started = Instant::now();
    let mut services: Vec<Service> = Vec::new();
    let waiting = agent.is_some();
    while let Some(metrics) = &agent {
        if started.elapsed() >= FIRST_PROFILE_PATIENCE {
            break;
        }
        if metrics.snapshot().profiles_delivered > 0 {
            let c = Arc::clone(&client);
            match tokio::task::spawn_blocking(move || c.services()).await {
                Ok(Ok(found)) if !found.is_empty() => {
                    services = found;
                    break;
                }
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "services not listed yet"),
                Err(e) => tracing::debug!(error = %e, "services poll failed"),
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!("\nOpen the UI: {base}/");
    if !services.is_empty() {
        println!("Services (each link shows its last 15 minutes):");
        for s in services.iter().take(MAX_SERVICES_SHOWN) {
            println!("  {}: {}", printable(&s.name), service_link(&base, &s.name));
        }
        if services.len() > MAX_SERVICES_SHOWN {
            println!(
                "  ... and {} more in the UI",
                services.len() - MAX_SERVICES_SHOWN
            );
        }
        println!("More services appear in the UI as they are profiled.");
    } else if waiting {
        println!(
            "No profile arrived within {} s; the agent's messages above may say why.",
            FIRST_PROFILE_PATIENCE.as_secs()
        );
    }
    println!("Stop with Ctrl-C.");
    std::future::pending::<()>().await;
    Ok(())
}

/// The UI showing `service` over the last 15 minutes.
pub(crate) fn service_link(base: &str, service: &str) -> String {
    let query = format!("{{service_name=\"{service}\"}}");
    format!("{base}/?query={}&from=now-15m", percent_encode(&query))
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Resolves on SIGINT or SIGTERM with the signal's name.
async fn stop_signal() -> &'static str {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = interrupt => "SIGINT",
        _ = terminate => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_links_are_encoded() {
        assert_eq!(
            service_link("http://127.0.0.1:4040", "my app"),
            "http://127.0.0.1:4040/?query=%7Bservice_name%3D%22my%20app%22%7D&from=now-15m"
        );
    }

    #[test]
    fn only_loopback_is_served() {
        assert!(loopback_address("127.0.0.1:4040").is_ok());
        assert!(loopback_address("[::1]:0").is_ok());
        let e = loopback_address("0.0.0.0:4040").expect_err("not loopback");
        assert!(e.to_string().contains("loopback"), "{e}");
        assert!(loopback_address("nonsense").expect_err("bad").is_usage());
    }
}
