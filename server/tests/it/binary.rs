//! The `firewatch-server` binary: configuration precedence, durability of
//! acknowledged profiles across `kill -9`, graceful shutdown on SIGTERM.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{base_ms, cpu_profile};

/// The `firewatch-server` binary, without any `FIREWATCH_*` or `RUST_LOG`
/// setting of the environment running the tests.
pub fn server() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_firewatch-server"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FIREWATCH_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn flags_beat_environment_beat_file_beat_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("firewatch.toml");
    std::fs::write(
        &file,
        "listen = \"10.0.0.1:1\"\nstorage = \"postgres://fw@db/fw\"\nretention = \"7d\"\n\
         [limits]\nmax_samples = 5\nmax_stack_depth = 9\nmax_body_bytes = \"1MiB\"\n",
    )
    .unwrap();
    let out = server()
        .arg("--config")
        .arg(&file)
        .args(["--max-samples", "7", "--print-config"])
        .env("FIREWATCH_LISTEN", "127.0.0.1:2")
        .env("FIREWATCH_MAX_SAMPLES", "6")
        .env("FIREWATCH_MAX_LABELS_PER_SERIES", "12")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "listen = \"127.0.0.1:2\"",
        "storage = \"postgres://fw@db/fw\"",
        "retention = \"604800000ms\"",
        "max_samples = 7",
        "max_stack_depth = 9",
        "max_labels_per_series = 12",
        "max_body_bytes = 1048576",
        "max_label_value_length = 2048",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} not in:\n{text}");
    }

    std::fs::write(&file, "listne = \"x\"\n").unwrap();
    let out = server().arg("--config").arg(&file).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("firewatch.toml") && err.contains("listne"),
        "{err}"
    );
}

/// A running server process, the address it listens on, and what it has
/// logged so far. Dropping it kills the process.
pub struct Running {
    pub child: Child,
    pub addr: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Running {
    /// The server's log lines so far, one per line.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.join("\n")).unwrap_or_default()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the binary on a free loopback port over the store at `db`.
pub fn start(db: &str) -> Running {
    start_with(db, &[])
}

/// Starts the binary with extra flags (e.g. `--log`).
pub fn start_with(db: &str, extra: &[&str]) -> Running {
    let mut cmd = server();
    cmd.args([
        "--listen",
        "127.0.0.1:0",
        "--storage",
        db,
        "--compact-interval",
        "1s",
    ])
    .args(extra);
    launch(cmd)
}

/// Starts a command of the binary and waits until it says where it listens.
pub fn launch(mut cmd: Command) -> Running {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let lines = Arc::clone(&log);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let addr = line
                .find("listening on http")
                .and_then(|at| line[at..].split_once("://"))
                .and_then(|(_, rest)| rest.split(|c: char| c.is_whitespace() || c == '"').next())
                .map(str::to_owned);
            // Kept before the address is told, so a caller that got it
            // finds the line in the log.
            if let Ok(mut lines) = lines.lock() {
                lines.push(line);
            }
            if let Some(addr) = addr
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(addr);
            }
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(addr) => addr,
        Err(_) => {
            let _ = child.kill();
            let lines = log.lock().map(|l| l.join("\n")).unwrap_or_default();
            panic!("the server did not say where it listens within 60 s; its log:\n{lines}");
        }
    };
    Running { child, addr, log }
}

/// An HTTP client that returns error statuses as responses.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into()
}

#[test]
fn acknowledged_profiles_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/data/firewatch.db", dir.path().display());
    let t = base_ms();
    let mut running = start(&db);
    let agent = agent();
    for i in 0..5 {
        let body = cpu_profile(&[("main;durable", 1)], t + i * 10_000).to_pprof_bytes();
        let r = agent
            .post(&format!(
                "http://{}/api/v1/ingest?service_name=durable",
                running.addr
            ))
            .header("Content-Encoding", "zstd")
            .send(&firewatch_profile::zstd(&body, 3).unwrap()[..])
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    running.child.kill().unwrap(); // SIGKILL
    running.child.wait().unwrap();

    let mut running = start(&db);
    let url = format!(
        "http://{}/render?query=durable.samples&from={}&until={}&format=folded",
        running.addr,
        t - 1_000,
        t + 60_000
    );
    let mut r = agent.get(&url).call().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.body_mut().read_to_string().unwrap(), "main;durable 5\n");

    // SIGTERM: a clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &running.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = running.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
