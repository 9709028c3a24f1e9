//! What `firewatch convert` writes reads the same in `go tool pprof`, and both
//! tools agree on a Go-shaped profile.
//!
//! Needs `go` (see `go_tool.rs`).

use std::collections::BTreeMap;
use std::path::Path;

use std::io::Read;

use crate::fixtures::GO_CPU;
use crate::go_tool::{GoPprof, differences, value};
use crate::live::Server;
use crate::support::{data, data_arg, firewatch, folded_rows, tempdir};

/// `-traces` as stack (root first, `;`-joined) -> value, labels ignored.
fn traces(go: &GoPprof, file: &Path, sample_index: &str, unit: &str) -> Vec<(String, u64)> {
    let index_arg = format!("-sample_index={sample_index}");
    let unit_arg = format!("-unit={}", if unit.is_empty() { "minimum" } else { unit });
    let text = go.run(&["-traces", &index_arg, &unit_arg], file);
    let mut folded = String::new();
    for block in text.split("-----------+").skip(1) {
        let mut frames: Vec<&str> = Vec::new();
        let mut count = None;
        for line in block.lines().skip(1) {
            let line = line.trim();
            let first = line.split_whitespace().next().unwrap_or_default();
            if count.is_none() {
                // Label lines ("endpoint:  /checkout") come before the value.
                if first.is_empty() || first.ends_with(':') {
                    continue;
                }
                count = Some(value(first, unit));
                frames.push(line[first.len()..].trim());
            } else if !line.is_empty() {
                frames.push(line);
            }
        }
        let Some(count) = count else { continue };
        let stack: Vec<&str> = frames
            .iter()
            .rev()
            .map(|f| f.trim_end_matches(" (inline)"))
            .collect();
        folded.push_str(&format!("{} {count}\n", stack.join(";")));
    }
    folded_rows(&folded)
}

/// `firewatch top --output json -n 0` as name -> (self, total), and the total.
fn firewatch_top(file: &Path, sample_type: &str) -> (BTreeMap<String, (i64, i64)>, i64) {
    let dir = file.parent().expect("a directory");
    let name = file.to_str().expect("UTF-8 path");
    let json = firewatch(
        dir,
        &[
            "top",
            name,
            "-n",
            "0",
            "--output",
            "json",
            "--sample-type",
            sample_type,
        ],
    )
    .ok();
    let doc: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let rows = doc["functions"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            let name = r["name"].as_str().expect("name").to_owned();
            (
                name,
                (
                    r["self"].as_i64().expect("self"),
                    r["total"].as_i64().expect("total"),
                ),
            )
        })
        .collect();
    (rows, doc["total"].as_i64().expect("total"))
}

/// `GET /api/v1/functions` as name -> (self, total), its total, and the
/// value it says the filter's matches cover.
fn server_functions(server: &Server, filter: &str) -> (BTreeMap<String, (i64, i64)>, i64, i64) {
    let url = format!("{}/api/v1/functions", server.base);
    let body = ureq::get(&url)
        .query("query", "cargo.cpu")
        .query("from", "now-10m")
        .query("limit", "100000")
        .query("filter", filter)
        .call()
        .expect("functions")
        .body_mut()
        .read_to_string()
        .expect("body");
    let doc: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let rows =
        doc["functions"]
            .as_array()
            .expect("rows")
            .iter()
            .fold(BTreeMap::new(), |mut rows, r| {
                let v = |k: &str| r[k].as_i64().expect("a number");
                // Trimmed, as pprof prints names.
                let name = r["name"].as_str().expect("name").trim().to_owned();
                let row: &mut (i64, i64) = rows.entry(name).or_default();
                *row = (row.0 + v("self"), row.1 + v("total"));
                rows
            });
    let n = |k: &str| doc[k].as_i64().expect("a number");
    (rows, n("total"), n("covered"))
}

/// What the legacy ingest stores CPU samples as, and pprof prints them in.
const UNIT: &str = "ns";

