//! Tokens, scopes and tenants over HTTP: what needs which token, what is
//! public, and that no tenant ever sees another's data through any query
//! endpoint, in any format.

use base64::Engine;
use firewatch_server::IngestLimits;
use firewatch_server::auth::{Auth, Scope, TokenSpec, digest, to_hex};
use firewatch_server::store::StoreOptions;

use crate::harness::{Req, Resp, TestServer, Transport, base_ms, cpu_profile, enc};
use crate::support::Backend;

const INGEST_A: &str = "ingest-a-secret";
const QUERY_A: &str = "query-a-secret";
const INGEST_B: &str = "ingest-b-secret";
const QUERY_B: &str = "query-b-secret";
const ADMIN: &str = "admin-secret";

fn spec(token: &str, scope: Scope, tenant: &str) -> TokenSpec {
    TokenSpec {
        name: token.trim_end_matches("-secret").to_owned(),
        token_sha256: to_hex(&digest(token)),
        scope,
        tenant: tenant.to_owned(),
    }
}

async fn server(backend: Backend, transport: Transport) -> TestServer {
    let auth = Auth::new(&[
        spec(INGEST_A, Scope::Ingest, "alpha"),
        spec(QUERY_A, Scope::Query, "alpha"),
        spec(INGEST_B, Scope::Ingest, "bravo"),
        spec(QUERY_B, Scope::Query, "bravo"),
        spec(ADMIN, Scope::Admin, ""),
    ]);
    TestServer::configured(
        backend,
        transport,
        IngestLimits::default(),
        StoreOptions::default(),
        |s| s.with_auth(auth),
    )
    .await
}

fn bearer(req: Req, token: &str) -> Req {
    req.header("Authorization", &format!("Bearer {token}"))
}

fn native(service: &str, stack: &str, t: i64) -> Req {
    let body = cpu_profile(&[(stack, 3)], t).to_pprof_bytes();
    Req::post(
        format!("/api/v1/ingest?service_name={service}&host={service}-host"),
        body,
    )
}

fn push(token: Option<&str>) -> Req {
    let body = r#"{"series":[{"labels":[{"name":"service_name","value":"pushed"}],"samples":[]}]}"#;
    let r =
        Req::post("/push.v1.PusherService/Push", body).header("Content-Type", "application/json");
    match token {
        Some(t) => bearer(r, t),
        None => r,
    }
}

