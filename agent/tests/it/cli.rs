//! The `firewatch-agent` binary: flags, errors, and a short run writing files.

use std::process::Command;
use std::time::Duration;

use crate::support::{Workload, c_workload, decode_pprof, stacks};

fn agent() -> Command {
    Command::new(env!("CARGO_BIN_EXE_firewatch-agent"))
}

#[test]
fn invalid_flags_exit_non_zero_with_one_clear_line() {
    let out = agent()
        .args(["--frequency", "0", "--duration", "1s"])
        .output()
        .expect("run the agent");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("frequency must be 1..=10000 Hz"), "{err}");
    let out = agent()
        .args(["--server", "ftp://x"])
        .output()
        .expect("run the agent");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
}

#[test]
fn a_short_run_writes_named_profiles_to_the_dump_directory() {
    let dir = std::env::temp_dir().join(format!("firewatch-agent-dump-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let w = Workload::start(c_workload(), 3.0);
    let out = agent()
        .args([
            "--no-ship",
            "--frequency",
            "499",
            "--upload-interval",
            "500ms",
            "--duration",
            "2s",
        ])
        .args([
            "--pid",
            &w.pid().to_string(),
            "--label",
            "env=test",
            "--dump-dir",
        ])
        .arg(&dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the agent");
    let _ = w.finish(Duration::from_secs(60));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("dump directory")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(files.len() >= 2, "one profile per interval: {files:?}");
    let mut hot = 0;
    for f in &files {
        assert!(f.to_string_lossy().ends_with(".pb.zst"));
        let p = decode_pprof(&std::fs::read(f).expect("read dump"));
        hot += stacks(&p)
            .iter()
            .filter(|s| s.has("fw_hot"))
            .map(|s| s.samples)
            .sum::<i64>();
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(hot > 0, "fw_hot in the dumped profiles");
}

#[test]
fn without_permission_it_exits_with_one_message_naming_the_fix() {
    // Where any user may profile (paranoid <= 0) the refusal cannot happen:
    // raise the setting for this test and put it back after (the other
    // tests run as root, which it does not restrict).
    let _paranoid = Paranoid::at_least(1);
    // Run as `nobody` (tests run as root): perf_event_open is refused. A
    // copy in the temporary directory, as the build tree may not be
    // reachable by other users.
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("firewatch-agent-nobody-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let exe = dir.join("firewatch-agent");
    std::fs::copy(env!("CARGO_BIN_EXE_firewatch-agent"), &exe).expect("copy the binary");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(&exe)
        .current_dir(&dir)
        .args(["--duration", "1s"])
        .env("RUST_LOG", "warn")
        .output()
        .expect("setpriv (util-linux) runs the agent as nobody");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err
        .lines()
        .find(|l| l.starts_with("firewatch-agent:"))
        .unwrap_or_default();
    for fix in ["perf_event_paranoid", "CAP_PERFMON", "root"] {
        assert!(line.contains(fix), "the message names {fix}: {err}");
    }
}

/// `kernel.perf_event_paranoid` raised to a level for as long as it lives.
struct Paranoid(Option<String>);

const PARANOID: &str = "/proc/sys/kernel/perf_event_paranoid";

impl Paranoid {
    fn at_least(level: i32) -> Paranoid {
        let now = std::fs::read_to_string(PARANOID).expect("perf_event_paranoid");
        let value: i32 = now.trim().parse().expect("a number");
        if value >= level {
            return Paranoid(None);
        }
        std::fs::write(PARANOID, level.to_string())
            .expect("raising perf_event_paranoid needs root, as the tests run");
        Paranoid(Some(now))
    }
}

impl Drop for Paranoid {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            let _ = std::fs::write(PARANOID, old.trim());
        }
    }
}
