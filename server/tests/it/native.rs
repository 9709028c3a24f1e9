//! `POST /api/v1/ingest`: the agent's path.

use firewatch_profile::{Profile, SampleType, gzip, zstd};
use serde_json::json;

use crate::harness::{Req, TestServer, base_ms, cpu_profile, enc, folded, folded_map};
use crate::on_every_backend;

fn ingest(labels: &str, body: Vec<u8>) -> Req {
    Req::post(format!("/api/v1/ingest?{labels}"), body)
}

async fn stores_zstd_gzip_and_raw_bodies(s: &TestServer) {
    let t = base_ms();
    let raw = cpu_profile(&[("main;work;hot", 30), ("main;idle", 10)], t).to_pprof_bytes();
    let zstd_body = zstd(&raw, 3).unwrap();
    let r = s
        .send(
            ingest("service_name=checkout&host=web-1", zstd_body.clone())
                .header("Content-Encoding", "zstd"),
        )
        .await;
    assert_eq!(r.expect(200).json(), json!({ "stored": true }));
    s.send(
        ingest("service_name=checkout&host=web-2", gzip(&raw)).header("Content-Encoding", "gzip"),
    )
    .await
    .expect(200);
    s.send(ingest("service_name=checkout&host=web-3", raw.clone()))
        .await
        .expect(200);
    // Compression is also recognised without the header.
    s.send(ingest("service_name=checkout&host=web-4", zstd_body))
        .await
        .expect(200);

    let rows = folded_map(&folded(s, "checkout.cpu", t - 60_000, t + 60_000).await);
    assert_eq!(rows["main;work;hot"], 4 * 30 * 10_000_000);
    assert_eq!(rows["main;idle"], 4 * 10 * 10_000_000);
    let one = folded(
        s,
        r#"checkout.samples{host="web-2"}"#,
        t - 60_000,
        t + 60_000,
    )
    .await;
    assert_eq!(folded_map(&one)["main;work;hot"], 30);

    let hosts = s.send(Req::get("/label-values?label=host")).await;
    assert_eq!(
        hosts.expect(200).json(),
        json!(["web-1", "web-2", "web-3", "web-4"])
    );
    // `__name__` is inferred from the sample types.
    let names = s.send(Req::get("/label-values?label=__name__")).await;
    assert_eq!(names.expect(200).json(), json!(["process_cpu"]));
}

async fn keeps_an_explicit_profile_name(s: &TestServer) {
    let t = base_ms();
    let mut p = Profile::new(vec![SampleType::new("alloc_space", "bytes")]);
    p.add_named_sample(&["main", "alloc"], &[4096]);
    p.time_nanos = t * 1_000_000;
    s.send(ingest("service_name=api&__name__=heap", p.to_pprof_bytes()))
        .await
        .expect(200);
    let names = s
        .send(Req::get(format!(
            "/label-values?label=__name__&query={}",
            enc("{service_name=\"api\"}")
        )))
        .await;
    assert_eq!(names.expect(200).json(), json!(["heap"]));
    let rows = folded_map(&folded(s, "api.alloc_space", t - 1_000, t + 1_000).await);
    assert_eq!(rows["main;alloc"], 4096);
}

async fn refuses_bad_requests_and_stores_nothing(s: &TestServer) {
    let body = cpu_profile(&[("main", 1)], base_ms()).to_pprof_bytes();
    let cases: Vec<(Req, u16, &str)> = vec![
        (ingest("host=a", body.clone()), 400, "service_name"),
        (
            ingest("service_name=a&bad-name=x", body.clone()),
            400,
            "invalid label name",
        ),
        (
            ingest("service_name=a&__secret__=x", body.clone()),
            400,
            "reserved",
        ),
        (
            ingest("service_name=a&service_name=b", body.clone()),
            400,
            "more than once",
        ),
        (
            ingest("service_name=a", body.clone()).header("Content-Encoding", "br"),
            415,
            "Content-Encoding",
        ),
        (
            ingest("service_name=a", body.clone()).header("Content-Encoding", "gzip"),
            400,
            "not gzip-compressed",
        ),
        (
            ingest("service_name=a", b"\x0a\xff\xff garbage".to_vec()),
            400,
            "malformed pprof",
        ),
        (ingest("service_name=a", Vec::new()), 400, "empty body"),
        (
            ingest("service_name=a", body.clone()).tenant("a/b"),
            400,
            "X-Scope-OrgID",
        ),
    ];
    for (req, status, needle) in cases {
        let message = s.send(req.clone()).await.error(status);
        assert!(message.contains(needle), "{req:?}: {message}");
    }
    assert_eq!(s.blocks().await, 0);
}

async fn accepts_an_empty_profile_without_storing_it(s: &TestServer) {
    let empty = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]).to_pprof_bytes();
    let r = s.send(ingest("service_name=idle", empty)).await;
    assert_eq!(r.expect(200).json(), json!({ "stored": false }));
    assert_eq!(s.blocks().await, 0);
}

async fn tenants_are_isolated(s: &TestServer) {
    let t = base_ms();
    let a = cpu_profile(&[("main;tenant_a", 5)], t).to_pprof_bytes();
    let b = cpu_profile(&[("main;default", 7)], t).to_pprof_bytes();
    s.send(ingest("service_name=shared", a).tenant("team-a"))
        .await
        .expect(200);
    s.send(ingest("service_name=shared", b)).await.expect(200);
    let query = format!(
        "/render?query=shared.samples&from={}&until={}&format=folded",
        t - 1_000,
        t + 1_000
    );
    let own = s.send(Req::get(&query).tenant("team-a")).await;
    assert_eq!(own.expect(200).text(), "main;tenant_a 5\n");
    let default = s.send(Req::get(&query)).await;
    assert_eq!(default.expect(200).text(), "main;default 7\n");
    let other = s.send(Req::get(&query).tenant("team-b")).await;
    assert_eq!(other.expect(200).text(), "");
}

on_every_backend!(
    stores_zstd_gzip_and_raw_bodies,
    keeps_an_explicit_profile_name,
    refuses_bad_requests_and_stores_nothing,
    accepts_an_empty_profile_without_storing_it,
    tenants_are_isolated,
);
