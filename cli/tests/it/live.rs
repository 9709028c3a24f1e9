//! A real server on a loopback port, storing into SQLite in a temporary
//! directory, fed through its HTTP ingest API as any client would.

use std::net::SocketAddr;
use std::time::Duration;

use firewatch_server::store::{Store, StoreOptions};
use firewatch_server::symbols::{Symbols, SymbolsOptions};
use firewatch_server::{AppState, IngestLimits, app};

/// A server running in its own runtime until dropped.
pub struct Server {
    runtime: Option<tokio::runtime::Runtime>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Serves a fresh database on any free loopback port.
    pub fn start() -> Server {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("firewatch.db").display());
        let debuginfo = dir.path().join("debuginfo");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let addr = runtime.block_on(async {
            let store = Store::open(&url, StoreOptions::default())
                .await
                .expect("open store");
            let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
                .await
                .expect("bind");
            let addr = listener.local_addr().expect("address");
            let symbols = Symbols::new(SymbolsOptions {
                dir: Some(debuginfo),
                max_file_bytes: 64 << 20,
                tenant_quota_bytes: 64 << 20,
                ..SymbolsOptions::default()
            });
            let app = app(AppState::new(store, IngestLimits::default()).with_symbols(symbols));
            tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            });
            addr
        });
        Server {
            runtime: Some(runtime),
            base: format!("http://{addr}"),
            _dir: dir,
        }
    }

    /// Sends folded stacks as Pyroscope's legacy `/ingest` does:
    /// `name` is `app.cpu{labels}`, the window in the server's time syntax.
    pub fn ingest(&self, name: &str, from: &str, until: &str, folded: &str) {
        self.ingest_as(None, name, from, until, folded);
    }

    /// [`Server::ingest`] for a tenant.
    pub fn ingest_as(
        &self,
        tenant: Option<&str>,
        name: &str,
        from: &str,
        until: &str,
        folded: &str,
    ) {
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut request = http
            .post(format!("{}/ingest", self.base))
            .query("name", name)
            .query("from", from)
            .query("until", until)
            .query("sampleRate", "100")
            .query("format", "folded")
            .header("Content-Type", "text/plain");
        if let Some(tenant) = tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let mut response = request.send(folded).expect("ingest request");
        let status = response.status();
        let body = response.body_mut().read_to_string().unwrap_or_default();
        assert_eq!(status, 200, "ingest of {name}: {body}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

/// The `shop` service: an hour ago `parse` had 30% of the samples; in the
/// last 15 minutes it has 60% (a regression of 30 points), while `render`
/// went from 50% to 30% and `idle` from 20% to 10%.
pub fn shop() -> Server {
    let server = Server::start();
    server.ingest(
        "shop.cpu",
        "now-50m",
        "now-49m",
        "main;handle;parse 30\nmain;handle;render 50\nmain;idle 20\n",
    );
    server.ingest(
        "shop.cpu",
        "now-10m",
        "now-9m",
        "main;handle;parse 60\nmain;handle;render 30\nmain;idle 10\n",
    );
    server
}
