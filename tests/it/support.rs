//! A real server on loopback, in its own runtime so a test can stop it
//! (every connection with it) and start another on the same port and file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use firewatch_agent::{Agent, Config};
use firewatch_server::store::{Store, StoreOptions};
use firewatch_server::symbols::Symbols;
use firewatch_server::{AppState, IngestLimits, app};

pub struct Server {
    runtime: tokio::runtime::Runtime,
    pub base: String,
    pub store: Store,
}

impl Server {
    /// Serves SQLite at `db` on `port` (0: any free port).
    pub fn start(db: &Path, port: u16) -> Server {
        Server::start_with(db, port, Symbols::default())
    }

    /// Serves SQLite at `db` on `port`, naming frames with `symbols`.
    pub fn start_with(db: &Path, port: u16, symbols: Symbols) -> Server {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        let url = format!("sqlite://{}", db.display());
        let (store, addr) = runtime.block_on(async {
            let store = Store::open(&url, StoreOptions::default())
                .await
                .expect("open store");
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            // The previous server's port may still have connections in TIME_WAIT.
            socket.set_reuseaddr(true).expect("SO_REUSEADDR");
            socket
                .bind(SocketAddr::from(([127, 0, 0, 1], port)))
                .expect("bind");
            let listener = socket.listen(128).expect("listen");
            let addr = listener.local_addr().expect("address");
            let state = AppState::new(store.clone(), IngestLimits::default()).with_symbols(symbols);
            let app = app(state);
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            (store, addr)
        });
        Server {
            runtime,
            base: format!("http://{addr}"),
            store,
        }
    }

    pub fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Stops serving: the listener and every open connection go away.
    pub fn stop(self) {
        self.runtime.shutdown_timeout(Duration::from_secs(2));
    }
}

/// Builds the agent's C ground-truth workload under a distinctive name:
/// the agent names the service after the executable.
pub fn build_workload(dir: &Path) -> PathBuf {
    build_workload_as(dir, "fw_e2e_workload")
}

/// Builds the C workload as `dir/name`.
pub fn build_workload_as(dir: &Path, name: &str) -> PathBuf {
    let source = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../agent/tests/data/workload.c"
    );
    let out = dir.join(name);
    let status = Command::new("gcc")
        .args([
            "-O2",
            "-fomit-frame-pointer",
            "-g",
            "-pthread",
            source,
            "-o",
        ])
        .arg(&out)
        .status()
        .expect("gcc is needed to build the workload (Debian: build-essential)");
    assert!(status.success(), "building the workload failed");
    out
}

/// Runs the agent with `config` until `child` exits (within 60 s), stops
/// it and checks that it dropped no profile.
pub fn profile_until_exit(child: &mut Child, config: Config) {
    let agent = Agent::start(config).expect("agent starts (run the tests as root)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() {
        assert!(Instant::now() < deadline, "workload did not finish");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = agent.stop(Duration::from_secs(20));
    assert_eq!(metrics.profiles_dropped, 0, "{metrics:?}");
}

/// The agent's configuration for one process, shipping every 2 s.
pub fn shipping_to(base: &str, pid: u32) -> Config {
    Config {
        server: base.to_owned(),
        upload_interval: Duration::from_secs(2),
        targets: firewatch_agent::config::Targets {
            pids: vec![pid],
            ..Default::default()
        },
        ..Config::default()
    }
}

/// `/api/v1/functions` of `query` over the last ten minutes, every row.
pub fn functions_json(base: &str, query: &str) -> serde_json::Value {
    functions_answer(
        base,
        &[
            ("query", query),
            ("from", "now-10m"),
            ("until", "now+1m"),
            ("limit", "100000"),
        ],
    )
}

/// `/api/v1/functions` with these parameters, as JSON.
pub fn functions_answer(base: &str, params: &[(&str, &str)]) -> serde_json::Value {
    let mut request = ureq::get(&format!("{base}/api/v1/functions"));
    for (k, v) in params {
        request = request.query(k, v);
    }
    let body = request
        .call()
        .expect("functions")
        .body_mut()
        .read_to_string()
        .expect("body");
    serde_json::from_str(&body).expect("JSON")
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
