//! Every case of `tests/data/cases.json` (which the UI's tests read too)
//! means what the table says, or is refused naming its input.

use std::time::Duration;

use firewatch_syntax::{is_label_name, parse_duration, parse_size, parse_time};
use serde_json::Value;

fn cases() -> Value {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/cases.json"
    ))
    .expect("the cases");
    serde_json::from_str(&text).expect("JSON")
}

fn accepted<'a>(v: &'a Value, kind: &str) -> impl Iterator<Item = (&'a str, i64)> {
    v[kind]["accepted"].as_array().expect(kind).iter().map(|c| {
        (
            c[0].as_str().expect("input"),
            c[1].as_i64().expect("meaning"),
        )
    })
}

fn refused<'a>(v: &'a Value, kind: &str) -> impl Iterator<Item = &'a str> {
    v[kind]["refused"]
        .as_array()
        .expect(kind)
        .iter()
        .map(|c| c.as_str().expect("input"))
}

#[test]
fn durations() {
    let v = cases();
    for (input, ms) in accepted(&v, "durations_ms") {
        assert_eq!(
            parse_duration(input),
            Ok(Duration::from_millis(ms as u64)),
            "{input:?}"
        );
    }
    for input in refused(&v, "durations_ms") {
        let e = parse_duration(input).expect_err(input);
        assert!(
            e.to_string()
                .starts_with(&format!("invalid duration {input:?}")),
            "{e}"
        );
    }
}

#[test]
fn sizes() {
    let v = cases();
    for (input, bytes) in accepted(&v, "sizes") {
        assert_eq!(parse_size(input), Ok(bytes as usize), "{input:?}");
    }
    for input in refused(&v, "sizes") {
        let e = parse_size(input).expect_err(input);
        assert!(e.to_string().contains("invalid size"), "{e}");
    }
}

#[test]
fn times() {
    let v = cases();
    let now = v["now_ms"].as_i64().expect("now");
    for (input, ms) in accepted(&v, "times_ms") {
        assert_eq!(parse_time(input, now), Ok(ms), "{input:?}");
    }
    for input in refused(&v, "times_ms") {
        let e = parse_time(input, now).expect_err(input);
        assert!(e.to_string().starts_with("invalid time"), "{input:?}: {e}");
    }
    // A duration after `now-` is the same duration.
    for (input, ms) in accepted(&v, "durations_ms") {
        assert_eq!(
            parse_time(&format!("now-{input}"), now),
            Ok(now - ms),
            "{input:?}"
        );
    }
    for input in refused(&v, "durations_ms") {
        assert!(
            parse_time(&format!("now-{input}"), now).is_err(),
            "{input:?}"
        );
    }
}

#[test]
fn label_names() {
    let v = cases();
    let names = |k: &str| -> Vec<&str> {
        v["label_names"][k]
            .as_array()
            .expect(k)
            .iter()
            .filter_map(Value::as_str)
            .collect()
    };
    assert!(names("accepted").iter().all(|n| is_label_name(n)));
    assert!(!names("refused").iter().any(|n| is_label_name(n)));
}

#[test]
fn clocks_agree() {
    let (ms, ns) = (firewatch_syntax::now_ms(), firewatch_syntax::now_ns());
    assert!((ns / 1_000_000 - ms).abs() < 1_000, "{ms} {ns}");
}