/// Every API endpoint, as (a GET request or a POST), for the 401 checks.
fn api_requests() -> Vec<Req> {
    let q = enc("x.cpu");
    vec![
        native("x", "main", base_ms()),
        Req::post("/ingest?name=x", "main 1"),
        Req::post("/pyroscope/ingest?name=x", "main 1"),
        push(None),
        Req::get(format!("/render?query={q}")),
        Req::get(format!("/pyroscope/render?query={q}")),
        Req::get(format!("/render-diff?query={q}")),
        Req::get("/labels"),
        Req::get("/label-values?label=host"),
        Req::get("/api/v1/services"),
        Req::get("/api/apps"),
        Req::get("/api/annotations"),
        Req::post("/api/annotations", r#"{"text":"x"}"#),
        Req::get("/metrics"),
    ]
}

async fn unauthenticated_requests_get_401_and_public_paths_stay_open(s: &TestServer) {
    for req in api_requests() {
        let target = req.describe();
        let r = s.send(req).await;
        assert_eq!(r.status, 401, "{target}: {}", r.text());
        let challenge = r.header("WWW-Authenticate").unwrap_or("");
        assert!(challenge.starts_with("Bearer"), "{target}: {challenge}");
    }
    let r = s.send(bearer(Req::get("/labels"), "not-a-token")).await;
    assert!(r.error(401).contains("unknown token"));
    let r = s.send(push(None)).await;
    r.expect(401);
    assert_eq!(r.json()["code"], "unauthenticated");
    for path in ["/healthz", "/readyz", "/", "/js/app.js"] {
        s.send(Req::get(path)).await.expect(200);
    }
    assert_eq!(s.blocks().await, 0);
}

async fn scopes_decide_what_a_token_may_do(s: &TestServer) {
    let t = base_ms();
    // Reading with an ingest token, writing with a query token: 403.
    let r = s.send(bearer(native("a", "main;one", t), QUERY_A)).await;
    assert!(r.error(403).contains("scope query"), "{}", r.text());
    let r = s.send(bearer(push(None), QUERY_A)).await;
    r.expect(403);
    assert_eq!(r.json()["code"], "permission_denied");
    s.send(bearer(Req::get("/labels"), INGEST_A))
        .await
        .error(403);
    s.send(bearer(
        Req::post("/api/annotations", r#"{"text":"x"}"#),
        QUERY_A,
    ))
    .await
    .error(403);
    s.send(bearer(Req::get("/metrics"), QUERY_A))
        .await
        .error(403);

    // The right scopes, with Bearer and with Basic (token as password).
    s.send(bearer(native("a", "main;one", t), INGEST_A))
        .await
        .expect(200);
    s.send(bearer(push(None), INGEST_A)).await.expect(200);
    s.send(bearer(
        Req::post("/api/annotations", r#"{"text":"x"}"#),
        INGEST_A,
    ))
    .await
    .expect(201);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("grafana:{QUERY_A}"));
    let r = s
        .send(
            Req::get("/label-values?label=service_name")
                .header("Authorization", &format!("Basic {basic}")),
        )
        .await;
    r.expect(200);
    assert_eq!(r.json(), serde_json::json!(["a"]));

    // Tokens act for their tenant: naming another is refused, naming their own is fine.
    let r = s
        .send(bearer(native("a", "main;one", t), INGEST_A).tenant("bravo"))
        .await;
    assert!(
        r.error(403).contains("bound to tenant \"alpha\""),
        "{}",
        r.text()
    );
    s.send(bearer(Req::get("/labels"), QUERY_A).tenant("bravo"))
        .await
        .error(403);
    s.send(bearer(Req::get("/labels"), QUERY_A).tenant("alpha"))
        .await
        .expect(200);

    // Admin: everything, for the tenant it names.
    s.send(bearer(native("b", "main;two", t), ADMIN).tenant("bravo"))
        .await
        .expect(200);
    let r = s
        .send(bearer(
            Req::get("/label-values?label=service_name"),
            QUERY_B,
        ))
        .await;
    assert_eq!(r.json(), serde_json::json!(["b"]));
    let r = s
        .send(bearer(Req::get("/label-values?label=service_name"), ADMIN).tenant("alpha"))
        .await;
    assert_eq!(r.json(), serde_json::json!(["a"]));
    let r = s.send(bearer(Req::get("/metrics"), ADMIN)).await;
    assert!(
        r.expect(200)
            .text()
            .contains("firewatch_http_requests_total")
    );
}

/// Everything a tenant can read, as text (pprof decompressed).
async fn everything(s: &TestServer, token: &str, service: &str, t: i64) -> Vec<(String, String)> {
    let window = format!("from={}&until={}", t - 60_000, t + 60_000);
    let q = enc(&format!("{service}.cpu"));
    let sel = enc(&format!("{{service_name=\"{service}\"}}"));
    let diff = format!(
        "/render-diff?query={q}&leftFrom={}&leftUntil={}&rightFrom={}&rightUntil={}",
        t - 60_000,
        t + 60_000,
        t - 60_000,
        t + 60_000
    );
    let mut targets: Vec<String> = ["json", "svg", "folded", "pprof"]
        .iter()
        .map(|f| format!("/render?query={q}&{window}&format={f}"))
        .collect();
    targets.extend(
        ["json", "svg", "folded"]
            .iter()
            .map(|f| format!("{diff}&format={f}")),
    );
    targets.extend([
        format!("/render?query={sel}&profile_type=cpu&{window}"),
        "/labels".to_owned(),
        format!("/labels?match[]={}", enc("{host=~\".+\"}")),
        "/label-values?label=service_name".to_owned(),
        "/label-values?label=host".to_owned(),
        "/api/v1/services".to_owned(),
        "/api/apps".to_owned(),
        format!("/api/annotations?{window}"),
    ]);
    let mut out = Vec::new();
    for target in targets {
        let r: Resp = s.send(bearer(Req::get(target.clone()), token)).await;
        r.expect(200);
        let text = if target.contains("format=pprof") {
            let raw = firewatch_profile::decompress(&r.body, 64 << 20).expect("gzipped pprof");
            String::from_utf8_lossy(&raw).into_owned()
        } else {
            r.text()
        };
        out.push((target, text));
    }
    out
}

async fn no_tenant_sees_another_through_any_query_endpoint(s: &TestServer) {
    let t = base_ms();
    for (token, name) in [(INGEST_A, "alpha"), (INGEST_B, "bravo")] {
        let stack = format!("main;{name}_function");
        s.send(bearer(native(&format!("{name}svc"), &stack, t), token))
            .await
            .expect(200);
        let legacy = format!(
            "/ingest?name={name}svc.cpu&from={}&until={}",
            t / 1000,
            t / 1000 + 10
        );
        s.send(bearer(
            Req::post(legacy, format!("main;{name}_legacy 5")),
            token,
        ))
        .await
        .expect(200);
        let note = format!(
            r#"{{"time": {t}, "text": "{name} deploy", "labels": {{"service_name": "{name}svc"}}}}"#
        );
        s.send(bearer(Req::post("/api/annotations", note), token))
            .await
            .expect(201);
    }
    for (token, own, other) in [(QUERY_A, "alpha", "bravo"), (QUERY_B, "bravo", "alpha")] {
        // What only the other tenant's data holds: its functions, hosts,
        // annotations (and its service's name, where the request does not
        // itself name it, as a render of that service echoes its query).
        let markers = [
            format!("{other}_function"),
            format!("{other}_legacy"),
            format!("{other} deploy"),
            format!("{other}svc-host"),
        ];
        // Asking for the other tenant's service by name finds nothing either.
        for service in [own, other] {
            for (target, text) in everything(s, token, &format!("{service}svc"), t).await {
                let names_it = target.contains(&format!("{other}svc"));
                let leaked = markers
                    .iter()
                    .find(|m| text.contains(m.as_str()))
                    .or((!names_it && text.contains(other)).then_some(&markers[0]));
                assert!(
                    leaked.is_none(),
                    "{own} sees {other} through {target}: {text}"
                );
            }
        }
        // Every endpoint shows the tenant's own data, but label names.
        for (target, text) in everything(s, token, &format!("{own}svc"), t).await {
            if !target.starts_with("/labels") {
                assert!(
                    text.contains(own),
                    "{own} does not see itself in {target}: {text}"
                );
            }
        }
    }
}

mod sqlite_oneshot {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unauthenticated_requests_get_401_and_public_paths_stay_open() {
        super::unauthenticated_requests_get_401_and_public_paths_stay_open(
            &server(Backend::Sqlite, Transport::Oneshot).await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scopes_decide_what_a_token_may_do() {
        super::scopes_decide_what_a_token_may_do(
            &server(Backend::Sqlite, Transport::Oneshot).await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_tenant_sees_another_through_any_query_endpoint() {
        super::no_tenant_sees_another_through_any_query_endpoint(
            &server(Backend::Sqlite, Transport::Oneshot).await,
        )
        .await;
    }
}

mod postgres_http {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unauthenticated_requests_get_401_and_public_paths_stay_open() {
        super::unauthenticated_requests_get_401_and_public_paths_stay_open(
            &server(Backend::Postgres, Transport::Http).await,
        )
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn scopes_decide_what_a_token_may_do() {
        super::scopes_decide_what_a_token_may_do(&server(Backend::Postgres, Transport::Http).await)
            .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_tenant_sees_another_through_any_query_endpoint() {
        super::no_tenant_sees_another_through_any_query_endpoint(
            &server(Backend::Postgres, Transport::Http).await,
        )
        .await;
    }
}
