//! A live profile of a real compiler: the agent samples `rustc` optimising
//! a generic-heavy crate (deep stacks through rustc and LLVM, threads,
//! large frames), ships to the server, and the server's function table
//! (what the UI's top table, search and sandwich read) equals
//! `go tool pprof -top` on the same window's pprof export, row for row.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::go_tool::{GoPprof, differences};
use crate::support::{Server, functions_json, profile_until_exit, shipping_to};

/// A crate whose optimisation keeps rustc busy for a few seconds.
fn generic_crate(dir: &Path) -> std::path::PathBuf {
    let mut src = String::from("use std::collections::HashMap;\n");
    for i in 0..80 {
        src.push_str(&format!(
            "pub fn f{i}<T: Clone + std::fmt::Debug + Into<u64>>(v: Vec<T>) -> HashMap<String, Vec<u64>> {{\n\
             let mut m: HashMap<String, Vec<u64>> = HashMap::new();\n\
             for (k, x) in v.iter().cloned().enumerate().filter(|(k, _)| k % {} != 0).map(|(k, x)| (format!(\"{{k}}-{{x:?}}\"), x)) {{\n\
             m.entry(k).or_default().push(x.into().wrapping_mul({}));\n}}\nm\n}}\n",
            i + 2,
            i + 3
        ));
    }
    src.push_str("fn main() { let mut n = 0usize;\n");
    for i in 0..80 {
        src.push_str(&format!(
            "n += f{i}(vec![1u8, 2]).len() + f{i}(vec![1u32]).len();\n"
        ));
    }
    src.push_str("println!(\"{n}\"); }\n");
    let path = dir.join("generic.rs");
    std::fs::write(&path, src).expect("write the crate");
    path
}

/// The toolchain's own rustc binary, not rustup's proxy (which would run
/// it as a child the agent is not told about).
fn real_rustc() -> std::path::PathBuf {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("rustc on PATH");
    let sysroot = String::from_utf8(out.stdout).expect("UTF-8");
    Path::new(sysroot.trim()).join("bin/rustc")
}

/// `GET /api/v1/functions` as name -> (self, total) (names trimmed and
/// merged, as pprof prints them), and the total.
fn server_table(base: &str, query: &str) -> (BTreeMap<String, (i64, i64)>, i64) {
    let doc = functions_json(base, query);
    let mut rows: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in doc["functions"].as_array().expect("rows") {
        let v = |k: &str| r[k].as_i64().expect("a number");
        let row = rows
            .entry(r["name"].as_str().expect("name").trim().to_owned())
            .or_default();
        *row = (row.0 + v("self"), row.1 + v("total"));
    }
    (rows, doc["total"].as_i64().expect("total"))
}

#[test]
fn live_rustc_table_is_go_pprof_top() {
    let Some(go) = GoPprof::find() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let source = generic_crate(dir.path());
    let server = Server::start(&dir.path().join("firewatch.db"), 0);
    let base = server.base.clone();
    let mut child = Command::new(real_rustc())
        .args(["--edition", "2021", "-C", "opt-level=2", "-o"])
        .arg(dir.path().join("generic"))
        .arg(&source)
        .spawn()
        .expect("start rustc");
    let config = shipping_to(&base, child.id());
    profile_until_exit(&mut child, config);

    let export = dir.path().join("rustc.pb.gz");
    let mut resp = ureq::get(&format!("{base}/render"))
        .query("query", "rustc.cpu")
        .query("from", "now-10m")
        .query("until", "now+1m")
        .query("format", "pprof")
        .call()
        .expect("export");
    let bytes = resp.body_mut().read_to_vec().expect("pprof");
    std::fs::write(&export, bytes).expect("write the export");
    let (go_rows, go_total) = go.top(&export, "cpu", "ns");
    let (rows, total) = server_table(&base, "rustc.cpu");
    assert!(
        total > 0 && rows.len() > 500,
        "{} functions, total {total}",
        rows.len()
    );
    assert_eq!(total, go_total);
    eprintln!(
        "rustc: {} functions, {total} ns, every row equal to go tool pprof -top's",
        rows.len()
    );
    let differ = differences(&rows, &go_rows);
    assert!(
        differ.is_empty(),
        "self and total per function differ:\n{}",
        differ.join("\n")
    );
}
