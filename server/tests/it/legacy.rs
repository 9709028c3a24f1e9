//! `POST /ingest` (and `/pyroscope/ingest`): Pyroscope's original API.

use firewatch_profile::{Profile, SampleType, gzip};
use serde_json::json;

use crate::harness::{Req, TestServer, base_ms, cpu_profile, enc, folded, folded_map};
use crate::on_every_backend;

fn ingest(path: &str, name: &str, extra: &str, body: impl Into<Vec<u8>>) -> Req {
    Req::post(format!("{path}?name={}{extra}", enc(name)), body)
}

async fn folded_with_sample_rate_and_spy(s: &TestServer) {
    let t = base_ms();
    let (from, until) = (t / 1000, t / 1000 + 10);
    let r = s
        .send(ingest(
            "/ingest",
            "shop.cpu{env=prod,region=eu}",
            &format!("&from={from}&until={until}&sampleRate=100&spyName=pyspy"),
            "main;work;hot 30\nmain;idle 10\n",
        ))
        .await;
    assert_eq!(r.expect(200).json(), json!({ "stored": true }));
    let window = (t - 1_000, t + 20_000);
    let cpu = folded_map(&folded(s, r#"shop.cpu{env="prod"}"#, window.0, window.1).await);
    assert_eq!(cpu["main;work;hot"], 30 * 10_000_000);
    let samples = folded_map(&folded(s, "shop.samples", window.0, window.1).await);
    assert_eq!(samples["main;idle"], 10);

    let json = s
        .send(Req::get(format!(
            "/render?query={}&from={}&until={}",
            enc("shop.cpu"),
            window.0,
            window.1
        )))
        .await;
    let json = json.expect(200).json();
    assert_eq!(json["metadata"]["spyName"], "pyspy");
    assert_eq!(json["metadata"]["units"], "samples");
    assert_eq!(json["metadata"]["sampleRate"], 1_000_000_000);
    let names = s.send(Req::get("/label-values?label=__name__")).await;
    assert_eq!(names.expect(200).json(), json!(["process_cpu"]));
    let labels = s.send(Req::get("/labels")).await;
    assert_eq!(
        labels.expect(200).json(),
        json!(["__name__", "env", "pyroscope_spy", "region", "service_name"])
    );
}

async fn lines_and_memory_types(s: &TestServer) {
    let t = base_ms();
    let at = format!("&from={}", t / 1000);
    s.send(ingest(
        "/ingest",
        "mem.alloc_space",
        &format!("{at}&format=lines&units=bytes"),
        "main;alloc\nmain;alloc\nmain;other\n",
    ))
    .await
    .expect(200);
    s.send(ingest(
        "/pyroscope/ingest",
        "heap.inuse_objects",
        &format!("{at}&units=objects&aggregationType=average"),
        "main;keep 7\n",
    ))
    .await
    .expect(200);
    let alloc = folded_map(&folded(s, "mem.alloc_space", t - 1_000, t + 1_000).await);
    assert_eq!((alloc["main;alloc"], alloc["main;other"]), (2, 1));
    let inuse = folded_map(&folded(s, "heap.inuse_objects", t - 1_000, t + 1_000).await);
    assert_eq!(inuse["main;keep"], 7);
    let names = s.send(Req::get("/label-values?label=__name__")).await;
    assert_eq!(names.expect(200).json(), json!(["memory"]));
    let services = s
        .send(Req::get("/api/v1/services"))
        .await
        .expect(200)
        .json();
    let mem = services["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mem")
        .unwrap_or_else(|| panic!("{services}"));
    let types = mem["profileTypes"].as_array().unwrap().clone();
    assert!(
        types.contains(&json!("memory:alloc_space:bytes:alloc_space:bytes")),
        "{types:?}"
    );
}

fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "firewatch-test-boundary";
    let mut body = Vec::new();
    for (name, data) in parts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{name}\"\r\n\
                 Content-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn pprof_raw_gzipped_and_multipart(s: &TestServer) {
    let t = base_ms();
    let at = format!("&from={}&until={}", t / 1000, t / 1000 + 10);
    let raw = cpu_profile(&[("main;pp", 5)], t).to_pprof_bytes();
    s.send(ingest(
        "/ingest",
        "pp{host=a}",
        &format!("{at}&format=pprof&spyName=gospy"),
        raw.clone(),
    ))
    .await
    .expect(200);
    s.send(ingest(
        "/pyroscope/ingest",
        "pp.cpu{host=b}",
        &format!("{at}&format=pprof"),
        gzip(&raw),
    ))
    .await
    .expect(200);
    let rows = folded_map(&folded(s, "pp.cpu", t - 1_000, t + 20_000).await);
    assert_eq!(rows["main;pp"], 2 * 5 * 10_000_000);

    // Go's mutex profile, as the Go SDK sends it: multipart with a
    // sample_type_config naming the legacy types.
    let mut mutex = Profile::new(vec![
        SampleType::new("contentions", "count"),
        SampleType::new("delay", "nanoseconds"),
    ]);
    mutex.add_named_sample(&["main", "lock"], &[3, 9_000]);
    let config = br#"{"contentions":{"units":"lock_samples","display-name":"mutex_count"},
                      "delay":{"units":"lock_nanoseconds","display-name":"mutex_duration"}}"#;
    let pprof = mutex.to_pprof_bytes();
    let (content_type, body) = multipart(&[
        ("profile", &pprof),
        ("prev_profile", b"ignored"),
        ("sample_type_config", config),
    ]);
    s.send(ingest("/ingest", "pp", &at, body).header("Content-Type", &content_type))
        .await
        .expect(200);
    let rows = folded_map(&folded(s, "pp.mutex_duration", t - 1_000, t + 20_000).await);
    assert_eq!(rows["main;lock"], 9_000);
    let names = s
        .send(Req::get(format!(
            "/label-values?label=__name__&query={}",
            enc("pp.cpu")
        )))
        .await;
    assert_eq!(names.expect(200).json(), json!(["mutex", "process_cpu"]));
}

