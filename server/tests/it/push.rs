//! `POST /push.v1.PusherService/Push`: Pyroscope's push API, as its SDKs
//! and Grafana Alloy send it.

use base64::Engine as _;
use firewatch_profile::gzip;
use firewatch_server::ingest::push::proto;
use prost::Message;
use serde_json::json;

use crate::harness::{Req, TestServer, base_ms, cpu_profile, enc, folded, folded_map};
use crate::on_every_backend;

const PATH: &str = "/push.v1.PusherService/Push";

fn series(labels: &[(&str, &str)], profiles: Vec<Vec<u8>>) -> proto::RawProfileSeries {
    proto::RawProfileSeries {
        labels: labels
            .iter()
            .map(|(name, value)| proto::LabelPair {
                name: name.to_string(),
                value: value.to_string(),
            })
            .collect(),
        samples: profiles
            .into_iter()
            .map(|raw_profile| proto::RawSample {
                raw_profile,
                id: "00000000-0000-0000-0000-000000000000".into(),
            })
            .collect(),
    }
}

async fn protobuf_with_gzip_and_a_tenant(s: &TestServer) {
    let t = base_ms();
    let p1 = cpu_profile(&[("main;api;handle", 20)], t).to_pprof_bytes();
    let p2 = cpu_profile(&[("main;api;handle", 10)], t + 10_000).to_pprof_bytes();
    let p3 = cpu_profile(&[("main;web;render", 3)], t).to_pprof_bytes();
    let request = proto::PushRequest {
        series: vec![
            series(
                &[
                    ("service_name", "api"),
                    ("__name__", "process_cpu"),
                    ("__delta__", "false"),
                    ("pod", "api-0"),
                ],
                vec![gzip(&p1), p2],
            ),
            series(
                &[("service_name", "web"), ("__name__", "process_cpu")],
                vec![gzip(&p3)],
            ),
        ],
    };
    let r = s
        .send(
            Req::post(PATH, gzip(&request.encode_to_vec()))
                .header("Content-Type", "application/proto")
                .header("Content-Encoding", "gzip")
                .header("Connect-Protocol-Version", "1")
                .tenant("team"),
        )
        .await;
    r.expect(200);
    assert_eq!(r.header("content-type"), Some("application/proto"));
    assert!(r.body.is_empty());

    let from = format!("&from={}&until={}", t - 1_000, t + 20_000);
    let api = s
        .send(Req::get(format!("/render?query=api.samples&format=folded{from}")).tenant("team"))
        .await;
    assert_eq!(api.expect(200).text(), "main;api;handle 30\n");
    let names = s.send(Req::get("/labels").tenant("team")).await;
    assert_eq!(
        names.expect(200).json(),
        json!(["__name__", "pod", "service_name"])
    );
    // Nothing landed in the default tenant.
    assert_eq!(
        s.send(Req::get("/labels")).await.expect(200).json(),
        json!([])
    );
}

