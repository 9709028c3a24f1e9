//! `firewatch gate`: a regression over the threshold fails with exit 1 and
//! names the function; otherwise exit 0; exit 2 when it cannot compare.

use crate::diff::write_pair;
use crate::live::shop;
use crate::support::{error_line, firewatch, tempdir};

#[test]
fn a_known_regression_fails_and_names_the_function() {
    let dir = tempdir();
    write_pair(dir.path());
    let run = firewatch(
        dir.path(),
        &[
            "gate",
            "--base",
            "base.folded",
            "--new",
            "new.folded",
            "--max-regression",
            "5%",
            "--report",
            "comment.md",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let report = std::fs::read_to_string(dir.path().join("comment.md")).expect("report written");
    assert_eq!(run.stdout, report, "the file holds what was printed");
    let want = "\
## Firewatch profile gate: failed

1 function's self share grew by more than 5.00 pp.

- base: `base.folded`, samples (count), total 100
- new: `new.folded`, samples (count), total 200

Self share is the part of each profile's total spent in the function itself; changes are in percentage points (pp).

### Regressions over 5.00 pp

| function | before | after | change |
|---|--:|--:|--:|
| `parse` | 30.00% | 60.00% | +30.00 pp |

### Top improvements

| function | before | after | change |
|---|--:|--:|--:|
| `render` | 50.00% | 30.00% | -20.00 pp |
| `idle` | 20.00% | 10.00% | -10.00 pp |
";
    assert_eq!(report, want);
    assert!(
        run.stderr
            .contains("gate failed: 1 function(s) grew by more than 5 percentage points"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_improvement_only_change_passes() {
    let dir = tempdir();
    write_pair(dir.path());
    // The same pair read backwards: parse shrinks, render and idle grow a little.
    let run = firewatch(
        dir.path(),
        &[
            "gate",
            "--base",
            "new.folded",
            "--new",
            "base.folded",
            "--max-regression",
            "25%",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("## Firewatch profile gate: passed\n\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "No function's self share grew by more than 25.00 pp; the largest growth is `render` (+20.00 pp)."
        ),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("| `parse` | 60.00% | 30.00% | -30.00 pp |"),
        "{}",
        run.stdout
    );

    // Only `parse` got faster: as shares of a smaller total, the others
    // grow a little, well within a 10-point threshold.
    std::fs::write(
        dir.path().join("before.folded"),
        "main;parse 60\nmain;render 50\nmain;idle 40\n",
    )
    .expect("written");
    std::fs::write(
        dir.path().join("after.folded"),
        "main;parse 30\nmain;render 50\nmain;idle 40\n",
    )
    .expect("written");
    let run = firewatch(
        dir.path(),
        &[
            "gate",
            "--base",
            "before.folded",
            "--new",
            "after.folded",
            "--max-regression",
            "10%",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("| `parse` | 40.00% | 25.00% | -15.00 pp |"),
        "{}",
        run.stdout
    );
}

#[test]
fn two_pprof_files_as_in_ci() {
    let dir = tempdir();
    write_pair(dir.path());
    for name in ["base", "new"] {
        firewatch(
            dir.path(),
            &[
                "convert",
                &format!("{name}.folded"),
                "-o",
                &format!("{name}.pb.gz"),
            ],
        )
        .ok();
    }
    let run = firewatch(
        dir.path(),
        &[
            "gate",
            "--base",
            "base.pb.gz",
            "--new",
            "new.pb.gz",
            "--max-regression",
            "10%",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["passed"], false);
    assert_eq!(doc["max_regression_points"], 10.0);
    assert_eq!(doc["violations"][0]["name"], "parse");
    assert_eq!(doc["violations"][0]["change_points"], 30.0);
    assert_eq!(doc["violations"].as_array().expect("rows").len(), 1);
    assert_eq!(doc["improvements"][0]["name"], "render");

    let run = firewatch(
        dir.path(),
        &[
            "gate",
            "--base",
            "base.pb.gz",
            "--new",
            "new.pb.gz",
            "--max-regression",
            "30.5",
            "--output",
            "json",
        ],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let doc: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(doc["passed"], true);
    assert_eq!(doc["violations"].as_array().expect("rows").len(), 0);
}

#[test]
fn queries_on_the_server() {
    let server = shop();
    let dir = tempdir();
    let run = firewatch(
        dir.path(),
        &[
            "gate",
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
            "--max-regression",
            "10%",
        ],
    );
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(
        run.stdout
            .contains("| `parse` | 30.00% | 60.00% | +30.00 pp |"),
        "{}",
        run.stdout
    );
}

#[test]
fn errors_exit_2() {
    let dir = tempdir();
    write_pair(dir.path());
    for bad in ["abc", "-5%", "150%", "5%%"] {
        let run = firewatch(
            dir.path(),
            &[
                "gate",
                "--base",
                "base.folded",
                "--new",
                "new.folded",
                "--max-regression",
                bad,
            ],
        );
        let err = error_line(&run, 2);
        assert_eq!(
            err,
            format!(
                "error: --max-regression: expected percentage points of self share from 0 to 100, \
                 such as 5% or 0.5%, got {bad:?}"
            )
        );
        assert!(run.stdout.is_empty());
    }
    let run = firewatch(
        dir.path(),
        &["gate", "--base", "missing.pb.gz", "--new", "new.folded"],
    );
    let err = error_line(&run, 2);
    assert!(
        err.starts_with("error: missing.pb.gz: cannot open: "),
        "{err}"
    );
    let run = firewatch(
        dir.path(),
        &[
            "gate",
            "--base",
            "base.folded",
            "--new",
            "shop.cpu",
            "--server",
            "http://127.0.0.1:9",
        ],
    );
    let err = error_line(&run, 2);
    assert!(
        err.starts_with("error: cannot reach the server at http://127.0.0.1:9: "),
        "{err}"
    );
}