async fn refuses_what_it_cannot_read(s: &TestServer) {
    let cases: Vec<(Req, u16, &str)> = vec![
        (
            ingest("/ingest", "a.cpu", "&format=jfr", "x"),
            415,
            "not supported",
        ),
        (
            ingest("/ingest", "a.cpu", "&format=trie", "x"),
            415,
            "not supported",
        ),
        (
            ingest("/ingest", "a.cpu", "&format=speedscope", "{}"),
            415,
            "not supported",
        ),
        (Req::post("/ingest?from=now", "main 1"), 400, "`name`"),
        (
            ingest("/ingest", "a.cpu", "&from=yesterday", "main 1"),
            400,
            "`from`",
        ),
        (
            ingest("/ingest", "a.cpu", "&sampleRate=fast", "main 1"),
            400,
            "sampleRate",
        ),
        (
            ingest("/ingest", "a.cpu", "", "main;x notanumber\n"),
            400,
            "line 1",
        ),
        (
            ingest("/ingest", "a.cpu", "&format=pprof", "garbage"),
            400,
            "malformed pprof",
        ),
        (ingest("/ingest", "a.cpu{env}", "", "main 1"), 400, "`name`"),
    ];
    for (req, status, needle) in cases {
        let message = s.send(req.clone()).await.error(status);
        assert!(message.contains(needle), "{req:?}: {message}");
    }
    // Reserved labels in the name are dropped, as Pyroscope does.
    s.send(ingest(
        "/ingest",
        "ok.cpu{__session_id__=1}",
        "",
        "main 1\n",
    ))
    .await
    .expect(200);
    let labels = s.send(Req::get("/labels")).await.expect(200).json();
    assert_eq!(labels, json!(["__name__", "service_name"]));
}

/// Dots in label names become underscores, as Pyroscope stores them.
async fn dotted_label_names(s: &TestServer) {
    let t = base_ms();
    let at = format!("&from={}&until={}", t / 1000, t / 1000 + 10);
    s.send(ingest(
        "/ingest",
        "dotted.app.cpu{k8s.pod.name=web-1}",
        &at,
        "main;dot 3\n",
    ))
    .await
    .expect(200);
    let labels = s.send(Req::get("/labels")).await.expect(200).json();
    assert_eq!(labels, json!(["__name__", "k8s_pod_name", "service_name"]));
    let query = r#"dotted.app.cpu{k8s.pod.name="web-1"}"#;
    let rows = folded_map(&folded(s, query, t - 1_000, t + 20_000).await);
    assert_eq!(rows["main;dot"], 3 * 10_000_000);
}

on_every_backend!(
    folded_with_sample_rate_and_spy,
    lines_and_memory_types,
    pprof_raw_gzipped_and_multipart,
    refuses_what_it_cannot_read,
    dotted_label_names,
);
