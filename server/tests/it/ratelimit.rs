//! Ingest rate limits per tenant: over the limit, a 429 with `Retry-After`
//! naming the limit (a Connect `resource_exhausted` on the push API), other
//! tenants unaffected, nothing stored; and the count in `/metrics`.

use std::collections::BTreeMap;

use firewatch_server::IngestLimits;
use firewatch_server::ratelimit::{Rate, RateLimits};
use firewatch_server::store::StoreOptions;

use crate::harness::{Req, TestServer, Transport, base_ms, cpu_profile};
use crate::support::Backend;

/// 2,000 bytes a second, 6,000 at once; tenant "big" is not limited.
async fn server(backend: Backend, transport: Transport) -> TestServer {
    let limits = RateLimits {
        default: Some(Rate {
            bytes_per_second: 2_000,
            burst_bytes: 6_000,
        }),
        tenants: BTreeMap::from([("big".to_owned(), None)]),
    };
    TestServer::configured(
        backend,
        transport,
        IngestLimits::default(),
        StoreOptions::default(),
        |s| s.with_rate_limits(limits),
    )
    .await
}

/// A native ingest request of about `bytes` bytes: a profile whose size
/// is one long function name.
fn native(bytes: usize) -> Req {
    let name = "f".repeat(bytes.saturating_sub(120));
    let p = cpu_profile(&[(&format!("main;{name}"), 1)], base_ms());
    Req::post("/api/v1/ingest?service_name=limited", p.to_pprof_bytes())
}

async fn over_the_rate_is_429_with_retry_after(s: &TestServer) {
    let first = native(4_000);
    s.send(first.clone()).await.expect(200);
    let r = s.send(first.clone()).await;
    let message = r.error(429);
    assert!(
        message.contains("ingest_rate_bytes_per_second") && message.contains("2000 bytes/s"),
        "{message}"
    );
    let retry: u64 = r
        .header("Retry-After")
        .expect("Retry-After")
        .parse()
        .expect("seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert_eq!(s.blocks().await, 1, "the refused profile is not stored");

    // The push API answers the Connect way, with the same wait.
    let push = Req::post(
        "/push.v1.PusherService/Push",
        format!(
            r#"{{"series":[{{"labels":[{{"name":"service_name","value":"{}"}}],"samples":[]}}]}}"#,
            "x".repeat(3_000)
        ),
    )
    .header("Content-Type", "application/json");
    let r = s.send(push).await;
    r.expect(429);
    assert_eq!(r.json()["code"], "resource_exhausted");
    assert!(r.header("Retry-After").is_some());

    // Other tenants have their own bucket; "big" has none.
    s.send(first.clone().tenant("other")).await.expect(200);
    for _ in 0..5 {
        s.send(first.clone().tenant("big")).await.expect(200);
    }
    // A request larger than the burst could never pass: 413, not 429.
    let r = s.send(native(7_000).tenant("fresh")).await;
    assert!(r.error(413).contains("ingest_burst_bytes"));

    let metrics = s.metrics.encode().unwrap();
    assert!(
        metrics.contains("firewatch_rate_limited_requests_total{tenant=\"\"} 2"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_is_429_with_retry_after_sqlite() {
    over_the_rate_is_429_with_retry_after(&server(Backend::Sqlite, Transport::Oneshot).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_the_rate_is_429_with_retry_after_postgres() {
    over_the_rate_is_429_with_retry_after(&server(Backend::Postgres, Transport::Http).await).await;
}
