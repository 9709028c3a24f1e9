//! `firewatch up`: the server and the agent in one process, on this host's
//! real perf events (the tests run as root), stopped by SIGINT.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::tempdir;

/// Kills the child if the test fails before it exits.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

fn get(url: &str) -> (u16, String, String) {
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let mut response = http.get(url).call().expect("GET");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = response.body_mut().read_to_string().expect("body");
    (status, content_type, body)
}

/// Lines of stdout up to and including the first that `pick` accepts.
fn read_until(
    lines: &mpsc::Receiver<String>,
    deadline: Instant,
    seen: &mut Vec<String>,
    pick: impl Fn(&str) -> bool,
) -> bool {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                let done = pick(&line);
                seen.push(line);
                if done {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
}

#[test]
fn up_serves_the_ui_profiles_this_host_and_stops_on_sigint() {
    let dir = tempdir();
    let data = dir.path().join("data");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_firewatch"))
        .args(["up", "--listen", &listen, "--data-dir"])
        .arg(&data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("firewatch up starts");
    let mut guard = Guard(child);
    let stdout = guard.0.stdout.take().expect("stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let base = format!("http://{listen}");
    let mut seen = Vec::new();

    let started = read_until(
        &lines,
        Instant::now() + Duration::from_secs(60),
        &mut seen,
        |l| l.contains(&format!("{base}/")),
    );
    assert!(started, "no UI address printed: {seen:?}");
    let warned = read_until(
        &lines,
        Instant::now() + Duration::from_secs(5),
        &mut seen,
        |l| l.contains("Authentication is off") && l.contains("loopback"),
    );
    assert!(warned, "{seen:?}");
    let (status, content_type, body) = get(&format!("{base}/"));
    assert_eq!(status, 200);
    assert!(content_type.starts_with("text/html"), "{content_type}");
    assert!(body.to_ascii_lowercase().contains("<html"), "{body}");

    // At least one service within 60 s, both in the API and in the output.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut services = serde_json::Value::Null;
    while Instant::now() < deadline {
        let (_, _, body) = get(&format!("{base}/api/v1/services"));
        services = serde_json::from_str(&body).expect("JSON");
        if services["services"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let first = services["services"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(!first.is_empty(), "no service within 60 s: {services}");
    let linked = read_until(
        &lines,
        Instant::now() + Duration::from_secs(30),
        &mut seen,
        |l| l.contains(&format!("{base}/?query=%7Bservice_name%3D%22")),
    );
    assert!(linked, "no service link printed: {seen:?}");

    // SAFETY: kill sends a signal to the child we started; no memory involved.
    let rc = unsafe { libc::kill(guard.0.id() as libc::pid_t, libc::SIGINT) };
    assert_eq!(rc, 0, "SIGINT sent");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = guard.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "firewatch up did not stop within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    if let Some(mut e) = guard.0.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    assert!(status.success(), "exit {status:?}; stderr: {stderr}");
    read_until(
        &lines,
        Instant::now() + Duration::from_secs(5),
        &mut seen,
        |l| l == "Stopped.",
    );
    assert_eq!(
        seen.last().map(String::as_str),
        Some("Stopped."),
        "{seen:?}"
    );
    assert!(data.join("firewatch.db").exists());
}

#[test]
fn up_refuses_a_non_loopback_address() {
    let dir = tempdir();
    let run = crate::support::firewatch(
        dir.path(),
        &["up", "--listen", "0.0.0.0:0", "--data-dir", "d"],
    );
    let err = crate::support::error_line(&run, 2);
    assert!(
        err.contains("has no authentication, so it listens on a loopback address only"),
        "{err}"
    );
    assert!(!dir.path().join("d").exists());
}
