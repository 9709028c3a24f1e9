//! `GET /render`: every format, truncation, the selector form, errors.

use std::process::Command;

use firewatch_profile::{Compression, Limits, Profile, zstd};
use serde_json::{Value, json};

use crate::harness::{Req, TestServer, base_ms, corpus_pprof, cpu_profile, enc, folded_map};
use crate::on_every_backend;

async fn put(s: &TestServer, service: &str, body: Vec<u8>) {
    s.send(
        Req::post(
            format!("/api/v1/ingest?service_name={service}"),
            zstd(&body, 3).unwrap(),
        )
        .header("Content-Encoding", "zstd"),
    )
    .await
    .expect(200);
}

fn render(query: &str, t: i64, extra: &str) -> Req {
    Req::get(format!(
        "/render?query={}&from={}&until={}{extra}",
        enc(query),
        t - 60_000,
        t + 60_000
    ))
}

fn node_count(flamebearer: &Value) -> usize {
    let width = if flamebearer["format"] == "double" {
        7
    } else {
        4
    };
    flamebearer["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_array().unwrap().len() / width)
        .sum()
}

async fn every_format(s: &TestServer) {
    let t = base_ms();
    put(
        s,
        "checkout",
        cpu_profile(&[("main;work;hot", 30), ("main;idle", 10)], t).to_pprof_bytes(),
    )
    .await;
    put(
        s,
        "checkout",
        cpu_profile(&[("main;work;hot", 5)], t + 10_000).to_pprof_bytes(),
    )
    .await;
    let total = 45 * 10_000_000i64;

    let json = s.send(render("checkout.cpu", t, "&format=json")).await;
    assert_eq!(
        json.expect(200).header("content-type"),
        Some("application/json")
    );
    let json = json.json();
    assert_eq!(json["version"], 1);
    let fb = &json["flamebearer"];
    assert_eq!(fb["names"][0], "total");
    assert_eq!(fb["numTicks"], total);
    assert_eq!(fb["maxSelf"], 35 * 10_000_000i64);
    assert_eq!(fb["levels"][0], serde_json::json!([0, total, 0, 0]));
    assert_eq!(node_count(fb), 5);
    let meta = &json["metadata"];
    assert_eq!(meta["format"], "single");
    assert_eq!(meta["units"], "samples");
    assert_eq!(meta["sampleRate"], 1_000_000_000);
    assert_eq!(meta["name"], "checkout.cpu");
    let timeline = &json["timeline"];
    let sum: i64 = timeline["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(sum, total);
    assert!(timeline["startTime"].as_i64().unwrap() <= t / 1000);
    assert!(timeline["durationDelta"].as_i64().unwrap() > 0);

    let svg = s
        .send(render("checkout.cpu", t, "&format=svg&icicle=true"))
        .await;
    assert_eq!(
        svg.expect(200).header("content-type"),
        Some("image/svg+xml")
    );
    let text = svg.text();
    assert!(
        text.contains("<svg") && text.contains("hot"),
        "{}",
        &text[..200.min(text.len())]
    );

    let folded = s
        .send(render("checkout.cpu", t, "&format=folded"))
        .await
        .expect(200)
        .text();
    let rows = folded_map(&folded);
    assert_eq!(rows["main;work;hot"], 35 * 10_000_000);
    assert_eq!(rows["main;idle"], 10 * 10_000_000);

    let pprof = s.send(render("checkout.cpu", t, "&format=pprof")).await;
    pprof.expect(200);
    assert_eq!(Compression::detect(&pprof.body), Compression::Gzip);
    let decoded = Profile::from_pprof_bytes(&pprof.body, &Limits::default()).unwrap();
    assert_eq!(decoded.total(0), total);
    go_pprof_reads(&pprof.body, "hot");
}

/// `go tool pprof` reads the export (skipped with FIREWATCH_SKIP_GO_TESTS=1).
fn go_pprof_reads(bytes: &[u8], function: &str) {
    if std::env::var("FIREWATCH_SKIP_GO_TESTS").is_ok_and(|v| v == "1") {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("profile.pb.gz");
    std::fs::write(&file, bytes).unwrap();
    let out = Command::new("go")
        .env("HOME", home.path())
        .env("GOCACHE", home.path().join("cache"))
        .env("GOPATH", home.path().join("gopath"))
        .env("PPROF_TMPDIR", home.path().join("pprof"))
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOTELEMETRY", "off")
        .args(["tool", "pprof", "-symbolize=none", "-top"])
        .arg(&file)
        .output()
        .expect("`go` on PATH (apt-get install golang-go), or FIREWATCH_SKIP_GO_TESTS=1");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(function), "{stdout}");
}

async fn max_nodes_keeps_totals_exact(s: &TestServer) {
    let t = base_ms();
    let mut p = Profile::from_pprof_bytes(&corpus_pprof(1), &Limits::default()).unwrap();
    p.time_nanos = t * 1_000_000;
    put(s, "big", p.to_pprof_bytes()).await;
    let kind = p.sample_types()[0].kind.clone();
    let query = format!("big.{kind}");
    let full = s.send(render(&query, t, "")).await.expect(200).json();
    let small = s
        .send(render(&query, t, "&maxNodes=20"))
        .await
        .expect(200)
        .json();
    assert_eq!(
        small["flamebearer"]["numTicks"],
        full["flamebearer"]["numTicks"]
    );
    assert!(node_count(&full["flamebearer"]) > 20);
    assert!(node_count(&small["flamebearer"]) <= 20);
    let names = small["flamebearer"]["names"].as_array().unwrap();
    assert!(names.contains(&Value::from("other")), "{names:?}");

    let folded = s
        .send(render(&query, t, "&format=folded&maxNodes=20"))
        .await
        .expect(200)
        .text();
    let rows = folded_map(&folded);
    assert_eq!(rows.values().sum::<i64>(), p.total(0));
    assert!(rows.keys().any(|k| k.ends_with("other")), "{folded}");
    let svg = s
        .send(render(&query, t, "&format=svg&maxNodes=20"))
        .await
        .expect(200)
        .text();
    assert!(svg.contains("other"));
}

async fn selector_form_and_errors(s: &TestServer) {
    let t = base_ms();
    put(s, "sel", cpu_profile(&[("main;a", 2)], t).to_pprof_bytes()).await;
    let r = s
        .send(render(
            r#"{service_name="sel"}"#,
            t,
            "&profile_type=process_cpu:cpu:nanoseconds:cpu:nanoseconds",
        ))
        .await;
    assert_eq!(r.expect(200).json()["flamebearer"]["numTicks"], 20_000_000);
    // Without a type anywhere, CPU: `{}` is every service's CPU.
    for query in [r#"{service_name="sel"}"#, "{}"] {
        let r = s.send(render(query, t, "")).await;
        assert_eq!(
            r.expect(200).json()["flamebearer"]["numTicks"],
            20_000_000,
            "{query}"
        );
    }

    let cases: Vec<(Req, &str)> = vec![
        (render(r#"sel.cpu{env="x" zone="y"}"#, t, ""), "position 16"),
        (render(r#"sel.cpu{env~"x"}"#, t, ""), "position 11"),
        (Req::get("/render?from=now-1h"), "`query`"),
        (
            Req::get("/render?query=sel.cpu&from=now&until=now-1h"),
            "must be after",
        ),
        (Req::get("/render?query=sel.cpu&from=tomorrow"), "`from`"),
        (render("sel.cpu", t, "&format=dot"), "`format`"),
        (render("sel.cpu", t, "&maxNodes=0"), "maxNodes"),
        (render("sel.cpu", t, "&icicle=maybe"), "icicle"),
    ];
    for (req, needle) in cases {
        let message = s.send(req.clone()).await.error(400);
        assert!(message.contains(needle), "{req:?}: {message}");
    }
    // The kind, and a syntax error's position, are fields of their own.
    let r = s.send(render(r#"sel.cpu{env="x" zone="y"}"#, t, "")).await;
    let body = r.expect(400).json();
    assert_eq!(
        (&body["kind"], &body["position"]),
        (&json!("bad_request"), &json!(16))
    );
    let r = s.send(render("sel.cpu", t, "&maxNodes=0")).await;
    let body = r.expect(400).json();
    assert_eq!(body["kind"], "bad_request");
    assert!(body.get("position").is_none(), "{body}");
}

async fn an_empty_range_is_an_answer(s: &TestServer) {
    let t = base_ms();
    let json = s
        .send(render("nothing.cpu", t, ""))
        .await
        .expect(200)
        .json();
    assert_eq!(json["flamebearer"]["numTicks"], 0);
    let svg = s
        .send(render("nothing.cpu", t, "&format=svg"))
        .await
        .expect(200)
        .text();
    assert!(svg.contains("No samples"), "{svg}");
    let folded = s
        .send(render("nothing.cpu", t, "&format=folded"))
        .await
        .expect(200)
        .text();
    assert_eq!(folded, "");
    let pprof = s.send(render("nothing.cpu", t, "&format=pprof")).await;
    let decoded = Profile::from_pprof_bytes(&pprof.expect(200).body, &Limits::default()).unwrap();
    assert!(decoded.is_empty());
}

on_every_backend!(
    every_format,
    max_nodes_keeps_totals_exact,
    selector_form_and_errors,
    an_empty_range_is_an_answer,
);
