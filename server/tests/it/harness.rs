//! The HTTP application over a real store (see [`crate::support`]),
//! driven either in process (`tower::ServiceExt::oneshot`) or over real
//! HTTP on 127.0.0.1, and the profiles the tests send.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::http::Request;
use firewatch_profile::{Profile, SampleType};
use firewatch_server::store::{Store, StoreOptions};
use firewatch_server::symbols::{Symbols, SymbolsOptions};
use firewatch_server::{AppState, IngestLimits, app};
use serde_json::Value;
use tower::ServiceExt;

use crate::support::{Backend, fresh_url};

/// How requests reach the application.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `Router::oneshot`, no socket.
    Oneshot,
    /// HTTP/1.1 over a loopback socket.
    Http,
}

/// A running application and its store.
pub struct TestServer {
    pub store: Store,
    pub metrics: std::sync::Arc<firewatch_server::metrics::Metrics>,
    router: Router,
    backend: Backend,
    transport: Transport,
    addr: Option<SocketAddr>,
    _dir: Option<tempfile::TempDir>,
    /// Where the server keeps debug files.
    pub debug_dir: tempfile::TempDir,
}

/// Debug files kept in `dir`, small limits, no debuginfod.
pub fn debug_options(dir: &std::path::Path) -> SymbolsOptions {
    SymbolsOptions {
        dir: Some(dir.to_owned()),
        debuginfod_urls: Vec::new(),
        max_file_bytes: 16 << 20,
        tenant_quota_bytes: 64 << 20,
        cache_bytes: 64 << 20,
        debuginfod_timeout: std::time::Duration::from_secs(10),
        debuginfod_retry: std::time::Duration::from_secs(1),
    }
}

impl TestServer {
    pub async fn start(backend: Backend, transport: Transport) -> TestServer {
        TestServer::with_limits(backend, transport, IngestLimits::default()).await
    }

    pub async fn with_limits(
        backend: Backend,
        transport: Transport,
        limits: IngestLimits,
    ) -> TestServer {
        TestServer::with_options(backend, transport, limits, StoreOptions::default()).await
    }

    pub async fn with_options(
        backend: Backend,
        transport: Transport,
        limits: IngestLimits,
        options: StoreOptions,
    ) -> TestServer {
        TestServer::configured(backend, transport, limits, options, |s| s).await
    }

    /// A server whose state `configure` completes (tokens, rate limits).
    pub async fn configured(
        backend: Backend,
        transport: Transport,
        limits: IngestLimits,
        options: StoreOptions,
        configure: impl FnOnce(AppState) -> AppState,
    ) -> TestServer {
        let (url, dir) = fresh_url(backend).await;
        let store = Store::open(&url, options).await.expect("open store");
        let debug_dir = tempfile::tempdir().expect("tempdir");
        let symbols = Symbols::new(debug_options(debug_dir.path()));
        let state = configure(AppState::new(store.clone(), limits).with_symbols(symbols));
        let metrics = state.metrics.clone();
        let router = app(state);
        let addr = match transport {
            Transport::Oneshot => None,
            Transport::Http => {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind");
                let addr = listener.local_addr().expect("addr");
                let served = router.clone();
                tokio::spawn(async move {
                    let _ = axum::serve(listener, served).await;
                });
                Some(addr)
            }
        };
        TestServer {
            store,
            metrics,
            router,
            backend,
            transport,
            addr,
            _dir: dir,
            debug_dir,
        }
    }

    /// Sends a request the way this server is driven.
    pub async fn send(&self, req: Req) -> Resp {
        self.try_send(req)
            .await
            .unwrap_or_else(|e| panic!("HTTP request: {e}"))
    }

    /// Sends a request; over HTTP, an I/O error is returned rather than a
    /// panic (a server refusing a body past its limit answers and closes
    /// the connection, so a client still sending may see a broken pipe).
    pub async fn try_send(&self, req: Req) -> Result<Resp, String> {
        match self.addr {
            None => Ok(self.oneshot(req).await),
            Some(addr) => tokio::task::spawn_blocking(move || http(addr, req))
                .await
                .expect("HTTP client thread"),
        }
    }

