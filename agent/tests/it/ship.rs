//! Shipping against a loopback receiver: outages, overflow, refusals,
//! `Retry-After`, and both protocols' requests.

use std::sync::Arc;
use std::time::Duration;

use firewatch_agent::metrics::Metrics;
use firewatch_agent::ship::pyroscope::PushRequest;
use firewatch_agent::ship::{Payload, Protocol, ShipConfig, Shipper, encode_payload};
use firewatch_profile::pprof::proto;
use firewatch_profile::{Labels, Profile, SampleType};
use prost::Message;

use crate::receiver::{Receiver, Response};
use crate::support::{decode_pprof, wait_until};

const BODY: usize = 1000;

fn config(server: &str, buffer_bytes: usize) -> ShipConfig {
    ShipConfig {
        server: server.to_owned(),
        protocol: Protocol::Native,
        tenant: None,
        token: None,
        tls_ca_file: None,
        buffer_bytes,
        retry_min: Duration::from_millis(20),
        retry_max: Duration::from_millis(200),
        request_timeout: Duration::from_secs(5),
    }
}

/// A payload whose body starts with its sequence number.
fn numbered(seq: u32) -> Payload {
    let mut body = format!("{seq:08}").into_bytes();
    body.resize(BODY, b'.');
    Payload {
        labels: Arc::new([("service_name".to_owned(), "svc".to_owned())].into()),
        body,
        time_nanos: i64::from(seq),
    }
}

fn seq_of(body: &[u8]) -> u32 {
    std::str::from_utf8(&body[..8])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(u32::MAX)
}

/// Waits until the sender has counted `n` outcomes (the receiver records a
/// request before the sender reads the answer).
fn settled(metrics: &Metrics, n: u64) -> bool {
    wait_until(Duration::from_secs(10), || {
        let m = metrics.snapshot();
        m.profiles_delivered + m.profiles_rejected >= n
    })
}

fn delivered_seqs(r: &Receiver) -> Vec<u32> {
    r.requests().iter().map(|q| seq_of(&q.body)).collect()
}

#[test]
fn server_down_then_back_loses_nothing_within_the_buffer_and_keeps_order() {
    let receiver = Receiver::new();
    let metrics = Arc::new(Metrics::default());
    let shipper =
        Shipper::start(config(&receiver.url(), 64 << 20), Arc::clone(&metrics)).expect("shipper");
    shipper.submit(numbered(0));
    assert!(receiver.wait_for(1, Duration::from_secs(10)));

    receiver.set_up(false);
    for seq in 1..=30 {
        shipper.submit(numbered(seq));
        std::thread::sleep(Duration::from_millis(50));
    }
    // Down for about two seconds in all, with retries failing meanwhile.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        receiver.requests().len(),
        1,
        "nothing arrives while the server is down"
    );
    receiver.set_up(true);
    assert!(
        receiver.wait_for(31, Duration::from_secs(20)),
        "all delivered after the outage"
    );
    assert!(settled(&metrics, 31));
    let m = metrics.snapshot();
    assert_eq!(delivered_seqs(&receiver), (0..=30).collect::<Vec<_>>());
    assert_eq!(
        (
            m.profiles_delivered,
            m.profiles_dropped,
            m.profiles_rejected
        ),
        (31, 0, 0)
    );
    assert!(m.send_retries > 0);
    assert_eq!(shipper.close(Duration::from_secs(5)), 0);
}

#[test]
fn overflow_drops_the_oldest_and_counts_every_drop() {
    let receiver = Receiver::new();
    receiver.set_up(false);
    let metrics = Arc::new(Metrics::default());
    // Room for exactly ten payloads.
    let shipper =
        Shipper::start(config(&receiver.url(), 10 * BODY), Arc::clone(&metrics)).expect("shipper");
    shipper.submit(numbered(0));
    // The sender takes the first one and keeps retrying it.
    assert!(wait_until(Duration::from_secs(5), || shipper.pending().0 == 0));
    for seq in 1..=24 {
        shipper.submit(numbered(seq));
    }
    let m = metrics.snapshot();
    assert_eq!(m.profiles_dropped, 14, "24 queued into room for 10");
    assert_eq!(m.bytes_dropped, 14 * BODY as u64);
    assert_eq!(shipper.pending(), (10, 10 * BODY));

    receiver.set_up(true);
    assert!(receiver.wait_for(11, Duration::from_secs(20)));
    assert!(settled(&metrics, 11));
    let mut expected = vec![0];
    expected.extend(15..=24);
    assert_eq!(
        delivered_seqs(&receiver),
        expected,
        "the in-flight one, then the newest ten, in order"
    );
    let m = metrics.snapshot();
    assert_eq!(m.profiles_delivered + m.profiles_dropped, 25);
    assert_eq!(shipper.close(Duration::from_secs(5)), 0);
}

