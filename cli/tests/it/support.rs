//! Running the binary and reading what it printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// What one run of `firewatch` did.
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(self) -> String {
        assert_eq!(self.code, Some(0), "firewatch failed: {}", self.stderr);
        self.stdout
    }

    /// Asserts a failure with exactly one line on stderr and returns it.
    #[track_caller]
    pub fn fails(self) -> String {
        assert_ne!(self.code, Some(0), "firewatch succeeded: {}", self.stdout);
        assert!(self.code.is_some(), "killed by a signal: {}", self.stderr);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "want one line on stderr, got {:?}",
            self.stderr
        );
        assert!(lines[0].starts_with("error: "), "{}", lines[0]);
        assert!(!self.stderr.contains("panicked"), "{}", self.stderr);
        lines[0].to_owned()
    }
}

/// Runs `firewatch` with `args` (relative paths resolve against `dir`).
pub fn firewatch(dir: &Path, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(args)
        // The server commands read these; a developer's own must not leak in.
        .env_remove("FIREWATCH_SERVER")
        .env_remove("FIREWATCH_TOKEN")
        .current_dir(dir)
        .output()
        .expect("the firewatch binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(stderr).expect("UTF-8 stderr"),
    }
}

/// A committed fixture under `tests/data`.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

/// The same path as a `&str`, for arguments.
pub fn data_arg(name: &str) -> String {
    data(name).to_str().expect("UTF-8 path").to_owned()
}

/// A fresh temporary directory.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

/// The rows of a folded file as `(stack, count)`, sorted, duplicates summed.
pub fn folded_rows(text: &str) -> Vec<(String, u64)> {
    let mut rows = std::collections::BTreeMap::<String, u64>::new();
    for line in text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
    {
        let (stack, count) = line.rsplit_once(' ').expect("`stack count`");
        *rows.entry(stack.to_owned()).or_default() += count.parse::<u64>().expect("a count");
    }
    rows.into_iter().collect()
}

/// The last line of stderr, which for a failed run is the error; checks
/// that the run failed with `code` and did not panic.
#[track_caller]
pub fn error_line(run: &Run, code: i32) -> String {
    assert_eq!(
        run.code,
        Some(code),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    let last = run.stderr.lines().last().unwrap_or_default().to_owned();
    assert!(last.starts_with("error: "), "{}", run.stderr);
    last
}

/// Runs `firewatch` with `args` and extra environment variables.
pub fn firewatch_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(args)
        .env_remove("FIREWATCH_SERVER")
        .env_remove("FIREWATCH_TOKEN")
        .envs(env.iter().copied())
        .current_dir(dir)
        .output()
        .expect("the firewatch binary runs");
    Run {
        code: status.code(),
        stdout: String::from_utf8(stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(stderr).expect("UTF-8 stderr"),
    }
}
