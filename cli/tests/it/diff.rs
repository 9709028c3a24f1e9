//! `firewatch diff`: two local files without a server, and two windows of a
//! query on a real server, through the same comparison.

use crate::live::shop;
use crate::support::{firewatch, tempdir};

/// Writes the before/after pair used by the file tests: `parse` grows from
/// 30% to 60% of the samples, `render` and `idle` shrink.
pub fn write_pair(dir: &std::path::Path) {
    std::fs::write(
        dir.join("base.folded"),
        "main;handle;parse 30\nmain;handle;render 50\nmain;idle 20\n",
    )
    .expect("written");
    std::fs::write(
        dir.join("new.folded"),
        "main;handle;parse 120\nmain;handle;render 60\nmain;idle 20\n",
    )
    .expect("written");
}

#[test]
fn two_local_files_without_a_server() {
    let dir = tempdir();
    write_pair(dir.path());
    // Nothing listens there: a file comparison must never ask.
    let out = firewatch(
        dir.path(),
        &[
            "diff",
            "--base",
            "base.folded",
            "--new",
            "new.folded",
            "--server",
            "http://127.0.0.1:9",
        ],
    )
    .ok();
    let want = "\
base: base.folded, samples (count), total 100
new:  new.folded, samples (count), total 200
Self share: the part of each profile's total spent in the function itself.

Regressions (self share grew): 1 of 1
before   after     change  function
30.00%  60.00%  +30.00 pp  parse

Improvements (self share shrank): 2 of 2
before   after     change  function
50.00%  30.00%  -20.00 pp  render
20.00%  10.00%  -10.00 pp  idle
";
    assert_eq!(out, want);
}

#[test]
fn json_output_parses() {
    let dir = tempdir();
    write_pair(dir.path());
    let out = firewatch(
        dir.path(),
        &[
            "diff",
            "--base",
            "base.folded",
            "--new",
            "new.folded",
            "--output",
            "json",
            "-n",
            "1",
        ],
    )
    .ok();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["base"]["source"], "base.folded");
    assert_eq!(doc["new"]["total"], 200);
    assert_eq!(doc["regression_count"], 1);
    assert_eq!(doc["improvement_count"], 2);
    assert_eq!(doc["regressions"][0]["name"], "parse");
    assert_eq!(doc["regressions"][0]["change_points"], 30.0);
    assert_eq!(doc["improvements"].as_array().expect("rows").len(), 1);
    assert_eq!(doc["improvements"][0]["name"], "render");
}

#[test]
fn two_windows_of_a_query_on_the_server() {
    let server = shop();
    let dir = tempdir();
    let run = firewatch(
        dir.path(),
        &[
            "diff",
            "--server",
            &server.base,
            "--base",
            "shop.cpu",
            "--base-from",
            "now-1h",
            "--base-until",
            "now-30m",
            "--new",
            "shop.cpu",
            "--new-from",
            "now-15m",
            "--output",
            "json",
        ],
    );
    assert!(
        run.stderr
            .contains("fetching base: shop.cpu (now-1h to now-30m)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("fetching new: shop.cpu (now-15m to now)"),
        "{}",
        run.stderr
    );
    let doc: serde_json::Value = serde_json::from_str(&run.ok()).expect("JSON");
    assert_eq!(doc["base"]["sample_type"]["kind"], "cpu");
    assert_eq!(doc["regressions"][0]["name"], "parse");
    assert_eq!(doc["regressions"][0]["before_self_percent"], 30.0);
    assert_eq!(doc["regressions"][0]["after_self_percent"], 60.0);
    assert_eq!(doc["improvements"][0]["name"], "render");
}

#[test]
fn a_file_against_a_query() {
    let server = shop();
    let dir = tempdir();
    write_pair(dir.path());
    // --from/--until are the fallback of the query side's window.
    let out = firewatch(
        dir.path(),
        &[
            "diff",
            "--server",
            &server.base,
            "--base",
            "base.folded",
            "--new",
            "shop.cpu",
            "--from",
            "now-15m",
            "--output",
            "json",
        ],
    )
    .ok();
    let doc: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(doc["regressions"][0]["name"], "parse");
    assert_eq!(doc["regressions"][0]["change_points"], 30.0);
}
