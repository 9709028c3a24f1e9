//! `GET /metrics`: the Prometheus text of ingest, requests, rejections,
//! latencies and storage.

use crate::harness::{Req, TestServer, Transport, base_ms, cpu_profile, enc};
use crate::support::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_ingest_queries_and_rejections() {
    let s = TestServer::start(Backend::Sqlite, Transport::Oneshot).await;
    let body = cpu_profile(&[("main;work", 3)], base_ms()).to_pprof_bytes();
    let size = body.len();
    for tenant in ["", "team-a"] {
        s.send(Req::post("/api/v1/ingest?service_name=checkout", body.clone()).tenant(tenant))
            .await
            .expect(200);
    }
    s.send(Req::post("/ingest?name=legacy.cpu", "main;x 1"))
        .await
        .expect(200);
    s.send(Req::get(format!("/render?query={}", enc("checkout.cpu"))))
        .await
        .expect(200);
    s.send(Req::get("/render?query=%7B")).await.error(400);
    s.send(Req::get("/render")).await.error(400);
    s.send(Req::post("/api/v1/ingest", body.clone()))
        .await
        .error(400);
    // What the binary's background tasks record.
    s.metrics.observe_store(&s.store.stats().await.unwrap());
    let now = firewatch_server::time::now_ms();
    let built = s.store.compact(now).await.unwrap();
    s.metrics.compacted(
        Some(built),
        Some(s.store.compaction_lag_ms(now).await.unwrap()),
    );
    let report = s
        .store
        .apply_retention(base_ms() - 3_600_000)
        .await
        .unwrap();
    s.metrics.retention(Some(&report));

    let r = s.send(Req::get("/metrics")).await;
    r.expect(200);
    assert!(
        r.header("Content-Type")
            .unwrap_or("")
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.header("Content-Type")
    );
    let text = r.text();
    for line in [
        "firewatch_ingested_profiles_total{protocol=\"native\",tenant=\"\"} 1".to_owned(),
        "firewatch_ingested_profiles_total{protocol=\"native\",tenant=\"team-a\"} 1".to_owned(),
        format!("firewatch_ingested_bytes_total{{protocol=\"native\",tenant=\"team-a\"}} {size}"),
        "firewatch_ingested_profiles_total{protocol=\"legacy\",tenant=\"\"} 1".to_owned(),
        "firewatch_http_requests_total{endpoint=\"/render\",code=\"200\"} 1".to_owned(),
        "firewatch_http_requests_total{endpoint=\"/render\",code=\"400\"} 2".to_owned(),
        "firewatch_http_rejected_requests_total{endpoint=\"/render\",reason=\"bad_request\"} 2"
            .to_owned(),
        "firewatch_http_rejected_requests_total{endpoint=\"/api/v1/ingest\",reason=\"bad_request\"} 1"
            .to_owned(),
        "firewatch_http_request_duration_seconds_count{endpoint=\"/render\"} 3".to_owned(),
        "firewatch_storage_blocks 3".to_owned(),
        "firewatch_storage_series 3".to_owned(),
        "firewatch_build_info{version=\"0.1.0\"} 1".to_owned(),
        "firewatch_compaction_runs_total{result=\"ok\"} 1".to_owned(),
        format!("firewatch_compaction_rollups_built_total {built}"),
        "firewatch_compaction_lag_seconds 0.0".to_owned(),
        "firewatch_retention_runs_total{result=\"ok\"} 1".to_owned(),
        "firewatch_retention_deleted_total{kind=\"blocks\"} 0".to_owned(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }
    for name in [
        "firewatch_storage_bytes ",
        "firewatch_http_request_duration_seconds_bucket{le=",
    ] {
        assert!(text.contains(name), "{name} not in:\n{text}");
    }
    assert!(text.ends_with("# EOF\n"));
}
