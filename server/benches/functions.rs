//! The whole-profile answers the UI's table, search and sandwich read, on a
//! profile of 100,000 functions (60,000 stacks 10 frames deep, names as
//! long as Rust's) spread over 40 services, stored in SQLite and queried
//! through the HTTP API in process. Printed, medians of runs:
//! `/api/v1/functions` (the table and a search), `/api/v1/sandwich`, the
//! all-services flamegraph (`groupBy=service_name`, one query per service),
//! and beside them `/render` (the flamegraph JSON of the same data), with
//! the ratio of each to it. Target: the table and the sandwich under 300 ms.
//!
//! `cargo bench -p firewatch-server --bench functions`

mod common;

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use firewatch_profile::{Profile, SampleType};
use firewatch_server::selector::Labels;
use firewatch_server::store::{NewProfile, Store, StoreOptions};
use firewatch_server::{AppState, IngestLimits, app};
use tower::ServiceExt;

use common::{median, ms};

const FUNCTIONS: usize = 100_000;
const STACKS: usize = 60_000;
const DEPTH: usize = 10;
const RUNS: usize = 5;
const SERVICES: usize = 40;

fn name(i: usize) -> String {
    format!(
        "bench_crate_{}::module_{}::Type{}<alloc::vec::Vec<u8>>::function_{i}",
        i % 97,
        i % 1013,
        i % 31
    )
}

/// Stacks whose frames, taken together, use every function; values skewed
/// so a few functions dominate, as in real profiles; stack `s` belongs to
/// service `s % SERVICES`.
fn profiles(time_ms: i64) -> Vec<Profile> {
    let mut out: Vec<Profile> = (0..SERVICES)
        .map(|_| {
            let mut p = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
            p.period_type = Some(SampleType::new("cpu", "nanoseconds"));
            p.period = 10_000_000;
            p.time_nanos = time_ms * 1_000_000;
            p.duration_nanos = 10_000_000_000;
            p
        })
        .collect();
    let names: Vec<String> = (0..FUNCTIONS).map(name).collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut stack = Vec::with_capacity(DEPTH + 1);
    for s in 0..STACKS {
        let p = &mut out[s % SERVICES];
        stack.clear();
        stack.push(p.intern_function("main", "", 0));
        for d in 0..DEPTH {
            // Shallow frames come from few functions, deep ones from all.
            let span = (FUNCTIONS >> (2 * (DEPTH - 1 - d)).min(16)).max(64);
            let f = if d == DEPTH - 1 {
                (s * 7 + d) % FUNCTIONS
            } else {
                (next() as usize) % span
            };
            stack.push(p.intern_function(&names[f], "", 0));
        }
        let value = 10_000_000 * (1 + (next() % 100) as i64 * (s % 7 == 0) as i64);
        p.add_sample(&stack, &[value]);
    }
    out
}

fn main() {
    common::block_on(run());
}

async fn get(state: &AppState, target: &str) -> (Duration, usize) {
    let t = Instant::now();
    let response = app(state.clone())
        .oneshot(Request::get(target).body(Body::empty()).expect("request"))
        .await
        .expect("answer");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    assert_eq!(status, 200, "{target}: {}", String::from_utf8_lossy(&body));
    (t.elapsed(), body.len())
}

async fn run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &format!("sqlite://{}/bench.db", dir.path().display()),
        StoreOptions::default(),
    )
    .await
    .expect("store");
    let now = firewatch_server::time::now_ms();
    let batch: Vec<NewProfile> = profiles(now - 120_000)
        .into_iter()
        .enumerate()
        .map(|(k, profile)| NewProfile {
            tenant: String::new(),
            labels: [
                ("service_name".to_owned(), format!("bench_{k}")),
                ("__name__".to_owned(), "process_cpu".to_owned()),
            ]
            .into_iter()
            .collect::<Labels>(),
            profile,
        })
        .collect();
    store.ingest(batch).await.expect("ingest");
    let state = AppState::new(store, IngestLimits::default());
    // `{}`: every service, merged.
    let common = "query=%7B%7D&profile_type=cpu&from=now-10m&until=now";
    let targets = [
        (
            "flamegraph JSON (/render)",
            format!("/render?{common}&format=json"),
        ),
        (
            "table (/api/v1/functions)",
            format!("/api/v1/functions?{common}"),
        ),
        (
            "search (filter=function_4)",
            format!("/api/v1/functions?{common}&filter=function_4&limit=1"),
        ),
        (
            "sandwich (/api/v1/sandwich)",
            format!(
                "/api/v1/sandwich?{common}&function={}",
                name(3).replace('<', "%3C").replace('>', "%3E")
            ),
        ),
        (
            "all services (groupBy)",
            format!("/render?{common}&format=json&groupBy=service_name"),
        ),
    ];
    let mut results = Vec::new();
    for (label, target) in &targets {
        let _ = get(&state, target).await;
        let mut times = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for _ in 0..RUNS {
            let (t, n) = get(&state, target).await;
            times.push(t);
            bytes = n;
        }
        results.push((label, median(times), bytes));
    }
    println!(
        "{FUNCTIONS} functions, {STACKS} stacks of {} frames, over {SERVICES} services",
        DEPTH + 1
    );
    let base = results[0].1;
    for (label, t, bytes) in &results {
        println!(
            "{label:30} {:8.1} ms  {:5.2}x the flamegraph  {:8} bytes",
            ms(*t),
            ms(*t) / ms(base),
            bytes
        );
    }
}
