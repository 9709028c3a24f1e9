//! `GET /labels`, `/label-values`, `/api/v1/services`, `/api/apps`, and
//! the health endpoints.

use serde_json::json;

use crate::harness::{Req, TestServer, base_ms, cpu_profile, enc};
use crate::on_every_backend;

async fn labels_values_and_services(s: &TestServer) {
    let t = base_ms();
    let body = cpu_profile(&[("main", 1)], t).to_pprof_bytes();
    for labels in [
        "service_name=checkout&host=a&env=prod",
        "service_name=checkout&host=b&env=dev",
        "service_name=payments&host=c",
    ] {
        s.send(Req::post(format!("/api/v1/ingest?{labels}"), body.clone()))
            .await
            .expect(200);
    }
    s.send(Req::post(
        format!(
            "/ingest?name=payments.alloc_space&from={}&units=bytes",
            t / 1000
        ),
        "main;alloc 64\n",
    ))
    .await
    .expect(200);

    let get = |target: String| async move { s.send(Req::get(target)).await.expect(200).json() };
    assert_eq!(
        get("/labels".into()).await,
        json!(["__name__", "env", "host", "service_name"])
    );
    assert_eq!(
        get(format!("/labels?query={}", enc("payments.cpu"))).await,
        json!(["__name__", "host", "service_name"])
    );
    assert_eq!(
        get(format!(
            "/pyroscope/labels?match[]={}",
            enc(r#"{env="prod"}"#)
        ))
        .await,
        json!(["__name__", "env", "host", "service_name"])
    );
    assert_eq!(
        get("/label-values?label=host".into()).await,
        json!(["a", "b", "c"])
    );
    assert_eq!(
        get(format!(
            "/label-values?label=host&query={}",
            enc(r#"{service_name="checkout"}"#)
        ))
        .await,
        json!(["a", "b"])
    );
    assert_eq!(
        get(format!(
            "/label-values?label=host&match[]={}&match[]={}",
            enc(r#"{env="dev"}"#),
            enc(r#"{service_name="payments"}"#)
        ))
        .await,
        json!(["b", "c"])
    );

    let services = get("/api/v1/services".into()).await;
    let list = services["services"].as_array().unwrap();
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["name"], "checkout");
    assert!(
        list[0]["profileTypes"]
            .as_array()
            .unwrap()
            .contains(&json!("process_cpu:cpu:nanoseconds:cpu:nanoseconds")),
        "{services}"
    );
    let apps = get("/api/apps".into()).await;
    let apps = apps.as_array().unwrap();
    assert!(
        apps.contains(&json!({"name": "checkout.cpu", "spyName": "", "units": "samples"})),
        "{apps:?}"
    );
    assert!(
        apps.contains(&json!({"name": "payments.alloc_space", "spyName": "", "units": "bytes"})),
        "{apps:?}"
    );

    let message = s.send(Req::get("/label-values")).await.error(400);
    assert!(message.contains("`label`"), "{message}");
    let message = s
        .send(Req::get(format!("/labels?query={}", enc(r#"{env="prod""#))))
        .await
        .error(400);
    assert!(message.contains("position"), "{message}");
}

async fn health_and_unknown_routes(s: &TestServer) {
    assert_eq!(
        s.send(Req::get("/healthz")).await.expect(200).text(),
        "ok\n"
    );
    assert_eq!(
        s.send(Req::get("/readyz")).await.expect(200).text(),
        "ready\n"
    );
    let message = s.send(Req::get("/nope")).await.error(404);
    assert!(message.contains("/nope"), "{message}");
}

on_every_backend!(labels_values_and_services, health_and_unknown_routes);
