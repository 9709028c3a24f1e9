//! What naming unnamed frames at query time costs.
//!
//! The debug file is this benchmark's own executable (a real Rust program:
//! tens of thousands of functions, demangled names, line tables), uploaded
//! through the HTTP API; the profile holds 20,000 stacks, each ending in
//! one unnamed frame of it (build id + address, as the agent ships a
//! stripped file's frames). Printed, medians of runs:
//!
//! - cold: the first query after the upload (blazesym parses the file and
//!   names every address), against the same query's flamegraph alone;
//! - warm: later queries (names cached in memory), as a ratio to building
//!   the flamegraph JSON of the already-named profile, the rest of a
//!   `/render` answer;
//! - none: a profile without unnamed frames (the check every query pays).
//!
//! `cargo bench -p firewatch-server --bench symbols`

mod common;

use std::hint::black_box;
use std::time::Instant;

use axum::body::Body;
use axum::http::Request;
use firewatch_profile::{FlameTree, Function, ObjectAddress, Profile, SampleType};
use firewatch_server::store::{Store, StoreOptions};
use firewatch_server::symbols::{Symbols, SymbolsOptions, debug_file_build_id};
use firewatch_server::{AppState, IngestLimits, app};
use object::{Object, ObjectSymbol, SymbolKind};
use tower::ServiceExt;

use common::{median, ms};

const FRAMES: usize = 20_000;
const RUNS: usize = 7;

/// Addresses in the middle of up to `FRAMES` functions of `exe`.
fn addresses(exe: &[u8]) -> Vec<u64> {
    let elf = object::File::parse(exe).expect("ELF");
    let mut out: Vec<u64> = elf
        .symbols()
        .filter(|s| s.kind() == SymbolKind::Text && s.size() >= 16)
        .map(|s| s.address() + s.size() / 2)
        .collect();
    out.sort_unstable();
    out.dedup();
    let step = (out.len() / FRAMES).max(1);
    out.into_iter().step_by(step).take(FRAMES).collect()
}

fn unnamed_profile(build_id: &str, addresses: &[u64]) -> Profile {
    let mut p = Profile::new(vec![SampleType::new("cpu", "nanoseconds")]);
    let root = p.intern_function("main", "", 0);
    for (i, &address) in addresses.iter().enumerate() {
        let name = format!("bench+0x{address:x}");
        let f = p.intern(Function {
            address: Some(ObjectAddress { build_id, address }),
            ..Function::named(&name, "", 0)
        });
        p.add_sample(&[root, f], &[1 + (i as i64 % 97)]);
    }
    p
}

fn flamegraph(p: &Profile) -> usize {
    FlameTree::from_profile(p, 0)
        .truncate(8192)
        .to_flamebearer()
        .names
        .len()
}

fn main() {
    common::block_on(run());
}

async fn run() {
    let exe_path = std::env::current_exe().expect("own executable");
    let exe = std::fs::read(&exe_path).expect("read own executable");
    let (build_id, size) = debug_file_build_id(&exe_path).expect("a build id and symbols");
    let addresses = addresses(&exe);

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(
        &format!("sqlite://{}/bench.db", dir.path().display()),
        StoreOptions::default(),
    )
    .await
    .expect("store");
    let symbols = Symbols::new(SymbolsOptions {
        dir: Some(dir.path().join("debuginfo")),
        max_file_bytes: 4 << 30,
        tenant_quota_bytes: 4 << 30,
        ..SymbolsOptions::default()
    });
    let state = AppState::new(store, IngestLimits::default()).with_symbols(symbols);
    let upload = Request::put(format!("/api/debuginfo/{build_id}"))
        .body(Body::from(exe))
        .expect("request");
    let t = Instant::now();
    let answer = app(state.clone()).oneshot(upload).await.expect("upload");
    assert_eq!(answer.status(), 200, "upload refused");
    let upload_time = t.elapsed();

    let unnamed = unnamed_profile(&build_id, &addresses);
    let t = Instant::now();
    let mut named = unnamed.clone();
    state.symbols.name_frames("", &mut named).await;
    let cold = t.elapsed();
    let still = named.functions().filter(|f| f.address.is_some()).count();

    let mut warm = Vec::with_capacity(RUNS);
    let mut graph = Vec::with_capacity(RUNS);
    let mut none = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let mut p = unnamed.clone();
        let t = Instant::now();
        state.symbols.name_frames("", &mut p).await;
        warm.push(t.elapsed());
        let t = Instant::now();
        black_box(flamegraph(&p));
        graph.push(t.elapsed());
        let mut q = named.clone();
        let t = Instant::now();
        state.symbols.name_frames("", &mut q).await;
        none.push(t.elapsed());
    }
    let (warm, graph, none) = (median(warm), median(graph), median(none));
    println!(
        "debug file: this executable, {:.0} MiB, uploaded in {:.0} ms; {} unnamed frames, {} left unnamed",
        size as f64 / (1 << 20) as f64,
        ms(upload_time),
        addresses.len(),
        still
    );
    println!(
        "cold (parse + name): {:.1} ms = {:.1}x the flamegraph JSON ({:.2} ms)",
        ms(cold),
        ms(cold) / ms(graph),
        ms(graph)
    );
    println!(
        "warm (cached): {:.2} ms = {:.2}x the flamegraph JSON; {:.2} us per frame",
        ms(warm),
        ms(warm) / ms(graph),
        ms(warm) * 1e3 / addresses.len() as f64
    );
    println!(
        "no unnamed frame: {:.3} ms = {:.3}x the flamegraph JSON",
        ms(none),
        ms(none) / ms(graph)
    );
}