/// The server's function table (what the UI's table, search and sandwich
/// read) is the whole merged profile's, not a truncated tree's: on a real
/// cargo build (3,911 stacks), every function's self and total equal
/// `go tool pprof -top` on the same window's pprof export, and what a
/// search covers equals what `-focus` keeps.
#[test]
fn server_function_table_is_go_pprof_top_on_a_real_profile() {
    let Some(go) = GoPprof::find() else { return };
    let mut folded = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../profile/tests/data/cargo-build.folded.gz"),
        )
        .expect("fixture"),
    )
    .read_to_string(&mut folded)
    .expect("gunzip");
    let server = Server::start();
    server.ingest("cargo.cpu", "now-5m", "now-4m", &folded);
    let dir = tempdir();
    firewatch(
        dir.path(),
        &[
            "render",
            "cargo.cpu",
            "--from",
            "now-10m",
            "-o",
            "cargo.pb",
            "--server",
            &server.base,
        ],
    )
    .ok();
    let exported = dir.path().join("cargo.pb");
    let (go_rows, go_total) = go.top(&exported, "cpu", UNIT);
    let (rows, total, covered) = server_functions(&server, "");
    assert_eq!(total, go_total);
    assert_eq!(covered, total, "without a filter everything is covered");
    assert!(rows.len() > 1000, "{} functions", rows.len());
    let differ = differences(&rows, &go_rows);
    assert!(
        differ.is_empty(),
        "self and total per function differ:\n{}",
        differ.join("\n")
    );

    let (matched, _, covered) = server_functions(&server, "intern_ty");
    assert!(!matched.is_empty());
    assert!(
        matched
            .keys()
            .all(|k| k.to_lowercase().contains("intern_ty"))
    );
    let unit = format!("-unit={UNIT}");
    let focused = go.run(
        &[
            "-top",
            "-nodecount=1000000",
            "-nodefraction=0",
            "-focus=(?i)intern_ty",
            &unit,
        ],
        &exported,
    );
    // With every node shown, what they account for is what -focus kept.
    let focus_total = focused
        .lines()
        .find_map(|l| l.split_once("accounting for ").map(|(_, r)| r))
        .and_then(|r| r.split_once(',').map(|(v, _)| value(v, UNIT)))
        .unwrap_or_else(|| panic!("no total in {focused}"));
    assert_eq!(covered, focus_total, "a search covers what -focus keeps");
}

#[test]
fn converted_folded_profile_reads_the_same_in_go_pprof() {
    let Some(go) = GoPprof::find() else { return };
    let dir = tempdir();
    firewatch(
        dir.path(),
        &[
            "convert",
            &data_arg("checkout.folded"),
            "-o",
            "checkout.pb.gz",
        ],
    )
    .ok();
    let converted = dir.path().join("checkout.pb.gz");

    let (rows, total) = go.top(&converted, "samples", "");
    assert_eq!(total, 1000);
    let want: BTreeMap<String, (i64, i64)> = [
        ("checkout::pricing::apply_discounts", 250, 250),
        ("serde_json::ser::to_vec", 200, 200),
        ("sqlx_postgres::connection::PgConnection::run", 200, 200),
        ("hyper::proto::h1::dispatch::Dispatcher::poll", 120, 120),
        ("rust_decimal::Decimal::add", 100, 100),
        ("tokio::runtime::park::Parker::park", 80, 80),
        ("serde_json::de::from_str", 30, 50),
        // Recursive: counted once per sample in cum, as firewatch does.
        ("serde_json::de::Deserializer::parse_value", 20, 20),
        ("main", 0, 1000),
        ("tokio::runtime::Runtime::block_on", 0, 950),
        ("checkout::server::serve", 0, 870),
        ("checkout::handlers::checkout", 0, 750),
        ("checkout::cart::Cart::total", 0, 350),
        ("sqlx::query::Query::fetch_all", 0, 200),
        ("checkout::config::load", 0, 50),
    ]
    .into_iter()
    .map(|(n, f, c)| (n.to_owned(), (f, c)))
    .collect();
    assert_eq!(rows, want);

    let original = folded_rows(&std::fs::read_to_string(data("checkout.folded")).expect("fixture"));
    assert_eq!(traces(&go, &converted, "samples", ""), original);
}

#[test]
fn go_pprof_and_firewatch_agree_on_a_go_profile() {
    let Some(go) = GoPprof::find() else { return };
    let fixture = data(GO_CPU);
    for (sample_type, unit) in [("samples", ""), ("cpu", "ns")] {
        let (go_rows, go_total) = go.top(&fixture, sample_type, unit);
        let (fw_rows, fw_total) = firewatch_top(&fixture, sample_type);
        assert_eq!(fw_total, go_total, "{sample_type} total");
        assert_eq!(fw_rows, go_rows, "{sample_type} flat and cum per function");
    }
    let (_, cpu_total) = firewatch_top(&fixture, "cpu");
    assert_eq!(cpu_total, 1_500_000_000);
}

#[test]
fn go_profile_converted_by_firewatch_reads_the_same_in_go_pprof() {
    let Some(go) = GoPprof::find() else { return };
    let fixture = data(GO_CPU);
    let stacks = traces(&go, &fixture, "cpu", "ns");
    assert_eq!(stacks.len(), 8, "{stacks:?}");
    assert!(stacks.contains(&(
        "net/http.(*conn).serve;main.(*Handler).ServeHTTP;main.(*Cart).Total;main.applyDiscounts".to_owned(),
        400_000_000
    )));
    let dir = tempdir();
    for out in ["copy.pb.gz", "copy.pprof", "copy.pb"] {
        firewatch(dir.path(), &["convert", &data_arg(GO_CPU), "-o", out]).ok();
        let converted = dir.path().join(out);
        for (sample_type, unit) in [("samples", ""), ("cpu", "ns")] {
            assert_eq!(
                go.top(&converted, sample_type, unit),
                go.top(&fixture, sample_type, unit),
                "{out} {sample_type}: top"
            );
            assert_eq!(
                traces(&go, &converted, sample_type, unit),
                traces(&go, &fixture, sample_type, unit),
                "{out} {sample_type}: stacks"
            );
        }
    }
}
