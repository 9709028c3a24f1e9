//! What a reader asks of a merged profile beyond `/render`'s tree: the
//! function table and the sandwich (with its tables of direct callers and
//! callees), kernel marks, the `[truncated stack]` marker hidden, and one
//! flamegraph of every service (`groupBy`).

use firewatch_profile::{KERNEL_FILE, TRUNCATED};
use serde_json::Value;

use crate::harness::{Req, TestServer, base_ms, cpu_profile, enc, folded_map};
use crate::on_every_backend;

const CPU: &str = "&profile_type=process_cpu:cpu:nanoseconds:cpu:nanoseconds";

async fn put(s: &TestServer, service: &str, body: Vec<u8>) {
    s.send(Req::post(
        format!("/api/v1/ingest?service_name={service}"),
        body,
    ))
    .await
    .expect(200);
}

async fn get(s: &TestServer, path: &str, query: &str, t: i64, extra: &str) -> Value {
    s.send(Req::get(format!(
        "{path}?query={}&from={}&until={}{CPU}{extra}",
        enc(query),
        t - 60_000,
        t + 60_000
    )))
    .await
    .expect(200)
    .json()
}

/// `deep` has two truncated stacks and one complete one, through a
/// kernel function.
async fn deep_service(s: &TestServer, t: i64) {
    let mut p = cpu_profile(
        &[
            ("[truncated stack];work;leaf", 6),
            ("_start;main;work;leaf", 3),
            ("[truncated stack];work;spin", 1),
        ],
        t,
    );
    let frames = [
        p.intern_function("_start", "", 0),
        p.intern_function("main", "", 0),
        p.intern_function("read", "", 0),
        p.intern_function("ksys_read", KERNEL_FILE, 0),
    ];
    p.add_sample(&frames, &[2, 20_000_000]);
    put(s, "deep", p.to_pprof_bytes()).await;
}

async fn functions_sandwich_and_markers(s: &TestServer) {
    let t = base_ms();
    deep_service(s, t).await;
    let rows = get(s, "/api/v1/functions", r#"{service_name="deep"}"#, t, "").await;
    let row = |name: &str| -> Value {
        rows["functions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(row("ksys_read")["kernel"], true);
    assert!(row("read").get("kernel").is_none(), "{}", row("read"));
    assert_eq!(row(TRUNCATED)["total"], 70_000_000);

    // Direct callers and callees, ranked, from the whole profile.
    let sandwich = get(
        s,
        "/api/v1/sandwich",
        r#"{service_name="deep"}"#,
        t,
        "&function=work",
    )
    .await;
    let pairs = |key: &str| -> Vec<(String, i64)> {
        sandwich[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["name"].as_str().unwrap().to_owned(),
                    r["total"].as_i64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        pairs("callerRows"),
        [
            (TRUNCATED.to_owned(), 70_000_000),
            ("main".to_owned(), 30_000_000)
        ]
    );
    assert_eq!(
        pairs("calleeRows"),
        [
            ("leaf".to_owned(), 90_000_000),
            ("spin".to_owned(), 10_000_000)
        ]
    );
    let sandwich = get(
        s,
        "/api/v1/sandwich",
        r#"{service_name="deep"}"#,
        t,
        "&function=read",
    )
    .await;
    assert_eq!(sandwich["calleeRows"][0]["name"], "ksys_read");
    assert_eq!(sandwich["calleeRows"][0]["kernel"], true);
    assert_eq!(sandwich["callerRows"][0].get("kernel"), None);

    // Hidden markers: the same total, the outermost read frames as roots.
    for path in ["/render", "/api/v1/functions"] {
        let shown = get(s, path, r#"{service_name="deep"}"#, t, "").await;
        let hidden = get(
            s,
            path,
            r#"{service_name="deep"}"#,
            t,
            "&hideTruncated=true",
        )
        .await;
        let total = |v: &Value| {
            v["flamebearer"]["numTicks"]
                .as_i64()
                .or(v["total"].as_i64())
        };
        assert_eq!(total(&shown), total(&hidden), "{path}");
    }
    let folded = s
        .send(Req::get(format!(
            "/render?query={}&from={}&until={}{CPU}&format=folded&hideTruncated=true",
            enc(r#"{service_name="deep"}"#),
            t - 60_000,
            t + 60_000
        )))
        .await
        .expect(200)
        .text();
    let stacks = folded_map(&folded);
    assert_eq!(stacks.get("work;leaf"), Some(&60_000_000), "{folded}");
    assert!(!folded.contains(TRUNCATED), "{folded}");
    let sandwich = get(
        s,
        "/api/v1/sandwich",
        r#"{service_name="deep"}"#,
        t,
        "&function=work&hideTruncated=1",
    )
    .await;
    assert_eq!(sandwich["callerRows"].as_array().unwrap().len(), 1);
    let message = s
        .send(Req::get(
            "/render?query=deep.cpu&hideTruncated=perhaps".to_owned(),
        ))
        .await
        .error(400);
    assert!(message.contains("hideTruncated"), "{message}");

    // The kernel mark reaches the flamebearer's names.
    let render = get(s, "/render", r#"{service_name="deep"}"#, t, "").await;
    let fb = &render["flamebearer"];
    let kernel: Vec<&str> = fb["kernel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| fb["names"][i.as_u64().unwrap() as usize].as_str().unwrap())
        .collect();
    assert_eq!(kernel, ["ksys_read"]);
}

async fn one_root_per_service(s: &TestServer) {
    let t = base_ms();
    put(
        s,
        "alpha",
        cpu_profile(&[("main;a", 1)], t).to_pprof_bytes(),
    )
    .await;
    put(s, "busy", cpu_profile(&[("main;b", 7)], t).to_pprof_bytes()).await;
    put(
        s,
        "middle",
        cpu_profile(&[("main;m", 2)], t).to_pprof_bytes(),
    )
    .await;
    let all = get(s, "/render", "{}", t, "&groupBy=service_name").await;
    let fb = &all["flamebearer"];
    assert_eq!(fb["numTicks"], 100_000_000);
    let name = |i: &Value| {
        fb["names"][i.as_u64().unwrap() as usize]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let roots: Vec<(String, i64)> = fb["levels"][1]
        .as_array()
        .unwrap()
        .chunks(4)
        .map(|n| (name(&n[3]), n[1].as_i64().unwrap()))
        .collect();
    assert_eq!(
        roots,
        [
            ("alpha".into(), 10_000_000),
            ("busy".into(), 70_000_000),
            ("middle".into(), 20_000_000)
        ]
    );
    let timeline: i64 = all["timeline"]["samples"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .sum();
    assert_eq!(timeline, 100_000_000, "the timeline is every service's");
    // Folded output carries the roots too.
    let folded = s
        .send(Req::get(format!(
            "/render?query=%7B%7D&from={}&until={}{CPU}&format=folded&groupBy=service_name",
            t - 60_000,
            t + 60_000
        )))
        .await
        .expect(200)
        .text();
    assert_eq!(
        folded_map(&folded).get("busy;main;b"),
        Some(&70_000_000),
        "{folded}"
    );
    let message = s
        .send(Req::get(
            "/render?query=%7B%7D&groupBy=service-name".to_owned(),
        ))
        .await
        .error(400);
    assert!(message.contains("groupBy"), "{message}");
}

on_every_backend!(functions_sandwich_and_markers, one_root_per_service);