    async fn oneshot(&self, req: Req) -> Resp {
        let mut builder = Request::builder().method(req.method).uri(&req.target);
        for (k, v) in &req.headers {
            builder = builder.header(k, v);
        }
        let request = builder.body(Body::from(req.body)).expect("request");
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
            .collect();
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body")
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    /// Whether requests go over a socket.
    pub fn is_http(&self) -> bool {
        self.transport == Transport::Http
    }

    /// Another server on a fresh database of the same backend, driven the
    /// same way, with other limits.
    pub async fn sibling(&self, limits: IngestLimits, options: StoreOptions) -> TestServer {
        TestServer::with_options(self.backend, self.transport, limits, options).await
    }

    /// Blocks of every tier in the store (0 while nothing was stored).
    pub async fn blocks(&self) -> u64 {
        self.store.stats().await.expect("stats").blocks
    }
}

fn http(addr: SocketAddr, req: Req) -> Result<Resp, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let url = format!("http://{addr}{}", req.target);
    let mut response = match req.method {
        "GET" | "HEAD" => {
            let mut r = if req.method == "HEAD" {
                agent.head(&url)
            } else {
                agent.get(&url)
            };
            for (k, v) in &req.headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r.call()
        }
        method => {
            let mut r = if method == "PUT" {
                agent.put(&url)
            } else {
                agent.post(&url)
            };
            for (k, v) in &req.headers {
                r = r.header(k.as_str(), v.as_str());
            }
            r.send(&req.body[..])
        }
    }
    .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let body = response
        .body_mut()
        .with_config()
        .limit(256 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok(Resp {
        status,
        headers,
        body,
    })
}

/// A request: method, path with query, headers, body.
#[derive(Clone, Debug)]
pub struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    pub fn get(target: impl Into<String>) -> Req {
        Req {
            method: "GET",
            target: target.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn head(target: impl Into<String>) -> Req {
        Req {
            method: "HEAD",
            ..Req::get(target)
        }
    }

    pub fn post(target: impl Into<String>, body: impl Into<Vec<u8>>) -> Req {
        Req {
            method: "POST",
            target: target.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn put(target: impl Into<String>, body: impl Into<Vec<u8>>) -> Req {
        Req {
            method: "PUT",
            ..Req::post(target, body)
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn tenant(self, tenant: &str) -> Req {
        self.header("X-Scope-OrgID", tenant)
    }

    /// Method and target, for messages.
    pub fn describe(&self) -> String {
        format!("{} {}", self.method, self.target)
    }
}

/// A response.
#[derive(Clone, Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Asserts the status, showing the body when it differs.
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Resp {
        assert_eq!(self.status, status, "body: {}", self.text());
        self
    }

    /// The `error` message of a JSON error, asserting the status.
    #[track_caller]
    pub fn error(&self, status: u16) -> String {
        self.expect(status);
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {}", self.text()))
            .to_owned()
    }
}

/// Percent-encodes a query parameter value.
pub fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A fixed point in the recent past (within retention), Unix ms, aligned
/// to the minute so windows are easy to reason about.
pub fn base_ms() -> i64 {
    let now = firewatch_server::time::now_ms();
    (now - 2 * 3_600_000) / 60_000 * 60_000
}

/// A Go-shaped CPU profile (samples/count and cpu/nanoseconds at 100 Hz)
/// of `(stack root first, samples)`, at `time_ms`.
pub fn cpu_profile(stacks: &[(&str, i64)], time_ms: i64) -> Profile {
    let mut p = Profile::new(vec![
        SampleType::new("samples", "count"),
        SampleType::new("cpu", "nanoseconds"),
    ]);
    p.period_type = Some(SampleType::new("cpu", "nanoseconds"));
    p.period = 10_000_000;
    p.time_nanos = time_ms * 1_000_000;
    p.duration_nanos = 10_000_000_000;
    for (stack, n) in stacks {
        let frames: Vec<&str> = stack.split(';').collect();
        p.add_named_sample(&frames, &[*n, n * 10_000_000]);
    }
    p
}

/// The standard corpus' profile `i`, pprof-encoded.
pub fn corpus_pprof(i: u64) -> Vec<u8> {
    firewatch_profile::corpus::Generator::standard(7)
        .profile(i)
        .to_pprof_bytes()
}

/// `{stack: value}` of a folded answer.
pub fn folded_map(text: &str) -> std::collections::BTreeMap<String, i64> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (stack, v) = l.rsplit_once(' ').expect("folded line");
            (stack.to_owned(), v.parse().expect("count"))
        })
        .collect()
}

/// Renders `query` over `[from, until)` (ms) as folded text.
pub async fn folded(server: &TestServer, query: &str, from_ms: i64, until_ms: i64) -> String {
    let r = server
        .send(Req::get(format!(
            "/render?query={}&from={from_ms}&until={until_ms}&format=folded",
            enc(query)
        )))
        .await;
    r.expect(200);
    r.text()
}

/// Generates `#[tokio::test]`s running each named `async fn(&TestServer)`
/// on SQLite in process, SQLite over HTTP, and PostgreSQL over HTTP.
#[macro_export]
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite_oneshot {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    use $crate::harness::{TestServer, Transport}; use $crate::support::Backend;
                    super::$case(&TestServer::start(Backend::Sqlite, Transport::Oneshot).await).await;
                }
            )*
        }
        mod sqlite_http {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    use $crate::harness::{TestServer, Transport}; use $crate::support::Backend;
                    super::$case(&TestServer::start(Backend::Sqlite, Transport::Http).await).await;
                }
            )*
        }
        mod postgres_http {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    use $crate::harness::{TestServer, Transport}; use $crate::support::Backend;
                    super::$case(&TestServer::start(Backend::Postgres, Transport::Http).await).await;
                }
            )*
        }
    };
}
