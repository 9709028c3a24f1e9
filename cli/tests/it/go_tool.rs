//! `go tool pprof`, the reference pprof reader, run offline with a private
//! home: the CLI's tests and the end-to-end tests compare against it.
//!
//! Needs `go` on PATH (Debian: `apt-get install golang-go`); with
//! FIREWATCH_SKIP_GO_TESTS=1 the tests that use it pass without running it.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `go tool pprof` with a private, writable HOME and cache and no way to
/// download anything, or `None` when the user chose to skip.
pub struct GoPprof {
    home: tempfile::TempDir,
}

impl GoPprof {
    pub fn find() -> Option<GoPprof> {
        if std::env::var("FIREWATCH_SKIP_GO_TESTS").is_ok_and(|v| v == "1") {
            eprintln!("skipped: FIREWATCH_SKIP_GO_TESTS=1, go tool pprof not run");
            return None;
        }
        let go = GoPprof {
            home: tempfile::tempdir().expect("a temporary directory"),
        };
        let found = go
            .command()
            .arg("version")
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "`go` is not on PATH: install Debian's golang-go (apt-get install golang-go), \
             or set FIREWATCH_SKIP_GO_TESTS=1 to skip the go tool pprof tests"
        );
        Some(go)
    }

    pub fn command(&self) -> Command {
        let home = self.home.path();
        let mut cmd = Command::new("go");
        cmd.env("HOME", home)
            .env("GOCACHE", home.join("cache"))
            .env("GOPATH", home.join("gopath"))
            .env("GOMODCACHE", home.join("gopath/pkg/mod"))
            .env("PPROF_TMPDIR", home.join("pprof"))
            .env("GOTOOLCHAIN", "local")
            .env("GOPROXY", "off")
            .env("GOTELEMETRY", "off")
            .env("GOFLAGS", "");
        cmd
    }

    /// Runs `go tool pprof ARGS FILE` and returns stdout.
    pub fn run(&self, args: &[&str], file: &Path) -> String {
        let out = self
            .command()
            .args(["tool", "pprof", "-symbolize=none"])
            .args(args)
            .arg(file)
            .output()
            .expect("go runs");
        assert!(
            out.status.success(),
            "go tool pprof {args:?} {}: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// `-top` as name -> (flat, cum), and the grand total, in the sample
    /// type's own unit (`-unit=ns` for durations keeps the numbers exact).
    pub fn top(
        &self,
        file: &Path,
        sample_index: &str,
        unit: &str,
    ) -> (BTreeMap<String, (i64, i64)>, i64) {
        let unit_arg = format!("-unit={}", if unit.is_empty() { "minimum" } else { unit });
        let index_arg = format!("-sample_index={sample_index}");
        let text = self.run(
            &[
                "-top",
                "-nodecount=1000000",
                "-nodefraction=0",
                &index_arg,
                &unit_arg,
            ],
            file,
        );
        let mut rows = BTreeMap::new();
        let mut total = None;
        let mut in_table = false;
        for line in text.lines() {
            if let Some(rest) = line.split_once(" of ").map(|(_, r)| r) {
                // "Showing nodes accounting for 1000, 100% of 1000 total"
                let n = rest.trim_end_matches(" total");
                total = Some(value(n, unit));
            } else if line.trim_start().starts_with("flat") {
                in_table = true;
            } else if in_table {
                let mut fields = line.split_whitespace();
                let flat = value(fields.next().expect("flat"), unit);
                let cum = value(fields.nth(2).expect("cum"), unit);
                let name = fields.skip(1).collect::<Vec<_>>().join(" ");
                let name = name.trim_end_matches(" (inline)").to_owned();
                // pprof prints names trimmed: `f` and `f ` (a real
                // profile's folded text has both) read as one name here.
                let row = rows.entry(name).or_insert((0, 0));
                *row = (row.0 + flat, row.1 + cum);
            }
        }
        (rows, total.expect("a total line"))
    }
}

/// A pprof number with the expected unit suffix ("400000000ns", "1000").
#[track_caller]
pub fn value(text: &str, unit: &str) -> i64 {
    let digits = text.strip_suffix(unit).unwrap_or(text);
    digits
        .parse()
        .unwrap_or_else(|_| panic!("{text:?} is not a whole number of {unit:?}"))
}

/// The first rows (at most ten) where a function table differs from
/// `go tool pprof -top`'s, described; empty when they agree row for row.
pub fn differences(
    ours: &BTreeMap<String, (i64, i64)>,
    go: &BTreeMap<String, (i64, i64)>,
) -> Vec<String> {
    ours.iter()
        .filter(|(name, v)| go.get(*name) != Some(v))
        .map(|(name, v)| format!("{name}: ours {v:?}, go {:?}", go.get(name)))
        .chain(
            go.keys()
                .filter(|name| !ours.contains_key(*name))
                .map(|name| format!("{name}: only in go")),
        )
        .take(10)
        .collect()
}
