//! Malformed, oversized and bomb inputs get a 4xx naming the problem, on
//! every ingest path, and leave the store unchanged.

use firewatch_profile::{Profile, SampleType, gzip, zstd};
use firewatch_server::IngestLimits;
use firewatch_server::ingest::push::proto;
use firewatch_server::store::StoreOptions;
use prost::Message;

use crate::harness::{Req, Resp, TestServer, base_ms, cpu_profile};
use crate::on_every_backend;

fn small() -> IngestLimits {
    IngestLimits {
        max_body_bytes: 64 << 10,
        max_decompressed_bytes: 256 << 10,
        max_samples: 100,
        max_stack_depth: 16,
        max_labels_per_series: 5,
        max_label_name_length: 16,
        max_label_value_length: 32,
        max_profiles_per_request: 3,
    }
}

/// Bytes that do not compress (a simple xorshift stream).
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn wide_profile(stacks: usize) -> Vec<u8> {
    let mut p = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    for i in 0..stacks {
        p.add_named_sample(&["main", &format!("f{i}")], &[1]);
    }
    p.to_pprof_bytes()
}

fn deep_profile(depth: usize) -> Vec<u8> {
    let frames: Vec<String> = (0..depth).map(|i| format!("f{i}")).collect();
    let mut p = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    p.add_named_sample(&frames, &[1]);
    p.to_pprof_bytes()
}

fn push(body: Vec<u8>) -> Req {
    Req::post("/push.v1.PusherService/Push", body).header("Content-Type", "application/proto")
}

fn push_request(profiles: Vec<Vec<u8>>) -> Vec<u8> {
    proto::PushRequest {
        series: vec![proto::RawProfileSeries {
            labels: vec![proto::LabelPair {
                name: "service_name".into(),
                value: "p".into(),
            }],
            samples: profiles
                .into_iter()
                .map(|raw_profile| proto::RawSample {
                    raw_profile,
                    id: String::new(),
                })
                .collect(),
        }],
    }
    .encode_to_vec()
}

#[track_caller]
fn connect_error(r: &Resp, status: u16, code: &str) -> String {
    r.expect(status);
    let json = r.json();
    assert_eq!(json["code"], code, "{}", r.text());
    json["message"].as_str().unwrap().to_owned()
}

async fn oversized_bombs_and_counts(s: &TestServer) {
    let s = s.sibling(small(), StoreOptions::default()).await;
    let native = |labels: &str, body: Vec<u8>| {
        Req::post(format!("/api/v1/ingest?service_name=x{labels}"), body)
    };
    let bomb = vec![0u8; 8 << 20];
    let cases: Vec<(Req, u16, &str)> = vec![
        (
            native("", noise(100 << 10)),
            413,
            "request body exceeds the limit of 65536 bytes",
        ),
        (
            native("", gzip(&bomb)).header("Content-Encoding", "gzip"),
            413,
            "decompressed size",
        ),
        (
            native("", zstd(&bomb, 3).unwrap()).header("Content-Encoding", "zstd"),
            413,
            "decompressed size",
        ),
        (
            native("", wide_profile(101)),
            422,
            "samples exceeds the limit of 100",
        ),
        (native("", deep_profile(17)), 422, "stack depth"),
        (
            native("&a=1&b=2&c=3&d=4&e=5", deep_profile(1)),
            422,
            "6 labels per series",
        ),
        (
            native(&format!("&env={}", "v".repeat(33)), deep_profile(1)),
            422,
            "over the limit of 32",
        ),
        (
            native(&format!("&{}=1", "n".repeat(17)), deep_profile(1)),
            422,
            "over the limit of 16",
        ),
        (
            Req::post("/ingest?name=legacy.cpu", "main;a 1\n".repeat(101)),
            422,
            "folded lines (samples) exceeds the limit of 100",
        ),
        (
            Req::post("/ingest?name=legacy.cpu&format=lines", gzip(&bomb)),
            413,
            "decompressed size",
        ),
        (
            Req::post("/ingest?name=legacy.cpu", noise(100 << 10)),
            413,
            "exceeds the limit",
        ),
        (
            Req::post("/ingest?name=legacy.cpu&format=pprof", deep_profile(17)),
            422,
            "stack depth",
        ),
    ];
    for (req, status, needle) in cases {
        let r = match s.try_send(req.clone()).await {
            Ok(r) => r,
            // Over HTTP, a body past the limit may be cut off mid-send.
            Err(e) if status == 413 && s.is_http() => {
                eprintln!("connection cut while sending an oversized body: {e}");
                continue;
            }
            Err(e) => panic!("{req:?}: {e}"),
        };
        let message = r.error(status);
        assert!(message.contains(needle), "{req:?}: {message}");
    }

    let one = deep_profile(1);
    let r = s.send(push(push_request(vec![one.clone(); 4]))).await;
    let message = connect_error(&r, 400, "invalid_argument");
    assert!(message.contains("4 profiles"), "{message}");
    let r = s.send(push(push_request(vec![gzip(&bomb)]))).await;
    let message = connect_error(&r, 400, "invalid_argument");
    assert!(message.contains("decompressed size"), "{message}");
    if let Ok(r) = s
        .try_send(push(gzip(&push_request(vec![noise(300 << 10)]))))
        .await
    {
        let message = connect_error(&r, 400, "invalid_argument");
        assert!(message.contains("exceeds the limit"), "{message}");
    }

    assert_eq!(s.blocks().await, 0);
    // A request within the limits still goes through.
    s.send(native(
        "",
        cpu_profile(&[("main", 1)], base_ms()).to_pprof_bytes(),
    ))
    .await
    .expect(200);
    assert!(s.blocks().await > 0);
}

async fn series_per_tenant(s: &TestServer) {
    let options = StoreOptions {
        max_series_per_tenant: 1,
        ..StoreOptions::default()
    };
    let s = s.sibling(IngestLimits::default(), options).await;
    let body = cpu_profile(&[("main", 1)], base_ms()).to_pprof_bytes();
    s.send(Req::post("/api/v1/ingest?service_name=a", body.clone()))
        .await
        .expect(200);
    let blocks = s.blocks().await;
    let message = s
        .send(Req::post("/api/v1/ingest?service_name=b", body.clone()))
        .await
        .error(429);
    assert!(message.contains("series per tenant"), "{message}");
    let r = s.send(push(push_request(vec![body.clone()]))).await;
    let message = connect_error(&r, 429, "resource_exhausted");
    assert!(message.contains("series per tenant"), "{message}");
    // The existing series keeps ingesting; another tenant has its own budget.
    s.send(Req::post("/api/v1/ingest?service_name=a", body.clone()))
        .await
        .expect(200);
    s.send(Req::post("/api/v1/ingest?service_name=b", body).tenant("other"))
        .await
        .expect(200);
    assert_eq!(s.blocks().await, blocks + 2);
}

on_every_backend!(oversized_bombs_and_counts, series_per_tenant);