async fn connect_json(s: &TestServer) {
    let t = base_ms();
    let raw = cpu_profile(&[("main;json", 4)], t).to_pprof_bytes();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&raw);
    let body = json!({
        "series": [{
            "labels": [{"name": "service_name", "value": "jsonsvc"}, {"name": "env", "value": "dev"}],
            "samples": [{"rawProfile": b64, "ID": "x"}]
        }]
    });
    let r = s
        .send(Req::post(PATH, body.to_string()).header("Content-Type", "application/json"))
        .await;
    assert_eq!(r.expect(200).json(), json!({}));
    let rows = folded_map(&folded(s, r#"jsonsvc.cpu{env="dev"}"#, t - 1_000, t + 1_000).await);
    assert_eq!(rows["main;json"], 40_000_000);
    let names = s
        .send(Req::get(format!(
            "/label-values?label=__name__&query={}",
            enc("jsonsvc.cpu")
        )))
        .await;
    assert_eq!(names.expect(200).json(), json!(["process_cpu"]));
}

async fn connect_errors_and_atomicity(s: &TestServer) {
    let good = cpu_profile(&[("main", 1)], base_ms()).to_pprof_bytes();
    let proto_req =
        |body: Vec<u8>| Req::post(PATH, body).header("Content-Type", "application/proto");

    let r = s.send(proto_req(b"\x0a\x05\x0a".to_vec())).await;
    r.expect(400);
    assert_eq!(r.json()["code"], "invalid_argument");
    assert!(
        r.json()["message"].as_str().unwrap().contains("malformed"),
        "{}",
        r.text()
    );

    let r = s
        .send(Req::post(PATH, good.clone()).header("Content-Type", "text/plain"))
        .await;
    r.expect(400);
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("Content-Type"),
        "{}",
        r.text()
    );

    // One bad profile refuses the whole request.
    let request = proto::PushRequest {
        series: vec![
            series(&[("service_name", "ok")], vec![good.clone()]),
            series(
                &[("service_name", "bad")],
                vec![good, b"not a profile".to_vec()],
            ),
        ],
    };
    let r = s.send(proto_req(request.encode_to_vec())).await;
    r.expect(400);
    let message = r.json()["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("series 1 (service_name=bad), sample 1"),
        "{message}"
    );
    assert_eq!(s.blocks().await, 0);
}

/// The labels Grafana's SDKs send (pyroscope-rs 2.x and the Python
/// `pyroscope-io` 1.4 built on it): OpenTelemetry-style dotted names,
/// stored with underscores as Pyroscope does, and matched either way.
async fn sdk_labels_with_dots(s: &TestServer) {
    let t = base_ms();
    let p = cpu_profile(&[("main;sdk", 2)], t).to_pprof_bytes();
    let request = proto::PushRequest {
        series: vec![series(
            &[
                ("__name__", "process_cpu"),
                ("env", "test"),
                ("service_name", "sdk"),
                ("otel.scope.name", "com.grafana.pyroscope/python"),
                ("otel.scope.version", "1.4.0"),
                ("process.runtime.name", "cpython"),
                ("process.runtime.version", "3.11.7"),
            ],
            vec![p.clone()],
        )],
    };
    let push = |request: proto::PushRequest| {
        Req::post(PATH, gzip(&request.encode_to_vec()))
            .header("Content-Type", "application/proto")
            .header("Content-Encoding", "gzip")
    };
    s.send(push(request)).await.expect(200);
    assert_eq!(
        s.send(Req::get("/labels")).await.expect(200).json(),
        json!([
            "__name__",
            "env",
            "otel_scope_name",
            "otel_scope_version",
            "process_runtime_name",
            "process_runtime_version",
            "service_name"
        ])
    );
    let (from, until) = (t - 1_000, t + 20_000);
    for query in [
        r#"sdk.cpu{otel.scope.name="com.grafana.pyroscope/python"}"#,
        r#"sdk.cpu{otel_scope_name="com.grafana.pyroscope/python", process.runtime.name=~"cpy.*"}"#,
    ] {
        let rows = folded_map(&folded(s, query, from, until).await);
        assert_eq!(rows["main;sdk"], 20_000_000, "{query}");
    }

    // Two names that become one are refused, and so are other characters.
    for (labels, needle) in [
        (
            vec![("service_name", "x"), ("k8s.pod", "a"), ("k8s_pod", "b")],
            "more than once",
        ),
        (
            vec![("service_name", "x"), ("k8s-pod", "a")],
            "invalid label name",
        ),
    ] {
        let r = s
            .send(push(proto::PushRequest {
                series: vec![series(&labels, vec![p.clone()])],
            }))
            .await;
        r.expect(400);
        let message = r.json()["message"].as_str().unwrap().to_owned();
        assert!(message.contains(needle), "{labels:?}: {message}");
    }
}

on_every_backend!(
    protobuf_with_gzip_and_a_tenant,
    connect_json,
    connect_errors_and_atomicity,
    sdk_labels_with_dots,
);