#[test]
fn a_refused_profile_does_not_block_the_ones_behind_it() {
    let receiver = Receiver::with_policy(|r| {
        if seq_of(&r.body) % 3 == 1 {
            Response::error(400, "invalid label")
        } else {
            Response::stored()
        }
    });
    let metrics = Arc::new(Metrics::default());
    let shipper =
        Shipper::start(config(&receiver.url(), 64 << 20), Arc::clone(&metrics)).expect("shipper");
    for seq in 0..12 {
        shipper.submit(numbered(seq));
    }
    assert!(receiver.wait_for(12, Duration::from_secs(20)));
    assert!(settled(&metrics, 12));
    assert_eq!(
        delivered_seqs(&receiver),
        (0..12).collect::<Vec<_>>(),
        "each sent once, in order"
    );
    let m = metrics.snapshot();
    assert_eq!(
        (m.profiles_delivered, m.profiles_rejected, m.send_retries),
        (8, 4, 0)
    );
    shipper.close(Duration::from_secs(5));
}

#[test]
fn retry_after_is_honoured_and_429_is_retried() {
    let mut first = true;
    let receiver = Receiver::with_policy(move |_| {
        if std::mem::take(&mut first) {
            Response {
                status: 429,
                body: "{\"error\": \"slow down\"}".into(),
                headers: vec![("Retry-After".into(), "1".into())],
            }
        } else {
            Response::stored()
        }
    });
    let metrics = Arc::new(Metrics::default());
    let mut c = config(&receiver.url(), 1 << 20);
    c.retry_max = Duration::from_secs(5);
    let shipper = Shipper::start(c, Arc::clone(&metrics)).expect("shipper");
    shipper.submit(numbered(7));
    assert!(receiver.wait_for(2, Duration::from_secs(10)));
    assert!(settled(&metrics, 1));
    let r = receiver.requests();
    assert_eq!((seq_of(&r[0].body), seq_of(&r[1].body)), (7, 7));
    let waited = r[1].at.duration_since(r[0].at);
    assert!(
        waited >= Duration::from_millis(900),
        "retried after {waited:?}, before Retry-After"
    );
    assert_eq!(metrics.snapshot().profiles_delivered, 1);
    shipper.close(Duration::from_secs(5));
}

fn small_profile() -> proto::Profile {
    let mut p = Profile::new(vec![
        SampleType::new("samples", "count"),
        SampleType::new("cpu", "nanoseconds"),
    ]);
    p.add_named_sample(&["main", "work"], &[3, 30_000_000]);
    p.time_nanos = 1_700_000_000_000_000_000;
    p.to_pprof()
}

#[test]
fn native_ingest_request_carries_labels_tenant_token_and_zstd_pprof() {
    let receiver = Receiver::new();
    let metrics = Arc::new(Metrics::default());
    let mut c = config(&receiver.url(), 1 << 20);
    c.tenant = Some("team-a".into());
    c.token = Some("s3cret".into());
    let shipper = Shipper::start(c, metrics).expect("shipper");
    let labels = Arc::new(Labels::from([
        ("exe".to_owned(), "my app".to_owned()),
        ("host".to_owned(), "web-1".to_owned()),
        ("service_name".to_owned(), "checkout".to_owned()),
    ]));
    shipper.submit(encode_payload(labels, &small_profile(), Protocol::Native).expect("encode"));
    assert!(receiver.wait_for(1, Duration::from_secs(10)));
    let r = &receiver.requests()[0];
    assert_eq!(r.path, "/api/v1/ingest");
    assert_eq!(r.query[0], ("service_name".into(), "checkout".into()));
    assert_eq!(r.param("exe"), Some("my app"));
    assert_eq!(r.param("host"), Some("web-1"));
    assert_eq!(r.header("content-encoding"), Some("zstd"));
    assert_eq!(
        r.header("content-type"),
        Some("application/vnd.google.protobuf")
    );
    assert_eq!(r.header("x-scope-orgid"), Some("team-a"));
    assert_eq!(r.header("authorization"), Some("Bearer s3cret"));
    assert_eq!(&r.body[..4], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame");
    assert_eq!(decode_pprof(&r.body).sample.len(), 1);
    shipper.close(Duration::from_secs(5));
}

#[test]
fn pyroscope_push_request_carries_series_labels_and_a_gzip_pprof() {
    let receiver = Receiver::new();
    let mut c = config(&receiver.url(), 1 << 20);
    c.protocol = Protocol::Pyroscope;
    let shipper = Shipper::start(c, Arc::new(Metrics::default())).expect("shipper");
    let labels = Arc::new(Labels::from([
        ("host".to_owned(), "web-1".to_owned()),
        ("service_name".to_owned(), "checkout".to_owned()),
    ]));
    shipper.submit(encode_payload(labels, &small_profile(), Protocol::Pyroscope).expect("encode"));
    assert!(receiver.wait_for(1, Duration::from_secs(10)));
    let r = &receiver.requests()[0];
    assert_eq!(r.path, "/push.v1.PusherService/Push");
    assert_eq!(r.header("content-type"), Some("application/proto"));
    let push = PushRequest::decode(&r.body[..]).expect("a PushRequest");
    let series = &push.series[0];
    let label = |n: &str| {
        series
            .labels
            .iter()
            .find(|l| l.name == n)
            .map(|l| l.value.as_str())
    };
    assert_eq!(label("__name__"), Some("process_cpu"));
    assert_eq!(label("service_name"), Some("checkout"));
    assert_eq!(label("host"), Some("web-1"));
    let raw = &series.samples[0].raw_profile;
    assert_eq!(&raw[..2], &[0x1f, 0x8b], "gzip");
    assert_eq!(decode_pprof(raw).sample.len(), 1);
    shipper.close(Duration::from_secs(5));
}
