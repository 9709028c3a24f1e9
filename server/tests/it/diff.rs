//! `GET /render-diff`: two windows compared by share.

use serde_json::json;

use crate::harness::{Req, TestServer, base_ms, cpu_profile, enc};
use crate::on_every_backend;

const HOUR: i64 = 3_600_000;

async fn two_windows(s: &TestServer) {
    let t = base_ms() - HOUR;
    let before = cpu_profile(&[("main;a", 50), ("main;b", 50)], t).to_pprof_bytes();
    let after =
        cpu_profile(&[("main;a", 10), ("main;b", 60), ("main;c", 30)], t + HOUR).to_pprof_bytes();
    for body in [before, after] {
        s.send(Req::post("/api/v1/ingest?service_name=checkout", body))
            .await
            .expect(200);
    }
    let windows = format!(
        "leftQuery={q}&leftFrom={}&leftUntil={}&rightQuery={q}&rightFrom={}&rightUntil={}",
        t - 60_000,
        t + 60_000,
        t + HOUR - 60_000,
        t + HOUR + 60_000,
        q = enc("checkout.cpu")
    );

    let json = s
        .send(Req::get(format!("/render-diff?{windows}")))
        .await
        .expect(200)
        .json();
    let fb = &json["flamebearer"];
    assert_eq!(fb["format"], "double");
    assert_eq!(fb["leftTicks"], 1_000_000_000);
    assert_eq!(fb["rightTicks"], 1_000_000_000);
    assert_eq!(json["leftTicks"], 1_000_000_000);
    assert_eq!(json["metadata"]["format"], "double");
    // Root, main, a, b, c: 7 numbers each.
    let numbers: usize = fb["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_array().unwrap().len())
        .sum();
    assert_eq!(numbers, 5 * 7);
    let functions = json["functions"].as_array().unwrap();
    let names: Vec<&str> = functions
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "c", "b"]);
    assert_eq!(functions[0]["beforeSelfPercent"], 50.0);
    assert_eq!(functions[0]["afterSelfPercent"], 10.0);
    assert_eq!(functions[0]["deltaSelfPercent"], -40.0);
    assert_eq!(json["palette"]["name"], "default");
    let sum: i64 = json["rightTimeline"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_i64().unwrap())
        .sum();
    assert_eq!(sum, 1_000_000_000);

    let blind = s
        .send(Req::get(format!(
            "/render-diff?{windows}&colorBlind=true&limit=1"
        )))
        .await
        .expect(200)
        .json();
    assert_eq!(blind["palette"]["name"], "colorblind");
    assert_eq!(blind["functions"].as_array().unwrap().len(), 1);

    let folded = s
        .send(Req::get(format!("/render-diff?{windows}&format=folded")))
        .await
        .expect(200)
        .text();
    let lines: Vec<&str> = folded.lines().collect();
    assert_eq!(
        lines,
        [
            "main;a 500000000 100000000",
            "main;b 500000000 600000000",
            "main;c 0 300000000"
        ]
    );

    let svg = s
        .send(Req::get(format!("/render-diff?{windows}&format=svg")))
        .await;
    svg.expect(200);
    assert_eq!(svg.header("content-type"), Some("image/svg+xml"));
    assert!(svg.text().contains("<svg"));

    // `query` stands for both sides.
    let same = format!(
        "/render-diff?query={}&leftFrom={}&leftUntil={}&rightFrom={}&rightUntil={}&format=folded",
        enc("checkout.samples"),
        t - 60_000,
        t + 60_000,
        t + HOUR - 60_000,
        t + HOUR + 60_000
    );
    let rows = s.send(Req::get(same)).await.expect(200).text();
    assert!(rows.contains("main;c 0 30\n"), "{rows}");
}

async fn diff_errors(s: &TestServer) {
    let cases = [
        ("/render-diff?leftFrom=now-2h", "leftQuery"),
        ("/render-diff?query=a.cpu&format=pprof", "`format`"),
        (
            "/render-diff?query=a.cpu&rightFrom=now&rightUntil=now-1h",
            "rightUntil",
        ),
        (
            "/render-diff?leftQuery=a.cpu%7B&rightQuery=a.cpu",
            "leftQuery",
        ),
    ];
    for (target, needle) in cases {
        let message = s.send(Req::get(target)).await.error(400);
        assert!(message.contains(needle), "{target}: {message}");
    }
    let empty = s
        .send(Req::get("/render-diff?query=none.cpu"))
        .await
        .expect(200)
        .json();
    assert_eq!(empty["leftTicks"], json!(0));
}

on_every_backend!(two_windows, diff_errors);
