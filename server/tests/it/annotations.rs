//! `POST /api/annotations` and `GET /api/annotations`: storing, label
//! filtering, windows, tenants, bad input and retention; and the web UI
//! embedded in the binary.

use serde_json::{Value, json};

use crate::harness::{Req, TestServer, base_ms, enc};
use crate::on_every_backend;

const MINUTE: i64 = 60_000;

/// 2025-11-29T10:00:00Z, Unix milliseconds.
const T: i64 = 1_764_410_400_000;

/// Posts an annotation, asserting `201`; returns the answer.
async fn post(s: &TestServer, tenant: Option<&str>, body: Value) -> Value {
    let mut req =
        Req::post("/api/annotations", body.to_string()).header("Content-Type", "application/json");
    if let Some(t) = tenant {
        req = req.tenant(t);
    }
    s.send(req).await.expect(201).json()
}

/// The texts of `GET /api/annotations` with these parameters, in order.
async fn texts(s: &TestServer, tenant: Option<&str>, params: &str) -> Vec<String> {
    let mut req = Req::get(format!("/api/annotations?{params}"));
    if let Some(t) = tenant {
        req = req.tenant(t);
    }
    let answer = s.send(req).await.expect(200).json();
    answer["annotations"]
        .as_array()
        .unwrap_or_else(|| panic!("no annotations array: {answer}"))
        .iter()
        .map(|a| a["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn window(from: i64, until: i64) -> String {
    format!("from={from}&until={until}")
}

async fn post_and_list(s: &TestServer) {
    let t = T;
    let stored = post(
        s,
        None,
        json!({"time": t + MINUTE, "text": "deploy 1.5",
               "labels": {"service_name": "checkout", "version": "1.5", "empty": ""}}),
    )
    .await;
    assert!(stored["id"].as_i64().is_some_and(|id| id > 0), "{stored}");
    assert_eq!(stored["time"], t + MINUTE);
    assert_eq!(stored["text"], "deploy 1.5");
    // An empty value is no label.
    assert_eq!(
        stored["labels"],
        json!({"service_name": "checkout", "version": "1.5"})
    );

    // The server's time syntax, as a string; inserted out of order.
    let rfc3339 = post(
        s,
        None,
        json!({"time": "2025-11-29T10:00:00Z", "text": "config change"}),
    )
    .await;
    assert_eq!(rfc3339["time"], t);
    assert_eq!(rfc3339["labels"], json!({}));
    let relative = post(s, None, json!({"time": "now-10m", "text": "recent"})).await;
    let now = firewatch_server::time::now_ms();
    let when = relative["time"].as_i64().unwrap_or_default();
    assert!(
        (now - 11 * MINUTE..=now - 9 * MINUTE).contains(&when),
        "{relative}"
    );
    let now_one = post(s, None, json!({"text": "just now"})).await;
    assert!(now_one["time"].as_i64().unwrap_or_default() >= now - MINUTE);

    let answer = s
        .send(Req::get(format!(
            "/api/annotations?{}",
            window(t, t + 10 * MINUTE)
        )))
        .await
        .expect(200)
        .json();
    assert_eq!(
        answer,
        json!({"annotations": [
            {"id": rfc3339["id"], "time": t, "text": "config change", "labels": {}},
            {"id": stored["id"], "time": t + MINUTE, "text": "deploy 1.5",
             "labels": {"service_name": "checkout", "version": "1.5"}},
        ]})
    );
    // The default window is the last hour.
    assert_eq!(texts(s, None, "").await, ["recent", "just now"]);
}

async fn label_filtering(s: &TestServer) {
    let t = base_ms();
    for (i, (text, labels)) in [
        (
            "checkout 1.5",
            json!({"service_name": "checkout", "version": "1.5"}),
        ),
        ("payments", json!({"service_name": "payments"})),
        ("everywhere", json!({})),
        (
            "checkout dev",
            json!({"service_name": "checkout", "env": "dev"}),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        post(
            s,
            None,
            json!({"time": t + i as i64 * MINUTE, "text": text, "labels": labels}),
        )
        .await;
    }
    let w = window(t, t + 10 * MINUTE);
    let query = |q: &str| format!("query={}&{w}", enc(q));
    assert_eq!(
        texts(s, None, &w).await,
        ["checkout 1.5", "payments", "everywhere", "checkout dev"]
    );
    // The application of `app.type` is a service_name matcher.
    assert_eq!(
        texts(s, None, &query("checkout.cpu")).await,
        ["checkout 1.5", "everywhere", "checkout dev"]
    );
    // A matcher on a label the annotation lacks is ignored.
    assert_eq!(
        texts(s, None, &query(r#"{service_name="checkout", env="prod"}"#)).await,
        ["checkout 1.5", "everywhere"]
    );
    assert_eq!(
        texts(s, None, &query(r#"checkout.cpu{version="1.5"}"#)).await,
        ["checkout 1.5", "everywhere", "checkout dev"]
    );
    assert_eq!(
        texts(s, None, &query(r#"checkout.cpu{version!="1.5"}"#)).await,
        ["everywhere", "checkout dev"]
    );
    assert_eq!(
        texts(s, None, &query(r#"{service_name=~"pay.*"}"#)).await,
        ["payments", "everywhere"]
    );
    let message = s
        .send(Req::get(format!(
            "/api/annotations?query={}",
            enc(r#"{env="prod""#)
        )))
        .await
        .error(400);
    assert!(message.contains("position"), "{message}");
}

async fn time_range(s: &TestServer) {
    let t = base_ms();
    for (offset, text) in [(-10, "before"), (0, "at start"), (10, "at end")] {
        post(s, None, json!({"time": t + offset * MINUTE, "text": text})).await;
    }
    // `from` is inclusive, `until` exclusive.
    assert_eq!(
        texts(s, None, &window(t, t + 10 * MINUTE)).await,
        ["at start"]
    );
    assert_eq!(
        texts(s, None, &window(t - 10 * MINUTE, t + 10 * MINUTE + 1)).await,
        ["before", "at start", "at end"]
    );
    assert!(
        texts(s, None, &window(t + MINUTE, t + 2 * MINUTE))
            .await
            .is_empty()
    );
    let message = s
        .send(Req::get(format!(
            "/api/annotations?{}",
            window(t, t - MINUTE)
        )))
        .await
        .error(400);
    assert!(message.contains("`until`"), "{message}");
    let message = s
        .send(Req::get("/api/annotations?from=yesterday"))
        .await
        .error(400);
    assert!(message.contains("`from`"), "{message}");
}

async fn tenants_are_isolated(s: &TestServer) {
    let t = base_ms();
    post(s, Some("team-a"), json!({"time": t, "text": "a's deploy"})).await;
    post(s, Some("team-b"), json!({"time": t, "text": "b's deploy"})).await;
    let w = window(t - MINUTE, t + MINUTE);
    assert_eq!(texts(s, Some("team-a"), &w).await, ["a's deploy"]);
    assert_eq!(texts(s, Some("team-b"), &w).await, ["b's deploy"]);
    assert!(texts(s, None, &w).await.is_empty());
    assert!(texts(s, Some("team-c"), &w).await.is_empty());
}

async fn bad_input_is_refused(s: &TestServer) {
    let t = base_ms();
    let refuse = |body: String| async move {
        s.send(Req::post("/api/annotations", body).header("Content-Type", "application/json"))
            .await
            .error(400)
    };
    let message = refuse(json!({"time": t}).to_string()).await;
    assert!(message.contains("missing field `text`"), "{message}");
    let message = refuse(json!({"text": ""}).to_string()).await;
    assert!(message.contains("`text` is empty"), "{message}");
    let message = refuse(json!({"text": "x".repeat(1025)}).to_string()).await;
    assert!(
        message.contains("`text` is 1025 bytes, over the limit of 1024"),
        "{message}"
    );
    let message = refuse(json!({"text": "x", "time": "tomorrow"}).to_string()).await;
    assert!(message.contains("field `time`"), "{message}");
    let message = refuse(json!({"text": "x", "time": -5}).to_string()).await;
    assert!(message.contains("field `time`"), "{message}");
    let message = refuse(json!({"text": "x", "labels": {"bad-name": "1"}}).to_string()).await;
    assert!(
        message.contains("invalid label name \"bad-name\""),
        "{message}"
    );
    let message = refuse(json!({"text": "x", "labels": {"a": "v".repeat(1025)}}).to_string()).await;
    assert!(message.contains("over the limit of 1024"), "{message}");
    let many: serde_json::Map<String, Value> =
        (0..33).map(|i| (format!("l{i}"), json!("v"))).collect();
    let message = refuse(json!({"text": "x", "labels": many}).to_string()).await;
    assert!(message.contains("over the limit of 32"), "{message}");
    let message = refuse("text=deploy".to_owned()).await;
    assert!(message.contains("not JSON"), "{message}");
    let message = s
        .send(Req::post("/api/annotations", json!({"text": "x"}).to_string()).tenant("a/b"))
        .await
        .error(400);
    assert!(message.contains("X-Scope-OrgID"), "{message}");
    // Nothing of a refused request was stored.
    assert!(texts(s, None, &window(0, t + 3_600_000)).await.is_empty());
}

async fn retention_deletes_old_annotations(s: &TestServer) {
    let t = base_ms();
    post(s, None, json!({"time": t - 2 * MINUTE, "text": "old"})).await;
    post(s, None, json!({"time": t, "text": "kept"})).await;
    let report = s.store.apply_retention(t).await.expect("retention");
    assert_eq!(report.annotations, 1);
    assert_eq!(
        texts(s, None, &window(t - 10 * MINUTE, t + MINUTE)).await,
        ["kept"]
    );
}

async fn at_most_a_thousand_filtered_after_paging(s: &TestServer) {
    use firewatch_server::store::{Labels, MAX_ANNOTATIONS, NewAnnotation};
    let t = base_ms();
    let service = |name: &str| Labels::from([("service_name".to_owned(), name.to_owned())]);
    // More than a page of another service's annotations first, so the ones
    // a query asks for are only found on a later page.
    for (i, name) in (0..1_100)
        .map(|_| "payments")
        .chain((0..3).map(|_| "checkout"))
        .enumerate()
    {
        s.store
            .annotate(NewAnnotation {
                tenant: String::new(),
                time_ms: t + i as i64,
                text: format!("{name} {i}"),
                labels: service(name),
            })
            .await
            .expect("annotate");
    }
    let w = window(t, t + MINUTE);
    assert_eq!(
        texts(s, None, &format!("query=checkout&{w}")).await,
        ["checkout 1100", "checkout 1101", "checkout 1102"]
    );
    let all = texts(s, None, &w).await;
    assert_eq!(all.len(), MAX_ANNOTATIONS);
    assert_eq!(all[0], "payments 0");
    assert_eq!(all[MAX_ANNOTATIONS - 1], "payments 999");
}

async fn the_ui_is_served(s: &TestServer) {
    let index = s.send(Req::get("/")).await;
    index.expect(200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(index.text().contains("<html"), "{}", index.text());
    assert_eq!(index.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let etag = index.header("etag").expect("an ETag").to_owned();
    assert!(etag.starts_with('"') && etag.len() == 66, "{etag}");
    assert_eq!(
        s.send(Req::get("/index.html")).await.expect(200).body,
        index.body
    );

    let cached = s.send(Req::get("/").header("If-None-Match", &etag)).await;
    cached.expect(304);
    assert!(cached.body.is_empty());
    assert_eq!(cached.header("etag"), Some(etag.as_str()));
    s.send(Req::get("/").header("If-None-Match", "\"stale\""))
        .await
        .expect(200);

    let head = s.send(Req::head("/")).await;
    head.expect(200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(
        head.header("content-length"),
        Some(index.body.len().to_string().as_str())
    );

    // Every script of the UI, with its content type and its bytes.
    let js = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../web/js");
    for entry in std::fs::read_dir(&js).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".js") {
            continue;
        }
        let r = s.send(Req::get(format!("/js/{name}"))).await;
        r.expect(200);
        assert_eq!(
            r.header("content-type"),
            Some("text/javascript; charset=utf-8"),
            "{name}"
        );
        assert_eq!(
            r.body,
            std::fs::read(entry.path()).unwrap_or_default(),
            "{name}"
        );
    }

    // Anything else is the API's JSON 404, never a file from disk.
    for path in ["/no/such/file", "/Cargo.toml", "/%2e%2e/Cargo.toml", "/js/"] {
        let message = s.send(Req::get(path)).await.error(404);
        assert!(message.contains("no route for GET"), "{path}: {message}");
    }
    let message = s.send(Req::post("/", "x")).await.error(404);
    assert!(message.contains("no route for POST /"), "{message}");
}

on_every_backend!(
    post_and_list,
    label_filtering,
    time_range,
    tenants_are_isolated,
    bad_input_is_refused,
    retention_deletes_old_annotations,
    at_most_a_thousand_filtered_after_paging,
    the_ui_is_served,
);
